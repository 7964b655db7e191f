//! One error type for the library. Every variant says what was being done and why it failed.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file operation failed; `context` names the operation and the path.
    /// The OS error is part of the message and deliberately not `source()`: a chain printer
    /// (anyhow's `{:#}`) would print it twice (`...: (os error 28): ... (os error 28)`).
    #[error("{context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
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
    /// Applying a layer failed; `err` says how (shown in the message, not a `source()`).
    #[error("layer {digest}: {err}")]
    Layer { digest: String, err: Box<Error> },
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
            err: source,
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
            Error::Io { err, .. } => err.raw_os_error(),
            Error::Layer { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

/// At most this many characters of a value taken from input are echoed in a message.
pub const ECHO_MAX: usize = 200;

/// `text` (taken from untrusted input) made fit for a one-line message: control characters,
/// quotes and backslashes escaped as Rust does (`\n`, `\u{1b}`), replacement characters (bytes
/// that were not UTF-8) shown as `?`, and cut at `ECHO_MAX` characters with the full length said.
pub fn echo(text: &str) -> String {
    let mut out = String::new();
    for (shown, c) in text.chars().enumerate() {
        if shown >= ECHO_MAX {
            out.push_str(&format!("... ({} bytes in all)", text.len()));
            return out;
        }
        if c == '\u{fffd}' {
            out.push('?');
        } else {
            out.extend(c.escape_debug());
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What anyhow's `{:#}` prints: the error, then each `source()` in turn.
    fn chain_text(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut cur = e.source();
        while let Some(s) = cur {
            out.push_str(": ");
            out.push_str(&s.to_string());
            cur = s.source();
        }
        out
    }

    #[test]
    fn echoed_values_are_escaped_and_capped() {
        assert_eq!(echo("a\x1b[2J\n\u{fffd}"), "a\\u{1b}[2J\\n?");
        let long = "x".repeat(5000);
        let e = echo(&long);
        assert!(
            e.len() < ECHO_MAX + 40 && e.ends_with("(5000 bytes in all)"),
            "{e}"
        );
    }

    #[test]
    fn an_error_chain_never_repeats_its_cause() {
        let e = Error::io(
            "write blob sha256:abc",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let text = chain_text(&e);
        assert_eq!(text.matches("os error 28").count(), 1, "{text}");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        let r: std::io::Result<()> = Err(std::io::Error::from_raw_os_error(libc::EACCES));
        let e = r.ctx("open", Path::new("/x")).unwrap_err();
        assert_eq!(chain_text(&e), e.to_string());
    }
}
