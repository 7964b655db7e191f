//! Linux security modules, applied as runc 1.3 applies them: the AppArmor profile
//! (`process.apparmorProfile`) and the SELinux process label (`process.selinuxLabel`) through the
//! exec attribute of the calling thread, so that they take effect at the user's execve; the
//! SELinux mount label (`linux.mountLabel`) as the `context="..."` option of the mounts runc
//! gives it to.
//!
//! Where runc checks: a process label on a host without SELinux is a validation error
//! ([`SELINUX_DISABLED`]); a profile on a host without AppArmor fails in init at the write
//! (EINVAL: no LSM takes the attribute); a mount label is passed to the kernel regardless, which
//! refuses `context=` without SELinux (EINVAL at the first labelled mount).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{InitError, Result};

/// runc's validation error for a process label without SELinux (clients match on it).
pub const SELINUX_DISABLED: &str =
    "selinux label is specified in config, but selinux is disabled or not supported";

/// Open the calling thread's attribute file `sub` (e.g. `attr/exec`) for writing:
/// /proc/thread-self, or /proc/self on kernels without it (before 3.17).
fn open_attr(sub: &str) -> std::io::Result<(std::fs::File, PathBuf)> {
    let thread = PathBuf::from("/proc/thread-self").join(sub);
    let open = |p: &Path| std::fs::OpenOptions::new().write(true).open(p);
    match open(&thread) {
        Err(e)
            if e.raw_os_error() == Some(libc::ENOENT)
                && !Path::new("/proc/thread-self").exists() =>
        {
            let p = PathBuf::from("/proc/self").join(sub);
            open(&p).map(|f| (f, p))
        }
        r => r.map(|f| (f, thread)),
    }
}

/// Write `value` to the thread's attribute `sub` in one write(2) (the LSM parses one write).
fn write_attr(sub: &str, value: &[u8]) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    let (mut f, path) =
        open_attr(sub).map_err(|e| (PathBuf::from("/proc/thread-self").join(sub), e))?;
    // A zero-length write clears the attribute (SELinux); write_all would not call write(2).
    let n = f.write(value).map_err(|e| (path.clone(), e))?;
    if n != value.len() {
        return Err((path, std::io::Error::from_raw_os_error(libc::EIO)));
    }
    Ok(())
}

/// `process.apparmorProfile`: `exec <profile>` to the thread's AppArmor exec attribute
/// (attr/apparmor/exec, or attr/exec on kernels before 5.8), as libapparmor's
/// aa_change_onexec and runc do. The profile applies from the next execve on.
pub fn apply_apparmor_profile(profile: &str) -> Result<()> {
    if profile.is_empty() {
        return Ok(());
    }
    let sub = if Path::new("/proc/self/attr/apparmor/exec").exists() {
        "attr/apparmor/exec"
    } else {
        "attr/exec"
    };
    let step = format!("apply AppArmor profile {profile:?}");
    write_attr(sub, format!("exec {profile}").as_bytes()).map_err(|(path, err)| {
        let mut e = InitError::new(step, Some(&path), err);
        // The container's /sys has no securityfs: judge by the errno. No LSM takes the
        // attribute: EINVAL; AppArmor without such a profile: ENOENT.
        if !Path::new("/proc/self/attr").exists() {
            e.msg.push_str(" (no procfs at /proc in the container)");
        } else if e.errno == Some(libc::EINVAL) {
            e.msg.push_str(" (AppArmor is not enabled on this host)");
        } else if e.errno == Some(libc::ENOENT) {
            e.msg
                .push_str(" (is the profile loaded? see /sys/kernel/security/apparmor/profiles)");
        }
        e
    })
}

/// Whether SELinux is enabled, as go-selinux's GetEnabled decides: selinuxfs is mounted
/// (read-write at /sys/fs/selinux, or anywhere per mountinfo) and the current label is not
/// `kernel`. Decided once per process (go-selinux caches it too): init asks more than once.
pub fn selinux_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(probe_selinux)
}

fn probe_selinux() -> bool {
    let fs_ok = |p: &Path| {
        nix::sys::statfs::statfs(p).is_ok_and(|s| {
            s.filesystem_type() == nix::sys::statfs::SELINUX_MAGIC
                && nix::sys::statvfs::statvfs(p)
                    .is_ok_and(|v| !v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        })
    };
    let mounted = fs_ok(Path::new("/sys/fs/selinux"))
        || std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|mi| {
            crate::procfs::parse_mountinfo(&mi)
                .iter()
                .any(|m| m.fstype == "selinuxfs")
        });
    if !mounted {
        return false;
    }
    let current = std::fs::read("/proc/thread-self/attr/current")
        .or_else(|_| std::fs::read("/proc/self/attr/current"))
        .unwrap_or_default();
    let current = String::from_utf8_lossy(&current);
    current.trim_end_matches(['\0', '\n']) != "kernel"
}

/// `process.selinuxLabel`: the label the next execve gives the process (attr/exec); an empty
/// label clears it. No-op without SELinux for an empty label (go-selinux's writeCon).
pub fn set_selinux_exec_label(label: &str) -> Result<()> {
    if label.is_empty() && !selinux_enabled() {
        return Ok(());
    }
    write_attr("attr/exec", label.as_bytes()).map_err(|(path, err)| {
        InitError::new(
            format!("set SELinux process label {label:?}"),
            Some(&path),
            err,
        )
    })
}

/// The label of keys the thread creates (attr/keycreate): runc labels the container's session
/// keyring with the process label. A kernel without the file, or clearing it without the
/// permission, is not an error (go-selinux's SetKeyLabel).
pub fn set_selinux_key_label(label: &str) -> Result<()> {
    if label.is_empty() && !selinux_enabled() {
        return Ok(());
    }
    match write_attr("attr/keycreate", label.as_bytes()) {
        Err((_, e)) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err((_, e)) if label.is_empty() && e.raw_os_error() == Some(libc::EACCES) => Ok(()),
        Err((path, err)) => Err(InitError::new(
            format!("set SELinux key label {label:?}"),
            Some(&path),
            err,
        )),
        Ok(()) => Ok(()),
    }
}

/// Mount data with the mount label as SELinux's `context` option (go-selinux's
/// FormatMountLabel: appended, quoted, whether or not SELinux is enabled).
pub fn format_mount_label(data: &str, label: Option<&str>) -> String {
    match label.filter(|l| !l.is_empty()) {
        None => data.to_string(),
        Some(l) if data.is_empty() => format!("context=\"{l}\""),
        Some(l) => format!("{data},context=\"{l}\""),
    }
}

/// The label of a mount point's root, set as an xattr (runc labels mqueue this way), following
/// `path` (a /proc/self/fd link): only with SELinux enabled and a label.
pub fn set_file_label(path: &Path, label: Option<&str>) -> Result<()> {
    let Some(label) = label.filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    if !selinux_enabled() {
        return Ok(());
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| InitError::msg("set SELinux file label", Some(path), "path has a NUL"))?;
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"security.selinux".as_ptr(),
            label.as_ptr().cast(),
            label.len(),
            0,
        )
    };
    if r != 0 {
        return Err(InitError::new(
            "set SELinux file label",
            Some(path),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// A hint for a mount refused with EINVAL while a mount label was given on a host without
/// SELinux: the kernel has nothing to take `context=`.
pub fn mount_label_hint(err: &mut InitError, label: Option<&str>) {
    if err.errno == Some(libc::EINVAL) && label.is_some_and(|l| !l.is_empty()) && !selinux_enabled()
    {
        err.msg.push_str(
            " (linux.mountLabel adds the context= option, which needs SELinux; it is not enabled on this host)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::format_mount_label;

    #[test]
    fn mount_label_is_appended_quoted_as_go_selinux_does() {
        assert_eq!(format_mount_label("", None), "");
        assert_eq!(format_mount_label("mode=755", Some("")), "mode=755");
        assert_eq!(
            format_mount_label("", Some("system_u:object_r:container_file_t:s0")),
            "context=\"system_u:object_r:container_file_t:s0\""
        );
        assert_eq!(
            format_mount_label("mode=755,size=65536k", Some("a:b:c:s0:c1,c2")),
            "mode=755,size=65536k,context=\"a:b:c:s0:c1,c2\""
        );
    }
}
