//! Create and run at exhausted limits (issue 11 item 9): a pids limit of 1, an init or process
//! killed by the OOM killer, a tiny RLIMIT_NOFILE, a state root out of space or inodes. Each
//! ends in bounded time with the process's own failure or an error saying which limit, and
//! leaves nothing behind.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::context::Ctx;
use crate::harness::{Failure, Test, TestResult};
use crate::runtime::Runtime;
use crate::{ensure, ensure_eq, fail, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        limits_pids_max_one,
        limits_oom_killed_process_and_init,
        limits_tiny_nofile,
        limits_state_root_out_of_space
    ]
}

/// pids.max 1: init runs, its forks fail with EAGAIN, and the container goes cleanly.
fn limits_pids_max_one(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/linux/resources/pids", json!({"limit": 1}));
    b.cfg
        .args(&["sh", "-c", "echo start; (echo sub); echo rc=$?"]);
    let out = b.run(&[]);
    ensure!(!out.timed_out, "run hung: {}", out.describe());
    ensure_eq!(
        out.code,
        Some(2),
        format!("sh's exit status: {}", out.describe())
    );
    ensure_eq!(out.stdout.trim(), "start", "what ran before the fork");
    out.stderr_mentions("can't fork")?;
    ensure!(b.delete().success() || b.status().is_none(), "delete");
    b.ensure_clean()
}

/// A process killed by the OOM killer exits 137 and the container goes cleanly; an init
/// killed during create (a limit below what init needs) fails create with runc's diagnosis.
fn limits_oom_killed_process_and_init(ctx: &Ctx) -> TestResult {
    let v2_memory = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.split_whitespace().any(|k| k == "memory"));
    if !v2_memory && !Path::new("/sys/fs/cgroup/memory").exists() {
        skip!("no memory controller");
    }
    let b = {
        let mut b = ctx.bundle()?;
        let limit = 32 << 20;
        b.cfg.set(
            "/linux/resources/memory",
            json!({"limit": limit, "swap": limit}),
        );
        b.cfg.args(&[
            "sh",
            "-c",
            "echo start; a=$(head -c 200000000 /dev/zero | tr '\\0' x); echo survived",
        ]);
        b
    };
    let out = b.run(&[]);
    ensure!(!out.timed_out, "run hung: {}", out.describe());
    ensure_eq!(
        out.code,
        Some(137),
        format!("exit of the OOM-killed sh: {}", out.describe())
    );
    ensure_eq!(out.stdout.trim(), "start", "output");
    let _ = b.delete();
    b.ensure_clean()?;
    drop(b);

    // 64 KiB: runc's init needs megabytes (runc fails setting the limit below its usage);
    // berth's dies of the OOM killer before it is set up.
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/resources/memory",
        json!({"limit": 65536, "swap": 65536}),
    );
    b.cfg.args(&["true"]);
    let out = b.create(&[]);
    ensure!(!out.timed_out, "create hung: {}", out.describe());
    ensure!(!out.success(), "create under 64 KiB succeeded");
    let said = [
        "OOM-killed (memory limit too low?)",
        "unable to set memory limit",
    ];
    ensure!(
        said.iter().any(|s| out.stderr.contains(s)),
        "create's error names the memory limit: {}",
        out.stderr
    );
    ensure!(b.status().is_none(), "a failed create leaves no container");
    b.ensure_clean()
}

/// RLIMIT_NOFILE 0 and 3: berth sets the process's rlimits last, so the process runs with
/// them; runc 1.1 and 1.3 fail in their init ("too many open files"). Either way nothing hangs
/// and nothing is left.
fn limits_tiny_nofile(ctx: &Ctx) -> TestResult {
    for n in [0, 3] {
        let mut b = ctx.bundle()?;
        b.cfg.set(
            "/process/rlimits",
            json!([{"type": "RLIMIT_NOFILE", "hard": n, "soft": n}]),
        );
        b.cfg.args(&["sh", "-c", "echo ok"]);
        let out = b.run(&[]);
        ensure!(!out.timed_out, "nofile {n}: run hung: {}", out.describe());
        if ctx.rt.is_runc() {
            ensure!(
                out.success() || out.stderr.contains("too many open files"),
                "nofile {n}: {}",
                out.describe()
            );
        } else {
            ensure_eq!(
                out.stdout.trim(),
                "ok",
                format!("nofile {n}: {}", out.describe())
            );
            ensure_eq!(out.code, Some(0), format!("nofile {n}: exit"));
        }
        let _ = b.delete();
        b.ensure_clean()?;
    }
    Ok(())
}

/// `--root` on a 64 KiB tmpfs, filled to leave 0 to 60 KiB, then one with no inode left:
/// each create either succeeds or fails saying "no space", and a failed one leaves no state
/// dir, cgroup or process; once there is room again, the same id is created.
fn limits_state_root_out_of_space(ctx: &Ctx) -> TestResult {
    let root = ctx.scratch_dir("tiny-root")?;
    let mount = |opts: &str| -> TestResult {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tiny"])
            .arg(&root)
            .status()?;
        ensure!(st.success(), "mount tmpfs -o {opts}");
        Ok(())
    };
    let umount = || {
        let _ = Command::new("umount").arg(&root).status();
    };
    let rt = Runtime::new(
        ctx.rt.path.clone(),
        root.join("state"),
        ctx.scratch_dir("tiny-root-io")?,
    )
    .map_err(Failure::Fail)?;
    let result = (|| -> TestResult {
        let mut failed = 0;
        let fills: Vec<(String, u64)> = (0..=15)
            .map(|k| ("size=64k,mode=0700".to_string(), (64 - 4 * k) << 10))
            .chain([("size=1m,nr_inodes=32,mode=0700".to_string(), 0)])
            .collect();
        for (opts, fill) in fills {
            mount(&opts)?;
            std::fs::create_dir(root.join("state"))?;
            if opts.contains("nr_inodes") {
                // Empty files take every inode left.
                let mut i = 0;
                while std::fs::write(root.join(format!("inode{i}")), b"").is_ok() && i < 64 {
                    i += 1;
                }
            } else {
                let _ = std::fs::write(root.join("fill"), vec![b'x'; fill as usize]);
            }
            let b = ctx.bundle()?;
            b.write_config()?;
            let d = b.dir.to_string_lossy().into_owned();
            let out = rt.exec(&["create", "--bundle", &d, &b.id]);
            ensure!(!out.timed_out, "{opts} fill {fill}: create hung");
            if out.success() {
                let del = rt.exec(&["delete", "--force", &b.id]);
                ensure!(
                    del.success(),
                    "{opts} fill {fill}: delete: {}",
                    del.describe()
                );
            } else {
                failed += 1;
                let e = out.stderr.to_lowercase();
                // runc 1.1 loses the cause: "unable to store init state: %!w(<nil>)".
                let runc11 =
                    ctx.rt.is_runc_before(1, 2) && e.contains("unable to store init state");
                ensure!(
                    e.contains("no space left") || runc11,
                    "{opts} fill {fill}: the error says why: {}",
                    out.stderr
                );
                ensure!(
                    rt.status(&b.id).is_none(),
                    "{opts} fill {fill}: a failed create leaves no container"
                );
                let left = ctx.leftovers(&b.id, &b.dir);
                let left: Vec<_> = left
                    .into_iter()
                    .filter(|l| !l.starts_with("state"))
                    .collect();
                ensure!(left.is_empty(), "{opts} fill {fill}: left {left:?}");
                let state = rt.root.join(&b.id);
                ensure!(
                    std::fs::symlink_metadata(&state).is_err(),
                    "{opts} fill {fill}: state dir {} left",
                    state.display()
                );
                // Room again: the same id is created and deleted.
                let _ = std::fs::remove_file(root.join("fill"));
                for i in 0..64 {
                    let _ = std::fs::remove_file(root.join(format!("inode{i}")));
                }
                let again = rt.exec(&["create", "--bundle", &d, &b.id]);
                ensure!(
                    again.success(),
                    "{opts} fill {fill}: create again: {}",
                    again.describe()
                );
                let del = rt.exec(&["delete", "--force", &b.id]);
                ensure!(
                    del.success(),
                    "{opts} fill {fill}: delete: {}",
                    del.describe()
                );
            }
            drop(b);
            umount();
        }
        if failed == 0 {
            fail!("no create ran out of space: the test filled nothing");
        }
        Ok(())
    })();
    umount();
    result
}
