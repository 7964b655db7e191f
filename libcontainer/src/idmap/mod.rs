//! Idmapped bind mounts: a mount's `uidMappings`/`gidMappings` (runtime-spec 1.1) and its
//! `idmap`/`ridmap` options (1.2), with runc 1.3's semantics.
//!
//! Which mounts are idmapped, and with which mappings, is decided with the config
//! ([`of_mount`]). `create` then opens each such source as a detached mount tree and idmaps it
//! with mount_setattr(MOUNT_ATTR_IDMAP) through a helper user namespace that holds the
//! mappings ([`open_tree`], [`Helpers`]); init attaches the tree with move_mount like any
//! pre-opened bind source. All of it runs as the host's root before init exists: the kernel
//! lets only a process privileged over the source's filesystem idmap a mount, and only a mount
//! that was never attached. Containers without idmapped mounts make none of these calls.

mod tree;
mod userns;

use std::path::PathBuf;

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType, Mount};

use crate::init::mountopts::{self, IdmapScope};

pub use tree::{open_tree, IdmapError};
pub use userns::Helpers;

/// The user namespace whose mappings an idmapped mount uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdmapUserns {
    /// A helper namespace with these mappings (the mount's own, or the container's new user
    /// namespace's for a bare `idmap`/`ridmap`).
    Maps {
        uid: Vec<LinuxIdMapping>,
        gid: Vec<LinuxIdMapping>,
    },
    /// The user namespace the container joins (`linux.namespaces[].path`).
    Path(PathBuf),
}

/// How one bind mount is idmapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountIdmap {
    /// `ridmap`: the mapping is set on every mount of the bound tree (mount_setattr's
    /// AT_RECURSIVE); else on the top mount only, as `idmap` and bare mappings ask. Whether
    /// the tree holds the submounts at all is `rbind`'s business.
    pub recursive: bool,
    pub userns: IdmapUserns,
}

/// Whether `m` asks for an idmapping at all: a look at its fields, no parsing.
fn asks(m: &Mount) -> bool {
    m.uid_mappings().is_some()
        || m.gid_mappings().is_some()
        || m.options()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|o| o == "idmap" || o == "ridmap")
}

/// Whether any mount is idmapped (what `create` checks before doing any of this).
pub fn any(mounts: &[Mount]) -> bool {
    mounts.iter().any(asks)
}

/// How mount `m` is idmapped (`None`: it is not), or why it cannot be, as runc 1.3 decides:
/// mappings alone or with `idmap` map the top mount, `ridmap` the whole tree; only bind mounts
/// can be idmapped; both mappings are needed, except that a bare `idmap`/`ridmap` in a
/// container with a user namespace takes that namespace's mappings.
pub fn of_mount(linux: Option<&Linux>, m: &Mount) -> Result<Option<MountIdmap>, String> {
    if !asks(m) {
        return Ok(None);
    }
    let opts = mountopts::parse(m.options().as_deref().unwrap_or_default());
    // As runc 1.3: the option makes the bind (a `type` of "bind" alone does not).
    let typ = m.typ().as_deref().unwrap_or("");
    if !opts.is_bind() {
        return Err(format!(
            "id-mapped mounts (uidMappings, gidMappings, idmap, ridmap) are only supported for bind mounts, and this mount of type {} has no \"bind\" or \"rbind\" option",
            crate::error::echo(typ)
        ));
    }
    let recursive = opts.idmap == Some(IdmapScope::Recursive);
    let given = m.uid_mappings().is_some() || m.gid_mappings().is_some();
    let userns = if given {
        let uid = m.uid_mappings().clone().unwrap_or_default();
        let gid = m.gid_mappings().clone().unwrap_or_default();
        if uid.is_empty() || gid.is_empty() {
            return Err(
                "id-mapped mounts must have both uidMappings and gidMappings specified".into(),
            );
        }
        IdmapUserns::Maps { uid, gid }
    } else {
        let userns = linux
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or_default()
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::User);
        match userns {
            Some(ns) => match ns.path() {
                Some(p) => IdmapUserns::Path(p.clone()),
                None => IdmapUserns::Maps {
                    uid: linux
                        .and_then(|l| l.uid_mappings().clone())
                        .unwrap_or_default(),
                    gid: linux
                        .and_then(|l| l.gid_mappings().clone())
                        .unwrap_or_default(),
                },
            },
            None => {
                return Err(
                    "id-mapped mounts must have both uidMappings and gidMappings specified (idmap and ridmap without them take the container's user namespace's mappings, and linux.namespaces has no user namespace)"
                        .into(),
                )
            }
        }
    };
    Ok(Some(MountIdmap { recursive, userns }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mount(v: serde_json::Value) -> Mount {
        serde_json::from_value(v).unwrap()
    }

    fn linux(v: serde_json::Value) -> Linux {
        serde_json::from_value(v).unwrap()
    }

    fn map(c: u32, h: u32, s: u32) -> LinuxIdMapping {
        serde_json::from_value(json!({"containerID": c, "hostID": h, "size": s})).unwrap()
    }

    fn maps(c: u32, h: u32, s: u32) -> serde_json::Value {
        json!([{"containerID": c, "hostID": h, "size": s}])
    }

    fn no_userns() -> Linux {
        linux(json!({"namespaces": [{"type": "mount"}]}))
    }

    fn userns() -> Linux {
        linux(json!({
            "namespaces": [{"type": "mount"}, {"type": "user"}],
            "uidMappings": maps(0, 100000, 65536),
            "gidMappings": maps(0, 200000, 65536),
        }))
    }

    #[test]
    fn plain_mounts_are_not_idmapped() {
        let m = mount(
            json!({"destination": "/a", "type": "bind", "source": "/s", "options": ["rbind", "ro"]}),
        );
        assert_eq!(of_mount(Some(&userns()), &m), Ok(None));
        assert!(!any(&[m]));
    }

    #[test]
    fn mappings_alone_idmap_the_top_mount() {
        let m = mount(
            json!({"destination": "/a", "source": "/s", "options": ["rbind"],
            "uidMappings": maps(0, 1000, 10), "gidMappings": maps(0, 2000, 10)}),
        );
        assert!(any(std::slice::from_ref(&m)));
        let got = of_mount(Some(&no_userns()), &m).unwrap().unwrap();
        assert!(!got.recursive);
        assert_eq!(
            got.userns,
            IdmapUserns::Maps {
                uid: vec![map(0, 1000, 10)],
                gid: vec![map(0, 2000, 10)]
            }
        );
    }

    #[test]
    fn ridmap_is_recursive_and_idmap_is_not() {
        for (opt, rec) in [("idmap", false), ("ridmap", true)] {
            let m = mount(json!({"destination": "/a", "source": "/s", "type": "bind",
                "options": ["rbind", opt],
                "uidMappings": maps(0, 1000, 10), "gidMappings": maps(0, 1000, 10)}));
            assert_eq!(of_mount(None, &m).unwrap().unwrap().recursive, rec, "{opt}");
        }
    }

    #[test]
    fn bare_idmap_takes_the_containers_mappings() {
        let m = mount(json!({"destination": "/a", "source": "/s", "options": ["bind", "idmap"]}));
        assert_eq!(
            of_mount(Some(&userns()), &m).unwrap().unwrap().userns,
            IdmapUserns::Maps {
                uid: vec![map(0, 100000, 65536)],
                gid: vec![map(0, 200000, 65536)]
            }
        );
        let joined = linux(json!({"namespaces": [{"type": "user", "path": "/proc/1/ns/user"}]}));
        assert_eq!(
            of_mount(Some(&joined), &m).unwrap().unwrap().userns,
            IdmapUserns::Path("/proc/1/ns/user".into())
        );
    }

    #[test]
    fn refusals_as_runc() {
        // Not a bind mount.
        let m = mount(
            json!({"destination": "/a", "type": "tmpfs", "source": "tmpfs",
            "options": ["idmap"]}),
        );
        let e = of_mount(Some(&userns()), &m).unwrap_err();
        assert!(
            e.contains("only supported for bind mounts") && e.contains("tmpfs"),
            "{e}"
        );
        let m = mount(
            json!({"destination": "/a", "type": "tmpfs", "source": "tmpfs",
            "uidMappings": maps(0, 1, 1), "gidMappings": maps(0, 1, 1)}),
        );
        assert!(of_mount(None, &m).is_err());
        let m = mount(json!({"destination": "/a", "type": "bind", "source": "/s",
            "options": ["idmap"], "uidMappings": maps(0, 1, 1), "gidMappings": maps(0, 1, 1)}));
        assert!(of_mount(None, &m)
            .unwrap_err()
            .contains("no \"bind\" or \"rbind\" option"));
        // A bare idmap without a user namespace: nothing to take the mappings from.
        let m = mount(json!({"destination": "/a", "source": "/s", "options": ["bind", "idmap"]}));
        let e = of_mount(Some(&no_userns()), &m).unwrap_err();
        assert!(e.contains("both uidMappings and gidMappings"), "{e}");
        assert!(e.contains("no user namespace"), "{e}");
        // One of the two mappings, or an empty one.
        let m = mount(
            json!({"destination": "/a", "source": "/s", "options": ["bind"],
            "uidMappings": maps(0, 1, 1)}),
        );
        assert!(of_mount(Some(&userns()), &m)
            .unwrap_err()
            .contains("both uidMappings and gidMappings"));
        let m = mount(
            json!({"destination": "/a", "source": "/s", "options": ["bind"],
            "uidMappings": maps(0, 1, 1), "gidMappings": []}),
        );
        assert!(of_mount(None, &m).is_err());
    }
}
