//! berth: a runc-compatible OCI runtime. A thin command line over libcontainer; its flags,
//! exit codes, state JSON and log lines follow runc's.

mod checkpoint;
mod events;
mod heap;
mod log;
mod process_args;
mod relay;
mod signals;
mod single_dash;
mod update;

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use libcontainer::container;
use libcontainer::create::{self, CreateOptions, StartMode};

/// println! that ends the process quietly when stdout is a closed pipe (`berth state X | head`)
/// instead of panicking; berth keeps SIGPIPE ignored so that a hook or an init that goes away
/// is an error it can report, not a signal that kills it.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        if let Err(e) = writeln!(o, $($arg)*).and_then(|()| o.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

#[global_allocator]
static HEAP: heap::Heap = heap::Heap::new();

/// `berth --version` / `-v`, in runc's layout: `<name> version X`, then `commit:`, `spec:` and
/// the toolchain (runc: `go:`). go-runc (containerd) reads `commit:` and `spec:`, dockerd the
/// word before `version` and `commit:`, podman shows the text as it is. runc's `libseccomp:`
/// line has no counterpart (berth compiles seccomp filters itself).
fn version_text() -> String {
    format!(
        "berth version {}\ncommit: {}\nspec: {}\nrust: {}",
        env!("CARGO_PKG_VERSION"),
        env!("BERTH_COMMIT"),
        libcontainer::state::OCI_VERSION,
        env!("BERTH_RUSTC"),
    )
}

/// runc's default state root: $XDG_RUNTIME_DIR/<name> when a user other than root runs it
/// (or root in a user namespace whose $USER is not root), else /run/<name>.
fn default_root() -> PathBuf {
    let honor_xdg = || {
        if nix::unistd::geteuid().as_raw() != 0 {
            return true;
        }
        libcontainer::namespaces::in_user_namespace()
            && std::env::var("USER").map_or(true, |u| u != "root")
    };
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(x) if !x.is_empty() && honor_xdg() => PathBuf::from(x).join("berth"),
        _ => PathBuf::from("/run/berth"),
    }
}

#[derive(Parser)]
#[command(
    name = "berth",
    about = "A runc-compatible OCI container runtime",
    // Our own -v/--version flag prints version_text(); clap needs a version for it to exist
    // (its debug builds assert so).
    version = env!("CARGO_PKG_VERSION"),
    disable_version_flag = true
)]
struct Cli {
    /// Print the version (runc's `-v`, `--version`).
    #[arg(short = 'v', long, visible_short_alias = 'V', action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// Directory for container state (tmpfs recommended; default /run/berth, or
    /// $XDG_RUNTIME_DIR/berth for a user other than root, as runc's).
    #[arg(long, global = true, default_value_os_t = default_root())]
    root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log debug messages too.
    #[arg(long, global = true)]
    debug: bool,
    /// Manage cgroups through systemd (requires a running systemd).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility (auto, true, false).
    #[arg(long = "rootless", id = "rootless_mode", hide = true)]
    rootless_mode: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Clone)]
struct CreateArgs {
    /// Path to the bundle (the directory with config.json).
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// File to write the init process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to (process.terminal).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass this many extra descriptors (3, 4, ...) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container id.
    id: String,
}

#[derive(Args)]
struct ExecArgs {
    /// Unix socket to send the pty master to (with --tty).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Working directory of the process.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Extra environment variables (KEY=value).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    tty: bool,
    /// uid[:gid] to run as.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Additional groups.
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// A process.json to run instead of the command line.
    #[arg(short = 'p', long)]
    process: Option<PathBuf>,
    /// Do not wait for the process.
    #[arg(short = 'd', long)]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// SELinux process label of the process (default: the container's).
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// AppArmor profile of the process (default: the container's).
    #[arg(long)]
    apparmor: Option<String>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Add a capability.
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    /// Pass this many extra descriptors (3, 4, ...) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Run the process in an (existing) sub-cgroup of the container's: `PATH` (every
    /// hierarchy; cgroup v2) or `CONTROLLER[,CONTROLLER]:PATH` (v1), repeatable.
    #[arg(long)]
    cgroup: Vec<String>,
    /// Allow exec in a paused container (the process waits, frozen, until resume).
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Container id.
    id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `defer`: clap builds only the arguments of the subcommand in use, not of all fifteen (the
/// cold parse of `run` took 0.3 ms, now 0.15 ms).
#[derive(Subcommand)]
#[command(defer = true)]
enum Cmd {
    /// Create a container, held before running its process until `start`.
    Create(CreateArgs),
    /// Run the process of a created container.
    Start { id: String },
    /// Print the state of a container as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or to all its processes.
    Kill {
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Run a new process inside a running container.
    Exec(Box<ExecArgs>),
    /// Delete a container and everything it holds.
    Delete {
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// Create and start a container; in the foreground, wait for it and remove it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Do not wait for the container; leave it running.
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep the container after it exits (foreground only).
        #[arg(long)]
        keep: bool,
    },
    /// List the processes of a container.
    Ps {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        id: String,
        /// Options for ps(1) (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Display container events such as OOM notifications, cpu, memory, and IO usage statistics.
    Events(events::EventsArgs),
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's resource limits.
    Update(Box<update::UpdateArgs>),
    /// List containers.
    List {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Write a default config.json.
    Spec {
        #[arg(short = 'b', long)]
        bundle: Option<PathBuf>,
        #[arg(long)]
        rootless: bool,
    },
    /// Print what this runtime implements, as runtime-spec features JSON.
    Features,
    /// Checkpoint a running container with CRIU.
    Checkpoint(Box<checkpoint::CheckpointArgs>),
    /// Restore a container from a CRIU checkpoint.
    Restore(Box<checkpoint::RestoreArgs>),
}

fn main() {
    // Commands that put a process into a container re-exec from a sealed binary first (see
    // libcontainer::sealed); doing it before clap spares the first image a full parse. If this
    // guess is wrong or sealing fails here, dispatch() seals (or reports why not) all the same.
    let args = std::env::args_os().collect::<Vec<_>>();
    let args = if single_dash::needed(&args) {
        single_dash::normalize(&mut Cli::command(), args)
    } else {
        args
    };
    let sealed = matches!(
        subcommand_hint(args.iter().skip(1).cloned()).as_deref(),
        Some("create" | "run" | "exec")
    ) && libcontainer::sealed::ensure_sealed().is_ok();
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => {
            out!("{}", version_text());
            std::process::exit(0);
        }
        Err(e) if e.kind() == clap::error::ErrorKind::InvalidSubcommand => unknown_command(&args),
        Err(e) if missing_value(&e).is_some() => {
            // urfave/cli's words, which podman looks for (`restore --lsm-mount-context`).
            let flag = missing_value(&e).unwrap_or_default();
            eprintln!("Incorrect Usage: flag needs an argument: -{flag}");
            std::process::exit(1);
        }
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let logger = match log::Logger::new(
        cli.log.as_deref(),
        matches!(cli.log_format, LogFormat::Json),
        cli.debug,
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::exit(1);
        }
    };
    match dispatch(&cli, &logger, sealed) {
        Ok(code) => std::process::exit(code),
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::exit(0);
        }
        Err(e) => {
            logger.fatal(&format!("{e:#}"));
            std::process::exit(1);
        }
    }
}

/// The option whose value is missing (`lsm-mount-context` of `--lsm-mount-context`), if that
/// is clap's complaint.
fn missing_value(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidValue {
        return None;
    }
    let given = e.get(ContextKind::InvalidValue);
    if !matches!(given, Some(ContextValue::String(v)) if v.is_empty()) {
        return None;
    }
    match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(a)) => Some(
            a.split_whitespace()
                .next()?
                .trim_start_matches('-')
                .to_string(),
        ),
        _ => None,
    }
}

/// The words of a command line that are neither options nor the values of global options that
/// take one: the subcommand first.
fn words(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<String> {
    let mut args = args;
    let mut out = Vec::new();
    while let Some(a) = args.next() {
        let Some(a) = a.to_str() else { break };
        match a {
            "--root" | "--log" | "--log-format" | "--rootless" => {
                args.next();
            }
            _ if a.starts_with('-') => {}
            _ => out.push(a.to_owned()),
        }
    }
    out
}

/// The subcommand of a command line without clap.
fn subcommand_hint(args: impl Iterator<Item = std::ffi::OsString>) -> Option<String> {
    words(args).into_iter().next()
}

/// The value of a global option (`--log F` or `--log=F`) read without clap, for errors that
/// clap reports before it has parsed them.
fn global_value(args: &[String], name: &str) -> Option<String> {
    let eq = format!("{name}=");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == name {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix(&eq) {
            return Some(v.to_string());
        }
    }
    None
}

/// The message for a command berth does not have, as runc words it (`No help topic for 'foo'`,
/// also for `help foo` and `foo -h`).
fn unknown_command_message(words: &[String]) -> String {
    let name = match words {
        [help, topic, ..] if help == "help" => topic.as_str(),
        [name, ..] => name.as_str(),
        [] => "",
    };
    format!("No help topic for '{name}'")
}

/// An unknown subcommand: log runc's message where runc logs it (`--log`, `--log-format`) and
/// exit 3 as runc does. Never 0: podman takes `checkpoint --help` exiting 0 as "supported".
fn unknown_command(argv: &[std::ffi::OsString]) -> ! {
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let msg = unknown_command_message(&words(args.iter().map(std::ffi::OsString::from)));
    let json = global_value(&args, "--log-format").as_deref() == Some("json");
    match log::Logger::new(
        global_value(&args, "--log").as_deref().map(Path::new),
        json,
        false,
    ) {
        Ok(l) => l.fatal(&msg),
        Err(_) => eprintln!("{msg}"),
    }
    std::process::exit(3);
}

fn create_options(cli: &Cli, a: &CreateArgs, detach: bool) -> CreateOptions {
    CreateOptions {
        root: cli.root.clone(),
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        systemd_cgroup: cli.systemd_cgroup,
        detach,
    }
}

fn warn_all(logger: &log::Logger, warnings: &[String]) {
    for w in warnings {
        logger.log("warning", w);
    }
}

/// `sealed`: main() already made sure this process runs from a binary nobody can write.
fn dispatch(cli: &Cli, logger: &log::Logger, sealed: bool) -> Result<i32> {
    let seal = || {
        if sealed {
            Ok(())
        } else {
            libcontainer::sealed::ensure_sealed()
        }
    };
    let root = cli.root.as_path();
    logger.debug(|| {
        format!(
            "berth {} {} (root {})",
            env!("CARGO_PKG_VERSION"),
            std::env::args_os()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            root.display()
        )
    });
    match &cli.cmd {
        Cmd::Create(a) => {
            seal()?;
            let new = create::create(&create_options(cli, a, true), StartMode::Fifo)
                .with_context(|| format!("create container {:?}", a.id))?;
            logger.debug(|| format!("container {:?} created: init pid {}", a.id, new.state.pid));
            warn_all(logger, &new.warnings);
            new.detach();
        }
        Cmd::Run {
            create,
            detach,
            keep,
        } => {
            seal()?;
            return run(cli, logger, create, *detach, *keep);
        }
        Cmd::Exec(a) => {
            // As runc: every failure of exec (not of its arguments) exits 255, so that a client
            // can tell it from the exit status of the process.
            return match seal()
                .map_err(anyhow::Error::from)
                .and_then(|()| exec(cli, logger, a))
            {
                Ok(code) => Ok(code),
                Err(e) => {
                    logger.fatal(&format!("exec failed: {e:#}"));
                    Ok(255)
                }
            };
        }
        Cmd::Start { id } => {
            container::start(root, id).with_context(|| format!("start container {id:?}"))?;
            logger.debug(|| format!("container {id:?} started"));
        }
        Cmd::State { id } => {
            let l = container::load(root, id)?;
            out!("{}", serde_json::to_string_pretty(&l.oci_state())?);
        }
        Cmd::Kill { all, id, signal } => {
            let sig = signals::parse(signal)?;
            container::kill(root, id, sig, *all)
                .with_context(|| format!("kill container {id:?}"))?;
            logger
                .debug(|| format!("signal {sig} sent to container {id:?} (all processes: {all})"));
        }
        Cmd::Delete { force, id } => {
            let w = container::delete(root, id, *force)
                .with_context(|| format!("delete container {id:?}"))?;
            warn_all(logger, &w);
        }
        Cmd::List { format, quiet } => list(root, format, *quiet)?,
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => ps(root, id, format, ps_args)?,
        Cmd::Events(a) => events::run(root, a, logger)?,
        Cmd::Pause { id } => {
            container::pause(root, id).with_context(|| format!("pause container {id:?}"))?
        }
        Cmd::Resume { id } => {
            container::resume(root, id).with_context(|| format!("resume container {id:?}"))?
        }
        Cmd::Update(a) => {
            let current = container::resources(root, &a.id)?;
            let r = update::resources(a, &current)?;
            container::update(root, &a.id, r)
                .with_context(|| format!("update container {:?}", a.id))?;
        }
        Cmd::Spec { bundle, rootless } => {
            let dir = bundle.clone().unwrap_or_else(|| PathBuf::from("."));
            let path = dir.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let spec = libcontainer::spec_default::default_spec(*rootless);
            let mut text = serde_json::to_string_pretty(&spec)?;
            text.push('\n');
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        }
        Cmd::Checkpoint(a) => checkpoint::checkpoint(root, a)?,
        Cmd::Restore(a) => return restore(cli, logger, a),
        Cmd::Features => out!(
            "{}",
            serde_json::to_string_pretty(&libcontainer::features::features())?
        ),
    }
    Ok(0)
}

/// `ps`: the container's pids as JSON, or the lines of ps(1) for them (runc's behaviour).
fn ps(root: &Path, id: &str, format: &str, args: &[String]) -> Result<()> {
    let pids = container::pids(root, id).with_context(|| format!("ps of container {id:?}"))?;
    match format {
        "json" => out!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let args: Vec<String> = if args.is_empty() {
                vec!["-ef".into()]
            } else {
                args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("run ps")?;
            if !out.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .context("ps output has no PID column")?;
            out!("{header}");
            for line in lines {
                let pid = line
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    out!("{line}");
                }
            }
        }
        f => bail!("invalid format option {f:?}: table or json"),
    }
    Ok(())
}

fn list(root: &Path, format: &str, quiet: bool) -> Result<()> {
    let all = container::list(root)?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for l in &all {
            writeln!(out, "{}", l.state.id)?;
        }
        return Ok(());
    }
    match format {
        "json" => {
            if all.is_empty() {
                writeln!(out, "null")?;
            } else {
                let v: Vec<_> = all.iter().map(|l| l.oci_state()).collect();
                writeln!(out, "{}", serde_json::to_string(&v)?)?;
            }
        }
        "table" => {
            let rows: Vec<[String; 6]> = all
                .iter()
                .map(|l| {
                    let s = l.oci_state();
                    [
                        s.id.to_string(),
                        s.pid.to_string(),
                        s.status.to_string(),
                        s.bundle.display().to_string(),
                        s.created.to_string(),
                        s.owner.to_string(),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            // Columns as Go's tabwriter(minwidth 12, padding 3) lays them out for runc.
            let mut widths = [12usize; 5];
            for r in std::iter::once(&header).chain(rows.iter()) {
                for (i, w) in widths.iter_mut().enumerate() {
                    *w = (*w).max(r[i].len() + 3);
                }
            }
            for r in std::iter::once(&header).chain(rows.iter()) {
                for (i, w) in widths.iter().enumerate() {
                    write!(out, "{:<w$}", r[i], w = *w)?;
                }
                writeln!(out, "{}", r[5])?;
            }
        }
        f => bail!("invalid format option {f:?}: table or json"),
    }
    Ok(())
}

/// `run`: create with an immediate start; in the foreground forward signals to init (and
/// relay its terminal), wait for it, remove the container and exit with its status.
fn run(cli: &Cli, logger: &log::Logger, a: &CreateArgs, detach: bool, keep: bool) -> Result<i32> {
    let opts = create_options(cli, a, detach);
    let sigfd = if detach {
        None
    } else {
        nix::sys::prctl::set_child_subreaper(true)?;
        Some(relay::block_signals()?)
    };
    let new = create::create(&opts, StartMode::Now)
        .with_context(|| format!("create container {:?}", a.id))?;
    logger.debug(|| format!("container {:?} created: init pid {}", a.id, new.state.pid));
    warn_all(logger, &new.warnings);
    let started = match new.start() {
        Ok(s) => s,
        Err(hook_error @ libcontainer::error::Error::Hook(_)) => {
            // A poststart hook failed and init was killed: an error, as in runc, which then
            // removes the container (running its poststop hooks).
            match container::destroy_stopped(&cli.root, &a.id) {
                Ok(w) => warn_all(logger, &w),
                Err(e) => logger.log("warning", &format!("remove container: {e:#}")),
            }
            bail!("run container {:?}: {hook_error}", a.id);
        }
        Err(e) => return Err(e).with_context(|| format!("run container {:?}", a.id)),
    };
    let Some(sigfd) = sigfd else { return Ok(0) };
    let status = relay::wait(
        &sigfd,
        started.state.pid,
        started.pidfd.as_fd(),
        started.pty,
    )?;
    if !keep {
        let w = container::destroy_stopped(&cli.root, &started.state.id)
            .with_context(|| format!("remove container {:?}", started.state.id))?;
        warn_all(logger, &w);
    }
    Ok(status)
}

/// `restore`: a container from a CRIU checkpoint; in the foreground (no `--detach`) wait for
/// its init (CRIU restores it as this process's child), remove the container and exit with
/// its status, as `run` does.
fn restore(cli: &Cli, logger: &log::Logger, a: &checkpoint::RestoreArgs) -> Result<i32> {
    let (opts, foreground) = checkpoint::restore_options(&cli.root, cli.systemd_cgroup, a)?;
    let sigfd = if foreground {
        nix::sys::prctl::set_child_subreaper(true)?;
        Some(relay::block_signals()?)
    } else {
        None
    };
    let (state, warnings) = libcontainer::criu::restore(&opts)
        .with_context(|| format!("restore container {:?}", a.id))?;
    warn_all(logger, &warnings);
    logger.debug(|| format!("container {:?} restored: init pid {}", a.id, state.pid));
    let Some(sigfd) = sigfd else { return Ok(0) };
    let pidfd = libcontainer::sys::pidfd_open(state.pid)?;
    let status = relay::wait(&sigfd, state.pid, pidfd.as_fd(), None)?;
    let w = container::destroy_stopped(&cli.root, &state.id)
        .with_context(|| format!("remove container {:?}", state.id))?;
    warn_all(logger, &w);
    Ok(status)
}

/// `exec`: start a process in a running container; in the foreground wait for it.
fn exec(cli: &Cli, logger: &log::Logger, a: &ExecArgs) -> Result<i32> {
    let mut process = match &a.process {
        Some(p) => process_args::from_file(p)?,
        None => {
            let l = container::load(&cli.root, &a.id)?;
            let base = l
                .state
                .config
                .process()
                .clone()
                .context("the container has no process spec")?;
            process_args::build(
                &base,
                &process_args::Overrides {
                    args: &a.command,
                    tty: a.tty,
                    cwd: a.cwd.as_deref(),
                    env: &a.env,
                    user: a.user.as_deref(),
                    additional_gids: &a.additional_gids,
                    caps: &a.cap,
                    no_new_privs: a.no_new_privs,
                },
            )?
        }
    };
    // As runc: the flags apply to the command line's process, not to a --process file.
    if a.process.is_none() {
        if let Some(p) = a.apparmor.as_ref().filter(|p| !p.is_empty()) {
            process.set_apparmor_profile(Some(p.clone()));
        }
        if let Some(l) = a.process_label.as_ref().filter(|l| !l.is_empty()) {
            process.set_selinux_label(Some(l.clone()));
        }
    }
    let opts = libcontainer::exec::ExecOptions {
        root: cli.root.clone(),
        id: a.id.clone(),
        process,
        console_socket: a.console_socket.clone(),
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
        sub_cgroups: a.cgroup.clone(),
        ignore_paused: a.ignore_paused,
    };
    let sigfd = if a.detach {
        None
    } else {
        Some(relay::block_signals()?)
    };
    let execd =
        libcontainer::exec::exec(&opts).with_context(|| format!("exec in container {:?}", a.id))?;
    logger.debug(|| format!("exec in container {:?}: process pid {}", a.id, execd.pid));
    let Some(sigfd) = sigfd else { return Ok(0) };
    relay::wait(&sigfd, execd.pid, execd.pidfd.as_fd(), execd.pty)
}

#[cfg(test)]
mod tests {
    use super::subcommand_hint;

    /// clap's own consistency checks (debug builds panic on the first parse otherwise: the
    /// -v flag once had no version to show).
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// The one-dash rewrite on berth's own command line: the container's words (exec's and
    /// ps's trailing arguments) and negative option values stay as they are.
    #[test]
    fn one_dash_words_on_berths_command_line() {
        use clap::CommandFactory;
        let norm = |line: &str| -> Vec<String> {
            let args = std::iter::once("berth")
                .chain(line.split_whitespace())
                .map(std::ffi::OsString::from)
                .collect();
            super::single_dash::normalize(&mut super::Cli::command(), args)
                .into_iter()
                .skip(1)
                .map(|a| a.into_string().unwrap())
                .collect()
        };
        let same = |line: &str| {
            line.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        for line in [
            "-root /r exec c1 ls -la -root",
            "-debug ps c1 -ef",
            "-root /r update --cpu-quota -1 c1",
            "-root /r checkpoint --status-fd -1 c1",
        ] {
            let want = same(
                &line
                    .replacen("-root", "--root", 1)
                    .replacen("-debug", "--debug", 1),
            );
            assert_eq!(norm(line), want, "{line}");
        }
        assert_eq!(
            norm("-root /r checkpoint -status-fd -1 -leave-running c1"),
            same("--root /r checkpoint --status-fd -1 --leave-running c1")
        );
        assert_eq!(
            norm("-log /l -log-format json restore -no-subreaper -d c1"),
            same("--log /l --log-format json restore --no-subreaper -d c1")
        );
    }

    fn hint(line: &str) -> Option<String> {
        subcommand_hint(line.split_whitespace().map(Into::into))
    }

    #[test]
    fn subcommand_hint_skips_global_options_and_their_values() {
        assert_eq!(hint("run -b /b x").as_deref(), Some("run"));
        assert_eq!(
            hint("--root /r --log /l --log-format json --debug exec x true").as_deref(),
            Some("exec")
        );
        assert_eq!(
            hint("--root=/r --systemd-cgroup create x").as_deref(),
            Some("create")
        );
        assert_eq!(hint("--rootless false state x").as_deref(), Some("state"));
        assert_eq!(hint("--debug"), None);
    }

    #[test]
    fn unknown_commands_are_worded_as_runc_words_them() {
        let msg = |line: &str| {
            super::unknown_command_message(&super::words(
                line.split_whitespace().map(std::ffi::OsString::from),
            ))
        };
        assert_eq!(msg("foo"), "No help topic for 'foo'");
        assert_eq!(msg("--root /r help foo"), "No help topic for 'foo'");
        assert_eq!(msg("foo -h"), "No help topic for 'foo'");
        assert_eq!(
            msg("--log /l --log-format json frob --image-path /i x"),
            "No help topic for 'frob'"
        );
        let args: Vec<String> = ["--log=/a", "--log-format", "json", "x"]
            .map(String::from)
            .to_vec();
        assert_eq!(super::global_value(&args, "--log").as_deref(), Some("/a"));
        assert_eq!(
            super::global_value(&args, "--log-format").as_deref(),
            Some("json")
        );
        assert_eq!(super::global_value(&args, "--root"), None);
    }

    #[test]
    fn version_is_in_runcs_layout() {
        let v = super::version_text();
        let lines: Vec<&str> = v.lines().collect();
        assert_eq!(lines.len(), 4, "{v}");
        assert!(lines[0].starts_with("berth version "), "{v}");
        assert!(
            lines[1].starts_with("commit: ") && lines[1].len() > 8,
            "{v}"
        );
        assert!(lines[2].starts_with("spec: 1."), "{v}");
        assert!(lines[3].starts_with("rust: "), "{v}");
    }
}
