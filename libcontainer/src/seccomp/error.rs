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
    #[error("seccomp: building {what}: {source}")]
    Bpf {
        what: String,
        #[source]
        source: seccompiler::BackendError,
    },

    /// seccomp(2) refused a filter.
    #[error("seccomp(SECCOMP_SET_MODE_FILTER) of {what}: {source}{hint}")]
    Load {
        what: String,
        #[source]
        source: io::Error,
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
