//! `exec`: run another process in a running container. It joins every namespace of the
//! container's init and its cgroup, and gets the credentials, capabilities, rlimits and
//! no_new_privs of its process spec.
//!
//! The pid and time namespaces apply to children only, so berth joins those itself and clones
//! once: the child is born in them and joins the others (through init's pidfd, all at once),
//! then sets the process up with the same steps as init and execs. One fork, no re-exec.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::Process;

use crate::cgroups;
use crate::channel::{Channel, Msg};
use crate::container;
use crate::error::{Error, Result};
use crate::init::{self, process as steps, StepExt};
use crate::state::Status;
use crate::{namespaces, sys};

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub root: PathBuf,
    pub id: String,
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    /// The caller will not wait (a terminal then needs a console socket).
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// `--cgroup` arguments: sub-cgroups of the container's to run in (see
    /// [`cgroups::sub_cgroup_paths`]).
    pub sub_cgroups: Vec<String>,
    /// `--ignore-paused`: exec into a paused container; the process stays frozen until
    /// `resume`.
    pub ignore_paused: bool,
}

/// A process started in a container.
pub struct Execd {
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// The pty master, for a foreground exec with a terminal.
    pub pty: Option<OwnedFd>,
}

pub fn exec(opts: &ExecOptions) -> Result<Execd> {
    let l = container::load(&opts.root, &opts.id)?;
    match l.status {
        Status::Created | Status::Running => {}
        Status::Paused if opts.ignore_paused => {}
        Status::Paused => {
            return Err(Error::InvalidState(
                "cannot exec in a paused container (use --ignore-paused to override)".into(),
            ))
        }
        s => {
            return Err(Error::InvalidState(format!(
                "cannot exec in a {s} container"
            )))
        }
    }
    crate::config::validate_process(&opts.process, "process")
        .map_err(|m| Error::config("--process", m))?;
    let affinity = crate::cpuaffinity::for_exec(
        opts.process.exec_cpu_affinity().as_ref(),
        l.state
            .config
            .process()
            .as_ref()
            .and_then(|p| p.exec_cpu_affinity().as_ref()),
    )?;
    // Another process of the container may hold CAP_LINUX_IMMUTABLE as well as this one.
    let container_caps = l.state.config.process().as_ref();
    if crate::sealed::caps_may_clear_immutable(opts.process.capabilities().as_ref())
        || crate::sealed::caps_may_clear_immutable(
            container_caps.and_then(|p| p.capabilities().as_ref()),
        )
    {
        crate::sealed::ensure_sealed_strict()?; // nothing is made yet: a re-exec starts over
    }
    let terminal = opts.process.terminal() == Some(true);
    let console =
        crate::create::console_for(terminal, opts.console_socket.as_deref(), opts.detach)?;
    let init_fd = container::init_pidfd(&l.state)
        .ok_or_else(|| Error::InvalidState("cannot exec in a stopped container".into()))?;

    // The namespaces the container has (its own or joined by path): exactly those of its init.
    let mut join = CloneFlags::empty();
    for ns in l
        .state
        .config
        .linux()
        .as_ref()
        .and_then(|x| x.namespaces().as_deref())
        .unwrap_or_default()
    {
        join |= namespaces::flag(ns.typ());
    }
    let mut for_children =
        join & (CloneFlags::CLONE_NEWPID | CloneFlags::from_bits_retain(libc::CLONE_NEWTIME));
    // Rootless: only the container's user namespace gives the rights to join its pid
    // namespace, so this process joins both at once (it holds nothing of the host's to lose).
    if !for_children.is_empty()
        && join.contains(CloneFlags::CLONE_NEWUSER)
        && namespaces::rootless_euid()
    {
        for_children |= CloneFlags::CLONE_NEWUSER;
    }
    if !for_children.is_empty() {
        nix::sched::setns(&init_fd, for_children)
            .map_err(|e| Error::sys("join the container's pid namespace", e))?;
    }
    let in_userns = join.contains(CloneFlags::CLONE_NEWUSER);
    let rest = join - for_children;

    // init's root, opened from the host: after joining the mount namespace the child enters it
    // (with --no-pivot the container's root is a chroot, not the namespace's root).
    let root_path = format!("/proc/{}/root", l.state.pid);
    let init_root = nix::fcntl::open(
        root_path.as_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::io("open", &root_path, e.into()))?;
    let linux = l.state.config.linux().as_ref();
    let personality = linux.and_then(|x| x.personality().as_ref());
    let mempolicy = linux
        .and_then(|x| x.memory_policy().as_ref())
        .map(crate::mempolicy::Policy::parse)
        .transpose()
        .map_err(|m| Error::config("config.json", m))?;
    let seccomp = linux
        .and_then(|x| x.seccomp().as_ref())
        .map(crate::seccomp::compile)
        .transpose()?;
    // The process's own AppArmor profile and SELinux label, else the container's (runc).
    let base = l.state.config.process().as_ref();
    let pick = |own: Option<&String>, base: Option<&String>| {
        own.filter(|s| !s.is_empty())
            .or(base.filter(|s| !s.is_empty()))
            .cloned()
    };
    let apparmor = pick(
        opts.process.apparmor_profile().as_ref(),
        base.and_then(|p| p.apparmor_profile().as_ref()),
    );
    let selinux = pick(
        opts.process.selinux_label().as_ref(),
        base.and_then(|p| p.selinux_label().as_ref()),
    );
    let (chan, child_chan) = Channel::pair().map_err(|e| Error::sys("socketpair", e))?;
    // Born in the container's cgroup2 directory, the child joins the v1 hierarchies itself
    // (see cgroups::spawn): no move from here, which would wait for a global lock.
    let cg = if opts.sub_cgroups.is_empty() {
        cgroups::manager_for(&l.state.cgroup)
    } else {
        cgroups::manager_for(&cgroups::sub_cgroup_paths(
            &l.state.cgroup,
            &opts.sub_cgroups,
        )?)
    };
    let unified = cg.open_unified()?;
    // execCPUAffinity.initial: the child is born with it, before it is in the cgroup.
    let pinned = match affinity.as_ref().and_then(|a| a.initial.as_ref()) {
        Some(m) => Some(crate::cpuaffinity::Pinned::initial(m)?),
        None => None,
    };
    let spawned = cgroups::spawn(0, unified.as_ref());
    if !matches!(spawned, Ok((None, _))) {
        if let Some(p) = pinned {
            p.restore();
        }
    }
    let (child, cg_rest) = spawned.map_err(|e| Error::sys("clone3", e))?;
    drop(unified);
    let child = match child {
        None => {
            drop(chan);
            let child = ExecChild {
                cgroup: (cg.as_ref(), cg_rest),
                process: &opts.process,
                personality,
                init_fd: &init_fd,
                init_root: &init_root,
                join: rest,
                in_userns,
                console: &console,
                chan: &child_chan,
                preserve_fds: opts.preserve_fds,
                seccomp: seccomp.as_ref(),
                apparmor: apparmor.as_deref(),
                selinux: selinux.as_deref().unwrap_or_default(),
                cpus_final: affinity.as_ref().and_then(|a| a.final_.as_ref()),
                mempolicy: mempolicy.as_ref(),
            };
            let err = match child.setup() {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = child_chan.send(&Msg::Failed(err));
            // SAFETY: _exit in the forked child skips the parent's atexit handlers.
            unsafe { libc::_exit(127) }
        }
        Some(c) => c,
    };
    drop(child_chan);
    let kill_child = |e: Error| {
        let _ = sys::pidfd_send_signal(child.pidfd.as_fd(), libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.pid), None);
        e
    };
    let mut pty = None;
    loop {
        match chan.recv() {
            Ok(None) => break,
            Ok(Some(Msg::Pty)) => pty = chan.take_fd(),
            Ok(Some(Msg::SeccompListener)) => {
                let profile = linux.and_then(|x| x.seccomp().as_ref());
                if let (Some(fd), Some(profile)) = (chan.take_fd(), profile) {
                    let st = l.state.hook_state(Status::Running);
                    crate::create::send_seccomp_listener(profile, child.pid, &st, fd.as_fd())
                        .map_err(kill_child)?;
                }
            }
            Ok(Some(Msg::Failed(e))) => {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.pid), None);
                return Err(Error::Init(e));
            }
            Ok(Some(m)) => {
                return Err(kill_child(Error::sys(
                    "sync with exec process",
                    std::io::Error::other(format!("unexpected message {m:?}")),
                )))
            }
            Err(e) => return Err(kill_child(Error::sys("sync with exec process", e))),
        }
    }
    if let Some(p) = &opts.pid_file {
        crate::create::write_pid_file(p, child.pid)?;
    }
    Ok(Execd {
        pid: child.pid,
        pidfd: child.pidfd,
        pty,
    })
}

/// The exec'd process before it execs.
struct ExecChild<'a> {
    /// The container's cgroup and the hierarchies still to join.
    cgroup: (&'a dyn cgroups::Manager, cgroups::Hierarchies),
    process: &'a Process,
    personality: Option<&'a oci_spec::runtime::LinuxPersonality>,
    /// The container's init (namespaces are joined through it).
    init_fd: &'a OwnedFd,
    /// init's root directory, opened from the host.
    init_root: &'a OwnedFd,
    /// Namespaces still to join (the parent joined pid and time).
    join: CloneFlags,
    in_userns: bool,
    console: &'a init::Console,
    chan: &'a Channel,
    preserve_fds: u32,
    seccomp: Option<&'a crate::seccomp::Compiled>,
    /// The AppArmor profile and SELinux label (empty: none) of the process.
    apparmor: Option<&'a str>,
    selinux: &'a str,
    /// execCPUAffinity.final, set once in the cgroup.
    cpus_final: Option<&'a crate::cpulist::Mask>,
    /// linux.memoryPolicy, set once in the cgroup.
    mempolicy: Option<&'a crate::mempolicy::Policy>,
}

impl ExecChild<'_> {
    /// The same steps (and order) as init's, minus the rootfs.
    fn setup(&self) -> init::Result<std::convert::Infallible> {
        let (process, chan) = (self.process, self.chan);
        // It moves itself into the cgroup, so there is nothing to wait for from the parent.
        init::join_cgroup(self.cgroup.0, self.cgroup.1)?;
        if let Some(m) = self.cpus_final {
            crate::cpuaffinity::set_final(m)?;
        }
        if let Some(p) = self.mempolicy {
            crate::mempolicy::apply(p)?;
        }
        if !self.join.is_empty() {
            nix::sched::setns(self.init_fd, self.join)
                .step("join the container's namespaces", None)?;
        }
        if self.in_userns {
            steps::become_namespace_root()?;
        }
        nix::unistd::fchdir(self.init_root).step("enter the container's root", None)?;
        nix::unistd::chroot(".").step("chroot into the container's root", None)?;
        nix::unistd::chdir("/").step("chdir /", None)?;
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        init::setup_console(self.console, chan, size, false)?;
        let (exec, listener) = steps::prepare(
            process,
            self.personality,
            self.preserve_fds,
            self.seccomp,
            &steps::Labels {
                selinux: self.selinux,
                apparmor_after_user: self.apparmor,
            },
            None,
        )?;
        if let Some(fd) = listener {
            chan.send_with_fd(&Msg::SeccompListener, fd.as_fd())
                .step("send the seccomp listener", None)?;
        }
        Err(exec.exec())
    }
}
