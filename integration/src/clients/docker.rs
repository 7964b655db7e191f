//! A private dockerd driving the runtime under test: Debian 12's docker.io
//! 20.10 (`/usr/sbin/dockerd`, `/usr/bin/docker`; not the `docker` first in
//! PATH, which may be another one) or trixie's 26.1.5 unpacked by
//! `hack/install-peers.sh`.
//!
//! dockerd runs with its own `--data-root`, `--exec-root`, `--pidfile`,
//! `-H unix://SOCK`, `--config-file` (an empty `{}`), no iptables, no bridge,
//! no userland proxy, the cgroupfs driver and `--cgroup-parent
//! /berth-it-<pid>-<label>` (containers at `/berth-it-<pid>-<label>/<cid>`),
//! `--add-runtime berthtest=<runtime> --default-runtime berthtest`, and the
//! suite's private containerd 1.6 (`--containerd SOCK`) in a containerd
//! namespace of its own (`--containerd-namespace berth-<label>`). containerd's
//! runc shim calls the runtime with `--root <exec-root>/runtime-berthtest/<ns>`.
//! The image comes from the docker-archive by `docker load`. dockerd is stopped
//! by pid (SIGTERM) at the end of the run. The CLI gets `DOCKER_CONFIG` of its
//! own. Containers always get `--network none`.
//!
//! Outside the suite's dirs dockerd creates `/run/docker/plugins` (and
//! `/run/docker`), and 20.10 its trust key `/etc/docker/key.json` (no option
//! moves it); [`super::Clients::shutdown`] removes those that this run created.

use std::cell::RefCell;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::image::{Image, IMAGE_REF};
use super::{
    cgroup_dirs, client_timeout, describe_pids, kill_all, kill_pid, processes_in_cgroup,
    processes_with_args, settle, unmount_below, Runner,
};
use crate::context::Ctx;
use crate::harness::{wait_until, Failure};
use crate::runtime::Out;

/// The runtime name dockerd knows the runtime under test by.
const RUNTIME_NAME: &str = "berthtest";

/// Which docker.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Version {
    /// Debian 12's docker.io 20.10.
    V20,
    /// Debian trixie's docker.io + docker-cli 26.1.5.
    V26,
}

impl Version {
    pub fn label(self) -> &'static str {
        match self {
            Version::V20 => "docker20",
            Version::V26 => "docker26",
        }
    }

    /// dockerd, docker, and the dir to put first in dockerd's PATH.
    fn binaries(self) -> Result<(PathBuf, PathBuf, Option<PathBuf>), String> {
        match self {
            Version::V20 => {
                let (d, c) = (
                    PathBuf::from("/usr/sbin/dockerd"),
                    PathBuf::from("/usr/bin/docker"),
                );
                for p in [&d, &c] {
                    if !p.is_file() {
                        return Err(format!(
                            "docker 20.10 is not installed: no {} (Debian package docker.io; \
                             hack/install-deps.sh installs it)",
                            p.display()
                        ));
                    }
                }
                Ok((d, c, None))
            }
            Version::V26 => {
                let root = super::peer_root("docker-26.1.5")?;
                Ok((
                    root.join("usr/sbin/dockerd"),
                    root.join("usr/bin/docker"),
                    Some(root.join("usr/bin")),
                ))
            }
        }
    }
}

pub struct Docker {
    pub version: Version,
    /// Everything of this dockerd is below here.
    pub dir: PathBuf,
    sock: PathBuf,
    exec_root: PathBuf,
    cli_config: PathBuf,
    cids: PathBuf,
    log: PathBuf,
    docker: PathBuf,
    /// The containers' cgroup parent, relative to a hierarchy root.
    cgroup_parent: String,
    namespace: String,
    runtime: PathBuf,
    runner: Runner,
    child: RefCell<Option<Child>>,
}

impl Docker {
    /// Start dockerd `version` below `dir` on containerd `ctd_sock`, load
    /// `image` (about 2 s).
    pub fn start(
        dir: &Path,
        image: &Image,
        runtime: &Path,
        ctd_sock: &Path,
        version: Version,
    ) -> Result<Docker, String> {
        let (dockerd, docker, path_first) = version.binaries()?;
        super::require_program("script", "script (Debian package bsdutils)")?;
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let label = version.label();
        let d = Docker {
            version,
            dir: dir.to_path_buf(),
            sock: dir.join("docker.sock"),
            exec_root: dir.join("exec"),
            cli_config: dir.join("cli"),
            cids: dir.join("cids"),
            log: dir.join("dockerd.log"),
            docker,
            cgroup_parent: format!("berth-it-{}-{label}", std::process::id()),
            namespace: format!("berth-{label}"),
            runtime: runtime.to_path_buf(),
            runner: Runner::new(dir.join("io"))?,
            child: RefCell::new(None),
        };
        for p in [&d.cli_config, &d.cids] {
            fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
        }
        let config = dir.join("daemon.json");
        fs::write(&config, "{}\n").map_err(|e| format!("write {}: {e}", config.display()))?;
        let log = File::create(&d.log).map_err(|e| format!("create dockerd log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("dockerd log: {e}"))?;
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let child = {
            use std::os::unix::process::CommandExt;
            let mut cmd = Command::new(&dockerd);
            if let Some(first) = &path_first {
                cmd.env("PATH", super::path_with_first(first));
            }
            for v in ["DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT"] {
                cmd.env_remove(v);
            }
            cmd.arg("--config-file")
                .arg(&config)
                .arg("--data-root")
                .arg(dir.join("data"))
                .arg("--exec-root")
                .arg(&d.exec_root)
                .arg("--pidfile")
                .arg(dir.join("dockerd.pid"))
                .arg("-H")
                .arg(format!("unix://{}", s(&d.sock)))
                .args([
                    "--iptables=false",
                    "--ip6tables=false",
                    "--bridge=none",
                    "--userland-proxy=false",
                    "--storage-driver=overlay2",
                    "--exec-opt",
                    "native.cgroupdriver=cgroupfs",
                ])
                .arg(format!("--cgroup-parent=/{}", d.cgroup_parent))
                .arg("--containerd")
                .arg(ctd_sock)
                .arg(format!("--containerd-namespace={}", d.namespace))
                .arg(format!(
                    "--containerd-plugins-namespace={}-plugins",
                    d.namespace
                ))
                .arg(format!("--add-runtime={RUNTIME_NAME}={}", s(runtime)))
                .arg(format!("--default-runtime={RUNTIME_NAME}"))
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .process_group(0)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", dockerd.display()))?
        };
        *d.child.borrow_mut() = Some(child);
        match d.finish_start(image) {
            Ok(()) => Ok(d),
            Err(e) => {
                let left = d.shutdown();
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
        let up = wait_until(Duration::from_secs(30), || {
            if let Some(Ok(Some(st))) = self.child.borrow_mut().as_mut().map(Child::try_wait) {
                last = Some(format!("dockerd exited: {st}"));
                return true;
            }
            let out = self.docker_timeout(
                &["version", "--format", "{{.Server.Version}}"],
                Duration::from_secs(5),
            );
            let ok = out.success();
            last = if ok { None } else { Some(out.describe()) };
            ok
        });
        if !up || last.is_some() {
            return Err(format!(
                "dockerd did not come up: {}; log: {}",
                last.unwrap_or_else(|| "timed out".into()),
                self.log_tail()
            ));
        }
        let archive = image.docker_archive.to_string_lossy().into_owned();
        let out = self.docker(&["load", "--quiet", "--input", &archive]);
        if !out.success() {
            return Err(format!("loading the test image: {}", out.describe()));
        }
        Ok(())
    }

    /// The last lines of dockerd's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    pub fn docker_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.docker);
        cmd.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .env("DOCKER_CONFIG", &self.cli_config);
        for v in [
            "DOCKER_HOST",
            "DOCKER_CONTEXT",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH",
        ] {
            cmd.env_remove(v);
        }
        cmd
    }

    /// `docker -H unix://SOCK ARGS...` (killed after 30 s).
    pub fn docker(&self, args: &[&str]) -> Out {
        self.docker_timeout(args, client_timeout())
    }

    fn docker_timeout(&self, args: &[&str], timeout: Duration) -> Out {
        let desc = format!("docker {}", args.join(" "));
        self.runner.run_as(self.docker_command(args), desc, timeout)
    }

    /// `DOCKER_BUILDKIT=1 docker -H unix://SOCK ARGS...` (a `build` through dockerd's
    /// BuildKit), killed after `timeout`.
    pub fn buildkit(&self, args: &[&str], timeout: Duration) -> Out {
        let desc = format!("DOCKER_BUILDKIT=1 docker {}", args.join(" "));
        let mut cmd = self.docker_command(args);
        cmd.env("DOCKER_BUILDKIT", "1");
        self.runner.run_as(cmd, desc, timeout)
    }

    /// Like [`Docker::docker`], with a terminal (under `script`).
    pub fn docker_pty(&self, args: &[&str]) -> Out {
        let mut argv = vec![
            self.docker.to_string_lossy().into_owned(),
            "-H".into(),
            format!("unix://{}", self.sock.display()),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        let desc = format!("docker {}", args.join(" "));
        let envs = [(
            "DOCKER_CONFIG",
            self.cli_config.to_string_lossy().into_owned(),
        )];
        self.runner
            .run_in_pty(&argv, &envs, &desc, client_timeout())
    }

    /// Arguments of `docker run FLAGS... --name N --cidfile F --network none IMAGE ARGV...`.
    pub fn run_args(&self, flags: &[&str], name: &str, argv: &[&str]) -> Vec<String> {
        self.run_image_args(flags, name, IMAGE_REF, argv)
    }

    /// [`Docker::run_args`] of another image.
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
            "--network".into(),
            "none".into(),
            image.into(),
        ]);
        v.extend(argv.iter().map(|s| s.to_string()));
        v
    }

    fn cidfile(&self, name: &str) -> PathBuf {
        self.cids.join(name)
    }

    /// A new container name with a cleanup guard (nothing is created yet).
    pub fn container<'a>(&'a self, ctx: &'a Ctx) -> DockerContainer<'a> {
        DockerContainer {
            dk: self,
            ctx,
            name: ctx.new_id(),
        }
    }

    /// `docker run -d FLAGS... IMAGE ARGV...`; returns once it runs.
    pub fn run_detached<'a>(
        &'a self,
        ctx: &'a Ctx,
        flags: &[&str],
        argv: &[&str],
    ) -> Result<DockerContainer<'a>, Failure> {
        let c = self.container(ctx);
        let mut f = vec!["-d"];
        f.extend_from_slice(flags);
        let args = self.run_args(&f, &c.name, argv);
        let out = self.docker(&super::containerd::strs(&args));
        if !out.success() {
            crate::fail!("{}; dockerd log: {}", out.describe(), self.log_tail());
        }
        let st = c.inspect("{{.State.Status}}")?;
        if st != "running" {
            crate::fail!("container {} is {st:?} after docker run -d", c.name);
        }
        Ok(c)
    }

    /// The container's cgroup relative to a hierarchy root.
    pub fn cgroup(&self, cid: &str) -> String {
        format!("{}/{cid}", self.cgroup_parent)
    }

    /// The runtime's state dir of container `cid` (the runc shim's `--root`).
    fn runtime_state_dir(&self, cid: &str) -> PathBuf {
        self.exec_root
            .join(format!("runtime-{RUNTIME_NAME}"))
            .join(&self.namespace)
            .join(cid)
    }

    fn leftovers(&self, name: &str, cid: Option<&str>) -> Vec<String> {
        let mut left = Vec::new();
        if self.docker(&["container", "inspect", name]).success() {
            left.push(format!("docker container {name}"));
        }
        let Some(cid) = cid else {
            return left;
        };
        let state = self.runtime_state_dir(cid);
        if fs::symlink_metadata(&state).is_ok() {
            left.push(format!("runtime state dir {}", state.display()));
        }
        let cg = self.cgroup(cid);
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
        for m in crate::context::mounts_under(&self.dir.join("data/containers").join(cid)) {
            left.push(format!("mount {m}"));
        }
        left
    }

    fn reap(&self, name: &str, cid: Option<&str>) {
        let _ = self.docker(&["rm", "--force", name]);
        let Some(cid) = cid else { return };
        let cg = self.cgroup(cid);
        kill_all(&processes_in_cgroup(&cg));
        kill_all(&processes_with_args(&[cid]));
        unmount_below(&self.dir.join("data/containers").join(cid));
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("--root")
            .arg(
                self.exec_root
                    .join(format!("runtime-{RUNTIME_NAME}"))
                    .join(&self.namespace),
            )
            .args(["delete", "--force", cid]);
        let _ = self.runner.run(cmd, client_timeout());
        for d in cgroup_dirs(&cg) {
            let _ = fs::remove_dir(&d);
        }
    }

    /// Stop dockerd (by pid) after removing containers it still has; return
    /// (after removing it) everything left behind.
    pub fn shutdown(&self) -> Vec<String> {
        let mut left = Vec::new();
        let running = self
            .child
            .borrow_mut()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if running {
            let out = self.docker(&["ps", "--all", "--quiet", "--no-trunc"]);
            for cid in out.stdout.lines().map(str::trim).filter(|s| !s.is_empty()) {
                left.push(format!(
                    "{} container {cid} at shutdown",
                    self.version.label()
                ));
                self.reap(cid, Some(cid));
            }
        }
        if let Some(mut child) = self.child.borrow_mut().take() {
            if let Ok(None) = child.try_wait() {
                kill_pid(child.id(), "TERM");
                let gone = wait_until(Duration::from_secs(15), || {
                    matches!(child.try_wait(), Ok(Some(_)))
                });
                if !gone {
                    left.push(format!("dockerd {} ignored SIGTERM for 15 s", child.id()));
                    let _ = child.kill();
                }
            }
            let _ = child.wait();
        }
        let dir = self.dir.to_string_lossy().into_owned();
        let procs = settle(|| {
            let p = processes_with_args(&[&dir]);
            if p.is_empty() {
                Vec::new()
            } else {
                vec![describe_pids(&p)]
            }
        });
        if !procs.is_empty() {
            left.push(format!(
                "processes of {}: {}",
                self.version.label(),
                procs.join(", ")
            ));
            kill_all(&processes_with_args(&[&dir]));
        }
        for m in unmount_below(&self.dir) {
            left.push(format!("mount {m} ({})", self.version.label()));
        }
        // Container cgroups below the parent (their guards already reported them),
        // then the parent, which only this run uses.
        for parent in cgroup_dirs(&self.cgroup_parent) {
            if let Ok(rd) = fs::read_dir(&parent) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        let _ = fs::remove_dir(e.path());
                    }
                }
            }
            let _ = fs::remove_dir(&parent);
        }
        for d in cgroup_dirs(&self.cgroup_parent) {
            left.push(format!("cgroup {}", d.display()));
        }
        left
    }
}

/// A docker container; on drop: `docker rm --force`, then anything still
/// there is recorded as a leak and removed.
pub struct DockerContainer<'a> {
    dk: &'a Docker,
    ctx: &'a Ctx,
    pub name: String,
}

impl DockerContainer<'_> {
    /// The container id from the `--cidfile`, else from `docker inspect`.
    pub fn cid(&self) -> Option<String> {
        if let Ok(s) = fs::read_to_string(self.dk.cidfile(&self.name)) {
            if !s.trim().is_empty() {
                return Some(s.trim().to_string());
            }
        }
        let out = self
            .dk
            .docker(&["inspect", "--format", "{{.Id}}", &self.name]);
        out.success().then(|| out.stdout.trim().to_string())
    }

    /// `docker inspect --format FMT NAME`, trimmed.
    pub fn inspect(&self, format: &str) -> Result<String, Failure> {
        Ok(self
            .dk
            .docker(&["inspect", "--format", format, &self.name])
            .ok()?
            .stdout
            .trim()
            .to_string())
    }

    /// Fail if anything of this container is still there (after up to 5 s).
    pub fn ensure_gone(&self) -> Result<(), Failure> {
        let cid = self.cid();
        let left = settle(|| self.dk.leftovers(&self.name, cid.as_deref()));
        if left.is_empty() {
            Ok(())
        } else {
            Err(Failure::Fail(format!("left behind: {}", left.join("; "))))
        }
    }
}

impl Drop for DockerContainer<'_> {
    fn drop(&mut self) {
        let cid = self.cid();
        let _ = self.dk.docker(&["rm", "--force", &self.name]);
        let left = settle(|| self.dk.leftovers(&self.name, cid.as_deref()));
        if !left.is_empty() {
            self.ctx.leaks.borrow_mut().push(format!(
                "after docker rm --force of {}: {}",
                self.name,
                left.join(", ")
            ));
            self.dk.reap(&self.name, cid.as_deref());
        }
        let _ = fs::remove_file(self.dk.cidfile(&self.name));
    }
}
