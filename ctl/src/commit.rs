//! `commit`: a container's writable layer as a new image, as docker does it:
//! - a running container is paused while its upper directory is read (`--pause=false` is
//!   refused for one: it could swap a directory for a symlink to the host's / meanwhile);
//! - the mount points the runtime made for the container's mounts (/etc/hosts,
//!   /etc/hostname, /proc, ...) are left out when they are still empty;
//! - `-c` applies Dockerfile instructions to the config (CMD, ENTRYPOINT, ENV, EXPOSE,
//!   LABEL, ONBUILD, USER, VOLUME, WORKDIR: docker's list);
//! - the history entry has the container's command, `-m` as its comment, `-a` as author;
//! - without a name the image is untagged (known by its id, which is printed).

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::containers::Status;
use crate::ctx::Ctx;

pub struct CommitArgs<'a> {
    pub container: &'a str,
    pub name: Option<&'a str>,
    pub changes: &'a [String],
    pub message: Option<&'a str>,
    pub author: Option<&'a str>,
    pub pause: bool,
}

/// The instructions `-c` takes (docker's list).
const CHANGES: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "USER",
    "VOLUME",
    "WORKDIR",
];

pub fn commit(ctx: &Ctx, a: &CommitArgs<'_>) -> Result<i32> {
    let c = ctx.find(a.container)?;
    if ctx.store.snapshots.mode() != image::snapshot::Mode::Overlay {
        bail!("commit needs the overlay snapshotter (this store keeps full copies)");
    }
    let _lock = ctx.store.lock_shared()?;
    let base = ctx
        .store
        .image(&c.image_id)
        .or_else(|_| ctx.store.image(&c.image))
        .with_context(|| format!("the image of container {} ({})", c.name, c.image))?;
    let mut base_config = image::commit::config_of(&ctx.store, &base)?;
    let mut stage = builder::meta::Stage::new(
        base_config
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    );
    for ch in a.changes {
        let df = builder::parse(&format!("FROM scratch\n{ch}"))
            .map_err(|e| anyhow::anyhow!("-c {ch:?}: {}", e.msg))?;
        let ins = df
            .instructions
            .get(1)
            .with_context(|| format!("-c {ch:?}: no instruction"))?;
        if !CHANGES.contains(&ins.keyword.name()) {
            bail!(
                "-c {ch:?}: {} cannot be changed by commit (use one of {})",
                ins.keyword.name(),
                CHANGES.join(", ")
            );
        }
        builder::meta::apply(
            &mut stage,
            ins,
            &builder::words::Lexer::default(),
            &Default::default(),
            &[],
        )
        .map_err(|e| anyhow::anyhow!("-c {ch:?}: {}", e.msg))?;
    }
    // The destinations of the container's mounts: the stubs the runtime made for them.
    let spec: Value = std::fs::read(ctx.bundle_dir(&c.id).join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let skip_empty: Vec<Vec<u8>> = spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["destination"].as_str())
        .map(|d| builder::clean(d).into_bytes())
        .collect();
    let running = ctx.status(&c) == Status::Running;
    if running && !a.pause {
        // The differ reads the upper directory by path: a running container could swap a
        // directory for a symlink to the host's / between two reads.
        bail!(
            "commit --pause=false of a running container is refused: its changes are read \
             while it could still make them (stop it, or let commit pause it)"
        );
    }
    let paused = running && {
        let o = ctx
            .runtime_cmd()
            .args(["pause", &c.id])
            .output()
            .context("pause the container")?;
        if !o.status.success() {
            bail!(
                "pause {}: {}",
                c.name,
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        true
    };
    let upper = ctx.store.snapshots.active_fs_path(&c.id);
    let layer = image::diff::write_layer(
        &ctx.store.content,
        &upper,
        &image::diff::DiffOptions {
            skip_empty,
            ..Default::default()
        },
    );
    if paused {
        let _ = ctx.runtime_cmd().args(["resume", &c.id]).output();
    }
    let layer = layer.with_context(|| format!("read the writable layer of {}", c.name))?;
    let now = crate::util::rfc3339(crate::util::now());
    let mut layers = base.layers.clone();
    let empty = layer.stats.entries == 0;
    if !empty {
        layers.push(layer.record);
    }
    let mut h = json!({"created": now, "created_by": c.command.join(" ")});
    if let Some(m) = a.message {
        h["comment"] = json!(m);
    }
    if empty {
        h["empty_layer"] = json!(true);
    }
    if let Some(au) = a.author {
        base_config.insert("author".into(), json!(au));
    }
    let mut history: Vec<Value> = base_config
        .remove("history")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    history.push(h);
    let names: Vec<String> = a.name.map(|n| vec![n.to_string()]).unwrap_or_default();
    let rec = image::commit::write_image(
        &ctx.store,
        image::commit::NewImage {
            names: &names,
            base_config: Some(base_config),
            layers,
            history,
            config: stage.config,
            created: now,
            format: image::commit::Format::Docker,
        },
    )?;
    ctx.store
        .unpack(&rec, &image::Quiet)
        .context("unpack the new layer")?;
    println!("{}", rec.id());
    Ok(0)
}
