//! The typed messages that berth and a container's init exchange over a SOCK_SEQPACKET
//! socketpair (one message per packet, so no framing is needed).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::init::InitError;

#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// parent -> init: the cgroup is joined and id maps are written; go on.
    Go,
    /// init (stage 1) -> parent: a user namespace exists; write its id maps.
    MapsRequest,
    /// parent -> init: the id maps are written.
    MapsWritten,
    /// init (stage 1) -> parent: the pid of the container's init, which stage 1 forked.
    InitPid(i32),
    /// parent -> init (slow path): stage 1's report of init's pid has arrived; init may now
    /// ask for anything that needs it (hooks, the seccomp listener).
    PidKnown,
    /// init -> parent: the mounts are made; run the prestart and createRuntime hooks.
    RunHooks,
    /// parent -> init: the hooks have run.
    HooksDone,
    /// init -> parent: set up and waiting to be started.
    Ready,
    /// parent -> init: exec the process now (`run`; `create` uses the exec fifo).
    Start,
    /// init -> parent: the pty master follows (foreground `run`/`exec` with a terminal).
    Pty,
    /// init -> parent: the seccomp notify listener follows (for `linux.seccomp.listenerPath`).
    SeccompListener,
    /// init -> parent: a step failed.
    Failed(InitError),
}

/// The largest message either end accepts (a failure report quoting long values is far
/// smaller: init bounds it, see `InitError::bounded`).
pub const MAX_MSG: usize = 1 << 20;

/// One end of the init channel. A descriptor that arrives with a message (SCM_RIGHTS) is kept
/// until [`Channel::take_fd`].
pub struct Channel(OwnedFd, std::cell::RefCell<Option<OwnedFd>>);

impl Channel {
    /// A connected pair, close-on-exec: (parent's end, init's end).
    pub fn pair() -> std::io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel::new(a), Channel::new(b)))
    }

    fn new(fd: OwnedFd) -> Channel {
        Channel(fd, std::cell::RefCell::new(None))
    }

    /// Another descriptor for the same socket (close-on-exec).
    pub fn duplicate(&self) -> std::io::Result<Channel> {
        Ok(Channel::new(self.0.try_clone()?))
    }

    pub fn send(&self, msg: &Msg) -> std::io::Result<()> {
        let data = serde_json::to_vec(msg).expect("message serializes");
        let n = nix::unistd::write(&self.0, &data)?;
        if n != data.len() {
            return Err(std::io::Error::other("short write on init channel"));
        }
        Ok(())
    }

    /// Send a message with a descriptor attached (SCM_RIGHTS).
    pub fn send_with_fd(&self, msg: &Msg, fd: BorrowedFd) -> std::io::Result<()> {
        let data = serde_json::to_vec(msg).expect("message serializes");
        crate::tty::send_fd(
            self.0.as_fd(),
            std::str::from_utf8(&data).expect("JSON is UTF-8"),
            fd,
        )
    }

    /// The descriptor that came with the last message, if any.
    pub fn take_fd(&self) -> Option<OwnedFd> {
        self.1.borrow_mut().take()
    }

    /// The next message; `None` when the other end is closed (init exec'd or exited).
    pub fn recv(&self) -> std::io::Result<Option<Msg>> {
        self.recv_flags(nix::sys::socket::MsgFlags::empty())
    }

    /// A message already queued, without waiting: `Err(WouldBlock)` if there is none.
    pub fn try_recv(&self) -> std::io::Result<Option<Msg>> {
        self.recv_flags(nix::sys::socket::MsgFlags::MSG_DONTWAIT)
    }

    /// The next message, as [`Channel::recv`], but the wait also ends when `peer` (a pidfd of
    /// the process at the other end) exits without sending one: then an error. A wait on the
    /// socket alone would last as long as any other process held a copy of the peer's end
    /// (init, forked by a stage 1 that died without reporting it, keeps stage 1's end).
    pub fn recv_while_alive(&self, peer: BorrowedFd) -> std::io::Result<Option<Msg>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds = [
                PollFd::new(self.0.as_fd(), PollFlags::POLLIN),
                PollFd::new(peer, PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => r?,
            };
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            if ready(&fds[0]) {
                return self.recv();
            }
            if ready(&fds[1]) {
                // What it sent just before exiting is still queued.
                return match self.try_recv() {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        Err(std::io::Error::new(
                            std::io::ErrorKind::BrokenPipe,
                            "the process at the other end exited without a word",
                        ))
                    }
                    r => r,
                };
            }
        }
    }

    fn recv_flags(&self, flags: nix::sys::socket::MsgFlags) -> std::io::Result<Option<Msg>> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::{AsRawFd, FromRawFd, RawFd};
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        // A peer that closes with unread messages of ours in its queue (init failing while Go
        // was on its way) reports ECONNRESET once; what it sent before is still queued behind
        // it (its Failed report), so read again.
        let mut reset_seen = false;
        // The packet's size first (MSG_PEEK|MSG_TRUNC returns its full length): a report
        // larger than a fixed buffer would be cut, and the rest of a SEQPACKET is lost.
        let size = loop {
            match nix::sys::socket::recv(
                self.0.as_raw_fd(),
                &mut [],
                // `flags` too: try_recv must not wait here either.
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC | flags,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECONNRESET) if !reset_seen => {
                    reset_seen = true;
                    continue;
                }
                Err(e) => return Err(e.into()),
                Ok(n) => break n,
            }
        };
        if size > MAX_MSG {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a message of {size} bytes on the init channel (at most {MAX_MSG})"),
            ));
        }
        let mut buf = vec![0u8; size.max(1)];
        let (n, fds) = loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC | flags,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECONNRESET) if !reset_seen => {
                    reset_seen = true;
                    continue;
                }
                Err(e) => return Err(e.into()),
                Ok(m) if m.flags.contains(MsgFlags::MSG_TRUNC) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("a message on the init channel was cut at {} bytes", m.bytes),
                    ))
                }
                Ok(m) => {
                    let mut fds = Vec::new();
                    for c in m.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(v) = c {
                            fds.extend(v);
                        }
                    }
                    break (m.bytes, fds);
                }
            }
        };
        for fd in fds {
            // SAFETY: the kernel installed these descriptors for us.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            self.1.borrow_mut().get_or_insert(owned);
        }
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Init fails and exits while the parent's Go is still unread in its queue: the parent
    /// must still read init's report, not "Connection reset by peer".
    #[test]
    fn report_survives_a_reset_by_a_peer_that_closed_with_unread_messages() {
        let (parent, init) = Channel::pair().unwrap();
        parent.send(&Msg::Go).unwrap();
        init.send(&Msg::Failed(InitError::msg("mount", None, "it failed")))
            .unwrap();
        drop(init);
        match parent.recv() {
            Ok(Some(Msg::Failed(e))) => assert_eq!(e.step, "mount"),
            other => panic!("expected init's report, got {other:?}"),
        }
        assert!(matches!(parent.recv(), Ok(None)));
    }

    /// try_recv's size peek must not block: it did after a merge, and a failed write of Go
    /// then hung create (integration: failed_sync_write_is_an_error_not_a_hang).
    #[test]
    fn try_recv_on_an_empty_channel_does_not_wait() {
        let (a, _b) = Channel::pair().unwrap();
        let e = a.try_recv().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }

    /// A report larger than any fixed buffer arrives whole (it was cut at 16 KiB, and then
    /// misreported as "EOF while parsing").
    #[test]
    fn a_large_report_arrives_whole() {
        let (parent, init) = Channel::pair().unwrap();
        let path = format!("/{}", "a".repeat(40_000));
        let huge = format!("/{}", "\u{1}".repeat(100_000));
        let err = InitError::msg("mount", Some(std::path::Path::new(&path)), "too long");
        init.send(&Msg::Failed(err.clone())).unwrap();
        match parent.recv() {
            Ok(Some(Msg::Failed(e))) => assert_eq!(e.path.as_deref(), Some(path.as_str())),
            other => panic!("expected init's report, got {other:?}"),
        }
        // A report up to 64 KiB goes out whole; a larger one is cut, and says so.
        assert_eq!(err.clone().bounded().path, err.path);
        let err = InitError::msg("mount", Some(std::path::Path::new(&huge)), "too long");
        init.send(&Msg::Failed(err.bounded())).unwrap();
        match parent.recv() {
            Ok(Some(Msg::Failed(e))) => {
                let p = e.path.unwrap();
                assert!(
                    p.len() < 4200 && p.ends_with("(cut at 4096 of 100001 bytes)"),
                    "{p}"
                );
            }
            other => panic!("expected init's report, got {other:?}"),
        }
    }
}
