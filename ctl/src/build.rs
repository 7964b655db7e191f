//! `build` and `builder prune`: the command line of the `builder` library. The build runs in a
//! mount namespace of its own, so that a killed build leaves no mount behind; steps are shown
//! on stderr (RUN output as it comes), the image id alone on stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use builder::build::{self, Options, Report};
use image::bundle::Network;
use image::commit::Format;

use crate::ctx::Ctx;

#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Name and tag the image (repeatable).
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// KEY=VALUE for an ARG (KEY alone: this process's value).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Build this stage (and what it needs), not the last one.
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step, take nothing from the cache.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Pull base images even when they are in the store.
    #[arg(long)]
    pub pull: bool,
    /// Network of RUN steps: host or none.
    #[arg(long, default_value = "host")]
    pub network: String,
    /// auto, plain or quiet.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Only print the image id.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Image format: docker (default; keeps HEALTHCHECK, SHELL, ONBUILD for docker) or oci.
    #[arg(long, default_value = "docker")]
    pub format: String,
    /// Layer compression: gzip, or zstd (with --format oci: docker's format has no zstd).
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Every time in the image (and no file mtime later): seconds since the epoch. Default:
    /// SOURCE_DATE_EPOCH when set.
    #[arg(long)]
    pub timestamp: Option<u64>,
    /// Use HTTP to pull base images (a local registry).
    #[arg(long = "plain-http")]
    pub plain_http: bool,
    /// A secret for `RUN --mount=type=secret`: id=ID,src=FILE or id=ID,env=VAR.
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Parent cgroup of the RUN steps' containers.
    #[arg(long = "cgroup-parent", default_value = "/berth")]
    pub cgroup_parent: String,
    /// The context directory.
    pub context: PathBuf,
}

/// Steps on stderr, as podman and buildah show them.
struct Plain {
    out: Mutex<std::io::Stderr>,
    quiet: bool,
}

impl Report for Plain {
    fn step(&self, stage: &str, n: usize, total: usize, text: &str) {
        if !self.quiet {
            let mut o = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(o, "[{stage}] STEP {n}/{total}: {text}");
        }
    }
    fn cached(&self, stage: &str) {
        if !self.quiet {
            let mut o = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(o, "[{stage}] --> CACHED");
        }
    }
    fn done(&self, stage: &str, secs: f64) {
        if !self.quiet {
            let mut o = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(o, "[{stage}] --> done in {secs:.2}s");
        }
    }
    fn output(&self, data: &[u8]) {
        if !self.quiet {
            let mut o = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = o.write_all(data);
        }
    }
    fn note(&self, msg: &str) {
        if !self.quiet {
            let mut o = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(o, "note: {msg}");
        }
    }
}

/// Give this process a mount namespace of its own whose mounts do not reach the host's.
pub(crate) fn private_mounts() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .context("unshare the mount namespace (build needs root)")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .context("make / a slave mount")?;
    Ok(())
}

pub fn build(ctx: &Ctx, a: &BuildArgs) -> Result<i32> {
    let context = std::fs::canonicalize(&a.context)
        .with_context(|| format!("the build context {}", a.context.display()))?;
    if !context.is_dir() {
        bail!("the build context {} is not a directory", context.display());
    }
    let dockerfile = match &a.file {
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("read the Dockerfile from stdin")?;
            s
        }
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("read the Dockerfile {}", p.display()))?,
        None => {
            let p = context.join("Dockerfile");
            std::fs::read_to_string(&p)
                .with_context(|| format!("read the Dockerfile {}", p.display()))?
        }
    };
    let mut build_args = BTreeMap::new();
    for kv in &a.build_args {
        match kv.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(kv) {
                    build_args.insert(kv.clone(), v);
                }
            }
        }
    }
    let network = match a.network.as_str() {
        "host" | "default" => Network::Host,
        "none" => Network::None,
        other => bail!("--network {other}: use host or none"),
    };
    let format = match a.format.as_str() {
        "docker" => Format::Docker,
        "oci" => Format::Oci,
        other => bail!("--format {other}: use docker or oci"),
    };
    let zstd = match (a.compression.as_str(), format) {
        ("gzip", _) => false,
        ("zstd", Format::Oci) => true,
        ("zstd", Format::Docker) => {
            bail!(
                "--compression zstd needs --format oci (docker's image format has no zstd layers)"
            )
        }
        (other, _) => bail!("--compression {other}: use gzip or zstd"),
    };
    let quiet = a.quiet || a.progress == "quiet";
    if !matches!(a.progress.as_str(), "auto" | "plain" | "quiet" | "tty") {
        bail!("--progress {}: use auto, plain or quiet", a.progress);
    }
    let timestamp = match a.timestamp {
        Some(t) => Some(t),
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.is_empty() => Some(
                v.parse()
                    .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number"))?,
            ),
            _ => None,
        },
    };
    if !a.cgroup_parent.starts_with('/') {
        bail!("--cgroup-parent {:?} must be absolute", a.cgroup_parent);
    }
    for t in &a.tags {
        image::Reference::parse(t).with_context(|| format!("--tag {t:?}"))?;
    }
    let mut secrets = BTreeMap::new();
    for v in &a.secrets {
        let (id, src) = builder::mounts::parse_secret(v).map_err(anyhow::Error::msg)?;
        secrets.insert(id, src);
    }
    private_mounts()?;
    let opts = Options {
        context,
        dockerfile,
        tags: a.tags.clone(),
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        pull_options: image::registry::PullOptions {
            plain_http: a.plain_http,
            ..Default::default()
        },
        network,
        format,
        secrets,
        zstd,
        timestamp,
        runtime: builder::exec::Runtime {
            path: ctx.runtime.clone(),
            root: ctx.runtime_root.clone(),
            cgroup_parent: a.cgroup_parent.clone(),
        },
    };
    let report = Plain {
        out: Mutex::new(std::io::stderr()),
        quiet,
    };
    let built = build::build(&ctx.store, &opts, &report)?;
    if !quiet {
        eprintln!("{} steps run, {} from the cache", built.ran, built.cached);
        for t in &a.tags {
            eprintln!("Successfully tagged {t}");
        }
    }
    println!("{}", built.image.id());
    Ok(0)
}

/// `builder prune`: forget the build cache (and the blobs and snapshots only it kept).
pub fn prune(ctx: &Ctx) -> Result<i32> {
    let cache = builder::cache::Cache::open(&build::builder_dir(&ctx.store).join("cache"))
        .context("open the build cache")?;
    let n = cache.prune(None).context("prune the build cache")?;
    let report = ctx.store.gc()?;
    println!(
        "Deleted {n} cache entries; reclaimed {} blobs and {} snapshots",
        report.blobs.len(),
        report.snapshots.len()
    );
    Ok(0)
}
