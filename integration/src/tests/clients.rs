//! Real clients drive the runtime under test (issue 10's client matrix):
//! containerd 1.6's and 2.1.9's stock runc shims (`ctr run --runc-binary`),
//! docker 20.10 and 26.1.5 (`dockerd --add-runtime`, through containerd 1.6's
//! runc shim) and podman 4.3 (`podman --runtime`, through conmon). Each test
//! uses its own container name and a guard that removes the container through
//! the client and then records anything left behind (see `src/clients/`).
//! Daemons are started by the first test needing them and stopped at the end
//! of the run.
//!
//! What the clients pass to the runtime:
//! - the runc shim (for ctr and for dockerd alike; docker 20.10 always sends
//!   `blockIO.weight: 0` and `cpu.shares: 0`, meaning "unset" to runc): `--root R --log <bundle>/log.json --log-format json`, then
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
use crate::clients::docker::{Docker, Version as DockerVersion};
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
        client_ctr2_run_rm,
        client_ctr2_run_exit_code,
        client_ctr2_run_missing_binary,
        client_ctr2_run_tty,
        client_ctr2_run_short_lived_in_parallel,
        client_ctr2_task_exec,
        client_ctr2_task_exec_tty,
        client_ctr2_task_ps_and_kill_all,
        client_ctr2_task_pause_resume,
        client_ctr2_task_kill_delete_rm,
        client_ctr2_run_user_caps_dropped,
        client_docker20_run_rm,
        client_docker20_exit_codes,
        client_docker20_detached_exec_stop_rm,
        client_docker20_run_user,
        client_docker20_cap_drop_all_user,
        client_docker20_read_only,
        client_docker20_update_resources,
        client_docker20_pause_unpause,
        client_docker20_stats,
        client_docker20_run_tty,
        client_docker26_run_rm,
        client_docker26_exit_codes,
        client_docker26_detached_exec_stop_rm,
        client_docker26_run_user,
        client_docker26_cap_drop_all_user,
        client_docker26_read_only,
        client_docker26_update_resources,
        client_docker26_pause_unpause,
        client_docker26_stats,
        client_docker26_run_tty,
        client_podman_run_rm,
        client_podman_run_exit_code,
        client_podman_run_detached_exec_stop,
        client_podman_run_tty,
        client_podman_exec_tty,
        client_podman_run_user,
        client_podman_run_tty_user,
        client_podman_top,
        client_podman_stats,
        client_podman_pause_unpause,
        client_podman_run_uidmap,
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
    // The pty echoes a NUL byte the client writes as `^@`, before or after the script's
    // output depending on when the client writes it (seen both ways in CI).
    let text = out.stdout.replace("^@", "");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
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

// ---- containerd 1.6 and 2.1.9, stock runc shim ---------------------------------

/// `fn $v16` runs `$inner` with containerd 1.6, `fn $v21` with containerd 2.1.9.
macro_rules! on_ctr {
    ($inner:ident: $v16:ident, $v21:ident) => {
        fn $v16(ctx: &Ctx) -> TestResult {
            $inner(ctx, ctx.clients.containerd(ctx)?)
        }
        fn $v21(ctx: &Ctx) -> TestResult {
            $inner(ctx, ctx.clients.containerd2(ctx)?)
        }
    };
}
on_ctr!(ctr_run_rm: client_ctr_run_rm, client_ctr2_run_rm);
on_ctr!(ctr_run_exit_code: client_ctr_run_exit_code, client_ctr2_run_exit_code);
on_ctr!(ctr_run_missing_binary: client_ctr_run_missing_binary, client_ctr2_run_missing_binary);
on_ctr!(ctr_run_tty: client_ctr_run_tty, client_ctr2_run_tty);
on_ctr!(ctr_run_short_lived_in_parallel: client_ctr_run_short_lived_in_parallel, client_ctr2_run_short_lived_in_parallel);
on_ctr!(ctr_task_exec: client_ctr_task_exec, client_ctr2_task_exec);
on_ctr!(ctr_task_exec_tty: client_ctr_task_exec_tty, client_ctr2_task_exec_tty);
on_ctr!(ctr_task_ps_and_kill_all: client_ctr_task_ps_and_kill_all, client_ctr2_task_ps_and_kill_all);
on_ctr!(ctr_task_pause_resume: client_ctr_task_pause_resume, client_ctr2_task_pause_resume);
on_ctr!(ctr_task_kill_delete_rm: client_ctr_task_kill_delete_rm, client_ctr2_task_kill_delete_rm);

/// `ctr run --rm`: output reaches ctr, exit 0, the container sits in ctr's
/// default cgroup `/default/<id>`, and `--rm` leaves nothing behind.
fn ctr_run_rm(ctx: &Ctx, ctd: &Containerd) -> TestResult {
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
fn ctr_run_exit_code(ctx: &Ctx, ctd: &Containerd) -> TestResult {
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
fn ctr_run_missing_binary(ctx: &Ctx, ctd: &Containerd) -> TestResult {
    let c = ctd.container(ctx);
    let args = ctd.run_args(&["--rm"], &c.id, &["/no-such-binary"]);
    let out = ctd.ctr(&strs(&args)).failed()?;
    out.stderr_mentions("no-such-binary")?;
    let _ = ctd.ctr(&["containers", "delete", &c.id]);
    c.ensure_gone()
}

/// `ctr run -t` (ctr under `script` so it has a terminal): the runtime gets a
/// `--console-socket`, the container's stdio is a pty, the exit code comes back.
fn ctr_run_tty(ctx: &Ctx, ctd: &Containerd) -> TestResult {
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
fn ctr_run_short_lived_in_parallel(ctx: &Ctx, ctd: &Containerd) -> TestResult {
    const PARALLEL: usize = 8;
    const ROUNDS: usize = 5;
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
fn ctr_task_exec(ctx: &Ctx, ctd: &Containerd) -> TestResult {
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
fn ctr_task_exec_tty(ctx: &Ctx, ctd: &Containerd) -> TestResult {
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
fn ctr_task_ps_and_kill_all(ctx: &Ctx, ctd: &Containerd) -> TestResult {
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
fn ctr_task_pause_resume(ctx: &Ctx, ctd: &Containerd) -> TestResult {
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
fn ctr_task_kill_delete_rm(ctx: &Ctx, ctd: &Containerd) -> TestResult {
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

/// containerd 2.1's `ctr run -u 65534:65534` with CAP_DAC_OVERRIDE,
/// CAP_DAC_READ_SEARCH and CAP_FOWNER dropped (ctr 1.6 has no `--user`; ctr
/// 2.1 takes `--cap-drop CAP_ALL` but drops nothing with it): the process runs
/// as nobody without those capabilities in its bounding set, and writes to
/// /dev/stdout and /dev/stderr (the shim's fifos, which the runtime must make
/// the process user's, as runc does) reach ctr.
fn client_ctr2_run_user_caps_dropped(ctx: &Ctx) -> TestResult {
    let ctd = ctx.clients.containerd2(ctx)?;
    let c = ctd.container(ctx);
    let args = ctd.run_args(
        &[
            "--rm",
            "-u",
            "65534:65534",
            "--cap-drop",
            "CAP_DAC_OVERRIDE",
            "--cap-drop",
            "CAP_DAC_READ_SEARCH",
            "--cap-drop",
            "CAP_FOWNER",
        ],
        &c.id,
        &[
            "sh",
            "-c",
            "id -u; id -g; grep CapBnd /proc/self/status; \
             echo to-stdout > /dev/stdout; echo to-stderr > /dev/stderr",
        ],
    );
    let out = ctd.ctr(&strs(&args)).ok()?;
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    ensure!(
        lines.len() == 4 && lines[0] == "65534" && lines[1] == "65534",
        "uid/gid: {}",
        out.describe()
    );
    let bnd = lines[2]
        .strip_prefix("CapBnd:")
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
    // CAP_DAC_OVERRIDE = 1, CAP_DAC_READ_SEARCH = 2, CAP_FOWNER = 3.
    ensure!(
        bnd.is_some_and(|b| b & 0b1110 == 0),
        "bounding set still has a dropped capability: {}",
        out.describe()
    );
    ensure_eq!(lines[3], "to-stdout", "write to /dev/stdout");
    ensure!(
        out.stderr.contains("to-stderr"),
        "write to /dev/stderr lost: {}",
        out.describe()
    );
    c.ensure_gone()
}

// ---- docker 20.10 and 26.1.5 (dockerd --add-runtime) ----------------------------

/// `fn $v20` runs `$inner` with docker 20.10, `fn $v26` with docker 26.1.5.
macro_rules! on_docker {
    ($inner:ident: $v20:ident, $v26:ident) => {
        fn $v20(ctx: &Ctx) -> TestResult {
            $inner(ctx, ctx.clients.docker(ctx, DockerVersion::V20)?)
        }
        fn $v26(ctx: &Ctx) -> TestResult {
            $inner(ctx, ctx.clients.docker(ctx, DockerVersion::V26)?)
        }
    };
}
on_docker!(docker_run_rm: client_docker20_run_rm, client_docker26_run_rm);
on_docker!(docker_exit_codes: client_docker20_exit_codes, client_docker26_exit_codes);
on_docker!(docker_detached_exec_stop_rm: client_docker20_detached_exec_stop_rm, client_docker26_detached_exec_stop_rm);
on_docker!(docker_run_user: client_docker20_run_user, client_docker26_run_user);
on_docker!(docker_cap_drop_all_user: client_docker20_cap_drop_all_user, client_docker26_cap_drop_all_user);
on_docker!(docker_read_only: client_docker20_read_only, client_docker26_read_only);
on_docker!(docker_update_resources: client_docker20_update_resources, client_docker26_update_resources);
on_docker!(docker_pause_unpause: client_docker20_pause_unpause, client_docker26_pause_unpause);
on_docker!(docker_stats: client_docker20_stats, client_docker26_stats);
on_docker!(docker_run_tty: client_docker20_run_tty, client_docker26_run_tty);

/// Require `out` to succeed, adding dockerd's last log lines to the failure.
fn docker_ok(dk: &Docker, out: Out) -> Result<Out, crate::harness::Failure> {
    if out.success() {
        Ok(out)
    } else {
        fail!("{}; dockerd log: {}", out.describe(), dk.log_tail())
    }
}

/// `docker run --rm echo`: output, exit 0, the container in
/// `/<cgroup parent>/<id>`, nothing left after `--rm`.
fn docker_run_rm(ctx: &Ctx, dk: &Docker) -> TestResult {
    let c = dk.container(ctx);
    let args = dk.run_args(
        &["--rm"],
        &c.name,
        &["sh", "-c", "echo hello from docker; cat /proc/self/cgroup"],
    );
    let out = docker_ok(dk, dk.docker(&strs(&args)))?;
    ensure_eq!(
        out.stdout.lines().next().unwrap_or(""),
        "hello from docker",
        "first line"
    );
    let Some(cid) = c.cid() else {
        fail!("no container id in the cidfile");
    };
    let want = format!("/{}", dk.cgroup(&cid));
    ensure_eq!(
        memory_cgroup(&out.stdout),
        Some(want.as_str()),
        "memory cgroup of the container"
    );
    c.ensure_gone()
}

/// Exit codes through docker: the process's own (`exit 3`), a missing binary
/// (127: docker maps the runtime's "executable file not found" / "no such
/// file" error to it) and a file that is not executable (126: "permission
/// denied").
fn docker_exit_codes(ctx: &Ctx, dk: &Docker) -> TestResult {
    for (argv, code, what) in [
        (&["sh", "-c", "exit 3"][..], 3, "exit 3"),
        (&["/no-such-binary"][..], 127, "a missing binary"),
        (&["/etc/passwd"][..], 126, "a non-executable file"),
    ] {
        let c = dk.container(ctx);
        let args = dk.run_args(&["--rm"], &c.name, argv);
        let out = dk.docker(&strs(&args));
        if out.code != Some(code) || out.timed_out {
            fail!(
                "{what}: expected exit {code}: {}; dockerd log: {}",
                out.describe(),
                dk.log_tail()
            );
        }
        c.ensure_gone()?;
    }
    Ok(())
}

/// `docker run -d`, `exec` (output and exit code), `exec -u 65534` writing to
/// /dev/stdout, `exec -t` (under `script`), `stop` (SIGTERM trapped: exit 0 at
/// once), `rm`.
fn docker_detached_exec_stop_rm(ctx: &Ctx, dk: &Docker) -> TestResult {
    let c = dk.run_detached(ctx, &[], UNTIL_TERM)?;
    let out = dk.docker(&[
        "exec",
        &c.name,
        "sh",
        "-c",
        "echo exec-stdout; echo exec-stderr >&2; exit 4",
    ]);
    ensure_code(&out, 4)?;
    ensure_eq!(out.stdout.trim(), "exec-stdout", "exec stdout");
    ensure!(
        out.stderr.contains("exec-stderr"),
        "exec stderr lacks the process's: {}",
        out.describe()
    );
    let out = docker_ok(
        dk,
        dk.docker(&[
            "exec",
            "-u",
            "65534",
            &c.name,
            "sh",
            "-c",
            "id -u; echo to-stdout > /dev/stdout",
        ]),
    )?;
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    ensure_eq!(lines, vec!["65534", "to-stdout"], "exec -u 65534");
    let out = dk.docker_pty(&["exec", "-t", &c.name, "sh", "-c", TTY_SCRIPT, "sh", "3"]);
    ensure_code(&out, 3)?;
    ensure_tty_output(&out)?;
    let t0 = Instant::now();
    docker_ok(dk, dk.docker(&["stop", "--time", "10", &c.name]))?;
    let took = t0.elapsed();
    ensure_eq!(
        c.inspect("{{.State.Status}} {{.State.ExitCode}}")?,
        "exited 0",
        "state after docker stop (SIGTERM trapped)"
    );
    ensure!(
        took.as_secs() < 9,
        "docker stop took {took:?}: SIGTERM did not reach the container"
    );
    docker_ok(dk, dk.docker(&["rm", &c.name]))?;
    c.ensure_gone()
}

/// `docker run --user 65534:65534`: the ids, and writes to /dev/stdout and
/// /dev/stderr (the shim's fifos, which the runtime gives to the process user).
fn docker_run_user(ctx: &Ctx, dk: &Docker) -> TestResult {
    let c = dk.container(ctx);
    let args = dk.run_args(
        &["--rm", "--user", "65534:65534"],
        &c.name,
        &[
            "sh",
            "-c",
            "id -u; id -g; echo to-stdout > /dev/stdout; echo to-stderr > /dev/stderr",
        ],
    );
    let out = docker_ok(dk, dk.docker(&strs(&args)))?;
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    ensure_eq!(
        lines,
        vec!["65534", "65534", "to-stdout"],
        "uid, gid, stdout"
    );
    ensure!(
        out.stderr.contains("to-stderr"),
        "write to /dev/stderr lost: {}",
        out.describe()
    );
    c.ensure_gone()
}

/// `docker run --cap-drop ALL --user 65534:65534`: no capability in any set,
/// and stdout still writable.
fn docker_cap_drop_all_user(ctx: &Ctx, dk: &Docker) -> TestResult {
    let c = dk.container(ctx);
    let args = dk.run_args(
        &["--rm", "--cap-drop", "ALL", "--user", "65534:65534"],
        &c.name,
        &[
            "sh",
            "-c",
            "id -u; grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status; echo to-stdout > /dev/stdout",
        ],
    );
    let out = docker_ok(dk, dk.docker(&strs(&args)))?;
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    ensure_eq!(lines.first().copied(), Some("65534"), "uid");
    for l in lines.iter().filter(|l| l.starts_with("Cap")) {
        ensure!(
            l.ends_with("0000000000000000"),
            "capabilities left: {l} ({})",
            out.describe()
        );
    }
    ensure_eq!(lines.len(), 5, "lines of output");
    ensure_eq!(
        lines.last().copied(),
        Some("to-stdout"),
        "write to /dev/stdout"
    );
    c.ensure_gone()
}

/// `docker run --read-only`: the rootfs refuses writes (EROFS), /dev/shm
/// (docker's own tmpfs) takes them.
fn docker_read_only(ctx: &Ctx, dk: &Docker) -> TestResult {
    let c = dk.container(ctx);
    let args = dk.run_args(
        &["--rm", "--read-only"],
        &c.name,
        &[
            "sh",
            "-c",
            "touch /x 2>&1 && echo rootfs-writable; touch /dev/shm/x && echo shm-writable",
        ],
    );
    let out = docker_ok(dk, dk.docker(&strs(&args)))?;
    ensure!(
        out.stdout.contains("Read-only file system") && !out.stdout.contains("rootfs-writable"),
        "the rootfs is not read-only: {}",
        out.describe()
    );
    ensure!(
        out.stdout.contains("shm-writable"),
        "/dev/shm is not writable: {}",
        out.describe()
    );
    c.ensure_gone()
}

/// Read a cgroup file of `rel` from the first hierarchy that has it.
fn cgroup_file(rel: &str, names: &[&str]) -> Option<String> {
    crate::clients::cgroup_dirs(rel).into_iter().find_map(|d| {
        names
            .iter()
            .find_map(|n| std::fs::read_to_string(d.join(n)).ok())
            .map(|s| s.trim().to_string())
    })
}

/// `docker update --memory 64m --memory-swap 128m --cpus 0.5 --pids-limit 50`
/// (the runtime's `update`), checked in the container's cgroup files (v1:
/// memory.limit_in_bytes, memory.memsw.limit_in_bytes where swap accounting is
/// on, cpu.cfs_quota_us/cfs_period_us, pids.max; v2: memory.max,
/// memory.swap.max = swap - memory, cpu.max, pids.max). docker itself refuses
/// `--memory` alone here ("Memory limit should be smaller than already set
/// memoryswap limit"), with runc as with any runtime.
fn docker_update_resources(ctx: &Ctx, dk: &Docker) -> TestResult {
    let c = dk.run_detached(ctx, &[], &["sleep", "600"])?;
    let Some(cid) = c.cid() else {
        fail!("no container id");
    };
    docker_ok(
        dk,
        dk.docker(&[
            "update",
            "--memory",
            "64m",
            "--memory-swap",
            "128m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "50",
            &c.name,
        ]),
    )?;
    let cg = dk.cgroup(&cid);
    let v2 = cgroup_file(&cg, &["memory.max"]).is_some();
    if v2 {
        ensure_eq!(
            cgroup_file(&cg, &["memory.max"]).as_deref(),
            Some("67108864"),
            "memory.max"
        );
        ensure_eq!(
            cgroup_file(&cg, &["cpu.max"]).as_deref(),
            Some("50000 100000"),
            "cpu.max"
        );
    } else {
        ensure_eq!(
            cgroup_file(&cg, &["memory.limit_in_bytes"]).as_deref(),
            Some("67108864"),
            "memory.limit_in_bytes"
        );
        if let Some(sw) = cgroup_file(&cg, &["memory.memsw.limit_in_bytes"]) {
            ensure_eq!(sw.as_str(), "134217728", "memory.memsw.limit_in_bytes");
        }
        ensure_eq!(
            cgroup_file(&cg, &["cpu.cfs_quota_us"]).as_deref(),
            Some("50000"),
            "cpu.cfs_quota_us"
        );
        ensure_eq!(
            cgroup_file(&cg, &["cpu.cfs_period_us"]).as_deref(),
            Some("100000"),
            "cpu.cfs_period_us"
        );
    }
    ensure_eq!(
        cgroup_file(&cg, &["pids.max"]).as_deref(),
        Some("50"),
        "pids.max"
    );
    ensure_eq!(
        c.inspect("{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}")?,
        "67108864 500000000 50",
        "docker inspect after update"
    );
    Ok(())
}

/// `docker pause` / `unpause` (the runtime's `pause` / `resume`): status
/// paused with the cgroup frozen, then running and thawed, and exec works.
fn docker_pause_unpause(ctx: &Ctx, dk: &Docker) -> TestResult {
    let c = dk.run_detached(ctx, &[], &["sleep", "600"])?;
    let Some(cid) = c.cid() else {
        fail!("no container id");
    };
    let cg = dk.cgroup(&cid);
    let freezer = || cgroup_file(&cg, &["freezer.state", "cgroup.freeze"]);
    docker_ok(dk, dk.docker(&["pause", &c.name]))?;
    ensure_eq!(
        c.inspect("{{.State.Status}}")?,
        "paused",
        "status after pause"
    );
    let f = freezer();
    ensure!(
        matches!(f.as_deref(), Some("FROZEN" | "1")),
        "freezer after pause: {f:?}"
    );
    docker_ok(dk, dk.docker(&["unpause", &c.name]))?;
    ensure_eq!(
        c.inspect("{{.State.Status}}")?,
        "running",
        "status after unpause"
    );
    let f = freezer();
    ensure!(
        matches!(f.as_deref(), Some("THAWED" | "0")),
        "freezer after unpause: {f:?}"
    );
    let out = docker_ok(dk, dk.docker(&["exec", &c.name, "echo", "alive"]))?;
    ensure_eq!(out.stdout.trim(), "alive", "exec after unpause");
    Ok(())
}

/// `docker stats --no-stream` of a running container: its name, a memory
/// usage and a pid count of at least 1 (containerd's metrics of the cgroup).
fn docker_stats(ctx: &Ctx, dk: &Docker) -> TestResult {
    let c = dk.run_detached(ctx, &[], &["sleep", "600"])?;
    let out = docker_ok(
        dk,
        dk.docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}|{{.MemUsage}}|{{.PIDs}}",
            &c.name,
        ]),
    )?;
    let line = out.stdout.trim();
    let f: Vec<&str> = line.split('|').collect();
    ensure!(
        f.len() == 3 && f[0] == c.name,
        "stats line {line:?} ({})",
        out.describe()
    );
    ensure!(!f[1].starts_with("0B"), "no memory usage in {line:?}");
    ensure!(
        f[2].trim().parse::<u32>().is_ok_and(|n| n >= 1),
        "no pids in {line:?}"
    );
    Ok(())
}

/// `docker run -it` (under `script`): the runtime gets a `--console-socket`,
/// stdio is a pty, the exit code comes back.
fn docker_run_tty(ctx: &Ctx, dk: &Docker) -> TestResult {
    let c = dk.container(ctx);
    let args = dk.run_args(
        &["--rm", "-i", "-t"],
        &c.name,
        &["sh", "-c", TTY_SCRIPT, "sh", "5"],
    );
    let out = dk.docker_pty(&strs(&args));
    if out.code != Some(5) {
        fail!(
            "expected exit 5: {}; dockerd log: {}",
            out.describe(),
            dk.log_tail()
        );
    }
    ensure_tty_output(&out)?;
    c.ensure_gone()
}

// ---- podman 4.3: the matrix's additions --------------------------------------------

/// `podman run --user 65534:65534`: the ids, and writes to /dev/stdout and
/// /dev/stderr (conmon's pipes, which the runtime gives to the process user).
fn client_podman_run_user(ctx: &Ctx) -> TestResult {
    crate::clients::matrix_enabled()?;
    let pm = ctx.clients.podman(ctx)?;
    let c = pm.container(ctx);
    let args = pm.run_args(
        &["--rm", "--user", "65534:65534"],
        &c.name,
        &[
            "sh",
            "-c",
            "id -u; id -g; echo to-stdout > /dev/stdout; echo to-stderr > /dev/stderr",
        ],
    );
    let out = pm.podman(&strs(&args)).ok()?;
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    ensure_eq!(
        lines,
        vec!["65534", "65534", "to-stdout"],
        "uid, gid, stdout"
    );
    ensure!(
        out.stderr.contains("to-stderr"),
        "write to /dev/stderr lost: {}",
        out.describe()
    );
    c.ensure_gone()
}

/// `podman run -t --user 65534` (under `script`): the pty is the process
/// user's (runc gives the uid of the console to the process user), and the
/// process can write to it.
fn client_podman_run_tty_user(ctx: &Ctx) -> TestResult {
    crate::clients::matrix_enabled()?;
    let pm = ctx.clients.podman(ctx)?;
    let c = pm.container(ctx);
    let args = pm.run_args(
        &["--rm", "-t", "--user", "65534:65534"],
        &c.name,
        &[
            "sh",
            "-c",
            "stat -c 'owner=%u' $(tty); echo to-tty > /dev/stdout; exit 2",
        ],
    );
    let out = pm.podman_pty(&strs(&args));
    ensure_code(&out, 2)?;
    ensure!(
        out.stdout.contains("owner=65534"),
        "the pty is not the process user's: {}",
        out.describe()
    );
    ensure!(
        out.stdout.contains("to-tty"),
        "write to the pty lost: {}",
        out.describe()
    );
    c.ensure_gone()
}

/// `podman top NAME pid user args`: lists the container's processes (podman
/// reads them from the container's pid namespace), pid 1 as root running
/// the container's command.
fn client_podman_top(ctx: &Ctx) -> TestResult {
    crate::clients::matrix_enabled()?;
    let pm = ctx.clients.podman(ctx)?;
    let c = pm.run_detached(ctx, UNTIL_TERM)?;
    let out = pm.podman(&["top", &c.name, "pid", "user", "args"]).ok()?;
    let first = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"1"));
    ensure!(
        first.as_ref().is_some_and(|f| f.len() >= 3
            && f[1] == "root"
            && f[2..].join(" ").starts_with("sh -c trap")),
        "podman top has no pid 1 `sh -c trap ...` as root: {}",
        out.describe()
    );
    Ok(())
}

/// `podman stats --no-stream` of a running container: its name, a memory
/// usage and a pid count of at least 1 (podman reads the cgroup).
fn client_podman_stats(ctx: &Ctx) -> TestResult {
    crate::clients::matrix_enabled()?;
    let pm = ctx.clients.podman(ctx)?;
    let c = pm.run_detached(ctx, UNTIL_TERM)?;
    let out = pm
        .podman(&[
            "stats",
            "--no-stream",
            "--no-reset",
            "--format",
            "{{.Name}}|{{.MemUsage}}|{{.PIDS}}",
            &c.name,
        ])
        .ok()?;
    let line = out.stdout.trim();
    let f: Vec<&str> = line.split('|').collect();
    ensure!(
        f.len() == 3 && f[0] == c.name,
        "stats line {line:?} ({})",
        out.describe()
    );
    ensure!(!f[1].starts_with("0B"), "no memory usage in {line:?}");
    ensure!(
        f[2].trim().parse::<u32>().is_ok_and(|n| n >= 1),
        "no pids in {line:?}"
    );
    Ok(())
}

/// `podman pause` / `unpause` (the runtime's `pause` / `resume`): status
/// paused with the cgroup frozen, then running and thawed, and exec works.
fn client_podman_pause_unpause(ctx: &Ctx) -> TestResult {
    crate::clients::matrix_enabled()?;
    let pm = ctx.clients.podman(ctx)?;
    let c = pm.run_detached(ctx, UNTIL_TERM)?;
    let Some(cid) = c.cid() else {
        fail!("no container id");
    };
    let cg = PodContainer::cgroup(&cid);
    let freezer = || cgroup_file(&cg, &["freezer.state", "cgroup.freeze"]);
    pm.podman(&["pause", &c.name]).ok()?;
    ensure_eq!(
        c.inspect("{{.State.Status}}")?,
        "paused",
        "status after pause"
    );
    let f = freezer();
    ensure!(
        matches!(f.as_deref(), Some("FROZEN" | "1")),
        "freezer after pause: {f:?}"
    );
    pm.podman(&["unpause", &c.name]).ok()?;
    ensure_eq!(
        c.inspect("{{.State.Status}}")?,
        "running",
        "status after unpause"
    );
    let f = freezer();
    ensure!(
        matches!(f.as_deref(), Some("THAWED" | "0")),
        "freezer after unpause: {f:?}"
    );
    let out = pm.podman(&["exec", &c.name, "echo", "alive"]).ok()?;
    ensure_eq!(out.stdout.trim(), "alive", "exec after unpause");
    Ok(())
}

/// `podman run --uidmap 0:100000:65536 --gidmap 0:100000:65536`: a user
/// namespace with those maps (podman chowns the rootfs copy; the runtime
/// writes the maps), root inside, files it creates belong to its root, and
/// its stdout works. Written through fd 1, not by reopening /dev/stdout:
/// conmon's pipes belong to the host's root, unmapped in the namespace, so
/// the kernel refuses the reopen (EACCES) under runc 1.1.5 too (runc's chown
/// of stdio to the container's root fails there and is ignored).
fn client_podman_run_uidmap(ctx: &Ctx) -> TestResult {
    crate::clients::matrix_enabled()?;
    let pm = ctx.clients.podman(ctx)?;
    let c = pm.container(ctx);
    let args = pm.run_args(
        &[
            "--rm",
            "--uidmap",
            "0:100000:65536",
            "--gidmap",
            "0:100000:65536",
        ],
        &c.name,
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u; \
             touch /tmp/f && stat -c '%u:%g' /tmp/f; echo to-stdout",
        ],
    );
    let out = pm.podman(&strs(&args)).ok()?;
    let lines = super::word_lines(&out.stdout);
    ensure_eq!(
        lines,
        vec![
            "0 100000 65536".to_string(),
            "0 100000 65536".to_string(),
            "0".to_string(),
            "0:0".to_string(),
            "to-stdout".to_string()
        ],
        "uid_map, gid_map, uid, owner of a new file, stdout"
    );
    c.ensure_gone()
}

#[cfg(test)]
mod unit {
    use super::*;

    fn out(stdout: &str) -> Out {
        Out {
            cmd: "ctr task exec -t".into(),
            code: Some(3),
            stdout: stdout.into(),
            stderr: String::new(),
            timed_out: false,
            hang: String::new(),
        }
    }

    #[test]
    fn the_echoed_nul_may_come_before_or_after_the_output() {
        // The output of a CI run where ctr's NUL arrived after the script's last line,
        // followed by ctr's own complaint about resizing the exited exec.
        let late = "/dev/pts/0\nstdio-is-a-tty^@\n\u{1b}[31mERRO\u{1b}[0m[0000] resize pty";
        assert!(ensure_tty_output(&out(late)).is_ok());
        assert!(ensure_tty_output(&out("^@/dev/pts/0\nstdio-is-a-tty\n")).is_ok());
        assert!(ensure_tty_output(&out("/dev/pts/0\nstdio-not-a-tty^@\n")).is_err());
        assert!(ensure_tty_output(&out("not a tty\nstdio-is-a-tty\n")).is_err());
    }
}
