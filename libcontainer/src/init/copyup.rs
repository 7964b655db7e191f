//! `tmpcopyup` (runc's extension): fill a new tmpfs with what the directory under it held,
//! keeping each entry's type, mode, owner, extended attributes and times; symlinks are copied
//! as symlinks, never followed. Everything is done relative to directory descriptors: the
//! source is the covered directory, opened before the tmpfs was mounted on it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, mkdirat, mknodat, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;

/// Deeper trees than this are refused (a loop cannot happen without symlinks, which are not
/// followed, but a limit keeps the descriptors bounded).
const MAX_DEPTH: u32 = 256;

/// Copy the contents of the directory `from` into the directory `to` (both may be O_PATH).
pub fn copy_dir(from: BorrowedFd, to: BorrowedFd) -> io::Result<()> {
    let src = open_dir(from, std::ffi::OsStr::new("."))?;
    let dst = open_dir(to, std::ffi::OsStr::new("."))?;
    copy_entries(&src, &dst, 0)
}

fn open_dir(dir: BorrowedFd, name: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    Ok(openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// `/proc/self/fd/<dir>/<name>`: a path for the calls that only take paths (xattrs).
fn at_path(dir: BorrowedFd, name: &std::ffi::OsStr) -> PathBuf {
    crate::sys::fd_path(dir).join(name)
}

fn copy_entries(src: &OwnedFd, dst: &OwnedFd, depth: u32) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    for entry in std::fs::read_dir(crate::sys::fd_path(src.as_fd()))? {
        let name = entry?.file_name();
        let st = fstatat(src, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match kind {
            SFlag::S_IFDIR => {
                mkdirat(dst, name.as_os_str(), Mode::from_bits_truncate(0o700))?;
                let s = open_dir(src.as_fd(), &name)?;
                let d = open_dir(dst.as_fd(), &name)?;
                copy_entries(&s, &d, depth + 1)?;
            }
            SFlag::S_IFREG => {
                let s = openat(
                    src,
                    name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let d = openat(
                    dst,
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                io::copy(&mut std::fs::File::from(s), &mut std::fs::File::from(d))?;
            }
            SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(src, name.as_os_str())?;
                nix::unistd::symlinkat(target.as_os_str(), dst, name.as_os_str())?;
            }
            _ => mknodat(dst, name.as_os_str(), kind, perm, st.st_rdev)?,
        }
        copy_meta(src.as_fd(), dst.as_fd(), &name, &st, kind)?;
    }
    Ok(())
}

/// Owner, then mode (a chown clears set-id bits), extended attributes, and times last.
fn copy_meta(
    src: BorrowedFd,
    dst: BorrowedFd,
    name: &std::ffi::OsStr,
    st: &FileStat,
    kind: SFlag,
) -> io::Result<()> {
    nix::unistd::fchownat(
        dst,
        name,
        Some(nix::unistd::Uid::from_raw(st.st_uid)),
        Some(nix::unistd::Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if kind != SFlag::S_IFLNK {
        nix::sys::stat::fchmodat(
            dst,
            name,
            Mode::from_bits_truncate(st.st_mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
    }
    copy_xattrs(&at_path(src, name), &at_path(dst, name))?;
    let atime = TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mtime = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    nix::sys::stat::utimensat(
        dst,
        name,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// Every extended attribute the process may read; one it may not set here (a `trusted.` or
/// `security.` name inside a user namespace, or a filesystem without them) is left out.
fn copy_xattrs(from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
    let names = match crate::sys::llistxattr(from) {
        Ok(n) => n,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::EPERM)) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::CString::new(name).expect("split at NUL");
        let value = match crate::sys::lgetxattr(from, &name) {
            Ok(v) => v,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::EPERM)) => continue,
            Err(e) => return Err(e),
        };
        match crate::sys::lsetxattr(to, &name, &value) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
