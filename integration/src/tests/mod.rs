//! All tests, grouped by area.

mod cgroups;
mod checkpoint;
mod cli;
mod clients;
mod devices;
mod errors;
mod faults;
mod hooks;
mod idmapped;
mod ids;
mod images;
mod kill_list;
mod lifecycle;
mod limits;
mod load;
mod lsm;
mod mounts;
mod namespaces;
mod process;
mod races;
mod rootless;
mod seccomp;
mod security;
mod spec13;
mod users;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::harness::{wait_until, Failure, Test};

pub fn all() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(lifecycle::tests());
    v.extend(kill_list::tests());
    v.extend(cli::tests());
    v.extend(namespaces::tests());
    v.extend(mounts::tests());
    v.extend(idmapped::tests());
    v.extend(devices::tests());
    v.extend(process::tests());
    v.extend(users::tests());
    v.extend(ids::tests());
    v.extend(hooks::tests());
    v.extend(errors::tests());
    v.extend(faults::tests());
    v.extend(load::tests());
    v.extend(races::tests());
    v.extend(rootless::tests());
    v.extend(limits::tests());
    v.extend(seccomp::tests());
    v.extend(security::tests());
    v.extend(lsm::tests());
    v.extend(spec13::tests());
    v.extend(cgroups::tests());
    v.extend(clients::tests());
    v.extend(images::tests());
    v.extend(checkpoint::tests());
    v
}

/// A shell loop that keeps a container alive until `/shared/go` appears (max ~60 s).
pub const WAIT_FOR_GO: &str =
    "i=0; while [ ! -e /shared/go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done";

/// Give the bundle a new user namespace mapping container ids 0..65536 to host 100000.., and
/// hand its rootfs to the mapped root, as for any user-namespaced container.
pub fn map_to_userns(b: &mut crate::fixture::Bundle) -> Result<(), Failure> {
    b.cfg.ns_add("user");
    let st = std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(b.rootfs())
        .status()?;
    if !st.success() {
        return Err(Failure::Fail("chown of the rootfs failed".into()));
    }
    let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.cfg.set("/linux/uidMappings", map.clone());
    b.cfg.set("/linux/gidMappings", map);
    Ok(())
}

/// Wait for a file to appear.
/// strace, which the fault tests and the mountinfo count need (hack/install-deps.sh installs
/// it): missing, they fail rather than skip.
pub fn need_strace() -> Result<(), Failure> {
    if !Path::new("/usr/bin/strace").exists() {
        crate::fail!("strace is missing (hack/install-deps.sh installs it)");
    }
    Ok(())
}

pub fn wait_file(p: &Path) -> Result<(), Failure> {
    if wait_until(Duration::from_secs(10), || p.exists()) {
        Ok(())
    } else {
        Err(Failure::Fail(format!("{} never appeared", p.display())))
    }
}

/// Each line of `text` with its words joined by one blank (`0 61000 1` however the kernel
/// pads a map line).
pub fn word_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Read a file, trimmed.
pub fn read_trim(p: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| Failure::Fail(format!("read {}: {e}", p.display())))
}

/// Parse `key value` lines into a map.
pub fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(' ')?;
            Some((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The host's namespace link for `kind` (`net`, `mnt`, ...), e.g. `net:[4026531840]`.
pub fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A script printing `<kind> <link>` for each namespace kind.
pub const PRINT_NS: &str =
    "for n in cgroup ipc mnt net pid time user uts; do echo $n $(readlink /proc/self/ns/$n); done";
