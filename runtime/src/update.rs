//! `update`: runc's flags, or a `linux.resources` JSON (`-r FILE`, `-r -` for stdin), merged
//! over the container's current resources. As in runc, with `-r` the other flags are ignored.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

#[derive(Args)]
pub struct UpdateArgs {
    /// A linux.resources JSON file, or "-" for stdin.
    #[arg(short = 'r', long)]
    resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g; "-1" for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory plus swap limit ("-1" for unlimited).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Ignored (kernel memory accounting is deprecated), as in runc.
    #[arg(long = "kernel-memory", hide = true)]
    kernel_memory: Option<String>,
    /// CPU shares (runc spells it --cpu-share).
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    cpu_shares: Option<u64>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// Container id.
    pub id: String,
}

/// `512`, `64k`, `512m`, `2g` (binary units, as runc's RAMInBytes), `-1`.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    if n < 0.0 {
        bail!("invalid size {s:?}: negative");
    }
    Ok((n * mult as f64) as i64)
}

/// Deep-merge `over` into `base` (objects merge, everything else is replaced).
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// The resources to apply: current, then the file, then the flags.
pub fn resources(
    a: &UpdateArgs,
    current: &oci_spec::runtime::LinuxResources,
) -> Result<oci_spec::runtime::LinuxResources> {
    let mut v = serde_json::to_value(current)?;
    if let Some(p) = &a.resources {
        let mut text = String::new();
        if p.as_os_str() == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("read resources from stdin")?;
        } else {
            text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        }
        let file: Value = serde_json::from_str(&text).context("parse the resources JSON")?;
        merge(&mut v, file);
        return serde_json::from_value(v)
            .context("the merged resources are not valid linux.resources");
    }
    let mut flags = json!({});
    let mut set = |path: &[&str], val: Value| {
        let mut cur = &mut flags;
        for k in &path[..path.len() - 1] {
            cur = cur
                .as_object_mut()
                .expect("object")
                .entry(*k)
                .or_insert(json!({}));
        }
        cur[path[path.len() - 1]] = val;
    };
    if let Some(m) = &a.memory {
        set(&["memory", "limit"], json!(parse_bytes(m)?));
    }
    if let Some(m) = &a.memory_swap {
        set(&["memory", "swap"], json!(parse_bytes(m)?));
    }
    if let Some(m) = &a.memory_reservation {
        set(&["memory", "reservation"], json!(parse_bytes(m)?));
    }
    if let Some(x) = a.cpu_shares {
        set(&["cpu", "shares"], json!(x));
    }
    if let Some(x) = a.cpu_quota {
        set(&["cpu", "quota"], json!(x));
    }
    if let Some(x) = a.cpu_period {
        set(&["cpu", "period"], json!(x));
    }
    if let Some(x) = a.cpu_rt_period {
        set(&["cpu", "realtimePeriod"], json!(x));
    }
    if let Some(x) = a.cpu_rt_runtime {
        set(&["cpu", "realtimeRuntime"], json!(x));
    }
    if let Some(x) = &a.cpuset_cpus {
        set(&["cpu", "cpus"], json!(x));
    }
    if let Some(x) = &a.cpuset_mems {
        set(&["cpu", "mems"], json!(x));
    }
    if let Some(x) = a.pids_limit {
        set(&["pids", "limit"], json!(x));
    }
    if let Some(x) = a.blkio_weight {
        set(&["blockIO", "weight"], json!(x));
    }
    merge(&mut v, flags);
    // An update never changes device rules (as runc): libcontainer keeps the recorded ones.
    if let Some(o) = v.as_object_mut() {
        o.remove("devices");
    }
    serde_json::from_value(v).context("the merged resources are not valid linux.resources")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("64k").unwrap(), 65536);
        assert_eq!(parse_bytes("1.5m").unwrap(), 1_572_864);
        assert_eq!(parse_bytes("2G").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("x").is_err());
    }

    #[test]
    fn merge_keeps_what_is_not_changed() {
        let mut base = json!({"memory": {"limit": 1, "reservation": 2}, "pids": {"limit": 5}});
        merge(&mut base, json!({"memory": {"limit": 9}}));
        assert_eq!(
            base,
            json!({"memory": {"limit": 9, "reservation": 2}, "pids": {"limit": 5}})
        );
    }
}

#[cfg(test)]
mod cli_tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: super::UpdateArgs,
    }

    /// runc takes -1 (unlimited) for these flags.
    #[test]
    fn minus_one_values_are_accepted() {
        let c = Cli::try_parse_from([
            "update",
            "--memory-swap",
            "-1",
            "--cpu-quota",
            "-1",
            "--memory",
            "-1",
            "--pids-limit",
            "-1",
            "ctr",
        ])
        .unwrap();
        assert_eq!(c.a.cpu_quota, Some(-1));
        assert_eq!(c.a.memory_swap.as_deref(), Some("-1"));
        assert_eq!(c.a.pids_limit, Some(-1));
        assert_eq!(c.a.id, "ctr");
    }
}
