//! Faults: a runtime killed or failing at an exact system call (strace `-e inject`) must
//! leave nothing that blocks or outlives `delete --force`. The random version of these is
//! `integration faults` (src/faults.rs).

use std::path::Path;
use std::time::Duration;

use super::WAIT_FOR_GO;
use crate::context::Ctx;
use crate::harness::{Test, TestResult};
use crate::runtime::Out;
use crate::{ensure, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        create_killed_after_init_is_ready_holds_no_lock,
        create_killed_before_state_leaves_no_cgroup,
        failed_sync_write_is_an_error_not_a_hang,
        failed_unlock_is_not_a_panic,
        failed_cgroup_removal_leaves_it_to_delete,
    ]
}

/// How long a command after a fault may take: far more than it needs, far less than forever.
const BOUND: Duration = Duration::from_secs(10);

/// strace traced only the runtime's own process(es), not the container's init: runc is Go
/// (threads: -f), and its init is detached at its execve; berth is single-threaded, and its
/// init never execs before `start`, so it is not followed at all.
fn strace(ctx: &Ctx, more: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["strace", "-o", "/dev/null"].map(String::from).to_vec();
    if ctx.rt.is_runc() {
        v.extend(["-f", "-b", "execve"].map(String::from));
    }
    v.extend(more.iter().map(|s| s.to_string()));
    v
}

fn run_wrapped(ctx: &Ctx, wrapper: &[String], args: &[&str]) -> Out {
    let w: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    ctx.rt.exec_wrapped(&w, args, BOUND)
}

/// Orphans of a killed runtime (runc's init) come to this process, which reaps them, rather
/// than to the machine's PID 1, which does not; for as long as it lives.
struct Reaper;

impl Reaper {
    fn new() -> Result<Reaper, crate::harness::Failure> {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| crate::harness::Failure::Fail(format!("PR_SET_CHILD_SUBREAPER: {e}")))?;
        Ok(Reaper)
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = nix::sys::prctl::set_child_subreaper(false);
        crate::campaign::reap_orphans();
    }
}

/// Issue 11 item 2: a create killed after init reported ready (here at the rename of its
/// pid file) left init holding the state directory's flock (inherited over clone), so
/// `start` and `delete --force` waited forever.
fn create_killed_after_init_is_ready_holds_no_lock(ctx: &Ctx) -> TestResult {
    super::need_strace()?;
    let _reaper = Reaper::new()?;
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.write_config()?;
    let pf = b.dir.join("init.pid").to_string_lossy().into_owned();
    // strace -P matches a path given by name only if it exists when strace starts: the
    // runtimes rename their new pid file over this one.
    std::fs::write(&pf, "")?;
    let renames = "rename,renameat,renameat2";
    let w = if ctx.rt.is_runc() {
        strace(
            ctx,
            &[
                "-P",
                &pf,
                "-e",
                &format!("trace={renames}"),
                "-e",
                &format!("inject={renames}:signal=KILL"),
            ],
        )
    } else {
        // strace -P does not match berth's rename(2) of the pid file (only renameat2's
        // target): berth renames state.json into place, then the pid file.
        strace(
            ctx,
            &[
                "-e",
                "trace=rename",
                "-e",
                "inject=rename:signal=KILL:when=2",
            ],
        )
    };
    let dir = b.dir.to_string_lossy().into_owned();
    let out = run_wrapped(
        ctx,
        &w,
        &["create", "--pid-file", &pf, "--bundle", &dir, &b.id],
    );
    ensure!(
        !out.success() && !out.timed_out,
        "create was not killed at the rename of its pid file: {}",
        out.describe()
    );
    let start = ctx.rt.exec_timeout(&["start", &b.id], BOUND);
    ensure!(
        !start.timed_out,
        "start waited for a lock held by the dead create: {}",
        start.describe()
    );
    start.ok()?;
    let del = ctx.rt.exec_timeout(&["delete", "--force", &b.id], BOUND);
    ensure!(!del.timed_out, "delete --force hung: {}", del.describe());
    del.ok()?;
    b.ensure_clean()
}

/// Issue 11 item 3: a create killed after making its cgroup but before state.json (here
/// at its write of pids.max) left the cgroup in every hierarchy after `delete --force`.
fn create_killed_before_state_leaves_no_cgroup(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc() {
        skip!(
            "runc (1.1.5 and 1.3.6 alike) leaks the cgroup too: its `delete --force` of a \
             container without state.json only removes the state dir (seen here with this \
             very fault)"
        );
    }
    super::need_strace()?;
    let _reaper = Reaper::new()?;
    let mut b = ctx.bundle()?;
    b.cfg.sh("true");
    b.cfg
        .set("/linux/resources/pids", serde_json::json!({"limit": 100}));
    b.write_config()?;
    let pids_max = format!("{}/pids.max", pids_cgroup_dir(&b.id)?);
    let w = strace(
        ctx,
        &[
            "-P",
            &pids_max,
            "-e",
            "trace=write",
            "-e",
            "inject=write:signal=KILL",
        ],
    );
    let dir = b.dir.to_string_lossy().into_owned();
    let out = run_wrapped(ctx, &w, &["create", "--bundle", &dir, &b.id]);
    ensure!(
        !out.success() && !out.timed_out,
        "create was not killed at its write of pids.max: {}",
        out.describe()
    );
    ensure!(
        !crate::context::cgroup_dirs(&b.id).is_empty(),
        "no cgroup was made before the kill: the fault is not where this test needs it"
    );
    let del = ctx.rt.exec_timeout(&["delete", "--force", &b.id], BOUND);
    ensure!(!del.timed_out, "delete --force hung: {}", del.describe());
    del.ok()?;
    b.ensure_clean()
}

/// Issue 11 item 4: when berth's write of a sync message to init failed (here EIO on its
/// `Go`), berth waited for init's report while init waited for `Go`: both forever.
fn failed_sync_write_is_an_error_not_a_hang(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc() {
        skip!("exercises berth's own init protocol (its `Go` message); runc's differs");
    }
    super::need_strace()?;
    let mut b = ctx.bundle()?;
    b.cfg.sh("true");
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    // Which of create's writes is the Go message: a traced dry run, deleted again.
    let log = b.dir.join("writes.log").to_string_lossy().into_owned();
    let w = vec![
        "strace".to_string(),
        "-o".into(),
        log.clone(),
        "-e".into(),
        "trace=write".into(),
    ];
    run_wrapped(ctx, &w, &["create", "--bundle", &dir, &b.id]).ok()?;
    ctx.rt.exec(&["delete", "--force", &b.id]).ok()?;
    let text = std::fs::read_to_string(&log)?;
    let writes: Vec<&str> = text.lines().filter(|l| l.starts_with("write(")).collect();
    let Some(n) = writes.iter().position(|l| l.contains(r#""\"Go\"""#)) else {
        crate::fail!("no write of the Go message in create's trace:\n{text}");
    };
    let w = strace(
        ctx,
        &[
            "-e",
            "trace=write",
            "-e",
            &format!("inject=write:error=EIO:when={}", n + 1),
        ],
    );
    let out = run_wrapped(ctx, &w, &["create", "--bundle", &dir, &b.id]);
    ensure!(
        !out.timed_out,
        "create hung after its write to init failed: {}",
        out.describe()
    );
    let out = out.failed()?;
    out.stderr_mentions("input/output error")?;
    let del = ctx.rt.exec_timeout(&["delete", "--force", &b.id], BOUND);
    ensure!(!del.timed_out, "delete --force hung: {}", del.describe());
    b.ensure_clean()
}

/// Issue 11 item 5: nix's Flock panics (and berth aborts) when unlocking fails; the lock is
/// released when its descriptor closes anyway. Here every flock after the first fails.
fn failed_unlock_is_not_a_panic(ctx: &Ctx) -> TestResult {
    super::need_strace()?;
    let _reaper = Reaper::new()?;
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    let w = strace(
        ctx,
        &[
            "-e",
            "trace=flock",
            "-e",
            "inject=flock:error=ENOLCK:when=2+",
        ],
    );
    let create = run_wrapped(ctx, &w, &["create", "--bundle", &dir, &b.id]);
    ensure!(
        !create.stderr.contains("panicked"),
        "create panicked: {}",
        create.describe()
    );
    create.ok()?;
    b.wait_status("created")?;
    let del = run_wrapped(ctx, &w, &["delete", "--force", &b.id]);
    ensure!(
        !del.stderr.contains("panicked"),
        "delete panicked: {}",
        del.describe()
    );
    del.ok()?;
    b.ensure_clean()
}

/// A create that fails and then cannot remove its cgroup (every open of the cgroup's
/// directory fails here, EAGAIN; the fault injector found one such open, seed 1): it used to
/// remove its state dir anyway, and the cgroup was left with nothing recording it. The state
/// dir now stays, and `delete --force` removes both.
fn failed_cgroup_removal_leaves_it_to_delete(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc() {
        skip!("strace's path filter targets berth's own cleanup of its cgroup");
    }
    super::need_strace()?;
    let mut b = ctx.bundle()?;
    // init fails after the cgroup exists: a bind mount whose source is missing.
    b.cfg.add_bind(Path::new("/no/such/source"), "/mnt/x", &[]);
    b.cfg.sh("true");
    b.write_config()?;
    let cg_dir = pids_cgroup_dir(&b.id)?;
    let w = strace(
        ctx,
        &[
            "-P",
            &cg_dir,
            "-e",
            "trace=open,openat",
            "-e",
            "inject=open,openat:error=EAGAIN",
        ],
    );
    let dir = b.dir.to_string_lossy().into_owned();
    let out = run_wrapped(ctx, &w, &["create", "--bundle", &dir, &b.id]);
    ensure!(
        !out.success() && !out.timed_out,
        "create should fail (missing mount source): {}",
        out.describe()
    );
    let del = ctx.rt.exec_timeout(&["delete", "--force", &b.id], BOUND);
    ensure!(!del.timed_out, "delete --force hung: {}", del.describe());
    del.ok()?;
    b.ensure_clean()
}

/// The container's directory in the v1 pids hierarchy, or in the unified one (the cgroup v2
/// VM); a skip where neither is mounted.
fn pids_cgroup_dir(id: &str) -> Result<String, crate::harness::Failure> {
    if Path::new("/sys/fs/cgroup/pids").is_dir() {
        Ok(format!("/sys/fs/cgroup/pids/berth-test/{id}"))
    } else if Path::new("/sys/fs/cgroup/cgroup.controllers").is_file() {
        Ok(format!("/sys/fs/cgroup/berth-test/{id}"))
    } else {
        skip!("no pids controller found (neither v1's pids hierarchy nor cgroup v2)");
    }
}
