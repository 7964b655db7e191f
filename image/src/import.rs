//! Import of OCI image layouts (directories), OCI archives (`oci-archive`, a tar of a layout)
//! and `docker save` archives (plain or gzip/zstd-compressed), choosing the host platform from
//! indexes. Blobs are copied into the content store and verified on the way; archives are read
//! in place (an index of tar entries with their offsets, then one seek per blob).
//!
//! Names: `io.containerd.image.name`, else `org.opencontainers.image.ref.name` when it is a
//! full reference (skopeo's `oci-archive:F:docker.io/library/busybox:latest`), else
//! `<file name>:<ref.name>` when ref.name is a bare tag (umoci's `L:busybox`), `RepoTags` for
//! docker archives; `ImportOptions::name` overrides when the archive holds one image.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageIndex;
use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::images::{
    keep_all_platforms, media, resolve, BlobSource, Desc, Event, ImageRecord, InStore, Platform,
    Progress, Store,
};
use crate::layer::Compression;
use crate::reference::Reference;
use crate::store::ContentStore;

#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Name for the image (when the archive holds exactly one).
    pub name: Option<String>,
    pub platform: Platform,
    /// Unpack the layers into snapshots (default true).
    pub unpack: bool,
    /// Keep every platform of a multi-platform image (its other manifests, configs and
    /// layers stay in the content store, so that save and push send the whole index); only
    /// this host's platform is unpacked.
    pub all_platforms: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            name: None,
            platform: Platform::host(),
            unpack: true,
            all_platforms: false,
        }
    }
}

/// Regular files of a tar archive: name -> (data offset, size).
struct TarIndex {
    path: PathBuf,
    entries: HashMap<String, (u64, u64)>,
}

impl TarIndex {
    fn build(path: &Path) -> Result<TarIndex> {
        let f = File::open(path).ctx("open", path)?;
        let mut a = tar::Archive::new(f);
        let mut entries = HashMap::new();
        for e in a.entries_with_seek().ctx("read archive", path)? {
            let e = e.ctx("read archive", path)?;
            if !matches!(
                e.header().entry_type(),
                tar::EntryType::Regular | tar::EntryType::Continuous
            ) {
                continue;
            }
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let name = name
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_string();
            entries.insert(name, (e.raw_file_position(), e.size()));
        }
        Ok(TarIndex {
            path: path.to_path_buf(),
            entries,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn open(&self, name: &str) -> Result<(io::Take<File>, u64)> {
        let (off, size) = *self
            .entries
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("{name} in {}", self.path.display())))?;
        let mut f = File::open(&self.path).ctx("open", &self.path)?;
        f.seek(SeekFrom::Start(off)).ctx("seek", &self.path)?;
        Ok((f.take(size), size))
    }

    fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let (mut r, size) = self.open(name)?;
        if size > limit {
            return Err(Error::invalid(name, format!("over {limit} bytes")));
        }
        let mut v = Vec::with_capacity(size as usize);
        r.read_to_end(&mut v).ctx("read", &self.path)?;
        Ok(v)
    }
}

/// Where an OCI layout's blobs are.
enum Layout {
    Dir(PathBuf),
    Tar(TarIndex),
}

impl Layout {
    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        match self {
            Layout::Dir(d) => {
                let p = d.join(name);
                let f = File::open(&p).ctx("open", &p)?;
                let mut v = Vec::new();
                f.take(64 << 20).read_to_end(&mut v).ctx("read", &p)?;
                Ok(v)
            }
            Layout::Tar(t) => t.read(name, 64 << 20),
        }
    }
}

impl BlobSource for Layout {
    fn fetch(&self, store: &ContentStore, descs: &[Desc], progress: &dyn Progress) -> Result<()> {
        for d in descs {
            if store.exists(&d.digest) {
                progress.event(Event::Fetched {
                    digest: &d.digest,
                    cached: true,
                });
                continue;
            }
            let name = format!("blobs/sha256/{}", d.digest.hex());
            progress.event(Event::Fetching {
                digest: &d.digest,
                done: 0,
                total: d.size,
            });
            match self {
                Layout::Dir(dir) => {
                    let p = dir.join(&name);
                    let mut f = File::open(&p).map_err(|e| {
                        Error::io(
                            format!("blob {} of the layout ({})", d.digest, p.display()),
                            e,
                        )
                    })?;
                    store.ingest(&mut f, Some(&d.digest), Some(d.size))?;
                }
                Layout::Tar(t) => {
                    let (mut r, _) = t.open(&name)?;
                    store.ingest(&mut r, Some(&d.digest), Some(d.size))?;
                }
            }
            progress.event(Event::Fetched {
                digest: &d.digest,
                cached: false,
            });
        }
        Ok(())
    }
}

/// The name stem of an archive or layout path: `busybox` for `/x/busybox.tar.gz`.
fn base_name(path: &Path) -> String {
    let mut n = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    for suffix in [".tar.gz", ".tar.zst", ".tgz", ".tar", ".oci"] {
        if let Some(s) = n.strip_suffix(suffix) {
            n = s.to_string();
            break;
        }
    }
    let cleaned: String = n
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if cleaned.is_empty() {
        "imported".into()
    } else {
        cleaned
    }
}

fn normalize(name: &str) -> Result<String> {
    Ok(Reference::parse(name)?.to_string())
}

/// Import `path` (a layout directory or an archive file) into `store`. Returns the images
/// stored (each unpacked when `opts.unpack`).
pub fn import(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Vec<ImageRecord>> {
    let _lock = store.lock_shared()?;
    store.clean_stale()?;
    let meta = std::fs::metadata(path).ctx("stat", path)?;
    let mut temp: Option<PathBuf> = None;
    let result = (|| {
        let base = base_name(path);
        let records = if meta.is_dir() {
            if !path.join("index.json").is_file() {
                return Err(Error::invalid(
                    "OCI layout",
                    format!("{}: no index.json", path.display()),
                ));
            }
            import_oci(
                store,
                Layout::Dir(path.to_path_buf()),
                &base,
                opts,
                progress,
            )?
        } else {
            let mut f = File::open(path).ctx("open", path)?;
            let mut magic = [0u8; 4];
            let n = f.read(&mut magic).ctx("read", path)?;
            let archive = match Compression::detect(&magic[..n]) {
                Compression::None => path.to_path_buf(),
                c => {
                    // A compressed archive cannot be read in place: decompress it to a temp
                    // file beside the store's other temp files.
                    let t = fsutil::owned_temp_name(&store.root().join("ingest"), b"archive");
                    temp = Some(t.clone());
                    let mut out = File::create(&t).ctx("create", &t)?;
                    let mut r = crate::layer::decompress(File::open(path).ctx("open", path)?, c)?;
                    io::copy(&mut r, &mut out).ctx("decompress", path)?;
                    t
                }
            };
            let idx = TarIndex::build(&archive)?;
            if idx.has("index.json") {
                import_oci(store, Layout::Tar(idx), &base, opts, progress)?
            } else if idx.has("manifest.json") {
                import_docker(store, &idx, &base, opts, progress)?
            } else {
                return Err(Error::invalid(
                    "archive",
                    format!(
                        "{}: neither an OCI archive (index.json) nor a docker save archive (manifest.json)",
                        path.display()
                    ),
                ));
            }
        };
        for r in &records {
            if opts.unpack {
                store.unpack(r, progress)?;
            }
            store.save_image(r)?;
        }
        Ok(records)
    })();
    if let Some(t) = temp {
        let _ = std::fs::remove_file(t);
    }
    result
}

fn import_oci(
    store: &Store,
    layout: Layout,
    base: &str,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Vec<ImageRecord>> {
    let data = layout.read_small("index.json")?;
    let index: ImageIndex =
        serde_json::from_slice(&data).map_err(|e| Error::invalid("index.json", e.to_string()))?;
    // Group the entries by image name (several entries of one name: one per platform).
    let mut groups: BTreeMap<Option<String>, Vec<oci_spec::image::Descriptor>> = BTreeMap::new();
    for m in index.manifests() {
        let ann = m.annotations().clone().unwrap_or_default();
        let name = if let Some(n) = ann.get("io.containerd.image.name") {
            Some(n.clone())
        } else if let Some(r) = ann.get("org.opencontainers.image.ref.name") {
            if r.contains(':') || r.contains('/') {
                Some(r.clone())
            } else {
                Some(format!("{base}:{r}"))
            }
        } else {
            None
        };
        groups.entry(name).or_default().push(m.clone());
    }
    if groups.is_empty() {
        return Err(Error::invalid("index.json", "no images in it"));
    }
    let single = groups.len() == 1;
    if opts.name.is_some() && !single {
        return Err(Error::invalid(
            "import",
            format!("--name: the archive holds {} images", groups.len()),
        ));
    }
    let mut out = Vec::new();
    for (name, entries) in groups {
        let name = match (&opts.name, name) {
            (Some(n), _) => n.clone(),
            (None, Some(n)) => n,
            (None, None) if single => format!("{base}:latest"),
            (None, None) => {
                return Err(Error::invalid(
                    "import",
                    "the archive holds unnamed images next to named ones",
                ))
            }
        };
        let name = normalize(&name)?;
        let top = if entries.len() == 1 {
            Desc {
                media_type: entries[0].media_type().to_string(),
                digest: Digest::parse(entries[0].digest().as_ref())?,
                size: entries[0].size(),
            }
        } else {
            let idx = oci_spec::image::ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(oci_spec::image::MediaType::ImageIndex)
                .manifests(entries)
                .build()
                .map_err(|e| Error::invalid("index.json", e.to_string()))?;
            if opts.all_platforms {
                // The platforms of one name become an index of their own in the store.
                let data = serde_json::to_vec(&idx)?;
                Desc {
                    media_type: media::OCI_INDEX.into(),
                    digest: store.content.put(&data)?,
                    size: data.len() as u64,
                }
            } else {
                crate::images::select_platform(&idx, &opts.platform)?
            }
        };
        let mut rec = resolve(
            &store.content,
            &layout,
            &name,
            &top,
            &opts.platform,
            progress,
        )?;
        if opts.all_platforms {
            keep_all_platforms(&store.content, &layout, &mut rec, progress)?;
        }
        out.push(rec);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn import_docker(
    store: &Store,
    idx: &TarIndex,
    base: &str,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Vec<ImageRecord>> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(&idx.read("manifest.json", 16 << 20)?)
        .map_err(|e| Error::invalid("manifest.json", e.to_string()))?;
    if entries.is_empty() {
        return Err(Error::invalid("manifest.json", "no images in it"));
    }
    if opts.name.is_some() && entries.len() != 1 {
        return Err(Error::invalid(
            "import",
            format!("--name: the archive holds {} images", entries.len()),
        ));
    }
    let single = entries.len() == 1;
    let mut out = Vec::new();
    for e in entries {
        let config = idx.read(&e.config, 64 << 20)?;
        let config_digest = store.content.put(&config)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let (mut r, size) = idx.open(l)?;
            let mut magic = [0u8; 4];
            let n = r.read(&mut magic).ctx("read", &idx.path)?;
            let mt = match Compression::detect(&magic[..n]) {
                Compression::None => media::DOCKER_LAYER_TAR,
                Compression::Gzip => media::DOCKER_LAYER_GZIP,
                Compression::Zstd => media::OCI_LAYER_ZSTD,
            };
            let (mut r, _) = idx.open(l)?;
            let (digest, size) = store.content.ingest(&mut r, None, Some(size))?;
            progress.event(Event::Fetched {
                digest: &digest,
                cached: false,
            });
            layers.push(serde_json::json!({"mediaType": mt, "size": size, "digest": digest}));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST,
            "config": {"mediaType": media::DOCKER_CONFIG, "size": config.len(), "digest": config_digest},
            "layers": layers,
        });
        let mdata = serde_json::to_vec(&manifest)?;
        let mdigest = store.content.put(&mdata)?;
        let top = Desc {
            media_type: media::DOCKER_MANIFEST.into(),
            digest: mdigest,
            size: mdata.len() as u64,
        };
        let names: Vec<String> = match (&opts.name, e.repo_tags) {
            (Some(n), _) => vec![n.clone()],
            (None, Some(t)) if !t.is_empty() => t,
            (None, _) if single => vec![format!("{base}:latest")],
            (None, _) => {
                return Err(Error::invalid(
                    "import",
                    "the archive holds several images, some without RepoTags",
                ))
            }
        };
        for n in names {
            let n = normalize(&n)?;
            out.push(resolve(
                &store.content,
                &InStore,
                &n,
                &top,
                &opts.platform,
                progress,
            )?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names() {
        assert_eq!(base_name(Path::new("/x/busybox.tar")), "busybox");
        assert_eq!(base_name(Path::new("My Image.tar.gz")), "my-image");
        assert_eq!(base_name(Path::new("L")), "l");
        assert_eq!(base_name(Path::new("___.tar")), "imported");
    }
}
