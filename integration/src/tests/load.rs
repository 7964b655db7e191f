//! Load (issue 11): many containers at once, and many creates of one id at once, with a leak
//! count of zero afterwards (processes, mounts, cgroups, state, descriptors).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::context::{alive, Ctx};
use crate::harness::{Failure, Test, TestResult};
use crate::{ensure, ensure_eq, fail, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![load_containers_in_parallel, load_same_id_create_race]
}

/// 200 containers (40 in the slow VM) on one shared read-only rootfs.
fn how_many() -> usize {
    if crate::runtime::timeout_scale() > 1 {
        40
    } else {
        200
    }
}

/// Worker threads: enough that creates overlap at every step on 2 cores.
const WORKERS: usize = 16;

/// What a leak would show: the suite's mounts, the container cgroups under berth-test, the
/// runtime's state directories, and this process's descriptors.
#[derive(Debug, PartialEq)]
struct Counts {
    mounts: usize,
    cgroups: usize,
    states: usize,
    fds: usize,
}

fn count_dir(p: &Path) -> usize {
    fs::read_dir(p).map(|d| d.count()).unwrap_or(0)
}

fn counts(ctx: &Ctx) -> Counts {
    let cgroups = fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| count_dir(&h.path().join("berth-test")))
        .sum::<usize>()
        + count_dir(Path::new("/sys/fs/cgroup/berth-test"));
    Counts {
        mounts: fs::read_to_string("/proc/self/mountinfo")
            .map(|m| m.lines().count())
            .unwrap_or(0),
        cgroups,
        states: count_dir(&ctx.rt.root),
        fds: count_dir(Path::new("/proc/self/fd")),
    }
}

/// A bundle directory holding only a config.json whose root is `rootfs` (shared, read-only).
pub(super) fn light_bundle(ctx: &Ctx, id: &str, args: &[&str]) -> Result<PathBuf, Failure> {
    let dir = ctx.tmp.join("bundles").join(ctx.new_dir_name(id));
    fs::create_dir_all(&dir)?;
    let mut cfg = crate::config::Config::base(&format!("/berth-test/{id}"));
    cfg.set("/root", json!({"path": ctx.rootfs, "readonly": true}));
    cfg.args(args);
    fs::write(dir.join("config.json"), cfg.to_string_pretty())?;
    Ok(dir)
}

/// The runtime's binary and root, to run it from many threads (`Runtime` is not `Sync`).
struct Rt {
    path: PathBuf,
    root: PathBuf,
    /// Where the stderr files go (the suite's temp dir).
    tmp: PathBuf,
}

impl Rt {
    fn of(ctx: &Ctx) -> Rt {
        Rt {
            path: ctx.rt.path.clone(),
            root: ctx.rt.root.clone(),
            tmp: ctx.tmp.clone(),
        }
    }

    /// Run to the end; stdout is not kept and stderr goes through a file, so that a detached
    /// container, which inherits both, does not hold a pipe open that the wait reads to EOF.
    fn run(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        let err = tempfile_in(&self.tmp)?;
        let status = Command::new(&self.path)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err.0.try_clone()?)
            .status()?;
        let stderr = fs::read(&err.1).unwrap_or_default();
        let _ = fs::remove_file(&err.1);
        Ok(std::process::Output {
            status,
            stdout: Vec::new(),
            stderr,
        })
    }
}

/// A new file in `dir`.
fn tempfile_in(dir: &Path) -> std::io::Result<(fs::File, PathBuf)> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = dir.join(format!(
        "load-err-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    Ok((fs::File::create(&p)?, p))
}

/// `run -d` of 200 containers from 16 threads, all running at once, then `delete --force`
/// of all of them from 16 threads: every one starts and goes, and nothing is left.
fn load_containers_in_parallel(ctx: &Ctx) -> TestResult {
    let rt = Rt::of(ctx);
    let n = how_many();
    let before = counts(ctx);
    let ids: Vec<String> = (0..n).map(|_| ctx.new_id()).collect();
    let dirs = ids
        .iter()
        .map(|id| light_bundle(ctx, id, &["sleep", "3600"]))
        .collect::<Result<Vec<_>, _>>()?;
    let next = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    let each = |f: &(dyn Fn(usize) -> Result<(), String> + Sync)| {
        next.store(0, Ordering::SeqCst);
        std::thread::scope(|s| {
            for _ in 0..WORKERS {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    if let Err(e) = f(i) {
                        failures.lock().unwrap().push(e);
                    }
                });
            }
        });
    };
    each(&|i| {
        let dir = dirs[i].to_string_lossy().into_owned();
        let out = rt
            .run(&["run", "--detach", "--bundle", &dir, &ids[i]])
            .map_err(|e| format!("run {}: {e}", ids[i]))?;
        if !out.status.success() {
            return Err(format!(
                "run {}: {}: {}",
                ids[i],
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    });
    let mut pids = Vec::new();
    let list = ctx.rt.exec(&["list", "--format", "json"]).ok()?;
    let listed: serde_json::Value =
        serde_json::from_str(&list.stdout).unwrap_or(serde_json::Value::Null);
    for id in &ids {
        let entry = listed
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()));
        match entry {
            Some(c) if c["status"] == "running" => {
                pids.push(c["pid"].as_u64().unwrap_or(0) as u32);
            }
            other => failures
                .lock()
                .unwrap()
                .push(format!("{id} not running after run -d: {other:?}")),
        }
    }
    let running = pids.len();
    each(&|i| {
        let out = rt
            .run(&["delete", "--force", &ids[i]])
            .map_err(|e| format!("delete {}: {e}", ids[i]))?;
        if !out.status.success() {
            return Err(format!(
                "delete --force {}: {}",
                ids[i],
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    });
    for d in &dirs {
        let _ = fs::remove_dir_all(d);
    }
    let failures = failures.into_inner().unwrap();
    if !failures.is_empty() {
        fail!(
            "{} of {n} failed, e.g.: {}",
            failures.len(),
            failures[..failures.len().min(5)].join("; ")
        );
    }
    ensure_eq!(running, n, "containers running at once");
    for p in pids {
        ensure!(
            crate::harness::wait_until(std::time::Duration::from_secs(5), || !alive(p)),
            "pid {p} alive after delete --force"
        );
    }
    ensure_eq!(
        counts(ctx),
        before,
        "mounts, cgroups, state dirs, fds before and after"
    );
    Ok(())
}

/// 16 creates of one id at once, 10 rounds: exactly one wins each round, the others fail
/// saying the id exists, and after the winner's delete nothing is left. (issue 11: berth had
/// exactly one winner in 200 races where runc 1.1 lost both containers 26 times.)
fn load_same_id_create_race(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 2) {
        skip!(
            "runc 1.1 loses the race's winner: a losing create removes its state and leaves \
             its init and cgroups behind (measured here; runc 1.3.6 passes)"
        );
    }
    let rt = Rt::of(ctx);
    let before = counts(ctx);
    for round in 0..10 {
        let id = ctx.new_id();
        let dir = light_bundle(ctx, &id, &["true"])?;
        let dir_arg = dir.to_string_lossy().into_owned();
        let results: Vec<std::io::Result<std::process::Output>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..WORKERS)
                .map(|_| s.spawn(|| rt.run(&["create", "--bundle", &dir_arg, &id])))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut won = 0;
        for r in &results {
            let out = r.as_ref().map_err(|e| format!("create: {e}"))?;
            if out.status.success() {
                won += 1;
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                ensure!(
                    err.contains("exists"),
                    "round {round}: a losing create says why not: {err}"
                );
            }
        }
        ensure_eq!(won, 1, "winners of round {round}");
        let state = rt.run(&["state", &id])?;
        ensure!(
            state.status.success(),
            "round {round}: the winner's container is gone: {}",
            String::from_utf8_lossy(&state.stderr)
        );
        let out = rt.run(&["delete", "--force", &id])?;
        ensure!(
            out.status.success(),
            "delete --force: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = fs::remove_dir_all(&dir);
    }
    ensure_eq!(
        counts(ctx),
        before,
        "mounts, cgroups, state dirs, fds before and after"
    );
    Ok(())
}
