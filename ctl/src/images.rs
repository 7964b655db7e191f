//! Image commands beyond import and pull: `tag`, `history`, `image inspect`, `save`, `load`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::ImageRecord;
use serde_json::{json, Value};

use crate::ctx::Ctx;
use crate::util;

/// `tag SRC DEST`: DEST names the image SRC names.
pub fn tag(ctx: &Ctx, src: &str, dest: &str) -> Result<i32> {
    let _lock = ctx.store.lock_shared()?;
    let mut rec = ctx.store.image(src).with_context(|| format!("tag {src}"))?;
    rec.name = image::Reference::parse(dest)
        .with_context(|| format!("tag: {dest:?}"))?
        .to_string();
    ctx.store.save_image(&rec)?;
    Ok(0)
}

fn config_of(ctx: &Ctx, rec: &ImageRecord) -> Result<Value> {
    serde_json::from_slice(&ctx.store.content.read(&rec.config)?).context("parse the image config")
}

/// The size of each layer of `rec` as docker shows it (unpacked when unpacked).
fn layer_sizes(ctx: &Ctx, rec: &ImageRecord) -> Vec<u64> {
    rec.chain_ids()
        .iter()
        .zip(&rec.layers)
        .map(|(c, l)| ctx.store.snapshots.size(c).unwrap_or(l.size))
        .collect()
}

/// `history IMAGE`: its history, newest first, with each layer's size.
pub fn history(ctx: &Ctx, name: &str, no_trunc: bool, quiet: bool) -> Result<i32> {
    let rec = ctx.store.image(name)?;
    let cfg = config_of(ctx, &rec)?;
    let sizes = layer_sizes(ctx, &rec);
    let mut layer = 0;
    let mut rows = Vec::new();
    for h in cfg["history"].as_array().into_iter().flatten() {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty {
            0
        } else {
            layer += 1;
            sizes.get(layer - 1).copied().unwrap_or(0)
        };
        let by = h["created_by"].as_str().unwrap_or("").replace('\n', " ");
        let by = if no_trunc || by.chars().count() <= 45 {
            by
        } else {
            format!("{}…", by.chars().take(44).collect::<String>())
        };
        let created = h["created"]
            .as_str()
            .and_then(util::parse_rfc3339)
            .map(util::ago)
            .unwrap_or_else(|| "N/A".into());
        rows.push(vec![
            "<missing>".to_string(),
            created,
            by,
            util::human_size(size),
            h["comment"].as_str().unwrap_or("").to_string(),
        ]);
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top[0] = if no_trunc {
            rec.id().to_string()
        } else {
            rec.id().short().to_string()
        };
    }
    let mut out = std::io::stdout().lock();
    if quiet {
        for r in &rows {
            writeln!(out, "{}", r[0])?;
        }
        return Ok(0);
    }
    crate::table_n(
        &mut out,
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        rows,
    )?;
    Ok(0)
}

/// docker's `image inspect` object of `rec`.
pub fn inspect_value(ctx: &Ctx, rec: &ImageRecord) -> Result<Value> {
    let cfg = config_of(ctx, rec)?;
    let all = ctx.store.list_images()?;
    let tags: Vec<String> = all
        .iter()
        .filter(|r| r.config == rec.config)
        .filter_map(|r| image::Reference::parse(&r.name).ok())
        .filter(|r| r.tag.is_some())
        .map(|r| {
            format!(
                "{}:{}",
                r.familiar_repository(),
                r.tag.clone().unwrap_or_default()
            )
        })
        .collect();
    let size = ctx.store.unpacked_size(rec)?;
    Ok(json!({
        "Id": rec.id().to_string(),
        "RepoTags": tags,
        "RepoDigests": [],
        "Parent": "",
        "Comment": cfg["history"].as_array().and_then(|h| h.last()).and_then(|h| h["comment"].as_str()).unwrap_or(""),
        "Created": cfg["created"].as_str().unwrap_or(""),
        "Author": cfg["author"].as_str().unwrap_or(""),
        "Config": cfg["config"],
        "Architecture": cfg["architecture"],
        "Variant": cfg.get("variant").cloned().unwrap_or(Value::Null),
        "Os": cfg["os"],
        "Size": size,
        "RootFS": {"Type": "layers", "Layers": cfg["rootfs"]["diff_ids"]},
        "Descriptor": {"mediaType": rec.target.media_type, "digest": rec.target.digest.to_string(), "size": rec.target.size},
        "Metadata": {"LastTagTime": util::rfc3339(rec.stored)},
    }))
}

/// `image inspect [-f FORMAT] IMAGE...`
pub fn inspect(ctx: &Ctx, names: &[String], format: Option<&str>) -> Result<i32> {
    let mut values = Vec::new();
    let mut code = 0;
    for n in names {
        match ctx.store.image(n) {
            Ok(rec) => values.push(inspect_value(ctx, &rec)?),
            Err(e) => {
                eprintln!("Error: No such image: {n} ({e})");
                code = 1;
            }
        }
    }
    util::print_values(&values, format)?;
    Ok(code)
}

/// `save [-o FILE] IMAGE...` (stdout when it is not a terminal).
pub fn save(ctx: &Ctx, names: &[String], output: Option<&Path>) -> Result<i32> {
    let _lock = ctx.store.lock_shared()?;
    let recs = names
        .iter()
        .map(|n| ctx.store.image(n).with_context(|| format!("save {n}")))
        .collect::<Result<Vec<_>>>()?;
    match output {
        Some(p) => {
            let tmp = image::fsutil::temp_name(
                p.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
                p.file_name()
                    .map(|n| n.as_encoded_bytes())
                    .unwrap_or(b"save"),
            );
            let r = (|| -> Result<()> {
                let f = std::fs::File::create(&tmp)
                    .with_context(|| format!("create {}", tmp.display()))?;
                let mut w = std::io::BufWriter::new(f);
                image::export::save(&ctx.store, &recs, &mut w)?;
                w.into_inner()
                    .map_err(|e| e.into_error())?
                    .sync_all()
                    .context("write the archive")?;
                std::fs::rename(&tmp, p).with_context(|| format!("rename to {}", p.display()))?;
                Ok(())
            })();
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r?;
        }
        None => {
            if nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
                bail!(
                    "cowardly refusing to write an archive to a terminal: give -o FILE or redirect"
                );
            }
            let out = std::io::stdout().lock();
            image::export::save(&ctx.store, &recs, std::io::BufWriter::new(out))?;
        }
    }
    Ok(0)
}

/// `load [-i FILE]`: import, from stdin without -i.
pub fn load(ctx: &Ctx, input: Option<&Path>, quiet: bool, all_platforms: bool) -> Result<i32> {
    let (path, _tmp): (PathBuf, Option<Tmp>) = match input {
        Some(p) => (p.to_path_buf(), None),
        None => {
            let dir = ctx.root.join("ingest");
            std::fs::create_dir_all(&dir)?;
            let p = image::fsutil::owned_temp_name(&dir, b"load");
            let mut f =
                std::fs::File::create(&p).with_context(|| format!("create {}", p.display()))?;
            std::io::copy(&mut std::io::stdin().lock(), &mut f)
                .context("read the archive from stdin")?;
            (p.clone(), Some(Tmp(p)))
        }
    };
    let opts = image::import::ImportOptions {
        all_platforms,
        ..Default::default()
    };
    let progress: Box<dyn image::Progress> = if quiet {
        Box::new(image::Quiet)
    } else {
        Box::new(crate::progress::Reporter::new())
    };
    let recs = image::import::import(&ctx.store, &path, &opts, progress.as_ref())
        .with_context(|| format!("load {}", path.display()))?;
    for r in recs {
        println!("Loaded image: {}", r.name);
    }
    Ok(0)
}

/// A temp file removed when dropped.
struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
