//! Checkpoint and restore with CRIU, as runc 1.3 does it: `criu swrk 3` driven over a
//! SOCK_SEQPACKET socketpair with CRIU's RPC messages ([`rpc`]), CRIU's notifications answered
//! (`setup-namespaces` runs the prestart/createRuntime hooks, `post-restore` records the
//! restored init and writes the pid file, `orphan-pts-master` hands a terminal to the console
//! socket), bind mounts, masked paths, devices and v1 cgroup binds given to CRIU as external
//! mounts, the container's pipes for stdio kept in `descriptors.json` and inherited on restore.

pub mod rpc;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use crate::cgroups;
use crate::config::Bundle;
use crate::error::{Error, Result};
use crate::state::{State, StateDir, Status};
use crate::{hooks, procfs, timefmt};
use rpc::{CgMode, Opts, Req, ReqType, Resp};

/// Where a container's standard descriptors are recorded in the image directory (runc's name).
const DESCRIPTORS: &str = "descriptors.json";
/// CRIU's configuration file when the `org.criu.config` annotation is absent (runc's).
const DEFAULT_CONFIG: &str = "/etc/criu/runc.conf";

#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    #[error("criu not found in PATH: checkpoint/restore needs CRIU 3.0 or later (criu(8); here: hack/install-peers.sh installs sid's criu 4.2.1)")]
    Missing,
    #[error("start criu {}: {err}", .path.display())]
    Spawn { path: PathBuf, err: std::io::Error },
    #[error("talk to criu: {0}")]
    Transport(String),
    #[error(transparent)]
    Decode(#[from] rpc::DecodeError),
    /// CRIU answered that the operation failed.
    #[error("criu failed: {op}{}{}; see CRIU's log {}{}", .errno.map(|e| format!(" (errno {e})")).unwrap_or_default(), .msg.as_deref().map(|m| format!(": {}", m.trim())).unwrap_or_default(), .log.display(), last_errors(.log))]
    Failed {
        op: &'static str,
        errno: Option<i32>,
        msg: Option<String>,
        log: PathBuf,
    },
    #[error("criu is missing features this needs: {0} (see `criu check --all`)")]
    MissingFeatures(String),
    #[error("invalid {flag} value {value:?}: {why}")]
    Option {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The last errors in CRIU's log (its answer carries only the first, often a harmless one),
/// for the failure message: `", which ends: E1 | E2"`, or nothing.
fn last_errors(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once("Error (").map(|(_, e)| e))
        .filter_map(|e| e.split_once("): ").map(|(_, m)| m.trim()))
        .collect();
    let last: Vec<&str> = errs.iter().rev().take(3).rev().copied().collect();
    if last.is_empty() {
        String::new()
    } else {
        format!(", which ends: {}", last.join(" | "))
    }
}

impl CriuError {
    fn transport(what: &str, e: impl std::fmt::Display) -> CriuError {
        CriuError::Transport(format!("{what}: {e}"))
    }
}

/// `checkpoint`'s options (runc 1.3's flags).
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub parent_path: Option<String>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub tcp_skip_in_flight: bool,
    pub link_remap: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub lazy_pages: bool,
    pub status_fd: Option<RawFd>,
    pub page_server: Option<String>,
    pub file_locks: bool,
    pub pre_dump: bool,
    pub manage_cgroups_mode: Option<String>,
    /// CLONE_NEW* flags of `--empty-ns`.
    pub empty_ns: u32,
    pub auto_dedup: bool,
}

/// `restore`'s options (runc 1.3's flags).
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<String>,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub empty_ns: u32,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
    pub systemd_cgroup: bool,
}

/// The CLONE_NEW* flag of a namespace name (`--empty-ns network`), as runc names them.
pub fn namespace_flag(name: &str) -> Result<u32, CriuError> {
    Ok(match name {
        "network" => libc::CLONE_NEWNET,
        "pid" => libc::CLONE_NEWPID,
        "mount" => libc::CLONE_NEWNS,
        "ipc" => libc::CLONE_NEWIPC,
        "uts" => libc::CLONE_NEWUTS,
        "user" => libc::CLONE_NEWUSER,
        "cgroup" => libc::CLONE_NEWCGROUP,
        "time" => libc::CLONE_NEWTIME,
        _ => {
            return Err(CriuError::Option {
                flag: "--empty-ns",
                value: name.into(),
                why: "not a namespace type",
            })
        }
    } as u32)
}

fn cg_mode(mode: Option<&str>) -> Result<CgMode, CriuError> {
    Ok(match mode {
        None | Some("") => CgMode::Default,
        Some("soft") => CgMode::Soft,
        Some("full") => CgMode::Full,
        Some("strict") => CgMode::Strict,
        Some("ignore") => CgMode::Ignore,
        Some(m) => {
            return Err(CriuError::Option {
                flag: "--manage-cgroups-mode",
                value: m.into(),
                why: "one of soft, full, strict, ignore",
            })
        }
    })
}

fn find_criu() -> Result<PathBuf, CriuError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join("criu"))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or(CriuError::Missing)
}

/// A running `criu swrk 3` and our end of its socket.
struct Swrk {
    child: Child,
    sock: OwnedFd,
}

impl Swrk {
    /// Start criu with its end of a new socketpair as fd 3 and `extra` as fds 4, 5, ...; its
    /// stdio are ours (for restore: the restored process's pipes are inherited from them).
    fn start(extra: &[BorrowedFd]) -> Result<Swrk, CriuError> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let criu = find_criu()?;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| CriuError::transport("socketpair", e))?;
        let mut fds: Vec<RawFd> = vec![theirs.as_raw_fd()];
        fds.extend(extra.iter().map(|f| f.as_raw_fd()));
        let mut cmd = Command::new(&criu);
        cmd.args(["swrk", "3"]);
        // SAFETY: between fork and exec the closure only makes async-signal-safe system calls
        // (fcntl, dup2) on descriptors this process owns, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || place_fds(&fds));
        }
        let child = cmd
            .spawn()
            .map_err(|err| CriuError::Spawn { path: criu, err })?;
        drop(theirs);
        Ok(Swrk { child, sock: ours })
    }

    fn send(&self, req: &Req) -> Result<(), CriuError> {
        nix::sys::socket::send(
            self.sock.as_raw_fd(),
            &req.encode(),
            nix::sys::socket::MsgFlags::empty(),
        )
        .map_err(|e| CriuError::transport("send to criu", e))?;
        Ok(())
    }

    /// One message from criu, with a descriptor it passed along (orphan-pts-master).
    fn recv(&self) -> Result<(Resp, Option<OwnedFd>), CriuError> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let mut buf = vec![0u8; 10 * 4096];
        let mut cmsg = nix::cmsg_space!([RawFd; 2]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let (n, fd) = {
            let msg = recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(|e| CriuError::transport("receive from criu", e))?;
            let mut fd = None;
            for c in msg.cmsgs().map_err(|e| CriuError::transport("cmsg", e))? {
                if let ControlMessageOwned::ScmRights(r) = c {
                    for raw in r {
                        // SAFETY: SCM_RIGHTS just installed `raw` in this process, owned by
                        // nobody else.
                        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                        fd.get_or_insert(owned);
                    }
                }
            }
            (msg.bytes, fd)
        };
        if n == 0 {
            return Err(CriuError::Transport(
                "criu closed the connection (it crashed or was killed)".into(),
            ));
        }
        if n == buf.len() {
            return Err(CriuError::Transport("message from criu too large".into()));
        }
        Ok((Resp::decode(&buf[..n])?, fd))
    }

    /// Send `req` and answer notifications with `notify` until criu's final answer.
    fn exchange(
        &self,
        req: &Req,
        op: &'static str,
        log: &Path,
        mut notify: impl FnMut(&str, Option<i32>, Option<OwnedFd>) -> Result<()>,
    ) -> Result<Resp> {
        self.send(req)?;
        loop {
            let (resp, fd) = self.recv()?;
            if !resp.success {
                return Err(CriuError::Failed {
                    op,
                    errno: resp.cr_errno,
                    msg: resp.cr_errmsg,
                    log: log.to_path_buf(),
                }
                .into());
            }
            if resp.typ == Some(ReqType::Notify) {
                let script = resp.notify_script.clone().unwrap_or_default();
                notify(&script, resp.notify_pid, fd)?;
                self.send(&Req {
                    typ: ReqType::Notify,
                    opts: None,
                    notify_success: true,
                    features: None,
                })?;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Close our end and wait for criu to exit; its exit status.
    fn finish(mut self) -> std::io::Result<std::process::ExitStatus> {
        drop(self.sock);
        self.child.wait()
    }
}

/// In the forked child: `fds[i]` becomes descriptor 3 + i, inheritable (dup2 clears
/// FD_CLOEXEC). Each is first copied above every target, so that no target overwrites a
/// source still to be placed.
fn place_fds(fds: &[RawFd]) -> std::io::Result<()> {
    let top = 3 + fds.len() as i32 + 64;
    let mut tmp = Vec::with_capacity(fds.len());
    for &fd in fds {
        // SAFETY: fcntl on a descriptor this process holds; no memory is passed.
        let t = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top) };
        if t < 0 {
            return Err(std::io::Error::last_os_error());
        }
        tmp.push(t);
    }
    for (i, &t) in tmp.iter().enumerate() {
        // SAFETY: dup2 of a descriptor this process holds onto a plain number.
        if unsafe { libc::dup2(t, 3 + i as i32) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn open_dir(p: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        p,
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::io("open", p, e.into()))
}

fn mkdir_0700(p: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("create", p, e)),
    }
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

fn has_cgroup_ns(spec: &Spec) -> bool {
    namespaces(spec)
        .iter()
        .any(|(t, _)| *t == LinuxNamespaceType::Cgroup)
}

fn namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|ns| ns.iter().map(|n| (n.typ(), n.path().clone())).collect())
        .unwrap_or_default()
}

fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// runc's key for an external namespace: `extRootNetNS`, `extRootPidNS`.
fn ns_key(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Network => "extRootNetNS",
        _ => "extRootPidNS",
    }
}

/// runc's handling of CRIU's configuration file: the `org.criu.config` annotation names one
/// (empty: none), else runc's default path (CRIU ignores a file that does not exist).
fn config_file(spec: &Spec) -> Option<String> {
    match spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get("org.criu.config"))
    {
        Some(f) if f.is_empty() => None,
        Some(f) => Some(f.clone()),
        None => Some(DEFAULT_CONFIG.into()),
    }
}

/// Cgroup v1 hierarchies bound into a container without a cgroup namespace: their mount
/// points inside it (`/sys/fs/cgroup/<name>`), from its mountinfo.
fn cgroup_binds(pid: i32) -> Vec<String> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let fstype = f.get(sep + 1)?;
            (*fstype == "cgroup" || *fstype == "cgroup2").then(|| f[4].to_string())
        })
        .collect()
}

/// The pipe names (`pipe:[123]`) or paths of a process's stdio, as runc records them.
fn descriptors(pid: i32) -> Vec<String> {
    (0..3)
        .map(|i| {
            std::fs::read_link(format!("/proc/{pid}/fd/{i}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

fn page_server(v: &str) -> Result<(String, i32), CriuError> {
    let bad = |why| CriuError::Option {
        flag: "--page-server",
        value: v.into(),
        why,
    };
    let (addr, port) = v.rsplit_once(':').ok_or(bad("not ADDRESS:PORT"))?;
    let port = port
        .parse::<i32>()
        .map_err(|_| bad("the port is not a number"))?;
    Ok((addr.to_string(), port))
}

/// `checkpoint`: dump a running container with CRIU into `opts.image_path`; unless
/// `leave_running` or `pre_dump`, the container is then removed as runc does (its processes
/// are gone: CRIU killed them after the dump).
pub fn checkpoint(root: &Path, id: &str, opts: &CheckpointOptions) -> Result<()> {
    let dir = StateDir::open(root, id)?;
    let state = dir.read()?;
    match dir.status(&state) {
        Status::Running | Status::Paused => {}
        s => {
            return Err(Error::InvalidState(format!(
                "cannot checkpoint a {s} container: it is not running"
            )))
        }
    }
    let mode = cg_mode(opts.manage_cgroups_mode.as_deref())?;
    mkdir_0700(&opts.image_path)?;
    let images = open_dir(&opts.image_path)?;
    let work = match &opts.work_path {
        Some(w) => {
            mkdir_0700(w)?;
            Some(open_dir(w)?)
        }
        None => None,
    };
    let log = opts
        .work_path
        .as_deref()
        .unwrap_or(&opts.image_path)
        .join("dump.log");
    let spec = &state.config;
    let mut o = Opts {
        images_dir_fd: images.as_raw_fd(),
        pid: Some(state.pid),
        log_level: 4,
        log_file: "dump.log".into(),
        root: Some(state.rootfs.to_string_lossy().into_owned()),
        manage_cgroups: true,
        manage_cgroups_mode: Some(mode),
        notify_scripts: true,
        shell_job: opts.shell_job,
        leave_running: opts.leave_running,
        tcp_established: opts.tcp_established,
        tcp_skip_in_flight: opts.tcp_skip_in_flight,
        link_remap: opts.link_remap,
        ext_unix_sk: opts.ext_unix_sk,
        file_locks: opts.file_locks,
        empty_ns: opts.empty_ns,
        orphan_pts_master: true,
        auto_dedup: opts.auto_dedup,
        lazy_pages: opts.lazy_pages,
        work_dir_fd: work.as_ref().map(|w| w.as_raw_fd()),
        config_file: config_file(spec),
        freeze_cgroup: state
            .cgroup
            .dir_of("freezer")
            .map(|p| p.to_string_lossy().into_owned()),
        ..Default::default()
    };
    for (t, path) in namespaces(spec) {
        if let (LinuxNamespaceType::Network | LinuxNamespaceType::Pid, Some(p)) = (t, path) {
            use std::os::unix::fs::MetadataExt;
            let ino = std::fs::metadata(&p)
                .map_err(|e| Error::io("stat", &p, e))?
                .ino();
            o.external
                .push(format!("{}[{ino}]:{}", ns_name(t), ns_key(t)));
        }
    }
    if let Some(ps) = &opts.page_server {
        o.page_server = Some(page_server(ps)?);
    }
    if let Some(parent) = &opts.parent_path {
        o.parent_img = Some(parent.clone());
        o.track_mem = true;
    }
    let typ = if opts.pre_dump {
        ReqType::PreDump
    } else {
        ReqType::Dump
    };
    if opts.pre_dump || opts.lazy_pages {
        check_features(opts.pre_dump, opts.lazy_pages)?;
    }
    let mut status_fd = opts.status_fd;
    if !opts.pre_dump {
        for m in spec.mounts().iter().flatten() {
            if is_bind(m) {
                let d = m.destination().to_string_lossy().into_owned();
                o.ext_mnt.push((d.clone(), d));
            } else if m.typ().as_deref() == Some("cgroup") && !has_cgroup_ns(spec) {
                for mp in cgroup_binds(state.pid) {
                    o.ext_mnt.push((mp.clone(), mp));
                }
            }
        }
        let linux = spec.linux().as_ref();
        for p in linux
            .and_then(|l| l.masked_paths().as_ref())
            .into_iter()
            .flatten()
        {
            let inside = format!("/proc/{}/root/{}", state.pid, p.trim_start_matches('/'));
            match std::fs::metadata(&inside) {
                Ok(m) if !m.is_dir() => o.ext_mnt.push((p.clone(), "/dev/null".into())),
                _ => {}
            }
        }
        // Device nodes are binds of the host's in a user namespace: external, as runc.
        for p in crate::init::devices::node_paths(spec) {
            o.ext_mnt.push((p.clone(), p));
        }
        let fds = serde_json::to_vec(&descriptors(state.pid)).expect("strings serialize");
        crate::state::write_atomic(&opts.image_path.join(DESCRIPTORS), &fds)?;
    }
    let swrk = Swrk::start(&[])?;
    let req = Req {
        typ,
        opts: Some(o),
        notify_success: false,
        features: None,
    };
    let r = swrk.exchange(&req, "dump", &log, |script, _, _| {
        if script == "status-ready" {
            if let Some(fd) = status_fd.take() {
                let _ = nix::unistd::write(
                    // SAFETY: the caller gave this descriptor (--status-fd) for this use.
                    unsafe { BorrowedFd::borrow_raw(fd) },
                    &[0],
                );
                let _ = nix::unistd::close(fd);
            }
        }
        Ok(())
    });
    let exit = swrk.finish();
    r?;
    if !opts.pre_dump {
        match exit {
            Ok(st) if st.success() => {}
            Ok(st) => {
                return Err(CriuError::Failed {
                    op: "dump",
                    errno: None,
                    msg: Some(format!("criu exited with {st}")),
                    log,
                }
                .into())
            }
            Err(e) => return Err(Error::sys("wait for criu", e)),
        }
    }
    if !opts.leave_running && !opts.pre_dump {
        crate::container::destroy_checkpointed(dir, &state)?;
    }
    Ok(())
}

/// Ask criu whether it (and the kernel) can do what pre-dump or lazy pages need.
fn check_features(mem_track: bool, lazy: bool) -> Result<()> {
    let swrk = Swrk::start(&[])?;
    let r = swrk.exchange(
        &Req {
            typ: ReqType::FeatureCheck,
            opts: None,
            notify_success: false,
            features: Some((mem_track, lazy)),
        },
        "feature check",
        Path::new("(none: criu check --all)"),
        |_, _, _| Ok(()),
    );
    let _ = swrk.finish();
    let (have_mem, have_lazy) = r?.features.unwrap_or((Some(false), Some(false)));
    let mut missing = Vec::new();
    if mem_track && have_mem == Some(false) {
        missing.push("memory tracking (soft-dirty bits; pre-dump)");
    }
    if lazy && have_lazy == Some(false) {
        missing.push("lazy pages (userfaultfd)");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CriuError::MissingFeatures(missing.join(", ")).into())
    }
}

/// The restored container so far: undone on drop unless disarmed.
struct Undo {
    dir: Option<PathBuf>,
    cgroup: Option<cgroups::CgroupPaths>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(p) = self.cgroup.take() {
            let cg = cgroups::manager_for(&p);
            for pid in cg.pids().unwrap_or_default() {
                let _ = crate::sys::kill(pid, libc::SIGKILL);
            }
            // destroy() itself waits (up to 5 s) for the killed tasks to leave.
            let _ = cg.destroy();
        }
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The rootfs bound at `<state dir>/criu-root` (CRIU wants a mount point whose parent is not
/// overmounted); unbound and removed on drop.
struct CriuRoot(PathBuf);

impl CriuRoot {
    fn bind(rootfs: &Path, at: PathBuf) -> Result<CriuRoot> {
        std::fs::create_dir(&at).map_err(|e| Error::io("create", &at, e))?;
        nix::mount::mount(
            Some(rootfs),
            &at,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| {
            let _ = std::fs::remove_dir(&at);
            Error::io("bind the rootfs at", &at, e.into())
        })?;
        Ok(CriuRoot(at))
    }
}

impl Drop for CriuRoot {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Make a missing mount point in the rootfs (a directory, or a file for a bind of a file), as
/// create makes it.
fn make_mountpoint(rootfs: &Path, dest: &Path, file: bool) -> Result<()> {
    use crate::init::rootfs::{create_in_root, Root};
    // Resolved inside the rootfs as create resolves it: a symlink on the way (/var/run ->
    // /run) is followed there, never out of it.
    let root = Root::open(rootfs).map_err(|e| Error::io("open the rootfs", rootfs, e.into()))?;
    create_in_root(&root, dest, file).map(drop).map_err(|e| {
        Error::io(
            "create the mount point",
            rootfs.join(dest.strip_prefix("/").unwrap_or(dest)),
            e,
        )
    })
}

/// The host's cgroup mounts under /sys/fs/cgroup: mount point and controllers (`""` for
/// cgroup2).
fn host_cgroup_mounts() -> Vec<(PathBuf, Vec<String>)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let fstype = *f.get(sep + 1)?;
            let ctrls = match fstype {
                "cgroup2" => vec![String::new()],
                "cgroup" => f
                    .get(sep + 3)?
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro" | "xattr" | "clone_children"))
                    .map(str::to_string)
                    .collect(),
                _ => return None,
            };
            Some((PathBuf::from(f[4]), ctrls))
        })
        .collect()
}

/// `/proc/PID/cgroup`: (controllers, path) per hierarchy.
fn proc_cgroups(pid: i32) -> Vec<(Vec<String>, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, c, p) = (it.next()?, it.next()?, it.next()?);
            Some((c.split(',').map(str::to_string).collect(), p.to_string()))
        })
        .collect()
}

/// `restore`: create container `opts.id` from the bundle and restore its processes from the
/// images. Returns the restored container's state (its init is this process's child: CRIU
/// restores it as criu's sibling) and the config's warnings (see [`crate::config::warnings`]).
pub fn restore(opts: &RestoreOptions) -> Result<(State, Vec<String>)> {
    crate::config::validate_id(&opts.id)?;
    let bundle = Bundle::load(&opts.bundle)?;
    let spec = &bundle.spec;
    let mode = cg_mode(opts.manage_cgroups_mode.as_deref())?;
    let fds_json = opts.image_path.join(DESCRIPTORS);
    let recorded: Vec<String> = match std::fs::read(&fds_json) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Config {
            path: fds_json.display().to_string(),
            msg: e.to_string(),
        })?,
        Err(e) => return Err(Error::io("read the checkpoint's", &fds_json, e)),
    };
    let images = open_dir(&opts.image_path)?;
    let dir = StateDir::create(&opts.root, &opts.id)?;
    let mut undo = Undo {
        dir: Some(dir.path.clone()),
        cgroup: None,
    };
    let linux = spec.linux().as_ref().expect("validated");
    let cg = cgroups::manager(
        linux.cgroups_path().as_deref(),
        &opts.id,
        opts.systemd_cgroup,
    )?;
    cg.ensure_unused()?;
    dir.record_cgroups(cg.paths())?;
    undo.cgroup = Some(cg.paths().clone());
    cg.create()?;
    let no_resources = oci_spec::runtime::LinuxResources::default();
    cg.apply(
        linux.resources().as_ref().unwrap_or(&no_resources),
        (!crate::namespaces::rootless_cgroups())
            .then(|| linux.devices().as_deref().unwrap_or_default()),
    )?;

    let work = match &opts.work_path {
        Some(w) => {
            mkdir_0700(w)?;
            Some(open_dir(w)?)
        }
        None => None,
    };
    let log = opts
        .work_path
        .as_deref()
        .unwrap_or(&opts.image_path)
        .join("restore.log");
    let criu_root = CriuRoot::bind(&bundle.rootfs, dir.path.join("criu-root"))?;
    let mut o = Opts {
        images_dir_fd: images.as_raw_fd(),
        evasive_devices: true,
        log_level: 4,
        log_file: "restore.log".into(),
        rst_sibling: true,
        root: Some(criu_root.0.to_string_lossy().into_owned()),
        manage_cgroups: true,
        manage_cgroups_mode: Some(mode),
        notify_scripts: true,
        shell_job: opts.shell_job,
        ext_unix_sk: opts.ext_unix_sk,
        tcp_established: opts.tcp_established,
        file_locks: opts.file_locks,
        empty_ns: opts.empty_ns,
        orphan_pts_master: true,
        auto_dedup: opts.auto_dedup,
        lazy_pages: opts.lazy_pages,
        lsm_profile: opts.lsm_profile.clone(),
        lsm_mount_context: opts.lsm_mount_context.clone(),
        work_dir_fd: work.as_ref().map(|w| w.as_raw_fd()),
        config_file: config_file(spec),
        ..Default::default()
    };
    let mut ns_files = Vec::new();
    for (t, path) in namespaces(spec) {
        let Some(p) = path else { continue };
        match t {
            LinuxNamespaceType::Network | LinuxNamespaceType::Pid => {
                let f = std::fs::File::open(&p).map_err(|e| Error::io("open namespace", &p, e))?;
                o.inherit_fd
                    .push((ns_key(t).into(), 4 + ns_files.len() as i32));
                ns_files.push(OwnedFd::from(f));
            }
            LinuxNamespaceType::Cgroup => {
                return Err(Error::Config {
                    path: "linux.namespaces".into(),
                    msg: "criu cannot restore into an existing cgroup namespace".into(),
                })
            }
            _ => o
                .join_ns
                .push((ns_name(t).into(), p.to_string_lossy().into_owned())),
        }
    }
    // Every bind is external, as at dump; its mount point is made as create makes it (the
    // rootfs may be a fresh copy), except on a tmpfs, whose content CRIU restores (podman's
    // /dev/shm is a bind on the /dev tmpfs).
    let mounts: Vec<&Mount> = spec.mounts().iter().flatten().collect();
    let tmpfs: Vec<&Path> = mounts
        .iter()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .map(|m| m.destination().as_path())
        .collect();
    for m in &mounts {
        let dest = m.destination();
        let on_tmpfs = tmpfs.iter().any(|t| dest.starts_with(t) && dest != *t);
        if !is_bind(m) {
            // Other filesystems' mount points are directories; cgroup's come with /sys or
            // CRIU's image. A fresh rootfs (podman's `restore --import`) has none of them.
            if !on_tmpfs && m.typ().as_deref() != Some("cgroup") {
                make_mountpoint(&bundle.rootfs, dest, false)?;
            }
            continue;
        }
        let src = m.source().clone().unwrap_or_default();
        let src = if src.is_absolute() {
            src
        } else {
            bundle.dir.join(src)
        };
        if !on_tmpfs {
            make_mountpoint(&bundle.rootfs, dest, !src.is_dir())?;
        }
        o.ext_mnt.push((
            dest.to_string_lossy().into_owned(),
            src.to_string_lossy().into_owned(),
        ));
    }
    let cgroup_mount =
        mounts.iter().any(|m| m.typ().as_deref() == Some("cgroup")) && !has_cgroup_ns(spec);
    if linux.masked_paths().as_ref().is_some_and(|m| !m.is_empty()) {
        o.ext_mnt.push(("/dev/null".into(), "/dev/null".into()));
    }
    for p in crate::init::devices::node_paths(spec) {
        o.ext_mnt.push((p.clone(), p));
    }
    for (i, s) in recorded.iter().enumerate() {
        if s.contains("pipe:") {
            o.inherit_fd.push((s.clone(), i as i32));
        }
    }

    let ns_borrowed: Vec<BorrowedFd> = ns_files.iter().map(|f| f.as_fd()).collect();
    let swrk = Swrk::start(&ns_borrowed)?;
    let criu_pid = swrk.child.id() as i32;
    // CRIU restores the tree into the cgroups it runs in (cg_root), as runc arranges it.
    cg.add(criu_pid, cgroups::Hierarchies::All)?;
    let own = proc_cgroups(criu_pid);
    for (ctrls, path) in &own {
        for c in ctrls {
            o.cg_root.push((c.clone(), path.clone()));
        }
    }
    if cgroup_mount {
        // The container's /sys/fs/cgroup/<name> binds: each the new cgroup's directory.
        for (mp, ctrls) in host_cgroup_mounts() {
            if !mp.starts_with("/sys/fs/cgroup") {
                continue;
            }
            let Some((_, path)) = own.iter().find(|(c, _)| {
                if ctrls == [String::new()] {
                    c == &[String::new()]
                } else {
                    !c[0].is_empty() && c.iter().all(|x| ctrls.contains(x))
                }
            }) else {
                continue;
            };
            o.ext_mnt.push((
                mp.to_string_lossy().into_owned(),
                mp.join(path.trim_start_matches('/'))
                    .to_string_lossy()
                    .into_owned(),
            ));
        }
    }
    let req = Req {
        typ: ReqType::Restore,
        opts: Some(o),
        notify_success: false,
        features: None,
    };
    let hooks = spec.hooks().as_ref();
    let annotations: HashMap<String, String> = spec.annotations().clone().unwrap_or_default();
    let mut restored: Option<State> = None;
    let r = swrk.exchange(&req, "restore", &log, |script, pid, fd| {
        match script {
            "setup-namespaces" => {
                let st = crate::state::hook_state_json(
                    &opts.id,
                    Status::Created,
                    pid.unwrap_or(0),
                    &bundle.dir,
                    Some(&annotations),
                );
                hooks::run(
                    Some(&bundle.dir),
                    "prestart",
                    hooks.and_then(|h| h.prestart().as_ref()),
                    &st,
                )?;
                hooks::run(
                    Some(&bundle.dir),
                    "createRuntime",
                    hooks.and_then(|h| h.create_runtime().as_ref()),
                    &st,
                )?;
            }
            "post-restore" => {
                let pid = pid.unwrap_or(0);
                let pid_start = procfs::start_time_of(pid, "the restored init")?;
                let state = State {
                    id: opts.id.clone(),
                    pid,
                    pid_start,
                    bundle: bundle.dir.clone(),
                    rootfs: bundle.rootfs.clone(),
                    created: timefmt::now_rfc3339(),
                    annotations: annotations.clone(),
                    cgroup: cg.paths().clone(),
                    config: spec.clone(),
                };
                dir.write(&state)?;
                if let Some(p) = &opts.pid_file {
                    crate::create::write_pid_file(p, pid)?;
                }
                restored = Some(state);
            }
            "orphan-pts-master" => {
                if let (Some(master), Some(sock)) = (fd, &opts.console_socket) {
                    let s = crate::tty::connect(sock)
                        .map_err(|e| Error::io("connect to console socket", sock, e))?;
                    crate::tty::send_fd(s.as_fd(), "orphan-pts-master", master.as_fd())
                        .map_err(|e| Error::io("send the terminal to", sock, e))?;
                }
            }
            _ => {}
        }
        Ok(())
    });
    let exit = swrk.finish();
    drop(criu_root);
    r?;
    match exit {
        Ok(st) if st.success() => {}
        Ok(st) => {
            return Err(CriuError::Failed {
                op: "restore",
                errno: None,
                msg: Some(format!("criu exited with {st}")),
                log,
            }
            .into())
        }
        Err(e) => return Err(Error::sys("wait for criu", e)),
    }
    let state = restored.ok_or_else(|| {
        Error::from(CriuError::Transport(
            "criu reported success without a post-restore notification".into(),
        ))
    })?;
    dir.created()?;
    undo.dir = None;
    undo.cgroup = None;
    Ok((state, bundle.warnings))
}
