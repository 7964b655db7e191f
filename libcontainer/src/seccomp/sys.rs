//! The seccomp(2) call: this module's only `unsafe`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use super::program::Instruction;

/// What seccomp(SECCOMP_SET_MODE_FILTER) answered.
pub(crate) enum Attached {
    /// The filter is attached.
    Done,
    /// The filter is attached and this is its notify listener (`NEW_LISTENER`).
    Listener(OwnedFd),
    /// Nothing was attached: `TSYNC` could not synchronize this thread id.
    NotSynchronized(i64),
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, program).
pub(crate) fn set_mode_filter(
    program: &[Instruction],
    flags: libc::c_ulong,
) -> io::Result<Attached> {
    let len = u16::try_from(program.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads the program; Instruction has sock_filter's layout (asserted in
        // program.rs).
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `len` initialised sock_filter-shaped instructions that outlive the
    // call; seccomp(2) copies the program and touches no other memory of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        let fd = i32::try_from(ret)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "listener fd out of range"))?;
        // SAFETY: with NEW_LISTENER, a non-negative return is a new fd that only we own.
        return Ok(Attached::Listener(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    if ret > 0 {
        return Ok(Attached::NotSynchronized(ret));
    }
    Ok(Attached::Done)
}
