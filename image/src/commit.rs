//! A new image from a base image (or scratch) and new layers: what a build's last step and
//! `berthctl commit` store. The image config is the base's, with the new `config` object,
//! `created`, the new layers' DiffIDs and the new history entries (the docker-only
//! `container`, `container_config`, `id` and `parent` dropped); the manifest is OCI's or
//! docker's schema 2 (`--format docker`: docker's media types for config, manifest and every
//! gzip layer, so that HEALTHCHECK, SHELL and ONBUILD survive in docker's tools). JSON keys are
//! written sorted, so the same input gives the same digests.

use serde_json::{json, Map, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::{media, Desc, ImageRecord, LayerRecord, Platform, Store};
use crate::reference::Reference;

/// The manifest and config media types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

/// What the new image is made of.
pub struct NewImage<'a> {
    /// Its names (normalized as docker does); none: an untagged image, stored under its id.
    pub names: &'a [String],
    /// The image config it starts from (the base image's whole config: platform, history,
    /// ...); None: scratch (this host's platform, no history).
    pub base_config: Option<Map<String, Value>>,
    /// All its layers, the base's first.
    pub layers: Vec<LayerRecord>,
    /// History entries to append to the base's (`created`, `created_by`, `comment`,
    /// `empty_layer`).
    pub history: Vec<Value>,
    /// The `config` object (Env, Cmd, Entrypoint, WorkingDir, ...).
    pub config: Map<String, Value>,
    /// `created`, RFC 3339.
    pub created: String,
    pub format: Format,
}

/// The whole image config of a stored image: what `NewImage::base_config` takes.
pub fn config_of(store: &Store, rec: &ImageRecord) -> Result<Map<String, Value>> {
    Ok(serde_json::from_slice(&store.content.read(&rec.config)?)?)
}

fn layer_type(l: &LayerRecord, format: Format) -> String {
    match (format, l.media_type.as_str()) {
        (Format::Docker, media::OCI_LAYER_GZIP) => media::DOCKER_LAYER_GZIP.into(),
        (Format::Docker, media::OCI_LAYER_TAR) => media::DOCKER_LAYER_TAR.into(),
        (Format::Oci, media::DOCKER_LAYER_GZIP) => media::OCI_LAYER_GZIP.into(),
        (Format::Oci, media::DOCKER_LAYER_TAR) => media::OCI_LAYER_TAR.into(),
        (_, t) => t.into(),
    }
}

/// Store the image and a record for each of its names; returns the first record (of an
/// untagged image: the one under its id, `sha256:...`).
pub fn write_image(store: &Store, new: NewImage<'_>) -> Result<ImageRecord> {
    let names = new
        .names
        .iter()
        .map(|n| Ok(Reference::parse(n)?.to_string()))
        .collect::<Result<Vec<String>>>()?;
    let mut cfg: Map<String, Value> = match new.base_config {
        Some(b) => b,
        None => {
            let p = Platform::host();
            let mut m = Map::new();
            m.insert("architecture".into(), json!(p.architecture));
            m.insert("os".into(), json!(p.os));
            m
        }
    };
    for k in ["container", "container_config", "id", "parent"] {
        cfg.remove(k);
    }
    let mut layers = new.layers;
    for l in &mut layers {
        l.media_type = layer_type(l, new.format);
    }
    cfg.insert("config".into(), Value::Object(new.config));
    cfg.insert("created".into(), json!(new.created));
    cfg.insert(
        "rootfs".into(),
        json!({"type": "layers",
               "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()}),
    );
    let history = cfg.entry("history").or_insert_with(|| json!([]));
    match history.as_array_mut() {
        Some(h) => h.extend(new.history),
        None => return Err(Error::invalid("base image config", "history is not a list")),
    }
    let config_bytes = serde_json::to_vec(&Value::Object(cfg))?;
    let config = store.content.put(&config_bytes)?;
    let (manifest_type, config_type) = match new.format {
        Format::Oci => (media::OCI_MANIFEST, media::OCI_CONFIG),
        Format::Docker => (media::DOCKER_MANIFEST, media::DOCKER_CONFIG),
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config.to_string(),
                   "size": config_bytes.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": l.media_type,
                   "digest": l.digest.to_string(), "size": l.size})).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = store.content.put(&manifest_bytes)?;
    let mut blobs: Vec<Digest> = vec![manifest_digest.clone(), config.clone()];
    blobs.extend(layers.iter().map(|l| l.digest.clone()));
    let mut rec = ImageRecord {
        name: names.first().cloned().unwrap_or_else(|| config.to_string()),
        target: Desc {
            media_type: manifest_type.into(),
            digest: manifest_digest.clone(),
            size: manifest_bytes.len() as u64,
        },
        manifest: manifest_digest,
        config,
        layers,
        blobs,
        created: Some(new.created),
        stored: crate::fsutil::now_secs(),
    };
    let first = rec.name.clone();
    for n in names.iter().rev() {
        rec.name = n.clone();
        store.save_image(&rec)?;
    }
    rec.name = first;
    if names.is_empty() {
        store.save_image(&rec)?;
    }
    Ok(rec)
}
