//! What the long-running subcommands (`difffuzz`, `faults`) share: stopping after the
//! current case on SIGINT/SIGTERM, adopting and reaping orphaned runtime processes, the
//! default berth binary, and clipping of echoed output.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT/SIGTERM: the run stops after the current case (which cleans up).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Install the SIGINT/SIGTERM handlers, and become a child subreaper: orphans of killed
/// runtimes (inits, stage 1s, detached tracers) come to this process, not to PID 1.
pub fn start() -> Result<(), String> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(
                sig,
                on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))
}

/// Whether SIGINT or SIGTERM asked the run to stop.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Reap every child that has exited (adopted orphans included), without waiting.
pub fn reap_orphans() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}

/// The berth binary: `$env` if set, else the workspace's release build.
pub fn default_berth(env: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/x86_64-unknown-linux-musl/release/berth"
        ))
    })
}

/// `s` trimmed, cut at `max` bytes (on a character boundary) with "..." after.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
