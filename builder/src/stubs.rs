//! Mount-point stubs: a RUN step's container mounts /proc, /dev, /sys, /etc/resolv.conf, ...
//! and the runtime creates each mount point that the image lacks, in the step's upper
//! directory, where it would become part of the layer. As BuildKit does, the first missing
//! component of every mount destination is noted before the step (with its parent's times)
//! and afterwards removed from the upper directory if it is still an empty file or directory,
//! and the parent's times are put back. Nothing is followed in the upper directory: the step
//! may have left symlinks anywhere in it.

use std::os::fd::AsFd;
use std::path::Path;

use image::fsutil;

/// A mount point that did not exist before the step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stub {
    /// Its path, relative and clean.
    pub rel: String,
    /// Its parent's (atime, mtime) before the step.
    times: Option<(libc::timespec, libc::timespec)>,
}

const NO_LINKS: u64 = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_BENEATH;

/// The stubs that mounting `destinations` on the (mounted) `rootfs` will create.
pub fn find(rootfs: &Path, destinations: &[String]) -> Vec<Stub> {
    let Ok(root) = fsutil::open_dir(rootfs) else {
        return Vec::new();
    };
    let mut out: Vec<Stub> = Vec::new();
    for d in destinations {
        let rel = crate::clean(d);
        let mut prefix = String::new();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            let parent = prefix.clone();
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(c);
            match fsutil::openat2(root.as_fd(), prefix.as_bytes(), libc::O_PATH, 0, NO_LINKS) {
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    if !out.iter().any(|s| s.rel == prefix) {
                        let times = fsutil::openat2(
                            root.as_fd(),
                            parent.as_bytes(),
                            libc::O_PATH,
                            0,
                            NO_LINKS,
                        )
                        .and_then(|fd| fsutil::fstat(fd.as_fd()))
                        .ok()
                        .map(|st| {
                            (
                                libc::timespec {
                                    tv_sec: st.st_atime,
                                    tv_nsec: st.st_atime_nsec,
                                },
                                libc::timespec {
                                    tv_sec: st.st_mtime,
                                    tv_nsec: st.st_mtime_nsec,
                                },
                            )
                        });
                        out.push(Stub {
                            rel: prefix.clone(),
                            times,
                        });
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

/// Remove `stubs` from the step's (unmounted) `upper` directory, deepest first, and restore
/// their parents' times.
pub fn remove(upper: &Path, stubs: &[Stub]) {
    let Ok(root) = fsutil::open_dir(upper) else {
        return;
    };
    let mut sorted: Vec<&Stub> = stubs.iter().collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.rel.matches('/').count()));
    for s in sorted {
        let (parent, name) = s.rel.rsplit_once('/').unwrap_or(("", &s.rel));
        let Ok(dir) = fsutil::openat2(
            root.as_fd(),
            parent.as_bytes(),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            NO_LINKS,
        ) else {
            continue;
        };
        if fsutil::remove_empty_at(dir.as_fd(), name.as_bytes()).unwrap_or(false) {
            if let Some((a, m)) = s.times {
                let _ = fsutil::set_times(dir.as_fd(), a, m);
            }
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
        std::os::unix::fs::symlink("/tmp", root.join("link")).unwrap();
        let dests: Vec<String> = [
            "/proc",
            "/dev/pts",
            "/dev/shm",
            "/etc/resolv.conf",
            "/link/x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let stubs = find(&root, &dests);
        let rels: Vec<&str> = stubs.iter().map(|s| s.rel.as_str()).collect();
        assert_eq!(rels, ["dev", "etc/resolv.conf"]);

        // What a runtime would have made, in an upper directory; plus a step's own file.
        let upper = t.path().join("upper");
        std::fs::create_dir_all(upper.join("dev")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/resolv.conf"), "").unwrap();
        std::fs::write(upper.join("etc/kept"), "x").unwrap();
        remove(&upper, &stubs);
        assert!(!upper.join("dev").exists());
        assert!(!upper.join("etc/resolv.conf").exists());
        assert!(upper.join("etc/kept").exists());

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
