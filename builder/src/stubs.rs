//! Mount-point stubs: a RUN step's container mounts /proc, /dev, /sys, /etc/resolv.conf, ...
//! and the runtime creates every mount point the image lacks, in the step's upper directory,
//! where they would become part of the layer (and the directories they are made in would be
//! copied up into it). As BuildKit does, what the runtime will create is noted before the step,
//! with the attributes and times of the directories above it, and afterwards:
//! - each created path that is still an empty file or directory is removed, deepest first;
//! - each directory above one that was removed gets its times back, and is removed from the
//!   upper directory altogether when it is now empty, not opaque, and has the mode and owner
//!   it had before the step (a plain copy-up: the lower one shows through again).
//!
//! Nothing is followed in the upper directory: the step may have left symlinks anywhere in it.

use std::os::fd::AsFd;
use std::path::Path;

use image::fsutil;

/// A directory above a mount point, as it was before the step.
#[derive(Clone, Debug)]
struct Above {
    rel: String,
    mode: u32,
    uid: u32,
    gid: u32,
    atime: libc::timespec,
    mtime: libc::timespec,
}

/// What mounting a step's destinations will create.
#[derive(Clone, Debug, Default)]
pub struct Stubs {
    /// Paths (relative, clean) the runtime will create.
    made: Vec<String>,
    /// The directories above them that exist.
    above: Vec<Above>,
}

impl Stubs {
    pub fn made(&self) -> &[String] {
        &self.made
    }
}

const NO_LINKS: u64 = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_BENEATH;

/// What mounting `destinations` on the (mounted) `rootfs` will create.
pub fn find(rootfs: &Path, destinations: &[String]) -> Stubs {
    let mut out = Stubs::default();
    let Ok(root) = fsutil::open_dir(rootfs) else {
        return out;
    };
    for d in destinations {
        let rel = crate::clean(d);
        let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        for i in 0..parts.len() {
            let prefix = parts[..=i].join("/");
            match fsutil::openat2(root.as_fd(), prefix.as_bytes(), libc::O_PATH, 0, NO_LINKS) {
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    // This one and every one below it will be made.
                    for j in i..parts.len() {
                        let p = parts[..=j].join("/");
                        if !out.made.contains(&p) {
                            out.made.push(p);
                        }
                    }
                    for j in 0..i {
                        let p = parts[..=j].join("/");
                        if out.above.iter().any(|a| a.rel == p) {
                            continue;
                        }
                        let st =
                            fsutil::openat2(root.as_fd(), p.as_bytes(), libc::O_PATH, 0, NO_LINKS)
                                .and_then(|fd| fsutil::fstat(fd.as_fd()));
                        if let Ok(st) = st {
                            out.above.push(Above {
                                rel: p,
                                mode: st.st_mode,
                                uid: st.st_uid,
                                gid: st.st_gid,
                                atime: libc::timespec {
                                    tv_sec: st.st_atime,
                                    tv_nsec: st.st_atime_nsec,
                                },
                                mtime: libc::timespec {
                                    tv_sec: st.st_mtime,
                                    tv_nsec: st.st_mtime_nsec,
                                },
                            });
                        }
                    }
                    break;
                }
                // A symlink on the way (or anything else): the runtime resolves it in the
                // rootfs, somewhere this cannot name; leave it.
                Err(_) => break,
            }
        }
    }
    out
}

fn depth(rel: &str) -> usize {
    rel.matches('/').count()
}

/// Take `stubs` out of the step's (unmounted) `upper` directory.
pub fn remove(upper: &Path, stubs: &Stubs) {
    let Ok(root) = fsutil::open_dir(upper) else {
        return;
    };
    let open_dir = |rel: &str| {
        fsutil::openat2(
            root.as_fd(),
            rel.as_bytes(),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            NO_LINKS,
        )
    };
    let mut made: Vec<&String> = stubs.made.iter().collect();
    made.sort_by_key(|s| std::cmp::Reverse(depth(s)));
    let mut removed: Vec<&str> = Vec::new();
    for s in made {
        let (parent, name) = s.rsplit_once('/').unwrap_or(("", s));
        let Ok(dir) = open_dir(parent) else { continue };
        if fsutil::remove_empty_at(dir.as_fd(), name.as_bytes()).unwrap_or(false) {
            removed.push(s);
        }
    }
    let mut above: Vec<&Above> = stubs.above.iter().collect();
    above.sort_by_key(|a| std::cmp::Reverse(depth(&a.rel)));
    for a in above {
        let prefix = format!("{}/", a.rel);
        if !removed.iter().any(|r| r.starts_with(&prefix)) {
            continue;
        }
        let Ok(dir) = open_dir(&a.rel) else { continue };
        let Ok(st) = fsutil::fstat(dir.as_fd()) else {
            continue;
        };
        let same = st.st_mode == a.mode && st.st_uid == a.uid && st.st_gid == a.gid;
        let (parent, name) = a.rel.rsplit_once('/').unwrap_or(("", &a.rel));
        if same && !image::layer::is_opaque(dir.as_fd()) {
            drop(dir);
            if let Ok(p) = open_dir(parent) {
                if fsutil::remove_empty_at(p.as_fd(), name.as_bytes()).unwrap_or(false) {
                    removed.push(&a.rel);
                    continue;
                }
            }
            if let Ok(dir) = open_dir(&a.rel) {
                let _ = fsutil::set_times(dir.as_fd(), a.atime, a.mtime);
            }
        } else {
            let _ = fsutil::set_times(dir.as_fd(), a.atime, a.mtime);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_are_found_and_removed_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("link")).unwrap();
        let dests: Vec<String> = [
            "/proc",
            "/dev/pts",
            "/dev/shm",
            "/etc/resolv.conf",
            "/link/x",
            "/run/secrets/s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let stubs = find(&root, &dests);
        assert_eq!(
            stubs.made(),
            [
                "dev",
                "dev/pts",
                "dev/shm",
                "etc/resolv.conf",
                "run/secrets",
                "run/secrets/s"
            ]
        );

        // What a runtime would have made in an upper directory, with /etc and /run copied
        // up; plus a file the step wrote in /etc.
        let upper = t.path().join("upper");
        std::fs::create_dir_all(upper.join("dev/pts")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("run/secrets")).unwrap();
        std::fs::write(upper.join("etc/resolv.conf"), "").unwrap();
        std::fs::write(upper.join("run/secrets/s"), "").unwrap();
        std::fs::write(upper.join("etc/kept"), "x").unwrap();
        remove(&upper, &stubs);
        assert!(!upper.join("dev").exists());
        assert!(!upper.join("etc/resolv.conf").exists());
        assert!(upper.join("etc/kept").exists());
        // /run was only copied up: it goes, the lower one shows through.
        assert!(!upper.join("run").exists());

        // A stub whose parent became a symlink to elsewhere is not followed.
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("resolv.conf"), "").unwrap();
        std::fs::remove_dir_all(upper.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, upper.join("etc")).unwrap();
        remove(&upper, &stubs);
        assert!(outside.join("resolv.conf").exists());
    }
}
