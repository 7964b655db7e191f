//! Stats: `RUNTIME events --stats ID` (runc's `types.Event` JSON) converted to containerd's
//! cgroup metrics: `io.containerd.cgroups.v1.Metrics` on v1/hybrid hosts and
//! `io.containerd.cgroups.v2.Metrics` on pure v2 hosts, as the runc shim returns them.

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use protobuf::well_known_types::any::Any;
use protobuf::{Message, MessageField};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub data: Stats,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: HashMap<String, Hugetlb>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CpuUsage {
    pub total: u64,
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct MemEntry {
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Memory {
    pub cache: u64,
    pub usage: MemEntry,
    pub swap: MemEntry,
    pub kernel: MemEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemEntry,
    pub raw: HashMap<String, u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Pids {
    pub current: u64,
    pub limit: u64,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Blkio {
    #[serde(rename = "ioServiceBytesRecursive")]
    pub service_bytes: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive")]
    pub serviced: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive")]
    pub queued: Vec<BlkioEntry>,
    #[serde(rename = "ioServiceTimeRecursive")]
    pub service_time: Vec<BlkioEntry>,
    #[serde(rename = "ioWaitTimeRecursive")]
    pub wait_time: Vec<BlkioEntry>,
    #[serde(rename = "ioMergedRecursive")]
    pub merged: Vec<BlkioEntry>,
    #[serde(rename = "ioTimeRecursive")]
    pub time: Vec<BlkioEntry>,
    #[serde(rename = "sectorsRecursive")]
    pub sectors: Vec<BlkioEntry>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Hugetlb {
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

/// Parse the output of `events --stats` (one JSON event; the last `stats` line wins).
pub fn parse(out: &[u8]) -> Result<Stats, String> {
    let text = String::from_utf8_lossy(out);
    let mut found = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let ev: Event =
            serde_json::from_str(line).map_err(|e| format!("parsing runtime stats: {e}"))?;
        if ev.kind == "stats" {
            found = Some(ev.data);
        }
    }
    found.ok_or_else(|| "the runtime printed no stats event".to_string())
}

fn entries(v: &[BlkioEntry]) -> Vec<v1::BlkIOEntry> {
    v.iter()
        .map(|e| {
            let mut o = v1::BlkIOEntry::new();
            o.op = e.op.clone();
            o.major = e.major;
            o.minor = e.minor;
            o.value = e.value;
            o
        })
        .collect()
}

fn mem_entry(e: &MemEntry) -> MessageField<v1::MemoryEntry> {
    let mut o = v1::MemoryEntry::new();
    o.limit = e.limit;
    o.usage = e.usage;
    o.max = e.max;
    o.failcnt = e.failcnt;
    MessageField::some(o)
}

pub fn to_v1(s: &Stats) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    let mut hugetlb: Vec<_> = s.hugetlb.iter().collect();
    hugetlb.sort_by(|a, b| a.0.cmp(b.0));
    for (size, h) in hugetlb {
        let mut o = v1::HugetlbStat::new();
        o.usage = h.usage;
        o.max = h.max;
        o.failcnt = h.failcnt;
        o.pagesize = size.clone();
        m.hugetlb.push(o);
    }
    let mut pids = v1::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = MessageField::some(pids);
    let mut usage = v1::CPUUsage::new();
    usage.total = s.cpu.usage.total;
    usage.kernel = s.cpu.usage.kernel;
    usage.user = s.cpu.usage.user;
    usage.per_cpu = s.cpu.usage.percpu.clone();
    let mut thr = v1::Throttle::new();
    thr.periods = s.cpu.throttling.periods;
    thr.throttled_periods = s.cpu.throttling.throttled_periods;
    thr.throttled_time = s.cpu.throttling.throttled_time;
    let mut cpu = v1::CPUStat::new();
    cpu.usage = MessageField::some(usage);
    cpu.throttling = MessageField::some(thr);
    m.cpu = MessageField::some(cpu);
    let r = |k: &str| s.memory.raw.get(k).copied().unwrap_or(0);
    let mut mem = v1::MemoryStat::new();
    mem.cache = if s.memory.cache != 0 {
        s.memory.cache
    } else {
        r("cache")
    };
    mem.rss = r("rss");
    mem.rss_huge = r("rss_huge");
    mem.mapped_file = r("mapped_file");
    mem.dirty = r("dirty");
    mem.writeback = r("writeback");
    mem.pg_pg_in = r("pgpgin");
    mem.pg_pg_out = r("pgpgout");
    mem.pg_fault = r("pgfault");
    mem.pg_maj_fault = r("pgmajfault");
    mem.inactive_anon = r("inactive_anon");
    mem.active_anon = r("active_anon");
    mem.inactive_file = r("inactive_file");
    mem.active_file = r("active_file");
    mem.unevictable = r("unevictable");
    mem.hierarchical_memory_limit = r("hierarchical_memory_limit");
    mem.hierarchical_swap_limit = r("hierarchical_memsw_limit");
    mem.total_cache = r("total_cache");
    mem.total_rss = r("total_rss");
    mem.total_rss_huge = r("total_rss_huge");
    mem.total_mapped_file = r("total_mapped_file");
    mem.total_dirty = r("total_dirty");
    mem.total_writeback = r("total_writeback");
    mem.total_pg_pg_in = r("total_pgpgin");
    mem.total_pg_pg_out = r("total_pgpgout");
    mem.total_pg_fault = r("total_pgfault");
    mem.total_pg_maj_fault = r("total_pgmajfault");
    mem.total_inactive_anon = r("total_inactive_anon");
    mem.total_active_anon = r("total_active_anon");
    mem.total_inactive_file = r("total_inactive_file");
    mem.total_active_file = r("total_active_file");
    mem.total_unevictable = r("total_unevictable");
    mem.usage = mem_entry(&s.memory.usage);
    mem.swap = mem_entry(&s.memory.swap);
    mem.kernel = mem_entry(&s.memory.kernel);
    mem.kernel_tcp = mem_entry(&s.memory.kernel_tcp);
    m.memory = MessageField::some(mem);
    let b = &s.blkio;
    let mut blk = v1::BlkIOStat::new();
    blk.io_service_bytes_recursive = entries(&b.service_bytes);
    blk.io_serviced_recursive = entries(&b.serviced);
    blk.io_queued_recursive = entries(&b.queued);
    blk.io_service_time_recursive = entries(&b.service_time);
    blk.io_wait_time_recursive = entries(&b.wait_time);
    blk.io_merged_recursive = entries(&b.merged);
    blk.io_time_recursive = entries(&b.time);
    blk.sectors_recursive = entries(&b.sectors);
    m.blkio = MessageField::some(blk);
    m
}

pub fn to_v2(s: &Stats) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let mut pids = v2::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = MessageField::some(pids);
    let mut cpu = v2::CPUStat::new();
    cpu.usage_usec = s.cpu.usage.total / 1000;
    cpu.user_usec = s.cpu.usage.user / 1000;
    cpu.system_usec = s.cpu.usage.kernel / 1000;
    cpu.nr_periods = s.cpu.throttling.periods;
    cpu.nr_throttled = s.cpu.throttling.throttled_periods;
    cpu.throttled_usec = s.cpu.throttling.throttled_time / 1000;
    m.cpu = MessageField::some(cpu);
    let r = |k: &str| s.memory.raw.get(k).copied().unwrap_or(0);
    let mut mem = v2::MemoryStat::new();
    mem.anon = r("anon");
    mem.file = r("file");
    mem.kernel_stack = r("kernel_stack");
    mem.slab = r("slab");
    mem.sock = r("sock");
    mem.shmem = r("shmem");
    mem.file_mapped = r("file_mapped");
    mem.file_dirty = r("file_dirty");
    mem.file_writeback = r("file_writeback");
    mem.anon_thp = r("anon_thp");
    mem.inactive_anon = r("inactive_anon");
    mem.active_anon = r("active_anon");
    mem.inactive_file = r("inactive_file");
    mem.active_file = r("active_file");
    mem.unevictable = r("unevictable");
    mem.slab_reclaimable = r("slab_reclaimable");
    mem.slab_unreclaimable = r("slab_unreclaimable");
    mem.pgfault = r("pgfault");
    mem.pgmajfault = r("pgmajfault");
    mem.workingset_refault = r("workingset_refault");
    mem.workingset_activate = r("workingset_activate");
    mem.workingset_nodereclaim = r("workingset_nodereclaim");
    mem.pgrefill = r("pgrefill");
    mem.pgscan = r("pgscan");
    mem.pgsteal = r("pgsteal");
    mem.pgactivate = r("pgactivate");
    mem.pgdeactivate = r("pgdeactivate");
    mem.pglazyfree = r("pglazyfree");
    mem.pglazyfreed = r("pglazyfreed");
    mem.thp_fault_alloc = r("thp_fault_alloc");
    mem.thp_collapse_alloc = r("thp_collapse_alloc");
    mem.usage = s.memory.usage.usage;
    mem.usage_limit = s.memory.usage.limit;
    mem.max_usage = s.memory.usage.max;
    mem.swap_usage = s.memory.swap.usage;
    mem.swap_limit = s.memory.swap.limit;
    mem.swap_max_usage = s.memory.swap.max;
    m.memory = MessageField::some(mem);
    // runc reports io.stat as service bytes/serviced entries with op Read/Write.
    let mut devs: Vec<v2::IOEntry> = Vec::new();
    fn slot(devs: &mut Vec<v2::IOEntry>, maj: u64, min: u64) -> &mut v2::IOEntry {
        match devs.iter().position(|e| (e.major, e.minor) == (maj, min)) {
            Some(i) => &mut devs[i],
            None => {
                let mut e = v2::IOEntry::new();
                e.major = maj;
                e.minor = min;
                devs.push(e);
                devs.last_mut().expect("just pushed")
            }
        }
    }
    for e in &s.blkio.service_bytes {
        let d = slot(&mut devs, e.major, e.minor);
        match e.op.to_ascii_lowercase().as_str() {
            "read" => d.rbytes = e.value,
            "write" => d.wbytes = e.value,
            _ => {}
        }
    }
    for e in &s.blkio.serviced {
        let d = slot(&mut devs, e.major, e.minor);
        match e.op.to_ascii_lowercase().as_str() {
            "read" => d.rios = e.value,
            "write" => d.wios = e.value,
            _ => {}
        }
    }
    let mut io = v2::IOStat::new();
    io.usage = devs;
    m.io = MessageField::some(io);
    let mut hugetlb: Vec<_> = s.hugetlb.iter().collect();
    hugetlb.sort_by(|a, b| a.0.cmp(b.0));
    for (size, h) in hugetlb {
        let mut o = v2::HugeTlbStat::new();
        o.current = h.usage;
        o.max = h.max;
        o.failcnt = h.failcnt;
        o.pagesize = size.clone();
        m.hugetlb.push(o);
    }
    m
}

/// The Any a StatsResponse carries.
pub fn to_any(s: &Stats, unified: bool) -> Any {
    let mut a = Any::new();
    if unified {
        a.type_url = "io.containerd.cgroups.v2.Metrics".into();
        a.value = to_v2(s).write_to_bytes().unwrap_or_default();
    } else {
        a.type_url = "io.containerd.cgroups.v1.Metrics".into();
        a.value = to_v1(s).write_to_bytes().unwrap_or_default();
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNC: &str = r#"{"type":"stats","id":"c","data":{"cpu":{"usage":{"total":5000,"percpu":[3000,2000],"kernel":1000,"user":4000},"throttling":{}},"cpuset":{},"memory":{"usage":{"limit":9223372036854771712,"usage":1048576,"max":2097152,"failcnt":0},"swap":{"limit":0,"failcnt":0},"kernel":{"limit":0,"failcnt":0},"kernelTCP":{"limit":0,"failcnt":0},"raw":{"rss":4096,"cache":8192,"anon":12288}},"pids":{"current":1,"limit":100},"blkio":{"ioServiceBytesRecursive":[{"major":8,"minor":0,"op":"Read","value":10},{"major":8,"minor":0,"op":"Write","value":20}],"ioServicedRecursive":[{"major":8,"minor":0,"op":"Read","value":1}]},"hugetlb":{"2MB":{"failcnt":0}},"intel_rdt":{},"network_interfaces":null}}"#;

    #[test]
    fn v1_metrics() {
        let s = parse(RUNC.as_bytes()).unwrap();
        let m = to_v1(&s);
        assert_eq!(m.cpu.usage.total, 5000);
        assert_eq!(m.cpu.usage.per_cpu, vec![3000, 2000]);
        assert_eq!(m.memory.usage.usage, 1048576);
        assert_eq!(m.memory.cache, 8192);
        assert_eq!(m.memory.rss, 4096);
        assert_eq!(m.pids.limit, 100);
        assert_eq!(m.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
        let a = to_any(&s, false);
        assert_eq!(a.type_url, "io.containerd.cgroups.v1.Metrics");
        assert_eq!(v1::Metrics::parse_from_bytes(&a.value).unwrap(), m);
    }

    #[test]
    fn v2_metrics() {
        let s = parse(RUNC.as_bytes()).unwrap();
        let m = to_v2(&s);
        assert_eq!(
            (m.cpu.usage_usec, m.cpu.user_usec, m.cpu.system_usec),
            (5, 4, 1)
        );
        assert_eq!(m.memory.usage, 1048576);
        assert_eq!(m.memory.anon, 12288);
        assert_eq!(m.io.usage.len(), 1);
        assert_eq!(
            (
                m.io.usage[0].rbytes,
                m.io.usage[0].wbytes,
                m.io.usage[0].rios
            ),
            (10, 20, 1)
        );
        assert_eq!(
            to_any(&s, true).type_url,
            "io.containerd.cgroups.v2.Metrics"
        );
    }

    #[test]
    fn errors() {
        assert!(parse(b"").is_err());
        assert!(parse(b"not json").is_err());
    }
}
