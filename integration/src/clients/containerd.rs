//! A private containerd (own root, state, socket; CRI disabled) whose stock
//! runc shim (`io.containerd.runc.v2`) drives the runtime under test through
//! `ctr run --runc-binary <runtime> --runc-root <dir>`: Debian 12's 1.6.20, or
//! sid's 2.1.9 unpacked by `hack/install-peers.sh` (its own `ctr` and
//! `containerd-shim-runc-v2`, first in the daemon's PATH; a version 3 config
//! with the CRI plugins, named differently in 2.x, disabled).
//!
//! The shim calls the runtime as `<runtime> --root <runc-root>/default --log
//! <bundle>/log.json --log-format json <command> ...`; the containers get
//! ctr's default cgroupsPath `/default/<id>` (absolute, so never below the
//! machine supervisor's cgroup). containerd 1.6 keeps shim sockets in
//! `/run/containerd/s/` whatever its state dir is.

use std::cell::RefCell;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::image::{Image, IMAGE_REF};
use super::{
    cgroup_dirs, client_timeout, describe_pids, kill_all, kill_pid, processes_in_cgroup,
    processes_with_args, remove_new_cgroup_dirs, require_program, settle, unmount_below, Runner,
};
use crate::context::Ctx;
use crate::harness::{wait_until, Failure};
use crate::runtime::Out;

/// containerd's namespace (ctr's default); also the parent of the containers' cgroups.
const NAMESPACE: &str = "default";

/// Global dirs containerd 1.6 and its shims use whatever the config says; removed
/// at the end only if this run created them and they are empty.
const GLOBAL_DIRS: [&str; 4] = [
    "/run/containerd/s",
    "/run/containerd/fifo",
    "/run/containerd/runc",
    "/run/containerd",
];

/// Which containerd.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Version {
    /// Debian 12's containerd 1.6.20 (`/usr/bin/containerd`, `ctr`).
    V1_6,
    /// Debian sid's containerd 2.1.9 from `hack/install-peers.sh`'s cache.
    V2_1,
}

impl Version {
    /// The daemon, ctr, and the dir to put first in the daemon's PATH (its shims).
    fn binaries(self) -> Result<(PathBuf, PathBuf, Option<PathBuf>), String> {
        match self {
            Version::V1_6 => Ok((
                require_program("containerd", "containerd 1.6 (Debian package containerd)")?,
                require_program("ctr", "ctr (Debian package containerd)")?,
                None,
            )),
            Version::V2_1 => {
                let bin = super::peer_root("containerd-2.1.9")?.join("usr/bin");
                Ok((bin.join("containerd"), bin.join("ctr"), Some(bin)))
            }
        }
    }

    /// containerd's config: its root, state and socket below `dir`, no CRI.
    fn config(self, dir: &Path, state: &Path, sock: &Path) -> String {
        match self {
            Version::V1_6 => format!(
                "version = 2\n\
                 root = \"{root}\"\n\
                 state = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
                root = dir.join("root").display(),
                state = state.display(),
                sock = sock.display(),
                opt = dir.join("opt").display(),
            ),
            // 2.x: the CRI plugin is three plugins; there is no `opt` plugin.
            Version::V2_1 => format!(
                "version = 3\n\
                 root = \"{root}\"\n\
                 state = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\", \
                 \"io.containerd.cri.v1.runtime\", \"io.containerd.cri.v1.images\"]\n\
                 [grpc]\n  address = \"{sock}\"\n",
                root = dir.join("root").display(),
                state = state.display(),
                sock = sock.display(),
            ),
        }
    }
}

pub struct Containerd {
    /// Everything of this instance is below here.
    pub dir: PathBuf,
    pub sock: PathBuf,
    state: PathBuf,
    runc_root: PathBuf,
    fifo_dir: PathBuf,
    log: PathBuf,
    ctr: PathBuf,
    runtime: PathBuf,
    runner: Runner,
    child: RefCell<Option<Child>>,
    /// `/sys/fs/cgroup/*/default` dirs that existed before the instance started.
    cgroups_before: Vec<PathBuf>,
    /// Which of [`GLOBAL_DIRS`] existed before.
    globals_before: Vec<&'static str>,
    /// Every container id used with this instance.
    ids: RefCell<Vec<String>>,
}

impl Containerd {
    /// Start containerd `version` below `dir` and import `image` (about 0.5 s).
    pub fn start(
        dir: &Path,
        image: &Image,
        runtime: &Path,
        version: Version,
    ) -> Result<Containerd, String> {
        let (bin, ctr, path_first) = version.binaries()?;
        require_program("script", "script (Debian package bsdutils)")?;
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let c = Containerd {
            dir: dir.to_path_buf(),
            sock: dir.join("containerd.sock"),
            state: dir.join("state"),
            runc_root: dir.join("runc"),
            fifo_dir: dir.join("fifo"),
            log: dir.join("containerd.log"),
            ctr,
            runtime: runtime.to_path_buf(),
            runner: Runner::new(dir.join("io"))?,
            child: RefCell::new(None),
            cgroups_before: cgroup_dirs(NAMESPACE),
            globals_before: GLOBAL_DIRS
                .into_iter()
                .filter(|d| Path::new(d).exists())
                .collect(),
            ids: RefCell::new(Vec::new()),
        };
        let config = dir.join("config.toml");
        let text = version.config(dir, &c.state, &c.sock);
        fs::write(&config, text).map_err(|e| format!("write {}: {e}", config.display()))?;
        fs::create_dir_all(&c.fifo_dir).map_err(|e| format!("mkdir fifo dir: {e}"))?;
        let log = File::create(&c.log).map_err(|e| format!("create containerd log: {e}"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("containerd log: {e}"))?;
        let child = {
            use std::os::unix::process::CommandExt;
            let mut cmd = Command::new(&bin);
            if let Some(first) = &path_first {
                cmd.env("PATH", super::path_with_first(first));
            }
            cmd.arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .process_group(0)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", bin.display()))?
        };
        *c.child.borrow_mut() = Some(child);
        // From here on a failure must stop the daemon again.
        match c.finish_start(image) {
            Ok(()) => Ok(c),
            Err(e) => {
                let left = c.shutdown();
                Err(if left.is_empty() {
                    e
                } else {
                    format!("{e} (and at shutdown: {})", left.join("; "))
                })
            }
        }
    }

    fn finish_start(&self, image: &Image) -> Result<(), String> {
        let mut last = None;
        let up = wait_until(Duration::from_secs(10), || {
            if let Some(Ok(Some(st))) = self.child.borrow_mut().as_mut().map(Child::try_wait) {
                last = Some(format!("containerd exited: {st}"));
                return true;
            }
            let out = self.ctr_timeout(&["version"], Duration::from_secs(5));
            let ok = out.success();
            last = if ok { None } else { Some(out.describe()) };
            ok
        });
        if !up || last.is_some() {
            return Err(format!(
                "containerd did not come up: {}; log: {}",
                last.unwrap_or_else(|| "timed out".into()),
                self.log_tail()
            ));
        }
        let archive = image.archive.to_string_lossy().into_owned();
        let out = self.ctr(&["images", "import", &archive]);
        if !out.success() {
            return Err(format!("importing the test image: {}", out.describe()));
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// `ctr --address SOCK --namespace default ARGS...` (killed after 30 s).
    pub fn ctr(&self, args: &[&str]) -> Out {
        self.ctr_timeout(args, client_timeout())
    }

    fn ctr_timeout(&self, args: &[&str], timeout: Duration) -> Out {
        let desc = format!("ctr {}", args.join(" "));
        self.runner.run_as(self.ctr_command(args), desc, timeout)
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.ctr);
        cmd.args(self.global_args()).args(args);
        for v in [
            "CONTAINERD_ADDRESS",
            "CONTAINERD_NAMESPACE",
            "CONTAINERD_SNAPSHOTTER",
        ] {
            cmd.env_remove(v);
        }
        cmd
    }

    /// Run several ctr commands at the same time (each killed after 30 s).
    pub fn ctr_parallel(&self, argvs: &[Vec<String>]) -> Vec<Out> {
        let pending: Vec<_> = argvs
            .iter()
            .map(|a| {
                let args = strs(a);
                let desc = format!("ctr {}", args.join(" "));
                self.runner
                    .spawn(self.ctr_command(&args), desc, client_timeout(), None)
            })
            .collect();
        pending
            .into_iter()
            .map(|p| match p {
                Ok(p) => p.wait(),
                Err(out) => out,
            })
            .collect()
    }

    /// Like [`Containerd::ctr`], with a terminal (under `script`).
    pub fn ctr_pty(&self, args: &[&str]) -> Out {
        let mut argv = vec![self.ctr.to_string_lossy().into_owned()];
        argv.extend(self.global_args());
        argv.extend(args.iter().map(|s| s.to_string()));
        let desc = format!("ctr {}", args.join(" "));
        self.runner.run_in_pty(&argv, &[], &desc, client_timeout())
    }

    fn global_args(&self) -> Vec<String> {
        vec![
            "--address".into(),
            self.sock.to_string_lossy().into_owned(),
            "--namespace".into(),
            NAMESPACE.into(),
        ]
    }

    /// Arguments of `ctr run FLAGS... --runc-binary RT --runc-root R --fifo-dir F IMAGE ID ARGV...`.
    pub fn run_args(&self, flags: &[&str], id: &str, argv: &[&str]) -> Vec<String> {
        self.run_image_args(flags, id, IMAGE_REF, argv)
    }

    /// [`Containerd::run_args`] of another image.
    pub fn run_image_args(
        &self,
        flags: &[&str],
        id: &str,
        image: &str,
        argv: &[&str],
    ) -> Vec<String> {
        let mut v: Vec<String> = vec!["run".into()];
        v.extend(flags.iter().map(|s| s.to_string()));
        v.extend([
            "--runc-binary".into(),
            self.runtime.to_string_lossy().into_owned(),
            "--runc-root".into(),
            self.runc_root.to_string_lossy().into_owned(),
            "--fifo-dir".into(),
            self.fifo_dir.to_string_lossy().into_owned(),
            image.into(),
            id.into(),
        ]);
        v.extend(argv.iter().map(|s| s.to_string()));
        v
    }

    /// Arguments of `ctr task exec FLAGS... --fifo-dir F --exec-id EXEC ID ARGV...`.
    pub fn exec_args(&self, flags: &[&str], id: &str, exec_id: &str, argv: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec!["task".into(), "exec".into()];
        v.extend(flags.iter().map(|s| s.to_string()));
        v.extend([
            "--fifo-dir".into(),
            self.fifo_dir.to_string_lossy().into_owned(),
            "--exec-id".into(),
            exec_id.into(),
            id.into(),
        ]);
        v.extend(argv.iter().map(|s| s.to_string()));
        v
    }

    /// A new container id with a cleanup guard (nothing is created yet).
    pub fn container<'a>(&'a self, ctx: &'a Ctx) -> CtrContainer<'a> {
        let id = ctx.new_id();
        self.ids.borrow_mut().push(id.clone());
        CtrContainer { ctd: self, ctx, id }
    }

    /// `n` new container ids with one cleanup guard for all of them.
    pub fn containers_batch<'a>(&'a self, ctx: &'a Ctx, n: usize) -> CtrBatch<'a> {
        let ids: Vec<String> = (0..n).map(|_| ctx.new_id()).collect();
        self.ids.borrow_mut().extend(ids.iter().cloned());
        CtrBatch {
            ctd: self,
            ctx,
            ids,
        }
    }

    /// `ctr run -d` of `argv` in a new container; returns once the task runs.
    pub fn run_detached<'a>(
        &'a self,
        ctx: &'a Ctx,
        argv: &[&str],
    ) -> Result<CtrContainer<'a>, Failure> {
        let c = self.container(ctx);
        let args = self.run_args(&["-d"], &c.id, argv);
        self.ctr(&strs(&args)).ok()?;
        c.wait_status("RUNNING")?;
        Ok(c)
    }

    /// `(pid, status)` of task `id` from `ctr task ls`.
    pub fn task(&self, id: &str) -> Option<(u32, String)> {
        self.tasks()?
            .into_iter()
            .find_map(|(t, pid, st)| (t == id).then_some((pid, st)))
    }

    /// `(id, pid, status)` of every task from `ctr task ls` (`None` if ctr fails).
    fn tasks(&self) -> Option<Vec<(String, u32, String)>> {
        let out = self.ctr(&["task", "ls"]);
        if !out.success() {
            return None;
        }
        let parse = |l: &str| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 3 {
                return None;
            }
            Some((f[0].to_string(), f[1].parse().ok()?, f[2].to_string()))
        };
        Some(out.stdout.lines().skip(1).filter_map(parse).collect())
    }

    /// Ids from `ctr containers ls -q` (`None` if ctr fails).
    pub fn containers(&self) -> Option<Vec<String>> {
        let out = self.ctr(&["containers", "ls", "-q"]);
        out.success()
            .then(|| out.stdout.lines().map(|l| l.trim().to_string()).collect())
    }

    /// The runtime's state dir of container `id` (below `--runc-root`).
    pub fn runtime_state_dir(&self, id: &str) -> PathBuf {
        self.runc_root.join(NAMESPACE).join(id)
    }

    /// The shim's bundle dir of container `id`.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.state
            .join("io.containerd.runtime.v2.task")
            .join(NAMESPACE)
            .join(id)
    }

    /// The container's cgroup, relative to a hierarchy root (ctr's default `/default/<id>`).
    pub fn cgroup(id: &str) -> String {
        format!("{NAMESPACE}/{id}")
    }

    fn shim_processes(&self, id: Option<&str>) -> Vec<u32> {
        let sock = self.sock.to_string_lossy().into_owned();
        match id {
            Some(id) => processes_with_args(&["containerd-shim", &sock, &format!(" -id {id} ")]),
            None => processes_with_args(&["containerd-shim", &sock]),
        }
    }

    /// Everything of containers `ids` still there: in containerd, the
    /// runtime's state, the bundle, their cgroups, processes and shims, mounts.
    pub fn leftovers(&self, ids: &[String]) -> Vec<String> {
        let tasks = self.tasks().unwrap_or_default();
        let containers = self.containers().unwrap_or_default();
        let mut left = Vec::new();
        for id in ids {
            for (_, pid, st) in tasks.iter().filter(|t| &t.0 == id) {
                left.push(format!("containerd task {id} (pid {pid}, {st})"));
            }
            if containers.contains(id) {
                left.push(format!("containerd container {id}"));
            }
            left.extend(self.host_leftovers(id));
        }
        left
    }

    /// What of container `id` is on the host: runtime state, shim bundle and
    /// its mounts, cgroups, processes, shim.
    fn host_leftovers(&self, id: &str) -> Vec<String> {
        let mut left = Vec::new();
        let state = self.runtime_state_dir(id);
        if fs::symlink_metadata(&state).is_ok() {
            left.push(format!("runtime state dir {}", state.display()));
        }
        let bundle = self.bundle_dir(id);
        for m in crate::context::mounts_under(&bundle) {
            left.push(format!("mount {m}"));
        }
        if fs::symlink_metadata(&bundle).is_ok() {
            left.push(format!("shim bundle {}", bundle.display()));
        }
        for cg in cgroup_dirs(&Self::cgroup(id)) {
            left.push(format!("cgroup {}", cg.display()));
        }
        let procs = processes_in_cgroup(&Self::cgroup(id));
        if !procs.is_empty() {
            left.push(format!("processes {}", describe_pids(&procs)));
        }
        let shims = self.shim_processes(Some(id));
        if !shims.is_empty() {
            left.push(format!("shim {}", describe_pids(&shims)));
        }
        left
    }

    /// Remove containers `ids` through ctr (`task delete --force`, `containers
    /// delete`), then record as a leak and remove anything of them still there.
    fn cleanup(&self, ctx: &Ctx, ids: &[String]) {
        let tasks = self.tasks();
        let containers = self.containers();
        for id in ids {
            // When a listing failed, try anyway.
            let has_task = match &tasks {
                Some(t) => t.iter().any(|t| &t.0 == id),
                None => true,
            };
            if has_task {
                let _ = self.ctr(&["task", "delete", "--force", id]);
            }
            let has_container = match &containers {
                Some(c) => c.contains(id),
                None => true,
            };
            if has_container {
                let _ = self.ctr(&["containers", "delete", id]);
            }
        }
        let left = settle(|| self.leftovers(ids));
        if !left.is_empty() {
            ctx.leaks.borrow_mut().push(format!(
                "after ctr task delete --force + containers delete of {}: {}",
                ids.join(" "),
                left.join(", ")
            ));
            for id in ids {
                self.reap(id);
            }
        }
    }

    /// Remove whatever [`Containerd::leftovers`] found for `id` (own processes by pid).
    fn reap(&self, id: &str) {
        kill_all(&processes_in_cgroup(&Self::cgroup(id)));
        let _ = self.ctr(&["task", "delete", "--force", id]);
        let _ = self.ctr(&["containers", "delete", id]);
        kill_all(&self.shim_processes(Some(id)));
        unmount_below(&self.bundle_dir(id));
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("--root")
            .arg(self.runc_root.join(NAMESPACE))
            .args(["delete", "--force", id]);
        let _ = self.runner.run(cmd, client_timeout());
        for cg in cgroup_dirs(&Self::cgroup(id)) {
            let _ = fs::remove_dir(&cg);
        }
        let _ = fs::remove_dir_all(self.runtime_state_dir(id));
    }

    /// Stop containerd (by pid) after removing containers it still has; return
    /// (after removing it) everything left behind.
    pub fn shutdown(&self) -> Vec<String> {
        let mut left = Vec::new();
        if let Some(ids) = self.containers() {
            for id in ids.into_iter().filter(|s| !s.is_empty()) {
                left.push(format!("containerd container {id} at shutdown"));
                let _ = self.ctr(&["task", "delete", "--force", &id]);
                let _ = self.ctr(&["containers", "delete", &id]);
            }
        }
        if let Some(mut child) = self.child.borrow_mut().take() {
            if let Ok(None) = child.try_wait() {
                kill_pid(child.id(), "TERM");
                let gone = wait_until(Duration::from_secs(5), || {
                    matches!(child.try_wait(), Ok(Some(_)))
                });
                if !gone {
                    left.push(format!("containerd {} ignored SIGTERM for 5 s", child.id()));
                    let _ = child.kill();
                }
            }
            let _ = child.wait();
        }
        let shims = self.shim_processes(None);
        if !shims.is_empty() {
            left.push(format!("shims {}", describe_pids(&shims)));
            kill_all(&shims);
        }
        for id in self.ids.borrow().iter() {
            let procs = processes_in_cgroup(&Self::cgroup(id));
            if !procs.is_empty() {
                left.push(format!("processes of {id}: {}", describe_pids(&procs)));
                kill_all(&procs);
            }
            for cg in cgroup_dirs(&Self::cgroup(id)) {
                left.push(format!("cgroup {}", cg.display()));
                let _ = fs::remove_dir(&cg);
            }
            let state = self.runtime_state_dir(id);
            if fs::symlink_metadata(&state).is_ok() {
                left.push(format!("runtime state dir {}", state.display()));
            }
        }
        for m in unmount_below(&self.dir) {
            left.push(format!("mount {m} (containerd)"));
        }
        remove_new_cgroup_dirs(&[NAMESPACE], &self.cgroups_before);
        for d in GLOBAL_DIRS {
            if !self.globals_before.contains(&d) {
                let _ = fs::remove_dir(d);
            }
        }
        left
    }
}

/// A container of the private containerd; on drop: `ctr task delete --force`,
/// `ctr containers delete`, then anything still there is recorded as a leak
/// and removed.
pub struct CtrContainer<'a> {
    ctd: &'a Containerd,
    ctx: &'a Ctx,
    pub id: String,
}

impl CtrContainer<'_> {
    /// Wait (10 s) until `ctr task ls` shows the task with `status`.
    pub fn wait_status(&self, status: &str) -> Result<(), Failure> {
        let mut last = None;
        if wait_until(Duration::from_secs(10), || {
            last = self.ctd.task(&self.id);
            last.as_ref().is_some_and(|(_, s)| s == status)
        }) {
            Ok(())
        } else {
            Err(Failure::Fail(format!(
                "task {} never reached {status} (last {last:?})",
                self.id
            )))
        }
    }

    /// Fail if anything of this container is still there (after waiting up to 5 s
    /// for the shim to go).
    pub fn ensure_gone(&self) -> Result<(), Failure> {
        ensure_gone(self.ctd, std::slice::from_ref(&self.id))
    }
}

impl Drop for CtrContainer<'_> {
    fn drop(&mut self) {
        self.ctd.cleanup(self.ctx, std::slice::from_ref(&self.id));
    }
}

/// Several containers of the private containerd with one guard (see [`CtrContainer`]).
pub struct CtrBatch<'a> {
    ctd: &'a Containerd,
    ctx: &'a Ctx,
    pub ids: Vec<String>,
}

impl CtrBatch<'_> {
    /// Fail if anything of these containers is still there (after up to 5 s).
    pub fn ensure_gone(&self) -> Result<(), Failure> {
        ensure_gone(self.ctd, &self.ids)
    }
}

impl Drop for CtrBatch<'_> {
    fn drop(&mut self) {
        self.ctd.cleanup(self.ctx, &self.ids);
    }
}

fn ensure_gone(ctd: &Containerd, ids: &[String]) -> Result<(), Failure> {
    let left = settle(|| ctd.leftovers(ids));
    if left.is_empty() {
        Ok(())
    } else {
        Err(Failure::Fail(format!("left behind: {}", left.join("; "))))
    }
}

/// `&[String]` as `Vec<&str>`.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
