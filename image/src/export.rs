//! `save`: images as one tar archive that docker's, podman's and containerd's loaders all
//! take, laid out as docker 25+ writes it:
//! - an OCI image layout: `oci-layout`, `index.json` with one manifest descriptor per name
//!   (annotated `io.containerd.image.name` with the full name and
//!   `org.opencontainers.image.ref.name` with the tag), `blobs/sha256/<hex>` for every
//!   manifest, config and layer (each blob once); an image with a docker manifest gets an OCI
//!   manifest of the same blobs there (OCI tools such as skopeo read only those from a layout);
//!   an image kept with every platform (`--all-platforms`) is its index, with every blob;
//! - docker's `manifest.json` beside it: per image its `Config` and `Layers` as paths into
//!   `blobs/`, and `RepoTags` (familiar names: `busybox:latest`).
//!
//! Entries are written in a fixed order with fixed times and owners, so the same images give
//! the same archive.

use std::collections::BTreeSet;
use std::io::{self, Write};

use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::images::{media, ImageRecord, Store};
use crate::reference::Reference;

fn header(size: u64, mode: u32, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h
}

/// The OCI manifest of docker manifest `m`: the same config and layer blobs under OCI's media
/// types (skopeo's `oci:` transport reads only OCI manifests from a layout).
fn oci_manifest(m: &Value) -> Value {
    let layer_type = |t: &str| {
        match t {
            media::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP,
            media::DOCKER_LAYER_TAR => media::OCI_LAYER_TAR,
            other => other,
        }
        .to_string()
    };
    json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": m["config"]["digest"],
                   "size": m["config"]["size"]},
        "layers": m["layers"].as_array().into_iter().flatten().map(|l| json!({
            "mediaType": layer_type(l["mediaType"].as_str().unwrap_or("")),
            "digest": l["digest"], "size": l["size"],
        })).collect::<Vec<_>>(),
    })
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Write `images` (records of `store`) as one archive to `out`.
pub fn save(store: &Store, images: &[ImageRecord], out: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let add = |tar: &mut tar::Builder<_>, name: &str, data: &[u8]| -> io::Result<()> {
        let mut h = header(data.len() as u64, 0o644, false);
        tar.append_data(&mut h, name, data)
    };
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    // Manifests written for the archive only (OCI versions of docker manifests).
    let mut extra: std::collections::BTreeMap<Digest, Vec<u8>> = Default::default();
    let mut index = Vec::new();
    let mut docker = Vec::new();
    for rec in images {
        let whole = crate::images::whole_index(store, rec)?;
        let stored = store.content.read(&rec.manifest)?;
        let mt: Value = serde_json::from_slice(&stored)?;
        let (manifest_digest, manifest) = match mt["mediaType"].as_str() {
            // Every platform was kept: the index itself, with all their blobs.
            _ if whole.is_some() => {
                for e in whole.iter().flatten() {
                    blobs.insert(e.manifest.digest.clone());
                    blobs.extend(e.blobs.iter().map(|b| b.digest.clone()));
                }
                blobs.insert(rec.target.digest.clone());
                (
                    rec.target.digest.clone(),
                    store.content.read(&rec.target.digest)?,
                )
            }
            Some(media::DOCKER_MANIFEST) => {
                let m = oci_manifest(&mt);
                let bytes = serde_json::to_vec(&m)?;
                let d = Digest::of(&bytes);
                extra.insert(d.clone(), bytes.clone());
                (d, bytes)
            }
            _ => {
                blobs.insert(rec.manifest.clone());
                (rec.manifest.clone(), stored)
            }
        };
        let media_type = match whole {
            Some(_) => rec.target.media_type.clone(),
            None => media::OCI_MANIFEST.to_string(),
        };
        blobs.insert(rec.config.clone());
        blobs.extend(rec.layers.iter().map(|l| l.digest.clone()));
        let reference = Reference::parse(&rec.name).ok();
        let mut annotations = serde_json::Map::new();
        let mut tags = Vec::new();
        if let Some(r) = &reference {
            annotations.insert("io.containerd.image.name".into(), json!(r.to_string()));
            if let Some(t) = &r.tag {
                annotations.insert("org.opencontainers.image.ref.name".into(), json!(t));
                tags.push(format!("{}:{t}", r.familiar_repository()));
            }
        }
        let mut desc = json!({
            "mediaType": media_type,
            "digest": manifest_digest.to_string(),
            "size": manifest.len(),
        });
        if !annotations.is_empty() {
            desc["annotations"] = Value::Object(annotations);
        }
        index.push(desc);
        docker.push(json!({
            "Config": blob_path(&rec.config),
            "RepoTags": if tags.is_empty() { Value::Null } else { json!(tags) },
            "Layers": rec.layers.iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
        }));
    }
    let w = |e: io::Error| crate::error::Error::io("write the archive", e);
    for d in ["blobs/", "blobs/sha256/"] {
        let mut h = header(0, 0o755, true);
        tar.append_data(&mut h, d, io::empty()).map_err(w)?;
    }
    for d in &blobs {
        let path = store.content.path(d);
        let f = std::fs::File::open(&path).ctx("open", &path)?;
        let size = f.metadata().ctx("stat", &path)?.len();
        let mut h = header(size, 0o644, false);
        tar.append_data(&mut h, blob_path(d), f).map_err(w)?;
    }
    for (d, bytes) in &extra {
        if !blobs.contains(d) {
            add(&mut tar, &blob_path(d), bytes).map_err(w)?;
        }
    }
    add(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(w)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": crate::images::media::OCI_INDEX,
        "manifests": index,
    });
    add(&mut tar, "index.json", &serde_json::to_vec(&index)?).map_err(w)?;
    add(&mut tar, "manifest.json", &serde_json::to_vec(&docker)?).map_err(w)?;
    tar.into_inner().map_err(w)?.flush().map_err(w)?;
    Ok(())
}
