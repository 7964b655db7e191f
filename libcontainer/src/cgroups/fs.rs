//! The cgroupfs manager: one directory per mounted hierarchy.

use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::procfs::{parse_mountinfo, MountEntry};

use nix::fcntl::OFlag;
use oci_spec::runtime::LinuxResources;

use super::{write_file, CgroupError, CgroupPaths, Hierarchies, Manager};

pub struct FsManager {
    paths: CgroupPaths,
}

/// One mounted cgroup hierarchy: its controllers (`""` for cgroup2) and mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub controllers: String,
    pub mount_point: PathBuf,
}

/// The cgroup hierarchies mounted in this mount namespace, from /proc/self/mountinfo.
pub fn hierarchies() -> Result<Vec<Hierarchy>, CgroupError> {
    let p = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(p).map_err(|e| CgroupError::io("read", p, e))?;
    Ok(parse_hierarchies(&text))
}

/// The mount that a lookup of `path` ends on: path resolution simulated on the mount tree
/// (parent ids), from the mounts whose parent is not listed (the root) down through each
/// prefix of `path`, following every mount stacked on a point. A mount hidden by another one
/// on its point or on a parent directory is never the answer, whatever order mountinfo lists
/// them in: `mount --move` keeps a mount's id and so its place in the list, so a tmpfs
/// moved onto /sys/fs/cgroup with the hierarchies already moved into it comes after them.
/// `ids`: the ids of `mounts`.
fn visible_at(
    mounts: &[MountEntry],
    ids: &std::collections::HashSet<u64>,
    path: &Path,
) -> Option<u64> {
    // `None` is the root above every mount whose parent is not in this namespace's view.
    let mut cur: Option<u64> = None;
    let mut prefix = PathBuf::new();
    // Each step goes to another mount: at most one step per mount (a cycle of parent ids
    // would be a broken mountinfo, not a loop).
    let mut steps = 0;
    for comp in path.components() {
        prefix.push(comp);
        // Several mounts on one point and one parent should not happen (the kernel stacks a
        // new mount on the one it covers); if it does, the last listed wins.
        while let Some(next) = mounts
            .iter()
            .rev()
            .find(|m| {
                Some(m.id) != cur
                    && Path::new(&m.mount_point) == prefix
                    && match cur {
                        None => !ids.contains(&m.parent) || m.parent == m.id,
                        Some(c) => m.parent == c,
                    }
            })
            .map(|m| m.id)
        {
            cur = Some(next);
            steps += 1;
            if steps > mounts.len() {
                return None;
            }
        }
    }
    cur
}

pub fn parse_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mounts = parse_mountinfo(mountinfo);
    let ids = mounts.iter().map(|m| m.id).collect();
    // Every cgroup mount that a lookup of its mount point reaches (runc picks by mount point,
    // fstype and super options); a whole hierarchy (root "/") before a bind of a part of one.
    let mut found: Vec<(&MountEntry, String)> = Vec::new();
    for m in &mounts {
        let controllers = match m.fstype {
            "cgroup2" => String::new(),
            "cgroup" => m
                .super_opts
                .split(',')
                .filter(|o| {
                    !matches!(
                        *o,
                        "rw" | "ro"
                            | "relatime"
                            | "noatime"
                            | "nosuid"
                            | "nodev"
                            | "noexec"
                            | "xattr"
                            | "clone_children"
                            | "noprefix"
                            | "cpuset_v2_mode"
                    ) && !o.starts_with("release_agent=")
                })
                .collect::<Vec<_>>()
                .join(","),
            _ => continue,
        };
        if visible_at(&mounts, &ids, Path::new(&m.mount_point)) != Some(m.id) {
            continue;
        }
        found.push((m, controllers));
    }
    found.sort_by_key(|(m, _)| m.root != "/");
    let mut out: Vec<Hierarchy> = Vec::new();
    for (m, controllers) in found {
        if out.iter().any(|h| h.controllers == controllers) {
            continue;
        }
        out.push(Hierarchy {
            controllers,
            mount_point: PathBuf::from(&m.mount_point),
        });
    }
    out
}

/// This process's own cgroup in the hierarchy with `controllers`, from /proc/self/cgroup.
fn own_cgroup(proc_self_cgroup: &str, controllers: &str) -> PathBuf {
    for line in proc_self_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or("/"));
        let same = if controllers.is_empty() {
            ctrls.is_empty()
        } else {
            let mut a: Vec<_> = ctrls.split(',').collect();
            let mut b: Vec<_> = controllers.split(',').collect();
            a.sort_unstable();
            b.sort_unstable();
            a == b
        };
        if same {
            return PathBuf::from(path);
        }
    }
    PathBuf::from("/")
}

/// Whether the caller (its effective ids) may make `dir`: its nearest existing ancestor is
/// writable (or it exists and is).
fn may_create(dir: &Path) -> bool {
    let mut d = dir;
    loop {
        if d.exists() {
            return nix::unistd::faccessat(
                nix::fcntl::AT_FDCWD,
                d,
                nix::unistd::AccessFlags::W_OK,
                nix::fcntl::AtFlags::AT_EACCESS,
            )
            .is_ok();
        }
        match d.parent() {
            Some(p) => d = p,
            None => return false,
        }
    }
}

impl FsManager {
    /// Absolute `cgroupsPath` is below each hierarchy's root; a relative or empty one is below
    /// the caller's own cgroup (empty means `<id>`), exactly as runc does.
    ///
    /// `rootless` (a caller other than the host's root) with an empty `cgroupsPath`: the
    /// hierarchies the caller may not write are left out (none at all is fine), as runc's
    /// rootless manager ignores their permission errors; with a `cgroupsPath` they are errors.
    pub fn new(
        cgroups_path: Option<&Path>,
        id: &str,
        rootless: bool,
    ) -> Result<FsManager, CgroupError> {
        let hier = hierarchies()?;
        if hier.is_empty() {
            return Err(CgroupError::Other("no cgroup hierarchy is mounted".into()));
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let given = cgroups_path.is_some_and(|p| !p.as_os_str().is_empty());
        let rel = match cgroups_path {
            Some(p) if given => p.to_path_buf(),
            _ => PathBuf::from(id),
        };
        let mut paths = CgroupPaths::default();
        for h in hier {
            let inner = if rel.is_absolute() {
                rel.clone()
            } else {
                own_cgroup(&own, &h.controllers).join(&rel)
            };
            let dir = h
                .mount_point
                .join(inner.strip_prefix("/").unwrap_or(&inner));
            // Rootless without a cgroupsPath: a hierarchy the caller may not write is left
            // out, and so is cgroup2 always: its directory would be below the caller's own
            // cgroup, which holds the caller, where the kernel refuses to enable controllers
            // (EBUSY) — runc's rootless fs2 manager ignores exactly these errors.
            if rootless && !given && (h.controllers.is_empty() || !may_create(&dir)) {
                continue;
            }
            paths.dirs.insert(h.controllers.clone(), dir);
            paths.mounts.insert(h.controllers, h.mount_point);
        }
        Ok(FsManager { paths })
    }

    pub fn from_paths(paths: CgroupPaths) -> FsManager {
        FsManager { paths }
    }

    /// The (controllers, directory) of the hierarchies `which`.
    fn dirs(&self, which: Hierarchies) -> impl Iterator<Item = (&str, &Path)> {
        self.paths
            .dirs
            .iter()
            .filter(move |(c, _)| which == Hierarchies::All || !c.is_empty())
            .map(|(c, d)| (c.as_str(), d.as_path()))
    }
}

/// v1: write the state, then wait while the kernel is FREEZING (there is no notification).
fn freeze_v1(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let p = dir.join("freezer.state");
    for _ in 0..1000 {
        write_file(&p, want)?;
        let now = std::fs::read_to_string(&p).map_err(|e| CgroupError::io("read", &p, e))?;
        if now.trim() == want {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(CgroupError::Other(format!(
        "{}: still not {want} after 1 s",
        p.display()
    )))
}

/// v2: write cgroup.freeze, then wait for cgroup.events to say so (it notifies pollers).
fn freeze_v2(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    use std::os::fd::AsFd;
    write_file(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let p = dir.join("cgroup.events");
    let f = std::fs::File::open(&p).map_err(|e| CgroupError::io("open", &p, e))?;
    for _ in 0..100 {
        let now = std::fs::read_to_string(&p).map_err(|e| CgroupError::io("read", &p, e))?;
        if now.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        let mut fds = [nix::poll::PollFd::new(
            f.as_fd(),
            nix::poll::PollFlags::POLLPRI,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10u16));
    }
    Err(CgroupError::Other(format!(
        "{}: not {want} after 1 s",
        p.display()
    )))
}

/// A new cpuset cgroup starts with no cpus and mems; copy them from the parent (runc does too),
/// else no process can join it. A parent that is empty as well was just made by a concurrent
/// create that has not filled it yet: it is filled the same way first, up to the mount point
/// `root` (runc's cpusetEnsureParent), so that two creates under one new parent cannot leave
/// either child empty (ENOSPC when joining).
fn init_cpuset(dir: &Path, root: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        cpuset_value(dir, file, root)?;
    }
    Ok(())
}

fn cpuset_value(dir: &Path, file: &str, root: &Path) -> Result<String, CgroupError> {
    let p = dir.join(file);
    let cur = std::fs::read_to_string(&p).map_err(|e| CgroupError::io("read", &p, e))?;
    let cur = cur.trim();
    if !cur.is_empty() || dir == root || !dir.starts_with(root) {
        return Ok(cur.to_string());
    }
    let Some(parent) = dir.parent() else {
        return Ok(cur.to_string());
    };
    let v = cpuset_value(parent, file, root)?;
    write_file(&p, &v)?;
    Ok(v)
}

impl Manager for FsManager {
    fn paths(&self) -> &CgroupPaths {
        &self.paths
    }

    fn create(&self) -> Result<(), CgroupError> {
        for (controllers, dir) in &self.paths.dirs {
            let is_cpuset = controllers.split(',').any(|c| c == "cpuset");
            std::fs::create_dir_all(dir).map_err(|e| CgroupError::io("mkdir", dir, e))?;
            if is_cpuset {
                let root = self
                    .paths
                    .mounts
                    .get(controllers)
                    .map_or(Path::new("/sys/fs/cgroup/cpuset"), |m| m.as_path());
                init_cpuset(dir, root)?;
            }
        }
        if self.paths.is_unified() {
            if let (Some(root), Some(leaf)) = (self.paths.mounts.get(""), self.paths.dirs.get("")) {
                super::v2::enable_controllers(root, leaf)?;
            }
        }
        Ok(())
    }

    fn apply(
        &self,
        r: &LinuxResources,
        devs: Option<&[oci_spec::runtime::LinuxDevice]>,
    ) -> Result<(), CgroupError> {
        if self.paths.is_unified() {
            return super::v2::apply(self.paths.dirs.get("").expect("unified"), r, devs);
        }
        super::v1::apply(&self.paths, r, devs)
    }

    fn add(&self, pid: i32, which: Hierarchies) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for (_, dir) in self.dirs(which) {
            write_file(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    fn join_self(&self, which: Hierarchies) -> Result<(), CgroupError> {
        for (controllers, dir) in self.dirs(which) {
            // "0" is the writer. v1's `tasks` moves one thread, which the kernel does without
            // the global threadgroup lock; cgroup2 has no such file for domain cgroups.
            let file = if controllers.is_empty() {
                "cgroup.procs"
            } else {
                "tasks"
            };
            write_file(&dir.join(file), "0")?;
        }
        Ok(())
    }

    fn open_unified(&self) -> Result<Option<OwnedFd>, CgroupError> {
        let Some(dir) = self.paths.unified() else {
            return Ok(None);
        };
        nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map(Some)
        .map_err(|e| CgroupError::io("open", dir, e.into()))
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = self
            .paths
            .dir_of("pids")
            .or_else(|| self.paths.dir_of("memory"))
            .or_else(|| self.paths.dirs.values().next().map(|p| p.as_path()))
            .ok_or_else(|| CgroupError::Other("container has no cgroup".into()))?;
        let mut out = Vec::new();
        all_procs(dir, &mut out)?;
        Ok(out)
    }

    fn ensure_unused(&self) -> Result<(), CgroupError> {
        if self.paths.dirs.is_empty() {
            return Ok(()); // rootless, without a cgroup
        }
        let n = self.pids()?.len();
        if n != 0 {
            return Err(CgroupError::Other(format!(
                "container's cgroup is not empty: {n} process(es) found"
            )));
        }
        if super::is_frozen(&self.paths) {
            return Err(CgroupError::Other(
                "container's cgroup unexpectedly frozen".into(),
            ));
        }
        Ok(())
    }

    fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        if let Some(dir) = self.paths.dir_of("freezer") {
            return freeze_v1(dir, frozen);
        }
        match self.paths.unified() {
            Some(dir) if self.paths.is_unified() => freeze_v2(dir, frozen),
            _ => Err(CgroupError::Other(
                "no freezer: neither a v1 freezer hierarchy nor cgroup v2".into(),
            )),
        }
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        for dir in self.paths.dirs.values() {
            remove_tree(dir)?;
        }
        Ok(())
    }
}

/// The pids of `dir` and of every cgroup below it (runc's GetAllPids); a directory that is
/// gone has none.
fn all_procs(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let p = dir.join("cgroup.procs");
    match std::fs::read_to_string(&p) {
        Ok(s) => out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e)
            if matches!(e.kind(), ErrorKind::NotFound)
                || e.raw_os_error() == Some(libc::ENODEV) =>
        {
            return Ok(())
        }
        Err(e) => return Err(CgroupError::io("read", &p, e)),
    }
    for sub in subdirs(dir)? {
        all_procs(&sub, out)?;
    }
    Ok(())
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CgroupError::io("read", dir, e)),
    }
}

/// Remove the cgroup `dir` and every cgroup below it, deepest first (runc's RemovePath): a
/// sub-cgroup made inside the container must not leave it undeletable (EBUSY).
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    for sub in subdirs(dir)? {
        remove_tree(&sub)?;
    }
    // A process that just died may still be leaving the cgroup (CRIU's killed tasks after a
    // lazy migration take a while on a slow machine): retry EBUSY for up to 5 s, the pause
    // growing from 5 to 100 ms.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                // Say who holds it: the processes still in it (pid, name, state).
                let mut pids = Vec::new();
                let _ = all_procs(dir, &mut pids);
                let holders = pids
                    .into_iter()
                    .take(5)
                    .map(|pid| {
                        let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .unwrap_or_default();
                        let state = crate::procfs::stat(pid).ok().flatten().map(|s| s.state);
                        format!("{pid} ({}, state {})", name.trim(), state.unwrap_or('?'))
                    })
                    .collect();
                return Err(CgroupError::Busy {
                    path: dir.to_path_buf(),
                    secs: 5,
                    holders,
                });
            }
            Err(e) => return Err(CgroupError::io("rmdir", dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
";

    #[test]
    fn finds_hybrid_hierarchies() {
        let h = parse_hierarchies(MOUNTINFO);
        let names: Vec<_> = h.iter().map(|h| h.controllers.as_str()).collect();
        assert_eq!(names, ["", "cpu", "memory", "name=systemd"]);
        assert_eq!(h[2].mount_point, Path::new("/sys/fs/cgroup/memory"));
        // A tmpfs mounted over the cgroup2 mount hides it.
        let covered =
            format!("{MOUNTINFO}40 30 0:40 / /sys/fs/cgroup/unified rw - tmpfs none rw,size=4k\n");
        let names: Vec<_> = parse_hierarchies(&covered)
            .into_iter()
            .map(|h| h.controllers)
            .collect();
        assert_eq!(names, ["cpu", "memory", "name=systemd"]);
    }

    /// The host's layout rebuilt with `mount --move` (hierarchies moved into a new tmpfs that
    /// is then moved onto /sys/fs/cgroup): mountinfo lists the tmpfs after the hierarchies on
    /// it, and the old tmpfs it covers first. Taken from this machine.
    #[test]
    fn moved_hierarchies_are_found_by_the_mount_tree() {
        let moved = "\
22 1 0:21 / / rw - ext4 /dev/sda1 rw
23 22 0:22 / /sys rw - sysfs sysfs rw
72 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
73 88 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
76 88 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
81 88 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
82 88 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
88 72 0:41 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
";
        let h = parse_hierarchies(moved);
        let names: Vec<_> = h.iter().map(|h| h.controllers.as_str()).collect();
        assert_eq!(names, ["cpu", "memory", "name=systemd", ""]);
        assert_eq!(h[1].mount_point, Path::new("/sys/fs/cgroup/memory"));

        // A hierarchy moved elsewhere is found there; one covered by a later tmpfs on a
        // parent directory (parent 72, under 88) or stacked on its point is not.
        let elsewhere = moved.replace(
            "76 88 0:32 / /sys/fs/cgroup/memory",
            "76 22 0:32 / /mnt/mem\\040cg",
        ) + "90 72 0:50 / /sys/fs/cgroup/hidden rw - cgroup cgroup rw,pids\n"
            + "91 81 0:51 / /sys/fs/cgroup/systemd rw - tmpfs none rw\n";
        let h = parse_hierarchies(&elsewhere);
        let names: Vec<_> = h.iter().map(|h| h.controllers.as_str()).collect();
        assert_eq!(names, ["cpu", "memory", ""]);
        assert_eq!(h[1].mount_point, Path::new("/mnt/mem cg"));

        // A bind of part of a hierarchy listed first loses to the whole hierarchy.
        let bind = moved.replace(
            "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n",
            "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n60 22 0:32 /sub /mnt/part rw - cgroup cgroup rw,memory\n",
        );
        let h = parse_hierarchies(&bind);
        let mem = h.iter().find(|h| h.controllers == "memory").unwrap();
        assert_eq!(mem.mount_point, Path::new("/sys/fs/cgroup/memory"));
    }

    /// Two creates under one new parent: the second finds the parent made but not filled yet.
    /// Its child must still get cpus and mems (the parent is filled on the way).
    #[test]
    fn cpuset_fills_an_empty_parent_first() {
        let tmp = std::env::temp_dir().join(format!("berth-cpuset-{}", std::process::id()));
        let leaf = tmp.join("parent/leaf");
        std::fs::create_dir_all(&leaf).unwrap();
        for (dir, cpus, mems) in [
            (&tmp, "0-3", "0"),
            (&tmp.join("parent"), "", ""),
            (&leaf, "", ""),
        ] {
            std::fs::write(dir.join("cpuset.cpus"), cpus).unwrap();
            std::fs::write(dir.join("cpuset.mems"), mems).unwrap();
        }
        init_cpuset(&leaf, &tmp).unwrap();
        for dir in [tmp.join("parent"), leaf.clone()] {
            assert_eq!(
                std::fs::read_to_string(dir.join("cpuset.cpus")).unwrap(),
                "0-3"
            );
            assert_eq!(
                std::fs::read_to_string(dir.join("cpuset.mems")).unwrap(),
                "0"
            );
        }
        // A level that has values keeps them.
        std::fs::write(leaf.join("cpuset.cpus"), "1").unwrap();
        init_cpuset(&leaf, &tmp).unwrap();
        assert_eq!(
            std::fs::read_to_string(leaf.join("cpuset.cpus")).unwrap(),
            "1"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn relative_paths_are_below_own_cgroup() {
        let own = "12:memory:/process_api/abc\n3:cpu,cpuacct:/\n0::/\n";
        assert_eq!(own_cgroup(own, "memory"), Path::new("/process_api/abc"));
        assert_eq!(own_cgroup(own, "cpuacct,cpu"), Path::new("/"));
        assert_eq!(own_cgroup(own, ""), Path::new("/"));
    }
}
