//! Real clients driving the runtime under test: private containerd 1.6 and
//! 2.1.9 (through their stock runc shims, `ctr run --runc-binary`), private
//! dockerd 20.10 and 26.1.5 (`--add-runtime`, on the containerd 1.6) and
//! podman 4.3 (`podman --runtime`, through conmon), all fed a busybox image
//! built with umoci and exported with skopeo. containerd 2.1.9 and docker
//! 26.1.5 come from Debian sid and trixie, unpacked by `hack/install-peers.sh`
//! into its cache dir (`BERTH_PEERS_DIR`, default `/var/tmp/berth-peers`).
//!
//! Everything lives below `<suite tmp>/clients/`: the image, containerd's
//! root, state, socket and runtime root, podman's storage, run root, tmp dir
//! and config files. containerd is started lazily by the first test that needs
//! it and stopped by pid in [`Clients::shutdown`] at the end of the run;
//! podman has no daemon, its image is pulled once. The shutdown also records
//! and removes anything the clients left behind (containers, shims, conmons,
//! mounts under their dirs, cgroups of their containers, cgroup parents the run
//! created).

pub mod containerd;
pub mod docker;
pub mod image;
pub mod podman;

use std::cell::{Cell, OnceCell};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::context::Ctx;
use crate::harness::Failure;
use crate::runtime::Out;

use containerd::Containerd;
use docker::Docker;
use image::Image;
use podman::Podman;

/// Paths outside the suite's dirs that dockerd creates (the plugin socket dir;
/// 20.10's trust key, whose place no option changes). Removed at shutdown if
/// they were not there when the run began and a dockerd ran.
const DOCKER_GLOBALS: [&str; 3] = ["/etc/docker/key.json", "/run/docker/plugins", "/run/docker"];

/// The cache dir of `hack/install-peers.sh` (`BERTH_PEERS_DIR`, default
/// `/var/tmp/berth-peers`).
pub fn peers_dir() -> PathBuf {
    std::env::var_os("BERTH_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/berth-peers"))
}

/// The unpacked root of peer `name` (e.g. `docker-26.1.5`), or an error
/// naming the script that unpacks it.
pub fn peer_root(name: &str) -> Result<PathBuf, String> {
    let dir = peers_dir().join(name);
    if dir.join(".complete").is_file() {
        Ok(dir.join("root"))
    } else {
        Err(format!(
            "{name} is not unpacked in {} (run hack/install-peers.sh)",
            peers_dir().display()
        ))
    }
}

/// `PATH` with `first` in front (a peer's own helper binaries win).
pub fn path_with_first(first: &Path) -> std::ffi::OsString {
    let rest = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let mut v = vec![first.to_path_buf()];
    v.extend(std::env::split_paths(&rest));
    std::env::join_paths(v).unwrap_or(rest)
}

/// Whether the client matrix's newer clients (docker 20.10 and 26.1, containerd
/// 2.1, the podman additions) run: `BERTH_IT_MATRIX=0` skips them (hack/test.sh's
/// cgroup v2 VM pass: the peers' cache dir is not visible there and TCG makes
/// dockerd some 20 times slower).
pub fn matrix_enabled() -> Result<(), Failure> {
    if std::env::var("BERTH_IT_MATRIX").is_ok_and(|v| v == "0") {
        return Err(Failure::Skip(
            "the client matrix is off (BERTH_IT_MATRIX=0, as in the VM pass)".into(),
        ));
    }
    Ok(())
}

/// How long one client command may take before it is killed (30 s, scaled like
/// [`crate::runtime::cmd_timeout`]).
pub fn client_timeout() -> Duration {
    Duration::from_secs(30) * crate::runtime::timeout_scale()
}

/// The lazily built image and client instances of one suite run.
pub struct Clients {
    dir: PathBuf,
    image: OnceCell<Result<Image, String>>,
    containerd: OnceCell<Result<Containerd, String>>,
    containerd2: OnceCell<Result<Containerd, String>>,
    docker20: OnceCell<Result<Docker, String>>,
    docker26: OnceCell<Result<Docker, String>>,
    podman: OnceCell<Result<Podman, String>>,
    /// Which of [`DOCKER_GLOBALS`] existed when the run began.
    docker_globals_before: Vec<&'static str>,
}

impl Clients {
    /// Clients keeping everything below `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Clients {
        Clients {
            dir,
            image: OnceCell::new(),
            containerd: OnceCell::new(),
            containerd2: OnceCell::new(),
            docker20: OnceCell::new(),
            docker26: OnceCell::new(),
            podman: OnceCell::new(),
            docker_globals_before: DOCKER_GLOBALS
                .into_iter()
                .filter(|p| Path::new(p).exists())
                .collect(),
        }
    }

    fn image_str(&self) -> Result<&Image, String> {
        self.image().map_err(|e| match e {
            Failure::Fail(s) | Failure::Skip(s) => s,
        })
    }

    /// The private containerd 2.1.9 (sid), started on first use with the image imported.
    pub fn containerd2(&self, ctx: &Ctx) -> Result<&Containerd, Failure> {
        matrix_enabled()?;
        self.containerd2
            .get_or_init(|| {
                Containerd::start(
                    &self.dir.join("containerd2"),
                    self.image_str()?,
                    &ctx.rt.path,
                    containerd::Version::V2_1,
                )
            })
            .as_ref()
            .map_err(|e| Failure::Fail(e.clone()))
    }

    /// The private dockerd `version` (on the suite's containerd 1.6), started on
    /// first use with the image loaded.
    pub fn docker(&self, ctx: &Ctx, version: docker::Version) -> Result<&Docker, Failure> {
        matrix_enabled()?;
        let cell = match version {
            docker::Version::V20 => &self.docker20,
            docker::Version::V26 => &self.docker26,
        };
        cell.get_or_init(|| {
            let image = self.image_str()?;
            let ctd = self.containerd(ctx).map_err(|e| match e {
                Failure::Fail(s) | Failure::Skip(s) => s,
            })?;
            Docker::start(
                &self.dir.join(version.label()),
                image,
                &ctx.rt.path,
                &ctd.sock,
                version,
            )
        })
        .as_ref()
        .map_err(|e| Failure::Fail(e.clone()))
    }

    /// The busybox image (OCI layout and oci-archive), built on first use.
    pub fn image(&self) -> Result<&Image, Failure> {
        self.image
            .get_or_init(|| Image::build(&self.dir.join("image")))
            .as_ref()
            .map_err(|e| Failure::Fail(e.clone()))
    }

    /// The private containerd, started on first use with the image imported.
    pub fn containerd(&self, ctx: &Ctx) -> Result<&Containerd, Failure> {
        self.containerd
            .get_or_init(|| {
                Containerd::start(
                    &self.dir.join("containerd"),
                    self.image_str()?,
                    &ctx.rt.path,
                    containerd::Version::V1_6,
                )
            })
            .as_ref()
            .map_err(|e| Failure::Fail(e.clone()))
    }

    /// Podman with private storage and config, the image pulled on first use.
    pub fn podman(&self, ctx: &Ctx) -> Result<&Podman, Failure> {
        self.podman
            .get_or_init(|| {
                let image = self.image().map_err(|e| match e {
                    Failure::Fail(s) | Failure::Skip(s) => s,
                })?;
                Podman::setup(&self.dir.join("podman"), image, &ctx.rt.path)
            })
            .as_ref()
            .map_err(|e| Failure::Fail(e.clone()))
    }

    /// Stop what was started and describe everything the clients left
    /// behind (after removing it).
    pub fn shutdown(&self) -> Vec<String> {
        let mut left = Vec::new();
        if let Some(Ok(p)) = self.podman.get() {
            left.extend(p.shutdown());
        }
        // The dockerds before the containerd they use.
        let mut dockers = 0;
        for d in [&self.docker20, &self.docker26] {
            if let Some(Ok(d)) = d.get() {
                left.extend(d.shutdown());
            }
            dockers += usize::from(d.get().is_some());
        }
        if dockers > 0 {
            for p in DOCKER_GLOBALS {
                if !self.docker_globals_before.contains(&p) {
                    let _ = if p.ends_with(".json") {
                        fs::remove_file(p)
                    } else {
                        fs::remove_dir(p)
                    };
                }
            }
        }
        for c in [&self.containerd2, &self.containerd] {
            if let Some(Ok(c)) = c.get() {
                left.extend(c.shutdown());
            }
        }
        left
    }
}

/// Runs client commands with a timeout; stdout and stderr go to files (a
/// detached container or a daemonized helper inheriting them never blocks
/// the harness). Each command gets its own process group, killed as a whole
/// on timeout.
pub struct Runner {
    io: PathBuf,
    seq: Cell<u64>,
}

impl Runner {
    pub fn new(io: PathBuf) -> Result<Runner, String> {
        fs::create_dir_all(&io).map_err(|e| format!("mkdir {}: {e}", io.display()))?;
        Ok(Runner {
            io,
            seq: Cell::new(0),
        })
    }

    /// Run `cmd` to completion (stdin from /dev/null), killing its process
    /// group after `timeout`.
    pub fn run(&self, cmd: Command, timeout: Duration) -> Out {
        let desc = describe(&cmd);
        self.run_as(cmd, desc, timeout)
    }

    /// Like [`Runner::run`]; failure messages show the command as `desc`.
    pub fn run_as(&self, cmd: Command, desc: String, timeout: Duration) -> Out {
        self.run_full(cmd, desc, timeout, None)
    }

    /// Run `cmd`; on timeout kill its process group and, if `session_pidfile`
    /// names one, the process group whose leader's pid is in that file.
    fn run_full(
        &self,
        cmd: Command,
        desc: String,
        timeout: Duration,
        session_pidfile: Option<&Path>,
    ) -> Out {
        match self.spawn(cmd, desc, timeout, session_pidfile) {
            Ok(p) => p.wait(),
            Err(out) => out,
        }
    }

    /// Start `cmd` (stdin from /dev/null, in a process group of its own);
    /// [`Pending::wait`] collects it. `Err` holds the spawn failure as an `Out`.
    pub fn spawn(
        &self,
        mut cmd: Command,
        desc: String,
        timeout: Duration,
        session_pidfile: Option<&Path>,
    ) -> Result<Pending, Out> {
        use std::os::unix::process::CommandExt;
        let n = self.seq.get() + 1;
        self.seq.set(n);
        let out = self.io.join(format!("{n}.out"));
        let err = self.io.join(format!("{n}.err"));
        let spawned = (|| {
            cmd.stdin(Stdio::null())
                .stdout(File::create(&out)?)
                .stderr(File::create(&err)?)
                .process_group(0);
            cmd.spawn()
        })();
        match spawned {
            Ok(child) => Ok(Pending {
                child,
                desc,
                out,
                err,
                deadline: Instant::now() + timeout,
                session_pidfile: session_pidfile.map(Path::to_path_buf),
            }),
            Err(e) => Err(Out {
                cmd: desc,
                code: None,
                stdout: String::new(),
                stderr: format!("harness could not start the command: {e}"),
                timed_out: false,
                hang: String::new(),
            }),
        }
    }

    /// Run `argv` under `script -qec` so that it has a terminal (a pty that
    /// `script` relays to its stdout). `script` makes the command a session
    /// leader, out of reach of the process-group kill: the inner shell writes
    /// its pid (= its process group) to a file before it `exec`s the command,
    /// and a timeout kills that group too. Output has `\r` and NUL bytes removed.
    pub fn run_in_pty(
        &self,
        argv: &[String],
        envs: &[(&str, String)],
        desc: &str,
        timeout: Duration,
    ) -> Out {
        let pidfile = self.io.join(format!("pty-{}.pid", self.seq.get() + 1));
        let inner = format!(
            "echo $$ > {}; exec {}",
            sh_quote(&pidfile.to_string_lossy()),
            argv.iter()
                .map(|a| sh_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &inner, "/dev/null"])
            .env("SHELL", "/bin/sh");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut out = self.run_full(
            cmd,
            format!("script -qec {desc:?}"),
            timeout,
            Some(&pidfile),
        );
        let _ = fs::remove_file(&pidfile);
        out.stdout = out.stdout.replace(['\r', '\0'], "");
        out
    }
}

/// A client command started by [`Runner::spawn`].
pub struct Pending {
    child: Child,
    desc: String,
    out: PathBuf,
    err: PathBuf,
    deadline: Instant,
    session_pidfile: Option<PathBuf>,
}

impl Pending {
    /// Wait for the command, killing it at its deadline, and collect its output.
    pub fn wait(mut self) -> Out {
        let mut timed_out = false;
        let mut hang = String::new();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < self.deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    timed_out = true;
                    hang = crate::runtime::hang_report(self.child.id()).0;
                    // The group we created for this command, by its id, and the
                    // session the command started below it.
                    kill_group(self.child.id());
                    if let Some(pgid) = self
                        .session_pidfile
                        .as_ref()
                        .and_then(|p| fs::read_to_string(p).ok())
                        .and_then(|s| s.trim().parse::<u32>().ok())
                    {
                        kill_group(pgid);
                    }
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
                Err(_) => break None,
            }
        };
        let read = |p: &Path| {
            let s = fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let _ = fs::remove_file(p);
            s
        };
        Out {
            cmd: self.desc,
            code: if timed_out {
                None
            } else {
                status.and_then(|s| s.code())
            },
            stdout: read(&self.out),
            stderr: read(&self.err),
            timed_out,
            hang,
        }
    }
}

/// `kill -KILL -- -<pgid>` (a process group this harness created).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// `kill -<sig> <pid>`.
pub fn kill_pid(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The program and arguments of `cmd`, for messages.
fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Quote `s` for `sh`.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.,:=@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The full path of `prog` found in `PATH`, or an error naming the package
/// to install.
pub fn require_program(prog: &str, what: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = dir.join(prog);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!(
        "{what} is not installed: `{prog}` not found in PATH (hack/install-deps.sh installs it)"
    ))
}

/// Run a setup command (not a test step): stdout on success, or an error
/// with its output.
pub fn setup_cmd(runner: &Runner, cmd: Command) -> Result<String, String> {
    let out = runner.run(cmd, client_timeout());
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(out.describe())
    }
}

/// Every cgroup hierarchy root: `/sys/fs/cgroup` and its subdirectories
/// (the v1 controllers and the hybrid `unified` mount).
fn cgroup_roots() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        let mut sub: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && !p.is_symlink())
            .collect();
        sub.sort();
        v.extend(sub);
    }
    v
}

/// Existing cgroup directories `/sys/fs/cgroup[/<hierarchy>]/<rel>`.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    cgroup_roots()
        .into_iter()
        .map(|r| r.join(rel.trim_start_matches('/')))
        .filter(|p| p.is_dir())
        .collect()
}

/// Live (non-zombie) processes in cgroup `/<rel>` (or below) of any hierarchy.
pub fn processes_in_cgroup(rel: &str) -> Vec<u32> {
    let cg = format!("/{}", rel.trim_start_matches('/'));
    let below = format!("{cg}/");
    pids_where(|pid| {
        fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|s| {
                s.lines().any(|l| {
                    l.splitn(3, ':')
                        .nth(2)
                        .is_some_and(|p| p == cg || p.starts_with(&below))
                })
            })
            .unwrap_or(false)
    })
}

/// Live processes (other than this one) whose command line contains every
/// one of `needles`.
pub fn processes_with_args(needles: &[&str]) -> Vec<u32> {
    let me = std::process::id();
    pids_where(|pid| {
        if pid == me {
            return false;
        }
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        needles.iter().all(|n| line.contains(n))
    })
}

fn pids_where(mut pred: impl FnMut(u32) -> bool) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pred(pid) && crate::context::alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Describe processes for a leak message.
pub fn describe_pids(pids: &[u32]) -> String {
    pids.iter()
        .map(|p| format!("{p} ({})", crate::context::comm(*p)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kill `pids` (SIGKILL, one by one) and wait up to 5 s for them to go.
pub fn kill_all(pids: &[u32]) {
    for p in pids {
        kill_pid(*p, "KILL");
    }
    crate::harness::wait_until(Duration::from_secs(5), || {
        pids.iter().all(|p| !crate::context::alive(*p))
    });
}

/// Unmount every mount at or below `dir` (deepest first; these are the
/// client's own mounts in the client's own directory), returning their paths.
pub fn unmount_below(dir: &Path) -> Vec<String> {
    let mut mps = crate::context::mounts_under(dir);
    mps.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in &mps {
        let st = Command::new("umount").arg(m).stderr(Stdio::null()).status();
        if !st.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount")
                .args(["--lazy", m])
                .stderr(Stdio::null())
                .status();
        }
    }
    mps
}

/// Remove the cgroup dirs `/sys/fs/cgroup[/<h>]/<rel>` that exist now but
/// are not in `before` (created during this run), deepest `rel` first. Only
/// `rmdir`: a cgroup still in use stays.
pub fn remove_new_cgroup_dirs(rels: &[&str], before: &[PathBuf]) {
    let mut rels = rels.to_vec();
    rels.sort_by_key(|r| std::cmp::Reverse(r.len()));
    for rel in rels {
        for p in cgroup_dirs(rel) {
            if !before.contains(&p) {
                let _ = fs::remove_dir(&p);
            }
        }
    }
}

/// Poll `check` (a list of things left behind) for up to 5 s until it is empty;
/// return the last list.
pub fn settle(mut check: impl FnMut() -> Vec<String>) -> Vec<String> {
    let mut last = Vec::new();
    crate::harness::wait_until(Duration::from_secs(5), || {
        last = check();
        last.is_empty()
    });
    last
}

#[cfg(test)]
mod unit {
    use super::sh_quote;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("ctr"), "ctr");
        assert_eq!(sh_quote("/a/b-c"), "/a/b-c");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
    }
}
