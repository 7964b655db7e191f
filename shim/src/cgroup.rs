//! The container's memory cgroup, for OOM events: cgroup v1 `memory.oom_control` through
//! `cgroup.event_control` and an eventfd; cgroup v2 `memory.events` (`oom_kill`) through inotify.

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// Is /sys/fs/cgroup a cgroup2 mount (pure v2)?
pub fn unified() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// (v1 memory path, v2 path) of a process, from /proc/PID/cgroup.
pub fn paths(pid: i32) -> (Option<String>, Option<String>) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    parse_paths(&text)
}

fn parse_paths(text: &str) -> (Option<String>, Option<String>) {
    let (mut v1, mut v2) = (None, None);
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2 = Some(path.to_string());
        } else if ctrls.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    (v1, v2)
}

pub enum OomWatch {
    V1 {
        efd: EventFd,
        dir: PathBuf,
        _ctl: File,
    },
    V2 {
        ino: Inotify,
        events: PathBuf,
        last: u64,
    },
}

fn oom_kills(events: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(events).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("oom_kill ")
            .and_then(|v| v.trim().parse().ok())
    })
}

impl OomWatch {
    pub fn new(pid: i32) -> Result<OomWatch, String> {
        let (v1, v2) = paths(pid);
        if let Some(p) = v1 {
            let dir = Path::new("/sys/fs/cgroup/memory").join(p.trim_start_matches('/'));
            let ctl = File::open(dir.join("memory.oom_control"))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let efd =
                EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                    .map_err(|e| e.to_string())?;
            let line = format!("{} {}", efd.as_fd().as_raw_fd(), ctl.as_raw_fd());
            std::fs::write(dir.join("cgroup.event_control"), line)
                .map_err(|e| format!("cgroup.event_control: {e}"))?;
            return Ok(OomWatch::V1 {
                efd,
                dir,
                _ctl: ctl,
            });
        }
        if let Some(p) = v2 {
            let events = Path::new("/sys/fs/cgroup")
                .join(p.trim_start_matches('/'))
                .join("memory.events");
            if !events.exists() {
                return Err(format!("no memory controller for pid {pid}"));
            }
            let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
                .map_err(|e| e.to_string())?;
            ino.add_watch(&events, AddWatchFlags::IN_MODIFY)
                .map_err(|e| e.to_string())?;
            let last = oom_kills(&events).unwrap_or(0);
            return Ok(OomWatch::V2 { ino, events, last });
        }
        Err(format!("no memory cgroup for pid {pid}"))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            OomWatch::V1 { efd, .. } => efd.as_fd(),
            OomWatch::V2 { ino, .. } => ino.as_fd(),
        }
    }

    /// After the fd became readable: (an OOM kill happened, the cgroup still exists).
    pub fn check(&mut self) -> (bool, bool) {
        match self {
            OomWatch::V1 { efd, dir, .. } => {
                let _ = efd.read();
                let alive = dir.exists();
                (alive, alive)
            }
            OomWatch::V2 { ino, events, last } => {
                let mut gone = false;
                while let Ok(evs) = ino.read_events() {
                    if evs.is_empty() {
                        break;
                    }
                    gone |= evs
                        .iter()
                        .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED));
                }
                match oom_kills(events) {
                    Some(n) if n > *last => {
                        *last = n;
                        (true, !gone)
                    }
                    Some(_) => (false, !gone),
                    None => (false, false),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_parsing() {
        let hybrid =
            "13:hugetlb:/\n7:memory:/default/c1\n4:cpu,cpuacct:/default/c1\n0::/default/c1\n";
        assert_eq!(
            parse_paths(hybrid),
            (Some("/default/c1".into()), Some("/default/c1".into()))
        );
        assert_eq!(parse_paths("0::/x\n"), (None, Some("/x".into())));
        assert_eq!(parse_paths(""), (None, None));
    }
}
