//! A seccomp notify agent, as runtime-spec's `linux.seccomp.listenerPath` expects one: it
//! listens on a unix socket, takes each container process state (JSON) with its listener
//! descriptor (SCM_RIGHTS) that the runtime sends, and answers every notification after noting
//! which process made it and from which executable (`/proc/<pid>/exe`, opened `O_PATH` while
//! the process is held in the system call).

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// `_IOWR('!', 0, struct seccomp_notif)`: the next notification (80 bytes).
const NOTIF_RECV: libc::Ioctl = 0xc050_2100u32 as libc::Ioctl;
/// `_IOWR('!', 1, struct seccomp_notif_resp)`: the answer (24 bytes).
const NOTIF_SEND: libc::Ioctl = 0xc018_2101u32 as libc::Ioctl;
/// `_IOW('!', 2, __u64)`: is the notification (its process) still there?
const NOTIF_ID_VALID: libc::Ioctl = 0x4008_2102u32 as libc::Ioctl;
/// `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: let the kernel carry out the system call.
const FLAG_CONTINUE: u32 = 1;

/// `struct seccomp_notif`.
#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

/// `struct seccomp_notif_resp`.
#[repr(C)]
struct Resp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

/// What to do with a notified system call (by number).
pub enum Answer {
    /// Let it run.
    Continue,
    /// Do not run it; return this value.
    Return(i64),
}

/// One notification.
pub struct Notification {
    pub nr: i64,
    pub pid: u32,
    /// `/proc/<pid>/exe` as it was when the call was made, opened `O_PATH`.
    pub exe: std::io::Result<File>,
    /// Where that link pointed.
    pub exe_link: String,
}

/// What the agent got so far.
#[derive(Default)]
pub struct Received {
    /// The container process states, in arrival order.
    pub states: Vec<serde_json::Value>,
    pub notifications: Vec<Notification>,
    /// Trouble the agent ran into (a bad message, a failed ioctl).
    pub errors: Vec<String>,
}

pub struct Agent {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Received>>,
    thread: Option<JoinHandle<()>>,
}

impl Agent {
    /// Listen on `path` and answer each notification with `answer(syscall number)`.
    pub fn start(path: &Path, answer: fn(i64) -> Answer) -> std::io::Result<Agent> {
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Received::default()));
        let thread = {
            let (stop, got) = (stop.clone(), got.clone());
            std::thread::spawn(move || serve(&listener, answer, &stop, &got))
        };
        Ok(Agent {
            stop,
            got,
            thread: Some(thread),
        })
    }

    /// Look at what arrived so far.
    pub fn with<T>(&self, f: impl FnOnce(&mut Received) -> T) -> T {
        f(&mut lock(&self.got))
    }

    /// Stop serving (listeners still held are closed: their notifications fail with ENOSYS)
    /// and hand over everything received.
    pub fn finish(mut self) -> Received {
        self.halt();
        std::mem::take(&mut *lock(&self.got))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.halt();
    }
}

fn serve(
    listener: &UnixListener,
    answer: fn(i64) -> Answer,
    stop: &AtomicBool,
    got: &Mutex<Received>,
) {
    let mut listeners: Vec<OwnedFd> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let mut polled: Vec<PollFd> = std::iter::once(listener.as_fd())
            .chain(listeners.iter().map(|l| l.as_fd()))
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        if !matches!(poll(&mut polled, PollTimeout::from(50u8)), Ok(n) if n > 0) {
            continue;
        }
        let revents: Vec<PollFlags> = polled
            .iter()
            .map(|p| p.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(polled);
        if !revents[0].is_empty() {
            while let Ok((conn, _)) = listener.accept() {
                match receive(conn) {
                    Ok((state, fd)) => {
                        lock(got).states.push(state);
                        listeners.push(fd);
                    }
                    Err(e) => lock(got).errors.push(format!("receiving a listener: {e}")),
                }
            }
        }
        let mut gone = Vec::new();
        for (i, r) in revents.iter().enumerate().skip(1) {
            if r.contains(PollFlags::POLLIN) {
                match handle(&listeners[i - 1], answer) {
                    Ok(Some(n)) => lock(got).notifications.push(n),
                    Ok(None) => {}
                    Err(e) => lock(got).errors.push(format!("a notification: {e}")),
                }
            } else if !r.is_empty() {
                gone.push(i - 1);
            }
        }
        for i in gone.into_iter().rev() {
            listeners.remove(i);
        }
    }
}

fn lock(got: &Mutex<Received>) -> MutexGuard<'_, Received> {
    got.lock().unwrap_or_else(|e| e.into_inner())
}

/// The state JSON and the listener descriptor of one connection.
fn receive(conn: UnixStream) -> std::io::Result<(serde_json::Value, OwnedFd)> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0u8; 64 * 1024];
    let (n, fd) = crate::fdpass::recv_with_fd(&conn, &mut buf)?;
    let fd = fd.ok_or_else(|| std::io::Error::other("no descriptor came with the state"))?;
    buf.truncate(n);
    // The state is one JSON value; a runtime may keep the connection open after it (runc
    // does), so read only until it is complete.
    loop {
        match serde_json::from_slice(&buf) {
            Ok(state) => return Ok((state, fd)),
            Err(e) if e.is_eof() => {
                let mut more = [0u8; 4096];
                match (&conn).read(&mut more)? {
                    0 => return Err(std::io::Error::other(format!("state cut short: {e}"))),
                    n => buf.extend_from_slice(&more[..n]),
                }
            }
            Err(e) => {
                let text = String::from_utf8_lossy(&buf);
                return Err(std::io::Error::other(format!(
                    "state is not JSON ({e}): {text}"
                )));
            }
        }
    }
}

/// Receive one notification on `listener`, note it, answer it.
fn handle(listener: &OwnedFd, answer: fn(i64) -> Answer) -> std::io::Result<Option<Notification>> {
    let mut n = Notif::default();
    if let Err(e) = listener_ioctl(listener.as_fd(), NOTIF_RECV, &mut n) {
        // ENOENT: the process went away before we got to it.
        return if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let proc_exe = format!("/proc/{}/exe", n.pid);
    let exe = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(&proc_exe);
    let exe_link = fs::read_link(&proc_exe)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("<readlink: {e}>"));
    let mut id = n.id;
    let valid = listener_ioctl(listener.as_fd(), NOTIF_ID_VALID, &mut id).is_ok();
    let (val, flags) = match answer(n.nr as i64) {
        Answer::Continue => (0, FLAG_CONTINUE),
        Answer::Return(v) => (v, 0),
    };
    let mut resp = Resp {
        id: n.id,
        val,
        error: 0,
        flags,
    };
    if let Err(e) = listener_ioctl(listener.as_fd(), NOTIF_SEND, &mut resp) {
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    if !valid {
        // The pid may name another process by now: what we opened says nothing.
        return Ok(None);
    }
    Ok(Some(Notification {
        nr: n.nr as i64,
        pid: n.pid,
        exe,
        exe_link,
    }))
}

/// ioctl(2) on a seccomp listener, with a `T` of the layout `req` uses.
fn listener_ioctl<T>(fd: BorrowedFd, req: libc::Ioctl, arg: &mut T) -> std::io::Result<()> {
    // SAFETY: arg is a valid, exclusive `T`, and callers pass the request's own type
    // (seccomp_notif for NOTIF_RECV, seccomp_notif_resp for NOTIF_SEND, u64 for ID_VALID).
    if unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
