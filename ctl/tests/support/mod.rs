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
        root,
        runtime,
        fixture,
    })
}

impl Env {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(berthctl());
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
        std::fs::read_to_string("/proc/self/mountinfo")
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
        for m in self.mounts_under_root().iter().rev() {
            let _ = nix::mount::umount2(Path::new(m), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Whether `what` comes true within 5 s (checked every 50 ms).
pub fn within_5s(what: impl Fn() -> bool) -> bool {
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
