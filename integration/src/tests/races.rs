//! Lifecycle races (issue 11 item 9): two commands on one container at once — `start` with
//! `delete`, `kill` with `delete --force`, `exec` with `delete --force` — end in bounded time,
//! each either succeeds or says why not, and after the last `delete --force` nothing of the
//! container is left: no state, cgroup, mount, or process (an exec'd process that slipped in
//! while the container went away included).

use std::path::Path;
use std::time::Duration;

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

/// `start` and `delete` of a created container at once: if delete won, start fails and no
/// process ran; if start won, delete of the running container fails (or succeeds after the
/// short process exited). Either way the final `delete --force` leaves nothing.
fn race_start_with_delete(ctx: &Ctx) -> TestResult {
    for round in 0..rounds() {
        let id = ctx.new_id();
        let dir = light_bundle(ctx, &id, &["sleep", "3600"])?;
        let d = dir.to_string_lossy().into_owned();
        ctx.rt.exec(&["create", "--bundle", &d, &id]).ok()?;
        let (start, delete) = at_once(ctx, &["start", &id], &["delete", &id])?;
        settled(&start, round)?;
        settled(&delete, round)?;
        if delete.success() {
            ensure!(
                ctx.rt.status(&id).is_none(),
                "round {round}: deleted, yet `state` still finds it"
            );
        }
        gone(ctx, &id, &dir, round)?;
    }
    Ok(())
}

/// `kill KILL` and `delete --force` of a running container at once.
fn race_kill_with_delete_force(ctx: &Ctx) -> TestResult {
    for round in 0..rounds() {
        let id = ctx.new_id();
        let dir = light_bundle(ctx, &id, &["sleep", "3600"])?;
        let d = dir.to_string_lossy().into_owned();
        ctx.rt
            .exec(&["run", "--detach", "--bundle", &d, &id])
            .ok()?;
        let (kill, delete) = at_once(ctx, &["kill", &id, "KILL"], &["delete", "--force", &id])?;
        settled(&kill, round)?;
        settled(&delete, round)?;
        ensure!(
            delete.success(),
            "round {round}: delete --force failed: {}",
            delete.stderr
        );
        gone(ctx, &id, &dir, round)?;
    }
    Ok(())
}

/// `exec -d sleep` and `delete --force` at once: the exec either lands in the container
/// (and dies with it) or fails; no exec'd process outlives the container.
fn race_exec_with_delete_force(ctx: &Ctx) -> TestResult {
    for round in 0..rounds() {
        let id = ctx.new_id();
        let dir = light_bundle(ctx, &id, &["sleep", "3600"])?;
        let d = dir.to_string_lossy().into_owned();
        ctx.rt
            .exec(&["run", "--detach", "--bundle", &d, &id])
            .ok()?;
        // Let a few rounds race against a container already half gone.
        if round % 3 == 1 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let (exec, delete) = at_once(
            ctx,
            &["exec", "--detach", &id, "sleep", "3599"],
            &["delete", "--force", &id],
        )?;
        settled(&exec, round)?;
        settled(&delete, round)?;
        gone(ctx, &id, &dir, round)?;
    }
    Ok(())
}
