//! `stats [--no-stream] [CONTAINER...]`: docker's live table of running containers — CPU %,
//! memory usage / limit and %, network and block I/O, PIDs — from the runtime's stats
//! (`events --stats`, runc's JSON: the cgroup's counters) and the container's own
//! /proc/<pid>/net/dev. CPU % is the CPU time used between two samples over the wall time
//! between them (100% is one CPU busy), as docker computes it.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::containers::{Container, Status};
use crate::ctx::Ctx;
use crate::util;

#[derive(Clone, Default)]
struct Sample {
    cpu_ns: u64,
    mem: u64,
    limit: u64,
    pids: u64,
    blk: (u64, u64),
    net: (u64, u64),
}

fn sample(ctx: &Ctx, c: &Container) -> Option<Sample> {
    let o = ctx
        .runtime_cmd()
        .args(["events", "--stats", &c.id])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(o.stdout.split(|b| *b == b'\n').next()?).ok()?;
    let d = &v["data"];
    let m = &d["memory"];
    // docker's "usage": without the page cache it could drop (inactive files).
    let inactive = m["raw"]["total_inactive_file"]
        .as_u64()
        .or_else(|| m["raw"]["inactive_file"].as_u64())
        .unwrap_or(0);
    let usage = m["usage"]["usage"].as_u64().unwrap_or(0);
    let limit = m["usage"]["limit"].as_u64().unwrap_or(0);
    let host_mem = host_memory();
    let limit = if limit == 0 || limit > host_mem {
        host_mem
    } else {
        limit
    };
    let mut blk = (0, 0);
    for e in d["blkio"]["ioServiceBytesRecursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let n = e["value"].as_u64().unwrap_or(0);
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => blk.0 += n,
            Some("write") => blk.1 += n,
            _ => {}
        }
    }
    let pid = ctx
        .runtime_state_json(&c.id)
        .and_then(|s| s["pid"].as_i64())
        .unwrap_or(0);
    Some(Sample {
        cpu_ns: d["cpu"]["usage"]["total"].as_u64().unwrap_or(0),
        mem: usage.saturating_sub(inactive),
        limit,
        pids: d["pids"]["current"].as_u64().unwrap_or(0),
        blk,
        net: net_io(pid),
    })
}

/// Bytes received and sent by every interface but lo, in the network namespace of `pid`.
fn net_io(pid: i64) -> (u64, u64) {
    if pid <= 0 {
        return (0, 0);
    }
    let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return (0, 0);
    };
    let mut io = (0, 0);
    for l in t.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() >= 9 {
            io.0 += f[0];
            io.1 += f[8];
        }
    }
    io
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024)
}

pub fn stats(ctx: &Ctx, names: &[String], no_stream: bool) -> Result<i32> {
    let pick = || -> Result<Vec<Container>> {
        if names.is_empty() {
            let states = ctx.runtime_states();
            Ok(ctx
                .list()?
                .into_iter()
                .filter(|c| {
                    ctx.status_with(c, states.get(&c.id).map(String::as_str)) == Status::Running
                })
                .collect())
        } else {
            let mut out = Vec::new();
            for n in names {
                let c = ctx.find(n)?;
                if !matches!(ctx.status(&c), Status::Running | Status::Paused) {
                    bail!("container {} is not running", c.name);
                }
                out.push(c);
            }
            Ok(out)
        }
    };
    let mut last: Vec<(String, Sample, Instant)> = Vec::new();
    let mut first = true;
    loop {
        let cs = pick()?;
        let mut now: Vec<(String, Sample, Instant)> = cs
            .iter()
            .filter_map(|c| sample(ctx, c).map(|s| (c.id.clone(), s, Instant::now())))
            .collect();
        if first {
            // CPU % needs two samples.
            first = false;
            last = now;
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let mut rows = Vec::new();
        for c in &cs {
            let Some((_, s, at)) = now.iter().find(|(id, _, _)| *id == c.id) else {
                continue;
            };
            let cpu = last
                .iter()
                .find(|(id, _, _)| *id == c.id)
                .map(|(_, p, pat)| {
                    let wall = at.duration_since(*pat).as_nanos().max(1) as f64;
                    s.cpu_ns.saturating_sub(p.cpu_ns) as f64 / wall * 100.0
                })
                .unwrap_or(0.0);
            let pct = if s.limit > 0 {
                s.mem as f64 / s.limit as f64 * 100.0
            } else {
                0.0
            };
            rows.push(vec![
                c.id[..12].to_string(),
                c.name.clone(),
                format!("{cpu:.2}%"),
                format!(
                    "{} / {}",
                    util::human_size_binary(s.mem),
                    util::human_size_binary(s.limit)
                ),
                format!("{pct:.2}%"),
                format!(
                    "{} / {}",
                    util::human_size(s.net.0),
                    util::human_size(s.net.1)
                ),
                format!(
                    "{} / {}",
                    util::human_size(s.blk.0),
                    util::human_size(s.blk.1)
                ),
                s.pids.to_string(),
            ]);
        }
        let mut out = std::io::stdout().lock();
        if !no_stream {
            // Redraw in place, as docker's live table.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        crate::table_n(
            &mut out,
            &[
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "BLOCK I/O",
                "PIDS",
            ],
            rows,
        )?;
        out.flush()?;
        if no_stream {
            return Ok(0);
        }
        std::mem::swap(&mut last, &mut now);
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_sizes_as_docker() {
        use crate::util::human_size_binary as mib;
        assert_eq!(mib(512), "512B");
        assert_eq!(mib(64 << 20), "64MiB");
        assert_eq!(mib(2_338_816), "2.23MiB");
    }
}
