//! HEALTHCHECK, as docker runs it: the image's (or `--health-*`'s) check is run in the
//! container every interval through the runtime's `exec`, with a timeout; its outcome makes
//! `State.Health` (starting, healthy, unhealthy after `retries` failures in a row; failures
//! in the start period do not count) with the last 5 results. The checker is a process of
//! its own (`berthctl __health ID`), started and ended by the container's monitor with each
//! run, so that the monitor's reaping of orphans never takes a check's exit status.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ctx::Ctx;
use crate::util;

/// The check, as the container runs it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    /// The command (CMD-SHELL made `/bin/sh -c ...`).
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub start_period_ms: u64,
    pub retries: u32,
}

/// docker's defaults: 30 s, 30 s, 0 s, 3.
const DEFAULT_INTERVAL_MS: u64 = 30_000;
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_RETRIES: u32 = 3;

/// The `--health-*` flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Flags {
    /// Command to run to check health (run by /bin/sh -c).
    #[arg(long = "health-cmd")]
    pub cmd: Option<String>,
    /// Time between checks (e.g. 30s, 500ms).
    #[arg(long = "health-interval")]
    pub interval: Option<String>,
    /// Longest a check may run.
    #[arg(long = "health-timeout")]
    pub timeout: Option<String>,
    /// Consecutive failures that make the container unhealthy.
    #[arg(long = "health-retries")]
    pub retries: Option<u32>,
    /// Time to start before failures count.
    #[arg(long = "health-start-period")]
    pub start_period: Option<String>,
    /// No health check, not even the image's.
    #[arg(long = "no-healthcheck")]
    pub none: bool,
}

fn ms(flag: &str, v: &str) -> Result<u64> {
    let nanos = builder::meta::go_duration(v)
        .map_err(|e| anyhow::anyhow!("--{flag} {v:?}: a duration such as 30s or 500ms: {e}"))?;
    Ok(nanos / 1_000_000)
}

/// The container's check: the flags over the image config's `Healthcheck` (durations there
/// in nanoseconds, docker's). None without one, or with `NONE` / `--no-healthcheck`.
pub fn resolve(flags: &Flags, image_config: &Value) -> Result<Option<Config>> {
    if flags.none {
        if flags.cmd.is_some() {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(None);
    }
    let hc = &image_config["config"]["Healthcheck"];
    let test: Vec<String> = match &flags.cmd {
        Some(c) => vec!["/bin/sh".into(), "-c".into(), c.clone()],
        None => {
            let t: Vec<String> = hc["Test"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(String::from))
                .collect();
            match t.split_first() {
                Some((k, rest)) if k == "CMD" && !rest.is_empty() => rest.to_vec(),
                Some((k, rest)) if k == "CMD-SHELL" && !rest.is_empty() => {
                    vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
                }
                _ => return Ok(None),
            }
        }
    };
    let nanos = |k: &str| hc[k].as_u64().filter(|n| *n > 0).map(|n| n / 1_000_000);
    let pick = |flag: &Option<String>, name: &str, key: &str, default: u64| -> Result<u64> {
        match flag {
            Some(v) => ms(name, v),
            None => Ok(nanos(key).unwrap_or(default)),
        }
    };
    let c = Config {
        test,
        interval_ms: pick(
            &flags.interval,
            "health-interval",
            "Interval",
            DEFAULT_INTERVAL_MS,
        )?,
        timeout_ms: pick(
            &flags.timeout,
            "health-timeout",
            "Timeout",
            DEFAULT_TIMEOUT_MS,
        )?,
        start_period_ms: pick(&flags.start_period, "health-start-period", "StartPeriod", 0)?,
        retries: flags
            .retries
            .or_else(|| hc["Retries"].as_u64().filter(|n| *n > 0).map(|n| n as u32))
            .unwrap_or(DEFAULT_RETRIES),
    };
    if c.interval_ms == 0 || c.timeout_ms == 0 {
        bail!("--health-interval and --health-timeout must be at least 1ms");
    }
    Ok(Some(c))
}

/// `State.Health`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Health {
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "FailingStreak")]
    pub failing_streak: u32,
    #[serde(rename = "Log")]
    pub log: Vec<Value>,
}

fn path(ctx: &Ctx, id: &str) -> std::path::PathBuf {
    ctx.container_dir(id).join("health.json")
}

pub fn read(ctx: &Ctx, id: &str) -> Option<Health> {
    serde_json::from_slice(&std::fs::read(path(ctx, id)).ok()?).ok()
}

fn write(ctx: &Ctx, id: &str, h: &Health) {
    if let Ok(d) = serde_json::to_vec(h) {
        let _ = image::fsutil::write_atomic(&path(ctx, id), &d);
    }
}

/// Start the checker of a run that just started (the monitor's child; it ends it).
pub fn spawn(ctx: &Ctx, id: &str) -> Result<Child> {
    write(
        ctx,
        id,
        &Health {
            status: "starting".into(),
            ..Default::default()
        },
    );
    let exe = std::fs::read_link("/proc/self/exe").context("find berthctl's own binary")?;
    Command::new(exe)
        .arg("--root")
        .arg(&ctx.root)
        .arg("--runtime")
        .arg(&ctx.runtime)
        .args(["__health", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the health checker")
}

/// `berthctl __health ID`: check until killed.
pub fn run(ctx: &Ctx, id: &str) -> Result<i32> {
    let c = ctx.load(id)?;
    let Some(cfg) = c.health.clone() else {
        return Ok(0);
    };
    let started = Instant::now();
    let mut h = read(ctx, id).unwrap_or_default();
    loop {
        std::thread::sleep(Duration::from_millis(cfg.interval_ms));
        let begin = util::rfc3339(util::now());
        let (code, output) = check(ctx, id, &cfg);
        let in_start_period = started.elapsed() < Duration::from_millis(cfg.start_period_ms);
        if code == 0 {
            h.status = "healthy".into();
            h.failing_streak = 0;
        } else if !(in_start_period && h.status == "starting") {
            h.failing_streak += 1;
            if h.failing_streak >= cfg.retries {
                h.status = "unhealthy".into();
            }
        }
        h.log.push(serde_json::json!({
            "Start": begin,
            "End": util::rfc3339(util::now()),
            "ExitCode": code,
            "Output": output,
        }));
        if h.log.len() > 5 {
            h.log.remove(0);
        }
        write(ctx, id, &h);
    }
}

/// One check: its exit code (-1 when it ran past the timeout or could not run) and the start
/// of its output.
fn check(ctx: &Ctx, id: &str, cfg: &Config) -> (i64, String) {
    let child = ctx
        .runtime_cmd()
        .arg("exec")
        .arg(id)
        .args(&cfg.test)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (-1, format!("run the check: {e}")),
    };
    let deadline = Instant::now() + Duration::from_millis(cfg.timeout_ms);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut out = String::new();
    for s in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut buf = Vec::new();
        let _ = s.take(4096).read_to_end(&mut buf);
        out.push_str(&String::from_utf8_lossy(&buf));
    }
    match status {
        Some(s) => (s.code().map_or(-1, i64::from), out),
        None => (
            -1,
            format!("Health check exceeded timeout ({}ms)", cfg.timeout_ms),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_image_check_and_the_flags_as_docker_reads_them() {
        let img = json!({"config": {"Healthcheck": {
            "Test": ["CMD-SHELL", "curl -f http://localhost/"],
            "Interval": 5_000_000_000u64, "Retries": 4
        }}});
        let c = resolve(&Flags::default(), &img).unwrap().unwrap();
        assert_eq!(c.test, ["/bin/sh", "-c", "curl -f http://localhost/"]);
        assert_eq!((c.interval_ms, c.timeout_ms, c.retries), (5000, 30_000, 4));
        let flags = Flags {
            cmd: Some("true".into()),
            interval: Some("1m30s".into()),
            ..Default::default()
        };
        let c = resolve(&flags, &img).unwrap().unwrap();
        assert_eq!((c.test[2].as_str(), c.interval_ms), ("true", 90_000));
        let exec = json!({"config": {"Healthcheck": {"Test": ["CMD", "/bin/check", "-q"]}}});
        assert_eq!(
            resolve(&Flags::default(), &exec).unwrap().unwrap().test,
            ["/bin/check", "-q"]
        );
        let none = json!({"config": {"Healthcheck": {"Test": ["NONE"]}}});
        assert!(resolve(&Flags::default(), &none).unwrap().is_none());
        let off = Flags {
            none: true,
            ..Default::default()
        };
        assert!(resolve(&off, &img).unwrap().is_none());
        assert!(resolve(
            &Flags {
                interval: Some("soon".into()),
                cmd: Some("x".into()),
                ..Default::default()
            },
            &img
        )
        .is_err());
    }
}
