//! The process spec of `berth exec`, built the way runc builds it: `--process FILE`, or the
//! container's own process with the command line's args and overrides.

use std::path::Path;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Capability, Process};

/// The flags of `exec` that shape the process.
pub struct Overrides<'a> {
    pub args: &'a [String],
    pub tty: bool,
    pub cwd: Option<&'a Path>,
    pub env: &'a [String],
    pub user: Option<&'a str>,
    pub additional_gids: &'a [u32],
    pub caps: &'a [String],
    pub no_new_privs: bool,
}

pub fn from_file(path: &Path) -> Result<Process> {
    let bytes =
        std::fs::read(path).with_context(|| format!("read process file {}", path.display()))?;
    parse_process(&bytes).with_context(|| format!("process file {}", path.display()))
}

/// A process.json as runc reads it (Go's zero values for what is missing: no `user` is uid 0
/// gid 0), then checked as runc's validateProcessSpec checks it.
fn parse_process(bytes: &[u8]) -> Result<Process> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
    let obj = v
        .as_object_mut()
        .context("process property must not be empty")?;
    for (key, zero) in [
        ("user", serde_json::json!({"uid": 0, "gid": 0})),
        ("cwd", serde_json::json!("")),
    ] {
        if matches!(obj.get(key), None | Some(serde_json::Value::Null)) {
            obj.insert(key.to_string(), zero);
        }
    }
    libcontainer::cpuaffinity::normalize_json(&mut v, "process").map_err(anyhow::Error::msg)?;
    let p: Process = serde_json::from_value(v)?;
    if p.cwd().as_os_str().is_empty() {
        bail!("Cwd property must not be empty");
    }
    if !p.cwd().is_absolute() {
        bail!("Cwd must be an absolute path");
    }
    if p.args().as_deref().unwrap_or_default().is_empty() {
        bail!("args must not be empty");
    }
    Ok(p)
}

fn cap(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| anyhow::anyhow!("--cap: unknown capability {name:?}"))
}

/// `uid[:gid]`
fn parse_user(s: &str) -> Result<(u32, Option<u32>)> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u
        .parse()
        .with_context(|| format!("--user {s:?}: uid must be a number"))?;
    let gid = g
        .map(|g| {
            g.parse()
                .with_context(|| format!("--user {s:?}: gid must be a number"))
        })
        .transpose()?;
    libcontainer::config::check_id(&format!("--user {s:?}: uid"), uid)
        .map_err(anyhow::Error::msg)?;
    if let Some(g) = gid {
        libcontainer::config::check_id(&format!("--user {s:?}: gid"), g)
            .map_err(anyhow::Error::msg)?;
    }
    Ok((uid, gid))
}

pub fn build(base: &Process, o: &Overrides) -> Result<Process> {
    if o.args.is_empty() {
        bail!("exec: a command to run is required (or --process FILE)");
    }
    let mut p = base.clone();
    p.set_args(Some(o.args.to_vec()));
    p.set_terminal(Some(o.tty));
    p.set_console_size(None);
    if let Some(cwd) = o.cwd {
        p.set_cwd(cwd.to_path_buf());
    }
    if !o.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(o.env.iter().cloned());
        p.set_env(Some(env));
    }
    if let Some(u) = o.user {
        let (uid, gid) = parse_user(u)?;
        p.user_mut().set_uid(uid);
        if let Some(g) = gid {
            p.user_mut().set_gid(g);
        }
    }
    if !o.additional_gids.is_empty() {
        for g in o.additional_gids {
            libcontainer::config::check_id("--additional-gids", *g).map_err(anyhow::Error::msg)?;
        }
        p.user_mut()
            .set_additional_gids(Some(o.additional_gids.to_vec()));
    }
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !o.caps.is_empty() {
        let extra: Vec<Capability> = o.caps.iter().map(|c| cap(c)).collect::<Result<_>>()?;
        let mut caps = p
            .capabilities()
            .clone()
            .unwrap_or_else(|| serde_json::from_str("{}").expect("empty capabilities"));
        let add = |set: Option<oci_spec::runtime::Capabilities>| {
            let mut s = set.unwrap_or_default();
            s.extend(extra.iter().copied());
            Some(s)
        };
        // runc 1.2+: never inheritable; ambient only where the process already has an
        // inheritable set (ambient capabilities need their inheritable bit).
        caps.set_bounding(add(caps.bounding().clone()));
        caps.set_effective(add(caps.effective().clone()));
        caps.set_permitted(add(caps.permitted().clone()));
        if caps.inheritable().is_some() {
            caps.set_ambient(add(caps.ambient().clone()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_like_runc() {
        let base: Process = serde_json::from_value(serde_json::json!({
            "user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/", "env": ["A=1"],
            "capabilities": {"bounding": ["CAP_KILL"]}
        }))
        .unwrap();
        let args = vec!["ls".to_string(), "-l".to_string()];
        let env = vec!["B=2".to_string()];
        let caps = vec!["CAP_NET_ADMIN".to_string()];
        let p = build(
            &base,
            &Overrides {
                args: &args,
                tty: true,
                cwd: Some(Path::new("/tmp")),
                env: &env,
                user: Some("1000:100"),
                additional_gids: &[5],
                caps: &caps,
                no_new_privs: true,
            },
        )
        .unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &args);
        assert_eq!(p.env().as_ref().unwrap(), &["A=1", "B=2"]);
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
        assert_eq!(p.terminal(), Some(true));
        assert!(p
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::NetAdmin));
        let c = p.capabilities().as_ref().unwrap();
        assert!(c.inheritable().is_none(), "--cap never adds inheritable");
        assert!(
            c.ambient().is_none(),
            "no ambient without an inheritable set"
        );
        let bad = vec!["CAP_NOPE".to_string()];
        assert!(build(
            &base,
            &Overrides {
                args: &args,
                tty: false,
                cwd: None,
                env: &[],
                user: None,
                additional_gids: &[],
                caps: &bad,
                no_new_privs: false
            }
        )
        .is_err());
        assert!(parse_user("x").is_err());
    }

    #[test]
    fn process_file_without_user_runs_as_root_like_runc() {
        let p = parse_process(br#"{"args": ["true"], "cwd": "/"}"#).unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
        let p = parse_process(br#"{"args": ["true"], "cwd": "/", "user": null}"#).unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
        let p = parse_process(br#"{"args": ["id"], "cwd": "/tmp", "user": {"uid": 7}}"#).unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (7, 0));
        let e = |json: &str| parse_process(json.as_bytes()).unwrap_err().to_string();
        assert_eq!(e(r#"{"args": ["true"]}"#), "Cwd property must not be empty");
        assert_eq!(
            e(r#"{"args": ["true"], "cwd": "tmp"}"#),
            "Cwd must be an absolute path"
        );
        assert_eq!(e(r#"{"args": [], "cwd": "/"}"#), "args must not be empty");
        assert_eq!(e("[]"), "process property must not be empty");
    }
}
