//! Thin wrappers around the system calls that neither std nor nix wraps. Each `unsafe` block is
//! one call with a `// SAFETY:` line; everything above this module is safe code.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub(crate) fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// The result of [`clone3`]: `None` in the child, the child's pid and pidfd in the parent.
pub struct Child {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// clone3(2) without CLONE_VM: a fork that may also create namespaces. The caller must be
/// single-threaded (berth never starts threads), so the child may allocate freely.
pub fn clone3(namespace_flags: u64) -> io::Result<Option<Child>> {
    clone3_into(namespace_flags, None)
}

/// include/uapi/linux/sched.h (libc's constant is a c_int, too narrow for it).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// [`clone3`], with the child born in the cgroup2 directory `cgroup` (CLONE_INTO_CGROUP,
/// Linux 5.7): no later write of its pid to `cgroup.procs`, which waits for the global
/// threadgroup lock.
pub fn clone3_into(namespace_flags: u64, cgroup: Option<BorrowedFd>) -> io::Result<Option<Child>> {
    let mut pidfd: RawFd = -1;
    let mut args: libc::clone_args = unsafe_zeroed_clone_args();
    args.flags = namespace_flags | libc::CLONE_PIDFD as u64;
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    args.pidfd = &mut pidfd as *mut RawFd as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    // SAFETY: args is a valid clone_args of the size passed; without CLONE_VM the child gets its
    // own copy of the address space, so returning twice is a plain fork.
    let ret = cvt(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    })?;
    if ret == 0 {
        return Ok(None);
    }
    // SAFETY: the kernel stored a new pidfd that nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Some(Child {
        pid: ret as i32,
        pidfd,
    }))
}

fn unsafe_zeroed_clone_args() -> libc::clone_args {
    // SAFETY: clone_args is plain integers; all-zero is its documented "no options" value.
    unsafe { std::mem::zeroed() }
}

/// openat2(2): open `path` relative to `dir` with RESOLVE_* flags.
pub fn openat2(dir: BorrowedFd, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: open_how is plain integers.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: c is NUL-terminated and how is a valid open_how of the size passed.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    })?;
    // SAFETY: a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: no pointers are passed.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn pidfd_send_signal(pidfd: BorrowedFd, sig: i32) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed and means "as kill(2) would send it".
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Mark every descriptor from `first` on close-on-exec, so that none of berth's own descriptors
/// reaches the container's process (CVE-2024-21626) while berth can still use them until exec.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: no pointers are passed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    })
    .map(drop)
}

/// Close every descriptor from `first` on (close_range(2)).
pub fn close_from(first: u32) -> io::Result<()> {
    // SAFETY: no pointers are passed; the caller owns no descriptor in the range any more.
    cvt(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) }).map(drop)
}

pub fn memfd_create(name: &std::ffi::CStr, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: name is NUL-terminated.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Join a new anonymous session keyring, so that the container does not share the caller's.
pub fn join_session_keyring(name: &std::ffi::CStr) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: name is NUL-terminated.
    cvt(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) })
        .map(drop)
}

/// Set the process umask; returns the previous one.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// `/proc/self/fd/N` for a descriptor: a name that the kernel resolves to exactly that file.
pub fn fd_path(fd: BorrowedFd) -> std::path::PathBuf {
    format!("/proc/self/fd/{}", fd.as_raw_fd()).into()
}

/// faccessat2(dir, path, W_OK, AT_EACCESS): whether this process, with its effective ids and
/// capabilities (not access(2)'s real ids), may open `path` for writing.
pub fn can_write_at(dir: BorrowedFd, path: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: a plain syscall on a borrowed fd and a NUL-terminated path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            libc::W_OK,
            libc::AT_EACCESS,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn setdomainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Restore the default disposition of every signal and unblock all of them, so the container's
/// process does not inherit berth's (Rust ignores SIGPIPE; `run` blocks signals it forwards).
pub fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is a valid disposition for every catchable signal; errors (for
        // signals the C library reserves) are harmless.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// Wait until the process behind `pidfd` exits, or `timeout` passes (`None`: no limit).
/// Returns whether it exited.
pub fn pidfd_wait(pidfd: BorrowedFd, timeout: Option<std::time::Duration>) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        // poll takes at most ~65 s as a u16 of milliseconds: wait in slices.
        let slice = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                PollTimeout::from(u16::try_from(left.as_millis()).unwrap_or(60_000))
            }
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
        match poll(&mut fds, slice) {
            Ok(n) if n > 0 => return Ok(true),
            Ok(_) if deadline.is_some_and(|d| std::time::Instant::now() >= d) => return Ok(false),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// open_tree(OPEN_TREE_CLONE): a detached bind mount of `path`, as an O_PATH descriptor.
pub fn open_tree_clone(path: &Path) -> io::Result<OwnedFd> {
    open_tree(path, false)
}

/// open_tree(OPEN_TREE_CLONE), with AT_RECURSIVE when `recursive` (an rbind): a detached copy
/// of the mount at `path` (and of its submounts), as an O_PATH descriptor that
/// [`move_mount`] can attach elsewhere, also from another mount or user namespace.
pub fn open_tree(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let c = cstr(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: c is NUL-terminated; no other pointers are passed.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) })?;
    // SAFETY: a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// open_tree(OPEN_TREE_CLONE | AT_EMPTY_PATH): a detached bind mount of the file `fd` names
/// (with its submounts when `recursive`), so that no path, and no /proc, is needed to bind it.
pub fn open_tree_fd(fd: BorrowedFd, recursive: bool) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let mut flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: "" is NUL-terminated; no other pointers are passed.
    let t =
        cvt(unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) })?;
    // SAFETY: a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(t as RawFd) })
}

/// A new, detached, empty read-only tmpfs (superblock and mount read-only, as
/// mount("tmpfs", MS_RDONLY) makes it), labelled with SELinux `context` when given: what
/// covers a masked directory. [`move_mount`] attaches it.
pub fn fsmount_readonly_tmpfs(context: Option<&std::ffi::CStr>) -> io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // SAFETY: "tmpfs" is NUL-terminated; no other pointers are passed.
    let fs = cvt(unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: a new descriptor that nobody else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    let config =
        |cmd: libc::c_uint, key: Option<&std::ffi::CStr>, value: Option<&std::ffi::CStr>| {
            let key = key.map_or(std::ptr::null(), |k| k.as_ptr());
            let value = value.map_or(std::ptr::null(), |v| v.as_ptr());
            // SAFETY: key and value are NUL-terminated or null, as each command wants.
            cvt(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key, value, 0) })
        };
    config(FSCONFIG_SET_STRING, Some(c"source"), Some(c"tmpfs"))?;
    config(FSCONFIG_SET_FLAG, Some(c"ro"), None)?;
    if let Some(c) = context {
        config(FSCONFIG_SET_STRING, Some(c"context"), Some(c))?;
    }
    config(FSCONFIG_CMD_CREATE, None, None)?;
    // SAFETY: fs is a configured filesystem context; no pointers are passed.
    let m = cvt(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            mount_attr::RDONLY as libc::c_uint,
        )
    })?;
    // SAFETY: a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(m as RawFd) })
}

/// move_mount(2) of the mount `from` names (a detached tree from [`open_tree`]) onto the file
/// `to` names, both by descriptor (MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH).
pub fn move_mount(from: BorrowedFd, to: BorrowedFd) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: both paths are the NUL-terminated "", no other pointers are passed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// mount_attr's attribute bits (include/uapi/linux/mount.h).
pub mod mount_attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    /// The access-time "enum": one of RELATIME (0), NOATIME, STRICTATIME.
    pub const ATIME: u64 = 0x70;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x20_0000;
    /// Map ids through the user namespace given as `userns_fd` (an idmapped mount).
    pub const IDMAP: u64 = 0x10_0000;
}

/// mount_setattr(2) on the mount `fd` names: set the attributes `set`, clear `clear`, on
/// that mount only or, with `recursive`, on every mount below it too (AT_RECURSIVE).
pub fn mount_setattr(fd: BorrowedFd, recursive: bool, set: u64, clear: u64) -> io::Result<()> {
    mount_setattr_full(fd, recursive, set, clear, None)
}

/// mount_setattr(MOUNT_ATTR_IDMAP) on the detached mount `fd` names (from [`open_tree`]):
/// ids seen through it are mapped with the mappings of the user namespace `userns`, on that
/// mount only or, with `recursive`, on every mount of the tree.
pub fn mount_set_idmap(fd: BorrowedFd, recursive: bool, userns: BorrowedFd) -> io::Result<()> {
    mount_setattr_full(fd, recursive, mount_attr::IDMAP, 0, Some(userns))
}

/// Whether the kernel has mount_setattr(2) (Linux 5.12), which idmapped mounts need: a call
/// on no descriptor fails with EBADF there, with ENOSYS before.
pub fn has_mount_setattr() -> bool {
    // SAFETY: a null attribute of size 0 is never read; the call fails on the descriptor.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    !(r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

fn mount_setattr_full(
    fd: BorrowedFd,
    recursive: bool,
    set: u64,
    clear: u64,
    userns: Option<BorrowedFd>,
) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: "" is NUL-terminated and attr is a valid mount_attr of the size passed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// mount_setattr(MOUNT_ATTR_RDONLY) on the mount `fd` names.
pub fn mount_set_readonly(fd: BorrowedFd) -> io::Result<()> {
    mount_setattr(fd, false, mount_attr::RDONLY, 0)
}

/// llistxattr(2): the NUL-separated attribute names of `path` (not following a final symlink).
pub fn llistxattr(path: &Path) -> io::Result<Vec<u8>> {
    let c = cstr(path)?;
    loop {
        // SAFETY: c is NUL-terminated; a null buffer of size 0 asks for the size.
        let size = cvt(unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) } as _)?;
        let mut buf = vec![0u8; size as usize];
        // SAFETY: buf is valid for writes of buf.len() bytes.
        match cvt(unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) } as _)
        {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            // The list grew between the two calls.
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// lgetxattr(2): the value of attribute `name` of `path`.
pub fn lgetxattr(path: &Path, name: &std::ffi::CStr) -> io::Result<Vec<u8>> {
    let c = cstr(path)?;
    loop {
        // SAFETY: c and name are NUL-terminated; a null buffer of size 0 asks for the size.
        let size =
            cvt(
                unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) } as _,
            )?;
        let mut buf = vec![0u8; size as usize];
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let r = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        match cvt(r as _) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// lsetxattr(2): set attribute `name` of `path` to `value`.
pub fn lsetxattr(path: &Path, name: &std::ffi::CStr, value: &[u8]) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: c and name are NUL-terminated; value is valid for reads of value.len() bytes.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    cvt(r as _).map(drop)
}

/// ioctl(2) with an integer argument.
pub fn ioctl_int(fd: BorrowedFd, req: libc::Ioctl, arg: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: the request takes an int by value; no memory is passed.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// ioctl(2) with a pointer to a `T` the kernel reads or fills.
pub fn ioctl_ptr<T>(fd: BorrowedFd, req: libc::Ioctl, arg: &mut T) -> io::Result<()> {
    // SAFETY: arg is a valid, exclusive `T` of the layout this request uses (callers pass the
    // request's own type: c_int for TIOCGPTN/TIOCSPTLCK, winsize for TIOCSWINSZ/TIOCGWINSZ,
    // c_long for FS_IOC_GETFLAGS, of which the kernel fills the low int).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// personality(2).
pub fn personality(persona: libc::c_ulong) -> io::Result<()> {
    // SAFETY: personality takes a plain integer.
    if unsafe { libc::personality(persona) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// ioprio_set(IOPRIO_WHO_PROCESS, 0 = this process, class << 13 | level).
pub fn ioprio_set(class: i64, level: i64) -> io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    // SAFETY: no pointers are passed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            (class << 13) | level,
        )
    })
    .map(drop)
}

/// The kernel's `struct sched_attr` (sched_setattr(2)).
#[repr(C)]
#[derive(Default)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

/// sched_setattr(2) for this process.
pub fn sched_setattr(attr: &mut SchedAttr) -> io::Result<()> {
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: attr is a valid sched_attr whose size field says how large it is.
    cvt(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *mut SchedAttr, 0) }).map(drop)
}

/// kill(2) with any signal number (real-time signals included).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: no pointers are passed.
    if unsafe { libc::kill(pid, sig) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// flock(2) on `fd` with `op` (LOCK_EX, LOCK_UN, with LOCK_NB or not).
pub fn flock(fd: BorrowedFd, op: libc::c_int) -> io::Result<()> {
    // SAFETY: no pointers are passed; fd is a live descriptor for the call's duration.
    if unsafe { libc::flock(fd.as_raw_fd(), op) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set IFF_UP on `lo` of the calling thread's network namespace (SIOCGIFFLAGS, SIOCSIFFLAGS).
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) takes no pointers; its descriptor is owned at once.
    let sock = cvt(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }
            as libc::c_long,
    )?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(sock as RawFd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    // SAFETY: the ioctl writes the flags into `req`, which lives through the call.
    cvt(
        unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } as libc::c_long,
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: the ioctl reads `req`, which lives through the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } as libc::c_long)?;
    Ok(())
}

/// sched_setaffinity(2) of the calling thread: `mask` holds one bit per CPU, lowest first.
pub fn set_affinity(mask: &[u64]) -> io::Result<()> {
    // SAFETY: the kernel reads `mask.len() * 8` bytes from the slice, which outlives the call.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_sched_setaffinity,
            0,
            std::mem::size_of_val(mask),
            mask.as_ptr(),
        )
    })?;
    Ok(())
}

/// sched_getaffinity(2) of the calling thread, as [`set_affinity`] takes it back.
pub fn affinity() -> io::Result<Vec<u64>> {
    let mut mask = vec![0u64; 16]; // 1024 CPUs; doubled until the kernel's cpumask fits
    loop {
        // SAFETY: the kernel writes at most `mask.len() * 8` bytes into the vector.
        match cvt(unsafe {
            libc::syscall(
                libc::SYS_sched_getaffinity,
                0,
                std::mem::size_of_val(mask.as_slice()),
                mask.as_mut_ptr(),
            )
        }) {
            Ok(_) => return Ok(mask),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && mask.len() < 1 << 16 => {
                mask.resize(mask.len() * 2, 0)
            }
            Err(e) => return Err(e),
        }
    }
}

/// set_mempolicy(2) of the calling thread: `mode` (with its flags) and a node mask of `bits`
/// bits held in `mask` (empty: no nodes).
pub fn set_mempolicy(mode: i32, mask: &[u64], bits: u64) -> io::Result<()> {
    let bits = bits.min(mask.len() as u64 * 64);
    let (ptr, maxnode) = if bits == 0 {
        (std::ptr::null(), 0)
    } else {
        // The kernel reads maxnode - 1 bits (mm/mempolicy.c, get_nodes).
        (mask.as_ptr(), bits + 1)
    };
    // SAFETY: the kernel reads at most `bits` bits from `mask`, which holds that many and
    // outlives the call; a null mask with maxnode 0 is "no nodes".
    cvt(unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) })?;
    Ok(())
}
