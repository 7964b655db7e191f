//! A private containerd 1.6 for end-to-end tests of the shim: own root, state, socket and
//! namespace, CRI disabled; a busybox image built with umoci + skopeo from Debian's
//! busybox-static and imported with `ctr images import`. Everything started here is stopped by
//! pid and everything created is removed in `Drop`. [`Env::with_containerd`] runs another
//! containerd instead (sid's 2.1.9 from hack/install-peers.sh's cache: [`containerd2_bin`]).

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const IMAGE: &str = "docker.io/library/busybox:latest";

pub struct Runtime {
    pub name: String,
    pub binary: PathBuf,
    pub config: PathBuf,
}

pub struct Env {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub ns: String,
    pub shim: PathBuf,
    config: PathBuf,
    containerd: Option<Child>,
    pub ids: Vec<String>,
    /// The dir of the containerd and ctr binaries (None: Debian 12's, from PATH).
    bin: Option<PathBuf>,
}

/// The dir of containerd 2.1.9's binaries unpacked by hack/install-peers.sh
/// (`BERTH_PEERS_DIR`, default /var/tmp/berth-peers), if it is there.
pub fn containerd2_bin() -> Option<PathBuf> {
    let peers = std::env::var_os("BERTH_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/berth-peers"));
    let dir = peers.join("containerd-2.1.9");
    dir.join(".complete")
        .is_file()
        .then(|| dir.join("root/usr/bin"))
}

/// Start `cmd` (containerd) with `--config CONFIG`, its output appended to DIR/containerd.log
/// (with the shims' debug lines when BERTH_SHIM_E2E_SAVE_LOG asks for a saved log).
pub fn spawn_containerd(
    mut cmd: Command,
    config: &Path,
    dir: &Path,
) -> Result<std::process::Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .map_err(|e| e.to_string())?;
    if std::env::var_os("BERTH_SHIM_E2E_SAVE_LOG").is_some() {
        cmd.env("BERTH_SHIM_DEBUG", "1");
    }
    // containerd's own shims (its runc shim) beside it come first, as in an install of it,
    // then CRIU's directory.
    let own_dir = Path::new(cmd.get_program())
        .parent()
        .filter(|d| d.is_absolute())
        .map(Path::to_path_buf);
    let mut path: Vec<PathBuf> = own_dir.into_iter().chain(criu_dir()).collect();
    // The PATH the caller gave the command (the CRI test puts the shim's dir there), else ours.
    let given = cmd
        .get_envs()
        .find(|(k, _)| *k == "PATH")
        .and_then(|(_, v)| v.map(std::ffi::OsStr::to_os_string))
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    path.extend(std::env::split_paths(&given));
    if let Ok(p) = std::env::join_paths(path) {
        cmd.env("PATH", p);
    }
    // containerd unpacks a checkpoint for a restore into a temporary dir of
    // $XDG_RUNTIME_DIR (else /tmp) and leaves it: keep those in the test's dir.
    cmd.env("XDG_RUNTIME_DIR", dir);
    cmd.arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting containerd: {e}"))
}

/// The directory of a CRIU whose `criu check` passes (`$BERTH_TEST_CRIU`, the peer that
/// hack/install-peers.sh unpacks, or PATH's), put first in containerd's PATH so that the
/// runtimes under the shims find it; None: checkpoint scenarios skip.
pub fn criu_dir() -> Option<PathBuf> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(c) = std::env::var_os("BERTH_TEST_CRIU") {
            candidates.push(PathBuf::from(c));
        }
        candidates.push(PathBuf::from("/var/tmp/berth-peers/criu-4.2.1/bin/criu"));
        candidates.extend(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("criu")),
        );
        candidates.into_iter().find_map(|c| {
            let ok = Command::new(&c)
                .arg("check")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| c.parent().map(Path::to_path_buf)).flatten()
        })
    })
    .clone()
}

/// containerd 1.6's shim socket for a container: /run/containerd/s/sha256(address/ns/id).
pub fn shim_socket(address: &Path, ns: &str, id: &str) -> PathBuf {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{}/{ns}/{id}", address.display()).as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    Path::new("/run/containerd/s").join(hex)
}

pub fn have(bin: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why the end-to-end tests cannot run here, if they cannot.
pub fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not root".into());
    }
    for b in ["containerd", "ctr", "umoci", "skopeo"] {
        if !have(b) {
            return Some(format!("{b} is not installed"));
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("busybox-static is not installed".into());
    }
    None
}

/// Run a command with a deadline; on timeout kill it (by its pid) and fail.
pub fn run_timeout(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let desc = format!("{cmd:?}");
    let mut child = cmd.spawn().map_err(|e| format!("{desc}: {e}"))?;
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut w, &data);
        });
    }
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let to = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let te = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{desc}: timed out after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: to.join().unwrap_or_default(),
        stderr: te.join().unwrap_or_default(),
    })
}

pub fn sh(script: &str) -> Result<(), String> {
    let o = run_timeout(
        Command::new("sh").arg("-ec").arg(script),
        None,
        Duration::from_secs(120),
    )?;
    if !o.status.success() {
        return Err(format!("{script}: {}", String::from_utf8_lossy(&o.stderr)));
    }
    Ok(())
}

/// The shim binary under test and the berth binary next to it (or BERTH_BINARY).
pub fn shim_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-berth-v2"))
}

pub fn berth_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_BINARY") {
        return Some(PathBuf::from(p));
    }
    let p = shim_binary().parent()?.join("berth");
    p.is_file().then_some(p)
}

/// Build the busybox image in `dir`: the OCI layout `dir/layout` (tag `busybox`, cmd /bin/sh)
/// and `dir/busybox.tar`, an archive `ctr images import` takes as [`IMAGE`].
pub fn build_image(dir: &Path) -> Result<(), String> {
    let d = dir.display();
    sh(&format!(
        r#"L={d}/layout; W={d}/work
umoci init --layout $L
umoci new --image $L:busybox
umoci unpack --image $L:busybox $W
R=$W/rootfs; mkdir -p $R/bin $R/etc $R/tmp $R/proc $R/sys $R/dev $R/root; chmod 1777 $R/tmp
cp /bin/busybox $R/bin/busybox
for a in $(/bin/busybox --list-full); do [ "$a" = bin/busybox ] && continue; mkdir -p $R/$(dirname $a); ln -sf /bin/busybox $R/$a; done
echo 'root:x:0:0:root:/root:/bin/sh' > $R/etc/passwd; echo 'root:x:0:' > $R/etc/group
umoci repack --image $L:busybox $W
umoci config --image $L:busybox --config.cmd /bin/sh --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin
skopeo copy oci:$L:busybox oci-archive:{d}/busybox.tar:{IMAGE} >/dev/null
rm -rf $W"#
    ))
}

impl Env {
    pub fn new(tag: &str) -> Result<Env, String> {
        Env::with_containerd(tag, None)
    }

    /// Like [`Env::new`], with the `containerd` and `ctr` of dir `bin` (None: from PATH).
    pub fn with_containerd(tag: &str, bin: Option<PathBuf>) -> Result<Env, String> {
        let dir = PathBuf::from(format!("/tmp/berth-shim-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut env = Env {
            sock: dir.join("containerd.sock"),
            config: dir.join("config.toml"),
            ns: format!("berth-shim-{tag}-{}", std::process::id()),
            shim: shim_binary(),
            dir,
            containerd: None,
            ids: Vec::new(),
            bin,
        };
        env.build_image()?;
        env.write_config()?;
        env.start_containerd()?;
        let tar = env.dir.join("busybox.tar");
        env.ctr_ok(&["images", "import", tar.to_str().unwrap()])?;
        Ok(env)
    }

    fn build_image(&self) -> Result<(), String> {
        build_image(&self.dir)
    }

    /// `containerd` or `ctr` (from [`Env::with_containerd`]'s dir, else from PATH).
    fn program(&self, name: &str) -> PathBuf {
        match &self.bin {
            Some(b) => b.join(name),
            None => PathBuf::from(name),
        }
    }

    fn write_config(&self) -> Result<(), String> {
        // 2.x has three CRI plugins; all disabled.
        let disabled = if self.bin.is_some() {
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.cri.v1.runtime\", \
             \"io.containerd.cri.v1.images\"]"
        } else {
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]"
        };
        let o = run_timeout(
            Command::new(self.program("containerd")).args(["config", "default"]),
            None,
            Duration::from_secs(30),
        )?;
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let d = self.dir.display();
        let mut out = String::new();
        let mut section = String::new();
        for line in text.lines() {
            let t = line.trim_start();
            if t.starts_with('[') {
                section = t.to_string();
            }
            let indent = &line[..line.len() - t.len()];
            let replaced = if section.is_empty() && t.starts_with("root = ") {
                format!("root = \"{d}/root\"")
            } else if section.is_empty() && t.starts_with("state = ") {
                format!("state = \"{d}/state\"")
            } else if section.is_empty() && t.starts_with("disabled_plugins = ") {
                disabled.to_string()
            } else if section == "[grpc]" && t.starts_with("address = ") {
                format!("{indent}address = \"{}\"", self.sock.display())
            } else if (section == "[ttrpc]" || section == "[debug]" || section == "[metrics]")
                && t.starts_with("address = ")
            {
                format!("{indent}address = \"\"")
            } else if t.starts_with("path = \"/opt/containerd\"") {
                format!("{indent}path = \"{d}/opt\"")
            } else {
                line.to_string()
            };
            out.push_str(&replaced);
            out.push('\n');
        }
        std::fs::write(&self.config, out).map_err(|e| e.to_string())
    }

    pub fn start_containerd(&mut self) -> Result<(), String> {
        let child = spawn_containerd(
            Command::new(self.program("containerd")),
            &self.config,
            &self.dir,
        )?;
        self.containerd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok()
                && self.ctr(&["version"]).is_ok_and(|o| o.status.success())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "containerd did not come up; log:\n{}",
            self.containerd_log_tail()
        ))
    }

    pub fn stop_containerd(&mut self) {
        if let Some(mut c) = self.containerd.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn containerd_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn ctr_cmd(&self) -> Command {
        let mut c = Command::new(self.program("ctr"));
        c.arg("-a").arg(&self.sock).arg("-n").arg(&self.ns);
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Result<Output, String> {
        run_timeout(self.ctr_cmd().args(args), None, Duration::from_secs(60))
    }

    pub fn ctr_ok(&self, args: &[&str]) -> Result<String, String> {
        let o = self.ctr(args)?;
        if !o.status.success() {
            return Err(format!(
                "ctr {args:?}: {}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `ctr run --runtime SHIM --runtime-config-path CFG ...ARGS` (ARGS start with run's options).
    pub fn run_args<'a>(&'a self, rt: &'a Runtime, args: &[&'a str]) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "run".into(),
            "--runtime".into(),
            self.shim.display().to_string(),
        ];
        v.push("--runtime-config-path".into());
        v.push(rt.config.display().to_string());
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    pub fn note_id(&mut self, id: &str) {
        self.ids.push(id.to_string());
    }

    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.ns)
            .join(id)
    }

    /// The status column of `ctr task ls` for a task ("" when it is not listed).
    pub fn task_status(&self, id: &str) -> String {
        let out = self.ctr_ok(&["task", "ls"]).unwrap_or_default();
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
            })
            .next()
            .unwrap_or_default()
    }

    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.task_status(id);
            if s == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("task {id}: status {s:?}, want {want:?}"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Kill, delete and remove a container, whatever state it is in.
    pub fn remove(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
        let _ = self.wait_status(id, "STOPPED", Duration::from_secs(5));
        let _ = self.ctr(&["task", "rm", "-f", id]);
        let _ = self.ctr(&["container", "rm", id]);
    }

    /// Mount points at or below our directory.
    pub fn our_mounts(&self) -> Vec<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .map(String::from)
            .collect()
    }

    /// The shim serving container `id` (its command line has `-id ID` and our containerd).
    pub fn shim_pid(&self, id: &str) -> Option<i32> {
        let sock = self.sock.display().to_string();
        let want = format!("\0-id\0{id}\0");
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("containerd-shim") && cmd.contains(&sock) && cmd.contains(&want) {
                return Some(pid);
            }
        }
        None
    }

    /// Every process whose command line mentions the shim or a runtime, with state and wchan
    /// (for a failure message).
    pub fn process_report(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("containerd-shim") || cmd.contains("berth") && !cmd.contains("cargo") {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .next()
                    .unwrap_or("?")
                    .to_string();
                let wchan =
                    std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
                out.push_str(&format!("{pid} {state} {wchan} {cmd}\n"));
            }
        }
        out
    }

    /// Processes (other than containerd and shims) whose command line names our directory:
    /// logging binaries and the like, which must not outlive their containers.
    pub fn our_helpers(&self) -> Vec<i32> {
        let dir = self.dir.display().to_string();
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "));
            // containerd and ctr, by the name of the program (an absolute path for a peer's).
            let prog = cmd.split('\0').next().unwrap_or("");
            let prog = prog.rsplit('/').next().unwrap_or(prog);
            if cmd.contains(&dir)
                && !prog.starts_with("containerd")
                && !prog.starts_with("ctr")
                && !cmd.contains("containerd-shim")
                && !zombie
            {
                v.push(pid);
            }
        }
        v
    }

    /// Processes of this environment's shims (their command line names our containerd).
    pub fn our_shims(&self) -> Vec<i32> {
        let sock = self.sock.display().to_string();
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("containerd-shim") && cmd.contains(&sock) && cmd.contains(&self.ns) {
                v.push(pid);
            }
        }
        v
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in self.ids.clone() {
            if !self.task_status(&id).is_empty() || self.ctr_ok(&["container", "info", &id]).is_ok()
            {
                self.remove(&id);
            }
        }
        let _ = self.ctr(&["images", "rm", IMAGE]);
        self.stop_containerd();
        for pid in self.our_shims().into_iter().chain(self.our_helpers()) {
            eprintln!("leaked process {pid}: killing it");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let mut mounts = self.our_mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // Cgroups the runtimes created for our namespace (ctr uses /<namespace>/<id>).
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = ctrl.path().join(&self.ns);
            if p.is_dir() {
                let _ = std::fs::remove_dir(&p);
            }
        }
        for id in &self.ids {
            let _ = std::fs::remove_file(shim_socket(&self.sock, &self.ns, id));
        }
        // The runtimes' state roots for our namespace (the shims' default Root/<namespace>),
        // empty once every container is deleted.
        for rt in ["berth", "runc"] {
            let _ = std::fs::remove_dir(Path::new("/run/containerd").join(rt).join(&self.ns));
        }
        let _ = Command::new("rm")
            .arg("-rf")
            .arg("--one-file-system")
            .arg(&self.dir)
            .status();
    }
}

/// A `key:` value (kB) of /proc/PID/status.
pub fn status_kb(pid: i32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The proportional set size (kB) of PID: shared pages (the binary) divided among the
/// processes mapping them.
pub fn pss_kb(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `n` containers (`PREFIX-0`...) started at once with `ctr run RUN_OPTS -d`, then killed and
/// removed: every one must run, and nothing may be left (containers, shims, mounts, memory
/// cgroups). Returns a report with the time and the shims' summed memory.
pub fn parallel(
    env: &mut Env,
    run_opts: &[String],
    prefix: &str,
    n: usize,
) -> Result<String, String> {
    let fds_before = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    for id in &ids {
        env.note_id(id);
    }
    let start = Instant::now();
    let handles: Vec<_> = ids
        .iter()
        .map(|id| {
            let mut cmd = env.ctr_cmd();
            cmd.arg("run")
                .args(run_opts)
                .args(["-d", IMAGE, id, "sleep", "1000"]);
            std::thread::spawn(move || run_timeout(&mut cmd, None, Duration::from_secs(300)))
        })
        .collect();
    let mut failed = Vec::new();
    for (h, id) in handles.into_iter().zip(&ids) {
        match h.join() {
            Ok(Ok(o)) if o.status.success() => {}
            Ok(Ok(o)) => failed.push(format!(
                "{id}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Ok(Err(e)) => failed.push(format!("{id}: {e}")),
            Err(_) => failed.push(format!("{id}: panicked")),
        }
    }
    let started = start.elapsed();
    let running = env
        .ctr_ok(&["task", "ls"])?
        .lines()
        .filter(|l| l.contains("RUNNING"))
        .count();
    let shims = env.our_shims();
    let rss: u64 = shims.iter().map(|p| status_kb(*p, "VmRSS:")).sum();
    let pss: u64 = shims.iter().map(|p| pss_kb(*p)).sum();
    for id in &ids {
        let _ = env.ctr(&["task", "kill", "-s", "KILL", id]);
    }
    for id in &ids {
        let _ = env.wait_status(id, "STOPPED", Duration::from_secs(20));
        let _ = env.ctr(&["task", "rm", id]);
        let _ = env.ctr(&["container", "rm", id]);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.our_shims().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left_shims = env.our_shims().len();
    let left_mounts = env
        .our_mounts()
        .iter()
        .filter(|m| m.contains("io.containerd.runtime.v2.task"))
        .count();
    let left_containers = env.ctr_ok(&["container", "ls", "-q"])?.lines().count();
    let cg = Path::new("/sys/fs/cgroup/memory").join(&env.ns);
    let left_cgroups = std::fs::read_dir(&cg)
        .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(0);
    let fds_after = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    let report = format!(
        "{n} started in {:.1} s, {} failed, {running} running, {} shims: VmRSS {} MB summed, PSS {} MB in total; \
         left after removal: {left_containers} containers, {left_shims} shims, {left_mounts} mounts, \
         {left_cgroups} memory cgroups, {} test fds",
        started.as_secs_f64(),
        failed.len(),
        shims.len(),
        rss / 1024,
        pss / 1024,
        fds_after as i64 - fds_before as i64
    );
    if !failed.is_empty()
        || running != n
        || left_shims + left_mounts + left_containers + left_cgroups > 0
    {
        return Err(format!("{report}\n{}", failed.join("\n")));
    }
    Ok(report)
}
