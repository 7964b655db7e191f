//! Load order and seccomp(2) flags of the compiled filters.

use super::filter::{Filter, FilterKind};
use super::rules;
use super::verdict::Verdict;
use super::SeccompError;

/// Load order: the filters in build order (architectures, actions in order of first
/// appearance, default), except that one which may stop seccomp(2) goes last, since no filter
/// can be loaded after it. Two such filters cannot both be loaded.
pub(crate) fn order(filters: Vec<Filter>) -> Result<Vec<Filter>, SeccompError> {
    let (mut ordered, blocking): (Vec<_>, Vec<_>) =
        filters.into_iter().partition(|f| !f.blocks_seccomp);
    if blocking.len() > 1 {
        let names: Vec<String> = blocking.iter().map(|f| f.to_string()).collect();
        return Err(SeccompError::invalid(
            "linux.seccomp.syscalls",
            format!(
                "seccomp(2) itself is stopped by more than one of the filters berth builds for \
                 this profile ({}), so they cannot all be loaded",
                names.join("; ")
            ),
        ));
    }
    ordered.extend(blocking);
    Ok(ordered)
}

/// The profile's flags on every filter; the listener flags on the NOTIFY filter.
pub(crate) fn with_flags(mut filters: Vec<Filter>, flags: rules::Flags) -> Vec<Filter> {
    let mut common: libc::c_ulong = 0;
    if flags.tsync {
        common |= libc::SECCOMP_FILTER_FLAG_TSYNC;
    }
    if flags.log {
        common |= libc::SECCOMP_FILTER_FLAG_LOG;
    }
    if flags.spec_allow {
        common |= libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
    }
    for filter in &mut filters {
        filter.flags = common;
        if filter.kind == FilterKind::Action(Verdict::Notify) {
            filter.flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
            if flags.wait_killable_recv {
                filter.flags |= libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
            }
            if flags.tsync {
                // The kernel refuses TSYNC with NEW_LISTENER unless TSYNC failures are
                // reported as ESRCH (the return value is the listener fd).
                filter.flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
            }
        }
    }
    filters
}
