//! podman 4.3 with `--runtime <runtime under test>`, private storage and config:
//! `--root --runroot --storage-driver overlay --cgroup-manager=cgroupfs
//! --events-backend=file --tmpdir`, plus `CONTAINERS_CONF`,
//! `CONTAINERS_STORAGE_CONF` and `CONTAINERS_REGISTRIES_CONF` files of its own
//! (file locks instead of the host-wide `/dev/shm/libpod_lock`, a private
//! network config dir, image copies in its own tmp dir instead of /var/tmp).
//! Containers always get `--network=none` (the default bridge rewrites host
//! iptables) and ulimits within the host's hard limits (podman's defaults
//! need CAP_SYS_RESOURCE, which this machine lacks).
//!
//! conmon calls the runtime without `--root`, so the runtime keeps podman's
//! containers in its default root (`/run/runc`, `/run/berth`). With cgroupfs,
//! podman puts a container in `/libpod_parent/libpod-<id>` and conmon in
//! `/libpod_parent/conmon`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::image::{Image, IMAGE_REF};
use super::{
    cgroup_dirs, client_timeout, describe_pids, kill_all, processes_in_cgroup, processes_with_args,
    remove_new_cgroup_dirs, require_program, settle, unmount_below, Runner,
};
use crate::context::Ctx;
use crate::harness::Failure;
use crate::runtime::Out;

/// podman's cgroup parent with `--cgroup-manager=cgroupfs`, and conmon's cgroup.
const CGROUP_PARENT: &str = "libpod_parent";
const CONMON_CGROUP: &str = "libpod_parent/conmon";

pub struct Podman {
    /// Everything of this podman is below here.
    pub dir: PathBuf,
    root: PathBuf,
    runroot: PathBuf,
    tmpdir: PathBuf,
    copy_tmp: PathBuf,
    conf: PathBuf,
    storage_conf: PathBuf,
    registries_conf: PathBuf,
    cids: PathBuf,
    podman: PathBuf,
    runtime: PathBuf,
    runner: Runner,
    /// `libpod_parent` and `libpod_parent/conmon` cgroup dirs that existed before.
    cgroups_before: Vec<PathBuf>,
}

impl Podman {
    /// Write the config files and pull the test image (about 0.3 s).
    pub fn setup(dir: &Path, image: &Image, runtime: &Path) -> Result<Podman, String> {
        let podman = require_program("podman", "podman 4.3 (Debian package podman)")?;
        require_program("conmon", "conmon (Debian package conmon)")?;
        require_program("script", "script (Debian package bsdutils)")?;
        let mut cgroups_before = cgroup_dirs(CGROUP_PARENT);
        cgroups_before.extend(cgroup_dirs(CONMON_CGROUP));
        let p = Podman {
            dir: dir.to_path_buf(),
            root: dir.join("root"),
            runroot: dir.join("runroot"),
            tmpdir: dir.join("tmp"),
            copy_tmp: dir.join("copy-tmp"),
            conf: dir.join("containers.conf"),
            storage_conf: dir.join("storage.conf"),
            registries_conf: dir.join("registries.conf"),
            cids: dir.join("cids"),
            podman,
            runtime: runtime.to_path_buf(),
            runner: Runner::new(dir.join("io"))?,
            cgroups_before,
        };
        for d in [&p.tmpdir, &p.copy_tmp, &p.cids, &dir.join("networks")] {
            fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        let write = |path: &Path, text: String| {
            fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
        };
        write(
            &p.conf,
            format!(
                "[containers]\n\
                 log_driver = \"k8s-file\"\n\
                 netns = \"none\"\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 lock_type = \"file\"\n\
                 tmp_dir = \"{tmp}\"\n\
                 image_copy_tmp_dir = \"{copy}\"\n\
                 [network]\n\
                 network_config_dir = \"{net}\"\n",
                tmp = p.tmpdir.display(),
                copy = p.copy_tmp.display(),
                net = dir.join("networks").display(),
            ),
        )?;
        write(
            &p.storage_conf,
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                p.root.display(),
                p.runroot.display()
            ),
        )?;
        write(
            &p.registries_conf,
            "unqualified-search-registries = []\n".into(),
        )?;
        let policy = dir.join("policy.json");
        write(
            &policy,
            "{\"default\": [{\"type\": \"insecureAcceptAnything\"}]}\n".into(),
        )?;
        let archive = format!("oci-archive:{}", image.archive.display());
        let policy = policy.to_string_lossy().into_owned();
        let out = p.podman(&["pull", "--quiet", "--signature-policy", &policy, &archive]);
        if !out.success() {
            return Err(format!("pulling the test image: {}", out.describe()));
        }
        Ok(p)
    }

    fn global_args(&self) -> Vec<String> {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            "--root".into(),
            s(&self.root),
            "--runroot".into(),
            s(&self.runroot),
            "--storage-driver".into(),
            "overlay".into(),
            "--cgroup-manager=cgroupfs".into(),
            "--events-backend=file".into(),
            "--tmpdir".into(),
            s(&self.tmpdir),
            "--runtime".into(),
            s(&self.runtime),
        ]
    }

    fn envs(&self) -> Vec<(&'static str, String)> {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            ("CONTAINERS_CONF", s(&self.conf)),
            ("CONTAINERS_STORAGE_CONF", s(&self.storage_conf)),
            ("CONTAINERS_REGISTRIES_CONF", s(&self.registries_conf)),
            ("TMPDIR", s(&self.copy_tmp)),
        ]
    }

    /// `podman <private global flags> ARGS...` (killed after 30 s).
    pub fn podman(&self, args: &[&str]) -> Out {
        self.podman_timeout(args, client_timeout())
    }

    /// [`Podman::podman`] killed after `timeout` (a build of a big image takes longer).
    pub fn podman_timeout(&self, args: &[&str], timeout: std::time::Duration) -> Out {
        self.podman_env(&[], args, timeout)
    }

    /// [`Podman::podman_timeout`] with more environment (`PATH` with CRIU's directory).
    pub fn podman_env(
        &self,
        env: &[(&str, &str)],
        args: &[&str],
        timeout: std::time::Duration,
    ) -> Out {
        let mut cmd = Command::new(&self.podman);
        cmd.args(self.global_args()).args(args);
        for (k, v) in self.envs() {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        for v in [
            "CONTAINER_HOST",
            "CONTAINER_CONNECTION",
            "CONTAINERS_CONF_OVERRIDE",
        ] {
            cmd.env_remove(v);
        }
        self.runner
            .run_as(cmd, format!("podman {}", args.join(" ")), timeout)
    }

    /// Like [`Podman::podman`], with a terminal (under `script`).
    pub fn podman_pty(&self, args: &[&str]) -> Out {
        let mut argv = vec![self.podman.to_string_lossy().into_owned()];
        argv.extend(self.global_args());
        argv.extend(args.iter().map(|s| s.to_string()));
        let desc = format!("podman {}", args.join(" "));
        self.runner
            .run_in_pty(&argv, &self.envs(), &desc, client_timeout())
    }

    /// Arguments of `podman run FLAGS... --name N --cidfile F --network=none
    /// --ulimit ... IMAGE ARGV...`.
    pub fn run_args(&self, flags: &[&str], name: &str, argv: &[&str]) -> Vec<String> {
        self.run_image_args(flags, name, IMAGE_REF, argv)
    }

    /// [`Podman::run_args`] of another image.
    pub fn run_image_args(
        &self,
        flags: &[&str],
        name: &str,
        image: &str,
        argv: &[&str],
    ) -> Vec<String> {
        let mut v: Vec<String> = vec!["run".into()];
        v.extend(flags.iter().map(|s| s.to_string()));
        v.extend([
            "--name".into(),
            name.into(),
            "--cidfile".into(),
            self.cidfile(name).to_string_lossy().into_owned(),
            "--network=none".into(),
            "--ulimit".into(),
            "nofile=1024:1024".into(),
            "--ulimit".into(),
            "nproc=4096:4096".into(),
            image.into(),
        ]);
        v.extend(argv.iter().map(|s| s.to_string()));
        v
    }

    fn cidfile(&self, name: &str) -> PathBuf {
        self.cids.join(name)
    }

    /// A new container name with a cleanup guard (nothing is created yet).
    pub fn container<'a>(&'a self, ctx: &'a Ctx) -> PodContainer<'a> {
        PodContainer {
            pm: self,
            ctx,
            name: ctx.new_id(),
        }
    }

    /// `podman run -d` of `argv` in a new container; returns once it runs.
    pub fn run_detached<'a>(
        &'a self,
        ctx: &'a Ctx,
        argv: &[&str],
    ) -> Result<PodContainer<'a>, Failure> {
        let c = self.container(ctx);
        let args = self.run_args(&["-d"], &c.name, argv);
        let out = self.podman(&super::containerd::strs(&args)).ok()?;
        let cid = c.cid().unwrap_or_default();
        if out.stdout.trim() != cid {
            crate::fail!(
                "podman run -d printed {:?}, the cidfile says {cid:?}",
                out.stdout.trim()
            );
        }
        let st = c.inspect("{{.State.Status}}")?;
        if st != "running" {
            crate::fail!("container {} is {st:?} after podman run -d", c.name);
        }
        Ok(c)
    }

    /// Does `<runtime> state <cid>` (default root, as conmon calls it) know the container?
    fn runtime_knows(&self, cid: &str) -> bool {
        let mut cmd = Command::new(&self.runtime);
        cmd.args(["state", cid]);
        self.runner.run(cmd, client_timeout()).success()
    }

    fn leftovers(&self, name: &str, cid: Option<&str>) -> Vec<String> {
        let mut left = Vec::new();
        if self.podman(&["container", "exists", name]).success() {
            left.push(format!("podman container {name}"));
        }
        let Some(cid) = cid else {
            return left;
        };
        if self.runtime_knows(cid) {
            left.push(format!("runtime state of {cid} (default --root)"));
        }
        let cg = format!("{CGROUP_PARENT}/libpod-{cid}");
        for d in cgroup_dirs(&cg) {
            left.push(format!("cgroup {}", d.display()));
        }
        let procs = processes_in_cgroup(&cg);
        if !procs.is_empty() {
            left.push(format!("processes {}", describe_pids(&procs)));
        }
        let others = processes_with_args(&[cid]);
        if !others.is_empty() {
            left.push(format!("processes naming it {}", describe_pids(&others)));
        }
        left
    }

    fn reap(&self, name: &str, cid: Option<&str>) {
        let _ = self.podman(&["rm", "--force", "--time", "0", name]);
        let Some(cid) = cid else { return };
        let cg = format!("{CGROUP_PARENT}/libpod-{cid}");
        kill_all(&processes_in_cgroup(&cg));
        kill_all(&processes_with_args(&[cid]));
        let mut cmd = Command::new(&self.runtime);
        cmd.args(["delete", "--force", cid]);
        let _ = self.runner.run(cmd, client_timeout());
        for d in cgroup_dirs(&cg) {
            let _ = fs::remove_dir(&d);
        }
    }

    /// Remove what podman still has and return (after removing it) everything
    /// left behind: containers, conmon or other processes of this podman, mounts
    /// below its dir, the cgroup parents this run created.
    pub fn shutdown(&self) -> Vec<String> {
        let mut left = Vec::new();
        let out = self.podman(&["ps", "--all", "--quiet", "--no-trunc"]);
        for cid in out.stdout.lines().map(str::trim).filter(|s| !s.is_empty()) {
            left.push(format!("podman container {cid} at shutdown"));
            self.reap(cid, Some(cid));
        }
        let dir = self.dir.to_string_lossy().into_owned();
        let procs = processes_with_args(&[&dir]);
        if !procs.is_empty() {
            left.push(format!("podman processes {}", describe_pids(&procs)));
            kill_all(&procs);
        }
        // c/storage may keep a private bind mount of its overlay dir; that one is
        // podman's bookkeeping, not a container's.
        let own = self.root.join("overlay").to_string_lossy().into_owned();
        for m in unmount_below(&self.dir) {
            if m != own {
                left.push(format!("mount {m} (podman)"));
            }
        }
        remove_new_cgroup_dirs(&[CONMON_CGROUP, CGROUP_PARENT], &self.cgroups_before);
        left
    }
}

/// A podman container; on drop: `podman rm --force --time 0`, then anything
/// still there is recorded as a leak and removed.
pub struct PodContainer<'a> {
    pm: &'a Podman,
    ctx: &'a Ctx,
    pub name: String,
}

impl PodContainer<'_> {
    /// The container id from the `--cidfile`, else from `podman inspect`.
    pub fn cid(&self) -> Option<String> {
        if let Ok(s) = fs::read_to_string(self.pm.cidfile(&self.name)) {
            if !s.trim().is_empty() {
                return Some(s.trim().to_string());
            }
        }
        let out = self
            .pm
            .podman(&["inspect", "--format", "{{.Id}}", &self.name]);
        out.success().then(|| out.stdout.trim().to_string())
    }

    /// `podman inspect --format FMT NAME`, trimmed.
    pub fn inspect(&self, format: &str) -> Result<String, Failure> {
        Ok(self
            .pm
            .podman(&["inspect", "--format", format, &self.name])
            .ok()?
            .stdout
            .trim()
            .to_string())
    }

    /// The container's cgroup relative to a hierarchy root.
    pub fn cgroup(cid: &str) -> String {
        format!("{CGROUP_PARENT}/libpod-{cid}")
    }

    /// Fail if anything of this container is still there (after up to 5 s).
    pub fn ensure_gone(&self) -> Result<(), Failure> {
        let cid = self.cid();
        let left = settle(|| self.pm.leftovers(&self.name, cid.as_deref()));
        if left.is_empty() {
            Ok(())
        } else {
            Err(Failure::Fail(format!("left behind: {}", left.join("; "))))
        }
    }
}

impl Drop for PodContainer<'_> {
    fn drop(&mut self) {
        let cid = self.cid();
        let _ = self
            .pm
            .podman(&["rm", "--force", "--time", "0", &self.name]);
        let left = settle(|| self.pm.leftovers(&self.name, cid.as_deref()));
        if !left.is_empty() {
            self.ctx.leaks.borrow_mut().push(format!(
                "after podman rm --force of {}: {}",
                self.name,
                left.join(", ")
            ));
            self.pm.reap(&self.name, cid.as_deref());
        }
        let _ = fs::remove_file(self.pm.cidfile(&self.name));
    }
}
