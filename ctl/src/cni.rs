//! Running CNI plugins (the container network interface spec, 1.0): a network's list of plugin
//! configurations ("conflist") is carried out in order for ADD, each plugin given the previous
//! one's result, and in reverse order for DEL, each given the final ADD result; a plugin's
//! `capabilities` pick what it receives of the runtime's `runtimeConfig` (portMappings).
//! Plugins are found by their `type` in the plugin directories (CNI_PATH).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Where the plugins are and what one container's attachment is.
pub struct Call<'a> {
    pub plugin_dirs: &'a [PathBuf],
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// CNI_ARGS pairs (IP=...).
    pub args: Vec<(String, String)>,
    /// The runtime's dynamic settings: {"portMappings": [...]}.
    pub runtime_config: Value,
}

/// ADD: run every plugin of `conflist`; returns the final result. A plugin that fails undoes
/// nothing by itself: the caller runs [`del`] (as libcni's callers do).
pub fn add(conflist: &Value, call: &Call) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for p in plugins(conflist)? {
        let out = exec("ADD", conflist, p, prev.as_ref(), call)?;
        prev = Some(out);
    }
    prev.ok_or_else(|| anyhow!("network {}: no plugins", name(conflist)))
}

/// DEL: run every plugin in reverse order with `result` (the ADD result) as prevResult; goes on
/// past failures and returns the first.
pub fn del(conflist: &Value, result: Option<&Value>, call: &Call) -> Result<()> {
    let mut first = None;
    for p in plugins(conflist)?.iter().rev() {
        if let Err(e) = exec("DEL", conflist, p, result, call) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn name(conflist: &Value) -> &str {
    conflist["name"].as_str().unwrap_or("?")
}

fn plugins(conflist: &Value) -> Result<&Vec<Value>> {
    conflist["plugins"].as_array().ok_or_else(|| {
        anyhow!(
            "network {}: its configuration has no plugins",
            name(conflist)
        )
    })
}

/// How long one plugin may run.
const PLUGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn output_file(name: &str) -> Result<std::fs::File> {
    let name = std::ffi::CString::new(name).expect("no NUL");
    let fd = libcontainer::sys::memfd_create(&name, libc::MFD_CLOEXEC)
        .context("memfd_create for a plugin's output")?;
    Ok(std::fs::File::from(fd))
}

fn read_all(mut f: std::fs::File) -> Result<Vec<u8>> {
    use std::io::{Read, Seek};
    f.rewind()?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// Find the plugin binary `ty` in `dirs`.
pub fn find_plugin(dirs: &[PathBuf], ty: &str) -> Result<PathBuf> {
    if ty.is_empty() || ty.contains('/') {
        bail!("CNI plugin type {ty:?} is not a plugin name");
    }
    dirs.iter()
        .map(|d| d.join(ty))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "CNI plugin {ty:?} not found in {} (Debian: apt-get install containernetworking-plugins; or give --cni-path)",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            )
        })
}

/// The configuration one plugin gets on stdin.
fn plugin_config(conflist: &Value, plugin: &Value, prev: Option<&Value>, rc: &Value) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = conflist["name"].clone();
    conf["cniVersion"] = conflist["cniVersion"].clone();
    if let Some(p) = prev {
        conf["prevResult"] = p.clone();
    }
    if let Some(caps) = plugin["capabilities"].as_object() {
        let mut picked = serde_json::Map::new();
        for (k, on) in caps {
            if on.as_bool() == Some(true) && !rc[k].is_null() {
                picked.insert(k.clone(), rc[k].clone());
            }
        }
        if !picked.is_empty() {
            conf["runtimeConfig"] = Value::Object(picked);
        }
    }
    conf
}

fn exec(
    cmd: &str,
    conflist: &Value,
    plugin: &Value,
    prev: Option<&Value>,
    c: &Call,
) -> Result<Value> {
    let ty = plugin["type"].as_str().unwrap_or_default();
    let bin = find_plugin(c.plugin_dirs, ty)?;
    let conf = plugin_config(conflist, plugin, prev, &c.runtime_config);
    let mut args = vec!["IgnoreUnknown=1".to_string()];
    args.extend(c.args.iter().map(|(k, v)| format!("{k}={v}")));
    let path = std::env::join_paths(c.plugin_dirs).context("CNI_PATH")?;
    // Output into memory files, not pipes: a daemon a plugin leaves behind with its stdout
    // would keep a pipe open forever.
    let stdout = output_file("cni-stdout")?;
    let stderr = output_file("cni-stderr")?;
    let mut child = Command::new(&bin)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", c.container_id)
        .env("CNI_NETNS", c.netns)
        .env("CNI_IFNAME", c.ifname)
        .env("CNI_ARGS", args.join(";"))
        .env("CNI_PATH", path)
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .stdin(Stdio::piped())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .spawn()
        .with_context(|| format!("run CNI plugin {}", bin.display()))?;
    let input = serde_json::to_vec(&conf)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that fails early may not read its input: its exit says why.
        let _ = stdin.write_all(&input);
    }
    // A plugin that hangs (an xtables lock never released, say) would hold the network lock
    // of every container: it is killed after PLUGIN_TIMEOUT.
    let pidfd = libcontainer::sys::pidfd_open(child.id() as i32)
        .with_context(|| format!("pidfd of CNI plugin {ty}"))?;
    let done =
        libcontainer::sys::pidfd_wait(std::os::fd::AsFd::as_fd(&pidfd), Some(PLUGIN_TIMEOUT))
            .unwrap_or(false);
    if !done {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .with_context(|| format!("wait for CNI plugin {ty}"))?;
    let out = std::process::Output {
        status,
        stdout: read_all(stdout)?,
        stderr: read_all(stderr)?,
    };
    if !done {
        bail!(
            "network {}: CNI plugin {ty} {cmd} did not finish within {} s (killed)",
            name(conflist),
            PLUGIN_TIMEOUT.as_secs()
        );
    }
    let what = format!("network {}: CNI plugin {ty} {cmd}", name(conflist));
    if !out.status.success() {
        bail!("{what} failed: {}", plugin_error(&out.stdout, &out.stderr));
    }
    if cmd == "DEL" || out.stdout.iter().all(u8::is_ascii_whitespace) {
        // DEL prints nothing; a plugin that adds nothing passes the previous result on.
        return Ok(prev.cloned().unwrap_or(Value::Null));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("{what}: its result is not JSON"))
}

/// A plugin's error: its JSON error object ({"code","msg","details"}) or its stderr.
fn plugin_error(stdout: &[u8], stderr: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(stdout) {
        if let Some(msg) = v["msg"].as_str() {
            return match v["details"].as_str().filter(|d| !d.is_empty()) {
                Some(d) => format!("{msg}: {d}"),
                None => msg.to_string(),
            };
        }
    }
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        String::from_utf8_lossy(stdout).trim().to_string()
    } else {
        text.to_string()
    }
}

/// The container's first IPv4 address in a CNI result: (address, prefix length, gateway).
pub fn ipv4(result: &Value) -> Option<(String, u8, Option<String>)> {
    result["ips"].as_array()?.iter().find_map(|ip| {
        let (addr, len) = ip["address"].as_str()?.split_once('/')?;
        addr.parse::<std::net::Ipv4Addr>().ok()?;
        Some((
            addr.to_string(),
            len.parse().ok()?,
            ip["gateway"].as_str().map(String::from),
        ))
    })
}

/// The MAC address of `ifname` in the container (the interface with a sandbox) in a result.
pub fn mac(result: &Value, ifname: &str) -> Option<String> {
    result["interfaces"].as_array()?.iter().find_map(|i| {
        (i["name"] == ifname && i["sandbox"].as_str().is_some_and(|s| !s.is_empty()))
            .then(|| i["mac"].as_str().map(String::from))
            .flatten()
    })
}

/// The runtime config for the portmap plugin.
pub fn port_mappings(ports: &[crate::ports::Port]) -> Value {
    json!({
        "portMappings": ports.iter().map(|p| json!({
            "hostPort": p.host_port,
            "containerPort": p.container_port,
            "protocol": p.proto,
            "hostIP": p.host_ip,
        })).collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_gets_the_capabilities_it_asks_for_and_the_previous_result() {
        let list = json!({"cniVersion": "1.0.0", "name": "n", "plugins": []});
        let plugin =
            json!({"type": "portmap", "capabilities": {"portMappings": true, "ips": false}});
        let rc = json!({"portMappings": [{"hostPort": 1}], "ips": ["10.0.0.2/24"]});
        let prev = json!({"ips": []});
        let c = plugin_config(&list, &plugin, Some(&prev), &rc);
        assert_eq!(c["name"], "n");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["prevResult"], prev);
        assert_eq!(
            c["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 1}]})
        );
        let bridge = json!({"type": "bridge"});
        assert!(plugin_config(&list, &bridge, None, &rc)
            .get("runtimeConfig")
            .is_none());
    }

    #[test]
    fn results_and_errors_are_read_as_the_spec_writes_them() {
        let r = json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "br0", "mac": "aa"}, {"name": "eth0", "mac": "bb", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "10.87.0.5/16", "gateway": "10.87.0.1", "interface": 1}]});
        assert_eq!(
            ipv4(&r),
            Some(("10.87.0.5".into(), 16, Some("10.87.0.1".into())))
        );
        assert_eq!(mac(&r, "eth0").as_deref(), Some("bb"));
        assert_eq!(
            plugin_error(
                br#"{"code":7,"msg":"failed to allocate","details":"no IPs left"}"#,
                b""
            ),
            "failed to allocate: no IPs left"
        );
        assert_eq!(plugin_error(b"", b"boom\n"), "boom");
        assert!(find_plugin(&[PathBuf::from("/nonexistent")], "bridge")
            .unwrap_err()
            .to_string()
            .contains("containernetworking-plugins"));
        assert!(find_plugin(&[PathBuf::from("/usr/bin")], "../sh").is_err());
    }
}
