//! Typed errors of libcontainer. Every error names what failed, where and why.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed; `what` says which operation.
    #[error("{what} {path:?}: {}", os_text(.err))]
    Io {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    /// config.json is malformed or holds a value berth cannot honour. Worded as runc's
    /// (`invalid configuration`), which runc's tests and tools look for.
    #[error("invalid configuration: {path}: {msg}")]
    Config { path: String, msg: String },
    /// The container id is not valid.
    #[error("invalid container id {0:?}: an id is 1 to 1024 of the characters [A-Za-z0-9_+.-] and not \".\" or \"..\"")]
    InvalidId(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container with id {0:?} exists")]
    Exists(String),
    /// The requested operation does not fit the container's status.
    #[error("{0}")]
    InvalidState(String),
    /// The process could not be started (exec or a startContainer hook failed).
    #[error("{0}")]
    Start(String),
    /// The container's init process reported a failure of one setup step.
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
    /// A system call outside of init failed.
    #[error("{what}: {}", os_text(.err))]
    Sys { what: String, err: std::io::Error },
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

/// An error as runc (Go) words it: a system error is its lowercase strerror text
/// (`no such file or directory`, `permission denied`), which clients match case-sensitively:
/// docker's CLI maps those two to exit codes 127 and 126.
pub fn os_text(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => err.to_string(),
    }
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            err: source,
        }
    }

    pub(crate) fn sys(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Sys {
            what: what.into(),
            err: source.into(),
        }
    }

    pub(crate) fn config(path: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
