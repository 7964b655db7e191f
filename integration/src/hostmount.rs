//! A tmpfs the harness itself mounts on the host (inside its temp dir) for
//! bind/propagation tests; unmounted (by exact path) when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::Failure;

pub struct HostMount {
    pub path: PathBuf,
}

impl HostMount {
    /// Mount a 1 MiB tmpfs at `path` (created if missing); `shared` makes it a
    /// shared mount (its own new peer group).
    pub fn tmpfs(path: &Path, shared: bool) -> Result<HostMount, Failure> {
        std::fs::create_dir_all(path)?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=755", "berth-it"])
            .arg(path))?;
        let m = HostMount {
            path: path.to_path_buf(),
        };
        if shared {
            run(Command::new("mount").arg("--make-shared").arg(path))?;
        }
        Ok(m)
    }
}

fn run(cmd: &mut Command) -> Result<(), Failure> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Failure::Fail(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).output();
    }
}
