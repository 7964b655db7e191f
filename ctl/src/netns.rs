//! A container's own network namespace gets its loopback interface up before the process
//! starts: `--network none` means "loopback only" in docker and podman, not "no network at
//! all" (a new namespace's `lo` is down, so even 127.0.0.1 would be unreachable).
//!
//! It is done by a `createRuntime` hook, berthctl itself (`berthctl __loopback-up`, the state
//! on stdin): the runtime runs it once the namespaces exist, before the process starts, for
//! `run` in the foreground (one `runtime run`) and detached alike. Docker configured its
//! containers' networks from a prestart hook of its own binary the same way.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

/// Whether `config` (a bundle's config.json) asks for a network namespace of its own.
pub fn own_namespace(config: &serde_json::Value) -> bool {
    config["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n["type"] == "network" && n["path"].as_str().is_none_or(str::is_empty))
}

/// Add the hook that brings `lo` up (berthctl's own binary, as it is now).
pub fn add_loopback_hook(spec: &mut serde_json::Value) -> Result<()> {
    let exe = std::fs::read_link("/proc/self/exe").context("find berthctl's own binary")?;
    let hook =
        serde_json::json!({"path": exe, "args": ["berthctl", "__loopback-up"], "timeout": 10});
    match spec["hooks"]["createRuntime"].as_array_mut() {
        Some(hooks) => hooks.insert(0, hook),
        None => spec["hooks"]["createRuntime"] = serde_json::json!([hook]),
    }
    Ok(())
}

/// The hook: the container's state (runtime-spec "state") on stdin names its pid.
pub fn loopback_hook() -> Result<i32> {
    let state: serde_json::Value =
        serde_json::from_reader(std::io::stdin().lock()).context("read the container's state")?;
    let pid = state["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
        .context("the container's state has no pid")?;
    loopback_up(pid)?;
    Ok(0)
}

/// Bring up `lo` in the network namespace of process `pid`. The switch is made by a thread
/// of its own, which ends with it: the rest of the process stays in its namespace.
pub fn loopback_up(pid: i32) -> Result<()> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))
        .with_context(|| format!("open the network namespace of {pid}"))?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            setns(&ns, CloneFlags::CLONE_NEWNET).context("enter the container's network")?;
            set_up("lo")
        })
        .join()
        .unwrap_or_else(|_| bail!("the loopback thread panicked"))
    })
}

/// SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP, on interface `name` of this thread's
/// network namespace.
fn set_up(name: &str) -> Result<()> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for interface flags");
    }
    // SAFETY: fd is a descriptor we just made and nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags of the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("flags of {name}"));
    }
    // SAFETY: the union's flags member is what SIOCGIFFLAGS just filled in.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("bring {name} up"));
    }
    Ok(())
}
