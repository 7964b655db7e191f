//! `run`: prepare the container's snapshot (its own writable layer over the image's), mount it
//! as the bundle's rootfs, write config.json, then
//! - in the foreground: `berth run` with our stdio (the runtime relays a terminal and forwards
//!   signals), record the exit code, unmount, and with `--rm` remove everything;
//! - detached (`-d`): start a small monitor process (`berthctl __monitor`, in its own session)
//!   that runs `berth create` with the container's output going to its log file (or, with `-t`,
//!   receives the pty master over `--console-socket` and copies it to the log), `berth start`,
//!   reports success to us over a pipe, waits for the container as a child subreaper, records
//!   the exit code, deletes the runtime's container and unmounts (and removes it with `--rm`).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use image::bundle::{self, Bind, BundleOptions, Network};

use crate::containers::Container;
use crate::ctx::Ctx;
use crate::util;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background; print the container id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin open (foreground).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Environment variables (KEY=value, or KEY to pass this process's value).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// bridge (the default network), a network's name, none (own network namespace, loopback
    /// only), host, or container:NAME|ID (another container's).
    #[arg(
        long,
        alias = "net",
        default_value = "bridge",
        env = "BERTHCTL_NETWORK"
    )]
    pub network: String,
    /// Publish a container's port: [IP:][HOST:]CONTAINER[/tcp|udp] (no HOST: a free one).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// The container's IPv4 address (user networks only).
    #[arg(long)]
    pub ip: Option<String>,
    /// DNS servers (replace the host's in /etc/resolv.conf).
    #[arg(long)]
    pub dns: Vec<String>,
    /// An /etc/hosts line: NAME:IP (IP may be host-gateway: the network's gateway).
    #[arg(long = "add-host")]
    pub add_hosts: Vec<String>,
    /// A bind mount HOST:CONTAINER[:ro|rw], or a volume NAME:CONTAINER[:ro|rw].
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// A mount: type=bind|volume|tmpfs,source=...,target=...[,readonly].
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    /// A tmpfs: PATH[:OPTIONS].
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// The volumes and binds of another container: CONTAINER[:ro|rw].
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    #[command(flatten)]
    pub health: crate::health::Flags,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Mount the rootfs read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Parent cgroup (absolute); the container's cgroup is PARENT/<id>.
    #[arg(long = "cgroup-parent", default_value = "/berth")]
    pub cgroup_parent: String,
    /// Restart policy: no, on-failure[:N], always, unless-stopped (carried out by the
    /// container's monitor).
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Pull the image: missing (when it is not in the store), always, never.
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Image name or id.
    pub image: String,
    /// Command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `-v` of volumes: (name, destination, read-only).
type NamedVolumes = Vec<(String, String, bool)>;

fn bundle_options(
    ctx: &Ctx,
    a: &RunArgs,
    id: &str,
) -> Result<(BundleOptions, NamedVolumes, NetChoice)> {
    let mut named = Vec::new();
    let mut o = BundleOptions::new(id);
    o.args = a.command.clone();
    if let Some(ep) = &a.entrypoint {
        o.entrypoint = Some(if ep.is_empty() {
            vec![]
        } else {
            vec![ep.clone()]
        });
    }
    o.env = a
        .env
        .iter()
        .map(|e| {
            if e.contains('=') {
                e.clone()
            } else {
                // docker: `-e KEY` passes this process's value (or nothing when unset).
                match std::env::var(e) {
                    Ok(v) => format!("{e}={v}"),
                    Err(_) => e.clone(),
                }
            }
        })
        .collect();
    o.workdir = a.workdir.clone();
    o.user = a.user.clone();
    o.terminal = a.tty;
    o.readonly_rootfs = a.read_only;
    let net = net_spec(ctx, a, id)?;
    o.network = if net.spec.mode == "host" {
        Network::Host
    } else {
        Network::None
    };
    o.hostname = net.spec.hostname.clone();
    if let Some(m) = &a.memory {
        let bytes =
            util::parse_memory(m).ok_or_else(|| anyhow!("--memory {m:?}: use e.g. 64m, 1g"))?;
        if bytes > 0 && bytes < 6 << 20 {
            bail!("Minimum memory limit allowed is 6MB");
        }
        o.memory = Some(bytes);
    }
    if let Some(c) = a.cpus {
        if c <= 0.0 {
            bail!("--cpus must be positive");
        }
        o.cpus = Some(c);
    }
    o.pids_limit = a.pids_limit;
    if !a.cgroup_parent.starts_with('/') {
        bail!(
            "--cgroup-parent {:?} must be an absolute cgroup path",
            a.cgroup_parent
        );
    }
    o.cgroups_path = format!("{}/{id}", a.cgroup_parent.trim_end_matches('/'));
    for v in &a.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [s, d] => (*s, *d, false),
            [s, d, "ro"] => (*s, *d, true),
            [s, d, "rw"] => (*s, *d, false),
            _ => bail!("-v {v:?}: use HOST:CONTAINER[:ro] or VOLUME:CONTAINER[:ro]"),
        };
        if !dst.starts_with('/') {
            bail!("-v {v:?}: the container path must be absolute");
        }
        if crate::volumes::is_volume_source(src) {
            named.push((src.to_string(), dst.to_string(), ro));
            continue;
        }
        let src = std::fs::canonicalize(src)
            .with_context(|| format!("-v {v:?}: the host path {src:?}"))?;
        o.binds.push(Bind {
            source: src,
            destination: dst.to_string(),
            readonly: ro,
        });
    }
    // /etc/hostname, /etc/hosts and /etc/resolv.conf: the container's own (another
    // container's with its network).
    let dir = ctx.container_dir(id);
    let files = match &net.joined {
        Some(other) => ctx.container_dir(&other.id),
        None => {
            std::fs::write(dir.join("hostname"), format!("{}\n", o.hostname))?;
            let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let (hosts, resolv) = if o.network == Network::Host {
                let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
                for (name, ip) in &net.spec.add_hosts {
                    hosts.push_str(&format!("{ip}\t{name}\n"));
                }
                (hosts, host_resolv)
            } else {
                (
                    crate::endpoint::hosts_text(&net.spec, None, &[]),
                    crate::endpoint::resolv_text(&host_resolv, &a.dns),
                )
            };
            std::fs::write(dir.join("hosts"), hosts)?;
            std::fs::write(dir.join("resolv.conf"), resolv)?;
            dir
        }
    };
    for f in ["hostname", "hosts", "resolv.conf"] {
        if files.join(f).exists() {
            o.binds.push(Bind {
                source: files.join(f),
                destination: format!("/etc/{f}"),
                readonly: false,
            });
        }
    }
    Ok((o, named, net))
}

/// `--network` and what goes with it, checked.
struct NetChoice {
    spec: crate::containers::NetSpec,
    /// `container:X`: that container.
    joined: Option<Container>,
    /// The network namespace the runtime joins (none: a new one, or the host's).
    netns: Option<PathBuf>,
}

fn net_spec(ctx: &Ctx, a: &RunArgs, id: &str) -> Result<NetChoice> {
    let mode = match a.network.as_str() {
        "default" | "" => crate::network::DEFAULT.to_string(),
        m => m.to_string(),
    };
    let mut ports = Vec::new();
    for p in &a.publish {
        ports.extend(crate::ports::parse(p)?);
    }
    let mut add_hosts = Vec::new();
    for h in &a.add_hosts {
        let (name, ip) = h
            .split_once(':')
            .filter(|(n, ip)| !n.is_empty() && !ip.is_empty())
            .ok_or_else(|| anyhow!("--add-host {h:?}: use NAME:IP"))?;
        if ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
            bail!("--add-host {h:?}: invalid IP address {ip:?}");
        }
        add_hosts.push((name.to_string(), ip.to_string()));
    }
    for d in &a.dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            bail!("--dns {d:?}: not an IP address");
        }
    }
    let mut joined = None;
    let mut netns = None;
    let mut hostname = a.hostname.clone();
    let mut mode_out = mode.clone();
    if let Some(other) = mode.strip_prefix("container:") {
        if !ports.is_empty() {
            bail!("conflicting options: port publishing and the container type network mode");
        }
        if a.hostname.is_some() || !a.dns.is_empty() || !a.add_hosts.is_empty() {
            bail!("conflicting options: hostname, --dns and --add-host and the container type network mode");
        }
        let o = ctx.find(other)?;
        if !ctx.status(&o).is_running() {
            bail!("cannot join network of a non running container: {other}");
        }
        if o.net.mode == "host" {
            mode_out = "host".into();
        } else {
            netns = Some(match crate::endpoint::load(ctx, &o.id) {
                Some(e) => e.netns,
                None => {
                    let pid = ctx
                        .runtime_state_json(&o.id)
                        .and_then(|s| s["pid"].as_i64())
                        .ok_or_else(|| anyhow!("container {other}: its pid is unknown"))?;
                    PathBuf::from(format!("/proc/{pid}/ns/net"))
                }
            });
            mode_out = format!("container:{}", o.id);
        }
        hostname = Some(o.net.hostname.clone()).filter(|h| !h.is_empty());
        joined = Some(o);
    } else if mode == "host" || mode == "none" {
        if !ports.is_empty() {
            eprintln!("WARNING: Published ports are discarded when using {mode} network mode");
            ports.clear();
        }
    } else {
        let net = crate::network::find(&ctx.cni_conf_dir, &mode)?;
        mode_out = net.name.clone();
        netns = Some(crate::endpoint::netns_path(id));
    }
    if a.ip.is_some() {
        if mode_out == crate::network::DEFAULT || crate::network::is_mode(&mode_out) {
            bail!("user specified IP address is supported on user defined networks only");
        }
        if a.ip
            .as_deref()
            .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_err())
        {
            bail!(
                "--ip {:?}: not an IPv4 address",
                a.ip.as_deref().unwrap_or_default()
            );
        }
    }
    let hostname = match hostname {
        Some(h) => h,
        None if mode_out == "host" => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "berth".into()),
        None => id.chars().take(12).collect(),
    };
    Ok(NetChoice {
        spec: crate::containers::NetSpec {
            mode: mode_out,
            ports,
            ip: a.ip.clone(),
            add_hosts,
            dns: a.dns.clone(),
            hostname,
        },
        joined,
        netns,
    })
}

/// Create the container: record, snapshot, rootfs mount, config.json. On failure nothing stays.
pub fn create(ctx: &Ctx, a: &RunArgs) -> Result<Container> {
    let lock = ctx.store.lock_shared()?;
    let found = match a.pull.as_str() {
        "always" => None,
        "missing" | "never" => match ctx.store.image(&a.image) {
            Ok(r) => Some(r),
            Err(image::Error::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        other => bail!("--pull {other}: use missing, always or never"),
    };
    let img = match found {
        Some(r) => r,
        None if a.pull == "never" => bail!(
            "image {:?} not found: `berthctl import FILE` or `berthctl pull {}` first",
            a.image,
            a.image
        ),
        None => {
            // docker's words, on stderr: what it does when the image is not here.
            if a.pull != "always" {
                eprintln!("Unable to find image '{}' locally", a.image);
            }
            image::registry::pull(
                &ctx.store,
                &a.image,
                &crate::registry::options(&crate::registry::domain_of(&a.image)?, false, None)?,
                &crate::progress::Reporter::new(),
            )
            .with_context(|| format!("pull {}", a.image))?
        }
    };
    let config: image::oci_spec::image::ImageConfiguration =
        serde_json::from_slice(&ctx.store.content.read(img.id())?)
            .context("parse the image config")?;
    let id = util::new_id();
    let name = match &a.name {
        Some(n) => n.clone(),
        None => {
            let base = image::Reference::parse(&img.name)
                .map(|r| r.familiar_repository())
                .unwrap_or_default();
            let base = base.rsplit('/').next().unwrap_or("c").to_string();
            format!("{base}-{}", &id[..6])
        }
    };
    ctx.reserve_name(&name, &id)?;
    let dir = ctx.container_dir(&id);
    let rootfs = ctx.rootfs_dir(&id);
    let mut volumes = Vec::new();
    let r = (|| -> Result<Container> {
        std::fs::create_dir_all(&rootfs)?;
        // An image stored without its snapshots (--no-unpack) is unpacked first; the usual
        // case costs one stat (the top snapshot).
        let top = img.top_chain_id();
        if top.as_ref().is_some_and(|t| !ctx.store.snapshots.exists(t)) {
            ctx.store
                .unpack(&img, &image::Quiet)
                .context("unpack the image")?;
        }
        let mounts = ctx
            .store
            .snapshots
            .prepare(&id, top.as_ref())
            .context("prepare the container's snapshot")?;
        image::snapshot::mount_all(&mounts, &rootfs).context("mount the rootfs")?;
        let (mut opts, mut named, net) = bundle_options(ctx, a, &id)?;
        let mut extra = crate::mounts::Extra::default();
        for v in &a.volumes_from {
            crate::mounts::volumes_from(ctx, v, &mut extra)?;
        }
        for m in &a.mounts {
            crate::mounts::mount(m, &mut extra)?;
        }
        for t in &a.tmpfs {
            extra.tmpfs.push(crate::mounts::tmpfs(t)?);
        }
        opts.binds.extend(extra.binds);
        named.extend(extra.volumes);
        let image_volumes = config
            .config()
            .as_ref()
            .and_then(|c| c.volumes().clone())
            .unwrap_or_default();
        volumes = crate::volumes::attach(ctx, &named, &image_volumes, &rootfs, &mut opts.binds)?;
        let mut spec = bundle::generate(&config, &rootfs, &opts)?;
        if let Some(m) = spec["mounts"].as_array_mut() {
            m.extend(extra.tmpfs);
            crate::mounts::parents_first(m);
        }
        if let Some(path) = &net.netns {
            for n in spec["linux"]["namespaces"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if n["type"] == "network" {
                    n["path"] = serde_json::json!(path);
                }
            }
        }
        image::fsutil::write_atomic(
            &ctx.bundle_dir(&id).join("config.json"),
            &serde_json::to_vec_pretty(&spec)?,
        )?;
        let c = Container {
            id: id.clone(),
            name: name.clone(),
            image: img.name.clone(),
            image_id: img.id().to_string(),
            command: spec["process"]["args"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            created: util::now(),
            started: 0,
            detached: a.detach,
            auto_remove: a.rm,
            tty: a.tty,
            stop_signal: config
                .config()
                .as_ref()
                .and_then(|c| c.stop_signal().clone()),
            volumes: volumes.clone(),
            restart: a.restart.clone(),
            restart_count: 0,
            health: crate::health::resolve(
                &a.health,
                &serde_json::from_slice(&ctx.store.content.read(img.id())?)?,
            )?,
            net: net.spec,
        };
        ctx.save(&c)?;
        Ok(c)
    })();
    drop(lock);
    match r {
        Ok(c) => Ok(c),
        Err(e) => {
            let _ = image::snapshot::unmount(&rootfs);
            crate::volumes::remove_anonymous(ctx, &volumes);
            let _ = ctx.store.snapshots.remove(&id);
            let _ = image::fsutil::remove_path(&dir);
            ctx.release_name(&name, &id);
            Err(e)
        }
    }
}

pub fn run(ctx: &Ctx, a: &RunArgs, root_args: &[String]) -> Result<i32> {
    if a.detach && a.rm && a.interactive {
        bail!("-d with -i: stdin of detached containers is closed; drop -i");
    }
    let policy = crate::restart::Policy::parse(&a.restart)?;
    if policy != crate::restart::Policy::No {
        if a.rm {
            bail!("Conflicting options: --restart and --rm");
        }
        if !a.detach && (a.interactive || a.tty) {
            bail!("--restart in the foreground takes no -i or -t here: use -d (and logs -f)");
        }
    }
    let c = create(ctx, a)?;
    if a.detach {
        return detach(ctx, &c, root_args);
    }
    if policy != crate::restart::Policy::No {
        // The monitor carries out the policy; the foreground follows its output to the end.
        let from = std::fs::metadata(ctx.log_path(&c.id)).map_or(0, |m| m.len());
        if let Err(e) = start_monitor(ctx, &c, root_args) {
            let e = util::start_error(
                c.command.first().map_or("", String::as_str),
                format!("{e:#}"),
            );
            not_started(ctx, &c, &e);
            return Err(e);
        }
        return crate::logs::follow_from(ctx, &c, from);
    }
    foreground(ctx, &c, a)
}

fn foreground(ctx: &Ctx, c: &Container, a: &RunArgs) -> Result<i32> {
    let mut started = c.clone();
    started.started = util::now();
    ctx.save(&started)?;
    // The runtime's own errors go to a log of their own, never raw to the terminal.
    let runtime_log = ctx.container_dir(&c.id).join("runtime.log");
    let _ = std::fs::remove_file(&runtime_log);
    if let Err(e) = crate::endpoint::up(ctx, c) {
        not_started(ctx, c, &e);
        return Err(e);
    }
    let mut cmd = ctx.runtime_cmd();
    // --keep: the container (and its cgroup) stays until its exit is recorded (OOMKilled).
    cmd.arg("--log")
        .arg(&runtime_log)
        .arg("run")
        .arg("--keep")
        .arg("--bundle")
        .arg(ctx.bundle_dir(&c.id))
        .arg(&c.id);
    if !(a.interactive || a.tty) {
        cmd.stdin(Stdio::null());
    }
    let code = match run_forwarding_signals(cmd) {
        Ok(code) => code,
        Err(e) => {
            let _ = ctx.remove(c);
            return Err(e);
        }
    };
    if code != 0 && runtime_failed(&runtime_log) {
        // The container did not run: docker's code for why (126, 127, 125).
        let e = util::start_error(
            c.command.first().map_or("", String::as_str),
            runtime_error(&runtime_log),
        );
        not_started(ctx, c, &e);
        return Err(e);
    }
    // Released first: a recorded exit means nothing of the container runs or is mounted.
    if c.auto_remove {
        ctx.remove(c)?;
    } else {
        let oom = ctx.oom_killed(&c.id);
        ctx.release_runtime(&c.id);
        ctx.record_exit(&c.id, code, oom);
    }
    Ok(code)
}

/// Run `cmd`, forwarding SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 to it, ignoring SIGINT and
/// SIGQUIT (a terminal sends those to the whole foreground group, the runtime included);
/// returns its exit code (128+signal when killed).
pub fn run_forwarding_signals(mut cmd: Command) -> Result<i32> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    set.thread_block().context("block signals")?;
    // The child gets an empty signal mask back (std resets it before exec).
    let child = cmd
        .spawn()
        .with_context(|| format!("run {:?}", cmd.get_program()))?;
    let pid = child.id() as i32;
    std::thread::spawn(move || loop {
        let Ok(sig) = set.wait() else { return };
        if matches!(sig, Signal::SIGINT | Signal::SIGQUIT) {
            continue;
        }
        // SAFETY: plain kill(2) of our own child's pid.
        unsafe { libc::kill(pid, sig as i32) };
    });
    let mut child = child;
    let st = child.wait().context("wait for the runtime")?;
    Ok(exit_code(st))
}

fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 255,
    }
}

/// Start the monitor and wait for its word: the container runs, or why it did not.
fn detach(ctx: &Ctx, c: &Container, root_args: &[String]) -> Result<i32> {
    match start_monitor(ctx, c, root_args) {
        Ok(()) => {
            println!("{}", c.id);
            Ok(0)
        }
        Err(e) => {
            let e = util::start_error(
                c.command.first().map_or("", String::as_str),
                format!("{e:#}"),
            );
            not_started(ctx, c, &e);
            Err(e)
        }
    }
}

/// A container that could not start: removed with --rm, else kept (as docker keeps it) with
/// the code it failed with.
fn not_started(ctx: &Ctx, c: &Container, e: &anyhow::Error) {
    if c.auto_remove {
        let _ = ctx.remove(c);
    } else {
        ctx.release_runtime(&c.id);
        let code = e.downcast_ref::<util::CodedError>().map_or(125, |c| c.code);
        ctx.record_exit(&c.id, code, false);
    }
}

/// Start the container's monitor (which creates and starts it, then waits for it) and wait
/// for its word: the container runs, or why it did not.
pub fn start_monitor(ctx: &Ctx, c: &Container, root_args: &[String]) -> Result<()> {
    let exe = std::fs::read_link("/proc/self/exe").context("find berthctl's own binary")?;
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let mut cmd = Command::new(exe);
    cmd.args(root_args)
        .arg("--runtime")
        .arg(&ctx.runtime)
        .arg("__monitor")
        .arg(&c.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(wr))
        .stderr(Stdio::null());
    // SAFETY: setsid and close_range are async-signal-safe. The monitor outlives us: it keeps
    // no descriptor of ours (a caller's pipe left open would keep the caller waiting).
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("start the container's monitor")?;
    drop(cmd); // closes our copy of the pipe's write end
    let mut msg = String::new();
    std::fs::File::from(rd).read_to_string(&mut msg)?;
    if msg.trim() == "ok" {
        // The monitor goes on alone; do not leave a zombie behind if we lived on.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        return Ok(());
    }
    let _ = child.wait();
    let why = msg
        .trim()
        .strip_prefix("error: ")
        .unwrap_or(msg.trim())
        .to_string();
    bail!(
        "{}",
        if why.is_empty() {
            "the container's monitor died".to_string()
        } else {
            why
        }
    )
}

/// Whether the runtime logged an error (it failed, rather than the container exiting).
fn runtime_failed(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| {
        t.lines()
            .any(|l| l.contains("level=error") || l.contains("\"level\":\"error\""))
    })
}

/// The runtime's last error message in its log file (runc's `msg="..."` format, or plain).
fn runtime_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    if let Some(i) = line.find("msg=\"") {
        let rest = &line[i + 5..];
        let end = rest.rfind('"').unwrap_or(rest.len());
        return rest[..end].replace("\\\"", "\"");
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        if let Some(m) = v["msg"].as_str() {
            return m.to_string();
        }
    }
    line.to_string()
}

/// `berthctl __monitor ID`: stdout is the pipe to the waiting `berthctl run -d`.
pub fn monitor(ctx: &Ctx, id: &str) -> Result<i32> {
    let c = ctx.load(id)?;
    let policy = crate::restart::Policy::parse(&c.restart).unwrap_or(crate::restart::Policy::No);
    let reported = std::cell::Cell::new(false);
    let report = |msg: &str| {
        if reported.replace(true) {
            return;
        }
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{msg}");
        let _ = out.flush();
        // From now on stdout is /dev/null: the waiting client sees EOF.
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2_stdout(null.as_fd());
        }
    };
    let restarting = ctx.container_dir(id).join("restarting");
    let mut backoff = crate::restart::Backoff::new();
    // The lifecycle lock while a restart is under way (see below).
    let mut held: Option<image::fsutil::FileLock> = None;
    loop {
        let started = monitor_start(ctx, &c);
        drop(held.take());
        match started {
            Ok((init_pid, copiers)) => {
                let up = std::time::Instant::now();
                if let Ok(mut now) = ctx.load(id) {
                    now.started = util::now();
                    let _ = ctx.save(&now);
                }
                let _ = std::fs::remove_file(&restarting);
                report("ok");
                let mut checker = c
                    .health
                    .as_ref()
                    .and_then(|_| crate::health::spawn(ctx, id).ok());
                let code = wait_for(init_pid);
                if let Some(ch) = checker.as_mut() {
                    let _ = ch.kill();
                    let _ = ch.wait();
                }
                // The container's processes are gone with its init (its own pid namespace):
                // the copiers reach the end of its output.
                for t in copiers {
                    let _ = t.join();
                }
                // Removed meanwhile (rm -f): nothing left to record, the runtime's container
                // goes too.
                let Ok(now) = ctx.load(id) else {
                    ctx.delete_runtime(&c.id);
                    return Ok(0);
                };
                if policy.restarts(
                    code,
                    now.restart_count,
                    crate::restart::stopped_by_hand(ctx, id),
                ) {
                    ctx.delete_runtime(&c.id);
                    // The marker names this monitor: a dead one's marker means nothing.
                    let _ = std::fs::write(&restarting, std::process::id().to_string());
                    if wait_out(ctx, id, backoff.next(up.elapsed())) {
                        // From the decision to the started container, stop/kill/rm wait: they
                        // see it running (and stop it), or find it stopped by hand here.
                        let lock = crate::restart::lock(ctx, id);
                        if lock.is_ok() && !crate::restart::stopped_by_hand(ctx, id) {
                            if let Ok(mut now) = ctx.load(id) {
                                now.restart_count += 1;
                                let _ = ctx.save(&now);
                                held = lock.ok();
                                continue;
                            }
                        }
                    }
                    let _ = std::fs::remove_file(&restarting);
                }
                if c.auto_remove {
                    let _ = ctx.remove(&c);
                } else {
                    let oom = ctx.oom_killed(&c.id);
                    ctx.release_runtime(&c.id);
                    ctx.record_exit(&c.id, code, oom);
                }
                return Ok(0);
            }
            Err(e) => {
                ctx.release_runtime(&c.id);
                let _ = std::fs::remove_file(&restarting);
                if !reported.get() {
                    report(&format!("error: {e:#}"));
                    return Ok(1);
                }
                // A restart that could not start: stopped, with docker's code for why.
                let e = util::start_error(
                    c.command.first().map_or("", String::as_str),
                    format!("{e:#}"),
                );
                let code = e.downcast_ref::<util::CodedError>().map_or(125, |c| c.code);
                if let Ok(f) = std::fs::OpenOptions::new()
                    .append(true)
                    .open(ctx.log_path(id))
                {
                    crate::logs::Writer::new(f).note(&format!("berthctl: restart: {e:#}\n"));
                }
                ctx.record_exit(&c.id, code, false);
                return Ok(1);
            }
        }
    }
}

/// Wait `d` before a restart; false when the container was stopped or removed meanwhile.
fn wait_out(ctx: &Ctx, id: &str, d: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + d;
    loop {
        if crate::restart::stopped_by_hand(ctx, id) || !ctx.container_dir(id).is_dir() {
            return false;
        }
        let now = std::time::Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(std::time::Duration::from_millis(50)));
    }
}

/// The threads that copy a container's output into its log.
type Copiers = Vec<std::thread::JoinHandle<()>>;

fn monitor_start(ctx: &Ctx, c: &Container) -> Result<(i32, Copiers)> {
    nix::sys::prctl::set_child_subreaper(true).context("become a child subreaper")?;
    let dir = ctx.container_dir(&c.id);
    let log = crate::logs::Writer::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ctx.log_path(&c.id))
            .context("open the log file")?,
    );
    let runtime_log = dir.join("runtime.log");
    let pid_file = dir.join("init.pid");
    // The network's namespace and ports now; its plugins run while the runtime creates the
    // container in that namespace (the container's process starts only with `start`).
    let pending = crate::endpoint::begin(ctx, c)?;
    let mut cmd = ctx.runtime_cmd();
    cmd.arg("--log").arg(&runtime_log).arg("create");
    cmd.arg("--bundle").arg(ctx.bundle_dir(&c.id));
    cmd.arg("--pid-file").arg(&pid_file);
    let mut copiers = Vec::new();
    let sock_path: PathBuf;
    if c.tty {
        sock_path = std::env::temp_dir().join(format!(
            "berthctl-console-{}.sock",
            image::fsutil::random_hex(6)
        ));
        let listener = std::os::unix::net::UnixListener::bind(&sock_path)
            .with_context(|| format!("listen on {}", sock_path.display()))?;
        cmd.arg("--console-socket").arg(&sock_path);
        let log = log.clone();
        copiers.push(std::thread::spawn(move || {
            if let Ok(master) = receive_pty(&listener) {
                // A terminal's output is one stream, stdout (as docker logs it).
                log.copy(std::fs::File::from(master), "stdout");
            }
        }));
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    } else {
        sock_path = PathBuf::new();
        // stdout and stderr through pipes of their own: the log keeps them apart.
        for stream in ["stdout", "stderr"] {
            let (r, w) = std::io::pipe().context("pipe")?;
            if stream == "stdout" {
                cmd.stdout(Stdio::from(w));
            } else {
                cmd.stderr(Stdio::from(w));
            }
            let log = log.clone();
            copiers.push(std::thread::spawn(move || {
                log.copy(std::fs::File::from(OwnedFd::from(r)), stream)
            }));
        }
    }
    cmd.arg(&c.id).stdin(Stdio::null());
    let (st, net) = std::thread::scope(|s| {
        let net = pending.map(|p| s.spawn(move || p.finish(ctx)));
        let st = cmd.status().context("run the runtime's create");
        let net = net.map_or(Ok(()), |h| {
            h.join()
                .unwrap_or_else(|_| Err(anyhow!("the network setup panicked")))
        });
        (st, net)
    });
    // Our copies of the pipes' write ends go with the command: the copiers see the end
    // once the container's processes are gone.
    drop(cmd);
    let st = st?;
    net?;
    if c.tty {
        let _ = std::fs::remove_file(&sock_path);
    }
    if !st.success() {
        bail!("{}", runtime_error(&runtime_log));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .context("read the container's pid file")?
        .trim()
        .parse()
        .context("parse the container's pid file")?;
    let st = ctx
        .runtime_cmd()
        .arg("--log")
        .arg(&runtime_log)
        .args(["start", &c.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run the runtime's start")?;
    if !st.success() {
        bail!("{}", runtime_error(&runtime_log));
    }
    Ok((pid, copiers))
}

/// Wait for `pid` (our child since `create` exited: we are a subreaper), reaping any other
/// orphan that comes our way. Returns its exit code (128+signal when killed).
fn wait_for(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return code,
            Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => return 128 + s as i32,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => {
                // Not our child after all (should not happen): poll until it is gone.
                while Path::new(&format!("/proc/{pid}")).exists() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                return 255;
            }
        }
    }
}

fn receive_pty(listener: &std::os::unix::net::UnixListener) -> Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let (stream, _) = listener.accept()?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for cm in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cm {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just gave us this descriptor.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    bail!("no pty master received on the console socket")
}
