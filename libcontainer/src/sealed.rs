//! CVE-2019-5736: a container process that runs `/proc/self/exe` of berth (or opens
//! /proc/<init>/exe) could overwrite the berth binary on the host. Commands that put a process
//! into a container therefore first re-exec berth from a sealed memfd copy: the container can
//! only ever reach that copy, and its seals forbid writing it.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, Result};

const SEALS: i32 = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Whether this process runs from a sealed memfd.
pub fn is_sealed() -> bool {
    let Ok(exe) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: F_GET_SEALS takes no argument; exe is an open descriptor.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

/// Re-exec from a sealed memfd copy unless already running from one. Returns only if already
/// sealed; otherwise the process image is replaced (same argv and environment).
pub fn ensure_sealed() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
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
    let err = nix::unistd::fexecve(copy.as_fd(), &args, &env).unwrap_err();
    Err(Error::sys("re-exec from sealed memfd", err))
}
