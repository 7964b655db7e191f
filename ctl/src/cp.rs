//! `cp [-a] [-L] SRC DEST`: files between a container's root filesystem and the host, with
//! docker's path rules (a directory is copied into an existing directory under its own name,
//! or as a new one; `SRC/.` copies what is in it; a file into a directory keeps its name).
//!
//! The container's side is never walked by path: out of a container, the source is opened
//! with every symlink resolved as if the rootfs were `/` (openat2 RESOLVE_IN_ROOT) and its
//! tree is read through directory descriptors with O_NOFOLLOW, so a symlink in the container
//! (even one swapped in while the copy runs) is copied as a symlink and never leads out;
//! into a container, the files go as a tar applied inside the root (image::layer::apply,
//! which resolves every entry inside it). A stopped container's layer is mounted for the copy
//! in a mount namespace of berthctl's own, which ends with it. Files copied in belong to the
//! container's root unless `-a` keeps their owners; files copied out belong to the caller
//! unless `-a`.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use image::fsutil::{self, lstat_at, openat2, IN_ROOT};

use crate::ctx::Ctx;

pub struct CpArgs<'a> {
    pub src: &'a str,
    pub dest: &'a str,
    /// Keep owners (uid/gid).
    pub archive: bool,
    /// Follow a source that is a symlink.
    pub follow: bool,
}

/// `NAME:PATH` names a container (a colon before any slash), anything else a host path.
fn split(arg: &str) -> Option<(&str, &str)> {
    let colon = arg.find(':')?;
    if arg[..colon].contains('/') || colon == 0 {
        return None;
    }
    Some((&arg[..colon], &arg[colon + 1..]))
}

pub fn cp(ctx: &Ctx, a: &CpArgs<'_>) -> Result<i32> {
    let (name, inside, out) = match (split(a.src), split(a.dest)) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("one of SRC and DEST must be CONTAINER:PATH"),
        (Some((n, p)), None) => (n, p, true),
        (None, Some((n, p))) => (n, p, false),
    };
    let c = ctx.find(name)?;
    let root = ctx.rootfs_dir(&c.id);
    // Its rootfs is mounted while it runs, is created or waits for a restart: that mount is
    // the one to use (a second overlay on the same upper directory is not).
    if !is_mounted(&root)? {
        // Its layer, mounted where nothing else sees it, for as long as this process lives.
        crate::build::private_mounts()?;
        let mounts = ctx
            .store
            .snapshots
            .mounts(&c.id)
            .with_context(|| format!("container {}: its writable layer", c.name))?;
        image::snapshot::mount_all(&mounts, &root).context("mount the container's layer")?;
    }
    // A path under a volume or a bind mount of a directory is that directory's (as docker's
    // cp sees the container's mounts), confined to it the same way.
    let spec: serde_json::Value = fs::read(ctx.bundle_dir(&c.id).join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    let (root, within, readonly) = match mounted_dir(&spec, inside) {
        Some((src, rest, ro)) => (src, rest, ro),
        None => (root, inside.to_string(), false),
    };
    let root_fd = fsutil::open_dir(&root)?;
    if out {
        copy_out(root_fd.as_fd(), &within, Path::new(a.dest), a)
            .with_context(|| format!("copy {}:{inside} to {}", c.name, a.dest))?;
    } else {
        if readonly {
            bail!(
                "copy to {}:{inside}: mounted volume is marked read-only",
                c.name
            );
        }
        copy_in(&root, root_fd.as_fd(), Path::new(a.src), &within, a)
            .with_context(|| format!("copy {} to {}:{inside}", a.src, c.name))?;
    }
    Ok(0)
}

/// The bind mount of a host directory (a volume, `-v`, `--mount`) whose destination holds
/// `inside` (the deepest one): its source, the path below it ("/..."), and whether it is
/// read-only.
fn mounted_dir(
    spec: &serde_json::Value,
    inside: &str,
) -> Option<(std::path::PathBuf, String, bool)> {
    let norm = |p: &str| format!("/{}", p.trim_matches('/'));
    let inside = norm(inside);
    spec["mounts"]
        .as_array()?
        .iter()
        .filter(|m| m["type"] == "bind")
        .filter_map(|m| {
            let dest = norm(m["destination"].as_str()?);
            let src = std::path::PathBuf::from(m["source"].as_str()?);
            let rest = if inside == dest {
                "/".to_string()
            } else if dest == "/" {
                return None;
            } else {
                inside.strip_prefix(&format!("{dest}/"))?.to_string()
            };
            if !src.is_dir() {
                return None;
            }
            let ro = m["options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|x| x == "ro"));
            Some((
                dest.len(),
                src,
                format!("/{}", rest.trim_start_matches('/')),
                ro,
            ))
        })
        .max_by_key(|(len, ..)| *len)
        .map(|(_, src, rest, ro)| (src, rest, ro))
}

/// Whether `path` is a mount point in this mount namespace.
fn is_mounted(path: &Path) -> Result<bool> {
    let info = fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    let want = path.to_string_lossy();
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want))
}

/// A container path as (parent, last name, copy-the-content `/.`): relative to its `/`.
fn container_path(p: &str) -> (String, String, bool) {
    let contents = p.ends_with("/.") || p == ".";
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    match parts.split_last() {
        Some((last, parent)) => (parent.join("/"), last.to_string(), contents),
        None => (String::new(), String::new(), true),
    }
}

fn copy_out(root: BorrowedFd<'_>, inside: &str, dest: &Path, a: &CpArgs<'_>) -> Result<()> {
    let (parent, name, contents) = container_path(inside);
    let dir =
        fsutil::open_dir_in_root(root, parent.as_bytes()).map_err(|e| anyhow!("{inside}: {e}"))?;
    // The source itself: `/` is the root's own directory.
    let (dir, name): (OwnedFd, Vec<u8>) = if name.is_empty() {
        (
            openat2(root, b".", libc::O_PATH | libc::O_DIRECTORY, 0, 0)?,
            b".".to_vec(),
        )
    } else if a.follow {
        // -L: the source's own symlink is followed, still inside the root.
        let full = format!("{parent}/{name}");
        let full = full.trim_start_matches('/').as_bytes();
        let fd =
            openat2(root, full, libc::O_PATH, 0, IN_ROOT).map_err(|e| anyhow!("{inside}: {e}"))?;
        let st = fsutil::fstat(fd.as_fd())?;
        if !fsutil::is_dir(&st) {
            let target = out_target(dest, inside, false, false)?;
            let (dir, name) = host_dir_of(&target)?;
            return match st.st_mode & libc::S_IFMT {
                libc::S_IFREG => write_file(
                    reopen_regular(&fd, &st)?,
                    &st,
                    dir.as_fd(),
                    &name,
                    a.archive,
                ),
                _ => bail!("{inside}: not a regular file or a directory"),
            };
        }
        (fd, b".".to_vec())
    } else {
        (dir, name.into_bytes())
    };
    let st = lstat_at(dir.as_fd(), &name)?
        .ok_or_else(|| anyhow!("{inside}: no such file or directory"))?;
    let is_dir = fsutil::is_dir(&st);
    if contents && !is_dir {
        bail!("{inside}: not a directory");
    }
    let mut target = out_target(dest, inside, is_dir, contents)?;
    if target == dest {
        // The caller named it: their symlinks are followed, as a shell would.
        if let Ok(real) = fs::canonicalize(&target) {
            target = real;
        }
    }
    let (host_dir, host_name) = host_dir_of(&target)?;
    write_tree(
        dir.as_fd(),
        &name,
        &st,
        host_dir.as_fd(),
        &host_name,
        a.archive,
    )
}

/// The host directory a copy out writes in, open, and the name in it. The caller's own path
/// is resolved as given; a last component that came from the container's side (a name added
/// below an existing directory) is not: a symlink there, left by an earlier copy, is replaced.
fn host_dir_of(target: &Path) -> Result<(OwnedFd, Vec<u8>)> {
    let name = target
        .file_name()
        .filter(|n| *n != "." && *n != "..")
        .ok_or_else(|| {
            anyhow!(
                "{}: give a path that names a file or directory",
                target.display()
            )
        })?;
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((fsutil::open_dir(parent)?, name.as_bytes().to_vec()))
}

/// Where on the host a copy out goes, by docker's rules.
fn out_target(
    dest: &Path,
    inside: &str,
    is_dir: bool,
    contents: bool,
) -> Result<std::path::PathBuf> {
    let base = Path::new(inside.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "root".into());
    Ok(match fs::metadata(dest) {
        Ok(m) if m.is_dir() && !contents => dest.join(base),
        Ok(m) if !m.is_dir() && is_dir => {
            bail!("cannot copy a directory onto a file: {}", dest.display())
        }
        Ok(_) => dest.to_path_buf(),
        Err(_) if dest.to_string_lossy().ends_with('/') => {
            bail!("{}: no such directory", dest.display())
        }
        Err(_) => {
            let p = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !p.is_dir() {
                bail!("{}: no such directory", p.display());
            }
            dest.to_path_buf()
        }
    })
}

/// Resolution for one name in a directory: no symlink, no `..`, no leaving it.
const ONE_NAME: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;

/// Open `name` in container directory `dir` for reading, only if it is still the regular file
/// `st` says (a device node or a FIFO swapped in meanwhile is never opened: opening one can
/// act on the host's hardware, or block).
fn open_regular(dir: BorrowedFd<'_>, name: &[u8], st: &libc::stat) -> Result<fs::File> {
    let fd = openat2(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0, ONE_NAME)?;
    reopen_regular(&fd, st)
}

/// Reopen an O_PATH descriptor for reading when it is the regular file `st` (same inode).
fn reopen_regular(fd: &OwnedFd, st: &libc::stat) -> Result<fs::File> {
    let now = fsutil::fstat(fd.as_fd())?;
    if now.st_mode & libc::S_IFMT != libc::S_IFREG
        || now.st_ino != st.st_ino
        || now.st_dev != st.st_dev
    {
        bail!("a file changed while it was copied (not a regular file any more)");
    }
    // The magic link reopens that very inode: a regular file.
    fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd())).context("reopen a file to copy")
}

/// Make room for `name` in host directory `dir`: whatever is there goes (a symlink is removed,
/// never followed), except a directory when a directory is to be written.
fn clear_for(dir: BorrowedFd<'_>, name: &[u8], keep_dir: bool) -> Result<()> {
    match lstat_at(dir, name)? {
        Some(st) if keep_dir && fsutil::is_dir(&st) => Ok(()),
        Some(_) => Ok(fsutil::remove_at(dir, name)?),
        None => Ok(()),
    }
}

/// Owner (with `keep`) and times of the entry `name` in `dir`, never through a symlink.
fn set_attrs_at(dir: BorrowedFd<'_>, name: &[u8], st: &libc::stat, keep: bool) -> Result<()> {
    let name = OsStr::from_bytes(name);
    if keep {
        nix::unistd::fchownat(
            dir,
            name,
            Some(nix::unistd::Uid::from_raw(st.st_uid)),
            Some(nix::unistd::Gid::from_raw(st.st_gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
    }
    nix::sys::stat::utimensat(
        dir,
        name,
        &nix::sys::time::TimeSpec::new(st.st_atime, st.st_atime_nsec),
        &nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// Mode, owner (with `keep`) and times through an open descriptor.
fn set_attrs_fd(fd: BorrowedFd<'_>, st: &libc::stat, keep: bool) -> Result<()> {
    nix::sys::stat::fchmod(
        fd,
        nix::sys::stat::Mode::from_bits_truncate(st.st_mode & 0o7777),
    )?;
    if keep {
        nix::unistd::fchown(
            fd,
            Some(nix::unistd::Uid::from_raw(st.st_uid)),
            Some(nix::unistd::Gid::from_raw(st.st_gid)),
        )?;
    }
    fsutil::set_times(
        fd,
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    )?;
    Ok(())
}

/// A regular file's content (open in the container) as `name` in host directory `dir`.
fn write_file(
    mut src: fs::File,
    st: &libc::stat,
    dir: BorrowedFd<'_>,
    name: &[u8],
    keep: bool,
) -> Result<()> {
    clear_for(dir, name, false)?;
    let fd = openat2(
        dir,
        name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o600,
        ONE_NAME,
    )
    .with_context(|| format!("create {}", String::from_utf8_lossy(name)))?;
    let mut out = fs::File::from(fd);
    // The size stat gave: a file that grows meanwhile is cut there.
    io::copy(&mut (&mut src).take(st.st_size as u64), &mut out)?;
    set_attrs_fd(out.as_fd(), st, keep)
}

/// Copy `name` in container directory `dir` (already lstat'ed as `st`) as `to` in host
/// directory `to_dir`. Both sides go by descriptor: a symlink on either side is an entry to
/// copy or to replace, never a way elsewhere (a container that planted `x -> /etc` in a
/// volume, or in what an earlier `cp` wrote, cannot send a write into the host's /etc).
fn write_tree(
    dir: BorrowedFd<'_>,
    name: &[u8],
    st: &libc::stat,
    to_dir: BorrowedFd<'_>,
    to: &[u8],
    keep: bool,
) -> Result<()> {
    let mode = nix::sys::stat::Mode::from_bits_truncate(st.st_mode & 0o7777);
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            clear_for(to_dir, to, true)?;
            match nix::sys::stat::mkdirat(
                to_dir,
                OsStr::from_bytes(to),
                nix::sys::stat::Mode::S_IRWXU,
            ) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("create {}", String::from_utf8_lossy(to)))
                }
            }
            let out = openat2(
                to_dir,
                to,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
                ONE_NAME,
            )
            .with_context(|| format!("open {}", String::from_utf8_lossy(to)))?;
            let src = open_nofollow(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)?;
            for child in fsutil::list_dir(src.as_fd())? {
                let c = child.as_bytes();
                let Some(cst) = lstat_at(src.as_fd(), c)? else {
                    continue;
                };
                write_tree(src.as_fd(), c, &cst, out.as_fd(), c, keep)?;
            }
            set_attrs_fd(out.as_fd(), st, keep)
        }
        libc::S_IFREG => write_file(open_regular(dir, name, st)?, st, to_dir, to, keep),
        libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(dir, OsStr::from_bytes(name))?;
            clear_for(to_dir, to, false)?;
            nix::unistd::symlinkat(target.as_os_str(), to_dir, OsStr::from_bytes(to))?;
            set_attrs_at(to_dir, to, st, keep)
        }
        libc::S_IFIFO => {
            clear_for(to_dir, to, false)?;
            nix::unistd::mkfifoat(to_dir, OsStr::from_bytes(to), mode)?;
            set_attrs_at(to_dir, to, st, keep)
        }
        // Sockets and device nodes stay behind.
        _ => Ok(()),
    }
}

/// Copy what directory `src` (a descriptor inside a rootfs) holds into host directory `to`,
/// owners, modes and times kept, `to` taking the directory's own (a volume's first fill).
pub(crate) fn copy_tree_into(src: BorrowedFd<'_>, to: &Path) -> Result<()> {
    let st = fsutil::fstat(src)?;
    let (dir, name) = host_dir_of(to)?;
    write_tree(src, b".", &st, dir.as_fd(), &name, true)
}

fn open_nofollow(dir: BorrowedFd<'_>, name: &[u8], flags: i32) -> io::Result<OwnedFd> {
    openat2(
        dir,
        name,
        flags | libc::O_NOFOLLOW,
        0,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    )
}

fn copy_in(
    root: &Path,
    root_fd: BorrowedFd<'_>,
    src: &Path,
    inside: &str,
    a: &CpArgs<'_>,
) -> Result<()> {
    let src_s = src.to_string_lossy();
    let contents = src_s.ends_with("/.");
    let md = if a.follow {
        fs::metadata(src)
    } else {
        fs::symlink_metadata(src)
    }
    .with_context(|| format!("{}", src.display()))?;
    let src = if a.follow {
        fs::canonicalize(src)?
    } else {
        src.to_path_buf()
    };
    if contents && !md.is_dir() {
        bail!("{}: not a directory", src.display());
    }
    check_names(&src)?;
    let (parent, name, _) = container_path(inside);
    let full = if name.is_empty() {
        String::new()
    } else if parent.is_empty() {
        name.clone()
    } else {
        format!("{parent}/{name}")
    };
    let dest_is_dir =
        !full.is_empty() && fsutil::open_dir_in_root(root_fd, full.as_bytes()).is_ok();
    if fsutil::open_dir_in_root(root_fd, parent.as_bytes()).is_err() {
        bail!(
            "{}: no such directory in the container",
            if parent.is_empty() { "/" } else { &parent }
        );
    }
    let base = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let items: Vec<builder::copy::Item> = if contents {
        fs::read_dir(&src)?
            .map(|e| {
                let e = e?;
                let n = e.file_name().to_string_lossy().into_owned();
                Ok(builder::copy::Item {
                    source: builder::copy::Source::Path(e.path()),
                    dest: if full.is_empty() {
                        n
                    } else {
                        format!("{full}/{n}")
                    },
                })
            })
            .collect::<io::Result<_>>()?
    } else {
        let dest = match (full.is_empty(), dest_is_dir) {
            (true, _) => base,
            (false, true) => format!("{full}/{base}"),
            (false, false) if inside.ends_with('/') => {
                bail!("{inside}: no such directory in the container")
            }
            (false, false) => full.clone(),
        };
        vec![builder::copy::Item {
            source: builder::copy::Source::Path(src.clone()),
            dest,
        }]
    };
    let attrs = builder::copy::Attrs {
        chown: (!a.archive).then_some((0, 0)),
        chmod: None,
        keep_owner: a.archive,
    };
    let (reader, writer) = io::pipe()?;
    let writing = std::thread::spawn(move || {
        let mut w = io::BufWriter::new(writer);
        builder::copy::write_tar(&items, &attrs, &mut w)?;
        w.flush()
    });
    let applied = image::layer::apply(
        root,
        io::BufReader::new(reader),
        &image::layer::ApplyOptions::delete(),
    );
    let wrote = writing
        .join()
        .map_err(|_| anyhow!("the copy's reader panicked"))?;
    wrote.with_context(|| format!("read {}", src.display()))?;
    applied?;
    Ok(())
}

/// A name `.wh.*` would be taken for a whiteout (a deletion) on the way in: refused.
fn check_names(p: &Path) -> Result<()> {
    let mut stack = vec![p.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.file_name()
            .is_some_and(|n| n.as_bytes().starts_with(b".wh."))
        {
            bail!(
                "{}: a name starting with .wh. cannot be copied in",
                p.display()
            );
        }
        if fs::symlink_metadata(&p)?.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}
