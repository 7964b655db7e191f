//! A container's attachment to a CNI network, from its start to its stop:
//! - up (before the runtime creates it): a named network namespace (`/run/netns/berth-<id>`,
//!   lo up), its host ports allocated (see ports.rs), CNI ADD of the network's plugins; what
//!   came of it is kept in `<container dir>/network.json` (with the network's configuration,
//!   so that DEL works after `network rm` or an edit of the file);
//! - down (when its exit is recorded, on `rm`, or on `start` after a crash of its monitor):
//!   CNI DEL in reverse order, the namespace file unmounted and removed, the record removed.
//!
//! Restarts by its policy keep the attachment (the same namespace, address and ports).
//! Containers on a user network find each other by name through their /etc/hosts, rewritten
//! in place (its bind mount pins the inode) whenever a container joins or leaves. Everything
//! here runs under the network lock (`<root>/network.lock`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::containers::Container;
use crate::ctx::Ctx;
use crate::network::Network;
use crate::ports::Port;

/// The container-side interface.
const IFNAME: &str = "eth0";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub network_id: String,
    /// The network's configuration as it was used for ADD.
    pub conflist: Value,
    pub netns: PathBuf,
    /// The final CNI result.
    pub result: Value,
    pub ip: String,
    pub prefix: u8,
    pub gateway: String,
    pub mac: String,
    /// The published ports, host ports allocated.
    pub ports: Vec<Port>,
    /// This attachment's own mark: its ADD, run without the lock, records its result only
    /// if the record is still this one (not removed or replaced meanwhile).
    #[serde(default)]
    pub nonce: String,
}

impl Endpoint {
    /// docker's EndpointID: 64 hex digits, stable for this attachment.
    pub fn endpoint_id(&self) -> String {
        image::digest::Digest::of(
            format!("{}/{}", self.network_id, self.netns.display()).as_bytes(),
        )
        .hex()
        .to_string()
    }
}

fn record(ctx: &Ctx, id: &str) -> PathBuf {
    ctx.container_dir(id).join("network.json")
}

/// The named network namespace of container `id`.
pub fn netns_path(id: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(format!("berth-{}", &id[..id.len().min(16)]))
}

pub fn load(ctx: &Ctx, id: &str) -> Option<Endpoint> {
    serde_json::from_slice(&std::fs::read(record(ctx, id)).ok()?).ok()
}

/// Every container's attachment that is live: its namespace file is there (after a reboot,
/// /run/netns is empty and the records are stale; [`clear_stale`] undoes them).
pub fn all(ctx: &Ctx) -> Vec<(String, Endpoint)> {
    all_records(ctx)
        .into_iter()
        .filter(|(_, e)| e.netns.exists())
        .collect()
}

/// Undo the attachments whose namespace is gone (a reboot, or a crash of the host): CNI DEL
/// releases their addresses (host-local keeps them in /var/lib/cni across reboots), and their
/// records go. Under the network lock.
fn clear_stale(ctx: &Ctx) {
    for (id, ep) in all_records(ctx) {
        if ep.netns.exists() {
            continue;
        }
        let mut call = cni_call(ctx, &id, &ep.netns);
        call.runtime_config = crate::cni::port_mappings(&ep.ports);
        let _ = crate::cni::del(
            &ep.conflist,
            Some(&ep.result).filter(|r| !r.is_null()),
            &call,
        );
        let _ = std::fs::remove_file(record(ctx, &id));
    }
}

fn all_records(ctx: &Ctx) -> Vec<(String, Endpoint)> {
    let Ok(entries) = std::fs::read_dir(&ctx.containers) else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().into_string().ok()?;
            let ep = load(ctx, &id)?;
            Some((id, ep))
        })
        .collect()
}

fn cni_call<'a>(ctx: &'a Ctx, id: &'a str, netns: &'a Path) -> crate::cni::Call<'a> {
    crate::cni::Call {
        plugin_dirs: &ctx.cni_path,
        container_id: id,
        netns,
        ifname: IFNAME,
        args: vec![],
        runtime_config: Value::Null,
    }
}

/// Attach `c` to its network unless it is attached (a restart) or has none of CNI's.
pub fn up(ctx: &Ctx, c: &Container) -> Result<()> {
    match begin(ctx, c)? {
        Some(p) => p.finish(ctx),
        None => Ok(()),
    }
}

/// An attachment begun: its namespace exists and its ports are taken (recorded), the plugins
/// have yet to run ([`Pending::finish`], which may run while the runtime creates the
/// container in that namespace).
pub struct Pending {
    id: String,
    ep: Endpoint,
    ip: Option<String>,
}

/// Begin `c`'s attachment: under the network lock, allocate its ports, make its namespace and
/// record both (so that another container sees the ports taken, and `down` undoes a crash
/// from here on). None: it has no CNI network, or is attached already (a restart).
pub fn begin(ctx: &Ctx, c: &Container) -> Result<Option<Pending>> {
    if let Some(other) = c.net.mode.strip_prefix("container:") {
        join_other(ctx, c, other)?;
        return Ok(None);
    }
    let Some(net_name) = c.net.cni_network() else {
        return Ok(None);
    };
    let _lock = ctx.network_lock()?;
    let netns = netns_path(&c.id);
    if load(ctx, &c.id).is_some_and(|e| !e.result.is_null()) && netns.exists() {
        return Ok(None);
    }
    clear_stale(ctx);
    // A record of an earlier attachment that cannot be reused (its ADD never finished) is
    // undone first: host-local would refuse the same container id again.
    if let Some(old) = load(ctx, &c.id) {
        let mut call = cni_call(ctx, &c.id, &old.netns);
        call.runtime_config = crate::cni::port_mappings(&old.ports);
        let _ = crate::cni::del(
            &old.conflist,
            Some(&old.result).filter(|r| !r.is_null()),
            &call,
        );
        let _ = std::fs::remove_file(record(ctx, &c.id));
    }
    let net = crate::network::find(&ctx.cni_conf_dir, net_name)?;
    let taken: Vec<Port> = all(ctx)
        .into_iter()
        .filter(|(id, _)| *id != c.id)
        .flat_map(|(_, e)| e.ports)
        .collect();
    let ports = crate::ports::allocate(&c.net.ports, &taken)?;
    // A namespace file a crashed run left is replaced.
    crate::netns::remove(&netns)?;
    crate::netns::create(&netns)?;
    let ep = Endpoint {
        network: net.name.clone(),
        network_id: net.id.clone(),
        conflist: crate::network::for_ports(&net.conflist, !ports.is_empty()),
        netns: netns.clone(),
        result: Value::Null,
        ip: String::new(),
        prefix: 0,
        gateway: String::new(),
        mac: String::new(),
        ports,
        nonce: image::fsutil::random_hex(8),
    };
    if let Err(e) = save(ctx, &c.id, &ep) {
        let _ = crate::netns::remove(&netns);
        return Err(e);
    }
    Ok(Some(Pending {
        id: c.id.clone(),
        ep,
        ip: c.net.ip.clone(),
    }))
}

fn save(ctx: &Ctx, id: &str, ep: &Endpoint) -> Result<()> {
    let data = serde_json::to_vec_pretty(ep)?;
    image::fsutil::write_atomic(&record(ctx, id), &data).context("record the container's network")
}

impl Pending {
    /// Run the plugins (CNI ADD) and record the result; on failure, undo it all.
    pub fn finish(self, ctx: &Ctx) -> Result<()> {
        let Pending { id, mut ep, ip } = self;
        let mut call = cni_call(ctx, &id, &ep.netns);
        if let Some(ip) = &ip {
            call.args.push(("IP".into(), ip.clone()));
        }
        call.runtime_config = crate::cni::port_mappings(&ep.ports);
        let undo = |result: Option<&Value>| {
            let _ = crate::cni::del(&ep.conflist, result, &call);
            let _lock = ctx.network_lock();
            if load(ctx, &id).is_some_and(|now| now.nonce == ep.nonce) {
                let _ = crate::netns::remove(&ep.netns);
                let _ = std::fs::remove_file(record(ctx, &id));
            }
        };
        let result = match crate::cni::add(&ep.conflist, &call) {
            Ok(r) => r,
            Err(e) => {
                undo(None);
                return Err(e).with_context(|| format!("connect to network {}", ep.network));
            }
        };
        let (addr, prefix, gateway) = crate::cni::ipv4(&result).unwrap_or_default();
        ep.mac = crate::cni::mac(&result, IFNAME).unwrap_or_default();
        ep.ip = addr;
        ep.prefix = prefix;
        ep.gateway = gateway.unwrap_or_default();
        ep.result = result;
        let _lock = ctx.network_lock()?;
        // Removed (rm, stop) or begun again while the plugins ran: this attachment is undone,
        // not recorded.
        if load(ctx, &id).is_none_or(|now| now.nonce != ep.nonce) {
            drop(_lock);
            let _ = crate::cni::del(&ep.conflist, Some(&ep.result), &call);
            bail!("the container was removed or stopped while its network was set up");
        }
        if let Err(e) = save(ctx, &id, &ep) {
            drop(_lock);
            undo(Some(&ep.result));
            return Err(e);
        }
        if let Ok(net) = crate::network::find(&ctx.cni_conf_dir, &ep.network_id) {
            refresh_hosts(ctx, &net);
        }
        Ok(())
    }
}

/// Detach container `id` from its network (nothing to do when it is not attached).
pub fn down(ctx: &Ctx, id: &str) {
    let Ok(_lock) = ctx.network_lock() else {
        return;
    };
    let netns = netns_path(id);
    if let Some(ep) = load(ctx, id) {
        let mut call = cni_call(ctx, id, &ep.netns);
        call.runtime_config = crate::cni::port_mappings(&ep.ports);
        let result = Some(&ep.result).filter(|r| !r.is_null());
        if let Err(e) = crate::cni::del(&ep.conflist, result, &call) {
            eprintln!(
                "berthctl: container {}: disconnect from network {}: {e:#}",
                &id[..12.min(id.len())],
                ep.network
            );
        }
        let _ = crate::netns::remove(&ep.netns);
        let _ = std::fs::remove_file(record(ctx, id));
        if let Ok(net) = crate::network::find(&ctx.cni_conf_dir, &ep.network_id) {
            refresh_hosts(ctx, &net);
        }
    }
    let _ = crate::netns::remove(&netns);
}

/// /etc/hosts of a container: docker's lines, its own address (or none), `--add-host`s, and
/// on a user network the other containers there.
pub fn hosts_text(
    net: &crate::containers::NetSpec,
    own: Option<&Endpoint>,
    peers: &[(String, String, String)],
) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (name, ip) in &net.add_hosts {
        let ip = match (ip.as_str(), own) {
            ("host-gateway", Some(e)) => e.gateway.as_str(),
            _ => ip.as_str(),
        };
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    match own.filter(|e| !e.ip.is_empty()) {
        Some(e) => s.push_str(&format!("{}\t{}\n", e.ip, net.hostname)),
        // Loopback only (or not attached yet): the hostname resolves all the same.
        None => s.push_str(&format!("127.0.1.1\t{}\n", net.hostname)),
    }
    for (name, id, ip) in peers {
        s.push_str(&format!("{ip}\t{name} {}\n", &id[..12.min(id.len())]));
    }
    s
}

/// Rewrite the hosts files of `net`'s containers in place.
fn refresh_hosts(ctx: &Ctx, net: &Network) {
    let members: Vec<(Container, Endpoint)> = all(ctx)
        .into_iter()
        .filter(|(_, e)| e.network_id == net.id)
        .filter_map(|(id, e)| Some((ctx.load(&id).ok()?, e)))
        .collect();
    for (c, e) in &members {
        let peers: Vec<(String, String, String)> = if net.resolves_names() {
            members
                .iter()
                .filter(|(o, oe)| o.id != c.id && !oe.ip.is_empty())
                .map(|(o, oe)| (o.name.clone(), o.id.clone(), oe.ip.clone()))
                .collect()
        } else {
            vec![]
        };
        let _ = write_in_place(
            &ctx.container_dir(&c.id).join("hosts"),
            &hosts_text(&c.net, Some(e), &peers),
        );
    }
}

/// Overwrite `path` keeping its inode (a bind mount of it stays current): never through a
/// symlink, never a new file; what a container may have changed of it (its mode, its owner)
/// is set back to 0644 root:root.
pub fn write_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    std::os::unix::fs::fchown(&f, Some(0), Some(0))?;
    f.set_len(0)?;
    f.write_all(text.as_bytes())
}

/// A container's network from another's (`--network container:X`), resolved at each start:
/// X must run, and its namespace now is what the runtime joins (a pid of X's kept in the
/// config could be another process's after X stopped).
fn join_other(ctx: &Ctx, c: &Container, other: &str) -> Result<()> {
    let o = ctx
        .load(other)
        .map_err(|_| anyhow!("cannot join network of a non running container: {other} is gone"))?;
    if !ctx.status(&o).is_running() {
        bail!("cannot join network of a non running container: {}", o.name);
    }
    let path = match load(ctx, &o.id).filter(|e| e.netns.exists()) {
        Some(e) => e.netns,
        None => {
            let pid = ctx
                .runtime_state_json(&o.id)
                .and_then(|s| s["pid"].as_i64())
                .ok_or_else(|| anyhow!("container {}: its pid is unknown", o.name))?;
            PathBuf::from(format!("/proc/{pid}/ns/net"))
        }
    };
    let config = ctx.bundle_dir(&c.id).join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&config)?)
        .with_context(|| format!("read {}", config.display()))?;
    for n in spec["linux"]["namespaces"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if n["type"] == "network" {
            n["path"] = serde_json::json!(path);
        }
    }
    image::fsutil::write_atomic(&config, &serde_json::to_vec_pretty(&spec)?)?;
    Ok(())
}

/// /etc/resolv.conf for a container of its own network: the host's, without loopback
/// nameservers (unreachable from there; docker drops them, and uses Google's when none is
/// left), with `--dns` servers instead when given.
pub fn resolv_text(host: &str, dns: &[String]) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            let loopback = ns.starts_with("127.") || ns == "::1";
            if dns.is_empty() && !loopback {
                out.push_str(line);
                out.push('\n');
                servers += 1;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let add: Vec<String> = if !dns.is_empty() {
        dns.to_vec()
    } else if servers == 0 {
        vec!["8.8.8.8".into(), "8.8.4.4".into()]
    } else {
        vec![]
    };
    for ns in add {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_servers_as_docker_does() {
        let host = "# a comment\nsearch example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.53\noptions edns0\n";
        assert_eq!(
            resolv_text(host, &[]),
            "# a comment\nsearch example.org\nnameserver 192.0.2.53\noptions edns0\n"
        );
        assert_eq!(
            resolv_text("nameserver 127.0.0.1\nnameserver ::1\n", &[]),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_text(host, &["1.1.1.1".into()]),
            "# a comment\nsearch example.org\noptions edns0\nnameserver 1.1.1.1\n"
        );
    }
}
