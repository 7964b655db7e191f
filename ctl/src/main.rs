//! berthctl: a daemonless, docker-style client. Images live in berth's image store (the `image`
//! crate) under a data root; containers run through the `berth` runtime's runc-compatible
//! command line. See ctl/README.md.

mod build;
mod cni;
mod commit;
mod containers;
mod cp;
mod ctx;
mod endpoint;
mod health;
mod images;
mod inspect;
mod lifecycle;
mod logs;
mod mounts;
mod netns;
mod network;
mod ports;
mod progress;
mod ps;
mod registry;
mod restart;
mod run;
mod stats;
mod util;
mod volumes;

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use containers::Status;
use ctx::Ctx;

#[derive(Parser)]
#[command(
    name = "berthctl",
    version,
    about = "Run containers from OCI and docker images with the berth runtime (no daemon)"
)]
struct Cli {
    /// Data root: images, snapshots and containers.
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/berth",
        env = "BERTHCTL_ROOT"
    )]
    root: PathBuf,
    /// The runtime binary (default: berth next to berthctl, else in PATH).
    #[arg(long, global = true, env = "BERTHCTL_RUNTIME")]
    runtime: Option<PathBuf>,
    /// Snapshotter for containers' root filesystems: overlay, copy or auto.
    #[arg(long, global = true)]
    snapshotter: Option<String>,
    /// CNI plugin directories (colon-separated).
    #[arg(
        long = "cni-path",
        global = true,
        env = "CNI_PATH",
        default_value = "/usr/lib/cni:/opt/cni/bin"
    )]
    cni_path: String,
    /// CNI network configuration directory (networks are its *.conflist files).
    #[arg(
        long = "cni-netconfpath",
        global = true,
        env = "NETCONFPATH",
        default_value = "/etc/cni/net.d"
    )]
    cni_netconfpath: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Import an OCI layout directory, an OCI archive or a `docker save` archive.
    Import {
        /// Name for the image (when the archive holds one).
        #[arg(long)]
        name: Option<String>,
        /// Only store the blobs; unpack on first use.
        #[arg(long = "no-unpack")]
        no_unpack: bool,
        /// Keep every platform of a multi-platform image (only this host's is unpacked), so
        /// that save and push send the whole index.
        #[arg(long = "all-platforms")]
        all_platforms: bool,
        path: PathBuf,
    },
    /// Pull an image from a registry (distribution API v2).
    Pull {
        /// Use HTTP instead of HTTPS (a local registry).
        #[arg(long = "plain-http")]
        plain_http: bool,
        /// USER:PASSWORD for the registry.
        #[arg(long)]
        user: Option<String>,
        /// Only store the blobs; unpack on first use.
        #[arg(long = "no-unpack")]
        no_unpack: bool,
        /// Keep every platform of a multi-platform image (only this host's is unpacked), so
        /// that save and push send the whole index.
        #[arg(long = "all-platforms")]
        all_platforms: bool,
        reference: String,
    },
    /// Push an image to a registry (distribution API v2).
    Push {
        /// Use HTTP instead of HTTPS (a local registry).
        #[arg(long = "plain-http")]
        plain_http: bool,
        /// USER:PASSWORD for the registry (default: the kept credentials).
        #[arg(long)]
        user: Option<String>,
        /// Upload blobs bigger than this in chunks of this size (bytes).
        #[arg(long = "chunk-size")]
        chunk_size: Option<u64>,
        /// No progress; print only the pushed reference.
        #[arg(short, long)]
        quiet: bool,
        image: String,
        /// Push under this name (default: the image's own).
        destination: Option<String>,
    },
    /// Log in to a registry; the credentials are kept in docker's credential file.
    Login {
        #[arg(short = 'u', long = "username")]
        username: Option<String>,
        #[arg(short = 'p', long = "password")]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long = "password-stdin")]
        password_stdin: bool,
        #[arg(long = "plain-http")]
        plain_http: bool,
        /// host[:port] (default: Docker Hub).
        registry: Option<String>,
    },
    /// Forget the credentials of a registry.
    Logout { registry: Option<String> },
    /// List images.
    #[command(alias = "ls")]
    Images {
        /// Only show image ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images (and the blobs and snapshots nothing else uses).
    Rmi {
        /// Also when containers use them.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Show an image's history.
    History {
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        #[arg(short, long)]
        quiet: bool,
        image: String,
    },
    /// Image subcommands (inspect).
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Write images to a tar archive that docker, podman and ctr load.
    Save {
        /// The archive (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Load images from an archive (OCI, docker save); stdin without -i.
    Load {
        #[arg(short, long)]
        input: Option<PathBuf>,
        #[arg(short, long)]
        quiet: bool,
        /// Keep every platform of a multi-platform image (only this host's is unpacked), so
        /// that save and push send the whole index.
        #[arg(long = "all-platforms")]
        all_platforms: bool,
    },
    /// Make an image of a container's changes.
    Commit {
        /// Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
        /// USER, VOLUME, WORKDIR).
        #[arg(short = 'c', long = "change")]
        changes: Vec<String>,
        /// Commit message (the history entry's comment).
        #[arg(short, long)]
        message: Option<String>,
        #[arg(short, long)]
        author: Option<String>,
        /// Pause the container while its changes are read.
        #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        pause: bool,
        container: String,
        name: Option<String>,
    },
    /// Build an image from a Dockerfile (RUN steps run through the runtime).
    Build(Box<build::BuildArgs>),
    /// Manage the build cache.
    Builder {
        #[command(subcommand)]
        cmd: BuilderCmd,
    },
    /// Create and run a container.
    Run(Box<run::RunArgs>),
    /// List containers.
    Ps {
        /// Also stopped containers.
        #[arg(short, long)]
        all: bool,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Full ids and commands.
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// KEY=VALUE: id, name, status, exited, ancestor, volume, network, label.
        #[arg(short = 'f', long = "filter")]
        filters: Vec<String>,
        /// A Go template ({{.ID}}, {{.Names}}, ...), "table TEMPLATE" or "json".
        #[arg(long)]
        format: Option<String>,
    },
    /// A live table of running containers' resource use (CPU, memory, network, block I/O, PIDs).
    Stats {
        /// One table, then exit.
        #[arg(long = "no-stream")]
        no_stream: bool,
        containers: Vec<String>,
    },
    /// Give a container another name.
    Rename { container: String, name: String },
    /// Show a container's processes (host ps; its arguments, default -ef).
    Top {
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Run a command in a running container.
    Exec {
        #[arg(short = 'd', long)]
        detach: bool,
        #[arg(short = 't', long)]
        tty: bool,
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        #[arg(short = 'w', long = "workdir")]
        workdir: Option<String>,
        /// User (name|uid[:group|gid]).
        #[arg(short = 'u', long)]
        user: Option<String>,
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Show a detached container's output.
    Logs {
        /// Keep following until the container exits.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines ("all": every line).
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Only lines since this time (RFC 3339, a timestamp, or a duration such as 10m).
        #[arg(long)]
        since: Option<String>,
        /// Show each line's time.
        #[arg(short, long)]
        timestamps: bool,
        container: String,
    },
    /// Send a signal (default KILL) to containers.
    Kill {
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: the image's stop signal (default TERM), then KILL after a timeout.
    Stop {
        /// Seconds to wait before KILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(short, long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Start stopped containers again (their writable layer and settings kept).
    Start {
        /// Follow the container's output and exit with its code.
        #[arg(short, long)]
        attach: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop (when running), then start containers.
    Restart {
        /// Seconds to wait before KILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show containers (or images) as docker's inspect does.
    Inspect {
        /// A Go-template subset: {{.Field.Sub}}, {{json .Field}}.
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Copy files between a container (CONTAINER:PATH) and the host.
    Cp {
        /// Keep owners (uid/gid).
        #[arg(short, long)]
        archive: bool,
        /// Follow a source that is a symlink.
        #[arg(short = 'L', long = "follow-link")]
        follow_link: bool,
        src: String,
        dest: String,
    },
    /// Manage volumes.
    Volume {
        #[command(subcommand)]
        cmd: VolumeCmd,
    },
    /// Manage networks (CNI network configuration lists).
    Network {
        #[command(subcommand)]
        cmd: NetworkCmd,
    },
    /// List a container's published ports (or the host address of one).
    Port {
        container: String,
        /// PRIVATE_PORT[/PROTO]
        port: Option<String>,
    },
    /// Block until containers stop; print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill running containers first.
        #[arg(short, long)]
        force: bool,
        /// Also remove their anonymous volumes.
        #[arg(short = 'v', long = "volumes")]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove stopped containers, then blobs and snapshots nothing uses.
    Prune,
    /// (internal) Watch a detached container.
    #[command(name = "__monitor", hide = true)]
    Monitor { id: String },
    /// (internal) Run a container's health check until killed.
    #[command(name = "__health", hide = true)]
    Health { id: String },
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// Create a volume (a random name without NAME).
    Create { name: Option<String> },
    /// List volumes.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        /// `json` or a template of .Name, .Driver, .Scope, .Mountpoint.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show volumes as docker does.
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes no container has.
    Rm {
        /// No error for a missing one.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused anonymous volumes (-a: every unused one).
    Prune {
        #[arg(short, long)]
        all: bool,
        /// Do not ask (nothing asks here; accepted as docker's).
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Create a bridge network (its own bridge and a free /24 without --subnet).
    Create {
        /// IPv4 subnet in CIDR form.
        #[arg(long)]
        subnet: Option<String>,
        /// The gateway (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<String>,
        /// Only bridge (accepted as docker's).
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        name: String,
    },
    /// List networks.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        /// `json` or a template of .ID, .Name, .Driver, .Scope.
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove networks no container has.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show networks as docker does.
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Show images as docker's `image inspect` does.
    Inspect {
        /// A Go-template subset: {{.Field.Sub}}, {{json .Field}}.
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        images: Vec<String>,
    },
}

#[derive(Subcommand)]
enum BuilderCmd {
    /// Remove the build cache (and the blobs and snapshots only it kept).
    Prune,
}

fn main() {
    let cli = Cli::parse();
    let code = match dispatch(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthctl: {e:#}");
            e.downcast_ref::<util::CodedError>().map_or(125, |c| c.code)
        }
    };
    std::process::exit(code);
}

fn dispatch(cli: &Cli) -> Result<i32> {
    let ctx = Ctx::open(
        &cli.root,
        cli.runtime.as_deref(),
        cli.snapshotter.as_deref(),
        (&cli.cni_path, &cli.cni_netconfpath),
    )?;
    let mut root_args = vec![
        "--root".to_string(),
        ctx.root.display().to_string(),
        "--cni-path".into(),
        cli.cni_path.clone(),
        "--cni-netconfpath".into(),
        cli.cni_netconfpath.display().to_string(),
    ];
    if let Some(s) = &cli.snapshotter {
        root_args.push("--snapshotter".into());
        root_args.push(s.clone());
    }
    if !matches!(
        cli.cmd,
        Cmd::Import { .. }
            | Cmd::Pull { .. }
            | Cmd::Images { .. }
            | Cmd::Rmi { .. }
            | Cmd::Builder { .. }
            | Cmd::Tag { .. }
            | Cmd::Push { .. }
            | Cmd::Login { .. }
            | Cmd::Logout { .. }
            | Cmd::History { .. }
            | Cmd::Image { .. }
            | Cmd::Save { .. }
            | Cmd::Load { .. }
    ) {
        ctx.require_runtime()?;
    }
    match &cli.cmd {
        Cmd::Import {
            name,
            no_unpack,
            all_platforms,
            path,
        } => import(&ctx, path, name.clone(), !no_unpack, *all_platforms),
        Cmd::Pull {
            plain_http,
            user,
            no_unpack,
            all_platforms,
            reference,
        } => pull(
            &ctx,
            reference,
            *plain_http,
            user.as_deref(),
            !no_unpack,
            *all_platforms,
        ),
        Cmd::Images { quiet } => images(&ctx, *quiet),
        Cmd::Rmi { force, images } => rmi(&ctx, images, *force),
        Cmd::Push {
            plain_http,
            user,
            chunk_size,
            quiet,
            image,
            destination,
        } => registry::push(
            &ctx,
            image,
            destination.as_deref(),
            *plain_http,
            user.as_deref(),
            *chunk_size,
            *quiet,
        ),
        Cmd::Login {
            username,
            password,
            password_stdin,
            plain_http,
            registry: reg,
        } => registry::login(&registry::LoginArgs {
            registry: reg.as_deref(),
            user: username.as_deref(),
            password: password.as_deref(),
            password_stdin: *password_stdin,
            plain_http: *plain_http,
        }),
        Cmd::Logout { registry: reg } => registry::logout(reg.as_deref()),
        Cmd::Tag { source, target } => images::tag(&ctx, source, target),
        Cmd::History {
            no_trunc,
            quiet,
            image,
        } => images::history(&ctx, image, *no_trunc, *quiet),
        Cmd::Image {
            cmd:
                ImageCmd::Inspect {
                    format,
                    images: names,
                },
        } => images::inspect(&ctx, names, format.as_deref()),
        Cmd::Save {
            output,
            images: names,
        } => images::save(&ctx, names, output.as_deref()),
        Cmd::Load {
            input,
            quiet,
            all_platforms,
        } => images::load(&ctx, input.as_deref(), *quiet, *all_platforms),
        Cmd::Commit {
            changes,
            message,
            author,
            pause,
            container,
            name,
        } => commit::commit(
            &ctx,
            &commit::CommitArgs {
                container,
                name: name.as_deref(),
                changes,
                message: message.as_deref(),
                author: author.as_deref(),
                pause: *pause,
            },
        ),
        Cmd::Build(a) => build::build(&ctx, a),
        Cmd::Builder {
            cmd: BuilderCmd::Prune,
        } => build::prune(&ctx),
        Cmd::Run(a) => run::run(&ctx, a, &root_args),
        Cmd::Ps {
            all,
            quiet,
            no_trunc,
            filters,
            format,
        } => ps::ps(
            &ctx,
            &ps::Options {
                all: *all,
                quiet: *quiet,
                no_trunc: *no_trunc,
                filters,
                format: format.as_deref(),
            },
        ),
        Cmd::Stats {
            no_stream,
            containers,
        } => stats::stats(&ctx, containers, *no_stream),
        Cmd::Rename { container, name } => lifecycle::rename(&ctx, container, name),
        Cmd::Top { container, ps_args } => lifecycle::top(&ctx, container, ps_args),
        Cmd::Exec {
            detach,
            tty,
            interactive,
            env,
            workdir,
            user,
            container,
            command,
        } => exec(
            &ctx,
            container,
            command,
            ExecFlags {
                detach: *detach,
                tty: *tty,
                interactive: *interactive,
                env,
                workdir: workdir.as_deref(),
                user: user.as_deref(),
            },
        ),
        Cmd::Logs {
            follow,
            tail,
            since,
            timestamps,
            container,
        } => {
            let opts = logs::Options {
                follow: *follow,
                tail: match tail.as_str() {
                    "all" => None,
                    n => Some(
                        n.parse()
                            .with_context(|| format!("--tail {n:?}: a number or all"))?,
                    ),
                },
                since: since.as_deref().map(logs::parse_since).transpose()?,
                timestamps: *timestamps,
            };
            logs::logs(&ctx, &ctx.find(container)?, &opts)
        }
        Cmd::Kill { signal, containers } => kill(&ctx, containers, signal),
        Cmd::Stop {
            time,
            signal,
            containers,
        } => stop(&ctx, containers, signal.as_deref(), *time),
        Cmd::Start { attach, containers } => {
            lifecycle::start(&ctx, containers, *attach, &root_args)
        }
        Cmd::Restart { time, containers } => {
            lifecycle::restart(&ctx, containers, *time, &root_args)
        }
        Cmd::Wait { containers } => lifecycle::wait(&ctx, containers),
        Cmd::Volume { cmd } => match cmd {
            VolumeCmd::Create { name } => volumes::create(&ctx, name.as_deref()),
            VolumeCmd::Ls { quiet, format } => volumes::ls(&ctx, *quiet, format.as_deref()),
            VolumeCmd::Inspect { format, names } => {
                volumes::inspect(&ctx, names, format.as_deref())
            }
            VolumeCmd::Rm { force, names } => volumes::rm(&ctx, names, *force),
            VolumeCmd::Prune { all, .. } => volumes::prune(&ctx, *all),
        },
        Cmd::Network { cmd } => match cmd {
            NetworkCmd::Create {
                subnet,
                gateway,
                driver,
                name,
            } => {
                if driver != "bridge" {
                    bail!("network create --driver {driver}: only bridge is supported");
                }
                network::create(&ctx, name, subnet.as_deref(), gateway.as_deref())
            }
            NetworkCmd::Ls { quiet, format } => network::ls(&ctx, *quiet, format.as_deref()),
            NetworkCmd::Rm { names } => network::rm(&ctx, names),
            NetworkCmd::Inspect { format, names } => {
                network::inspect(&ctx, names, format.as_deref())
            }
        },
        Cmd::Port { container, port } => {
            let c = ctx.find(container)?;
            let ports = endpoint::load(&ctx, &c.id)
                .map(|e| e.ports)
                .unwrap_or_default();
            for l in ports::port_lines(&ports, port.as_deref())? {
                println!("{l}");
            }
            Ok(0)
        }
        Cmd::Cp {
            archive,
            follow_link,
            src,
            dest,
        } => cp::cp(
            &ctx,
            &cp::CpArgs {
                src,
                dest,
                archive: *archive,
                follow: *follow_link,
            },
        ),
        Cmd::Inspect { format, names } => inspect::inspect(&ctx, names, format.as_deref()),
        Cmd::Rm {
            force,
            volumes,
            containers,
        } => rm(&ctx, containers, *force, *volumes),
        Cmd::Prune => prune(&ctx),
        Cmd::Monitor { id } => run::monitor(&ctx, id),
        Cmd::Health { id } => health::run(&ctx, id),
    }
}

fn import(
    ctx: &Ctx,
    path: &std::path::Path,
    name: Option<String>,
    unpack: bool,
    all_platforms: bool,
) -> Result<i32> {
    let opts = image::import::ImportOptions {
        name,
        unpack,
        all_platforms,
        ..Default::default()
    };
    let recs = image::import::import(&ctx.store, path, &opts, &progress::Reporter::new())
        .with_context(|| format!("import {}", path.display()))?;
    for r in recs {
        println!("Loaded image: {} ({})", r.name, r.id());
    }
    Ok(0)
}

fn pull(
    ctx: &Ctx,
    reference: &str,
    plain_http: bool,
    user: Option<&str>,
    unpack: bool,
    all_platforms: bool,
) -> Result<i32> {
    let mut opts = registry::options(&registry::domain_of(reference)?, plain_http, user)?;
    opts.unpack = unpack;
    opts.all_platforms = all_platforms;
    let rec = image::registry::pull(&ctx.store, reference, &opts, &progress::Reporter::new())
        .with_context(|| format!("pull {reference}"))?;
    println!("Pulled {} ({})", rec.name, rec.manifest);
    Ok(0)
}

fn split_name(name: &str) -> (String, String) {
    if name.starts_with("sha256:") {
        // An untagged image (a build without -t), stored under its id.
        return ("<none>".into(), "<none>".into());
    }
    match image::Reference::parse(name) {
        Ok(r) => (
            r.familiar_repository(),
            r.tag.clone().unwrap_or_else(|| "<none>".into()),
        ),
        Err(_) => (name.to_string(), "<none>".into()),
    }
}

fn images(ctx: &Ctx, quiet: bool) -> Result<i32> {
    let imgs = ctx.store.list_images()?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for i in imgs {
            writeln!(out, "{}", i.id().short())?;
        }
        return Ok(0);
    }
    let rows: Vec<[String; 5]> = imgs
        .iter()
        .map(|i| {
            let (repo, tag) = split_name(&i.name);
            let created = i
                .created
                .as_deref()
                .and_then(util::parse_rfc3339)
                .map(util::ago)
                .unwrap_or_else(|| "N/A".into());
            [
                repo,
                tag,
                i.id().short().to_string(),
                created,
                util::human_size(ctx.store.unpacked_size(i).unwrap_or_else(|_| i.size())),
            ]
        })
        .collect();
    table(
        &mut out,
        &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        &rows,
    )?;
    Ok(0)
}

fn table(out: &mut impl Write, head: &[&str], rows: &[[String; 5]]) -> Result<()> {
    table_n(out, head, rows.iter().map(|r| r.to_vec()).collect())
}

pub(crate) fn table_n(out: &mut impl Write, head: &[&str], rows: Vec<Vec<String>>) -> Result<()> {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let n = cells.len();
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == n {
                    c
                } else {
                    format!("{c:<width$}   ", width = w[i])
                }
            })
            .collect::<String>()
    };
    writeln!(
        out,
        "{}",
        line(head.iter().map(|h| h.to_string()).collect())
    )?;
    for r in rows {
        writeln!(out, "{}", line(r))?;
    }
    Ok(())
}

fn rmi(ctx: &Ctx, names: &[String], force: bool) -> Result<i32> {
    let containers = ctx.list()?;
    let mut failed = false;
    for n in names {
        let rec = match ctx.store.image(n) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("berthctl: {e}");
                failed = true;
                continue;
            }
        };
        // Given by id: every name of that id goes; by name: that name only.
        let by_name = image::Reference::parse(n)
            .map(|r| r.to_string() == rec.name)
            .unwrap_or(false);
        let targets: Vec<String> = if by_name {
            vec![rec.name.clone()]
        } else {
            ctx.store
                .list_images()?
                .into_iter()
                .filter(|i| i.id() == rec.id())
                .map(|i| i.name)
                .collect()
        };
        if !force {
            if let Some(c) = containers.iter().find(|c| targets.contains(&c.image)) {
                eprintln!(
                    "berthctl: image {n} is used by container {} ({}): remove it first or use -f",
                    &c.id[..12],
                    c.name
                );
                failed = true;
                continue;
            }
        }
        for t in targets {
            ctx.store.delete_image(&t)?;
            println!("Untagged: {t}");
        }
    }
    let r = ctx.store.gc()?;
    for b in &r.blobs {
        println!("Deleted: {b}");
    }
    Ok(if failed { 1 } else { 0 })
}

struct ExecFlags<'a> {
    detach: bool,
    tty: bool,
    interactive: bool,
    env: &'a [String],
    workdir: Option<&'a str>,
    user: Option<&'a str>,
}

fn exec(ctx: &Ctx, what: &str, command: &[String], f: ExecFlags<'_>) -> Result<i32> {
    let c = ctx.find(what)?;
    match ctx.status(&c) {
        Status::Running => {}
        Status::Paused => bail!("container {} is paused", c.name),
        _ => bail!("container {} is not running", c.name),
    }
    let mut cmd = ctx.runtime_cmd();
    cmd.arg("exec");
    if f.detach {
        cmd.arg("--detach");
    }
    if f.tty {
        cmd.arg("--tty");
        // As docker: a terminal gets TERM=xterm unless -e gives one.
        if !f.env.iter().any(|e| e == "TERM" || e.starts_with("TERM=")) {
            cmd.arg("--env").arg("TERM=xterm");
        }
    }
    for e in f.env {
        cmd.arg("--env").arg(if e.contains('=') {
            e.clone()
        } else {
            format!("{e}={}", std::env::var(e).unwrap_or_default())
        });
    }
    if let Some(w) = f.workdir {
        cmd.arg("--cwd").arg(w);
    }
    if let Some(u) = f.user {
        // Names are resolved against the container's own /etc/passwd and /etc/group.
        let r = image::user::resolve_user(&ctx.rootfs_dir(&c.id), u)?;
        cmd.arg("--user").arg(format!("{}:{}", r.uid, r.gid));
        for g in r.additional_gids.iter().skip(1) {
            cmd.arg("--additional-gids").arg(g.to_string());
        }
    }
    cmd.arg(&c.id).args(command);
    if !(f.interactive || f.tty) {
        cmd.stdin(Stdio::null());
    }
    run::run_forwarding_signals(cmd)
}

fn kill(ctx: &Ctx, names: &[String], signal: &str) -> Result<i32> {
    let sig = util::parse_signal(signal).with_context(|| format!("unknown signal {signal:?}"))?;
    let mut failed = false;
    for n in names {
        let r = ctx.find(n).and_then(|c| {
            let status = ctx.status(&c);
            if !status.is_running() {
                bail!("container {} is not running", c.name);
            }
            // As docker's kill: the restart policy holds off until `start`.
            restart::mark_stopped(ctx, &c.id);
            if status == Status::Restarting {
                // Between runs: nothing to signal, and the mark keeps it down.
                return Ok(c);
            }
            let st = ctx
                .runtime_cmd()
                .args(["kill", &c.id, &sig.to_string()])
                .status()?;
            if !st.success() {
                bail!("the runtime could not signal {}", c.name);
            }
            Ok(c)
        });
        match r {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("berthctl: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn stop(ctx: &Ctx, names: &[String], signal: Option<&str>, secs: u64) -> Result<i32> {
    let mut failed = false;
    for n in names {
        match stop_one(ctx, n, signal, secs) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("berthctl: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Stop one container: its stop signal (or `signal`), KILL after `secs`.
pub(crate) fn stop_one(ctx: &Ctx, name: &str, signal: Option<&str>, secs: u64) -> Result<()> {
    let c = ctx.find(name)?;
    if !ctx.status(&c).is_running() {
        return Ok(());
    }
    // Its restart policy holds off until `start`.
    restart::mark_stopped(ctx, &c.id);
    let sig_name = signal
        .map(str::to_string)
        .or_else(|| c.stop_signal.clone())
        .unwrap_or_else(|| "TERM".into());
    let sig =
        util::parse_signal(&sig_name).with_context(|| format!("unknown signal {sig_name:?}"))?;
    let _ = ctx
        .runtime_cmd()
        .args(["kill", &c.id, &sig.to_string()])
        .stderr(Stdio::null())
        .status();
    if !ctx.wait_stopped(&c, Duration::from_secs(secs)) {
        let _ = ctx
            .runtime_cmd()
            .args(["kill", "--all", &c.id, "9"])
            .stderr(Stdio::null())
            .status();
        if !ctx.wait_stopped(&c, Duration::from_secs(10)) {
            bail!("container {} did not stop", c.name);
        }
    }
    Ok(())
}

fn rm(ctx: &Ctx, names: &[String], force: bool, anonymous_volumes: bool) -> Result<i32> {
    let mut failed = false;
    for n in names {
        let r = ctx.find(n).and_then(|c| {
            if ctx.status(&c).is_running() {
                if !force {
                    bail!(
                        "container {} is running: stop it first or use rm -f",
                        c.name
                    );
                }
                restart::mark_stopped(ctx, &c.id);
                let _ = ctx
                    .runtime_cmd()
                    .args(["kill", "--all", &c.id, "9"])
                    .stderr(Stdio::null())
                    .status();
                ctx.wait_stopped(&c, Duration::from_secs(10));
            }
            ctx.remove(&c)?;
            if anonymous_volumes {
                volumes::remove_anonymous(ctx, &c.volumes);
            }
            Ok(())
        });
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

fn prune(ctx: &Ctx) -> Result<i32> {
    let states = ctx.runtime_states();
    for c in ctx.list()? {
        let st = ctx.status_with(&c, states.get(&c.id).map(String::as_str));
        if matches!(st, Status::Exited(..)) {
            ctx.remove(&c)?;
            println!("Deleted container: {}", c.id);
        }
    }
    let r = ctx.store.gc()?;
    for b in &r.blobs {
        println!("Deleted blob: {b}");
    }
    for s in &r.snapshots {
        println!("Deleted snapshot: {s}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks of berthctl's command line.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
