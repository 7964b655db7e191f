//! The busybox rootfs (built once per run) and per-test bundles.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Config;
use crate::context::Ctx;
use crate::harness::Failure;
use crate::runtime::Out;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      user:x:1000:1000:user:/home/user:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n";

/// Build a busybox rootfs at `dir` from the host's busybox-static.
pub fn build_rootfs(dir: &Path) -> Result<(), String> {
    let busybox = Path::new("/bin/busybox");
    let list = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| format!("cannot run /bin/busybox (install busybox-static): {e}"))?;
    if !list.status.success() {
        return Err("`busybox --list-full` failed".into());
    }
    let err = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "root",
    ] {
        let p = dir.join(d);
        fs::create_dir_all(&p).map_err(|e| err("mkdir", &p, e))?;
    }
    let target = dir.join("bin/busybox");
    fs::copy(busybox, &target).map_err(|e| err("copy busybox to", &target, e))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .map_err(|e| err("chmod", &target, e))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() {
            continue;
        }
        let link = dir.join(applet);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(|e| err("mkdir", parent, e))?;
        }
        if fs::symlink_metadata(&link).is_err() {
            symlink("/bin/busybox", &link).map_err(|e| err("symlink", &link, e))?;
        }
    }
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).map_err(|e| err("mkdir", &tmp, e))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
        .map_err(|e| err("chmod", &tmp, e))?;
    let home = dir.join("home/user");
    fs::create_dir_all(&home).map_err(|e| err("mkdir", &home, e))?;
    std::os::unix::fs::chown(&home, Some(1000), Some(1000)).map_err(|e| err("chown", &home, e))?;
    fs::write(dir.join("etc/passwd"), PASSWD).map_err(|e| err("write", dir, e))?;
    fs::write(dir.join("etc/group"), GROUP).map_err(|e| err("write", dir, e))?;
    Ok(())
}

/// One test's bundle: a copy of the rootfs and a config.json built from `cfg`.
/// Dropping it force-deletes the container and removes the bundle directory.
pub struct Bundle<'a> {
    pub ctx: &'a Ctx,
    pub id: String,
    pub dir: PathBuf,
    pub cfg: Config,
}

impl<'a> Bundle<'a> {
    /// A fresh bundle with a new unique id and the base config.
    pub fn new(ctx: &'a Ctx) -> Result<Bundle<'a>, Failure> {
        let id = ctx.new_id();
        Self::with_id(ctx, id)
    }

    /// A fresh bundle (its own directory) for a given container id.
    pub fn with_id(ctx: &'a Ctx, id: String) -> Result<Bundle<'a>, Failure> {
        let dir = ctx.tmp.join("bundles").join(ctx.new_dir_name(&id));
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        let b = Bundle {
            ctx,
            cfg: Config::base(&format!("/berth-test/{id}")),
            id,
            dir,
        };
        let st = Command::new("cp")
            .arg("-a")
            .arg(&ctx.rootfs)
            .arg(b.rootfs())
            .status()?;
        if !st.success() {
            return Err(Failure::Fail(format!("cp -a of the rootfs failed: {st}")));
        }
        Ok(b)
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// A host directory (mode 0777) bind-mounted read-write at `/shared` in the container.
    pub fn shared(&mut self) -> Result<PathBuf, Failure> {
        let p = self.dir.join("shared");
        if !p.exists() {
            fs::create_dir(&p)?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o777))?;
            self.cfg.add_bind(&p, "/shared", &[]);
        }
        Ok(p)
    }

    /// Write `config.json` from `cfg`.
    pub fn write_config(&self) -> Result<(), Failure> {
        fs::write(self.dir.join("config.json"), self.cfg.to_string_pretty())?;
        Ok(())
    }

    fn with_config(&self, args: &[&str]) -> Out {
        if let Err(e) = self.write_config() {
            return Out {
                cmd: args.join(" "),
                code: None,
                stdout: String::new(),
                stderr: format!("harness could not write config.json: {e:?}"),
                timed_out: false,
                hang: String::new(),
            };
        }
        self.ctx.rt.exec(args)
    }

    fn bundle_arg(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    /// `create [extra...] --bundle DIR ID` (config.json written first).
    pub fn create(&self, extra: &[&str]) -> Out {
        let dir = self.bundle_arg();
        let mut args = vec!["create"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", &dir, &self.id]);
        self.with_config(&args)
    }

    /// `run [extra...] --bundle DIR ID` in the foreground (config.json written first).
    pub fn run(&self, extra: &[&str]) -> Out {
        let dir = self.bundle_arg();
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", &dir, &self.id]);
        self.with_config(&args)
    }

    /// `run --detach ...`.
    pub fn run_detached(&self) -> Out {
        self.run(&["--detach"])
    }

    pub fn start(&self) -> Out {
        self.ctx.rt.exec(&["start", &self.id])
    }

    pub fn kill(&self, signal: &str) -> Out {
        self.ctx.rt.exec(&["kill", &self.id, signal])
    }

    pub fn delete(&self) -> Out {
        self.ctx.rt.exec(&["delete", &self.id])
    }

    pub fn state(&self) -> Result<serde_json::Value, Failure> {
        self.ctx.rt.state(&self.id)
    }

    /// The container's pid from `state`.
    pub fn pid(&self) -> Result<u32, Failure> {
        let st = self.state()?;
        match st["pid"].as_u64() {
            Some(p) if p > 0 => Ok(p as u32),
            _ => Err(Failure::Fail(format!("state has no pid > 0: {st}"))),
        }
    }

    pub fn status(&self) -> Option<String> {
        self.ctx.rt.status(&self.id)
    }

    pub fn wait_status(&self, status: &str) -> Result<(), Failure> {
        self.ctx
            .rt
            .wait_status(&self.id, status, std::time::Duration::from_secs(10))
    }

    /// Run the container in the foreground and require exit 0; returns its stdout.
    pub fn run_ok(&self) -> Result<String, Failure> {
        Ok(self.run(&[]).ok()?.stdout)
    }

    /// Everything of this container still on the host (see [`Ctx::leftovers`]).
    pub fn leftovers(&self) -> Vec<String> {
        self.ctx.leftovers(&self.id, &self.dir)
    }

    /// Fail if anything of this container is left on the host.
    pub fn ensure_clean(&self) -> Result<(), Failure> {
        let left = self.leftovers();
        if left.is_empty() {
            Ok(())
        } else {
            Err(Failure::Fail(format!("left behind: {}", left.join("; "))))
        }
    }
}

impl Drop for Bundle<'_> {
    fn drop(&mut self) {
        let _ = self.ctx.rt.exec(&["delete", "--force", &self.id]);
        self.ctx.reap(&self.id, &self.dir);
        let _ = Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(&self.dir)
            .status();
    }
}
