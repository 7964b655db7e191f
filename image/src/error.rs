//! One error type for the library. Every variant says what was being done and why it failed.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file operation failed; `context` names the operation and the path.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Content did not hash to the digest it was announced with.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    /// Content did not have the size it was announced with.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    /// Something named (an image, a blob, a snapshot, a container) does not exist.
    #[error("{0}: not found")]
    NotFound(String),
    /// Something named already exists.
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// Input that does not follow the format it claims (a manifest, a reference, a layout).
    #[error("invalid {what}: {why}")]
    Invalid { what: String, why: String },
    /// A layer entry that extraction refuses (see `layer`).
    #[error("layer entry {path:?} refused: {why}")]
    Unsafe { path: String, why: String },
    /// The registry answered with an error.
    #[error("registry: {0}")]
    Registry(String),
    /// Not supported (a media type, a platform).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
    pub fn invalid(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }
    /// The errno of an I/O error, if this is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// `.ctx("open", path)` on io results: the error names the operation and the path.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &str, path: &Path) -> Result<T>;
    fn ctx_with(self, f: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(format!("{op} {}", path.display()), e))
    }
    fn ctx_with(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, op: &str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(format!("{op} {}", path.display()), e.into()))
    }
    fn ctx_with(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(f(), e.into()))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::invalid("JSON", e.to_string())
    }
}
