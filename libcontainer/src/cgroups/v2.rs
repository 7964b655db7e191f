//! Resources on cgroup v2 (the unified hierarchy): runc's mapping of `linux.resources` to v2
//! files, including its conversions from v1 values, and device rules as an eBPF program.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::emulator::Emulator;
use super::{bpf, devices, CgroupError};

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    super::write_file(&dir.join(file), value)
}

/// A controller's file is missing when the controller is not enabled for the cgroup
/// (enable_controllers leaves levels it may not write, as runc does): say so, but only when
/// the cgroup exists and its cgroup.controllers lacks that controller (a file newer than the
/// kernel, a page size it lacks or a removed cgroup keep the plain error).
fn explain_missing(e: CgroupError) -> CgroupError {
    let CgroupError::Io {
        ref path, ref err, ..
    } = e
    else {
        return e;
    };
    if err.kind() != std::io::ErrorKind::NotFound {
        return e;
    }
    let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
        return e;
    };
    let file = file.to_string_lossy();
    let Some(controller) = file.split('.').next().filter(|c| *c != "cgroup") else {
        return e;
    };
    let Ok(enabled) = std::fs::read_to_string(dir.join("cgroup.controllers")) else {
        return e;
    };
    if enabled.split_whitespace().any(|c| c == controller) {
        return e;
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    CgroupError::Other(format!(
        "{}: no such file: the {controller} controller is not enabled for this cgroup (missing from cgroup.subtree_control of {}, or not in this kernel)",
        path.display(),
        parent.display()
    ))
}

/// Enable every available controller for the children of each level from the hierarchy's
/// root down to the container's parent, so that its own files exist. As runc, a level that
/// refuses (a rootless caller below the root of its delegated subtree, a controller that a
/// level's processes keep from being enabled) is tried controller by controller and then
/// left as it is: a limit that needs a missing controller fails when it is written.
pub fn enable_controllers(root: &Path, leaf: &Path) -> Result<(), CgroupError> {
    let Ok(rel) = leaf.strip_prefix(root) else {
        return Ok(());
    };
    let mut dir = root.to_path_buf();
    for c in rel.components() {
        let p = dir.join("cgroup.controllers");
        let ctrls = std::fs::read_to_string(&p).map_err(|e| CgroupError::io("read", &p, e))?;
        let want: Vec<String> = ctrls.split_whitespace().map(|c| format!("+{c}")).collect();
        if !want.is_empty() && write(&dir, "cgroup.subtree_control", &want.join(" ")).is_err() {
            for one in &want {
                let _ = write(&dir, "cgroup.subtree_control", one);
            }
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

pub fn apply(
    dir: &Path,
    r: &LinuxResources,
    devs: Option<&[oci_spec::runtime::LinuxDevice]>,
) -> Result<(), CgroupError> {
    apply_all(dir, r, devs).map_err(explain_missing)
}

fn apply_all(
    dir: &Path,
    r: &LinuxResources,
    devs: Option<&[oci_spec::runtime::LinuxDevice]>,
) -> Result<(), CgroupError> {
    if let Some(listed) = devs {
        // Through the emulator, as runc's DeviceFilter: v2 refuses what v1 would.
        let rules = Emulator::from_rules(&devices::rules(
            r.devices().as_deref().unwrap_or_default(),
            listed,
        ))?
        .rules();
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
        memory(dir, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(dir, c)?;
    }
    // runc: 0 is unset; a negative limit is "max".
    if let Some(p) = r.pids().filter(|p| p.limit() != 0) {
        write(dir, "pids.max", &limit(p.limit()))?;
    }
    if let Some(b) = r.block_io() {
        io(dir, b)?;
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
    // net_cls/net_prio have no v2 files: only an empty (or zero) network section is accepted.
    if r.network().as_ref().is_some_and(|n| {
        n.class_id().is_some_and(|id| id != 0)
            || n.priorities().as_ref().is_some_and(|p| !p.is_empty())
    }) {
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

/// runc's numToStr for the .max/.low/.high files: 0 is unset (`None`), -1 is "max".
fn num(v: i64) -> Option<String> {
    match v {
        0 => None,
        -1 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

/// runc's ConvertMemorySwapToCgroupV2Value: v1's memory+swap (`swap`) to v2's swap alone.
/// 0 is unset, -1 unlimited; a limit of -1 without swap means swap -1 too.
pub fn swap_to_v2(swap: i64, memory: i64) -> Result<i64, CgroupError> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    let err = |m: String| {
        Err(CgroupError::Other(format!(
            "linux.resources.memory.swap: {m}"
        )))
    };
    if memory == 0 || memory == -1 {
        return err(format!(
            "{swap}: unable to set swap limit without memory limit"
        ));
    }
    if memory < 0 {
        return err(format!("invalid memory value: {memory}"));
    }
    if swap < memory {
        return err(format!(
            "{swap} is below memory.limit {memory}: memory+swap limit should be >= memory limit"
        ));
    }
    Ok(swap - memory)
}

/// memory: runc's fs2/memory.go, field by field.
fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    // v1-only fields (swappiness, disableOOMKiller, kernel, kernelTCP) have no v2 file: runc's
    // fs2 ignores them whatever their value, and so does berth (docker and podman send them
    // on any host).
    let limit = m.limit().unwrap_or(0);
    let swap = m.swap().unwrap_or(0);
    let reservation = m.reservation().unwrap_or(0);
    if limit == 0 && swap == 0 && reservation == 0 {
        return Ok(());
    }
    let s = swap_to_v2(swap, limit)?;
    let mut swap_str = num(s);
    if swap_str.is_none() && s == 0 && swap > 0 {
        // memory and memory+swap the same: no swap.
        swap_str = Some("0".into());
    }
    if let Some(v) = swap_str {
        match write(dir, "memory.swap.max", &v) {
            // Without swap accounting, "no limit" and "no swap" are what there is anyway.
            Err(CgroupError::Io { err, .. })
                if err.kind() == std::io::ErrorKind::NotFound && (v == "max" || v == "0") => {}
            r => r?,
        }
    }
    if let Some(v) = num(limit) {
        write(dir, "memory.max", &v)?;
    }
    if let Some(v) = num(reservation) {
        write(dir, "memory.low", &v)?;
    }
    Ok(())
}

/// cpu: runc's fs2/cpu.go. Shares 0 (weight 0), quota 0 and period 0 are unset; a quota
/// without a period keeps the current period.
fn cpu(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(w) = c.shares().map(shares_to_weight).filter(|w| *w != 0) {
        write(dir, "cpu.weight", &w.to_string())?;
    }
    if let Some(i) = c.idle() {
        write(dir, "cpu.idle", &i.to_string())?;
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    let mut burst_retry = None;
    if let Some(b) = c.burst() {
        // A larger burst may be refused while the old quota is in force: retry after it.
        match write(dir, "cpu.max.burst", &b.to_string()) {
            Err(CgroupError::Io { err, .. })
                if err.raw_os_error() == Some(libc::EINVAL) && quota != 0 =>
            {
                burst_retry = Some(b)
            }
            r => r?,
        }
    }
    if quota != 0 || period != 0 {
        let mut v = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        if period != 0 {
            v.push_str(&format!(" {period}"));
        }
        write(dir, "cpu.max", &v)?;
        if let Some(b) = burst_retry {
            write(dir, "cpu.max.burst", &b.to_string())?;
        }
    }
    if let Some(s) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write(dir, "cpuset.cpus", s)?;
    }
    if let Some(s) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write(dir, "cpuset.mems", s)?;
    }
    if c.realtime_period().is_some_and(|p| p != 0) || c.realtime_runtime().is_some_and(|r| r != 0) {
        return Err(CgroupError::Unsupported(
            "cpu.realtimePeriod/realtimeRuntime (cgroup v1 only)".into(),
        ));
    }
    Ok(())
}

/// io: runc's fs2/io.go. A weight of 0 is unset; with BFQ the weight keeps its v1 range
/// (io.bfq.weight, unconverted), else it is converted for io.weight. leafWeight has no v2
/// file and is ignored, as in runc.
fn io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let weight = b.weight().filter(|w| *w != 0);
    let devs: Vec<_> = b
        .weight_device()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|d| {
            d.weight()
                .filter(|w| *w != 0)
                .map(|w| (format!("{}:{}", d.major(), d.minor()), w))
        })
        .collect();
    let bfq = (weight.is_some() || !devs.is_empty()) && dir.join("io.bfq.weight").exists();
    if let Some(w) = weight {
        if bfq {
            write(dir, "io.bfq.weight", &w.to_string())?;
        } else {
            write(
                dir,
                "io.weight",
                &format!("default {}", blkio_to_io_weight(w)),
            )?;
        }
    }
    // runc writes device weights to BFQ only; without BFQ berth converts them for io.weight.
    for (dev, w) in devs {
        if bfq {
            write(dir, "io.bfq.weight", &format!("{dev} {w}"))?;
        } else {
            write(
                dir,
                "io.weight",
                &format!("{dev} {}", blkio_to_io_weight(w)),
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A level that refuses cgroup.subtree_control (here: it is a directory, so every write
    /// fails) is left as it is and the levels below still get their controllers, as runc's
    /// rootless caller in a delegated subtree needs; a limit whose controller is then missing
    /// names it.
    #[test]
    fn a_level_that_refuses_controllers_is_skipped() {
        let root = std::env::temp_dir().join(format!("berth-v2-enable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let own = root.join("delegated");
        std::fs::create_dir_all(root.join("cgroup.subtree_control")).unwrap();
        std::fs::create_dir_all(own.join("ctr")).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(own.join("cgroup.controllers"), "memory pids\n").unwrap();
        std::fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        enable_controllers(&root, &own.join("ctr")).unwrap();
        assert_eq!(
            std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
        // The cgroup has pids (its parent enables it) but not memory.
        std::fs::write(own.join("ctr/cgroup.controllers"), "pids\n").unwrap();
        let e =
            explain_missing(write(&own.join("ctr"), "memory.max", "1").unwrap_err()).to_string();
        assert!(
            e.contains("the memory controller is not enabled for this cgroup")
                && e.contains("cgroup.subtree_control of")
                && e.contains("delegated"),
            "{e}"
        );
        // Enabled, yet missing (a file newer than the kernel): the plain error.
        let e = explain_missing(write(&own.join("ctr"), "pids.peak", "1").unwrap_err());
        assert!(matches!(e, CgroupError::Io { .. }), "{e}");
        // Enabled, yet missing (a file newer than the kernel): the plain error.
        let e = explain_missing(write(&own.join("ctr"), "pids.peak", "1").unwrap_err());
        assert!(matches!(e, CgroupError::Io { .. }), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

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

/// The zero and -1 rules against a plain directory (no root needed): the files the rules may
/// write exist, empty (apply never creates one); those written are what is listed.
#[cfg(test)]
pub(crate) mod zero_tests {
    use super::*;

    pub(crate) const DOCKER_20_10: &str = r#"{
        "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0,
                   "disableOOMKiller": false},
        "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                "realtimePeriod": 0, "cpus": "", "mems": ""},
        "pids": {"limit": 0},
        "blockIO": {"weight": 0, "leafWeight": 0, "weightDevice": [{"major": 8, "minor": 0}]},
        "network": {"classID": 0}
    }"#;

    /// The files apply may write, empty (it never creates one, as a cgroup's are the
    /// kernel's); `files` lists those written.
    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("berth-v2-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for f in [
            "cpu.idle",
            "cpu.max",
            "cpu.max.burst",
            "cpu.weight",
            "cpuset.cpus",
            "cpuset.mems",
            "io.max",
            "io.weight",
            "memory.high",
            "memory.low",
            "memory.max",
            "memory.swap.max",
            "pids.max",
            "rdma.max",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
        d
    }

    fn files(dir: &Path) -> Vec<(String, String)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .filter(|(_, v)| !v.is_empty())
            .collect();
        v.sort();
        v
    }

    fn apply_json(name: &str, json: &str) -> (Result<(), CgroupError>, Vec<(String, String)>) {
        let dir = tmp(name);
        let r: LinuxResources = serde_json::from_str(json).unwrap();
        let res = apply(&dir, &r, None);
        let f = files(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        (res, f)
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn docker_zeros_write_nothing() {
        let (r, f) = apply_json("docker", DOCKER_20_10);
        r.unwrap();
        assert_eq!(f, pairs(&[]));
    }

    #[test]
    fn minus_one_is_max() {
        let (r, f) = apply_json(
            "max",
            r#"{"memory": {"limit": -1, "reservation": -1}, "pids": {"limit": -1},
                "cpu": {"quota": -1}}"#,
        );
        r.unwrap();
        assert_eq!(
            f,
            pairs(&[
                ("cpu.max", "max"),
                ("memory.low", "max"),
                ("memory.max", "max"),
                ("memory.swap.max", "max"),
                ("pids.max", "max"),
            ])
        );
    }

    #[test]
    fn quota_keeps_period_unless_given() {
        let (r, f) = apply_json("quota", r#"{"cpu": {"quota": 50000, "shares": 1024}}"#);
        r.unwrap();
        assert_eq!(f, pairs(&[("cpu.max", "50000"), ("cpu.weight", "39")]));
        let (r, f) = apply_json("period", r#"{"cpu": {"period": 20000}}"#);
        r.unwrap();
        assert_eq!(f, pairs(&[("cpu.max", "max 20000")]));
    }

    #[test]
    fn swap_conversion() {
        assert_eq!(swap_to_v2(0, 0).unwrap(), 0);
        assert_eq!(swap_to_v2(0, -1).unwrap(), -1);
        assert_eq!(swap_to_v2(-1, 100).unwrap(), -1);
        assert_eq!(swap_to_v2(300, 100).unwrap(), 200);
        assert!(swap_to_v2(300, 0).is_err());
        assert!(swap_to_v2(50, 100).is_err());
        // memory == memory+swap: swap.max 0.
        let (r, f) = apply_json("noswap", r#"{"memory": {"limit": 100, "swap": 100}}"#);
        r.unwrap();
        assert_eq!(f, pairs(&[("memory.max", "100"), ("memory.swap.max", "0")]));
    }

    #[test]
    fn v1_only_fields_at_their_unset_values() {
        // swappiness -1 arrives as u64::MAX (Go's uint64(-1)).
        let (r, f) = apply_json(
            "swappiness",
            r#"{"memory": {"swappiness": 18446744073709551615, "disableOOMKiller": false}}"#,
        );
        r.unwrap();
        assert!(f.is_empty());
        let (r, f) = apply_json(
            "swappiness42",
            r#"{"memory": {"swappiness": 42, "disableOOMKiller": true}}"#,
        );
        r.unwrap();
        assert!(f.is_empty(), "v1-only fields write nothing on v2: {f:?}");
    }
}
