//! `create` (and the first half of `run`): from a bundle to an init process that waits to be
//! started. A failure at any step leaves nothing behind: no state dir, cgroup, or process.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::cgroups::{self, Manager};
use crate::channel::{Channel, Msg};
use crate::config::Bundle;
use crate::error::{Error, Result};
use crate::init::{InitContext, StartSignal};
use crate::namespaces::{self, Plan};
use crate::state::{State, StateDir, Status, EXEC_FIFO};
use crate::{hooks, procfs, sys, timefmt};

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub systemd_cgroup: bool,
    /// The caller will not stay attached (`create`, `run --detach`): a terminal then needs a
    /// console socket.
    pub detach: bool,
}

/// How the new container is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// `create`: init waits on the exec fifo for `berth start`.
    Fifo,
    /// `run`: init waits for [`NewContainer::start`].
    Now,
}

/// A container whose init is set up and waiting.
pub struct NewContainer {
    pub state: State,
    pub pidfd: OwnedFd,
    /// Whether init is this process's child (else a grandchild; `run` makes itself a subreaper).
    pub direct_child: bool,
    /// The pty master, for a foreground `run` with a terminal.
    pub pty: Option<OwnedFd>,
    /// What the config asks for that was ignored (see [`crate::config::warnings`]).
    pub warnings: Vec<String>,
    dir: StateDir,
    chan: Channel,
    cleanup: Cleanup,
}

/// A container whose process runs (`run`).
pub struct Started {
    pub state: State,
    pub pidfd: OwnedFd,
    /// The pty master, for a foreground `run` with a terminal.
    pub pty: Option<OwnedFd>,
}

/// Undoes a partial create unless disarmed.
struct Cleanup {
    armed: bool,
    dir: Option<PathBuf>,
    cgroup: Option<Box<dyn Manager>>,
    child: Option<(i32, OwnedFd, bool)>,
    /// Poststop hooks, their state (status stopped) and cwd (the bundle): runc runs them when
    /// it destroys a container whose create failed.
    poststop: Option<(Vec<oci_spec::runtime::Hook>, Vec<u8>, PathBuf)>,
}

impl Cleanup {
    fn run(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        if let Some((pid, pidfd, direct)) = self.child.take() {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            if direct {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            } else {
                let _ = sys::pidfd_wait(pidfd.as_fd(), Some(std::time::Duration::from_secs(2)));
            }
        }
        // A cgroup that cannot be removed now (a transient error, a process not yet gone)
        // keeps the state dir: it records the cgroup (the `creating` marker, or state.json),
        // so `delete --force` removes it later rather than nothing knowing of it.
        let mut cgroup_left = false;
        if let Some(cg) = self.cgroup.take() {
            // destroy() itself waits (up to 5 s) for a process still leaving it.
            cgroup_left = cg.destroy().is_err();
        }
        if let Some(dir) = self.dir.take() {
            if !cgroup_left {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        if let Some((hooks, state, cwd)) = self.poststop.take() {
            // The create's own error is what the caller reports; a failing poststop hook
            // here adds nothing to it.
            let _ = hooks::run_all(Some(&cwd), "poststop", Some(&hooks), &state);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

pub fn create(opts: &CreateOptions, mode: StartMode) -> Result<NewContainer> {
    crate::config::validate_id(&opts.id)?;
    let bundle = Bundle::load(&opts.bundle)?;
    let spec = &bundle.spec;
    let process_caps = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref());
    if crate::sealed::caps_may_clear_immutable(process_caps) {
        crate::sealed::ensure_sealed_strict()?; // nothing is made yet: a re-exec starts over
    }
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    let console = console_for(terminal, opts.console_socket.as_deref(), opts.detach)?;
    let dir = StateDir::create(&opts.root, &opts.id)?;
    let poststop = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.poststop().clone())
        .filter(|h| !h.is_empty())
        .map(|h| {
            let state = crate::state::hook_state_json(
                &opts.id,
                crate::state::Status::Stopped,
                0,
                &bundle.dir,
                spec.annotations().as_ref(),
            );
            (h, state, bundle.dir.clone())
        });
    let mut cleanup = Cleanup {
        armed: true,
        dir: Some(dir.path.clone()),
        cgroup: None,
        child: None,
        poststop,
    };

    let start = match mode {
        StartMode::Fifo => {
            let fifo = dir.path.join(EXEC_FIFO);
            make_exec_fifo(&fifo, spec)?;
            let fd = nix::fcntl::open(
                &fifo,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| Error::io("open", &fifo, e.into()))?;
            StartSignal::Fifo(fd)
        }
        StartMode::Now => StartSignal::Channel,
    };

    let linux = spec.linux().as_ref().expect("validated");
    let cg = cgroups::manager(
        linux.cgroups_path().as_deref(),
        &opts.id,
        opts.systemd_cgroup,
    )?;

    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(crate::seccomp::compile)
        .transpose()?;
    let plan = Plan::new(spec);
    let (chan, child_chan) = Channel::pair().map_err(|e| Error::sys("socketpair", e))?;
    let flags = if plan.fast() { plan.clone_flags() } else { 0 };

    // The cgroup exists before init: init is born in its cgroup2 directory and joins the v1
    // hierarchies itself (see cgroups::spawn). Moving it from here would wait for the kernel's
    // global threadgroup lock (an RCU grace period, 10-20 ms under containerd); only an init
    // born in a new user namespace has to be moved, since it lacks the rights on the host.
    // A cgroup that is already in use is refused before it becomes ours to clean up.
    // A new user namespace cannot reach what only the host's root can: its bind sources are
    // opened here, as detached mount trees init attaches (other containers bind by path).
    // Idmapped bind mounts are made here too, as detached trees, for any container.
    // A rootless caller cannot open them so (nor needs to: its container binds what it may
    // read itself, by path).
    let bind_trees = crate::init::open_bind_sources(
        spec,
        &bundle.dir,
        plan.new_userns() && !crate::namespaces::rootless_euid(),
    )?;
    cg.ensure_unused()?;
    cleanup.cgroup = Some(cgroups::manager_for(cg.paths()));
    dir.record_cgroups(cg.paths())?;
    cg.create()?;
    let unified = cg.open_unified()?;
    // runc: device nodes are bound, not made, in a user namespace the container creates or
    // joins, or the one the runtime itself runs in (read here, before the clone).
    let in_userns = plan.userns() || crate::namespaces::in_user_namespace();
    let (child, rest) =
        cgroups::spawn(flags, unified.as_ref()).map_err(|e| Error::sys("clone3", e))?;
    drop(unified);
    let parent_moves = plan.fast() && plan.new_userns();
    let child = match child {
        None => {
            // In the child: become the container's init (or stage 1 of the slow path). First
            // let go of the state directory's lock: a flock is shared by every copy of its
            // descriptor, so a child keeping it (until its exec, or forever if it is left
            // waiting for `start`) would hold the lock after this berth is killed, and
            // `start`/`delete` would wait for it forever.
            dir.close_in_child();
            drop(chan);
            std::mem::forget(cleanup);
            let ctx = |wait_go: bool, unshare_cgroupns: bool, chan: Channel| InitContext {
                spec,
                id: &opts.id,
                bundle: &bundle.dir,
                rootfs: &bundle.rootfs,
                chan,
                start,
                no_pivot: opts.no_pivot,
                no_new_keyring: opts.no_new_keyring,
                preserve_fds: opts.preserve_fds,
                console,
                seccomp: seccomp.as_ref(),
                wait_go,
                wait_pid_known: !plan.fast(),
                go_received: std::cell::Cell::new(false),
                join_cgroup: None,
                unshare_cgroupns,
                in_new_userns: plan.new_userns(),
                in_userns,
                cgroupns: plan.has_cgroupns(),
                bind_trees: &bind_trees,
            };
            let join = (!parent_moves).then_some((cg.as_ref(), rest));
            if plan.fast() {
                let ctx = InitContext {
                    join_cgroup: join,
                    ..ctx(true, plan.new_cgroupns(), child_chan)
                };
                crate::init::run(ctx);
            }
            let stage_chan = child_chan;
            namespaces::stage1(&plan, &stage_chan, join, || {
                match stage_chan.duplicate() {
                    Ok(chan) => crate::init::run(ctx(false, false, chan)),
                    // SAFETY: _exit in a forked child; stage 1 reports the lost init.
                    Err(_) => unsafe { libc::_exit(1) },
                }
            });
        }
        Some(c) => c,
    };
    drop(child_chan);
    let stage1_pid = child.pid;
    cleanup.child = Some((child.pid, child.pidfd, true));

    // oomScoreAdj is written here, by the host's root, as runc writes it before init enters
    // any namespace: init (or stage 1, whose fork init is) inherits it. Written from inside a
    // user namespace, /proc/self/oom_score_adj can refuse init.
    if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
        let p = PathBuf::from(format!("/proc/{}/oom_score_adj", child.pid));
        std::fs::write(&p, adj.to_string()).map_err(|e| Error::io("write", p, e))?;
    }

    // Resources are applied while init already prepares the rootfs (on another core); init
    // waits for Go before anything that must happen under them.
    // Always, as runc: without linux.resources the device rules are still runc's default
    // allow list. linux.devices only makes nodes; it adds no device rule.
    // Rootless: no device rules (runc ignores the devices controller there: it cannot work).
    let no_resources = oci_spec::runtime::LinuxResources::default();
    cg.apply(
        linux.resources().as_ref().unwrap_or(&no_resources),
        (!crate::namespaces::rootless_cgroups())
            .then(|| linux.devices().as_deref().unwrap_or_default()),
    )?;
    if parent_moves {
        cg.add(child.pid, rest)?;
    }
    if plan.fast() && plan.new_userns() {
        namespaces::write_id_maps(child.pid, spec).map_err(|e| Error::sys("write id maps", e))?;
    }
    send(&chan, &Msg::Go)?;

    // state.json is written as soon as init's pid is final, while init sets up the
    // rootfs; the `creating` marker keeps the status honest until init is ready.
    let record = |pid: i32| -> Result<State> {
        let pid_start = procfs::start_time_of(pid, "init")?;
        let state = State {
            id: opts.id.clone(),
            pid,
            pid_start,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: timefmt::now_rfc3339(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroup: cg.paths().clone(),
            config: bundle.spec.clone(),
        };
        dir.write(&state)?;
        Ok(state)
    };
    let mut pty = None;
    let mut state = if plan.fast() {
        Some(record(child.pid)?)
    } else {
        None
    };
    loop {
        // Stage 1 until it reports init's pid, then init: the wait ends with the peer.
        let peer = cleanup.child.as_ref().map(|c| c.1.as_fd()).expect("child");
        let msg = chan
            .recv_while_alive(peer)
            .map_err(|e| oom_or(cg.paths(), Error::sys("sync with init", e)))?;
        match msg {
            Some(Msg::MapsRequest) => {
                namespaces::write_id_maps(stage1_pid, spec)
                    .map_err(|e| Error::sys("write id maps", e))?;
                send(&chan, &Msg::MapsWritten)?;
            }
            Some(Msg::InitPid(pid)) => {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(stage1_pid), None);
                let pidfd = sys::pidfd_open(pid)
                    .map_err(|e| Error::sys(format!("pidfd_open({pid})"), e))?;
                cleanup.child = Some((pid, pidfd, false));
                state = Some(record(pid)?);
                send(&chan, &Msg::PidKnown)?;
            }
            Some(Msg::RunHooks) => {
                let st = state.as_ref().ok_or_else(|| {
                    Error::sys(
                        "sync with init",
                        std::io::Error::other("hooks requested before init's pid was known"),
                    )
                })?;
                if let Some(devices) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) {
                    crate::netdev::move_all(st.pid, devices)?;
                }
                let st = st.hook_state(Status::Creating);
                if let Some(h) = spec.hooks() {
                    #[allow(deprecated)]
                    // In the bundle, as runc (which chdirs there) runs them.
                    hooks::run(Some(&bundle.dir), "prestart", h.prestart().as_ref(), &st)?;
                    hooks::run(
                        Some(&bundle.dir),
                        "createRuntime",
                        h.create_runtime().as_ref(),
                        &st,
                    )?;
                }
                send(&chan, &Msg::HooksDone)?;
            }
            Some(Msg::Pty) => pty = chan.take_fd(),
            Some(Msg::SeccompListener) => {
                let st = state.as_ref().ok_or_else(|| {
                    Error::sys(
                        "sync with init",
                        std::io::Error::other("seccomp listener before init's pid"),
                    )
                })?;
                if let (Some(fd), Some(profile)) = (chan.take_fd(), linux.seccomp()) {
                    send_seccomp_listener(
                        profile,
                        st.pid,
                        &st.hook_state(Status::Creating),
                        fd.as_fd(),
                    )?;
                }
            }
            Some(Msg::Ready) => break,
            Some(Msg::Failed(e)) => return Err(Error::Init(e)),
            Some(other) => {
                return Err(Error::sys(
                    "sync with init",
                    std::io::Error::other(format!("unexpected message {other:?}")),
                ))
            }
            None => {
                return Err(oom_or(
                    cg.paths(),
                    Error::sys(
                        "sync with init",
                        std::io::Error::other("init exited before it was set up"),
                    ),
                ))
            }
        }
    }
    let state = state.ok_or_else(|| {
        Error::sys(
            "sync with init",
            std::io::Error::other("init is ready but its pid is unknown"),
        )
    })?;
    let init_pid = state.pid;
    dir.created()?;
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, init_pid)?;
    }
    let (_, pidfd, direct) = cleanup.child.take().expect("init exists");
    cleanup.child = Some((
        init_pid,
        pidfd.try_clone().map_err(|e| Error::sys("dup pidfd", e))?,
        direct,
    ));
    Ok(NewContainer {
        state,
        pidfd,
        direct_child: direct,
        pty,
        warnings: bundle.warnings.clone(),
        dir,
        chan,
        cleanup,
    })
}

/// `err`, or runc's diagnosis when the OOM killer has killed a process of the container's
/// cgroup: init died of a memory limit too low for it, whatever the channel saw.
fn oom_or(paths: &cgroups::CgroupPaths, err: Error) -> Error {
    match cgroups::stats::oom_kill_count(paths) {
        Ok(Some(n)) if n > 0 => {
            Error::Start("container init was OOM-killed (memory limit too low?)".into())
        }
        _ => err,
    }
}

/// runc's exec fifo: mode 0622 whatever the caller's umask, owned by the container's root, so
/// that init can open it for writing after it switched to the process's user (without
/// CAP_DAC_OVERRIDE) or while it is root of a user namespace.
fn make_exec_fifo(fifo: &Path, spec: &oci_spec::runtime::Spec) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::io("mkfifo", fifo, e.into()))?;
    std::fs::set_permissions(fifo, std::fs::Permissions::from_mode(0o622))
        .map_err(|e| Error::io("chmod", fifo, e))?;
    let (uid, gid) = namespaces::host_root_ids(spec);
    nix::unistd::chown(
        fifo,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| Error::io("chown", fifo, e.into()))
}

/// Hand a seccomp notify listener to `listenerPath` (runtime-spec's container process state:
/// JSON naming the descriptor, the descriptor as SCM_RIGHTS).
pub(crate) fn send_seccomp_listener(
    profile: &oci_spec::runtime::LinuxSeccomp,
    pid: i32,
    state_json: &[u8],
    fd: std::os::fd::BorrowedFd,
) -> Result<()> {
    let path = profile.listener_path().as_ref().ok_or_else(|| {
        Error::config(
            "linux.seccomp.listenerPath",
            "SCMP_ACT_NOTIFY rules need a listener path",
        )
    })?;
    let state: serde_json::Value = serde_json::from_slice(state_json).expect("state is JSON");
    let msg = serde_json::json!({
        "ociVersion": crate::state::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": profile.listener_metadata().clone().unwrap_or_default(),
        "state": state,
    });
    let sock = crate::tty::connect(path).map_err(|e| {
        Error::io(
            "failed to connect with seccomp agent specified in the seccomp profile",
            path,
            e,
        )
    })?;
    crate::tty::send_fd(sock.as_fd(), &msg.to_string(), fd)
        .map_err(|e| Error::io("send the seccomp listener", path, e))
}

/// Who gets the pty master: runc's rules for `--console-socket` and `process.terminal`.
pub(crate) fn console_for(
    terminal: bool,
    socket: Option<&Path>,
    detach: bool,
) -> Result<crate::init::Console> {
    use crate::init::Console;
    match (terminal, socket) {
        (false, None) => Ok(Console::None),
        (false, Some(_)) => Err(Error::config(
            "--console-socket",
            "cannot use a console socket when process.terminal is false",
        )),
        (true, Some(p)) => crate::tty::connect(p)
            .map(Console::Socket)
            .map_err(|e| Error::io("connect to console socket", p, e)),
        (true, None) if detach => Err(Error::config(
            "process.terminal",
            "cannot allocate a terminal for a detached container without --console-socket",
        )),
        (true, None) => Ok(Console::Parent),
    }
}

/// Send a message to init; if init is gone, its own report of why is the error. Never waits
/// for that report: a write can fail while init lives (and waits for this very message).
fn send(chan: &Channel, msg: &Msg) -> Result<()> {
    chan.send(msg).map_err(|e| match chan.try_recv() {
        Ok(Some(Msg::Failed(f))) => Error::Init(f),
        _ => Error::sys("sync with init", e),
    })
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("getcwd", ".", e))?
            .join(path)
    };
    crate::state::write_atomic(&path, pid.to_string().as_bytes())
}

impl NewContainer {
    /// `create` is done: keep the container, release the lock.
    pub fn detach(mut self) {
        self.cleanup.armed = false;
    }

    /// `run`: let init exec the process; fails if the exec (or a startContainer hook) fails,
    /// and then removes the container. A failing poststart hook is [`Error::Hook`], returned
    /// after init was killed: the container then still exists, and the caller removes it.
    pub fn start(mut self) -> Result<Started> {
        self.chan
            .send(&Msg::Start)
            .map_err(|e| Error::sys("start init", e))?;
        match self.chan.recv_while_alive(self.pidfd.as_fd()) {
            // The channel closes on a successful exec.
            Ok(None) => {}
            Ok(Some(Msg::Failed(e))) => {
                if let Some(p) = self.cleanup.child.as_ref().filter(|c| c.2).map(|c| c.0) {
                    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p), None);
                    self.cleanup.child = None;
                }
                return Err(Error::Init(e));
            }
            Ok(Some(m)) => {
                return Err(Error::sys(
                    "start init",
                    std::io::Error::other(format!("unexpected message {m:?}")),
                ))
            }
            Err(e) => return Err(Error::sys("start init", e)),
        }
        self.cleanup.armed = false;
        let hooks = crate::container::run_poststart(&self.state, self.pidfd.as_fd());
        drop(self.dir);
        hooks?;
        Ok(Started {
            state: self.state,
            pidfd: self.pidfd,
            pty: self.pty,
        })
    }
}
