//! Cgroups: one [`Manager`] interface; [`fs::FsManager`] drives the cgroupfs layouts (v1,
//! hybrid, unified) found by probing the mounts. Resource control beyond the basics is filled
//! in by the cgroups issue; anything not applied is refused with a clear error, never ignored.

pub mod bpf;
pub mod devices;
pub mod fs;
pub mod stats;
pub mod v1;
pub mod v2;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxResources};
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
    /// Apply `linux.resources`, plus the device rules for the container's `linux.devices`.
    fn apply(&self, resources: &LinuxResources, devices: &[LinuxDevice])
        -> Result<(), CgroupError>;
    /// Move a process into the cgroup.
    fn add(&self, pid: i32) -> Result<(), CgroupError>;
    /// The pids in the cgroup.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Remove the cgroup directories this container made (never a parent).
    fn destroy(&self) -> Result<(), CgroupError>;
    /// Freeze (pause) or thaw (resume) every process of the cgroup; returns once done.
    fn freeze(&self, frozen: bool) -> Result<(), CgroupError>;
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
    Ok(Box::new(fs::FsManager::new(cgroups_path, id)?))
}

/// A manager for the cgroup a container was created with.
pub fn manager_for(paths: &CgroupPaths) -> Box<dyn Manager> {
    Box::new(fs::FsManager::from_paths(paths.clone()))
}

/// Whether the container's cgroup is frozen (paused).
pub fn is_frozen(paths: &CgroupPaths) -> bool {
    if let Some(dir) = paths.dir_of("freezer") {
        return std::fs::read_to_string(dir.join("freezer.state"))
            .is_ok_and(|s| s.trim() == "FROZEN");
    }
    if let Some(dir) = paths.unified() {
        return std::fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1");
    }
    false
}
