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
    /// init -> parent: the mounts are made; run the prestart and createRuntime hooks.
    RunHooks,
    /// parent -> init: the hooks have run.
    HooksDone,
    /// init -> parent: set up and waiting to be started.
    Ready,
    /// parent -> init: exec the process now (`run`; `create` uses the exec fifo).
    Start,
    /// init -> parent: a step failed.
    Failed(InitError),
}

pub struct Channel(OwnedFd);

impl Channel {
    /// A connected pair, close-on-exec: (parent's end, init's end).
    pub fn pair() -> std::io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel(a), Channel(b)))
    }

    /// Another descriptor for the same socket (close-on-exec).
    pub fn duplicate(&self) -> std::io::Result<Channel> {
        Ok(Channel(self.0.try_clone()?))
    }

    pub fn send(&self, msg: &Msg) -> std::io::Result<()> {
        let data = serde_json::to_vec(msg).expect("message serializes");
        let n = nix::unistd::write(&self.0, &data)?;
        if n != data.len() {
            return Err(std::io::Error::other("short write on init channel"));
        }
        Ok(())
    }

    /// The next message; `None` when the other end is closed (init exec'd or exited).
    pub fn recv(&self) -> std::io::Result<Option<Msg>> {
        let mut buf = [0u8; 16 * 1024];
        let n = loop {
            match nix::unistd::read(&self.0, &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r?,
            }
        };
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
