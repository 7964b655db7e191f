//! Lifecycle (runtime-spec runtime.md): create, state, start, delete, run.

use std::fs;
use std::thread::sleep;
use std::time::Duration;

use serde_json::Value;

use super::{read_trim, wait_file, WAIT_FOR_GO};
use crate::context::{alive, Ctx};
use crate::fixture::Bundle;
use crate::harness::{is_rfc3339, Test, TestResult};
use crate::{ensure, ensure_eq, fail, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        terminal_pty_is_dev_console,
        lifecycle_create_start_stop_delete,
        state_bundle_is_absolute,
        start_running_or_stopped_fails,
        delete_running_needs_force,
        kill_stopped_fails,
        create_existing_id_fails,
        missing_id_fails,
        run_returns_exit_code,
        run_detach_leaves_running,
        pid_file,
        concurrent_create_same_id,
    ]
}

/// Check the fields of a `state` document for bundle `b`.
fn check_state(st: &Value, b: &Bundle, status: &str) -> TestResult {
    ensure!(
        st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "state has no ociVersion: {st}"
    );
    ensure_eq!(st["id"], b.id.as_str(), "state id");
    ensure_eq!(st["status"], status, "state status");
    if status == "created" || status == "running" {
        ensure!(
            st["pid"].as_u64().is_some_and(|p| p > 0),
            "state pid is not > 0: {st}"
        );
    }
    let bundle = st["bundle"].as_str().unwrap_or("");
    ensure!(
        bundle.starts_with('/'),
        "state bundle is not absolute: {st}"
    );
    ensure_eq!(bundle, b.dir.to_string_lossy(), "state bundle");
    ensure!(
        st["rootfs"].as_str().is_some_and(|r| r.ends_with("rootfs")),
        "state rootfs missing: {st}"
    );
    ensure!(
        st["created"].as_str().is_some_and(is_rfc3339),
        "state created is not RFC 3339: {st}"
    );
    Ok(())
}

fn lifecycle_create_start_stop_delete(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.sh(&format!("touch /shared/started; {WAIT_FOR_GO}"));
    b.create(&[]).ok()?;
    let st = b.state()?;
    check_state(&st, &b, "created")?;
    let pid = b.pid()?;
    ensure!(alive(pid), "created container's pid {pid} is not alive");
    sleep(Duration::from_millis(200));
    ensure!(
        !shared.join("started").exists(),
        "the process ran before start"
    );
    ensure_eq!(b.status().as_deref(), Some("created"), "status");

    b.start().ok()?;
    wait_file(&shared.join("started"))?;
    let st = b.state()?;
    check_state(&st, &b, "running")?;
    ensure_eq!(st["pid"].as_u64(), Some(pid as u64), "pid after start");

    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    check_state(&b.state()?, &b, "stopped")?;
    b.delete().ok()?;
    ctx.rt.exec(&["state", &b.id]).failed()?;
    b.ensure_clean()
}

fn state_bundle_is_absolute(ctx: &Ctx) -> TestResult {
    let b = ctx.bundle()?;
    b.write_config()?;
    let (Some(parent), Some(name)) = (b.dir.parent(), b.dir.file_name()) else {
        fail!("bundle dir has no parent");
    };
    let name = name.to_string_lossy().into_owned();
    ctx.rt
        .exec_in(parent, &["create", "--bundle", &name, &b.id])
        .ok()?;
    let st = b.state()?;
    ensure_eq!(
        st["bundle"].as_str().unwrap_or(""),
        b.dir.to_string_lossy(),
        "bundle given relative, state bundle"
    );
    Ok(())
}

fn start_running_or_stopped_fails(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.create(&[]).ok()?;
    b.start().ok()?;
    b.wait_status("running")?;
    b.start().failed()?;
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after second start"
    );
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    b.start().failed()?;
    ensure_eq!(
        b.status().as_deref(),
        Some("stopped"),
        "status after start of stopped"
    );
    Ok(())
}

fn delete_running_needs_force(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.run_detached().ok()?;
    let pid = b.pid()?;
    b.delete().failed()?;
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after delete without --force"
    );
    ctx.rt.exec(&["delete", "--force", &b.id]).ok()?;
    ctx.rt.exec(&["state", &b.id]).failed()?;
    ensure!(
        crate::harness::wait_until(Duration::from_secs(5), || !alive(pid)),
        "pid {pid} still alive after delete --force"
    );
    b.ensure_clean()
}

fn kill_stopped_fails(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.args(&["true"]);
    b.create(&[]).ok()?;
    b.start().ok()?;
    b.wait_status("stopped")?;
    b.kill("KILL").failed()?;
    b.kill("TERM").failed()?;
    b.delete().ok()?;
    b.ensure_clean()
}

fn create_existing_id_fails(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.create(&[]).ok()?;
    let pid = b.pid()?;
    let b2 = Bundle::with_id(ctx, b.id.clone())?;
    b2.create(&[]).failed()?;
    // The first container is untouched.
    ensure_eq!(
        b.status().as_deref(),
        Some("created"),
        "status of the first container"
    );
    ensure_eq!(b.pid()?, pid, "pid of the first container");
    ensure!(alive(pid), "first container's process died");
    Ok(())
}

fn missing_id_fails(ctx: &Ctx) -> TestResult {
    let id = ctx.new_id();
    for args in [
        vec!["state", &id],
        vec!["start", &id],
        vec!["kill", &id, "KILL"],
        vec!["delete", &id],
    ] {
        ctx.rt.exec(&args).failed()?;
    }
    Ok(())
}

fn run_returns_exit_code(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.sh("echo out; echo err >&2; exit 3");
    let out = b.run(&[]);
    ensure_eq!(
        out.code,
        Some(3),
        format!("exit code of run ({})", out.describe())
    );
    ensure_eq!(out.stdout.trim(), "out", "container stdout");
    ensure!(
        out.stderr.contains("err"),
        "container stderr missing: {}",
        out.describe()
    );
    ctx.rt.exec(&["state", &b.id]).failed()?;
    b.ensure_clean()
}

fn run_detach_leaves_running(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.sh(&format!("touch /shared/started; {WAIT_FOR_GO}"));
    b.run_detached().ok()?;
    wait_file(&shared.join("started"))?;
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after run --detach"
    );
    let pid = b.pid()?;
    ensure!(alive(pid), "pid {pid} not alive");
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

fn pid_file(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    let pf = b.dir.join("create.pid");
    b.create(&["--pid-file", &pf.to_string_lossy()]).ok()?;
    ensure_eq!(
        read_trim(&pf)?,
        b.pid()?.to_string(),
        "create --pid-file content"
    );

    let mut d = ctx.bundle()?;
    d.shared()?;
    d.cfg.sh(WAIT_FOR_GO);
    let pf = d.dir.join("run.pid");
    d.run(&["--detach", "--pid-file", &pf.to_string_lossy()])
        .ok()?;
    ensure_eq!(
        read_trim(&pf)?,
        d.pid()?.to_string(),
        "run --detach --pid-file content"
    );
    Ok(())
}

fn concurrent_create_same_id(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 2) {
        skip!(
            "runc 1.1 checks for an existing id with stat() and then MkdirAll()s the state dir \
             (no lock, no atomic mkdir): both creates pass the check, and the loser's cleanup \
             removes the winner's state dir and cgroup (seen here in 5 of 6 runs: both fail, or \
             one 'succeeds' with no state left and a leaked `runc init`)"
        );
    }
    for round in 0..3 {
        let id = ctx.new_id();
        let mut a = Bundle::with_id(ctx, id.clone())?;
        let mut b = Bundle::with_id(ctx, id.clone())?;
        for x in [&mut a, &mut b] {
            x.shared()?;
            x.cfg.sh(WAIT_FOR_GO);
            x.write_config()?;
        }
        let args = |x: &Bundle| {
            vec![
                "create".to_string(),
                "--bundle".to_string(),
                x.dir.to_string_lossy().into_owned(),
                id.clone(),
            ]
        };
        let (aa, ba) = (args(&a), args(&b));
        let pa = ctx
            .rt
            .spawn(&aa.iter().map(String::as_str).collect::<Vec<_>>())?;
        let pb = ctx
            .rt
            .spawn(&ba.iter().map(String::as_str).collect::<Vec<_>>())?;
        let t = crate::runtime::cmd_timeout();
        let (oa, ob) = (pa.wait(t), pb.wait(t));
        let loser = match (oa.success(), ob.success()) {
            (true, false) => ob,
            (false, true) => oa,
            _ => fail!(
                "round {round}: want exactly one success: {} / {}",
                oa.describe(),
                ob.describe()
            ),
        };
        loser.failed()?;
        ensure_eq!(
            ctx.rt.status(&id).as_deref(),
            Some("created"),
            "status of the winner"
        );
        let pid = a.pid()?;
        ensure!(alive(pid), "the winner's process {pid} is not alive");
    }
    Ok(())
}

/// With `process.terminal` and `--console-socket`, the pty's slave is the container's
/// /dev/console (bind-mounted there, as runc's mountConsole does); berth left /dev/console
/// absent (found by the differential fuzzer).
fn terminal_pty_is_dev_console(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/process/terminal", serde_json::json!(true));
    b.cfg.sh(
        "cat /proc/self/mountinfo; echo @@; stat -c 'major %t' /dev/console; \
         [ \"$(readlink /proc/self/fd/0)\" = \"$(tty)\" ] && echo same",
    );
    let sock = b.dir.join("console.sock");
    let out = b.dir.join("console.out");
    let console = crate::console::Console::listen(&sock, out.clone())?;
    let sock_arg = sock.to_string_lossy().into_owned();
    b.create(&["--console-socket", &sock_arg]).ok()?;
    b.start().ok()?;
    b.wait_status("stopped")?;
    console.finish(Duration::from_secs(10));
    b.delete().ok()?;
    let text = fs::read_to_string(&out)?.replace('\r', "");
    let (mountinfo, rest) = text.split_once("@@\n").unwrap_or((&text, ""));
    let mounts = crate::mountinfo::parse(mountinfo);
    let console = crate::mountinfo::require(&mounts, "/dev/console")?;
    ensure_eq!(console.fstype, "devpts", "/dev/console's filesystem");
    // The Unix98 pty major 136 (0x88), and the process's stdin is that pty.
    let lines: Vec<&str> = rest.lines().map(str::trim).collect();
    ensure_eq!(lines, vec!["major 88", "same"], "/dev/console");
    b.ensure_clean()
}
