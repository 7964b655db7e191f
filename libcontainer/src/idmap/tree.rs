//! The idmapped source of one bind mount: a detached mount tree with MOUNT_ATTR_IDMAP set.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::{Helpers, IdmapUserns, MountIdmap};
use crate::error::{echo_path, os_text};

/// Why an idmapped bind mount could not be made. `mount` names the mount as init's errors do
/// (`mounts[3] (bind on "/data")`).
#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    #[error("{mount}: open bind mount source {}: {}", echo_path(.src), os_text(.err))]
    Open {
        mount: String,
        src: PathBuf,
        err: io::Error,
    },
    #[error("{mount}: user namespace for the idmapping of {}: {}", echo_path(.src), os_text(.err))]
    Userns {
        mount: String,
        src: PathBuf,
        err: io::Error,
    },
    /// The filesystem has no idmapped mount support in this kernel (EINVAL, EOPNOTSUPP).
    #[error("{mount}: cannot make an idmapped mount of {}: its filesystem ({fstype}){below} does not support idmapped mounts on this kernel (mount_setattr MOUNT_ATTR_IDMAP: {})", echo_path(.src), os_text(.err))]
    Unsupported {
        mount: String,
        src: PathBuf,
        fstype: String,
        below: &'static str,
        err: io::Error,
    },
    #[error("{mount}: cannot make an idmapped mount of {} (filesystem {fstype}): mount_setattr MOUNT_ATTR_IDMAP: {}", echo_path(.src), os_text(.err))]
    Setattr {
        mount: String,
        src: PathBuf,
        fstype: String,
        err: io::Error,
    },
}

/// Open `source` as a detached mount tree (with its submounts for an rbind, `rbind`) and set
/// `idmap`'s mapping on it. `mount` names the mount in errors.
pub fn open_tree(
    source: &Path,
    rbind: bool,
    idmap: &MountIdmap,
    helpers: &mut Helpers,
    mount: &dyn Fn() -> String,
) -> Result<OwnedFd, IdmapError> {
    let tree = crate::sys::open_tree(source, rbind).map_err(|err| IdmapError::Open {
        mount: mount(),
        src: source.to_path_buf(),
        err,
    })?;
    let joined: OwnedFd;
    let userns = match &idmap.userns {
        IdmapUserns::Maps { uid, gid } => helpers.get(uid, gid),
        IdmapUserns::Path(p) => match nix::fcntl::open(
            p,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => {
                joined = fd;
                Ok(joined.as_fd())
            }
            Err(e) => Err(e.into()),
        },
    }
    .map_err(|err| IdmapError::Userns {
        mount: mount(),
        src: source.to_path_buf(),
        err,
    })?;
    crate::sys::mount_set_idmap(tree.as_fd(), idmap.recursive, userns).map_err(|err| {
        let fstype = fs_type(source);
        match err.raw_os_error() {
            Some(libc::EINVAL | libc::EOPNOTSUPP) => IdmapError::Unsupported {
                mount: mount(),
                src: source.to_path_buf(),
                fstype,
                below: if idmap.recursive && rbind {
                    ", or that of a mount below it,"
                } else {
                    ""
                },
                err,
            },
            _ => IdmapError::Setattr {
                mount: mount(),
                src: source.to_path_buf(),
                fstype,
                err,
            },
        }
    })?;
    Ok(tree)
}

/// The filesystem type of the mount `path` is on (from its mount id in fdinfo and
/// mountinfo), for an error message; "unknown" if it cannot be told.
fn fs_type(path: &Path) -> String {
    let find = || -> Option<String> {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
        let id: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("mnt_id:"))?
            .trim()
            .parse()
            .ok()?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        crate::procfs::parse_mountinfo(&mounts)
            .into_iter()
            .find(|m| m.id == id)
            .map(|m| m.fstype.to_string())
    };
    find().unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_type_of_a_path() {
        assert_eq!(fs_type(Path::new("/proc/self")), "proc");
        assert_eq!(fs_type(Path::new("/no/such/path")), "unknown");
    }

    #[test]
    fn unsupported_names_mount_source_and_filesystem() {
        let e = IdmapError::Unsupported {
            mount: "mounts[7] (\"bind\" on \"/m\")".into(),
            src: "/srv/data".into(),
            fstype: "ramfs".into(),
            below: "",
            err: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert_eq!(
            e.to_string(),
            "mounts[7] (\"bind\" on \"/m\"): cannot make an idmapped mount of \"/srv/data\": its \
             filesystem (ramfs) does not support idmapped mounts on this kernel (mount_setattr \
             MOUNT_ATTR_IDMAP: invalid argument)"
        );
    }
}
