//! Cgroup resources (`linux.resources`): each field is read back from the container's own
//! cgroup files on the layout the host has, and felt in behaviour where it can be (an OOM kill,
//! a fork that fails, a device that cannot be opened, throttled CPU and I/O); then `update`,
//! `pause`/`resume`, `kill --all` and `events`.
//!
//! The layout is found by statfs(2) of /sys/fs/cgroup (`stat -f`): cgroup2 there is a pure v2
//! host, anything else (tmpfs) has v1 hierarchies, each found in /proc/self/mountinfo by its
//! controller (hybrid hosts also have a cgroup2 mount, usually /sys/fs/cgroup/unified). The
//! container's directory is its `cgroupsPath` below each hierarchy's mount point.
//!
//! runc's behaviour is the reference. Where runc 1.1 and berth legitimately differ, the test is
//! skipped for the one that differs and says why.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{key_values, wait_file, WAIT_FOR_GO};
use crate::context::{processes_of, Ctx};
use crate::fixture::Bundle;
use crate::harness::{wait_until, Failure, Test, TestResult};
use crate::runtime::{cmd_timeout, Out};
use crate::{ensure, ensure_eq, fail, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        cgroup_dirs_follow_cgroups_path,
        cgroup_every_process_in_every_hierarchy,
        cgroup_hierarchies_moved_mountinfo_order,
        cgroup_memory_limit_oom_kill,
        cgroup_memory_reservation,
        cgroup_memory_swap,
        cgroup_memory_swappiness,
        cgroup_memory_disable_oom_killer,
        cgroup_cpu_shares,
        cgroup_cpu_quota_period_throttles,
        cgroup_cpu_burst,
        cgroup_cpuset_cpus_mems,
        cgroup_pids_limit_fork_fails,
        cgroup_devices_denied_device_cannot_be_opened,
        cgroup_devices_allow_rule_access,
        cgroup_devices_linux_devices_add_no_rule,
        cgroup_devices_rules_are_emulated,
        cgroup_devices_wildcard_hole_is_refused,
        cgroup_devices_allow_all_then_deny,
        cgroup_blkio_weight,
        cgroup_blkio_throttle_bps,
        cgroup_hugepage_limits,
        cgroup_network_class_id_priorities,
        cgroup_unified,
        cgroup_zero_values_are_unset,
        cgroup_minus_one_is_unlimited,
        cgroup_create_refuses_frozen_cgroup,
        cgroup_create_refuses_non_empty_cgroup,
        cgroup_delete_force_removes_sub_cgroups,
        cgroup_update_flags,
        cgroup_update_resources_stdin,
        cgroup_update_minus_one,
        cgroup_update_failure_restores_resources,
        cgroup_update_cpu_period_quota_order,
        cgroup_update_memory_swap_order,
        cgroup_pause_resume,
        cgroup_exec_sub_cgroup,
        cgroup_exec_ignore_paused,
        cgroup_kill_all,
        cgroup_events_stats,
        cgroup_events_oom,
    ]
}

const MIB: i64 = 1 << 20;

/// A memory hog that touches its memory from user space (awk doubling a string), so that the
/// memory cgroup's OOM handling sees user faults (a `read()` into a buffer would only fail
/// with EFAULT when the OOM killer is disabled).
const MEMORY_HOG: &str = "exec awk 'BEGIN { s = \"x\"; while (1) s = s s }'";

// ---------------------------------------------------------------------------------------------
// The host's cgroup layout and the container's cgroup files.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// cgroup v1 hierarchies (legacy or hybrid).
    V1,
    /// One cgroup2 hierarchy at /sys/fs/cgroup.
    V2,
}

const CGROUP2_SUPER_MAGIC: &str = "63677270";
const TMPFS_MAGIC: &str = "1021994";

/// The layout, by statfs(2) of /sys/fs/cgroup (`stat -f -c %t` prints `f_type` in hex).
fn layout() -> Result<Layout, Failure> {
    static LAYOUT: OnceLock<Result<Layout, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let out = Command::new("stat")
                .args(["-f", "-c", "%t", "/sys/fs/cgroup"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run `stat -f /sys/fs/cgroup`: {e}"))?;
            let magic = String::from_utf8_lossy(&out.stdout).trim().to_string();
            match magic.as_str() {
                CGROUP2_SUPER_MAGIC => Ok(Layout::V2),
                TMPFS_MAGIC => Ok(Layout::V1),
                _ => Err(format!(
                    "/sys/fs/cgroup has filesystem magic {magic:?}: neither cgroup2 nor tmpfs"
                )),
            }
        })
        .clone()
        .map_err(Failure::Fail)
}

/// The mounts of this mount namespace.
fn mounts() -> Vec<crate::mountinfo::Mount> {
    crate::mountinfo::parse(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// Mount point of the v1 hierarchy that has controller `ctrl`.
fn v1_mount(ctrl: &str) -> Option<PathBuf> {
    mounts()
        .into_iter()
        .rev()
        .find(|m| m.fstype == "cgroup" && m.has_super_opt(ctrl))
        .map(|m| PathBuf::from(m.mount_point))
}

/// Mount point of a cgroup2 hierarchy, if any (the unified one on hybrid hosts).
fn v2_mount() -> Option<PathBuf> {
    mounts()
        .into_iter()
        .rev()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.mount_point))
}

/// Controllers of a cgroup2 directory's `cgroup.subtree_control` (enabled for its children).
fn subtree_control(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("cgroup.subtree_control"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The cgroup of one container: its `cgroupsPath` below the host's hierarchies.
struct Cg {
    layout: Layout,
    /// The absolute `cgroupsPath` (`/berth-test/<id>`).
    path: String,
}

impl Cg {
    fn of(b: &Bundle) -> Result<Cg, Failure> {
        let path = b
            .cfg
            .0
            .pointer("/linux/cgroupsPath")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        ensure!(
            path.starts_with('/'),
            "the test needs an absolute cgroupsPath, not {path:?}"
        );
        Ok(Cg {
            layout: layout()?,
            path,
        })
    }

    fn v1(&self) -> bool {
        self.layout == Layout::V1
    }

    /// The container's directory in the hierarchy of `ctrl` (v2: the one directory).
    fn dir(&self, ctrl: &str) -> Result<PathBuf, Failure> {
        let rel = self.path.trim_start_matches('/');
        match self.layout {
            Layout::V2 => Ok(Path::new("/sys/fs/cgroup").join(rel)),
            Layout::V1 => match v1_mount(ctrl) {
                Some(m) => Ok(m.join(rel)),
                None => Err(Failure::Fail(format!(
                    "no cgroup v1 hierarchy with the {ctrl} controller is mounted"
                ))),
            },
        }
    }

    fn file(&self, ctrl: &str, file: &str) -> Result<PathBuf, Failure> {
        Ok(self.dir(ctrl)?.join(file))
    }

    fn has(&self, ctrl: &str, file: &str) -> bool {
        self.file(ctrl, file).is_ok_and(|p| p.exists())
    }

    fn read(&self, ctrl: &str, file: &str) -> Result<String, Failure> {
        let p = self.file(ctrl, file)?;
        fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .map_err(|e| Failure::Fail(format!("read {}: {e}", p.display())))
    }

    /// Require the file to read `want` (trimmed).
    fn expect(&self, ctrl: &str, file: &str, want: &str) -> TestResult {
        let got = self.read(ctrl, file)?;
        ensure_eq!(got, want, format!("{}", self.file(ctrl, file)?.display()));
        Ok(())
    }

    /// A `key value` line of a flat-keyed file (`cpu.stat`, `memory.oom_control`).
    fn key(&self, ctrl: &str, file: &str, key: &str) -> Result<u64, Failure> {
        let text = self.read(ctrl, file)?;
        key_values(&text)
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Failure::Fail(format!("no {key:?} in {file}: {text:?}")))
    }

    /// Require process `pid` to be in this cgroup, for `ctrl`'s hierarchy (v2: `0::`).
    fn expect_member(&self, pid: u32, ctrl: &str) -> TestResult {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        let line = text.lines().find(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls) = (f.next(), f.next().unwrap_or(""));
            match self.layout {
                Layout::V2 => l.starts_with("0::"),
                Layout::V1 => ctrls.split(',').any(|c| c == ctrl),
            }
        });
        let path = line.and_then(|l| l.splitn(3, ':').nth(2)).unwrap_or("");
        ensure_eq!(
            path,
            self.path.as_str(),
            format!("cgroup of pid {pid} for {ctrl} (/proc/{pid}/cgroup {text:?})")
        );
        Ok(())
    }
}

/// `(v1 file, v2 file)` by layout.
fn pick<'a>(cg: &Cg, v1: &'a str, v2: &'a str) -> &'a str {
    if cg.v1() {
        v1
    } else {
        v2
    }
}

// ---------------------------------------------------------------------------------------------
// Running the runtime in the background (or with stdin), with a guard that stops it.

/// A runtime command running in the background; its output goes to files in the bundle.
/// Dropping it kills the command (our own child, by pid) and reaps it.
struct Bg {
    cmd: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Bg {
    /// Start `<runtime> --root R ARGS...`; `input` (if any) is written to its stdin, which is
    /// then closed (otherwise stdin is /dev/null).
    fn start(b: &Bundle, name: &str, args: &[&str], input: Option<&str>) -> Result<Bg, Failure> {
        let rt = &b.ctx.rt;
        let out = b.dir.join(format!("{name}.out"));
        let err = b.dir.join(format!("{name}.err"));
        let mut cmd = Command::new(&rt.path);
        cmd.arg("--root")
            .arg(&rt.root)
            .args(args)
            .stdout(File::create(&out)?)
            .stderr(File::create(&err)?)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn()?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            // Dropping `stdin` closes it: the runtime sees EOF.
            stdin.write_all(text.as_bytes())?;
        }
        Ok(Bg {
            cmd: format!("{} {}", rt.name(), args.join(" ")),
            child,
            out,
            err,
        })
    }

    /// What the command wrote to stdout so far.
    fn stdout_now(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Wait for the command (killed after `timeout`) and collect its output.
    fn wait(mut self, timeout: Duration) -> Out {
        let (status, timed_out) = wait_child(&mut self.child, timeout);
        Out {
            cmd: self.cmd.clone(),
            code: if timed_out {
                None
            } else {
                status.and_then(|s| s.code())
            },
            stdout: fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: fs::read_to_string(&self.err).unwrap_or_default(),
            timed_out,
            hang: String::new(),
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        // Not yet reaped, so the pid cannot have been reused.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait for `child` until `timeout`, then kill it; `(status, timed out)`.
fn wait_child(child: &mut Child, timeout: Duration) -> (Option<ExitStatus>, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return (Some(st), false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                return (child.wait().ok(), true);
            }
            Err(_) => return (None, false),
        }
    }
}

/// `run --bundle DIR ID` in the foreground, started in the background (config.json written).
fn spawn_run(b: &Bundle) -> Result<Bg, Failure> {
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    Bg::start(b, "run", &["run", "--bundle", &dir, &b.id], None)
}

/// Run the runtime to completion with `input` on stdin.
fn exec_stdin(b: &Bundle, name: &str, args: &[&str], input: &str) -> Result<Out, Failure> {
    Ok(Bg::start(b, name, args, Some(input))?.wait(cmd_timeout()))
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

/// A detached container that touches `/shared/ready`, waits for `/shared/go`, then runs `then`.
/// Returns the shared dir once the container is ready.
fn start_waiting(b: &mut Bundle, then: &str) -> Result<PathBuf, Failure> {
    let shared = b.shared()?;
    b.cfg
        .sh(&format!("touch /shared/ready; {WAIT_FOR_GO}; {then}"));
    b.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    Ok(shared)
}

/// `create` must fail with a message mentioning one of `needles`, and leave nothing behind.
fn create_fails(b: &Bundle, needles: &[&str]) -> TestResult {
    let out = b.create(&[]).failed()?;
    let err = out.stderr.to_lowercase();
    ensure!(
        needles.iter().any(|n| err.contains(&n.to_lowercase())),
        "stderr mentions none of {needles:?}: {}",
        out.describe()
    );
    b.ensure_clean()
}

/// A cgroup v1-only field on a v2 host: berth refuses it (`create` fails naming it, nothing
/// left behind). runc 1.1 does not look at it on v2 (its fs2 manager has no swappiness,
/// disableOOMKiller or network): if runc's `create` succeeds, the test is skipped for runc.
fn v1_only_field(ctx: &Ctx, b: &Bundle, field: &str, needles: &[&str]) -> TestResult {
    if ctx.rt.is_runc() {
        let out = b.create(&[]);
        if out.success() {
            skip!(
                "cgroup v2 has no file for linux.resources.{field}: runc 1.1 ignores the field \
                 there (create succeeded) while berth refuses it with an error"
            );
        }
        out.failed()?;
        return b.ensure_clean();
    }
    create_fails(b, needles)
}

/// A v1-only memory field on cgroup v2 (swappiness, disableOOMKiller): ignored whatever its
/// value, as runc's fs2 does (docker and podman send them on any host).
fn v2_ignored_field(b: &Bundle) -> TestResult {
    b.create(&[]).ok()?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// The whole disk (`major:minor`) holding `path`, if it is on a block device.
fn block_device_of(path: &Path) -> Option<String> {
    let dev = fs::metadata(path).ok()?.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let sys = fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    // blk-throttle and the weights take whole disks only: a partition's disk is its parent.
    let disk = if sys.join("partition").exists() {
        sys.parent()?.to_path_buf()
    } else {
        sys
    };
    Some(
        fs::read_to_string(disk.join("dev"))
            .ok()?
            .trim()
            .to_string(),
    )
}

/// Seconds since boot, from /proc/uptime as the container wrote it (`"12.34"`).
fn secs(s: &str) -> Result<f64, Failure> {
    s.trim()
        .parse()
        .map_err(|_| Failure::Fail(format!("not a number of seconds: {s:?}")))
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// The container's init is in `cgroupsPath` below every mounted hierarchy (v1: each controller's).
fn cgroup_dirs_follow_cgroups_path(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    start_waiting(&mut b, "true")?;
    let pid = b.pid()?;
    let ctrls: &[&str] = if cg.v1() {
        &[
            "memory", "cpu", "cpuset", "pids", "devices", "freezer", "blkio",
        ]
    } else {
        &[""]
    };
    for ctrl in ctrls {
        if cg.v1() && v1_mount(ctrl).is_none() {
            continue;
        }
        let dir = cg.dir(ctrl)?;
        ensure!(dir.is_dir(), "{} is not a directory", dir.display());
        cg.expect_member(pid, ctrl)?;
        let procs = fs::read_to_string(dir.join("cgroup.procs"))?;
        ensure!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "init {pid} is not in {}/cgroup.procs: {procs:?}",
            dir.display()
        );
    }
    Ok(())
}

/// Every process of a container is in the container's cgroup in every hierarchy (each v1
/// hierarchy and cgroup2, which hybrid hosts have too), whichever way it got there. berth has
/// three: init born in the cgroup2 directory (CLONE_INTO_CGROUP) that joins the v1 hierarchies
/// itself; init in a new user namespace, which lacks the rights to and is moved by the runtime;
/// init forked by stage 1 (here: a namespace joined by path). The exec'd process is born in
/// the cgroup2 directory and joins the v1 ones itself, as init does.
fn cgroup_every_process_in_every_hierarchy(ctx: &Ctx) -> TestResult {
    let mut a = ctx.bundle()?;
    let cg = Cg::of(&a)?;
    start_waiting(&mut a, "true")?;
    let pid = a.pid()?;
    in_every_hierarchy(&cg, pid, "init")?;

    let pid_file = a.dir.join("exec.pid");
    ctx.rt
        .exec(&[
            "exec",
            "--detach",
            "--pid-file",
            &pid_file.to_string_lossy(),
            &a.id,
            "sleep",
            "60",
        ])
        .ok()?;
    let exec_pid: u32 = fs::read_to_string(&pid_file)?
        .trim()
        .parse()
        .map_err(|e| Failure::Fail(format!("{}: {e}", pid_file.display())))?;
    in_every_hierarchy(&cg, exec_pid, "the exec'd process")?;

    let mut b = ctx.bundle()?;
    b.cfg.ns_join("uts", &format!("/proc/{pid}/ns/uts"));
    start_waiting(&mut b, "true")?;
    in_every_hierarchy(&Cg::of(&b)?, b.pid()?, "init forked by stage 1")?;

    let mut c = ctx.bundle()?;
    super::map_to_userns(&mut c)?;
    start_waiting(&mut c, "true")?;
    in_every_hierarchy(&Cg::of(&c)?, c.pid()?, "init in a new user namespace")
}

/// Hierarchies found by the mount tree, not by mountinfo's order (issue 10 item 19). In a
/// private mount namespace of its own (a child `unshare -m --propagation private`; the test's
/// and the host's namespaces are untouched), the test puts a new tmpfs on /sys/fs holding the
/// whole /sys/fs/cgroup, moved there with `mount --move`: a moved mount keeps its id, so
/// mountinfo now lists every hierarchy before the tmpfs above it. The runtime run in that
/// namespace must still find each hierarchy (the container is in `cgroupsPath` in every one,
/// and its own cgroup mount shows them).
fn cgroup_hierarchies_moved_mountinfo_order(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg
        .sh("cat /proc/self/cgroup; echo ls: $(ls /sys/fs/cgroup)");
    b.write_config()?;
    let script = r#"set -e
t=$(mktemp -d /tmp/berth-cgmove.XXXXXX)
mount -t tmpfs -o mode=755 berth-cgmove "$t"
mkdir "$t/cgroup"
mount --move /sys/fs/cgroup "$t/cgroup"
mount --move "$t" /sys/fs
rmdir "$t"
lines=$(grep -n ' /sys/fs ' /proc/self/mountinfo | cut -d: -f1 | tail -n 1)
first=$(grep -n ' /sys/fs/cgroup' /proc/self/mountinfo | cut -d: -f1 | head -n 1)
[ "$first" -lt "$lines" ] || { echo "mountinfo order unchanged" >&2; exit 99; }
exec "$@"
"#;
    let rt = &ctx.rt;
    let dir = b.dir.to_string_lossy().into_owned();
    let out_f = b.dir.join("moved.out");
    let err_f = b.dir.join("moved.err");
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&rt.path)
        .arg("--root")
        .arg(&rt.root)
        .args(["run", "--bundle", &dir, &b.id])
        .stdin(Stdio::null())
        .stdout(File::create(&out_f)?)
        .stderr(File::create(&err_f)?)
        .spawn()?;
    let (status, timed_out) = wait_child(&mut child, cmd_timeout());
    let out = Out {
        cmd: format!("unshare -m (hierarchies moved) {} run {}", rt.name(), b.id),
        code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        stdout: fs::read_to_string(&out_f).unwrap_or_default(),
        stderr: fs::read_to_string(&err_f).unwrap_or_default(),
        timed_out,
        hang: String::new(),
    };
    ensure!(
        out.code != Some(99),
        "the test could not reorder mountinfo: {}",
        out.describe()
    );
    let out = out.ok()?;
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains(':') && !l.starts_with("ls:"))
        .collect();
    ensure!(
        !lines.is_empty(),
        "no /proc/self/cgroup: {}",
        out.describe()
    );
    for line in &lines {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        ensure_eq!(path, cg.path.as_str(), format!("cgroup line {line:?}"));
    }
    if cg.v1() {
        let ls = out
            .stdout
            .lines()
            .find(|l| l.starts_with("ls:"))
            .unwrap_or("");
        ensure!(
            ls.contains("memory") && ls.contains("cpu"),
            "the container's cgroup mount lacks the hierarchies: {ls:?}"
        );
    }
    b.ensure_clean()
}

/// Require every line of `/proc/<pid>/cgroup` to name `cg`'s path, and one to be cgroup2's
/// where a cgroup2 hierarchy is mounted.
fn in_every_hierarchy(cg: &Cg, pid: u32, who: &str) -> TestResult {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        ensure_eq!(
            path,
            cg.path.as_str(),
            format!("cgroup of {who} (pid {pid}) in {line:?}")
        );
    }
    let cgroup2 =
        cg.layout == Layout::V2 || Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists();
    ensure!(
        !cgroup2 || text.lines().any(|l| l.starts_with("0::")),
        "{who} (pid {pid}) is in no cgroup2 cgroup: {text:?}"
    );
    Ok(())
}

/// `memory.limit`: memory.limit_in_bytes / memory.max, and a container that allocates more is
/// OOM-killed (`run` exits 128+SIGKILL).
fn cgroup_memory_limit_oom_kill(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let shared = b.shared()?;
    b.cfg
        .set("/linux/resources/memory", json!({"limit": 32 * MIB}));
    b.cfg
        .sh(&format!("touch /shared/ready; {WAIT_FOR_GO}; {MEMORY_HOG}"));
    let run = spawn_run(&b)?;
    wait_file(&shared.join("ready"))?;
    cg.expect(
        "memory",
        pick(&cg, "memory.limit_in_bytes", "memory.max"),
        &(32 * MIB).to_string(),
    )?;
    fs::write(shared.join("go"), "")?;
    let out = run.wait(cmd_timeout());
    ensure_eq!(
        out.code,
        Some(137),
        format!("exit code of the OOM-killed container ({})", out.describe())
    );
    b.ensure_clean()
}

/// `memory.reservation`: memory.soft_limit_in_bytes (v1) / memory.low (v2).
fn cgroup_memory_reservation(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg.set(
        "/linux/resources/memory",
        json!({"limit": 64 * MIB, "reservation": 32 * MIB}),
    );
    start_waiting(&mut b, "true")?;
    cg.expect(
        "memory",
        pick(&cg, "memory.soft_limit_in_bytes", "memory.low"),
        &(32 * MIB).to_string(),
    )
}

/// `memory.swap` is memory+swap: memory.memsw.limit_in_bytes (v1); on v2 runc writes the swap
/// alone, swap - limit, to memory.swap.max.
fn cgroup_memory_swap(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    if cg.v1() {
        let Some(root) = v1_mount("memory") else {
            skip!("no v1 memory hierarchy is mounted");
        };
        if !root.join("memory.memsw.limit_in_bytes").exists() {
            skip!("the kernel has no swap accounting (no memory.memsw.* files)");
        }
    }
    b.cfg.set(
        "/linux/resources/memory",
        json!({"limit": 64 * MIB, "swap": 128 * MIB}),
    );
    start_waiting(&mut b, "true")?;
    if cg.v1() {
        cg.expect(
            "memory",
            "memory.memsw.limit_in_bytes",
            &(128 * MIB).to_string(),
        )?;
    } else {
        if !cg.has("memory", "memory.swap.max") {
            skip!("the kernel has no swap accounting (no memory.swap.max)");
        }
        cg.expect("memory", "memory.swap.max", &(64 * MIB).to_string())?;
    }
    cg.expect(
        "memory",
        pick(&cg, "memory.limit_in_bytes", "memory.max"),
        &(64 * MIB).to_string(),
    )
}

/// `memory.swappiness` (cgroup v1 only).
fn cgroup_memory_swappiness(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg
        .set("/linux/resources/memory", json!({"swappiness": 42}));
    if !cg.v1() {
        return v2_ignored_field(&b);
    }
    start_waiting(&mut b, "true")?;
    cg.expect("memory", "memory.swappiness", "42")
}

/// `memory.disableOOMKiller` (cgroup v1 only): memory.oom_control says so, and a container
/// over its limit is not killed but waits, under OOM.
fn cgroup_memory_disable_oom_killer(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg.set(
        "/linux/resources/memory",
        json!({"limit": 32 * MIB, "disableOOMKiller": true}),
    );
    if !cg.v1() {
        return v2_ignored_field(&b);
    }
    let shared = start_waiting(&mut b, MEMORY_HOG)?;
    ensure_eq!(
        cg.key("memory", "memory.oom_control", "oom_kill_disable")?,
        1,
        "oom_kill_disable in memory.oom_control"
    );
    fs::write(shared.join("go"), "")?;
    let mut under = 0;
    let ok = wait_until(Duration::from_secs(10), || {
        under = cg
            .key("memory", "memory.oom_control", "under_oom")
            .unwrap_or(0);
        under == 1
    });
    ensure!(ok, "the container never went under OOM (under_oom {under})");
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status of the container under OOM"
    );
    ensure_eq!(
        cg.key("memory", "memory.oom_control", "oom_kill")?,
        0,
        "oom_kill with the OOM killer disabled"
    );
    Ok(())
}

/// `cpu.shares`: cpu.shares (v1); v2 cpu.weight = 1 + (shares - 2) * 9999 / 262142.
fn cgroup_cpu_shares(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg.set("/linux/resources/cpu", json!({"shares": 512}));
    start_waiting(&mut b, "true")?;
    if cg.v1() {
        cg.expect("cpu", "cpu.shares", "512")
    } else {
        cg.expect(
            "cpu",
            "cpu.weight",
            &(1 + (512 - 2) * 9999 / 262_142).to_string(),
        )
    }
}

/// `cpu.quota`/`cpu.period`: cpu.cfs_quota_us/cpu.cfs_period_us (v1), cpu.max (v2); a busy
/// loop with 20% of a CPU gets throttled.
fn cgroup_cpu_quota_period_throttles(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg.set(
        "/linux/resources/cpu",
        json!({"quota": 20000, "period": 100_000}),
    );
    let shared = b.shared()?;
    b.cfg.sh(&format!(
        "(while :; do :; done) & touch /shared/ready; {WAIT_FOR_GO}"
    ));
    b.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    if cg.v1() {
        cg.expect("cpu", "cpu.cfs_quota_us", "20000")?;
        cg.expect("cpu", "cpu.cfs_period_us", "100000")?;
    } else {
        cg.expect("cpu", "cpu.max", "20000 100000")?;
    }
    let mut n = 0;
    let ok = wait_until(Duration::from_secs(5), || {
        n = cg.key("cpu", "cpu.stat", "nr_throttled").unwrap_or(0);
        n >= 3
    });
    ensure!(ok, "a busy loop was throttled only {n} times in 5 s");
    Ok(())
}

/// `cpu.burst`: cpu.cfs_burst_us (v1), cpu.max.burst (v2), where the kernel has it.
fn cgroup_cpu_burst(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 2) {
        skip!(
            "runc 1.1 predates linux.resources.cpu.burst (runtime-spec 1.1, runc 1.2): it \
             ignores the field (the burst file stays 0)"
        );
    }
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let file = pick(&cg, "cpu.cfs_burst_us", "cpu.max.burst");
    if cg.v1() && !v1_mount("cpu").is_some_and(|m| m.join(file).exists()) {
        skip!("the kernel has no {file} (CONFIG_CFS_BANDWIDTH burst, Linux 5.14)");
    }
    b.cfg.set(
        "/linux/resources/cpu",
        json!({"quota": 20000, "period": 100_000, "burst": 10000}),
    );
    start_waiting(&mut b, "true")?;
    if !cg.has("cpu", file) {
        skip!("the kernel has no {file} (Linux 5.14)");
    }
    cg.expect("cpu", file, "10000")
}

/// `cpu.cpus`/`cpu.mems`: cpuset.cpus/cpuset.mems, and the container's affinity.
fn cgroup_cpuset_cpus_mems(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg
        .set("/linux/resources/cpu", json!({"cpus": "0", "mems": "0"}));
    let shared = start_waiting(
        &mut b,
        "grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status > /shared/status",
    )?;
    cg.expect("cpuset", "cpuset.cpus", "0")?;
    cg.expect("cpuset", "cpuset.mems", "0")?;
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    let status = fs::read_to_string(shared.join("status"))?;
    let kv: Vec<(&str, &str)> = status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    ensure_eq!(
        kv,
        vec![("Cpus_allowed_list", "0"), ("Mems_allowed_list", "0")],
        "the container's /proc/self/status"
    );
    Ok(())
}

/// `pids.limit`: pids.max, and a loop starting background processes cannot get past it (the
/// shell's fork fails).
fn cgroup_pids_limit_fork_fails(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg.set("/linux/resources/pids", json!({"limit": 8}));
    let shared = start_waiting(
        &mut b,
        "exec 2>/shared/err; i=0; while [ $i -lt 30 ]; do sleep 30 & i=$((i+1)); \
         echo $i > /shared/n; done; touch /shared/all",
    )?;
    cg.expect("pids", "pids.max", "8")?;
    let current: u64 = cg.read("pids", "pids.current")?.parse().unwrap_or(0);
    ensure!(current >= 1, "pids.current is {current}");
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    let n: u32 = fs::read_to_string(shared.join("n"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    let err = fs::read_to_string(shared.join("err")).unwrap_or_default();
    ensure!(
        !shared.join("all").exists() && n < 8,
        "{n} background processes were started with pids.limit 8 (stderr {err:?})"
    );
    ensure!(
        err.contains("fork"),
        "the shell did not report a failed fork: stderr {err:?}, {n} started"
    );
    Ok(())
}

/// Add CAP_MKNOD to the container's bounding, effective and permitted sets.
fn add_mknod(b: &mut Bundle) {
    for set in ["bounding", "effective", "permitted"] {
        b.cfg
            .push(&format!("/process/capabilities/{set}"), json!("CAP_MKNOD"));
    }
}

/// A script that makes /dev/k (c 1:11, /dev/kmsg) and reports `mknod`, `read` and `write`
/// opens of it (`ok` or the error), and a write to /dev/null. Nothing is read or written.
const DEVICE_PROBE: &str = "mknod /dev/k c 1 11 && echo mknod=ok; \
     if e=$(head -c 0 /dev/k 2>&1); then echo read=ok; else echo \"read=$e\"; fi; \
     if e=$( (exec 3>/dev/k) 2>&1); then echo write=ok; else echo \"write=$e\"; fi; \
     echo x > /dev/null && echo null=ok";

fn probe_lines(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Device rules: the base config denies all; a device outside the default allow list cannot be
/// opened (EPERM from the devices cgroup, v2: the eBPF program), while /dev/null works.
fn cgroup_devices_denied_device_cannot_be_opened(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    add_mknod(&mut b);
    let shared = start_waiting(&mut b, &format!("{{ {DEVICE_PROBE}; }} > /shared/out"))?;
    if cg.v1() {
        let list = cg.read("devices", "devices.list")?;
        let rules: Vec<&str> = list.lines().collect();
        ensure!(
            !rules.iter().any(|r| r.starts_with("a ")),
            "devices.list allows all: {list:?}"
        );
        ensure!(
            rules.contains(&"c 1:3 rwm"),
            "devices.list does not allow /dev/null: {list:?}"
        );
        ensure!(
            !rules.iter().any(|r| r.starts_with("c 1:11 ")),
            "devices.list allows 1:11: {list:?}"
        );
    }
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    let out = fs::read_to_string(shared.join("out"))?;
    let p = probe_lines(&out);
    ensure_eq!(
        p.get("mknod").map(String::as_str),
        Some("ok"),
        "mknod (the m access is allowed)"
    );
    for access in ["read", "write"] {
        let got = p.get(access).map(String::as_str).unwrap_or("");
        ensure!(
            got.contains("Operation not permitted"),
            "{access} open of a denied device: {got:?} (output {out:?})"
        );
    }
    ensure_eq!(
        p.get("null").map(String::as_str),
        Some("ok"),
        "write to /dev/null"
    );
    Ok(())
}

/// A rule allowing `c 1:11 w`: a write open works, a read open is still denied.
fn cgroup_devices_allow_rule_access(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    add_mknod(&mut b);
    b.cfg.push(
        "/linux/resources/devices",
        json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}),
    );
    let shared = start_waiting(&mut b, &format!("{{ {DEVICE_PROBE}; }} > /shared/out"))?;
    if cg.v1() {
        let list = cg.read("devices", "devices.list")?;
        ensure!(
            list.lines().any(|l| l == "c 1:11 w"),
            "devices.list has no `c 1:11 w`: {list:?}"
        );
    }
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    let out = fs::read_to_string(shared.join("out"))?;
    let p = probe_lines(&out);
    ensure_eq!(
        p.get("write").map(String::as_str),
        Some("ok"),
        "write open of c 1:11 (allowed w)"
    );
    let read = p.get("read").map(String::as_str).unwrap_or("");
    ensure!(
        read.contains("Operation not permitted"),
        "read open of c 1:11 (only w allowed): {read:?} (output {out:?})"
    );
    ensure_eq!(
        p.get("null").map(String::as_str),
        Some("ok"),
        "write to /dev/null"
    );
    Ok(())
}

/// `linux.devices` makes the node but adds no device rule of its own (runc applies only
/// `linux.resources.devices`): under the base config's deny-all, /dev/kmsg (c 1:11) listed in
/// `linux.devices` exists and cannot be opened.
fn cgroup_devices_linux_devices_add_no_rule(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg.set(
        "/linux/devices",
        json!([
            {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666},
            {"path": "/dev/full", "type": "c", "major": 1, "minor": 7, "fileMode": 0o666}
        ]),
    );
    // /dev/full is also on runc's default allow list: listed in linux.devices, its default
    // rule goes away too (runc's createDevices; found by the differential fuzzer).
    let shared = start_waiting(
        &mut b,
        "{ ls -l /dev/kmsg && echo node=ok; \
           if e=$(head -c 0 /dev/kmsg 2>&1); then echo read=ok; else echo \"read=$e\"; fi; \
           if e=$(head -c 0 /dev/full 2>&1); then echo full=ok; else echo \"full=$e\"; fi; \
           echo x > /dev/null && echo null=ok; } > /shared/out 2>&1",
    )?;
    if cg.v1() {
        let list = cg.read("devices", "devices.list")?;
        ensure!(
            !list
                .lines()
                .any(|l| l.starts_with("c 1:11 ") || l.starts_with("a ")),
            "devices.list allows /dev/kmsg: {list:?}"
        );
    }
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    let out = fs::read_to_string(shared.join("out"))?;
    let p = probe_lines(&out);
    ensure_eq!(
        p.get("node").map(String::as_str),
        Some("ok"),
        format!("the /dev/kmsg node ({out:?})")
    );
    let read = p.get("read").map(String::as_str).unwrap_or("");
    ensure!(
        read.contains("Operation not permitted"),
        "read open of /dev/kmsg (in linux.devices, denied by the rules): {read:?} (output {out:?})"
    );
    let full = p.get("full").map(String::as_str).unwrap_or("");
    ensure!(
        full.contains("Operation not permitted"),
        "read open of /dev/full (in linux.devices and the default list): {full:?} (output {out:?})"
    );
    ensure_eq!(
        p.get("null").map(String::as_str),
        Some("ok"),
        "write to /dev/null"
    );
    Ok(())
}

/// Rules are applied as the devices cgroup's semantics give them, not written verbatim: allow
/// c 1:11 rwm then deny it `ra` (`a` is no access letter) leaves c 1:11 `wm`; v1 gets the
/// resulting exception (the kernel would refuse `c 1:11 ra` with EINVAL). (A read open of
/// /dev/kmsg needs CAP_SYSLOG anyway: mknod and the write open show the rule.)
fn cgroup_devices_rules_are_emulated(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    add_mknod(&mut b);
    b.cfg.set(
        "/linux/resources/devices",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "ra"}
        ]),
    );
    let shared = start_waiting(&mut b, &format!("{{ {DEVICE_PROBE}; }} > /shared/out"))?;
    if cg.v1() {
        let list = cg.read("devices", "devices.list")?;
        ensure!(
            list.lines().any(|l| l == "c 1:11 wm"),
            "devices.list has no `c 1:11 wm`: {list:?}"
        );
    }
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    let out = fs::read_to_string(shared.join("out"))?;
    let p = probe_lines(&out);
    for k in ["mknod", "write", "null"] {
        ensure_eq!(
            p.get(k).map(String::as_str),
            Some("ok"),
            format!("{k} of c 1:11 ({out:?})")
        );
    }
    Ok(())
}

/// Denying part of what a wildcard rule allows (c 1:* rwm, then deny c 1:11 w) is something
/// v1 silently ignores: runc refuses it ("cannot punch hole in existing wildcard rule").
fn cgroup_devices_wildcard_hole_is_refused(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/resources/devices",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "w"}
        ]),
    );
    create_fails(&b, &["cannot punch hole"])
}

/// Allow all, then deny one device (a black list): that device is denied, mknod included;
/// others are allowed (c 1:7, /dev/full, whose open needs no capability: /dev/port's needs
/// CAP_SYS_RAWIO where the kernel has it). v1 shows the allow-all mode (`a *:* rwm`).
fn cgroup_devices_allow_all_then_deny(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    add_mknod(&mut b);
    b.cfg.set(
        "/linux/resources/devices",
        json!([
            {"allow": true, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "rwm"}
        ]),
    );
    let shared = start_waiting(
        &mut b,
        "{ if e=$(mknod /dev/k c 1 11 2>&1); then echo kmsg=ok; else echo \"kmsg=$e\"; fi; \
           mknod /dev/m c 1 7 && echo port_mknod=ok; \
           if e=$(head -c 0 /dev/m 2>&1); then echo port=ok; else echo \"port=$e\"; fi; \
           echo x > /dev/null && echo null=ok; } > /shared/out 2>&1",
    )?;
    if cg.v1() {
        cg.expect("devices", "devices.list", "a *:* rwm")?;
    }
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    let out = fs::read_to_string(shared.join("out"))?;
    let p = probe_lines(&out);
    let kmsg = p.get("kmsg").map(String::as_str).unwrap_or("");
    ensure!(
        kmsg.contains("Operation not permitted"),
        "mknod of the denied c 1:11: {kmsg:?} (output {out:?})"
    );
    let port = p.get("port").map(String::as_str).unwrap_or("");
    ensure!(
        p.contains_key("port_mknod") && !port.contains("Operation not permitted"),
        "mknod and read open of c 1:7 (/dev/full), not denied: {port:?} (output {out:?})"
    );
    ensure_eq!(
        p.get("null").map(String::as_str),
        Some("ok"),
        "write to /dev/null"
    );
    Ok(())
}

/// `blockIO.weight`: blkio.weight or BFQ's blkio.bfq.weight (v1), io.bfq.weight (raw, as runc)
/// or io.weight (`default` converted to 1..10000) on v2. Without any weight file (no
/// proportional I/O scheduler) the runtime must fail with a message.
fn cgroup_blkio_weight(ctx: &Ctx) -> TestResult {
    // Which weight files does a container cgroup get here? A probe container without weight.
    let probe = ctx.bundle()?;
    let pcg = Cg::of(&probe)?;
    probe.create(&[]).ok()?;
    let candidates: &[&str] = if pcg.v1() {
        &["blkio.weight", "blkio.bfq.weight"]
    } else {
        &["io.bfq.weight", "io.weight"]
    };
    let file = candidates
        .iter()
        .find(|f| pcg.has("blkio", f))
        .map(|f| f.to_string());
    drop(probe);

    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg
        .set("/linux/resources/blockIO", json!({"weight": 500}));
    let Some(file) = file else {
        return create_fails(&b, &["weight", "blkio", "io."]);
    };
    start_waiting(&mut b, "true")?;
    let got = cg.read("blkio", &file)?;
    let want = match file.as_str() {
        "io.weight" => format!("default {}", 1 + (500 - 10) * 9999 / 990),
        _ => "500".to_string(),
    };
    // v1's and BFQ's files print `default N` first on newer kernels, a bare N on older ones.
    let first = got.lines().next().unwrap_or("");
    ensure!(
        first == want || first == format!("default {want}"),
        "{}: {got:?}, want {want:?}",
        cg.file("blkio", &file)?.display()
    );
    Ok(())
}

/// `blockIO.throttleReadBpsDevice`/`throttleWriteBpsDevice` on the disk holding the bundle:
/// blkio.throttle.*_bps_device (v1), io.max (v2), and a direct 1 MiB write at 1 MiB/s takes
/// most of a second.
fn cgroup_blkio_throttle_bps(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let Some(dev) = block_device_of(&b.dir) else {
        skip!(
            "{} is not on a block device (nothing to throttle)",
            b.dir.display()
        );
    };
    let (major, minor) = dev
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .ok_or_else(|| Failure::Fail(format!("bad device number {dev:?}")))?;
    let rate = MIB;
    b.cfg.set(
        "/linux/resources/blockIO",
        json!({
            "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 2 * rate}],
            "throttleWriteBpsDevice": [{"major": major, "minor": minor, "rate": rate}]
        }),
    );
    let shared = start_waiting(
        &mut b,
        "a=$(cut -d' ' -f1 /proc/uptime); \
         dd if=/dev/zero of=/shared/f bs=64k count=16 oflag=direct 2>/shared/dd.err || exit 1; \
         z=$(cut -d' ' -f1 /proc/uptime); echo \"$a $z\" > /shared/t",
    )?;
    if cg.v1() {
        cg.expect(
            "blkio",
            "blkio.throttle.read_bps_device",
            &format!("{dev} {}", 2 * rate),
        )?;
        cg.expect(
            "blkio",
            "blkio.throttle.write_bps_device",
            &format!("{dev} {rate}"),
        )?;
    } else {
        let io_max = cg.read("blkio", "io.max")?;
        let line = io_max
            .lines()
            .find(|l| l.starts_with(&format!("{dev} ")))
            .unwrap_or("");
        let kv: Vec<&str> = line.split_whitespace().skip(1).collect();
        ensure!(
            kv.contains(&format!("rbps={}", 2 * rate).as_str())
                && kv.contains(&format!("wbps={rate}").as_str()),
            "io.max: {io_max:?}"
        );
    }
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    let t = fs::read_to_string(shared.join("t")).map_err(|e| {
        let err = fs::read_to_string(shared.join("dd.err")).unwrap_or_default();
        Failure::Fail(format!(
            "the direct write did not finish ({e}); dd: {err:?}"
        ))
    })?;
    let (a, z) = t.trim().split_once(' ').unwrap_or(("", ""));
    let took = secs(z)? - secs(a)?;
    if took < 0.5 {
        fail!("a direct 1 MiB write at {rate} B/s took only {took:.2} s");
    }
    Ok(())
}

/// `hugepageLimits`: hugetlb.<size>.limit_in_bytes (v1) or hugetlb.<size>.max (v2, and a
/// hybrid host's cgroup2 mount where hugetlb is enabled for children). Where the container's
/// cgroup can have no hugetlb files (this hybrid host: hugetlb only on the cgroup2 mount, not in
/// its root's cgroup.subtree_control) both runtimes fail: berth says that hugetlb is not
/// enabled for child cgroups, runc 1.1 "cannot set hugetlb limit: container could not join or
/// create cgroup".
fn cgroup_hugepage_limits(ctx: &Ctx) -> TestResult {
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        skip!("the kernel has no 2 MB huge pages");
    }
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let limit = 2 * 2 * MIB;
    b.cfg.set(
        "/linux/resources/hugepageLimits",
        json!([{"pageSize": "2MB", "limit": limit}]),
    );
    let want = limit.to_string();
    if !cg.v1() {
        if !subtree_control(Path::new("/sys/fs/cgroup")).contains(&"hugetlb".to_string()) {
            return create_fails(&b, &["hugetlb", "hugepage"]);
        }
        start_waiting(&mut b, "true")?;
        return cg.expect("hugetlb", "hugetlb.2MB.max", &want);
    }
    if v1_mount("hugetlb").is_some() {
        start_waiting(&mut b, "true")?;
        return cg.expect("hugetlb", "hugetlb.2MB.limit_in_bytes", &want);
    }
    let unified = v2_mount();
    let enabled = unified
        .as_deref()
        .is_some_and(|u| subtree_control(u).contains(&"hugetlb".to_string()));
    if !enabled {
        return create_fails(&b, &["hugetlb", "hugepage"]);
    }
    // Hybrid with hugetlb enabled for children on the cgroup2 mount: berth writes it there.
    let out = b.run_detached();
    if !out.success() && ctx.rt.is_runc() {
        skip!(
            "runc 1.1 sets hugepageLimits only through a v1 hugetlb hierarchy; on this hybrid \
             host (hugetlb only on the cgroup2 mount) it fails: {}",
            out.describe()
        );
    }
    out.ok()?;
    let dir = unified
        .unwrap_or_default()
        .join(cg.path.trim_start_matches('/'));
    let got = fs::read_to_string(dir.join("hugetlb.2MB.max"))?;
    ensure_eq!(got.trim(), want, "hugetlb.2MB.max on the cgroup2 mount");
    Ok(())
}

/// `network.classID`/`network.priorities`: net_cls.classid and net_prio.ifpriomap (v1), where
/// those hierarchies are mounted; otherwise (and on v2, which has neither) berth fails with a
/// message. runc 1.1 fails too on v1 without them; on v2 it ignores the fields.
fn cgroup_network_class_id_priorities(ctx: &Ctx) -> TestResult {
    let class_id = 0x0010_0001u32;
    let cases: [(&str, Value, &str); 2] = [
        ("net_cls", json!({"classID": class_id}), "net_cls.classid"),
        (
            "net_prio",
            json!({"priorities": [{"name": "lo", "priority": 5}]}),
            "net_prio.ifpriomap",
        ),
    ];
    for (ctrl, network, file) in cases {
        let mut b = ctx.bundle()?;
        let cg = Cg::of(&b)?;
        b.cfg.set("/linux/resources/network", network);
        if !cg.v1() {
            v1_only_field(ctx, &b, "network", &["network"])?;
            continue;
        }
        if v1_mount(ctrl).is_none() {
            create_fails(&b, &[ctrl])?;
            continue;
        }
        start_waiting(&mut b, "true")?;
        let got = cg.read(ctrl, file)?;
        if ctrl == "net_cls" {
            ensure_eq!(got, class_id.to_string(), file);
        } else {
            ensure!(
                got.lines().any(|l| l.trim() == "lo 5"),
                "{file} has no `lo 5`: {got:?}"
            );
        }
    }
    Ok(())
}

/// `unified` (cgroup v2 only): each key is written to the container's file; on v1 (and
/// hybrid) hosts both runtimes refuse it.
fn cgroup_unified(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let high = (96 * MIB).to_string();
    b.cfg
        .set("/linux/resources/unified", json!({"memory.high": high}));
    if cg.v1() {
        return create_fails(&b, &["unified"]);
    }
    start_waiting(&mut b, "true")?;
    cg.expect("memory", "memory.high", &high)
}

/// The `linux.resources` docker 20.10 sends for `docker run` without limits: every field 0
/// (`blockIO.weight: 0`, `cpu.shares: 0`, ...). runc treats 0 as unset, field by field: the
/// container starts and every file keeps the kernel's default (no weight file at all is needed
/// for a weight of 0, and shares stay 1024, not the kernel's minimum 2).
fn cgroup_zero_values_are_unset(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg.set(
        "/linux/resources",
        json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0,
                       "disableOOMKiller": false},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                    "realtimePeriod": 0, "cpus": "", "mems": ""},
            "pids": {"limit": 0},
            "blockIO": {"weight": 0, "leafWeight": 0},
            "network": {"classID": 0}
        }),
    );
    if !cg.v1() {
        // runc 1.1 and berth refuse a network section with values on v2; 0 is no value.
        if let Some(r) = b
            .cfg
            .0
            .pointer_mut("/linux/resources")
            .and_then(Value::as_object_mut)
        {
            r.remove("network");
        }
    }
    start_waiting(&mut b, "true")?;
    // 9223372036854771712: the kernel's "no limit" (PAGE_COUNTER_MAX pages of 4 KiB).
    const NO_LIMIT: &str = "9223372036854771712";
    if cg.v1() {
        cg.expect("cpu", "cpu.shares", "1024")?;
        cg.expect("cpu", "cpu.cfs_quota_us", "-1")?;
        cg.expect("cpu", "cpu.cfs_period_us", "100000")?;
        cg.expect("memory", "memory.limit_in_bytes", NO_LIMIT)?;
        cg.expect("memory", "memory.soft_limit_in_bytes", NO_LIMIT)?;
        if cg.has("memory", "memory.memsw.limit_in_bytes") {
            cg.expect("memory", "memory.memsw.limit_in_bytes", NO_LIMIT)?;
        }
    } else {
        cg.expect("cpu", "cpu.weight", "100")?;
        cg.expect("cpu", "cpu.max", "max 100000")?;
        cg.expect("memory", "memory.max", "max")?;
        cg.expect("memory", "memory.low", "0")?;
        if cg.has("memory", "memory.swap.max") {
            cg.expect("memory", "memory.swap.max", "max")?;
        }
    }
    cg.expect("pids", "pids.max", "max")?;
    for file in [
        "blkio.weight",
        "blkio.bfq.weight",
        "io.bfq.weight",
        "io.weight",
    ] {
        if cg.has("blkio", file) {
            let got = cg.read("blkio", file)?;
            let first = got.lines().next().unwrap_or("");
            ensure!(
                first == "100" || first == "default 100",
                "{file}: {got:?}, want the default weight"
            );
        }
    }
    Ok(())
}

/// -1 means unlimited: memory.limit, memory.swap (v1 memory+swap, v2 swap.max), pids.limit and
/// cpu.quota; a memory limit of -1 without swap sets swap to -1 too.
fn cgroup_minus_one_is_unlimited(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    b.cfg.set(
        "/linux/resources",
        json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": -1, "reservation": -1},
            "cpu": {"quota": -1, "period": 50000},
            "pids": {"limit": -1}
        }),
    );
    start_waiting(&mut b, "true")?;
    const NO_LIMIT: &str = "9223372036854771712";
    if cg.v1() {
        cg.expect("memory", "memory.limit_in_bytes", NO_LIMIT)?;
        cg.expect("memory", "memory.soft_limit_in_bytes", NO_LIMIT)?;
        if cg.has("memory", "memory.memsw.limit_in_bytes") {
            cg.expect("memory", "memory.memsw.limit_in_bytes", NO_LIMIT)?;
        }
        cg.expect("cpu", "cpu.cfs_quota_us", "-1")?;
        cg.expect("cpu", "cpu.cfs_period_us", "50000")?;
    } else {
        cg.expect("memory", "memory.max", "max")?;
        cg.expect("memory", "memory.low", "max")?;
        if cg.has("memory", "memory.swap.max") {
            cg.expect("memory", "memory.swap.max", "max")?;
        }
        cg.expect("cpu", "cpu.max", "max 50000")?;
    }
    cg.expect("pids", "pids.max", "max")
}

/// The container's cgroup directory in every mounted hierarchy (v1 ones and any cgroup2).
fn all_hierarchy_dirs(cg: &Cg) -> Vec<PathBuf> {
    let rel = cg.path.trim_start_matches('/');
    let mut out: Vec<PathBuf> = Vec::new();
    for m in mounts() {
        if m.fstype == "cgroup" || m.fstype == "cgroup2" {
            let d = Path::new(&m.mount_point).join(rel);
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

/// Cgroup directories the test made itself before the runtime ran (a "pre-existing" cgroup),
/// thawed, emptied of `child` (the test's own process, killed by pid) and removed on drop.
struct PreCg {
    dirs: Vec<PathBuf>,
    child: Option<Child>,
}

impl PreCg {
    fn make(cg: &Cg) -> Result<PreCg, Failure> {
        let dirs = all_hierarchy_dirs(cg);
        for d in &dirs {
            fs::create_dir_all(d)?;
        }
        Ok(PreCg { dirs, child: None })
    }
}

impl Drop for PreCg {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = fs::write(d.join("freezer.state"), "THAWED");
            let _ = fs::write(d.join("cgroup.freeze"), "0");
        }
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            let _ = wait_until(Duration::from_secs(2), || {
                fs::remove_dir(d).is_ok() || !d.exists()
            });
        }
    }
}

/// A frozen cgroup at create: runc refuses at once ("container's cgroup unexpectedly
/// frozen"); the init born in it would wait forever.
fn cgroup_create_refuses_frozen_cgroup(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let pre = PreCg::make(&cg)?;
    let file = if cg.v1() {
        (cg.file("freezer", "freezer.state")?, "FROZEN")
    } else {
        (cg.file("", "cgroup.freeze")?, "1")
    };
    fs::write(&file.0, file.1)?;
    b.cfg.sh("true");
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    let out = Bg::start(&b, "run", &["run", "-d", "--bundle", &dir, &b.id], None)?
        .wait(Duration::from_secs(10));
    ensure!(
        !out.timed_out,
        "`run -d` in a frozen cgroup hung: {}",
        out.describe()
    );
    ensure!(
        out.code.is_some_and(|c| c != 0)
            && out
                .stderr
                .contains("container's cgroup unexpectedly frozen"),
        "`run -d` in a frozen cgroup: {}",
        out.describe()
    );
    drop(pre);
    Ok(())
}

/// A cgroup that already has a process at create is refused with "container's cgroup is not
/// empty" (runc 1.2+). runc 1.1 only warns (with those words) and goes on: accepted for it.
fn cgroup_create_refuses_non_empty_cgroup(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let mut pre = PreCg::make(&cg)?;
    let child = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id().to_string();
    pre.child = Some(child);
    for d in &pre.dirs {
        // A new cpuset cgroup has no cpus yet: no process can join it.
        if !d.starts_with(v1_mount("cpuset").unwrap_or_default()) || !cg.v1() {
            fs::write(d.join("cgroup.procs"), &pid)?;
        }
    }
    b.cfg.sh("true");
    let out = b.create(&[]);
    if ctx.rt.is_runc_before(1, 2) && out.success() {
        ensure!(
            out.stderr.contains("container's cgroup is not empty"),
            "runc 1.1 did not warn: {}",
            out.describe()
        );
        b.delete();
        skip!(
            "runc 1.1 only warns about a non-empty cgroup (\"container's cgroup is not empty\") \
             and creates the container; runc 1.2+ and berth refuse it"
        );
    }
    ensure!(
        !out.success() && out.stderr.contains("container's cgroup is not empty"),
        "create in a cgroup with a process: {}",
        out.describe()
    );
    drop(pre);
    Ok(())
}

/// `delete --force` of a container with sub-cgroups made inside its cgroup (v1: in every
/// hierarchy) removes them too; the container is gone.
fn cgroup_delete_force_removes_sub_cgroups(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    start_waiting(&mut b, "true")?;
    let dirs = all_hierarchy_dirs(&cg);
    for d in &dirs {
        if d.exists() {
            fs::create_dir_all(d.join("sub/deeper"))?;
        }
    }
    ctx.rt.exec(&["delete", "--force", &b.id]).ok()?;
    let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
    ensure!(
        left.is_empty(),
        "cgroup dirs left after delete --force: {left:?}"
    );
    ensure!(
        b.status().is_none(),
        "the container still exists after delete --force"
    );
    Ok(())
}

/// A running container with memory 128M, pids 10, shares 1024 (checked); returns the name of
/// the memory limit file.
fn start_for_update(b: &mut Bundle, cg: &Cg) -> Result<&'static str, Failure> {
    b.cfg.set(
        "/linux/resources",
        json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 128 * MIB},
            "pids": {"limit": 10},
            "cpu": {"shares": 1024}
        }),
    );
    start_waiting(b, "true")?;
    let mem = pick(cg, "memory.limit_in_bytes", "memory.max");
    cg.expect("memory", mem, &(128 * MIB).to_string())?;
    cg.expect("pids", "pids.max", "10")?;
    Ok(mem)
}

/// The cpu file and its value for cpu shares `s` (v2: runc's conversion to cpu.weight).
fn shares_file(cg: &Cg, s: u64) -> (&'static str, String) {
    if cg.v1() {
        ("cpu.shares", s.to_string())
    } else {
        ("cpu.weight", (1 + (s - 2) * 9999 / 262_142).to_string())
    }
}

/// `update --memory 64m --pids-limit 20 --cpu-share 512` (runc's flag names) changes the files
/// of a running container.
fn cgroup_update_flags(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let mem = start_for_update(&mut b, &cg)?;
    ctx.rt
        .exec(&[
            "update",
            "--memory",
            "64m",
            "--pids-limit",
            "20",
            "--cpu-share",
            "512",
            &b.id,
        ])
        .ok()?;
    cg.expect("memory", mem, &(64 * MIB).to_string())?;
    cg.expect("pids", "pids.max", "20")?;
    let (f, v) = shares_file(&cg, 512);
    cg.expect("cpu", f, &v)?;
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after update"
    );
    Ok(())
}

/// `update -r -`: a linux.resources JSON on stdin changes the files of a running container;
/// with `-r`, runc ignores every other option ("if data is to be read from a file or the
/// standard input, all other options are ignored", `runc update --help`).
fn cgroup_update_resources_stdin(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let mem = start_for_update(&mut b, &cg)?;
    let json = json!({
        "memory": {"limit": 96 * MIB},
        "pids": {"limit": 30},
        "cpu": {"shares": 256}
    })
    .to_string();
    exec_stdin(&b, "update", &["update", "-r", "-", &b.id], &json)?.ok()?;
    cg.expect("memory", mem, &(96 * MIB).to_string())?;
    cg.expect("pids", "pids.max", "30")?;
    let (f, v) = shares_file(&cg, 256);
    cg.expect("cpu", f, &v)?;

    let json = json!({"pids": {"limit": 40}}).to_string();
    exec_stdin(
        &b,
        "update2",
        &["update", "-r", "-", "--pids-limit", "50", &b.id],
        &json,
    )?
    .ok()?;
    cg.expect("pids", "pids.max", "40").map_err(|e| match e {
        Failure::Fail(m) => Failure::Fail(format!(
            "`update -r - --pids-limit 50` with pids.limit 40 on stdin: {m} (runc ignores \
                 the other options when -r is given)"
        )),
        s => s,
    })?;
    cg.expect("memory", mem, &(96 * MIB).to_string())?;
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after update"
    );
    Ok(())
}

/// `update --memory-swap -1 --cpu-quota -1` (runc's flags take -1 for unlimited): swap and
/// quota become unlimited, the memory limit and the period stay.
fn cgroup_update_minus_one(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let swap = if cg.v1() {
        cg.has("memory", "memory.memsw.limit_in_bytes") || {
            v1_mount("memory").is_some_and(|m| m.join("memory.memsw.limit_in_bytes").exists())
        }
    } else {
        true
    };
    let mut mem = json!({"limit": 64 * MIB});
    if swap {
        mem["swap"] = json!(128 * MIB);
    }
    b.cfg.set(
        "/linux/resources",
        json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": mem,
            "cpu": {"quota": 20000, "period": 100_000}
        }),
    );
    start_waiting(&mut b, "true")?;
    ctx.rt
        .exec(&["update", "--memory-swap", "-1", "--cpu-quota", "-1", &b.id])
        .ok()?;
    const NO_LIMIT: &str = "9223372036854771712";
    if cg.v1() {
        cg.expect("cpu", "cpu.cfs_quota_us", "-1")?;
        cg.expect("cpu", "cpu.cfs_period_us", "100000")?;
        cg.expect("memory", "memory.limit_in_bytes", &(64 * MIB).to_string())?;
        if cg.has("memory", "memory.memsw.limit_in_bytes") {
            cg.expect("memory", "memory.memsw.limit_in_bytes", NO_LIMIT)?;
        }
    } else {
        cg.expect("cpu", "cpu.max", "max 100000")?;
        cg.expect("memory", "memory.max", &(64 * MIB).to_string())?;
        if cg.has("memory", "memory.swap.max") {
            cg.expect("memory", "memory.swap.max", "max")?;
        }
    }
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after update"
    );
    Ok(())
}

/// A failing `update` puts the old resources back, as runc's Container.Set does, and records
/// nothing: `update --memory 64m --cpuset-cpus 9999` (no such cpu: EINVAL) leaves the memory
/// limit at 128M although berth writes memory before cpuset (runc writes cpuset first on v1,
/// memory first on v2). A later good update (`--pids-limit 30`) re-applies the recorded
/// resources: memory is still 128M, so the failed 64M was not recorded.
fn cgroup_update_failure_restores_resources(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let mem = start_for_update(&mut b, &cg)?;
    if !cg.has("cpuset", "cpuset.cpus") {
        skip!("no cpuset.cpus file in the container's cgroup: nothing can make the update fail");
    }
    ctx.rt
        .exec(&["update", "--memory", "64m", "--cpuset-cpus", "9999", &b.id])
        .failed()?;
    if ctx.rt.is_runc() && !cg.v1() {
        skip!(
            "runc 1.1 on cgroup v2 writes memory before cpuset and then re-applies the new \
             values as the old ones (its update edits the config it restores from): memory.max \
             stays changed"
        );
    }
    cg.expect("memory", mem, &(128 * MIB).to_string())
        .map_err(|e| match e {
            Failure::Fail(m) => Failure::Fail(format!("after a failed update: {m}")),
            s => s,
        })?;
    ctx.rt.exec(&["update", "--pids-limit", "30", &b.id]).ok()?;
    cg.expect("pids", "pids.max", "30")?;
    cg.expect("memory", mem, &(128 * MIB).to_string())?;
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after the updates"
    );
    Ok(())
}

/// runc's cpu period/quota write order with its retry: the container's cgroup is below a
/// parent (made by the test, below /berth-test) limited to half a cpu (v1: quota 50000 /
/// period 100000). From quota 20000 / period 100000, `update --cpu-period 20000 --cpu-quota
/// 10000` must write the quota first (period first gives 20000/20000 = one cpu > the parent's
/// half: EINVAL); back to period 100000 / quota 40000 the period must go first (quota first
/// gives 40000/20000). v2's cpu.max takes both at once and no parent check: values only.
fn cgroup_update_cpu_period_quota_order(ctx: &Ctx) -> TestResult {
    let id = ctx.new_id();
    let parent = Cg {
        layout: layout()?,
        path: format!("/berth-test/{id}-parent"),
    };
    // Made before the bundle, so that it is removed after the container (drop order).
    let pre = PreCg::make(&parent)?;
    if parent.v1() {
        // A v1 cpuset parent needs cpus and mems before the runtime's child can get any.
        for d in &pre.dirs {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if d.join(f).exists() {
                    let up = d.parent().unwrap_or(d).join(f);
                    fs::write(d.join(f), fs::read_to_string(up)?.trim())?;
                }
            }
        }
        fs::write(parent.file("cpu", "cpu.cfs_period_us")?, "100000")?;
        fs::write(parent.file("cpu", "cpu.cfs_quota_us")?, "50000")?;
    } else {
        fs::write(parent.file("", "cpu.max")?, "50000 100000")?;
    }
    let mut b = Bundle::with_id(ctx, id)?;
    b.cfg
        .set("/linux/cgroupsPath", json!(format!("{}/c", parent.path)));
    b.cfg.set(
        "/linux/resources/cpu",
        json!({"quota": 20000, "period": 100_000}),
    );
    let cg = Cg::of(&b)?;
    start_waiting(&mut b, "true")?;
    let expect = |quota: &str, period: &str| -> TestResult {
        if cg.v1() {
            cg.expect("cpu", "cpu.cfs_quota_us", quota)?;
            cg.expect("cpu", "cpu.cfs_period_us", period)
        } else {
            cg.expect("cpu", "cpu.max", &format!("{quota} {period}"))
        }
    };
    expect("20000", "100000")?;
    ctx.rt
        .exec(&[
            "update",
            "--cpu-period",
            "20000",
            "--cpu-quota",
            "10000",
            &b.id,
        ])
        .ok()?;
    expect("10000", "20000")?;
    ctx.rt
        .exec(&[
            "update",
            "--cpu-period",
            "100000",
            "--cpu-quota",
            "40000",
            &b.id,
        ])
        .ok()?;
    expect("40000", "100000")?;
    ctx.rt.exec(&["delete", "--force", &b.id]).ok()?;
    drop(b);
    drop(pre);
    Ok(())
}

/// runc's memory/swap write order (setMemoryAndSwap): with memory 128M and memory+swap 256M,
/// `update --memory 64m` (below memory+swap) works; raising both to 512M/1G needs the swap
/// limit first (v1 refuses a memory limit above memory+swap), lowering both to 32M/64M the
/// memory limit first. v1 needs swap accounting (memory.memsw.*); v2 has independent files
/// (memory.swap.max = swap - limit).
fn cgroup_update_memory_swap_order(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let swap_file = if cg.v1() {
        "memory.memsw.limit_in_bytes"
    } else {
        "memory.swap.max"
    };
    let has_swap = v1_mount("memory")
        .map(|m| m.join(swap_file).exists())
        .unwrap_or(false)
        || (!cg.v1() && Path::new("/sys/fs/cgroup").join(swap_file).exists())
        || (!cg.v1()
            && Path::new("/sys/fs/cgroup/berth-test")
                .join(swap_file)
                .exists());
    if !has_swap {
        skip!("no swap accounting ({swap_file}) on this host");
    }
    b.cfg.set(
        "/linux/resources/memory",
        json!({"limit": 128 * MIB, "swap": 256 * MIB}),
    );
    start_waiting(&mut b, "true")?;
    let mem = pick(&cg, "memory.limit_in_bytes", "memory.max");
    let expect = |m: i64, s: i64| -> TestResult {
        cg.expect("memory", mem, &(m * MIB).to_string())?;
        let sw = if cg.v1() { s } else { s - m };
        cg.expect("memory", swap_file, &(sw * MIB).to_string())
    };
    expect(128, 256)?;
    ctx.rt.exec(&["update", "--memory", "64m", &b.id]).ok()?;
    // runc 1.1 on cgroup v2 leaves memory.swap.max as it was when only --memory changes
    // (berth keeps memory+swap at 256M, as on v1).
    if !ctx.rt.is_runc() || cg.v1() {
        expect(64, 256)?;
    }
    ctx.rt
        .exec(&["update", "--memory", "512m", "--memory-swap", "1g", &b.id])
        .ok()?;
    expect(512, 1024)?;
    ctx.rt
        .exec(&["update", "--memory", "32m", "--memory-swap", "64m", &b.id])
        .ok()?;
    expect(32, 64)?;
    Ok(())
}

/// `pause`: the container stops running (a counter it appends to does not move), `state` says
/// paused and the freezer says frozen; `resume` lets it continue.
fn cgroup_pause_resume(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    let shared = b.shared()?;
    let count = shared.join("count");
    b.cfg
        .sh("while :; do echo x >> /shared/count; sleep 0.01; done");
    b.run_detached().ok()?;
    let len = || fs::metadata(&count).map(|m| m.len()).unwrap_or(0);
    ensure!(
        wait_until(Duration::from_secs(10), || len() >= 4),
        "the counter never moved"
    );
    ctx.rt.exec(&["pause", &b.id]).ok()?;
    ensure_eq!(b.status().as_deref(), Some("paused"), "status after pause");
    if cg.v1() {
        cg.expect("freezer", "freezer.state", "FROZEN")?;
    } else {
        let events = cg.read("", "cgroup.events")?;
        ensure!(
            events.lines().any(|l| l.trim() == "frozen 1"),
            "cgroup.events after pause: {events:?}"
        );
    }
    let frozen_at = len();
    // Nothing to poll for: the point is that nothing happens for a while.
    std::thread::sleep(Duration::from_millis(300));
    ensure_eq!(len(), frozen_at, "counter length while paused");

    ctx.rt.exec(&["resume", &b.id]).ok()?;
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after resume"
    );
    if cg.v1() {
        cg.expect("freezer", "freezer.state", "THAWED")?;
    }
    ensure!(
        wait_until(Duration::from_secs(10), || len() > frozen_at),
        "the counter did not move after resume"
    );
    Ok(())
}

/// The cgroup path of each `/proc/self/cgroup` line, keyed by its controllers field (`""`
/// for cgroup2).
fn cgroup_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

/// Make `name` below the container's cgroup in every hierarchy (a v1 cpuset child gets its
/// parent's cpus and mems, else no process can join it); removed with the container.
fn make_sub_cgroup(cg: &Cg, name: &str) -> TestResult {
    for d in all_hierarchy_dirs(cg) {
        if !d.exists() {
            continue;
        }
        let sub = d.join(name);
        fs::create_dir_all(&sub)?;
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if cg.v1() && sub.join(f).exists() {
                fs::write(sub.join(f), fs::read_to_string(d.join(f))?.trim())?;
            }
        }
    }
    Ok(())
}

/// `exec --cgroup` (issue 10 item 12), runc's semantics: `--cgroup sub` runs the process in
/// the container's sub-cgroup `sub` in every hierarchy; on v1, `--cgroup CTRL[,CTRL]:sub`
/// (repeatable) in those controllers' hierarchies only, the others staying the container's.
/// A path leaving the container's cgroup is refused ("is not a sub cgroup path"), and so are
/// malformed lists ("missing <controller>: prefix"). berth also refuses a sub-cgroup that
/// does not exist; runc 1.1 (and 1.3 on v1) skips the missing directory and leaves the
/// process in the caller's cgroup there, so that check is berth's only.
fn cgroup_exec_sub_cgroup(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let cg = Cg::of(&b)?;
    start_waiting(&mut b, "true")?;
    make_sub_cgroup(&cg, "sub")?;
    let out = ctx
        .rt
        .exec(&["exec", "--cgroup", "sub", &b.id, "cat", "/proc/self/cgroup"])
        .ok()?;
    let want = format!("{}/sub", cg.path);
    let lines = cgroup_lines(&out.stdout);
    ensure!(!lines.is_empty(), "no cgroup lines: {}", out.describe());
    for (ctrls, path) in &lines {
        ensure_eq!(
            path,
            &want,
            format!("`exec --cgroup sub`: cgroup of {ctrls:?}")
        );
    }

    if cg.v1() {
        make_sub_cgroup(&cg, "sub2")?;
        let out = ctx
            .rt
            .exec(&[
                "exec",
                "--cgroup",
                "memory:sub2",
                "--cgroup",
                "pids,freezer:sub2",
                &b.id,
                "cat",
                "/proc/self/cgroup",
            ])
            .ok()?;
        let want2 = format!("{}/sub2", cg.path);
        for (ctrls, path) in cgroup_lines(&out.stdout) {
            let moved = ctrls
                .split(',')
                .any(|c| matches!(c, "memory" | "pids" | "freezer"));
            let expected = if moved { &want2 } else { &cg.path };
            ensure_eq!(
                &path,
                expected,
                format!("`exec --cgroup memory:sub2 --cgroup pids,freezer:sub2`: {ctrls:?}")
            );
        }
    }

    for (args, needle) in [
        (&["--cgroup", "../escape"][..], "is not a sub cgroup path"),
        (
            &["--cgroup", "sub", "--cgroup", "sub2"][..],
            "missing <controller>: prefix",
        ),
    ] {
        let mut argv = vec!["exec"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&[&b.id, "true"]);
        ctx.rt.exec(&argv).failed()?.stderr_mentions(needle)?;
    }
    if !ctx.rt.is_runc() {
        ctx.rt
            .exec(&["exec", "--cgroup", "nosuch", &b.id, "true"])
            .failed()?
            .stderr_mentions("does not exist")?;
    }
    Ok(())
}

/// `exec` into a paused container is refused ("use --ignore-paused to override", runc 1.1+);
/// with `--ignore-paused` the process starts frozen, runs nothing until `resume`, then
/// completes.
fn cgroup_exec_ignore_paused(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let shared = start_waiting(&mut b, "true")?;
    ctx.rt.exec(&["pause", &b.id]).ok()?;
    ctx.rt
        .exec(&["exec", &b.id, "true"])
        .failed()?
        .stderr_mentions("paused")?;
    let bg = Bg::start(
        &b,
        "exec-paused",
        &[
            "exec",
            "--ignore-paused",
            &b.id,
            "sh",
            "-c",
            "touch /shared/execd; echo ran",
        ],
        None,
    )?;
    // Nothing to poll for: the point is that nothing happens for a while.
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        !shared.join("execd").exists(),
        "the exec'd process ran in a paused container"
    );
    ctx.rt.exec(&["resume", &b.id]).ok()?;
    let out = bg.wait(cmd_timeout()).ok()?;
    ensure_eq!(out.stdout.trim(), "ran", "output of the exec'd process");
    ensure!(
        shared.join("execd").exists(),
        "the exec'd process did not run"
    );
    Ok(())
}

/// `kill --all`: in a container without its own pid namespace (so that the init's death does
/// not take the others along), every process of the cgroup gets the signal.
fn cgroup_kill_all(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.ns_remove("pid");
    let shared = b.shared()?;
    b.cfg.sh(&format!(
        "for i in 1 2 3; do sleep 60 & done; touch /shared/ready; {WAIT_FOR_GO}"
    ));
    b.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    let before = processes_of(&b.id, &b.dir);
    ensure!(
        before.len() >= 4,
        "expected the init and 3 sleeps in the cgroup, found {before:?}"
    );
    ctx.rt.exec(&["kill", "--all", &b.id, "KILL"]).ok()?;
    let mut left = Vec::new();
    let gone = wait_until(Duration::from_secs(10), || {
        left = processes_of(&b.id, &b.dir);
        left.is_empty()
    });
    ensure!(
        gone,
        "processes left after kill --all KILL: {left:?} (of {before:?})"
    );
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// `events --stats`: one stats event with memory usage > 0 and pids.current >= 1.
fn cgroup_events_stats(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    start_waiting(&mut b, "true")?;
    let ev = ctx.rt.exec(&["events", "--stats", &b.id]).ok()?.json()?;
    ensure_eq!(ev["type"], "stats", "event type");
    ensure_eq!(ev["id"], b.id.as_str(), "event id");
    let usage = ev
        .pointer("/data/memory/usage/usage")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    ensure!(usage > 0, "memory usage is not > 0: {ev}");
    let pids = ev
        .pointer("/data/pids/current")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    ensure!(pids >= 1, "pids.current is not >= 1: {ev}");
    Ok(())
}

/// `events --interval 1s` in the background reports `{"type":"oom"}` when a process of the
/// container is OOM-killed.
///
/// The hog runs as a child of the container's shell, which outlives it until the test has seen
/// the event: runc 1.1 on cgroup v2 stops watching as soon as the cgroup is empty and can miss
/// an OOM kill that empties it (its watcher may read `cgroup.events` first).
fn cgroup_events_oom(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg
        .set("/linux/resources/memory", json!({"limit": 32 * MIB}));
    let hog = MEMORY_HOG.trim_start_matches("exec ");
    let shared = start_waiting(
        &mut b,
        &format!(
            "{hog}; {}",
            WAIT_FOR_GO.replace("/shared/go", "/shared/end")
        ),
    )?;
    let events = Bg::start(&b, "events", &["events", "--interval", "1s", &b.id], None)?;
    // The first stats event shows that the runtime is watching.
    let ready = wait_until(Duration::from_secs(10), || {
        events.stdout_now().contains("\"stats\"")
    });
    if !ready {
        let out = events.wait(Duration::ZERO);
        fail!("no stats event within 10 s: {}", out.describe());
    }
    fs::write(shared.join("go"), "")?;
    let oom_line = |text: &str| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["type"] == "oom")
    };
    let got_oom = wait_until(Duration::from_secs(15), || {
        oom_line(&events.stdout_now()).is_some()
    });
    let out = events.wait(Duration::ZERO);
    let Some(v) = oom_line(&out.stdout).filter(|_| got_oom) else {
        fail!("no oom event: {}", out.describe());
    };
    ensure_eq!(v["id"], b.id.as_str(), format!("oom event id ({v})"));
    fs::write(shared.join("end"), "")?;
    b.wait_status("stopped")?;
    Ok(())
}
