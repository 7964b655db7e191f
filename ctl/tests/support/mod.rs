//! What berthctl's end-to-end tests share: an `Env` with a data root of its own, the runtime
//! under test and the busybox fixture; it removes its containers and mounts when dropped.
#![allow(dead_code)]

#[path = "../../../image/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

pub fn berthctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berthctl"))
}

pub fn runtime() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_BIN") {
        return Some(PathBuf::from(p));
    }
    // Next to berthctl, else the release build beside this debug one (hack/test.sh builds
    // release first, then runs `cargo test`, which builds no debug berth binary).
    let dir = berthctl().parent()?.to_path_buf();
    [dir.join("berth"), dir.parent()?.join("release/berth")]
        .into_iter()
        .find(|p| p.is_file())
}

pub fn cgroup_parent() -> String {
    format!("/berthctl-test-{}", std::process::id())
}

extern "C" fn remove_cgroup_parent() {
    let name = cgroup_parent();
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for e in rd.flatten() {
        let d = e.path().join(name.trim_start_matches('/'));
        if d.is_dir() {
            let _ = std::fs::remove_dir(&d); // only succeeds when empty: ours and done
        }
    }
}

pub struct Env {
    pub root: tempfile::TempDir,
    pub runtime: PathBuf,
    pub fixture: &'static common::Fixture,
    /// Commands run in this network and mount namespace (see [`Env::with_netns`]).
    pub netns: Option<NetNs>,
}

/// A network and mount namespace of the test's own, held by a `sleep` process: its own
/// /run/netns, /var/lib/cni (tmpfs) and iptables, lo up, and a veth pair whose v0 has
/// 172.31.255.1/24 (a "host address" other than loopback). Ends with the holder.
pub struct NetNs {
    holder: std::process::Child,
}

/// The non-loopback address of the test namespace.
pub const HOST_ADDR: &str = "172.31.255.1";

impl NetNs {
    pub fn new() -> Option<NetNs> {
        if !Path::new("/usr/lib/cni/bridge").is_file() {
            eprintln!("skipped: no CNI plugins in /usr/lib/cni (apt-get install containernetworking-plugins)");
            return None;
        }
        // The mount points, as `ip netns` and the plugins make them.
        for d in ["/run/netns", "/var/lib/cni"] {
            std::fs::create_dir_all(d).unwrap();
        }
        let script = format!(
            "set -e; mount -t tmpfs tmpfs /run/netns; mount -t tmpfs tmpfs /var/lib/cni; \
             ip link set lo up; ip link add v0 type veth peer name v1; \
             ip addr add {HOST_ADDR}/24 dev v0; ip link set v0 up; ip link set v1 up; \
             echo ready; exec sleep 100000"
        );
        let mut holder = Command::new("unshare")
            .args(["-m", "-n", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the test's network namespace");
        Some(NetNs { holder })
    }

    /// `cmd` as a command run in the namespace (nsenter).
    pub fn wrap(&self, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "-n", "--"])
            .arg(program);
        c
    }

    /// The pid of the process holding the namespace.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// A shell command line run in the namespace.
    pub fn sh(&self, line: &str) -> Output {
        let mut c = self.wrap(Path::new("/bin/sh"));
        c.args(["-c", line]).stdin(Stdio::null());
        c.output().unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

static ATEXIT: Once = Once::new();

pub fn env() -> Option<Env> {
    let fixture = match common::fixture() {
        Ok(f) => f,
        Err(why) => {
            eprintln!("skipped: {why}");
            return None;
        }
    };
    let Some(runtime) = runtime() else {
        eprintln!("skipped: no berth binary next to berthctl (cargo build -p berth) nor BERTH_BIN");
        return None;
    };
    ATEXIT.call_once(|| {
        // SAFETY: registers a plain extern "C" function.
        unsafe { libc::atexit(remove_cgroup_parent) };
    });
    let root = tempfile::Builder::new()
        .prefix("berthctl-test-")
        .tempdir_in("/tmp")
        .unwrap();
    Some(Env {
        netns: None,
        root,
        runtime,
        fixture,
    })
}

impl Env {
    /// The same, with commands run in a network namespace of the test's own (None: no CNI
    /// plugins here); containers get the default network (bridge) unless told otherwise.
    pub fn with_netns() -> Option<Env> {
        let mut e = env()?;
        e.netns = Some(NetNs::new()?);
        Some(e)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = ns.wrap(&berthctl());
                c.env("NETCONFPATH", self.root.path().join("net.d"));
                c
            }
            None => {
                let mut c = Command::new(berthctl());
                // The host's network is never touched: no bridge unless a test asks.
                c.env("BERTHCTL_NETWORK", "none");
                c
            }
        };
        c.arg("--root")
            .arg(self.root.path())
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args)
            .stdin(Stdio::null());
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    /// Run and expect success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "berthctl {args:?}: {}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    /// `run` with this process's cgroup parent.
    pub fn run_ctr(&self, args: &[&str]) -> Output {
        let mut a = vec!["run", "--cgroup-parent"];
        let cg = cgroup_parent();
        a.push(&cg);
        a.extend_from_slice(args);
        self.run(&a)
    }
    pub fn import_busybox(&self) {
        let out = self.ok(&["import", self.fixture.archive.to_str().unwrap()]);
        assert!(out.contains("docker.io/library/busybox:latest"), "{out}");
    }
    pub fn mounts_under_root(&self) -> Vec<String> {
        let root = self.root.path().to_string_lossy().into_owned();
        let info = match &self.netns {
            Some(ns) => format!("/proc/{}/mountinfo", ns.holder.id()),
            None => "/proc/self/mountinfo".into(),
        };
        std::fs::read_to_string(info)
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|m| m.starts_with(&root))
            .collect()
    }
    pub fn assert_clean(&self) {
        assert!(
            self.mounts_under_root().is_empty(),
            "{:?}",
            self.mounts_under_root()
        );
        let active: Vec<_> = std::fs::read_dir(self.root.path().join("snapshots/active"))
            .unwrap()
            .collect();
        assert!(active.is_empty(), "active snapshots left: {active:?}");
        let ctrs: Vec<_> = std::fs::read_dir(self.root.path().join("containers"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != "names")
            .collect();
        assert!(ctrs.is_empty(), "containers left: {ctrs:?}");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Containers first (kills and unmounts), then any mount left under our root.
        if let Ok(o) = self.cmd(&["ps", "-aq", "--no-trunc"]).output() {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
        if self.netns.is_none() {
            for m in self.mounts_under_root().iter().rev() {
                let _ = nix::mount::umount2(Path::new(m), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// Whether `what` comes true within 5 s (checked every 50 ms).
pub fn within_5s(mut what: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if what() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Env {
    pub fn store(&self) -> image::Store {
        image::Store::open(self.root.path(), None).unwrap()
    }

    /// The names in each of `name`'s layers, above the base's `skip` layers.
    pub fn layer_names(&self, name: &str, skip: usize) -> Vec<Vec<String>> {
        let s = self.store();
        let rec = s.image(name).unwrap();
        rec.layers[skip..]
            .iter()
            .map(|l| {
                let f = std::fs::File::open(s.content.path(&l.digest)).unwrap();
                let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
                a.entries()
                    .unwrap()
                    .map(|e| {
                        e.unwrap()
                            .path()
                            .unwrap()
                            .to_string_lossy()
                            .trim_end_matches('/')
                            .to_string()
                    })
                    .collect()
            })
            .collect()
    }
}
