//! Networks: CNI network configuration lists in the CNI configuration directory (NETCONFPATH,
//! default /etc/cni/net.d), the convention of containerd, nerdctl and Kubernetes.
//! - `bridge` (built in, never a file): bridge `berth0`, 10.87.0.0/24, NAT out through the
//!   host; as docker's default network, no name resolution between its containers.
//! - `network create NAME` writes `berth-NAME.conflist`: a bridge `br-<id>` of its own and a
//!   free /24 of 10.87.1.0-10.87.255.0 (or `--subnet`); its containers find each other by name.
//! - Every network's plugins: bridge (host-local IPAM, gateway, masquerade, hairpin),
//!   portmap (published ports, SNAT for hairpin and localhost; left out of a container's
//!   chain when it publishes none), firewall (iptables).
//! - Any other conflist in the directory (podman's, say) is a network too, used as it is.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::ctx::Ctx;

pub const DEFAULT: &str = "bridge";
const DEFAULT_BRIDGE: &str = "berth0";
const DEFAULT_SUBNET: &str = "10.87.0.0/24";
/// The prefix of the files `network create` writes.
const FILE_PREFIX: &str = "berth-";

#[derive(Clone, Debug)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub conflist: Value,
    /// Its file (none for the built-in `bridge`).
    pub file: Option<PathBuf>,
    pub created: u64,
}

impl Network {
    fn bridge_plugin(&self) -> Option<&Value> {
        self.conflist["plugins"]
            .as_array()?
            .iter()
            .find(|p| p["type"] == "bridge")
    }

    /// The bridge device of a bridge network.
    pub fn bridge(&self) -> Option<&str> {
        self.bridge_plugin()?["bridge"].as_str()
    }

    /// The first IPAM range's subnet and gateway.
    pub fn subnet(&self) -> Option<(String, Option<String>)> {
        let ipam = &self.bridge_plugin()?["ipam"];
        let r = &ipam["ranges"][0][0];
        let subnet = r["subnet"].as_str().or(ipam["subnet"].as_str())?;
        let gw = r["gateway"].as_str().or(ipam["gateway"].as_str());
        Some((subnet.to_string(), gw.map(String::from)))
    }

    /// Whether its containers find each other by name (docker: user networks only).
    pub fn resolves_names(&self) -> bool {
        self.name != DEFAULT
    }

    /// Whether berthctl made it (and may remove its bridge and IPAM state): its file is
    /// `berth-NAME.conflist` with a 64-hex id and a valid name.
    fn ours(&self) -> bool {
        let id_ok = self.conflist["berthID"]
            .as_str()
            .is_some_and(|i| i.len() == 64 && i.bytes().all(|b| b.is_ascii_hexdigit()));
        let file_ok = self.file.as_ref().is_some_and(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == format!("{FILE_PREFIX}{}.conflist", self.name))
        });
        id_ok && file_ok && crate::volumes::valid_name(&self.name)
    }

    /// The id as `network ls` shows it (12 characters).
    fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// A network's plugin list, berthctl's way.
fn conflist(name: &str, id: &str, bridge: &str, subnet: &str, gateway: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "berthID": id,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": subnet, "gateway": gateway}]]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "firewall", "backend": "iptables"}
        ]
    })
}

/// The plugin list a container runs: without portmap when it publishes no port (portmap with
/// nothing to map only checks its chains: ~20 iptables runs).
pub fn for_ports(conflist: &Value, has_ports: bool) -> Value {
    let mut c = conflist.clone();
    if !has_ports {
        if let Some(p) = c["plugins"].as_array_mut() {
            p.retain(|p| p["type"] != "portmap");
        }
    }
    c
}

fn default_network() -> Network {
    let id = image::digest::Digest::of(b"berth default bridge network")
        .hex()
        .to_string();
    Network {
        name: DEFAULT.into(),
        conflist: conflist(DEFAULT, &id, DEFAULT_BRIDGE, DEFAULT_SUBNET, "10.87.0.1"),
        id,
        file: None,
        created: 0,
    }
}

/// Every network: the built-in `bridge`, then the directory's conflists by name.
pub fn list(dir: &Path) -> Result<Vec<Network>> {
    let mut nets = vec![default_network()];
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(nets),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("conflist") {
            continue;
        }
        // A file that is not a network list is not ours to judge: skipped.
        let Ok(v) = std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|d| Ok(serde_json::from_slice::<Value>(&d)?))
        else {
            continue;
        };
        let Some(name) = v["name"].as_str().map(String::from) else {
            continue;
        };
        if name == DEFAULT || found.iter().any(|n: &Network| n.name == name) {
            continue;
        }
        let id = v["berthID"].as_str().map(String::from).unwrap_or_else(|| {
            image::digest::Digest::of(path.as_os_str().as_encoded_bytes())
                .hex()
                .to_string()
        });
        let created = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        found.push(Network {
            name,
            id,
            conflist: v,
            file: Some(path),
            created,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    nets.extend(found);
    Ok(nets)
}

/// A network by name, full id or id prefix.
pub fn find(dir: &Path, what: &str) -> Result<Network> {
    let all = list(dir)?;
    if let Some(n) = all.iter().find(|n| n.name == what) {
        return Ok(n.clone());
    }
    let by_id: Vec<&Network> = all
        .iter()
        .filter(|n| !what.is_empty() && n.id.starts_with(what))
        .collect();
    match by_id.as_slice() {
        [n] => Ok((*n).clone()),
        [] => bail!("network {what} not found"),
        _ => bail!("network {what} is ambiguous ({} matches)", by_id.len()),
    }
}

/// Whether a name is one `--network` takes for itself.
pub fn is_mode(name: &str) -> bool {
    matches!(name, "none" | "host") || name.starts_with("container:")
}

fn parse_subnet(s: &str) -> Result<(u32, u8)> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| anyhow!("--subnet {s:?}: use an IPv4 CIDR such as 10.90.0.0/24"))?;
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| anyhow!("--subnet {s:?}: {a:?} is not an IPv4 address"))?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|l| (8..=30).contains(l))
        .ok_or_else(|| anyhow!("--subnet {s:?}: the prefix length must be 8 to 30"))?;
    let mask = u32::MAX << (32 - len);
    if u32::from(addr) & !mask != 0 {
        bail!(
            "--subnet {s:?}: host bits are set (the network is {}/{len})",
            Ipv4Addr::from(u32::from(addr) & mask)
        );
    }
    Ok((u32::from(addr), len))
}

fn overlap(a: (u32, u8), b: (u32, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a.0 & mask == b.0 & mask
}

/// The host's IPv4 routes (destination, prefix length), from /proc/net/route.
fn host_routes() -> Vec<(u32, u8)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints the network-order bytes as a native u32.
            let (dst, mask) = (u32::from_be(dst), u32::from_be(mask));
            (mask != 0).then(|| (dst, mask.count_ones() as u8))
        })
        .collect()
}

/// `network create [--subnet CIDR] [--gateway IP] NAME`.
pub fn create(ctx: &Ctx, name: &str, subnet: Option<&str>, gateway: Option<&str>) -> Result<i32> {
    if !crate::volumes::valid_name(name) || is_mode(name) || name == DEFAULT {
        bail!("network name {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]+ (not bridge, host or none)");
    }
    let dir = &ctx.cni_conf_dir;
    let _lock = ctx.network_lock()?;
    let all = list(dir)?;
    if all.iter().any(|n| n.name == name) {
        bail!("network with name {name} already exists");
    }
    let used: Vec<(u32, u8)> = all
        .iter()
        .filter_map(|n| n.subnet())
        .filter_map(|(s, _)| parse_subnet(&s).ok())
        .collect();
    let net = match subnet {
        Some(s) => {
            let net = parse_subnet(s)?;
            if used.iter().any(|u| overlap(*u, net)) {
                bail!("--subnet {s}: Pool overlaps with other one on this address space");
            }
            net
        }
        None => {
            let routes = host_routes();
            (1..=255u32)
                .map(|i| ((10 << 24) | (87 << 16) | (i << 8), 24u8))
                .find(|c| !used.iter().chain(&routes).any(|u| overlap(*u, *c)))
                .ok_or_else(|| {
                    anyhow!("no free /24 left in 10.87.1.0-10.87.255.0: give --subnet")
                })?
        }
    };
    let gw = match gateway {
        Some(g) => {
            let ip: Ipv4Addr = g
                .parse()
                .map_err(|_| anyhow!("--gateway {g:?} is not an IPv4 address"))?;
            if !overlap((u32::from(ip), 32), net) {
                bail!("--gateway {g} is not in the subnet");
            }
            g.to_string()
        }
        None => Ipv4Addr::from(net.0 + 1).to_string(),
    };
    let subnet = format!("{}/{}", Ipv4Addr::from(net.0), net.1);
    let id = image::fsutil::random_hex(32);
    let list = conflist(name, &id, &format!("br-{}", &id[..12]), &subnet, &gw);
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("{FILE_PREFIX}{name}.conflist"));
    if path.exists() {
        bail!(
            "{} exists (a network of another name?): remove it first",
            path.display()
        );
    }
    image::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(&list)?)
        .with_context(|| format!("write {}", path.display()))?;
    println!("{id}");
    Ok(0)
}

/// The containers attached to `net` now: (container id, endpoint).
fn attached(ctx: &Ctx, net: &Network) -> Vec<(String, crate::endpoint::Endpoint)> {
    crate::endpoint::all(ctx)
        .into_iter()
        .filter(|(_, e)| e.network_id == net.id)
        .collect()
}

/// `network rm NAME...`: its file, bridge and IPAM state; never one with containers.
pub fn rm(ctx: &Ctx, names: &[String]) -> Result<i32> {
    let mut failed = false;
    for n in names {
        let r = (|| -> Result<()> {
            let _lock = ctx.network_lock()?;
            let net = find(&ctx.cni_conf_dir, n)?;
            let Some(file) = &net.file else {
                bail!(
                    "{} is a pre-defined network and cannot be removed",
                    net.name
                );
            };
            // A container that is only created or stopped counts too (docker's rule).
            let attached: Vec<String> = attached(ctx, &net).into_iter().map(|(id, _)| id).collect();
            let configured: Vec<String> = ctx
                .list()?
                .into_iter()
                .filter(|c| c.net.mode == net.name || attached.contains(&c.id))
                .map(|c| c.name)
                .collect();
            if !configured.is_empty() {
                bail!(
                    "error while removing network: network {} id {} has active endpoints ({})",
                    net.name,
                    net.id,
                    configured.join(", ")
                );
            }
            std::fs::remove_file(file).with_context(|| format!("remove {}", file.display()))?;
            if net.ours() {
                if let Some(br) = net.bridge() {
                    delete_link(br);
                }
                let _ =
                    image::fsutil::remove_path(&Path::new("/var/lib/cni/networks").join(&net.name));
            }
            Ok(())
        })();
        match r {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("berthctl: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Remove a network device if there is one (`ip link del`; /sys/class/net may show another
/// network namespace than ours, so no look first).
fn delete_link(name: &str) {
    let _ = std::process::Command::new("ip")
        .args(["link", "del", name])
        .stderr(std::process::Stdio::null())
        .status();
}

/// `network ls [-q]`: docker's columns; host and none too.
pub fn ls(ctx: &Ctx, quiet: bool, format: Option<&str>) -> Result<i32> {
    let mut rows: Vec<(String, String, &str)> = list(&ctx.cni_conf_dir)?
        .into_iter()
        .map(|n| {
            let driver = if n.bridge().is_some() {
                "bridge"
            } else {
                "cni"
            };
            (n.short_id().to_string(), n.name.clone(), driver)
        })
        .collect();
    for (name, driver) in [("host", "host"), ("none", "null")] {
        let id = image::digest::Digest::of(name.as_bytes())
            .short()
            .to_string();
        rows.push((id, name.to_string(), driver));
    }
    rows.sort_by(|a, b| a.1.cmp(&b.1));
    if let (Some(f), false) = (format, quiet) {
        let rows: Vec<_> = rows
            .into_iter()
            .map(|(id, name, driver)| {
                serde_json::json!({"ID": id, "Name": name, "Driver": driver, "Scope": "local"})
            })
            .collect();
        crate::util::print_rows(&rows, f)?;
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    if !quiet {
        writeln!(
            out,
            "{:<15}{:<20}{:<10}SCOPE",
            "NETWORK ID", "NAME", "DRIVER"
        )?;
    }
    for (id, name, driver) in rows {
        if quiet {
            writeln!(out, "{id}")?;
        } else {
            writeln!(out, "{id:<15}{name:<20}{driver:<10}local")?;
        }
    }
    Ok(0)
}

/// `network inspect NAME...` in docker's shape.
pub fn inspect(ctx: &Ctx, names: &[String], format: Option<&str>) -> Result<i32> {
    let mut values = Vec::new();
    let mut code = 0;
    for n in names {
        let net = match find(&ctx.cni_conf_dir, n) {
            Ok(net) => net,
            Err(e) => {
                eprintln!("Error: {e:#}");
                code = 1;
                continue;
            }
        };
        let mut containers = serde_json::Map::new();
        for (id, e) in attached(ctx, &net) {
            let name = ctx.load(&id).map(|c| c.name).unwrap_or_default();
            containers.insert(
                id,
                json!({
                    "Name": name,
                    "EndpointID": e.endpoint_id(),
                    "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, e.prefix),
                    "IPv6Address": "",
                }),
            );
        }
        let config: Vec<Value> = net
            .subnet()
            .map(|(s, g)| json!({"Subnet": s, "Gateway": g.unwrap_or_default()}))
            .into_iter()
            .collect();
        let mut options = serde_json::Map::new();
        if let Some(br) = net.bridge() {
            options.insert("com.docker.network.bridge.name".into(), json!(br));
        }
        values.push(json!({
            "Name": net.name,
            "Id": net.id,
            "Created": crate::util::rfc3339(net.created),
            "Scope": "local",
            "Driver": if net.bridge().is_some() { "bridge" } else { "cni" },
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": false,
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": options,
            "Labels": {},
            "ConfigFile": net.file,
        }));
    }
    crate::util::print_values(&values, format)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_checked_and_overlaps_found() {
        assert_eq!(parse_subnet("10.90.0.0/24").unwrap(), (0x0a5a_0000, 24));
        assert!(parse_subnet("10.90.0.1/24")
            .unwrap_err()
            .to_string()
            .contains("10.90.0.0/24"));
        for bad in [
            "10.90.0.0",
            "10.90.0.0/33",
            "fd00::/64",
            "x/24",
            "10.0.0.0/4",
        ] {
            assert!(parse_subnet(bad).is_err(), "{bad}");
        }
        let a = parse_subnet("10.87.0.0/16").unwrap();
        assert!(overlap(a, parse_subnet("10.87.3.0/24").unwrap()));
        assert!(!overlap(a, parse_subnet("10.88.0.0/24").unwrap()));
    }

    #[test]
    fn the_directorys_network_lists_are_networks_and_the_default_is_built_in() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("87-podman.conflist"),
            r#"{"cniVersion":"0.4.0","name":"podman","plugins":[{"type":"bridge","bridge":"cni-podman0","ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16","gateway":"10.88.0.1"}]]}}]}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("broken.conflist"), "{").unwrap();
        std::fs::write(d.path().join("notes.txt"), "x").unwrap();
        let all = list(d.path()).unwrap();
        let names: Vec<&str> = all.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["bridge", "podman"]);
        assert_eq!(all[0].bridge(), Some("berth0"));
        assert_eq!(
            all[1].subnet(),
            Some(("10.88.0.0/16".into(), Some("10.88.0.1".into())))
        );
        assert_eq!(find(d.path(), &all[1].id[..8]).unwrap().name, "podman");
        assert!(find(d.path(), "nope")
            .unwrap_err()
            .to_string()
            .contains("network nope not found"));
        assert!(!all[0].resolves_names() && all[1].resolves_names());
    }
}
