//! `integration mutfuzz`: config.json mutations run through the runtime (issue 11).
//!
//! Each case is a valid generated config (gen.rs, as difffuzz runs it) with one to three
//! mutations: a node replaced by a hostile value (wrong type, extremes, deep nesting, a huge
//! array, a long or control-character string, bytes that are not UTF-8), an unknown key, a
//! duplicated or huge array, an extreme number in a numeric field, or a hostile path (`..`
//! chains, /proc/self/root, symlinks in the rootfs that lead out of it, a loop, 8 KiB) in a
//! path field. It runs as `run`, or `create` + `start` + `delete`, then `delete --force`, and
//! must give:
//! - no hang (30 s per command), no death by a signal, no panic;
//! - for a refused create, one `level=error` line of bounded length and nothing else;
//! - nothing left: state dir, cgroups, mounts under the bundle, processes;
//! - no write outside the bundle, the state root and cgroupfs: the fuzzer's mount namespace
//!   has everything else read-only (mount_setattr), so such a write fails with EROFS. A case
//!   whose error says "read-only file system" runs again in a namespace where nothing is
//!   read-only (`integration rw-exec`): if the error goes away, the runtime wrote outside.
//!
//! Paths that would reach the host itself are never generated: the root path stays inside
//! the bundle, cgroupsPath inside the suite's parent, and namespace paths never name a
//! mount namespace (joining the fuzzer's own would pivot it).
//!
//! Usage: integration mutfuzz [--seed S[,S...]] [--cases N] [--case N] [--berth PATH]
//!        [--max-seconds T] [--verbose]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use serde_json::{json, Value};

use super::gen::{self, Case, Mode};
use super::{CaseOpts, Fuzz, Outcome, Rng, Side};
use crate::campaign::{self, clip};
use crate::context;
use crate::runtime::Runtime;

/// A string the bundle writer turns into bytes that are not UTF-8 (see `config_bytes`).
pub const INVALID_UTF8: &str = "@INVALID-UTF8@";

/// Mixed into the seed so that mutations do not repeat the generator's draws.
const MUTATION_STREAM: u64 = 0x6d75_7466_757a_7a00;

fn parse(args: &[String]) -> Result<CaseOpts, String> {
    let mut o = CaseOpts::new(1000);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if o.take(a, &mut it)? {
            continue;
        }
        match a.as_str() {
            "-h" | "--help" => {
                println!(
                    "usage: integration mutfuzz [--seed S[,S...]] [--cases N] [--case N] \
                     [--berth PATH] [--max-seconds T] [--verbose]"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("mutfuzz: unknown argument {a}")),
        }
    }
    Ok(o)
}

// ---- mount attributes -------------------------------------------------------------------

/// Set (`readonly`) or clear MOUNT_ATTR_RDONLY on the mount at `path` and every mount below.
fn set_readonly(path: &Path, readonly: bool) -> Result<(), String> {
    use libcontainer::sys::{mount_attr::RDONLY, mount_setattr};
    let what = || {
        format!(
            "mount_setattr({}, {})",
            path.display(),
            if readonly { "ro" } else { "rw" }
        )
    };
    let dir = fs::File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)
        .map_err(|e| format!("{}: {e}", what()))?;
    let (set, clear) = if readonly { (RDONLY, 0) } else { (0, RDONLY) };
    mount_setattr(std::os::fd::AsFd::as_fd(&dir), true, set, clear)
        .map_err(|e| format!("{}: {e}", what()))
}

/// Everything read-only in this (private) mount namespace but `writable`. Refused in the
/// mount namespace of PID 1 (the machine's).
fn readonly_host(writable: &[&Path]) -> Result<(), String> {
    // PID 1's may be unreadable (another user namespace's process); the parent's is the
    // caller's (unshare execs this binary in place).
    let ns = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let own = ns("self").ok_or("mutfuzz: cannot read /proc/self/ns/mnt")?;
    let parent = nix::unistd::getppid().to_string();
    if [ns("1"), ns(&parent)].contains(&Some(own)) {
        return Err(
            "mutfuzz: not in a mount namespace of its own (BERTH_IT_NO_UNSHARE?): \
                    refusing to make the machine's mounts read-only"
                .into(),
        );
    }
    set_readonly(Path::new("/"), true)?;
    for p in writable {
        set_readonly(p, false)?;
    }
    Ok(())
}

/// `integration rw-exec RUNTIME ARGS...`: in a fresh mount namespace (the wrapper's
/// `unshare`), clear every read-only flag the fuzzer set, then exec the runtime.
pub fn rw_exec(args: &[String]) -> Result<ExitCode, String> {
    let (rt, rest) = args.split_first().ok_or("rw-exec: no runtime given")?;
    set_readonly(Path::new("/"), false)?;
    let err = Command::new(rt).args(rest).exec();
    Err(format!("rw-exec {rt}: {err}"))
}

// ---- mutations --------------------------------------------------------------------------

/// A value of the wrong type, an extreme, or a hostile string.
fn hostile_value(r: &mut Rng) -> Value {
    match r.below(20) {
        0 => Value::Null,
        1 => json!(false),
        2 => json!(-1),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(-1.5e300),
        6 => json!(4294967295u64),
        7 => json!(""),
        8 => json!("z".repeat(65_536)),
        9 => json!("ctl\n\t\u{1b}[31m\u{7f}"),
        10 => json!(format!("bad {INVALID_UTF8} bytes")),
        11 => json!([]),
        12 => Value::Array(vec![json!(7); 50_000]),
        13 => json!({}),
        14 => json!({"fzUnknown": {"deeper": [null]}}),
        15 => {
            let mut v = json!("leaf");
            for _ in 0..r.below(200) {
                v = json!({ "n": v });
            }
            v
        }
        16 => json!(2147483648u64),
        17 => json!(0),
        18 => json!("SCMP_ACT_KILL"),
        _ => json!("/"),
    }
}

/// A path that tries to leave the rootfs, or is otherwise hostile. `fz-up`, `fz-abs` and
/// `fz-loop` are symlinks the fuzzer puts in the rootfs (see `main`).
fn hostile_path(r: &mut Rng) -> String {
    let long = format!("/{}", "d/".repeat(4096));
    let paths = [
        "../../../../../../../../tmp/fz-out",
        "/fz-up/fz-out",
        "/fz-abs/fz-out",
        "/fz-loop/x",
        "/proc/self/root/tmp/fz-out",
        "/proc/self/cwd/fz-out",
        "/dev/../../../tmp/fz-out",
        "/sys/fs/cgroup/../../../tmp/fz-out",
        "//",
        "/",
        "",
        ".",
        "relative/dir",
        "/tmp/a\nb",
        "/dev/null",
        "/proc/sys/kernel/fz",
        "/fz-up",
        &long,
    ];
    match r.below(paths.len() as u64 + 1) as usize {
        i if i < paths.len() => paths[i].to_string(),
        _ => format!("/fz/{INVALID_UTF8}"),
    }
}

/// Pointers the generic mutations leave alone: their hostile values would reach the host
/// itself (see the module documentation); they get safe hostile values of their own.
fn guarded(ptr: &str) -> bool {
    ptr == "/root"
        || ptr.starts_with("/root/")
        || ptr.starts_with("/linux/cgroupsPath")
        || ptr.starts_with("/linux/namespaces")
        || ptr.starts_with("/hooks")
}

/// A random node of `v`, as a JSON pointer (possibly the root: "").
fn random_node(v: &Value, r: &mut Rng) -> String {
    let mut ptr = String::new();
    let mut cur = v;
    while r.below(5) != 0 {
        let (key, next) = match cur {
            Value::Object(m) if !m.is_empty() => {
                let (k, v) = m
                    .iter()
                    .nth(r.below(m.len() as u64) as usize)
                    .expect("index");
                (k.replace('~', "~0").replace('/', "~1"), v)
            }
            Value::Array(a) if !a.is_empty() => {
                let i = r.below(a.len() as u64) as usize;
                (i.to_string(), &a[i])
            }
            _ => break,
        };
        ptr.push('/');
        ptr.push_str(&key);
        cur = next;
    }
    ptr
}

/// The path fields of a config that exist in `cfg`, as pointers.
fn path_fields(cfg: &Value) -> Vec<String> {
    let mut v = vec!["/process/cwd".to_string(), "/process/args/0".to_string()];
    let each = |arr: &str, field: &str, v: &mut Vec<String>| {
        for i in 0..cfg
            .pointer(arr)
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
        {
            v.push(format!("{arr}/{i}{field}"));
        }
    };
    each("/mounts", "/destination", &mut v);
    each("/mounts", "/source", &mut v);
    each("/linux/devices", "/path", &mut v);
    each("/linux/maskedPaths", "", &mut v);
    each("/linux/readonlyPaths", "", &mut v);
    v
}

/// Apply one to three mutations to `case`; returns what was done.
fn mutate(case: &mut Case, r: &mut Rng) -> Vec<String> {
    let mut done = Vec::new();
    for _ in 0..1 + r.below(3) {
        let cfg = &mut case.cfg;
        match r.below(8) {
            // A node replaced by a hostile value.
            0 | 1 => {
                let ptr = random_node(cfg, r);
                if ptr.is_empty() || guarded(&ptr) {
                    continue;
                }
                let v = hostile_value(r);
                done.push(format!("{ptr} = {}", clip(&v.to_string(), 60)));
                if let Some(t) = cfg.pointer_mut(&ptr) {
                    *t = v;
                }
            }
            // An unknown key somewhere.
            2 => {
                let ptr = random_node(cfg, r);
                if guarded(&ptr) {
                    continue;
                }
                if let Some(Value::Object(m)) = cfg.pointer_mut(&ptr) {
                    let key = ["fzUnknown", "fz\nkey", "", "fz\u{0}nul"][r.below(4) as usize];
                    m.insert(key.to_string(), hostile_value(r));
                    done.push(format!("{ptr}: unknown key {key:?}"));
                }
            }
            // An array made long by repeating an element.
            3 => {
                let ptr = random_node(cfg, r);
                if guarded(&ptr) {
                    continue;
                }
                if let Some(Value::Array(a)) = cfg.pointer_mut(&ptr) {
                    if let Some(first) = a.first().cloned() {
                        let n = [2, 64, 4096][r.below(3) as usize];
                        a.extend(std::iter::repeat_n(first, n));
                        done.push(format!("{ptr}: +{n} copies"));
                    }
                }
            }
            // An extreme number where a number belongs.
            4 => {
                let fields = [
                    "/process/user/uid",
                    "/process/user/gid",
                    "/process/user/umask",
                    "/process/oomScoreAdj",
                    "/process/consoleSize/height",
                    "/linux/resources/memory/limit",
                    "/linux/resources/cpu/shares",
                    "/linux/resources/cpu/quota",
                    "/linux/resources/pids/limit",
                    "/linux/resources/blockIO/weight",
                ];
                let ptr = *r.pick(&fields);
                let v = r
                    .pick(&[
                        json!(-1),
                        json!(0),
                        json!(4294967295u64),
                        json!(4294967296u64),
                        json!(i64::MAX),
                        json!(u64::MAX),
                        json!(-9223372036854775808i64),
                    ])
                    .clone();
                set(cfg, ptr, v.clone());
                done.push(format!("{ptr} = {v}"));
            }
            // A hostile path in a path field, or a new bind mount with one.
            5 | 6 => {
                let fields = path_fields(cfg);
                let p = hostile_path(r);
                if r.pct(30) {
                    let (src, dst) = if r.pct(50) {
                        ("@BUNDLE@/rootfs/bin".to_string(), p.clone())
                    } else {
                        (p.clone(), "/mnt/fz".to_string())
                    };
                    let m = json!({"destination": dst, "source": src, "type": "bind",
                                   "options": ["rbind"]});
                    if let Some(Value::Array(a)) = cfg.pointer_mut("/mounts") {
                        a.push(m);
                        done.push(format!("bind {src:?} -> {dst:?}", src = clip(&src, 40)));
                    }
                } else {
                    let ptr = r.pick(&fields).clone();
                    done.push(format!("{ptr} = {:?}", clip(&p, 60)));
                    set(cfg, &ptr, json!(p));
                }
            }
            // The guarded fields, with values that stay off the host.
            _ => {
                let id = case.id.clone();
                let (ptr, v) = match r.below(4) {
                    0 => (
                        "/root/path".to_string(),
                        json!(*r.pick(&[
                            "rootfs/../rootfs",
                            "rootfs/.",
                            "no-such-rootfs",
                            "config.json",
                            "rootfs/fz-loop",
                            "rootfs/dev/null",
                        ])),
                    ),
                    1 => (
                        "/linux/cgroupsPath".to_string(),
                        json!(r
                            .pick(&[
                                format!("/berth-test/{id}/../{id}"),
                                format!("/berth-test/{id}/sub/deeper"),
                                format!("/berth-test/{id}\nx"),
                                format!("/berth-test/{id}/{}", "c".repeat(300)),
                                format!("/berth-test/{id}:x"),
                            ])
                            .clone()),
                    ),
                    2 => {
                        let ns = r.pick(&["network", "ipc", "uts", "pid", "cgroup"]);
                        let path = r
                            .pick(&[
                                format!(
                                    "/proc/self/ns/{}",
                                    if *ns == "network" { "net" } else { ns }
                                ),
                                "/nonexistent/ns".to_string(),
                                "/dev/null".to_string(),
                                "@BUNDLE@/config.json".to_string(),
                                "/proc/self/ns/user".to_string(),
                            ])
                            .clone();
                        let arr = cfg
                            .pointer_mut("/linux/namespaces")
                            .and_then(Value::as_array_mut);
                        if let Some(a) = arr {
                            a.retain(|n| n["type"] != *ns);
                            a.push(json!({"type": ns, "path": path}));
                        }
                        done.push(format!("namespace {ns} path {path:?}"));
                        continue;
                    }
                    _ => (
                        "/hooks/prestart".to_string(),
                        json!([{"path": *r.pick(&["", "relative/sh", "/nonexistent", "/dev/null",
                                                   "/fz-up", "@BUNDLE@"]),
                                "args": ["fz"], "timeout": *r.pick(&[json!(0), json!(-1),
                                                   json!(1), json!(u64::MAX)])}]),
                    ),
                };
                done.push(format!("{ptr} = {}", clip(&v.to_string(), 60)));
                set(cfg, &ptr, v);
            }
        }
    }
    done
}

/// Keep the case's cgroups below the suite's parent: a config whose `linux` lost its
/// cgroupsPath (or got a relative one) would make them below the fuzzer's own cgroup, which
/// is the machine supervisor's. A cgroupsPath of the wrong type is refused before any cgroup.
fn fence_cgroups(cfg: &mut Value, original: &Value) {
    if let Some(linux) = cfg.get_mut("linux").and_then(Value::as_object_mut) {
        let inside = match linux.get("cgroupsPath") {
            Some(Value::String(p)) => p.starts_with("/berth-test/"),
            Some(_) => true,
            None => false,
        };
        if !inside {
            linux.insert("cgroupsPath".into(), original.clone());
        }
    }
}

/// Set `ptr` in `cfg`: missing objects on the way are created, but an array index must exist
/// and a value of another type on the way stays (unlike `Config::set`, which makes objects
/// of both: a mutation must not undo an earlier one).
fn set(cfg: &mut Value, ptr: &str, v: Value) {
    let mut cur = cfg;
    let parts: Vec<&str> = ptr.split('/').skip(1).collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        cur = match cur {
            Value::Object(m) => {
                let e =
                    m.entry(part.to_string())
                        .or_insert(if last { Value::Null } else { json!({}) });
                e
            }
            Value::Array(a) => match part.parse::<usize>().ok().and_then(|k| a.get_mut(k)) {
                Some(e) => e,
                None => return,
            },
            _ => return,
        };
    }
    *cur = v;
}

// ---- checks -----------------------------------------------------------------------------

/// What is wrong with one outcome.
fn check(case: &Case, out: &Outcome) -> Vec<String> {
    let mut f = Vec::new();
    if out.timed_out {
        f.push(format!("hang: steps {:?}", out.steps));
    }
    for s in &out.signaled {
        f.push(format!("`{s}` died of a signal"));
    }
    if out.stderr.contains("panicked at") {
        f.push(format!("panic: {}", clip(&out.stderr, 300)));
    }
    for l in &out.leftovers {
        f.push(format!("left behind: {l}"));
    }
    if case.mode == Mode::CreateStart
        && out.steps.first() == Some(&("create", false))
        && !out.timed_out
    {
        f.extend(error_shape(&out.stderr));
    }
    f
}

/// A refused create prints one `level=error` line, of bounded length, and only log lines.
fn error_shape(stderr: &str) -> Option<String> {
    // The console receiver's own diagnosis (a create that failed sent no pty) is the
    // harness's, not the runtime's.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("[difffuzz console receiver"))
        .collect();
    let errors = lines.iter().filter(|l| l.contains("level=error")).count();
    if errors != 1 {
        return Some(format!(
            "{errors} error lines: {}",
            clip(&lines.join(" | "), 400)
        ));
    }
    if let Some(l) = lines.iter().find(|l| !l.starts_with("time=\"")) {
        return Some(format!("not a log line: {}", clip(l, 300)));
    }
    if let Some(l) = lines.iter().find(|l| l.len() > 8192) {
        return Some(format!("error of {} bytes: {}", l.len(), clip(l, 300)));
    }
    None
}

const EROFS_TEXT: &str = "read-only file system";

/// A mutation's description grouped for the summary: its pointer without array indexes and
/// what it did.
fn kind_of(done: &str) -> String {
    let (head, what) = done.split_once([' ', ':']).unwrap_or((done, ""));
    let head: Vec<&str> = head
        .split('/')
        .map(|c| if c.parse::<usize>().is_ok() { "N" } else { c })
        .collect();
    let what = match what.trim_start() {
        w if w.starts_with('=') => "= value",
        w if w.starts_with("unknown key") => "unknown key",
        w if w.starts_with('+') => "longer array",
        w if w.starts_with("path") => "path",
        _ => "",
    };
    format!("{} {what}", head.join("/"))
}

// ---- the run ----------------------------------------------------------------------------

pub fn main(args: &[String]) -> Result<ExitCode, String> {
    let o = parse(args)?;
    if !o.berth.is_absolute() || !o.berth.exists() {
        return Err(format!(
            "mutfuzz: runtime {} not found (absolute path)",
            o.berth.display()
        ));
    }
    let pid = std::process::id();
    // Everything the cases write is on this tmpfs (bundles, the state root).
    let tmp = PathBuf::from(format!("/tmp/berth-mutfuzz-{pid}"));
    fs::create_dir_all(&tmp).map_err(|e| format!("mkdir {}: {e}", tmp.display()))?;
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "mode=0755", "berth-mutfuzz"])
        .arg(&tmp)
        .status()
        .map_err(|e| format!("mount: {e}"))?;
    if !st.success() {
        return Err(format!("mount tmpfs on {}: {st}", tmp.display()));
    }
    let result = run(&o, &tmp);
    // The mount point is on what the run made read-only.
    let _ = set_readonly(Path::new("/"), false);
    let _ = Command::new("umount").arg("-l").arg(&tmp).status();
    let _ = fs::remove_dir(&tmp);
    result
}

fn run(o: &CaseOpts, tmp: &Path) -> Result<ExitCode, String> {
    let (rootfs, host) = super::prepare(tmp)?;
    for (link, target) in [
        ("fz-up", "../../../../../../../../tmp"),
        ("fz-abs", "/etc"),
        ("fz-loop", "fz-loop"),
    ] {
        std::os::unix::fs::symlink(target, rootfs.join(link)).map_err(|e| e.to_string())?;
    }
    campaign::start()?;
    let parents_before = context::cgroup_parents();
    let state = tmp.join("state");
    let berth = Runtime::new(o.berth.clone(), state.clone(), tmp.join("io"))?;
    // The same runtime, run where nothing is read-only: the reference for EROFS errors.
    let wrapper = tmp.join("berth-rw");
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nBERTH_IT_IN_NS=1 exec unshare --mount --propagation private -- '{}' \
             rw-exec '{}' \"$@\"\n",
            me.display(),
            o.berth.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let rw = Side {
        rt: Runtime::new(wrapper, state, tmp.join("io"))?,
        label: "rw",
    };
    let fz = Fuzz {
        hostname: nix::unistd::gethostname().map_err(|e| format!("gethostname: {e}"))?,
        runc: rw,
        berth: Side {
            rt: berth,
            label: "berth",
        },
        tmp: tmp.to_path_buf(),
        rootfs,
        host,
        verbose: o.verbose,
        dump: false,
    };
    let writable: Vec<PathBuf> = ["/sys/fs/cgroup", "/proc", "/dev"]
        .iter()
        .map(PathBuf::from)
        .chain([tmp.to_path_buf()])
        .filter(|p| p.exists())
        .collect();
    readonly_host(&writable.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    println!(
        "mutfuzz: berth {} ({}); seeds {:?}, {} cases each; read-only but {}",
        o.berth.display(),
        fz.berth.rt.version,
        o.seeds,
        o.per_seed(),
        writable
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let started = Instant::now();
    let (mut cases, mut refused, mut ran, mut reruns) = (0u64, 0u64, 0u64, 0u64);
    let mut findings: Vec<String> = Vec::new();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for (seed, n) in o.each("mutfuzz", started) {
        let mut case = gen::generate(&fz.host, seed, n);
        let mut r = Rng::for_case(seed ^ MUTATION_STREAM, n);
        let cgroups_path = case.cfg["linux"]["cgroupsPath"].clone();
        let done = mutate(&mut case, &mut r);
        fence_cgroups(&mut case.cfg, &cgroups_path);
        for d in &done {
            *kinds.entry(kind_of(d)).or_default() += 1;
        }
        let _ = nix::unistd::sethostname(&fz.hostname);
        let out = fz.run_side(&fz.berth, &case);
        cases += 1;
        let first_ok = out.steps.first().is_some_and(|s| s.1);
        if first_ok {
            ran += 1;
        } else {
            refused += 1;
        }
        let mut f = check(&case, &out);
        if out.stderr.to_lowercase().contains(EROFS_TEXT) {
            reruns += 1;
            let _ = nix::unistd::sethostname(&fz.hostname);
            let again = fz.run_side(&fz.runc, &case);
            if !again.stderr.to_lowercase().contains(EROFS_TEXT) {
                f.push(format!(
                    "wrote outside the bundle, state and cgroupfs: {}",
                    clip(&out.stderr, 300)
                ));
            }
        }
        if o.verbose {
            println!(
                "case {seed}/{n}: {:?} steps {:?} {done:?} {}",
                case.mode,
                out.steps,
                clip(&out.stderr, 200)
            );
        }
        if !f.is_empty() {
            let what = format!(
                "seed {seed} case {n} ({:?}, mutations {done:?}): {}\n  replay: integration \
                     mutfuzz --seed {seed} --case {n} --verbose",
                case.mode,
                f.join("; ")
            );
            println!("FINDING {what}");
            findings.push(what);
        }
        if cases % 200 == 0 {
            println!(
                "mutfuzz: {cases} cases, {} findings, {} s",
                findings.len(),
                started.elapsed().as_secs()
            );
        }
    }
    println!("\n==== mutfuzz summary ====");
    for (k, n) in &kinds {
        println!("mutation {k:<40} {n:>6}");
    }
    println!(
        "mutfuzz: {cases} cases in {} s: {ran} got past create, {refused} refused, {reruns} \
         re-run without read-only mounts, {} findings",
        started.elapsed().as_secs(),
        findings.len()
    );
    campaign::reap_orphans();
    context::remove_new_cgroup_parents(&parents_before);
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_creates_objects_and_skips_missing_indexes() {
        let mut v = json!({"a": [1]});
        set(&mut v, "/b/c", json!(2));
        set(&mut v, "/a/0", json!(3));
        set(&mut v, "/a/5", json!(4));
        assert_eq!(v, json!({"a": [3], "b": {"c": 2}}));
    }

    #[test]
    fn cgroups_stay_below_the_suites_parent() {
        let orig = json!("/berth-test/x");
        for (linux, want) in [
            (json!({}), json!("/berth-test/x")),
            (json!({"cgroupsPath": "rel"}), json!("/berth-test/x")),
            (json!({"cgroupsPath": "/"}), json!("/berth-test/x")),
            (
                json!({"cgroupsPath": "/berth-test/y"}),
                json!("/berth-test/y"),
            ),
            (json!({"cgroupsPath": 7}), json!(7)),
        ] {
            let mut cfg = json!({ "linux": linux });
            fence_cgroups(&mut cfg, &orig);
            assert_eq!(cfg["linux"]["cgroupsPath"], want);
        }
    }

    #[test]
    fn error_shape_wants_one_log_line() {
        assert_eq!(
            error_shape("time=\"t\" level=error msg=\"create: x\"\n"),
            None
        );
        assert!(error_shape(
            "time=\"t\" level=error msg=\"a\"\ntime=\"t\" level=error msg=\"b\"\n"
        )
        .is_some());
        assert!(error_shape("raw\ntime=\"t\" level=error msg=\"a\"\n").is_some());
        assert!(error_shape("").is_some());
    }
}
