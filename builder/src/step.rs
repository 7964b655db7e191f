//! The machinery every layer step shares: a fresh active snapshot over the stage's layers
//! mounted as a bundle's rootfs ([`Step`]), read-only views of other stages and images
//! ([`View`]), taking a step from the cache, and turning the step's upper directory into a
//! layer, a committed snapshot and a cache entry.

use std::path::{Path, PathBuf};

use image::images::LayerRecord;
use image::{Digest, ImageRecord, Store};
use serde_json::{json, Map, Value};

use crate::build::{Builder, Error, Result, State};
use crate::meta;
use crate::plan;

impl Builder<'_> {
    /// WORKDIR makes its directory when it is missing, owned by the stage's USER, as a layer
    /// step of its own (as BuildKit does); when it exists the step adds no layer.
    pub(crate) fn workdir_step(
        &self,
        st: &mut State,
        ins: &crate::dockerfile::Instruction,
    ) -> Result<bool> {
        let dir = match st.stage.config_str("WorkingDir") {
            "" => "/".to_string(),
            d => d.to_string(),
        };
        let user = st.stage.config_str("User").to_string();
        let key = self.key_of(st, ins, &[], &dir, &user);
        let by = format!("WORKDIR {dir}");
        if self.take_cached(st, &key, &by)? {
            return Ok(true);
        }
        let step = self.begin(st)?;
        let owner = if user.is_empty() {
            (0, 0)
        } else {
            let u = image::user::resolve_user(&step.rootfs(), &user)
                .map_err(|e| Error::step(ins.line, format!("WORKDIR: USER {user}: {e}")))?;
            (u.uid, u.gid)
        };
        mkdir_in_root(&step.rootfs(), &dir, owner, self.now_secs())?;
        self.finish(st, step, &key, &by)?;
        Ok(false)
    }

    /// Take step `key` from the cache if it is there and its layer still is; false: a miss.
    pub(crate) fn take_cached(&self, st: &mut State, key: &str, by: &str) -> Result<bool> {
        if self.opts.no_cache {
            return Ok(false);
        }
        let Some(entry) = self.cache.get(key) else {
            return Ok(false);
        };
        let created = entry
            .get("created")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let layer: Option<LayerRecord> = match entry.get("layer") {
            Some(Value::Null) | None => None,
            Some(l) => match serde_json::from_value(l.clone()) {
                Ok(l) => Some(l),
                Err(_) => return Ok(false),
            },
        };
        let mut next = st.clone();
        if let Some(l) = &layer {
            if !self.store.content.exists(&l.digest) {
                return Ok(false);
            }
            next.layers.push(l.clone());
            let top = next.top().expect("a layer");
            if !self.store.snapshots.exists(&top) {
                // Unpacked again from the blob (its parents are there: built just before).
                let rec = synthetic_record(&next.layers);
                if self.store.unpack(&rec, &image::Quiet).is_err() {
                    return Ok(false);
                }
            }
        }
        let created = if self.opts.timestamp.is_some() || created.is_empty() {
            self.now()
        } else {
            created
        };
        next.history.push(history(&created, by, layer.is_none()));
        next.key = key.to_string();
        next.created = created;
        *st = next;
        self.cached
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(true)
    }

    /// A fresh writable snapshot over the stage's layers, mounted as a bundle's rootfs.
    pub(crate) fn begin(&self, st: &State) -> Result<Step<'_>> {
        let n = image::fsutil::random_hex(6);
        let key = format!("extract-{}-build-{n}", image::fsutil::owner_tag());
        let bundle = self.tmp.join(format!("step-{n}"));
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs)
            .map_err(|e| Error::io(format!("create {}", rootfs.display()), e))?;
        let mut step = Step {
            store: self.store,
            key: None,
            bundle,
            mounted: false,
        };
        let mounts = self.store.snapshots.prepare(&key, st.top().as_ref())?;
        step.key = Some(key);
        image::snapshot::mount_all(&mounts, &rootfs)?;
        step.mounted = true;
        Ok(step)
    }

    /// Turn the step's upper directory into a layer (none when it changed nothing), commit
    /// its snapshot, record the step in the cache and in `st`.
    pub(crate) fn finish(
        &self,
        st: &mut State,
        mut step: Step<'_>,
        key: &str,
        by: &str,
    ) -> Result<()> {
        step.unmount()?;
        let snap = step.key.clone().expect("an active snapshot");
        let upper = self.store.snapshots.active_fs_path(&snap);
        let layer = image::diff::write_layer(
            &self.store.content,
            &upper,
            &image::diff::DiffOptions {
                clamp_mtime: self.opts.timestamp,
                zstd: self.opts.zstd,
                ..Default::default()
            },
        )?;
        self.record(st, step, layer, key, by, |_, _| Ok(()))
    }

    /// Record the step's `layer` (none when it has no entries) in the cache and in `st`, with
    /// its snapshot: the one named by its ChainID when it exists already (content-addressed:
    /// the step's own snapshot is dropped unfilled, or removed as a duplicate), else the
    /// step's, filled by `fill` (given its upper directory and the layers below, top-most
    /// first) and committed.
    pub(crate) fn record(
        &self,
        st: &mut State,
        mut step: Step<'_>,
        layer: image::diff::NewLayer,
        key: &str,
        by: &str,
        fill: impl FnOnce(&Path, Vec<PathBuf>) -> Result<()>,
    ) -> Result<()> {
        step.unmount()?;
        let created = self.now();
        let record = if layer.stats.entries == 0 {
            None
        } else {
            let mut layers = st.layers.clone();
            layers.push(layer.record.clone());
            let ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
            let chain = image::digest::chain_ids(&ids).pop().expect("a layer");
            if !self.store.snapshots.exists(&chain) {
                let snap = step.key.clone().expect("an active snapshot");
                fill(
                    &self.store.snapshots.active_fs_path(&snap),
                    self.lowers(st)?,
                )?;
                self.store.snapshots.commit(&chain, &snap)?;
                step.key = None;
            }
            st.layers = layers;
            Some(layer.record)
        };
        drop(step);
        st.history.push(history(&created, by, record.is_none()));
        st.key = key.to_string();
        st.created = created.clone();
        let entry = json!({"layer": record, "created": created});
        if let Err(e) = self.cache.put(key, &entry) {
            self.report
                .note(&format!("the build cache could not be written: {e}"));
        }
        self.ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The content directories of the stage's layers, top-most first.
    pub(crate) fn lowers(&self, st: &State) -> Result<Vec<PathBuf>> {
        Ok(match st.top() {
            Some(t) => self
                .store
                .snapshots
                .chain(&t)?
                .iter()
                .map(|d| self.store.snapshots.fs_path(d))
                .collect(),
            None => Vec::new(),
        })
    }

    /// The workdir or a `--from` root: (directory on the host, guard that unmounts it).
    pub(crate) fn view_of(&self, st: &State) -> Result<(PathBuf, View<'_>)> {
        let dir = self
            .tmp
            .join(format!("view-{}", image::fsutil::random_hex(6)));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let mut v = View {
            store: self.store,
            dir: dir.clone(),
            key: None,
            mounted: false,
        };
        if let Some(top) = st.top() {
            let key = format!(
                "extract-{}-view-{}",
                image::fsutil::owner_tag(),
                image::fsutil::random_hex(6)
            );
            let mounts = self.store.snapshots.view(&key, &top)?;
            v.key = Some(key);
            image::snapshot::mount_all(&mounts, &dir)?;
            v.mounted = true;
        }
        Ok((dir, v))
    }

    /// The state of `--from=NAME`: an earlier stage (by name or number) or an image.
    pub(crate) fn source_state(&self, from: &str, line: usize, before: usize) -> Result<State> {
        if let Some(j) = plan::resolve(&self.plan.stages[..before], from) {
            // Built already: it is among this stage's needs.
            return self
                .built(j)
                .ok_or_else(|| Error::step(line, format!("stage {from} is not built")));
        }
        let rec = self.image(from, line)?;
        Ok(State {
            base_config: None,
            stage: meta::Stage::new(Map::new()),
            layers: rec.layers.clone(),
            history: Vec::new(),
            key: rec.id().to_string(),
            created: String::new(),
        })
    }
}

fn history(created: &str, by: &str, empty: bool) -> Value {
    let mut h = json!({"created": created, "created_by": by, "comment": "buildkit.dockerfile.v0"});
    if empty {
        h["empty_layer"] = json!(true);
    }
    h
}

/// An image record holding just `layers` (for unpacking them).
fn synthetic_record(layers: &[LayerRecord]) -> ImageRecord {
    ImageRecord {
        name: "build".into(),
        target: image::Desc {
            media_type: String::new(),
            digest: layers[0].digest.clone(),
            size: 0,
        },
        manifest: layers[0].digest.clone(),
        config: layers[0].digest.clone(),
        layers: layers.to_vec(),
        blobs: Vec::new(),
        created: None,
        stored: 0,
    }
}

/// A step's active snapshot mounted as `<bundle>/rootfs`; dropped unused, it goes away whole.
pub(crate) struct Step<'a> {
    store: &'a Store,
    pub(crate) key: Option<String>,
    pub(crate) bundle: PathBuf,
    mounted: bool,
}

impl Step<'_> {
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    pub(crate) fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            image::snapshot::unmount(&self.rootfs())?;
            self.mounted = false;
        }
        Ok(())
    }

    /// Create the stage's WORKDIR in the rootfs if it is missing (root-owned, 0755), as
    /// BuildKit does before a step runs there.
    pub(crate) fn ensure_workdir(&mut self, st: &State) -> Result<()> {
        let w = st.stage.config_str("WorkingDir");
        if w.is_empty() || w == "/" {
            return Ok(());
        }
        mkdir_in_root(&self.rootfs(), w, (0, 0), image::fsutil::now_secs()).map(|_| ())
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if self.mounted {
            let _ = image::snapshot::unmount(&self.rootfs());
        }
        if let Some(k) = &self.key {
            let _ = self.store.snapshots.remove(k);
        }
        let _ = image::fsutil::remove_path(&self.bundle);
    }
}

/// A read-only view mounted on a directory; unmounted and removed when dropped.
pub(crate) struct View<'a> {
    store: &'a Store,
    dir: PathBuf,
    key: Option<String>,
    mounted: bool,
}

impl Drop for View<'_> {
    fn drop(&mut self) {
        if self.mounted {
            let _ = image::snapshot::unmount(&self.dir);
        }
        if let Some(k) = &self.key {
            let _ = self.store.snapshots.remove(k);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The directories of `rel` (itself included) that do not exist inside `root`, parents first.
pub(crate) fn missing_dirs(root: &Path, rel: &str) -> Result<Vec<String>> {
    let fd = image::fsutil::open_dir(root)?;
    let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    let mut out = Vec::new();
    for i in 0..parts.len() {
        let p = parts[..=i].join("/");
        if image::fsutil::open_dir_in_root(std::os::fd::AsFd::as_fd(&fd), p.as_bytes()).is_err() {
            out.push(p);
        }
    }
    Ok(out)
}

/// `mkdir -p` of `path` inside `root` (every component resolved in the root): the missing
/// directories are made 0755 and owned by `owner`. Returns whether any was made.
pub(crate) fn mkdir_in_root(
    root: &Path,
    path: &str,
    owner: (u32, u32),
    mtime: u64,
) -> Result<bool> {
    let missing = missing_dirs(root, &crate::clean(path))?;
    if missing.is_empty() {
        return Ok(false);
    }
    let items: Vec<crate::copy::Item> = missing
        .into_iter()
        .map(|d| crate::copy::Item {
            source: crate::copy::Source::Dir {
                mode: 0o755,
                owner,
                mtime,
            },
            dest: d,
        })
        .collect();
    let mut tar = Vec::new();
    crate::copy::write_tar(&items, &crate::copy::Attrs::default(), &mut tar)?;
    image::layer::apply(root, tar.as_slice(), &image::layer::ApplyOptions::delete())?;
    Ok(true)
}
