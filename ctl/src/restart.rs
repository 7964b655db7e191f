//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`), carried out by the
//! container's monitor, which outlives berthctl: after an exit the policy decides; a restart
//! waits docker's back-off first (100 ms, doubling, back to 100 ms once the container stayed
//! up 10 s). `stop`, `kill` and `rm -f` mark the container stopped by hand, which holds the
//! policy off until `start`. There is no daemon: after a reboot nothing restarts by itself
//! (`always` and `unless-stopped` behave alike; `berthctl start` brings a container back).

use std::time::Duration;

use anyhow::{bail, Result};

use crate::ctx::Ctx;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    No,
    /// At most this many restarts (0: no limit).
    OnFailure(u32),
    Always,
    UnlessStopped,
}

impl Policy {
    pub fn parse(s: &str) -> Result<Policy> {
        Ok(match s.split_once(':') {
            None if s == "no" || s.is_empty() => Policy::No,
            None if s == "always" => Policy::Always,
            None if s == "unless-stopped" => Policy::UnlessStopped,
            None if s == "on-failure" => Policy::OnFailure(0),
            Some(("on-failure", n)) => Policy::OnFailure(n.parse().map_err(|_| {
                anyhow::anyhow!(
                    "invalid restart policy: maximum retry count must be an integer: {n:?}"
                )
            })?),
            Some((p, _)) if p == "always" || p == "unless-stopped" || p == "no" => {
                bail!("invalid restart policy: maximum retry count cannot be used with restart policy '{p}'")
            }
            _ => bail!(
                "invalid restart policy {s:?}: use no, on-failure[:N], always or unless-stopped"
            ),
        })
    }

    /// docker's name (inspect's `HostConfig.RestartPolicy`).
    pub fn name(&self) -> &'static str {
        match self {
            Policy::No => "no",
            Policy::OnFailure(_) => "on-failure",
            Policy::Always => "always",
            Policy::UnlessStopped => "unless-stopped",
        }
    }

    pub fn max_retries(&self) -> u32 {
        match self {
            Policy::OnFailure(n) => *n,
            _ => 0,
        }
    }

    /// Whether an exit with `code`, after `restarts` restarts, starts the container again.
    pub fn restarts(&self, code: i32, restarts: u32, stopped_by_hand: bool) -> bool {
        if stopped_by_hand {
            return false;
        }
        match self {
            Policy::No => false,
            Policy::OnFailure(max) => code != 0 && (*max == 0 || restarts < *max),
            Policy::Always | Policy::UnlessStopped => true,
        }
    }
}

/// The back-off before restart number `n` (0-based) of a container that stayed up `up`.
pub struct Backoff {
    delay: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff {
            delay: Duration::from_millis(100),
        }
    }

    /// The wait before the next start; doubles each time, back to 100 ms after a run of 10 s.
    pub fn next(&mut self, up: Duration) -> Duration {
        if up >= Duration::from_secs(10) {
            self.delay = Duration::from_millis(100);
        }
        let d = self.delay;
        self.delay = (self.delay * 2).min(Duration::from_secs(60));
        d
    }
}

/// The container's lifecycle lock: held by its monitor from a restart decision until the new
/// process runs, and by stop, kill and rm while they mark the container stopped by hand.
pub fn lock(ctx: &Ctx, id: &str) -> Result<image::fsutil::FileLock> {
    Ok(image::fsutil::FileLock::exclusive(
        &ctx.container_dir(id).join("lifecycle.lock"),
    )?)
}

/// Whether the container's monitor is between runs: its `restarting` marker names a live
/// monitor (one that died, or a reboot, leaves a marker that means nothing).
pub fn restarting(ctx: &Ctx, id: &str) -> bool {
    std::fs::read_to_string(ctx.container_dir(id).join("restarting"))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        // SAFETY: kill(2) with signal 0 only asks whether the process exists.
        .is_some_and(|p| unsafe { libc::kill(p, 0) } == 0)
}

fn marker(ctx: &Ctx, id: &str) -> std::path::PathBuf {
    ctx.container_dir(id).join("stopped-by-hand")
}

/// `stop`, `kill`, `rm -f`: the policy holds off until `start`. Taken under the lifecycle
/// lock, so that a restart under way finishes first (and is then stopped like any run).
pub fn mark_stopped(ctx: &Ctx, id: &str) {
    let _lock = lock(ctx, id);
    let _ = std::fs::write(marker(ctx, id), b"");
}

pub fn stopped_by_hand(ctx: &Ctx, id: &str) -> bool {
    marker(ctx, id).exists()
}

/// `start`: the policy applies again.
pub fn clear_stopped(ctx: &Ctx, id: &str) {
    let _ = std::fs::remove_file(marker(ctx, id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_as_docker_parses_and_applies_them() {
        assert_eq!(Policy::parse("no").unwrap(), Policy::No);
        assert_eq!(Policy::parse("on-failure:3").unwrap(), Policy::OnFailure(3));
        assert_eq!(Policy::parse("on-failure").unwrap(), Policy::OnFailure(0));
        assert!(Policy::parse("always:2").is_err());
        assert!(Policy::parse("on-failure:x").is_err());
        assert!(Policy::parse("sometimes").is_err());
        let p = Policy::OnFailure(2);
        assert!(p.restarts(1, 0, false) && p.restarts(1, 1, false));
        assert!(!p.restarts(1, 2, false) && !p.restarts(0, 0, false));
        assert!(Policy::Always.restarts(0, 99, false));
        assert!(!Policy::Always.restarts(0, 0, true));
        assert!(!Policy::No.restarts(1, 0, false));
    }

    #[test]
    fn backoff_doubles_and_resets_after_ten_seconds_up() {
        let mut b = Backoff::new();
        let short = Duration::from_secs(1);
        let ms: Vec<u128> = (0..4).map(|_| b.next(short).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800]);
        assert_eq!(b.next(Duration::from_secs(10)).as_millis(), 100);
        assert_eq!(b.next(short).as_millis(), 200);
    }
}
