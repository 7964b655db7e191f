//! Linux security modules: `process.apparmorProfile`, `process.selinuxLabel` and
//! `linux.mountLabel` (issue 10, item 18), as runc applies them.
//!
//! Without the LSM (this project's hosts: no AppArmor, no SELinux) each fails the way runc does:
//! a profile in init, at the write of the exec attribute (EINVAL; create fails, nothing left);
//! a process label at validation, in runc's words; a mount label at the first mount that gets
//! `context=` (the /dev tmpfs; EINVAL). With AppArmor (the cgroup v2 VM: Debian's 6.1 kernel
//! has it as its default LSM) two small profiles are loaded with apparmor_parser and the test
//! checks that init's process and exec'd processes run under them. With SELinux (the VM booted
//! with `security=selinux`, where hack/vm/stage2 loads Debian's selinux-policy-default,
//! permissive: hack/test.sh's SELinux VM pass) the process label of init and of exec'd
//! processes and the mount label of a tmpfs and its files are checked.
//! runc 1.1.5 and 1.3 differ only in the attribute's path in the message
//! (/proc/self/attr/... in 1.1, /proc/thread-self/attr/... in 1.3, as berth).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::{read_trim, wait_file, WAIT_FOR_GO};
use crate::context::Ctx;
use crate::harness::{Failure, Test, TestResult};
use crate::{ensure, fail, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        lsm_apparmor_profile_not_loaded_fails_in_init,
        lsm_selinux_label_without_selinux_is_a_validation_error,
        lsm_mount_label_without_selinux_fails_at_the_mount,
        lsm_apparmor_profile_confines_init_and_exec,
        lsm_selinux_label_applies_to_init_and_exec,
        lsm_selinux_mount_label_labels_tmpfs_and_its_files,
    ]
}

/// runc's validation error for a process label without SELinux.
const SELINUX_DISABLED: &str =
    "selinux label is specified in config, but selinux is disabled or not supported";

/// Whether AppArmor is the host's (enabled) LSM: runc's test, after mounting securityfs.
pub(super) fn apparmor_enabled() -> bool {
    std::fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|b| b.first() == Some(&b'Y'))
        && ensure_securityfs()
        && Path::new("/sys/kernel/security/apparmor").exists()
}

/// Mount securityfs on /sys/kernel/security if it is not (systemd and hack/vm/init mount it at
/// boot; a bare host may not). The suite runs in a mount namespace of its own, so the mount
/// goes away with it.
fn ensure_securityfs() -> bool {
    let p = Path::new("/sys/kernel/security");
    if p.join("lsm").exists() {
        return true;
    }
    Command::new("mount")
        .args(["-t", "securityfs", "securityfs"])
        .arg(p)
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether SELinux is enabled (selinuxfs mounted and a label other than `kernel`).
pub(super) fn selinux_enabled() -> bool {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|mi| {
        mi.lines().any(|l| {
            l.split_once(" - ")
                .is_some_and(|(_, r)| r.starts_with("selinuxfs "))
        })
    });
    mounted
        && std::fs::read_to_string("/proc/self/attr/current")
            .is_ok_and(|c| c.trim_end_matches(['\0', '\n']) != "kernel")
}

/// Why an SELinux test is skipped where SELinux is not enabled.
const NO_SELINUX: &str = "SELinux is not enabled (no selinuxfs or no policy loaded); it runs in \
                          the cgroup v2 VM booted with security=selinux, where hack/vm/stage2 \
                          loads selinux-policy-default permissive (hack/test.sh's vm-selinux pass)";

/// Whether the loaded policy takes `context` (selinuxfs's context file: EINVAL when not).
fn selinux_context_valid(context: &str) -> bool {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open("/sys/fs/selinux/context")
        .and_then(|mut f| f.write(context.as_bytes()))
        .is_ok()
}

/// A container process type and a file type of the loaded policy, as `user:role:type` prefixes
/// (the MCS level is added by the caller): container_t and container_file_t where the policy
/// has the container module (Fedora's, runc's and podman's defaults), else refpolicy's virt
/// types, which Debian's selinux-policy-default has (it ships no container module).
pub(super) fn selinux_types() -> Result<(&'static str, &'static str), Failure> {
    for (process, file) in [
        (
            "system_u:system_r:container_t",
            "system_u:object_r:container_file_t",
        ),
        (
            "system_u:system_r:svirt_t",
            "system_u:object_r:svirt_image_t",
        ),
    ] {
        if selinux_context_valid(&format!("{process}:s0"))
            && selinux_context_valid(&format!("{file}:s0"))
        {
            return Ok((process, file));
        }
    }
    skip!("the loaded SELinux policy has neither container_t/container_file_t nor svirt_t/svirt_image_t")
}

/// An SELinux label as /proc/PID/attr/current shows it (NUL-terminated).
pub(super) fn trim_label(s: &str) -> &str {
    s.trim_end_matches(['\0', '\n'])
}

/// The security.selinux xattr of `p` (not following a final symlink).
fn file_label(p: &Path) -> Result<String, Failure> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| Failure::Fail(format!("{}: path has a NUL", p.display())))?;
    let mut buf = [0u8; 512];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"security.selinux".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        fail!(
            "getxattr {} security.selinux: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(trim_label(&String::from_utf8_lossy(&buf[..n as usize])).to_string())
}

/// A profile name no one loads.
fn missing_profile() -> String {
    format!("berth-it-{}-never-loaded", std::process::id())
}

/// A profile the kernel does not know: init fails writing the exec attribute (no AppArmor:
/// EINVAL, as no LSM takes the attribute; AppArmor: ENOENT, no such profile), and `create`
/// reports it and leaves nothing behind. runc 1.3 behaves the same (it has no earlier check).
fn lsm_apparmor_profile_not_loaded_fails_in_init(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg
        .set("/process/apparmorProfile", json!(missing_profile()));
    let out = b.create(&[]).failed()?;
    out.stderr_mentions("apparmor")?;
    out.stderr_mentions("attr/")?;
    if apparmor_enabled() {
        out.stderr_mentions("no such file or directory")?;
    } else {
        out.stderr_mentions("invalid argument")?;
    }
    b.ensure_clean()
}

/// `process.selinuxLabel` without SELinux: runc's validation error, for `create` and for
/// `exec --process-label` (and an exec process.json with the label), nothing started.
fn lsm_selinux_label_without_selinux_is_a_validation_error(ctx: &Ctx) -> TestResult {
    if selinux_enabled() {
        skip!("SELinux is enabled here: a label is valid");
    }
    let label = "system_u:system_r:container_t:s0:c1,c2";
    let mut b = ctx.bundle()?;
    b.cfg.set("/process/selinuxLabel", json!(label));
    let out = b.create(&[]).failed()?;
    out.stderr_mentions(SELINUX_DISABLED)?;
    b.ensure_clean()?;

    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.sh(&format!("touch /shared/ready; {WAIT_FOR_GO}"));
    b.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    let out = ctx
        .rt
        .exec(&["exec", "--process-label", label, &b.id, "true"])
        .failed()?;
    out.stderr_mentions(SELINUX_DISABLED)?;
    let process = b.dir.join("process.json");
    std::fs::write(
        &process,
        json!({
            "args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "env": ["PATH=/bin"], "selinuxLabel": label
        })
        .to_string(),
    )?;
    let p = process.to_string_lossy().into_owned();
    let out = ctx.rt.exec(&["exec", "--process", &p, &b.id]).failed()?;
    out.stderr_mentions(SELINUX_DISABLED)?;
    std::fs::write(shared.join("go"), "")?;
    Ok(())
}

/// `linux.mountLabel` without SELinux: runc does not check it, it adds `context="..."` to the
/// data of the mounts it labels (tmpfs, devpts, mqueue not, proc and sysfs not), and the
/// kernel refuses the first one, the /dev tmpfs, with EINVAL. berth does the same, and says
/// why.
fn lsm_mount_label_without_selinux_fails_at_the_mount(ctx: &Ctx) -> TestResult {
    if selinux_enabled() {
        skip!("SELinux is enabled here: a mount label is valid");
    }
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/mountLabel",
        json!("system_u:object_r:container_file_t:s0:c1,c2"),
    );
    let out = b.create(&[]).failed()?;
    out.stderr_mentions("/dev")?;
    out.stderr_mentions("invalid argument")?;
    b.ensure_clean()
}

/// Loaded AppArmor profiles, removed on drop.
pub(super) struct Profiles {
    files: Vec<PathBuf>,
}

impl Profiles {
    pub(super) fn load(dir: &Path, names: &[&str]) -> Result<Profiles, Failure> {
        let mut p = Profiles { files: Vec::new() };
        for name in names {
            // Permissive but enforcing: the container's shell and the runtime's access to it
            // (signals, /proc/PID, setns) must work; the label is what the test checks.
            let text = format!(
                "profile {name} flags=(attach_disconnected,mediate_deleted) {{\n  capability,\n  \
                 file,\n  network,\n  mount,\n  umount,\n  pivot_root,\n  signal,\n  ptrace,\n}}\n"
            );
            let f = dir.join(format!("{name}.profile"));
            std::fs::write(&f, text)?;
            let out = Command::new("apparmor_parser")
                .args(["--replace", "--skip-cache"])
                .arg(&f)
                .output();
            match out {
                Err(e) => skip!("apparmor_parser (Debian's apparmor package) cannot run: {e}"),
                Ok(o) if !o.status.success() => fail!(
                    "apparmor_parser --replace {}: {}: {}",
                    f.display(),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Ok(_) => p.files.push(f),
            }
        }
        Ok(p)
    }
}

impl Drop for Profiles {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = Command::new("apparmor_parser")
                .arg("--remove")
                .arg(f)
                .output();
        }
    }
}

/// With AppArmor: the container's process runs under `process.apparmorProfile` (its own
/// /proc/self/attr/current, and /proc/PID/attr/current seen from the host), an exec'd process
/// under the container's profile by default and under `exec --apparmor`'s when given.
fn lsm_apparmor_profile_confines_init_and_exec(ctx: &Ctx) -> TestResult {
    if !apparmor_enabled() {
        skip!(
            "AppArmor is not enabled on this kernel (no /sys/module/apparmor/parameters/enabled \
             = Y or no securityfs); it runs in the cgroup v2 VM (Debian's 6.1 kernel)"
        );
    }
    let tag = std::process::id();
    let (pa, pb) = (format!("berth-it-{tag}-a"), format!("berth-it-{tag}-b"));
    let dir = ctx.scratch_dir("apparmor")?;
    let _profiles = Profiles::load(&dir, &[&pa, &pb])?;

    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.set("/process/apparmorProfile", json!(pa));
    b.cfg.sh(&format!(
        "cat /proc/self/attr/current > /shared/label; touch /shared/ready; {WAIT_FOR_GO}"
    ));
    b.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    let want = |label: &str, profile: &str, what: &str| -> TestResult {
        let l = label.trim_end_matches(['\0', '\n']);
        ensure!(
            l == format!("{profile} (enforce)"),
            "{what}: label {l:?}, want \"{profile} (enforce)\""
        );
        Ok(())
    };
    want(&read_trim(&shared.join("label"))?, &pa, "container process")?;
    let pid = b.pid()?;
    let host_view = std::fs::read_to_string(format!("/proc/{pid}/attr/current"))?;
    want(&host_view, &pa, "container process seen from the host")?;

    let out = ctx
        .rt
        .exec(&["exec", &b.id, "cat", "/proc/self/attr/current"])
        .ok()?;
    want(&out.stdout, &pa, "exec (the container's profile)")?;
    let out = ctx
        .rt
        .exec(&[
            "exec",
            "--apparmor",
            &pb,
            &b.id,
            "cat",
            "/proc/self/attr/current",
        ])
        .ok()?;
    want(&out.stdout, &pb, "exec --apparmor")?;
    std::fs::write(shared.join("go"), "")?;
    Ok(())
}

/// With SELinux (permissive, a policy loaded): the container's process runs with
/// `process.selinuxLabel` (its own /proc/self/attr/current, and /proc/PID/attr/current seen from
/// the host), an exec'd process with the container's label by default, with `exec
/// --process-label`'s when given, and with a process.json's `selinuxLabel`.
fn lsm_selinux_label_applies_to_init_and_exec(ctx: &Ctx) -> TestResult {
    if !selinux_enabled() {
        skip!("{NO_SELINUX}");
    }
    let (process, _) = selinux_types()?;
    let (la, lb) = (format!("{process}:s0:c1,c2"), format!("{process}:s0:c3,c4"));

    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.set("/process/selinuxLabel", json!(la));
    b.cfg.sh(&format!(
        "cat /proc/self/attr/current > /shared/label; touch /shared/ready; {WAIT_FOR_GO}"
    ));
    b.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    let want = |got: &str, label: &str, what: &str| -> TestResult {
        let got = trim_label(got);
        ensure!(got == label, "{what}: label {got:?}, want {label:?}");
        Ok(())
    };
    want(
        &std::fs::read_to_string(shared.join("label"))?,
        &la,
        "container process",
    )?;
    let pid = b.pid()?;
    let host_view = std::fs::read_to_string(format!("/proc/{pid}/attr/current"))?;
    want(&host_view, &la, "container process seen from the host")?;

    let out = ctx
        .rt
        .exec(&["exec", &b.id, "cat", "/proc/self/attr/current"])
        .ok()?;
    want(&out.stdout, &la, "exec (the container's label)")?;
    let out = ctx
        .rt
        .exec(&[
            "exec",
            "--process-label",
            &lb,
            &b.id,
            "cat",
            "/proc/self/attr/current",
        ])
        .ok()?;
    want(&out.stdout, &lb, "exec --process-label")?;
    let process = b.dir.join("process.json");
    std::fs::write(
        &process,
        json!({
            "args": ["cat", "/proc/self/attr/current"], "cwd": "/",
            "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"], "selinuxLabel": lb
        })
        .to_string(),
    )?;
    let p = process.to_string_lossy().into_owned();
    let out = ctx.rt.exec(&["exec", "--process", &p, &b.id]).ok()?;
    want(&out.stdout, &lb, "exec --process with selinuxLabel")?;
    std::fs::write(shared.join("go"), "")?;
    Ok(())
}

/// With SELinux: `linux.mountLabel` is the `context=` option of a tmpfs mount (and of /dev's
/// tmpfs), shown in the container's /proc/self/mountinfo, and the mount's root and the files
/// made on it have that label.
fn lsm_selinux_mount_label_labels_tmpfs_and_its_files(ctx: &Ctx) -> TestResult {
    if !selinux_enabled() {
        skip!("{NO_SELINUX}");
    }
    let (_, file) = selinux_types()?;
    let label = format!("{file}:s0:c1,c2");

    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.set("/linux/mountLabel", json!(label));
    b.cfg
        .add_mount("/labelled", "tmpfs", "tmpfs", &["size=1m", "mode=755"]);
    // A masked directory's tmpfs has the label too (runc's maskPath; berth makes it with
    // fsopen and the `context` parameter).
    std::fs::create_dir_all(b.rootfs().join("masked"))?;
    b.cfg.push("/linux/maskedPaths", json!("/masked"));
    b.cfg.sh(&format!(
        "cat /proc/self/mountinfo > /shared/mountinfo; echo x > /labelled/f; \
         touch /shared/ready; {WAIT_FOR_GO}"
    ));
    b.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    let mountinfo = std::fs::read_to_string(shared.join("mountinfo"))?;
    let option = format!("context=\"{label}\"");
    let mounts = crate::mountinfo::parse(&mountinfo);
    for dest in ["/labelled", "/dev", "/masked"] {
        let m = crate::mountinfo::require(&mounts, dest)?;
        // The label holds commas (s0:c1,c2): look in the joined super options.
        let supers = m.super_opts.join(",");
        ensure!(
            m.fstype == "tmpfs" && supers.contains(&option),
            "{dest}: want a tmpfs with {option} in its super options: {m:?}"
        );
    }
    let pid = b.pid()?;
    let root = PathBuf::from(format!("/proc/{pid}/root/labelled"));
    for p in [root.clone(), root.join("f")] {
        let got = file_label(&p)?;
        ensure!(
            got == label,
            "{}: label {got:?}, want {label:?}",
            p.display()
        );
    }
    std::fs::write(shared.join("go"), "")?;
    Ok(())
}
