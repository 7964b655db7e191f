//! `integration faults`: a fault injector for the runtime (issue 11).
//!
//! Two kinds of cases, deterministic from the seed:
//! - kill points: berth is SIGKILLed in the middle of `create`, `run -d`, `run`, `start`,
//!   `exec` or `delete --force`, either after a random delay between 0 and the operation's
//!   measured duration, or exactly at the Nth call of one system call of its trace (strace
//!   `-e inject=SYSCALL:signal=KILL:when=N`, the runtime's own process only);
//! - syscall faults: `create` under `strace -f` (the runtime, stage 1 and init) with an
//!   error injected into the Nth call of one system call, for every system call seen on the
//!   create path and every strace syscall class (each class also with a user namespace).
//!
//! 30% of the kill points have a container with a user namespace (another create path:
//! stage 1, the id-map exchange, an init moved into its cgroup).
//!
//! After each case: `state` and `delete --force` must finish within a bound, no command may
//! panic or die by a signal it did not get from the injector, and nothing of the container
//! may be left (state dir, cgroups, mounts under the bundle, processes).
//!
//! Usage: integration faults [--seed S] [--kills N] [--syscalls all|none|N] [--runtime PATH]
//!        [--max-seconds T] [--verbose]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::campaign::{self, clip};
use crate::config::Config;
use crate::context;
use crate::fuzz::Rng;

/// What every command after a fault must finish within.
const BOUND: Duration = Duration::from_secs(10);
/// An operation under fault that takes longer than this hangs.
const OP_BOUND: Duration = Duration::from_secs(15);

/// strace's syscall classes (strace(1), `-e trace=%CLASS`).
const CLASSES: &[&str] = &[
    "%file", "%process", "%network", "%signal", "%ipc", "%desc", "%memory", "%creds", "%clock",
    "%fs", "%pure",
];

/// Calls of the C library's and Rust's own start-up and allocator, which no program survives
/// failing (musl crashes without its thread pointer or heap, std aborts without its random
/// keys or its signal stack, and before main when its first poll(2), of fds 0-2, fails): a
/// crash there is counted, not a finding. Hangs and leftovers still are.
const STARTUP: &[&str] = &[
    "arch_prctl",
    "set_tid_address",
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "sigaltstack",
    "getrandom",
    "%memory",
];

/// Mixed into the seed for the draw of a user namespace per kill point.
const USERNS_STREAM: u64 = 0x7573_6572_6e73;
/// The share of kill points whose container has a user namespace.
const USERNS_PCT: u64 = 30;

/// Errors injected, one per case (chosen by the seed).
const ERRNOS: &[&str] = &[
    "EIO", "ENOMEM", "EPERM", "EINTR", "ENOSPC", "EAGAIN", "EBADF",
];

struct Opts {
    seed: u64,
    kills: u64,
    /// None: every syscall seen on the create path.
    syscalls: Option<u64>,
    runtime: PathBuf,
    max_seconds: Option<u64>,
    verbose: bool,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        seed: 1,
        kills: 300,
        syscalls: None,
        runtime: campaign::default_berth("BERTH_TEST_RUNTIME"),
        max_seconds: None,
        verbose: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{a} {s}: {e}"));
        match a.as_str() {
            "--seed" => o.seed = num(val()?)?,
            "--kills" => o.kills = num(val()?)?,
            "--syscalls" => {
                o.syscalls = match val()?.as_str() {
                    "all" => None,
                    "none" => Some(0),
                    n => Some(num(n.to_string())?),
                }
            }
            "--runtime" | "--berth" => o.runtime = PathBuf::from(val()?),
            "--max-seconds" => o.max_seconds = Some(num(val()?)?),
            "--verbose" | "-v" => o.verbose = true,
            "-h" | "--help" => {
                println!(
                    "usage: integration faults [--seed S] [--kills N] [--syscalls all|none|N] \
                     [--runtime PATH] [--max-seconds T] [--verbose]"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("faults: unknown argument {a}")),
        }
    }
    if !o.runtime.is_absolute() || !o.runtime.exists() {
        return Err(format!(
            "faults: runtime {} not found (absolute path)",
            o.runtime.display()
        ));
    }
    Ok(o)
}

/// The operations a kill can interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    RunDetached,
    Run,
    Start,
    Exec,
    Delete,
}

const OPS: &[Op] = &[
    Op::Create,
    Op::RunDetached,
    Op::Run,
    Op::Start,
    Op::Exec,
    Op::Delete,
];

impl Op {
    /// The container the operation needs first: none, created, or running.
    fn needs(self) -> Option<&'static str> {
        match self {
            Op::Create | Op::RunDetached | Op::Run => None,
            Op::Start => Some("created"),
            Op::Exec | Op::Delete => Some("running"),
        }
    }

    fn args<'a>(self, bundle: &'a str, id: &'a str) -> Vec<&'a str> {
        match self {
            Op::Create => vec!["create", "--bundle", bundle, id],
            Op::RunDetached => vec!["run", "--detach", "--bundle", bundle, id],
            Op::Run => vec!["run", "--bundle", bundle, id],
            Op::Start => vec!["start", id],
            Op::Exec => vec!["exec", id, "true"],
            Op::Delete => vec!["delete", "--force", id],
        }
    }
}

struct Faults {
    rt: PathBuf,
    root: PathBuf,
    tmp: PathBuf,
    /// The bundle every case uses (read-only rootfs): `sleep` as the process.
    bundle: PathBuf,
    /// The bundle of foreground `run`: a process that ends at once.
    bundle_fg: PathBuf,
    seq: std::cell::Cell<u64>,
    verbose: bool,
    /// The next case's container has a user namespace (its create path has stage 1 and the
    /// id-map exchange).
    userns: std::cell::Cell<bool>,
}

/// One thing that went wrong.
struct Finding {
    case: String,
    what: String,
}

#[derive(Default)]
struct Stats {
    cases: BTreeMap<String, u64>,
    killed: u64,
    finished_first: u64,
    findings: Vec<Finding>,
    /// A failed create that left something before `delete --force` (not a failure here:
    /// the injector may fail the cleanup's own system calls).
    failed_create_left: u64,
    /// Crashes in start-up and allocator calls (see [`STARTUP`]).
    startup_crashes: u64,
}

pub fn main(args: &[String]) -> Result<std::process::ExitCode, String> {
    let o = parse(args)?;
    if !Path::new("/usr/bin/strace").exists() {
        return Err("faults: strace is missing (apt-get install strace)".into());
    }
    let pid = std::process::id();
    let tmp = PathBuf::from(format!("/tmp/berth-faults-{pid}"));
    fs::create_dir_all(tmp.join("io")).map_err(|e| format!("mkdir {}: {e}", tmp.display()))?;
    let rootfs = tmp.join("rootfs");
    crate::fixture::build_rootfs(&rootfs)?;
    campaign::start()?;
    let parents_before = context::cgroup_parents();
    let f = Faults {
        rt: o.runtime.clone(),
        root: PathBuf::from(format!("/run/berth-test/faults-{pid}")),
        bundle: tmp.join("bundle"),
        bundle_fg: tmp.join("bundle-fg"),
        tmp: tmp.clone(),
        seq: std::cell::Cell::new(0),
        verbose: o.verbose,
        userns: std::cell::Cell::new(false),
    };
    for dir in [&f.bundle, &f.bundle_fg] {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let st = Command::new("cp")
            .arg("-a")
            .arg(&rootfs)
            .arg(dir.join("rootfs"))
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("cp -a of the rootfs failed".into());
        }
    }
    println!(
        "faults: runtime {}, seed {}, {} kill points, syscall faults: {}",
        o.runtime.display(),
        o.seed,
        o.kills,
        o.syscalls.map_or("all".to_string(), |n| n.to_string())
    );
    let started = Instant::now();
    let mut st = Stats::default();
    let out_of_time = || {
        campaign::stop_requested()
            || o.max_seconds
                .is_some_and(|m| started.elapsed().as_secs() >= m)
    };

    // Each operation's duration and trace (its own process's syscalls, in order).
    let mut durations = BTreeMap::new();
    let mut traces = BTreeMap::new();
    for &op in OPS {
        let (d, trace) = f.measure(op)?;
        println!(
            "faults: {op:?} takes {} ms, {} syscalls",
            d.as_millis(),
            trace.len()
        );
        durations.insert(op, d);
        traces.insert(op, trace);
    }

    for k in 0..o.kills {
        if out_of_time() {
            break;
        }
        let mut rng = Rng::for_case(o.seed, k);
        // Its own stream, so that the kill points stay those of earlier runs of a seed.
        f.userns
            .set(Rng::for_case(o.seed ^ USERNS_STREAM, k).pct(USERNS_PCT));
        let op = *rng.pick(OPS);
        let trace = &traces[&op];
        let by_syscall = !trace.is_empty() && rng.pct(50);
        let (kind, wrapper, delay) = if by_syscall {
            let i = rng.below(trace.len() as u64) as usize;
            let name = &trace[i];
            let nth = trace[..=i].iter().filter(|s| *s == name).count();
            (
                format!("{op:?} killed at {name} #{nth}"),
                vec![
                    "strace".to_string(),
                    "-o".into(),
                    "/dev/null".into(),
                    "-e".into(),
                    format!("trace={name}"),
                    "-e".into(),
                    format!("inject={name}:signal=KILL:when={nth}"),
                ],
                None,
            )
        } else {
            let max = durations[&op].as_micros() as u64;
            let us = rng.below(max.max(1) + 1);
            (
                format!("{op:?} killed after {us} us"),
                Vec::new(),
                Some(Duration::from_micros(us)),
            )
        };
        let label = format!(
            "kill {k} (seed {}): {kind}{}",
            o.seed,
            if f.userns.get() {
                " (user namespace)"
            } else {
                ""
            }
        );
        *st.cases.entry(format!("kill {op:?}")).or_default() += 1;
        f.kill_case(op, &label, &wrapper, delay, &mut st);
        if (k + 1) % 50 == 0 {
            println!(
                "faults: {} kill points, {} findings, {} s",
                k + 1,
                st.findings.len(),
                started.elapsed().as_secs()
            );
        }
    }

    // Syscall faults on the create path: every syscall seen there (or N of them), and every
    // class.
    if o.syscalls != Some(0) {
        let seen = f.create_syscalls()?;
        let mut targets: Vec<String> = seen.keys().cloned().collect();
        if let Some(n) = o.syscalls {
            let mut rng = Rng::for_case(o.seed, u64::MAX);
            rng.shuffle(&mut targets);
            targets.truncate(n as usize);
            targets.sort();
        }
        println!(
            "faults: {} syscalls seen on the create path; injecting into {} and {} classes",
            seen.len(),
            targets.len(),
            CLASSES.len()
        );
        // Every class again with a user namespace.
        let all: Vec<(String, u64, bool)> = targets
            .iter()
            .map(|t| (t.clone(), seen[t], false))
            .chain(CLASSES.iter().map(|c| (c.to_string(), 8, false)))
            .chain(CLASSES.iter().map(|c| (c.to_string(), 8, true)))
            .collect();
        for (i, (target, count, userns)) in all.iter().enumerate() {
            if out_of_time() {
                break;
            }
            f.userns.set(*userns);
            let mut rng = Rng::for_case(o.seed, 1_000_000 + i as u64);
            let errno = *rng.pick(ERRNOS);
            let nth = 1 + rng.below(*count);
            let label = format!(
                "syscall fault {i} (seed {}): create with {target} #{nth} failing {errno}{}",
                o.seed,
                if *userns { " (user namespace)" } else { "" }
            );
            *st.cases
                .entry(if target.starts_with('%') {
                    "syscall class".into()
                } else {
                    "syscall".into()
                })
                .or_default() += 1;
            f.syscall_case(target, nth, errno, &label, &mut st);
        }
    }

    let elapsed = started.elapsed();
    println!("\n==== faults summary ====");
    for (k, n) in &st.cases {
        println!("{k:<20} {n:>5}");
    }
    println!(
        "killed or failed mid-operation {}, finished anyway {}; failed creates that left \
         something before delete --force: {}; crashes in start-up/allocator calls: {}",
        st.killed, st.finished_first, st.failed_create_left, st.startup_crashes
    );
    for fd in &st.findings {
        println!("FINDING {}: {}", fd.case, fd.what);
    }
    println!(
        "faults: {} cases in {} s, {} findings",
        st.cases.values().sum::<u64>(),
        elapsed.as_secs(),
        st.findings.len()
    );

    campaign::reap_orphans();
    context::remove_new_cgroup_parents(&parents_before);
    let _ = fs::remove_dir(&f.root);
    let _ = fs::remove_dir("/run/berth-test");
    let _ = Command::new("rm")
        .args(["-rf", "--one-file-system"])
        .arg(&tmp)
        .status();
    Ok(if st.findings.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// A command's end: exit status and stderr.
struct Done {
    status: Option<ExitStatus>,
    stderr: String,
    timed_out: bool,
}

impl Done {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn describe(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        let st = match (self.timed_out, self.status) {
            (true, _) => "timed out".to_string(),
            (_, Some(s)) if s.signal().is_some() => format!("signal {}", s.signal().unwrap_or(0)),
            (_, Some(s)) => format!("exit {}", s.code().unwrap_or(-1)),
            (_, None) => "not run".into(),
        };
        format!("{st}; stderr {:?}", clip(&self.stderr, 300))
    }

    /// Aborted by Rust's runtime before main: SIGABRT without a panic message.
    fn std_startup_abort(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let text = self.stderr.trim();
        self.status.and_then(|s| s.signal()) == Some(libc::SIGABRT)
            && !text.contains("panicked")
            && (text.is_empty() || text.starts_with("fatal runtime error"))
    }

    /// Died by a signal the injector did not send (SIGKILL), or printed a panic.
    fn crashed(&self) -> Option<String> {
        use std::os::unix::process::ExitStatusExt;
        if self.stderr.contains("panicked") {
            return Some(format!("panicked: {}", self.describe()));
        }
        match self.status.and_then(|s| s.signal()) {
            Some(s) if s != libc::SIGKILL => {
                Some(format!("died by signal {s}: {}", self.describe()))
            }
            _ => None,
        }
    }
}

impl Faults {
    fn new_id(&self) -> String {
        let n = self.seq.get() + 1;
        self.seq.set(n);
        format!("fault-{}-{n}", std::process::id())
    }

    fn write_config(&self, dir: &Path, id: &str, args: &[&str]) -> Result<(), String> {
        let mut cfg = Config::base(&format!("/berth-test/{id}"));
        cfg.args(args);
        cfg.set("/linux/resources/pids", serde_json::json!({"limit": 100}));
        if self.userns.get() {
            // The rootfs stays the host root's: read-only, it needs no chown.
            cfg.ns_add("user");
            let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            cfg.set("/linux/uidMappings", map.clone());
            cfg.set("/linux/gidMappings", map);
        }
        fs::write(dir.join("config.json"), cfg.to_string_pretty()).map_err(|e| e.to_string())
    }

    fn bundle_for(&self, op: Op, id: &str) -> Result<&Path, String> {
        let (dir, args): (&Path, &[&str]) = if op == Op::Run {
            (&self.bundle_fg, &["sh", "-c", "sleep 0.02"])
        } else {
            (&self.bundle, &["sleep", "1000"])
        };
        self.write_config(dir, id, args)?;
        Ok(dir)
    }

    /// Start `[wrapper...] runtime --root R args...` with output to files.
    fn spawn(&self, wrapper: &[String], args: &[&str]) -> Result<(Child, PathBuf), String> {
        let n = self.seq.get();
        let err = self.tmp.join("io").join(format!("{n}.err"));
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(&self.rt);
                c
            }
            None => Command::new(&self.rt),
        };
        cmd.arg("--root").arg(&self.root).args(args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(self.tmp.join("io/out")).map_err(|e| e.to_string())?)
            .stderr(File::create(&err).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        Ok((child, err))
    }

    /// Wait for a child (ours, by pid), killing it after `bound`.
    fn wait(&self, mut child: Child, err: &Path, bound: Duration) -> Done {
        let deadline = Instant::now() + bound;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => {
                    timed_out = true;
                    let _ = child.kill();
                    break child.wait().ok();
                }
                Err(_) => break None,
            }
        };
        let stderr = fs::read_to_string(err).unwrap_or_default();
        let _ = fs::remove_file(err);
        Done {
            status,
            stderr,
            timed_out,
        }
    }

    fn run(&self, wrapper: &[String], args: &[&str], bound: Duration) -> Done {
        match self.spawn(wrapper, args) {
            Ok((c, err)) => self.wait(c, &err, bound),
            Err(e) => Done {
                status: None,
                stderr: e,
                timed_out: false,
            },
        }
    }

    /// Bring container `id` to `status` (created or running).
    fn prepare(&self, id: &str, status: &str) -> Result<(), String> {
        let dir = self
            .bundle_for(Op::Create, id)?
            .to_string_lossy()
            .into_owned();
        let d = if status == "created" {
            self.run(&[], &["create", "--bundle", &dir, id], BOUND)
        } else {
            self.run(&[], &["run", "--detach", "--bundle", &dir, id], BOUND)
        };
        if d.ok() {
            Ok(())
        } else {
            Err(format!("preparing a {status} container: {}", d.describe()))
        }
    }

    /// One run of `op` (on a prepared container), to time it and record its own syscalls.
    fn measure(&self, op: Op) -> Result<(Duration, Vec<String>), String> {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let id = self.new_id();
            if let Some(s) = op.needs() {
                self.prepare(&id, s)?;
            }
            let dir = self.bundle_for(op, &id)?.to_string_lossy().into_owned();
            let t = Instant::now();
            let d = self.run(&[], &op.args(&dir, &id), OP_BOUND);
            best = best.min(t.elapsed());
            self.cleanup(&id, &dir);
            if !d.ok() {
                return Err(format!("{op:?} fails without a fault: {}", d.describe()));
            }
        }
        let id = self.new_id();
        if let Some(s) = op.needs() {
            self.prepare(&id, s)?;
        }
        let dir = self.bundle_for(op, &id)?.to_string_lossy().into_owned();
        let log = self.tmp.join("trace.log");
        let w: Vec<String> = ["strace", "-o", &log.to_string_lossy(), "-e", "trace=all"]
            .map(String::from)
            .to_vec();
        let d = self.run(&w, &op.args(&dir, &id), OP_BOUND);
        self.cleanup(&id, &dir);
        if !d.ok() {
            return Err(format!("{op:?} fails under strace: {}", d.describe()));
        }
        let text = fs::read_to_string(&log).map_err(|e| e.to_string())?;
        let trace = text.lines().filter_map(syscall_name).collect();
        Ok((best, trace))
    }

    /// Every syscall on the create path (berth, stage 1, init), with the most calls one
    /// process makes of it.
    fn create_syscalls(&self) -> Result<BTreeMap<String, u64>, String> {
        let id = self.new_id();
        let dir = self
            .bundle_for(Op::Create, &id)?
            .to_string_lossy()
            .into_owned();
        let log = self.tmp.join("trace-f.log");
        let w: Vec<String> = ["strace", "-f", "-D", "-o", &log.to_string_lossy()]
            .map(String::from)
            .to_vec();
        let d = self.run(&w, &Op::Create.args(&dir, &id), OP_BOUND);
        self.cleanup(&id, &dir);
        if !d.ok() {
            return Err(format!("create fails under strace -f: {}", d.describe()));
        }
        // Let the tracer see init's end (delete --force above).
        crate::harness::wait_until(Duration::from_secs(5), || {
            campaign::reap_orphans();
            tracers().is_empty()
        });
        let text = fs::read_to_string(&log).map_err(|e| e.to_string())?;
        let mut per: BTreeMap<(String, String), u64> = BTreeMap::new();
        for l in text.lines() {
            let Some((pid, rest)) = l.split_once(' ') else {
                continue;
            };
            if let Some(name) = syscall_name(rest.trim_start()) {
                *per.entry((name, pid.to_string())).or_default() += 1;
            }
        }
        let mut out = BTreeMap::new();
        for ((name, _), n) in per {
            let e = out.entry(name).or_insert(0);
            *e = (*e).max(n);
        }
        Ok(out)
    }

    fn kill_case(
        &self,
        op: Op,
        label: &str,
        wrapper: &[String],
        delay: Option<Duration>,
        st: &mut Stats,
    ) {
        let id = self.new_id();
        let finding = |st: &mut Stats, what: String| {
            st.findings.push(Finding {
                case: format!("{label} [{id}]"),
                what,
            })
        };
        if let Some(s) = op.needs() {
            if let Err(e) = self.prepare(&id, s) {
                finding(st, e);
                self.cleanup(&id, &self.bundle.to_string_lossy());
                return;
            }
        }
        let dir = match self.bundle_for(op, &id) {
            Ok(d) => d.to_string_lossy().into_owned(),
            Err(e) => return finding(st, e),
        };
        let done = match self.spawn(wrapper, &op.args(&dir, &id)) {
            Ok((mut child, err)) => {
                if let Some(d) = delay {
                    std::thread::sleep(d);
                    // Our own child, by pid.
                    let _ = child.kill();
                }
                self.wait(child, &err, OP_BOUND)
            }
            Err(e) => return finding(st, e),
        };
        self.judge(&id, &dir, label, &done, st, None);
    }

    fn syscall_case(&self, target: &str, nth: u64, errno: &str, label: &str, st: &mut Stats) {
        let id = self.new_id();
        let dir = match self.bundle_for(Op::Create, &id) {
            Ok(d) => d.to_string_lossy().into_owned(),
            Err(e) => {
                st.findings.push(Finding {
                    case: label.into(),
                    what: e,
                });
                return;
            }
        };
        // -D: the tracer is a detached grandchild, so that our child is the runtime itself and
        // its end is create's end (the tracer stays on init until `delete --force`).
        // The trace says which call the fault hit: a class (`%desc`) holds start-up calls too
        // (mmap of std's signal stack is a `%desc` call).
        let trace = self.tmp.join(format!("{id}.trace"));
        let w: Vec<String> = vec![
            "strace".into(),
            "-f".into(),
            "-D".into(),
            "-o".into(),
            trace.to_string_lossy().into_owned(),
            "-e".into(),
            format!("trace={target}"),
            "-e".into(),
            format!("inject={target}:error={errno}:when={nth}"),
        ];
        let done = self.run(&w, &Op::Create.args(&dir, &id), OP_BOUND);
        let hit = injected_calls(&fs::read_to_string(&trace).unwrap_or_default());
        let _ = fs::remove_file(&trace);
        // create re-execs itself from a sealed copy (libcontainer::sealed), so std's start-up
        // (poll of fds 0-2, SIGPIPE's handler) runs twice; when a fault fails it there, std
        // aborts with no panic message, or with "fatal runtime error".
        let startup = STARTUP.contains(&target)
            || hit.iter().any(|n| STARTUP.contains(&n.as_str()))
            || done.std_startup_abort();
        self.judge(&id, &dir, label, &done, st, Some(startup));
    }

    /// After a fault: the operation did not hang or crash; `state` and `delete --force` end
    /// in bounded time; nothing is left.
    /// `syscall`: for a syscall fault on create, whether the syscall is one of start-up's.
    fn judge(
        &self,
        id: &str,
        dir: &str,
        label: &str,
        done: &Done,
        st: &mut Stats,
        syscall: Option<bool>,
    ) {
        let create = syscall.is_some();
        let mut what = Vec::new();
        if done.timed_out {
            what.push(format!("the operation hung: {}", done.describe()));
        }
        if let Some(c) = done.crashed() {
            if syscall == Some(true) {
                st.startup_crashes += 1;
            } else {
                what.push(c);
            }
        }
        if done.ok() {
            st.finished_first += 1;
        } else {
            st.killed += 1;
        }
        if create && !done.ok() && !done.timed_out && done.status.is_some() {
            let left = self.leftovers(id, Path::new(dir));
            if !left.is_empty() {
                st.failed_create_left += 1;
                if self.verbose {
                    println!("{label}: failed create left {}", left.join(", "));
                }
            }
        }
        let s = self.run(&[], &["state", id], BOUND);
        if s.timed_out {
            what.push(format!("state hung: {}", s.describe()));
        }
        if let Some(c) = s.crashed() {
            what.push(format!("state {c}"));
        }
        let d = self.run(&[], &["delete", "--force", id], BOUND);
        if d.timed_out {
            what.push(format!("delete --force hung: {}", d.describe()));
        } else if !d.ok() {
            what.push(format!("delete --force failed: {}", d.describe()));
        }
        if let Some(c) = d.crashed() {
            what.push(format!("delete --force {c}"));
        }
        // The tracer of a syscall case follows init: it ends with it.
        crate::harness::wait_until(Duration::from_secs(5), || {
            campaign::reap_orphans();
            context::processes_of(id, Path::new(dir)).is_empty()
        });
        let left = self.leftovers(id, Path::new(dir));
        if !left.is_empty() {
            what.push(format!("left after delete --force: {}", left.join(", ")));
        }
        self.cleanup(id, dir);
        if self.verbose {
            println!(
                "{label}: {} -> {}",
                done.describe(),
                if what.is_empty() { "ok" } else { "FINDING" }
            );
        }
        for w in what {
            st.findings.push(Finding {
                case: format!("{label} [{id}]"),
                what: w,
            });
        }
    }

    fn leftovers(&self, id: &str, dir: &Path) -> Vec<String> {
        let mut left = Vec::new();
        if self.root.join(id).exists() {
            left.push("state dir".to_string());
        }
        for cg in context::cgroup_dirs(id) {
            left.push(format!("cgroup {}", cg.display()));
        }
        for m in context::mounts_under(dir) {
            left.push(format!("mount {m}"));
        }
        for pid in context::processes_of(id, dir) {
            if cgroup_of_id(pid, id) || context::comm(pid) != "strace" {
                left.push(format!("process {pid} ({})", context::comm(pid)));
            }
        }
        left
    }

    /// `delete --force`, then remove by hand anything of `id` still there (its processes by
    /// pid, its cgroups, its state dir), and reap.
    fn cleanup(&self, id: &str, dir: &str) {
        let _ = self.run(&[], &["delete", "--force", id], BOUND);
        let dir = Path::new(dir);
        let mut pids = context::processes_of(id, dir);
        for cg in context::cgroup_dirs(id) {
            let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        crate::harness::wait_until(Duration::from_secs(5), || {
            campaign::reap_orphans();
            context::processes_of(id, dir).is_empty()
        });
        for cg in context::cgroup_dirs(id) {
            let _ = fs::remove_dir(&cg);
        }
        if self.root.join(id).exists() {
            let _ = fs::remove_dir_all(self.root.join(id));
        }
        campaign::reap_orphans();
    }
}

/// Whether `pid` is in the `/berth-test/<id>` cgroup.
fn cgroup_of_id(pid: u32, id: &str) -> bool {
    let cg = format!("/berth-test/{id}");
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|s| s.lines().any(|l| l.ends_with(&cg)))
}

/// The syscall name of one strace output line (`name(...`), if it is a call.
fn syscall_name(line: &str) -> Option<String> {
    let line = line.trim_start();
    let line = line.strip_prefix("<... ").unwrap_or(line);
    if line.starts_with("---") || line.starts_with("+++") || line.contains(" resumed>") {
        return None;
    }
    let end = line.find('(')?;
    let name = &line[..end];
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then(|| name.to_string())
}

/// The syscalls strace marked `(INJECTED)` in a trace written with `-f -o` (lines start with
/// the pid).
fn injected_calls(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter(|l| l.contains("(INJECTED)"))
        .filter_map(|l| {
            let l = l.trim_start();
            let l = match l.split_once(' ') {
                Some((pid, rest)) if pid.bytes().all(|b| b.is_ascii_digit()) => rest,
                _ => l,
            };
            syscall_name(l)
        })
        .collect()
}

/// Live strace processes whose parent is this process (detached tracers of syscall cases).
fn tracers() -> Vec<u32> {
    let me = std::process::id();
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if context::proc_stat(pid).is_some_and(|st| st.comm == "strace" && st.ppid == me) {
                v.push(pid);
            }
        }
    }
    v
}

#[cfg(test)]
mod unit {
    use super::syscall_name;

    #[test]
    fn injected_calls_from_a_followed_trace() {
        let trace = "15542 poll([{fd=0, events=0}], 3, 0) = 0 (Timeout)\n\
                     15542 mmap(NULL, 16048, PROT_READ, MAP_STACK, -1, 0) = -1 EAGAIN (Resource \
                     temporarily unavailable) (INJECTED)\n\
                     15542 +++ killed by SIGSEGV +++\n";
        assert_eq!(super::injected_calls(trace), vec!["mmap".to_string()]);
    }

    #[test]
    fn syscall_names_from_strace_lines() {
        assert_eq!(
            syscall_name("openat(AT_FDCWD, \"/x\", O_RDONLY) = 3").as_deref(),
            Some("openat")
        );
        assert_eq!(
            syscall_name("  write(1, \"a(\", 2) = 2").as_deref(),
            Some("write")
        );
        assert_eq!(syscall_name("--- SIGCHLD {si_signo=SIGCHLD} ---"), None);
        assert_eq!(syscall_name("+++ exited with 0 +++"), None);
        assert_eq!(syscall_name("<... wait4 resumed>) = 1"), None);
        assert_eq!(
            syscall_name("clone3({flags=CLONE_PIDFD} <unfinished ...>").as_deref(),
            Some("clone3")
        );
    }
}
