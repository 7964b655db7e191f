//! Terminals: a pty made inside the container, handed to whoever holds the console (runc's
//! protocol: the master is sent over a unix socket with SCM_RIGHTS, the pty's name as payload).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::sys::{ioctl_int, ioctl_ptr};

/// A new pty: its master, its slave (opened from the master, no path lookup), and the slave's
/// name inside the container.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub name: String,
}

/// Open a pty through `ptmx` (the container's /dev/ptmx once the rootfs is set up).
pub fn open(ptmx: &Path) -> io::Result<Pty> {
    let master = nix::fcntl::open(
        ptmx,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut unlock: libc::c_int = 0;
    ioctl_ptr(master.as_fd(), libc::TIOCSPTLCK, &mut unlock)?;
    let mut n: libc::c_int = 0;
    ioctl_ptr(master.as_fd(), libc::TIOCGPTN, &mut n)?;
    let slave = ioctl_int(
        master.as_fd(),
        libc::TIOCGPTPEER,
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
    )?;
    // SAFETY: TIOCGPTPEER returned a new descriptor that nobody else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok(Pty {
        master,
        slave,
        name: format!("/dev/pts/{n}"),
    })
}

pub fn set_size(fd: BorrowedFd, rows: u16, cols: u16) -> io::Result<()> {
    let mut ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    ioctl_ptr(fd, libc::TIOCSWINSZ, &mut ws)
}

/// Clear ONLCR (output \n -> \r\n) on a terminal.
pub fn clear_onlcr(fd: BorrowedFd) -> io::Result<()> {
    use nix::sys::termios::{tcgetattr, tcsetattr, OutputFlags, SetArg};
    let mut t = tcgetattr(fd)?;
    t.output_flags.remove(OutputFlags::ONLCR);
    tcsetattr(fd, SetArg::TCSANOW, &t)?;
    Ok(())
}

/// The size of the terminal on `fd`, if it is one.
pub fn get_size(fd: BorrowedFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    ioctl_ptr(fd, libc::TIOCGWINSZ, &mut ws).ok()?;
    Some((ws.ws_row, ws.ws_col))
}

/// Make the slave this process's controlling terminal and its stdin, stdout and stderr.
pub fn become_controlled_by(slave: &OwnedFd) -> io::Result<()> {
    nix::unistd::setsid()?;
    ioctl_int(slave.as_fd(), libc::TIOCSCTTY, 0)?;
    for target in 0..3 {
        // SAFETY: 0, 1 and 2 are this process's standard descriptors, replaced here on purpose.
        let mut std_fd = unsafe { OwnedFd::from_raw_fd(target) };
        nix::unistd::dup2(slave.as_fd(), &mut std_fd)?;
        std::mem::forget(std_fd);
    }
    Ok(())
}

/// Connect to a console socket (`--console-socket`).
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    Ok(UnixStream::connect(path)?.into())
}

/// Send `fd` with `name` as payload over a unix socket.
pub fn send_fd(sock: BorrowedFd, name: &str, fd: BorrowedFd) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let iov = [io::IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receive one descriptor and its payload from a unix socket.
pub fn recv_fd(sock: BorrowedFd) -> io::Result<(Vec<u8>, OwnedFd)> {
    let mut buf = [0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fd = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for f in fds {
                // SAFETY: the kernel installed this descriptor for us.
                let owned = unsafe { OwnedFd::from_raw_fd(f) };
                fd.get_or_insert(owned);
            }
        }
    }
    let n = msg.bytes;
    let fd =
        fd.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no descriptor received"))?;
    Ok((buf[..n].to_vec(), fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_pass_over_a_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        send_fd(a.as_fd(), "/dev/pts/7", f.as_fd()).unwrap();
        let (name, fd) = recv_fd(b.as_fd()).unwrap();
        assert_eq!(name, b"/dev/pts/7");
        let st = nix::sys::stat::fstat(&fd).unwrap();
        assert_eq!(st.st_rdev, libc::makedev(1, 3));
    }

    #[test]
    fn pty_round_trip() {
        let pty = open(Path::new("/dev/ptmx")).unwrap();
        set_size(pty.slave.as_fd(), 24, 80).unwrap();
        assert_eq!(get_size(pty.master.as_fd()), Some((24, 80)));
        nix::unistd::write(&pty.slave, b"hi\n").unwrap();
        let mut buf = [0u8; 16];
        let n = nix::unistd::read(&pty.master, &mut buf).unwrap();
        assert!(buf[..n].starts_with(b"hi"));
        assert!(pty.name.starts_with("/dev/pts/"));
    }
}
