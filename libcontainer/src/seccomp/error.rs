//! The one error type of the seccomp module. Profile errors name the JSON field they come from
//! (`linux.seccomp.syscalls[3].args[0].index: ...`), as the rest of berth's config errors do.

use std::io;

/// Why a profile could not be compiled or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A field of `linux.seccomp` that berth refuses; `field` is its JSON path.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },

    /// berth only knows how to filter the syscall ABIs of an x86_64 host.
    #[error("seccomp: berth builds filters for x86_64 hosts only, not for {host}")]
    UnsupportedHost { host: &'static str },

    /// The profile needs more BPF than the kernel accepts.
    #[error("linux.seccomp: {what} needs {len} BPF instructions, more than the kernel's limit of {limit}")]
    TooLarge {
        what: String,
        len: usize,
        limit: usize,
    },

    /// seccompiler refused a filter berth built (a bug in berth, not in the profile).
    /// (The cause is part of the message and not also a `source()`: anyhow's `{:#}` prints
    /// the chain, which would say it twice.)
    #[error("seccomp: building {what}: {err}")]
    Bpf {
        what: String,
        err: seccompiler::BackendError,
    },

    /// seccomp(2) refused a filter.
    #[error("seccomp(SECCOMP_SET_MODE_FILTER) of {what}: {}{hint}", crate::error::os_text(.err))]
    Load {
        what: String,
        err: io::Error,
        hint: &'static str,
    },

    /// SECCOMP_FILTER_FLAG_TSYNC could not move another thread onto the new filter.
    #[error("seccomp(SECCOMP_SET_MODE_FILTER) of {what}: SECCOMP_FILTER_FLAG_TSYNC could not synchronize thread {tid}")]
    ThreadNotSynchronized { what: String, tid: i64 },
}

impl SeccompError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SeccompError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message as anyhow's `{:#}` prints it: the error, then each source.
    pub(crate) fn chain(e: &dyn std::error::Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut cur = e.source();
        while let Some(s) = cur {
            out.push(s.to_string());
            cur = s.source();
        }
        out
    }

    /// No cause is printed twice ("no space left on device: ... (os error 28)").
    #[test]
    fn causes_are_said_once() {
        let errors = [
            SeccompError::Load {
                what: "the default filter".into(),
                err: io::Error::from_raw_os_error(libc::ENOSPC),
                hint: "",
            },
            SeccompError::Bpf {
                what: "a filter".into(),
                err: seccompiler::BackendError::InvalidTargetArch("x".into()),
            },
        ];
        for e in errors {
            let outer = crate::Error::from(e);
            let c = chain(&outer);
            for (i, inner) in c.iter().enumerate().skip(1) {
                assert!(!c[i - 1].contains(inner.as_str()), "said twice: {c:?}");
            }
            assert_eq!(c.len(), 1, "{c:?}");
        }
        let e = crate::Error::from(SeccompError::Load {
            what: "f".into(),
            err: io::Error::from_raw_os_error(libc::ENOSPC),
            hint: "",
        });
        assert_eq!(
            e.to_string(),
            "seccomp(SECCOMP_SET_MODE_FILTER) of f: no space left on device"
        );
    }
}
