//! Resources on cgroup v1 (and the v1 side of hybrid hosts): each `linux.resources` field to
//! its controller's files. A field whose controller is not mounted here is a clear error.

use std::io::ErrorKind;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::{devices, CgroupError, CgroupPaths};

struct V1<'a>(&'a CgroupPaths);

impl V1<'_> {
    fn dir(&self, controller: &str, field: &str) -> Result<&Path, CgroupError> {
        self.0.dir_of(controller).ok_or_else(|| {
            CgroupError::Other(format!(
                "linux.resources.{field}: no {controller} cgroup: the controller is not mounted on this host, or (rootless, without cgroupsPath) its hierarchy is not writable by this user"
            ))
        })
    }

    fn write(
        &self,
        controller: &str,
        field: &str,
        file: &str,
        value: &str,
    ) -> Result<(), CgroupError> {
        super::write_file(&self.dir(controller, field)?.join(file), value)
    }
}

pub fn apply(
    paths: &CgroupPaths,
    r: &LinuxResources,
    devs: Option<&[oci_spec::runtime::LinuxDevice]>,
) -> Result<(), CgroupError> {
    let v = V1(paths);
    if let Some(listed) = devs {
        let rules = devices::rules(r.devices().as_deref().unwrap_or_default(), listed);
        devices::apply_v1(v.dir("devices", "devices")?, &rules)?;
    }
    if let Some(m) = r.memory() {
        memory(&v, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(&v, c)?;
    }
    // runc: 0 is unset; a negative limit is "max".
    if let Some(p) = r.pids().filter(|p| p.limit() != 0) {
        let val = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        v.write("pids", "pids.limit", "pids.max", &val)?;
    }
    if let Some(b) = r.block_io() {
        blkio(&v, b)?;
    }
    for h in r.hugepage_limits().as_deref().unwrap_or_default() {
        // v1 names the file limit_in_bytes; on hybrid hosts hugetlb may live on cgroup2 only.
        let size = h.page_size();
        if paths.dir_of("hugetlb").is_some() {
            v.write(
                "hugetlb",
                "hugepageLimits",
                &format!("hugetlb.{size}.limit_in_bytes"),
                &h.limit().to_string(),
            )?;
        } else if let Some(dir) = paths
            .unified()
            .filter(|d| d.join(format!("hugetlb.{size}.max")).exists())
        {
            super::write_file(
                &dir.join(format!("hugetlb.{size}.max")),
                &h.limit().to_string(),
            )?;
        } else {
            return Err(CgroupError::Other(format!(
                "linux.resources.hugepageLimits: no hugetlb.{size} files for this container: hugetlb is \
                 neither a v1 hierarchy here nor enabled for child cgroups on the cgroup2 mount (and \
                 berth never changes cgroups it did not create)"
            )));
        }
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id().filter(|id| *id != 0) {
            v.write(
                "net_cls",
                "network.classID",
                "net_cls.classid",
                &id.to_string(),
            )?;
        }
        for p in n.priorities().as_deref().unwrap_or_default() {
            v.write(
                "net_prio",
                "network.priorities",
                "net_prio.ifpriomap",
                &format!("{} {}", p.name(), p.priority()),
            )?;
        }
    }
    for line in super::rdma_lines(r) {
        v.write("rdma", "rdma", "rdma.max", &line)?;
    }
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::Other(
            "linux.resources.unified: only for cgroup v2 hosts (this one uses cgroup v1)".into(),
        ));
    }
    Ok(())
}

/// The errno of a failed cgroup file write.
fn errno(e: &CgroupError) -> Option<i32> {
    match e {
        CgroupError::Io { err, .. } => err.raw_os_error(),
        _ => None,
    }
}

/// cpu: runc's fs/cpu.go, field by field. 0 is unset for shares, period, quota and the
/// realtime pair; burst and idle are written when present (0 included).
fn cpu(v: &V1, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        v.write("cpu", "cpu.shares", "cpu.shares", &s.to_string())?;
        // The kernel clamps out-of-range shares silently; runc reads them back and refuses.
        let p = v.dir("cpu", "cpu.shares")?.join("cpu.shares");
        let got: u64 = std::fs::read_to_string(&p)
            .map_err(|e| CgroupError::io("read", &p, e))?
            .trim()
            .parse()
            .unwrap_or(s);
        if s > got {
            return Err(CgroupError::Other(format!(
                "linux.resources.cpu.shares: {s}: the maximum allowed cpu-shares is {got}"
            )));
        } else if s < got {
            return Err(CgroupError::Other(format!(
                "linux.resources.cpu.shares: {s}: the minimum allowed cpu-shares is {got}"
            )));
        }
    }
    let quota = c.quota().filter(|q| *q != 0);
    let period = c.period().filter(|p| *p != 0).map(|p| p.to_string());
    let burst = c.burst().map(|b| b.to_string());
    // A new period (or burst) may be refused (EINVAL) while the old quota is in force, e.g.
    // old_quota/new_period above the parent's limit: when a quota follows, runc retries it
    // after the quota.
    let mut retry: Vec<(&str, &str, String)> = Vec::new();
    if let Some(p) = period {
        match v.write("cpu", "cpu.period", "cpu.cfs_period_us", &p) {
            Err(e) if errno(&e) == Some(libc::EINVAL) && quota.is_some() => {
                retry.push(("cpu.period", "cpu.cfs_period_us", p))
            }
            r => r?,
        }
    }
    if let Some(b) = burst {
        match v.write("cpu", "cpu.burst", "cpu.cfs_burst_us", &b) {
            Err(e) if errno(&e) == Some(libc::EINVAL) && quota.is_some() => {
                retry.insert(0, ("cpu.burst", "cpu.cfs_burst_us", b))
            }
            r => r?,
        }
    }
    if let Some(q) = quota {
        v.write("cpu", "cpu.quota", "cpu.cfs_quota_us", &q.to_string())?;
        for (field, file, val) in retry {
            v.write("cpu", field, file, &val)?;
        }
    }
    // The realtime pair, in the same way (runc's SetRtSched).
    let rt_runtime = c.realtime_runtime().filter(|r| *r != 0);
    let mut rt_retry = None;
    if let Some(p) = c
        .realtime_period()
        .filter(|p| *p != 0)
        .map(|p| p.to_string())
    {
        match v.write("cpu", "cpu.realtimePeriod", "cpu.rt_period_us", &p) {
            Err(e) if errno(&e) == Some(libc::EINVAL) && rt_runtime.is_some() => rt_retry = Some(p),
            r => r?,
        }
    }
    if let Some(r) = rt_runtime {
        v.write(
            "cpu",
            "cpu.realtimeRuntime",
            "cpu.rt_runtime_us",
            &r.to_string(),
        )?;
        if let Some(p) = rt_retry {
            v.write("cpu", "cpu.realtimePeriod", "cpu.rt_period_us", &p)?;
        }
    }
    if let Some(i) = c.idle() {
        v.write("cpu", "cpu.idle", "cpu.idle", &i.to_string())?;
    }
    if let Some(s) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        v.write("cpuset", "cpu.cpus", "cpuset.cpus", s)?;
    }
    if let Some(s) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        v.write("cpuset", "cpu.mems", "cpuset.mems", s)?;
    }
    Ok(())
}

/// blkio: runc's fs/blkio.go. A weight or leaf weight of 0 is unset; the weight files are
/// CFQ's where they exist, else BFQ's (which take the same values).
fn blkio(v: &V1, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let files = |field: &str| -> Result<(&'static str, &'static str), CgroupError> {
        let dir = v.dir("blkio", field)?;
        if dir.join("blkio.weight").exists() {
            Ok(("blkio.weight", "blkio.weight_device"))
        } else if dir.join("blkio.bfq.weight").exists() {
            Ok(("blkio.bfq.weight", "blkio.bfq.weight_device"))
        } else {
            Err(CgroupError::Other(format!(
                "linux.resources.{field}: no weight file in {} (the I/O scheduler has no weights)",
                dir.display()
            )))
        }
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        let (file, _) = files("blockIO.weight")?;
        v.write("blkio", "blockIO.weight", file, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        v.write(
            "blkio",
            "blockIO.leafWeight",
            "blkio.leaf_weight",
            &w.to_string(),
        )?;
    }
    for d in b.weight_device().as_deref().unwrap_or_default() {
        let dev = format!("{}:{}", d.major(), d.minor());
        if let Some(w) = d.weight().filter(|w| *w != 0) {
            let (_, file) = files("blockIO.weightDevice")?;
            v.write("blkio", "blockIO.weightDevice", file, &format!("{dev} {w}"))?;
        }
        if let Some(w) = d.leaf_weight().filter(|w| *w != 0) {
            v.write(
                "blkio",
                "blockIO.weightDevice.leafWeight",
                "blkio.leaf_weight_device",
                &format!("{dev} {w}"),
            )?;
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (file, list) in throttles {
        for d in list.as_deref().unwrap_or_default() {
            v.write(
                "blkio",
                "blockIO",
                file,
                &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

/// memory: runc's fs/memory.go. 0 is unset for limit, swap and reservation; a limit of -1
/// without a swap value means swap -1 too; swappiness -1 (u64::MAX as Go's cast gives it) is
/// unset; kernel and kernelTCP are ignored, as runc 1.2+ does (deprecated by the kernel).
fn memory(v: &V1, m: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    let dir = || v.dir("memory", "memory");
    if limit == -1 && swap == 0 && dir()?.join(MEMSW).exists() {
        swap = -1;
    }
    if limit != 0 && swap != 0 {
        if swap > 0 && limit > 0 && swap < limit {
            return Err(CgroupError::Other(format!(
                "linux.resources.memory.swap: {swap} is below memory.limit {limit} (swap is memory+swap)"
            )));
        }
        // memsw must stay >= the limit at every step: the order depends on the new values
        // against the current limit (runc's setMemoryAndSwap).
        let p = dir()?.join(LIMIT);
        let cur: u64 = std::fs::read_to_string(&p)
            .map_err(|e| CgroupError::io("read", &p, e))?
            .trim()
            .parse()
            .unwrap_or(u64::MAX);
        if swap == -1 || (cur as i128) < i128::from(swap) {
            set_swap(v, swap)?;
            set_memory(v, limit)?;
        } else {
            set_memory(v, limit)?;
            set_swap(v, swap)?;
        }
    } else {
        set_memory(v, limit)?;
        set_swap(v, swap)?;
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        v.write(
            "memory",
            "memory.reservation",
            "memory.soft_limit_in_bytes",
            &r.to_string(),
        )?;
    }
    if m.disable_oom_killer() == Some(true) {
        v.write(
            "memory",
            "memory.disableOOMKiller",
            "memory.oom_control",
            "1",
        )?;
    }
    match m.swappiness() {
        None => {}
        Some(s) if s as i64 == -1 => {}
        Some(s) if s <= 100 => v.write(
            "memory",
            "memory.swappiness",
            "memory.swappiness",
            &s.to_string(),
        )?,
        Some(s) => {
            return Err(CgroupError::Other(format!(
                "linux.resources.memory.swappiness: invalid value {s} (valid range is 0-100)"
            )))
        }
    }
    Ok(())
}

fn set_memory(v: &V1, limit: i64) -> Result<(), CgroupError> {
    if limit == 0 {
        return Ok(());
    }
    match v.write("memory", "memory.limit", LIMIT, &limit.to_string()) {
        // EBUSY: below the current usage. Say so, as runc does.
        Err(e) if errno(&e) == Some(libc::EBUSY) => {
            let dir = v.dir("memory", "memory.limit")?;
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default()
            };
            Err(CgroupError::Other(format!(
                "linux.resources.memory.limit: unable to set memory limit to {limit} (current usage: {}, peak usage: {})",
                read("memory.usage_in_bytes"),
                read("memory.max_usage_in_bytes")
            )))
        }
        r => r,
    }
}

fn set_swap(v: &V1, swap: i64) -> Result<(), CgroupError> {
    if swap == 0 {
        return Ok(());
    }
    match v.write("memory", "memory.swap", MEMSW, &swap.to_string()) {
        // Without swap accounting there is no memsw file; the swap value is moot then.
        Err(CgroupError::Io { err, .. }) if err.kind() == ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// The zero and -1 rules against plain directories (no root needed): the files the rules may
/// write exist, empty (apply never creates one); those written are what is listed.
#[cfg(test)]
mod tests {
    use super::*;

    fn apply_json(name: &str, json: &str) -> (Result<(), CgroupError>, Vec<String>) {
        let root = std::env::temp_dir().join(format!("berth-v1-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut paths = CgroupPaths::default();
        for c in [
            "memory",
            "cpu,cpuacct",
            "cpuset",
            "pids",
            "blkio",
            "net_cls,net_prio",
        ] {
            let d = root.join(c);
            std::fs::create_dir_all(&d).unwrap();
            paths.dirs.insert(c.to_string(), d);
        }
        for f in [
            "memory/memory.limit_in_bytes",
            "memory/memory.soft_limit_in_bytes",
            "memory/memory.swappiness",
            "cpu,cpuacct/cpu.shares",
            "cpu,cpuacct/cpu.cfs_quota_us",
            "cpu,cpuacct/cpu.cfs_period_us",
            "pids/pids.max",
        ] {
            std::fs::write(root.join(f), "").unwrap();
        }
        // A weight file, as CFQ or BFQ would have.
        std::fs::write(root.join("blkio/blkio.bfq.weight"), "100").unwrap();
        let r: LinuxResources = serde_json::from_str(json).unwrap();
        let res = apply(&paths, &r, None);
        let mut out = Vec::new();
        for (c, d) in &paths.dirs {
            for e in std::fs::read_dir(d).unwrap() {
                let e = e.unwrap();
                let v = std::fs::read_to_string(e.path()).unwrap();
                if !v.is_empty() {
                    out.push(format!("{c}/{}={v}", e.file_name().to_string_lossy()));
                }
            }
        }
        out.sort();
        std::fs::remove_dir_all(&root).unwrap();
        (res, out)
    }

    #[test]
    fn docker_zeros_write_nothing() {
        let (r, f) = apply_json("docker", super::super::v2::zero_tests::DOCKER_20_10);
        r.unwrap();
        assert_eq!(f, ["blkio/blkio.bfq.weight=100"]);
    }

    #[test]
    fn values_and_minus_one() {
        let (r, f) = apply_json(
            "values",
            r#"{"memory": {"limit": -1, "reservation": 1000, "swappiness": 18446744073709551615},
                "cpu": {"shares": 512, "quota": -1},
                "pids": {"limit": -1},
                "blockIO": {"weight": 300}}"#,
        );
        r.unwrap();
        assert_eq!(
            f,
            [
                "blkio/blkio.bfq.weight=300",
                "cpu,cpuacct/cpu.cfs_quota_us=-1",
                "cpu,cpuacct/cpu.shares=512",
                "memory/memory.limit_in_bytes=-1",
                "memory/memory.soft_limit_in_bytes=1000",
                "pids/pids.max=max",
            ]
        );
        let (r, _) = apply_json("swappiness", r#"{"memory": {"swappiness": 101}}"#);
        assert!(r.is_err());
    }
}
