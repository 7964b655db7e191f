//! Namespaces: new ones, absent ones (shared with the host), joined by path, user and time.

use std::collections::BTreeMap;
use std::fs;

use serde_json::json;

use super::{host_ns, key_values, map_to_userns, wait_file, PRINT_NS, WAIT_FOR_GO};
use crate::context::{mounts_under, Ctx};
use crate::harness::{Test, TestResult};
use crate::{ensure, ensure_eq, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        ns_pid_sees_itself_as_pid1,
        ns_new_namespaces_differ_from_host,
        ns_absent_namespaces_shared_with_host,
        ns_net_only_lo,
        ns_net_lo_up,
        ns_cgroup_root,
        ns_no_cgroupns_shows_cgroups_path,
        ns_mount_invisible_on_host,
        ns_user_mappings,
        ns_join_by_path,
        ns_join_by_path_under_load,
        ns_join_by_path_init_waits_for_stage1,
        ns_time_offsets,
    ]
}

fn ns_pid_sees_itself_as_pid1(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    // `cat` first: busybox sh execs its last command in place.
    b.cfg.sh("cat /proc/1/comm; echo $$");
    let out = b.run_ok()?;
    let lines: Vec<&str> = out.lines().collect();
    ensure_eq!(lines.first().copied(), Some("sh"), "/proc/1/comm");
    ensure_eq!(
        lines.get(1).copied(),
        Some("1"),
        "pid of the container's process"
    );
    Ok(())
}

/// Run PRINT_NS in the container and compare with the host: `new` kinds must
/// differ, all others must equal the host's.
fn compare_ns(got: &BTreeMap<String, String>, new: &[&str]) -> TestResult {
    for kind in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
        let host = host_ns(kind);
        if host.is_empty() {
            continue; // the kernel lacks this namespace kind
        }
        let inside = got.get(kind).cloned().unwrap_or_default();
        ensure!(
            !inside.is_empty(),
            "no /proc/self/ns/{kind} inside: {got:?}"
        );
        if new.contains(&kind) {
            ensure!(inside != host, "{kind} namespace is the host's ({host})");
        } else {
            ensure_eq!(
                inside,
                host,
                format!("{kind} namespace (should be the host's)")
            );
        }
    }
    Ok(())
}

fn ns_new_namespaces_differ_from_host(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.ns_add("cgroup");
    b.cfg.sh(PRINT_NS);
    let got = key_values(&b.run_ok()?);
    compare_ns(&got, &["cgroup", "ipc", "mnt", "net", "pid", "uts"])
}

fn ns_absent_namespaces_shared_with_host(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    for n in ["pid", "network", "ipc", "uts"] {
        b.cfg.ns_remove(n);
    }
    b.cfg.remove("/hostname");
    b.cfg.sh(PRINT_NS);
    let got = key_values(&b.run_ok()?);
    compare_ns(&got, &["mnt"])
}

fn ns_net_only_lo(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.args(&["cat", "/proc/net/dev"]);
    let out = b.run_ok()?;
    let ifaces: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim()))
        .collect();
    ensure_eq!(ifaces, ["lo"], "interfaces in a new network namespace");
    Ok(())
}

/// A new network namespace has its loopback up, as runc makes it (its "loopback" network):
/// IFF_UP|IFF_LOOPBACK. berth left it down (found by client_images_debian_python_web_app).
fn ns_net_lo_up(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.args(&["cat", "/sys/class/net/lo/flags"]);
    ensure_eq!(
        b.run_ok()?.trim(),
        "0x9",
        "lo's flags in a new network namespace"
    );
    Ok(())
}

fn ns_cgroup_root(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.ns_add("cgroup");
    b.cfg.args(&["cat", "/proc/self/cgroup"]);
    let out = b.run_ok()?;
    ensure!(!out.trim().is_empty(), "empty /proc/self/cgroup");
    for l in out.lines() {
        let path = l.splitn(3, ':').nth(2).unwrap_or("");
        ensure_eq!(
            path,
            "/",
            format!("cgroup path in a cgroup namespace ({l})")
        );
    }
    Ok(())
}

fn ns_no_cgroupns_shows_cgroups_path(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.args(&["cat", "/proc/self/cgroup"]);
    let out = b.run_ok()?;
    let want = format!("/berth-test/{}", b.id);
    // Every v1 hierarchy with a controller the runtime manages, and cgroup2 (0::).
    for ctrl in ["memory", "pids", "cpu", "devices", "freezer"] {
        let line = out.lines().find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|x| x == ctrl))
        });
        if let Some(line) = line {
            ensure!(line.ends_with(&want), "{ctrl} cgroup is not {want}: {line}");
        }
    }
    ensure!(
        out.lines().any(|l| l.ends_with(&want)),
        "the container is in no {want} cgroup: {out}"
    );
    Ok(())
}

fn ns_mount_invisible_on_host(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.add_mount("/scratch", "tmpfs", "tmpfs", &["size=1m"]);
    b.cfg.sh(&format!("touch /shared/ready; {WAIT_FOR_GO}"));
    b.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    let pid = b.pid()?;
    let inside = fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    ensure!(
        inside.lines().any(|l| l.contains(" /scratch ")),
        "the container's own mountinfo lacks /scratch"
    );
    let leaked = mounts_under(&b.dir);
    ensure!(
        leaked.is_empty(),
        "container mounts visible on the host: {leaked:?}"
    );
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    Ok(())
}

fn ns_user_mappings(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    map_to_userns(&mut b)?;
    b.cfg.sh(&format!(
        "cat /proc/self/uid_map > /shared/uid_map; cat /proc/self/gid_map > /shared/gid_map; \
         id -u > /shared/id; readlink /proc/self/ns/user > /shared/userns; {WAIT_FOR_GO}"
    ));
    b.run_detached().ok()?;
    wait_file(&shared.join("userns"))?;
    std::thread::sleep(std::time::Duration::from_millis(50));
    let pid = b.pid()?;
    let norm = |p: &str| -> Result<String, crate::harness::Failure> {
        Ok(fs::read_to_string(shared.join(p))?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "))
    };
    ensure_eq!(norm("uid_map")?, "0 100000 65536", "uid_map inside");
    ensure_eq!(norm("gid_map")?, "0 100000 65536", "gid_map inside");
    ensure_eq!(norm("id")?, "0", "uid inside");
    ensure!(
        norm("userns")? != host_ns("user"),
        "user namespace is the host's"
    );
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let ids = |key: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|rest| rest.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    ensure_eq!(
        ids("Uid:"),
        ["100000"; 4],
        "the process's uids seen from the host"
    );
    ensure_eq!(
        ids("Gid:"),
        ["100000"; 4],
        "the process's gids seen from the host"
    );
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    Ok(())
}

fn ns_join_by_path(ctx: &Ctx) -> TestResult {
    let mut a = ctx.bundle()?;
    let shared = a.shared()?;
    a.cfg.set("/hostname", json!("joined-host"));
    a.cfg.sh(&format!("touch /shared/ready; {WAIT_FOR_GO}"));
    a.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    let pid = a.pid()?;

    let mut b = ctx.bundle()?;
    b.cfg.remove("/hostname");
    for (typ, file) in [("network", "net"), ("uts", "uts"), ("ipc", "ipc")] {
        b.cfg.ns_join(typ, &format!("/proc/{pid}/ns/{file}"));
    }
    b.cfg.sh(&format!("echo hostname $(hostname); {PRINT_NS}"));
    let got = key_values(&b.run_ok()?);
    ensure_eq!(
        got.get("hostname").map(String::as_str),
        Some("joined-host"),
        "hostname"
    );
    for kind in ["net", "uts", "ipc"] {
        let want = fs::read_link(format!("/proc/{pid}/ns/{kind}"))?;
        ensure_eq!(
            got.get(kind).map(String::as_str).unwrap_or(""),
            want.to_string_lossy(),
            format!("joined {kind} namespace")
        );
    }
    for kind in ["pid", "mnt"] {
        let other = fs::read_link(format!("/proc/{pid}/ns/{kind}"))?;
        ensure!(
            got.get(kind).map(String::as_str) != Some(&*other.to_string_lossy()),
            "{kind} namespace was joined although only created was asked"
        );
    }
    fs::write(shared.join("go"), "")?;
    a.wait_status("stopped")?;
    Ok(())
}

/// Joining a namespace by path takes the two-stage path (stage 1 joins, then forks init). Init
/// must not ask the parent for anything before stage 1's report of its pid has arrived: under
/// CPU load it used to overtake it ("hooks requested before init's pid was known"), about 2 in
/// 600 CRI pod creations as issue 10 reports. Repeated runs with both CPUs busy. This machine
/// never showed the race this way (about 800 runs of the old binary);
/// `ns_join_by_path_init_waits_for_stage1` forces it with strace and fails without the fix.
fn ns_join_by_path_under_load(ctx: &Ctx) -> TestResult {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut a = ctx.bundle()?;
    // A holder that outlives the loop however slow the machine (the VM's TCG).
    a.cfg.args(&["sleep", "3600"]);
    a.run_detached().ok()?;
    let pid = a.pid()?;

    let mut b = ctx.bundle()?;
    b.cfg.ns_remove("network");
    b.cfg.ns_join("network", &format!("/proc/{pid}/ns/net"));
    b.cfg.ns_remove("uts");
    b.cfg.ns_join("uts", &format!("/proc/{pid}/ns/uts"));
    b.cfg.remove("/hostname");
    b.cfg.set(
        "/mounts",
        // /dev on a tmpfs as CRI's configs have it: runc 1.3 fails a second run on a rootfs
        // whose own /dev already holds the /dev/fd symlink of the first.
        json!([{"destination": "/proc", "type": "proc", "source": "proc"},
               {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}]),
    );
    b.cfg.args(&["true"]);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..6)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    let mut result = Ok(());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for i in 0..60 {
        if std::time::Instant::now() > until {
            break;
        }
        let out = b.run(&[]);
        if !out.success() {
            result = Err(crate::harness::Failure::Fail(format!(
                "run {i} of 60: {}",
                out.describe()
            )));
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    a.kill("KILL").ok()?;
    a.wait_status("stopped")?;
    result.map(drop)
}

/// The race of `ns_join_by_path_under_load` made deterministic: strace delays the return of
/// every clone3 by 300 ms, so stage 1 reports init's pid long after init is ready to ask for
/// the hooks. Init must wait for the parent's PidKnown. The berth before that fix (f425acd^)
/// fails this every time with "hooks requested before init's pid was known".
fn ns_join_by_path_init_waits_for_stage1(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc() {
        skip!("delays berth's own stage 1 with strace (runc's nsexec stages differ)");
    }
    super::need_strace()?;
    let mut a = ctx.bundle()?;
    a.cfg.args(&["sleep", "3600"]);
    a.run_detached().ok()?;
    let pid = a.pid()?;

    let mut b = ctx.bundle()?;
    b.cfg.ns_remove("network");
    b.cfg.ns_join("network", &format!("/proc/{pid}/ns/net"));
    b.cfg.args(&["true"]);
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    let out = ctx.rt.exec_wrapped(
        &[
            "strace",
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=clone3",
            "-e",
            "inject=clone3:delay_exit=300000",
        ],
        &["run", "--bundle", &dir, &b.id],
        crate::runtime::cmd_timeout(),
    );
    let result = out.ok().map(drop);
    a.kill("KILL").ok()?;
    a.wait_status("stopped")?;
    result?;
    b.ensure_clean()
}

fn ns_time_offsets(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 2) {
        skip!("runc before 1.2 does not support time namespaces (linux.timeOffsets)");
    }
    if host_ns("time").is_empty() {
        skip!("the kernel has no time namespaces");
    }
    const DAY: u64 = 86400;
    let mut b = ctx.bundle()?;
    b.cfg.ns_add("time");
    b.cfg.set(
        "/linux/timeOffsets",
        json!({
            "monotonic": {"secs": 1000 * DAY, "nanosecs": 0},
            "boottime": {"secs": 2000 * DAY, "nanosecs": 0}
        }),
    );
    b.cfg.sh(&format!("cut -d' ' -f1 /proc/uptime; {PRINT_NS}"));
    let out = b.run_ok()?;
    let uptime: f64 = out
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0.0);
    let host: f64 = fs::read_to_string("/proc/uptime")?
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let min = host + (2000 * DAY) as f64 - 60.0;
    ensure!(
        uptime.total_cmp(&min).is_ge(),
        "uptime inside {uptime} does not include the boottime offset (host {host})"
    );
    let got = key_values(&out);
    ensure!(
        got.get("time").map(String::as_str) != Some(host_ns("time").as_str()),
        "time namespace is the host's"
    );
    Ok(())
}
