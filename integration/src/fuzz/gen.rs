//! The generator: one random but valid OCI config per (seed, case number), over the fields
//! that runc and berth both support. Every field it sets is recorded in `Case::fields` for
//! the coverage statistics. Most configs are meant to succeed; a few percent are invalid on
//! purpose (a sysctl without its namespace, a hostname without a UTS namespace, ...), so that
//! both runtimes' error paths are compared too.

use std::collections::BTreeSet;

use nix::sys::resource::{getrlimit, Resource};
use serde_json::{json, Value};

use super::probe;
use super::rng::Rng;

/// The placeholder for the bundle directory in a config (each runtime has its own bundle).
pub const BUNDLE: &str = "@BUNDLE@";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `run` in the foreground: exit code and output compared.
    Run,
    /// `create`, `start`, wait for `stopped`, `delete`: each step compared, and the cgroup
    /// files read from the host between create and start.
    CreateStart,
}

/// A host-side source to prepare in each bundle before the config is used.
#[derive(Clone, Debug)]
pub enum Vol {
    /// `vols/<name>`: a directory holding a file `f`, with a tmpfs mounted at `sub` when
    /// `submount` (so that bind and rbind differ).
    Dir { name: String, submount: bool },
    /// `vols/<name>`: a regular file.
    File { name: String },
}

/// What the probe is asked to look at besides the fixed sections.
#[derive(Clone, Debug, Default)]
pub struct ProbeSpec {
    pub sysctls: Vec<String>,
    pub mount_dests: Vec<String>,
    pub devices: Vec<String>,
    pub exit_code: i32,
}

pub struct Case {
    pub seed: u64,
    pub n: u64,
    pub id: String,
    pub mode: Mode,
    /// config.json with [`BUNDLE`] placeholders.
    pub cfg: Value,
    pub fields: BTreeSet<String>,
    pub vols: Vec<Vol>,
    /// chown the rootfs to this (uid, gid) base: the user namespace's root on the host.
    pub rootfs_owner: Option<(u32, u32)>,
    pub probe: ProbeSpec,
}

impl Case {
    /// The config as written into a bundle at `bundle`.
    pub fn config_for(&self, bundle: &str) -> String {
        serde_json::to_string_pretty(&self.cfg)
            .unwrap_or_default()
            .replace(BUNDLE, bundle)
    }

    pub fn has(&self, field: &str) -> bool {
        self.fields.contains(field)
    }
}

/// Facts about the host the generator must respect.
pub struct Host {
    /// (OCI name, hard limit) for every rlimit.
    pub hard: Vec<(&'static str, u64)>,
    /// Docker's default seccomp profile (libcontainer's testdata).
    pub docker_profile: Value,
    /// The host's oom_score_adj (lowering it needs CAP_SYS_RESOURCE).
    pub oom_score_adj: i64,
}

pub const RLIMITS: &[(&str, Resource)] = &[
    ("RLIMIT_AS", Resource::RLIMIT_AS),
    ("RLIMIT_CORE", Resource::RLIMIT_CORE),
    ("RLIMIT_CPU", Resource::RLIMIT_CPU),
    ("RLIMIT_DATA", Resource::RLIMIT_DATA),
    ("RLIMIT_FSIZE", Resource::RLIMIT_FSIZE),
    ("RLIMIT_LOCKS", Resource::RLIMIT_LOCKS),
    ("RLIMIT_MEMLOCK", Resource::RLIMIT_MEMLOCK),
    ("RLIMIT_MSGQUEUE", Resource::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", Resource::RLIMIT_NICE),
    ("RLIMIT_NOFILE", Resource::RLIMIT_NOFILE),
    ("RLIMIT_NPROC", Resource::RLIMIT_NPROC),
    ("RLIMIT_RSS", Resource::RLIMIT_RSS),
    ("RLIMIT_RTPRIO", Resource::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", Resource::RLIMIT_RTTIME),
    ("RLIMIT_SIGPENDING", Resource::RLIMIT_SIGPENDING),
    ("RLIMIT_STACK", Resource::RLIMIT_STACK),
];

impl Host {
    pub fn probe(repo_testdata: &std::path::Path) -> Result<Host, String> {
        let mut hard = Vec::new();
        for (name, res) in RLIMITS {
            let (_, max) = getrlimit(*res).map_err(|e| format!("getrlimit({name}): {e}"))?;
            hard.push((*name, max));
        }
        let text = std::fs::read_to_string(repo_testdata)
            .map_err(|e| format!("read {}: {e}", repo_testdata.display()))?;
        let docker_profile =
            serde_json::from_str(&text).map_err(|e| format!("docker profile: {e}"))?;
        let oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Ok(Host {
            hard,
            docker_profile,
            oom_score_adj,
        })
    }

    fn hard(&self, name: &str) -> u64 {
        self.hard
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| *h)
            .unwrap_or(0)
    }
}

pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default capability set.
const DOCKER_CAPS: &[&str] = &[
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

/// Syscalls the probe's `@@sys` section exercises (candidates for seccomp rules).
const PROBE_SYSCALLS: &[&str] = &[
    "mkdir",
    "mkdirat",
    "chmod",
    "fchmodat",
    "symlink",
    "symlinkat",
    "utimensat",
    "uname",
    "sethostname",
    "setpriority",
    "unshare",
    "getcwd",
    "rmdir",
    "unlinkat",
];

/// Device nodes of `linux.devices` the generator may add: (path, major, minor).
const EXTRA_DEVICES: &[(&str, i64, i64)] = &[
    ("/dev/kmsg", 1, 11),
    ("/dev/fuse", 10, 229),
    ("/dev/net/tun", 10, 200),
    ("/dev/loop-control", 10, 237),
    ("/dev/full", 1, 7),
    ("/dev/fz-null", 1, 3),
];

struct G<'a> {
    r: Rng,
    host: &'a Host,
    fields: BTreeSet<String>,
    vols: Vec<Vol>,
    probe: ProbeSpec,
}

impl G<'_> {
    fn f(&mut self, name: impl Into<String>) {
        self.fields.insert(name.into());
    }
}

/// Generate case `n` of `seed`.
pub fn generate(host: &Host, seed: u64, n: u64) -> Case {
    let mut g = G {
        r: Rng::for_case(seed, n),
        host,
        fields: BTreeSet::new(),
        vols: Vec::new(),
        probe: ProbeSpec::default(),
    };
    let id = format!("fuzz-{seed}-{n}");
    let mode = if g.r.pct(30) {
        g.f("mode.create+start+delete");
        Mode::CreateStart
    } else {
        g.f("mode.run");
        Mode::Run
    };

    // Namespaces first: much of the rest depends on them.
    let user = g.r.pct(20);
    let mut ns: Vec<&str> = Vec::new();
    if g.r.pct(98) {
        ns.push("mount");
    }
    if user || g.r.pct(85) {
        ns.push("pid");
    }
    if (user && g.r.pct(90)) || g.r.pct(70) {
        ns.push("network");
    }
    if g.r.pct(75) {
        ns.push("ipc");
    }
    if g.r.pct(75) {
        ns.push("uts");
    }
    if g.r.pct(30) {
        ns.push("cgroup");
    }
    if user {
        ns.push("user");
    }
    g.r.shuffle(&mut ns);
    for t in &ns {
        g.f(format!("linux.namespaces.{t}"));
    }
    let has = |t: &str| ns.contains(&t);
    let mut linux = json!({
        "cgroupsPath": format!("/berth-test/{id}"),
        "namespaces": ns.iter().map(|t| json!({"type": t})).collect::<Vec<_>>(),
    });

    let mut rootfs_owner = None;
    if user {
        let (maps, owner) = match g.r.below(3) {
            0 => (
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
                (100000, 100000),
            ),
            1 => (
                json!([{"containerID": 0, "hostID": 200000, "size": 1000},
                       {"containerID": 1000, "hostID": 201000, "size": 64536}]),
                (200000, 200000),
            ),
            _ => (
                json!([{"containerID": 0, "hostID": 0, "size": 4294967295u64}]),
                (0, 0),
            ),
        };
        g.f("linux.uidMappings");
        g.f("linux.gidMappings");
        linux["uidMappings"] = maps.clone();
        linux["gidMappings"] = maps;
        if owner != (0, 0) {
            rootfs_owner = Some(owner);
        }
    }

    let mounts = gen_mounts(
        &mut g,
        has("network") || !user,
        has("pid") || !user,
        has("ipc") || !user,
        user,
    );
    let process = gen_process(&mut g, user);

    let mut cfg = json!({
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": "rootfs", "readonly": g.r.pct(60)},
        "mounts": mounts,
    });
    if cfg["root"]["readonly"] == true {
        g.f("root.readonly");
    }

    // hostname: valid only with a UTS namespace.
    if (has("uts") && g.r.pct(80)) || g.r.pct(4) {
        g.f("hostname");
        cfg["hostname"] = json!(format!("fz-{n}"));
    }

    // sysctls valid in the new namespaces (and now and then one that is not).
    if g.r.pct(40) {
        let mut cands: Vec<(&str, &[&str])> = Vec::new();
        if has("network") || g.r.pct(2) {
            cands.extend_from_slice(&[
                ("net.ipv4.ip_forward", &["0", "1"][..]),
                ("net.ipv4.tcp_syncookies", &["0", "1"]),
                ("net.core.somaxconn", &["128", "4096"]),
                // The whole range only without a user namespace, where gids above the
                // mapped ones cannot be given.
                (
                    "net.ipv4.ping_group_range",
                    if user {
                        &["0 0", "1 0"][..]
                    } else {
                        &["0 0", "1 0", "0 2147483647"]
                    },
                ),
                ("net.ipv4.ip_unprivileged_port_start", &["0", "1024"]),
                // Not net.ipv4.conf.all.forwarding: it is ip_forward's alias, and runc
                // writes sysctls in Go's random map order.
            ]);
        }
        if has("ipc") || g.r.pct(2) {
            cands.extend_from_slice(&[
                ("kernel.shmmax", &["68719476736", "4096"][..]),
                ("kernel.shmall", &["18446744073692774399", "2097152"]),
                ("kernel.shmmni", &["4096", "100"]),
                ("kernel.msgmax", &["8192", "65536"]),
                ("kernel.msgmnb", &["16384", "65536"]),
                (
                    "kernel.sem",
                    &["250 32000 32 128", "32000 1024000000 500 32000"],
                ),
                ("fs.mqueue.msg_max", &["10", "100"]),
                ("fs.mqueue.queues_max", &["256", "1024"]),
                ("fs.mqueue.msgsize_max", &["8192", "16384"]),
            ]);
        }
        if (has("uts") && !user && g.r.pct(30)) || g.r.pct(1) {
            cands.push(("kernel.domainname", &["fz.example", "(none)"][..]));
            // Often on its own as well: one candidate among many was too rare to cover.
            if g.r.pct(50) {
                cands.retain(|(k, _)| *k == "kernel.domainname");
            }
        }
        if user {
            // Not visible in namespaces owned by a user namespace.
            cands.retain(|(k, _)| *k != "net.core.somaxconn" && !k.starts_with("fs.mqueue."));
        }
        if !cands.is_empty() {
            let mut m = serde_json::Map::new();
            for _ in 0..1 + g.r.below(3) {
                let (k, vals) = *g.r.pick(&cands);
                let v = *g.r.pick(vals);
                m.insert(k.to_string(), json!(v));
                let family = k.split('.').take(2).collect::<Vec<_>>().join(".");
                g.f(format!("linux.sysctl.{family}"));
                if !g.probe.sysctls.iter().any(|s| s == k) {
                    g.probe.sysctls.push(k.to_string());
                }
            }
            g.f("linux.sysctl");
            linux["sysctl"] = Value::Object(m);
        }
    }

    // maskedPaths / readonlyPaths.
    if g.r.pct(85) {
        let base = [
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
            "/etc/passwd",
            "/root",
            "/nonexistent/path",
            "/proc/kmsg",
            "/sys/kernel/debug",
        ];
        g.f("linux.maskedPaths");
        linux["maskedPaths"] = json!(g.r.subset(&base, 50));
    }
    if g.r.pct(80) {
        let base = [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
            "/etc",
            "/tmp",
            "/home/user",
            "/nonexistent/ro",
        ];
        g.f("linux.readonlyPaths");
        linux["readonlyPaths"] = json!(g.r.subset(&base, 50));
    }

    // Devices and device cgroup rules.
    if g.r.pct(30) {
        let mut devs = Vec::new();
        for _ in 0..1 + g.r.below(2) {
            let (path, major, minor) = *g.r.pick(EXTRA_DEVICES);
            // In a user namespace devices are bind mounts of the host's node at the same path.
            let no_host_node = path == "/dev/fz-null";
            if devs.iter().any(|d: &Value| d["path"] == path) || (user && no_host_node) {
                continue;
            }
            let mut d = json!({"path": path, "type": "c", "major": major, "minor": minor});
            if g.r.pct(50) {
                d["fileMode"] = json!(*g.r.pick(&[0o666, 0o600, 0o640, 0o620]));
                g.f("linux.devices.fileMode");
            }
            if g.r.pct(30) {
                d["uid"] = json!(*g.r.pick(&[0, 1000, 65534]));
                d["gid"] = json!(*g.r.pick(&[0, 5, 1000]));
                g.f("linux.devices.uid/gid");
            }
            g.probe.devices.push(path.to_string());
            devs.push(d);
        }
        g.f("linux.devices");
        linux["devices"] = json!(devs);
    }
    let mut resources = json!({});
    if g.r.pct(92) {
        let mut rules = Vec::new();
        if g.r.pct(90) {
            rules.push(json!({"allow": false, "access": "rwm"}));
        }
        for _ in 0..g.r.below(4) {
            let access = *g.r.pick(&["r", "w", "m", "rw", "rm", "rwm", "wm"]);
            // Denying a part of an allowed range is refused by runc 1.1's v1 emulator
            // ("cannot punch hole"): kinds 2 and 6 only now and then.
            let mut kind = g.r.below(8);
            if (kind == 2 || kind == 6) && g.r.pct(70) {
                kind = 0;
            }
            let rule = match kind {
                0 => json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": access}),
                1 => {
                    json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": access})
                }
                2 => json!({"allow": false, "type": "c", "major": 1, "minor": 3, "access": access}),
                3 => json!({"allow": true, "type": "c", "access": "m"}),
                4 => json!({"allow": true, "type": "b", "access": "m"}),
                5 => {
                    json!({"allow": true, "type": "c", "major": 10, "minor": 200, "access": access})
                }
                6 => json!({"allow": false, "type": "c", "major": 1, "access": access}),
                _ => json!({"allow": true, "type": "a", "access": "m"}),
            };
            rules.push(rule);
        }
        g.f("linux.resources.devices");
        resources["devices"] = json!(rules);
    }
    gen_resources(&mut g, &mut resources);
    linux["resources"] = resources;

    if g.r.pct(35) {
        g.f("linux.seccomp");
        linux["seccomp"] = gen_seccomp(&mut g);
    }

    cfg["linux"] = linux;
    if g.r.pct(25) {
        cfg["hooks"] = gen_hooks(&mut g);
    }
    // A terminal needs a console socket: only `create` takes one without a tty of its own.
    if mode == Mode::CreateStart && g.r.pct(35) {
        g.f("process.terminal");
        cfg["process"]["terminal"] = json!(true);
    }
    g.probe.exit_code = *g.r.pick(&[0, 0, 0, 0, 7, 42]);
    if g.probe.exit_code != 0 {
        g.f("process.exitCode");
    }
    let script = probe::script(&g.probe);
    cfg["process"]["args"] = json!(["sh", "-c", script]);
    Case {
        seed,
        n,
        id,
        mode,
        cfg,
        fields: g.fields,
        vols: g.vols,
        rootfs_owner,
        probe: g.probe,
    }
}

fn gen_mounts(g: &mut G, sysfs_ok: bool, proc_ok: bool, ipc_ok: bool, user: bool) -> Value {
    let mut m = Vec::new();
    let opts = |g: &mut G, list: &[&str], pct: u64| -> Vec<String> {
        list.iter()
            .filter(|_| g.r.pct(pct))
            .map(|s| s.to_string())
            .collect()
    };
    if g.r.pct(98) {
        let o = opts(g, &["nosuid", "noexec", "nodev"], 60);
        g.f("mounts.proc");
        m.push(json!({"destination": "/proc", "type": "proc", "source": "proc", "options": o}));
    }
    if g.r.pct(93) {
        let mut o = opts(g, &["nosuid", "strictatime", "noexec"], 60);
        o.push(format!("mode={}", g.r.pick(&["755", "700", "1777"])));
        o.push(format!("size={}", g.r.pick(&["65536k", "1m", "8m"])));
        g.f("mounts.tmpfs");
        g.f("mounts.dev");
        m.push(json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": o}));
    }
    if g.r.pct(90) {
        let mut o = opts(g, &["nosuid", "noexec"], 70);
        o.push("newinstance".into());
        o.push(format!("ptmxmode={}", g.r.pick(&["0666", "0000", "0620"])));
        o.push(format!("mode={}", g.r.pick(&["0620", "0600"])));
        if g.r.pct(80) {
            o.push("gid=5".into());
        }
        g.f("mounts.devpts");
        m.push(
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": o}),
        );
    }
    if g.r.pct(90) {
        let mut o = opts(g, &["nosuid", "noexec", "nodev"], 70);
        o.push(format!("mode={}", g.r.pick(&["1777", "0755"])));
        o.push("size=65536k".into());
        g.f("mounts.tmpfs");
        m.push(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": o}));
    }
    if (ipc_ok && g.r.pct(80)) || g.r.pct(3) {
        let o = opts(g, &["nosuid", "noexec", "nodev"], 70);
        g.f("mounts.mqueue");
        m.push(json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": o}));
    }
    let mut sys = false;
    if (sysfs_ok && g.r.pct(85)) || g.r.pct(3) {
        let mut o = opts(g, &["nosuid", "noexec", "nodev"], 70);
        if g.r.pct(80) {
            o.push("ro".into());
            g.f("mounts.sysfs.ro");
        }
        sys = true;
        g.f("mounts.sysfs");
        m.push(json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": o}));
    }
    if sys && g.r.pct(80) {
        let mut o = opts(g, &["nosuid", "noexec", "nodev", "relatime"], 70);
        if g.r.pct(85) {
            o.push("ro".into());
        }
        g.f("mounts.cgroup");
        m.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": o}));
    }

    // Extra mounts.
    let mut tmpfs_dests: Vec<String> = Vec::new();
    for i in 0..g.r.below(5) {
        let parent = if !tmpfs_dests.is_empty() && g.r.pct(25) {
            g.f("mounts.nested");
            g.r.pick(&tmpfs_dests).clone()
        } else {
            "/mnt".to_string()
        };
        let kind = g.r.below(10);
        let mount = match kind {
            0..=2 => {
                let name = format!("d{i}");
                let submount = g.r.pct(50);
                g.vols.push(Vol::Dir {
                    name: name.clone(),
                    submount,
                });
                // In a new user namespace runc 1.3 fails a plain `bind` (a documented
                // deviation): mostly rbind there, so that most of these configs run.
                let mut o = vec![if g.r.pct(if user { 85 } else { 50 }) {
                    g.f("mounts.rbind");
                    "rbind".to_string()
                } else {
                    g.f("mounts.bind");
                    "bind".to_string()
                }];
                for (opt, f) in [
                    ("ro", "mounts.opt.ro"),
                    ("nosuid", "mounts.opt.nosuid"),
                    ("nodev", "mounts.opt.nodev"),
                    ("noexec", "mounts.opt.noexec"),
                ] {
                    if g.r.pct(35) {
                        o.push(opt.into());
                        g.f(f);
                    }
                }
                if g.r.pct(15) {
                    o.push("rw".into());
                    g.f("mounts.opt.rw");
                }
                if g.r.pct(10) {
                    let a =
                        *g.r.pick(&["noatime", "relatime", "strictatime", "nodiratime"]);
                    o.push(a.into());
                    g.f("mounts.opt.atime");
                }
                if g.r.pct(25) {
                    let p =
                        *g.r.pick(&["private", "rprivate", "slave", "rslave", "shared"]);
                    o.push(p.into());
                    g.f("mounts.opt.propagation");
                }
                if submount {
                    g.f("mounts.bind.submount");
                }
                let dest = format!("{parent}/b{i}");
                json!({"destination": dest, "type": "bind", "source": format!("{BUNDLE}/vols/{name}"), "options": o})
            }
            3 => {
                let name = format!("f{i}");
                g.vols.push(Vol::File { name: name.clone() });
                let mut o = vec!["bind".to_string()];
                if g.r.pct(50) {
                    o.push("ro".into());
                    g.f("mounts.opt.ro");
                }
                g.f("mounts.bind.file");
                let dest = if g.r.pct(30) {
                    format!("/etc/fz{i}.conf")
                } else {
                    format!("{parent}/file{i}")
                };
                json!({"destination": dest, "type": "bind", "source": format!("{BUNDLE}/vols/{name}"), "options": o})
            }
            4..=5 => {
                let mut o: Vec<String> = Vec::new();
                if g.r.pct(60) {
                    o.push(format!(
                        "size={}",
                        g.r.pick(&["4k", "1m", "100k", "65536k", "0"])
                    ));
                    g.f("mounts.tmpfs.size");
                }
                if g.r.pct(60) {
                    o.push(format!(
                        "mode={}",
                        g.r.pick(&["755", "700", "1777", "0", "0644"])
                    ));
                    g.f("mounts.tmpfs.mode");
                }
                if g.r.pct(20) {
                    o.push("nr_inodes=1k".into());
                }
                for (opt, f) in [
                    ("ro", "mounts.opt.ro"),
                    ("nosuid", "mounts.opt.nosuid"),
                    ("nodev", "mounts.opt.nodev"),
                    ("noexec", "mounts.opt.noexec"),
                ] {
                    if g.r.pct(30) {
                        o.push(opt.into());
                        g.f(f);
                    }
                }
                g.f("mounts.tmpfs");
                g.f("mounts.tmpfs.extra");
                // Over an existing directory of the rootfs now and then (its mode matters).
                let dest = match g.r.below(6) {
                    0 => "/tmp".to_string(),
                    1 => "/root".to_string(),
                    _ => format!("{parent}/t{i}"),
                };
                if dest.starts_with("/mnt") && !o.iter().any(|x| x == "ro") {
                    tmpfs_dests.push(dest.clone());
                }
                json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": o})
            }
            6 if proc_ok => {
                g.f("mounts.proc.extra");
                json!({"destination": format!("/mnt/proc{i}"), "type": "proc", "source": "proc", "options": ["nosuid", "nodev", "noexec"]})
            }
            7 if sysfs_ok => {
                g.f("mounts.sysfs.extra");
                json!({"destination": format!("/mnt/sys{i}"), "type": "sysfs", "source": "sysfs", "options": ["ro", "nosuid"]})
            }
            8 if ipc_ok => {
                g.f("mounts.mqueue.extra");
                json!({"destination": format!("{parent}/mq{i}"), "type": "mqueue", "source": "mqueue", "options": ["nosuid", "nodev"]})
            }
            _ => {
                g.f("mounts.devpts.extra");
                json!({"destination": format!("{parent}/pts{i}"), "type": "devpts", "source": "devpts", "options": ["newinstance", "ptmxmode=0666", "mode=0620"]})
            }
        };
        let dest = mount["destination"].as_str().unwrap_or("").to_string();
        g.probe.mount_dests.push(dest);
        m.push(mount);
    }
    json!(m)
}

fn gen_process(g: &mut G, user: bool) -> Value {
    let mut p = json!({
        "terminal": false,
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
    });
    let uid = *g.r.pick(&[0, 0, 0, 1000, 65534, 4242]);
    let gid = *g.r.pick(&[0, 0, 1000, 65534, 4242]);
    let mut u = json!({"uid": uid, "gid": gid});
    if uid != 0 {
        g.f("process.user.uid");
    }
    if gid != 0 {
        g.f("process.user.gid");
    }
    if g.r.pct(30) {
        u["additionalGids"] = json!(g.r.subset(&[1, 5, 1000, 65534], 50));
        g.f("process.user.additionalGids");
    }
    if g.r.pct(40) {
        u["umask"] = json!(*g.r.pick(&[0, 0o22, 0o27, 0o77, 0o2, 0o777]));
        g.f("process.user.umask");
    }
    p["user"] = u;
    let cwd = *g.r.pick(&[
        "/",
        "/",
        "/",
        "/tmp",
        "/home/user",
        "/etc",
        "/fz/private",
        "/fz/new/dir",
    ]);
    if cwd != "/" {
        g.f("process.cwd");
    }
    p["cwd"] = json!(cwd);

    if g.r.pct(95) {
        let bounding: Vec<&str> = match g.r.below(4) {
            0 => ALL_CAPS.to_vec(),
            1 => DOCKER_CAPS.to_vec(),
            _ => g.r.subset(ALL_CAPS, 40),
        };
        let mut c = json!({"bounding": bounding});
        g.f("process.capabilities.bounding");
        // The kernel's rules (capset): permitted within the bounding set, effective within
        // permitted, inheritable within bounding, ambient within permitted and inheritable;
        // broken now and then (both runtimes must then fail).
        let wild = g.r.pct(4);
        let mut sets: Vec<(&str, Vec<&str>)> = Vec::new();
        let permitted: Vec<&str> = if !g.r.pct(85) {
            Vec::new()
        } else if wild {
            g.r.subset(ALL_CAPS, 50)
        } else {
            g.r.subset(&bounding, 75)
        };
        sets.push(("permitted", permitted.clone()));
        let effective: Vec<&str> = if g.r.pct(85) {
            g.r.subset(&permitted, 80)
        } else {
            Vec::new()
        };
        sets.push(("effective", effective));
        let inheritable: Vec<&str> = if g.r.pct(40) {
            g.r.subset(&bounding, 40)
        } else {
            Vec::new()
        };
        sets.push(("inheritable", inheritable.clone()));
        let both: Vec<&str> = permitted
            .iter()
            .filter(|c| inheritable.contains(c))
            .copied()
            .collect();
        let ambient: Vec<&str> = if g.r.pct(60) {
            g.r.subset(&both, 50)
        } else {
            Vec::new()
        };
        sets.push(("ambient", ambient));
        for (set, v) in sets {
            if !v.is_empty() || g.r.pct(10) {
                c[set] = json!(v);
                g.f(format!("process.capabilities.{set}"));
            }
        }
        p["capabilities"] = c;
    }

    if g.r.pct(70) {
        let mut rl = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for _ in 0..1 + g.r.below(4) {
            let (name, _) = *g.r.pick(RLIMITS);
            if names.contains(&name) {
                continue;
            }
            names.push(name);
            let hard = g.host.hard(name);
            let cap = |v: u64| v.min(hard);
            let (soft, h) = match name {
                "RLIMIT_NOFILE" => {
                    let h = cap(*g.r.pick(&[1024, 4096, 20000, u64::MAX]));
                    (cap(*g.r.pick(&[64, 1024, h])).min(h), h)
                }
                "RLIMIT_NPROC" | "RLIMIT_SIGPENDING" => {
                    let h = cap(*g.r.pick(&[512, 4096, u64::MAX]));
                    (cap(*g.r.pick(&[256, h])).min(h), h)
                }
                "RLIMIT_AS" | "RLIMIT_DATA" | "RLIMIT_RSS" => {
                    // runc's Go init reserves a lot of address space: no less than 16 GiB.
                    let h = cap(*g.r.pick(&[1 << 35, 1 << 36, u64::MAX]));
                    (cap(*g.r.pick(&[1 << 34, h])).min(h), h)
                }
                "RLIMIT_STACK" => {
                    let h = cap(*g.r.pick(&[8 << 20, 64 << 20, u64::MAX]));
                    (cap(*g.r.pick(&[8 << 20, h])).min(h), h)
                }
                "RLIMIT_FSIZE" => {
                    let h = cap(*g.r.pick(&[1 << 30, u64::MAX]));
                    (cap(*g.r.pick(&[16 << 20, h])).min(h), h)
                }
                "RLIMIT_CPU" | "RLIMIT_RTTIME" => {
                    let h = cap(*g.r.pick(&[60, 3600, u64::MAX]));
                    (cap(*g.r.pick(&[30, h])).min(h), h)
                }
                _ => {
                    // CORE, LOCKS, MEMLOCK, MSGQUEUE, NICE, RTPRIO: zeros and edges are fine.
                    let h = cap(*g.r.pick(&[0, 1, 64, 8192, 819200, u64::MAX]));
                    (cap(*g.r.pick(&[0, h])).min(h), h)
                }
            };
            g.f(format!("process.rlimits.{name}"));
            rl.push(json!({"type": name, "soft": soft, "hard": h}));
        }
        g.f("process.rlimits");
        p["rlimits"] = json!(rl);
    }
    if g.r.pct(70) {
        let nnp = g.r.pct(50);
        p["noNewPrivileges"] = json!(nnp);
        g.f("process.noNewPrivileges");
    }
    if g.r.pct(40) {
        let base = g.host.oom_score_adj;
        let v = if g.r.pct(5) {
            base - 1 - g.r.below(10) as i64 // needs CAP_SYS_RESOURCE: fails under both
        } else {
            (base + *g.r.pick(&[0, 1, 100, 500, 1000])).min(1000)
        };
        p["oomScoreAdj"] = json!(v);
        g.f("process.oomScoreAdj");
    }
    let _ = user;
    p
}

fn gen_resources(g: &mut G, res: &mut Value) {
    const MB: i64 = 1 << 20;
    if g.r.pct(40) {
        let mut m = json!({});
        let limit = *g.r.pick(&[0, -1, 32 * MB, 64 * MB, 256 * MB, 1024 * MB]);
        if g.r.pct(80) {
            m["limit"] = json!(limit);
            g.f("linux.resources.memory.limit");
        }
        if g.r.pct(40) {
            m["reservation"] = json!(*g.r.pick(&[0, -1, 16 * MB, 32 * MB]));
            g.f("linux.resources.memory.reservation");
        }
        if g.r.pct(40) {
            // memory+swap: only at or above a positive limit (or unset: 0, -1).
            let swap = match g.r.below(4) {
                0 => 0,
                1 => -1,
                _ if limit <= 0 || m.get("limit").is_none() => -1,
                2 => limit,
                _ => limit.saturating_mul(2),
            };
            m["swap"] = json!(swap);
            g.f("linux.resources.memory.swap");
        }
        if g.r.pct(30) {
            m["swappiness"] = json!(*g.r.pick(&[0, 60, 100]));
            g.f("linux.resources.memory.swappiness");
        }
        if g.r.pct(20) {
            // Without the OOM killer a container at its limit hangs: only with room to spare.
            let room = m.get("limit").is_none() || limit <= 0 || limit >= 256 * MB;
            m["disableOOMKiller"] = json!(room && g.r.pct(50));
            g.f("linux.resources.memory.disableOOMKiller");
        }
        g.f("linux.resources.memory");
        res["memory"] = m;
    }
    if g.r.pct(40) {
        let mut c = json!({});
        if g.r.pct(60) {
            let v = if g.r.pct(5) {
                *g.r.pick(&[1u64, 300000]) // out of range: refused by runc
            } else {
                *g.r.pick(&[0u64, 2, 512, 1024, 4096])
            };
            c["shares"] = json!(v);
            g.f("linux.resources.cpu.shares");
        }
        // Quota and period: never below half a CPU (a starved probe would time out).
        let period = *g.r.pick(&[0u64, 10000, 100000, 1000000]);
        if g.r.pct(50) {
            c["period"] = json!(period);
            g.f("linux.resources.cpu.period");
        }
        if g.r.pct(50) {
            let p = if period == 0 { 100000 } else { period } as i64;
            c["quota"] = json!(*g.r.pick(&[0i64, -1, p / 2, p, 2 * p]));
            g.f("linux.resources.cpu.quota");
        }
        if g.r.pct(25) {
            c["cpus"] = json!(*g.r.pick(&["0", "0-1", "1", ""]));
            g.f("linux.resources.cpu.cpus");
        }
        if g.r.pct(15) {
            c["mems"] = json!(*g.r.pick(&["0", "0", "0", ""]));
            g.f("linux.resources.cpu.mems");
        }
        g.f("linux.resources.cpu");
        res["cpu"] = c;
    }
    if g.r.pct(30) {
        res["pids"] = json!({"limit": *g.r.pick(&[0i64, -1, 64, 1024, 100000])});
        g.f("linux.resources.pids");
    }
    if g.r.pct(20) {
        let w = if g.r.pct(85) {
            0
        } else {
            *g.r.pick(&[10, 500, 1000])
        };
        let mut b = json!({"weight": w});
        if g.r.pct(5) {
            b["leafWeight"] = json!(0); // runc 1.1.5 then needs blkio.bfq.weight (absent here)
        }
        res["blockIO"] = b;
        g.f("linux.resources.blockIO");
    }
}

/// The log every hook appends to (read back as the `hooks` section).
pub const HOOK_LOG: &str = "hooks.log";

/// Host hooks of every phase that run in the runtime's namespaces or the container's mount
/// namespace (startContainer runs inside the container and would need a path there). Each
/// logs its phase, the state's status, whether the state has a pid, and its cwd relative
/// to the bundle; now and then one fails (exit 1).
fn gen_hooks(g: &mut G) -> Value {
    let mut hooks = serde_json::Map::new();
    for phase in [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ] {
        if !g.r.pct(50) {
            continue;
        }
        g.f(format!("hooks.{phase}"));
        let mut list = Vec::new();
        for i in 0..1 + g.r.below(2) {
            let fail = g.r.pct(3);
            if fail {
                g.f("hooks.failing");
            }
            let script = format!(
                "read -r s; st=$(printf %s \"$s\" | sed -n 's/.*\"status\": *\"\\([a-z]*\\)\".*/\\1/p'); \
                 case \"$s\" in *'\"pid\"'*) pid=pid;; *) pid=nopid;; esac; \
                 echo \"$0 $st $pid ${{PWD#{BUNDLE}}}\" >> {BUNDLE}/{HOOK_LOG}; exit {}",
                u8::from(fail)
            );
            list.push(json!({
                "path": "/bin/sh",
                "args": ["sh", "-c", script, format!("{phase}#{i}")],
                "timeout": 20,
            }));
        }
        hooks.insert(phase.to_string(), Value::Array(list));
    }
    if hooks.is_empty() {
        g.f("hooks.poststop");
        hooks.insert(
            "poststop".into(),
            json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("echo poststop >> {BUNDLE}/{HOOK_LOG}")]}]),
        );
    }
    g.f("hooks");
    Value::Object(hooks)
}

fn gen_seccomp(g: &mut G) -> Value {
    if g.r.pct(30) {
        g.f("linux.seccomp.docker-default");
        return g.host.docker_profile.clone();
    }
    let mut rules = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for _ in 0..1 + g.r.below(3) {
        // fchmodat more often than the others: it is the one with an argument filter.
        let name = if g.r.pct(20) {
            "fchmodat"
        } else {
            *g.r.pick(PROBE_SYSCALLS)
        };
        // A syscall under two actions now and then (see deviations.rs).
        if names.contains(&name) && !g.r.pct(10) {
            continue;
        }
        names.push(name);
        let mut rule = match g.r.below(20) {
            0..=2 => {
                g.f("linux.seccomp.action.kill");
                json!({"names": [name], "action": *g.r.pick(&["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS"])})
            }
            3 | 4 => {
                g.f("linux.seccomp.action.trace");
                json!({"names": [name], "action": "SCMP_ACT_TRACE"})
            }
            5 | 6 => {
                g.f("linux.seccomp.action.log");
                json!({"names": [name], "action": "SCMP_ACT_LOG"})
            }
            _ => {
                g.f("linux.seccomp.action.errno");
                let mut r = json!({"names": [name], "action": "SCMP_ACT_ERRNO"});
                if g.r.pct(70) {
                    r["errnoRet"] = json!(*g.r.pick(&[1, 13, 38, 95]));
                }
                r
            }
        };
        if name == "fchmodat" && g.r.pct(75) {
            // Only `chmod 700`: the probe's `chmod 755` must still work.
            rule["args"] = json!([{"index": 2, "value": 0o700, "op": "SCMP_CMP_EQ"}]);
            g.f("linux.seccomp.args");
        }
        if name == "getcwd" {
            g.f("linux.seccomp.getcwd");
        }
        rules.push(rule);
    }
    let mut s = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules});
    if g.r.pct(50) {
        s["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
        g.f("linux.seccomp.architectures");
    }
    g.f("linux.seccomp.allow-default");
    s
}
