//! Differential integration tests: run real busybox containers against the
//! runtime named by `BERTH_TEST_RUNTIME` (runc or berth) and check the OCI
//! runtime-spec and runc command-line behaviour.
//!
//! Usage: `BERTH_TEST_RUNTIME=/usr/sbin/runc integration [FILTER]`
//!
//! `integration difffuzz ...` runs the differential fuzzer instead (src/fuzz/), and
//! `integration faults ...` the fault injector (src/faults.rs).

mod campaign;
mod clients;
mod config;
mod console;
mod context;
mod faults;
mod fdpass;
mod fixture;
mod fuzz;
mod harness;
mod hostmount;
mod mountinfo;
mod runtime;
mod seccomp_agent;
mod tests;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use context::Ctx;
use harness::Failure;
use runtime::Runtime;

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("integration: {e}");
            ExitCode::from(2)
        }
    }
}

/// Re-exec the suite in a private mount namespace (`unshare -m --propagation
/// private`), so that a mount a broken runtime leaks dies with the suite, and a UTS
/// namespace of its own: a container without one shares the suite's, and the fuzzer's probe
/// sets its hostname (it once renamed this machine). `BERTH_IT_NO_UNSHARE=1` turns this off.
fn enter_private_mount_ns() -> Result<(), String> {
    if std::env::var_os("BERTH_IT_IN_NS").is_some()
        || std::env::var_os("BERTH_IT_NO_UNSHARE").is_some()
    {
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let err = Command::new("unshare")
        .args(["--mount", "--uts", "--propagation", "private", "--"])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env("BERTH_IT_IN_NS", "1")
        .exec();
    Err(format!("cannot re-exec under `unshare --mount`: {err}"))
}

fn real_main() -> Result<ExitCode, String> {
    enter_private_mount_ns()?;
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("difffuzz") {
        return fuzz::main(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("faults") {
        return faults::main(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("mutfuzz") {
        return fuzz::mutate::main(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("rw-exec") {
        return fuzz::mutate::rw_exec(&args[2..]);
    }
    let filter = std::env::args().nth(1).unwrap_or_default();
    let path = std::env::var("BERTH_TEST_RUNTIME")
        .map_err(|_| "set BERTH_TEST_RUNTIME to the runtime binary's absolute path".to_string())?;
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(format!(
            "BERTH_TEST_RUNTIME must be absolute: {}",
            path.display()
        ));
    }
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();

    let tmp = PathBuf::from(format!("/tmp/berth-it-{}", std::process::id()));
    mkdir_mode(&tmp, 0o755)?;
    let io = tmp.join("io");
    mkdir_mode(&io, 0o700)?;
    let rootfs = tmp.join("rootfs");
    fixture::build_rootfs(&rootfs)?;

    let root = PathBuf::from("/run/berth-test").join(&name);
    let rt = Runtime::new(path.clone(), root.clone(), io)?;
    println!("runtime {} ({})", path.display(), rt.version);
    let parents_before = context::cgroup_parents();
    let ctx = Ctx::new(rt, tmp.clone(), rootfs);

    let (mut passed, mut failed, mut skipped, mut flaky) = (0, 0, 0, 0);
    let started = Instant::now();
    harness::stop_on_term();
    let mut interrupted = false;
    for t in tests::all() {
        if !t.name.contains(&filter) {
            continue;
        }
        if harness::stop_requested() {
            interrupted = true;
            println!("INTERRUPTED: a signal stopped the suite before {}", t.name);
            break;
        }
        let t0 = Instant::now();
        let mut res = (t.run)(&ctx);
        let mut first_run = None;
        if let Err(Failure::Fail(why)) = &res {
            if peer_hung(&ctx.rt, why) && !harness::stop_requested() {
                println!(
                    "FLAKY {}: the peer hung; once more. First run: {why}",
                    t.name
                );
                first_run = Some(why.clone());
                res = (t.run)(&ctx);
            }
        }
        let ms = t0.elapsed().as_millis();
        match (res, first_run) {
            (Ok(()), None) => {
                passed += 1;
                println!("PASS {} ({ms} ms)", t.name);
            }
            (Ok(()), Some(_)) => {
                passed += 1;
                flaky += 1;
                println!("PASS {} ({ms} ms, on its second run)", t.name);
            }
            (Err(Failure::Fail(why)), None) => {
                failed += 1;
                println!("FAIL {}: {why}", t.name);
            }
            (Err(Failure::Fail(why)), Some(_)) => {
                failed += 1;
                println!(
                    "FAIL {}: {why} (and its first run, see FLAKY above)",
                    t.name
                );
            }
            // A second run that skips cannot clear the first run's failure.
            (Err(Failure::Skip(why)), Some(_)) => {
                failed += 1;
                println!(
                    "FAIL {}: its second run skipped ({why}); its first run failed, see FLAKY above",
                    t.name
                );
            }
            (Err(Failure::Skip(why)), None) => {
                skipped += 1;
                println!("SKIP {}: {why}", t.name);
            }
        }
    }

    // The suite's own check that nothing is left behind. The clients go
    // first: containerd is stopped, and what they left is removed.
    let client_left = ctx.clients.shutdown();
    let mut left = ctx.leaks.borrow().clone();
    left.extend(client_left);
    left.extend(leftovers(&ctx));
    context::remove_new_cgroup_parents(&parents_before);
    if left.is_empty() {
        passed += 1;
        println!("PASS nothing_left_behind");
    } else {
        failed += 1;
        println!("FAIL nothing_left_behind: {}", left.join("; "));
    }
    if left.is_empty() {
        let _ = Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(&tmp)
            .status();
        // The runtime's --root (empty now) and its parent, unless another run uses it.
        let _ = fs::remove_dir(&root);
        let _ = fs::remove_dir("/run/berth-test");
    } else {
        println!("(kept {} for inspection)", tmp.display());
    }

    println!("({} s)", started.elapsed().as_secs());
    let flaky = if flaky > 0 {
        format!(" ({flaky} passed only on a second run: the peer hung, see FLAKY)")
    } else {
        String::new()
    };
    let flaky = if interrupted {
        flaky + " (interrupted by a signal: not every test ran)"
    } else {
        flaky
    };
    println!(
        "runtime {}: {passed} passed, {failed} failed, {skipped} skipped{flaky}",
        path.display()
    );
    Ok(if failed == 0 && !interrupted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A failure of a peer runtime (runc) that is one of its own commands timing out
/// ([`runtime::Out::describe`]'s "`runc ARGS` -> timed out"): such a test runs once more. Seen
/// once in the VM under TCG (`runc run --detach` not returning within 100 s, in a test that
/// passes in 25 runs of its own); the peer passes only check the tests, so a peer's rare hang
/// should not fail them. The timed-out command's process tree is killed
/// ([`runtime::Pending::wait`]); whatever else the first run leaves still fails
/// `nothing_left_behind`. A test that hangs on its second run fails, and berth's own passes
/// never run a test twice: a hang there is a defect.
fn peer_hung(rt: &Runtime, why: &str) -> bool {
    const TIMED_OUT: &str = "` -> timed out";
    let command = format!("{} ", rt.name());
    rt.is_runc()
        && why.match_indices(TIMED_OUT).any(|(end, _)| {
            why[..end]
                .rfind('`')
                .is_some_and(|start| why[start + 1..end].starts_with(&command))
        })
}

fn mkdir_mode(p: &Path, mode: u32) -> Result<(), String> {
    fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

/// Everything of this run still on the host after all tests.
fn leftovers(ctx: &Ctx) -> Vec<String> {
    let mut left = Vec::new();
    if let Ok(rd) = fs::read_dir(&ctx.rt.root) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&ctx.prefix) {
                left.push(format!("state dir {}", e.path().display()));
            }
        }
    }
    let ids = ctx.ids.borrow().clone();
    for id in &ids {
        for cg in context::cgroup_dirs(id) {
            left.push(format!("cgroup {}", cg.display()));
        }
        for pid in context::processes_of(id, &ctx.tmp) {
            left.push(format!("process {pid} ({})", context::comm(pid)));
        }
    }
    let tmp = ctx.tmp.to_string_lossy().into_owned();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in info.lines().filter(|l| l.contains(&tmp)) {
        left.push(format!("mount {l}"));
    }
    left.sort();
    left.dedup();
    left
}
