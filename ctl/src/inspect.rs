//! `inspect [-f FORMAT] NAME...`: containers in docker's JSON shape (the fields people script
//! against), images as `image inspect` shows them. What berthctl does not have yet (restart
//! policies, health, networks of their own) is there with docker's value for "none".

use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};

use crate::containers::{Container, Status};
use crate::ctx::Ctx;
use crate::util;

/// Docker's "never" time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn inspect(ctx: &Ctx, names: &[String], format: Option<&str>) -> Result<i32> {
    let mut values = Vec::new();
    let mut code = 0;
    for n in names {
        if let Ok(c) = ctx.find(n) {
            values.push(container_value(ctx, &c));
            continue;
        }
        match ctx.store.image(n) {
            Ok(rec) => values.push(crate::images::inspect_value(ctx, &rec)?),
            Err(_) => {
                eprintln!("Error: No such object: {n}");
                code = 1;
            }
        }
    }
    util::print_values(&values, format)?;
    Ok(code)
}

/// One container as docker shows it.
pub fn container_value(ctx: &Ctx, c: &Container) -> Value {
    let rt = ctx.runtime_state_json(&c.id);
    let status = ctx.status_with(c, rt.as_ref().and_then(|s| s["status"].as_str()));
    let exit = ctx.exit_of(&c.id);
    let pid = match status {
        Status::Running | Status::Paused => {
            rt.as_ref().and_then(|s| s["pid"].as_i64()).unwrap_or(0)
        }
        _ => 0,
    };
    let (name, running, paused) = match status {
        Status::Running => ("running", true, false),
        Status::Paused => ("paused", true, true),
        Status::Created => ("created", false, false),
        Status::Exited(..) => ("exited", false, false),
        Status::Restarting => ("restarting", true, false),
        Status::Unknown => ("dead", false, false),
    };
    let policy = crate::restart::Policy::parse(&c.restart).unwrap_or(crate::restart::Policy::No);
    let time = |t: u64| {
        if t == 0 {
            ZERO_TIME.to_string()
        } else {
            util::rfc3339(t)
        }
    };
    let spec: Value = std::fs::read(ctx.bundle_dir(&c.id).join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let p = &spec["process"];
    let net_mode = crate::netns::mode(c, &spec);
    let ep = crate::endpoint::load(ctx, &c.id);
    let binds: Vec<&Value> = spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["type"] == "bind"
                && !m["source"].as_str().is_some_and(|s| {
                    s.starts_with(&ctx.container_dir(&c.id).to_string_lossy().into_owned())
                })
        })
        .collect();
    let mounts: Vec<Value> = binds
        .iter()
        .map(|m| {
            let ro = m["options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|x| x == "ro"));
            let vols = ctx.root.join("volumes");
            let volume = m["source"]
                .as_str()
                .and_then(|s| Path::new(s).strip_prefix(&vols).ok())
                .and_then(|r| r.iter().next())
                .map(|n| n.to_string_lossy().into_owned());
            if let Some(name) = volume {
                return json!({
                    "Type": "volume",
                    "Name": name,
                    "Source": m["source"],
                    "Destination": m["destination"],
                    "Driver": "local",
                    "Mode": if ro { "ro" } else { "z" },
                    "RW": !ro,
                    "Propagation": "",
                });
            }
            json!({
                "Type": "bind",
                "Source": m["source"],
                "Destination": m["destination"],
                "Mode": if ro { "ro" } else { "" },
                "RW": !ro,
                "Propagation": "rprivate",
            })
        })
        .collect();
    let user = match (p["user"]["uid"].as_u64(), p["user"]["gid"].as_u64()) {
        (Some(0), Some(0)) | (None, _) => String::new(),
        (Some(u), Some(g)) => format!("{u}:{g}"),
        (Some(u), None) => u.to_string(),
    };
    let res = &spec["linux"]["resources"];
    json!({
        "Id": c.id,
        "Created": time(c.created),
        "Path": c.command.first(),
        "Args": c.command.get(1..).unwrap_or_default(),
        "State": {
            "Status": name,
            "Running": running,
            "Paused": paused,
            "Restarting": status == Status::Restarting,
            "OOMKilled": exit.as_ref().is_some_and(|e| e.oom_killed),
            "Dead": name == "dead",
            "Pid": pid,
            "ExitCode": exit.as_ref().map_or(0, |e| e.code),
            "Error": "",
            "StartedAt": time(c.started),
            "FinishedAt": time(exit.as_ref().map_or(0, |e| e.finished)),
            "Health": c.health.as_ref().map(|_| {
                crate::health::read(ctx, &c.id).unwrap_or_default()
            }),
        },
        "Image": c.image_id,
        "ResolvConfPath": path_if(ctx.container_dir(&c.id).join("resolv.conf")),
        "HostnamePath": path_if(ctx.container_dir(&c.id).join("hostname")),
        "HostsPath": path_if(ctx.container_dir(&c.id).join("hosts")),
        "LogPath": if c.detached { json!(ctx.log_path(&c.id)) } else { json!("") },
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Driver": match ctx.store.snapshots.mode() {
            image::snapshot::Mode::Overlay => "overlay",
            image::snapshot::Mode::Copy => "copy",
        },
        "Platform": "linux",
        "Mounts": mounts,
        "Config": {
            "Hostname": spec["hostname"],
            "User": user,
            "Tty": c.tty,
            "OpenStdin": false,
            "Env": p["env"],
            "Cmd": c.command,
            "Image": c.image,
            "WorkingDir": p["cwd"],
            "Labels": {},
            "StopSignal": c.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
            "Healthcheck": c.health.as_ref().map(|h| json!({
                "Test": std::iter::once("CMD".to_string()).chain(h.test.iter().cloned()).collect::<Vec<_>>(),
                "Interval": h.interval_ms * 1_000_000,
                "Timeout": h.timeout_ms * 1_000_000,
                "StartPeriod": h.start_period_ms * 1_000_000,
                "Retries": h.retries,
            })),
        },
        "HostConfig": {
            "Binds": binds.iter().map(|m| format!("{}:{}", m["source"].as_str().unwrap_or(""), m["destination"].as_str().unwrap_or(""))).collect::<Vec<_>>(),
            "NetworkMode": if net_mode == crate::network::DEFAULT { "default" } else { net_mode.as_str() },
            "PortBindings": crate::ports::inspect_map(&c.net.ports, &[]),
            "Dns": c.net.dns,
            "ExtraHosts": c.net.add_hosts.iter().map(|(n, ip)| format!("{n}:{ip}")).collect::<Vec<_>>(),
            "AutoRemove": c.auto_remove,
            "RestartPolicy": {"Name": policy.name(), "MaximumRetryCount": policy.max_retries()},
            "Memory": res["memory"]["limit"].as_i64().unwrap_or(0),
            "PidsLimit": res["pids"]["limit"].as_i64(),
            "CgroupParent": spec["linux"]["cgroupsPath"],
        },
        "NetworkSettings": network_settings(ctx, c, ep.as_ref()),
    })
}

/// NetworkSettings in docker's shape: the address and gateway at the top for the default
/// network (docker's legacy fields), every network's under Networks, published ports.
fn network_settings(ctx: &Ctx, c: &Container, ep: Option<&crate::endpoint::Endpoint>) -> Value {
    let exposed = crate::netns::exposed_ports(ctx, &c.image_id);
    let Some(e) = ep else {
        return json!({"Bridge": "", "SandboxKey": "", "IPAddress": "", "IPPrefixLen": 0,
            "Gateway": "", "MacAddress": "", "Ports": crate::ports::inspect_map(&[], &exposed),
            "Networks": {}});
    };
    let legacy = e.network == crate::network::DEFAULT;
    let pick = |v: &str| if legacy { v.to_string() } else { String::new() };
    json!({
        "Bridge": "",
        "SandboxID": crate::endpoint::netns_path(&c.id).file_name().map(|f| f.to_string_lossy().into_owned()),
        "SandboxKey": e.netns,
        "Ports": crate::ports::inspect_map(&e.ports, &exposed),
        "IPAddress": pick(&e.ip),
        "IPPrefixLen": if legacy { e.prefix } else { 0 },
        "Gateway": pick(&e.gateway),
        "MacAddress": pick(&e.mac),
        "EndpointID": if legacy { e.endpoint_id() } else { String::new() },
        "Networks": {
            e.network.clone(): {
                "IPAMConfig": c.net.ip.as_ref().map(|ip| json!({"IPv4Address": ip})),
                "Aliases": if legacy { Value::Null } else { json!([c.id[..12].to_string()]) },
                "NetworkID": e.network_id,
                "EndpointID": e.endpoint_id(),
                "Gateway": e.gateway,
                "IPAddress": e.ip,
                "IPPrefixLen": e.prefix,
                "MacAddress": e.mac,
            }
        },
    })
}

/// A path as docker shows it: empty when there is none.
fn path_if(p: std::path::PathBuf) -> String {
    if p.exists() {
        p.to_string_lossy().into_owned()
    } else {
        String::new()
    }
}
