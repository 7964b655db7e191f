//! Mounting overlayfs with many lower layers.
//!
//! `mount(2)` takes the options as one page (4096 bytes, NUL included), and with this store's
//! absolute snapshot paths (~100 bytes each) `lowerdir=` fills a page at about 40 layers. So:
//! 1. when the options fit in a page: one plain `mount(2)`;
//! 2. else the new mount API: `fsopen("overlay")`, one `fsconfig("lowerdir+", dir)` per layer
//!    (Linux 6.8+; no length limit but the kernel's 500 layers), `fsmount`, `move_mount`;
//! 3. else (older kernels) short relative names, like containerd's chdir trick and Docker's
//!    `l/` links: a temporary directory next to the mount point holds one symlink per layer,
//!    named by its index in base 36 (`0`, `1`, ... `dr`: at most 3 bytes a layer); a thread
//!    with its own working directory (`unshare(CLONE_FS)`, so the process's never changes)
//!    `chdir`s there and mounts with `lowerdir=0:1:...`; overlayfs resolves the links at mount
//!    time, and the directory is removed right after;
//! 4. else a clear error naming the layer count and the limits.
//!
//! More than 500 lower layers (`MAX_LOWER_LAYERS`, overlayfs's `OVL_MAX_STACK`) is refused up
//! front with a clear error (the copy snapshotter has no such limit).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// overlayfs's limit on lower layers (`OVL_MAX_STACK`).
pub const MAX_LOWER_LAYERS: usize = 500;
/// `mount(2)` copies at most one page of options, NUL included.
const PAGE_LIMIT: usize = 4095;

/// How an overlay was (or is to be) mounted; `Auto` tries them in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Auto,
    /// One `mount(2)` with absolute paths.
    Plain,
    /// `fsopen` + `fsconfig("lowerdir+")` per layer.
    FsConfig,
    /// `mount(2)` with short relative names: symlinks in a temporary directory that a thread
    /// uses as its own working directory.
    ShortLinks,
}

/// The parsed options of an overlay mount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Options {
    lowers: Vec<String>,
    upper: Option<String>,
    work: Option<String>,
    /// Anything else (`key=value` or a flag), passed through.
    other: Vec<String>,
}

impl Options {
    fn parse(options: &[String]) -> Options {
        let mut o = Options::default();
        for opt in options {
            if let Some(l) = opt.strip_prefix("lowerdir=") {
                o.lowers
                    .extend(l.split(':').filter(|s| !s.is_empty()).map(str::to_string));
            } else if let Some(u) = opt.strip_prefix("upperdir=") {
                o.upper = Some(u.to_string());
            } else if let Some(w) = opt.strip_prefix("workdir=") {
                o.work = Some(w.to_string());
            } else {
                o.other.push(opt.clone());
            }
        }
        o
    }

    /// The `mount(2)` data string.
    fn data(&self) -> String {
        self.data_with(&self.lowers)
    }

    /// The `mount(2)` data string with `lowers` in place of the lower dirs.
    fn data_with(&self, lowers: &[String]) -> String {
        let mut v = vec![format!("lowerdir={}", lowers.join(":"))];
        if let Some(u) = &self.upper {
            v.push(format!("upperdir={u}"));
        }
        if let Some(w) = &self.work {
            v.push(format!("workdir={w}"));
        }
        v.extend(self.other.iter().cloned());
        v.join(",")
    }
}

fn cstring(s: &[u8], what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(what, "NUL byte in overlay option"))
}

/// Mount an overlay with `options` (containerd's form: `lowerdir=a:b`, `upperdir=`,
/// `workdir=`, ...) on `target`, trying the strategies in order (see the module doc).
/// Returns the one that worked.
pub fn mount(options: &[String], target: &Path, strategy: Strategy) -> Result<Strategy> {
    let o = Options::parse(options);
    if o.lowers.is_empty() {
        return Err(Error::invalid("overlay mount", "no lowerdir"));
    }
    if o.lowers.len() > MAX_LOWER_LAYERS {
        return Err(Error::Unsupported(format!(
            "{} lower layers: overlayfs stacks at most {MAX_LOWER_LAYERS} (flatten the image, or \
             use the copy snapshotter)",
            o.lowers.len()
        )));
    }
    let target = std::path::absolute(target)
        .map_err(|e| Error::io(format!("resolve {}", target.display()), e))?;
    let plain = o.data();
    let fits = plain.len() < PAGE_LIMIT;
    if strategy == Strategy::Plain || (strategy == Strategy::Auto && fits) {
        mount_data(&plain, &target, None)?;
        return Ok(Strategy::Plain);
    }
    let mut tried = vec![format!(
        "one mount(2): {} bytes of options, over a page",
        plain.len()
    )];
    if matches!(strategy, Strategy::Auto | Strategy::FsConfig) {
        match mount_fsconfig(&o, &target) {
            Ok(()) => return Ok(Strategy::FsConfig),
            Err(FsConfigError::Unsupported(why)) if strategy == Strategy::Auto => {
                tried.push(format!("fsconfig lowerdir+: {why}"))
            }
            Err(FsConfigError::Unsupported(why)) => {
                return Err(Error::Unsupported(format!(
                    "overlay on {} with fsconfig(\"lowerdir+\"): {why}",
                    target.display()
                )))
            }
            Err(FsConfigError::Failed(e)) => return Err(e),
        }
    }
    let data = o.data_with(&short_names(o.lowers.len()));
    if data.len() >= PAGE_LIMIT {
        tried.push(format!("short names: still {} bytes", data.len()));
        return Err(Error::Unsupported(format!(
            "overlay with {} lower layers on {}: the options do not fit ({})",
            o.lowers.len(),
            target.display(),
            tried.join("; ")
        )));
    }
    let links = LinkDir::create(&target, &o.lowers)?;
    let r = mount_data(&data, &target, Some(&links.0));
    drop(links);
    r?;
    Ok(Strategy::ShortLinks)
}

/// `0`, `1`, ... `z`, `10`, ...: base-36 names for `n` layers.
fn short_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|mut i| {
            let mut s = Vec::new();
            loop {
                s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[i % 36]);
                i /= 36;
                if i == 0 {
                    break;
                }
            }
            s.reverse();
            String::from_utf8(s).expect("ASCII")
        })
        .collect()
}

/// A temporary directory of symlinks `<short name>` -> lower dir, removed on drop.
struct LinkDir(PathBuf);

impl LinkDir {
    fn create(target: &Path, lowers: &[String]) -> Result<LinkDir> {
        let parent = target.parent().unwrap_or(Path::new("/"));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = parent.join(format!(".{name}.lowers-{}", crate::fsutil::random_hex(6)));
        std::fs::create_dir(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let links = LinkDir(dir);
        for (n, l) in short_names(lowers.len()).iter().zip(lowers) {
            let p = links.0.join(n);
            std::os::unix::fs::symlink(l, &p)
                .map_err(|e| Error::io(format!("symlink {} -> {l}", p.display()), e))?;
        }
        Ok(links)
    }
}

impl Drop for LinkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `mount(2)` of an overlay with `data`; with `cwd`, from a thread whose working directory is
/// `cwd` (its own: `unshare(CLONE_FS)`, so the process's cwd never changes).
fn mount_data(data: &str, target: &Path, cwd: Option<&Path>) -> Result<()> {
    let do_mount = |data: &str| {
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data),
        )
        .map_err(|e| {
            Error::io(
                format!("mount overlay on {}", target.display()),
                io::Error::from(e),
            )
        })
    };
    let Some(cwd) = cwd else {
        return do_mount(data);
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(|e| {
                Error::io("unshare(CLONE_FS) for a relative overlay mount", e.into())
            })?;
            nix::unistd::chdir(cwd)
                .map_err(|e| Error::io(format!("chdir {}", cwd.display()), e.into()))?;
            do_mount(data).map_err(|e| match e {
                Error::Io { context, err } => Error::Io {
                    context: format!("{context} (lower dirs relative to {})", cwd.display()),
                    err,
                },
                e => e,
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::io(
                "overlay mount",
                io::Error::other("thread panicked"),
            ))
        })
    })
}

enum FsConfigError {
    /// This kernel cannot do it (no fsopen, no `lowerdir+`, a path over 255 bytes).
    Unsupported(String),
    /// It can, and the mount failed.
    Failed(Error),
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// The kernel's messages on a filesystem context (`read(2)` of the fsopen fd), for errors.
fn fs_messages(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..16 {
        // SAFETY: valid fd and buffer of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push(String::from_utf8_lossy(&buf[..n as usize]).into_owned());
    }
    if out.is_empty() {
        String::new()
    } else {
        format!(" (kernel: {})", out.join("; "))
    }
}

fn fsconfig(
    fd: &OwnedFd,
    cmd: libc::c_uint,
    key: Option<&CString>,
    value: Option<&CString>,
) -> io::Result<()> {
    // SAFETY: valid fd; key and value are NUL-terminated strings or null, as `cmd` wants.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            cmd,
            key.map_or(std::ptr::null(), |k| k.as_ptr()),
            value.map_or(std::ptr::null(), |v| v.as_ptr()),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn mount_fsconfig(o: &Options, target: &Path) -> std::result::Result<(), FsConfigError> {
    let failed = |what: String, e: io::Error| FsConfigError::Failed(Error::io(what, e));
    // SAFETY: a NUL-terminated name and a flag; returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    if r < 0 {
        return Err(FsConfigError::Unsupported(format!(
            "fsopen: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: the kernel returned a new descriptor that we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(r as i32) };
    let key = |k: &str| cstring(k.as_bytes(), "overlay option").map_err(FsConfigError::Failed);
    // The source shown in mountinfo, as mount(2) with "overlay" would show it.
    let _ = fsconfig(
        &fd,
        FSCONFIG_SET_STRING,
        Some(&key("source")?),
        Some(&key("overlay")?),
    );
    let lower_key = key("lowerdir+")?;
    for (i, l) in o.lowers.iter().enumerate() {
        let v = cstring(l.as_bytes(), "lowerdir").map_err(FsConfigError::Failed)?;
        if let Err(e) = fsconfig(&fd, FSCONFIG_SET_STRING, Some(&lower_key), Some(&v)) {
            let msgs = fs_messages(&fd);
            // EINVAL on the first: an overlayfs without lowerdir+ (before 6.8), or a path
            // longer than fsconfig's 255 bytes: either way, another strategy may work.
            if i == 0 || l.len() > 255 {
                return Err(FsConfigError::Unsupported(format!("{e}{msgs}")));
            }
            return Err(failed(format!("fsconfig lowerdir+ {l}{msgs}"), e));
        }
    }
    for (k, v) in [("upperdir", &o.upper), ("workdir", &o.work)] {
        if let Some(v) = v {
            let cv = cstring(v.as_bytes(), k).map_err(FsConfigError::Failed)?;
            if let Err(e) = fsconfig(&fd, FSCONFIG_SET_STRING, Some(&key(k)?), Some(&cv)) {
                if v.len() > 255 {
                    return Err(FsConfigError::Unsupported(format!("{k} over 255 bytes")));
                }
                return Err(failed(format!("fsconfig {k}={v}{}", fs_messages(&fd)), e));
            }
        }
    }
    for opt in &o.other {
        let r = match opt.split_once('=') {
            Some((k, v)) => fsconfig(
                &fd,
                FSCONFIG_SET_STRING,
                Some(&key(k)?),
                Some(&cstring(v.as_bytes(), k).map_err(FsConfigError::Failed)?),
            ),
            None if opt == "rw" => Ok(()),
            None => fsconfig(&fd, FSCONFIG_SET_FLAG, Some(&key(opt)?), None),
        };
        r.map_err(|e| failed(format!("fsconfig {opt}{}", fs_messages(&fd)), e))?;
    }
    fsconfig(&fd, FSCONFIG_CMD_CREATE, None, None).map_err(|e| {
        failed(
            format!(
                "create overlay ({} lower layers) for {}{}",
                o.lowers.len(),
                target.display(),
                fs_messages(&fd)
            ),
            e,
        )
    })?;
    // SAFETY: valid fs context fd; returns a new mount fd or -1.
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fd.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if m < 0 {
        return Err(failed(
            format!("fsmount overlay for {}", target.display()),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: the kernel returned a new descriptor that we now own.
    let mfd = unsafe { OwnedFd::from_raw_fd(m as i32) };
    let ct =
        cstring(target.as_os_str().as_bytes(), "mount target").map_err(FsConfigError::Failed)?;
    // SAFETY: valid mount fd, empty path with F_EMPTY_PATH, NUL-terminated target.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mfd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            ct.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(failed(
            format!("move_mount overlay to {}", target.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_short_names() {
        let opts = vec![
            "lowerdir=/r/snapshots/committed/aa/fs:/r/snapshots/committed/bb/fs".to_string(),
            "upperdir=/r/snapshots/active/c/fs".to_string(),
            "workdir=/r/snapshots/active/c/work".to_string(),
            "index=off".to_string(),
        ];
        let o = Options::parse(&opts);
        assert_eq!(o.lowers.len(), 2);
        assert_eq!(o.data(), opts.join(","));
        assert_eq!(
            o.data_with(&short_names(2)),
            "lowerdir=0:1,upperdir=/r/snapshots/active/c/fs,\
             workdir=/r/snapshots/active/c/work,index=off"
        );
        let n = short_names(MAX_LOWER_LAYERS);
        assert_eq!(n[35], "z");
        assert_eq!(n[36], "10");
        assert_eq!(n[499], "dv");
        assert_eq!(
            n.iter().collect::<std::collections::HashSet<_>>().len(),
            500
        );
        // 500 layers fit in a page with room for long upper and work dirs.
        assert!(n.join(":").len() < 1500);
    }

    #[test]
    fn too_many_layers_is_a_clear_error() {
        let lowers: Vec<String> = (0..=MAX_LOWER_LAYERS).map(|i| format!("/l/{i}")).collect();
        let opts = vec![format!("lowerdir={}", lowers.join(":"))];
        let e = mount(&opts, Path::new("/nonexistent"), Strategy::Auto).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("501 lower layers"), "{msg}");
        assert!(msg.contains("at most 500"), "{msg}");
    }
}
