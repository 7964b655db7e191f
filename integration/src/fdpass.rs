//! Receiving a descriptor that a runtime sends over a unix socket (SCM_RIGHTS): the console
//! socket's pty master, the seccomp agent's listener.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// One message from `conn` into `buf`: its length and the first descriptor that came
/// with it (close-on-exec), if any.
pub fn recv_with_fd(
    conn: &UnixStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<OwnedFd>)> {
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
