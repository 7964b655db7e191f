//! The few calls that need `unsafe`: fd mapping in a child before exec, terminal ioctls,
//! signal dispositions.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Spawn `cmd` with `fds[i]` as fd 3+i in the child (every other fd of ours is close-on-exec).
pub fn spawn_with_fds(cmd: &mut Command, fds: &[BorrowedFd<'_>]) -> io::Result<Child> {
    // Move the sources above the target range first so that dup2 in the child never clobbers
    // a source that happens to sit on a target number.
    let mut high = Vec::with_capacity(fds.len());
    for fd in fds {
        // SAFETY: F_DUPFD_CLOEXEC on a valid fd returns a new fd we own.
        let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: n is a fresh fd owned by nobody else.
        high.push(unsafe { OwnedFd::from_raw_fd(n) });
    }
    let raw: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: the closure only calls async-signal-safe functions (sigprocmask, dup2) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The shim blocks SIGCHLD/SIGTERM/SIGINT for its signalfd and this (fork) path of
            // std does not reset the mask: a child must not inherit it.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            for (i, fd) in raw.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(high);
    child
}

/// TIOCSWINSZ on a terminal.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: ioctl with a pointer to a properly initialised winsize.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes waiting to be read (FIONREAD) on a pipe, fifo, socket or terminal.
pub fn readable_bytes(fd: BorrowedFd<'_>) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return 0;
    }
    n.max(0) as usize
}

/// Ignore SIGPIPE: a write to a fifo or socket whose reader went away is an error, not death.
pub fn ignore_sigpipe() {
    // SAFETY: setting a disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The fd handed over by `start` (fd 3), as a listener.
pub fn inherited_listener(fd: RawFd) -> io::Result<std::os::unix::net::UnixListener> {
    // SAFETY: fstat on an arbitrary number is harmless; we only take ownership of a socket.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } < 0 || (st.st_mode & libc::S_IFMT) != libc::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("fd {fd} is not the shim socket"),
        ));
    }
    // SAFETY: fd is an open socket nobody else owns in this fresh process.
    let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    // SAFETY: F_SETFD on our own fd.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(l)
}

/// kill(2) with any signal number (real-time ones included).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    if unsafe { libc::kill(pid, sig) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Close every fd from `first` up: the server keeps nothing it inherited from containerd
/// beyond stdio and the socket.
pub fn close_fds_from(first: RawFd) {
    // SAFETY: called first thing in the server, before any fd of ours above `first` exists.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
    if r < 0 {
        for fd in first..1024 {
            // SAFETY: as above; closing an unused number is harmless.
            unsafe { libc::close(fd) };
        }
    }
}
