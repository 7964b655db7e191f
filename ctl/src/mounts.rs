//! `--mount`, `--tmpfs` and `--volumes-from`, as docker reads them, into what `run` mounts:
//! host binds, named volumes and tmpfs mounts (OCI mount entries).

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::ctx::Ctx;
use image::bundle::Bind;

/// What the flags ask for.
#[derive(Default)]
pub struct Extra {
    pub binds: Vec<Bind>,
    /// (volume name, destination, read-only).
    pub volumes: Vec<(String, String, bool)>,
    /// OCI mount entries.
    pub tmpfs: Vec<Value>,
}

fn tmpfs_entry(dest: &str, opts: &[String]) -> Result<Value> {
    if !dest.starts_with('/') {
        bail!("--tmpfs {dest:?}: the container path must be absolute");
    }
    // docker's defaults for a tmpfs: noexec, nosuid, nodev (given options come after them).
    let mut o: Vec<String> = ["rw", "noexec", "nosuid", "nodev"]
        .map(String::from)
        .to_vec();
    o.extend(opts.iter().cloned());
    Ok(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": o}))
}

/// `--tmpfs PATH[:OPTIONS]`.
pub fn tmpfs(v: &str) -> Result<Value> {
    let (dest, opts) = v.split_once(':').unwrap_or((v, ""));
    let opts: Vec<String> = opts
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    tmpfs_entry(dest, &opts)
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,...]`.
pub fn mount(v: &str, extra: &mut Extra) -> Result<()> {
    let mut kind = "volume".to_string();
    let (mut src, mut dst, mut ro) = (None, None, false);
    let mut tmpfs_opts = Vec::new();
    for kv in v.split(',') {
        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => kind = val.to_string(),
            "source" | "src" => src = Some(val.to_string()),
            "target" | "destination" | "dst" => dst = Some(val.to_string()),
            "readonly" | "ro" => ro = val.is_empty() || val == "true" || val == "1",
            "tmpfs-size" => tmpfs_opts.push(format!("size={val}")),
            "tmpfs-mode" => tmpfs_opts.push(format!("mode={val}")),
            // Accepted with docker's meaning here: private propagation, nothing to copy.
            "bind-propagation" if val == "rprivate" || val == "private" => {}
            "volume-nocopy" | "consistency" => {}
            _ => bail!("--mount {v:?}: unexpected key '{k}'"),
        }
    }
    let Some(dst) = dst.filter(|d| d.starts_with('/')) else {
        bail!("--mount {v:?}: target is required and must be absolute");
    };
    match kind.as_str() {
        "bind" => {
            let Some(src) = src else {
                bail!("--mount {v:?}: source is required for a bind mount");
            };
            let source = std::fs::canonicalize(&src).with_context(|| {
                format!("--mount {v:?}: bind source path does not exist: {src}")
            })?;
            extra.binds.push(Bind {
                source,
                destination: dst,
                readonly: ro,
            });
        }
        "volume" => {
            let name = src.unwrap_or_else(|| image::fsutil::random_hex(32));
            extra.volumes.push((name, dst, ro));
        }
        "tmpfs" => {
            if src.is_some() {
                bail!("--mount {v:?}: a tmpfs has no source");
            }
            if ro {
                tmpfs_opts.push("ro".into());
            }
            extra.tmpfs.push(tmpfs_entry(&dst, &tmpfs_opts)?);
        }
        other => bail!("--mount {v:?}: type {other:?} (use bind, volume or tmpfs)"),
    }
    Ok(())
}

/// The mounts ordered as docker orders them: by the depth of their destination, keeping
/// the order of those at the same depth (a later one over an earlier one). A mount inside
/// another's destination so comes after it: `-v vol:/etc` does not cover the container's own
/// /etc/hosts, hostname and resolv.conf, nor `-v a:/data` a `--tmpfs /data/cache` given first.
pub fn parents_first(mounts: &mut [Value]) {
    let depth = |m: &Value| {
        std::path::Path::new(m["destination"].as_str().unwrap_or(""))
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .count()
    };
    mounts.sort_by_key(depth);
}

/// `--volumes-from CONTAINER[:ro|rw]`: that container's volumes and host binds, at the same
/// places (its /etc/hosts, hostname and resolv.conf stay its own).
pub fn volumes_from(ctx: &Ctx, v: &str, extra: &mut Extra) -> Result<()> {
    let (name, mode) = v.split_once(':').unwrap_or((v, ""));
    let force_ro = match mode {
        "" | "rw" => None,
        "ro" => Some(true),
        other => bail!("--volumes-from {v:?}: mode {other:?} (use ro or rw)"),
    };
    let c = ctx.find(name)?;
    let spec: Value = serde_json::from_slice(
        &std::fs::read(ctx.bundle_dir(&c.id).join("config.json"))
            .with_context(|| format!("--volumes-from {name}: its config"))?,
    )?;
    let own = ctx.container_dir(&c.id);
    let vols = crate::volumes::data_dir(ctx, "x");
    let vol_root = vols.parent().and_then(|p| p.parent());
    for m in spec["mounts"].as_array().into_iter().flatten() {
        let (Some(src), Some(dst)) = (m["source"].as_str(), m["destination"].as_str()) else {
            continue;
        };
        if m["type"] != "bind" || std::path::Path::new(src).starts_with(&own) {
            continue;
        }
        let ro = force_ro.unwrap_or_else(|| {
            m["options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|x| x == "ro"))
        });
        let volume = vol_root
            .and_then(|r| std::path::Path::new(src).strip_prefix(r).ok())
            .and_then(|rest| rest.iter().next())
            .map(|n| n.to_string_lossy().into_owned());
        match volume {
            Some(vname) => extra.volumes.push((vname, dst.to_string(), ro)),
            None => extra.binds.push(Bind {
                source: src.into(),
                destination: dst.to_string(),
                readonly: ro,
            }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_inside_anothers_destination_comes_after_it() {
        let mut m: Vec<Value> = [
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/etc/hosts",
            "/etc/",
            "/data/cache",
            "/data",
            "/etc/hosts",
        ]
        .iter()
        .map(|d| json!({ "destination": d }))
        .collect();
        parents_first(&mut m);
        let order: Vec<&str> = m
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "/proc",
                "/dev",
                "/sys",
                "/etc/",
                "/data",
                "/dev/pts",
                "/etc/hosts",
                "/data/cache",
                "/etc/hosts"
            ]
        );
    }
}
