//! `RUN --mount=...`, BuildKit's mounts for one step, none of which ends up in the layer:
//! - `type=bind` (the default): `source` (default: the root) of the context, or `from` a
//!   stage or an image, at `target`, read-only unless `rw`/`readwrite` (then on a copy: what
//!   the step writes there is dropped); the mounted content is part of the step's cache key;
//! - `type=cache`: a directory kept by the builder across builds (by `id`, default the
//!   target), created with `mode` (0755), `uid`, `gid`; `sharing=locked` holds a lock on it for
//!   the step, `shared` and `private` do not; its content is not in the key;
//! - `type=tmpfs`: a tmpfs at `target` (`size` in bytes);
//! - `type=secret`: the secret `id` (default: the target's name) given with `--secret`, at
//!   `target` (default `/run/secrets/<id>`), as a read-only file of `mode` (0400), `uid`,
//!   `gid`, and/or with `env=NAME` in the step's environment (then a file only when `target`
//!   is given too); a missing secret is skipped unless `required`. Its content is never in the key,
//!   the history or a layer (the file lives outside the rootfs; the mount point is taken out).
//!
//! `type=ssh` and unknown keys are errors.

use std::path::PathBuf;

/// What a mount is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: Kind,
    /// Absolute path in the container.
    pub target: String,
    pub source: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub rw: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub sharing: Sharing,
    pub required: bool,
    pub size: Option<u64>,
    /// A secret's environment variable (`env=NAME`).
    pub env: Option<String>,
}

/// Where a secret's content comes from (`--secret id=ID,src=PATH|env=VAR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// Parse `--secret`'s value: `id=ID[,src=PATH|source=PATH|env=VAR][,type=file|env]`.
pub fn parse_secret(v: &str) -> Result<(String, SecretSource), String> {
    let (mut id, mut src, mut env) = (None, None, None);
    for kv in v.split(',') {
        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "id" => id = Some(val.to_string()),
            "src" | "source" => src = Some(PathBuf::from(val)),
            "env" => env = Some(val.to_string()),
            "type" if val == "file" || val == "env" => {}
            _ => return Err(format!("--secret {v:?}: unexpected key {k:?}")),
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| format!("--secret {v:?}: id=ID is required"))?;
    let source = match (src, env) {
        (Some(p), None) => SecretSource::File(p),
        (None, Some(e)) => SecretSource::Env(e),
        (None, None) => SecretSource::Env(id.clone()),
        (Some(_), Some(_)) => return Err(format!("--secret {v:?}: give src or env, not both")),
    };
    Ok((id, source))
}

fn parse_bool(k: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(o) => Err(format!("invalid value for {k}: {o:?}")),
    }
}

fn parse_u32(k: &str, v: Option<&str>, radix: u32) -> Result<u32, String> {
    v.and_then(|v| u32::from_str_radix(v, radix).ok())
        .ok_or_else(|| format!("invalid value for {k}: {:?}", v.unwrap_or("")))
}

/// Parse one `--mount` value (variables already expanded).
pub fn parse(value: &str) -> Result<MountSpec, String> {
    let mut m = MountSpec {
        kind: Kind::Bind,
        target: String::new(),
        source: None,
        from: None,
        id: None,
        rw: false,
        mode: None,
        uid: None,
        gid: None,
        sharing: Sharing::Shared,
        required: false,
        size: None,
        env: None,
    };
    let mut rw_given = false;
    for kv in value.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = match kv.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (kv.trim().to_ascii_lowercase(), None),
        };
        match k.as_str() {
            "type" => {
                m.kind = match v {
                    Some("bind") => Kind::Bind,
                    Some("cache") => Kind::Cache,
                    Some("tmpfs") => Kind::Tmpfs,
                    Some("secret") => Kind::Secret,
                    Some("ssh") => return Err("type=ssh is not supported by this builder".into()),
                    o => return Err(format!("unsupported mount type {:?}", o.unwrap_or(""))),
                }
            }
            "target" | "dst" | "destination" => m.target = v.unwrap_or("").to_string(),
            "source" | "src" => m.source = v.map(str::to_string),
            "from" => m.from = v.map(str::to_string),
            "id" => m.id = v.map(str::to_string),
            "ro" | "readonly" => {
                m.rw = !parse_bool(&k, v)?;
                rw_given = true;
            }
            "rw" | "readwrite" => {
                m.rw = parse_bool(&k, v)?;
                rw_given = true;
            }
            "mode" => m.mode = Some(parse_u32(&k, v, 8)?),
            "uid" => m.uid = Some(parse_u32(&k, v, 10)?),
            "gid" => m.gid = Some(parse_u32(&k, v, 10)?),
            "required" => m.required = parse_bool(&k, v)?,
            "env" => {
                let name = v.unwrap_or("");
                let valid = name.bytes().enumerate().all(|(i, b)| {
                    b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit())
                });
                if name.is_empty() || !valid {
                    return Err(format!(
                        "invalid environment variable name {name:?} for env"
                    ));
                }
                m.env = Some(name.to_string());
            }
            "size" => {
                m.size = Some(
                    v.and_then(|v| v.parse().ok())
                        .ok_or_else(|| format!("invalid value for size: {:?}", v.unwrap_or("")))?,
                )
            }
            "sharing" => {
                m.sharing = match v {
                    Some("shared") => Sharing::Shared,
                    Some("private") => Sharing::Private,
                    Some("locked") => Sharing::Locked,
                    o => return Err(format!("unsupported sharing value {:?}", o.unwrap_or(""))),
                }
            }
            other => return Err(format!("unexpected key '{other}' in '{kv}'")),
        }
    }
    if m.kind == Kind::Cache && !rw_given {
        m.rw = true;
    }
    if m.kind == Kind::Secret {
        if m.id.is_none() {
            let name = m.target.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
            if name.is_empty() {
                return Err("a secret mount needs id= or target=".into());
            }
            m.id = Some(name.to_string());
        }
        if m.target.is_empty() && m.env.is_none() {
            m.target = format!("/run/secrets/{}", m.id.as_deref().unwrap_or(""));
        }
    } else if m.env.is_some() {
        return Err("env= is only for type=secret".into());
    }
    if m.target.is_empty() && m.env.is_none() {
        return Err("mount target is required".into());
    }
    if m.kind == Kind::Cache && m.id.is_none() {
        m.id = Some(m.target.clone());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_as_buildkit_takes_them() {
        let m = parse("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=10").unwrap();
        assert_eq!(m.kind, Kind::Cache);
        assert!(m.rw);
        assert_eq!(m.id.as_deref(), Some("/root/.cache"));
        assert_eq!(m.mode, Some(0o700));
        assert_eq!(m.uid, Some(10));
        assert_eq!(m.sharing, Sharing::Locked);
        let b = parse("target=/src,source=app,from=build,rw").unwrap();
        assert_eq!(b.kind, Kind::Bind);
        assert!(b.rw);
        assert_eq!(b.from.as_deref(), Some("build"));
        let s = parse("type=secret,id=tok").unwrap();
        assert_eq!(s.target, "/run/secrets/tok");
        let s = parse("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!((s.target.as_str(), s.env.as_deref()), ("", Some("TOKEN")));
        let s = parse("type=secret,id=tok,env=TOKEN,target=/t").unwrap();
        assert_eq!((s.target.as_str(), s.env.as_deref()), ("/t", Some("TOKEN")));
        assert!(parse("type=secret,id=tok,env=1X").is_err());
        assert!(parse("type=cache,target=/x,env=X").is_err());
        let s = parse("type=secret,target=/etc/key,required").unwrap();
        assert_eq!(s.id.as_deref(), Some("key"));
        assert!(s.required);
        assert!(parse("type=ssh").is_err());
        assert!(parse("type=bind").unwrap_err().contains("target"));
        assert!(parse("type=bind,target=/x,bogus=1")
            .unwrap_err()
            .contains("unexpected key 'bogus'"));
        assert!(parse("type=cache,target=/x,sharing=odd").is_err());
    }

    #[test]
    fn secrets_parse() {
        assert_eq!(
            parse_secret("id=a,src=/f").unwrap(),
            ("a".into(), SecretSource::File("/f".into()))
        );
        assert_eq!(
            parse_secret("id=a,env=TOKEN").unwrap(),
            ("a".into(), SecretSource::Env("TOKEN".into()))
        );
        assert_eq!(
            parse_secret("id=GH").unwrap(),
            ("GH".into(), SecretSource::Env("GH".into()))
        );
        assert!(parse_secret("src=/f").is_err());
    }
}
