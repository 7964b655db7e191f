//! Helper user namespaces: each exists only to carry a set of mappings for
//! mount_setattr(MOUNT_ATTR_IDMAP), and lives as long as its descriptor (runc's
//! userns.Handles).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use oci_spec::runtime::LinuxIdMapping;

/// The helper namespaces made so far, one per distinct pair of mappings.
#[derive(Default)]
pub struct Helpers {
    made: Vec<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>, OwnedFd)>,
}

impl Helpers {
    /// A user namespace with these mappings, made on first use.
    pub fn get(
        &mut self,
        uid: &[LinuxIdMapping],
        gid: &[LinuxIdMapping],
    ) -> io::Result<BorrowedFd<'_>> {
        let at = match self.made.iter().position(|(u, g, _)| u == uid && g == gid) {
            Some(i) => i,
            None => {
                let fd = new_userns(uid, gid)?;
                self.made.push((uid.to_vec(), gid.to_vec(), fd));
                self.made.len() - 1
            }
        };
        Ok(self.made[at].2.as_fd())
    }
}

/// Fork a child into a new user namespace, write its mappings (as the host's root, who may
/// write any), keep a descriptor of the namespace, and end the child.
fn new_userns(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> io::Result<OwnedFd> {
    let parent = nix::unistd::getpid();
    let Some(child) = crate::sys::clone3(libc::CLONE_NEWUSER as u64)? else {
        hold(parent)
    };
    let made = crate::namespaces::write_maps(child.pid, uid, gid).and_then(|()| {
        nix::fcntl::open(
            format!("/proc/{}/ns/user", child.pid).as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(io::Error::from)
    });
    let _ = crate::sys::pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.pid), None);
    made
}

/// The helper child: hold none of berth's descriptors (the state directory's lock among
/// them), die with berth, and wait to be killed.
fn hold(parent: nix::unistd::Pid) -> ! {
    let _ = crate::sys::close_from(0);
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid() != parent {
        // SAFETY: _exit in a forked child skips the parent's atexit handlers.
        unsafe { libc::_exit(0) }
    }
    loop {
        nix::unistd::pause();
    }
}
