//! Container records: `<root>/containers/<id>/` holds `container.json`, `bundle/` (config.json
//! and the rootfs mount point), `log` (output of detached containers), `runtime.log` (the
//! runtime's own errors), `exit.json` (exit status, once it exited). Names are reserved with
//! `<root>/containers/names/<name>` (created exclusively, holding the id).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::util;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image name as stored (normalized).
    pub image: String,
    pub image_id: String,
    pub command: Vec<String>,
    pub created: u64,
    pub detached: bool,
    pub auto_remove: bool,
    pub tty: bool,
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// When its process last started (seconds since the epoch; 0: never).
    #[serde(default)]
    pub started: u64,
    /// The volumes it has.
    #[serde(default)]
    pub volumes: Vec<crate::volumes::VolumeUse>,
    /// Its restart policy as given (`no`, `on-failure:3`, ...; empty: no).
    #[serde(default)]
    pub restart: String,
    /// How often its policy restarted it.
    #[serde(default)]
    pub restart_count: u32,
    /// Its health check (the image's HEALTHCHECK or `--health-*`).
    #[serde(default)]
    pub health: Option<crate::health::Config>,
    /// Its network settings.
    #[serde(default)]
    pub net: NetSpec,
}

/// A container's network as `run` was told (what came of it is the endpoint, endpoint.rs).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NetSpec {
    /// `--network`: none, host, container:ID, or a network's name (empty in records made
    /// before networks: none or host, as its config.json says).
    #[serde(default)]
    pub mode: String,
    /// `-p`, host ports not yet allocated (0: any).
    #[serde(default)]
    pub ports: Vec<crate::ports::Port>,
    /// `--ip`.
    #[serde(default)]
    pub ip: Option<String>,
    /// `--add-host NAME:IP`.
    #[serde(default)]
    pub add_hosts: Vec<(String, String)>,
    /// `--dns`.
    #[serde(default)]
    pub dns: Vec<String>,
    /// Its hostname (its /etc/hosts names its address so).
    #[serde(default)]
    pub hostname: String,
}

impl NetSpec {
    /// The CNI network it joins, if any.
    pub fn cni_network(&self) -> Option<&str> {
        (!self.mode.is_empty() && !crate::network::is_mode(&self.mode))
            .then_some(self.mode.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Exit {
    pub code: i32,
    pub finished: u64,
    /// The kernel's OOM killer killed a process of it (its memory cgroup counted an oom_kill).
    #[serde(default)]
    pub oom_killed: bool,
}

/// What `ps` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Exited(i32, u64),
    /// Its monitor waits to start it again (its restart policy).
    Restarting,
    /// Neither running nor with a recorded exit (being set up, or its monitor died).
    Unknown,
}

impl Status {
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            Status::Running | Status::Paused | Status::Created | Status::Restarting
        )
    }
}

impl Ctx {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers.join(id)
    }
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("bundle")
    }
    pub fn rootfs_dir(&self, id: &str) -> PathBuf {
        self.bundle_dir(id).join("rootfs")
    }
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("log")
    }

    pub fn load(&self, id: &str) -> Result<Container> {
        let p = self.container_dir(id).join("container.json");
        let data = std::fs::read(&p).with_context(|| format!("read {}", p.display()))?;
        serde_json::from_slice(&data).with_context(|| format!("parse {}", p.display()))
    }

    pub fn save(&self, c: &Container) -> Result<()> {
        image::fsutil::write_atomic(
            &self.container_dir(&c.id).join("container.json"),
            &serde_json::to_vec_pretty(c)?,
        )?;
        Ok(())
    }

    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.containers)? {
            let e = e?;
            let n = e.file_name().to_string_lossy().into_owned();
            if n == "names" || !e.path().join("container.json").is_file() {
                continue;
            }
            if let Ok(c) = self.load(&n) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// A container by id, name or unique id prefix.
    pub fn find(&self, what: &str) -> Result<Container> {
        if util::valid_name(what) {
            if let Ok(id) = std::fs::read_to_string(self.containers.join("names").join(what)) {
                if let Ok(c) = self.load(id.trim()) {
                    return Ok(c);
                }
            }
        }
        if what.len() >= 3 && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<_> = self
                .list()?
                .into_iter()
                .filter(|c| c.id.starts_with(what))
                .collect();
            match hits.len() {
                1 => return Ok(hits.into_iter().next().expect("one")),
                0 => {}
                _ => bail!("container id prefix {what:?} is ambiguous"),
            }
        }
        bail!("no such container: {what}")
    }

    /// Reserve `name` for `id` (fails when taken).
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        if !util::valid_name(name) {
            bail!("invalid container name {name:?}: use letters, digits, '_', '.', '-'");
        }
        let p = self.containers.join("names").join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(id.as_bytes())?;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let other = std::fs::read_to_string(&p).unwrap_or_default();
                bail!(
                    "the container name {name:?} is already in use by container {}",
                    &other.trim()[..other.trim().len().min(12)]
                )
            }
            Err(e) => Err(e).with_context(|| format!("create {}", p.display())),
        }
    }

    pub fn release_name(&self, name: &str, id: &str) {
        let p = self.containers.join("names").join(name);
        if std::fs::read_to_string(&p)
            .map(|s| s.trim() == id)
            .unwrap_or(false)
        {
            let _ = std::fs::remove_file(p);
        }
    }

    pub fn exit_of(&self, id: &str) -> Option<Exit> {
        let data = std::fs::read(self.container_dir(id).join("exit.json")).ok()?;
        serde_json::from_slice(&data).ok()
    }

    pub fn record_exit(&self, id: &str, code: i32, oom_killed: bool) {
        let e = Exit {
            code,
            finished: util::now(),
            oom_killed,
        };
        let dir = self.container_dir(id);
        if dir.is_dir() {
            if let Ok(data) = serde_json::to_vec(&e) {
                let _ = image::fsutil::write_atomic(&dir.join("exit.json"), &data);
            }
        }
    }

    /// Whether the container's memory cgroup (still there: call before the runtime's delete)
    /// counted an OOM kill: `oom_kill` in memory.events (v2) or memory.oom_control (v1).
    pub fn oom_killed(&self, id: &str) -> bool {
        let spec: serde_json::Value = std::fs::read(self.bundle_dir(id).join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let Some(path) = spec["linux"]["cgroupsPath"].as_str() else {
            return false;
        };
        let rel = path.trim_start_matches('/');
        let base = std::path::Path::new("/sys/fs/cgroup");
        let file = if base.join("cgroup.controllers").exists() {
            base.join(rel).join("memory.events")
        } else {
            base.join("memory").join(rel).join("memory.oom_control")
        };
        std::fs::read_to_string(file).is_ok_and(|t| {
            t.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    }

    /// The runtime's view of every container: id -> status string.
    pub fn runtime_states(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        let Ok(o) = self
            .runtime_cmd()
            .args(["list", "--format", "json"])
            .stderr(Stdio::null())
            .output()
        else {
            return out;
        };
        if let Ok(serde_json::Value::Array(a)) = serde_json::from_slice(&o.stdout) {
            for s in a {
                if let (Some(id), Some(st)) = (s["id"].as_str(), s["status"].as_str()) {
                    out.insert(id.to_string(), st.to_string());
                }
            }
        }
        out
    }

    /// The runtime's status of one container (None: it does not know it).
    pub fn runtime_state(&self, id: &str) -> Option<String> {
        self.runtime_state_json(id)?["status"]
            .as_str()
            .map(String::from)
    }

    /// The runtime's whole `state` of one container (status, pid, ...).
    pub fn runtime_state_json(&self, id: &str) -> Option<serde_json::Value> {
        let o = self
            .runtime_cmd()
            .args(["state", id])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    pub fn status_with(&self, c: &Container, rt: Option<&str>) -> Status {
        if let Some(e) = self.exit_of(&c.id) {
            return Status::Exited(e.code, e.finished);
        }
        match rt {
            Some("running") => Status::Running,
            Some("paused") => Status::Paused,
            Some("created") | Some("creating") => Status::Created,
            _ if crate::restart::restarting(self, &c.id) => Status::Restarting,
            _ => Status::Unknown,
        }
    }

    pub fn status(&self, c: &Container) -> Status {
        let rt = self.runtime_state(&c.id);
        self.status_with(c, rt.as_deref())
    }

    /// Wait until the container is no longer running (up to `timeout`); true when it stopped.
    pub fn wait_stopped(&self, c: &Container, timeout: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        loop {
            if self.exit_of(&c.id).is_some() {
                return true;
            }
            match self.runtime_state(&c.id).as_deref() {
                None | Some("stopped") => {
                    // Give its monitor (or the foreground berthctl) a moment to record the exit.
                    let grace = std::time::Instant::now();
                    while grace.elapsed() < std::time::Duration::from_secs(2) {
                        if self.exit_of(&c.id).is_some() {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    return true;
                }
                _ => {}
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Undo everything but the record: the runtime's container, its network attachment, the
    /// rootfs mount.
    pub fn release_runtime(&self, id: &str) {
        self.delete_runtime(id);
        crate::endpoint::down(self, id);
        let _ = image::snapshot::unmount(&self.rootfs_dir(id));
    }

    /// The runtime's container alone (a restart keeps the rootfs mounted).
    pub fn delete_runtime(&self, id: &str) {
        let _ = self
            .runtime_cmd()
            .args(["delete", "--force", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Remove a container entirely (it must not be running).
    pub fn remove(&self, c: &Container) -> Result<()> {
        self.release_runtime(&c.id);
        match self.store.snapshots.remove(&c.id) {
            Ok(()) | Err(image::Error::NotFound(_)) => {}
            Err(e) => return Err(e).context("remove the container's snapshot"),
        }
        let dir = self.container_dir(&c.id);
        // The monitor may still be writing its last files (the exit record's temporary file,
        // the log's end) as the container goes: a directory refilled under us is removed again.
        let mut tries = 0;
        loop {
            match image::fsutil::remove_path(&dir) {
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r.with_context(|| format!("remove {}", dir.display()))?,
            }
        }
        self.release_name(&c.name, &c.id);
        // --rm takes the anonymous volumes along, as docker's does.
        if c.auto_remove {
            crate::volumes::remove_anonymous(self, &c.volumes);
        }
        Ok(())
    }
}
