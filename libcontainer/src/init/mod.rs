//! The container's init: the process berth clones into the container's namespaces. It sets the
//! container up in one ordered list of steps (runc's order), reports the first failure with its
//! step, path and errno, waits to be started, and execs the user's process.

mod copyup;
pub(crate) mod devices;
pub mod lsm;
pub mod mountopts;
pub(crate) mod process;
pub(crate) mod rootfs;

pub use rootfs::open_bind_sources;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::channel::{Channel, Msg};

/// One failed step of init, as reported to `create`/`start`.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub struct InitError {
    pub step: String,
    pub path: Option<String>,
    pub errno: Option<i32>,
    pub msg: String,
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::error::{bound_text, echo};
        write!(f, "{}", bound_text(&self.step, STEP_MAX))?;
        if let Some(p) = &self.path {
            write!(f, " {}", echo(p))?;
        }
        write!(f, ": {}", bound_text(&self.msg, MSG_MAX))
    }
}

/// How much of a step's name and of a message [`InitError`]'s Display shows (they may quote
/// values from config.json).
const STEP_MAX: usize = 512;
const MSG_MAX: usize = 1024;
/// A report whose JSON is larger than this is cut before init sends it (see
/// [`InitError::bounded`]); smaller ones arrive whole, so errors can say how long a value was.
const SEND_MAX: usize = 64 * 1024;
/// What each field of a cut report keeps.
const CUT_TO: usize = 4096;

impl InitError {
    /// The report as init sends it: one whose values make it larger than [`SEND_MAX`] is cut
    /// (each field with a marker) so that it always fits the channel.
    pub(crate) fn bounded(mut self) -> Self {
        use crate::error::bound_text;
        let size = serde_json::to_vec(&self).map_or(usize::MAX, |v| v.len());
        if size <= SEND_MAX {
            return self;
        }
        let cut = |s: &mut String| {
            if s.len() > CUT_TO {
                *s = bound_text(s, CUT_TO);
            }
        };
        if let Some(p) = self.path.as_mut() {
            cut(p);
        }
        cut(&mut self.msg);
        cut(&mut self.step);
        self
    }
}

impl InitError {
    pub(crate) fn new(step: impl Into<String>, path: Option<&Path>, err: std::io::Error) -> Self {
        InitError {
            step: step.into(),
            path: path.map(|p| p.display().to_string()),
            errno: err.raw_os_error(),
            msg: crate::error::os_text(&err),
        }
    }

    pub(crate) fn msg(
        step: impl Into<String>,
        path: Option<&Path>,
        msg: impl Into<String>,
    ) -> Self {
        InitError {
            step: step.into(),
            path: path.map(|p| p.display().to_string()),
            errno: None,
            msg: msg.into(),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, InitError>;

/// Extension to turn any error with an errno into an [`InitError`] of a step.
pub(crate) trait StepExt<T> {
    fn step(self, step: &str, path: Option<&Path>) -> Result<T>;
}

impl<T, E: Into<std::io::Error>> StepExt<T> for std::result::Result<T, E> {
    fn step(self, step: &str, path: Option<&Path>) -> Result<T> {
        self.map_err(|e| InitError::new(step, path, e.into()))
    }
}

/// Who receives the pty master of a container with `process.terminal`.
pub enum Console {
    /// No terminal: the process keeps the stdio berth was given.
    None,
    /// `--console-socket`: a connected unix socket (runc's protocol).
    Socket(OwnedFd),
    /// Foreground `run`: back to the parent over the channel, which relays the caller's stdio.
    Parent,
}

/// Make the pty (inside the container: its /dev/ptmx), hand the master to whoever holds the
/// console and make the slave the process's controlling terminal and stdio. With
/// `mount_console` (init in a mount namespace, as runc's mountConsole) the slave
/// is also bind-mounted onto /dev/console, which is created (an empty file) if missing.
pub(crate) fn setup_console(
    console: &Console,
    chan: &Channel,
    size: Option<(u16, u16)>,
    mount_console: bool,
) -> Result<()> {
    if matches!(console, Console::None) {
        // Init leads a session of its own with or without a terminal, as runc's (nsexec
        // calls setsid for every container): CRIU refuses to dump a container whose session
        // leader is outside its pid namespace.
        if mount_console {
            nix::unistd::setsid().step("setsid", None)?;
        }
        return Ok(());
    }
    let ptmx = Path::new("/dev/ptmx");
    let pty = crate::tty::open(ptmx).step("open pty", Some(ptmx))?;
    if let Some((rows, cols)) = size {
        crate::tty::set_size(pty.slave.as_fd(), rows, cols).step("set console size", None)?;
    }
    match console {
        Console::Socket(sock) => crate::tty::send_fd(sock.as_fd(), &pty.name, pty.master.as_fd())
            .step("send pty master to the console socket", None)?,
        Console::Parent => {
            // berth relays this pty itself: as runc's relay, without turning \n into \r\n on
            // output (the caller's own terminal does that).
            crate::tty::clear_onlcr(pty.slave.as_fd()).step("clear ONLCR on the pty", None)?;
            chan.send_with_fd(&Msg::Pty, pty.master.as_fd())
                .step("send pty master", None)?
        }
        Console::None => {}
    }
    drop(pty.master);
    if mount_console {
        let dest = Path::new("/dev/console");
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(InitError::new("create /dev/console", Some(dest), e)),
        }
        nix::mount::mount(
            Some(Path::new(&pty.name)),
            dest,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .step("bind the pty onto /dev/console", Some(dest))?;
    }
    crate::tty::become_controlled_by(&pty.slave).step(
        "make the pty the controlling terminal",
        Some(Path::new(&pty.name)),
    )
}

/// Move the calling process (init, stage 1 or an exec'd process: single-threaded, and still
/// outside any new user namespace) into the container's cgroup. It is the first step of each,
/// so the cgroup namespace init unshares later is rooted there.
pub(crate) fn join_cgroup(
    cg: &dyn crate::cgroups::Manager,
    which: crate::cgroups::Hierarchies,
) -> Result<()> {
    use crate::cgroups::CgroupError;
    cg.join_self(which).map_err(|e| match e {
        CgroupError::Io { what, path, err } => InitError::new(
            format!("join the container's cgroup ({what})"),
            Some(&path),
            err,
        ),
        e => InitError::msg("join the container's cgroup", None, e.to_string()),
    })
}

/// How init learns that it may exec the user's process.
pub enum StartSignal {
    /// `create`: block opening the exec fifo (an O_PATH fd) until `berth start` opens it.
    Fifo(OwnedFd),
    /// `run`: a [`Msg::Start`] on the channel.
    Channel,
}

/// Everything init needs; it is a fork of `berth create`, so this is plain memory.
pub struct InitContext<'a> {
    pub spec: &'a Spec,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub chan: Channel,
    pub start: StartSignal,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Where the pty master goes when process.terminal is set.
    pub console: Console,
    /// `linux.seccomp`, compiled by the parent (errors before anything exists).
    pub seccomp: Option<&'a crate::seccomp::Compiled>,
    /// Whether init waits for [`Msg::Go`] (the parent has not told stage 1 yet).
    pub wait_go: bool,
    /// Whether init (forked by stage 1) waits for [`Msg::PidKnown`] before its first request:
    /// its own messages must not overtake stage 1's report of its pid.
    pub wait_pid_known: bool,
    /// Set once Go has arrived (see [`InitContext::await_go`]).
    pub go_received: std::cell::Cell<bool>,
    /// The container's cgroup, when init moves itself there (else the parent moves it).
    pub join_cgroup: Option<(&'a dyn crate::cgroups::Manager, crate::cgroups::Hierarchies)>,
    /// Whether init itself unshares the cgroup namespace, after joining its cgroup.
    pub unshare_cgroupns: bool,
    /// Whether init is in a user namespace it created (devices are bind-mounted, not made).
    pub in_new_userns: bool,
    /// Whether init is in any user namespace but the host's (devices are bind-mounted).
    pub in_userns: bool,
    /// Whether the container has its own cgroup namespace (cgroup mounts are real mounts).
    pub cgroupns: bool,
    /// Bind sources `create` opened as detached mount trees (see [`open_bind_sources`]): every
    /// idmapped one, and with a new user namespace every bind; indexed like `mounts`. Empty
    /// when there are none.
    pub bind_trees: &'a [Option<OwnedFd>],
}

impl InitContext<'_> {
    /// Wait for the parent's Go (init is in its cgroup, id maps are written), once, then unshare
    /// the cgroup namespace so that its root is the container's cgroup.
    pub(crate) fn await_go(&self) -> Result<()> {
        if self.go_received.get() {
            return Ok(());
        }
        if self.wait_go {
            expect(&self.chan, "Go", |m| matches!(m, Msg::Go))?;
        }
        if self.unshare_cgroupns {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .step("unshare cgroup namespace", None)?;
        }
        self.go_received.set(true);
        Ok(())
    }
}

/// Run init. Never returns: it execs the user's process or exits after reporting a failure.
pub fn run(ctx: InitContext) -> ! {
    let err = match setup(&ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // The parent may be gone if the failure is that it went away; nothing more to tell.
    let _ = ctx.chan.send(&Msg::Failed(err.bounded()));
    // SAFETY: _exit skips atexit handlers and stdio flushing that belong to the parent berth.
    unsafe { libc::_exit(1) }
}

fn expect(chan: &Channel, want: &str, f: impl Fn(&Msg) -> bool) -> Result<()> {
    match chan.recv() {
        Ok(Some(m)) if f(&m) => Ok(()),
        Ok(Some(m)) => Err(InitError::msg(
            "sync",
            None,
            format!("expected {want}, got {m:?}"),
        )),
        Ok(None) => Err(InitError::msg(
            "sync",
            None,
            format!("berth went away while init waited for {want}"),
        )),
        Err(e) => Err(InitError::new("sync", None, e)),
    }
}

/// The ordered setup. Each line is one step; the order is runc's and matters (e.g. mounts
/// before pivot_root, capabilities after the user switch, the exec fifo last).
fn setup(ctx: &InitContext) -> Result<std::convert::Infallible> {
    let spec = ctx.spec;
    let process = spec.process().as_ref().expect("validated");
    let linux = spec.linux().as_ref().expect("validated");
    crate::sys::umask(0);
    if let Some((cg, which)) = ctx.join_cgroup {
        join_cgroup(cg, which)?;
    }

    // Without a new user namespace init may prepare the rootfs while the parent still makes
    // the cgroup; with one, it must first have its id maps.
    let has_mntns = has_ns(spec, oci_spec::runtime::LinuxNamespaceType::Mount);
    if ctx.in_new_userns || !has_mntns {
        ctx.await_go()?;
    }
    if ctx.in_new_userns {
        process::become_namespace_root()?;
    }
    // runc's "loopback" network: a network namespace of the container's own (not joined by
    // path) gets its `lo` up, before the rootfs (runc's setupNetwork). It was left down: a
    // server on 127.0.0.1 was unreachable inside the container (found by the integration
    // suite's client_images_debian_python_web_app; runc and crun do this).
    if spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.typ() == oci_spec::runtime::LinuxNamespaceType::Network && n.path().is_none()
            })
        })
    {
        crate::sys::loopback_up().step("bring lo up", None)?;
    }

    if has_mntns {
        let root = rootfs::prepare_root(ctx.rootfs, linux.rootfs_propagation().as_deref())?;
        rootfs::mount_all(ctx, &root)?;
        ctx.await_go()?;
        devices::setup(ctx, &root)?;
        rootfs::create_cwd(&root, process.cwd())?;
    }

    if ctx.wait_pid_known {
        expect(&ctx.chan, "PidKnown", |m| matches!(m, Msg::PidKnown))?;
    }
    // In the cgroups by now (Go has come): the kernel checks the nodes against the cpuset.
    if let Some(p) = linux.memory_policy() {
        let p = crate::mempolicy::Policy::parse(p)
            .map_err(|m| InitError::msg("linux.memoryPolicy", None, m))?;
        crate::mempolicy::apply(&p)?;
    }
    ctx.chan.send(&Msg::RunHooks).step("sync", None)?;
    expect(&ctx.chan, "HooksDone", |m| matches!(m, Msg::HooksDone))?;
    let creating_state = hook_state(ctx, crate::state::Status::Creating);
    crate::hooks::run(
        Some(ctx.rootfs),
        "createContainer",
        spec.hooks()
            .as_ref()
            .and_then(|h| h.create_container().as_ref()),
        &creating_state,
    )
    .map_err(|e| InitError::msg("createContainer hook", None, e.to_string()))?;

    // A procfs root taken while the caller's /proc is still reachable: the steps after
    // pivot_root (or chroot) that need procfs use it when the container mounts none.
    let early_proc = (linux.sysctl().as_ref().is_some_and(|s| !s.is_empty())
        || matches!(ctx.start, StartSignal::Fifo(_)))
    .then(|| open_procfs(Path::new("/proc")).ok())
    .flatten();
    let mut fifo_dir = None;
    if has_mntns {
        if ctx.no_pivot {
            // Host mounts are detached only in a mount namespace of the container's own,
            // never in one joined by path (it may be the host's).
            let own_mntns = !spec
                .linux()
                .as_ref()
                .and_then(|l| l.namespaces().as_deref())
                .unwrap_or_default()
                .iter()
                .any(|n| {
                    n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount && n.path().is_some()
                });
            rootfs::move_root(ctx.rootfs, own_mntns)?;
        } else {
            rootfs::pivot_root(ctx.rootfs)?;
        }
        rootfs::finish_propagation(linux.rootfs_propagation().as_deref())?;
        devices::reopen_dev_null(ctx)?;
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        setup_console(&ctx.console, &ctx.chan, size, true)?;
        rootfs::finalize_readonly(spec.mounts().as_deref().unwrap_or_default())?;
        if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
            rootfs::remount_readonly(Path::new("/"))?;
        }
    } else {
        // The exec fifo is reopened through procfs, which the chroot may not have.
        if matches!(ctx.start, StartSignal::Fifo(_)) {
            fifo_dir = Some(open_proc_fd_dir(early_proc.as_ref())?);
        }
        nix::unistd::chroot(ctx.rootfs).step("chroot", Some(ctx.rootfs))?;
        nix::unistd::chdir("/").step("chdir", Some(Path::new("/")))?;
    }
    let selinux_label = process.selinux_label().as_deref().unwrap_or_default();
    if !ctx.no_new_keyring {
        // runc labels the session keyring with the process label, then resets the key label.
        lsm::set_selinux_key_label(selinux_label)?;
        process::join_session_keyring(ctx.id)?;
        lsm::set_selinux_key_label("")?;
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).step("sethostname", None)?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        process::set_domainname(d)?;
    }
    // runc's point: after the hostname, before sysctls and masked paths. It takes effect at
    // the user's execve.
    if let Some(profile) = process.apparmor_profile().as_deref() {
        lsm::apply_apparmor_profile(profile)?;
    }
    if let Some(sysctl) = linux.sysctl().as_ref().filter(|s| !s.is_empty()) {
        let proc = container_procfs(early_proc.as_ref())?;
        process::write_sysctls(proc.as_fd(), sysctl)?;
    }
    if has_mntns {
        rootfs::readonly_paths(linux.readonly_paths().as_deref().unwrap_or_default())?;
        rootfs::mask_paths(
            linux.masked_paths().as_deref().unwrap_or_default(),
            linux.mount_label().as_deref().filter(|l| !l.is_empty()),
        )?;
    }
    // Everything that can fail happens before Ready: `create` must not succeed for an init
    // that then dies. The exec fifo is reopened through a procfs descriptor taken now (as
    // root, in the container's /proc; before the chroot without a mount namespace), and its
    // open is checked with the process's final credentials before Ready.
    let fifo_dir = match (&ctx.start, fifo_dir) {
        (StartSignal::Fifo(_), None) => Some(open_proc_fd_dir(early_proc.as_ref())?),
        (_, d) => d,
    };
    let fifo_check = || -> Result<()> {
        let (StartSignal::Fifo(fd), Some(dir)) = (&ctx.start, &fifo_dir) else {
            return Ok(());
        };
        match crate::sys::can_write_at(dir.as_fd(), &fd_name(fd.as_fd())) {
            // A seccomp profile may deny the check itself (EPERM, ENOSYS): the open decides.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) => Ok(()),
            r => r.step(
                "open exec fifo for writing",
                Some(Path::new(EXEC_FIFO_NAME)),
            ),
        }
    };
    let (exec, listener) = process::prepare(
        process,
        linux.personality().as_ref(),
        ctx.preserve_fds,
        ctx.seccomp,
        &process::Labels {
            selinux: selinux_label,
            apparmor_after_user: None,
        },
        Some(&fifo_check),
    )?;
    if let Some(fd) = listener {
        ctx.chan
            .send_with_fd(&Msg::SeccompListener, fd.as_fd())
            .step("send the seccomp listener", None)?;
    }

    ctx.chan.send(&Msg::Ready).step("sync", None)?;
    let mut fifo_writer = wait_start(ctx, fifo_dir.as_ref())?;
    let created_state = hook_state(ctx, crate::state::Status::Created);
    let hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref());
    let err = match crate::hooks::run(None, "startContainer", hooks, &created_state) {
        Err(e) => InitError::msg("startContainer hook", None, e.to_string()),
        Ok(()) => exec.exec(),
    };
    // `start` reads the fifo until it closes on exec; an error written there is its error.
    if let Some(f) = fifo_writer.as_mut() {
        use std::io::Write;
        let _ = f.write_all(err.to_string().as_bytes());
    }
    Err(err)
}

fn has_ns(spec: &Spec, t: oci_spec::runtime::LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == t))
}

fn hook_state(ctx: &InitContext, status: crate::state::Status) -> Vec<u8> {
    crate::state::hook_state_json(
        ctx.id,
        status,
        nix::unistd::getpid().as_raw(),
        ctx.bundle,
        ctx.spec.annotations().as_ref(),
    )
}

/// Wait for the start signal. With the exec fifo, returns its write end: it closes on exec,
/// which tells `berth start` that exec succeeded, and carries the error if it did not.
fn wait_start(ctx: &InitContext, fd_dir: Option<&OwnedFd>) -> Result<Option<std::fs::File>> {
    match (&ctx.start, fd_dir) {
        (StartSignal::Channel, _) => {
            expect(&ctx.chan, "Start", |m| matches!(m, Msg::Start)).map(|()| None)
        }
        (StartSignal::Fifo(fd), Some(dir)) => {
            use std::io::Write;
            // Blocks until `berth start` opens the fifo for reading.
            let f = nix::fcntl::openat(
                dir.as_fd(),
                fd_name(fd.as_fd()).as_c_str(),
                nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .step("open exec fifo", Some(Path::new(EXEC_FIFO_NAME)))?;
            let mut f = std::fs::File::from(f);
            f.write_all(b"0").step("write exec fifo", None)?;
            Ok(Some(f))
        }
        (StartSignal::Fifo(_), None) => Err(InitError::msg(
            "open exec fifo",
            None,
            "no procfs descriptor to reopen it through",
        )),
    }
}

const EXEC_FIFO_NAME: &str = crate::state::EXEC_FIFO;

/// An O_PATH descriptor of the procfs mounted at `p`; an error unless it is procfs (a config
/// without a /proc mount leaves the image's directory there).
fn open_procfs(p: &Path) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        p,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .step("open", Some(p))?;
    let fs = nix::sys::statfs::fstatfs(&fd).step("statfs", Some(p))?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(InitError::msg("open", Some(p), "is not a procfs"));
    }
    Ok(fd)
}

/// The container's /proc when it is a procfs, else the one taken before pivot_root (runc 1.3
/// likewise works without a /proc mount, through a procfs of its own).
fn container_procfs(early: Option<&OwnedFd>) -> Result<OwnedFd> {
    match (open_procfs(Path::new("/proc")), early) {
        (Ok(fd), _) => Ok(fd),
        (Err(_), Some(early)) => early.try_clone().step("dup", Some(Path::new("/proc"))),
        (Err(e), None) => Err(e),
    }
}

/// /proc/self/fd, through which init reopens its O_PATH descriptor of the exec fifo.
fn open_proc_fd_dir(early: Option<&OwnedFd>) -> Result<OwnedFd> {
    let proc = container_procfs(early).map_err(|e| {
        InitError::msg(
            "open exec fifo",
            Some(Path::new("/proc/self/fd")),
            format!("needs a procfs: {e}"),
        )
    })?;
    let p = Path::new("/proc/self/fd");
    nix::fcntl::openat(
        &proc,
        "self/fd",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .step("open", Some(p))
}

/// The name of a descriptor in /proc/self/fd.
fn fd_name(fd: std::os::fd::BorrowedFd) -> std::ffi::CString {
    use std::os::fd::AsRawFd;
    std::ffi::CString::new(fd.as_raw_fd().to_string()).expect("digits have no NUL")
}
