//! Operations on an existing container: start, kill, delete, state, list.

use std::os::fd::AsFd;
use std::path::Path;

use crate::cgroups;
use crate::error::{Error, Result};
use crate::state::{self, OciState, State, StateDir, Status, EXEC_FIFO};
use crate::{hooks, procfs, sys};

/// A container and its derived status.
pub struct Listed {
    pub state: State,
    pub status: Status,
    pub owner: String,
}

impl Listed {
    pub fn oci_state(&self) -> OciState<'_> {
        OciState {
            oci_version: state::OCI_VERSION,
            id: &self.state.id,
            pid: if self.status == Status::Stopped {
                0
            } else {
                self.state.pid
            },
            status: self.status,
            bundle: &self.state.bundle,
            rootfs: &self.state.rootfs,
            created: &self.state.created,
            annotations: &self.state.annotations,
            owner: &self.owner,
        }
    }
}

/// The user owning the state directory, by name from /etc/passwd (read directly: berth is
/// linked statically, and NSS modules cannot be loaded into a static binary).
fn owner_of(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata(dir).map(|m| m.uid()) else {
        return String::new();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    user_name(&passwd, uid).map_or_else(|| format!("#{uid}"), str::to_string)
}

fn user_name(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?.parse::<u32>().ok()?;
        (id == uid).then_some(name)
    })
}

/// The state of one container, without taking its lock.
pub fn load(root: &Path, id: &str) -> Result<Listed> {
    crate::config::validate_id(id)?;
    let dir = root.join(id);
    let state = state::read_state(&dir)?;
    let status = state.status(&dir);
    Ok(Listed {
        state,
        status,
        owner: owner_of(&dir),
    })
}

/// All containers under `root` that have a state.
pub fn list(root: &Path) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    for id in state::list_ids(root)? {
        match load(root, &id) {
            Ok(l) => out.push(l),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A pidfd for the container's init, if it is still the process that was created.
pub(crate) fn init_pidfd(state: &State) -> Option<std::os::fd::OwnedFd> {
    let fd = sys::pidfd_open(state.pid).ok()?;
    // Checked after opening: the pidfd now pins the process, so a match is not a reused pid.
    match procfs::stat(state.pid) {
        Ok(Some(st)) if st.start_time == state.pid_start => Some(fd),
        _ => None,
    }
}

/// `start`: release a created container's init through the exec fifo. Waits until init has
/// exec'd the process (the fifo closes on exec) so that an exec failure is start's error.
/// A failing poststart hook is an error too, and stops the container (runtime-spec 1.3).
pub fn start(root: &Path, id: &str) -> Result<()> {
    let dir = StateDir::open(root, id)?;
    let state = dir.read()?;
    match dir.status(&state) {
        Status::Created => {}
        Status::Stopped => {
            return Err(Error::InvalidState(
                "cannot start a container that has stopped".into(),
            ))
        }
        Status::Paused => {
            return Err(Error::InvalidState(
                "cannot start a paused container".into(),
            ))
        }
        s => {
            return Err(Error::InvalidState(format!(
                "cannot start an already {s} container"
            )))
        }
    }
    // Pin init before opening the fifo: the open releases it, and a short process may exit and be
    // reaped by its parent (a shim, conmon) before a pidfd opened afterwards could find it.
    let pidfd = init_pidfd(&state)
        .ok_or_else(|| Error::InvalidState("cannot start a container that has stopped".into()))?;
    let fifo_path = dir.path.join(EXEC_FIFO);
    let fifo = nix::fcntl::open(
        &fifo_path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::io("open", &fifo_path, e.into()))?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r.map_err(|e| Error::sys("poll exec fifo", e))?,
        };
        let fifo_ev = fds[0].revents().unwrap_or(PollFlags::empty());
        let init_exited = fds[1].revents().is_some_and(|r| !r.is_empty());
        if fifo_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            match nix::unistd::read(&fifo, &mut buf) {
                Ok(0) => break,
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::sys("read exec fifo", e)),
            }
        } else if init_exited {
            return Err(Error::InvalidState(
                "container init exited before it could be started".into(),
            ));
        }
    }
    let _ = std::fs::remove_file(&fifo_path);
    match data.split_first() {
        Some((b'0', [])) => {}
        Some((b'0', rest)) => return Err(Error::Start(String::from_utf8_lossy(rest).into_owned())),
        _ => {
            return Err(Error::InvalidState(
                "container init exited before it could be started".into(),
            ))
        }
    }
    run_poststart(&state, pidfd.as_fd())
}

/// Run poststart hooks (`start`, and `run` through `create::NewContainer::start`). Since
/// runtime-spec 1.3 (and in runc) a failure is an error: the container's init is killed, and
/// the error names the hook.
pub(crate) fn run_poststart(state: &State, init: std::os::fd::BorrowedFd) -> Result<()> {
    let hooks = state
        .config
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().as_ref());
    let Err(e) = hooks::run(
        Some(&state.bundle),
        "poststart",
        hooks,
        &state.hook_state(Status::Running),
    ) else {
        return Ok(());
    };
    let _ = sys::pidfd_send_signal(init, libc::SIGKILL);
    let _ = sys::pidfd_wait(init, Some(std::time::Duration::from_secs(5)));
    Err(e.into())
}

/// `kill`: send a signal to init, or with `all` to every process of the container's cgroup.
pub fn kill(root: &Path, id: &str, sig: i32, all: bool) -> Result<()> {
    let l = load(root, id)?;
    if l.status == Status::Stopped && !all {
        return Err(Error::InvalidState("container not running".into()));
    }
    if all {
        return signal_all(&l.state, sig);
    }
    let pidfd =
        init_pidfd(&l.state).ok_or_else(|| Error::InvalidState("container not running".into()))?;
    sys::pidfd_send_signal(pidfd.as_fd(), sig)
        .map_err(|e| Error::sys(format!("kill init (pid {})", l.state.pid), e))
}

/// Signal every process of the cgroup, frozen meanwhile so that none can fork away between
/// the listing and the signal (runc does the same, and thaws afterwards).
fn signal_all(state: &State, sig: i32) -> Result<()> {
    let cg = cgroups::manager_for(&state.cgroup);
    let frozen = cg.freeze(true).is_ok();
    let result = (|| {
        for pid in cg.pids()? {
            match sys::kill(pid, sig) {
                Err(e) if e.raw_os_error() != Some(libc::ESRCH) => {
                    return Err(Error::sys(format!("kill pid {pid}"), e))
                }
                _ => {}
            }
        }
        Ok(())
    })();
    if frozen {
        cg.freeze(false)?;
    }
    result
}

/// How long `delete --force` waits for a container's lock held by another berth command.
const FORCE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `delete`: remove a stopped (or, with `force`, any) container. Returns warnings of failed
/// poststop hooks.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<Vec<String>> {
    // `delete --force` ends in bounded time even if another berth command is stuck holding
    // the lock (no container process ever holds it; see state::Lock).
    let wait = force.then_some(FORCE_LOCK_WAIT);
    let dir = match StateDir::open_within(root, id, wait) {
        // As runc: forcing the deletion of a container that is already gone succeeds.
        Err(Error::NotFound(_)) if force => return Ok(Vec::new()),
        r => r?,
    };
    let state = match dir.read() {
        Ok(s) => s,
        Err(Error::NotFound(_)) => {
            // A create that died before writing state (we hold its lock, so it is not running).
            // Its cgroup, if it made one, is recorded in the `creating` marker; what runs in it
            // is what that create started (it refuses a cgroup in use), and is killed.
            if let Some(paths) = dir.recorded_cgroups() {
                remove_cgroup_of_dead_create(&paths)?;
            }
            dir.remove()?;
            return if force {
                Ok(Vec::new())
            } else {
                Err(Error::NotFound(id.into()))
            };
        }
        Err(e) => return Err(e),
    };
    let status = dir.status(&state);
    match status {
        Status::Stopped | Status::Created => {}
        s if force => {
            let _ = s;
        }
        s => {
            return Err(Error::InvalidState(format!(
                "cannot delete container {id} that is not stopped: {s}"
            )))
        }
    }
    if status != Status::Stopped {
        if let Some(pidfd) = init_pidfd(&state) {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            // A frozen init acts on the SIGKILL only once thawed (a paused container, or one
            // frozen by hand): thaw it, or the wait below would last its whole bound.
            if cgroups::is_frozen(&state.cgroup) {
                let _ = cgroups::manager_for(&state.cgroup).freeze(false);
            }
            let _ = sys::pidfd_wait(pidfd.as_fd(), Some(std::time::Duration::from_secs(5)));
        }
    }
    // runc's `delete` runs them in the caller's cwd (only create and run chdir to the bundle).
    destroy(dir, &state, None)
}

/// Kill what is left in the cgroup, remove it, run poststop hooks (in `hook_cwd`, else this
/// process's cwd), remove the state.
fn destroy(dir: StateDir, state: &State, hook_cwd: Option<&Path>) -> Result<Vec<String>> {
    // With a pid namespace of its own, the container's processes died with its init. Without
    // one they may outlive it, so kill what is left in the cgroup (runc does the same, and only
    // then: a cgroup may be shared with other containers).
    remove_cgroup(&state.cgroup, !has_own_pid_ns(state))?;
    // runtime-spec: a failing poststop hook is logged and the remaining ones still run (runc
    // stops at the first failure; berth follows the spec, see README).
    let hooks = state
        .config
        .hooks()
        .as_ref()
        .and_then(|h| h.poststop().as_ref());
    let warnings = hooks::run_all(
        hook_cwd,
        "poststop",
        hooks,
        &state.hook_state(Status::Stopped),
    )
    .into_iter()
    .map(|e| e.to_string())
    .collect();
    dir.remove()?;
    Ok(warnings)
}

/// Kill what a dead create started in its cgroup (its init, or stage 1 and the init it
/// forked: they exit by themselves once they find berth gone, but may not have yet), then
/// remove the cgroup.
fn remove_cgroup_of_dead_create(paths: &cgroups::CgroupPaths) -> Result<()> {
    remove_cgroup(paths, true)
}

/// Thaw a container's cgroup, with `kill` SIGKILL what is in it (until it is empty, for at
/// most a second), and remove it.
fn remove_cgroup(paths: &cgroups::CgroupPaths, kill: bool) -> Result<()> {
    let cg = cgroups::manager_for(paths);
    if cgroups::is_frozen(paths) {
        let _ = cg.freeze(false);
    }
    if kill {
        for _ in 0..100 {
            let pids = cg.pids().unwrap_or_default();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    Ok(cg.destroy()?)
}

fn has_own_pid_ns(state: &State) -> bool {
    state
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_none()
            })
        })
}

/// Remove a container whose processes CRIU dumped and killed (`checkpoint` without
/// `--leave-running`), as runc does: what is left in its cgroup is killed, poststop hooks run.
pub(crate) fn destroy_checkpointed(dir: StateDir, state: &State) -> Result<Vec<String>> {
    destroy(dir, state, None)
}

/// Remove a container after its process exited (`run` in the foreground).
pub fn destroy_stopped(root: &Path, id: &str) -> Result<Vec<String>> {
    let dir = StateDir::open(root, id)?;
    let state = dir.read()?;
    destroy(dir, &state, Some(&state.bundle))
}

/// `pause`: freeze every process of a running container.
pub fn pause(root: &Path, id: &str) -> Result<()> {
    set_frozen(root, id, true)
}

/// `resume`: thaw a paused container.
pub fn resume(root: &Path, id: &str) -> Result<()> {
    set_frozen(root, id, false)
}

fn set_frozen(root: &Path, id: &str, frozen: bool) -> Result<()> {
    let dir = StateDir::open(root, id)?;
    let state = dir.read()?;
    let (want, name) = if frozen {
        (Status::Running, "running")
    } else {
        (Status::Paused, "paused")
    };
    let s = state.status(&dir.path);
    if s != want {
        return Err(Error::InvalidState(format!("container not {name}: {s}")));
    }
    Ok(cgroups::manager_for(&state.cgroup).freeze(frozen)?)
}

/// `update`: apply `resources` (already merged with the container's current ones by the
/// caller) and record them in the container's state.
pub fn update(root: &Path, id: &str, resources: oci_spec::runtime::LinuxResources) -> Result<()> {
    let dir = StateDir::open(root, id)?;
    let mut state = dir.read()?;
    if state.status(&dir.path) == Status::Stopped {
        return Err(Error::InvalidState("container not running".into()));
    }
    let mut resources = resources;
    let cg = cgroups::manager_for(&state.cgroup);
    if let Err(e) = cg.apply(&resources, None) {
        // As runc's Container.Set: put the recorded resources back (the files written before
        // the failing one changed already), and record nothing new.
        let old = state
            .config
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref());
        if let Some(Err(e2)) = old.map(|old| cg.apply(old, None)) {
            return Err(cgroups::CgroupError::Other(format!(
                "{e}; setting the previous resources back failed too ({e2}): the cgroup files \
                 may now differ from the recorded resources"
            ))
            .into());
        }
        return Err(e.into());
    }
    if let Some(linux) = state.config.linux_mut() {
        // An update never changes device rules (as runc): the recorded ones stay.
        resources.set_devices(linux.resources().as_ref().and_then(|r| r.devices().clone()));
        linux.set_resources(Some(resources));
    }
    dir.write(&state)
}

/// The resources a container was created with (or last updated to).
pub fn resources(root: &Path, id: &str) -> Result<oci_spec::runtime::LinuxResources> {
    let l = load(root, id)?;
    Ok(l.state
        .config
        .linux()
        .as_ref()
        .and_then(|x| x.resources().clone())
        .unwrap_or_else(|| serde_json::from_str("{}").expect("empty resources")))
}

/// The pids (as seen from the host) of every process of a container, from its cgroup.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let l = load(root, id)?;
    Ok(cgroups::manager_for(&l.state.cgroup).pids()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_names_from_passwd() {
        let p = "root:x:0:0:root:/root:/bin/sh\nbad\nuser:x:1000:1000::/home/user:/bin/sh\n";
        assert_eq!(super::user_name(p, 0), Some("root"));
        assert_eq!(super::user_name(p, 1000), Some("user"));
        assert_eq!(super::user_name(p, 7), None);
    }
}
