//! Loading and validating a bundle's config.json. Parsing errors name the JSON path of the
//! offending field; validation covers what the runtime-spec requires beyond the types.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{bound_line, echo_path, Error, Result};

/// A bundle whose config.json has been read and validated.
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    pub spec: Spec,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
    /// What the config asks for that berth ignores, as runc does, with a warning.
    pub warnings: Vec<String>,
}

impl Bundle {
    /// Read `<dir>/config.json` and validate it.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = std::fs::canonicalize(dir).map_err(|e| Error::io("bundle", dir, e))?;
        let path = dir.join("config.json");
        let bytes = read_config(&path)?;
        let (spec, rootfs) = parse_and_validate(&bytes, &dir)
            .map_err(|msg| Error::config(path.display().to_string(), msg))?;
        let warnings = warnings(&spec);
        Ok(Bundle {
            dir,
            spec,
            rootfs,
            warnings,
        })
    }
}

/// Fields of a valid config that berth ignores where runc ignores them, each with a warning
/// (logged by create, run and restore once the container exists; runc logs it while it reads
/// the config).
pub fn warnings(spec: &Spec) -> Vec<String> {
    let mut w = Vec::new();
    let flags = spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref())
        .and_then(|p| p.flags().as_ref())
        .filter(|f| !f.is_empty());
    if let Some(f) = flags {
        // runtime-spec: "Currently no flag values are supported."
        // runc's words, its Go list format included: "[A B]".
        let names: Vec<String> = f.iter().map(|x| x.to_string()).collect();
        w.push(format!(
            "ignoring unsupported personality flags: [{}] because linux.personality.flags has no values in the runtime-spec yet",
            names.join(" ")
        ));
    }
    w
}

/// The largest config.json berth reads (docker's default seccomp profile makes a config of
/// about 30 KB): a bound, so that a hostile one cannot exhaust memory.
const CONFIG_MAX: u64 = 64 << 20;

/// Read config.json: a regular file (it may be reached through a symlink) of at most
/// [`CONFIG_MAX`] bytes. Opened without blocking, so that a FIFO there is refused rather than
/// waited on, and a link to /dev/zero is refused rather than read forever.
fn read_config(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io("read", path, e))?;
    let meta = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    let t = meta.file_type();
    let kind = if t.is_file() {
        None
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("a directory")
    };
    if let Some(kind) = kind {
        return Err(Error::config(
            path.display().to_string(),
            format!("is {kind}, not a regular file"),
        ));
    }
    if meta.len() > CONFIG_MAX {
        return Err(Error::config(
            path.display().to_string(),
            format!("{} bytes, more than berth reads ({CONFIG_MAX})", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(CONFIG_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() as u64 > CONFIG_MAX {
        return Err(Error::config(
            path.display().to_string(),
            format!("grew past {CONFIG_MAX} bytes while read"),
        ));
    }
    Ok(bytes)
}

fn parse_and_validate(bytes: &[u8], dir: &Path) -> Result<(Spec, PathBuf), String> {
    let mut spec = parse(bytes)?;
    normalize(&mut spec);
    let rootfs = validate(&spec, dir)?;
    Ok((spec, rootfs))
}

/// Everything berth checks of a config.json before it makes anything: what
/// [`Bundle::load`] does (parse, normalize, validate against the bundle `dir`), then what
/// `create` derives from it before any side effect (the seccomp filters, the device-cgroup
/// rules and their BPF program). Pure: the fuzzers (libcontainer/fuzz and
/// libcontainer/tests/config_mutations.rs) run it on hostile input. The error names the field.
pub fn check(bytes: &[u8], dir: &Path) -> Result<(Spec, PathBuf), String> {
    let (spec, rootfs) = parse_and_validate(bytes, dir)?;
    if let Some(linux) = spec.linux() {
        if let Some(profile) = linux.seccomp() {
            crate::seccomp::compile(profile).map_err(|e| e.to_string())?;
        }
        let rules = crate::cgroups::devices::rules(
            linux
                .resources()
                .as_ref()
                .and_then(|r| r.devices().as_deref())
                .unwrap_or_default(),
            linux.devices().as_deref().unwrap_or_default(),
        );
        let (_, reduced) = crate::cgroups::bpf::reduce(&rules);
        let _ = crate::cgroups::bpf::program(&reduced);
    }
    Ok((spec, rootfs))
}

/// What runc reads differently from the types: a namespace with `"path": ""` is a new one.
/// Device paths are cleaned lexically (`/dev/./a/../null` is `/dev/null`), as runc's
/// filepath.Clean; one that then leaves /dev is kept as given for [`validate`] to refuse.
pub fn normalize(spec: &mut Spec) {
    let Some(linux) = spec.linux_mut() else {
        return;
    };
    if let Some(devices) = linux.devices_mut() {
        for d in devices.iter_mut() {
            let clean = clean_path(d.path());
            if d.path().is_absolute() && below_dev(&clean) && clean != *d.path() {
                d.set_path(clean);
            }
        }
    }
    let Some(namespaces) = linux.namespaces_mut() else {
        return;
    };
    for ns in namespaces.iter_mut() {
        if ns.path().as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            ns.set_path(None);
        }
    }
}

/// Parse config.json; an error names the field (`process.user.uid: invalid type ...`).
/// A valid file is parsed once, without tracking the path (which allocates for every key);
/// only a failed parse is repeated to find where it failed.
pub fn parse(bytes: &[u8]) -> Result<Spec, String> {
    let err = match serde_json::from_slice(bytes) {
        Ok(spec) => return Ok(spec),
        Err(e) => e,
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let found = serde_path_to_error::deserialize::<_, Spec>(de);
    if let Err(e) = &found {
        if e.path().to_string().starts_with("process.execCPUAffinity.") {
            return parse_normalized(bytes);
        }
    }
    match found {
        // The path holds map keys and the message quotes values from the file: both bounded.
        Err(e) if e.path().to_string() != "." => Err(format!(
            "{}: {}",
            bound_line(&e.path().to_string(), 512),
            bound_line(&e.inner().to_string(), 1024)
        )),
        // At the top level (or trailing characters after a valid object): serde_json's message.
        _ => Err(bound_line(&err.to_string(), 1024)),
    }
}

/// config.json whose `process.execCPUAffinity` holds lists runc reads but the types refuse
/// (`""`, blanks): parsed again after [`crate::cpuaffinity::normalize_json`]. Only a config
/// that failed the plain parse comes here.
fn parse_normalized(bytes: &[u8]) -> Result<Spec, String> {
    let mut v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bound_line(&e.to_string(), 1024))?;
    if let Some(p) = v.get_mut("process") {
        crate::cpuaffinity::normalize_json(p, "process")?;
    }
    serde_path_to_error::deserialize::<_, Spec>(v).map_err(|e| {
        format!(
            "{}: {}",
            bound_line(&e.path().to_string(), 512),
            bound_line(&e.inner().to_string(), 1024)
        )
    })
}

/// Validate what the types do not; returns the absolute rootfs path.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf, String> {
    let version = spec.version();
    if !version.starts_with("1.") {
        return Err(format!(
            "ociVersion: {} is not a 1.x runtime-spec version",
            crate::error::echo(version)
        ));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or("root: missing; the root filesystem is required")?;
    if root.path().as_os_str().is_empty() {
        return Err("root.path: empty".into());
    }
    let rootfs = bundle.join(root.path());
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "root.path: {} is not a directory",
                echo_path(&rootfs)
            ))
        }
        Err(e) => return Err(format!("root.path: {}: {e}", echo_path(&rootfs))),
    }
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(|e| format!("root.path: {}: {e}", echo_path(&rootfs)))?;

    let process = spec.process().as_ref().ok_or("process: missing")?;
    validate_process(process, "process")?;

    let linux = spec
        .linux()
        .as_ref()
        .ok_or("linux: missing; berth runs Linux containers")?;
    let mut types = HashSet::new();
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    for (i, ns) in namespaces.iter().enumerate() {
        if !types.insert(ns.typ()) {
            return Err(format!(
                "linux.namespaces[{i}].type: namespace {} is listed twice",
                ns_name(ns.typ())
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(format!(
                    "linux.namespaces[{i}].path: {} is not absolute",
                    echo_path(p)
                ));
            }
        }
    }
    let private = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
        && !private(LinuxNamespaceType::Uts)
    {
        return Err("hostname: setting a hostname needs a private uts namespace".into());
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty())
        && !private(LinuxNamespaceType::Uts)
    {
        return Err("domainname: setting a domainname needs a private uts namespace".into());
    }
    let new_userns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    for (name, maps) in [
        ("linux.uidMappings", linux.uid_mappings()),
        ("linux.gidMappings", linux.gid_mappings()),
    ] {
        check_id_maps(name, maps.as_deref().unwrap_or_default())?;
    }
    if new_userns && !has_maps {
        return Err("linux.uidMappings: a new user namespace needs uid and gid mappings".into());
    }
    // With a user namespace joined by path, runc 1.1 requires the mappings (1.2+ reads them
    // from the namespace): they describe the namespace and are not written.
    let any_userns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User);
    if has_maps && !any_userns {
        return Err(
            "linux.uidMappings: mappings are given but no user namespace is requested".into(),
        );
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
        if !namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Time && n.path().is_none())
        {
            return Err("linux.timeOffsets: offsets need a new time namespace".into());
        }
        for clock in linux.time_offsets().as_ref().unwrap().keys() {
            if clock != "monotonic" && clock != "boottime" {
                return Err(format!(
                    "linux.timeOffsets: unknown clock {} (monotonic or boottime)",
                    crate::error::echo(clock)
                ));
            }
        }
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            check_sysctl(key, &private)?;
        }
    }
    if let Some(p) = linux.rootfs_propagation() {
        if crate::init::mountopts::propagation(p).is_none() {
            return Err(format!(
                "linux.rootfsPropagation: {} is not one of private, rprivate, slave, rslave, shared, rshared, unbindable, runbindable",
                crate::error::echo(p)
            ));
        }
    }
    crate::netdev::validate(linux)?;
    if let Some(p) = linux.memory_policy() {
        crate::mempolicy::Policy::parse(p)?;
    }
    if let Some(rdt) = linux.intel_rdt() {
        crate::intelrdt::check(rdt)?;
    }
    if let Some(sc) = linux.seccomp() {
        use oci_spec::runtime::LinuxSeccompAction as A;
        for (i, rule) in sc
            .syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if rule.action() != A::ScmpActNotify {
                continue;
            }
            if sc
                .listener_path()
                .as_ref()
                .is_none_or(|p| p.as_os_str().is_empty())
            {
                return Err(format!(
                    "linux.seccomp.syscalls[{i}].action: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath"
                ));
            }
            if rule.names().iter().any(|n| n == "sendmsg") {
                return Err(format!(
                    "linux.seccomp.syscalls[{i}]: SCMP_ACT_NOTIFY on sendmsg would stop berth from handing over the listener"
                ));
            }
        }
    }
    for (i, d) in linux
        .devices()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !d.path().is_absolute() {
            return Err(format!(
                "linux.devices[{i}].path: {} is not an absolute path",
                echo_path(d.path())
            ));
        }
        let clean = clean_path(d.path());
        if !below_dev(&clean) {
            return Err(format!(
                "linux.devices[{i}].path: {} is not below /dev (it resolves to {})",
                echo_path(d.path()),
                echo_path(&clean)
            ));
        }
        if let Some(uid) = d.uid() {
            check_id(&format!("linux.devices[{i}].uid"), uid)?;
        }
        if let Some(gid) = d.gid() {
            check_id(&format!("linux.devices[{i}].gid"), gid)?;
        }
    }
    if let Some(cg) = linux.cgroups_path() {
        if cg
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(format!(
                "linux.cgroupsPath: {} must not contain \"..\"",
                echo_path(cg)
            ));
        }
    }

    for (i, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !m.destination().is_absolute() {
            return Err(format!(
                "mounts[{i}].destination: {} is not an absolute path",
                echo_path(m.destination())
            ));
        }
        if m.destination()
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(format!(
                "mounts[{i}].destination: {} contains \"..\"",
                echo_path(m.destination())
            ));
        }
        check_id_maps(
            &format!("mounts[{i}].uidMappings"),
            m.uid_mappings().as_deref().unwrap_or_default(),
        )?;
        check_id_maps(
            &format!("mounts[{i}].gidMappings"),
            m.gid_mappings().as_deref().unwrap_or_default(),
        )?;
        crate::idmap::of_mount(Some(linux), m).map_err(|e| format!("mounts[{i}]: {e}"))?;
    }
    if let Some(hooks) = spec.hooks() {
        crate::hooks::validate(hooks)?;
    }
    Ok(rootfs)
}

/// Check a process (config.json's `process`, or the `--process` file of `exec`); `field` is how
/// errors name it.
pub fn validate_process(process: &oci_spec::runtime::Process, field: &str) -> Result<(), String> {
    match process.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => {
            return Err(format!(
                "{field}.args: must hold at least the program to run"
            ))
        }
    }
    let user = process.user();
    check_id(&format!("{field}.user.uid"), user.uid())?;
    check_id(&format!("{field}.user.gid"), user.gid())?;
    for (i, g) in user
        .additional_gids()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        check_id(&format!("{field}.user.additionalGids[{i}]"), *g)?;
    }
    if user
        .additional_gids()
        .as_ref()
        .is_some_and(|g| !g.is_empty())
        && crate::namespaces::rootless_euid()
    {
        // As runc: a rootless user namespace denies setgroups, or has it only through
        // newgidmap, which runc does not trust with supplementary groups either.
        return Err(format!(
            "{field}.user.additionalGids: cannot set any additional groups in a rootless container"
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(format!(
            "{field}.cwd: {} is not an absolute path",
            echo_path(process.cwd())
        ));
    }
    // runc: a process label needs SELinux (an AppArmor profile fails only in init, and a
    // mount label only at the mount: runc checks neither here).
    if process
        .selinux_label()
        .as_ref()
        .is_some_and(|l| !l.is_empty())
        && !crate::init::lsm::selinux_enabled()
    {
        return Err(format!(
            "{field}.selinuxLabel: {}",
            crate::init::lsm::SELINUX_DISABLED
        ));
    }
    if let Some(a) = process.exec_cpu_affinity() {
        crate::cpuaffinity::Affinity::parse(a, field)?;
    }
    if let Some(env) = process.env() {
        for (i, e) in env.iter().enumerate() {
            if !e.contains('=') || e.starts_with('=') {
                return Err(format!(
                    "{field}.env[{i}]: {} is not of the form KEY=value",
                    crate::error::echo(e)
                ));
            }
        }
    }
    if let Some(io) = process.io_priority() {
        if !(0..=7).contains(&io.priority()) {
            return Err(format!(
                "{field}.ioPriority.priority: {} is not in 0..7",
                io.priority()
            ));
        }
    }
    if let Some(sch) = process.scheduler() {
        use oci_spec::runtime::LinuxSchedulerPolicy as P;
        let realtime = matches!(sch.policy(), P::SchedFifo | P::SchedRr);
        let prio = sch.priority().unwrap_or(0);
        if realtime && !(1..=99).contains(&prio) {
            return Err(format!(
                "{field}.scheduler.priority: {prio} is not in 1..99 for a real-time policy"
            ));
        }
        if !realtime && prio != 0 {
            return Err(format!(
                "{field}.scheduler.priority: must be 0 unless the policy is SCHED_FIFO or SCHED_RR"
            ));
        }
        if let Some(n) = sch.nice() {
            if !(-20..=19).contains(n) {
                return Err(format!("{field}.scheduler.nice: {n} is not in -20..19"));
            }
        }
    }
    if let Some(rlimits) = process.rlimits() {
        let mut seen = HashSet::new();
        for (i, r) in rlimits.iter().enumerate() {
            if !seen.insert(format!("{:?}", r.typ())) {
                return Err(format!(
                    "{field}.rlimits[{i}]: duplicate type {:?}",
                    r.typ()
                ));
            }
            if r.soft() > r.hard() {
                return Err(format!(
                    "{field}.rlimits[{i}]: soft limit {} is above hard limit {}",
                    r.soft(),
                    r.hard()
                ));
            }
        }
    }
    Ok(())
}

/// (u32)-1 is never a user or group id: setresuid, setresgid, chown and the id maps read it
/// as "unchanged" or "none", so a process given it would keep berth's own (root's) ids.
pub const INVALID_ID: u32 = u32::MAX;

/// Check one uid or gid; `field` is how errors name it (`process.user.uid`, `--user`).
pub fn check_id(field: &str, id: u32) -> Result<(), String> {
    if id == INVALID_ID {
        return Err(format!(
            "{field}: {id} is not a valid id: it is (u32)-1, which setresuid/setresgid read as \
             \"unchanged\" (ids go from 0 to 4294967294)"
        ));
    }
    Ok(())
}

/// Check uid or gid mappings the way the kernel's map_write does: a range maps at least one
/// id and stays below (u32)-1 on both sides (start + size <= 4294967295, no wrap-around).
pub fn check_id_maps(
    field: &str,
    maps: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<(), String> {
    for (i, m) in maps.iter().enumerate() {
        if m.size() == 0 {
            return Err(format!("{field}[{i}].size: 0 maps no id"));
        }
        for (name, start) in [("containerID", m.container_id()), ("hostID", m.host_id())] {
            let end = u64::from(start) + u64::from(m.size());
            if end > u64::from(INVALID_ID) {
                return Err(format!(
                    "{field}[{i}]: {name} {start} + size {} = {end} overflows: the range would \
                     reach 4294967295, which is (u32)-1 and not an id",
                    m.size()
                ));
            }
        }
    }
    Ok(())
}

/// `path` cleaned lexically, as Go's filepath.Clean: no `.`, no `..` (a `..` at the root
/// stays there), no repeated or trailing `/`. Symlinks are not followed.
pub fn clean_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = path.has_root();
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => match parts.last() {
                Some(last) if *last != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push("..".as_ref()),
            },
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
        }
    }
    let mut out = PathBuf::from(if absolute { "/" } else { "" });
    out.extend(parts);
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Strictly below /dev (a device node at /dev itself would replace the directory).
fn below_dev(clean: &Path) -> bool {
    clean.starts_with("/dev") && clean != Path::new("/dev")
}

pub(crate) fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// A sysctl may only be set when it belongs to a namespace the container has of its own
/// (runc's rule): otherwise it would change the host.
fn check_sysctl(key: &str, private: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<(), String> {
    use LinuxNamespaceType as T;
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let (ns, ok) = if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        ("ipc", private(T::Ipc))
    } else if key.starts_with("net.") {
        ("network", private(T::Network))
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        ("uts", private(T::Uts))
    } else {
        return Err(format!(
            "linux.sysctl: {} is not namespaced; setting it would change the host",
            crate::error::echo(key)
        ));
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "linux.sysctl: {} needs a private {ns} namespace",
            crate::error::echo(key)
        ))
    }
}

/// Check a container id the way runc does: `^[\w+\-.]+$`, not "." or "..".
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "."},
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"},
            "hostname": "h",
            "linux": {"namespaces": [{"type": "pid"}, {"type": "uts"}, {"type": "mount"}]}
        })
    }

    fn check(v: serde_json::Value) -> Result<PathBuf, String> {
        let spec = parse(v.to_string().as_bytes())?;
        validate(&spec, Path::new("/"))
    }

    #[test]
    fn accepts_a_minimal_config() {
        check(base()).unwrap();
    }

    #[test]
    fn parse_errors_name_the_field() {
        let mut v = base();
        v["process"]["user"]["uid"] = "zero".into();
        let e = check(v).unwrap_err();
        assert!(e.starts_with("process.user.uid: invalid type"), "{e}");
        let mut v = base();
        v["linux"]["namespaces"][0]["type"] = "bogus".into();
        let e = check(v).unwrap_err();
        assert!(
            e.contains("linux.namespaces[0].type") && e.contains("bogus"),
            "{e}"
        );
        assert!(parse(b"{\"ociVersion\": ").unwrap_err().contains("EOF"));
        let mut text = base().to_string();
        text.push_str(" x");
        let e = parse(text.as_bytes()).unwrap_err();
        assert!(e.contains("trailing characters"), "{e}");
    }

    /// A key holding a newline (an unknown key, whose value serde still parses) is part of
    /// the error's field path: it is escaped, the error stays one line (found by the cargo-fuzz
    /// target `config`: "linux.gidMappi\ngs: invalid number").
    #[test]
    fn parse_errors_are_one_line_whatever_the_keys() {
        let e = parse(br#"{"linux": {"gidMappi\ngs": [01]}}"#).unwrap_err();
        assert!(!e.contains('\n') && e.contains("gidMappi\\ngs"), "{e:?}");
        let e = parse(br#"{"a\u0007\tb": -}"#).unwrap_err();
        assert!(!e.contains(['\t', '\u{7}']), "{e:?}");
    }

    #[test]
    fn rejects_invalid_values() {
        use serde_json::json;
        // (JSON pointer to replace, new value, what the error must mention)
        let cases = [
            ("/ociVersion", json!("2.0"), "ociVersion"),
            ("/root/path", json!("/nonexistent-rootfs"), "root.path"),
            ("/process/args", json!([]), "process.args"),
            ("/process/cwd", json!("rel"), "process.cwd"),
            ("/process/env", json!(["NOEQ"]), "process.env[0]"),
            (
                "/linux/namespaces",
                json!([{"type": "pid"}, {"type": "pid"}]),
                "linux.namespaces[1].type",
            ),
            ("/linux/namespaces", json!([]), "hostname"),
            (
                "/linux/sysctl",
                json!({"kernel.panic": "1"}),
                "linux.sysctl",
            ),
            (
                "/linux/sysctl",
                json!({"net.ipv4.ip_forward": "1"}),
                "private network",
            ),
            (
                "/linux/namespaces/2",
                json!({"type": "user"}),
                "linux.uidMappings",
            ),
            (
                "/mounts",
                json!([{"destination": "rel"}]),
                "mounts[0].destination",
            ),
            ("/linux/cgroupsPath", json!("/a/../b"), "linux.cgroupsPath"),
        ];
        for (pointer, value, want) in cases {
            let mut v = base();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let parent = if parent.is_empty() {
                &mut v
            } else {
                v.pointer_mut(parent).unwrap()
            };
            match parent {
                serde_json::Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
                other => other[key] = value,
            }
            let e = check(v).unwrap_err();
            assert!(e.contains(want), "{e:?} should mention {want:?}");
        }
    }

    #[test]
    fn minus_one_is_no_id_and_maps_must_not_overflow() {
        use serde_json::json;
        let max = u32::MAX;
        let userns = |v: &mut serde_json::Value, uid: serde_json::Value| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            v["linux"]["uidMappings"] = uid;
            v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        };
        type Edit<'a> = Box<dyn Fn(&mut serde_json::Value) + 'a>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|v| v["process"]["user"]["uid"] = json!(max)),
                "process.user.uid: 4294967295 is not a valid id",
            ),
            (
                Box::new(|v| v["process"]["user"]["gid"] = json!(max)),
                "process.user.gid: 4294967295",
            ),
            (
                Box::new(|v| v["process"]["user"]["additionalGids"] = json!([1, max])),
                "process.user.additionalGids[1]: 4294967295",
            ),
            (
                Box::new(move |v| {
                    userns(
                        v,
                        json!([{"containerID": 4294967290u32, "hostID": 1, "size": 6}]),
                    )
                }),
                "linux.uidMappings[0]: containerID 4294967290 + size 6 = 4294967296 overflows",
            ),
            (
                Box::new(move |v| userns(v, json!([{"containerID": 0, "hostID": max, "size": 1}]))),
                "linux.uidMappings[0]: hostID 4294967295 + size 1",
            ),
            (
                Box::new(move |v| userns(v, json!([{"containerID": 0, "hostID": 1, "size": max}]))),
                "linux.uidMappings[0]: hostID 1 + size 4294967295",
            ),
            (
                Box::new(move |v| userns(v, json!([{"containerID": 0, "hostID": 0, "size": 0}]))),
                "linux.uidMappings[0].size: 0 maps no id",
            ),
            (
                Box::new(|v| {
                    v["linux"]["devices"] = json!([{"path": "/dev/x", "type": "c",
                        "major": 1, "minor": 3, "gid": max}])
                }),
                "linux.devices[0].gid: 4294967295",
            ),
            (
                Box::new(|v| {
                    v["mounts"] = json!([{"destination": "/m", "source": "/m",
                        "options": ["bind"], "uidMappings":
                        [{"containerID": 1, "hostID": max - 1, "size": 2}]}])
                }),
                "mounts[0].uidMappings[0]: hostID 4294967294 + size 2",
            ),
        ];
        for (edit, want) in cases {
            let mut v = base();
            edit(&mut v);
            let e = check(v).expect_err(want);
            assert!(e.contains(want), "{e:?} should mention {want:?}");
        }
        // The highest id and a range ending right below (u32)-1 are valid.
        let mut v = base();
        v["process"]["user"] = json!({"uid": max - 1, "gid": max - 1, "additionalGids": [max - 1]});
        userns(
            &mut v,
            json!([{"containerID": 0, "hostID": 1, "size": max - 1},
                   {"containerID": max - 1, "hostID": 0, "size": 1},
                   {"containerID": max - 5, "hostID": max - 5, "size": 5}]),
        );
        check(v).unwrap();
    }

    #[test]
    fn idmapped_mounts_are_checked_with_the_config() {
        use serde_json::json;
        let maps = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        let mut v = base();
        v["mounts"] = json!([{"destination": "/m", "source": "/m", "options": ["rbind", "ridmap"],
            "uidMappings": maps, "gidMappings": maps}]);
        check(v).unwrap();
        let mut v = base();
        v["mounts"] = json!([{"destination": "/m", "type": "tmpfs", "source": "tmpfs",
            "options": ["idmap"]}]);
        let e = check(v).unwrap_err();
        assert!(
            e.contains("mounts[0]: id-mapped mounts") && e.contains("bind"),
            "{e}"
        );
        let mut v = base();
        v["mounts"] = json!([{"destination": "/m", "source": "/m", "options": ["bind", "idmap"]}]);
        let e = check(v).unwrap_err();
        assert!(
            e.contains("mounts[0]: id-mapped mounts must have both"),
            "{e}"
        );
    }

    /// runc reads `""` as unset and allows blanks in a CPU list; the types do not: such a
    /// config is parsed again with the lists normalized. A list that is none names its field.
    #[test]
    fn exec_cpu_affinity_lists_are_read_as_runc_reads_them() {
        use serde_json::json;
        let mut v = base();
        v["process"]["execCPUAffinity"] = json!({"initial": "", "final": " 1, 0,"});
        let spec = parse(v.to_string().as_bytes()).unwrap();
        let a = spec
            .process()
            .as_ref()
            .unwrap()
            .exec_cpu_affinity()
            .clone()
            .unwrap();
        assert_eq!(a.initial(), &None);
        assert_eq!(a.cpu_affinity_final().as_deref(), Some("0-1"));
        validate(&spec, Path::new("/")).unwrap();
        for (bad, want) in [
            (
                json!({"initial": "3-1"}),
                "process.execCPUAffinity.initial: invalid range",
            ),
            (
                json!({"final": ","}),
                "process.execCPUAffinity.final: \",\" lists nothing",
            ),
            (
                json!({"final": "99999"}),
                "process.execCPUAffinity.final: \"99999\" is above",
            ),
        ] {
            let mut v = base();
            v["process"]["execCPUAffinity"] = bad;
            let e = check(v).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn device_paths_are_cleaned_before_the_below_dev_check() {
        use serde_json::json;
        for (path, clean) in [
            ("/dev/../x", "/x"),
            ("/dev/./a/../null", "/dev/null"),
            ("/../../dev//null/", "/dev/null"),
            ("/dev/..", "/"),
            ("a/../../b", "../b"),
            ("", "."),
        ] {
            assert_eq!(clean_path(Path::new(path)), Path::new(clean), "{path}");
        }
        for bad in [
            "/dev/../x",
            "/dev/../../etc/shadow",
            "/dev",
            "/dev/.",
            "/devx",
        ] {
            let mut v = base();
            v["linux"]["devices"] = json!([{"path": bad, "type": "c", "major": 1, "minor": 3}]);
            let e = check(v).unwrap_err();
            assert!(
                e.contains("linux.devices[0].path") && e.contains("not below /dev"),
                "{e}"
            );
        }
        let mut v = base();
        v["linux"]["devices"] =
            json!([{"path": "/dev/x/../null", "type": "c", "major": 1, "minor": 3}]);
        let mut spec = parse(v.to_string().as_bytes()).unwrap();
        normalize(&mut spec);
        validate(&spec, Path::new("/")).unwrap();
        let devices = spec.linux().as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(devices[0].path(), Path::new("/dev/null"));
    }

    #[test]
    fn ids() {
        validate_id("abc-1.2_3+x").unwrap();
        for bad in ["", ".", "..", "a/b", "a b", "é"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
