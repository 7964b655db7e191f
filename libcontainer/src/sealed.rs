//! CVE-2019-5736: a container process that runs `/proc/self/exe` of berth (or opens
//! /proc/<init>/exe) could overwrite the berth binary on the host. Commands that put a process
//! into a container therefore first re-exec berth from a copy the container cannot write:
//!
//! - preferred: a detached read-only bind mount of the binary (open_tree + mount_setattr), which
//!   costs two system calls. Writes through /proc/PID/exe fail with EROFS, and the mount is
//!   detached once the tree descriptor closes at exec, so it cannot be remounted read-write;
//! - fallback (no CAP_SYS_ADMIN, old kernels): a sealed memfd copy, as runc 1.1 does.
//!
//! A binary that already runs from a read-only mount or a sealed memfd is left alone.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, Result};

const SEALS: i32 = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Whether this process runs from a binary nobody can write: a read-only mount or a sealed memfd.
pub fn is_sealed() -> bool {
    let Ok(exe) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    if nix::sys::statvfs::fstatvfs(&exe)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
    {
        return true;
    }
    // SAFETY: F_GET_SEALS takes no argument; exe is an open descriptor.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

/// Re-exec from a read-only copy unless already running from one. Returns only if already
/// sealed; otherwise the process image is replaced (same argv and environment).
pub fn ensure_sealed() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
    let exe = match readonly_bind() {
        Ok(fd) => fd,
        Err(_) => sealed_memfd()?,
    };
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).expect("argv has no NUL"))
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).expect("environment has no NUL")
        })
        .collect();
    let err = nix::unistd::fexecve(exe.as_fd(), &args, &env).unwrap_err();
    Err(Error::sys("re-exec berth from a read-only copy", err))
}

/// A detached, read-only bind mount of the running binary.
fn readonly_bind() -> std::io::Result<OwnedFd> {
    let path = std::fs::read_link("/proc/self/exe")?;
    let tree = crate::sys::open_tree_clone(&path)?;
    crate::sys::mount_set_readonly(tree.as_fd())?;
    Ok(tree)
}

/// A sealed memfd copy of the running binary.
fn sealed_memfd() -> Result<OwnedFd> {
    let mut exe = std::fs::File::open("/proc/self/exe")
        .map_err(|e| Error::io("open", "/proc/self/exe", e))?;
    let memfd = crate::sys::memfd_create(c"berth", libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        .map_err(|e| Error::sys("memfd_create", e))?;
    let mut copy = std::fs::File::from(memfd);
    std::io::copy(&mut exe, &mut copy).map_err(|e| Error::sys("copy berth into a memfd", e))?;
    // SAFETY: F_ADD_SEALS takes an int of seal flags; copy is an open memfd.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
        return Err(Error::sys("seal memfd", std::io::Error::last_os_error()));
    }
    Ok(copy.into())
}
