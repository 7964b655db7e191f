//! config.json for a container of an image, the way containerd builds it: a safe default spec
//! (`default_spec`: containerd's default capabilities, masked and read-only paths, default
//! mounts, a fresh set of namespaces, an absolute cgroups path) with the image config applied
//! (`WithImageConfig`: Entrypoint + Cmd, Env, WorkingDir, User resolved against the image's
//! /etc/passwd and /etc/group with additional groups, the stop signal as an annotation), then
//! the caller's overrides.
//!
//! Seccomp: `BundleOptions::seccomp` (default `SECCOMP_BY_DEFAULT`) adds Docker's default
//! profile through `crate::seccomp::add_default_profile`.

use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::user::resolve_user;

/// Whether bundles get Docker's default seccomp profile unless told otherwise. Off until the
/// runtime loads `linux.seccomp` (berth refuses the field for now): flip to `true` then.
pub const SECCOMP_BY_DEFAULT: bool = true;

/// The annotation carrying the image's StopSignal (image-spec conversion.md).
pub const STOP_SIGNAL_ANNOTATION: &str = "org.opencontainers.image.stopSignal";

/// containerd's (and Docker's) default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// A new network namespace (loopback only).
    None,
    /// The host's network namespace.
    Host,
}

/// A bind mount from the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

#[derive(Clone, Debug)]
pub struct BundleOptions {
    /// Replaces the image's Cmd.
    pub args: Vec<String>,
    /// Replaces the image's Entrypoint (and then its Cmd too).
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=value` entries, over the image's.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub terminal: bool,
    pub hostname: String,
    pub network: Network,
    pub binds: Vec<Bind>,
    /// Bytes.
    pub memory: Option<i64>,
    /// CPUs (quota over a 100 ms period).
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    /// Absolute: `/berth/<id>`.
    pub cgroups_path: String,
    pub readonly_rootfs: bool,
    /// Add Docker's default seccomp profile.
    pub seccomp: bool,
    pub annotations: Vec<(String, String)>,
}

impl BundleOptions {
    pub fn new(id: &str) -> Self {
        BundleOptions {
            args: Vec::new(),
            entrypoint: None,
            env: Vec::new(),
            workdir: None,
            user: None,
            terminal: false,
            hostname: id.chars().take(12).collect(),
            network: Network::None,
            binds: Vec::new(),
            memory: None,
            cpus: None,
            pids_limit: None,
            cgroups_path: format!("/berth/{id}"),
            readonly_rootfs: false,
            seccomp: SECCOMP_BY_DEFAULT,
            annotations: Vec::new(),
        }
    }
}

/// containerd's default Linux spec (`populateDefaultUnixSpec`), with runc's /sys/fs/cgroup
/// mount and an absolute cgroups path.
pub fn default_spec(cgroups_path: &str) -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "root": {"path": "rootfs", "readonly": false},
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": [],
            "env": [DEFAULT_PATH],
            "cwd": "/",
            "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/sys/devices/virtual/powercap", "/proc/scsi"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Set or replace `KEY=value` entries of `env` with `over`'s (a bare `KEY` in `over` removes
/// the key, as containerd's `replaceOrAppendEnvValues`).
pub fn merge_env(env: &mut Vec<String>, over: &[String]) {
    for o in over {
        let key = o.split('=').next().unwrap_or(o);
        let pos = env.iter().position(|e| e.split('=').next() == Some(key));
        match (pos, o.contains('=')) {
            (Some(i), true) => env[i] = o.clone(),
            (None, true) => env.push(o.clone()),
            (Some(i), false) => {
                env.remove(i);
            }
            (None, false) => {}
        }
    }
}

/// The process args: Entrypoint + Cmd, with `--entrypoint` and a command line overriding them
/// as docker does.
pub fn process_args(config: &ImageConfiguration, opts: &BundleOptions) -> Result<Vec<String>> {
    let c = config.config().clone().unwrap_or_default();
    let (entrypoint, cmd) = match &opts.entrypoint {
        Some(ep) => (ep.clone(), opts.args.clone()),
        None => (
            c.entrypoint().clone().unwrap_or_default(),
            if opts.args.is_empty() {
                c.cmd().clone().unwrap_or_default()
            } else {
                opts.args.clone()
            },
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::invalid(
            "command",
            "the image has no Entrypoint or Cmd: give a command",
        ));
    }
    Ok(args)
}

/// The config.json of a container whose (mounted) rootfs is `rootfs`.
pub fn generate(config: &ImageConfiguration, rootfs: &Path, opts: &BundleOptions) -> Result<Value> {
    if !opts.cgroups_path.starts_with('/') {
        return Err(Error::invalid(
            "cgroups path",
            format!("{:?} must be absolute", opts.cgroups_path),
        ));
    }
    let c = config.config().clone().unwrap_or_default();
    let mut spec = default_spec(&opts.cgroups_path);
    let args = process_args(config, opts)?;

    let user_spec = opts
        .user
        .clone()
        .or_else(|| c.user().clone())
        .unwrap_or_default();
    let user = resolve_user(rootfs, &user_spec)?;

    let mut env = vec![DEFAULT_PATH.to_string()];
    merge_env(&mut env, c.env().as_deref().unwrap_or_default());
    let mut extra = vec![format!("HOSTNAME={}", opts.hostname)];
    if opts.terminal {
        extra.push("TERM=xterm".into());
    }
    if let Some(h) = &user.home {
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            extra.push(format!("HOME={h}"));
        }
    }
    merge_env(&mut env, &extra);
    merge_env(&mut env, &opts.env);

    let cwd = opts
        .workdir
        .clone()
        .or_else(|| c.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::invalid(
            "working directory",
            format!("{cwd:?} is not absolute"),
        ));
    }

    let p = &mut spec["process"];
    p["args"] = json!(args);
    p["env"] = json!(env);
    p["cwd"] = json!(cwd);
    p["terminal"] = json!(opts.terminal);
    p["user"] = json!({"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids});
    spec["root"]["readonly"] = json!(opts.readonly_rootfs);
    spec["hostname"] = json!(opts.hostname);

    let mut annotations = serde_json::Map::new();
    if let Some(sig) = c.stop_signal() {
        annotations.insert(STOP_SIGNAL_ANNOTATION.into(), json!(sig));
    }
    for (k, v) in &opts.annotations {
        annotations.insert(k.clone(), json!(v));
    }
    if !annotations.is_empty() {
        spec["annotations"] = Value::Object(annotations);
    }

    if opts.network == Network::Host {
        let ns = spec["linux"]["namespaces"].as_array_mut().expect("array");
        ns.retain(|n| n["type"] != "network");
    }
    let mounts = spec["mounts"].as_array_mut().expect("array");
    for b in &opts.binds {
        if !b.destination.starts_with('/') {
            return Err(Error::invalid(
                "volume",
                format!("{:?}: the container path must be absolute", b.destination),
            ));
        }
        let mut o = vec!["rbind", "rprivate"];
        if b.readonly {
            o.push("ro");
        }
        mounts.push(json!({
            "destination": b.destination,
            "type": "bind",
            "source": b.source,
            "options": o,
        }));
    }

    let res = &mut spec["linux"]["resources"];
    if let Some(m) = opts.memory {
        res["memory"] = json!({"limit": m});
    }
    if let Some(cpus) = opts.cpus {
        let period: u64 = 100_000;
        res["cpu"] = json!({"quota": (cpus * period as f64).round() as i64, "period": period});
    }
    if let Some(pids) = opts.pids_limit {
        res["pids"] = json!({"limit": pids});
    }
    if opts.seccomp {
        crate::seccomp::add_default_profile(&mut spec);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ImageConfiguration {
        serde_json::from_str(json).unwrap()
    }

    fn rootfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:100:101:App:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("etc/group"),
            "root:x:0:\napp:x:101:\naudio:x:29:app\n",
        )
        .unwrap();
        t
    }

    const CFG: &str = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
        "config":{"Entrypoint":["/entry"],"Cmd":["a","b"],"Env":["PATH=/img/bin","FOO=1"],
        "WorkingDir":"/work","User":"app","StopSignal":"SIGQUIT"}}"#;

    #[test]
    fn image_config_applied_like_containerd() {
        let r = rootfs();
        let spec = generate(
            &config(CFG),
            r.path(),
            &BundleOptions::new("abcdef0123456789"),
        )
        .unwrap();
        let p = &spec["process"];
        assert_eq!(p["args"], json!(["/entry", "a", "b"]));
        assert_eq!(
            p["env"],
            json!([
                "PATH=/img/bin",
                "FOO=1",
                "HOSTNAME=abcdef012345",
                "HOME=/home/app"
            ])
        );
        assert_eq!(p["cwd"], "/work");
        assert_eq!(
            p["user"],
            json!({"uid": 100, "gid": 101, "additionalGids": [101, 29]})
        );
        assert_eq!(spec["annotations"][STOP_SIGNAL_ANNOTATION], "SIGQUIT");
        assert_eq!(spec["linux"]["cgroupsPath"], "/berth/abcdef0123456789");
        assert_eq!(
            spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO",
            "Docker's default profile"
        );
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        // It is a valid runtime spec.
        let _: oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
    }

    #[test]
    fn overrides() {
        let r = rootfs();
        let mut o = BundleOptions::new("x");
        o.args = vec!["echo".into(), "hi".into()];
        o.env = vec!["FOO=2".into(), "NEW=3".into(), "PATH".into()];
        o.workdir = Some("/".into());
        o.user = Some("0:29".into());
        o.terminal = true;
        o.network = Network::Host;
        o.binds = vec![Bind {
            source: "/srv".into(),
            destination: "/data".into(),
            readonly: true,
        }];
        o.memory = Some(64 << 20);
        o.cpus = Some(0.5);
        o.pids_limit = Some(10);
        let spec = generate(&config(CFG), r.path(), &o).unwrap();
        let p = &spec["process"];
        assert_eq!(p["args"], json!(["/entry", "echo", "hi"]));
        let env: Vec<&str> = p["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(env.contains(&"FOO=2") && env.contains(&"NEW=3") && env.contains(&"TERM=xterm"));
        assert!(!env.iter().any(|e| e.starts_with("PATH=")));
        assert_eq!(p["user"]["uid"], 0);
        assert_eq!(p["user"]["gid"], 29);
        assert_eq!(p["terminal"], true);
        assert!(!spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        let m = spec["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            m,
            json!({"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "rprivate", "ro"]})
        );
        let res = &spec["linux"]["resources"];
        assert_eq!(res["memory"]["limit"], 64 << 20);
        assert_eq!(res["cpu"], json!({"quota": 50000, "period": 100000}));
        assert_eq!(res["pids"]["limit"], 10);

        // --entrypoint resets Cmd.
        let mut o = BundleOptions::new("x");
        o.entrypoint = Some(vec!["/bin/sh".into()]);
        let spec = generate(&config(CFG), r.path(), &o).unwrap();
        assert_eq!(spec["process"]["args"], json!(["/bin/sh"]));
        // No command at all is an error; so is a relative cgroups path.
        let empty = config(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        assert!(generate(&empty, r.path(), &BundleOptions::new("x")).is_err());
        let mut o = BundleOptions::new("x");
        o.args = vec!["true".into()];
        o.cgroups_path = "rel/x".into();
        assert!(generate(&empty, r.path(), &o).is_err());
        o.cgroups_path = "/berth/x".into();
        let spec = generate(&empty, r.path(), &o).unwrap();
        assert_eq!(
            spec["process"]["user"],
            json!({"uid": 0, "gid": 0, "additionalGids": [0]})
        );
        assert_eq!(spec["process"]["env"][0], DEFAULT_PATH);
    }

    #[test]
    fn seccomp_seam() {
        let r = rootfs();
        let mut o = BundleOptions::new("x");
        o.seccomp = true;
        let spec = generate(&config(CFG), r.path(), &o).unwrap();
        let s = &spec["linux"]["seccomp"];
        assert_eq!(s["defaultAction"], "SCMP_ACT_ERRNO");
        let _: oci_spec::runtime::Spec = serde_json::from_value(spec).unwrap();
    }
}
