//! The process side of init: credentials, capabilities, limits, descriptors, and the exec.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use nix::fcntl::OFlag;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType, Process};

use super::{InitError, Result, StepExt};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The LSM labels [`prepare`] applies, at runc's points.
pub struct Labels<'a> {
    /// The SELinux process label (empty: none), set before seccomp and the user switch.
    pub selinux: &'a str,
    /// An AppArmor profile applied after the user switch (exec: runc's setns init does it
    /// there; init applies its profile earlier, after the hostname).
    pub apparmor_after_user: Option<&'a str>,
}

/// The steps init and exec share, in order, from limits to the resolved program: everything that
/// needs privileges comes before the user switch and the capability drop.
///
/// seccomp is loaded last when no_new_privs is set (as close to exec as possible); without it,
/// loading needs CAP_SYS_ADMIN, so it comes before the user switch drops capabilities (runc's
/// order). Returns the SCMP_ACT_NOTIFY listener, if the profile has one.
pub fn prepare(
    process: &Process,
    personality: Option<&oci_spec::runtime::LinuxPersonality>,
    preserve_fds: u32,
    seccomp: Option<&crate::seccomp::Compiled>,
    labels: &Labels,
    final_check: Option<&dyn Fn() -> Result<()>>,
) -> Result<(Exec, Option<std::os::fd::OwnedFd>)> {
    set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    if let Some(p) = personality {
        set_personality(p)?;
    }
    if let Some(io) = process.io_priority() {
        set_io_priority(io)?;
    }
    if let Some(sch) = process.scheduler() {
        set_scheduler(sch)?;
    }
    let nnp = process.no_new_privileges() == Some(true);
    if nnp {
        set_no_new_privs()?;
    }
    close_host_fds(preserve_fds)?;
    // The cwd is entered before the user switch (root may reach what the user cannot) and
    // again after it if root was refused (a directory only the user may enter, as on some
    // volumes): runc's order. Its CVE-2024-21626 check runs before seccomp is loaded, as crun
    // does, so a profile denying getcwd cannot break it.
    let cwd_entered = enter_cwd(process.cwd(), true)?;
    let load = |s: &crate::seccomp::Compiled| {
        crate::seccomp::load(s).map_err(|e| InitError::msg("seccomp", None, e.to_string()))
    };
    // runc sets the exec label after the scheduler, before seccomp and the user switch.
    if !labels.selinux.is_empty() {
        super::lsm::set_selinux_exec_label(labels.selinux)?;
    }
    let mut listener = None;
    if let (false, Some(s)) = (nnp, seccomp) {
        listener = load(s)?;
    }
    check_user_ids(process)?;
    fix_stdio_owner(process.user().uid())?;
    // Read as root, before the switch (runc's setupUser): the user may not read /etc/passwd.
    let home = missing_home(process).then(|| home_of(process.user().uid()));
    switch_user(process)?;
    if let Some(profile) = labels.apparmor_after_user {
        super::lsm::apply_apparmor_profile(profile)?;
    }
    if !cwd_entered {
        enter_cwd(process.cwd(), false)?;
    }
    crate::sys::umask(process.user().umask().unwrap_or(0o022));
    let exec = Exec::prepare(process, home.as_deref())?;
    // With the process's credentials final, and before a no_new_privs filter that could kill
    // on the syscalls it makes.
    if let Some(check) = final_check {
        check()?;
    }
    if let (true, Some(s)) = (nnp, seccomp) {
        listener = load(s)?;
    }
    Ok((exec, listener))
}

/// In a new user namespace, become its root (uid/gid 0 map to the configured host ids).
pub fn become_namespace_root() -> Result<()> {
    let _ = nix::unistd::setgroups(&[]);
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .step("setresgid(0) in user namespace", None)?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .step("setresuid(0) in user namespace", None)
}

/// A session keyring of the container's own (not the caller's).
pub fn join_session_keyring(id: &str) -> Result<()> {
    let name = CString::new(format!("_ses.{id}")).expect("ids have no NUL");
    match crate::sys::join_session_keyring(&name) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(()),
        r => r.step("join session keyring", None),
    }
}

pub fn set_domainname(name: &str) -> Result<()> {
    crate::sys::setdomainname(name).step("setdomainname", None)
}

/// Write each sysctl below `proc` (a procfs root: the container's /proc, or one taken before
/// pivot_root when the container mounts none). A sysctl belongs to the namespace of the
/// writer, not of the procfs instance, so either reaches the container's own.
pub fn write_sysctls(proc: BorrowedFd, sysctl: &HashMap<String, String>) -> Result<()> {
    for (k, v) in sysctl {
        let rel = PathBuf::from("sys").join(k.replace('.', "/"));
        let shown = Path::new("/proc").join(&rel);
        let fd = nix::fcntl::openat(
            proc,
            &rel,
            OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .step("write sysctl", Some(&shown))?;
        nix::unistd::write(&fd, v.as_bytes()).step("write sysctl", Some(&shown))?;
    }
    Ok(())
}

fn resource(t: PosixRlimitType) -> nix::sys::resource::Resource {
    use nix::sys::resource::Resource as R;
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => R::RLIMIT_CPU,
        T::RlimitFsize => R::RLIMIT_FSIZE,
        T::RlimitData => R::RLIMIT_DATA,
        T::RlimitStack => R::RLIMIT_STACK,
        T::RlimitCore => R::RLIMIT_CORE,
        T::RlimitRss => R::RLIMIT_RSS,
        T::RlimitNproc => R::RLIMIT_NPROC,
        T::RlimitNofile => R::RLIMIT_NOFILE,
        T::RlimitMemlock => R::RLIMIT_MEMLOCK,
        T::RlimitAs => R::RLIMIT_AS,
        T::RlimitLocks => R::RLIMIT_LOCKS,
        T::RlimitSigpending => R::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => R::RLIMIT_MSGQUEUE,
        T::RlimitNice => R::RLIMIT_NICE,
        T::RlimitRtprio => R::RLIMIT_RTPRIO,
        T::RlimitRttime => R::RLIMIT_RTTIME,
    }
}

pub fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    for r in rlimits {
        nix::sys::resource::setrlimit(resource(r.typ()), r.soft(), r.hard()).map_err(|e| {
            InitError::new(
                format!(
                    "setrlimit {:?} (soft {}, hard {})",
                    r.typ(),
                    r.soft(),
                    r.hard()
                ),
                None,
                e.into(),
            )
        })?;
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().step("prctl(PR_SET_NO_NEW_PRIVS)", None)
}

/// Mark every descriptor but stdio and the preserved ones close-on-exec (CVE-2024-21626), and
/// make sure the preserved ones survive the exec.
pub fn close_host_fds(preserve: u32) -> Result<()> {
    crate::sys::cloexec_from(3 + preserve).step("close_range", None)?;
    for fd in 3..3 + preserve as i32 {
        // SAFETY: the caller of berth passed these descriptors on purpose.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .step("preserve fd", None)?;
    }
    Ok(())
}

fn capset(names: Option<&oci_spec::runtime::Capabilities>, field: &str) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in names.into_iter().flatten() {
        let name = c.to_string();
        let name = if name.starts_with("CAP_") {
            name
        } else {
            format!("CAP_{}", name.to_uppercase())
        };
        let cap = Capability::from_str(&name).map_err(|_| {
            InitError::msg(
                "capabilities",
                None,
                format!(
                    "process.capabilities.{field}: {name} is not known to this kernel interface"
                ),
            )
        })?;
        out.insert(cap);
    }
    Ok(out)
}

/// Never hand (u32)-1 to setresuid, setresgid, setgroups or fchown: it means "unchanged", so
/// the process would keep init's root ids and capabilities. Validation refuses it first; this
/// is the last line, for any caller that skipped it.
fn check_user_ids(process: &Process) -> Result<()> {
    let user = process.user();
    let gids = user.additional_gids().as_deref().unwrap_or_default();
    let ids = [("uid", user.uid()), ("gid", user.gid())]
        .into_iter()
        .chain(gids.iter().map(|g| ("additional gid", *g)));
    // The field's name is formatted only for a bad id: this runs on every create and exec.
    for (what, id) in ids.filter(|(_, id)| *id == crate::config::INVALID_ID) {
        if let Err(msg) = crate::config::check_id(&format!("process.user {what}"), id) {
            return Err(InitError::msg("switch user", None, msg));
        }
    }
    Ok(())
}

/// Switch to the process's user and groups and set its capabilities: bounding set first (while
/// berth still has CAP_SETPCAP), then the ids with keep-caps, then the other sets.
pub fn switch_user(process: &Process) -> Result<()> {
    let user = process.user();
    // No `process.capabilities` at all means no capabilities, as in runc (every set empty,
    // the bounding set included); never "keep berth's own".
    // (A missing set is an empty one: capset(None).)
    let c = process.capabilities().as_ref();
    let bounding = capset(c.and_then(|c| c.bounding().as_ref()), "bounding")?;
    for cap in caps::all() {
        if !bounding.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
                InitError::msg("drop bounding capability", None, format!("{cap}: {e}"))
            })?;
        }
    }
    nix::sys::prctl::set_keepcaps(true).step("prctl(PR_SET_KEEPCAPS)", None)?;
    let gids: Vec<Gid> = user
        .additional_gids()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // A rootless user namespace denies setgroups (see namespaces::write_id_maps): no
    // supplementary groups there, as runc.
    let denied = std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    if !denied {
        nix::unistd::setgroups(&gids).step("setgroups", None)?;
    } else if !gids.is_empty() {
        return Err(InitError::msg(
            "setgroups",
            None,
            "process.user.additionalGids: setgroups is denied in this (rootless) user namespace",
        ));
    }
    let (uid, gid) = (Uid::from_raw(user.uid()), Gid::from_raw(user.gid()));
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|e| InitError::new(format!("setresgid({gid})"), None, e.into()))?;
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|e| InitError::new(format!("setresuid({uid})"), None, e.into()))?;
    nix::sys::prctl::set_keepcaps(false).step("prctl(PR_SET_KEEPCAPS)", None)?;
    let set = |s: CapSet, v: &CapsHashSet, name: &str| {
        caps::set(None, s, v)
            .map_err(|e| InitError::msg("set capabilities", None, format!("{name}: {e}")))
    };
    let inheritable = capset(c.and_then(|c| c.inheritable().as_ref()), "inheritable")?;
    let effective = capset(c.and_then(|c| c.effective().as_ref()), "effective")?;
    let permitted = capset(c.and_then(|c| c.permitted().as_ref()), "permitted")?;
    let ambient = capset(c.and_then(|c| c.ambient().as_ref()), "ambient")?;
    set(CapSet::Inheritable, &inheritable, "inheritable")?;
    set(CapSet::Effective, &effective, "effective")?;
    set(CapSet::Permitted, &permitted, "permitted")?;
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| InitError::msg("set capabilities", None, format!("ambient: {e}")))?;
    for cap in ambient {
        // The kernel only allows ambient capabilities that are permitted and inheritable;
        // runc skips the others the same way.
        if permitted.contains(&cap) && inheritable.contains(&cap) {
            caps::raise(None, CapSet::Ambient, cap).map_err(|e| {
                InitError::msg("set capabilities", None, format!("ambient {cap}: {e}"))
            })?;
        }
    }
    Ok(())
}

/// Give the process's user the stdio descriptors it was handed (pty, pipes, fifos), as runc's
/// fixStdioPermissions does: only the owner changes (the group may be the tty group), never of
/// /dev/null, and an inode whose owner or group the namespace cannot map, or on a read-only
/// mount, is left as it is.
pub fn fix_stdio_owner(uid: u32) -> Result<()> {
    // The null device by its number: the container's /dev/null is the image's to choose
    // (without a mount namespace nothing replaces it), and a host /dev/null handed in as
    // stdio must never change owner.
    let null = libc::makedev(1, 3);
    for fd in 0..3 {
        // SAFETY: stdio descriptors belong to the process for its whole life.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let st = match nix::sys::stat::fstat(fd) {
            Ok(st) => st,
            Err(nix::errno::Errno::EBADF) => continue,
            Err(e) => return Err(InitError::new("fstat stdio", None, e.into())),
        };
        let is_chr = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
        if st.st_uid == uid || (is_chr && st.st_rdev == null) {
            continue;
        }
        match nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(st.st_gid))) {
            Ok(())
            | Err(nix::errno::Errno::EINVAL)
            | Err(nix::errno::Errno::EPERM)
            | Err(nix::errno::Errno::EROFS) => {}
            Err(e) => {
                return Err(InitError::new(
                    format!("chown stdio fd {} to uid {uid}", fd.as_raw_fd()),
                    None,
                    e.into(),
                ))
            }
        }
    }
    Ok(())
}

/// Enter the process's cwd and make sure it is inside the container's root: a cwd that
/// resolves outside it would hand the container the host's filesystem (CVE-2024-21626).
/// With `may_defer`, a refusal (EACCES, EPERM) is not an error but `false`: the caller tries
/// again as the process's user.
pub fn enter_cwd(cwd: &Path, may_defer: bool) -> Result<bool> {
    match nix::unistd::chdir(cwd) {
        Err(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM) if may_defer => return Ok(false),
        r => r.step("chdir to cwd", Some(cwd))?,
    }
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(true),
        Ok(p) => Err(InitError::msg(
            "chdir to cwd",
            Some(cwd),
            format!("cwd {p:?} is outside the container"),
        )),
        Err(e) => Err(InitError::new(
            "getcwd (cwd outside the container?)",
            Some(cwd),
            e.into(),
        )),
    }
}

/// The resolved program, argv and envp, ready before the process is started so that a missing
/// binary is an error of `create` (as with runc).
pub struct Exec {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s)
        .map_err(|_| InitError::msg("exec", None, format!("{what} {s:?} contains a NUL byte")))
}

/// The process's env has no HOME, or an empty one (runc then sets it).
fn missing_home(process: &Process) -> bool {
    !process
        .env()
        .iter()
        .flatten()
        .any(|e| e.strip_prefix("HOME=").is_some_and(|h| !h.is_empty()))
}

/// The most of the container's /etc/passwd berth reads for a home directory.
const PASSWD_MAX: u64 = 16 << 20;

/// `uid`'s home directory from the container's /etc/passwd, or `/` (runc's default) when the
/// file or the entry is missing or the file is not a regular file (a FIFO there is never
/// waited on, a link to /dev/zero never read). At most [`PASSWD_MAX`] bytes are read.
fn home_of(uid: u32) -> String {
    use std::io::{BufRead, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/etc/passwd")
    else {
        return "/".into();
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return "/".into();
    }
    std::io::BufReader::new(f.take(PASSWD_MAX))
        .split(b'\n')
        .map_while(|l| l.ok())
        .find_map(|line| passwd_home(&line, uid))
        .unwrap_or_else(|| "/".into())
}

/// The home field of a passwd line (`name:pw:uid:gid:gecos:home:shell`) whose uid is `uid`.
fn passwd_home(line: &[u8], uid: u32) -> Option<String> {
    let mut f = std::str::from_utf8(line).ok()?.split(':');
    let id = f.nth(2)?.trim().parse::<u32>().ok()?;
    let home = f.nth(2)?;
    (id == uid).then(|| home.to_string())
}

impl Exec {
    /// `home`: a HOME to add to the env (the env had none).
    pub fn prepare(process: &Process, home: Option<&str>) -> Result<Exec> {
        let args = process.args().as_deref().unwrap_or_default();
        let env = process.env().as_deref().unwrap_or_default();
        let name = &args[0];
        let path = if name.contains('/') {
            let p = PathBuf::from(name);
            check_executable(&p).map_err(|e| InitError::new("exec", Some(&p), e))?;
            p
        } else {
            let search = env
                .iter()
                .rev()
                .find_map(|e| e.strip_prefix("PATH="))
                .unwrap_or(DEFAULT_PATH);
            search
                .split(':')
                .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(name))
                .find(|p| check_executable(p).is_ok())
                .ok_or_else(|| {
                    InitError::msg(
                        "exec",
                        Some(Path::new(name)),
                        "executable file not found in $PATH",
                    )
                })?
        };
        Ok(Exec {
            path: CString::new(path.as_os_str().as_bytes())
                .map_err(|_| InitError::msg("exec", None, "path contains a NUL byte"))?,
            args: args
                .iter()
                .map(|a| cstring(a, "argument"))
                .collect::<Result<_>>()?,
            env: env
                .iter()
                .filter(|e| home.is_none() || !e.starts_with("HOME="))
                .map(|e| cstring(e, "env"))
                .chain(home.map(|h| cstring(&format!("HOME={h}"), "env")))
                .collect::<Result<_>>()?,
        })
    }

    /// execve; returns only on failure.
    pub fn exec(&self) -> InitError {
        crate::sys::reset_signals();
        let err = nix::unistd::execve(&self.path, &self.args, &self.env).unwrap_err();
        InitError::new(
            "exec",
            Some(Path::new(&*self.path.to_string_lossy())),
            err.into(),
        )
    }
}

fn check_executable(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(p)?;
    if m.is_dir() {
        return Err(std::io::Error::from_raw_os_error(libc::EISDIR));
    }
    if m.permissions().mode() & 0o111 == 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EACCES));
    }
    Ok(())
}

/// `linux.personality`: the execution domain (flags are refused at validation).
pub fn set_personality(p: &oci_spec::runtime::LinuxPersonality) -> Result<()> {
    const PER_LINUX32: libc::c_ulong = 0x0008;
    let persona = match p.domain() {
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0,
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    crate::sys::personality(persona).step("personality", None)
}

/// `process.ioPriority`.
pub fn set_io_priority(p: &oci_spec::runtime::LinuxIOPriority) -> Result<()> {
    use oci_spec::runtime::IOPriorityClass as C;
    let class = match p.class() {
        C::IoprioClassRt => 1,
        C::IoprioClassBe => 2,
        C::IoprioClassIdle => 3,
    };
    crate::sys::ioprio_set(class, p.priority()).step("ioprio_set", None)
}

/// `process.scheduler`, with sched_setattr(2).
pub fn set_scheduler(s: &oci_spec::runtime::Scheduler) -> Result<()> {
    use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let flags = s
        .flags()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .fold(0u64, |acc, f| {
            acc | match f {
                F::SchedResetOnFork => 0x01,
                F::SchedFlagReclaim => 0x02,
                F::SchedFlagDLOverrun => 0x04,
                F::SchedFlagKeepPolicy => 0x08,
                F::SchedFlagKeepParams => 0x10,
                F::SchedFlagUtilClampMin => 0x20,
                F::SchedFlagUtilClampMax => 0x40,
            }
        });
    let mut attr = crate::sys::SchedAttr {
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0).max(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..Default::default()
    };
    crate::sys::sched_setattr(&mut attr).step("sched_setattr", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_home_matches_the_uid_field() {
        let line = b"user:x:1000:1000:u:/home/user:/bin/sh";
        assert_eq!(passwd_home(line, 1000).as_deref(), Some("/home/user"));
        assert_eq!(passwd_home(line, 0), None);
        assert_eq!(passwd_home(b"bad:x:notanumber:0::/x:", 0), None);
        assert_eq!(passwd_home(b"short:x:0", 0), None);
        assert_eq!(passwd_home(b"\xff\xfe:x:0:0::/h:", 0), None);
    }
}
