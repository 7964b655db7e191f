//! The container's process: hostname, domainname, sysctl, rlimits,
//! oomScoreAdj, user/groups/umask, env, cwd, args.

use std::fs;

use serde_json::json;

use super::key_values;
use crate::context::Ctx;
use crate::harness::{Test, TestResult};
use crate::{ensure, ensure_eq, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        hostname,
        domainname,
        sysctl_in_new_namespaces,
        rlimits,
        oom_score_adj,
        user_groups_umask,
        env_cwd_args,
        cwd_created_if_missing,
    ]
}

fn hostname(ctx: &Ctx) -> TestResult {
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname")?;
    let mut b = ctx.bundle()?;
    b.cfg.set("/hostname", json!("berth-box"));
    b.cfg
        .sh("echo hostname $(hostname); echo uname $(uname -n)");
    let kv = key_values(&b.run_ok()?);
    ensure_eq!(
        kv.get("hostname").map(String::as_str),
        Some("berth-box"),
        "hostname"
    );
    ensure_eq!(
        kv.get("uname").map(String::as_str),
        Some("berth-box"),
        "uname -n"
    );
    ensure_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname")?,
        host_name,
        "the host's hostname"
    );
    Ok(())
}

fn domainname(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 2) {
        skip!("runc 1.1 implements runtime-spec 1.0.2, which predates `domainname` (runtime-spec 1.1); it ignores the field");
    }
    let host_domain = fs::read_to_string("/proc/sys/kernel/domainname")?;
    let mut b = ctx.bundle()?;
    b.cfg.set("/domainname", json!("example.test"));
    b.cfg.args(&["cat", "/proc/sys/kernel/domainname"]);
    ensure_eq!(b.run_ok()?.trim(), "example.test", "domainname");
    ensure_eq!(
        fs::read_to_string("/proc/sys/kernel/domainname")?,
        host_domain,
        "the host's domainname"
    );
    Ok(())
}

fn sysctl_in_new_namespaces(ctx: &Ctx) -> TestResult {
    let host_fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?;
    let host_shm = fs::read_to_string("/proc/sys/kernel/shm_rmid_forced")?;
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/sysctl",
        json!({"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}),
    );
    b.cfg.sh("echo fwd $(cat /proc/sys/net/ipv4/ip_forward); \
         echo shm $(cat /proc/sys/kernel/shm_rmid_forced)");
    let kv = key_values(&b.run_ok()?);
    ensure_eq!(
        kv.get("fwd").map(String::as_str),
        Some("1"),
        "net.ipv4.ip_forward inside"
    );
    ensure_eq!(
        kv.get("shm").map(String::as_str),
        Some("1"),
        "kernel.shm_rmid_forced inside"
    );
    ensure_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?,
        host_fwd,
        "host net.ipv4.ip_forward"
    );
    ensure_eq!(
        fs::read_to_string("/proc/sys/kernel/shm_rmid_forced")?,
        host_shm,
        "host kernel.shm_rmid_forced"
    );
    Ok(())
}

fn rlimits(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/process/rlimits",
        json!([
            {"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
            {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]),
    );
    b.cfg.sh("echo soft $(ulimit -n); echo hard $(ulimit -Hn); \
         grep -E '^Max (processes|core file size)' /proc/self/limits | tr -s ' ' | tr ' ' _");
    let out = b.run_ok()?;
    let kv = key_values(&out);
    ensure_eq!(
        kv.get("soft").map(String::as_str),
        Some("1000"),
        "ulimit -n"
    );
    ensure_eq!(
        kv.get("hard").map(String::as_str),
        Some("2000"),
        "ulimit -Hn"
    );
    ensure!(
        out.lines().any(|l| l.starts_with("Max_processes_500_600_")),
        "RLIMIT_NPROC not 500/600: {out}"
    );
    ensure!(
        out.lines()
            .any(|l| l.starts_with("Max_core_file_size_0_0_")),
        "RLIMIT_CORE not 0/0: {out}"
    );
    Ok(())
}

fn oom_score_adj(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/process/oomScoreAdj", json!(500));
    b.cfg.args(&["cat", "/proc/self/oom_score_adj"]);
    ensure_eq!(b.run_ok()?.trim(), "500", "oom_score_adj");
    Ok(())
}

fn user_groups_umask(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/root/readonly", json!(false));
    b.cfg.set(
        "/process/user",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 0o027}),
    );
    b.cfg.sh(
        "echo uid $(id -u); echo gid $(id -g); echo name $(id -un); \
         echo groups $(grep '^Groups:' /proc/self/status | cut -f2); \
         echo umask $(umask); echo home $HOME; \
         cd /tmp && touch f && echo mode $(stat -c %a f)",
    );
    let kv = key_values(&b.run_ok()?);
    ensure_eq!(kv.get("uid").map(String::as_str), Some("1000"), "uid");
    ensure_eq!(kv.get("gid").map(String::as_str), Some("1000"), "gid");
    ensure_eq!(
        kv.get("name").map(String::as_str),
        Some("user"),
        "user name"
    );
    ensure_eq!(
        kv.get("groups").map(String::as_str),
        Some("10 20"),
        "supplementary groups"
    );
    ensure_eq!(kv.get("umask").map(String::as_str), Some("0027"), "umask");
    ensure_eq!(
        kv.get("mode").map(String::as_str),
        Some("640"),
        "mode of a new file"
    );
    Ok(())
}

fn env_cwd_args(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/process/env",
        json!(["PATH=/bin:/usr/bin", "FOO=bar baz", "EMPTY=", "HOME=/root"]),
    );
    b.cfg.set("/process/cwd", json!("/etc"));
    b.cfg.args(&[
        "sh",
        "-c",
        "echo \"cwd=$(pwd)\"; echo \"foo=$FOO\"; echo \"argv0=$0\"; echo \"argc=$#\"; \
         for a in \"$@\"; do echo \"arg=$a\"; done; env | sort",
        "zero",
        "one two",
        "",
        "three",
    ]);
    let out = b.run_ok()?;
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "cwd=/etc",
        "foo=bar baz",
        "argv0=zero",
        "argc=3",
        "arg=one two",
        "arg=",
        "arg=three",
        "EMPTY=",
        "FOO=bar baz",
        "HOME=/root",
        "PATH=/bin:/usr/bin",
    ] {
        ensure!(
            lines.contains(&want),
            "missing line {want:?} in output: {out}"
        );
    }
    ensure!(
        !out.contains("TERM=xterm"),
        "environment not replaced by process.env: {out}"
    );
    Ok(())
}

fn cwd_created_if_missing(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/root/readonly", json!(false));
    b.cfg.set("/process/cwd", json!("/new/work/dir"));
    b.cfg.args(&["pwd"]);
    ensure_eq!(b.run_ok()?.trim(), "/new/work/dir", "cwd");
    Ok(())
}
