//! Typed errors of libcontainer. Every error names what failed, where and why.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed; `what` says which operation.
    #[error("{what} {}: {}", echo_path(.path), os_text(.err))]
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
    #[error("invalid container id {}: an id is 1 to 1024 of the characters [A-Za-z0-9_+.-] and not \".\" or \"..\"", echo(.0))]
    InvalidId(String),
    #[error("container {} does not exist", echo(.0))]
    NotFound(String),
    #[error("container with id {} exists", echo(.0))]
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
    #[error(transparent)]
    Idmap(#[from] crate::idmap::IdmapError),
    #[error(transparent)]
    Criu(#[from] crate::criu::CriuError),
}

/// How many bytes of a value an error message shows (see [`echo`]).
pub const ECHO_MAX: usize = 256;

/// A value as an error message shows it: quoted, control characters and quotes escaped, and
/// cut after [`ECHO_MAX`] bytes with an ellipsis and the full length (`"aaa…" (20000 bytes)`),
/// so that a hostile config cannot make an error huge or write to a terminal.
pub fn echo(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(ECHO_MAX) + 24);
    out.push('"');
    let mut shown = 0;
    for c in value.chars() {
        if shown + c.len_utf8() > ECHO_MAX {
            out.push_str(&format!("\"… ({} bytes)", value.len()));
            return out;
        }
        shown += c.len_utf8();
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

/// [`echo`] of a path (bytes that are not UTF-8 show as U+FFFD).
pub fn echo_path(path: &std::path::Path) -> String {
    echo(&path.to_string_lossy())
}

/// A whole message that may carry values berth did not make (a parser's, a peer's): cut after
/// `max` bytes (at a character boundary) with a marker, control characters but newline and tab
/// escaped.
pub fn bound_text(text: &str, max: usize) -> String {
    bounded(text, max, true)
}

/// [`bound_text`] for a message that must stay one line (a config error names its field on
/// one line): newline and tab are escaped too.
pub fn bound_line(text: &str, max: usize) -> String {
    bounded(text, max, false)
}

fn bounded(text: &str, max: usize, keep_lines: bool) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 32);
    for c in text.chars() {
        if out.len() + c.len_utf8() > max {
            out.push_str(&format!("… (cut at {max} of {} bytes)", text.len()));
            return out;
        }
        if c.is_control() && !(keep_lines && (c == '\n' || c == '\t')) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error as runc (Go) words it: a system error is its lowercase strerror text
/// (`no such file or directory`, `permission denied`), which clients match case-sensitively:
/// docker's CLI maps those two to exit codes 127 and 126.
pub fn os_text(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(n) => match go_errno_text(n) {
            Some(t) => t.to_string(),
            // The C library's text, in Go's style (lower case, no "(os error N)").
            None => {
                let text = std::io::Error::from_raw_os_error(n).to_string();
                let text = text.split(" (os error").next().unwrap_or("").to_string();
                let mut chars = text.chars();
                match chars.next() {
                    // glibc's and musl's texts for an errno they do not know.
                    Some(c)
                        if !text.starts_with("Unknown error") && text != "No error information" =>
                    {
                        c.to_lowercase().chain(chars).collect()
                    }
                    _ => format!("errno {n}"),
                }
            }
        },
        None => err.to_string(),
    }
}

/// Go's (glibc's) texts of the errnos a runtime meets; musl's and the kernel headers' differ
/// for some (ENOMEM, EBADF, ELOOP, ...).
fn go_errno_text(n: i32) -> Option<&'static str> {
    use libc::*;
    Some(match n {
        EPERM => "operation not permitted",
        ENOENT => "no such file or directory",
        ESRCH => "no such process",
        EINTR => "interrupted system call",
        EIO => "input/output error",
        ENXIO => "no such device or address",
        E2BIG => "argument list too long",
        ENOEXEC => "exec format error",
        EBADF => "bad file descriptor",
        ECHILD => "no child processes",
        EAGAIN => "resource temporarily unavailable",
        ENOMEM => "cannot allocate memory",
        EACCES => "permission denied",
        EFAULT => "bad address",
        EBUSY => "device or resource busy",
        EEXIST => "file exists",
        EXDEV => "invalid cross-device link",
        ENOTBLK => "block device required",
        ENODEV => "no such device",
        ENOTDIR => "not a directory",
        EISDIR => "is a directory",
        EINVAL => "invalid argument",
        ENFILE => "too many open files in system",
        EMFILE => "too many open files",
        ENOTTY => "inappropriate ioctl for device",
        ETXTBSY => "text file busy",
        EFBIG => "file too large",
        ENOSPC => "no space left on device",
        ESPIPE => "illegal seek",
        EROFS => "read-only file system",
        EMLINK => "too many links",
        EPIPE => "broken pipe",
        ERANGE => "numerical result out of range",
        EDEADLK => "resource deadlock avoided",
        ENAMETOOLONG => "file name too long",
        ENOSYS => "function not implemented",
        ENOTEMPTY => "directory not empty",
        ELOOP => "too many levels of symbolic links",
        EOVERFLOW => "value too large for defined data type",
        ENOTSOCK => "socket operation on non-socket",
        EOPNOTSUPP => "operation not supported",
        EADDRINUSE => "address already in use",
        ECONNRESET => "connection reset by peer",
        ETIMEDOUT => "connection timed out",
        ECONNREFUSED => "connection refused",
        ESTALE => "stale NFS file handle",
        EDQUOT => "disk quota exceeded",
        ECANCELED => "operation canceled",
        _ => return None,
    })
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_errno_has_a_text() {
        use super::os_text;
        let text = |n| os_text(&std::io::Error::from_raw_os_error(n));
        assert_eq!(text(libc::ENOTBLK), "block device required");
        // Not in Go's table here: the C library's, lower-cased.
        assert_eq!(text(libc::ENOMEDIUM), "no medium found");
        assert_eq!(text(100000), "errno 100000");
    }

    #[test]
    fn ids_and_paths_in_errors_are_bounded() {
        use super::Error;
        let long = "x".repeat(10_000);
        for e in [
            Error::InvalidId(long.clone()),
            Error::NotFound(long.clone()),
            Error::Exists(long.clone()),
            Error::io(
                "open",
                long.as_str(),
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ),
        ] {
            let text = e.to_string();
            assert!(text.len() < 600, "{} bytes: {}", text.len(), &text[..100]);
            assert!(text.contains("(10000 bytes)"), "{text}");
        }
        // Ordinary values read as before.
        assert_eq!(
            Error::NotFound("abc".into()).to_string(),
            "container \"abc\" does not exist"
        );
    }

    #[test]
    fn echoed_values_are_bounded_and_escaped() {
        assert_eq!(super::echo("a\u{1b}[2J\"b"), "\"a\\u{1b}[2J\\\"b\"");
        let long = "x".repeat(20_000);
        let e = super::echo(&long);
        assert!(e.len() < super::ECHO_MAX + 32, "{e}");
        assert!(e.ends_with("\"… (20000 bytes)"), "{e}");
        // Cut at a character boundary.
        let e = super::echo(&"é".repeat(1000));
        assert!(e.starts_with("\"éé") && e.ends_with("(2000 bytes)"), "{e}");
        let t = super::bound_text(&format!("a\nb\u{7}{long}"), 100);
        assert!(t.starts_with("a\nb\\u{7}x") && t.ends_with("(cut at 100 of 20004 bytes)"));
        assert!(t.len() < 140, "{t}");
    }

    #[test]
    fn system_errors_in_gos_words() {
        let t = |n| super::os_text(&std::io::Error::from_raw_os_error(n));
        assert_eq!(t(libc::ENOENT), "no such file or directory");
        assert_eq!(t(libc::EACCES), "permission denied");
        assert_eq!(t(libc::ENOMEM), "cannot allocate memory");
        assert_eq!(t(524), "errno 524");
        assert_eq!(super::os_text(&std::io::Error::other("plain")), "plain");
    }
}
