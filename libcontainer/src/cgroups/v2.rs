//! Resources on cgroup v2 (the unified hierarchy): runc's mapping of `linux.resources` to v2
//! files, including its conversions from v1 values, and device rules as an eBPF program.

use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxResources};

use super::{bpf, devices, CgroupError};

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let p = dir.join(file);
    std::fs::write(&p, value).map_err(|e| CgroupError::io("write", &p, e))
}

/// Enable every available controller for the children of each level from the hierarchy's
/// root down to the container's parent, so that its own files exist.
pub fn enable_controllers(root: &Path, leaf: &Path) -> Result<(), CgroupError> {
    let Ok(rel) = leaf.strip_prefix(root) else {
        return Ok(());
    };
    let mut dir = root.to_path_buf();
    for c in rel.components() {
        let p = dir.join("cgroup.controllers");
        let ctrls = std::fs::read_to_string(&p).map_err(|e| CgroupError::io("read", &p, e))?;
        let want: String = ctrls.split_whitespace().map(|c| format!("+{c} ")).collect();
        if !want.is_empty() {
            write(&dir, "cgroup.subtree_control", want.trim_end())?;
        }
        dir.push(c);
    }
    Ok(())
}

/// runc's conversion of cpu shares (2..262144) to cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

/// runc's conversion of a blkio weight (10..1000) to io.weight (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10) * 9999) / 990
}

fn limit(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

pub fn apply(dir: &Path, r: &LinuxResources, devs: &[LinuxDevice]) -> Result<(), CgroupError> {
    let rules = devices::rules(r.devices().as_deref().unwrap_or_default(), devs);
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) || !devs.is_empty() {
        let fd = nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| CgroupError::io("open", dir, e.into()))?;
        bpf::attach(std::os::fd::AsFd::as_fd(&fd), &rules)?;
    }
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            write(dir, "memory.max", &limit(l))?;
        }
        if let Some(res) = m.reservation() {
            write(dir, "memory.low", &limit(res))?;
        }
        if let Some(swap) = m.swap() {
            // v1's swap is memory+swap; v2's swap.max is the swap alone.
            let v = match (swap, m.limit()) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l >= 0 => {
                    if s < l {
                        return Err(CgroupError::Other(format!(
                            "linux.resources.memory.swap: {s} is below memory.limit {l} (swap is memory+swap)"
                        )));
                    }
                    (s - l).to_string()
                }
                (s, _) => s.to_string(),
            };
            write(dir, "memory.swap.max", &v)?;
        }
        if m.swappiness().is_some()
            || m.disable_oom_killer() == Some(true)
            || m.kernel().is_some()
            || m.kernel_tcp().is_some()
        {
            return Err(CgroupError::Unsupported(
                "memory.swappiness/disableOOMKiller/kernel/kernelTCP (cgroup v1 only)".into(),
            ));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s > 0) {
            write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
        }
        if c.quota().is_some() || c.period().is_some() {
            let q = c
                .quota()
                .filter(|q| *q > 0)
                .map_or("max".to_string(), |q| q.to_string());
            let p = c.period().unwrap_or(100_000);
            write(dir, "cpu.max", &format!("{q} {p}"))?;
        }
        if let Some(b) = c.burst() {
            write(dir, "cpu.max.burst", &b.to_string())?;
        }
        if let Some(i) = c.idle() {
            write(dir, "cpu.idle", &i.to_string())?;
        }
        if let Some(s) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            write(dir, "cpuset.cpus", s)?;
        }
        if let Some(s) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            write(dir, "cpuset.mems", s)?;
        }
        if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
            return Err(CgroupError::Unsupported(
                "cpu.realtimePeriod/realtimeRuntime (cgroup v1 only)".into(),
            ));
        }
    }
    if let Some(p) = r.pids() {
        write(
            dir,
            "pids.max",
            &if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            },
        )?;
    }
    if let Some(b) = r.block_io() {
        if let Some(w) = b.weight() {
            // With BFQ the weight keeps its v1 range (runc writes it there unconverted).
            if dir.join("io.bfq.weight").exists() {
                write(dir, "io.bfq.weight", &w.to_string())?;
            } else {
                write(
                    dir,
                    "io.weight",
                    &format!("default {}", blkio_to_io_weight(w)),
                )?;
            }
        }
        for d in b.weight_device().as_deref().unwrap_or_default() {
            if let Some(w) = d.weight() {
                write(
                    dir,
                    "io.weight",
                    &format!("{}:{} {}", d.major(), d.minor(), blkio_to_io_weight(w)),
                )?;
            }
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in throttles {
            for d in list.as_deref().unwrap_or_default() {
                write(
                    dir,
                    "io.max",
                    &format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                )?;
            }
        }
    }
    for h in r.hugepage_limits().as_deref().unwrap_or_default() {
        write(
            dir,
            &format!("hugetlb.{}.max", h.page_size()),
            &h.limit().to_string(),
        )?;
    }
    for line in super::rdma_lines(r) {
        write(dir, "rdma.max", &line)?;
    }
    if r.network().is_some() {
        return Err(CgroupError::Unsupported(
            "network (net_cls/net_prio are cgroup v1 only)".into(),
        ));
    }
    for (key, value) in r
        .unified()
        .as_ref()
        .map(|m| m.iter().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if key.contains('/') || key.starts_with('.') || !key.contains('.') {
            return Err(CgroupError::Other(format!(
                "linux.resources.unified: {key:?} is not a cgroup file name"
            )));
        }
        let p = dir.join(key);
        if !p.exists() {
            return Err(CgroupError::Other(format!(
                "linux.resources.unified: {key:?}: no such file in {} (is its controller enabled?)",
                dir.display()
            )));
        }
        write(dir, key, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_conversions() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(limit(-1), "max");
    }
}
