//! The OCI config.json a test builds: a base equal to `runc spec` (with
//! `process.terminal` false) plus small editing helpers.

use std::path::Path;

use serde_json::{json, Map, Value};

/// A config.json under construction.
#[derive(Clone, Debug)]
pub struct Config(pub Value);

impl Config {
    /// `runc spec` output, `terminal: false`, with an absolute cgroupsPath.
    pub fn base(cgroups_path: &str) -> Config {
        let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        Config(json!({
            "ociVersion": "1.0.2-dev",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["sh"],
                "env": [
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"
                ],
                "cwd": "/",
                "capabilities": {
                    "bounding": caps.clone(),
                    "effective": caps.clone(),
                    "permitted": caps.clone(),
                    "ambient": caps
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "runc",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
            ],
            "linux": {
                "cgroupsPath": cgroups_path,
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                    {"type": "uts"}, {"type": "mount"}
                ],
                "maskedPaths": [
                    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
                ],
                "readonlyPaths": [
                    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
                ]
            }
        }))
    }

    /// Set the value at a JSON pointer (`/process/cwd`), creating objects on the way.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut cur = &mut self.0;
        let parts: Vec<&str> = pointer.split('/').skip(1).collect();
        for (i, part) in parts.iter().enumerate() {
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
            let obj = cur.as_object_mut().expect("object");
            if i + 1 == parts.len() {
                obj.insert(part.to_string(), value);
                return self;
            }
            cur = obj.entry(part.to_string()).or_insert(Value::Null);
        }
        self.0 = value;
        self
    }

    /// Remove the value at a JSON pointer, if present.
    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        if let Some((parent, key)) = pointer.rsplit_once('/') {
            if let Some(Value::Object(m)) = self.0.pointer_mut(parent) {
                m.remove(key);
            }
        }
        self
    }

    /// Append to the array at `pointer` (created if missing).
    pub fn push(&mut self, pointer: &str, value: Value) -> &mut Self {
        if !matches!(self.0.pointer(pointer), Some(Value::Array(_))) {
            self.set(pointer, json!([]));
        }
        if let Some(Value::Array(a)) = self.0.pointer_mut(pointer) {
            a.push(value);
        }
        self
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    /// `process.args = ["sh", "-c", script]`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    pub fn add_mount(
        &mut self,
        dest: &str,
        typ: &str,
        source: &str,
        options: &[&str],
    ) -> &mut Self {
        self.push(
            "/mounts",
            json!({"destination": dest, "type": typ, "source": source, "options": options}),
        )
    }

    /// A bind mount (`bind` is added to `options`).
    pub fn add_bind(&mut self, source: &Path, dest: &str, options: &[&str]) -> &mut Self {
        let mut opts = vec!["bind"];
        opts.extend_from_slice(options);
        let src = source.to_string_lossy().into_owned();
        self.add_mount(dest, "bind", &src, &opts)
    }

    fn namespaces(&mut self) -> &mut Vec<Value> {
        if !matches!(self.0.pointer("/linux/namespaces"), Some(Value::Array(_))) {
            self.set("/linux/namespaces", json!([]));
        }
        match self.0.pointer_mut("/linux/namespaces") {
            Some(Value::Array(a)) => a,
            _ => unreachable!("namespaces is an array"),
        }
    }

    /// Add a new namespace of `typ` (replacing an existing entry of that type).
    pub fn ns_add(&mut self, typ: &str) -> &mut Self {
        self.ns_remove(typ);
        self.namespaces().push(json!({"type": typ}));
        self
    }

    /// Join the namespace at `path` instead of creating one.
    pub fn ns_join(&mut self, typ: &str, path: &str) -> &mut Self {
        self.ns_remove(typ);
        self.namespaces().push(json!({"type": typ, "path": path}));
        self
    }

    pub fn ns_remove(&mut self, typ: &str) -> &mut Self {
        self.namespaces().retain(|n| n["type"] != typ);
        self
    }

    /// Append a hook at `phase` (`prestart`, `createRuntime`, ...).
    pub fn add_hook(&mut self, phase: &str, hook: Value) -> &mut Self {
        self.push(&format!("/hooks/{phase}"), hook)
    }

    /// Serialize to pretty JSON.
    pub fn to_string_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn edit() {
        let mut c = Config::base("/berth-test/x");
        c.set("/linux/sysctl/net.ipv4.ip_forward", json!("1"));
        assert_eq!(c.0["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");
        c.ns_add("cgroup").ns_remove("network");
        let types: Vec<_> = c.0["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(types, ["pid", "ipc", "uts", "mount", "cgroup"]);
        c.remove("/hostname");
        assert!(c.0.get("hostname").is_none());
        c.add_hook("prestart", json!({"path": "/bin/true"}));
        assert_eq!(c.0["hooks"]["prestart"][0]["path"], "/bin/true");
    }
}
