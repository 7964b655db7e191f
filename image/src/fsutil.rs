//! File-system helpers: `openat2(RESOLVE_IN_ROOT)`, *at-style creation and removal that never
//! follow a final symlink, atomic file writes, locks.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

fn cstr(p: &[u8]) -> io::Result<CString> {
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `openat2(2)`. `resolve` is a set of `libc::RESOLVE_*` flags.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &[u8],
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let p = cstr(if path.is_empty() { b"." } else { path })?;
    // SAFETY: open_how is plain data; the kernel reads `size` bytes of it.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        mode as u64
    } else {
        0
    };
    how.resolve = resolve;
    loop {
        // SAFETY: valid fd, NUL-terminated path, and a correctly sized open_how.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                p.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            // SAFETY: the kernel returned a new descriptor that we now own.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as i32) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) && e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Resolution flags for paths inside a root: `..` and absolute symlinks stay in the root, no
/// magic links (/proc/self/fd), no crossing into other mounts is not required (snapshots may be
/// mounts).
pub const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// Open a directory (O_PATH) for `path` (relative, '/'-separated) inside `root`; every symlink on
/// the way is resolved as if `root` were `/`.
pub fn open_dir_in_root(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    openat2(root, path, libc::O_PATH | libc::O_DIRECTORY, 0, IN_ROOT)
}

/// Open a file for reading inside `root` (symlinks resolved inside `root`).
pub fn open_file_in_root(root: &Path, path: &str) -> io::Result<File> {
    let r = File::open(root)?;
    let fd = openat2(
        r.as_fd(),
        path.trim_start_matches('/').as_bytes(),
        libc::O_RDONLY,
        0,
        IN_ROOT,
    )?;
    Ok(File::from(fd))
}

pub fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx("open directory", path)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `None` when it does not exist.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<libc::stat>> {
    let c = cstr(if name.is_empty() { b"." } else { name })?;
    // SAFETY: stat is plain data filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, C string and stat buffer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH,
        )
    };
    if r == 0 {
        Ok(Some(st))
    } else {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(None)
        } else {
            Err(e)
        }
    }
}

/// `fstat(2)` of any descriptor (O_PATH ones too, of files as well as directories).
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a stat buffer we own.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0 {
        Ok(st)
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Remove `name` in `dir` whatever it is; a directory with all its content (never following a
/// symlink, never leaving the file system of `dir`... see `remove_tree_at`). Missing is fine.
pub fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    let c = cstr(name)?;
    if is_dir(&st) {
        remove_tree_at(dir, name)?;
        // SAFETY: valid fd and C string.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(e);
            }
        }
    } else {
        // SAFETY: valid fd and C string.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOENT) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Remove `name` in `dir` only when it is an empty regular file or an empty directory (never
/// following a symlink). Returns whether it was removed.
pub fn remove_empty_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(false);
    };
    let flags = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG if st.st_size == 0 => 0,
        libc::S_IFDIR => libc::AT_REMOVEDIR,
        _ => return Ok(false),
    };
    let c = cstr(name)?;
    // SAFETY: valid fd and C string; AT_REMOVEDIR fails on a directory that is not empty.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOTEMPTY) | Some(libc::EEXIST) | Some(libc::ENOENT) => Ok(false),
        _ => Err(e),
    }
}

/// Set the access and modification times of the file open at `fd` (`futimens`).
pub fn set_times(
    fd: BorrowedFd<'_>,
    atime: libc::timespec,
    mtime: libc::timespec,
) -> io::Result<()> {
    let times = [atime, mtime];
    // SAFETY: valid fd and an array of two timespecs.
    if unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Remove the content of directory `name` in `dir` (not the directory itself). Descends with
/// O_NOFOLLOW|O_DIRECTORY opens, so a symlink is removed, never followed; refuses to cross into
/// another mount (EXDEV).
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let fd = openat2(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV | libc::RESOLVE_BENEATH,
    )?;
    clear_dir(fd.as_fd())
}

/// Remove everything inside the directory `fd`.
pub fn clear_dir(fd: BorrowedFd<'_>) -> io::Result<()> {
    let names = list_dir(fd)?;
    for n in names {
        remove_at(fd, n.as_bytes())?;
    }
    Ok(())
}

/// The names in directory `fd` (without `.` and `..`).
pub fn list_dir(fd: BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    let dup = openat2(fd, b".", libc::O_RDONLY | libc::O_DIRECTORY, 0, 0)?;
    let mut d = nix::dir::Dir::from_fd(dup).map_err(io::Error::from)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(io::Error::from)?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        out.push(OsStr::from_bytes(n).to_os_string());
    }
    Ok(out)
}

/// Remove a path (file, symlink or whole tree), staying on its file system; missing is fine.
pub fn remove_path(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let Some(name) = path.file_name() else {
        return Err(Error::invalid("path", format!("{path:?} has no file name")));
    };
    let pfd = match File::open(parent) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("open {}", parent.display()), e)),
    };
    remove_at(pfd.as_fd(), name.as_bytes()).ctx("remove", path)
}

/// Write `data` to `path` atomically: a temp file beside it, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_replacing(path, data, true)
}

/// Write `data` to `path` atomically (a temp file beside it, renamed) but not durably: for
/// files a later `syncfs` makes durable, or that need not survive a crash.
pub fn write_atomic_unsynced(path: &Path, data: &[u8]) -> Result<()> {
    write_replacing(path, data, false)
}

fn write_replacing(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_name(dir, path.file_name().map(|n| n.as_bytes()).unwrap_or(b"f"));
    let r = (|| -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.ctx("write", path)
}

/// Start time of process `pid` (field 22 of `/proc/PID/stat`, clock ticks since boot).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This process as the owner of temporary work: `<pid>.<start time>`, so that another process
/// can tell when the owner is gone (a pid alone may be reused).
pub fn owner_tag() -> String {
    let pid = std::process::id();
    format!("{pid}.{}", process_start_time(pid).unwrap_or(0))
}

/// Whether the owner named by `tag` (see `owner_tag`) is gone. An unreadable tag is never
/// called gone: only what is provably stale is removed.
pub fn owner_gone(tag: &str) -> bool {
    let Some((pid, start)) = tag.split_once('.') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    match process_start_time(pid) {
        None => true,
        Some(now) => now != start,
    }
}

/// A unique name for a temp file in `dir` owned by this process: `.tmp-<owner tag>-<base>-<random>`.
pub fn owned_temp_name(dir: &Path, base: &[u8]) -> PathBuf {
    let base = String::from_utf8_lossy(base);
    dir.join(format!(".tmp-{}-{}-{}", owner_tag(), base, random_hex(8)))
}

/// The owner tag of a name made by `owned_temp_name` (or any `<prefix><tag>-...`).
pub fn owner_of<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix)?.split('-').next()
}

/// A unique name for a temp file in `dir`.
pub fn temp_name(dir: &Path, base: &[u8]) -> PathBuf {
    let base = String::from_utf8_lossy(base);
    dir.join(format!(".tmp-{}-{}", base, random_hex(8)))
}

/// `n` random bytes as hex (from getrandom).
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        // SAFETY: writes at most n - filled bytes into the buffer.
        let r = unsafe {
            libc::getrandom(b[filled..].as_mut_ptr() as *mut libc::c_void, n - filled, 0)
        };
        if r > 0 {
            filled += r as usize;
        }
    }
    crate::digest::to_hex(&b)
}

/// `fsync` a directory by path.
pub fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .ctx("fsync", path)
}

/// `syncfs(2)` on the file system holding `path`.
pub fn syncfs(path: &Path) -> Result<()> {
    let f = File::open(path).ctx("open", path)?;
    // SAFETY: valid fd.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(Error::io(
            format!("syncfs {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// `flock(f, op)`, retried on EINTR.
pub fn flock(f: &File, op: i32) -> io::Result<()> {
    loop {
        // SAFETY: valid fd.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// An advisory lock (flock) on a file, released on drop.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn shared(path: &Path) -> Result<FileLock> {
        Self::take(path, libc::LOCK_SH)
    }
    pub fn exclusive(path: &Path) -> Result<FileLock> {
        Self::take(path, libc::LOCK_EX)
    }
    fn take(path: &Path, op: i32) -> Result<FileLock> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx("open lock", path)?;
        flock(&f, op).ctx("lock", path)?;
        Ok(FileLock { _file: f })
    }
}

/// `renameat2(RENAME_NOREPLACE)`: Ok(false) when `to` exists.
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<bool> {
    let f = cstr(from.as_os_str().as_bytes()).ctx("rename", from)?;
    let t = cstr(to.as_os_str().as_bytes()).ctx("rename", to)?;
    // SAFETY: valid C strings. The raw system call: musl's libc has no renameat2 wrapper.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => Ok(false),
        _ => Err(Error::io(
            format!("rename {} to {}", from.display(), to.display()),
            e,
        )),
    }
}

pub(crate) fn c_name(name: &[u8]) -> io::Result<CString> {
    cstr(name)
}

pub(crate) fn errno_result(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Seconds since the epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
