//! runtime-spec 1.2/1.3 fields: `process.execCPUAffinity`, `linux.intelRdt` where resctrl is
//! absent, `linux.netDevices`, `linux.memoryPolicy`, `linux.personality`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use super::{read_trim, WAIT_FOR_GO};
use crate::context::Ctx;
use crate::harness::{Test, TestResult};
use crate::{ensure, ensure_eq, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        exec_cpu_affinity,
        exec_cpu_affinity_errors,
        intel_rdt_without_resctrl,
        net_devices_move,
        net_devices_errors,
        net_devices_in_a_user_namespace,
        memory_policy,
        memory_policy_two_nodes,
        memory_policy_errors,
        personality,
    ]
}

/// `Cpus_allowed_list` of a process's status text.
fn cpus_allowed(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// runc 1.3 has execCPUAffinity; the tests need CPUs 0 and 1 online.
fn need_exec_cpu_affinity(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 3) {
        skip!("runc before 1.3 predates process.execCPUAffinity (runtime-spec 1.2.1)");
    }
    let online = read_trim("/sys/devices/system/cpu/online".as_ref())?;
    if !(online.starts_with("0-") || online.starts_with("0,1")) {
        skip!("needs CPUs 0 and 1 online (online: {online})");
    }
    Ok(())
}

/// Write a process.json running `grep Cpus_allowed_list` with the given execCPUAffinity.
fn process_json(dir: &std::path::Path, affinity: serde_json::Value) -> Result<String, String> {
    let p = dir.join("process.json");
    let spec = json!({"args": ["/bin/grep", "Cpus_allowed_list", "/proc/self/status"],
        "cwd": "/", "env": ["PATH=/bin:/usr/bin"], "execCPUAffinity": affinity});
    fs::write(&p, spec.to_string()).map_err(|e| e.to_string())?;
    Ok(p.to_string_lossy().into_owned())
}

/// config.json's lists are not applied to init (runtime-spec: "not applicable to the
/// container's init process") but to every exec; an exec's own lists replace them; `initial`
/// alone stays the process's affinity (the kernel keeps the requested mask through the cpuset
/// move), `final` is what the process ends with.
fn exec_cpu_affinity(ctx: &Ctx) -> TestResult {
    need_exec_cpu_affinity(ctx)?;
    let host = cpus_allowed(&fs::read_to_string("/proc/self/status")?);
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.cfg.set(
        "/process/execCPUAffinity",
        json!({"initial": "0", "final": "1"}),
    );
    b.run_detached().ok()?;
    let init = fs::read_to_string(format!("/proc/{}/status", b.pid()?))?;
    ensure_eq!(cpus_allowed(&init), host, "init's Cpus_allowed_list");
    let rt = &ctx.rt;
    let out = rt
        .exec(&[
            "exec",
            &b.id,
            "grep",
            "Cpus_allowed_list",
            "/proc/self/status",
        ])
        .ok()?;
    ensure_eq!(
        cpus_allowed(&out.stdout),
        "1",
        "exec with config.json's lists (final 1)"
    );
    // Before Linux 6.2 a cpuset move resets the affinity to the cpuset's CPUs (6.2 keeps the
    // mask the process asked for): `initial` alone does not outlive the cgroup join there.
    let initial_kept = if kernel_at_least(6, 2) {
        "1"
    } else {
        host.as_str()
    };
    for (affinity, want) in [
        (json!({"initial": "1"}), initial_kept),
        (json!({"initial": "1", "final": "0"}), "0"),
        (json!({"final": "0-1"}), "0-1"),
        (json!({"initial": " 0, 1,"}), "0-1"),
        (json!({"final": ""}), "1"),
    ] {
        let p = process_json(&b.dir, affinity.clone())?;
        let out = rt.exec(&["exec", "--process", &p, &b.id]).ok()?;
        ensure_eq!(
            cpus_allowed(&out.stdout),
            want,
            format!("exec --process with execCPUAffinity {affinity}")
        );
    }
    fs::write(b.dir.join("shared/go"), "")?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// A CPU that is not online fails the exec and names the list; a list that is not one fails
/// create already, although init does not use it.
fn exec_cpu_affinity_errors(ctx: &Ctx) -> TestResult {
    need_exec_cpu_affinity(ctx)?;
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.run_detached().ok()?;
    let rt = &ctx.rt;
    for (affinity, name) in [
        (json!({"initial": "1000"}), "initial"),
        (json!({"final": "1000"}), "final"),
    ] {
        let p = process_json(&b.dir, affinity)?;
        let out = rt.exec(&["exec", "--process", &p, &b.id]).failed()?;
        out.stderr_mentions(name)?;
        if !rt.is_runc() {
            out.stderr_mentions(&format!("process.execCPUAffinity.{name}"))?;
        }
    }
    let p = process_json(&b.dir, json!({"initial": "1-0"}))?;
    let out = rt.exec(&["exec", "--process", &p, &b.id]).failed()?;
    out.stderr_mentions("1-0")?;
    ensure!(b.status().as_deref() == Some("running"), "still running");
    fs::write(b.dir.join("shared/go"), "")?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    drop(b);

    let mut b = ctx.bundle()?;
    b.cfg.args(&["true"]);
    b.cfg
        .set("/process/execCPUAffinity", json!({"final": "2-1"}));
    let out = b.run(&[]).failed()?;
    out.stderr_mentions("final")?;
    out.stderr_mentions("2-1")?;
    b.ensure_clean()
}

/// Is a resctrl filesystem mounted (in the suite's mount namespace, a copy of the host's)?
fn resctrl_mounted() -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|t| t.lines().any(|l| l.contains(" - resctrl ")))
        .unwrap_or(false)
}

/// Without resctrl, a schema is refused with runc's words (CAT, MBA); berth refuses any
/// `linux.intelRdt` (the runtime-spec: "If no mounted resctrl pseudo-filesystem is available
/// ... the runtime MUST generate an error"), where runc 1.3 runs a closID-only container
/// without RDT. Nothing is left behind.
fn intel_rdt_without_resctrl(ctx: &Ctx) -> TestResult {
    if resctrl_mounted() {
        skip!("resctrl is mounted here: the test is about a host without it");
    }
    let mut cases = vec![
        (
            json!({"l3CacheSchema": "L3:0=f"}),
            "Intel RDT/CAT is not enabled",
        ),
        (
            json!({"memBwSchema": "MB:0=50"}),
            "Intel RDT/MBA is not enabled",
        ),
    ];
    if !ctx.rt.is_runc() {
        cases.push((
            json!({"closID": "g"}),
            "Intel RDT is not supported or enabled",
        ));
        cases.push((json!({}), "linux.intelRdt"));
    }
    for (rdt, want) in cases {
        let mut b = ctx.bundle()?;
        b.cfg.args(&["true"]);
        b.cfg.set("/linux/intelRdt", rdt.clone());
        let out = b.run(&[]).failed()?;
        out.stderr_mentions(want)?;
        if !ctx.rt.is_runc() {
            out.stderr_mentions("no resctrl filesystem is mounted")?;
        }
        ensure!(
            b.status().is_none(),
            "no container after the refusal of {rdt}"
        );
        b.ensure_clean()?;
    }
    Ok(())
}

/// A network namespace of the test's own, kept by a bind mount on a file in the suite's private
/// mount namespace: its veths never touch the host's network. Unmounted (and so freed) on drop.
struct TestNetns {
    path: PathBuf,
}

impl TestNetns {
    fn new(ctx: &Ctx) -> Result<TestNetns, crate::harness::Failure> {
        let path = ctx.scratch_dir("netns")?.join("net");
        fs::File::create(&path)?;
        let st = Command::new("unshare")
            .arg(format!("--net={}", path.display()))
            .arg("true")
            .status()?;
        ensure!(st.success(), "unshare --net={} failed", path.display());
        Ok(TestNetns { path })
    }

    /// `ip ARGS` in the namespace; its output, or why it failed.
    fn ip(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .arg("--")
            .arg("ip")
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn has(&self, dev: &str) -> bool {
        self.ip(&["link", "show", "dev", dev]).is_ok()
    }

    /// The runtime, run in the namespace.
    fn wrapper(&self) -> [String; 3] {
        [
            "nsenter".into(),
            format!("--net={}", self.path.display()),
            "--".into(),
        ]
    }

    /// Run `args` of the runtime in the namespace.
    fn runtime(&self, ctx: &Ctx, args: &[&str]) -> crate::runtime::Out {
        let w = self.wrapper();
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        ctx.rt.exec_wrapped(&w, args, crate::runtime::cmd_timeout())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn need_net_devices(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc() {
        skip!("runc before 1.4 predates linux.netDevices (runtime-spec 1.3); it ignores the field");
    }
    Ok(())
}

/// Two veth ends move into the container: one renamed, one by a `%d` template. The renamed
/// one keeps its permanent global addresses (IPv4 and IPv6) and not the others (one with a
/// lifetime, one of link scope), and both are up; the test's namespace no longer has them.
/// After delete the kernel has destroyed them with the container's namespace (and their
/// peers with them); berth moved nothing back.
fn net_devices_move(ctx: &Ctx) -> TestResult {
    need_net_devices(ctx)?;
    let ns = TestNetns::new(ctx)?;
    for cmd in [
        &["link", "add", "v0", "type", "veth", "peer", "name", "v1"][..],
        &["link", "add", "v2", "type", "veth", "peer", "name", "v3"],
        &["addr", "add", "10.99.0.1/24", "dev", "v0"],
        &["addr", "add", "fd99::1/64", "dev", "v0", "nodad"],
        &[
            "addr",
            "add",
            "10.98.0.1/24",
            "dev",
            "v0",
            "valid_lft",
            "100",
            "preferred_lft",
            "100",
        ],
        &[
            "addr",
            "add",
            "169.254.5.5/16",
            "dev",
            "v0",
            "scope",
            "link",
        ],
    ] {
        ns.ip(cmd)
            .map_err(|e| format!("ip {}: {e}", cmd.join(" ")))?;
    }
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.cfg.set(
        "/linux/netDevices",
        json!({"v0": {"name": "ctr0"}, "v2": {"name": "ct%d"}}),
    );
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    ns.runtime(ctx, &["run", "--detach", "--bundle", &dir, &b.id])
        .ok()?;
    let out = ctx
        .rt
        .exec(&[
            "exec",
            &b.id,
            "sh",
            "-c",
            "echo flags $(cat /sys/class/net/ctr0/flags) $(cat /sys/class/net/ct0/flags); \
             echo devs $(ls /sys/class/net); ip -o addr show dev ctr0",
        ])
        .ok()?;
    let text = out.stdout;
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix("flags "))
        .unwrap_or("");
    let up =
        |f: &str| u32::from_str_radix(f.trim_start_matches("0x"), 16).is_ok_and(|v| v & 1 == 1);
    let f: Vec<&str> = flags.split_whitespace().collect();
    ensure!(
        f.len() == 2 && f.iter().all(|x| up(x)),
        "ctr0 and ct0 up (IFF_UP in flags): {text}"
    );
    let devs = text
        .lines()
        .find_map(|l| l.strip_prefix("devs "))
        .unwrap_or("");
    let mut devs: Vec<&str> = devs.split_whitespace().collect();
    devs.sort_unstable();
    ensure_eq!(devs, ["ct0", "ctr0", "lo"], "devices in the container");
    for want in ["inet 10.99.0.1/24", "inet6 fd99::1/64"] {
        ensure!(text.contains(want), "ctr0 keeps {want}: {text}");
    }
    for not in ["10.98.0.1", "169.254.5.5"] {
        ensure!(
            !text.contains(not),
            "ctr0 must not get {not} (not permanent, or not global): {text}"
        );
    }
    ensure!(
        !ns.has("v0") && !ns.has("v2"),
        "v0 and v2 left the test's namespace"
    );
    ensure!(
        ns.has("v1") && ns.has("v3"),
        "the peers stay in the test's namespace"
    );
    fs::write(b.dir.join("shared/go"), "")?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    ensure!(
        crate::harness::wait_until(std::time::Duration::from_secs(10), || !ns.has("v1")
            && !ns.has("v3")
            && !ns.has("v0")),
        "the veths are destroyed with the container's namespace (v1 or v3 still there, or v0 came back): {:?}",
        ns.ip(&["-o", "link"])
    );
    b.ensure_clean()
}

/// With a user namespace (the container's network namespace is owned by it), the device moves
/// the same way, with its address, and is up.
fn net_devices_in_a_user_namespace(ctx: &Ctx) -> TestResult {
    need_net_devices(ctx)?;
    let ns = TestNetns::new(ctx)?;
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])?;
    ns.ip(&["addr", "add", "10.97.0.1/24", "dev", "v0"])?;
    let mut b = ctx.bundle()?;
    super::map_to_userns(&mut b)?;
    b.cfg
        .sh("echo flags $(cat /sys/class/net/ctr0/flags); ip -o addr show dev ctr0");
    b.cfg
        .set("/linux/netDevices", json!({"v0": {"name": "ctr0"}}));
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    let out = ns.runtime(ctx, &["run", "--bundle", &dir, &b.id]).ok()?;
    ensure!(
        out.stdout.contains("inet 10.97.0.1/24"),
        "ctr0 keeps its address: {}",
        out.stdout
    );
    let flags = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("flags 0x"))
        .and_then(|f| u32::from_str_radix(f.trim(), 16).ok());
    ensure!(
        flags.is_some_and(|f| f & 1 == 1),
        "ctr0 is up: {}",
        out.stdout
    );
    ensure!(
        crate::harness::wait_until(std::time::Duration::from_secs(10), || !ns.has("v1")),
        "the veth went with the container's namespace"
    );
    b.ensure_clean()
}

/// Refusals name the field: no network namespace (config), a device that does not exist, a
/// name taken in the container (`lo`); a device that could not move stays where it was.
fn net_devices_errors(ctx: &Ctx) -> TestResult {
    need_net_devices(ctx)?;
    let ns = TestNetns::new(ctx)?;
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])?;
    let cases: [(serde_json::Value, bool, &[&str]); 5] = [
        // Every device is checked before any moves: v0 (first in order) must not be stranded
        // in the container by a later device that is missing.
        (
            json!({"v0": {}, "zz9": {}}),
            true,
            &["linux.netDevices[", "zz9", "no network device"],
        ),
        (
            json!({"v0": {}}),
            false,
            &["linux.netDevices", "network namespace"],
        ),
        (
            json!({"nosuch0": {}}),
            true,
            &["linux.netDevices[", "nosuch0", "no network device"],
        ),
        (
            json!({"v0": {"name": "lo"}}),
            true,
            &["linux.netDevices[", "v0", "there already"],
        ),
        (
            json!({"v0": {"name": "a b"}}),
            true,
            &["linux.netDevices[", "].name", "blank"],
        ),
    ];
    for (devices, netns, wants) in cases {
        let mut b = ctx.bundle()?;
        b.cfg.args(&["true"]);
        if !netns {
            b.cfg.ns_remove("network");
        }
        b.cfg.set("/linux/netDevices", devices.clone());
        b.write_config()?;
        let dir = b.dir.to_string_lossy().into_owned();
        let out = ns
            .runtime(ctx, &["run", "--bundle", &dir, &b.id])
            .failed()?;
        for w in wants {
            out.stderr_mentions(w)?;
        }
        ensure!(
            ns.has("v0"),
            "v0 stays in the test's namespace after {devices}"
        );
        b.ensure_clean()?;
    }
    Ok(())
}

fn need_memory_policy(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc() {
        skip!(
            "runc before 1.4 predates linux.memoryPolicy (runtime-spec 1.3); it ignores the field"
        );
    }
    if !std::path::Path::new("/proc/self/numa_maps").exists() {
        skip!("no /proc/self/numa_maps: the kernel has no NUMA support");
    }
    Ok(())
}

/// The task policy as /proc/PID/numa_maps shows it on a mapping without a policy of its own
/// (the first mapping: the program's text).
const SHOW_POLICY: &str = "echo policy $(head -1 /proc/self/numa_maps | cut -d' ' -f2)";

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let u = nix::sys::utsname::uname().ok();
    let rel = u
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

/// Each mode reaches the container's process (numa_maps shows the task policy: `bind:0`,
/// `interleave:0`, ...), flags too (`bind=static:0`), and an exec'd process gets it as well.
/// Node 0 only (this host has one node): two nodes are `memory_policy_two_nodes`.
fn memory_policy(ctx: &Ctx) -> TestResult {
    need_memory_policy(ctx)?;
    for (policy, want) in [
        (json!({"mode": "MPOL_BIND", "nodes": "0"}), "bind:0"),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
            "interleave:0",
        ),
        (json!({"mode": "MPOL_PREFERRED", "nodes": "0"}), "prefer:0"),
        (
            json!({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}),
            "prefer (many):0",
        ),
        (
            json!({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0"}),
            "weighted interleave:0",
        ),
        (json!({"mode": "MPOL_LOCAL"}), "local"),
        (json!({"mode": "MPOL_DEFAULT"}), "default"),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
            "bind=static:0",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}),
            "bind=relative:0",
        ),
    ] {
        // Modes newer than the kernel: PREFERRED_MANY came with 5.15, WEIGHTED_INTERLEAVE with
        // 6.9 (the kernel refuses them before, and berth's error says so).
        let mode = policy["mode"].as_str().unwrap_or_default();
        if (mode == "MPOL_PREFERRED_MANY" && !kernel_at_least(5, 15))
            || (mode == "MPOL_WEIGHTED_INTERLEAVE" && !kernel_at_least(6, 9))
        {
            continue;
        }
        let mut b = ctx.bundle()?;
        b.cfg.sh(SHOW_POLICY);
        b.cfg.set("/linux/memoryPolicy", policy.clone());
        let out = b.run_ok()?;
        // numa_maps cuts "prefer (many):0" at the blank: compare what cut keeps.
        let first = want.split(' ').next().unwrap_or(want);
        ensure_eq!(
            out.trim(),
            format!("policy {first}"),
            format!("task policy of the container's process with {policy}")
        );
    }
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(WAIT_FOR_GO);
    b.cfg.set(
        "/linux/memoryPolicy",
        json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
    );
    b.run_detached().ok()?;
    let out = ctx
        .rt
        .exec(&["exec", &b.id, "sh", "-c", SHOW_POLICY])
        .ok()?;
    ensure_eq!(
        out.stdout.trim(),
        "policy interleave:0",
        "an exec'd process's policy"
    );
    fs::write(b.dir.join("shared/go"), "")?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// The task policy, then the nodes of the anonymous pages (heap, stack, anonymous maps; not
/// a file's, whose page cache may be anywhere) of the process that reads numa_maps: `N1`.
const SHOW_PAGE_NODES: &str = "echo policy $(head -1 /proc/self/numa_maps | cut -d' ' -f2); \
    grep -v file= /proc/self/numa_maps | grep -E 'anon=|heap|stack' | tr ' ' '\\n' | grep -E '^N[0-9]+=' | cut -d= -f1 | sort -u | tr '\\n' ' '";

/// On two nodes (the VM passes boot with VM_NUMA=2): the policy's nodes are the ones shown,
/// and the container's process's own pages are where the policy puts them: all on node 1
/// when bound to it, all on node 0 when bound to 0 (so the first check is not luck), an
/// interleave over both shows both nodes.
fn memory_policy_two_nodes(ctx: &Ctx) -> TestResult {
    need_memory_policy(ctx)?;
    let online = read_trim("/sys/devices/system/node/online".as_ref())?;
    if online != "0-1" {
        skip!("needs NUMA nodes 0 and 1 online (online: {online}; hack/vm-run.sh: VM_NUMA=2)");
    }
    for (policy, want) in [
        (
            json!({"mode": "MPOL_BIND", "nodes": "1"}),
            "policy bind:1\nN1",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0"}),
            "policy bind:0\nN0",
        ),
        (
            json!({"mode": "MPOL_PREFERRED", "nodes": "1"}),
            "policy prefer:1\nN1",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0-1", "flags": ["MPOL_F_STATIC_NODES"]}),
            "policy bind=static:0-1\n",
        ),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0,1"}),
            "policy interleave:0-1\n",
        ),
    ] {
        let mut b = ctx.bundle()?;
        b.cfg.sh(SHOW_PAGE_NODES);
        b.cfg.set("/linux/memoryPolicy", policy.clone());
        let out = b.run_ok()?;
        let got = out.trim();
        ensure!(
            got.starts_with(want),
            "with {policy}: want {want:?} (policy, then the nodes of the process's private pages), got {got:?}"
        );
        if want.ends_with('\n') {
            // Bound to both or interleaved: the pages may be on either, but on no other.
            let nodes = got.lines().nth(1).unwrap_or("").trim();
            ensure!(
                !nodes.is_empty() && nodes.split(' ').all(|n| n == "N0" || n == "N1"),
                "with {policy}: pages on {nodes:?}"
            );
        } else {
            ensure_eq!(got, want, format!("with {policy}: the pages' nodes"));
        }
        b.ensure_clean()?;
    }
    Ok(())
}

/// A node that is not online is the kernel's EINVAL, at create, with the field named; a
/// policy the kernel would refuse anyway is refused with its reason before anything is made.
fn memory_policy_errors(ctx: &Ctx) -> TestResult {
    need_memory_policy(ctx)?;
    let online = read_trim("/sys/devices/system/node/online".as_ref())?;
    let absent = if online == "0" { "1" } else { "1000" };
    for (policy, wants) in [
        (
            json!({"mode": "MPOL_BIND", "nodes": absent}),
            &[
                "linux.memoryPolicy",
                "set_mempolicy(MPOL_BIND",
                "invalid argument",
            ][..],
        ),
        (
            json!({"mode": "MPOL_BIND"}),
            &["linux.memoryPolicy.nodes", "needs at least one node"],
        ),
        (
            json!({"mode": "MPOL_LOCAL", "nodes": "0"}),
            &["linux.memoryPolicy.nodes", "takes no nodes"],
        ),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}),
            &["linux.memoryPolicy.flags", "MPOL_F_NUMA_BALANCING"],
        ),
        (json!({"mode": "MPOL_NOPE"}), &["linux.memoryPolicy.mode"]),
    ] {
        let mut b = ctx.bundle()?;
        b.cfg.args(&["true"]);
        b.cfg.set("/linux/memoryPolicy", policy);
        let out = b.run(&[]).failed()?;
        for w in wants {
            out.stderr_mentions(w)?;
        }
        b.ensure_clean()?;
    }
    Ok(())
}

/// `linux.personality`: LINUX32 makes `uname -m` i686 in the container; flags (the spec
/// defines no values yet) are ignored with a warning, as runc 1.2+ ignores them, so that a
/// config runc runs runs here too.
fn personality(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 2) {
        skip!("runc before 1.2 ignores linux.personality");
    }
    if std::env::consts::ARCH != "x86_64" {
        skip!("LINUX32 on x86_64 only");
    }
    let mut b = ctx.bundle()?;
    b.cfg.sh("uname -m");
    b.cfg
        .set("/linux/personality", json!({"domain": "LINUX32"}));
    ensure_eq!(b.run_ok()?.trim(), "i686", "uname -m with LINUX32");
    b.ensure_clean()?;
    let mut b = ctx.bundle()?;
    b.cfg.sh("uname -m");
    b.cfg.set(
        "/linux/personality",
        json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}),
    );
    let out = b.run(&[]).ok()?;
    ensure_eq!(
        out.stdout.trim(),
        "x86_64",
        "uname -m with LINUX and a flag"
    );
    ensure!(
        out.stderr.contains("warn")
            && out.stderr.contains("personality")
            && out.stderr.contains("ADDR_NO_RANDOMIZE"),
        "no warning that the flags are ignored: {:?}",
        out.stderr
    );
    b.ensure_clean()
}
