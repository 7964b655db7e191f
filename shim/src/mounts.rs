//! containerd's rootfs mounts (overlay, bind, ...) applied to `BUNDLE/rootfs`, as containerd's
//! `mount.All` does it: flag options become MS_* flags, the rest the data string; propagation
//! options are applied after; a read-only bind is remounted read-only. An overlay whose data
//! does not fit in a page is mounted with lowerdirs relative to their common parent.

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
}

pub fn parse_options(options: &[String]) -> Parsed {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (clear, f) = match o.as_str() {
            "async" => (true, MsFlags::MS_SYNCHRONOUS),
            "atime" => (true, MsFlags::MS_NOATIME),
            "bind" => (false, MsFlags::MS_BIND),
            "defaults" => (false, MsFlags::empty()),
            "dev" => (true, MsFlags::MS_NODEV),
            "diratime" => (true, MsFlags::MS_NODIRATIME),
            "dirsync" => (false, MsFlags::MS_DIRSYNC),
            "exec" => (true, MsFlags::MS_NOEXEC),
            "mand" => (false, MsFlags::MS_MANDLOCK),
            "noatime" => (false, MsFlags::MS_NOATIME),
            "nodev" => (false, MsFlags::MS_NODEV),
            "nodiratime" => (false, MsFlags::MS_NODIRATIME),
            "noexec" => (false, MsFlags::MS_NOEXEC),
            "nomand" => (true, MsFlags::MS_MANDLOCK),
            "norelatime" => (true, MsFlags::MS_RELATIME),
            "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
            "nosuid" => (false, MsFlags::MS_NOSUID),
            "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
            "relatime" => (false, MsFlags::MS_RELATIME),
            "remount" => (false, MsFlags::MS_REMOUNT),
            "ro" => (false, MsFlags::MS_RDONLY),
            "rw" => (true, MsFlags::MS_RDONLY),
            "strictatime" => (false, MsFlags::MS_STRICTATIME),
            "suid" => (true, MsFlags::MS_NOSUID),
            "sync" => (false, MsFlags::MS_SYNCHRONOUS),
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            | "unbindable" | "runbindable") => {
                propagation = match p {
                    "private" => MsFlags::MS_PRIVATE,
                    "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                    "shared" => MsFlags::MS_SHARED,
                    "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
                    "slave" => MsFlags::MS_SLAVE,
                    "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    "unbindable" => MsFlags::MS_UNBINDABLE,
                    _ => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
                };
                continue;
            }
            _ => {
                data.push(o.clone());
                continue;
            }
        };
        if clear {
            flags.remove(f);
        } else {
            flags.insert(f);
        }
    }
    Parsed {
        flags,
        propagation,
        data,
    }
}

/// Longest common directory of the lowerdirs, and the data rewritten relative to it.
fn compact_lowerdirs(data: &[String]) -> Option<(PathBuf, Vec<String>)> {
    let idx = data.iter().position(|d| d.starts_with("lowerdir="))?;
    let dirs: Vec<&str> = data[idx]["lowerdir=".len()..].split(':').collect();
    let first = Path::new(dirs[0]);
    let mut common: PathBuf = first.parent()?.to_path_buf();
    while !dirs.iter().all(|d| Path::new(d).starts_with(&common)) {
        common = common.parent()?.to_path_buf();
    }
    if common.as_os_str().len() <= 1 {
        return None;
    }
    let rel: Vec<String> = dirs
        .iter()
        .map(|d| {
            Path::new(d)
                .strip_prefix(&common)
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect::<Result<_, _>>()
        .ok()?;
    let mut out = data.to_vec();
    out[idx] = format!("lowerdir={}", rel.join(":"));
    Some((common, out))
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|v| v as usize)
        .unwrap_or(4096)
}

pub fn mount_one(m: &containerd_shim_protos::types::mount::Mount, target: &Path) -> Result<()> {
    let p = parse_options(&m.options);
    let typ = if m.type_.is_empty() {
        None
    } else {
        Some(m.type_.as_str())
    };
    let mut data = p.data.join(",");
    let mut chdir_to = None;
    if m.type_ == "overlay" && data.len() >= page_size() - 512 {
        if let Some((dir, d)) = compact_lowerdirs(&p.data) {
            data = d.join(",");
            chdir_to = Some(dir);
        }
    }
    let flags = p.flags;
    let do_mount = || -> nix::Result<()> {
        mount(
            Some(m.source.as_str()),
            target,
            typ,
            flags,
            if data.is_empty() {
                None
            } else {
                Some(data.as_str())
            },
        )
    };
    let res = match &chdir_to {
        // The shim is single-threaded: changing directory around the call is safe.
        Some(dir) => {
            let back = std::env::current_dir()?;
            std::env::set_current_dir(dir).with_context(|| format!("chdir {}", dir.display()))?;
            let r = do_mount();
            std::env::set_current_dir(back)?;
            r
        }
        None => do_mount(),
    };
    res.with_context(|| {
        format!(
            "mount {} ({}) on {} with {:?}",
            m.source,
            m.type_,
            target.display(),
            m.options
        )
    })?;
    if p.flags.contains(MsFlags::MS_BIND) && p.flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            p.flags | MsFlags::MS_REMOUNT,
            None::<&str>,
        )
        .with_context(|| format!("remount {} read-only", target.display()))?;
    }
    if !p.propagation.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            p.propagation,
            None::<&str>,
        )
        .with_context(|| format!("set propagation of {}", target.display()))?;
    }
    Ok(())
}

/// Mount every mount on `target`, in order; on failure undo what was mounted.
pub fn mount_all(
    mounts: &[containerd_shim_protos::types::mount::Mount],
    target: &Path,
) -> Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(target).with_context(|| format!("mkdir {}", target.display()))?;
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..i {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Is `path` a mount point (listed in our mountinfo)?
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).map(unescape).as_deref() == Some(&*want))
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmount everything stacked on `target` (containerd's UnmountAll).
pub fn unmount_all(target: &Path) -> Result<()> {
    for _ in 0..64 {
        if !is_mountpoint(target) {
            return Ok(());
        }
        match umount2(target, MntFlags::empty()) {
            Ok(()) => {}
            Err(nix::errno::Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH)
                .with_context(|| format!("unmount {}", target.display()))?,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => bail!("unmount {}: {e}", target.display()),
        }
    }
    bail!(
        "unmount {}: still mounted after 64 unmounts",
        target.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options() {
        let p = parse_options(&s(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/l",
            "ro",
            "nosuid",
        ]));
        assert_eq!(p.flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(
            p.data,
            s(&["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l"])
        );
        let p = parse_options(&s(&["rbind", "ro", "rw", "rprivate"]));
        assert_eq!(p.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    }

    #[test]
    fn lowerdir_compaction() {
        let d = s(&[
            "workdir=/a/s/9/work",
            "lowerdir=/a/s/3/fs:/a/s/2/fs:/a/s/1/fs",
        ]);
        let (dir, out) = compact_lowerdirs(&d).unwrap();
        assert_eq!(dir, PathBuf::from("/a/s"));
        assert_eq!(out[1], "lowerdir=3/fs:2/fs:1/fs");
        assert!(compact_lowerdirs(&s(&["lowerdir=/x:/y"])).is_none());
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert!(is_mountpoint(Path::new("/proc")));
        assert!(!is_mountpoint(Path::new("/proc/self")));
    }
}
