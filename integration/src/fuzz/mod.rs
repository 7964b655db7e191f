//! `integration difffuzz`: a differential fuzzer of berth against runc.
//!
//! Each case is a random but valid OCI config (gen.rs), deterministic from (seed, case
//! number). It runs under runc and then under berth, each in a fresh bundle, as `run` or
//! as `create` + `start` + `delete`; a probe (probe.rs) prints what the container sees.
//! The outcomes (each step's success, the exit code, the probe's sections, the cgroup files
//! read from the host after `create`, anything left behind) are compared; a difference that
//! no documented deviation (deviations.rs) explains is reported with the seed, the case
//! number, the config and a diff, and makes the run fail.
//!
//! Usage: integration difffuzz [--seed S[,S...]] [--cases N] [--case N] [--runc PATH]
//!        [--berth PATH] [--max-seconds T] [--verbose] [--dump] | --deviations

mod deviations;
mod gen;
pub mod mutate;
mod probe;
mod rng;

pub use rng::Rng;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use gen::{Case, Mode, Vol};

use crate::campaign::{self, clip};
use crate::context;
use crate::runtime::Runtime;

const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// The options difffuzz and mutfuzz share, and their walk over the cases.
pub struct CaseOpts {
    pub seeds: Vec<u64>,
    pub cases: u64,
    /// `--case N`: that case of each seed only.
    pub only: Option<u64>,
    pub berth: PathBuf,
    pub max_seconds: Option<u64>,
    pub verbose: bool,
}

impl CaseOpts {
    pub fn new(cases: u64) -> CaseOpts {
        CaseOpts {
            seeds: vec![1],
            cases,
            only: None,
            berth: campaign::default_berth("BERTH_BINARY"),
            max_seconds: None,
            verbose: false,
        }
    }

    /// Take the shared option `a` (with its value from `it`); false for any other.
    pub fn take(&mut self, a: &str, it: &mut std::slice::Iter<String>) -> Result<bool, String> {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{a} {s}: {e}"));
        match a {
            "--seed" | "--seeds" => {
                self.seeds = val()?
                    .split(',')
                    .map(|s| s.parse::<u64>().map_err(|e| format!("seed {s}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--cases" => self.cases = num(val()?)?,
            "--case" => self.only = Some(num(val()?)?),
            "--berth" => self.berth = PathBuf::from(val()?),
            "--max-seconds" => self.max_seconds = Some(num(val()?)?),
            "--verbose" | "-v" => self.verbose = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Cases per seed, as the banner says it.
    pub fn per_seed(&self) -> u64 {
        if self.only.is_some() {
            1
        } else {
            self.cases
        }
    }

    /// Every (seed, case number) to run, in order, until a signal or the time limit stops
    /// the run (said on stdout by `tool`).
    pub fn each<'a>(
        &'a self,
        tool: &'a str,
        started: Instant,
    ) -> impl Iterator<Item = (u64, u64)> + 'a {
        let range = move || match self.only {
            Some(n) => n..n + 1,
            None => 0..self.cases,
        };
        self.seeds
            .iter()
            .flat_map(move |&seed| range().map(move |n| (seed, n)))
            .take_while(move |_| {
                if campaign::stop_requested() {
                    println!("{tool}: stopped by a signal");
                    return false;
                }
                match self.max_seconds {
                    Some(max) if started.elapsed().as_secs() >= max => {
                        println!("{tool}: time limit of {max} s reached");
                        false
                    }
                    _ => true,
                }
            })
    }
}

struct Opts {
    case: CaseOpts,
    runc: PathBuf,
    dump: bool,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        case: CaseOpts::new(100),
        runc: PathBuf::from(std::env::var("RUNC").unwrap_or_else(|_| "/usr/sbin/runc".into())),
        dump: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if o.case.take(a, &mut it)? {
            continue;
        }
        match a.as_str() {
            "--runc" => {
                o.runc = PathBuf::from(it.next().ok_or(format!("{a} needs a value"))?);
            }
            "--dump" => o.dump = true,
            "--deviations" => {
                deviations::print();
                std::process::exit(0);
            }
            "-h" | "--help" => {
                println!(
                    "usage: integration difffuzz [--seed S[,S...]] [--cases N] [--case N] \
                     [--runc PATH] [--berth PATH] [--max-seconds T] [--verbose]"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("difffuzz: unknown argument {a}")),
        }
    }
    Ok(o)
}

/// What one runtime did with one case.
#[derive(Default)]
pub struct Outcome {
    /// (step, succeeded) in order: `run`, or `create`, `start`, `delete`.
    pub steps: Vec<(&'static str, bool)>,
    /// `run`'s exit code (None: killed or timed out).
    pub exit: Option<i32>,
    pub timed_out: bool,
    pub sections: BTreeMap<String, Vec<String>>,
    /// Cgroup files read from the host between `create` and `start`.
    pub host_cgroup: Vec<String>,
    pub stderr: String,
    pub leftovers: Vec<String>,
    /// This side is runc before 1.2 (Debian's 1.1.5): deviations from its behaviour only.
    pub runc_1_1: bool,
    /// Steps whose runtime process died of a signal (not of the timeout).
    pub signaled: Vec<&'static str>,
}

impl Outcome {
    /// The container ran the probe to its end and exited as asked.
    pub fn succeeded(&self, case: &Case) -> bool {
        self.steps.iter().all(|(_, ok)| *ok)
            && self.sections.contains_key("end")
            && (case.mode != Mode::Run || self.exit == Some(case.probe.exit_code))
    }
}

/// One difference between the two outcomes.
#[derive(Debug)]
pub struct Item {
    /// `step:create`, `exit`, `section:mounts`, `hostcgroup`, `leftover:berth`, ...
    pub key: String,
    pub detail: Vec<String>,
}

struct Side {
    rt: Runtime,
    label: &'static str,
}

struct Fuzz {
    /// The hostname when the fuzzer started.
    hostname: std::ffi::OsString,
    tmp: PathBuf,
    rootfs: PathBuf,
    host: gen::Host,
    runc: Side,
    berth: Side,
    verbose: bool,
    dump: bool,
}

#[derive(Default)]
struct Stats {
    cases: u64,
    runc_ok: u64,
    berth_ok: u64,
    both_failed: u64,
    identical: u64,
    explained: BTreeMap<&'static str, u64>,
    explained_cases: u64,
    unexplained: u64,
    fields: BTreeMap<String, (u64, u64)>,
    /// Why runc failed, normalised (see [`failure_reason`]), and how often.
    runc_failures: BTreeMap<String, u64>,
    runc_time: Duration,
    berth_time: Duration,
}

pub fn main(args: &[String]) -> Result<ExitCode, String> {
    let o = parse(args)?;
    for p in [&o.runc, &o.case.berth] {
        if !p.is_absolute() || !p.exists() {
            return Err(format!(
                "difffuzz: runtime {} not found (absolute path)",
                p.display()
            ));
        }
    }
    let tmp = PathBuf::from(format!("/tmp/berth-fuzz-{}", std::process::id()));
    let (rootfs, host) = prepare(&tmp)?;
    campaign::start()?;
    let parents_before = context::cgroup_parents();
    let pid = std::process::id();
    let mk = |path: &Path, label: &'static str| -> Result<Side, String> {
        let root = PathBuf::from(format!("/run/berth-test/fuzz-{label}-{pid}"));
        Ok(Side {
            rt: Runtime::new(path.to_path_buf(), root, tmp.join("io"))?,
            label,
        })
    };
    let fz = Fuzz {
        hostname: nix::unistd::gethostname().map_err(|e| format!("gethostname: {e}"))?,
        runc: mk(&o.runc, "runc")?,
        berth: mk(&o.case.berth, "berth")?,
        tmp: tmp.clone(),
        rootfs,
        host,
        verbose: o.case.verbose,
        dump: o.dump,
    };
    println!(
        "difffuzz: runc {} ({}) vs berth {} ({}); seeds {:?}, {} cases each",
        o.runc.display(),
        fz.runc.rt.version,
        o.case.berth.display(),
        fz.berth.rt.version,
        o.case.seeds,
        o.case.per_seed()
    );
    let started = Instant::now();
    let mut st = Stats::default();
    for (seed, n) in o.case.each("difffuzz", started) {
        let case = gen::generate(&fz.host, seed, n);
        fz.one(&case, &mut st);
        if st.cases % 100 == 0 {
            println!(
                "difffuzz: {} cases, {} unexplained, {} s",
                st.cases,
                st.unexplained,
                started.elapsed().as_secs()
            );
        }
    }
    let elapsed = started.elapsed();
    print_stats(&st, elapsed);

    context::remove_new_cgroup_parents(&parents_before);
    for side in [&fz.runc, &fz.berth] {
        let _ = fs::remove_dir(&side.rt.root);
    }
    let _ = fs::remove_dir("/run/berth-test");
    let _ = Command::new("rm")
        .args(["-rf", "--one-file-system"])
        .arg(&tmp)
        .status();
    Ok(if st.unexplained == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// In `tmp`: the `io` directory and the cases' rootfs (with a directory only root may enter,
/// a cwd a non-root user cannot reach), and what the generator must know of the host.
fn prepare(tmp: &Path) -> Result<(PathBuf, gen::Host), String> {
    fs::create_dir_all(tmp.join("io")).map_err(|e| format!("mkdir {}: {e}", tmp.display()))?;
    let rootfs = tmp.join("rootfs");
    crate::fixture::build_rootfs(&rootfs)?;
    let private = rootfs.join("fz/private");
    fs::create_dir_all(&private).map_err(|e| format!("mkdir: {e}"))?;
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    let host = gen::Host::probe(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../libcontainer/src/seccomp/testdata/docker-default.oci.json"
    )))?;
    Ok((rootfs, host))
}

impl Fuzz {
    fn one(&self, case: &Case, st: &mut Stats) {
        // A container without a UTS namespace shares the fuzzer's (its own, see main.rs),
        // and the probe renames it: each side starts from the same name.
        let _ = nix::unistd::sethostname(&self.hostname);
        let t0 = Instant::now();
        let runc = self.run_side(&self.runc, case);
        let t1 = Instant::now();
        let _ = nix::unistd::sethostname(&self.hostname);
        let berth = self.run_side(&self.berth, case);
        let _ = nix::unistd::sethostname(&self.hostname);
        st.runc_time += t1 - t0;
        st.berth_time += t1.elapsed();
        st.cases += 1;
        let runc_ok = runc.succeeded(case);
        if runc_ok {
            st.runc_ok += 1;
        } else {
            *st.runc_failures.entry(failure_reason(&runc)).or_default() += 1;
        }
        if berth.succeeded(case) {
            st.berth_ok += 1;
        }
        for f in &case.fields {
            let e = st.fields.entry(f.clone()).or_default();
            e.0 += 1;
            if runc_ok {
                e.1 += 1;
            }
        }
        if self.dump {
            dump(case, &runc, &berth);
        }
        let items = compare(case, &runc, &berth);
        if items.is_empty() {
            st.identical += 1;
            if !runc_ok {
                st.both_failed += 1;
            }
            if self.verbose {
                println!(
                    "case {}/{}: same ({})",
                    case.seed,
                    case.n,
                    if runc_ok { "ok" } else { "both failed" }
                );
                if !runc_ok {
                    println!(
                        "  runc: steps {:?} exit {:?} stderr {:?} last section {:?}",
                        runc.steps,
                        runc.exit,
                        clip(&runc.stderr, 300),
                        runc.sections.keys().last()
                    );
                }
            }
            return;
        }
        let mut unexplained = Vec::new();
        let mut why = BTreeSet::new();
        for it in &items {
            let lines: Vec<&str> = if it.detail.is_empty() {
                vec![""]
            } else {
                it.detail.iter().map(String::as_str).collect()
            };
            let found: Vec<Option<&'static str>> = lines
                .iter()
                .map(|l| deviations::explain(case, &it.key, l, &runc, &berth))
                .collect();
            if found.iter().all(Option::is_some) {
                why.extend(found.into_iter().flatten());
            } else {
                unexplained.push(it);
            }
        }
        if unexplained.is_empty() {
            st.explained_cases += 1;
            for d in &why {
                *st.explained.entry(d).or_default() += 1;
            }
            if self.verbose {
                println!("case {}/{}: explained by {why:?}", case.seed, case.n);
                for it in &items {
                    println!("  {}:", it.key);
                    for l in &it.detail {
                        println!("    {}", clip(l, 300));
                    }
                }
            }
            return;
        }
        st.unexplained += 1;
        report(case, &runc, &berth, &unexplained);
    }

    fn run_side(&self, side: &Side, case: &Case) -> Outcome {
        let mut out = Outcome {
            runc_1_1: side.rt.is_runc_before(1, 2),
            ..Outcome::default()
        };
        let dir = self.tmp.join(format!("b-{}-{}", side.label, case.id));
        let bundle = dir.to_string_lossy().into_owned();
        let mut submounts = Vec::new();
        if let Err(e) = self.prepare(case, &dir, &mut submounts) {
            out.steps.push(("prepare", false));
            out.stderr = e;
            self.cleanup(side, case, &dir, &submounts, &mut out);
            return out;
        }
        let stdout = dir.join("probe.out");
        let stderr = dir.join("runtime.err");
        let terminal = case.cfg["process"]["terminal"] == true;
        let console_sock = dir.join("console.sock");
        let console_out = dir.join("console.out");
        let console = if terminal {
            match crate::console::Console::listen(&console_sock, console_out.clone()) {
                Ok(c) => Some(c),
                Err(e) => {
                    out.steps.push(("prepare", false));
                    out.stderr = format!("console socket: {e}");
                    self.cleanup(side, case, &dir, &submounts, &mut out);
                    return out;
                }
            }
        } else {
            None
        };
        let sock = console_sock.to_string_lossy().into_owned();
        let mut create_args = vec!["create", "--bundle", &bundle];
        if terminal {
            create_args.extend(["--console-socket", &sock]);
        }
        create_args.push(&case.id);
        match case.mode {
            Mode::Run => {
                let r = spawn_wait(
                    &side.rt,
                    &["run", "--bundle", &bundle, &case.id],
                    &stdout,
                    &stderr,
                );
                out.timed_out = r.1;
                out.exit = r.0;
                out.steps.push(("run", !r.1 && r.0.is_some()));
                if r.0.is_none() && !r.1 {
                    out.signaled.push("run");
                }
            }
            Mode::CreateStart => {
                let r = spawn_wait(&side.rt, &create_args, &stdout, &stderr);
                out.timed_out = r.1;
                let created = r.0 == Some(0);
                out.steps.push(("create", created));
                if r.0.is_none() && !r.1 {
                    out.signaled.push("create");
                }
                if created {
                    out.host_cgroup = host_cgroup(&case.id);
                    let s = side.rt.exec(&["start", &case.id]);
                    out.timed_out |= s.timed_out;
                    if s.code.is_none() && !s.timed_out {
                        out.signaled.push("start");
                    }
                    out.steps.push(("start", s.success()));
                    if !s.success() {
                        out.stderr.push_str(&s.stderr);
                    }
                    crate::harness::wait_until(Duration::from_secs(20), || {
                        side.rt.status(&case.id).as_deref() != Some("running")
                    });
                    let d = side.rt.exec(&["delete", &case.id]);
                    out.timed_out |= d.timed_out;
                    if d.code.is_none() && !d.timed_out {
                        out.signaled.push("delete");
                    }
                    out.steps.push(("delete", d.success()));
                    if !d.success() {
                        out.stderr.push_str(&d.stderr);
                    }
                }
            }
        }
        if let Some(c) = console {
            // The harness's own trouble, said where a difference would show it.
            if let Some(why) = c.finish(Duration::from_secs(10)) {
                out.stderr
                    .push_str(&format!("[difffuzz console receiver: {why}]"));
            }
        }
        // Through a terminal the probe's output arrives on the pty (stdout and stderr as one).
        let text = fs::read(if terminal { &console_out } else { &stdout })
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        out.sections = probe::sections(&text, &bundle);
        if case.cfg.get("hooks").is_some() {
            let log = fs::read_to_string(dir.join(gen::HOOK_LOG)).unwrap_or_default();
            out.sections
                .insert("hooks".into(), log.lines().map(str::to_string).collect());
        }
        let err = fs::read_to_string(&stderr).unwrap_or_default();
        out.stderr = format!("{err}{}", out.stderr);
        self.cleanup(side, case, &dir, &submounts, &mut out);
        out
    }

    fn prepare(&self, case: &Case, dir: &Path, submounts: &mut Vec<PathBuf>) -> Result<(), String> {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        // Hooks log here; a createContainer hook runs as the container's (maybe unmapped) root.
        let log = dir.join(gen::HOOK_LOG);
        fs::write(&log, "").map_err(|e| format!("{}: {e}", log.display()))?;
        fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).map_err(|e| e.to_string())?;
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(&self.rootfs)
                .arg(dir.join("rootfs")),
        )?;
        if let Some((uid, gid)) = case.rootfs_owner {
            let rootfs = dir.join("rootfs");
            run_ok(
                Command::new("chown")
                    .args(["-R", "-h", &format!("{uid}:{gid}")])
                    .arg(&rootfs),
            )?;
            run_ok(
                Command::new("chown")
                    .arg("-h")
                    .arg(format!("{}:{}", uid + 1000, gid + 1000))
                    .arg(rootfs.join("home/user")),
            )?;
        }
        for v in &case.vols {
            match v {
                Vol::Dir { name, submount } => {
                    let p = dir.join("vols").join(name);
                    fs::create_dir_all(p.join("sub")).map_err(|e| e.to_string())?;
                    fs::write(p.join("f"), "fz\n").map_err(|e| e.to_string())?;
                    if *submount {
                        run_ok(
                            Command::new("mount")
                                .args(["-t", "tmpfs", "-o", "size=64k", "fzsub"])
                                .arg(p.join("sub")),
                        )?;
                        submounts.push(p.join("sub"));
                    }
                }
                Vol::File { name } => {
                    let p = dir.join("vols").join(name);
                    fs::create_dir_all(dir.join("vols")).map_err(|e| e.to_string())?;
                    fs::write(&p, "fz file\n").map_err(|e| e.to_string())?;
                }
            }
        }
        fs::write(dir.join("config.json"), config_bytes(case, dir))
            .map_err(|e| format!("write config.json: {e}"))
    }

    /// `delete --force`, then record and remove anything of the case left on the host.
    fn cleanup(
        &self,
        side: &Side,
        case: &Case,
        dir: &Path,
        submounts: &[PathBuf],
        out: &mut Outcome,
    ) {
        let _ = side.rt.exec(&["delete", "--force", &case.id]);
        for m in submounts {
            let _ = Command::new("umount").arg(m).status();
        }
        let mut left = Vec::new();
        if side.rt.root.join(&case.id).exists() {
            left.push("state dir".to_string());
            let _ = fs::remove_dir_all(side.rt.root.join(&case.id));
        }
        // Every task in the case's cgroups (a thread group whose leader is a zombie too:
        // processes_of skips it), and every process rooted in the bundle.
        let mut pids = context::processes_of(&case.id, dir);
        for cg in context::cgroup_dirs(&case.id) {
            let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        pids.sort_unstable();
        pids.dedup();
        for pid in &pids {
            left.push(format!("process {pid} ({})", context::comm(*pid)));
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        if !pids.is_empty() {
            crate::harness::wait_until(Duration::from_secs(5), || {
                campaign::reap_orphans();
                context::processes_of(&case.id, dir).is_empty()
            });
        }
        campaign::reap_orphans();
        for m in context::mounts_under(dir) {
            left.push(format!(
                "mount {}",
                m.replace(&*dir.to_string_lossy(), "<bundle>")
            ));
        }
        let mut mounts = context::mounts_under(dir);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
        // The container's cgroup is the configured path: with one nested below
        // /berth-test/<id>, that directory is only its parent (made for it, and left by runc
        // too), and what counts is whether the configured leaf is still there.
        let below = configured_below_id(case);
        for cg in context::cgroup_dirs(&case.id) {
            let leaf = cg.join(&below);
            if below.as_os_str().is_empty() || leaf.exists() {
                left.push(format!("cgroup {}", leaf.display()));
            }
            remove_cgroup(&cg);
        }
        out.leftovers = left;
        let _ = Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(dir)
            .status();
    }
}

/// config.json for `case` in bundle `dir`: [`mutate::INVALID_UTF8`] becomes bytes that are
/// not UTF-8.
fn config_bytes(case: &Case, dir: &Path) -> Vec<u8> {
    let text = case.config_for(&dir.to_string_lossy());
    let marker = mutate::INVALID_UTF8.as_bytes();
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some(i) = rest.windows(marker.len()).position(|w| w == marker) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(&[0xff, 0xc3, 0x28]);
        rest = &rest[i + marker.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The case's cgroupsPath relative to /berth-test/<id>, `..` resolved ("" when it is that
/// directory, or not below it).
fn configured_below_id(case: &Case) -> PathBuf {
    let Some(p) = case.cfg["linux"]["cgroupsPath"].as_str() else {
        return PathBuf::new();
    };
    libcontainer::config::clean_path(Path::new(p))
        .strip_prefix(Path::new("/berth-test").join(&case.id))
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// rmdir a cgroup of ours and its children, deepest first.
fn remove_cgroup(p: &Path) {
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(p);
}

fn run_ok(cmd: &mut Command) -> Result<(), String> {
    let st = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {st}"))
    }
}

/// Run `<rt> --root R ARGS` with stdout/stderr into files (the container inherits them);
/// returns (exit code, timed out).
fn spawn_wait(rt: &Runtime, args: &[&str], stdout: &Path, stderr: &Path) -> (Option<i32>, bool) {
    let (Ok(o), Ok(e)) = (File::create(stdout), File::create(stderr)) else {
        return (None, false);
    };
    let child = Command::new(&rt.path)
        .arg("--root")
        .arg(&rt.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn();
    let Ok(mut child) = child else {
        return (None, false);
    };
    let deadline = Instant::now() + CMD_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return (st.code(), false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(3)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return (None, true);
            }
        }
    }
}

/// The container's cgroup files, read from the host (v1 hierarchies).
fn host_cgroup(id: &str) -> Vec<String> {
    let mut v = Vec::new();
    for f in probe::CGROUP_FILES {
        let (ctrl, file) = f.split_once('/').unwrap_or(("", f));
        let p = format!("/sys/fs/cgroup/{ctrl}/berth-test/{id}/{file}");
        let text = fs::read_to_string(&p).unwrap_or_else(|e| format!("({e})"));
        let mut lines: Vec<&str> = text.lines().collect();
        if file == "devices.list" {
            lines.sort();
        }
        v.push(format!("{f}: {}", lines.join(" / ")));
    }
    v
}

fn compare(case: &Case, a: &Outcome, b: &Outcome) -> Vec<Item> {
    let mut items = Vec::new();
    let steps = |o: &Outcome| o.steps.clone();
    if steps(a) != steps(b) {
        items.push(Item {
            key: "steps".into(),
            detail: vec![
                format!("runc {:?}", a.steps),
                format!("berth {:?}", b.steps),
            ],
        });
    }
    if case.mode == Mode::Run && a.exit != b.exit {
        items.push(Item {
            key: "exit".into(),
            detail: vec![format!("runc {:?}, berth {:?}", a.exit, b.exit)],
        });
    }
    let names: BTreeSet<&String> = a.sections.keys().chain(b.sections.keys()).collect();
    let empty = Vec::new();
    for n in names {
        let (x, y) = (
            a.sections.get(n).unwrap_or(&empty),
            b.sections.get(n).unwrap_or(&empty),
        );
        if x != y || a.sections.contains_key(n) != b.sections.contains_key(n) {
            let mut d = probe::diff(x, y);
            if d.is_empty() {
                d.push(format!(
                    "section present: runc {}, berth {}",
                    a.sections.contains_key(n),
                    b.sections.contains_key(n)
                ));
            }
            items.push(Item {
                key: format!("section:{n}"),
                detail: d,
            });
        }
    }
    if a.host_cgroup != b.host_cgroup && !a.host_cgroup.is_empty() && !b.host_cgroup.is_empty() {
        items.push(Item {
            key: "hostcgroup".into(),
            detail: probe::diff(&a.host_cgroup, &b.host_cgroup),
        });
    }
    if !b.leftovers.is_empty() {
        items.push(Item {
            key: "leftover:berth".into(),
            detail: b.leftovers.clone(),
        });
    }
    if !a.leftovers.is_empty() {
        items.push(Item {
            key: "leftover:runc".into(),
            detail: a.leftovers.clone(),
        });
    }
    items
}

fn report(case: &Case, runc: &Outcome, berth: &Outcome, items: &[&Item]) {
    let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    println!(
        "DIFF seed={} case={} mode={:?} id={}: {}",
        case.seed,
        case.n,
        case.mode,
        case.id,
        keys.join(", ")
    );
    println!(
        "  replay: integration difffuzz --seed {} --case {} --verbose",
        case.seed, case.n
    );
    let mut cfg = case.cfg.clone();
    cfg["process"]["args"] = serde_json::json!(["sh", "-c", "<probe>"]);
    println!(
        "  config: {}",
        serde_json::to_string(&cfg).unwrap_or_default()
    );
    for (label, o) in [("runc", runc), ("berth", berth)] {
        println!(
            "  {label}: steps {:?} exit {:?}{} stderr {:?}",
            o.steps,
            o.exit,
            if o.timed_out { " TIMED OUT" } else { "" },
            clip(&o.stderr, 400)
        );
    }
    for it in items {
        println!("  {}:", it.key);
        for l in it.detail.iter().take(40) {
            println!("    {l}");
        }
    }
}

/// `--dump`: the whole config and both runtimes' outcomes.
fn dump(case: &Case, runc: &Outcome, berth: &Outcome) {
    println!("==== case {}/{} ({:?})", case.seed, case.n, case.mode);
    println!("{}", case.config_for("<bundle>"));
    for (label, o) in [("runc", runc), ("berth", berth)] {
        println!(
            "---- {label}: steps {:?} exit {:?} stderr {:?} leftovers {:?}",
            o.steps, o.exit, o.stderr, o.leftovers
        );
        for (name, lines) in &o.sections {
            println!("@@{name}");
            for l in lines {
                println!("{l}");
            }
        }
        for l in &o.host_cgroup {
            println!("host: {l}");
        }
    }
}

/// A failure's reason with what varies per case (ids, paths' numbers, times) taken out, so
/// that the summary can count the reasons that keep configs from running under runc.
fn failure_reason(o: &Outcome) -> String {
    let msg = o
        .stderr
        .lines()
        .find_map(|l| l.split_once("msg=\"").map(|(_, m)| m.trim_end_matches('"')))
        .unwrap_or(o.stderr.trim());
    let msg = msg
        .rsplit("error during container init: ")
        .next()
        .unwrap_or(msg);
    let mut out: String = msg
        .chars()
        .map(|c| if c.is_ascii_digit() { 'N' } else { c })
        .collect();
    if out.is_empty() {
        let step = o.steps.iter().find(|(_, ok)| !ok).map(|(s, _)| *s);
        out = format!("no error text (failed step {step:?}, exit {:?})", o.exit);
    }
    out.chars().take(110).collect()
}

fn print_stats(st: &Stats, elapsed: Duration) {
    let pct = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    println!("\n==== difffuzz coverage: field, cases, share succeeding under runc ====");
    let mut min: Option<(u64, &str)> = None;
    for (f, (n, ok)) in &st.fields {
        println!("{f:<48} {n:>6} {:>6.1}%", pct(*ok, *n));
        if min.is_none_or(|(m, _)| *n < m) {
            min = Some((*n, f));
        }
    }
    println!("\n==== difffuzz summary ====");
    println!(
        "cases {} in {:.0} s ({:.0} ms per case: runc {:.0} ms, berth {:.0} ms)",
        st.cases,
        elapsed.as_secs_f64(),
        elapsed.as_millis() as f64 / st.cases.max(1) as f64,
        st.runc_time.as_millis() as f64 / st.cases.max(1) as f64,
        st.berth_time.as_millis() as f64 / st.cases.max(1) as f64
    );
    println!(
        "succeeded under runc {} ({:.1}%), under berth {} ({:.1}%)",
        st.runc_ok,
        pct(st.runc_ok, st.cases),
        st.berth_ok,
        pct(st.berth_ok, st.cases)
    );
    println!(
        "same outcome {} (of which both failed {}), explained by a deviation {}, unexplained {}",
        st.identical, st.both_failed, st.explained_cases, st.unexplained
    );
    for (d, n) in &st.explained {
        println!("  deviation {d}: {n} cases");
    }
    let mut reasons: Vec<_> = st.runc_failures.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1));
    println!("why runc failed (most frequent first):");
    for (r, n) in reasons.iter().take(12) {
        println!("  {n:>5}  {r}");
    }
    if let Some((n, f)) = min {
        println!("least covered field: {f} in {n} cases");
    }
    println!("difffuzz: {} unexplained differences", st.unexplained);
}
