//! The build scheduler: a Dockerfile and a context to an image in the store.
//!
//! - The plan's stages are built dependencies first; stages that do not need each other are
//!   built at the same time (one thread each).
//! - A stage starts from its base (an image in the store, pulled when missing or with `--pull`;
//!   `scratch`; an earlier stage), runs the base's ONBUILD triggers, then its instructions.
//! - Metadata instructions change the config only (`meta::apply`) and add a history entry
//!   marked `empty_layer`.
//! - RUN, COPY and ADD each run on a fresh active snapshot over the stage's layers (overlayfs:
//!   a new upper directory), mounted as a bundle's rootfs; the upper directory becomes the
//!   step's layer (`image::diff`), and the snapshot is committed under the layer's ChainID, the
//!   same name unpacking that layer would give; when a snapshot of that name exists already,
//!   it is the one used. A COPY/ADD below a new directory writes its layer straight from its
//!   sources (`copy_layer`) and fills its snapshot only when that name is not taken. A step
//!   that changes nothing adds no layer.
//! - Each layer step is keyed (`cache::step_key`) by the key before it, the config, the ARGs
//!   in scope, the instruction and, for COPY/ADD, the digest of what it copies. A key found in
//!   the cache whose layer blob is still in the store is taken as it is ("CACHED"): its
//!   snapshot is unpacked again if it was removed.
//! - Times: a history entry's `created` is the time of the layer step it follows (the cached
//!   one's on a hit, the base's before the first), so an unchanged rebuild gives the same image
//!   id; `SOURCE_DATE_EPOCH` (`Options::timestamp`) fixes every time and clamps file mtimes.
//! - Whatever fails, nothing of the step stays: no mount, no active snapshot, no bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use image::bundle::Network;
use image::commit::{self, Format};
use image::images::LayerRecord;
use image::{Digest, ImageRecord, Store};
use serde_json::{json, Map, Value};

use crate::cache::Cache;
use crate::context::{Context, StatCache};
use crate::dockerfile::{Args, Instruction, Keyword};
use crate::exec::Runtime;
use crate::ignore::Ignore;
use crate::meta;
use crate::plan::{self, Base, Plan};
use crate::words::Lexer;
use crate::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("Dockerfile:{line}: {msg}")]
    Step { line: usize, msg: String },
    #[error(
        "Dockerfile:{line}: RUN {command}: exit code {code}{}",
        if output.is_empty() { String::new() } else { format!("; its last output:\n{output}") }
    )]
    Run {
        line: usize,
        command: String,
        code: i32,
        output: String,
    },
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn step(line: usize, msg: impl std::fmt::Display) -> Error {
        Error::Step {
            line,
            msg: msg.to_string(),
        }
    }
    pub(crate) fn io(what: impl Into<String>, err: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            err,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        Error::Io {
            what: "build".into(),
            err,
        }
    }
}

/// What the build tells its caller as it goes. Called from several threads at once when
/// stages build in parallel.
pub trait Report: Sync {
    /// A step begins: `stage` is its stage's name or number, `n` of `total` in that stage.
    fn step(&self, stage: &str, n: usize, total: usize, text: &str);
    /// The step was found in the cache.
    fn cached(&self, stage: &str);
    /// The step is done after `secs`.
    fn done(&self, stage: &str, secs: f64);
    /// Output of a RUN step.
    fn output(&self, data: &[u8]);
    /// Something worth saying (an ignored `# syntax`, a pull).
    fn note(&self, msg: &str);
}

/// What to build and how.
pub struct Options {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// Names to tag the result with (none: untagged, known by its id).
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// Pull every base image even when it is in the store.
    pub pull: bool,
    /// How base images are pulled (registry options).
    pub pull_options: image::registry::PullOptions,
    /// The network of RUN steps (`RUN --network` overrides it).
    pub network: Network,
    pub format: Format,
    /// `--secret`s by id, for `RUN --mount=type=secret`.
    pub secrets: BTreeMap<String, crate::mounts::SecretSource>,
    /// zstd layers (OCI format only) instead of gzip.
    pub zstd: bool,
    /// SOURCE_DATE_EPOCH: every time in the image, and no file mtime later.
    pub timestamp: Option<u64>,
    pub runtime: Runtime,
}

/// The result.
#[derive(Debug)]
pub struct Built {
    pub image: ImageRecord,
    /// Layer steps run and found in the cache.
    pub ran: usize,
    pub cached: usize,
}

/// A stage as it is built: the whole image config of its base, the config object and ARGs,
/// its layers and history, and the cache key of its last layer step.
#[derive(Clone, Debug)]
pub(crate) struct State {
    pub(crate) base_config: Option<Map<String, Value>>,
    pub(crate) stage: meta::Stage,
    pub(crate) layers: Vec<LayerRecord>,
    pub(crate) history: Vec<Value>,
    pub(crate) key: String,
    pub(crate) created: String,
}

impl State {
    pub(crate) fn top(&self) -> Option<Digest> {
        let ids: Vec<Digest> = self.layers.iter().map(|l| l.diff_id.clone()).collect();
        image::digest::chain_ids(&ids).pop()
    }

    /// The whole image config as a RUN step's container sees it.
    pub(crate) fn image_config(&self) -> Map<String, Value> {
        let mut c = self.base_config.clone().unwrap_or_else(|| {
            let p = image::Platform::host();
            let mut m = Map::new();
            m.insert("architecture".into(), json!(p.architecture));
            m.insert("os".into(), json!(p.os));
            m
        });
        c.insert("config".into(), Value::Object(self.stage.config.clone()));
        c.insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
        c
    }
}

/// RFC 3339 (UTC, seconds) of `secs` since the epoch.
pub fn rfc3339(secs: u64) -> String {
    libcontainer::timefmt::rfc3339(secs as i64, 0)
}

pub(crate) struct Builder<'a> {
    pub(crate) store: &'a Store,
    pub(crate) opts: &'a Options,
    pub(crate) report: &'a dyn Report,
    pub(crate) plan: Plan,
    pub(crate) lexer: Lexer,
    pub(crate) context: Context,
    pub(crate) cache: Cache,
    pub(crate) stat_cache: Mutex<StatCache>,
    pub(crate) tmp: PathBuf,
    pub(crate) ran: std::sync::atomic::AtomicUsize,
    pub(crate) cached: std::sync::atomic::AtomicUsize,
    /// The stages built so far, by index.
    pub(crate) built: Mutex<BTreeMap<usize, State>>,
}

/// Where the builder keeps its cache and work directories under the store's root.
pub fn builder_dir(store: &Store) -> PathBuf {
    store.root().join("builder")
}

/// Build. The caller should run in a mount namespace of its own (mounts made here vanish with
/// it if the process is killed); they are all unmounted on the way out in any case.
pub fn build(store: &Store, opts: &Options, report: &dyn Report) -> Result<Built> {
    let df = crate::parse(&opts.dockerfile)?;
    for w in &df.warnings {
        report.note(&format!("Dockerfile:{}: {}", w.line, w.msg));
    }
    let plan = plan::plan(&df, &opts.build_args, opts.target.as_deref())?;
    if store.snapshots.mode() != image::snapshot::Mode::Overlay {
        return Err(Error::step(
            0,
            "building needs the overlay snapshotter (this store uses copies)",
        ));
    }
    let ignore_text = match std::fs::read_to_string(opts.context.join(".dockerignore")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("read .dockerignore", e)),
    };
    let ignore =
        Ignore::parse(&ignore_text).map_err(|m| Error::step(0, format!(".dockerignore: {m}")))?;
    let dir = builder_dir(store);
    let cache =
        Cache::open(&dir.join("cache")).map_err(|e| Error::io("open the build cache", e))?;
    let stat_path = dir.join("statcache.json");
    let tmp = dir.join("tmp").join(format!(
        "{}-{}",
        image::fsutil::owner_tag(),
        image::fsutil::random_hex(4)
    ));
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    let _lock = store.lock_shared()?;
    store.clean_stale()?;
    clean_stale_tmp(&dir.join("tmp"));
    let b = Builder {
        store,
        opts,
        report,
        lexer: Lexer::new(df.escape),
        context: Context::new(opts.context.clone(), ignore),
        cache,
        stat_cache: Mutex::new(StatCache::load(&stat_path)),
        tmp: tmp.clone(),
        ran: Default::default(),
        cached: Default::default(),
        built: Default::default(),
        plan,
    };
    let r = b.run_plan();
    let _ = image::fsutil::remove_path(&tmp);
    let _ = b
        .stat_cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .save(&stat_path);
    let st = r?;
    let created = st.created.clone();
    let mut config = st.stage.config.clone();
    if config
        .get("OnBuild")
        .is_some_and(|v| v.as_array().is_some_and(|a| a.is_empty()))
    {
        config.remove("OnBuild");
    }
    let mut base_config = st.base_config.clone();
    if let Some(c) = &mut base_config {
        c.remove("history");
        if let Some(a) = &st.stage.author {
            c.insert("author".into(), json!(a));
        }
    }
    let rec = commit::write_image(
        store,
        commit::NewImage {
            names: &opts.tags,
            base_config,
            layers: st.layers.clone(),
            history: st.history.clone(),
            config,
            created,
            format: opts.format,
        },
    )?;
    use std::sync::atomic::Ordering::SeqCst;
    Ok(Built {
        image: rec,
        ran: b.ran.load(SeqCst),
        cached: b.cached.load(SeqCst),
    })
}

/// Remove work directories of builds whose process is gone.
fn clean_stale_tmp(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // `<owner tag>-<random>`: the owner tag is what fsutil::owner_gone reads.
        if let Some((tag, _)) = name.rsplit_once('-') {
            if image::fsutil::owner_gone(tag) {
                let _ = image::fsutil::remove_path(&e.path());
            }
        }
    }
}

/// A `FROM scratch` stage's config, as BuildKit's (dockerfile2llb's empty image) starts it: the
/// default PATH (buildah sets it too) and WorkingDir `/`. It was empty: the images lacked the
/// PATH both peers give them (found comparing with them, integration client_images_debian_*).
fn scratch_config() -> Map<String, Value> {
    let path = image::bundle::DEFAULT_PATH;
    let mut m = Map::new();
    m.insert("Env".into(), json!([path]));
    m.insert("WorkingDir".into(), json!("/"));
    m
}

impl Builder<'_> {
    pub(crate) fn built(&self, i: usize) -> Option<State> {
        self.built
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&i)
            .cloned()
    }

    /// Build the stages of the plan; returns the target's state.
    fn run_plan(&self) -> Result<State> {
        let mut todo: Vec<usize> = self.plan.order.clone();
        while !todo.is_empty() {
            // Every stage whose needs are built goes now, together.
            let ready: Vec<usize> = todo
                .iter()
                .copied()
                .filter(|&i| {
                    self.plan.stages[i]
                        .needs
                        .iter()
                        .all(|&j| self.built(j).is_some())
                })
                .collect();
            todo.retain(|i| !ready.contains(i));
            let results: Vec<Result<State>> = if ready.len() == 1 {
                vec![self.stage(ready[0])]
            } else {
                std::thread::scope(|s| {
                    let hs: Vec<_> = ready
                        .iter()
                        .map(|&i| s.spawn(move || self.stage(i)))
                        .collect();
                    hs.into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(Error::io(
                                    "build a stage",
                                    std::io::Error::other("panicked"),
                                ))
                            })
                        })
                        .collect()
                })
            };
            for (i, r) in ready.iter().zip(results) {
                let st = r?;
                self.built
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(*i, st);
            }
        }
        Ok(self.built(self.plan.target).expect("the target is built"))
    }

    fn stage_label(&self, i: usize) -> String {
        match &self.plan.stages[i].name {
            Some(n) => n.clone(),
            None => format!("stage-{i}"),
        }
    }

    /// The state a stage starts from.
    fn base(&self, i: usize) -> Result<State> {
        let s = &self.plan.stages[i];
        if let Some(p) = &s.platform {
            let host = image::Platform::host().to_string();
            let want = p.trim_end_matches('/');
            if want != host && !host.starts_with(&format!("{want}/")) {
                return Err(Error::step(
                    s.line,
                    format!("FROM --platform={p}: only this host's platform ({host}) can be built"),
                ));
            }
        }
        Ok(match &s.base {
            Base::Scratch => State {
                base_config: None,
                stage: meta::Stage::new(scratch_config()),
                layers: Vec::new(),
                history: Vec::new(),
                key: self.key_root("scratch"),
                created: self.now(),
            },
            Base::Stage(j) => {
                let mut st = self.built(*j).expect("needs are built first");
                st.stage.args.clear();
                st.stage.cmd_set = false;
                st
            }
            Base::Image(name) => {
                let rec = self.image(name, s.line)?;
                let cfg = commit::config_of(self.store, &rec)?;
                let config = cfg
                    .get("config")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let history = cfg
                    .get("history")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let created = match self.opts.timestamp {
                    Some(t) => rfc3339(t),
                    None => cfg
                        .get("created")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| self.now()),
                };
                State {
                    base_config: Some(cfg),
                    stage: meta::Stage::new(config),
                    layers: rec.layers.clone(),
                    history,
                    key: self.key_root(rec.id().as_str()),
                    created,
                }
            }
        })
    }

    /// The key a stage's first step chains from: its base, and what changes every layer
    /// whatever the steps are (compression, SOURCE_DATE_EPOCH's clamping).
    fn key_root(&self, base: &str) -> String {
        format!(
            "{base} zstd={} epoch={:?}",
            self.opts.zstd, self.opts.timestamp
        )
    }

    /// The cache key of layer step `ins` on `st`: the key before it, the config, `args` (the
    /// ARGs a RUN sees; none for the others), the instruction, and what it is expanded to and
    /// reads.
    pub(crate) fn key_of(
        &self,
        st: &State,
        ins: &Instruction,
        args: &[(String, Option<String>)],
        expanded: &str,
        content: &str,
    ) -> String {
        crate::cache::step_key(&crate::cache::StepInput {
            parent: &st.key,
            config: &st.stage.config,
            args,
            original: &ins.original,
            expanded,
            content: Some(content),
        })
    }

    /// The build's time: SOURCE_DATE_EPOCH, or now (seconds).
    pub(crate) fn now_secs(&self) -> u64 {
        self.opts.timestamp.unwrap_or_else(image::fsutil::now_secs)
    }

    pub(crate) fn now(&self) -> String {
        rfc3339(self.opts.timestamp.unwrap_or_else(image::fsutil::now_secs))
    }

    /// An image by name: from the store (unpacked), pulled when missing or with `--pull`.
    pub(crate) fn image(&self, name: &str, line: usize) -> Result<ImageRecord> {
        let found = if self.opts.pull {
            None
        } else {
            match self.store.image(name) {
                Ok(r) => Some(r),
                Err(image::Error::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        let rec = match found {
            Some(r) => r,
            None => {
                self.report.note(&format!("pulling {name}"));
                let mut o = self.opts.pull_options.clone();
                if o.credentials.is_none() {
                    // The credentials `login` kept for that registry, if any.
                    let domain = image::Reference::parse(name).map(|r| r.domain);
                    o.credentials = domain
                        .ok()
                        .and_then(|d| image::auth::lookup(&d).ok().flatten());
                }
                image::registry::pull(self.store, name, &o, &image::Quiet)
                    .map_err(|e| Error::step(line, format!("pull {name}: {e}")))?
            }
        };
        self.store.unpack(&rec, &image::Quiet)?;
        Ok(rec)
    }

    fn stage(&self, i: usize) -> Result<State> {
        let label = self.stage_label(i);
        let mut st = self.base(i)?;
        let s = &self.plan.stages[i];
        // ONBUILD triggers of the base run first, as if they were written after FROM.
        let triggers: Vec<String> = st
            .stage
            .config
            .remove("OnBuild")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let mut steps: Vec<Instruction> = Vec::new();
        for t in &triggers {
            let df = crate::parse(&format!("FROM scratch\n{t}"))
                .map_err(|e| Error::step(s.line, format!("ONBUILD trigger {t:?}: {}", e.msg)))?;
            let Some(ins) = df.instructions.get(1) else {
                return Err(Error::step(
                    s.line,
                    format!("the base's ONBUILD trigger {t:?} is no instruction"),
                ));
            };
            if matches!(
                ins.keyword,
                Keyword::From | Keyword::Onbuild | Keyword::Maintainer
            ) {
                return Err(Error::step(
                    s.line,
                    format!(
                        "the base's ONBUILD trigger {t:?}: {} isn't allowed as an ONBUILD trigger",
                        ins.keyword.name()
                    ),
                ));
            }
            let mut ins = ins.clone();
            ins.line = s.line;
            steps.push(ins);
        }
        steps.extend(s.instructions.iter().cloned());
        let total = steps.len() + 1;
        self.report.step(
            &label,
            1,
            total,
            &format!("FROM {}", base_text(&s.base, &self.plan)),
        );
        for (n, ins) in steps.iter().enumerate() {
            let text = ins.original.trim();
            self.report.step(&label, n + 2, total, text);
            let t0 = Instant::now();
            match self.instruction(&mut st, ins, i)? {
                Some(true) => self.report.cached(&label),
                Some(false) => self.report.done(&label, t0.elapsed().as_secs_f64()),
                None => {}
            }
        }
        Ok(st)
    }

    /// Run one instruction on `st`; returns whether a layer step came from the cache (None:
    /// a metadata instruction).
    fn instruction(&self, st: &mut State, ins: &Instruction, stage: usize) -> Result<Option<bool>> {
        match ins.keyword {
            Keyword::Run => self.run_step(st, ins, stage).map(Some),
            Keyword::Copy | Keyword::Add => self.copy_step(st, ins, stage).map(Some),
            _ => {
                meta::apply(
                    &mut st.stage,
                    ins,
                    &self.lexer,
                    &self.opts.build_args,
                    &self.plan.global_args,
                )?;
                if ins.keyword == Keyword::Workdir {
                    return self.workdir_step(st, ins).map(Some);
                }
                st.history.push(json!({
                    "created": st.created,
                    "created_by": created_by(ins, ""),
                    "comment": "buildkit.dockerfile.v0",
                    "empty_layer": true,
                }));
                Ok(None)
            }
        }
    }
}

fn base_text(b: &Base, plan: &Plan) -> String {
    match b {
        Base::Scratch => "scratch".into(),
        Base::Image(n) => n.clone(),
        Base::Stage(j) => plan.stages[*j]
            .name
            .clone()
            .unwrap_or_else(|| j.to_string()),
    }
}

/// An instruction as history shows it.
pub(crate) fn created_by(ins: &Instruction, suffix: &str) -> String {
    // Exec forms as BuildKit prints them (Go's %q of each word): `["sh" "-c"]`.
    let text = match &ins.args {
        Args::Exec(v) => format!(
            "[{}]",
            v.iter()
                .map(|w| serde_json::to_string(w).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Args::Shell(s) => s.trim().to_string(),
    };
    format!("{} {text}{suffix}", ins.keyword.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
