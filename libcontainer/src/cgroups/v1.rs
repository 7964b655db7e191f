//! Resources on cgroup v1 (and the v1 side of hybrid hosts): each `linux.resources` field to
//! its controller's files. A field whose controller is not mounted here is a clear error.

use std::io::ErrorKind;
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxResources};

use super::{devices, CgroupError, CgroupPaths};

struct V1<'a>(&'a CgroupPaths);

impl V1<'_> {
    fn dir(&self, controller: &str, field: &str) -> Result<&Path, CgroupError> {
        self.0.dir_of(controller).ok_or_else(|| {
            CgroupError::Other(format!(
                "linux.resources.{field}: the {controller} controller is not mounted on this host"
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
        let p = self.dir(controller, field)?.join(file);
        std::fs::write(&p, value).map_err(|e| CgroupError::io("write", &p, e))
    }
}

pub fn apply(
    paths: &CgroupPaths,
    r: &LinuxResources,
    devs: &[LinuxDevice],
) -> Result<(), CgroupError> {
    let v = V1(paths);
    // Only when rules are given: an update without them must not reset the container's.
    let any_rules = r.devices().as_ref().is_some_and(|d| !d.is_empty()) || !devs.is_empty();
    if any_rules {
        let rules = devices::rules(r.devices().as_deref().unwrap_or_default(), devs);
        devices::apply_v1(v.dir("devices", "devices")?, &rules)?;
    }
    if let Some(m) = r.memory() {
        memory(&v, m)?;
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            v.write("cpu", "cpu.shares", "cpu.shares", &s.to_string())?;
        }
        if let Some(p) = c.period() {
            v.write("cpu", "cpu.period", "cpu.cfs_period_us", &p.to_string())?;
        }
        if let Some(q) = c.quota() {
            v.write("cpu", "cpu.quota", "cpu.cfs_quota_us", &q.to_string())?;
        }
        if let Some(b) = c.burst() {
            v.write("cpu", "cpu.burst", "cpu.cfs_burst_us", &b.to_string())?;
        }
        if let Some(p) = c.realtime_period() {
            v.write(
                "cpu",
                "cpu.realtimePeriod",
                "cpu.rt_period_us",
                &p.to_string(),
            )?;
        }
        if let Some(p) = c.realtime_runtime() {
            v.write(
                "cpu",
                "cpu.realtimeRuntime",
                "cpu.rt_runtime_us",
                &p.to_string(),
            )?;
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
    }
    if let Some(p) = r.pids() {
        let val = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        v.write("pids", "pids.limit", "pids.max", &val)?;
    }
    if let Some(b) = r.block_io() {
        if let Some(w) = b.weight() {
            blkio_weight(&v, "blkio.weight", "", w)?;
        }
        if let Some(w) = b.leaf_weight() {
            v.write(
                "blkio",
                "blockIO.leafWeight",
                "blkio.leaf_weight",
                &w.to_string(),
            )?;
        }
        for d in b.weight_device().as_deref().unwrap_or_default() {
            if let Some(w) = d.weight() {
                blkio_weight(
                    &v,
                    "blkio.weight_device",
                    &format!("{}:{} ", d.major(), d.minor()),
                    w,
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
            let p = dir.join(format!("hugetlb.{size}.max"));
            std::fs::write(&p, h.limit().to_string())
                .map_err(|e| CgroupError::io("write", &p, e))?;
        } else {
            return Err(CgroupError::Other(format!(
                "linux.resources.hugepageLimits: no hugetlb.{size} files for this container: hugetlb is \
                 neither a v1 hierarchy here nor enabled for child cgroups on the cgroup2 mount (and \
                 berth never changes cgroups it did not create)"
            )));
        }
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
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

/// blkio weights: the CFQ files, or BFQ's (which take the same values) on newer kernels.
fn blkio_weight(v: &V1, field: &str, prefix: &str, w: u16) -> Result<(), CgroupError> {
    let dir = v.dir("blkio", field)?;
    let base = field.trim_start_matches("blkio.");
    for file in [format!("blkio.{base}"), format!("blkio.bfq.{base}")] {
        let p = dir.join(&file);
        if p.exists() {
            return std::fs::write(&p, format!("{prefix}{w}"))
                .map_err(|e| CgroupError::io("write", &p, e));
        }
    }
    Err(CgroupError::Other(format!(
        "linux.resources.blockIO: {field}: no weight file in {} (the I/O scheduler has no weights)",
        dir.display()
    )))
}

fn memory(v: &V1, m: &oci_spec::runtime::LinuxMemory) -> Result<(), CgroupError> {
    // memsw must stay >= the limit: when raising, swap goes first; when lowering, limit first.
    let limit = m.limit().map(|l| ("memory.limit_in_bytes", l));
    let swap = m.swap().map(|s| ("memory.memsw.limit_in_bytes", s));
    let mut writes: Vec<(&str, i64)> = limit.into_iter().chain(swap).collect();
    if let (Some((_, l)), Some((_, s))) = (limit, swap) {
        let cur = std::fs::read_to_string(v.dir("memory", "memory")?.join("memory.limit_in_bytes"))
            .unwrap_or_default();
        let cur: i64 = cur.trim().parse().unwrap_or(i64::MAX);
        if l > cur || l < 0 {
            writes.reverse();
        }
        if s >= 0 && l >= 0 && s < l {
            return Err(CgroupError::Other(format!(
                "linux.resources.memory.swap: {s} is below memory.limit {l} (swap is memory+swap)"
            )));
        }
    }
    for (file, val) in writes {
        match v.write("memory", "memory", file, &val.to_string()) {
            // Without swap accounting there is no memsw file; runc ignores swap then.
            Err(CgroupError::Io { err, .. })
                if err.kind() == ErrorKind::NotFound && file.contains("memsw") => {}
            r => r?,
        }
    }
    if let Some(r) = m.reservation() {
        v.write(
            "memory",
            "memory.reservation",
            "memory.soft_limit_in_bytes",
            &r.to_string(),
        )?;
    }
    if let Some(s) = m.swappiness() {
        v.write(
            "memory",
            "memory.swappiness",
            "memory.swappiness",
            &s.to_string(),
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
    if let Some(k) = m.kernel_tcp() {
        v.write(
            "memory",
            "memory.kernelTCP",
            "memory.kmem.tcp.limit_in_bytes",
            &k.to_string(),
        )?;
    }
    // memory.kernel is deprecated and ignored by runc on current kernels; so is it here.
    Ok(())
}
