//! What every command needs: the data root, the image store, the runtime binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use image::snapshot::Mode;
use image::Store;

pub struct Ctx {
    pub root: PathBuf,
    pub store: Store,
    /// The `berth` binary (or another runtime with runc's command line).
    pub runtime: PathBuf,
    /// Why no runtime was found (image commands work without one).
    runtime_missing: Option<String>,
    /// `--root` given to the runtime: `<root>/runtime`.
    pub runtime_root: PathBuf,
    pub containers: PathBuf,
    /// CNI plugin directories (`--cni-path`).
    pub cni_path: Vec<PathBuf>,
    /// CNI network configuration directory (`--cni-netconfpath`).
    pub cni_conf_dir: PathBuf,
}

/// What the host's other users may not enter: the containers' files (their rootfs mounts,
/// their /etc/hosts and resolv.conf, which a container's root may chmod: a setuid binary there
/// must not be reachable), the snapshots and the volumes; the data root itself is 0711 (as
/// docker's /var/lib/docker is 0710). Set when wider, as docker does at its start.
fn private_dirs(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (dir, mode) in [
        (root.to_path_buf(), 0o711),
        (root.join("containers"), 0o700),
        (root.join("snapshots"), 0o700),
        (root.join("volumes"), 0o700),
    ] {
        let Ok(m) = std::fs::metadata(&dir) else {
            continue;
        };
        if m.permissions().mode() & 0o777 & !mode != 0 {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {mode:o} {}", dir.display()))?;
        }
    }
    Ok(())
}

/// The runtime: `--runtime`, else `berth` next to this binary, else `berth` on PATH.
pub fn find_runtime(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        if p.components().count() == 1 && !p.exists() {
            return which(p.to_str().unwrap_or_default())
                .with_context(|| format!("--runtime {}: not found in PATH", p.display()));
        }
        return Ok(p.to_path_buf());
    }
    if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
        if let Some(dir) = exe.parent() {
            let b = dir.join("berth");
            if b.is_file() {
                return Ok(b);
            }
        }
    }
    which("berth").context(
        "the berth runtime was not found next to berthctl nor in PATH (give --runtime PATH)",
    )
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Ctx {
    pub fn open(
        root: &Path,
        runtime: Option<&Path>,
        snapshotter: Option<&str>,
        cni: (&str, &Path),
    ) -> Result<Ctx> {
        let mode = match snapshotter {
            None | Some("auto") => None,
            Some("overlay") => Some(Mode::Overlay),
            Some("copy") | Some("native") => Some(Mode::Copy),
            Some(other) => bail!("--snapshotter {other}: use overlay, copy or auto"),
        };
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()?.join(root)
        };
        let store = Store::open(&root, mode).with_context(|| {
            if nix::unistd::geteuid().is_root() {
                format!("open the store at {}", root.display())
            } else {
                format!(
                    "open the store at {} (berthctl needs root: run it with sudo)",
                    root.display()
                )
            }
        })?;
        let containers = root.join("containers");
        std::fs::create_dir_all(containers.join("names"))
            .with_context(|| format!("create {}", containers.display()))?;
        private_dirs(&root)?;
        let (runtime, runtime_missing) = match find_runtime(runtime) {
            Ok(r) => (r, None),
            Err(e) => (PathBuf::from("berth"), Some(format!("{e:#}"))),
        };
        Ok(Ctx {
            runtime_root: root.join("runtime"),
            runtime,
            runtime_missing,
            store,
            containers,
            root,
            cni_path: std::env::split_paths(cni.0).collect(),
            cni_conf_dir: cni.1.to_path_buf(),
        })
    }

    /// Fail when there is no runtime (for commands that need one), or no root to run it.
    pub fn require_runtime(&self) -> Result<()> {
        if !nix::unistd::geteuid().is_root() {
            bail!("berthctl needs root to run containers (rootless is not supported): run it with sudo");
        }
        match &self.runtime_missing {
            Some(why) => bail!("{why}"),
            None => Ok(()),
        }
    }

    /// The lock of every network attachment and network change.
    pub fn network_lock(&self) -> Result<image::fsutil::FileLock> {
        Ok(image::fsutil::FileLock::exclusive(
            &self.root.join("network.lock"),
        )?)
    }

    /// `berth --root <runtime root> ARGS...`
    pub fn runtime_cmd(&self) -> Command {
        let mut c = Command::new(&self.runtime);
        c.arg("--root").arg(&self.runtime_root);
        c
    }
}
