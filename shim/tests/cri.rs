//! End-to-end through Kubernetes' CRI: a private containerd 1.6 with its CRI plugin and three
//! runtime handlers, driven by a CRI client (gRPC from Python, `tests/cri/cri_client.py`):
//!
//! * `berth`: containerd-shim-berth-v2 driving berth (`runtime_type = "io.containerd.berth.v2"`,
//!   the shim under test found through containerd's PATH, options `ConfigPath` naming a TOML
//!   file with BinaryName and Root);
//! * `berth-runc`: the same shim driving Debian's runc;
//! * `runc`: containerd's own io.containerd.runc.v2 shim and runc, the reference.
//!
//! For each: a host-network pod (no CNI needed) with an absolute cgroup parent of its own, two
//! containers, ExecSync, containerd restarted under the running pod (recovered: the same one
//! shim), stats, update, exits and an OOM kill, stop, remove; every container of the pod must
//! share one shim.
//! Afterwards nothing may be left: shims, pod processes, mounts, cgroups, shim sockets.
//!
//! Opt-in (root, containerd 1.6, umoci, skopeo, busybox-static, python3-grpcio,
//! python3-grpc-tools): `BERTH_SHIM_E2E=1 cargo test -p containerd-shim-berth-v2 --release
//! --test cri -- --nocapture`. `BERTH_SHIM_CRI_HANDLERS=berth,runc` narrows the handlers;
//! `BERTH_BINARY` names berth (default: next to the shim binary); `BERTH_SHIM_E2E_SAVE_LOG=FILE`
//! keeps containerd's log, with the shims' debug lines.

mod common;

use common::{run_timeout, IMAGE};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The sandbox ("pause") image: busybox whose command sleeps forever.
const PAUSE_IMAGE: &str = "docker.io/library/berth-pause:latest";
/// The CRI plugin's containerd namespace.
const NS: &str = "k8s.io";
const PYTHON: &str = "/usr/bin/python3";
const HANDLERS: &[&str] = &["berth", "berth-runc", "runc"];

struct CriEnv {
    dir: PathBuf,
    sock: PathBuf,
    config: PathBuf,
    containerd: Option<Child>,
    /// Cgroup parents handed to pods (`/berth-cri-<pid>-<handler>`), removed in Drop.
    cgroup_parents: Vec<String>,
    /// Sandbox ids seen, for their shim sockets.
    sandboxes: Vec<String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cri/cri_client.py")
}

fn missing_prerequisite() -> Option<String> {
    if let Some(why) = common::missing_prerequisite() {
        return Some(why);
    }
    let ok = Command::new(PYTHON)
        .args(["-c", "import grpc, grpc_tools.protoc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Some(format!(
            "{PYTHON} cannot import grpc and grpc_tools (apt-get install python3-grpcio python3-grpc-tools)"
        ));
    }
    None
}

impl CriEnv {
    fn new(handlers: &[&str]) -> Result<CriEnv, String> {
        let dir = PathBuf::from(format!("/tmp/berth-shim-cri-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
        let mut env = CriEnv {
            sock: dir.join("containerd.sock"),
            config: dir.join("config.toml"),
            dir,
            containerd: None,
            cgroup_parents: Vec::new(),
            sandboxes: Vec::new(),
        };
        let t = Instant::now();
        common::build_image(&env.dir)?;
        let d = env.dir.display();
        common::sh(&format!(
            "umoci config --image {d}/layout:busybox --tag pause --config.cmd /bin/sleep --config.cmd 2147483647
skopeo copy oci:{d}/layout:pause oci-archive:{d}/pause.tar:{PAUSE_IMAGE} >/dev/null"
        ))?;
        eprintln!("images built ({} ms)", t.elapsed().as_millis());
        env.write_config(handlers)?;
        env.start_containerd()?;
        for tar in ["busybox.tar", "pause.tar"] {
            let p = env.dir.join(tar);
            env.ctr_ok(&["images", "import", p.to_str().unwrap()])?;
        }
        Ok(env)
    }

    fn write_config(&self, handlers: &[&str]) -> Result<(), String> {
        let d = self.dir.display();
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let mut runtimes = String::new();
        for h in handlers {
            let (shim_table, binary) = match *h {
                "berth" => (
                    true,
                    common::berth_binary().ok_or(
                        "berth binary: build it (cargo build -p berth) or set BERTH_BINARY",
                    )?,
                ),
                "berth-runc" => (true, PathBuf::from("/usr/sbin/runc")),
                "runc" => (false, PathBuf::from("/usr/sbin/runc")),
                other => return Err(format!("unknown handler {other:?}")),
            };
            let root = self.dir.join(format!("rt-{h}"));
            if shim_table {
                // A non-runc runtime type gets runtimeoptions.v1.Options{ConfigPath}.
                let cfg = self.dir.join(format!("{h}.toml"));
                std::fs::write(
                    &cfg,
                    format!(
                        "BinaryName = \"{}\"\nRoot = \"{}\"\n",
                        binary.display(),
                        root.display()
                    ),
                )
                .map_err(|e| e.to_string())?;
                runtimes.push_str(&format!(
                    r#"
[{cri}.containerd.runtimes.{h}]
  runtime_type = "io.containerd.berth.v2"
  [{cri}.containerd.runtimes.{h}.options]
    ConfigPath = "{}"
"#,
                    cfg.display()
                ));
            } else {
                runtimes.push_str(&format!(
                    r#"
[{cri}.containerd.runtimes.{h}]
  runtime_type = "io.containerd.runc.v2"
  [{cri}.containerd.runtimes.{h}.options]
    BinaryName = "{}"
    Root = "{}"
"#,
                    binary.display(),
                    root.display()
                ));
            }
        }
        // Everything not named keeps containerd's default. CNI dirs are ours and empty: the
        // pods use the host's network, so no CNI plugin is ever called. The sandbox's
        // oom_score_adj (-998) needs CAP_SYS_RESOURCE, which this machine's bounding set lacks:
        // restrict_oom_score_adj clamps it to containerd's own. (containerd 1.6 ignores a
        // runtime's `runtime_path` when it starts a shim, hence PATH in start_containerd.)
        let text = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"

[grpc]
  address = "{sock}"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[{cri}.cni]
  bin_dir = "{d}/cni/bin"
  conf_dir = "{d}/cni/conf"
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "{default}"
{runtimes}"#,
            sock = self.sock.display(),
            // The default must be one of the runtimes configured, or the CRI plugin fails to load.
            default = handlers.first().ok_or("no runtime handler")?
        );
        std::fs::write(&self.config, text).map_err(|e| e.to_string())
    }

    fn start_containerd(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("containerd");
        // io.containerd.berth.v2 -> containerd-shim-berth-v2: the binary under test first.
        let shim_dir = common::shim_binary()
            .parent()
            .expect("the shim binary's directory")
            .to_path_buf();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let paths = std::iter::once(shim_dir).chain(std::env::split_paths(&path));
        cmd.env(
            "PATH",
            std::env::join_paths(paths).map_err(|e| e.to_string())?,
        );
        let child = common::spawn_containerd(cmd, &self.config, &self.dir)?;
        self.containerd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok()
                && self.ctr(&["version"]).is_ok_and(|o| o.status.success())
            {
                // containerd serves without a plugin that failed to load: say so here, not as
                // "unknown service runtime.v1.RuntimeService" later.
                let plugins = self.ctr_ok(&["plugins", "ls"])?;
                let cri = plugins.lines().find(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.first() == Some(&"io.containerd.grpc.v1") && f.get(1) == Some(&"cri")
                });
                if cri.is_some_and(|l| l.trim_end().ends_with("ok")) {
                    return Ok(());
                }
                return Err(format!(
                    "the CRI plugin did not load ({}); log:\n{}",
                    cri.unwrap_or("not listed").trim(),
                    self.containerd_log_tail()
                ));
            }
            if let Some(Ok(Some(st))) = self.containerd.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "containerd exited ({st}); log:\n{}",
                    self.containerd_log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "containerd did not come up; log:\n{}",
            self.containerd_log_tail()
        ))
    }

    fn stop_containerd(&mut self) {
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

    fn containerd_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn ctr(&self, args: &[&str]) -> Result<std::process::Output, String> {
        run_timeout(
            Command::new("ctr")
                .arg("-a")
                .arg(&self.sock)
                .arg("-n")
                .arg(NS)
                .args(args),
            None,
            Duration::from_secs(60),
        )
    }

    fn ctr_ok(&self, args: &[&str]) -> Result<String, String> {
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

    fn client(&self, args: &[&str]) -> Result<std::process::Output, String> {
        run_timeout(
            Command::new(PYTHON)
                .arg(script())
                .args(args)
                .arg("--socket")
                .arg(&self.sock)
                .arg("--work")
                .arg(&self.dir),
            None,
            Duration::from_secs(240),
        )
    }

    /// Run the client; when it creates `restart.ready`, restart containerd (stop and start
    /// by pid, the shims keep running) and create `restart.go`.
    fn client_with_restart(&mut self, args: &[&str]) -> Result<std::process::Output, String> {
        let flag = self.dir.join("restart");
        let (ready, go) = (flag.with_extension("ready"), flag.with_extension("go"));
        let _ = std::fs::remove_file(&ready);
        let _ = std::fs::remove_file(&go);
        let (out, err) = (self.dir.join("client.out"), self.dir.join("client.err"));
        let file = |p: &Path| std::fs::File::create(p).map_err(|e| e.to_string());
        let mut child = Command::new(PYTHON)
            .arg(script())
            .args(args)
            .arg("--restart-file")
            .arg(&flag)
            .arg("--socket")
            .arg(&self.sock)
            .arg("--work")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(file(&out)?)
            .stderr(file(&err)?)
            .spawn()
            .map_err(|e| format!("{PYTHON}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut restart_err = None;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break s;
            }
            if ready.exists() && !go.exists() {
                self.stop_containerd();
                if let Err(e) = self.start_containerd() {
                    restart_err = Some(e);
                }
                file(&go)?;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the CRI client timed out after 240 s: {:?}", args));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(e) = restart_err {
            return Err(format!("restarting containerd: {e}"));
        }
        Ok(std::process::Output {
            status,
            stdout: std::fs::read(&out).unwrap_or_default(),
            stderr: std::fs::read(&err).unwrap_or_default(),
        })
    }

    /// Live shim processes of this containerd (their command line names our socket).
    fn our_shims(&self) -> Vec<i32> {
        let sock = self.sock.display().to_string();
        procs()
            .filter(|(_, argv)| {
                argv.first().is_some_and(|a| {
                    a.rsplit('/')
                        .next()
                        .unwrap_or("")
                        .contains("containerd-shim")
                }) && argv.contains(&sock)
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Mount points at or below our directory.
    fn our_mounts(&self) -> Vec<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .map(String::from)
            .collect()
    }

    /// Cgroup directories below our cgroup parents, in every hierarchy.
    fn our_cgroups(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for parent in &self.cgroup_parents {
            for h in hierarchies() {
                let p = h.join(parent.trim_start_matches('/'));
                for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        v.push(e.path());
                    }
                }
            }
        }
        v
    }

    /// Processes in any cgroup below our cgroup parents.
    fn our_cgroup_procs(&self) -> Vec<i32> {
        procs()
            .map(|(pid, _)| pid)
            .filter(|pid| {
                let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                cg.lines().any(|l| {
                    let path = l.splitn(3, ':').nth(2).unwrap_or("");
                    self.cgroup_parents
                        .iter()
                        .any(|p| path == p || path.starts_with(&format!("{p}/")))
                })
            })
            .collect()
    }

    /// What is left of a run: shims, processes, mounts, cgroups, shim sockets.
    fn leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.our_shims().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !self.our_shims().is_empty() {
            v.push(format!("shims still running: {:?}", self.our_shims()));
        }
        let procs = self.our_cgroup_procs();
        if !procs.is_empty() {
            v.push(format!("processes in our cgroups: {procs:?}"));
        }
        let mounts = self.our_mounts();
        if !mounts.is_empty() {
            v.push(format!("mounts left: {mounts:?}"));
        }
        let cgroups = self.our_cgroups();
        if !cgroups.is_empty() {
            v.push(format!("cgroups left: {cgroups:?}"));
        }
        for id in &self.sandboxes {
            let s = common::shim_socket(&self.sock, NS, id);
            if s.exists() {
                v.push(format!("shim socket left: {}", s.display()));
            }
        }
        let left = self.ctr_ok(&["container", "ls", "-q"]).unwrap_or_default();
        if !left.trim().is_empty() {
            v.push(format!("containers left: {}", left.trim()));
        }
        v
    }

    /// Remove the cgroup parents (the runtimes remove the pods' own cgroups below them).
    fn remove_cgroups(&self) {
        for parent in &self.cgroup_parents {
            for h in hierarchies() {
                let p = h.join(parent.trim_start_matches('/'));
                if !p.is_dir() {
                    continue;
                }
                // Deepest first; rmdir only (a cgroup with processes stays and is reported).
                let mut dirs = vec![p.clone()];
                let mut i = 0;
                while i < dirs.len() {
                    for e in std::fs::read_dir(&dirs[i]).into_iter().flatten().flatten() {
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            dirs.push(e.path());
                        }
                    }
                    i += 1;
                }
                for d in dirs.iter().rev() {
                    if let Err(e) = std::fs::remove_dir(d) {
                        eprintln!("removing cgroup {}: {e}", d.display());
                    }
                }
            }
        }
    }
}

impl Drop for CriEnv {
    fn drop(&mut self) {
        if self.containerd.is_some() {
            if let Ok(o) = self.client(&["cleanup"]) {
                if !o.status.success() {
                    eprintln!(
                        "cri cleanup: {}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
            for img in [IMAGE, PAUSE_IMAGE] {
                let _ = self.ctr(&["images", "rm", img]);
            }
        }
        self.stop_containerd();
        // With BERTH_SHIM_E2E_SAVE_LOG=FILE, containerd's log (with the shims' debug lines).
        if let Some(dest) = std::env::var_os("BERTH_SHIM_E2E_SAVE_LOG") {
            let _ = std::fs::copy(self.dir.join("containerd.log"), dest);
        }
        for pid in self.our_shims().into_iter().chain(self.our_cgroup_procs()) {
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
        std::thread::sleep(Duration::from_millis(100));
        self.remove_cgroups();
        for id in &self.sandboxes {
            let _ = std::fs::remove_file(common::shim_socket(&self.sock, NS, id));
        }
        let _ = Command::new("rm")
            .arg("-rf")
            .arg("--one-file-system")
            .arg(&self.dir)
            .status();
    }
}

/// The cgroup hierarchies: every directory under /sys/fs/cgroup (v1 controllers, the named
/// systemd one, the unified mount), or /sys/fs/cgroup itself on pure v2.
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) // not the cpu -> cpu,cpuacct links
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Every process with its argv (zombies excluded).
fn procs() -> impl Iterator<Item = (i32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            if stat.rsplit(')').next()?.split_whitespace().next()? == "Z" {
                return None;
            }
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv = cmd
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, argv))
        })
}

/// Each step's milliseconds side by side, one column per handler (from the clients' results).
fn timing_table(results: &[(String, serde_json::Value)]) -> String {
    let mut steps: Vec<String> = Vec::new();
    let mut ms = std::collections::HashMap::new();
    for (h, r) in results {
        for t in r["timings"].as_array().into_iter().flatten() {
            let (Some(name), Some(v)) = (t[0].as_str(), t[1].as_f64()) else {
                continue;
            };
            if !steps.iter().any(|s| s == name) {
                steps.push(name.to_string());
            }
            ms.insert((h.as_str(), name.to_string()), v);
        }
    }
    let mut out = format!("{:<46}", "step (ms)");
    for (h, _) in results {
        out.push_str(&format!("{h:>11}"));
    }
    let mut totals = vec![0.0; results.len()];
    for s in &steps {
        out.push_str(&format!("\n{s:<46}"));
        for (i, (h, _)) in results.iter().enumerate() {
            match ms.get(&(h.as_str(), s.clone())) {
                Some(v) => {
                    totals[i] += v;
                    out.push_str(&format!("{v:>11.1}"));
                }
                None => out.push_str(&format!("{:>11}", "-")),
            }
        }
    }
    out.push_str(&format!("\n{:<46}", "total"));
    for t in totals {
        out.push_str(&format!("{t:>11.1}"));
    }
    out.push_str(&format!(
        "\n{:<46}",
        "pod shim VmRSS, sandbox + 2 containers (KiB)"
    ));
    for (_, r) in results {
        match r["shim_rss_kib"].as_u64() {
            Some(k) => out.push_str(&format!("{k:>11}")),
            None => out.push_str(&format!("{:>11}", "-")),
        }
    }
    out
}

#[test]
fn cri_e2e() {
    if std::env::var("BERTH_SHIM_E2E").as_deref() != Ok("1") {
        eprintln!("skipped: set BERTH_SHIM_E2E=1 to run a pod through containerd's CRI plugin (root, containerd 1.6, umoci, skopeo, busybox-static, python3-grpcio, python3-grpc-tools)");
        return;
    }
    if let Some(why) = missing_prerequisite() {
        panic!("BERTH_SHIM_E2E is set but {why}");
    }
    let wanted = std::env::var("BERTH_SHIM_CRI_HANDLERS").unwrap_or_else(|_| HANDLERS.join(","));
    let handlers: Vec<&str> = wanted
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut env = CriEnv::new(&handlers).expect("setting up containerd with CRI");
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    let mut results = Vec::new();
    for h in &handlers {
        let parent = format!("/berth-cri-{}-{h}", std::process::id());
        env.cgroup_parents.push(parent.clone());
        let log_dir = env.dir.join("logs").join(h);
        std::fs::create_dir_all(&log_dir).unwrap();
        let result = env.dir.join(format!("result-{h}.json"));
        eprintln!("--- handler {h}");
        let start = Instant::now();
        let o = env.client_with_restart(&[
            "run",
            "--handler",
            h,
            "--image",
            IMAGE,
            "--pause-image",
            PAUSE_IMAGE,
            "--cgroup-parent",
            &parent,
            "--log-dir",
            log_dir.to_str().unwrap(),
            "--result",
            result.to_str().unwrap(),
        ]);
        let elapsed = start.elapsed();
        let mut errs = Vec::new();
        match &o {
            Ok(o) => {
                eprint!("{}", String::from_utf8_lossy(&o.stdout));
                if !o.status.success() {
                    errs.push(format!(
                        "client {}: {}{}",
                        o.status,
                        String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .filter(|l| l.starts_with("FAIL"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        String::from_utf8_lossy(&o.stderr)
                    ));
                }
            }
            Err(e) => errs.push(e.clone()),
        }
        let parsed: serde_json::Value = std::fs::read(&result)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if let Some(id) = parsed.get("sandbox_id").and_then(|v| v.as_str()) {
            env.sandboxes.push(id.to_string());
        }
        results.push((h.to_string(), parsed));
        if !errs.is_empty() {
            // Leave nothing for the next handler (the client removes its pod on failure too).
            let _ = env.client(&["cleanup"]);
        }
        errs.extend(env.leftovers());
        if !errs.is_empty() {
            errs.push(format!("containerd log:\n{}", env.containerd_log_tail()));
        }
        let line = format!(
            "{:4} {h:<11} pod lifecycle through CRI ({} ms)",
            if errs.is_empty() { "PASS" } else { "FAIL" },
            elapsed.as_millis()
        );
        eprintln!("{line}");
        summary.push(line);
        env.remove_cgroups();
        for e in errs {
            eprintln!("     {e}");
            failures.push(format!("{h}: {e}"));
        }
    }
    eprintln!("{}", timing_table(&results));
    eprintln!("{}", summary.join("\n"));
    drop(env);
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}
