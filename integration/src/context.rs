//! Per-run state shared by all tests, and the checks for things left behind.

use std::cell::{Cell, RefCell};
use std::fs;
use std::path::{Path, PathBuf};

use crate::fixture::Bundle;
use crate::harness::Failure;
use crate::runtime::Runtime;

pub struct Ctx {
    pub rt: Runtime,
    /// Per-run temp dir (`/tmp/berth-it-<pid>`).
    pub tmp: PathBuf,
    /// The busybox rootfs every bundle copies.
    pub rootfs: PathBuf,
    /// Prefix of every container id of this run (`it-<pid>-`).
    pub prefix: String,
    seq: Cell<u32>,
    dir_seq: Cell<u32>,
    /// Every container id handed out.
    pub ids: RefCell<Vec<String>>,
    /// What bundle guards found (and cleaned up) after `delete --force`.
    pub leaks: RefCell<Vec<String>>,
    /// The image, containerd and podman of the client tests (started lazily).
    pub clients: crate::clients::Clients,
}

impl Ctx {
    pub fn new(rt: Runtime, tmp: PathBuf, rootfs: PathBuf) -> Ctx {
        Ctx {
            clients: crate::clients::Clients::new(tmp.join("clients")),
            rt,
            tmp,
            rootfs,
            prefix: format!("it-{}-", std::process::id()),
            seq: Cell::new(0),
            dir_seq: Cell::new(0),
            ids: RefCell::new(Vec::new()),
            leaks: RefCell::new(Vec::new()),
        }
    }

    /// A new unique container id.
    pub fn new_id(&self) -> String {
        let n = self.seq.get() + 1;
        self.seq.set(n);
        let id = format!("{}{n}", self.prefix);
        self.ids.borrow_mut().push(id.clone());
        id
    }

    /// A unique bundle directory name for `id`.
    pub fn new_dir_name(&self, id: &str) -> String {
        let n = self.dir_seq.get() + 1;
        self.dir_seq.set(n);
        format!("{id}.{n}")
    }

    /// A fresh bundle with the base config.
    pub fn bundle(&self) -> Result<Bundle<'_>, Failure> {
        Bundle::new(self)
    }

    /// A scratch directory of this run (not inside any bundle).
    pub fn scratch_dir(&self, name: &str) -> Result<PathBuf, Failure> {
        let n = self.dir_seq.get() + 1;
        self.dir_seq.set(n);
        let p = self.tmp.join("scratch").join(format!("{name}.{n}"));
        fs::create_dir_all(&p)?;
        Ok(p)
    }

    /// Describe everything of container `id` (bundle `dir`) still on the host:
    /// its state dir, its cgroup dirs, mounts under its bundle, its processes.
    pub fn leftovers(&self, id: &str, dir: &Path) -> Vec<String> {
        let mut left = Vec::new();
        let state = self.rt.root.join(id);
        if fs::symlink_metadata(&state).is_ok() {
            left.push(format!("state dir {}", state.display()));
        }
        for cg in cgroup_dirs(id) {
            left.push(format!("cgroup {}", cg.display()));
        }
        for m in mounts_under(dir) {
            left.push(format!("mount {m}"));
        }
        for pid in processes_of(id, dir) {
            left.push(format!("process {pid} ({})", comm(pid)));
        }
        left
    }
}

impl Ctx {
    /// After `delete --force`: record anything of container `id` still on the
    /// host, then remove it so later tests and the machine stay clean. Only
    /// this run's own containers are touched: processes in `/berth-test/<id>`
    /// or rooted in its bundle (killed by pid), its empty cgroup dirs and its
    /// state dir. Mounts are only recorded (the suite runs in a private mount
    /// namespace, so they vanish with it).
    pub fn reap(&self, id: &str, dir: &Path) {
        let left = self.leftovers(id, dir);
        if left.is_empty() {
            return;
        }
        self.leaks
            .borrow_mut()
            .push(format!("after delete --force of {id}: {}", left.join(", ")));
        for pid in processes_of(id, dir) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output();
        }
        crate::harness::wait_until(std::time::Duration::from_secs(5), || {
            processes_of(id, dir).is_empty()
        });
        for cg in cgroup_dirs(id) {
            let _ = fs::remove_dir(&cg);
        }
        let state = self.rt.root.join(id);
        if fs::symlink_metadata(&state).is_ok() {
            let _ = fs::remove_dir_all(&state);
        }
    }
}

/// Existing `/sys/fs/cgroup/*/berth-test` directories (plus a unified root's).
pub fn cgroup_parents() -> Vec<PathBuf> {
    let mut bases = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        bases.extend(rd.flatten().map(|e| e.path()));
    }
    bases
        .into_iter()
        .map(|b| b.join("berth-test"))
        .filter(|p| p.is_dir())
        .collect()
}

/// Remove the (empty) `berth-test` parents that were not there `before` this run.
pub fn remove_new_cgroup_parents(before: &[PathBuf]) {
    for p in cgroup_parents() {
        if !before.contains(&p) {
            let _ = fs::remove_dir(&p);
        }
    }
}

/// Existing `/sys/fs/cgroup/*/berth-test/<id>` directories (plus a unified root).
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut bases = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            bases.push(e.path());
        }
    }
    for base in bases {
        let p = base.join("berth-test").join(id);
        if p.is_dir() {
            found.push(p);
        }
    }
    found
}

/// Mount points (from /proc/self/mountinfo) at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| *mp == dir || mp.starts_with(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

/// Live processes in a `/berth-test/<id>` cgroup or whose root is under `dir`.
pub fn processes_of(id: &str, dir: &Path) -> Vec<u32> {
    let cg = format!("/berth-test/{id}");
    let dir = dir.to_string_lossy();
    let mut pids = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let in_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|s| {
                s.lines().any(|l| {
                    l.splitn(3, ':')
                        .nth(2)
                        .is_some_and(|p| p == cg || p.starts_with(&format!("{cg}/")))
                })
            })
            .unwrap_or(false);
        let rooted = fs::read_link(format!("/proc/{pid}/root"))
            .map(|r| {
                let r = r.to_string_lossy();
                r == dir || r.starts_with(&format!("{dir}/"))
            })
            .unwrap_or(false);
        if (in_cgroup || rooted) && !is_zombie(pid) {
            pids.push(pid);
        }
    }
    pids
}

fn is_zombie(pid: u32) -> bool {
    proc_stat(pid).is_none_or(|st| st.state == 'Z')
}

/// What /proc/PID/stat says of a process: its command name, state letter and parent.
pub struct ProcStat {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
}

/// /proc/PID/stat of `pid`, or None when it is gone (or unreadable).
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may hold spaces and ')': split after the last ')'.
    let (head, tail) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let mut f = tail.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some(ProcStat { comm, state, ppid })
}

/// The command name of `pid`.
pub fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Is `pid` alive (and not a zombie)?
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}
