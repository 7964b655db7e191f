//! Images: records on disk (`<root>/images/<sha256 of name>.json`), resolution of a manifest or
//! index down to the host platform, unpacking into snapshots, and garbage collection.
//!
//! Concurrency: everything that creates objects not yet referenced by an image record
//! (import, pull, unpack, preparing a container) holds the store's lock shared; garbage
//! collection holds it exclusively, so it never sees a half-done import.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest::{chain_ids, Digest};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, FileLock};
use crate::layer::{apply_blob, ApplyOptions, ApplyStats};
use crate::reference::Reference;
use crate::snapshot::{Mode, Snapshotter};
use crate::store::ContentStore;

pub mod media {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

    pub fn is_index(m: &str) -> bool {
        m == OCI_INDEX || m == DOCKER_LIST
    }
    pub fn is_manifest(m: &str) -> bool {
        m == OCI_MANIFEST || m == DOCKER_MANIFEST
    }
    pub fn is_layer(m: &str) -> bool {
        matches!(
            m,
            DOCKER_LAYER_TAR
                | DOCKER_LAYER_GZIP
                | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
                | OCI_LAYER_TAR
                | OCI_LAYER_GZIP
                | OCI_LAYER_ZSTD
                | "application/vnd.oci.image.layer.nondistributable.v1.tar"
                | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
                | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        )
    }
}

/// A descriptor: what a manifest or index says about a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desc {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

impl Desc {
    fn from_oci(d: &oci_spec::image::Descriptor) -> Result<Desc> {
        Ok(Desc {
            media_type: d.media_type().to_string(),
            digest: Digest::parse(d.digest().as_ref())?,
            size: d.size(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

/// What the store knows about one image name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized reference: `docker.io/library/busybox:latest`.
    pub name: String,
    /// What the name points at (an index or a manifest).
    pub target: Desc,
    /// The manifest chosen for this platform.
    pub manifest: Digest,
    /// The image config: its digest is the image id.
    pub config: Digest,
    pub layers: Vec<LayerRecord>,
    /// Every blob the image needs (indexes, manifest, config, layers): what GC keeps.
    pub blobs: Vec<Digest>,
    /// `created` of the image config.
    #[serde(default)]
    pub created: Option<String>,
    /// When it was stored (seconds since the epoch).
    pub stored: u64,
}

impl ImageRecord {
    pub fn id(&self) -> &Digest {
        &self.config
    }
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(
            &self
                .layers
                .iter()
                .map(|l| l.diff_id.clone())
                .collect::<Vec<_>>(),
        )
    }
    /// The snapshot a container of this image starts from (None: no layers).
    pub fn top_chain_id(&self) -> Option<Digest> {
        self.chain_ids().pop()
    }
    /// Compressed size of its layers.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// The platform to choose from an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The host's platform in Go's names (linux/amd64 here).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: if arch == "arm64" {
                Some("v8".into())
            } else {
                None
            },
        }
    }
    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        os == self.os
            && arch == self.architecture
            && match (&self.variant, variant) {
                (Some(want), Some(v)) => want == v,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What happens while fetching and unpacking; a client shows it.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// A blob is being fetched: `done` of `total` bytes.
    Fetching {
        digest: &'a Digest,
        done: u64,
        total: u64,
    },
    /// A blob is in the store (`cached`: it was there already).
    Fetched { digest: &'a Digest, cached: bool },
    /// A layer is being unpacked into snapshot `chain_id`.
    Unpacking {
        digest: &'a Digest,
        chain_id: &'a Digest,
    },
    /// A layer is unpacked (`cached`: its snapshot existed).
    Unpacked { digest: &'a Digest, cached: bool },
    /// A blob is being uploaded: `done` of `total` bytes.
    Pushing {
        digest: &'a Digest,
        done: u64,
        total: u64,
    },
    /// A blob is in the registry: `how` it got there ("pushed", "layer already exists",
    /// "mounted").
    Pushed { digest: &'a Digest, how: &'a str },
}

pub trait Progress: Sync {
    fn event(&self, e: Event<'_>);
}

/// A progress sink that shows nothing.
pub struct Quiet;
impl Progress for Quiet {
    fn event(&self, _: Event<'_>) {}
}

/// Where blobs come from while an image is resolved.
pub trait BlobSource: Sync {
    /// Make sure the blobs are in the store, fetching what is missing.
    fn fetch(&self, store: &ContentStore, descs: &[Desc], progress: &dyn Progress) -> Result<()>;
}

/// Everything is already in the store.
pub struct InStore;
impl BlobSource for InStore {
    fn fetch(&self, store: &ContentStore, descs: &[Desc], _: &dyn Progress) -> Result<()> {
        for d in descs {
            if !store.exists(&d.digest) {
                return Err(Error::NotFound(format!("blob {}", d.digest)));
            }
        }
        Ok(())
    }
}

/// The media type of a manifest-like blob: the descriptor's, else the document's own
/// `mediaType`, else guessed from its shape.
fn sniff_media_type(desc: &Desc, data: &[u8]) -> String {
    if media::is_index(&desc.media_type) || media::is_manifest(&desc.media_type) {
        return desc.media_type.clone();
    }
    let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    if let Some(m) = v.get("mediaType").and_then(|m| m.as_str()) {
        return m.to_string();
    }
    if v.get("manifests").is_some() {
        media::OCI_INDEX.into()
    } else if v.get("layers").is_some() {
        media::OCI_MANIFEST.into()
    } else {
        desc.media_type.clone()
    }
}

/// Choose the manifest for `platform` among an index's entries.
pub fn select_platform(index: &ImageIndex, platform: &Platform) -> Result<Desc> {
    let mut available = Vec::new();
    let mut unlabelled = Vec::new();
    for m in index.manifests() {
        match m.platform() {
            Some(p) => {
                let os = p.os().to_string();
                let arch = p.architecture().to_string();
                if platform.matches(&os, &arch, p.variant().as_deref()) {
                    return Desc::from_oci(m);
                }
                available.push(format!(
                    "{os}/{arch}{}",
                    p.variant()
                        .as_deref()
                        .map(|v| format!("/{v}"))
                        .unwrap_or_default()
                ));
            }
            None => unlabelled.push(m),
        }
    }
    if available.is_empty() && unlabelled.len() == 1 {
        return Desc::from_oci(unlabelled[0]);
    }
    Err(Error::Unsupported(format!(
        "no image for {platform} in the index (it has: {})",
        if available.is_empty() {
            "entries without a platform".to_string()
        } else {
            available.join(", ")
        }
    )))
}

/// Walk from `top` (an index or a manifest) to the manifest for `platform`, its config and
/// layers, fetching through `src`; returns the image's record (not yet saved).
pub fn resolve(
    content: &ContentStore,
    src: &dyn BlobSource,
    name: &str,
    top: &Desc,
    platform: &Platform,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    let mut blobs = Vec::new();
    let mut cur = top.clone();
    let mut target = top.clone();
    let manifest: ImageManifest = loop {
        if blobs.len() > 4 {
            return Err(Error::invalid("image index", "nested too deeply"));
        }
        src.fetch(content, std::slice::from_ref(&cur), progress)?;
        let data = content.read(&cur.digest)?;
        if data.len() as u64 != cur.size {
            return Err(Error::SizeMismatch {
                digest: cur.digest.to_string(),
                expected: cur.size,
                actual: data.len() as u64,
            });
        }
        blobs.push(cur.digest.clone());
        let mt = sniff_media_type(&cur, &data);
        if blobs.len() == 1 {
            target.media_type = mt.clone();
        }
        if media::is_index(&mt) {
            let idx: ImageIndex = serde_json::from_slice(&data)
                .map_err(|e| Error::invalid(format!("index {}", cur.digest), e.to_string()))?;
            cur = select_platform(&idx, platform)?;
        } else if media::is_manifest(&mt) {
            let v: serde_json::Value = serde_json::from_slice(&data)?;
            if v.get("schemaVersion").and_then(|s| s.as_u64()) != Some(2) {
                return Err(Error::Unsupported(format!(
                    "manifest {}: only schema version 2 is supported",
                    cur.digest
                )));
            }
            break serde_json::from_slice(&data)
                .map_err(|e| Error::invalid(format!("manifest {}", cur.digest), e.to_string()))?;
        } else {
            return Err(Error::Unsupported(format!(
                "{}: media type {mt:?} is not an image manifest or index",
                cur.digest
            )));
        }
    };
    let manifest_digest = cur.digest.clone();
    let config_desc = Desc::from_oci(manifest.config())?;
    let cmt = config_desc.media_type.as_str();
    if cmt != media::OCI_CONFIG && cmt != media::DOCKER_CONFIG {
        return Err(Error::Unsupported(format!(
            "config media type {cmt:?} (not a container image)"
        )));
    }
    src.fetch(content, std::slice::from_ref(&config_desc), progress)?;
    let config_data = content.read(&config_desc.digest)?;
    let config: ImageConfiguration = serde_json::from_slice(&config_data).map_err(|e| {
        Error::invalid(
            format!("image config {}", config_desc.digest),
            e.to_string(),
        )
    })?;
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    if os != platform.os || arch != platform.architecture {
        return Err(Error::Unsupported(format!(
            "the image is for {os}/{arch}, this host runs {platform}"
        )));
    }
    blobs.push(config_desc.digest.clone());
    let layer_descs = manifest
        .layers()
        .iter()
        .map(Desc::from_oci)
        .collect::<Result<Vec<_>>>()?;
    for l in &layer_descs {
        if !media::is_layer(&l.media_type) {
            return Err(Error::Unsupported(format!(
                "layer {}: media type {:?}",
                l.digest, l.media_type
            )));
        }
    }
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>>>()?;
    if diff_ids.len() != layer_descs.len() {
        return Err(Error::invalid(
            "image",
            format!(
                "the config lists {} layers, the manifest {}",
                diff_ids.len(),
                layer_descs.len()
            ),
        ));
    }
    src.fetch(content, &layer_descs, progress)?;
    let layers: Vec<LayerRecord> = layer_descs
        .into_iter()
        .zip(diff_ids)
        .map(|(d, diff_id)| LayerRecord {
            media_type: d.media_type,
            digest: d.digest,
            size: d.size,
            diff_id,
        })
        .collect();
    blobs.extend(layers.iter().map(|l| l.digest.clone()));
    Ok(ImageRecord {
        name: name.to_string(),
        target,
        manifest: manifest_digest,
        config: config_desc.digest,
        layers,
        blobs,
        created: config.created().clone(),
        stored: fsutil::now_secs(),
    })
}

/// One manifest an index names, with the blobs it needs (config, then layers).
#[derive(Clone, Debug)]
pub struct IndexEntry {
    pub manifest: Desc,
    pub blobs: Vec<Desc>,
}

/// Every manifest the index `top` names (every platform, attestations too), each with its
/// config and layers, fetched through `src` (`InStore` only checks that they are there):
/// what `--all-platforms` keeps and what a push of the whole index sends. Layers a registry
/// is not meant to hold (non-distributable, with `urls`) are left out, as containerd does.
/// A nested index is refused.
pub fn index_entries(
    content: &ContentStore,
    src: &dyn BlobSource,
    top: &Desc,
    progress: &dyn Progress,
) -> Result<Vec<IndexEntry>> {
    src.fetch(content, std::slice::from_ref(top), progress)?;
    let data = content.read(&top.digest)?;
    if !media::is_index(&sniff_media_type(top, &data)) {
        return Err(Error::invalid(
            format!("index {}", top.digest),
            "not an image index",
        ));
    }
    let idx: ImageIndex = serde_json::from_slice(&data)
        .map_err(|e| Error::invalid(format!("index {}", top.digest), e.to_string()))?;
    let children = idx
        .manifests()
        .iter()
        .map(Desc::from_oci)
        .collect::<Result<Vec<_>>>()?;
    src.fetch(content, &children, progress)?;
    let mut out = Vec::new();
    for child in children {
        let data = content.read(&child.digest)?;
        if data.len() as u64 != child.size {
            return Err(Error::SizeMismatch {
                digest: child.digest.to_string(),
                expected: child.size,
                actual: data.len() as u64,
            });
        }
        let mt = sniff_media_type(&child, &data);
        if !media::is_manifest(&mt) {
            return Err(Error::Unsupported(format!(
                "index {}: entry {} is {mt:?}, not an image manifest",
                top.digest, child.digest
            )));
        }
        let m: ImageManifest = serde_json::from_slice(&data)
            .map_err(|e| Error::invalid(format!("manifest {}", child.digest), e.to_string()))?;
        let mut blobs = vec![Desc::from_oci(m.config())?];
        for l in m.layers() {
            let foreign = l.urls().as_ref().is_some_and(|u| !u.is_empty())
                || l.media_type().to_string().contains("nondistributable")
                || l.media_type().to_string().contains("foreign");
            if !foreign {
                blobs.push(Desc::from_oci(l)?);
            }
        }
        src.fetch(content, &blobs, progress)?;
        out.push(IndexEntry {
            manifest: Desc {
                media_type: mt,
                ..child
            },
            blobs,
        });
    }
    Ok(out)
}

/// Add every platform of `rec`'s index (when its name points at one) to the record's blobs,
/// fetching them through `src`.
pub fn keep_all_platforms(
    content: &ContentStore,
    src: &dyn BlobSource,
    rec: &mut ImageRecord,
    progress: &dyn Progress,
) -> Result<()> {
    if rec.target.digest == rec.manifest {
        return Ok(());
    }
    for e in index_entries(content, src, &rec.target, progress)? {
        for d in std::iter::once(&e.manifest).chain(&e.blobs) {
            if !rec.blobs.contains(&d.digest) {
                rec.blobs.push(d.digest.clone());
            }
        }
    }
    Ok(())
}

/// The index `rec`'s name points at, with every platform's manifest, config and layers, when
/// all of them are in the store; None for an image of one manifest or one whose other
/// platforms were not kept.
pub fn whole_index(store: &Store, rec: &ImageRecord) -> Result<Option<Vec<IndexEntry>>> {
    if rec.target.digest == rec.manifest || !store.content.exists(&rec.target.digest) {
        return Ok(None);
    }
    let entries = match index_entries(&store.content, &InStore, &rec.target, &Quiet) {
        Ok(e) => e,
        // A platform's manifest, config or layer that is not here.
        Err(Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    // Only what this image kept (--all-platforms): blobs another image left in the store do
    // not make a host-only pull push the whole index.
    let kept = entries.iter().all(|e| {
        std::iter::once(&e.manifest)
            .chain(&e.blobs)
            .all(|d| rec.blobs.contains(&d.digest))
    });
    Ok(kept.then_some(entries))
}

/// At most this many layers are unpacked at once (fewer on fewer CPUs).
pub const MAX_PARALLEL_UNPACK: usize = 4;

/// What `gc` removed.
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    pub blobs: Vec<Digest>,
    pub snapshots: Vec<Digest>,
    pub stale: usize,
}

/// The image service under one data root: content store, snapshotter, image records.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    pub content: ContentStore,
    pub snapshots: Snapshotter,
    images_dir: PathBuf,
}

impl Store {
    /// Open (creating) the store under `root`; `mode` None picks overlay where available.
    pub fn open(root: &Path, mode: Option<Mode>) -> Result<Store> {
        fs::create_dir_all(root).ctx("create", root)?;
        let images_dir = root.join("images");
        fs::create_dir_all(&images_dir).ctx("create", &images_dir)?;
        Ok(Store {
            root: root.to_path_buf(),
            content: ContentStore::open(root)?,
            snapshots: Snapshotter::open(root, mode)?,
            images_dir,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Held while creating objects not yet referenced by an image record.
    pub fn lock_shared(&self) -> Result<FileLock> {
        FileLock::shared(&self.root.join("lock"))
    }
    /// Held by garbage collection.
    pub fn lock_exclusive(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.root.join("lock"))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.images_dir
            .join(format!("{}.json", Digest::of(name.as_bytes()).hex()))
    }

    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.images_dir).ctx("read", &self.images_dir)? {
            let e = e.ctx("read", &self.images_dir)?;
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let data = match fs::read(&p) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("read {}", p.display()), e)),
            };
            out.push(serde_json::from_slice::<ImageRecord>(&data).map_err(|e| {
                Error::invalid(format!("image record {}", p.display()), e.to_string())
            })?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// An image by name (normalized: `busybox` finds `docker.io/library/busybox:latest`), by
    /// id (`sha256:...` or a unique prefix of at least 4 hex digits of it).
    pub fn image(&self, name_or_id: &str) -> Result<ImageRecord> {
        if let Ok(r) = Reference::parse(name_or_id) {
            let p = self.record_path(&r.to_string());
            if let Ok(data) = fs::read(&p) {
                return Ok(serde_json::from_slice(&data)?);
            }
        }
        let hex = name_or_id.strip_prefix("sha256:").unwrap_or(name_or_id);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let all = self.list_images()?;
            let hits: Vec<_> = all
                .iter()
                .filter(|i| i.id().hex().starts_with(hex))
                .collect();
            let ids: HashSet<_> = hits.iter().map(|i| i.id()).collect();
            match ids.len() {
                0 => {}
                1 => return Ok(hits[0].clone()),
                _ => {
                    return Err(Error::invalid(
                        "image id",
                        format!("{name_or_id:?} is ambiguous"),
                    ))
                }
            }
        }
        Err(Error::NotFound(format!("image {name_or_id:?}")))
    }

    pub fn save_image(&self, rec: &ImageRecord) -> Result<()> {
        fsutil::write_atomic(
            &self.record_path(&rec.name),
            &serde_json::to_vec_pretty(rec)?,
        )
    }

    /// The unpacked size of `rec` (its snapshots' content, as docker's `images` shows it);
    /// the compressed size while it is not unpacked.
    pub fn unpacked_size(&self, rec: &ImageRecord) -> Result<u64> {
        let chains = rec.chain_ids();
        if !chains.iter().all(|c| self.snapshots.exists(c)) {
            return Ok(rec.size());
        }
        chains.iter().map(|c| self.snapshots.size(c)).sum()
    }

    /// Remove the record of image `name` (exact, normalized name). Run `gc` after.
    pub fn delete_image(&self, name: &str) -> Result<()> {
        let p = self.record_path(name);
        match fs::remove_file(&p) {
            Ok(()) => fsutil::sync_dir(&self.images_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(format!("image {name:?}")))
            }
            Err(e) => Err(Error::io(format!("remove {}", p.display()), e)),
        }
    }

    /// Unpack every layer of `rec` that has no snapshot yet (one snapshot per ChainID). Each
    /// layer is applied to a fresh snapshot of its own, several layers at a time (a layer's
    /// content does not depend on the layers below it; only the attributes of the directories it
    /// implies do, and those are fixed once the layers below are unpacked), its DiffID checked;
    /// then all are committed by rename, parents first, after one `syncfs`.
    pub fn unpack(&self, rec: &ImageRecord, progress: &dyn Progress) -> Result<()> {
        let chains = rec.chain_ids();
        let mut todo = Vec::new();
        for (i, (layer, chain)) in rec.layers.iter().zip(&chains).enumerate() {
            if self.snapshots.exists(chain) {
                progress.event(Event::Unpacked {
                    digest: &layer.digest,
                    cached: true,
                });
            } else {
                todo.push(i);
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, MAX_PARALLEL_UNPACK)
            .min(todo.len());
        // Biggest layers first, so that a big one does not start last and run alone.
        let mut order: Vec<usize> = (0..todo.len()).collect();
        order.sort_by_key(|&k| std::cmp::Reverse(rec.layers[todo[k]].size));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        type Slot = std::sync::Mutex<Option<Result<(String, ApplyStats)>>>;
        let results: Vec<Slot> = todo.iter().map(|_| Default::default()).collect();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    use std::sync::atomic::Ordering::SeqCst;
                    let n = next.fetch_add(1, SeqCst);
                    if n >= order.len() || failed.load(SeqCst) {
                        break;
                    }
                    let k = order[n];
                    let r = self.unpack_layer(rec, &chains, todo[k], progress);
                    if r.is_err() {
                        failed.store(true, SeqCst);
                    }
                    *results[k].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                });
            }
        });
        let mut first_err = None;
        let mut done: Vec<(usize, String, ApplyStats)> = Vec::new();
        for (k, slot) in results.into_iter().enumerate() {
            match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(Ok((key, stats))) => done.push((todo[k], key, stats)),
                Some(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                None => {}
            }
        }
        let cleanup = |done: &[(usize, String, ApplyStats)]| {
            for (_, key, _) in done {
                let _ = self.snapshots.remove(key);
            }
        };
        if let Some(e) = first_err {
            cleanup(&done);
            return Err(e);
        }
        // The directories each layer implies, as they are below it (in the snapshots just
        // unpacked, or the committed ones).
        let fs_of = |i: usize| match done.iter().find(|(j, _, _)| *j == i) {
            Some((_, key, _)) => self.snapshots.active_fs_path(key),
            None => self.snapshots.fs_path(&chains[i]),
        };
        let chown = nix::unistd::geteuid().is_root();
        for (i, key, stats) in &done {
            let lowers: Vec<PathBuf> = (0..*i).rev().map(fs_of).collect();
            let fs = self.snapshots.active_fs_path(key);
            if let Err(e) =
                crate::layer::fix_implicit_dirs(&fs, &stats.implicit_dirs, &lowers, chown)
                    .and_then(|()| {
                        crate::layer::link_from_lowers(&fs, &stats.lower_links, &lowers, chown)
                    })
                    .map_err(|e| Error::Layer {
                        digest: rec.layers[*i].digest.to_string(),
                        err: Box::new(e),
                    })
            {
                cleanup(&done);
                return Err(e);
            }
        }
        let items: Vec<(&Digest, &str)> = done
            .iter()
            .map(|(i, key, _)| (&chains[*i], key.as_str()))
            .collect();
        if let Err(e) = self.snapshots.commit_all(&items) {
            cleanup(&done);
            return Err(e);
        }
        for (i, _, _) in &done {
            progress.event(Event::Unpacked {
                digest: &rec.layers[*i].digest,
                cached: false,
            });
        }
        Ok(())
    }

    /// Apply layer `i` of `rec` to a new active snapshot (its parent possibly not committed
    /// yet); returns the snapshot's key and what was applied.
    fn unpack_layer(
        &self,
        rec: &ImageRecord,
        chains: &[Digest],
        i: usize,
        progress: &dyn Progress,
    ) -> Result<(String, ApplyStats)> {
        let (layer, chain) = (&rec.layers[i], &chains[i]);
        progress.event(Event::Unpacking {
            digest: &layer.digest,
            chain_id: chain,
        });
        let parent = if i == 0 { None } else { Some(&chains[i - 1]) };
        let key = format!(
            "extract-{}-{}-{}",
            fsutil::owner_tag(),
            fsutil::random_hex(4),
            chain.short()
        );
        let fs_dir = self.snapshots.prepare_diff_detached(&key, parent)?;
        let blob = self.content.path(&layer.digest);
        let mut opts = ApplyOptions::overlay(Vec::new());
        opts.defer_lower_links = true;
        let r = apply_blob(&fs_dir, &blob, Some(&layer.diff_id), &opts).map_err(|e| match e {
            Error::DigestMismatch { expected, actual } => Error::invalid(
                format!("layer {}", layer.digest),
                format!("its content hashes to {actual}, the config says {expected}"),
            ),
            e => Error::Layer {
                digest: layer.digest.to_string(),
                err: Box::new(e),
            },
        });
        match r {
            Ok((stats, _)) => Ok((key, stats)),
            Err(e) => {
                let _ = self.snapshots.remove(&key);
                Err(e)
            }
        }
    }

    /// Remove what killed imports and pulls left: their temp files and half-unpacked
    /// snapshots, only those whose owner process is gone (its pid and start time are in the
    /// name), never another live process's work. Import and pull call it first (with the
    /// shared lock). Returns how many went.
    pub fn clean_stale(&self) -> Result<usize> {
        let mut n = self.content.clean_stale()?;
        for (key, _) in self.snapshots.list_active()? {
            if fsutil::owner_of(&key, "extract-").is_some_and(fsutil::owner_gone) {
                self.snapshots.remove(&key)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Remove blobs and snapshots no image needs. Active snapshots (containers' own layers) are
    /// kept with all their ancestors; leftovers of interrupted unpacks and writes go.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock_exclusive()?;
        let mut report = GcReport::default();
        let images = self.list_images()?;
        let mut keep_blobs: HashSet<Digest> = HashSet::new();
        let mut keep_snaps: HashSet<Digest> = HashSet::new();
        for i in &images {
            keep_blobs.extend(i.blobs.iter().cloned());
            keep_snaps.extend(i.chain_ids());
        }
        for (key, info) in self.snapshots.list_active()? {
            let stale = key.starts_with("extract-") || info.is_none();
            if stale {
                self.snapshots.remove(&key)?;
                report.stale += 1;
                continue;
            }
            if let Some(p) = info.and_then(|i| i.parent) {
                keep_snaps.extend(self.snapshots.chain(&p)?);
            }
        }
        for (name, _) in self.snapshots.list_committed()? {
            if !keep_snaps.contains(&name) {
                self.snapshots.remove_committed(&name)?;
                report.snapshots.push(name);
            }
        }
        for d in self.content.list()? {
            if !keep_blobs.contains(&d) {
                self.content.delete(&d)?;
                report.blobs.push(d);
            }
        }
        report.stale += self.content.clean_ingest()?;
        self.snapshots.clean_trash()?;
        Ok(report)
    }
}
