//! The shim server: one thread, one epoll loop over the ttrpc socket, its connections, a
//! signalfd (SIGCHLD: reap as a subreaper), the stdio pumps, OOM watches and the event
//! publisher. Runtime calls are made synchronously from the RPC handlers.

use crate::args::Args;
use crate::cgroup::OomWatch;
use crate::io::{Pump, Reg, Wait};
use crate::publisher::{self, Publisher};
use crate::service::{Container, ProcKey};
use crate::wire::{self, Wire};
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use protobuf::Message;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use ttrpc::{Code, Status};

const LISTENER: u64 = 0;
const SIGNALS: u64 = 1;
const FIRST_DYNAMIC: u64 = 16;

pub type Reply = Result<Vec<u8>, Status>;

pub struct Shim {
    pub args: Args,
    pub ep: Epoll,
    listener: Option<UnixListener>,
    socket_path: Option<PathBuf>,
    conns: HashMap<u64, Wire>,
    conn_out: HashMap<u64, bool>,
    next_token: u64,
    sigfd: SignalFd,
    pub pumps: HashMap<u64, (Pump, ProcKey)>,
    /// Pumps whose destination fifo has no reader yet, and when to try again.
    reader_waits: HashMap<u64, Instant>,
    /// Exits announced once their output reached a reader (deadline, pid, process, status, time).
    pub held_exits: Vec<(
        Instant,
        i32,
        ProcKey,
        u32,
        protobuf::well_known_types::timestamp::Timestamp,
    )>,
    pub ooms: HashMap<u64, (OomWatch, String)>,
    pub containers: BTreeMap<String, Container>,
    pub pids: HashMap<i32, ProcKey>,
    pub publisher: Publisher,
    pub outbox: Vec<(u64, u32, Reply)>,
    pub shutdown: bool,
    pub unified: bool,
}

pub fn serve(args: Args) -> Result<()> {
    crate::sys::close_fds_from(4);
    let _ = nix::unistd::setsid();
    crate::sys::ignore_sigpipe();
    crate::logger::init(args.debug);
    nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
    let mut mask = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(s);
    }
    mask.thread_block().context("blocking signals")?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("signalfd")?;
    let listener = crate::sys::inherited_listener(3).context("the shim socket (fd 3)")?;
    listener.set_nonblocking(true)?;
    let socket_path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(PathBuf::from));
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll")?;
    ep.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
    ep.add(&sigfd, EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))?;
    let mut shim = Shim {
        publisher: Publisher::new(&args.namespace),
        args,
        ep,
        listener: Some(listener),
        socket_path,
        conns: HashMap::new(),
        conn_out: HashMap::new(),
        next_token: FIRST_DYNAMIC,
        sigfd,
        pumps: HashMap::new(),
        reader_waits: HashMap::new(),
        held_exits: Vec::new(),
        ooms: HashMap::new(),
        containers: BTreeMap::new(),
        pids: HashMap::new(),
        outbox: Vec::new(),
        shutdown: false,
        unified: crate::cgroup::unified(),
    };
    crate::info!(
        "shim {} serving {}",
        shim.args.id,
        shim.socket_path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    shim.run();
    if let Some(p) = &shim.socket_path {
        let _ = std::fs::remove_file(p);
    }
    crate::info!("shim {} exiting", shim.args.id);
    Ok(())
}

impl Shim {
    pub fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn run(&mut self) {
        let mut events = vec![EpollEvent::empty(); 32];
        let mut shutdown_deadline: Option<Instant> = None;
        loop {
            if self.shutdown {
                let deadline = *shutdown_deadline
                    .get_or_insert_with(|| Instant::now() + Duration::from_secs(5));
                let flushed = self.conn_out.values().all(|pending| !pending);
                if (self.publisher.idle() && flushed) || Instant::now() >= deadline {
                    return;
                }
            }
            let mut timeout = self.publisher.timeout();
            if let Some(next) = self.reader_waits.values().min() {
                let d = next.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(d, |t| t.min(d)));
            }
            if self.shutdown {
                timeout = Some(
                    timeout
                        .unwrap_or(Duration::from_millis(50))
                        .min(Duration::from_millis(50)),
                );
            }
            let t = match timeout {
                Some(d) => EpollTimeout::from((d.as_millis().min(60_000) as u16).saturating_add(1)),
                None => EpollTimeout::NONE,
            };
            let n = match self.ep.wait(&mut events, t) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    crate::error!("epoll_wait: {e}");
                    return;
                }
            };
            for ev in &events[..n] {
                let (token, flags) = (ev.data(), ev.events());
                match token {
                    LISTENER => self.accept(),
                    SIGNALS => self.signals(),
                    publisher::TOKEN => self.publisher.on_event(&self.ep, flags),
                    t if self.conns.contains_key(&t) => self.conn_event(t, flags),
                    t if self.pumps.contains_key(&t) => self.pump_event(t),
                    t if self.ooms.contains_key(&t) => self.oom_event(t),
                    _ => {}
                }
            }
            self.publisher.on_tick(&self.ep);
            self.retry_readers();
            self.release_held_exits();
            self.deliver();
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(l) = self.listener.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((s, _)) => {
                    let Ok(w) = Wire::new(s) else { continue };
                    let t = self.token();
                    if self
                        .ep
                        .add(&w.sock, EpollEvent::new(EpollFlags::EPOLLIN, t))
                        .is_ok()
                    {
                        self.conns.insert(t, w);
                        self.conn_out.insert(t, false);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    crate::error!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn conn_event(&mut self, token: u64, flags: EpollFlags) {
        let Some(mut w) = self.conns.remove(&token) else {
            return;
        };
        let mut alive = true;
        if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
            match w.fill() {
                Ok(open) => alive = open,
                Err(_) => alive = false,
            }
        }
        loop {
            match w.next_frame() {
                Ok(Some(f)) if f.kind == wire::REQUEST => {
                    if let Some(reply) = self.request(token, f.stream_id, &f.payload) {
                        w.queue(f.stream_id, wire::RESPONSE, &wire::response_payload(reply));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    crate::error!("ttrpc connection: {e}");
                    alive = false;
                    break;
                }
            }
        }
        // Replies are flushed even when the peer half-closed.
        let flushed = w.flush();
        if !alive || flushed.is_err() {
            let _ = self.ep.delete(&w.sock);
            self.conn_out.remove(&token);
            for c in self.containers.values_mut() {
                c.drop_waiters(token);
            }
            return;
        }
        self.conns.insert(token, w);
        self.update_conn_interest(token);
    }

    fn update_conn_interest(&mut self, token: u64) {
        let Some(w) = self.conns.get(&token) else {
            return;
        };
        let want_out = w.pending_write();
        if self.conn_out.get(&token) != Some(&want_out) {
            let flags = if want_out {
                EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
            } else {
                EpollFlags::EPOLLIN
            };
            let _ = self.ep.modify(&w.sock, &mut EpollEvent::new(flags, token));
            self.conn_out.insert(token, want_out);
        }
    }

    /// Deferred replies (Wait) produced by exits.
    fn deliver(&mut self) {
        for (token, stream, reply) in std::mem::take(&mut self.outbox) {
            let Some(w) = self.conns.get_mut(&token) else {
                continue;
            };
            w.queue(stream, wire::RESPONSE, &wire::response_payload(reply));
            if w.flush().is_err() {
                continue;
            }
            self.update_conn_interest(token);
        }
    }

    fn request(&mut self, conn: u64, stream: u32, payload: &[u8]) -> Option<Reply> {
        let req = match ttrpc::Request::parse_from_bytes(payload) {
            Ok(r) => r,
            Err(e) => {
                return Some(Err(wire::status(
                    Code::INVALID_ARGUMENT,
                    format!("bad ttrpc request: {e}"),
                )))
            }
        };
        match req.service.as_str() {
            "containerd.task.v2.Task" | "containerd.task.v3.Task" => {
                crate::debug!("rpc {} {}", req.service, req.method);
                let r = self.dispatch(conn, stream, &req.method, &req.payload);
                if let Some(Err(s)) = &r {
                    crate::debug!("rpc {} failed: {}", req.method, s.message);
                }
                r
            }
            s => Some(Err(wire::status(
                Code::UNIMPLEMENTED,
                format!("service {s} is not implemented"),
            ))),
        }
    }

    fn signals(&mut self) {
        let mut reap = false;
        while let Ok(Some(si)) = self.sigfd.read_signal() {
            match si.ssi_signo as i32 {
                libc::SIGCHLD => reap = true,
                libc::SIGTERM | libc::SIGINT => {
                    if self.containers.is_empty() {
                        self.shutdown = true;
                    } else {
                        crate::info!("ignoring signal {}: still holding containers", si.ssi_signo);
                    }
                }
                _ => {}
            }
        }
        if reap {
            self.reap();
        }
    }

    fn reap(&mut self) {
        let mut exits = Vec::new();
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => exits.push((pid.as_raw(), code as u32)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    exits.push((pid.as_raw(), 128 + sig as u32))
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        if exits.is_empty() {
            return;
        }
        let at = crate::util::now();
        // Execs before inits, so that containerd sees a container's execs exit before it.
        exits.sort_by_key(|(pid, _)| self.pids.get(pid).is_some_and(|k| k.1.is_empty()));
        for (pid, status) in exits {
            self.on_exit(pid, status, at.clone());
        }
    }

    pub fn add_pump(&mut self, pump: Pump, owner: ProcKey) -> Option<u64> {
        let t = self.token();
        self.pumps.insert(t, (pump, owner));
        self.pump_event(t);
        Some(t)
    }

    /// Register a pump on its source (EPOLLIN), its destination (EPOLLOUT) or nothing.
    fn set_reg(&mut self, token: u64, want: Reg) {
        let Some((p, _)) = self.pumps.get_mut(&token) else {
            return;
        };
        if p.reg == want {
            return;
        }
        match p.reg {
            Reg::Src => {
                let _ = self.ep.delete(p.src.as_fd());
            }
            Reg::Dst => {
                if let Some(d) = p.dst() {
                    let _ = self.ep.delete(d);
                }
            }
            Reg::None => {}
        }
        let ok = match want {
            Reg::Src => self
                .ep
                .add(p.src.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
                .is_ok(),
            Reg::Dst => p.dst().is_some_and(|d| {
                self.ep
                    .add(d, EpollEvent::new(EpollFlags::EPOLLOUT, token))
                    .is_ok()
            }),
            Reg::None => true,
        };
        p.reg = if ok { want } else { Reg::None };
    }

    /// Run a pump; re-arm it or retire it.
    pub fn pump_event(&mut self, token: u64) {
        let Some((p, _)) = self.pumps.get_mut(&token) else {
            return;
        };
        match p.run() {
            Wait::Src => self.set_reg(token, Reg::Src),
            Wait::Dst => self.set_reg(token, Reg::Dst),
            Wait::Reader => {
                // Retry the open soon, then less and less often.
                let delay = p.retry;
                p.retry = (delay * 2).min(Duration::from_millis(200));
                self.set_reg(token, Reg::None);
                self.reader_waits.insert(token, Instant::now() + delay);
            }
            Wait::Done => self.remove_pump(token),
        }
    }

    /// Run these output pumps now, except those already waiting for their fifo's reader.
    pub fn run_output_pumps(&mut self, tokens: &[u64]) {
        for &t in tokens {
            let output = self.pumps.get(&t).is_some_and(|(p, _)| !p.is_stdin);
            if output && !self.reader_waits.contains_key(&t) {
                self.pump_event(t);
            }
        }
    }

    /// Is this output pump holding bytes for a fifo that has no reader?
    pub fn output_waits_for_reader(&self, token: u64) -> bool {
        self.reader_waits.contains_key(&token)
            && self
                .pumps
                .get(&token)
                .is_some_and(|(p, _)| crate::sys::readable_bytes(p.src.as_fd()) > 0)
    }

    fn retry_readers(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .reader_waits
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| *k)
            .collect();
        for t in due {
            self.reader_waits.remove(&t);
            self.pump_event(t);
        }
    }

    pub fn remove_pump(&mut self, token: u64) {
        if let Some((p, k)) = self.pumps.get(&token) {
            crate::debug!(
                "stdio of {}/{} ({}): {} bytes moved",
                k.0,
                k.1,
                if p.is_stdin { "in" } else { "out" },
                p.moved
            );
        }
        self.set_reg(token, Reg::None);
        self.pumps.remove(&token);
        self.reader_waits.remove(&token);
    }

    pub fn add_oom(&mut self, watch: OomWatch, cid: &str) -> Option<u64> {
        let t = self.token();
        self.ep
            .add(watch.fd(), EpollEvent::new(EpollFlags::EPOLLIN, t))
            .ok()?;
        self.ooms.insert(t, (watch, cid.to_string()));
        Some(t)
    }

    pub fn remove_oom(&mut self, token: u64) {
        if let Some((w, _)) = self.ooms.remove(&token) {
            let _ = self.ep.delete(w.fd());
        }
    }

    fn oom_event(&mut self, token: u64) {
        let Some((w, cid)) = self.ooms.get_mut(&token) else {
            return;
        };
        let (oom, alive) = w.check();
        let cid = cid.clone();
        if oom {
            crate::info!("container {cid} hit its memory limit (OOM)");
            let mut ev = containerd_shim_protos::events::task::TaskOOM::new();
            ev.container_id = cid.clone();
            self.publisher
                .publish(&self.ep, "/tasks/oom", publisher::event_any("TaskOOM", &ev));
        }
        if !alive {
            self.remove_oom(token);
            if let Some(c) = self.containers.get_mut(&cid) {
                c.oom = None;
            }
        }
    }
}
