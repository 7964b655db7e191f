//! Cgroups: one [`Manager`] interface; [`fs::FsManager`] drives the cgroupfs layouts (v1,
//! hybrid, unified) found by probing the mounts. Resource control beyond the basics is filled
//! in by the cgroups issue; anything not applied is refused with a clear error, never ignored.

pub mod bpf;
pub mod devices;
pub mod emulator;
pub mod fs;
pub mod stats;
pub mod v1;
pub mod v2;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path:?}: {what}: {err}")]
    Io {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error("linux.resources.{0}: not supported by berth yet on this cgroup layout")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
    /// rmdir kept failing with EBUSY: `holders` are the processes still in it.
    #[error("cgroup {path:?}: rmdir: still busy (EBUSY) after {secs} s{}", busy_holders(.holders))]
    Busy {
        path: PathBuf,
        secs: u64,
        holders: Vec<String>,
    },
}

fn busy_holders(holders: &[String]) -> String {
    if holders.is_empty() {
        " (no process in it: a child cgroup or a dying task)".into()
    } else {
        format!(", processes in it: {}", holders.join(", "))
    }
}

impl CgroupError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        CgroupError::Io {
            what,
            path: path.to_path_buf(),
            err: source,
        }
    }
}

/// The directories of one container's cgroup, one per hierarchy, keyed by the hierarchy's
/// controllers (`"memory"`, `"cpu,cpuacct"`, `"name=systemd"`, `""` for cgroup2). Recorded in
/// state.json so that later commands find exactly what `create` made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupPaths {
    pub dirs: BTreeMap<String, PathBuf>,
    /// Each hierarchy's mount point, same keys.
    #[serde(default)]
    pub mounts: BTreeMap<String, PathBuf>,
}

impl CgroupPaths {
    /// The directory of the hierarchy that has `controller`.
    pub fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(k, _)| k.split(',').any(|c| c == controller))
            .map(|(_, v)| v.as_path())
    }

    /// Whether the host is pure cgroup v2 (one unified hierarchy).
    pub fn is_unified(&self) -> bool {
        self.dirs.len() == 1 && self.dirs.contains_key("")
    }

    /// The cgroup2 directory, if there is a cgroup2 hierarchy.
    pub fn unified(&self) -> Option<&Path> {
        self.dirs.get("").map(|p| p.as_path())
    }
}

/// The `rdma.max` lines of `linux.resources.rdma` (the same on v1 and v2).
/// Write a cgroup file. Never O_CREAT: a cgroup's files are the kernel's, and on kernfs
/// O_CREAT of a missing one fails EACCES, where its absence (no swap accounting, a controller
/// not enabled) must read as ENOENT.
pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| CgroupError::io("write", path, e))
}

pub(crate) fn rdma_lines(r: &LinuxResources) -> Vec<String> {
    let mut out = Vec::new();
    for (dev, rd) in r.rdma().iter().flatten() {
        let mut line = dev.clone();
        if let Some(h) = rd.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = rd.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        out.push(line);
    }
    out
}

/// What every cgroup layout offers the runtime.
pub trait Manager {
    /// The directories of this container's cgroup.
    fn paths(&self) -> &CgroupPaths;
    /// Create the cgroup directories (parents too, as needed).
    fn create(&self) -> Result<(), CgroupError>;
    /// Apply `linux.resources`; with `devices` (config.json's `linux.devices`), also its device
    /// rules plus runc's default allow list, even when it has none (a default whose path
    /// `linux.devices` lists again is left out, as runc does). `update` passes None: as in
    /// runc, an update never changes the device rules.
    fn apply(
        &self,
        resources: &LinuxResources,
        devices: Option<&[oci_spec::runtime::LinuxDevice]>,
    ) -> Result<(), CgroupError>;
    /// Move another process into the cgroup (the hierarchies `which`). Waits for the kernel's
    /// global threadgroup lock: a new process is better born in the cgroup ([`spawn`]).
    fn add(&self, pid: i32, which: Hierarchies) -> Result<(), CgroupError>;
    /// Move the calling process, which must be single-threaded, into the cgroup (the
    /// hierarchies `which`). On v1 it moves its one thread through `tasks`, which takes no
    /// global lock.
    fn join_self(&self, which: Hierarchies) -> Result<(), CgroupError>;
    /// The cgroup2 directory, opened to clone a process into it; `None` without cgroup2.
    fn open_unified(&self) -> Result<Option<OwnedFd>, CgroupError>;
    /// The pids in the cgroup and in every cgroup below it.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Refuse a cgroup that already has processes or is frozen, as runc 1.2+ does (a frozen
    /// one would hold init forever).
    fn ensure_unused(&self) -> Result<(), CgroupError>;
    /// Remove the cgroup directories this container made, with any sub-cgroups made inside
    /// them (never a parent).
    fn destroy(&self) -> Result<(), CgroupError>;
    /// Freeze (pause) or thaw (resume) every process of the cgroup; returns once done.
    fn freeze(&self, frozen: bool) -> Result<(), CgroupError>;
}

/// Which of a container's hierarchies a move covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchies {
    All,
    /// Every one but cgroup2 (the process was born there).
    ExceptUnified,
}

/// Clone a process (as [`crate::sys::clone3`]) into the container's cgroup2 directory
/// `unified` (from [`Manager::open_unified`]) where the kernel can; returns the hierarchies
/// the process still has to join: all of them where the kernel predates CLONE_INTO_CGROUP.
pub fn spawn(
    flags: u64,
    unified: Option<&OwnedFd>,
) -> std::io::Result<(Option<crate::sys::Child>, Hierarchies)> {
    let Some(fd) = unified else {
        return Ok((crate::sys::clone3(flags)?, Hierarchies::All));
    };
    match crate::sys::clone3_into(flags, Some(fd.as_fd())) {
        Ok(child) => Ok((child, Hierarchies::ExceptUnified)),
        // Linux < 5.7: an unknown flag (EINVAL) or a larger clone_args (E2BIG).
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::E2BIG)) => {
            Ok((crate::sys::clone3(flags)?, Hierarchies::All))
        }
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("clone3 into the container's cgroup2 directory: {e}"),
        )),
    }
}

/// Choose the manager for `cgroupsPath` of container `id`.
pub fn manager(
    cgroups_path: Option<&Path>,
    id: &str,
    systemd: bool,
) -> Result<Box<dyn Manager>, CgroupError> {
    if systemd {
        return Err(CgroupError::Other(
            "--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); use cgroupfs".into(),
        ));
    }
    Ok(Box::new(fs::FsManager::new(
        cgroups_path,
        id,
        crate::namespaces::rootless_cgroups(),
    )?))
}

/// A manager for the cgroup a container was created with.
pub fn manager_for(paths: &CgroupPaths) -> Box<dyn Manager> {
    Box::new(fs::FsManager::from_paths(paths.clone()))
}

/// Whether the container's cgroup is frozen (paused).
pub fn is_frozen(paths: &CgroupPaths) -> bool {
    if let Some(dir) = paths.dir_of("freezer") {
        return std::fs::read_to_string(dir.join("freezer.state"))
            .is_ok_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING"));
    }
    if let Some(dir) = paths.unified() {
        return std::fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1");
    }
    false
}

/// The cgroup an `exec --cgroup ARG...` process joins: `paths` (the container's) with the
/// sub-cgroups of runc's `--cgroup` arguments. One `PATH` (no controller prefix, the only
/// form on cgroup v2) is below the container's cgroup in every hierarchy; `CTRL[,CTRL]:PATH`
/// (repeatable, v1) below it in the hierarchies of those controllers, the others staying the
/// container's. A path must stay below the container's cgroup (`..` cannot leave it) and,
/// unlike runc on v1 (which skips a missing directory and leaves the process in the caller's
/// cgroup there), must exist in every hierarchy it applies to.
pub fn sub_cgroup_paths(paths: &CgroupPaths, args: &[String]) -> Result<CgroupPaths, CgroupError> {
    let invalid = |m: String| CgroupError::Other(format!("invalid --cgroup argument: {m}"));
    // controller (`""`: every hierarchy) -> sub path, as runc's getSubCgroupPaths.
    let mut wanted: BTreeMap<&str, &str> = BTreeMap::new();
    for a in args {
        match a.split_once(':') {
            Some((ctrls, sub)) => {
                for c in ctrls.split(',') {
                    if c.is_empty() {
                        return Err(invalid(format!("{a} (empty <controller> prefix)")));
                    }
                    if wanted.insert(c, sub).is_some() {
                        return Err(CgroupError::Other(format!(
                            "invalid --cgroup argument(s): controller {c} specified multiple times"
                        )));
                    }
                }
            }
            None if args.len() != 1 => {
                return Err(invalid(format!("{a} (missing <controller>: prefix)")));
            }
            None => {
                wanted.insert("", a);
            }
        }
    }
    let mut out = paths.clone();
    // hierarchy key -> the sub path chosen for it.
    let mut chosen: BTreeMap<String, &str> = BTreeMap::new();
    for (ctrl, sub) in &wanted {
        if ctrl.is_empty() {
            for k in paths.dirs.keys() {
                chosen.insert(k.clone(), sub);
            }
            continue;
        }
        let Some(key) = paths.dirs.keys().find(|k| k.split(',').any(|c| c == *ctrl)) else {
            return Err(CgroupError::Other(format!(
                "unknown controller {ctrl} in --cgroup (the container's cgroup has no such hierarchy)"
            )));
        };
        match chosen.insert(key.clone(), sub) {
            Some(other) if other != *sub => {
                return Err(invalid(format!(
                    "controllers of one hierarchy ({key}) given different paths ({other}, {sub})"
                )))
            }
            _ => {}
        }
    }
    for (key, sub) in chosen {
        let base = &paths.dirs[&key];
        let dir = below(base, sub)
            .ok_or_else(|| CgroupError::Other(format!("{sub} is not a sub cgroup path")))?;
        if !dir.is_dir() {
            return Err(CgroupError::Other(format!(
                "--cgroup {sub}: sub-cgroup {} does not exist",
                dir.display()
            )));
        }
        out.dirs.insert(key, dir);
    }
    Ok(out)
}

/// `base/sub` with `.` and `..` resolved lexically, if it is `base` or below it.
fn below(base: &Path, sub: &str) -> Option<PathBuf> {
    let mut p = base.to_path_buf();
    for comp in Path::new(sub).components() {
        match comp {
            std::path::Component::Normal(c) => p.push(c),
            std::path::Component::ParentDir if !p.pop() => return None,
            // A leading `/` is the container's cgroup, as in runc (path.Join).
            _ => {}
        }
    }
    p.starts_with(base).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid(tmp: &Path) -> CgroupPaths {
        let mut p = CgroupPaths::default();
        for k in ["", "cpu,cpuacct", "memory", "name=systemd"] {
            let dir = tmp
                .join(if k.is_empty() { "unified" } else { k })
                .join("c1");
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            p.dirs.insert(k.to_string(), dir);
        }
        p
    }

    #[test]
    fn sub_cgroups_as_runc_parses_them() {
        let tmp = std::env::temp_dir().join(format!("berth-subcg-{}", std::process::id()));
        let p = hybrid(&tmp);
        let s = |v: &[&str]| {
            let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            sub_cgroup_paths(&p, &v)
        };
        // One path: every hierarchy.
        let all = s(&["sub"]).unwrap();
        for (k, d) in &all.dirs {
            assert_eq!(d, &p.dirs[k].join("sub"), "{k}");
        }
        assert_eq!(s(&["/sub/."]).unwrap().dirs, all.dirs);
        // Per controller: only those hierarchies.
        let some = s(&["memory:sub", "cpu:sub"]).unwrap();
        assert_eq!(some.dirs["memory"], p.dirs["memory"].join("sub"));
        assert_eq!(some.dirs["cpu,cpuacct"], p.dirs["cpu,cpuacct"].join("sub"));
        assert_eq!(some.dirs[""], p.dirs[""]);
        assert_eq!(some.dirs["name=systemd"], p.dirs["name=systemd"]);
        assert!(s(&["name=systemd:sub"]).is_ok());
        // Errors in runc's words where runc has them.
        let err = |v: &[&str]| s(v).unwrap_err().to_string();
        assert!(err(&["a", "b"]).contains("missing <controller>: prefix"));
        assert!(err(&[":sub"]).contains("empty <controller> prefix"));
        assert!(err(&["memory:sub", "memory:sub"]).contains("specified multiple times"));
        assert!(err(&["rdma:sub"]).contains("unknown controller rdma"));
        assert!(err(&["cpu:sub", "cpuacct:."]).contains("different paths"));
        assert!(err(&["../c2"]).contains("is not a sub cgroup path"));
        assert!(err(&["sub/../../c1x"]).contains("is not a sub cgroup path"));
        assert!(err(&["nosuch"]).contains("does not exist"));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
