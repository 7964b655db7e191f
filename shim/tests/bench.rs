//! Measurements (not assertions): resident memory of one shim holding a sleeping container and
//! `ctr run --rm IMAGE ID true` latency, containerd-shim-berth-v2 vs containerd-shim-runc-v2,
//! each with berth and with runc; then 100 containers started in parallel through containerd,
//! checked for losses and leaks.
//!
//! `BERTH_SHIM_BENCH=1 cargo test -p containerd-shim-berth-v2 --release --test bench --
//! --nocapture` (root, containerd 1.6, umoci, skopeo, busybox-static; BERTH_BINARY optional;
//! BERTH_SHIM_BENCH_RUNS sets the latency sample count, default 20).

mod common;

use common::{status_kb, Env, IMAGE};
use std::time::{Duration, Instant};

struct Setup {
    label: String,
    /// Arguments between `run` and `--rm`/`-d`.
    run_opts: Vec<String>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

fn ctr_run(env: &Env, opts: &[String], rest: &[&str]) -> Result<(), String> {
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(opts.iter().cloned());
    args.extend(rest.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ctr_ok(&refs).map(|_| ())
}

fn memory(env: &mut Env, s: &Setup, id: &str) -> Result<(u64, u64, u64, usize), String> {
    env.note_id(id);
    ctr_run(env, &s.run_opts, &["-d", IMAGE, id, "sleep", "1000"])?;
    env.wait_status(id, "RUNNING", Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_millis(500));
    let pid = env
        .shim_pid(id)
        .ok_or_else(|| format!("no shim process for {id}"))?;
    let r = (
        status_kb(pid, "VmRSS:"),
        status_kb(pid, "RssAnon:"),
        status_kb(pid, "RssFile:"),
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0),
    );
    env.remove(id);
    Ok(r)
}

/// Latencies of `ctr run --rm IMAGE ID true`, setups interleaved round by round so that a
/// change in the machine's load affects them all alike; two warm-up rounds are dropped.
fn latency(env: &mut Env, setups: &[Setup], runs: usize) -> Result<Vec<Vec<f64>>, String> {
    let mut v = vec![Vec::new(); setups.len()];
    for round in 0..runs + 2 {
        for (i, s) in setups.iter().enumerate() {
            let id = format!("lat-{i}-{round}");
            env.note_id(&id);
            let start = Instant::now();
            ctr_run(env, &s.run_opts, &["--rm", IMAGE, &id, "true"])
                .map_err(|e| format!("{}: {e}", s.label))?;
            if round >= 2 {
                v[i].push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    Ok(v)
}

#[test]
fn shim_bench() {
    if std::env::var_os("BERTH_SHIM_BENCH").is_none() {
        eprintln!("skipped: set BERTH_SHIM_BENCH=1 to measure (root, containerd 1.6, umoci, skopeo, busybox-static)");
        return;
    }
    if let Some(why) = common::missing_prerequisite() {
        panic!("BERTH_SHIM_BENCH is set but {why}");
    }
    let runs: usize = std::env::var("BERTH_SHIM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut env = Env::new("bench").expect("setting up containerd");
    let berth = common::berth_binary()
        .expect("berth binary: build it (cargo build -p berth) or set BERTH_BINARY");
    let shim = env.shim.display().to_string();
    let mut setups = Vec::new();
    for (name, bin) in [("berth", berth.clone()), ("runc", "/usr/sbin/runc".into())] {
        let cfg = env.dir.join(format!("bench-{name}.toml"));
        std::fs::write(&cfg, format!("BinaryName = \"{}\"\n", bin.display())).unwrap();
        setups.push(Setup {
            label: format!("berth shim + {name}"),
            run_opts: vec![
                "--runtime".into(),
                shim.clone(),
                "--runtime-config-path".into(),
                cfg.display().to_string(),
            ],
        });
    }
    setups.push(Setup {
        label: "runc shim + runc".into(),
        run_opts: vec![],
    });
    setups.push(Setup {
        label: "runc shim + berth".into(),
        run_opts: vec!["--runc-binary".into(), berth.display().to_string()],
    });
    let mut report = Vec::new();
    report.push(format!(
        "{:<20} {:>9} {:>9} {:>9} {:>7} {:>12} {:>10}",
        "setup", "VmRSS kB", "anon kB", "file kB", "threads", "run --rm ms", "(mean)"
    ));
    let mut medians = Vec::new();
    let mut mem = Vec::new();
    for (i, s) in setups.iter().enumerate() {
        mem.push(
            memory(&mut env, s, &format!("mem-{i}")).unwrap_or_else(|e| panic!("{}: {e}", s.label)),
        );
    }
    let lat = latency(&mut env, &setups, runs).unwrap_or_else(|e| panic!("{e}"));
    for (i, s) in setups.iter().enumerate() {
        let (rss, anon, file, threads) = mem[i];
        let mut l = lat[i].clone();
        let mean = l.iter().sum::<f64>() / l.len().max(1) as f64;
        let med = median(&mut l);
        medians.push((rss, med));
        report.push(format!(
            "{:<20} {rss:>9} {anon:>9} {file:>9} {threads:>7} {med:>12.1} {mean:>10.1}",
            s.label
        ));
    }
    let (b_rss, b_lat) = medians[0];
    let (r_rss, r_lat) = medians[2];
    report.push(format!(
        "berth shim vs runc shim (each with its usual runtime): VmRSS {:.2}x, run --rm latency {:.2}x",
        b_rss as f64 / r_rss.max(1) as f64,
        b_lat / r_lat.max(0.001)
    ));
    match common::parallel(&mut env, &setups[0].run_opts, "par", 100) {
        Ok(r) => report.push(format!("parallel (berth shim + berth): {r}")),
        Err(e) => report.push(format!("parallel (berth shim + berth) FAILED: {e}")),
    }
    eprintln!("\n{}", report.join("\n"));
    drop(env);
}
