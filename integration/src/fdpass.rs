//! Receiving a descriptor that a runtime sends over a unix socket (SCM_RIGHTS): the console
//! socket's pty master, the seccomp agent's listener.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// One message from `conn` into `buf`: its length and the first descriptor that came
/// with it (close-on-exec), if any. A signal that interrupts the wait does not end it.
pub fn recv_with_fd(
    conn: &UnixStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<OwnedFd>)> {
    loop {
        match recv_once(conn, buf) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}

fn recv_once(conn: &UnixStream, buf: &mut [u8]) -> nix::Result<(usize, Option<OwnedFd>)> {
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = msg
        .cmsgs()?
        .flat_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds,
            _ => Vec::new(),
        })
        // SAFETY: the kernel installed these descriptors for us; nothing else owns them.
        .map(|f| unsafe { OwnedFd::from_raw_fd(f) });
    let fd = fds.next();
    Ok((msg.bytes, fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::pthread::pthread_kill;
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    use std::io::IoSlice;
    use std::os::unix::thread::JoinHandleExt;
    use std::time::Duration;

    extern "C" fn ignore(_: libc::c_int) {}

    /// The fuzzer's console receiver once gave up with "Interrupted system call" when a
    /// signal reached its thread while it waited for the pty master (seed 602 case 133).
    #[test]
    fn a_signal_while_waiting_does_not_lose_the_descriptor() {
        // No SA_RESTART: the signal makes recvmsg fail with EINTR.
        let act = SigAction::new(
            SigHandler::Handler(ignore),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        unsafe { sigaction(Signal::SIGURG, &act) }.unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let waiter = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            recv_with_fd(&b, &mut buf).map(|(n, fd)| (n, fd.is_some()))
        });
        std::thread::sleep(Duration::from_millis(100));
        pthread_kill(
            waiter.as_pthread_t() as nix::sys::pthread::Pthread,
            Signal::SIGURG,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let file = std::fs::File::open("/dev/null").unwrap();
        let fds = [file.as_raw_fd()];
        nix::sys::socket::sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(b"m")],
            &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert_eq!(waiter.join().unwrap().unwrap(), (1, true));
    }
}
