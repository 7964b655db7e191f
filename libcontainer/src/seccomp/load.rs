//! Attaching compiled filters to the calling thread (and, with TSYNC, its process).

use std::io;
use std::os::fd::OwnedFd;

use super::filter::Compiled;
use super::sys::{self, Attached};
use super::SeccompError;

/// Attaches every filter of `compiled`, in order, with seccomp(2); returns the SCMP_ACT_NOTIFY
/// listener when the profile has NOTIFY rules.
///
/// The caller has set no_new_privs or holds CAP_SYS_ADMIN. Filters cannot be detached: if one
/// fails, the ones before it stay attached, and the caller must not exec the container process.
pub fn load(compiled: &Compiled) -> Result<Option<OwnedFd>, SeccompError> {
    let mut listener = None;
    for filter in compiled.filters() {
        match sys::set_mode_filter(filter.instructions(), filter.flags()) {
            Ok(Attached::Done) => {}
            Ok(Attached::Listener(fd)) => listener = Some(fd),
            Ok(Attached::NotSynchronized(tid)) => {
                return Err(SeccompError::ThreadNotSynchronized {
                    what: filter.to_string(),
                    tid,
                })
            }
            Err(source) => {
                let hint = hint(&source);
                return Err(SeccompError::Load {
                    what: filter.to_string(),
                    err: source,
                    hint,
                });
            }
        }
    }
    Ok(listener)
}

fn hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EACCES) => " (no_new_privs is not set and the caller lacks CAP_SYS_ADMIN)",
        Some(libc::EINVAL) => " (a filter flag this kernel does not support?)",
        Some(libc::EBUSY) => " (this process already has a seccomp notify listener)",
        Some(libc::ESRCH) => " (SECCOMP_FILTER_FLAG_TSYNC could not synchronize another thread)",
        Some(libc::ENOMEM) => " (the filters exceed the kernel's instruction limit)",
        _ => "",
    }
}
