//! CVE-2019-5736: a container process that runs `/proc/self/exe` of berth (or opens
//! /proc/<init>/exe) could overwrite the berth binary on the host. Commands that put a process
//! into a container therefore first re-exec berth from a copy the container cannot write:
//!
//! - preferred: a detached read-only bind mount of the binary (open_tree + mount_setattr), which
//!   costs two system calls. Writes through /proc/PID/exe fail with EROFS, and the mount is
//!   detached once the tree descriptor closes at exec, so it cannot be remounted read-write;
//! - fallback (no CAP_SYS_ADMIN, old kernels): a sealed memfd copy, as runc 1.1 does.
//!
//! A binary that already runs from a read-only mount or a sealed memfd is left alone, and so is
//! an immutable one (`chattr +i`, as `hack/setup.sh` installs berth): opening it for writing
//! fails with EPERM for anyone without CAP_LINUX_IMMUTABLE, and only that capability clears the
//! flag. A container whose process may hold CAP_LINUX_IMMUTABLE therefore still gets the copy
//! ([`ensure_sealed_strict`]).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, Result};

const SEALS: i32 = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// How the running binary is kept from being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// A read-only mount or a sealed memfd: nobody can write it.
    ReadOnly,
    /// An immutable file: only a holder of CAP_LINUX_IMMUTABLE could clear the flag and write.
    Immutable,
    /// A plain writable file.
    None,
}

/// FS_IOC_GETFLAGS (`_IOR('f', 1, long)`) and FS_IMMUTABLE_FL, from linux/fs.h.
const FS_IOC_GETFLAGS: libc::Ioctl = 0x8008_6601u32 as libc::Ioctl;
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

/// How this process's executable is protected.
pub fn protection() -> Protection {
    let Ok(exe) = std::fs::File::open("/proc/self/exe") else {
        return Protection::None;
    };
    if nix::sys::statvfs::fstatvfs(&exe)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
    {
        return Protection::ReadOnly;
    }
    // SAFETY: F_GET_SEALS takes no argument; exe is an open descriptor.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & SEALS == SEALS {
        return Protection::ReadOnly;
    }
    let mut flags: libc::c_long = 0;
    if crate::sys::ioctl_ptr(exe.as_fd(), FS_IOC_GETFLAGS, &mut flags).is_ok()
        && flags & FS_IMMUTABLE_FL != 0
    {
        return Protection::Immutable;
    }
    Protection::None
}

/// Re-exec from a read-only copy unless the binary is already read-only or immutable. Returns
/// only if no re-exec is needed; otherwise the process image is replaced (same argv and
/// environment).
pub fn ensure_sealed() -> Result<()> {
    match protection() {
        Protection::ReadOnly | Protection::Immutable => Ok(()),
        Protection::None => reexec(),
    }
}

/// As [`ensure_sealed`], for a process that may hold CAP_LINUX_IMMUTABLE (which could clear
/// the immutable flag): only a read-only copy will do.
pub fn ensure_sealed_strict() -> Result<()> {
    match protection() {
        Protection::ReadOnly => Ok(()),
        Protection::Immutable | Protection::None => reexec(),
    }
}

/// Whether a process with these capabilities could clear an immutable flag: it holds, or may
/// raise, CAP_LINUX_IMMUTABLE (any set; the bounding set bounds what it can gain).
pub fn caps_may_clear_immutable(caps: Option<&oci_spec::runtime::LinuxCapabilities>) -> bool {
    use oci_spec::runtime::Capability::LinuxImmutable;
    caps.is_some_and(|c| {
        [
            c.bounding(),
            c.effective(),
            c.permitted(),
            c.inheritable(),
            c.ambient(),
        ]
        .iter()
        .any(|set| set.as_ref().is_some_and(|s| s.contains(&LinuxImmutable)))
    })
}

fn reexec() -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilitiesBuilder};

    #[test]
    fn immutable_can_be_cleared_with_the_capability_in_any_set() {
        assert!(!caps_may_clear_immutable(None));
        let none = LinuxCapabilitiesBuilder::default().build().unwrap();
        assert!(!caps_may_clear_immutable(Some(&none)));
        let other: Capabilities = [Capability::Chown, Capability::Kill].into_iter().collect();
        let some = LinuxCapabilitiesBuilder::default()
            .bounding(other)
            .build()
            .unwrap();
        assert!(!caps_may_clear_immutable(Some(&some)));
        let with: Capabilities = [Capability::LinuxImmutable].into_iter().collect();
        let ambient = LinuxCapabilitiesBuilder::default()
            .ambient(with)
            .build()
            .unwrap();
        assert!(caps_may_clear_immutable(Some(&ambient)));
    }
}
