//! `User` of an image config resolved against the image's own /etc/passwd and /etc/group, the
//! way containerd's `WithUser` + `WithAdditionalGIDs` do it. The files are opened inside the
//! rootfs (`openat2(RESOLVE_IN_ROOT)`): a symlinked /etc/passwd cannot make us read the host's.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then the groups that list the user as a member.
    pub additional_gids: Vec<u32>,
    pub name: Option<String>,
    pub home: Option<String>,
}

#[derive(Clone, Debug)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Clone, Debug)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_in_root(rootfs: &Path, path: &str) -> Result<Option<String>> {
    match fsutil::open_file_in_root(rootfs, path) {
        Ok(f) => {
            let mut s = String::new();
            f.take(16 << 20)
                .read_to_string(&mut s)
                .map_err(|e| Error::io(format!("read {path} of the image"), e))?;
            Ok(Some(s))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(Error::io(format!("open {path} of the image"), e)),
    }
}

fn parse_passwd(s: &str) -> Vec<PasswdEntry> {
    s.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn parse_group(s: &str) -> Vec<GroupEntry> {
    s.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(|x| x.trim().to_string())
                            .filter(|x| !x.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolve `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) in `rootfs`.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser> {
    let passwd = read_in_root(rootfs, "etc/passwd")?
        .map(|s| parse_passwd(&s))
        .unwrap_or_default();
    let groups = read_in_root(rootfs, "etc/group")?
        .map(|s| parse_group(&s))
        .unwrap_or_default();
    resolve_with(&passwd, &groups, user)
}

fn resolve_with(passwd: &[PasswdEntry], groups: &[GroupEntry], user: &str) -> Result<ResolvedUser> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = match u.parse::<u32>() {
        Ok(uid) => passwd
            .iter()
            .find(|p| p.uid == uid)
            .cloned()
            .or(Some(PasswdEntry {
                name: String::new(),
                uid,
                gid: 0,
                home: String::new(),
            })),
        Err(_) => Some(
            passwd
                .iter()
                .find(|p| p.name == u)
                .cloned()
                .ok_or_else(|| {
                    Error::invalid("user", format!("no user {u:?} in the image's /etc/passwd"))
                })?,
        ),
    }
    .expect("set above");
    let gid = match g {
        None | Some("") => entry.gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|x| x.name == g)
                .map(|x| x.gid)
                .ok_or_else(|| {
                    Error::invalid("user", format!("no group {g:?} in the image's /etc/group"))
                })?,
        },
    };
    let mut additional = vec![gid];
    if !entry.name.is_empty() {
        for grp in groups {
            if grp.name != entry.name
                && grp.members.contains(&entry.name)
                && !additional.contains(&grp.gid)
            {
                additional.push(grp.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid: entry.uid,
        gid,
        additional_gids: additional,
        name: (!entry.name.is_empty()).then(|| entry.name.clone()),
        home: (!entry.home.is_empty()).then(|| entry.home.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> (Vec<PasswdEntry>, Vec<GroupEntry>) {
        (
            parse_passwd("root:x:0:0:root:/root:/bin/sh\n# comment\nuser1:x:1000:1000::/home/u:/bin/sh\nbad line\n"),
            parse_group("root:x:0:\nuser1:x:1000:\nextra:x:2000:user1,other\nwheel:x:10:root,user1\n"),
        )
    }

    #[test]
    fn resolves_like_containerd() {
        let (p, g) = files();
        let r = resolve_with(&p, &g, "").unwrap();
        assert_eq!((r.uid, r.gid), (0, 0));
        assert_eq!(r.additional_gids, vec![0, 10]);
        let r = resolve_with(&p, &g, "user1").unwrap();
        assert_eq!((r.uid, r.gid), (1000, 1000));
        assert_eq!(r.additional_gids, vec![1000, 2000, 10]);
        assert_eq!(r.home.as_deref(), Some("/home/u"));
        let r = resolve_with(&p, &g, "1000").unwrap();
        assert_eq!((r.uid, r.gid), (1000, 1000));
        let r = resolve_with(&p, &g, "4242").unwrap();
        assert_eq!((r.uid, r.gid), (4242, 0));
        assert_eq!(r.additional_gids, vec![0]);
        let r = resolve_with(&p, &g, "user1:extra").unwrap();
        assert_eq!((r.uid, r.gid), (1000, 2000));
        let r = resolve_with(&p, &g, "5:6").unwrap();
        assert_eq!((r.uid, r.gid), (5, 6));
        assert!(resolve_with(&p, &g, "nosuch").is_err());
        assert!(resolve_with(&p, &g, "user1:nosuch").is_err());
    }

    #[test]
    fn files_are_read_inside_the_rootfs() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // /etc/passwd of the image is a symlink to the host's: it is resolved inside the rootfs,
        // where it does not exist.
        std::os::unix::fs::symlink("/etc/passwd", root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc/group", root.join("etc/group")).unwrap();
        assert!(resolve_user(&root, "root").is_err());
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::fs::write(root.join("etc/passwd"), "daemon:x:1:1::/:/bin/false\n").unwrap();
        // etc/group -> itself inside the rootfs: a loop, an error.
        assert!(resolve_user(&root, "daemon").is_err());
        std::fs::remove_file(root.join("etc/group")).unwrap();
        let r = resolve_user(&root, "daemon").unwrap();
        assert_eq!((r.uid, r.gid), (1, 1));
    }
}
