//! `kill` with signal names and numbers, and `list` in its three formats.

use std::fs;

use super::{wait_file, WAIT_FOR_GO};
use crate::context::Ctx;
use crate::harness::{wait_until, Test, TestResult};
use crate::{ensure, ensure_eq, fail};

pub fn tests() -> Vec<Test> {
    crate::tests![
        kill_delivers_named_and_numbered_signals,
        kill_sigkill_by_name,
        kill_9_by_number,
        kill_signal_0_checks_the_container,
        list_formats,
    ]
}

fn kill_delivers_named_and_numbered_signals(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.sh(
        "for s in TERM USR1 HUP INT; do trap \"echo $s >> /shared/sig\" $s; done; \
         touch /shared/ready; while true; do sleep 0.05; done",
    );
    b.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    let sig = shared.join("sig");
    let mut want = Vec::new();
    // (kill arguments, signal the container must see)
    let cases: [(&[&str], &str); 6] = [
        (&[], "TERM"),
        (&["TERM"], "TERM"),
        (&["SIGUSR1"], "USR1"),
        (&["10"], "USR1"),
        (&["HUP"], "HUP"),
        (&["2"], "INT"),
    ];
    for (args, expect) in cases {
        let mut a = vec!["kill", b.id.as_str()];
        a.extend_from_slice(args);
        ctx.rt.exec(&a).ok()?;
        want.push(expect);
        let wanted = want.join("\n");
        let mut got = String::new();
        let ok = wait_until(std::time::Duration::from_secs(5), || {
            got = fs::read_to_string(&sig).unwrap_or_default();
            got.trim() == wanted
        });
        ensure!(
            ok,
            "after `kill {}`: signals seen {got:?}, want {wanted:?}",
            a[1..].join(" ")
        );
    }
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after trapped signals"
    );
    b.kill("KILL").ok()?;
    b.wait_status("stopped")?;
    Ok(())
}

fn kill_one(ctx: &Ctx, signal: &str) -> TestResult {
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.run_detached().ok()?;
    b.kill(signal).ok()?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

fn kill_sigkill_by_name(ctx: &Ctx) -> TestResult {
    kill_one(ctx, "SIGKILL")
}

fn kill_9_by_number(ctx: &Ctx) -> TestResult {
    kill_one(ctx, "9")
}

/// Signal 0 delivers nothing and only checks that the container's processes exist: `kill ID 0`
/// and `kill --all ID 0` succeed on a running container (containerd's runc shim sends it),
/// and `kill ID 0` fails on a stopped one saying `container not running`.
fn kill_signal_0_checks_the_container(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.run_detached().ok()?;
    b.kill("0").ok()?;
    ctx.rt.exec(&["kill", "--all", &b.id, "0"]).ok()?;
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after signal 0"
    );
    b.kill("KILL").ok()?;
    b.wait_status("stopped")?;
    let out = b.kill("0").failed()?;
    out.stderr_mentions("container not running")?;
    b.delete().ok()?;
    b.ensure_clean()
}

fn list_formats(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.create(&[]).ok()?;
    let pid = b.pid()?;
    let bundle = b.dir.to_string_lossy().into_owned();

    let table = ctx.rt.exec(&["list"]).ok()?;
    let mut lines = table.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    ensure_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "list header"
    );
    let Some(row) = lines.find(|l| l.split_whitespace().next() == Some(b.id.as_str())) else {
        fail!("list has no row for {}: {:?}", b.id, table.stdout);
    };
    let cols: Vec<&str> = row.split_whitespace().collect();
    ensure_eq!(
        cols.get(1).copied(),
        Some(pid.to_string().as_str()),
        "list PID column"
    );
    ensure_eq!(cols.get(2).copied(), Some("created"), "list STATUS column");
    ensure_eq!(
        cols.get(3).copied(),
        Some(bundle.as_str()),
        "list BUNDLE column"
    );

    let json = ctx.rt.exec(&["list", "--format", "json"]).ok()?.json()?;
    let Some(arr) = json.as_array() else {
        fail!("list --format json is not an array: {json}");
    };
    let Some(entry) = arr.iter().find(|e| e["id"] == b.id.as_str()) else {
        fail!("list --format json has no {}: {json}", b.id);
    };
    ensure_eq!(entry["status"], "created", "json status");
    ensure_eq!(entry["pid"].as_u64(), Some(pid as u64), "json pid");
    ensure_eq!(entry["bundle"], bundle.as_str(), "json bundle");

    let quiet = ctx.rt.exec(&["list", "-q"]).ok()?;
    ensure!(
        quiet.stdout.lines().any(|l| l == b.id),
        "list -q does not list {} alone on a line: {:?}",
        b.id,
        quiet.stdout
    );
    ensure!(
        quiet.stdout.lines().all(|l| !l.contains(' ')),
        "list -q prints more than ids: {:?}",
        quiet.stdout
    );
    Ok(())
}
