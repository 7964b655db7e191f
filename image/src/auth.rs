//! Registry credentials where docker keeps them, so that `docker login` and `berthctl login`
//! serve each other: `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`) with
//! - `credHelpers`: a `docker-credential-<name>` program per registry,
//! - `credsStore`: one such program for every registry,
//! - `auths`: `{"<registry>": {"auth": base64("user:password")}}` otherwise.
//!
//! Registries are keyed by host (`127.0.0.1:5000`); Docker Hub by
//! `https://index.docker.io/v1/`. Keys written as URLs (`https://host/v1/`) match their host.
//! The file is written atomically with mode 0600, other keys kept as they were.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// Docker Hub's key in the credential file.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// The credential file: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".docker/config.json"),
    }
}

/// The key of a registry (a reference's domain: `docker.io`, `host:port`).
pub fn key_for(domain: &str) -> String {
    match domain {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        d => d.to_string(),
    }
}

/// The host a key names (`https://host:5000/v1/` -> `host:5000`).
fn host_of(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn read() -> Result<Map<String, Value>> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| Error::invalid(format!("credentials {}", p.display()), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(Error::io(format!("read {}", p.display()), e)),
    }
}

fn write(cfg: &Map<String, Value>) -> Result<()> {
    let p = config_path();
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(format!("create {}", d.display()), e))?;
    }
    let tmp = p.with_extension(format!("tmp-{}", crate::fsutil::random_hex(4)));
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(cfg).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &p)
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!("write {}", p.display()), e));
    }
    Ok(())
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}
impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// The helper configured for `key`, if any.
fn helper_for(cfg: &Map<String, Value>, key: &str) -> Option<String> {
    let host = host_of(key);
    cfg.get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| host_of(k) == host)
                .and_then(|(_, v)| v.as_str())
        })
        .or_else(|| cfg.get("credsStore").and_then(Value::as_str))
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

fn run_helper(helper: &str, action: &str, input: &[u8]) -> Result<(bool, Vec<u8>)> {
    let prog = format!("docker-credential-{helper}");
    let mut child = Command::new(&prog)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("run {prog} {action}"), e))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("run {prog} {action}"), e))?;
    let mut text = out.stdout;
    text.extend_from_slice(&out.stderr);
    Ok((out.status.success(), text))
}

/// The user and password (or token) for registry `domain`, if any are kept.
pub fn lookup(domain: &str) -> Result<Option<(String, String)>> {
    let key = key_for(domain);
    let cfg = read()?;
    if let Some(h) = helper_for(&cfg, &key) {
        let (ok, out) = run_helper(&h, "get", key.as_bytes())?;
        if !ok {
            let msg = String::from_utf8_lossy(&out);
            if msg.contains("not found") {
                return Ok(None);
            }
            return Err(Error::Registry(format!(
                "docker-credential-{h} get {key}: {}",
                msg.trim()
            )));
        }
        let v: Value = serde_json::from_slice(&out)
            .map_err(|e| Error::Registry(format!("docker-credential-{h} get: {e}")))?;
        return Ok(Some((
            v["Username"].as_str().unwrap_or("").to_string(),
            v["Secret"].as_str().unwrap_or("").to_string(),
        )));
    }
    let host = host_of(&key);
    let Some(entry) = cfg
        .get("auths")
        .and_then(Value::as_object)
        .and_then(|m| m.iter().find(|(k, _)| host_of(k) == host).map(|(_, v)| v))
    else {
        return Ok(None);
    };
    if let Some(a) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let raw = base64_decode(a).ok_or_else(|| {
            Error::invalid(
                format!("credentials for {key}"),
                "auth is not base64 of user:password",
            )
        })?;
        let s = String::from_utf8_lossy(&raw).into_owned();
        let (u, p) = s
            .split_once(':')
            .ok_or_else(|| Error::invalid(format!("credentials for {key}"), "auth has no ':'"))?;
        return Ok(Some((u.to_string(), p.to_string())));
    }
    match (entry["username"].as_str(), entry["password"].as_str()) {
        (Some(u), Some(p)) => Ok(Some((u.to_string(), p.to_string()))),
        _ => Ok(None),
    }
}

/// Keep `user`/`password` for `domain` (through its helper when one is configured).
pub fn store(domain: &str, user: &str, password: &str) -> Result<()> {
    let key = key_for(domain);
    let mut cfg = read()?;
    if let Some(h) = helper_for(&cfg, &key) {
        let input = json!({"ServerURL": key, "Username": user, "Secret": password});
        let (ok, out) = run_helper(&h, "store", input.to_string().as_bytes())?;
        if !ok {
            return Err(Error::Registry(format!(
                "docker-credential-{h} store: {}",
                String::from_utf8_lossy(&out).trim()
            )));
        }
        return Ok(());
    }
    let auths = cfg.entry("auths").or_insert_with(|| json!({}));
    if !auths.is_object() {
        *auths = json!({});
    }
    let map = auths.as_object_mut().expect("an object");
    let host = host_of(&key).to_string();
    map.retain(|k, _| host_of(k) != host);
    map.insert(
        key,
        json!({"auth": crate::registry::base64(format!("{user}:{password}").as_bytes())}),
    );
    write(&cfg)
}

/// Forget the credentials of `domain`; false when there were none.
pub fn erase(domain: &str) -> Result<bool> {
    let key = key_for(domain);
    let mut cfg = read()?;
    if let Some(h) = helper_for(&cfg, &key) {
        let (ok, out) = run_helper(&h, "erase", key.as_bytes())?;
        if !ok && !String::from_utf8_lossy(&out).contains("not found") {
            return Err(Error::Registry(format!(
                "docker-credential-{h} erase: {}",
                String::from_utf8_lossy(&out).trim()
            )));
        }
        return Ok(ok);
    }
    let host = host_of(&key).to_string();
    let Some(map) = cfg.get_mut("auths").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    let before = map.len();
    map.retain(|k, _| host_of(k) != host);
    if map.len() == before {
        return Ok(false);
    }
    write(&cfg)?;
    Ok(true)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let len = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        for i in 0..len {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hosts_and_base64() {
        assert_eq!(key_for("docker.io"), DOCKER_HUB);
        assert_eq!(key_for("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(host_of(DOCKER_HUB), "index.docker.io");
        assert_eq!(host_of("https://reg:5000/v2/"), "reg:5000");
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        for s in ["", "a", "ab", "abc", "abcd", "u:p\u{e9}"] {
            let e = crate::registry::base64(s.as_bytes());
            assert_eq!(base64_decode(&e).unwrap(), s.as_bytes(), "{s}");
        }
        assert!(base64_decode("***").is_none());
    }
}
