//! Lifecycle races (issue 11 item 9): two commands on one container at once — `start` with
//! `delete`, `kill` with `delete --force`, `exec` with `delete --force` — end in bounded time,
//! each either succeeds or says why not, and after the last `delete --force` nothing of the
//! container is left: no state, cgroup, mount, or process (an exec'd process that slipped in
//! while the container went away included).

use std::path::Path;

use crate::context::Ctx;
use crate::harness::{Failure, Test, TestResult};
use crate::runtime::Out;
use crate::tests::load::light_bundle;
use crate::{ensure, fail};

pub fn tests() -> Vec<Test> {
    crate::tests![
        race_start_with_delete,
        race_kill_with_delete_force,
        race_exec_with_delete_force
    ]
}

/// Rounds per race (fewer in the slow VM).
fn rounds() -> usize {
    if crate::runtime::timeout_scale() > 1 {
        5
    } else {
        15
    }
}

/// Both commands, started together, waited for (each within the command timeout).
fn at_once(ctx: &Ctx, a: &[&str], b: &[&str]) -> Result<(Out, Out), Failure> {
    let pa = ctx.rt.spawn(a)?;
    let pb = ctx.rt.spawn(b)?;
    let t = crate::runtime::cmd_timeout();
    Ok((pa.wait(t), pb.wait(t)))
}

/// A finished command: success, or a failure whose stderr says why (never a hang or a crash).
fn settled(out: &Out, round: usize) -> Result<(), Failure> {
    ensure!(!out.timed_out, "round {round}: `{}` hung", out.cmd);
    ensure!(
        out.code.is_some(),
        "round {round}: `{}` died by a signal: {}",
        out.cmd,
        out.stderr
    );
    ensure!(
        out.success() || !out.stderr.trim().is_empty(),
        "round {round}: `{}` failed without saying why",
        out.cmd
    );
    Ok(())
}

/// `delete --force`, then require that nothing of the container is left.
fn gone(ctx: &Ctx, id: &str, dir: &Path, round: usize) -> TestResult {
    let out = ctx.rt.exec(&["delete", "--force", id]);
    settled(&out, round)?;
    let left = ctx.leftovers(id, dir);
    if !left.is_empty() {
        ctx.reap(id, dir);
        fail!("round {round}: left behind: {}", left.join("; "));
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// `rounds()` rounds of: a new container of `sleep 3600` made by `setup` (`create` or
/// `run --detach`), then the commands `a` and `b` at once (`ID` in them stands for its id),
/// each settled, `check` on both outcomes, and a final `delete --force` that leaves nothing.
fn race(
    ctx: &Ctx,
    setup: &[&str],
    a: &[&str],
    b: &[&str],
    check: impl Fn(&str, &Out, &Out, usize) -> TestResult,
) -> TestResult {
    for round in 0..rounds() {
        let id = ctx.new_id();
        let dir = light_bundle(ctx, &id, &["sleep", "3600"])?;
        let d = dir.to_string_lossy().into_owned();
        let mut made = setup.to_vec();
        made.extend(["--bundle", &d, &id]);
        ctx.rt.exec(&made).ok()?;
        let with_id = |args: &[&str]| -> Vec<String> {
            args.iter()
                .map(|w| {
                    if *w == "ID" {
                        id.clone()
                    } else {
                        w.to_string()
                    }
                })
                .collect()
        };
        let (a, b) = (with_id(a), with_id(b));
        let (ra, rb) = at_once(
            ctx,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            &b.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        settled(&ra, round)?;
        settled(&rb, round)?;
        check(&id, &ra, &rb, round)?;
        gone(ctx, &id, &dir, round)?;
    }
    Ok(())
}

/// `start` and `delete` of a created container at once: if delete won, start fails and no
/// process ran; if start won, delete of the running container fails (or succeeds after the
/// short process exited). Either way the final `delete --force` leaves nothing.
fn race_start_with_delete(ctx: &Ctx) -> TestResult {
    race(
        ctx,
        &["create"],
        &["start", "ID"],
        &["delete", "ID"],
        |id, _, delete, round| {
            if delete.success() {
                ensure!(
                    ctx.rt.status(id).is_none(),
                    "round {round}: deleted, yet `state` still finds it"
                );
            }
            Ok(())
        },
    )
}

/// `kill KILL` and `delete --force` of a running container at once.
fn race_kill_with_delete_force(ctx: &Ctx) -> TestResult {
    race(
        ctx,
        &["run", "--detach"],
        &["kill", "ID", "KILL"],
        &["delete", "--force", "ID"],
        |_, _, delete, round| {
            ensure!(
                delete.success(),
                "round {round}: delete --force failed: {}",
                delete.stderr
            );
            Ok(())
        },
    )
}

/// `exec -d sleep` and `delete --force` at once: the exec either lands in the container
/// (and dies with it) or fails; no exec'd process outlives the container.
fn race_exec_with_delete_force(ctx: &Ctx) -> TestResult {
    race(
        ctx,
        &["run", "--detach"],
        &["exec", "--detach", "ID", "sleep", "3599"],
        &["delete", "--force", "ID"],
        |_, _, _, _| Ok(()),
    )
}
