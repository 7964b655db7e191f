//! Foreground `run` and `exec`: forward signals to the container's process, relay a pty
//! between the caller's terminal and the container, and return the process's exit status
//! (128+signal if killed), as runc does.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::termios;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// Block every catchable signal and read them from a signalfd instead. Called before the
/// container's process exists, so that no signal is lost; the process resets its own mask.
pub fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGABRT,
    ] {
        set.remove(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(SignalFd::new(&set)?)
}

/// Puts the caller's terminal in raw mode for as long as it lives.
struct RawMode(Option<termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        match termios::tcgetattr(stdin.as_fd()) {
            Ok(orig) => {
                let mut raw = orig.clone();
                termios::cfmakeraw(&mut raw);
                let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
                RawMode(Some(orig))
            }
            Err(_) => RawMode(None),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, orig);
        }
    }
}

fn copy_size(from: BorrowedFd, to: BorrowedFd) {
    if let Some((rows, cols)) = libcontainer::tty::get_size(from) {
        let _ = libcontainer::tty::set_size(to, rows, cols);
    }
}

/// Write all of `buf` to `fd`, waiting out EAGAIN.
fn write_all(fd: BorrowedFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(_) => return,
        }
    }
}

/// Wait for `pid` (a child, or an orphan reparented to this subreaper), forwarding signals
/// and relaying `pty` if given.
pub fn wait(sigfd: &SignalFd, pid: i32, pidfd: BorrowedFd, pty: Option<OwnedFd>) -> Result<i32> {
    let _raw = pty.as_ref().map(|_| RawMode::enter());
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    if let Some(m) = &pty {
        copy_size(stdin.as_fd(), m.as_fd());
    }
    let mut stdin_open = pty.is_some();
    let mut master_open = pty.is_some();
    let mut buf = [0u8; 32 * 1024];
    loop {
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if let (true, Some(m)) = (master_open, &pty) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r.context("poll")?,
        };
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut i = 1;
        if let (true, Some(m)) = (master_open, &pty) {
            if ready[i] {
                match nix::unistd::read(m, &mut buf) {
                    Ok(0) | Err(nix::errno::Errno::EIO) => master_open = false,
                    Ok(n) => write_all(stdout.as_fd(), &buf[..n]),
                    Err(_) => {}
                }
            }
            i += 1;
        }
        if stdin_open && ready[i] {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => stdin_open = false,
                Ok(n) => {
                    if let Some(m) = &pty {
                        write_all(m.as_fd(), &buf[..n]);
                    }
                }
                Err(_) => {}
            }
        }
        if !ready[0] {
            continue;
        }
        let Some(info) = sigfd.read_signal()? else {
            continue;
        };
        let sig = info.ssi_signo as i32;
        if sig == libc::SIGWINCH {
            if let Some(m) = &pty {
                copy_size(stdin.as_fd(), m.as_fd());
            }
            continue;
        }
        if sig != libc::SIGCHLD {
            let _ = libcontainer::sys::pidfd_send_signal(pidfd, sig);
            continue;
        }
        if let Some(code) = reap(pid)? {
            if let Some(m) = &pty {
                drain(m, stdout.as_raw_fd(), &mut buf);
            }
            return Ok(code);
        }
    }
}

/// Reap every exited child; the exit status of `pid` if it was among them.
fn reap(pid: i32) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => {
                return Ok(Some(128 + s as i32))
            }
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(e).context("waitpid"),
        }
    }
}

/// Output the process wrote just before it exited.
fn drain(master: &OwnedFd, out: i32, buf: &mut [u8]) {
    let _ = nix::fcntl::fcntl(
        master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    // SAFETY: stdout stays open for the life of the process.
    let out = unsafe { BorrowedFd::borrow_raw(out) };
    while let Ok(n) = nix::unistd::read(master, buf) {
        if n == 0 {
            break;
        }
        write_all(out, &buf[..n]);
    }
}
