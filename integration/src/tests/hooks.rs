//! Hooks at the six OCI points: state on stdin, args, env, phase, timeout.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{read_trim, wait_file};
use crate::context::Ctx;
use crate::fixture::Bundle;
use crate::harness::{Test, TestResult};
use crate::{ensure, ensure_eq, fail, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        hooks_run_at_their_phases,
        hook_poststart_runs_after_the_process_starts,
        hook_timeout_fails_create,
        hook_poststart_failure_stops_the_container,
        hook_poststop_failure_runs_the_remaining_hooks,
        hook_create_container_runs_in_the_rootfs,
        hooks_run_in_the_bundle,
        hook_poststop_runs_after_a_failed_create,
    ]
}

/// Every phase but poststart, whose timing has its own test (runc 1.1 runs it
/// during `create`).
const PHASES: [&str; 5] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststop",
];

/// A hook that records stdin, argv, env and its mount namespace into
/// `<markers>/<phase>.*` and appends the phase to `<markers>/order`.
fn marker_hook(markers: &Path, phase: &str) -> Value {
    let m = markers.to_string_lossy();
    let script = format!(
        "cat > {m}/{phase}.stdin; printf '%s\\n' \"$0\" \"$@\" > {m}/{phase}.args; \
         echo \"$HOOK_VAR\" > {m}/{phase}.env; readlink /proc/self/ns/mnt > {m}/{phase}.mnt; \
         echo {phase} >> {m}/order"
    );
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", script, "hook-argv0", "one", "two words"],
        "env": [format!("HOOK_VAR=env-of-{phase}"), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "timeout": 10
    })
}

fn order(markers: &Path) -> Vec<String> {
    fs::read_to_string(markers.join("order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A bundle with a `markers` dir bind-mounted at the same path inside, so
/// hooks resolving paths in either the runtime's or the container's mount
/// namespace write to the same place.
fn marker_bundle(ctx: &Ctx) -> Result<(Bundle<'_>, PathBuf), crate::harness::Failure> {
    let mut b = ctx.bundle()?;
    let markers = b.dir.join("markers");
    fs::create_dir(&markers)?;
    fs::set_permissions(&markers, fs::Permissions::from_mode(0o777))?;
    b.cfg.add_bind(&markers, &markers.to_string_lossy(), &[]);
    Ok((b, markers))
}

fn hooks_run_at_their_phases(ctx: &Ctx) -> TestResult {
    let (mut b, markers) = marker_bundle(ctx)?;
    let m = markers.to_string_lossy().into_owned();
    for p in PHASES {
        b.cfg.add_hook(p, marker_hook(&markers, p));
    }
    b.cfg.sh(&format!(
        "cp {m}/order {m}/order-at-process; touch {m}/started; \
         i=0; while [ ! -e {m}/go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"
    ));

    b.create(&[]).ok()?;
    ensure_eq!(
        order(&markers),
        ["prestart", "createRuntime", "createContainer"],
        "hooks run by create"
    );
    let pid = b.pid()?;
    let container_mnt = fs::read_link(format!("/proc/{pid}/ns/mnt"))?;

    b.start().ok()?;
    // startContainer runs in the container just before the user process,
    // which may be after `start` returns.
    wait_file(&markers.join("started"))?;
    ensure_eq!(
        order(&markers),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer"
        ],
        "hooks run by the time the user process runs"
    );
    let at_process = read_trim(&markers.join("order-at-process"))?;
    ensure!(
        at_process.starts_with("prestart\ncreateRuntime\ncreateContainer\nstartContainer"),
        "hooks run before the user process: {at_process:?}"
    );

    fs::write(markers.join("go"), "")?;
    b.wait_status("stopped")?;
    std::thread::sleep(std::time::Duration::from_millis(100));
    ensure!(
        !order(&markers).iter().any(|p| p == "poststop"),
        "poststop ran before delete"
    );
    b.delete().ok()?;
    ensure_eq!(order(&markers).len(), 5, "number of hooks run after delete");
    ensure_eq!(
        order(&markers).last().map(String::as_str),
        Some("poststop"),
        "last hook"
    );

    for p in PHASES {
        let args = fs::read_to_string(markers.join(format!("{p}.args")))?;
        ensure_eq!(
            args,
            "hook-argv0\none\ntwo words\n",
            format!("{p} hook argv")
        );
        ensure_eq!(
            read_trim(&markers.join(format!("{p}.env")))?,
            format!("env-of-{p}"),
            format!("{p} hook env")
        );
        let mnt = read_trim(&markers.join(format!("{p}.mnt")))?;
        let (want, which) = if p == "createContainer" || p == "startContainer" {
            (
                container_mnt.to_string_lossy().into_owned(),
                "the container's",
            )
        } else {
            (super::host_ns("mnt"), "the runtime's")
        };
        ensure_eq!(
            mnt,
            want,
            format!("{p} hook mount namespace (should be {which})")
        );
        let stdin = fs::read_to_string(markers.join(format!("{p}.stdin")))?;
        let st: Value = match serde_json::from_str(&stdin) {
            Ok(v) => v,
            Err(e) => fail!("{p} hook stdin is not state JSON ({e}): {stdin:?}"),
        };
        ensure_eq!(st["id"], b.id.as_str(), format!("{p} state id"));
        ensure_eq!(
            st["bundle"],
            b.dir.to_string_lossy().as_ref(),
            format!("{p} state bundle")
        );
        ensure!(
            st["ociVersion"].is_string(),
            "{p} state lacks ociVersion: {st}"
        );
        if p == "poststop" {
            ensure_eq!(st["status"], "stopped", "poststop state status");
        } else if p == "createContainer" || p == "startContainer" {
            // state.md: for hooks in the container namespace, the pid as the container sees it.
            ensure_eq!(
                st["pid"].as_u64(),
                Some(1),
                format!("{p} state pid (as seen in the container)")
            );
            ensure!(st["status"].is_string(), "{p} state lacks status: {st}");
        } else {
            ensure_eq!(
                st["pid"].as_u64(),
                Some(pid as u64),
                format!("{p} state pid")
            );
            ensure!(st["status"].is_string(), "{p} state lacks status: {st}");
        }
    }
    b.ensure_clean()
}

fn hook_poststart_runs_after_the_process_starts(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 5) {
        skip!(
            "runc runs poststart hooks during `create`, before the user process is \
             executed (runc issue #1710; moved to `start` by runc PR #5186, after 1.4)"
        );
    }
    let (mut b, markers) = marker_bundle(ctx)?;
    let m = markers.to_string_lossy().into_owned();
    b.cfg.add_hook(
        "poststart",
        json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!(
                "cat > {m}/poststart.stdin; \
                 pid=$(grep -o '\"pid\": *[0-9]*' {m}/poststart.stdin | grep -o '[0-9]*$'); \
                 tr '\\0' ' ' < /proc/$pid/cmdline > {m}/poststart.cmdline; echo poststart >> {m}/order")],
            "timeout": 10
        }),
    );
    b.cfg.sh(&format!(
        "i=0; while [ ! -e {m}/go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"
    ));
    b.create(&[]).ok()?;
    ensure!(
        order(&markers).is_empty(),
        "poststart ran during create: {:?}",
        order(&markers)
    );
    let pid = b.pid()?;
    b.start().ok()?;
    ensure_eq!(
        order(&markers),
        ["poststart"],
        "hooks run by the time start returns"
    );
    let st: Value = serde_json::from_str(&fs::read_to_string(markers.join("poststart.stdin"))?)?;
    ensure_eq!(st["id"], b.id.as_str(), "poststart state id");
    ensure_eq!(st["pid"].as_u64(), Some(pid as u64), "poststart state pid");
    let cmdline = read_trim(&markers.join("poststart.cmdline"))?;
    ensure!(
        cmdline.starts_with("sh -c i=0;"),
        "poststart ran before the user process was executed (pid {pid} ran {cmdline:?})"
    );
    fs::write(markers.join("go"), "")?;
    b.wait_status("stopped")?;
    Ok(())
}

fn hook_timeout_fails_create(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let marker = "7.4321";
    b.cfg.add_hook(
        "prestart",
        json!({"path": "/bin/sleep", "args": ["sleep", marker], "timeout": 1}),
    );
    let out = b.create(&[]).failed()?;
    let lower = out.stderr.to_lowercase();
    ensure!(
        lower.contains("timeout") || lower.contains("timed out"),
        "stderr does not say the hook timed out: {}",
        out.describe()
    );
    b.ensure_clean()?;
    let survivors = sleeping_hooks(marker);
    ensure!(
        survivors.is_empty(),
        "the timed-out hook is still running: pids {survivors:?}"
    );
    Ok(())
}

/// Live processes whose command line contains `arg` as an argument.
fn sleeping_hooks(arg: &str) -> Vec<u32> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.split(|c| *c == 0).any(|a| a == arg.as_bytes()) && crate::context::alive(pid)
            {
                v.push(pid);
            }
        }
    }
    v
}

/// The words of a failed poststart hook's error that tools match on: runc 1.2+ says `error
/// running poststart hook #0: ...`, runc 1.1 `error running hook #0: ...`; berth says both
/// (`error running poststart hook #0 "/bin/sh": error running hook: ...`).
fn hook_error_words(ctx: &Ctx, out: &crate::runtime::Out) -> Result<(), crate::harness::Failure> {
    if !ctx.rt.is_runc_before(1, 2) {
        out.stderr_mentions("error running poststart hook #0")?;
    }
    if !ctx.rt.is_runc() || ctx.rt.is_runc_before(1, 2) {
        out.stderr_mentions("error running hook")?;
    }
    Ok(())
}

/// A hook that prints `word` on stderr and exits 1.
fn failing_hook(word: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {word} >&2; exit 1")]})
}

/// runtime-spec 1.3: a failing poststart hook is an error, and the runtime stops the
/// container. runc (1.1 to 1.4) runs poststart hooks during `create`, so there `create`
/// fails (and removes the container); berth runs them in `start`, which fails and leaves the
/// container stopped. `run -d` fails and removes the container in both.
fn hook_poststart_failure_stops_the_container(ctx: &Ctx) -> TestResult {
    let (mut b, markers) = marker_bundle(ctx)?;
    let m = markers.to_string_lossy().into_owned();
    b.cfg
        .add_hook("poststart", failing_hook("poststart-said-no"));
    b.cfg.sh(&format!(
        "i=0; while [ ! -e {m}/go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"
    ));
    let create = b.create(&[]);
    let created = create.success();
    let failed = if created {
        b.start().failed()?
    } else if ctx.rt.is_runc() {
        create.failed()?
    } else {
        fail!("create failed: {}", create.describe());
    };
    hook_error_words(ctx, &failed)?;
    failed.stderr_mentions("poststart-said-no")?;
    if created {
        b.wait_status("stopped")?;
        b.delete().ok()?;
    }
    b.ensure_clean()?;

    let (mut b, markers) = marker_bundle(ctx)?;
    let m = markers.to_string_lossy().into_owned();
    b.cfg
        .add_hook("poststart", failing_hook("poststart-said-no"));
    b.cfg
        .add_hook("poststop", marker_hook(&markers, "poststop"));
    b.cfg.sh(&format!(
        "i=0; while [ ! -e {m}/go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"
    ));
    let out = b.run_detached().failed()?;
    hook_error_words(ctx, &out)?;
    ensure!(
        b.status().is_none(),
        "`run -d` with a failing poststart hook left the container: {:?}",
        b.status()
    );
    ensure_eq!(
        order(&markers),
        ["poststop"],
        "hooks run by the failed `run -d` (the container is destroyed)"
    );
    b.ensure_clean()
}

/// runtime-spec: "If a poststop hook fails, the runtime MUST log a warning, but the remaining
/// hooks and lifecycle continue." runc stops at the first failure (and fails `delete`):
/// berth follows the spec, see the README.
fn hook_poststop_failure_runs_the_remaining_hooks(ctx: &Ctx) -> TestResult {
    let (mut b, markers) = marker_bundle(ctx)?;
    b.cfg.add_hook("poststop", failing_hook("poststop-said-no"));
    b.cfg
        .add_hook("poststop", marker_hook(&markers, "poststop"));
    b.cfg.args(&["true"]);
    b.create(&[]).ok()?;
    b.start().ok()?;
    b.wait_status("stopped")?;
    let out = b.delete();
    ensure!(
        b.status().is_none(),
        "delete with a failing poststop hook left the container: {}",
        out.describe()
    );
    if ctx.rt.is_runc() {
        // runc: the first failure stops the poststop hooks.
        return b.ensure_clean();
    }
    out.ok()?.stderr_mentions("poststop-said-no")?;
    ensure_eq!(
        order(&markers),
        ["poststop"],
        "poststop hooks run after the first one failed"
    );
    b.ensure_clean()
}

/// runc runs createContainer hooks with the container's rootfs as their working directory.
fn hook_create_container_runs_in_the_rootfs(ctx: &Ctx) -> TestResult {
    let (mut b, markers) = marker_bundle(ctx)?;
    let m = markers.to_string_lossy().into_owned();
    b.cfg.add_hook(
        "createContainer",
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!("pwd -P > {m}/cwd")]}),
    );
    b.cfg.args(&["true"]);
    b.create(&[]).ok()?;
    let want = fs::canonicalize(b.rootfs())?;
    ensure_eq!(
        read_trim(&markers.join("cwd"))?,
        want.to_string_lossy(),
        "createContainer hook's working directory"
    );
    b.delete().ok()?;
    b.ensure_clean()
}

/// prestart, createRuntime, poststart and (in `run`) poststop hooks run in the bundle, as
/// runc runs them (it chdirs there); berth ran them in its caller's cwd (found by the
/// differential fuzzer).
fn hooks_run_in_the_bundle(ctx: &Ctx) -> TestResult {
    let (mut b, markers) = marker_bundle(ctx)?;
    let m = markers.to_string_lossy().into_owned();
    let phases = ["prestart", "createRuntime", "poststart", "poststop"];
    for p in phases {
        b.cfg.add_hook(
            p,
            json!({"path": "/bin/sh", "args": ["sh", "-c", format!("pwd -P > {m}/{p}.cwd")]}),
        );
    }
    b.cfg.args(&["true"]);
    b.run_ok()?;
    let want = fs::canonicalize(&b.dir)?;
    for p in phases {
        ensure_eq!(
            read_trim(&markers.join(format!("{p}.cwd")))?,
            want.to_string_lossy(),
            format!("{p} hook's working directory")
        );
    }
    b.ensure_clean()
}

/// A create that fails (here: a failing prestart hook) still runs the poststop hooks, with
/// the state of a stopped container (no pid), as runc's destroy does; berth skipped them
/// (found by the differential fuzzer).
fn hook_poststop_runs_after_a_failed_create(ctx: &Ctx) -> TestResult {
    let (mut b, markers) = marker_bundle(ctx)?;
    let m = markers.to_string_lossy().into_owned();
    b.cfg.add_hook("prestart", failing_hook("prestart-said-no"));
    b.cfg.add_hook(
        "poststop",
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {m}/poststop.stdin")]}),
    );
    b.cfg.args(&["true"]);
    b.create(&[]).failed()?;
    let stdin = fs::read_to_string(markers.join("poststop.stdin"))
        .map_err(|e| crate::harness::Failure::Fail(format!("no poststop hook ran: {e}")))?;
    let state: Value = serde_json::from_str(&stdin)
        .map_err(|e| crate::harness::Failure::Fail(format!("poststop's stdin {stdin:?}: {e}")))?;
    ensure_eq!(state["status"], json!("stopped"), "poststop state's status");
    ensure!(
        state.get("pid").is_none(),
        "a stopped container's state has no pid (runc omits 0): {stdin}"
    );
    ensure!(b.status().is_none(), "the failed create left the container");
    b.ensure_clean()
}
