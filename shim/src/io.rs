//! A process's stdio. containerd names fifos (or `file://` / `binary://` URIs); the container
//! gets pipes (or a terminal, received over a console socket) and the shim moves the bytes
//! between them with splice(2) in its event loop: no user-space buffers, backpressure for free
//! (what does not fit stays in the source pipe). An output fifo is held open for writing only
//! (opened through a momentary reader, so it never blocks): containerd's blocking open for
//! reading then returns at once, and a write without a reader fails with EPIPE instead of putting
//! bytes into a fifo that nobody might ever open (they would be thrown away when we close it).
//! On EPIPE the pump leaves the output in the pipe and retries with backoff, so nothing is lost
//! before the client connects and the container is held back (not the bytes dropped) when the
//! client is gone. The stdin fifo ends when containerd's writer closes it, or at CloseIO.

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use std::fs::OpenOptions;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[derive(Debug, PartialEq)]
pub enum Wait {
    Src,
    Dst,
    /// The destination fifo has no reader (yet, or any more).
    Reader,
    Done,
}

/// Where a pump writes.
pub enum Dst {
    Fd(OwnedFd),
    /// A fifo, opened once a reader is there.
    Fifo(PathBuf),
}

/// What a pump is registered on in the event loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reg {
    None,
    Src,
    Dst,
}

/// One direction of copying: `src` -> `dst`.
pub struct Pump {
    pub src: OwnedFd,
    dst: Option<OwnedFd>,
    fifo: Option<PathBuf>,
    pub reg: Reg,
    /// Bytes moved so far (for the debug log).
    pub moved: u64,
    /// Next wait before retrying a reader-less fifo.
    pub retry: Duration,
    /// stdin after CloseIO: finish once the source is drained.
    pub closing: bool,
    pub is_stdin: bool,
    /// Read/write fallback when splice(2) refuses the pair (EINVAL).
    fallback: Option<Vec<u8>>,
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let fl = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let fl = OFlag::from_bits_retain(fl) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(fl))?;
    Ok(())
}

impl Pump {
    pub fn new(src: OwnedFd, dst: Dst, is_stdin: bool) -> io::Result<Pump> {
        set_nonblocking(&src)?;
        let (dst, fifo) = match dst {
            Dst::Fd(fd) => {
                set_nonblocking(&fd)?;
                (Some(fd), None)
            }
            Dst::Fifo(p) => (None, Some(p)),
        };
        let mut p = Pump {
            src,
            dst,
            fifo,
            reg: Reg::None,
            moved: 0,
            retry: Duration::from_millis(1),
            closing: false,
            is_stdin,
            fallback: None,
        };
        p.try_open()?;
        Ok(p)
    }

    /// Open a fifo destination write-only: a non-blocking reader of our own makes the
    /// non-blocking open for writing succeed, and is closed right after.
    pub fn try_open(&mut self) -> io::Result<bool> {
        if self.dst.is_some() {
            return Ok(true);
        }
        let Some(path) = &self.fifo else {
            return Ok(true);
        };
        let err = |e: io::Error| {
            io::Error::new(e.kind(), format!("opening fifo {}: {e}", path.display()))
        };
        let flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
            .map_err(err)?;
        let writer = OpenOptions::new()
            .write(true)
            .custom_flags(flags)
            .open(path)
            .map_err(err)?;
        drop(reader);
        self.dst = Some(writer.into());
        Ok(true)
    }

    /// The destination, once open.
    pub fn dst(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.dst.as_ref().map(|d| d.as_fd())
    }

    /// A read of 0. For the stdin fifo (opened O_RDONLY|O_NONBLOCK) that also happens before
    /// containerd's writer connected; only POLLHUP (a writer came and went) is the end.
    fn at_eof(&self) -> Wait {
        if !self.is_stdin || self.closing {
            return Wait::Done;
        }
        let mut pfd = [nix::poll::PollFd::new(
            self.src.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO) {
            Ok(_)
                if pfd[0]
                    .revents()
                    .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLHUP)) =>
            {
                Wait::Done
            }
            _ => Wait::Src,
        }
    }

    /// Move what can be moved now; tell what to wait for next.
    pub fn run(&mut self) -> Wait {
        use nix::errno::Errno;
        match self.try_open() {
            Ok(true) => {}
            Ok(false) => return Wait::Reader,
            Err(_) => return Wait::Done,
        }
        let Some(dst) = self.dst.as_ref() else {
            return Wait::Done;
        };
        for _ in 0..64 {
            if let Some(buf) = self.fallback.as_mut() {
                if !buf.is_empty() {
                    match nix::unistd::write(dst, buf) {
                        Ok(n) => {
                            buf.drain(..n);
                            self.moved += n as u64;
                            continue;
                        }
                        Err(Errno::EAGAIN) => return Wait::Dst,
                        Err(Errno::EINTR) => continue,
                        Err(Errno::EPIPE) if self.fifo.is_some() => return Wait::Reader,
                        Err(_) => return Wait::Done,
                    }
                }
                let mut tmp = [0u8; 16384];
                match nix::unistd::read(&self.src, &mut tmp) {
                    Ok(0) => return self.at_eof(),
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    Err(Errno::EAGAIN) => return if self.closing { Wait::Done } else { Wait::Src },
                    Err(Errno::EINTR) => {}
                    Err(_) => return Wait::Done,
                }
                continue;
            }
            let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
            match splice(&self.src, None, dst, None, 1 << 16, flags) {
                Ok(0) => return self.at_eof(),
                Ok(n) => {
                    self.moved += n as u64;
                    self.retry = Duration::from_millis(1);
                }
                Err(Errno::EINTR) => {}
                // A fifo without a reader (not connected yet, or gone): keep the bytes.
                Err(Errno::EPIPE) if self.fifo.is_some() => return Wait::Reader,
                Err(Errno::EAGAIN) => {
                    return if crate::sys::readable_bytes(self.src.as_fd()) > 0 {
                        Wait::Dst
                    } else if self.closing {
                        Wait::Done
                    } else {
                        Wait::Src
                    };
                }
                Err(Errno::EINVAL) => self.fallback = Some(Vec::new()),
                // EIO: the terminal's other side is gone; EPIPE: the reader is gone.
                Err(_) => return Wait::Done,
            }
        }
        Wait::Src // plenty moved; let other sources have a turn (level-triggered: we come back)
    }
}

/// A parsed stdio destination.
#[derive(Debug, PartialEq)]
pub enum Uri {
    Fifo(PathBuf),
    File(PathBuf),
    Binary { path: PathBuf, args: Vec<String> },
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_uri(s: &str) -> Result<Uri, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Ok(Uri::Fifo(PathBuf::from(s)));
    };
    let rest = rest.find('/').map(|i| &rest[i..]).unwrap_or(""); // drop the (empty) host
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = PathBuf::from(percent_decode(path));
    match scheme {
        "fifo" => Ok(Uri::Fifo(path)),
        "file" => Ok(Uri::File(path)),
        "binary" => {
            let mut args = Vec::new();
            for kv in query.split('&').filter(|x| !x.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                args.push(percent_decode(k));
                if !v.is_empty() {
                    args.push(percent_decode(v));
                }
            }
            Ok(Uri::Binary { path, args })
        }
        other => Err(format!("unsupported stdio scheme {other:?} in {s:?}")),
    }
}

/// The stdin fifo: read-only, so that containerd closing its end is our EOF.
pub fn open_fifo_reader(path: &Path) -> io::Result<OwnedFd> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("opening fifo {}: {e}", path.display())))?;
    Ok(f.into())
}

fn open_log_file(path: &Path) -> io::Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening log file {}: {e}", path.display()),
            )
        })?;
    Ok(f.into())
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// What the runtime call gets, and what the shim keeps.
#[derive(Default)]
pub struct Prepared {
    pub call_stdin: Option<OwnedFd>,
    pub call_stdout: Option<OwnedFd>,
    pub call_stderr: Option<OwnedFd>,
    pub pumps: Vec<Pump>,
    pub console: Option<ConsoleSocket>,
    /// Terminal mode: where the terminal's output goes and where its input comes from.
    pub term_out: Option<Dst>,
    pub term_in: Option<OwnedFd>,
    pub logger: Option<Child>,
}

impl Prepared {
    /// The stdio of the runtime call that starts the process (taken: there is one such call).
    pub fn call_io(&mut self) -> crate::runtime::CallIo {
        crate::runtime::CallIo {
            stdin: self.call_stdin.take(),
            stdout: self.call_stdout.take(),
            stderr: self.call_stderr.take(),
            input: None,
            container: true,
        }
    }

    /// The process never ran: its logger goes.
    pub fn kill_logger(&mut self) {
        if let Some(mut l) = self.logger.take() {
            let _ = l.kill();
        }
    }
}

/// A sink for output: fd to pump into, or a pipe end the container writes directly.
enum Sink {
    Pumped(Dst),
    Direct(OwnedFd),
}

fn start_logger(
    path: &Path,
    args: &[String],
    id: &str,
    ns: &str,
) -> io::Result<(OwnedFd, OwnedFd, Child)> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let mut cmd = Command::new(path);
    cmd.args(args)
        .env_clear()
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", ns)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child =
        crate::sys::spawn_with_fds(&mut cmd, &[out_r.as_fd(), err_r.as_fd(), ready_w.as_fd()])
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("starting logging binary {}: {e}", path.display()),
                )
            })?;
    drop((out_r, err_r, ready_w));
    // The logger says it is ready by writing a byte to fd 5 or closing it.
    let mut pfd = [nix::poll::PollFd::new(
        ready_r.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(10_000u16));
    Ok((out_w, err_w, child))
}

/// Open containerd's stdio for a process (before the runtime call).
pub fn prepare(p: &StdioPaths, id: &str, ns: &str, uid: u32, gid: u32) -> io::Result<Prepared> {
    let mut prep = Prepared::default();
    let inval = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let out_uri = if p.stdout.is_empty() {
        None
    } else {
        Some(parse_uri(&p.stdout).map_err(inval)?)
    };
    let err_uri = if p.stderr.is_empty() || p.terminal {
        None
    } else {
        Some(parse_uri(&p.stderr).map_err(inval)?)
    };
    // Sinks.
    let (mut out_sink, mut err_sink) = (None, None);
    if let Some(Uri::Binary { path, args }) = &out_uri {
        let (o, e, child) = start_logger(path, args, id, ns)?;
        out_sink = Some(Sink::Direct(o));
        err_sink = Some(Sink::Direct(e));
        prep.logger = Some(child);
    } else {
        if let Some(u) = &out_uri {
            out_sink = Some(Sink::Pumped(match u {
                Uri::Fifo(path) => Dst::Fifo(path.clone()),
                Uri::File(path) => Dst::Fd(open_log_file(path)?),
                Uri::Binary { .. } => unreachable!(),
            }));
        }
        if let Some(u) = &err_uri {
            err_sink = Some(Sink::Pumped(match u {
                Uri::Fifo(path) => Dst::Fifo(path.clone()),
                Uri::File(path) => Dst::Fd(open_log_file(path)?),
                Uri::Binary { .. } => {
                    return Err(inval("a binary:// stderr needs a binary:// stdout".into()))
                }
            }));
        }
    }
    let stdin = if p.stdin.is_empty() {
        None
    } else {
        Some(open_fifo_reader(Path::new(&p.stdin))?)
    };
    if p.terminal {
        prep.console = Some(ConsoleSocket::new()?);
        prep.term_in = stdin;
        prep.term_out = match out_sink {
            Some(Sink::Pumped(dst)) => Some(dst),
            Some(Sink::Direct(fd)) => Some(Dst::Fd(fd)),
            None => None,
        };
        return Ok(prep);
    }
    if let Some(fifo) = stdin {
        let (r, w) = pipe()?;
        chown(&r, uid, gid);
        prep.call_stdin = Some(r);
        prep.pumps.push(Pump::new(fifo, Dst::Fd(w), true)?);
    }
    for (sink, slot) in [
        (out_sink, &mut prep.call_stdout),
        (err_sink, &mut prep.call_stderr),
    ] {
        match sink {
            Some(Sink::Direct(w)) => *slot = Some(w),
            Some(Sink::Pumped(dst)) => {
                let (r, w) = pipe()?;
                chown(&w, uid, gid);
                *slot = Some(w);
                prep.pumps.push(Pump::new(r, dst, false)?);
            }
            None => {}
        }
    }
    Ok(prep)
}

fn chown(fd: &OwnedFd, uid: u32, gid: u32) {
    if uid != 0 || gid != 0 {
        let _ = nix::unistd::fchown(fd, Some(uid.into()), Some(gid.into()));
    }
}

/// The terminal's pumps once its master arrived: master -> stdout sink, stdin fifo -> master.
pub fn terminal_pumps(master: &OwnedFd, prep: &mut Prepared) -> io::Result<Vec<Pump>> {
    let mut pumps = Vec::new();
    if let Some(out) = prep.term_out.take() {
        pumps.push(Pump::new(master.try_clone()?, out, false)?);
    }
    if let Some(inp) = prep.term_in.take() {
        pumps.push(Pump::new(inp, Dst::Fd(master.try_clone()?), true)?);
    }
    Ok(pumps)
}

/// `--console-socket`: the runtime connects and sends the terminal's master with SCM_RIGHTS.
pub struct ConsoleSocket {
    listener: UnixListener,
    pub path: PathBuf,
}

static CONSOLE_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl ConsoleSocket {
    pub fn new() -> io::Result<ConsoleSocket> {
        let n = CONSOLE_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("berth-shim-pty-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        Ok(ConsoleSocket { listener, path })
    }

    /// Receive the master (after the runtime call returned successfully).
    pub fn receive(&self) -> io::Result<OwnedFd> {
        let (stream, _) = self.listener.accept().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the runtime did not connect to the console socket: {e}"),
            )
        })?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut got = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: SCM_RIGHTS just installed this fd in our table; we own it.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if got.is_none() {
                        got = Some(owned);
                    }
                }
            }
        }
        got.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "no terminal fd received on the console socket",
            )
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            parse_uri("/run/containerd/fifo/1/x-stdout").unwrap(),
            Uri::Fifo("/run/containerd/fifo/1/x-stdout".into())
        );
        assert_eq!(
            parse_uri("file:///var/log/c.log").unwrap(),
            Uri::File("/var/log/c.log".into())
        );
        assert_eq!(
            parse_uri("binary:///usr/bin/logger?id=a%20b&flag").unwrap(),
            Uri::Binary {
                path: "/usr/bin/logger".into(),
                args: vec!["id".into(), "a b".into(), "flag".into()]
            }
        );
        assert!(parse_uri("npipe://x").is_err());
    }

    #[test]
    fn pump_pipe_to_fifo_with_backpressure() {
        let dir = std::env::temp_dir().join(format!("berth-shim-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (r, w) = pipe().unwrap();
        let mut p = Pump::new(r, Dst::Fifo(fifo.clone()), false).unwrap();
        nix::unistd::write(&w, b"early").unwrap();
        assert_eq!(p.run(), Wait::Reader); // no reader: the bytes stay in the pipe
                                           // A client's blocking open for reading returns at once: the pump holds a writer.
        let (tx, rx) = std::sync::mpsc::channel();
        let f2 = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(OpenOptions::new().read(true).open(&f2));
        });
        let reader = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("blocking open hung")
            .unwrap();
        set_nonblocking(&OwnedFd::from(reader.try_clone().unwrap())).unwrap();
        assert_eq!(p.run(), Wait::Src);
        let mut early = [0u8; 8];
        assert_eq!(nix::unistd::read(&reader, &mut early).unwrap(), 5);
        nix::unistd::write(&w, b"hello").unwrap();
        assert_eq!(p.run(), Wait::Src);
        let mut buf = [0u8; 16];
        assert_eq!(nix::unistd::read(&reader, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        // Fill the fifo: the pump must stop with data left in the source.
        set_nonblocking(&w).unwrap();
        let big = vec![b'x'; 1 << 20];
        let mut sent = 0;
        while let Ok(n) = nix::unistd::write(&w, &big) {
            sent += n;
            if p.run() == Wait::Dst {
                break;
            }
        }
        assert!(sent > 0);
        assert_eq!(p.run(), Wait::Dst);
        drop(w);
        let mut total = 0;
        loop {
            match nix::unistd::read(&reader, &mut vec![0u8; 1 << 16]) {
                Ok(n) if n > 0 => total += n,
                _ => {
                    if p.run() == Wait::Done {
                        break;
                    }
                }
            }
        }
        while let Ok(n) = nix::unistd::read(&reader, &mut vec![0u8; 1 << 16]) {
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, sent);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stdin_eof_only_after_a_writer_left() {
        let dir = std::env::temp_dir().join(format!("berth-shim-io3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let src = open_fifo_reader(&fifo).unwrap();
        let (r, w) = pipe().unwrap();
        let mut p = Pump::new(src, Dst::Fd(w), true).unwrap();
        assert_eq!(p.run(), Wait::Src); // no writer yet: not the end
        let writer = OpenOptions::new().write(true).open(&fifo).unwrap();
        nix::unistd::write(&writer, b"hey").unwrap();
        assert_eq!(p.run(), Wait::Src);
        drop(writer);
        assert_eq!(p.run(), Wait::Done);
        drop(p);
        let mut buf = [0u8; 8];
        assert_eq!(nix::unistd::read(&r, &mut buf).unwrap(), 3);
        assert_eq!(nix::unistd::read(&r, &mut buf).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stdin_closing_drains() {
        let dir = std::env::temp_dir().join(format!("berth-shim-io2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let src = open_fifo_reader(&fifo).unwrap();
        let writer = OpenOptions::new().write(true).open(&fifo).unwrap();
        let (r, w) = pipe().unwrap();
        let mut p = Pump::new(src, Dst::Fd(w), true).unwrap();
        nix::unistd::write(&writer, b"abc").unwrap();
        p.closing = true;
        assert_eq!(p.run(), Wait::Done);
        drop(p);
        let mut buf = [0u8; 8];
        assert_eq!(nix::unistd::read(&r, &mut buf).unwrap(), 3);
        assert_eq!(nix::unistd::read(&r, &mut buf).unwrap(), 0); // EOF: the writer was closed
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
