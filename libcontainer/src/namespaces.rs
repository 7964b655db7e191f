//! Which namespaces a container gets, and how init is cloned into them.
//!
//! Fast path (no namespace joined by path, no time namespace): one clone3 with every new
//! namespace's flag; the child is the container's init. Otherwise a stage 1 child joins the
//! given namespaces (user first), unshares the new ones, sets time offsets and forks init,
//! which then lives in all of them.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::channel::{Channel, Msg};
use crate::init::{InitError, StepExt};

pub(crate) fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

pub struct Plan {
    /// Namespaces to create.
    pub new: CloneFlags,
    /// Namespaces to join: (type, path), in config order.
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
    pub time_offsets: Vec<(String, i64, u32)>,
}

impl Plan {
    pub fn new(spec: &Spec) -> Plan {
        let linux = spec.linux().as_ref();
        let mut new = CloneFlags::empty();
        let mut join = Vec::new();
        for ns in linux
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or_default()
        {
            match ns.path() {
                Some(p) => join.push((ns.typ(), p.clone())),
                None => new |= flag(ns.typ()),
            }
        }
        let mut time_offsets: Vec<_> = linux
            .and_then(|l| l.time_offsets().as_ref())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.secs().unwrap_or(0), v.nanosecs().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        time_offsets.sort();
        Plan {
            new,
            join,
            time_offsets,
        }
    }

    pub fn new_userns(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUSER)
    }

    /// Whether init lives in a user namespace other than the host's (new or joined).
    pub fn userns(&self) -> bool {
        self.new_userns() || self.joins(LinuxNamespaceType::User)
    }

    pub fn joins(&self, t: LinuxNamespaceType) -> bool {
        self.join.iter().any(|(j, _)| *j == t)
    }

    pub fn new_cgroupns(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWCGROUP)
    }

    pub fn has_cgroupns(&self) -> bool {
        self.new_cgroupns() || self.joins(LinuxNamespaceType::Cgroup)
    }

    /// One clone3 is enough: nothing to join, and no time namespace (its offsets must be
    /// written before any process enters it).
    pub fn fast(&self) -> bool {
        self.join.is_empty()
            && !self
                .new
                .contains(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
    }

    /// The flags of the fast path's clone3: every new namespace but the cgroup one, which init
    /// unshares after the parent has moved it into its cgroup.
    pub fn clone_flags(&self) -> u64 {
        (self.new - CloneFlags::CLONE_NEWCGROUP).bits() as u64
    }
}

/// Stage 1 of the slow path: join, unshare, fork init. Runs in the first child; `init` is what
/// the forked init runs. Never returns.
pub fn stage1(
    plan: &Plan,
    chan: &Channel,
    cgroup: Option<(&dyn crate::cgroups::Manager, crate::cgroups::Hierarchies)>,
    init: impl FnOnce(),
) -> ! {
    let r = (|| -> Result<i32, InitError> {
        // Init inherits the cgroup from stage 1, which joins it before anything else.
        if let Some((cg, which)) = cgroup {
            crate::init::join_cgroup(cg, which)?;
        }
        match chan.recv() {
            Ok(Some(Msg::Go)) => {}
            _ => {
                return Err(InitError::msg(
                    "sync",
                    None,
                    "berth went away before stage 1 started",
                ))
            }
        }
        // Open every namespace first: joining one (the mount namespace) may hide the others' paths.
        let mut fds: Vec<(LinuxNamespaceType, OwnedFd, &PathBuf)> = Vec::new();
        for (t, p) in &plan.join {
            let fd = nix::fcntl::open(
                p,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .step(
                &format!("open {} namespace", crate::config::ns_name(*t)),
                Some(p),
            )?;
            fds.push((*t, fd, p));
        }
        // The user namespace first (it owns the others), the mount namespace last.
        fds.sort_by_key(|(t, _, _)| match t {
            LinuxNamespaceType::User => 0,
            LinuxNamespaceType::Mount => 2,
            _ => 1,
        });
        for (t, fd, p) in &fds {
            nix::sched::setns(fd, flag(*t)).step(
                &format!("join {} namespace", crate::config::ns_name(*t)),
                Some(p),
            )?;
        }
        if plan.joins(LinuxNamespaceType::User) && !plan.new_userns() {
            // As runc: the process becomes root of the namespace it joined (devpts and other
            // mounts need the namespace's root, not an unmapped overflow id).
            crate::init::process::become_namespace_root()?;
        }
        if plan.new_userns() {
            nix::sched::unshare(CloneFlags::CLONE_NEWUSER).step("unshare user namespace", None)?;
            chan.send(&Msg::MapsRequest).step("sync", None)?;
            match chan.recv() {
                Ok(Some(Msg::MapsWritten)) => {}
                _ => {
                    return Err(InitError::msg(
                        "sync",
                        None,
                        "berth did not write the id maps",
                    ))
                }
            }
            crate::init::process::become_namespace_root()?;
        }
        let rest = plan.new - CloneFlags::CLONE_NEWUSER;
        if !rest.is_empty() {
            nix::sched::unshare(rest).step("unshare namespaces", None)?;
        }
        if !plan.time_offsets.is_empty() {
            let text: String = plan
                .time_offsets
                .iter()
                .map(|(c, s, n)| format!("{c} {s} {n}\n"))
                .collect();
            let p = std::path::Path::new("/proc/self/timens_offsets");
            std::fs::write(p, text).step("write time offsets", Some(p))?;
        }
        match crate::sys::clone3(0).step("fork init", None)? {
            None => {
                init();
                unreachable!("init returns only by exec or exit")
            }
            Some(child) => Ok(child.pid),
        }
    })();
    let code = match r {
        Ok(pid) => chan.send(&Msg::InitPid(pid)).map_or(1, |_| 0),
        Err(e) => {
            let _ = chan.send(&Msg::Failed(e));
            1
        }
    };
    // SAFETY: _exit skips the parent berth's atexit handlers and buffered output.
    unsafe { libc::_exit(code) }
}

/// The host uid and gid of the container's root: what uid/gid 0 map to in a new user
/// namespace, else 0 (runc's HostRootUID/HostRootGID). A joined namespace's mappings in
/// config.json are not trusted for ownership (they are never checked); the fifo's mode lets
/// its root write anyway.
pub fn host_root_ids(spec: &Spec) -> (u32, u32) {
    let linux = spec.linux().as_ref();
    let userns = linux
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or_default()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if !userns {
        return (0, 0);
    }
    let host = |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.into_iter()
            .flatten()
            .find(|m| m.container_id() == 0 && m.size() > 0)
            .map_or(0, |m| m.host_id())
    };
    (
        host(linux.and_then(|l| l.uid_mappings().as_ref())),
        host(linux.and_then(|l| l.gid_mappings().as_ref())),
    )
}

/// Write uid_map and gid_map of a process in a new user namespace. Rootless (see
/// [`rootless_euid`]), as runc: a map of just the caller's own uid and gid is written directly,
/// after `deny` in its setgroups file (the kernel's rule for an unprivileged gid_map); any
/// other map goes through newuidmap and newgidmap (shadow's setuid helpers, which check
/// /etc/subuid and /etc/subgid).
pub fn write_id_maps(pid: i32, spec: &Spec) -> std::io::Result<()> {
    let linux = spec.linux().as_ref();
    let uid = linux
        .and_then(|l| l.uid_mappings().as_deref())
        .unwrap_or_default();
    let gid = linux
        .and_then(|l| l.gid_mappings().as_deref())
        .unwrap_or_default();
    if !rootless_euid() {
        return write_maps(pid, uid, gid);
    }
    let only = |m: &[oci_spec::runtime::LinuxIdMapping], id: u32| matches!(m, [one] if one.host_id() == id && one.size() == 1);
    if only(uid, nix::unistd::geteuid().as_raw()) && only(gid, nix::unistd::getegid().as_raw()) {
        let p = format!("/proc/{pid}/setgroups");
        std::fs::write(&p, "deny")
            .map_err(|e| std::io::Error::new(e.kind(), format!("write {p}: {e}")))?;
        return write_maps(pid, uid, gid);
    }
    id_map_helper("newuidmap", pid, uid)?;
    id_map_helper("newgidmap", pid, gid)
}

/// `newuidmap PID ID HOSTID SIZE...` (or newgidmap).
fn id_map_helper(
    helper: &str,
    pid: i32,
    maps: &[oci_spec::runtime::LinuxIdMapping],
) -> std::io::Result<()> {
    let err = |m: String| std::io::Error::other(m);
    let path = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(helper))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            err(format!(
                "rootless: a map of more than the caller's own id needs {helper} (Debian: apt-get install uidmap)"
            ))
        })?;
    let mut cmd = std::process::Command::new(&path);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.arg(m.container_id().to_string())
            .arg(m.host_id().to_string())
            .arg(m.size().to_string());
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| err(format!("run {}: {e}", path.display())))?;
    if !out.status.success() {
        return Err(err(format!(
            "{helper} {pid}: {} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        )));
    }
    Ok(())
}

/// Write these mappings as uid_map and gid_map of a process in a new user namespace.
pub fn write_maps(
    pid: i32,
    uid: &[oci_spec::runtime::LinuxIdMapping],
    gid: &[oci_spec::runtime::LinuxIdMapping],
) -> std::io::Result<()> {
    let fmt = |m: &[oci_spec::runtime::LinuxIdMapping]| -> String {
        m.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    std::fs::write(format!("/proc/{pid}/uid_map"), fmt(uid))
        .map_err(|e| std::io::Error::new(e.kind(), format!("write /proc/{pid}/uid_map: {e}")))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), fmt(gid))
        .map_err(|e| std::io::Error::new(e.kind(), format!("write /proc/{pid}/gid_map: {e}")))
}

/// Whether the runtime runs in a user namespace other than the initial one (its uid_map is
/// not the identity of every uid), as runc's userns.RunningInUserNS: rootless podman runs it
/// so, as root of podman's own user namespace. Read once per process and cached: call it in the
/// runtime's own process (a child in a container's new user namespace would read its own).
pub fn in_user_namespace() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
            let f: Vec<&str> = m.split_whitespace().collect();
            f.as_slice() != ["0", "0", "4294967295"]
        })
    })
}

/// Whether the runtime runs as a user other than root (runc's RootlessEUID): what decides
/// the id maps, setgroups, supplementary groups, idmapped mounts, bind sources and exec's
/// namespace joins. Root of a user namespace is not rootless here: it writes maps itself.
pub fn rootless_euid() -> bool {
    !nix::unistd::geteuid().is_root()
}

/// Whether cgroups are handled rootless: as a user other than root, or as root of a user
/// namespace (runc's rootless cgroup manager rule without systemd). Read once per process.
pub fn rootless_cgroups() -> bool {
    static ROOTLESS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOTLESS.get_or_init(|| rootless_euid() || in_user_namespace())
}
