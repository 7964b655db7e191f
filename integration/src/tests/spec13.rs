//! runtime-spec 1.2/1.3 fields: `process.execCPUAffinity`, `linux.intelRdt` where resctrl is
//! absent, `linux.netDevices`, `linux.memoryPolicy`.

use std::fs;

use serde_json::json;

use super::{read_trim, WAIT_FOR_GO};
use crate::context::Ctx;
use crate::harness::{Test, TestResult};
use crate::{ensure, ensure_eq, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        exec_cpu_affinity,
        exec_cpu_affinity_errors,
        intel_rdt_without_resctrl,
    ]
}

/// `Cpus_allowed_list` of a process's status text.
fn cpus_allowed(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// runc 1.3 has execCPUAffinity; the tests need CPUs 0 and 1 online.
fn need_exec_cpu_affinity(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 3) {
        skip!("runc before 1.3 predates process.execCPUAffinity (runtime-spec 1.2.1)");
    }
    let online = read_trim("/sys/devices/system/cpu/online".as_ref())?;
    if !(online.starts_with("0-") || online.starts_with("0,1")) {
        skip!("needs CPUs 0 and 1 online (online: {online})");
    }
    Ok(())
}

/// Write a process.json running `grep Cpus_allowed_list` with the given execCPUAffinity.
fn process_json(dir: &std::path::Path, affinity: serde_json::Value) -> Result<String, String> {
    let p = dir.join("process.json");
    let spec = json!({"args": ["/bin/grep", "Cpus_allowed_list", "/proc/self/status"],
        "cwd": "/", "env": ["PATH=/bin:/usr/bin"], "execCPUAffinity": affinity});
    fs::write(&p, spec.to_string()).map_err(|e| e.to_string())?;
    Ok(p.to_string_lossy().into_owned())
}

/// config.json's lists are not applied to init (runtime-spec: "not applicable to the
/// container's init process") but to every exec; an exec's own lists replace them; `initial`
/// alone stays the process's affinity (the kernel keeps the requested mask through the cpuset
/// move), `final` is what the process ends with.
fn exec_cpu_affinity(ctx: &Ctx) -> TestResult {
    need_exec_cpu_affinity(ctx)?;
    let host = cpus_allowed(&fs::read_to_string("/proc/self/status")?);
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.cfg.set(
        "/process/execCPUAffinity",
        json!({"initial": "0", "final": "1"}),
    );
    b.run_detached().ok()?;
    let init = fs::read_to_string(format!("/proc/{}/status", b.pid()?))?;
    ensure_eq!(cpus_allowed(&init), host, "init's Cpus_allowed_list");
    let rt = &ctx.rt;
    let out = rt
        .exec(&[
            "exec",
            &b.id,
            "grep",
            "Cpus_allowed_list",
            "/proc/self/status",
        ])
        .ok()?;
    ensure_eq!(
        cpus_allowed(&out.stdout),
        "1",
        "exec with config.json's lists (final 1)"
    );
    for (affinity, want) in [
        (json!({"initial": "1"}), "1"),
        (json!({"initial": "1", "final": "0"}), "0"),
        (json!({"final": "0-1"}), "0-1"),
        (json!({"initial": " 0, 1,"}), "0-1"),
        (json!({"final": ""}), "1"),
    ] {
        let p = process_json(&b.dir, affinity.clone())?;
        let out = rt.exec(&["exec", "--process", &p, &b.id]).ok()?;
        ensure_eq!(
            cpus_allowed(&out.stdout),
            want,
            format!("exec --process with execCPUAffinity {affinity}")
        );
    }
    fs::write(b.dir.join("shared/go"), "")?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// A CPU that is not online fails the exec and names the list; a list that is not one fails
/// create already, although init does not use it.
fn exec_cpu_affinity_errors(ctx: &Ctx) -> TestResult {
    need_exec_cpu_affinity(ctx)?;
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.run_detached().ok()?;
    let rt = &ctx.rt;
    for (affinity, name) in [
        (json!({"initial": "1000"}), "initial"),
        (json!({"final": "1000"}), "final"),
    ] {
        let p = process_json(&b.dir, affinity)?;
        let out = rt.exec(&["exec", "--process", &p, &b.id]).failed()?;
        out.stderr_mentions(name)?;
        if !rt.is_runc() {
            out.stderr_mentions(&format!("process.execCPUAffinity.{name}"))?;
        }
    }
    let p = process_json(&b.dir, json!({"initial": "1-0"}))?;
    let out = rt.exec(&["exec", "--process", &p, &b.id]).failed()?;
    out.stderr_mentions("1-0")?;
    ensure!(b.status().as_deref() == Some("running"), "still running");
    fs::write(b.dir.join("shared/go"), "")?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    drop(b);

    let mut b = ctx.bundle()?;
    b.cfg.args(&["true"]);
    b.cfg
        .set("/process/execCPUAffinity", json!({"final": "2-1"}));
    let out = b.run(&[]).failed()?;
    out.stderr_mentions("final")?;
    out.stderr_mentions("2-1")?;
    b.ensure_clean()
}

/// Is a resctrl filesystem mounted (in the suite's mount namespace, a copy of the host's)?
fn resctrl_mounted() -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|t| t.lines().any(|l| l.contains(" - resctrl ")))
        .unwrap_or(false)
}

/// Without resctrl, a schema is refused with runc's words (CAT, MBA); berth refuses any
/// `linux.intelRdt` (the runtime-spec: "If no mounted resctrl pseudo-filesystem is available
/// ... the runtime MUST generate an error"), where runc 1.3 runs a closID-only container
/// without RDT. Nothing is left behind.
fn intel_rdt_without_resctrl(ctx: &Ctx) -> TestResult {
    if resctrl_mounted() {
        skip!("resctrl is mounted here: the test is about a host without it");
    }
    let mut cases = vec![
        (
            json!({"l3CacheSchema": "L3:0=f"}),
            "Intel RDT/CAT is not enabled",
        ),
        (
            json!({"memBwSchema": "MB:0=50"}),
            "Intel RDT/MBA is not enabled",
        ),
    ];
    if !ctx.rt.is_runc() {
        cases.push((
            json!({"closID": "g"}),
            "Intel RDT is not supported or enabled",
        ));
        cases.push((json!({}), "linux.intelRdt"));
    }
    for (rdt, want) in cases {
        let mut b = ctx.bundle()?;
        b.cfg.args(&["true"]);
        b.cfg.set("/linux/intelRdt", rdt.clone());
        let out = b.run(&[]).failed()?;
        out.stderr_mentions(want)?;
        if !ctx.rt.is_runc() {
            out.stderr_mentions("no resctrl filesystem is mounted")?;
        }
        ensure!(
            b.status().is_none(),
            "no container after the refusal of {rdt}"
        );
        b.ensure_clean()?;
    }
    Ok(())
}
