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
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use image::fsutil::{self, lstat_at, openat2, IN_ROOT};

use crate::containers::Status;
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
    if !matches!(
        ctx.status(&c),
        Status::Running | Status::Paused | Status::Created
    ) {
        // Its layer, mounted where nothing else sees it, for as long as this process lives.
        crate::build::private_mounts()?;
        let mounts = ctx
            .store
            .snapshots
            .mounts(&c.id)
            .with_context(|| format!("container {}: its writable layer", c.name))?;
        image::snapshot::mount_all(&mounts, &root).context("mount the container's layer")?;
    }
    let root_fd = fsutil::open_dir(&root)?;
    if out {
        copy_out(root_fd.as_fd(), inside, Path::new(a.dest), a)
            .with_context(|| format!("copy {}:{inside} to {}", c.name, a.dest))?;
    } else {
        copy_in(&root, root_fd.as_fd(), Path::new(a.src), inside, a)
            .with_context(|| format!("copy {} to {}:{inside}", a.src, c.name))?;
    }
    Ok(0)
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
            let f = openat2(root, full, libc::O_RDONLY | libc::O_NONBLOCK, 0, IN_ROOT)
                .map_err(|e| anyhow!("{inside}: {e}"))?;
            let target = out_target(dest, inside, false, false)?;
            return copy_file(fs::File::from(f), &st, &target, a.archive);
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
    let target = out_target(dest, inside, is_dir, contents)?;
    read_tree(dir.as_fd(), &name, &st, &target, a.archive)
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

/// A regular file's content (open in the container) to `to`, with its mode, times and (with
/// `keep`) owner.
fn copy_file(mut src: fs::File, st: &libc::stat, to: &Path, keep: bool) -> Result<()> {
    let _ = fs::remove_file(to);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("create {}", to.display()))?;
    // The size stat gave: a file that grows meanwhile is cut there.
    io::copy(&mut (&mut src).take(st.st_size as u64), &mut out)?;
    out.set_permissions(fs::Permissions::from_mode(st.st_mode & 0o7777))?;
    finish(to, st, keep)
}

/// Owner (with `keep`) and times of a copied entry.
fn finish(to: &Path, st: &libc::stat, keep: bool) -> Result<()> {
    if keep {
        std::os::unix::fs::lchown(to, Some(st.st_uid), Some(st.st_gid))?;
    }
    let atime = nix::sys::time::TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mtime = nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// Copy `name` in container directory `dir` (already lstat'ed as `st`) to host path `to`.
fn read_tree(
    dir: BorrowedFd<'_>,
    name: &[u8],
    st: &libc::stat,
    to: &Path,
    keep: bool,
) -> Result<()> {
    let mode = st.st_mode & 0o7777;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            match fs::DirBuilder::new().mode(0o700).create(to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && to.is_dir() => {}
                Err(e) => return Err(e).with_context(|| format!("create {}", to.display())),
            }
            let fd = open_nofollow(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)?;
            for child in fsutil::list_dir(fd.as_fd())? {
                let c = child.as_bytes();
                let Some(cst) = lstat_at(fd.as_fd(), c)? else {
                    continue;
                };
                read_tree(fd.as_fd(), c, &cst, &to.join(OsStr::from_bytes(c)), keep)?;
            }
            fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
        }
        libc::S_IFREG => {
            let fd = open_nofollow(dir, name, libc::O_RDONLY | libc::O_NONBLOCK)?;
            return copy_file(fs::File::from(fd), st, to, keep);
        }
        libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(dir, OsStr::from_bytes(name))?;
            let _ = fs::remove_file(to);
            std::os::unix::fs::symlink(&target, to)
                .with_context(|| format!("create {}", to.display()))?;
        }
        libc::S_IFIFO => {
            let _ = fs::remove_file(to);
            nix::unistd::mkfifo(to, nix::sys::stat::Mode::from_bits_truncate(mode))?;
        }
        // Sockets and device nodes stay behind.
        _ => return Ok(()),
    }
    finish(to, st, keep)
}

/// Copy what directory `src` (a descriptor inside a rootfs) holds into host directory `to`,
/// owners, modes and times kept, `to` taking the directory's own (a volume's first fill).
pub(crate) fn copy_tree_into(src: BorrowedFd<'_>, to: &Path) -> Result<()> {
    let st = fsutil::fstat(src)?;
    read_tree(src, b".", &st, to, true)
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
