//! Start-up as real clients drive it: `create` + `start` for a process user without
//! CAP_DAC_OVERRIDE, in a user namespace and without a mount namespace (the exec fifo), the
//! process's cwd and stdio as runc hands them over, and user namespaces joined by path or given
//! with an empty path. Each test is a defect a real client (docker, podman, ctr) hit on berth.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::{host_ns, key_values, map_to_userns, wait_file, WAIT_FOR_GO};
use crate::context::Ctx;
use crate::harness::{Failure, Test, TestResult};
use crate::{ensure, ensure_eq, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        users_home_from_container_passwd,
        users_hostile_container_passwd,
        users_create_start_non_root_without_dac_override,
        users_create_start_in_user_namespace,
        users_create_start_without_mount_namespace,
        users_stdio_owned_by_process_user,
        users_cwd_entered_before_user_switch,
        users_cwd_check_before_seccomp,
        users_joined_user_namespace_becomes_root,
        users_namespace_empty_path_is_new,
        users_foreground_tty_keeps_newlines,
        users_no_capabilities_field_means_none,
        users_oom_score_adj_in_user_namespace,
    ]
}

/// `create` + `start` of a container, waiting for `/shared/out` (written by `script`).
fn create_start_out(b: &mut crate::fixture::Bundle, script: &str) -> Result<String, Failure> {
    let shared = b.shared()?;
    b.cfg.sh(&format!(
        "{{ {script}; }} > /shared/out.tmp 2>&1; mv /shared/out.tmp /shared/out"
    ));
    b.create(&[]).ok()?;
    b.start().ok()?;
    wait_file(&shared.join("out"))?;
    Ok(fs::read_to_string(shared.join("out"))?)
}

/// docker/podman/ctr `--user` with the default capabilities (no CAP_DAC_OVERRIDE): init opens
/// the exec fifo after switching to the user, so it must be 0622 whatever berth's umask.
fn users_create_start_non_root_without_dac_override(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg
        .set("/process/user", json!({"uid": 65534, "gid": 65534}));
    let out = create_start_out(&mut b, "id -u; id -g")?;
    ensure_eq!(out, "65534\n65534\n", "ids of the started process");
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// A user-namespaced container through `create` + `start`: the fifo belongs to the
/// container's root (host uid 100000), as runc chowns it.
fn users_create_start_in_user_namespace(ctx: &Ctx) -> TestResult {
    use std::os::unix::fs::MetadataExt;
    let mut b = ctx.bundle()?;
    map_to_userns(&mut b)?;
    let shared = b.shared()?;
    b.cfg
        .sh("id -u > /shared/out.tmp; mv /shared/out.tmp /shared/out");
    b.create(&[]).ok()?;
    // runc's exec fifo: 0622 whatever the caller's umask, owned by the container's root.
    let fifo = fs::metadata(ctx.rt.root.join(&b.id).join("exec.fifo"))?;
    ensure_eq!(fifo.mode() & 0o7777, 0o622, "exec.fifo mode");
    ensure_eq!(
        (fifo.uid(), fifo.gid()),
        (100000, 100000),
        "exec.fifo owner"
    );
    b.start().ok()?;
    wait_file(&shared.join("out"))?;
    ensure_eq!(fs::read_to_string(shared.join("out"))?, "0\n", "uid inside");
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// No mount namespace: berth chroots into the rootfs, where there is no /proc, and init must
/// still reopen the exec fifo when `start` comes.
fn users_create_start_without_mount_namespace(ctx: &Ctx) -> TestResult {
    if ctx.rt.runc.is_some() {
        skip!("runc does not chroot without a mount namespace and then fails in a rootfs without /proc (\"error closing exec fds: open /proc/self/fd\"), leaving its rootfs bind mount on the host");
    }
    let mut b = ctx.bundle()?;
    b.cfg.ns_remove("mount");
    b.cfg.set("/mounts", json!([]));
    b.cfg.set("/root/readonly", json!(false));
    b.cfg.remove("/linux/maskedPaths");
    b.cfg.remove("/linux/readonlyPaths");
    b.cfg.args(&["/bin/sh", "-c", "echo started > /started"]);
    b.create(&[]).ok()?;
    b.start().ok()?;
    let started = b.rootfs().join("started");
    wait_file(&started)?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// runc gives the process's user the uid of its stdio (here the harness's files), so that a
/// server run as a user may open /dev/stdout (docker's and the shim's fifos likewise).
fn users_stdio_owned_by_process_user(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg
        .set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.cfg
        .sh("echo owner $(stat -L -c %u:%g /proc/$$/fd/1); echo reopened >> /dev/stdout");
    let out = b.run(&[]).ok()?;
    let kv = key_values(&out.stdout);
    ensure_eq!(
        kv.get("owner").map(String::as_str),
        Some("1000:0"),
        "owner of stdout (uid of the user, gid kept)"
    );
    ensure!(
        out.stdout.contains("reopened"),
        "the user could not reopen /dev/stdout: {}",
        out.describe()
    );
    Ok(())
}

/// A cwd only root can enter: runc enters it before switching to the user.
fn users_cwd_entered_before_user_switch(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let dir = b.rootfs().join("secret");
    fs::create_dir(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    b.cfg
        .set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.cfg.set("/process/cwd", json!("/secret"));
    b.cfg.args(&[
        "/bin/sh",
        "-c",
        "echo cwd $PWD; ls . >/dev/null 2>&1 || echo denied yes",
    ]);
    let kv = key_values(&b.run_ok()?);
    ensure_eq!(kv.get("cwd").map(String::as_str), Some("/secret"), "cwd");
    ensure!(
        kv.contains_key("denied"),
        "the user could list a 0700 root directory"
    );
    Ok(())
}

/// A profile that denies getcwd (without noNewPrivileges, so it is loaded before the user
/// switch): the CVE-2024-21626 check of the cwd must run before the filter, as crun does
/// (a documented improvement on runc).
/// runc 1.2+ checks after it and fails; runc 1.1.5 predates the check.
fn users_cwd_check_before_seccomp(ctx: &Ctx) -> TestResult {
    if ctx.rt.runc.is_some() {
        skip!("runc (1.3, and Debian's 1.1.5 with the CVE-2024-21626 fix) checks the cwd after loading seccomp; berth follows crun's order");
    }
    let mut b = ctx.bundle()?;
    b.cfg.set("/process/noNewPrivileges", json!(false));
    b.cfg.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }),
    );
    b.cfg.args(&["/bin/echo", "ran"]);
    ensure_eq!(b.run_ok()?.trim(), "ran", "output");
    Ok(())
}

/// Joining a user namespace by path: the process becomes that namespace's root (runc's
/// setresuid(0)), else it is the overflow uid and devpts refuses its gid=5 (EOVERFLOW).
fn users_joined_user_namespace_becomes_root(ctx: &Ctx) -> TestResult {
    let mut a = ctx.bundle()?;
    let shared = a.shared()?;
    map_to_userns(&mut a)?;
    a.cfg.sh(&format!("touch /shared/ready; {WAIT_FOR_GO}"));
    a.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    let pid = a.pid()?;

    let mut b = ctx.bundle()?;
    // The mappings stay: runc 1.1 requires them with a joined user namespace (1.2+ reads
    // them from the namespace); berth accepts both.
    map_to_userns(&mut b)?;
    b.cfg.ns_remove("user");
    b.cfg.ns_join("user", &format!("/proc/{pid}/ns/user"));
    b.cfg
        .sh("echo uid $(id -u); echo userns $(readlink /proc/self/ns/user)");
    let run = b.run_ok();
    fs::write(shared.join("go"), "")?;
    let kv = key_values(&run?);
    ensure_eq!(kv.get("uid").map(String::as_str), Some("0"), "uid inside");
    let want = fs::read_link(format!("/proc/{pid}/ns/user"))?;
    ensure_eq!(
        kv.get("userns").map(String::as_str).unwrap_or(""),
        want.to_string_lossy(),
        "joined user namespace"
    );
    a.wait_status("stopped")?;
    Ok(())
}

/// `"path": ""` means a new namespace, as runc reads it.
fn users_namespace_empty_path_is_new(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.ns_remove("uts");
    b.cfg
        .push("/linux/namespaces", json!({"type": "uts", "path": ""}));
    b.cfg
        .sh("echo uts $(readlink /proc/self/ns/uts); echo host $(hostname)");
    let kv = key_values(&b.run_ok()?);
    ensure!(
        kv.get("uts").map(String::as_str) != Some(host_ns("uts").as_str()),
        "the uts namespace is the host's"
    );
    ensure_eq!(kv.get("host").map(String::as_str), Some("runc"), "hostname");
    Ok(())
}

/// A foreground `run` with a terminal relays the container's pty itself: like runc, with ONLCR
/// cleared on it, so the container's `\n` reaches the caller's terminal unchanged (`script`'s
/// own pty is set to `-onlcr` too, so any `\r` seen came from the container's pty).
fn users_foreground_tty_keeps_newlines(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/process/terminal", json!(true));
    b.cfg.args(&["echo", "444"]);
    b.write_config()?;
    let inner = format!(
        "stty -onlcr; exec '{}' --root '{}' run --bundle '{}' {}",
        ctx.rt.path.display(),
        ctx.rt.root.display(),
        b.dir.display(),
        b.id
    );
    let out = std::process::Command::new("timeout")
        .args(["-k", "5", "30", "script", "-qec", &inner, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .stdin(std::process::Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).replace('\0', "");
    ensure!(
        out.status.success() && text.contains("444"),
        "run under script failed: {:?}, output {text:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !text.contains("444\r"),
        "the container's pty turned \\n into \\r\\n: {text:?}"
    );
    Ok(())
}

/// A config without `process.capabilities` gives the process no capabilities at all, as runc
/// 1.1 does; berth used to keep its own full set (found by the differential fuzzer). runc
/// 1.2+ leaves the capabilities alone when the field is missing, so its process keeps root's
/// full set: berth keeps dropping them all, a documented deviation that only narrows
/// privileges (README, "Deviations from runc").
fn users_no_capabilities_field_means_none(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.remove("/process/capabilities");
    b.cfg.args(&["grep", "^Cap", "/proc/self/status"]);
    let out = b.run_ok()?;
    if ctx.rt.is_runc() && !ctx.rt.is_runc_before(1, 2) {
        let eff = out
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(str::trim)
            .unwrap_or("missing");
        ensure!(
            eff != "0000000000000000",
            "runc 1.2+ was expected to keep root's capabilities: CapEff {eff}"
        );
        skip!("runc 1.2+ keeps root's capabilities without process.capabilities (CapEff {eff}); berth drops them all");
    }
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let v = out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{set}:")))
            .map(str::trim)
            .unwrap_or("missing");
        ensure_eq!(v, "0000000000000000", set);
    }
    Ok(())
}

/// `oomScoreAdj` in a user-namespaced container: runc writes it from the host before init
/// enters any namespace; written by init from inside, /proc/self/oom_score_adj refused it
/// (found by the differential fuzzer).
fn users_oom_score_adj_in_user_namespace(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    map_to_userns(&mut b)?;
    b.cfg.set("/process/oomScoreAdj", json!(500));
    b.cfg.args(&["cat", "/proc/self/oom_score_adj"]);
    ensure_eq!(b.run_ok()?.trim(), "500", "oom_score_adj");
    Ok(())
}

/// Without HOME (or with an empty one) in `process.env`, runc sets it from the container's
/// /etc/passwd entry of the process's uid, `/` without one (runc 1.1.5 and 1.3.6 alike;
/// `ctr run` relies on it: containerd sends no HOME). berth set none. Also for `exec`.
fn users_home_from_container_passwd(ctx: &Ctx) -> TestResult {
    let cases: [(u32, Option<&str>, &str); 5] = [
        (0, None, "/root"),
        (1000, None, "/home/user"),
        (4242, None, "/"),
        (1000, Some("/elsewhere"), "/elsewhere"),
        (0, Some(""), "/root"),
    ];
    for (uid, home, want) in cases {
        let mut b = ctx.bundle()?;
        let mut env = vec!["PATH=/bin:/usr/bin".to_string()];
        if let Some(h) = home {
            env.push(format!("HOME={h}"));
        }
        b.cfg.set("/process/env", json!(env));
        b.cfg.set("/process/user", json!({"uid": uid, "gid": uid}));
        b.cfg.sh("echo \"[$HOME]\"");
        let out = b.run_ok()?;
        ensure_eq!(
            out.trim(),
            format!("[{want}]"),
            format!("HOME of uid {uid} with env HOME {home:?}")
        );
        b.ensure_clean()?;
    }
    let mut b = ctx.bundle()?;
    b.cfg.set("/process/env", json!(["PATH=/bin:/usr/bin"]));
    b.cfg.args(&["sleep", "3600"]);
    b.run_detached().ok()?;
    let out = ctx
        .rt
        .exec(&[
            "exec",
            "--user",
            "1000:1000",
            &b.id,
            "sh",
            "-c",
            "echo \"[$HOME]\"",
        ])
        .ok()?;
    ensure_eq!(
        out.stdout.trim(),
        "[/home/user]",
        "HOME of an exec'd process"
    );
    b.kill("KILL").ok()?;
    b.wait_status("stopped")?;
    Ok(())
}

/// The container's /etc/passwd is the image's: hostile ones (issue 11 item 9) must not stop
/// or exhaust init. A FIFO there (runc blocks on it forever) and a 1 GiB sparse file (berth
/// reads at most 16 MiB of it): the container runs, with HOME `/`.
fn users_hostile_container_passwd(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc() {
        skip!("runc opens the container's /etc/passwd and waits on a FIFO there forever");
    }
    for kind in ["fifo", "sparse"] {
        let mut b = ctx.bundle()?;
        let passwd = b.rootfs().join("etc/passwd");
        fs::remove_file(&passwd)?;
        if kind == "fifo" {
            nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644))
                .map_err(std::io::Error::from)?;
        } else {
            fs::File::create(&passwd)?.set_len(1 << 30)?;
        }
        b.cfg.set("/process/env", json!(["PATH=/bin:/usr/bin"]));
        b.cfg.sh("echo \"[$HOME]\"");
        let out = b.run_ok()?;
        ensure_eq!(out.trim(), "[/]", format!("HOME with a {kind} /etc/passwd"));
        b.ensure_clean()?;
    }
    Ok(())
}
