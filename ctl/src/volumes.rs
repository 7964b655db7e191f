//! Volumes, as docker's local driver keeps them: a directory per volume under the data root
//! (`volumes/NAME/_data`, with `volume.json` beside it).
//! - `-v NAME:/path[:ro]` mounts the named volume (made when missing); an image's VOLUME
//!   that no `-v` covers gets an anonymous one (a random 64-hex name).
//! - A volume that is empty when a container mounts it first gets what the image has at that
//!   path (owners, modes, times), read from the rootfs through descriptors inside it (as
//!   `cp` reads), as docker copies it.
//! - `rm -v` removes a container's anonymous volumes, `--rm` does it by itself; named ones stay
//!   until `volume rm`, which refuses one a container (in any state) still has.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::containers::Container;
use crate::ctx::Ctx;
use crate::util;

/// A container's use of a volume.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeUse {
    pub name: String,
    pub anonymous: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    created: u64,
    anonymous: bool,
}

fn root(ctx: &Ctx) -> PathBuf {
    ctx.root.join("volumes")
}

pub fn data_dir(ctx: &Ctx, name: &str) -> PathBuf {
    root(ctx).join(name).join("_data")
}

/// docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(n: &str) -> bool {
    n.len() >= 2
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Whether `-v`'s source names a volume (not a host path).
pub fn is_volume_source(src: &str) -> bool {
    !src.contains('/') && !src.starts_with('.') && !src.starts_with('~')
}

/// Make volume `name` unless it exists; true when it was made now.
pub fn ensure(ctx: &Ctx, name: &str, anonymous: bool) -> Result<bool> {
    if !valid_name(name) {
        bail!("{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed");
    }
    let dir = root(ctx).join(name);
    if dir.join("_data").is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(root(ctx))?;
    // Private, as ctx.rs keeps it (a container's root may plant setuid files in a volume).
    std::fs::set_permissions(
        root(ctx),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    let tmp = root(ctx).join(format!(".new-{}", image::fsutil::random_hex(6)));
    std::fs::create_dir_all(tmp.join("_data"))
        .with_context(|| format!("create {}", tmp.display()))?;
    let meta = serde_json::to_vec(&Meta {
        created: util::now(),
        anonymous,
    })?;
    std::fs::write(tmp.join("volume.json"), meta)?;
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(true),
        // Made by someone else meanwhile.
        Err(_) if dir.join("_data").is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(false)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e).with_context(|| format!("create volume {name}"))
        }
    }
}

/// Give an empty volume what the rootfs has at `dest` (when it has a directory there).
pub fn copy_up(ctx: &Ctx, name: &str, rootfs: &Path, dest: &str) -> Result<()> {
    let data = data_dir(ctx, name);
    if std::fs::read_dir(&data)?.next().is_some() {
        return Ok(());
    }
    let root_fd = image::fsutil::open_dir(rootfs)?;
    let rel = dest.trim_matches('/');
    let Ok(src) = image::fsutil::open_dir_in_root(root_fd.as_fd(), rel.as_bytes()) else {
        // Nothing there (or not a directory): the runtime makes the mount point.
        return Ok(());
    };
    crate::cp::copy_tree_into(src.as_fd(), &data)
        .with_context(|| format!("copy {dest} of the image into volume {name}"))
}

/// The volumes of a container being made: `-v NAME:DEST[:ro]` specs, then the image's
/// VOLUMEs no bind covers. Adds their binds to `binds`; returns what the container uses.
pub fn attach(
    ctx: &Ctx,
    named: &[(String, String, bool)],
    image_volumes: &[String],
    rootfs: &Path,
    binds: &mut Vec<image::bundle::Bind>,
) -> Result<Vec<VolumeUse>> {
    let mut used = Vec::new();
    let r = (|| -> Result<()> {
        for (name, dest, ro) in named {
            ensure(ctx, name, false)?;
            used.push(VolumeUse {
                name: name.clone(),
                anonymous: false,
            });
            copy_up(ctx, name, rootfs, dest)?;
            binds.push(image::bundle::Bind {
                source: data_dir(ctx, name),
                destination: dest.clone(),
                readonly: *ro,
            });
        }
        for dest in image_volumes {
            let covered = binds
                .iter()
                .any(|b| b.destination.trim_end_matches('/') == dest.trim_end_matches('/'));
            if covered {
                continue;
            }
            let name = image::fsutil::random_hex(32);
            ensure(ctx, &name, true)?;
            used.push(VolumeUse {
                name: name.clone(),
                anonymous: true,
            });
            copy_up(ctx, &name, rootfs, dest)?;
            binds.push(image::bundle::Bind {
                source: data_dir(ctx, &name),
                destination: dest.clone(),
                readonly: false,
            });
        }
        Ok(())
    })();
    if let Err(e) = r {
        remove_anonymous(ctx, &used);
        return Err(e);
    }
    Ok(used)
}

/// Remove the anonymous ones among `used` (a container that is being removed, its record
/// gone already), unless another container has one too (`-v <its name>:...`).
pub fn remove_anonymous(ctx: &Ctx, used: &[VolumeUse]) {
    for v in used.iter().filter(|v| v.anonymous) {
        if users(ctx, &v.name).is_ok_and(|u| u.is_empty()) {
            let _ = image::fsutil::remove_path(&root(ctx).join(&v.name));
        }
    }
}

/// The containers that have volume `name`.
fn users(ctx: &Ctx, name: &str) -> Result<Vec<Container>> {
    Ok(ctx
        .list()?
        .into_iter()
        .filter(|c| c.volumes.iter().any(|v| v.name == name))
        .collect())
}

fn list(ctx: &Ctx) -> Result<Vec<(String, Meta)>> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root(ctx)) else {
        return Ok(out);
    };
    for e in rd {
        let e = e?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('.') {
            continue;
        }
        let meta = std::fs::read(e.path().join("volume.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or(Meta {
                created: 0,
                anonymous: false,
            });
        out.push((n, meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `volume create [NAME]`.
pub fn create(ctx: &Ctx, name: Option<&str>) -> Result<i32> {
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| image::fsutil::random_hex(32));
    ensure(ctx, &name, false)?;
    println!("{name}");
    Ok(0)
}

/// `volume ls [-q]`.
pub fn ls(ctx: &Ctx, quiet: bool, format: Option<&str>) -> Result<i32> {
    if let (Some(f), false) = (format, quiet) {
        let rows: Vec<_> = list(ctx)?
            .into_iter()
            .map(|(n, _)| {
                json!({"Name": n, "Driver": "local", "Scope": "local",
                    "Mountpoint": data_dir(ctx, &n)})
            })
            .collect();
        util::print_rows(&rows, f)?;
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    if !quiet {
        writeln!(out, "DRIVER    VOLUME NAME")?;
    }
    for (n, _) in list(ctx)? {
        if quiet {
            writeln!(out, "{n}")?;
        } else {
            writeln!(out, "local     {n}")?;
        }
    }
    Ok(0)
}

/// `volume inspect NAME...` in docker's shape.
pub fn inspect(ctx: &Ctx, names: &[String], format: Option<&str>) -> Result<i32> {
    let all = list(ctx)?;
    let mut values = Vec::new();
    let mut code = 0;
    for n in names {
        match all.iter().find(|(name, _)| name == n) {
            Some((name, meta)) => values.push(json!({
                "CreatedAt": util::rfc3339(meta.created),
                "Driver": "local",
                "Labels": meta.anonymous.then(|| json!({"com.docker.volume.anonymous": ""})),
                "Mountpoint": data_dir(ctx, name),
                "Name": name,
                "Options": null,
                "Scope": "local",
            })),
            None => {
                eprintln!("Error: No such volume: {n}");
                code = 1;
            }
        }
    }
    util::print_values(&values, format)?;
    Ok(code)
}

/// `volume rm [-f] NAME...`: never one a container has.
pub fn rm(ctx: &Ctx, names: &[String], force: bool) -> Result<i32> {
    let mut failed = false;
    for n in names {
        let r = (|| -> Result<()> {
            if !root(ctx).join(n).join("_data").is_dir() || !valid_name(n) {
                if force {
                    return Ok(());
                }
                bail!("no such volume: {n}");
            }
            let users = users(ctx, n)?;
            if !users.is_empty() {
                let ids: Vec<&str> = users.iter().map(|c| c.id.as_str()).collect();
                bail!("remove {n}: volume is in use - [{}]", ids.join(", "));
            }
            image::fsutil::remove_path(&root(ctx).join(n))?;
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

/// `volume prune [-a]`: unused anonymous volumes (with `-a`, every unused one), as docker 23+.
pub fn prune(ctx: &Ctx, all: bool) -> Result<i32> {
    let in_use: std::collections::HashSet<String> = ctx
        .list()?
        .into_iter()
        .flat_map(|c| c.volumes.into_iter().map(|v| v.name))
        .collect();
    let mut n = 0;
    for (name, meta) in list(ctx)? {
        if in_use.contains(&name) || !(all || meta.anonymous) {
            continue;
        }
        image::fsutil::remove_path(&root(ctx).join(&name))?;
        println!("{name}");
        n += 1;
    }
    println!("Deleted {n} volume(s)");
    Ok(0)
}
