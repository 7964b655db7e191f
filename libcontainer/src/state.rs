//! A container's persistent state: `<root>/<id>/state.json`, written atomically under a
//! per-container lock, and the status derived from it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupPaths;
use crate::error::{Error, Result};
use crate::procfs;

pub const STATE_FILE: &str = "state.json";
/// The fifo that holds a created container's init until `start` opens it (runc's protocol).
pub const EXEC_FIFO: &str = "exec.fifo";
/// Present while `create` is still setting the container up.
pub const CREATING: &str = "creating";

/// The OCI version berth implements, as written in states and `features`.
pub const OCI_VERSION: &str = "1.2.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What berth records about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    /// The init process as seen from the host, with its start time (guards against pid reuse).
    pub pid: i32,
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The cgroup directories created for the container.
    pub cgroup: CgroupPaths,
    /// The config the container was created from (hooks, namespaces, process defaults).
    pub config: oci_spec::runtime::Spec,
}

/// The state JSON of the OCI runtime-spec plus runc's `rootfs`, `created` and `owner`, as
/// printed by `state` and `list --format json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
    pub owner: &'a str,
}

/// The state given to hooks on stdin (runtime-spec `state` without runc's extras).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HookState<'a> {
    oci_version: &'a str,
    id: &'a str,
    status: Status,
    /// Omitted when 0 (a stopped container), as runc's `omitempty`.
    #[serde(skip_serializing_if = "is_zero")]
    pid: i32,
    bundle: &'a Path,
    #[serde(skip_serializing_if = "no_annotations")]
    annotations: Option<&'a HashMap<String, String>>,
}

fn is_zero(pid: &i32) -> bool {
    *pid == 0
}

fn no_annotations(a: &Option<&HashMap<String, String>>) -> bool {
    a.is_none_or(|a| a.is_empty())
}

/// The JSON a hook reads on stdin (`pid` 0: none, as for a stopped container).
pub fn hook_state_json(
    id: &str,
    status: Status,
    pid: i32,
    bundle: &Path,
    annotations: Option<&HashMap<String, String>>,
) -> Vec<u8> {
    let s = HookState {
        oci_version: OCI_VERSION,
        id,
        status,
        pid,
        bundle,
        annotations,
    };
    serde_json::to_vec(&s).expect("state serializes")
}

impl State {
    /// Derive the status: never trusted from disk, always from the live process.
    pub fn status(&self, dir: &Path) -> Status {
        if self.pid <= 0 {
            return Status::Stopped;
        }
        match procfs::stat(self.pid) {
            Ok(Some(st))
                if st.start_time == self.pid_start && st.state != 'Z' && st.state != 'X' => {}
            _ => return Status::Stopped,
        }
        if dir.join(CREATING).exists() {
            Status::Creating
        } else if dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else if crate::cgroups::is_frozen(&self.cgroup) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    pub fn hook_state(&self, status: Status) -> Vec<u8> {
        let pid = if status == Status::Stopped {
            0
        } else {
            self.pid
        };
        hook_state_json(&self.id, status, pid, &self.bundle, Some(&self.annotations))
    }
}

/// An exclusive flock on a state directory, held by one open file description.
///
/// A flock belongs to the open file description, not to the process: a process forked while
/// the descriptor is open (the container's init, stage 1) shares it, and the lock then lives
/// until the last of them closes it, even if the berth that took it is killed. A forked child
/// must therefore close its copy first thing ([`StateDir::close_in_child`]), without unlocking.
/// Dropping the lock unlocks it; an error of that unlock is ignored (closing the descriptor
/// releases the lock anyway): unlike nix's `Flock`, whose drop panics on it.
struct Lock(Option<std::os::fd::OwnedFd>);

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            use std::os::fd::AsFd;
            let _ = crate::sys::flock(fd.as_fd(), libc::LOCK_UN);
        }
    }
}

/// A container's state directory, locked (flock) for as long as this value lives.
pub struct StateDir {
    pub path: PathBuf,
    lock: Lock,
    /// `create`'s `creating` marker, open for [`StateDir::record_cgroups`].
    creating: Option<File>,
}

impl StateDir {
    /// Create `<root>/<id>` for a new container. mkdir is atomic, so of two concurrent creates
    /// of one id exactly one gets here; the other gets [`Error::Exists`].
    pub fn create(root: &Path, id: &str) -> Result<StateDir> {
        // As runc: the root is the owner's alone (0700), a container's directory 0711, its
        // state.json 0600 (it holds the whole config, process.env included).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::io("create state root", root, e))?;
        let path = root.join(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()))
            }
            Err(e) => return Err(Error::io("create state dir", &path, e)),
        }
        let marked = lock(&path, None).and_then(|f| {
            let m = File::create(path.join(CREATING))
                .map_err(|e| Error::io("create", path.join(CREATING), e))?;
            Ok((f, m))
        });
        match marked {
            Ok((f, m)) => Ok(StateDir {
                path,
                lock: f,
                creating: Some(m),
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                Err(e)
            }
        }
    }

    /// Open and lock the state directory of an existing container.
    pub fn open(root: &Path, id: &str) -> Result<StateDir> {
        Self::open_within(root, id, None)
    }

    /// [`StateDir::open`], waiting at most `timeout` for the lock (`None`: no limit). Only a
    /// live berth command holds a container's lock (no container process ever inherits it),
    /// so a limit only matters against one that is stuck; `delete --force` must end anyway.
    pub fn open_within(root: &Path, id: &str, timeout: Option<Duration>) -> Result<StateDir> {
        crate::config::validate_id(id)?;
        let path = root.join(id);
        let f = lock(&path, timeout).map_err(|e| match e {
            Error::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound => {
                Error::NotFound(id.to_string())
            }
            e => e,
        })?;
        Ok(StateDir {
            path,
            lock: f,
            creating: None,
        })
    }

    /// In a process forked (cloned) while this lock is held: close this copy of the lock's
    /// descriptor without unlocking, so that the lock stays the parent's and dies with it.
    /// The first thing a child does; an unlock here would release the parent's lock.
    pub fn close_in_child(mut self) {
        drop(self.lock.0.take());
        drop(self.creating.take());
    }

    pub fn read(&self) -> Result<State> {
        read_state(&self.path)
    }

    /// The status of the container, judged under its lock. `create` holds the lock until it
    /// is done, so a `creating` marker seen here was left by a create that died: its init, if
    /// still alive, either reported ready (it then waits on the exec fifo, fully set up) or is
    /// about to exit on its own (it finds its channel to berth closed). Either way it is
    /// `created` for start and delete (the stale marker is removed); `start` notices an init
    /// that exits instead.
    pub fn status(&self, state: &State) -> Status {
        match state.status(&self.path) {
            Status::Creating => {
                let _ = std::fs::remove_file(self.path.join(CREATING));
                state.status(&self.path)
            }
            s => s,
        }
    }

    /// Write state.json atomically: a temporary file renamed over it. Not fsynced, as runc and
    /// crun do not: the root is meant for tmpfs, and a reboot ends the containers it describes
    /// anyway; a crash of berth itself leaves the old file or the new one, never a mix.
    pub fn write(&self, state: &State) -> Result<()> {
        let data = serde_json::to_vec(state).expect("state serializes");
        write_atomic_mode(&self.path.join(STATE_FILE), &data, 0o600)
    }

    /// Record in the `creating` marker the cgroup `create` is about to make, before it makes
    /// it: a create killed before state.json exists leaves what `delete` needs to remove it.
    /// One write of a few hundred bytes (a kill lands before or after it, not inside).
    pub fn record_cgroups(&self, paths: &CgroupPaths) -> Result<()> {
        use std::io::Write;
        let data = serde_json::to_vec(paths).expect("cgroup paths serialize");
        match self.creating.as_ref() {
            Some(mut f) => f
                .write_all(&data)
                .map_err(|e| Error::io("write", self.path.join(CREATING), e)),
            None => Ok(()),
        }
    }

    /// What a create that died before writing state.json recorded (see
    /// [`StateDir::record_cgroups`]): the cgroup it made, if it got that far.
    pub fn recorded_cgroups(&self) -> Option<CgroupPaths> {
        let data = std::fs::read(self.path.join(CREATING)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// The container is set up: drop the `creating` marker.
    pub fn created(&self) -> Result<()> {
        let p = self.path.join(CREATING);
        std::fs::remove_file(&p).map_err(|e| Error::io("remove", p, e))
    }

    /// Remove the directory and everything in it.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.path)
            .map_err(|e| Error::io("remove state dir", &self.path, e))
    }
}

/// Read `<dir>/state.json` without taking the lock (it is only ever replaced atomically).
pub fn read_state(dir: &Path) -> Result<State> {
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            return Err(Error::NotFound(id));
        }
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::config(path.display().to_string(), format!("corrupt state: {e}")))
}

fn lock(path: &Path, timeout: Option<Duration>) -> Result<Lock> {
    use std::os::fd::AsFd;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io("open state dir", path, e))?;
    let fd = std::os::fd::OwnedFd::from(f);
    let Some(timeout) = timeout else {
        flock_retrying(fd.as_fd(), libc::LOCK_EX)
            .map_err(|e| Error::sys(format!("lock {path:?}"), e))?;
        return Ok(Lock(Some(fd)));
    };
    match flock_retrying(fd.as_fd(), libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => return Ok(Lock(Some(fd))),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
        Err(e) => return Err(Error::sys(format!("lock {path:?}"), e)),
    }
    // Held: wait for it on another thread, for at most `timeout`. The lock is the open file
    // description's, so the thread taking it on a duplicate takes it for this descriptor. A
    // thread left blocked after the timeout holds only that duplicate: were it to get the lock
    // later, the lock would die with this process.
    let dup = fd
        .try_clone()
        .map_err(|e| Error::sys(format!("lock {path:?}"), e))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = flock_retrying(dup.as_fd(), libc::LOCK_EX);
        let _ = tx.send(r);
        drop(dup);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(Lock(Some(fd))),
        Ok(Err(e)) => Err(Error::sys(format!("lock {path:?}"), e)),
        Err(_) => Err(Error::InvalidState(format!(
            "the state directory {path:?} is locked by another berth command that did not \
             finish within {} s; retry when it is done",
            timeout.as_secs()
        ))),
    }
}

fn flock_retrying(fd: std::os::fd::BorrowedFd, op: libc::c_int) -> std::io::Result<()> {
    loop {
        match crate::sys::flock(fd, op) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Write a file atomically (mode 0644): `<path>.tmp<pid>`, renamed over `path`.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_mode(path, data, 0o644)
}

/// [`write_atomic`] with the file's mode.
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("write", path, e)
    })
}

/// The ids of the containers under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(Error::io("read", root, e)),
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            ids.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = std::env::temp_dir().join(format!("berth-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `delete --force` waits for a held lock in bounded time, and gets it once it is free.
    #[test]
    fn lock_wait_is_bounded() {
        let root = std::env::temp_dir().join(format!("berth-lock-test-{}", std::process::id()));
        let held = StateDir::create(&root, "x").unwrap();
        let t = std::time::Instant::now();
        let r = StateDir::open_within(&root, "x", Some(Duration::from_millis(200)));
        assert!(matches!(r, Err(Error::InvalidState(_))), "lock not held");
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(held);
        let again = StateDir::open_within(&root, "x", Some(Duration::from_millis(200))).unwrap();
        again.remove().unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn only_one_create_of_an_id_wins() {
        let root = std::env::temp_dir().join(format!("berth-root-test-{}", std::process::id()));
        let first = StateDir::create(&root, "x").unwrap();
        assert!(matches!(
            StateDir::create(&root, "x"),
            Err(Error::Exists(_))
        ));
        first.remove().unwrap();
        assert!(matches!(
            StateDir::open(&root, "x"),
            Err(Error::NotFound(_))
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
