//! A mount the harness itself makes on the host (inside its temp dir) for bind, propagation
//! and idmapped-mount tests: a tmpfs, a ramfs, an ext4 image on a loop device, a bind;
//! unmounted (by exact path) when dropped.

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

    /// Mount a filesystem of type `fstype` (no device) at `path` (created if missing).
    pub fn fs(path: &Path, fstype: &str) -> Result<HostMount, Failure> {
        std::fs::create_dir_all(path)?;
        run(Command::new("mount")
            .args(["-t", fstype, "berth-it"])
            .arg(path))?;
        Ok(HostMount {
            path: path.to_path_buf(),
        })
    }

    /// A fresh 16 MiB ext4 filesystem in the image file `dir/ext4.img`, loop-mounted at
    /// `dir/ext4` (the loop device goes with the mount: `mount -o loop` sets autoclear). A
    /// filesystem every kernel with idmapped mounts can idmap (tmpfs only from 6.3, 9p never).
    pub fn ext4_image(dir: &Path) -> Result<HostMount, Failure> {
        let img = dir.join("ext4.img");
        std::fs::File::create(&img)?.set_len(16 << 20)?;
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img))?;
        let path = dir.join("ext4");
        std::fs::create_dir_all(&path)?;
        run(Command::new("mount")
            .args(["-t", "ext4", "-o", "loop"])
            .arg(&img)
            .arg(&path))?;
        Ok(HostMount { path })
    }

    /// Bind `src` onto `dest` (both existing directories).
    pub fn bind(src: &Path, dest: &Path) -> Result<HostMount, Failure> {
        run(Command::new("mount").arg("--bind").arg(src).arg(dest))?;
        Ok(HostMount {
            path: dest.to_path_buf(),
        })
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
