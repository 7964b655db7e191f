//! The Task service (containerd.task.v2.Task, also answered as v3): every RPC, on top of the
//! runtime's command line. Process states follow the runc shim: created -> running (<->
//! paused) -> stopped; exits come from the reaper with waitpid's status and time.

use crate::io::{self, StdioPaths};
use crate::options::RuntimeOpts;
use crate::publisher::event_any;
use crate::runtime::{CallIo, Runtime};
use crate::server::{Reply, Shim};
use crate::wire::status;
use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task::*;
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::types::mount::Mount;
use containerd_shim_protos::types::task::{ProcessInfo, Status as TaskStatus};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::empty::Empty;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{Message, MessageField};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use ttrpc::{Code, Status};

/// (container id, exec id; empty for init)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcKey(pub String, pub String);

pub struct Proc {
    pub pid: i32,
    pub status: TaskStatus,
    pub exit_status: u32,
    pub exited_at: Option<Timestamp>,
    pub stdio: StdioPaths,
    pub spec: Vec<u8>,
    pub pumps: Vec<u64>,
    pub stdin_pump: Option<u64>,
    pub console: Option<OwnedFd>,
    pub logger: Option<i32>,
    pub waiters: Vec<(u64, u32)>,
}

impl Proc {
    /// Take over the stdio that attach_io set up on `from` (pumps, terminal, logger).
    fn adopt_io(&mut self, from: Proc) {
        self.pumps = from.pumps;
        self.stdin_pump = from.stdin_pump;
        self.console = from.console;
        self.logger = from.logger;
    }

    fn new(stdio: StdioPaths) -> Proc {
        Proc {
            pid: 0,
            status: TaskStatus::CREATED,
            exit_status: 0,
            exited_at: None,
            stdio,
            spec: Vec::new(),
            pumps: Vec::new(),
            stdin_pump: None,
            console: None,
            logger: None,
            waiters: Vec::new(),
        }
    }
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Option<PathBuf>,
    pub rt: Runtime,
    pub init: Proc,
    pub execs: BTreeMap<String, Proc>,
    pub own_pidns: bool,
    pub oom: Option<u64>,
    /// Created from a checkpoint: the restore that Start runs.
    pub restore: Option<crate::checkpoint::Pending>,
}

impl Container {
    pub fn drop_waiters(&mut self, conn: u64) {
        self.init.waiters.retain(|w| w.0 != conn);
        for e in self.execs.values_mut() {
            e.waiters.retain(|w| w.0 != conn);
        }
    }
}

type R<T> = Result<T, Status>;

fn not_found(what: impl std::fmt::Display) -> Status {
    status(Code::NOT_FOUND, format!("{what}: not found"))
}

fn precondition(msg: impl Into<String>) -> Status {
    status(Code::FAILED_PRECONDITION, msg)
}

fn unknown(msg: impl Into<String>) -> Status {
    status(Code::UNKNOWN, msg)
}

fn ts(t: &Option<Timestamp>) -> MessageField<Timestamp> {
    MessageField::from_option(t.clone())
}

/// Does the bundle's config ask for a new pid namespace (so that the kernel kills everything
/// when init dies)?
fn own_pid_namespace(bundle: &Path) -> bool {
    let Ok(b) = std::fs::read(bundle.join("config.json")) else {
        return true;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) else {
        return true;
    };
    let Some(nss) = v.pointer("/linux/namespaces").and_then(|n| n.as_array()) else {
        return false;
    };
    nss.iter().any(|n| {
        n.get("type").and_then(|t| t.as_str()) == Some("pid")
            && n.get("path")
                .and_then(|p| p.as_str())
                .unwrap_or("")
                .is_empty()
    })
}

fn read_pid(path: &Path) -> R<i32> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| unknown(format!("reading pid file {}: {e}", path.display())))?;
    s.trim()
        .parse()
        .map_err(|_| unknown(format!("bad pid file {}: {s:?}", path.display())))
}

/// A file name for an exec id (ids are containerd's, up to 76 chars of [A-Za-z0-9_.-]).
fn exec_file(bundle: &Path, exec_id: &str, ext: &str) -> PathBuf {
    let safe: String = exec_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    bundle.join(format!(".berth-exec-{safe}.{ext}"))
}

/// The TaskCreate event of a Create request whose init got `pid` (0: created from a
/// checkpoint, restored only by Start).
fn task_create_event(r: &CreateTaskRequest, pid: u32) -> TaskCreate {
    let mut ev = TaskCreate::new();
    ev.container_id = r.id.clone();
    ev.bundle = r.bundle.clone();
    ev.rootfs = r
        .rootfs
        .iter()
        .map(|m| {
            let mut o = Mount::new();
            o.type_ = m.type_.clone();
            o.source = m.source.clone();
            o.target = m.target.clone();
            o.options = m.options.clone();
            o
        })
        .collect();
    let mut tio = TaskIO::new();
    tio.stdin = r.stdin.clone();
    tio.stdout = r.stdout.clone();
    tio.stderr = r.stderr.clone();
    tio.terminal = r.terminal;
    ev.io = MessageField::some(tio);
    ev.pid = pid;
    ev
}

fn is_gone(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("does not exist") || m.contains("not found") || m.contains("no such")
}

impl Shim {
    fn container(&self, id: &str) -> R<&Container> {
        self.containers
            .get(id)
            .ok_or_else(|| not_found(format!("container {id}")))
    }

    fn proc_ref<'a>(c: &'a Container, exec_id: &str) -> R<&'a Proc> {
        if exec_id.is_empty() {
            Ok(&c.init)
        } else {
            c.execs
                .get(exec_id)
                .ok_or_else(|| not_found(format!("process {exec_id}")))
        }
    }

    fn proc_mut(&mut self, id: &str, exec_id: &str) -> R<&mut Proc> {
        let c = self
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found(format!("container {id}")))?;
        if exec_id.is_empty() {
            Ok(&mut c.init)
        } else {
            c.execs
                .get_mut(exec_id)
                .ok_or_else(|| not_found(format!("process {exec_id}")))
        }
    }

    fn emit<M: Message>(&mut self, topic: &str, name: &str, msg: &M) {
        self.publisher
            .publish(&self.ep, topic, event_any(name, msg));
    }

    pub fn dispatch(
        &mut self,
        conn: u64,
        stream: u32,
        method: &str,
        payload: &[u8],
    ) -> Option<Reply> {
        macro_rules! call {
            ($req:ty, $f:ident) => {
                match <$req>::parse_from_bytes(payload) {
                    Ok(r) => self.$f(r).map(|m| m.write_to_bytes().unwrap_or_default()),
                    Err(e) => Err(status(
                        Code::INVALID_ARGUMENT,
                        format!("decoding {}: {e}", stringify!($req)),
                    )),
                }
            };
        }
        Some(match method {
            "State" => call!(StateRequest, state),
            "Create" => call!(CreateTaskRequest, create),
            "Start" => call!(StartRequest, start),
            "Delete" => call!(DeleteRequest, delete),
            "Pids" => call!(PidsRequest, pids),
            "Pause" => call!(PauseRequest, pause),
            "Resume" => call!(ResumeRequest, resume),
            "Checkpoint" => call!(CheckpointTaskRequest, checkpoint),
            "Kill" => call!(KillRequest, kill),
            "Exec" => call!(ExecProcessRequest, exec),
            "ResizePty" => call!(ResizePtyRequest, resize_pty),
            "CloseIO" => call!(CloseIORequest, close_io),
            "Update" => call!(UpdateTaskRequest, update),
            "Wait" => {
                return match WaitRequest::parse_from_bytes(payload) {
                    Ok(r) => self.wait(conn, stream, r),
                    Err(e) => Some(Err(status(Code::INVALID_ARGUMENT, e.to_string()))),
                }
            }
            "Stats" => call!(StatsRequest, stats),
            "Connect" => call!(ConnectRequest, connect),
            "Shutdown" => call!(ShutdownRequest, shutdown),
            m => Err(status(
                Code::UNIMPLEMENTED,
                format!("method {m} is not implemented"),
            )),
        })
    }

    fn state(&mut self, r: StateRequest) -> R<StateResponse> {
        let c = self.container(&r.id)?;
        let p = Self::proc_ref(c, &r.exec_id)?;
        let mut s = StateResponse::new();
        s.id = if r.exec_id.is_empty() {
            c.id.clone()
        } else {
            r.exec_id.clone()
        };
        s.bundle = c.bundle.to_string_lossy().into_owned();
        s.pid = p.pid as u32;
        s.status = p.status.into();
        s.stdin = p.stdio.stdin.clone();
        s.stdout = p.stdio.stdout.clone();
        s.stderr = p.stdio.stderr.clone();
        s.terminal = p.stdio.terminal;
        s.exit_status = p.exit_status;
        s.exited_at = ts(&p.exited_at);
        s.exec_id = r.exec_id;
        Ok(s)
    }

    fn create(&mut self, r: CreateTaskRequest) -> R<CreateTaskResponse> {
        if self.containers.contains_key(&r.id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("container {}: already exists", r.id),
            ));
        }
        let bundle = PathBuf::from(&r.bundle);
        let opts = match r.options.as_ref() {
            Some(any) => RuntimeOpts::from_any(any)
                .map_err(|e| status(Code::INVALID_ARGUMENT, format!("{e:#}")))?,
            None => RuntimeOpts::load(&bundle),
        };
        opts.save(&bundle).map_err(|e| unknown(format!("{e:#}")))?;
        let rt = Runtime::new(
            opts.binary(),
            opts.root(&self.args.namespace),
            opts.systemd_cgroup,
            &bundle,
        );
        let rootfs = bundle.join("rootfs");
        crate::mounts::mount_all(&r.rootfs, &rootfs).map_err(|e| unknown(format!("{e:#}")))?;
        let mounted = if r.rootfs.is_empty() {
            None
        } else {
            Some(rootfs.clone())
        };
        let undo = |e: Status| {
            if let Some(m) = &mounted {
                let _ = crate::mounts::unmount_all(m);
            }
            e
        };
        let stdio = StdioPaths {
            stdin: r.stdin.clone(),
            stdout: r.stdout.clone(),
            stderr: r.stderr.clone(),
            terminal: r.terminal,
        };
        let mut prep = io::prepare(
            &stdio,
            &r.id,
            &self.args.namespace,
            opts.io_uid,
            opts.io_gid,
        )
        .map_err(|e| undo(unknown(format!("stdio: {e}"))))?;
        if !r.checkpoint.is_empty() {
            // Nothing runs until Start restores it (the runc shim's createdCheckpointState).
            let restore = crate::checkpoint::Pending {
                prep,
                image: r.checkpoint.clone(),
                work: opts.criu_work_path.clone(),
            };
            let own_pidns = own_pid_namespace(&bundle);
            let c = Container {
                id: r.id.clone(),
                bundle,
                rootfs: mounted,
                rt,
                init: Proc::new(stdio),
                execs: BTreeMap::new(),
                own_pidns,
                oom: None,
                restore: Some(restore),
            };
            self.containers.insert(r.id.clone(), c);
            self.emit("/tasks/create", "TaskCreate", &task_create_event(&r, 0));
            return Ok(CreateTaskResponse::new());
        }
        let pid_file = bundle.join("init.pid");
        let mut args: Vec<String> = vec![
            "create".into(),
            "--bundle".into(),
            r.bundle.clone(),
            "--pid-file".into(),
        ];
        args.push(pid_file.to_string_lossy().into_owned());
        if let Some(cs) = &prep.console {
            args.push("--console-socket".into());
            args.push(cs.path.to_string_lossy().into_owned());
        }
        if opts.no_pivot_root {
            args.push("--no-pivot".into());
        }
        if opts.no_new_keyring {
            args.push("--no-new-keyring".into());
        }
        args.push(r.id.clone());
        let call_io = prep.call_io();
        if let Err(e) = rt.call(&args, call_io) {
            prep.kill_logger();
            return Err(undo(unknown(e)));
        }
        let pid = match read_pid(&pid_file) {
            Ok(p) => p,
            Err(e) => {
                let _ = rt.call(&["delete", "--force", &r.id], CallIo::default());
                return Err(undo(e));
            }
        };
        let mut init = Proc::new(stdio.clone());
        init.pid = pid;
        let key = ProcKey(r.id.clone(), String::new());
        if let Err(e) = self.attach_io(&mut init, &mut prep, &key) {
            let _ = rt.call(&["delete", "--force", &r.id], CallIo::default());
            return Err(undo(e));
        }
        let own_pidns = own_pid_namespace(&bundle);
        let mut c = Container {
            id: r.id.clone(),
            bundle,
            rootfs: mounted,
            rt,
            init,
            execs: BTreeMap::new(),
            own_pidns,
            oom: None,
            restore: None,
        };
        c.oom = self.watch_oom(&r.id, pid);
        self.containers.insert(r.id.clone(), c);
        self.pids.insert(pid, key);
        let ev = task_create_event(&r, pid as u32);
        self.emit("/tasks/create", "TaskCreate", &ev);
        let mut resp = CreateTaskResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    /// After the runtime call: take the terminal, start the pumps, remember the logger.
    fn attach_io(&mut self, p: &mut Proc, prep: &mut io::Prepared, key: &ProcKey) -> R<()> {
        if let Some(cs) = prep.console.take() {
            let master = cs
                .receive()
                .map_err(|e| unknown(format!("terminal: {e}")))?;
            let pumps =
                io::terminal_pumps(&master, prep).map_err(|e| unknown(format!("terminal: {e}")))?;
            prep.pumps.extend(pumps);
            p.console = Some(master);
        }
        if let Some(l) = prep.logger.take() {
            p.logger = Some(l.id() as i32);
        }
        for pump in std::mem::take(&mut prep.pumps) {
            let is_stdin = pump.is_stdin;
            if let Some(t) = self.add_pump(pump, key.clone()) {
                if is_stdin {
                    p.stdin_pump = Some(t);
                }
                p.pumps.push(t);
            }
        }
        Ok(())
    }

    fn start(&mut self, r: StartRequest) -> R<StartResponse> {
        let c = self.container(&r.id)?;
        let rt = c.rt.clone();
        let bundle = c.bundle.clone();
        let p = Self::proc_ref(c, &r.exec_id)?;
        if p.status != TaskStatus::CREATED {
            return Err(precondition(format!(
                "process {} is not in the created state",
                if r.exec_id.is_empty() {
                    &r.id
                } else {
                    &r.exec_id
                }
            )));
        }
        let mut resp = StartResponse::new();
        if r.exec_id.is_empty() {
            let pid = if c.restore.is_some() {
                self.restore(&r.id)?
            } else {
                rt.call(&["start", &r.id], CallIo::default())
                    .map_err(unknown)?;
                let p = self.proc_mut(&r.id, "")?;
                if p.status == TaskStatus::CREATED {
                    p.status = TaskStatus::RUNNING;
                }
                p.pid as u32
            };
            let mut ev = TaskStart::new();
            ev.container_id = r.id.clone();
            ev.pid = pid;
            self.emit("/tasks/start", "TaskStart", &ev);
            resp.pid = pid;
            return Ok(resp);
        }
        let (stdio, spec) = (p.stdio.clone(), p.spec.clone());
        let spec_file = exec_file(&bundle, &r.exec_id, "json");
        let pid_file = exec_file(&bundle, &r.exec_id, "pid");
        let _ = std::fs::remove_file(&pid_file);
        let opts = RuntimeOpts::load(&bundle);
        let result = (|| -> R<i32> {
            std::fs::write(&spec_file, &spec)
                .map_err(|e| unknown(format!("writing {}: {e}", spec_file.display())))?;
            let mut prep = io::prepare(
                &stdio,
                &r.id,
                &self.args.namespace,
                opts.io_uid,
                opts.io_gid,
            )
            .map_err(|e| unknown(format!("stdio: {e}")))?;
            let mut args: Vec<String> = vec![
                "exec".into(),
                "--process".into(),
                spec_file.to_string_lossy().into_owned(),
                "--detach".into(),
                "--pid-file".into(),
                pid_file.to_string_lossy().into_owned(),
            ];
            if let Some(cs) = &prep.console {
                args.push("--console-socket".into());
                args.push(cs.path.to_string_lossy().into_owned());
            }
            args.push(r.id.clone());
            let call_io = prep.call_io();
            if let Err(e) = rt.call(&args, call_io) {
                prep.kill_logger();
                return Err(unknown(e));
            }
            let pid = read_pid(&pid_file)?;
            let key = ProcKey(r.id.clone(), r.exec_id.clone());
            let mut tmp = Proc::new(stdio.clone());
            self.attach_io(&mut tmp, &mut prep, &key)?;
            self.proc_mut(&r.id, &r.exec_id)?.adopt_io(tmp);
            Ok(pid)
        })();
        let _ = std::fs::remove_file(&spec_file);
        let _ = std::fs::remove_file(&pid_file);
        let pid = match result {
            Ok(pid) => pid,
            Err(e) => {
                // The exec never ran: it is stopped, and whoever waits on it learns so.
                self.never_ran(&r.id, &r.exec_id)?;
                return Err(e);
            }
        };
        let p = self.proc_mut(&r.id, &r.exec_id)?;
        p.pid = pid;
        p.status = TaskStatus::RUNNING;
        self.pids
            .insert(pid, ProcKey(r.id.clone(), r.exec_id.clone()));
        let mut ev = TaskExecStarted::new();
        ev.container_id = r.id.clone();
        ev.exec_id = r.exec_id.clone();
        ev.pid = pid as u32;
        self.emit("/tasks/exec-started", "TaskExecStarted", &ev);
        resp.pid = pid as u32;
        Ok(resp)
    }

    /// OOM events of the container whose init is `pid` (none, with a warning, if the cgroup
    /// cannot be watched).
    fn watch_oom(&mut self, id: &str, pid: i32) -> Option<u64> {
        match crate::cgroup::OomWatch::new(pid) {
            Ok(w) => self.add_oom(w, id),
            Err(e) => {
                crate::warn!("container {id}: no OOM events: {e}");
                None
            }
        }
    }

    /// A process whose start failed: stopped with status 255, its waiters answered.
    fn never_ran(&mut self, id: &str, exec_id: &str) -> R<()> {
        let p = self.proc_mut(id, exec_id)?;
        p.status = TaskStatus::STOPPED;
        p.exit_status = 255;
        p.exited_at = Some(crate::util::now());
        let waiters = std::mem::take(&mut p.waiters);
        let reply = Self::wait_reply(p);
        for (conn, stream) in waiters {
            self.outbox.push((conn, stream, reply.clone()));
        }
        Ok(())
    }

    /// Finish a process's stdio: move what is buffered, close the fifos, stop the logger.
    fn finish_io(&mut self, id: &str, exec_id: &str) {
        let Ok(p) = self.proc_mut(id, exec_id) else {
            return;
        };
        let pumps = std::mem::take(&mut p.pumps);
        p.stdin_pump = None;
        p.console = None;
        let logger = p.logger.take();
        for t in pumps {
            if self.pumps.get(&t).is_some_and(|(p, _)| !p.is_stdin) {
                if let Some((p, _)) = self.pumps.get_mut(&t) {
                    let pending = crate::sys::readable_bytes(p.src.as_fd());
                    let w = p.run();
                    crate::debug!(
                        "finishing stdio of {id}/{exec_id}: {pending} bytes pending, {w:?}"
                    );
                }
            }
            self.remove_pump(t);
        }
        if let Some(pid) = logger {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    fn delete(&mut self, r: DeleteRequest) -> R<DeleteResponse> {
        let c = self.container(&r.id)?;
        let p = Self::proc_ref(c, &r.exec_id)?;
        if matches!(
            p.status,
            TaskStatus::RUNNING | TaskStatus::PAUSED | TaskStatus::PAUSING
        ) && !r.exec_id.is_empty()
        {
            return Err(precondition(format!(
                "cannot delete a running process {}",
                r.exec_id
            )));
        }
        if matches!(
            p.status,
            TaskStatus::RUNNING | TaskStatus::PAUSED | TaskStatus::PAUSING
        ) {
            return Err(precondition(format!("cannot delete running task {}", r.id)));
        }
        let mut resp = DeleteResponse::new();
        resp.pid = p.pid as u32;
        resp.exit_status = p.exit_status;
        resp.exited_at = ts(&p.exited_at);
        if !r.exec_id.is_empty() {
            self.finish_io(&r.id, &r.exec_id);
            if let Some(c) = self.containers.get_mut(&r.id) {
                if let Some(e) = c.execs.remove(&r.exec_id) {
                    if self.pids.get(&e.pid).is_some_and(|k| k.1 == r.exec_id) {
                        self.pids.remove(&e.pid);
                    }
                }
            }
            return Ok(resp);
        }
        let rt = c.rt.clone();
        if let Err(e) = rt.call(&["delete", "--force", &r.id], CallIo::default()) {
            if !is_gone(&e) {
                return Err(unknown(e));
            }
        }
        let exec_ids: Vec<String> = c.execs.keys().cloned().collect();
        for e in &exec_ids {
            self.finish_io(&r.id, e);
        }
        self.finish_io(&r.id, "");
        let Some(mut c) = self.containers.remove(&r.id) else {
            return Ok(resp);
        };
        if let Some(mut pending) = c.restore.take() {
            pending.prep.kill_logger();
        }
        // Whoever still waits on a process of the container (one that never ran, killed by
        // the runtime's delete) learns that it is gone.
        let now = crate::util::now();
        for p in std::iter::once(&mut c.init).chain(c.execs.values_mut()) {
            if p.waiters.is_empty() {
                continue;
            }
            if p.status != TaskStatus::STOPPED {
                p.status = TaskStatus::STOPPED;
                p.exit_status = 128 + libc::SIGKILL as u32;
                p.exited_at = Some(now.clone());
            }
            let reply = Self::wait_reply(p);
            for (conn, stream) in std::mem::take(&mut p.waiters) {
                self.outbox.push((conn, stream, reply.clone()));
            }
        }
        if let Some(t) = c.oom {
            self.remove_oom(t);
        }
        self.pids.retain(|_, k| k.0 != r.id);
        if let Some(m) = &c.rootfs {
            if let Err(e) = crate::mounts::unmount_all(m) {
                crate::error!("container {}: {e:#}", r.id);
            }
        }
        let mut ev = TaskDelete::new();
        ev.container_id = r.id.clone();
        ev.pid = resp.pid;
        ev.exit_status = resp.exit_status;
        ev.exited_at = resp.exited_at.clone();
        ev.id = r.id.clone();
        self.emit("/tasks/delete", "TaskDelete", &ev);
        Ok(resp)
    }

    fn pids(&mut self, r: PidsRequest) -> R<PidsResponse> {
        let c = self.container(&r.id)?;
        let out =
            c.rt.call(&["ps", "--format", "json", &r.id], CallIo::default())
                .map_err(unknown)?;
        let pids: Vec<i64> =
            serde_json::from_slice(&out).map_err(|e| unknown(format!("parsing ps output: {e}")))?;
        let mut resp = PidsResponse::new();
        for pid in pids {
            let mut info = ProcessInfo::new();
            info.pid = pid as u32;
            if let Some((exec_id, _)) = c
                .execs
                .iter()
                .find(|(_, e)| i64::from(e.pid) == pid && e.pid != 0)
            {
                let mut d = ProcessDetails::new();
                d.exec_id = exec_id.clone();
                let mut a = Any::new();
                a.type_url = "containerd.runc.v1.ProcessDetails".into();
                a.value = d.write_to_bytes().unwrap_or_default();
                info.info = MessageField::some(a);
            }
            resp.processes.push(info);
        }
        Ok(resp)
    }

    fn pause(&mut self, r: PauseRequest) -> R<Empty> {
        let c = self.container(&r.id)?;
        if c.init.status != TaskStatus::RUNNING {
            return Err(precondition(format!("container {} is not running", r.id)));
        }
        c.rt.call(&["pause", &r.id], CallIo::default())
            .map_err(unknown)?;
        self.proc_mut(&r.id, "")?.status = TaskStatus::PAUSED;
        let mut ev = TaskPaused::new();
        ev.container_id = r.id;
        self.emit("/tasks/paused", "TaskPaused", &ev);
        Ok(Empty::new())
    }

    fn resume(&mut self, r: ResumeRequest) -> R<Empty> {
        let c = self.container(&r.id)?;
        if c.init.status != TaskStatus::PAUSED {
            return Err(precondition(format!("container {} is not paused", r.id)));
        }
        c.rt.call(&["resume", &r.id], CallIo::default())
            .map_err(unknown)?;
        self.proc_mut(&r.id, "")?.status = TaskStatus::RUNNING;
        let mut ev = TaskResumed::new();
        ev.container_id = r.id;
        self.emit("/tasks/resumed", "TaskResumed", &ev);
        Ok(Empty::new())
    }

    /// Checkpoint the container's init (running or paused) into `r.path`, as the runc shim.
    fn checkpoint(&mut self, r: CheckpointTaskRequest) -> R<Empty> {
        let c = self.container(&r.id)?;
        match c.init.status {
            TaskStatus::RUNNING | TaskStatus::PAUSED => {}
            TaskStatus::CREATED => {
                return Err(precondition("cannot checkpoint a task in created state"))
            }
            _ => return Err(precondition("cannot checkpoint a stopped container")),
        }
        if r.path.is_empty() {
            return Err(status(
                Code::INVALID_ARGUMENT,
                "checkpoint: no image path given",
            ));
        }
        let o = crate::checkpoint::options(r.options.as_ref())
            .map_err(|e| status(Code::INVALID_ARGUMENT, e))?;
        let (work, temporary) = crate::checkpoint::work_dir(&o, &c.bundle);
        let args = crate::checkpoint::checkpoint_args(&r.id, &r.path, &work, &o);
        let result = c.rt.call(&args, CallIo::default());
        let failed = result.as_ref().err().map(|e| {
            match crate::checkpoint::keep_dump_log(&work, &c.bundle) {
                Some(log) => format!("{e}: path= {}", log.display()),
                None => e.clone(),
            }
        });
        if temporary {
            let _ = std::fs::remove_dir_all(&work);
        }
        match failed {
            Some(e) => Err(unknown(e)),
            None => Ok(Empty::new()),
        }
    }

    /// Start of a container created from a checkpoint: `restore --detach` with the stdio
    /// prepared at Create. Returns the restored init's pid.
    fn restore(&mut self, id: &str) -> R<u32> {
        let c = self
            .containers
            .get_mut(id)
            .ok_or_else(|| not_found(format!("container {id}")))?;
        let Some(mut pending) = c.restore.take() else {
            return Err(precondition(format!(
                "container {id} has no checkpoint to restore"
            )));
        };
        let (rt, bundle, stdio) = (c.rt.clone(), c.bundle.clone(), c.init.stdio.clone());
        let opts = RuntimeOpts::load(&bundle);
        let pid_file = bundle.join("init.pid");
        let _ = std::fs::remove_file(&pid_file);
        let args = crate::checkpoint::restore_args(
            id,
            &bundle.to_string_lossy(),
            &pending,
            &pid_file,
            pending.prep.console.as_ref().map(|cs| cs.path.as_path()),
            opts.no_pivot_root,
        );
        let call_io = pending.prep.call_io();
        let key = ProcKey(id.to_string(), String::new());
        let mut tmp = Proc::new(stdio);
        let result = match rt.call(&args, call_io) {
            Err(e) => Err(unknown(format!("OCI runtime restore failed: {e}"))),
            Ok(_) => read_pid(&pid_file)
                .and_then(|pid| {
                    self.attach_io(&mut tmp, &mut pending.prep, &key)
                        .map(|()| pid)
                })
                .inspect_err(|_| {
                    // Restored but not ours to track: it goes.
                    let _ = rt.call(&["delete", "--force", id], CallIo::default());
                }),
        };
        // What attach_io started belongs to the init either way (delete stops it).
        let p = self.proc_mut(id, "")?;
        p.adopt_io(tmp);
        let pid = match result {
            Ok(pid) => pid,
            Err(e) => {
                pending.prep.kill_logger();
                if let Some(l) = p.logger.take() {
                    let _ = crate::sys::kill(l, libc::SIGKILL);
                }
                // The restore never ran: the init is stopped, and whoever waits learns so
                // (a second Start or an Exec finds it stopped, as after a failed exec).
                self.never_ran(id, "")?;
                return Err(e);
            }
        };
        p.pid = pid;
        p.status = TaskStatus::RUNNING;
        let oom = self.watch_oom(id, pid);
        if let Some(c) = self.containers.get_mut(id) {
            c.oom = oom;
        }
        self.pids.insert(pid, key);
        Ok(pid as u32)
    }

    fn kill(&mut self, r: KillRequest) -> R<Empty> {
        let c = self.container(&r.id)?;
        let p = Self::proc_ref(c, &r.exec_id)?;
        if !r.exec_id.is_empty() {
            if p.status != TaskStatus::RUNNING || p.pid == 0 {
                return Err(not_found(format!("process {} already finished", r.exec_id)));
            }
            crate::sys::kill(p.pid, r.signal as i32).map_err(|e| {
                if e.raw_os_error() == Some(libc::ESRCH) {
                    not_found(format!("process {} already finished", r.exec_id))
                } else {
                    unknown(format!("kill {}: {e}", p.pid))
                }
            })?;
            return Ok(Empty::new());
        }
        if p.status == TaskStatus::STOPPED && !r.all {
            return Err(not_found(format!("process {} already finished", r.id)));
        }
        let sig = r.signal.to_string();
        let mut args = vec!["kill"];
        if r.all {
            args.push("--all");
        }
        args.push(&r.id);
        args.push(&sig);
        if let Err(e) = c.rt.call(&args, CallIo::default()) {
            let l = e.to_ascii_lowercase();
            if l.contains("not running")
                || l.contains("no such process")
                || l.contains("already finished")
                || is_gone(&e)
            {
                return Err(not_found(format!("process {} already finished", r.id)));
            }
            return Err(unknown(e));
        }
        Ok(Empty::new())
    }

    fn exec(&mut self, r: ExecProcessRequest) -> R<Empty> {
        let c = self
            .containers
            .get_mut(&r.id)
            .ok_or_else(|| not_found(format!("container {}", r.id)))?;
        if c.execs.contains_key(&r.exec_id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("id {}: already exists", r.exec_id),
            ));
        }
        if c.init.status == TaskStatus::STOPPED {
            return Err(precondition(format!("container {} is stopped", r.id)));
        }
        if c.restore.is_some() {
            return Err(precondition("cannot exec in a created state"));
        }
        let Some(spec) = r.spec.as_ref() else {
            return Err(status(Code::INVALID_ARGUMENT, "exec needs a process spec"));
        };
        let mut p = Proc::new(StdioPaths {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            terminal: r.terminal,
        });
        p.spec = spec.value.clone();
        c.execs.insert(r.exec_id.clone(), p);
        let mut ev = TaskExecAdded::new();
        ev.container_id = r.id;
        ev.exec_id = r.exec_id;
        self.emit("/tasks/exec-added", "TaskExecAdded", &ev);
        Ok(Empty::new())
    }

    fn resize_pty(&mut self, r: ResizePtyRequest) -> R<Empty> {
        let c = self.container(&r.id)?;
        let p = Self::proc_ref(c, &r.exec_id)?;
        if let Some(m) = &p.console {
            crate::sys::set_winsize(
                m.as_fd(),
                r.height.min(u16::MAX as u32) as u16,
                r.width.min(u16::MAX as u32) as u16,
            )
            .map_err(|e| unknown(format!("resizing the terminal: {e}")))?;
        }
        Ok(Empty::new())
    }

    fn close_io(&mut self, r: CloseIORequest) -> R<Empty> {
        let p = self.proc_mut(&r.id, &r.exec_id)?;
        if r.stdin {
            if let Some(t) = p.stdin_pump.take() {
                p.pumps.retain(|x| *x != t);
                if let Some((pump, _)) = self.pumps.get_mut(&t) {
                    pump.closing = true;
                }
                // Moves what containerd already wrote, then closes the container's stdin.
                self.pump_event(t);
                if let Some((pump, _)) = self.pumps.get(&t) {
                    if pump.closing {
                        // The container is not reading: keep the pump until it drains.
                        crate::debug!("stdin of {} drains before closing", r.id);
                    }
                }
            }
        }
        Ok(Empty::new())
    }

    fn update(&mut self, r: UpdateTaskRequest) -> R<Empty> {
        let c = self.container(&r.id)?;
        let Some(res) = r.resources.as_ref() else {
            return Err(status(Code::INVALID_ARGUMENT, "update needs resources"));
        };
        let io = CallIo {
            input: Some(res.value.clone()),
            ..Default::default()
        };
        c.rt.call(&["update", "-r", "-", &r.id], io)
            .map_err(unknown)?;
        Ok(Empty::new())
    }

    fn wait_reply(p: &Proc) -> Reply {
        let mut w = WaitResponse::new();
        w.exit_status = p.exit_status;
        w.exited_at = ts(&p.exited_at);
        Ok(w.write_to_bytes().unwrap_or_default())
    }

    fn wait(&mut self, conn: u64, stream: u32, r: WaitRequest) -> Option<Reply> {
        let p = match self.proc_mut(&r.id, &r.exec_id) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        if p.status == TaskStatus::STOPPED {
            return Some(Self::wait_reply(p));
        }
        p.waiters.push((conn, stream));
        None
    }

    fn stats(&mut self, r: StatsRequest) -> R<StatsResponse> {
        let c = self.container(&r.id)?;
        let out =
            c.rt.call(&["events", "--stats", &r.id], CallIo::default())
                .map_err(|e| {
                    if e.contains("unrecognized subcommand")
                        || e.contains("No help topic")
                        || e.contains("unknown command")
                    {
                        status(
                            Code::UNIMPLEMENTED,
                            format!(
                                "stats: runtime {} has no `events --stats`: {e}",
                                c.rt.binary.display()
                            ),
                        )
                    } else {
                        unknown(e)
                    }
                })?;
        let s = crate::stats::parse(&out).map_err(unknown)?;
        let mut resp = StatsResponse::new();
        resp.stats = MessageField::some(crate::stats::to_any(&s, self.unified));
        Ok(resp)
    }

    fn connect(&mut self, r: ConnectRequest) -> R<ConnectResponse> {
        let mut resp = ConnectResponse::new();
        resp.shim_pid = std::process::id();
        if let Some(c) = self.containers.get(&r.id) {
            resp.task_pid = c.init.pid as u32;
        }
        Ok(resp)
    }

    fn shutdown(&mut self, _r: ShutdownRequest) -> R<Empty> {
        if self.containers.is_empty() {
            self.shutdown = true;
        }
        Ok(Empty::new())
    }

    /// A reaped child: one of our processes (or a logger, or a runtime leftover).
    pub fn on_exit(&mut self, pid: i32, exit_status: u32, at: Timestamp) {
        let Some(key) = self.pids.remove(&pid) else {
            crate::debug!("reaped pid {pid} (status {exit_status})");
            return;
        };
        // Move what it wrote first: the readiness of its pipes may come in the same epoll batch
        // as SIGCHLD but after it, and a fifo without a reader is only found out by trying.
        let pumps = self
            .containers
            .get(&key.0)
            .and_then(|c| Self::proc_ref(c, &key.1).ok());
        if let Some(tokens) = pumps.map(|p| p.pumps.clone()) {
            self.run_output_pumps(&tokens);
        }
        // Output still waiting in the pipe for containerd's reader (its client has not
        // connected yet): announce the exit once it got there, or after 2 s, so that the client
        // does not give up on its stdio before the bytes arrive.
        // Exits of one container keep their order.
        let waiting = self.output_unread(&key) || self.held_exits.iter().any(|h| h.2 .0 == key.0);
        if waiting {
            crate::debug!("exit of {}/{} held until its output is read", key.0, key.1);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            self.held_exits.push((deadline, pid, key, exit_status, at));
            return;
        }
        self.announce_exit(pid, key, exit_status, at);
    }

    /// Does an output pump of this process still hold bytes for a fifo without a reader?
    fn output_unread(&self, key: &ProcKey) -> bool {
        self.containers
            .get(&key.0)
            .and_then(|c| Self::proc_ref(c, &key.1).ok())
            .is_some_and(|p| {
                p.pumps.iter().any(|t| {
                    self.pumps.get(t).is_some_and(|(pump, _)| !pump.is_stdin)
                        && self.output_waits_for_reader(*t)
                })
            })
    }

    /// Announce held exits whose output went out (or whose time is up).
    pub fn release_held_exits(&mut self) {
        if self.held_exits.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        let held = std::mem::take(&mut self.held_exits);
        for (deadline, pid, key, status, at) in held {
            if self.held_exits.iter().any(|h| h.2 .0 == key.0) {
                self.held_exits.push((deadline, pid, key, status, at));
                continue;
            }
            if self.output_unread(&key) && now < deadline {
                self.held_exits.push((deadline, pid, key, status, at));
            } else {
                self.announce_exit(pid, key, status, at);
            }
        }
    }

    fn announce_exit(&mut self, pid: i32, key: ProcKey, exit_status: u32, at: Timestamp) {
        let Some(c) = self.containers.get_mut(&key.0) else {
            return;
        };
        let kill_all = key.1.is_empty() && !c.own_pidns;
        let rt = c.rt.clone();
        let p = if key.1.is_empty() {
            &mut c.init
        } else {
            match c.execs.get_mut(&key.1) {
                Some(p) => p,
                None => return,
            }
        };
        p.status = TaskStatus::STOPPED;
        p.exit_status = exit_status;
        p.exited_at = Some(at.clone());
        let reply = Self::wait_reply(p);
        for (conn, stream) in std::mem::take(&mut p.waiters) {
            self.outbox.push((conn, stream, reply.clone()));
        }
        if kill_all {
            // No pid namespace of its own: nothing else kills what init leaves behind.
            let _ = rt.call(&["kill", "--all", &key.0, "SIGKILL"], CallIo::default());
        }
        crate::debug!(
            "process {}/{} pid {pid} exited with {exit_status}",
            key.0,
            key.1
        );
        let mut ev = TaskExit::new();
        ev.container_id = key.0.clone();
        ev.id = if key.1.is_empty() {
            key.0.clone()
        } else {
            key.1.clone()
        };
        ev.pid = pid as u32;
        ev.exit_status = exit_status;
        ev.exited_at = MessageField::some(at);
        self.emit("/tasks/exit", "TaskExit", &ev);
    }
}
