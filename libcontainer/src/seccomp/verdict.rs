//! What a filter returns for a syscall: an OCI action with its data, as a `SECCOMP_RET_*` value.

use std::fmt;

use oci_spec::runtime::LinuxSeccompAction;
use seccompiler::SeccompAction;

use super::SeccompError;

/// The kernel's action for a syscall, with its data (errno, trace value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    KillProcess,
    /// `SCMP_ACT_KILL` and `SCMP_ACT_KILL_THREAD` (runc maps both here).
    KillThread,
    Trap,
    Errno(u16),
    Notify,
    Trace(u16),
    Log,
    Allow,
}

/// The data seccompiler is given for a NOTIFY filter's match action: `SECCOMP_RET_TRACE` with
/// this value, which `program::patch_returns` turns into `SECCOMP_RET_USER_NOTIF` afterwards
/// (seccompiler has no notify action). A NOTIFY filter returns nothing else that is TRACE.
pub(crate) const NOTIFY_PLACEHOLDER: u16 = 0xbe27;

impl Verdict {
    /// The verdict of an OCI action. `errno_ret` is `errnoRet` (or `defaultErrnoRet`), named
    /// `errno_field` in errors; as in runc it is the errno of ERRNO and the value of TRACE, both
    /// EPERM when absent, and is ignored for other actions.
    pub(crate) fn from_oci(
        action: LinuxSeccompAction,
        errno_ret: Option<u32>,
        errno_field: &str,
    ) -> Result<Verdict, SeccompError> {
        let data = || -> Result<u16, SeccompError> {
            let value = errno_ret.unwrap_or(libc::EPERM as u32);
            u16::try_from(value).map_err(|_| {
                SeccompError::invalid(
                    errno_field,
                    format!("{value} does not fit the 16-bit data of a seccomp return value"),
                )
            })
        };
        Ok(match action {
            LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
                Verdict::KillThread
            }
            LinuxSeccompAction::ScmpActKillProcess => Verdict::KillProcess,
            LinuxSeccompAction::ScmpActTrap => Verdict::Trap,
            LinuxSeccompAction::ScmpActErrno => Verdict::Errno(data()?),
            LinuxSeccompAction::ScmpActNotify => Verdict::Notify,
            LinuxSeccompAction::ScmpActTrace => Verdict::Trace(data()?),
            LinuxSeccompAction::ScmpActLog => Verdict::Log,
            LinuxSeccompAction::ScmpActAllow => Verdict::Allow,
        })
    }

    /// The filter's return value (`SECCOMP_RET_*` | data).
    pub fn ret(self) -> u32 {
        match self {
            Verdict::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
            Verdict::KillThread => libc::SECCOMP_RET_KILL_THREAD,
            Verdict::Trap => libc::SECCOMP_RET_TRAP,
            Verdict::Errno(e) => libc::SECCOMP_RET_ERRNO | u32::from(e),
            Verdict::Notify => libc::SECCOMP_RET_USER_NOTIF,
            Verdict::Trace(v) => libc::SECCOMP_RET_TRACE | u32::from(v),
            Verdict::Log => libc::SECCOMP_RET_LOG,
            Verdict::Allow => libc::SECCOMP_RET_ALLOW,
        }
    }

    /// Whether the syscall still runs (so a filter returning this never stops seccomp(2)).
    pub(crate) fn runs_syscall(self) -> bool {
        matches!(self, Verdict::Allow | Verdict::Log)
    }

    /// The action handed to seccompiler (NOTIFY as its placeholder).
    pub(crate) fn to_seccompiler(self) -> SeccompAction {
        match self {
            Verdict::KillProcess => SeccompAction::KillProcess,
            Verdict::KillThread => SeccompAction::KillThread,
            Verdict::Trap => SeccompAction::Trap,
            Verdict::Errno(e) => SeccompAction::Errno(u32::from(e)),
            Verdict::Notify => SeccompAction::Trace(u32::from(NOTIFY_PLACEHOLDER)),
            Verdict::Trace(v) => SeccompAction::Trace(u32::from(v)),
            Verdict::Log => SeccompAction::Log,
            Verdict::Allow => SeccompAction::Allow,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::KillProcess => f.write_str("SCMP_ACT_KILL_PROCESS"),
            Verdict::KillThread => f.write_str("SCMP_ACT_KILL_THREAD"),
            Verdict::Trap => f.write_str("SCMP_ACT_TRAP"),
            Verdict::Errno(e) => write!(f, "SCMP_ACT_ERRNO({e})"),
            Verdict::Notify => f.write_str("SCMP_ACT_NOTIFY"),
            Verdict::Trace(v) => write!(f, "SCMP_ACT_TRACE({v})"),
            Verdict::Log => f.write_str("SCMP_ACT_LOG"),
            Verdict::Allow => f.write_str("SCMP_ACT_ALLOW"),
        }
    }
}
