//! Statistics of a container's cgroup, as `runc events` reports them, and its OOM events.
//!
//! [`Stats`] has the JSON shape and field names of runc's `types.Stats` (the `data` of a
//! `{"type":"stats"}` event), including Go's `omitempty` rules, so that anything parsing
//! runc's output (containerd's go-runc, scripts) parses berth's. The values are read as
//! runc's cgroup managers read them:
//!
//! * cgroup v1 (and hybrid): `cpuacct.*` and `cpu.stat`, `cpuset.*`, `memory.stat` and the
//!   `memory[.memsw|.kmem|.kmem.tcp].{usage_in_bytes,max_usage_in_bytes,failcnt,limit_in_bytes}`
//!   files, `pids.{current,max}`, the `blkio.*_recursive` files (bfq, cfq, then throttle, in
//!   runc's order of preference), `hugetlb.<size>.{usage_in_bytes,max_usage_in_bytes,failcnt}`.
//! * cgroup v2: `cpu.stat`, `memory.{stat,current,max,peak,events}`,
//!   `memory.swap.{current,max,peak}`, `pids.{current,max}` (or the count of `cgroup.procs`
//!   without the pids controller), `io.stat`, `hugetlb.<size>.{current,events}` and the
//!   `{cpu,memory,io}.pressure` (PSI) files.
//!
//! A controller that has no v1 hierarchy on a hybrid host is read from the cgroup2 directory.
//! A file that does not exist on the layout is left out, as runc does; any other read error,
//! and a file that cannot be parsed, is an error that names the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CgroupError, CgroupPaths};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One event line of `events`: `{"type":"stats","id":ID,"data":{...}}` or
/// `{"type":"oom","id":ID}` (runc's `types.Event`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

/// runc's `types.Stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// Keyed by page size as the kernel names it (`2MB`, `1GB`).
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: IntelRdt,
    /// runc reports interfaces only for networks it configured itself, never for an OCI
    /// bundle's: always `null`.
    pub network_interfaces: Option<Vec<NetworkInterface>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

/// Nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    /// Memory plus swap (on v2 too, as v1 reports it).
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat, key by key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
    /// memory.events (cgroup v2 only).
    pub event_count: MemoryEventCount,
}

/// Bytes. An unlimited v2 limit is `u64::MAX`, as runc reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryEventCount {
    pub reclaim_low: u64,
    pub reclaim_high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PsiStats {
    pub some: PsiData,
    pub full: PsiData,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PsiData {
    #[serde(serialize_with = "go_float")]
    pub avg10: f64,
    #[serde(serialize_with = "go_float")]
    pub avg60: f64,
    #[serde(serialize_with = "go_float")]
    pub avg300: f64,
    pub total: u64,
}

/// Go's encoding/json writes a whole float64 without a fraction (`0`, not `0.0`).
fn go_float<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0: no limit.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// runc's JSON name (sic).
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// Intel RDT (resctrl) is not supported by berth: always `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntelRdt {}

/// runc's `types.NetworkInterface` (Go field names, no JSON tags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct NetworkInterface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

// ---------------------------------------------------------------------------------------------
// Reading files.

/// The text of a cgroup file; `None` if the file does not exist on this layout.
fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CgroupError::io("read", path, e)),
    }
}

fn parse_error(path: &Path, what: impl std::fmt::Display) -> CgroupError {
    CgroupError::Other(format!("cgroup {path:?}: cannot parse {what}"))
}

/// runc's `GetCgroupParamUint`: `max` is `u64::MAX`, a negative number is 0.
fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "max" {
        return Some(u64::MAX);
    }
    if let Ok(v) = s.parse::<u64>() {
        return Some(v);
    }
    match s.strip_prefix('-') {
        Some(d) if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) => Some(0),
        _ => None,
    }
}

/// A file holding one number; `None` if it does not exist.
fn read_u64(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    let path = dir.join(file);
    match read_opt(&path)? {
        None => Ok(None),
        Some(text) => parse_u64(&text)
            .map(Some)
            .ok_or_else(|| parse_error(&path, format_args!("{:?} as a number", text.trim()))),
    }
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, ...).
fn parse_flat_keyed(path: &Path, text: &str) -> Result<Vec<(String, u64)>, CgroupError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = line
            .split_once(' ')
            .and_then(|(k, v)| Some((k.to_string(), parse_u64(v)?)));
        out.push(parsed.ok_or_else(|| parse_error(path, format_args!("line {line:?}")))?);
    }
    Ok(out)
}

/// A flat-keyed file as pairs; `None` if it does not exist.
fn read_flat_keyed(dir: &Path, file: &str) -> Result<Option<Vec<(String, u64)>>, CgroupError> {
    let path = dir.join(file);
    match read_opt(&path)? {
        None => Ok(None),
        Some(text) => parse_flat_keyed(&path, &text).map(Some),
    }
}

/// A list of numbers separated by white space (cpuacct.usage_percpu).
fn parse_list(path: &Path, text: &str) -> Result<Vec<u64>, CgroupError> {
    text.split_whitespace()
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| parse_error(path, format_args!("{v:?} as a number")))
        })
        .collect()
}

/// A cpuset list such as `0-3,8,10-11`.
fn parse_cpuset_list(path: &Path, text: &str) -> Result<Vec<u16>, CgroupError> {
    let mut out = Vec::new();
    let bad = || parse_error(path, format_args!("{:?} as a cpu list", text.trim()));
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u16 = a.parse().map_err(|_| bad())?;
                let b: u16 = b.parse().map_err(|_| bad())?;
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(out)
}

/// A PSI file (`some avg10=0.00 avg60=0.00 avg300=0.00 total=0`, `full ...`); `None` if it
/// does not exist or PSI is disabled (EOPNOTSUPP), as runc leaves it out then.
fn read_psi(dir: &Path, file: &str) -> Result<Option<PsiStats>, CgroupError> {
    let path = dir.join(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e)
            if e.kind() == ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::EOPNOTSUPP)
                || e.raw_os_error() == Some(libc::ENOTSUP) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(CgroupError::io("read", &path, e)),
    };
    parse_psi(&path, &text).map(Some)
}

fn parse_psi(path: &Path, text: &str) -> Result<PsiStats, CgroupError> {
    let mut psi = PsiStats::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let data = match fields.next() {
            Some("some") => &mut psi.some,
            Some("full") => &mut psi.full,
            _ => continue,
        };
        for f in fields {
            let bad = || parse_error(path, format_args!("PSI field {f:?}"));
            let (k, v) = f.split_once('=').ok_or_else(bad)?;
            match k {
                "avg10" => data.avg10 = v.parse().map_err(|_| bad())?,
                "avg60" => data.avg60 = v.parse().map_err(|_| bad())?,
                "avg300" => data.avg300 = v.parse().map_err(|_| bad())?,
                "total" => data.total = v.parse().map_err(|_| bad())?,
                _ => {}
            }
        }
    }
    Ok(psi)
}

/// The page sizes (`2MB`, `1GB`) that have a `hugetlb.<size>.<suffix>` file in `dir`.
fn hugetlb_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CgroupError::io("list", dir, e)),
    };
    let mut sizes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CgroupError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let size = name
            .strip_prefix("hugetlb.")
            .and_then(|r| r.strip_suffix(suffix))
            .and_then(|r| r.strip_suffix('.'));
        // `hugetlb.2MB.rsvd.current` is a different counter (reservations).
        if let Some(size) = size.filter(|s| !s.is_empty() && !s.contains('.')) {
            sizes.push(size.to_string());
        }
    }
    sizes.sort();
    Ok(sizes)
}

// ---------------------------------------------------------------------------------------------
// cgroup v1.

fn cpuacct_v1(dir: &Path, cpu: &mut CpuUsage) -> Result<(), CgroupError> {
    let path = dir.join("cpuacct.stat");
    if let Some(text) = read_opt(&path)? {
        // `user <ticks>\nsystem <ticks>`, in USER_HZ (100 on Linux, as runc assumes).
        for (k, v) in parse_flat_keyed(&path, &text)? {
            let ns = v.saturating_mul(1_000_000_000) / 100;
            match k.as_str() {
                "user" => cpu.user = ns,
                "system" => cpu.kernel = ns,
                _ => {}
            }
        }
    }
    if let Some(total) = read_u64(dir, "cpuacct.usage")? {
        cpu.total = total;
    }
    let path = dir.join("cpuacct.usage_percpu");
    if let Some(text) = read_opt(&path)? {
        cpu.percpu = parse_list(&path, &text)?;
    }
    let path = dir.join("cpuacct.usage_all");
    if let Some(text) = read_opt(&path)? {
        // A header `cpu user system`, then one `N user system` line per cpu.
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 3 {
                continue;
            }
            let n = |s: &str| {
                s.parse::<u64>()
                    .map_err(|_| parse_error(&path, format_args!("line {line:?}")))
            };
            cpu.percpu_user.push(n(f[1])?);
            cpu.percpu_kernel.push(n(f[2])?);
        }
    }
    Ok(())
}

fn cpu_v1(dir: &Path, t: &mut Throttling) -> Result<(), CgroupError> {
    for (k, v) in read_flat_keyed(dir, "cpu.stat")?.unwrap_or_default() {
        match k.as_str() {
            "nr_periods" => t.periods = v,
            "nr_throttled" => t.throttled_periods = v,
            "throttled_time" => t.throttled_time = v,
            _ => {}
        }
    }
    Ok(())
}

fn cpuset_v1(dir: &Path, s: &mut CpuSet) -> Result<(), CgroupError> {
    for (file, list) in [("cpuset.cpus", &mut s.cpus), ("cpuset.mems", &mut s.mems)] {
        let path = dir.join(file);
        if let Some(text) = read_opt(&path)? {
            *list = parse_cpuset_list(&path, &text)?;
        }
    }
    let flags = [
        ("cpuset.cpu_exclusive", &mut s.cpu_exclusive),
        ("cpuset.mem_hardwall", &mut s.mem_hardwall),
        ("cpuset.mem_exclusive", &mut s.mem_exclusive),
        ("cpuset.memory_migrate", &mut s.memory_migrate),
        ("cpuset.memory_spread_page", &mut s.memory_spread_page),
        ("cpuset.memory_spread_slab", &mut s.memory_spread_slab),
        ("cpuset.memory_pressure", &mut s.memory_pressure),
        ("cpuset.sched_load_balance", &mut s.sched_load_balance),
    ];
    for (file, v) in flags {
        if let Some(x) = read_u64(dir, file)? {
            *v = x;
        }
    }
    let path = dir.join("cpuset.sched_relax_domain_level");
    if let Some(text) = read_opt(&path)? {
        s.sched_relax_domain_level = text
            .trim()
            .parse()
            .map_err(|_| parse_error(&path, format_args!("{:?} as a number", text.trim())))?;
    }
    Ok(())
}

/// `memory[.memsw|.kmem|.kmem.tcp].*`: all zero when the usage file does not exist (swap and
/// kernel accounting are optional in the kernel).
fn memory_entry_v1(dir: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    let Some(usage) = read_u64(dir, &format!("{prefix}.usage_in_bytes"))? else {
        return Ok(MemoryEntry::default());
    };
    Ok(MemoryEntry {
        usage,
        max: read_u64(dir, &format!("{prefix}.max_usage_in_bytes"))?.unwrap_or(0),
        failcnt: read_u64(dir, &format!("{prefix}.failcnt"))?.unwrap_or(0),
        limit: read_u64(dir, &format!("{prefix}.limit_in_bytes"))?.unwrap_or(0),
    })
}

fn memory_v1(dir: &Path, m: &mut Memory) -> Result<(), CgroupError> {
    let Some(raw) = read_flat_keyed(dir, "memory.stat")? else {
        return Ok(());
    };
    m.raw = raw.into_iter().collect();
    m.cache = m.raw.get("cache").copied().unwrap_or(0);
    m.usage = memory_entry_v1(dir, "memory")?;
    m.swap = memory_entry_v1(dir, "memory.memsw")?;
    m.kernel = memory_entry_v1(dir, "memory.kmem")?;
    m.kernel_tcp = memory_entry_v1(dir, "memory.kmem.tcp")?;
    Ok(())
}

fn pids_common(dir: &Path, p: &mut Pids) -> Result<bool, CgroupError> {
    let Some(current) = read_u64(dir, "pids.current")? else {
        return Ok(false);
    };
    p.current = current;
    // "max" (no limit) is reported as 0.
    p.limit = match read_u64(dir, "pids.max")? {
        Some(u64::MAX) | None => 0,
        Some(l) => l,
    };
    Ok(true)
}

/// One blkio file: `MAJ:MIN [Op] VALUE` lines and a `Total N` line (skipped).
fn parse_blkio(path: &Path, text: &str) -> Result<Vec<BlkioEntry>, CgroupError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split([' ', ':']).filter(|s| !s.is_empty()).collect();
        let bad = || parse_error(path, format_args!("line {line:?}"));
        if f.len() < 3 {
            if f.is_empty() || (f.len() == 2 && f[0] == "Total") {
                continue;
            }
            return Err(bad());
        }
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
        let (op, value) = if f.len() == 4 {
            (f[2].to_string(), num(f[3])?)
        } else {
            (String::new(), num(f[2])?)
        };
        out.push(BlkioEntry {
            major: num(f[0])?,
            minor: num(f[1])?,
            op,
            value,
        });
    }
    Ok(out)
}

fn blkio_v1(dir: &Path, b: &mut Blkio) -> Result<(), CgroupError> {
    #[derive(Clone, Copy)]
    enum F {
        Sectors,
        ServiceTime,
        WaitTime,
        Merged,
        Queued,
        Time,
        Serviced,
        ServiceBytes,
    }
    use F::*;
    // runc's order of preference: the first group whose first file has entries is used.
    let groups: [&[(&str, F)]; 5] = [
        &[
            ("blkio.bfq.sectors_recursive", Sectors),
            ("blkio.bfq.io_service_time_recursive", ServiceTime),
            ("blkio.bfq.io_wait_time_recursive", WaitTime),
            ("blkio.bfq.io_merged_recursive", Merged),
            ("blkio.bfq.io_queued_recursive", Queued),
            ("blkio.bfq.time_recursive", Time),
            ("blkio.bfq.io_serviced_recursive", Serviced),
            ("blkio.bfq.io_service_bytes_recursive", ServiceBytes),
        ],
        &[
            ("blkio.bfq.io_serviced_recursive", Serviced),
            ("blkio.bfq.io_service_bytes_recursive", ServiceBytes),
        ],
        &[
            ("blkio.sectors_recursive", Sectors),
            ("blkio.io_service_time_recursive", ServiceTime),
            ("blkio.io_wait_time_recursive", WaitTime),
            ("blkio.io_merged_recursive", Merged),
            ("blkio.io_queued_recursive", Queued),
            ("blkio.time_recursive", Time),
            ("blkio.io_serviced_recursive", Serviced),
            ("blkio.io_service_bytes_recursive", ServiceBytes),
        ],
        &[
            ("blkio.throttle.io_serviced_recursive", Serviced),
            ("blkio.throttle.io_service_bytes_recursive", ServiceBytes),
        ],
        &[
            ("blkio.throttle.io_serviced", Serviced),
            ("blkio.throttle.io_service_bytes", ServiceBytes),
        ],
    ];
    for group in groups {
        for (i, (file, field)) in group.iter().enumerate() {
            let path = dir.join(file);
            let entries = match read_opt(&path) {
                Ok(Some(text)) => parse_blkio(&path, &text),
                Ok(None) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
            let entries = if i == 0 {
                // A group whose first file is missing, unreadable or empty is not used.
                match entries {
                    Ok(e) if !e.is_empty() => e,
                    _ => break,
                }
            } else {
                match entries {
                    Err(e) => return Err(e),
                    // As runc: a later empty file ends the collection.
                    Ok(e) if e.is_empty() => return Ok(()),
                    Ok(e) => e,
                }
            };
            *match field {
                Sectors => &mut b.sectors_recursive,
                ServiceTime => &mut b.io_service_time_recursive,
                WaitTime => &mut b.io_wait_time_recursive,
                Merged => &mut b.io_merged_recursive,
                Queued => &mut b.io_queued_recursive,
                Time => &mut b.io_time_recursive,
                Serviced => &mut b.io_serviced_recursive,
                ServiceBytes => &mut b.io_service_bytes_recursive,
            } = entries;
            if i == group.len() - 1 {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn hugetlb_v1(dir: &Path, h: &mut BTreeMap<String, Hugetlb>) -> Result<(), CgroupError> {
    for size in hugetlb_sizes(dir, "usage_in_bytes")? {
        let f = |suffix: &str| read_u64(dir, &format!("hugetlb.{size}.{suffix}"));
        let entry = Hugetlb {
            usage: f("usage_in_bytes")?.unwrap_or(0),
            max: f("max_usage_in_bytes")?.unwrap_or(0),
            failcnt: f("failcnt")?.unwrap_or(0),
        };
        h.insert(size, entry);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// cgroup v2.

fn cpu_v2(dir: &Path, cpu: &mut Cpu) -> Result<(), CgroupError> {
    for (k, v) in read_flat_keyed(dir, "cpu.stat")?.unwrap_or_default() {
        let ns = v.saturating_mul(1000);
        match k.as_str() {
            "usage_usec" => cpu.usage.total = ns,
            "user_usec" => cpu.usage.user = ns,
            "system_usec" => cpu.usage.kernel = ns,
            "nr_periods" => cpu.throttling.periods = v,
            "nr_throttled" => cpu.throttling.throttled_periods = v,
            "throttled_usec" => cpu.throttling.throttled_time = ns,
            _ => {}
        }
    }
    cpu.psi = read_psi(dir, "cpu.pressure")?;
    Ok(())
}

/// `memory[.swap].{current,max,peak}`; `None` when the usage file does not exist.
fn memory_entry_v2(dir: &Path, prefix: &str) -> Result<Option<MemoryEntry>, CgroupError> {
    let Some(usage) = read_u64(dir, &format!("{prefix}.current"))? else {
        return Ok(None);
    };
    Ok(Some(MemoryEntry {
        usage,
        limit: read_u64(dir, &format!("{prefix}.max"))?.unwrap_or(0),
        // memory.peak since Linux 5.19, memory.swap.peak since 6.5.
        max: read_u64(dir, &format!("{prefix}.peak"))?.unwrap_or(0),
        failcnt: 0,
    }))
}

fn memory_v2(dir: &Path, m: &mut Memory) -> Result<(), CgroupError> {
    if let Some(raw) = read_flat_keyed(dir, "memory.stat")? {
        m.raw = raw.into_iter().collect();
        m.cache = m.raw.get("file").copied().unwrap_or(0);
        m.usage = memory_entry_v2(dir, "memory")?.unwrap_or_default();
        // v1 reports memory+swap; so does runc on v2, with no peak (it cannot be summed).
        let swap = memory_entry_v2(dir, "memory.swap")?.unwrap_or_default();
        m.swap = MemoryEntry {
            usage: swap.usage.saturating_add(m.usage.usage),
            limit: if swap.limit == u64::MAX {
                u64::MAX
            } else {
                swap.limit.saturating_add(m.usage.limit)
            },
            max: 0,
            failcnt: 0,
        };
    }
    for (k, v) in read_flat_keyed(dir, "memory.events")?.unwrap_or_default() {
        let e = &mut m.event_count;
        match k.as_str() {
            "low" => e.reclaim_low = v,
            "high" => e.reclaim_high = v,
            "max" => e.max = v,
            "oom" => e.oom = v,
            "oom_kill" => e.oom_kill = v,
            _ => {}
        }
    }
    m.psi = read_psi(dir, "memory.pressure")?;
    Ok(())
}

fn pids_v2(dir: &Path, p: &mut Pids) -> Result<(), CgroupError> {
    if pids_common(dir, p)? {
        return Ok(());
    }
    // Without the pids controller: count cgroup.procs (cgroup.threads in a threaded cgroup).
    let procs = dir.join("cgroup.procs");
    let text = match std::fs::read_to_string(&procs) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            read_opt(&dir.join("cgroup.threads"))?
        }
        Err(e) => return Err(CgroupError::io("read", &procs, e)),
    };
    if let Some(text) = text {
        p.current = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        p.limit = 0;
    }
    Ok(())
}

/// io.stat: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N` per device, mapped to
/// v1's tables as runc maps them (bytes and ios; the rest has no v1 counterpart).
fn parse_io_stat(path: &Path, text: &str) -> Result<Blkio, CgroupError> {
    let mut b = Blkio::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(dev) = fields.next() else { continue };
        let Some((major, minor)) = dev.split_once(':') else {
            continue;
        };
        let bad = || parse_error(path, format_args!("line {line:?}"));
        let major: u64 = major.parse().map_err(|_| bad())?;
        let minor: u64 = minor.parse().map_err(|_| bad())?;
        for item in fields {
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            let (op, table) = match key {
                "rbytes" => ("Read", &mut b.io_service_bytes_recursive),
                "wbytes" => ("Write", &mut b.io_service_bytes_recursive),
                "rios" => ("Read", &mut b.io_serviced_recursive),
                "wios" => ("Write", &mut b.io_serviced_recursive),
                _ => continue,
            };
            table.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value: value.parse().map_err(|_| bad())?,
            });
        }
    }
    Ok(b)
}

fn io_v2(dir: &Path, b: &mut Blkio) -> Result<(), CgroupError> {
    let path = dir.join("io.stat");
    if let Some(text) = read_opt(&path)? {
        *b = parse_io_stat(&path, &text)?;
    }
    b.psi = read_psi(dir, "io.pressure")?;
    Ok(())
}

fn hugetlb_v2(dir: &Path, h: &mut BTreeMap<String, Hugetlb>) -> Result<(), CgroupError> {
    for size in hugetlb_sizes(dir, "current")? {
        let usage = read_u64(dir, &format!("hugetlb.{size}.current"))?.unwrap_or(0);
        // Allocations that failed because of the limit.
        let failcnt = read_flat_keyed(dir, &format!("hugetlb.{size}.events"))?
            .unwrap_or_default()
            .into_iter()
            .find(|(k, _)| k == "max")
            .map_or(0, |(_, v)| v);
        h.insert(
            size,
            Hugetlb {
                usage,
                max: 0,
                failcnt,
            },
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The public interface.

/// The v1 directory of `controller`, if a v1 hierarchy has it.
fn v1_dir<'a>(paths: &'a CgroupPaths, controller: &str) -> Option<&'a Path> {
    paths
        .dirs
        .iter()
        .find(|(k, _)| !k.is_empty() && k.split(',').any(|c| c == controller))
        .map(|(_, v)| v.as_path())
}

/// The statistics of the cgroup in `paths`, read as runc reads them on this layout.
pub fn stats(paths: &CgroupPaths) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    let unified = paths.unified();

    let (cpuacct, cpu) = (v1_dir(paths, "cpuacct"), v1_dir(paths, "cpu"));
    if let Some(d) = cpuacct {
        cpuacct_v1(d, &mut s.cpu.usage)?;
    }
    if let Some(d) = cpu {
        cpu_v1(d, &mut s.cpu.throttling)?;
    }
    if let (None, None, Some(d)) = (cpuacct, cpu, unified) {
        cpu_v2(d, &mut s.cpu)?;
    }
    if let Some(d) = v1_dir(paths, "cpuset") {
        cpuset_v1(d, &mut s.cpuset)?;
    }
    match (v1_dir(paths, "memory"), unified) {
        (Some(d), _) => memory_v1(d, &mut s.memory)?,
        (None, Some(d)) => memory_v2(d, &mut s.memory)?,
        _ => {}
    }
    match (v1_dir(paths, "pids"), unified) {
        (Some(d), _) => {
            pids_common(d, &mut s.pids)?;
        }
        (None, Some(d)) => pids_v2(d, &mut s.pids)?,
        _ => {}
    }
    match (v1_dir(paths, "blkio"), unified) {
        (Some(d), _) => blkio_v1(d, &mut s.blkio)?,
        (None, Some(d)) => io_v2(d, &mut s.blkio)?,
        _ => {}
    }
    match (v1_dir(paths, "hugetlb"), unified) {
        (Some(d), _) => hugetlb_v1(d, &mut s.hugetlb)?,
        (None, Some(d)) => hugetlb_v2(d, &mut s.hugetlb)?,
        _ => {}
    }
    Ok(s)
}

/// The number of processes of the cgroup the OOM killer has killed so far: `oom_kill` of
/// memory.oom_control (v1, Linux 4.13+) or of memory.events (v2). `None` without a memory
/// controller or counter.
pub fn oom_kill_count(paths: &CgroupPaths) -> Result<Option<u64>, CgroupError> {
    let (dir, file) = match (v1_dir(paths, "memory"), paths.unified()) {
        (Some(d), _) => (d, "memory.oom_control"),
        (None, Some(d)) => (d, "memory.events"),
        _ => return Ok(None),
    };
    Ok(read_flat_keyed(dir, file)?
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "oom_kill")
        .map(|(_, v)| v))
}

/// Notification of OOM events of a cgroup, through one descriptor to poll:
///
/// * v1: an eventfd registered for memory.oom_control through cgroup.event_control (as
///   runc); it becomes readable (POLLIN) each time the cgroup hits its limit and the OOM
///   killer is invoked (memory.oom_control itself does not notify pollers on v1);
/// * v2: memory.events, which notifies pollers with POLLPRI when a counter changes; an event
///   is an increase of its `oom_kill` counter.
pub struct OomNotifier {
    kind: OomKind,
}

enum OomKind {
    V1 {
        eventfd: nix::sys::eventfd::EventFd,
        /// Kept open: the registration lives as long as this file.
        _oom_control: File,
        event_control: PathBuf,
    },
    V2 {
        events: File,
        path: PathBuf,
        oom_kills: u64,
    },
}

impl OomNotifier {
    /// Start watching; `None` if the cgroup has no memory controller.
    pub fn new(paths: &CgroupPaths) -> Result<Option<OomNotifier>, CgroupError> {
        if let Some(dir) = v1_dir(paths, "memory") {
            return Self::v1(dir).map(Some);
        }
        match paths.unified() {
            Some(dir) if dir.join("memory.events").exists() => Self::v2(dir).map(Some),
            _ => Ok(None),
        }
    }

    fn v1(dir: &Path) -> Result<OomNotifier, CgroupError> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let oc = dir.join("memory.oom_control");
        let oom_control = File::open(&oc).map_err(|e| CgroupError::io("open", &oc, e))?;
        let eventfd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| CgroupError::io("eventfd", &oc, e.into()))?;
        let event_control = dir.join("cgroup.event_control");
        let line = format!("{} {}", eventfd.as_raw_fd(), oom_control.as_raw_fd());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&event_control)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| CgroupError::io("write", &event_control, e))?;
        Ok(OomNotifier {
            kind: OomKind::V1 {
                eventfd,
                _oom_control: oom_control,
                event_control,
            },
        })
    }

    fn v2(dir: &Path) -> Result<OomNotifier, CgroupError> {
        let path = dir.join("memory.events");
        let events = File::open(&path).map_err(|e| CgroupError::io("open", &path, e))?;
        let mut n = OomNotifier {
            kind: OomKind::V2 {
                events,
                path,
                oom_kills: 0,
            },
        };
        // The first read sets the baseline and arms the notification.
        n.read()?;
        Ok(n)
    }

    /// The descriptor to poll, with [`OomNotifier::poll_flags`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            OomKind::V1 { eventfd, .. } => eventfd.as_fd(),
            OomKind::V2 { events, .. } => events.as_fd(),
        }
    }

    /// POLLIN (v1 eventfd) or POLLPRI (v2 memory.events).
    pub fn poll_flags(&self) -> nix::poll::PollFlags {
        match &self.kind {
            OomKind::V1 { .. } => nix::poll::PollFlags::POLLIN,
            OomKind::V2 { .. } => nix::poll::PollFlags::POLLPRI,
        }
    }

    /// The OOM events since the last call, without blocking: v1, 1 per notification (as runc
    /// reports them); v2, the increase of `oom_kill`. `None` once the cgroup is gone (no
    /// more events can come; stop polling).
    pub fn read(&mut self) -> Result<Option<u64>, CgroupError> {
        match &mut self.kind {
            OomKind::V1 {
                eventfd,
                event_control,
                ..
            } => match eventfd.read() {
                Ok(_) => {
                    // Removing the cgroup signals the eventfd too (runc checks the same way).
                    if !event_control.exists() {
                        return Ok(None);
                    }
                    Ok(Some(1))
                }
                Err(nix::errno::Errno::EAGAIN) => Ok(Some(0)),
                Err(e) => Err(CgroupError::io("read eventfd for", event_control, e.into())),
            },
            OomKind::V2 {
                events,
                path,
                oom_kills,
            } => {
                let mut text = String::new();
                let r = events
                    .seek(SeekFrom::Start(0))
                    .and_then(|_| events.read_to_string(&mut text));
                match r {
                    Ok(_) => {}
                    // A removed cgroup's open files fail with ENODEV.
                    Err(e)
                        if e.raw_os_error() == Some(libc::ENODEV)
                            || e.kind() == ErrorKind::NotFound =>
                    {
                        return Ok(None)
                    }
                    Err(e) => return Err(CgroupError::io("read", path, e)),
                }
                let now = parse_flat_keyed(path, &text)?
                    .into_iter()
                    .find(|(k, _)| k == "oom_kill")
                    .map_or(0, |(_, v)| v);
                let new = now.saturating_sub(*oom_kills);
                *oom_kills = now;
                Ok(Some(new))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory tree under the system temp dir, removed on drop.
    struct TempTree(PathBuf);

    impl TempTree {
        fn new(name: &str) -> TempTree {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("berth-stats-{name}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempTree(p)
        }

        fn write(&self, rel: &str, text: &str) {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }

        fn dir(&self, rel: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(&p).unwrap();
            p
        }
    }

    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const CG: &str = "berth/c1";

    /// A hybrid layout like this host's: v1 controllers plus a cgroup2 directory.
    fn v1_tree() -> (TempTree, CgroupPaths) {
        let t = TempTree::new("v1");
        let mut paths = CgroupPaths::default();
        for (key, mnt) in [
            ("cpu", "cpu"),
            ("cpuacct", "cpuacct"),
            ("cpuset", "cpuset"),
            ("memory", "memory"),
            ("pids", "pids"),
            ("blkio", "blkio"),
            ("hugetlb", "hugetlb"),
            ("name=systemd", "systemd"),
            ("", "unified"),
        ] {
            paths.dirs.insert(key.into(), t.dir(&format!("{mnt}/{CG}")));
            paths.mounts.insert(key.into(), t.0.join(mnt));
        }
        let w = |f: &str, s: &str| t.write(f, s);
        w("cpuacct/berth/c1/cpuacct.stat", "user 250\nsystem 30\n");
        w("cpuacct/berth/c1/cpuacct.usage", "2900000000\n");
        w(
            "cpuacct/berth/c1/cpuacct.usage_percpu",
            "1000000000 1900000000 \n",
        );
        w(
            "cpuacct/berth/c1/cpuacct.usage_all",
            "cpu user system\n0 800000000 200000000\n1 1700000000 200000000\n",
        );
        w(
            "cpu/berth/c1/cpu.stat",
            "nr_periods 10\nnr_throttled 3\nthrottled_time 4500\nnr_bursts 0\nburst_time 0\n",
        );
        w("cpuset/berth/c1/cpuset.cpus", "0-2,5\n");
        w("cpuset/berth/c1/cpuset.mems", "0\n");
        w("cpuset/berth/c1/cpuset.cpu_exclusive", "0\n");
        w("cpuset/berth/c1/cpuset.mem_hardwall", "1\n");
        w("cpuset/berth/c1/cpuset.sched_load_balance", "1\n");
        w("cpuset/berth/c1/cpuset.sched_relax_domain_level", "-1\n");
        w(
            "memory/berth/c1/memory.stat",
            "cache 4096\nrss 1052672\nmapped_file 0\ntotal_cache 4096\ntotal_rss 1052672\n",
        );
        w("memory/berth/c1/memory.usage_in_bytes", "1196032\n");
        w("memory/berth/c1/memory.max_usage_in_bytes", "2351104\n");
        w("memory/berth/c1/memory.failcnt", "0\n");
        w("memory/berth/c1/memory.limit_in_bytes", "16777216\n");
        w("memory/berth/c1/memory.kmem.usage_in_bytes", "131072\n");
        w("memory/berth/c1/memory.kmem.max_usage_in_bytes", "262144\n");
        w("memory/berth/c1/memory.kmem.failcnt", "0\n");
        w(
            "memory/berth/c1/memory.kmem.limit_in_bytes",
            "9223372036854771712\n",
        );
        // No memsw (swapaccount=0) and no kmem.tcp: left at zero.
        w(
            "memory/berth/c1/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        w("pids/berth/c1/pids.current", "3\n");
        w("pids/berth/c1/pids.max", "max\n");
        w(
            "blkio/berth/c1/blkio.bfq.io_serviced_recursive",
            "8:0 Read 12\n8:0 Write 3\n8:0 Sync 15\n8:0 Async 0\n8:0 Total 15\nTotal 15\n",
        );
        w(
            "blkio/berth/c1/blkio.bfq.io_service_bytes_recursive",
            "8:0 Read 49152\n8:0 Write 4096\nTotal 53248\n",
        );
        w(
            "blkio/berth/c1/blkio.throttle.io_serviced_recursive",
            "8:0 Read 99\nTotal 99\n",
        );
        w("hugetlb/berth/c1/hugetlb.2MB.usage_in_bytes", "2097152\n");
        w(
            "hugetlb/berth/c1/hugetlb.2MB.max_usage_in_bytes",
            "4194304\n",
        );
        w("hugetlb/berth/c1/hugetlb.2MB.failcnt", "1\n");
        w("hugetlb/berth/c1/hugetlb.2MB.limit_in_bytes", "4194304\n");
        w("hugetlb/berth/c1/hugetlb.1GB.usage_in_bytes", "0\n");
        w("hugetlb/berth/c1/hugetlb.1GB.max_usage_in_bytes", "0\n");
        w("hugetlb/berth/c1/hugetlb.1GB.failcnt", "0\n");
        // The cgroup2 side of a hybrid host: not read while v1 has the controller.
        w(
            "unified/berth/c1/cpu.stat",
            "usage_usec 1\nuser_usec 1\nsystem_usec 0\n",
        );
        w(
            "unified/berth/c1/cpu.pressure",
            "some avg10=1.00 avg60=0.00 avg300=0.00 total=5\n",
        );
        (t, paths)
    }

    #[test]
    fn reads_v1_files() {
        let (_t, paths) = v1_tree();
        let s = stats(&paths).unwrap();
        assert_eq!(s.cpu.usage.total, 2_900_000_000);
        assert_eq!(s.cpu.usage.user, 2_500_000_000);
        assert_eq!(s.cpu.usage.kernel, 300_000_000);
        assert_eq!(s.cpu.usage.percpu, [1_000_000_000, 1_900_000_000]);
        assert_eq!(s.cpu.usage.percpu_user, [800_000_000, 1_700_000_000]);
        assert_eq!(s.cpu.usage.percpu_kernel, [200_000_000, 200_000_000]);
        assert_eq!(s.cpu.throttling.periods, 10);
        assert_eq!(s.cpu.throttling.throttled_periods, 3);
        assert_eq!(s.cpu.throttling.throttled_time, 4500);
        assert_eq!(s.cpu.psi, None, "no PSI from cgroup2 while v1 has cpu");
        assert_eq!(s.cpuset.cpus, [0, 1, 2, 5]);
        assert_eq!(s.cpuset.mems, [0]);
        assert_eq!(s.cpuset.mem_hardwall, 1);
        assert_eq!(s.cpuset.sched_relax_domain_level, -1);
        assert_eq!(s.memory.cache, 4096);
        assert_eq!(s.memory.raw["rss"], 1_052_672);
        assert_eq!(s.memory.raw.len(), 5);
        assert_eq!(
            s.memory.usage,
            MemoryEntry {
                limit: 16 << 20,
                usage: 1_196_032,
                max: 2_351_104,
                failcnt: 0
            }
        );
        assert_eq!(s.memory.swap, MemoryEntry::default());
        assert_eq!(s.memory.kernel.usage, 131_072);
        assert_eq!(s.memory.kernel.limit, 9_223_372_036_854_771_712);
        assert_eq!(s.memory.kernel_tcp, MemoryEntry::default());
        assert_eq!(s.pids.current, 3);
        assert_eq!(s.pids.limit, 0);
        // bfq wins over throttle; the per-op lines only, not the Total.
        let bytes = &s.blkio.io_service_bytes_recursive;
        assert_eq!(bytes.len(), 2);
        assert_eq!(
            bytes[0],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 49152
            }
        );
        assert_eq!(s.blkio.io_serviced_recursive.len(), 5);
        assert!(s.blkio.io_queued_recursive.is_empty());
        assert_eq!(
            s.hugetlb["2MB"],
            Hugetlb {
                usage: 2 << 20,
                max: 4 << 20,
                failcnt: 1
            }
        );
        assert_eq!(s.hugetlb["1GB"], Hugetlb::default());
        assert_eq!(oom_kill_count(&paths).unwrap(), Some(2));
    }

    #[test]
    fn v1_json_has_runcs_shape() {
        let (_t, paths) = v1_tree();
        let ev = Event {
            kind: "stats".into(),
            id: "c1".into(),
            data: Some(stats(&paths).unwrap()),
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "stats");
        assert_eq!(v["id"], "c1");
        let d = &v["data"];
        assert_eq!(d["cpu"]["usage"]["percpu_kernel"][1], 200_000_000);
        assert_eq!(d["cpu"]["throttling"]["throttledPeriods"], 3);
        assert_eq!(d["cpu"]["throttling"]["throttledTime"], 4500);
        assert!(d["cpu"].get("psi").is_none());
        // omitempty: zero counters of MemoryEntry go, limit and failcnt stay.
        assert_eq!(
            d["memory"]["swap"],
            serde_json::json!({"limit": 0, "failcnt": 0})
        );
        assert_eq!(d["memory"]["kernelTCP"]["limit"], 0);
        assert_eq!(d["memory"]["raw"]["total_rss"], 1_052_672);
        assert_eq!(d["memory"]["event_count"]["oom_kill"], 0);
        assert_eq!(d["pids"], serde_json::json!({"current": 3}));
        assert_eq!(
            d["blkio"]["ioServiceBytesRecursive"][1],
            serde_json::json!({"major": 8, "op": "Write", "value": 4096})
        );
        assert!(d["blkio"].get("ioQueueRecursive").is_none());
        assert_eq!(d["hugetlb"]["1GB"], serde_json::json!({"failcnt": 0}));
        assert_eq!(d["cpuset"]["cpus"], serde_json::json!([0, 1, 2, 5]));
        assert_eq!(d["cpuset"]["memory_migrate"], 0);
        assert_eq!(d["intel_rdt"], serde_json::json!({}));
        assert!(d["network_interfaces"].is_null());
        let oom = Event {
            kind: "oom".into(),
            id: "c1".into(),
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&oom).unwrap(),
            r#"{"type":"oom","id":"c1"}"#
        );
        // What berth writes, berth (and the shim) can read back.
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    fn v2_tree() -> (TempTree, CgroupPaths) {
        let t = TempTree::new("v2");
        let mut paths = CgroupPaths::default();
        paths.dirs.insert(String::new(), t.dir(CG));
        paths.mounts.insert(String::new(), t.0.clone());
        let w = |f: &str, s: &str| t.write(&format!("{CG}/{f}"), s);
        w(
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 300\nnr_bursts 0\nburst_usec 0\n",
        );
        w(
            "cpu.pressure",
            "some avg10=0.00 avg60=1.25 avg300=0.50 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=99\n",
        );
        w(
            "memory.stat",
            "anon 1048576\nfile 8192\nkernel 65536\nsock 0\npgfault 120\n",
        );
        w("memory.current", "1200128\n");
        w("memory.max", "max\n");
        w("memory.peak", "2400256\n");
        w("memory.swap.current", "4096\n");
        w("memory.swap.max", "1048576\n");
        w(
            "memory.events",
            "low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\noom_group_kill 0\n",
        );
        w("memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        w("pids.current", "2\n");
        w("pids.max", "100\n");
        w(
            "io.stat",
            "259:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        );
        w("hugetlb.2MB.current", "4194304\n");
        w("hugetlb.2MB.max", "max\n");
        w("hugetlb.2MB.events", "max 7\n");
        w("hugetlb.2MB.rsvd.current", "0\n");
        w("hugetlb.2MB.rsvd.max", "max\n");
        (t, paths)
    }

    #[test]
    fn reads_v2_files() {
        let (_t, paths) = v2_tree();
        let s = stats(&paths).unwrap();
        assert_eq!(s.cpu.usage.total, 2_500_000);
        assert_eq!(s.cpu.usage.user, 2_000_000);
        assert_eq!(s.cpu.usage.kernel, 500_000);
        assert!(s.cpu.usage.percpu.is_empty());
        assert_eq!(s.cpu.throttling.periods, 7);
        assert_eq!(s.cpu.throttling.throttled_time, 300_000);
        let psi = s.cpu.psi.unwrap();
        assert_eq!(psi.some.avg60, 1.25);
        assert_eq!(psi.some.total, 1234);
        assert_eq!(psi.full.total, 99);
        assert_eq!(s.memory.cache, 8192);
        assert_eq!(s.memory.raw["pgfault"], 120);
        assert_eq!(
            s.memory.usage,
            MemoryEntry {
                limit: u64::MAX,
                usage: 1_200_128,
                max: 2_400_256,
                failcnt: 0
            }
        );
        // memory+swap as v1 reports it; the limit stays "max" when memory has none.
        assert_eq!(s.memory.swap.usage, 1_200_128 + 4096);
        assert_eq!(s.memory.swap.limit, u64::MAX);
        assert_eq!(s.memory.swap.max, 0);
        assert_eq!(
            s.memory.event_count,
            MemoryEventCount {
                reclaim_low: 1,
                reclaim_high: 2,
                max: 3,
                oom: 4,
                oom_kill: 5
            }
        );
        assert!(s.memory.psi.is_some());
        assert_eq!(s.pids.current, 2);
        assert_eq!(s.pids.limit, 100);
        let b = &s.blkio.io_service_bytes_recursive;
        assert_eq!(b.len(), 4);
        assert_eq!(
            (b[0].major, b[0].minor, b[0].op.as_str(), b[0].value),
            (259, 0, "Read", 4096)
        );
        assert_eq!((b[1].op.as_str(), b[1].value), ("Write", 8192));
        assert_eq!((b[2].major, b[2].minor), (8, 16));
        assert_eq!(s.blkio.io_serviced_recursive.len(), 4);
        assert_eq!(s.blkio.io_serviced_recursive[1].value, 2);
        assert!(s.blkio.psi.is_none(), "no io.pressure file");
        assert_eq!(s.hugetlb.len(), 1, "rsvd counters are not page sizes");
        assert_eq!(
            s.hugetlb["2MB"],
            Hugetlb {
                usage: 4 << 20,
                max: 0,
                failcnt: 7
            }
        );
        assert_eq!(s.cpuset, CpuSet::default());
        assert_eq!(oom_kill_count(&paths).unwrap(), Some(5));

        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["memory"]["usage"]["limit"], u64::MAX);
        assert_eq!(
            v["memory"]["kernel"],
            serde_json::json!({"limit": 0, "failcnt": 0})
        );
        // Go writes whole floats without a fraction.
        let text = serde_json::to_string(&s.cpu).unwrap();
        assert!(
            text.contains(r#""some":{"avg10":0,"avg60":1.25,"avg300":0.5,"total":1234}"#),
            "{text}"
        );
    }

    #[test]
    fn v2_without_pids_controller_counts_procs() {
        let (t, paths) = v2_tree();
        std::fs::remove_file(t.0.join(CG).join("pids.current")).unwrap();
        std::fs::remove_file(t.0.join(CG).join("pids.max")).unwrap();
        t.write(&format!("{CG}/cgroup.procs"), "10\n11\n12\n");
        let s = stats(&paths).unwrap();
        assert_eq!((s.pids.current, s.pids.limit), (3, 0));
    }

    #[test]
    fn swap_limit_adds_memory_limit() {
        let (t, paths) = v2_tree();
        t.write(&format!("{CG}/memory.max"), "16777216\n");
        let s = stats(&paths).unwrap();
        assert_eq!(s.memory.swap.limit, (16 << 20) + (1 << 20));
    }

    #[test]
    fn missing_files_are_left_out() {
        // An empty cgroup directory (a controller not enabled, an old kernel): nothing, no error.
        let t = TempTree::new("empty");
        let mut paths = CgroupPaths::default();
        paths.dirs.insert("memory".into(), t.dir("memory/x"));
        paths.dirs.insert("cpu,cpuacct".into(), t.dir("cpu/x"));
        paths.dirs.insert(String::new(), t.dir("unified/x"));
        let s = stats(&paths).unwrap();
        assert_eq!(s, Stats::default());
        assert_eq!(oom_kill_count(&paths).unwrap(), None);
        // A cgroup whose directories are gone entirely.
        let mut gone = CgroupPaths::default();
        gone.dirs.insert(String::new(), t.0.join("nonexistent"));
        assert_eq!(stats(&gone).unwrap(), Stats::default());
        let json = serde_json::to_string(&Stats::default()).unwrap();
        assert!(
            json.starts_with(r#"{"cpu":{"usage":{"kernel":0,"user":0},"throttling":{}},"#),
            "{json}"
        );
        assert!(
            json.ends_with(r#""hugetlb":{},"intel_rdt":{},"network_interfaces":null}"#),
            "{json}"
        );
    }

    #[test]
    fn errors_name_the_file() {
        let (t, paths) = v2_tree();
        t.write(&format!("{CG}/memory.stat"), "anon lots\n");
        let e = stats(&paths).unwrap_err().to_string();
        assert!(e.contains("memory.stat") && e.contains("anon lots"), "{e}");

        let (t, paths) = v1_tree();
        t.write("pids/berth/c1/pids.current", "three\n");
        let e = stats(&paths).unwrap_err().to_string();
        assert!(e.contains("pids.current"), "{e}");

        // A real read error (here EISDIR) is an error, not a missing file.
        let (t, paths) = v1_tree();
        std::fs::remove_file(t.0.join("memory/berth/c1/memory.usage_in_bytes")).unwrap();
        t.dir("memory/berth/c1/memory.usage_in_bytes");
        let e = stats(&paths).unwrap_err().to_string();
        assert!(e.contains("memory.usage_in_bytes"), "{e}");
    }

    #[test]
    fn number_rules_follow_runc() {
        assert_eq!(parse_u64("max\n"), Some(u64::MAX));
        assert_eq!(parse_u64(" 42 "), Some(42));
        assert_eq!(parse_u64("-1"), Some(0));
        assert_eq!(parse_u64("-99999999999999999999999"), Some(0));
        assert_eq!(parse_u64("x"), None);
        assert_eq!(parse_u64("-"), None);
        let p = Path::new("cpuset.cpus");
        assert_eq!(parse_cpuset_list(p, "0-1,3\n").unwrap(), [0, 1, 3]);
        assert_eq!(parse_cpuset_list(p, "\n").unwrap(), Vec::<u16>::new());
        assert!(parse_cpuset_list(p, "3-1").is_err());
        let b = parse_blkio(p, "8:0 Read 1\n8:0 2\nTotal 3\n").unwrap();
        assert_eq!(b[1].op, "");
        assert_eq!(b[1].value, 2);
        assert!(parse_blkio(p, "8:0\n").is_err());
    }

    #[test]
    fn blkio_v1_falls_back_in_runcs_order() {
        let (t, paths) = v1_tree();
        // An idle bfq group ("Total 0" only) is skipped for the throttle files.
        t.write(
            "blkio/berth/c1/blkio.bfq.io_serviced_recursive",
            "Total 0\n",
        );
        t.write(
            "blkio/berth/c1/blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 7\nTotal 7\n",
        );
        let s = stats(&paths).unwrap();
        assert_eq!(s.blkio.io_serviced_recursive.len(), 1);
        assert_eq!(s.blkio.io_serviced_recursive[0].value, 99);
        assert_eq!(s.blkio.io_service_bytes_recursive[0].value, 7);
    }

    #[test]
    fn v2_notifier_counts_oom_kills() {
        let (t, paths) = v2_tree();
        let mut n = OomNotifier::new(&paths)
            .unwrap()
            .expect("memory.events exists");
        assert_eq!(n.poll_flags(), nix::poll::PollFlags::POLLPRI);
        assert_eq!(n.read().unwrap(), Some(0));
        t.write(&format!("{CG}/memory.events"), "oom 6\noom_kill 7\n");
        assert_eq!(n.read().unwrap(), Some(2));
        assert_eq!(n.read().unwrap(), Some(0));
        // No memory controller at all: nothing to watch.
        let t2 = TempTree::new("nomem");
        let mut p2 = CgroupPaths::default();
        p2.dirs.insert(String::new(), t2.dir("x"));
        assert!(OomNotifier::new(&p2).unwrap().is_none());
    }
}
