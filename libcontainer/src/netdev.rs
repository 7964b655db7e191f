//! `linux.netDevices` (runtime-spec 1.3): move host network devices into the container's
//! network namespace, as the spec says: renamed to `name` when given (a `%d` in it lets the
//! kernel number it), keeping the device's permanent addresses of global scope (of any
//! family), and set up. Nothing moves them back: when the namespace goes, the kernel returns
//! physical devices to the initial namespace and destroys virtual ones (veth, macvlan).
//!
//! `create` calls [`move_all`] once init is in its namespaces and before the prestart and
//! createRuntime hooks; only a config with the field gets there.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use oci_spec::runtime::{Linux, LinuxNamespaceType, LinuxNetDevice};

use crate::error::{echo, Error, Result};
use crate::netlink::{self, Addr, Socket};

/// IFNAMSIZ less the terminating NUL: the longest interface name.
const IFNAME_MAX: usize = 15;

/// What the config must hold for the devices to move (no host is looked at).
pub fn validate(linux: &Linux) -> Result<(), String> {
    let Some(devices) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let has_netns = linux
        .namespaces()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network);
    if !has_netns {
        return Err(
            "linux.netDevices: moving network devices needs a network namespace of the \
                    container's own (linux.namespaces has no network entry)"
                .into(),
        );
    }
    let mut targets: HashMap<&str, &str> = HashMap::new();
    for (host, dev) in sorted(devices) {
        let field = format!("linux.netDevices[{}]", echo(host));
        check_ifname(host, false).map_err(|e| format!("{field}: {e}"))?;
        let target = target_name(host, dev);
        check_ifname(target, true).map_err(|e| format!("{field}.name: {e}"))?;
        if !target.contains('%') {
            if let Some(other) = targets.insert(target, host) {
                return Err(format!(
                    "{field}.name: {} is also the name of {} in the container",
                    echo(target),
                    echo(other)
                ));
            }
        }
    }
    Ok(())
}

/// The kernel's rules for an interface name (dev_valid_name), and for a template
/// (dev_alloc_name: one `%`, followed by `d`).
fn check_ifname(name: &str, template_ok: bool) -> Result<(), String> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.len() > IFNAME_MAX {
        "is longer than 15 bytes (IFNAMSIZ)"
    } else if name == "." || name == ".." {
        "is not a valid interface name"
    } else if name.contains(['/', ':']) || name.chars().any(char::is_whitespace) {
        "holds a '/', a ':' or a blank, which interface names cannot"
    } else if name.contains('%') {
        let ok = name.matches('%').count() == 1 && name.contains("%d");
        if !template_ok {
            "names no device: a '%' is only for a template in `name`"
        } else if !ok {
            "is a template with more than one '%' or a '%' not followed by 'd'"
        } else {
            return Ok(());
        }
    } else {
        return Ok(());
    };
    Err(format!("{} {why}", echo(name)))
}

fn target_name<'a>(host: &'a str, dev: &'a LinuxNetDevice) -> &'a str {
    dev.name()
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(host)
}

/// The devices in a fixed order (by host name), so that errors and numbering repeat.
fn sorted(devices: &HashMap<String, LinuxNetDevice>) -> Vec<(&str, &LinuxNetDevice)> {
    let mut v: Vec<_> = devices.iter().map(|(k, d)| (k.as_str(), d)).collect();
    v.sort_unstable_by_key(|(k, _)| *k);
    v
}

/// The addresses the spec says a moved device keeps: permanent ones of global scope.
pub fn kept(addrs: Vec<Addr>) -> Vec<Addr> {
    addrs
        .into_iter()
        .filter(|a| a.flags & netlink::IFA_F_PERMANENT != 0 && a.scope == netlink::SCOPE_UNIVERSE)
        .collect()
}

/// Move every device of `devices` from berth's network namespace into init's (`pid`).
pub fn move_all(pid: i32, devices: &HashMap<String, LinuxNetDevice>) -> Result<()> {
    let open = |p: String| -> Result<OwnedFd> {
        std::fs::File::open(&p)
            .map(OwnedFd::from)
            .map_err(|e| Error::io("open", p, e))
    };
    let own_ns = open("/proc/self/ns/net".into())?;
    let ctr_ns = open(format!("/proc/{pid}/ns/net"))?;
    let id = |fd: &OwnedFd| nix::sys::stat::fstat(fd).map(|s| (s.st_dev, s.st_ino));
    if id(&own_ns).ok() == id(&ctr_ns).ok() {
        return Err(Error::config(
            "config.json",
            "linux.netDevices: the container's network namespace is berth's own (joined by \
             path?): the devices would not leave the host",
        ));
    }
    let sys = |what: String| move |e: std::io::Error| Error::sys(what, e);
    let mut host = Socket::open().map_err(sys("open a netlink socket".into()))?;
    let mut ctr = socket_in(&ctr_ns, &own_ns)?;
    // Every device and name first: a failure after some devices moved would strand them (the
    // move drops their addresses, and they go with the namespace).
    for (name, dev) in sorted(devices) {
        let field = format!("linux.netDevices[{}]", echo(name));
        let found = host
            .link_by_name(name)
            .map_err(sys(format!("{field}: look the device up")))?;
        if found.is_none() {
            return Err(Error::config(
                "config.json",
                format!("{field}: no network device of that name in berth's network namespace"),
            ));
        }
        let target = target_name(name, dev);
        if !target.contains('%')
            && ctr
                .link_by_name(target)
                .map_err(sys(format!(
                    "{field}: look {} up in the container",
                    echo(target)
                )))?
                .is_some()
        {
            return Err(Error::sys(
                format!(
                    "{field}: move it into the container's network namespace as {}: a device \
                     of that name is there already",
                    echo(target)
                ),
                std::io::Error::from_raw_os_error(libc::EEXIST),
            ));
        }
    }
    for (name, dev) in sorted(devices) {
        let field = format!("linux.netDevices[{}]", echo(name));
        let link = host
            .link_by_name(name)
            .map_err(sys(format!("{field}: look the device up")))?
            .ok_or_else(|| {
                Error::config(
                    "config.json",
                    format!("{field}: no network device of that name in berth's network namespace"),
                )
            })?;
        let addrs = kept(
            host.addrs(link.index)
                .map_err(sys(format!("{field}: read its addresses")))?,
        );
        let target = target_name(name, dev);
        let template = target.contains('%');
        let before = if template {
            ctr.links()
                .map_err(sys(format!("{field}: list the container's devices")))?
        } else {
            // Checked before the move: the kernel moves a device whose new name is taken
            // under its old one, then fails the rename; it would be in the container anyway.
            let taken = ctr.link_by_name(target).map_err(sys(format!(
                "{field}: look {} up in the container",
                echo(target)
            )))?;
            if taken.is_some() {
                return Err(Error::sys(
                    format!(
                        "{field}: move it into the container's network namespace as {}: a \
                         device of that name is there already",
                        echo(target)
                    ),
                    std::io::Error::from_raw_os_error(libc::EEXIST),
                ));
            }
            Vec::new()
        };
        host.move_link(link.index, ctr_ns.as_fd(), target)
            .map_err(|e| {
                let why = match e.raw_os_error() {
                    Some(libc::EEXIST) => format!(
                        "move it into the container's network namespace as {}: a device of \
                         that name is there already",
                        echo(target)
                    ),
                    Some(libc::EINVAL) => format!(
                        "move it into the container's network namespace as {} (the device may \
                         be bound to its namespace, as lo is)",
                        echo(target)
                    ),
                    _ => format!(
                        "move it into the container's network namespace as {}",
                        echo(target)
                    ),
                };
                Error::sys(format!("{field}: {why}"), e)
            })?;
        let moved = if template {
            let after = ctr
                .links()
                .map_err(sys(format!("{field}: list the container's devices")))?;
            after.into_iter().find(|l| !before.contains(l))
        } else {
            ctr.link_by_name(target)
                .map_err(sys(format!("{field}: find it in the container")))?
        }
        .ok_or_else(|| {
            Error::sys(
                format!("{field}: find it in the container after the move"),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        })?;
        for a in &addrs {
            ctr.add_addr(moved.index, a).map_err(sys(format!(
                "{field}: give {} its address {} again in the container",
                echo(&moved.name),
                a.show()
            )))?;
        }
        ctr.set_up(moved.index)
            .map_err(sys(format!("{field}: set {} up", echo(&moved.name))))?;
    }
    Ok(())
}

/// A netlink socket of the network namespace `ns`: opened there (berth's single thread enters
/// it for that call only), then used from berth's own namespace `own`.
fn socket_in(ns: &OwnedFd, own: &OwnedFd) -> Result<Socket> {
    use nix::sched::{setns, CloneFlags};
    setns(ns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::sys("enter the container's network namespace", e))?;
    let sock = Socket::open();
    if setns(own, CloneFlags::CLONE_NEWNET).is_err() {
        // Going on in the container's network namespace would run the rest of create (and
        // its hooks) there: nothing is safe to do but stop.
        eprintln!("berth: cannot return to its own network namespace");
        std::process::abort();
    }
    sock.map_err(|e| Error::sys("open a netlink socket in the container", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(v: serde_json::Value) -> Linux {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn config_rules() {
        use serde_json::json;
        let net = json!([{"type": "network"}]);
        validate(&linux(json!({"namespaces": net, "netDevices": {"eth1": {}, "v0": {"name": "c%d"}, "v1": {"name": "c%d"}}}))).unwrap();
        validate(&linux(json!({"namespaces": [{"type": "network", "path": "/run/netns/x"}], "netDevices": {"eth1": {"name": "in0"}}}))).unwrap();
        validate(&linux(json!({"netDevices": {}}))).unwrap();
        for (devs, want) in [
            (
                json!({"eth1": {"name": "a/b"}}),
                "linux.netDevices[\"eth1\"].name: \"a/b\" holds a '/'",
            ),
            (
                json!({"eth1": {"name": "0123456789abcdef"}}),
                "longer than 15 bytes",
            ),
            (
                json!({"eth%d": {}}),
                "linux.netDevices[\"eth%d\"]: \"eth%d\" names no device",
            ),
            (json!({"eth1": {"name": "e%s"}}), "not followed by 'd'"),
            (json!({"eth1": {"name": "e%d%d"}}), "more than one '%'"),
            (json!({"eth1": {"name": "."}}), "not a valid interface name"),
            (
                json!({"a": {"name": "x"}, "b": {"name": "x"}}),
                "linux.netDevices[\"b\"].name: \"x\" is also the name of \"a\"",
            ),
            (json!({"a": {}, "b": {"name": "a"}}), "is also the name of"),
        ] {
            let e = validate(&linux(json!({"namespaces": net, "netDevices": devs}))).unwrap_err();
            assert!(e.contains(want), "{e} should contain {want}");
        }
        let e = validate(&linux(json!({"netDevices": {"eth1": {}}}))).unwrap_err();
        assert!(
            e.starts_with("linux.netDevices: moving network devices needs a network namespace"),
            "{e}"
        );
    }

    #[test]
    fn only_permanent_global_addresses_are_kept() {
        let a = |flags, scope| Addr {
            family: 2,
            prefix_len: 24,
            flags,
            scope,
            index: 1,
            address: None,
            local: Some(vec![10, 0, 0, 1]),
            broadcast: None,
        };
        let kept = kept(vec![
            a(netlink::IFA_F_PERMANENT, 0),
            a(0, 0),
            a(netlink::IFA_F_PERMANENT, 253),
        ]);
        assert_eq!(kept, vec![a(netlink::IFA_F_PERMANENT, 0)]);
    }
}
