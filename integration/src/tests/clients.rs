//! Real clients drive the runtime under test: containerd 1.6's stock runc shim
//! (`ctr run --runc-binary`) and podman 4.3 (`podman --runtime`, through
//! conmon). Each test uses its own container name and a guard that removes
//! the container through the client and then records anything left behind
//! (see `src/clients/`). containerd is started by the first test needing it
//! and stopped at the end of the run.
//!
//! What the clients pass to the runtime:
//! - the runc shim: `--root R --log <bundle>/log.json --log-format json`, then
//!   `create --bundle B --pid-file F [--console-socket S] ID`, `start ID`,
//!   `exec --process P --detach --pid-file F [--console-socket S] ID`,
//!   `ps --format json ID`, `kill [--all] ID SIG`, `pause ID`, `resume ID`,
//!   `delete [--force] ID`;
//! - conmon and podman (no `--root`; `--log-format=json --log F` only for a
//!   runtime named in containers.conf's `runtime_supports_json`, such as runc):
//!   `create --bundle B --pid-file F [--console-socket S] ID`, `start ID`,
//!   `exec --pid-file F --process P --detach [--tty --console-socket S] ID`,
//!   `kill ID SIG`, `delete --force ID`; podman always sends a seccomp profile.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::clients::containerd::{strs, Containerd};
use crate::clients::podman::PodContainer;
use crate::context::Ctx;
use crate::harness::{wait_until, Test, TestResult};
use crate::runtime::Out;
use crate::{ensure, ensure_eq, fail};

pub fn tests() -> Vec<Test> {
    crate::tests![
        client_ctr_run_rm,
        client_ctr_run_exit_code,
        client_ctr_run_missing_binary,
        client_ctr_run_tty,
        client_ctr_run_short_lived_in_parallel,
        client_ctr_task_exec,
        client_ctr_task_exec_tty,
        client_ctr_task_ps_and_kill_all,
        client_ctr_task_pause_resume,
        client_ctr_task_kill_delete_rm,
        client_podman_run_rm,
        client_podman_run_exit_code,
        client_podman_run_detached_exec_stop,
        client_podman_run_tty,
        client_podman_exec_tty,
    ]
}

/// A container that runs until SIGTERM (which it traps to exit 0) or SIGKILL.
const UNTIL_TERM: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 0.1; done",
];

/// Prints whether stdin and stdout are terminals, then exits with `$1`.
const TTY_SCRIPT: &str =
    "tty; if [ -t 0 ] && [ -t 1 ]; then echo stdio-is-a-tty; else echo stdio-not-a-tty; fi; exit $1";

/// Require `out` to exit with `code`.
fn ensure_code(out: &Out, code: i32) -> TestResult {
    if out.code != Some(code) || out.timed_out {
        fail!("expected exit {code}: {}", out.describe());
    }
    Ok(())
}

/// Require the output of [`TTY_SCRIPT`]: a `/dev/...` terminal and stdio on it.
fn ensure_tty_output(out: &Out) -> TestResult {
    // The pty echoes a NUL byte the client writes as `^@`.
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.trim().trim_start_matches("^@"))
        .collect();
    ensure!(
        lines.iter().any(|l| l.starts_with("/dev/")),
        "`tty` printed no terminal device: {}",
        out.describe()
    );
    ensure!(
        lines.contains(&"stdio-is-a-tty"),
        "stdin/stdout are not a terminal: {}",
        out.describe()
    );
    Ok(())
}

/// The cgroup path (of the memory hierarchy) in `/proc/self/cgroup` text.
/// The memory cgroup of /proc/PID/cgroup: the v1 `memory` line, or on pure cgroup v2 the one
/// `0::` line.
fn memory_cgroup(text: &str) -> Option<&str> {
    let find = |want: &dyn Fn(&str) -> bool| {
        text.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            want(ctrls).then_some(path)
        })
    };
    find(&|c: &str| c.split(',').any(|c| c == "memory")).or_else(|| find(&|c: &str| c.is_empty()))
}

// ---- containerd 1.6, stock runc shim ------------------------------------------

/// `ctr run --rm`: output reaches ctr, exit 0, the container sits in ctr's
/// default cgroup `/default/<id>`, and `--rm` leaves nothing behind.
fn client_ctr_run_rm(ctx: &Ctx) -> TestResult {
    let ctd = ctx.clients.containerd(ctx)?;
    let c = ctd.container(ctx);
    let args = ctd.run_args(
        &["--rm"],
        &c.id,
        &["sh", "-c", "echo hello from ctr; cat /proc/self/cgroup"],
    );
    let out = ctd.ctr(&strs(&args)).ok()?;
    ensure_eq!(
        out.stdout.lines().next().unwrap_or(""),
        "hello from ctr",
        "first line"
    );
    let want = format!("/{}", Containerd::cgroup(&c.id));
    ensure_eq!(
        memory_cgroup(&out.stdout),
        Some(want.as_str()),
        "memory cgroup of the container"
    );
    c.ensure_gone()
}

/// A container exiting non-zero: ctr exits with its code; stdout and stderr
/// stay apart.
fn client_ctr_run_exit_code(ctx: &Ctx) -> TestResult {
    let ctd = ctx.clients.containerd(ctx)?;
    let c = ctd.container(ctx);
    let args = ctd.run_args(
        &["--rm"],
        &c.id,
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"],
    );
    let out = ctd.ctr(&strs(&args));
    ensure_code(&out, 7)?;
    ensure_eq!(out.stdout.trim(), "to-stdout", "stdout");
    ensure!(
        out.stderr.contains("to-stderr"),
        "stderr lacks the container's: {}",
        out.describe()
    );
    c.ensure_gone()
}

/// A process that cannot be started: `ctr run` fails with the runtime's
/// reason (the shim relays it from `--log <bundle>/log.json`), and removing
/// the container leaves nothing behind.
fn client_ctr_run_missing_binary(ctx: &Ctx) -> TestResult {
    let ctd = ctx.clients.containerd(ctx)?;
    let c = ctd.container(ctx);
    let args = ctd.run_args(&["--rm"], &c.id, &["/no-such-binary"]);
    let out = ctd.ctr(&strs(&args)).failed()?;
    out.stderr_mentions("no-such-binary")?;
    let _ = ctd.ctr(&["containers", "delete", &c.id]);
    c.ensure_gone()
}

/// `ctr run -t` (ctr under `script` so it has a terminal): the runtime gets a
/// `--console-socket`, the container's stdio is a pty, the exit code comes back.
fn client_ctr_run_tty(ctx: &Ctx) -> TestResult {
    let ctd = ctx.clients.containerd(ctx)?;
    let c = ctd.container(ctx);
    let args = ctd.run_args(&["--rm", "-t"], &c.id, &["sh", "-c", TTY_SCRIPT, "sh", "5"]);
    let out = ctd.ctr_pty(&strs(&args));
    ensure_code(&out, 5)?;
    ensure_tty_output(&out)?;
    c.ensure_gone()
}

/// Short-lived containers, 8 at a time (5 rounds of `ctr run --rm ... true`):
/// every `ctr run` exits 0. The shim is the containers' subreaper and reaps
/// a process the moment it exits, so a runtime whose `start` still looks at
/// init after releasing it (through the exec fifo) can find it already gone
/// and fail `start` for a container whose process ran. Load makes that window
/// wider: 8 in parallel on 2 CPUs hit it in about 15% of the runs.
fn client_ctr_run_short_lived_in_parallel(ctx: &Ctx) -> TestResult {
    const PARALLEL: usize = 8;
    const ROUNDS: usize = 5;
    let ctd = ctx.clients.containerd(ctx)?;
    let batch = ctd.containers_batch(ctx, PARALLEL * ROUNDS);
    let mut failed = Vec::new();
    for round in batch.ids.chunks(PARALLEL) {
        let argvs: Vec<Vec<String>> = round
            .iter()
            .map(|id| ctd.run_args(&["--rm"], id, &["true"]))
            .collect();
        failed.extend(
            ctd.ctr_parallel(&argvs)
                .into_iter()
                .filter(|o| !o.success()),
        );
    }
    if let Some(first) = failed.first() {
        fail!(
            "{} of {} `ctr run --rm` of /bin/true failed; the first: {}",
            failed.len(),
            PARALLEL * ROUNDS,
            first.describe()
        );
    }
    batch.ensure_gone()
}

/// `ctr run -d` + `ctr task exec`: output and exit code of the exec, and an
/// exec with `--cwd` and `--user` runs in the container's pid namespace.
fn client_ctr_task_exec(ctx: &Ctx) -> TestResult {
    let ctd = ctx.clients.containerd(ctx)?;
    let c = ctd.run_detached(ctx, &["sleep", "600"])?;
    let args = ctd.exec_args(
        &[],
        &c.id,
        "exec-1",
        &["sh", "-c", "echo exec-stdout; echo exec-stderr >&2; exit 4"],
    );
    let out = ctd.ctr(&strs(&args));
    ensure_code(&out, 4)?;
    ensure_eq!(out.stdout.trim(), "exec-stdout", "exec stdout");
    ensure!(
        out.stderr.contains("exec-stderr"),
        "exec stderr lacks the process's: {}",
        out.describe()
    );
    let args = ctd.exec_args(
        &["--cwd", "/tmp", "--user", "1000"],
        &c.id,
        "exec-2",
        &["sh", "-c", "pwd; id -u; cat /proc/1/comm"],
    );
    let out = ctd.ctr(&strs(&args)).ok()?;
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    ensure_eq!(
        lines,
        vec!["/tmp", "1000", "sleep"],
        "pwd, uid, comm of pid 1"
    );
    ensure_eq!(
        ctd.task(&c.id).map(|t| t.1),
        Some("RUNNING".to_string()),
        "task status after the execs"
    );
    Ok(())
}

/// `ctr task exec -t` (under `script`): the exec gets a pty through the
/// console socket; its exit code comes back.
fn client_ctr_task_exec_tty(ctx: &Ctx) -> TestResult {
    let ctd = ctx.clients.containerd(ctx)?;
    let c = ctd.run_detached(ctx, &["sleep", "600"])?;
    let args = ctd.exec_args(
        &["-t"],
        &c.id,
        "exec-tty",
        &["sh", "-c", TTY_SCRIPT, "sh", "3"],
    );
    let out = ctd.ctr_pty(&strs(&args));
    ensure_code(&out, 3)?;
    ensure_tty_output(&out)
}

/// `ctr task ps` (the shim runs `ps --format json`) lists exactly the
/// container's processes (its cgroup's `cgroup.procs`); `ctr task kill --all
/// -s KILL` (`kill --all`) ends all of them.
fn client_ctr_task_ps_and_kill_all(ctx: &Ctx) -> TestResult {
    let ctd = ctx.clients.containerd(ctx)?;
    let c = ctd.run_detached(
        ctx,
        &[
            "sh",
            "-c",
            "sleep 600 & sleep 601 & while :; do sleep 1; done",
        ],
    )?;
    let init = ctd.task(&c.id).map(|t| t.0).unwrap_or(0);
    let cg = Containerd::cgroup(&c.id);
    let procs_file = crate::clients::cgroup_dirs(&cg)
        .into_iter()
        .map(|d| d.join("cgroup.procs"))
        .find(|p| p.exists());
    let Some(procs_file) = procs_file else {
        fail!("no cgroup.procs for /{cg} in any hierarchy");
    };
    let read_procs = || -> BTreeSet<u32> {
        std::fs::read_to_string(&procs_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    // sh, the two background sleeps and the loop's sleep.
    let mut procs = BTreeSet::new();
    ensure!(
        wait_until(std::time::Duration::from_secs(10), || {
            procs = read_procs();
            procs.len() >= 4
        }),
        "the container never had 4 processes: {procs:?}"
    );
    // The loop's `sleep 1` comes and goes: compare against cgroup.procs
    // read just before and after ps.
    let mut listed = BTreeSet::new();
    let mut matched = false;
    for _ in 0..5 {
        let before = read_procs();
        let out = ctd.ctr(&["task", "ps", &c.id]).ok()?;
        let after = read_procs();
        listed = out
            .stdout
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        let stable: BTreeSet<u32> = before.intersection(&after).copied().collect();
        let any: BTreeSet<u32> = before.union(&after).copied().collect();
        if stable.is_subset(&listed) && listed.is_subset(&any) {
            matched = true;
            break;
        }
    }
    ensure!(
        matched,
        "ctr task ps listed {listed:?}, the cgroup holds {:?}",
        read_procs()
    );
    ensure!(
        listed.contains(&init),
        "ctr task ps {listed:?} lacks the init pid {init}"
    );
    ctd.ctr(&["task", "kill", "--all", "--signal", "KILL", &c.id])
        .ok()?;
    c.wait_status("STOPPED")?;
    ensure!(
        wait_until(std::time::Duration::from_secs(5), || read_procs()
            .is_empty()),
        "processes left after kill --all: {:?}",
        read_procs()
    );
    Ok(())
}

/// `ctr task pause` / `ctr task resume` (the shim runs `pause` / `resume`):
/// the task shows PAUSED with its cgroup frozen, then RUNNING and thawed, and
/// an exec works again.
fn client_ctr_task_pause_resume(ctx: &Ctx) -> TestResult {
    let ctd = ctx.clients.containerd(ctx)?;
    let c = ctd.run_detached(ctx, &["sleep", "600"])?;
    let freezer = crate::clients::cgroup_dirs(&Containerd::cgroup(&c.id))
        .into_iter()
        .map(|d| d.join("freezer.state"))
        .find(|p| p.exists());
    let freezer_state = || {
        freezer
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
    };
    ctd.ctr(&["task", "pause", &c.id]).ok()?;
    c.wait_status("PAUSED")?;
    if freezer.is_some() {
        ensure_eq!(freezer_state(), Some("FROZEN".to_string()), "freezer.state");
    }
    ctd.ctr(&["task", "resume", &c.id]).ok()?;
    c.wait_status("RUNNING")?;
    if freezer.is_some() {
        ensure_eq!(freezer_state(), Some("THAWED".to_string()), "freezer.state");
    }
    let args = ctd.exec_args(&[], &c.id, "after-resume", &["echo", "alive"]);
    let out = ctd.ctr(&strs(&args)).ok()?;
    ensure_eq!(out.stdout.trim(), "alive", "exec after resume");
    Ok(())
}

/// `ctr task kill -s KILL`, `ctr task delete` (exit status 137 reported),
/// `ctr container rm`: nothing of the container is left.
fn client_ctr_task_kill_delete_rm(ctx: &Ctx) -> TestResult {
    let ctd = ctx.clients.containerd(ctx)?;
    let c = ctd.run_detached(ctx, &["sleep", "600"])?;
    let (pid, _) = ctd.task(&c.id).unwrap_or_default();
    ctd.ctr(&["task", "kill", "--signal", "KILL", &c.id]).ok()?;
    c.wait_status("STOPPED")?;
    ensure!(
        !crate::context::alive(pid),
        "init {pid} still alive after SIGKILL"
    );
    let out = ctd.ctr(&["task", "delete", &c.id]).ok()?;
    ensure!(
        out.stderr.contains("137"),
        "task delete did not report exit code 137: {}",
        out.describe()
    );
    ensure!(ctd.task(&c.id).is_none(), "task still listed after delete");
    ctd.ctr(&["containers", "rm", &c.id]).ok()?;
    c.ensure_gone()
}

// ---- podman 4.3 through conmon ---------------------------------------------------

/// `podman run --rm`: output, exit 0, the container in `/libpod_parent/libpod-<id>`,
/// and nothing left (podman container, runtime state, cgroup, conmon). With
/// `--cgroupns=host` (podman's default on cgroup v1; on v2 its default is a private cgroup
/// namespace, where /proc/self/cgroup would only say `0::/`).
fn client_podman_run_rm(ctx: &Ctx) -> TestResult {
    let pm = ctx.clients.podman(ctx)?;
    let c = pm.container(ctx);
    let args = pm.run_args(
        &["--rm", "--cgroupns=host"],
        &c.name,
        &["sh", "-c", "echo hello from podman; cat /proc/self/cgroup"],
    );
    let out = pm.podman(&strs(&args)).ok()?;
    ensure_eq!(
        out.stdout.lines().next().unwrap_or(""),
        "hello from podman",
        "first line"
    );
    let Some(cid) = c.cid() else {
        fail!("no container id in the cidfile");
    };
    let want = format!("/{}", PodContainer::cgroup(&cid));
    ensure_eq!(
        memory_cgroup(&out.stdout),
        Some(want.as_str()),
        "memory cgroup of the container"
    );
    c.ensure_gone()
}

/// `podman run --rm` of a container exiting non-zero: podman exits with its code.
fn client_podman_run_exit_code(ctx: &Ctx) -> TestResult {
    let pm = ctx.clients.podman(ctx)?;
    let c = pm.container(ctx);
    let args = pm.run_args(
        &["--rm"],
        &c.name,
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    );
    let out = pm.podman(&strs(&args));
    ensure_code(&out, 3)?;
    ensure_eq!(out.stdout.trim(), "to-stdout", "stdout");
    ensure!(
        out.stderr.contains("to-stderr"),
        "stderr lacks the container's: {}",
        out.describe()
    );
    c.ensure_gone()
}

/// `podman run -d`, `podman exec` (output, exit code, `--user`, `--workdir`),
/// `podman stop` (SIGTERM through the runtime's `kill`, trapped: exit 0, no
/// fallback to SIGKILL), `podman rm`.
fn client_podman_run_detached_exec_stop(ctx: &Ctx) -> TestResult {
    let pm = ctx.clients.podman(ctx)?;
    let c = pm.run_detached(ctx, UNTIL_TERM)?;
    let out = pm.podman(&[
        "exec",
        &c.name,
        "sh",
        "-c",
        "echo exec-stdout; echo exec-stderr >&2; exit 6",
    ]);
    ensure_code(&out, 6)?;
    ensure_eq!(out.stdout.trim(), "exec-stdout", "exec stdout");
    ensure!(
        out.stderr.contains("exec-stderr"),
        "exec stderr lacks the process's: {}",
        out.describe()
    );
    let out = pm
        .podman(&[
            "exec",
            "--user",
            "1000",
            "--workdir",
            "/tmp",
            &c.name,
            "sh",
            "-c",
            "pwd; id -u; cat /proc/1/comm",
        ])
        .ok()?;
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    ensure_eq!(lines, vec!["/tmp", "1000", "sh"], "pwd, uid, comm of pid 1");
    let t0 = Instant::now();
    pm.podman(&["stop", "--time", "10", &c.name]).ok()?;
    let took = t0.elapsed();
    ensure_eq!(
        c.inspect("{{.State.Status}} {{.State.ExitCode}}")?,
        "exited 0",
        "state after podman stop (SIGTERM trapped)"
    );
    // Under the 10 s of --time: not podman's SIGKILL fallback (slow machines included).
    ensure!(
        took.as_secs() < 9,
        "podman stop took {took:?}: SIGTERM did not reach the container"
    );
    pm.podman(&["rm", &c.name]).ok()?;
    c.ensure_gone()
}

/// `podman run -t` (under `script`): conmon hands the runtime a
/// `--console-socket`; the container's stdio is the pty; the exit code comes back.
fn client_podman_run_tty(ctx: &Ctx) -> TestResult {
    let pm = ctx.clients.podman(ctx)?;
    let c = pm.container(ctx);
    let args = pm.run_args(
        &["--rm", "-t"],
        &c.name,
        &["sh", "-c", TTY_SCRIPT, "sh", "2"],
    );
    let out = pm.podman_pty(&strs(&args));
    ensure_code(&out, 2)?;
    ensure_tty_output(&out)?;
    c.ensure_gone()
}

/// `podman exec -t` (under `script`) in a detached container.
fn client_podman_exec_tty(ctx: &Ctx) -> TestResult {
    let pm = ctx.clients.podman(ctx)?;
    let c = pm.run_detached(ctx, UNTIL_TERM)?;
    let out = pm.podman_pty(&["exec", "-t", &c.name, "sh", "-c", TTY_SCRIPT, "sh", "4"]);
    ensure_code(&out, 4)?;
    ensure_tty_output(&out)
}
