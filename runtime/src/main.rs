//! berth: a runc-compatible OCI runtime. A thin command line over libcontainer; its flags,
//! exit codes, state JSON and log lines follow runc's.

mod log;
mod signals;

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use libcontainer::container;
use libcontainer::create::{self, CreateOptions, StartMode};

/// `berth --version`, in runc's layout (containerd and podman parse the first line).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\nspec: ", "1.2.0");

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A runc-compatible OCI container runtime"
)]
struct Cli {
    /// Directory for container state (tmpfs recommended).
    #[arg(long, global = true, default_value = "/run/berth")]
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

#[derive(Subcommand)]
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
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => {
            println!("berth version {VERSION}");
            std::process::exit(0);
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
    match dispatch(&cli, &logger) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            logger.fatal(&format!("{e:#}"));
            std::process::exit(1);
        }
    }
}

fn create_options(cli: &Cli, a: &CreateArgs) -> CreateOptions {
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
    }
}

fn warn_all(logger: &log::Logger, warnings: &[String]) {
    for w in warnings {
        logger.log("warning", w);
    }
}

fn dispatch(cli: &Cli, logger: &log::Logger) -> Result<i32> {
    let root = cli.root.as_path();
    match &cli.cmd {
        Cmd::Create(a) => {
            libcontainer::sealed::ensure_sealed()?;
            create::create(&create_options(cli, a), StartMode::Fifo)
                .with_context(|| format!("create container {:?}", a.id))?
                .detach();
        }
        Cmd::Run {
            create,
            detach,
            keep,
        } => {
            libcontainer::sealed::ensure_sealed()?;
            return run(cli, logger, create, *detach, *keep);
        }
        Cmd::Start { id } => {
            let w =
                container::start(root, id).with_context(|| format!("start container {id:?}"))?;
            warn_all(logger, &w);
        }
        Cmd::State { id } => {
            let l = container::load(root, id)?;
            println!("{}", serde_json::to_string_pretty(&l.oci_state())?);
        }
        Cmd::Kill { all, id, signal } => {
            let sig = signals::parse(signal)?;
            container::kill(root, id, sig, *all)
                .with_context(|| format!("kill container {id:?}"))?;
        }
        Cmd::Delete { force, id } => {
            let w = container::delete(root, id, *force)
                .with_context(|| format!("delete container {id:?}"))?;
            warn_all(logger, &w);
        }
        Cmd::List { format, quiet } => list(root, format, *quiet)?,
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
        Cmd::Features => println!(
            "{}",
            serde_json::to_string_pretty(&libcontainer::features::features())?
        ),
    }
    Ok(0)
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

/// `run`: create with an immediate start; in the foreground forward signals to init, wait for
/// it, remove the container and exit with its status (128+signal if killed).
fn run(cli: &Cli, logger: &log::Logger, a: &CreateArgs, detach: bool, keep: bool) -> Result<i32> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::signalfd::SignalFd;
    let opts = create_options(cli, a);
    let mut sigfd = None;
    if !detach {
        // Block every signal before init exists so none is lost; init resets its mask.
        let mut set = SigSet::all();
        for s in [
            Signal::SIGSEGV,
            Signal::SIGBUS,
            Signal::SIGILL,
            Signal::SIGFPE,
            Signal::SIGABRT,
        ] {
            set.remove(s);
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        sigfd = Some(SignalFd::new(&set)?);
        nix::sys::prctl::set_child_subreaper(true)?;
    }
    let new = create::create(&opts, StartMode::Now)
        .with_context(|| format!("create container {:?}", a.id))?;
    let (state, pidfd, _direct, warnings) = new
        .start()
        .with_context(|| format!("run container {:?}", a.id))?;
    warn_all(logger, &warnings);
    let Some(sigfd) = sigfd else { return Ok(0) };
    let status = wait_forwarding(&sigfd, state.pid, pidfd.as_fd())?;
    if !keep {
        let w = container::destroy_stopped(&cli.root, &state.id)
            .with_context(|| format!("remove container {:?}", state.id))?;
        warn_all(logger, &w);
    }
    Ok(status)
}

fn wait_forwarding(
    sigfd: &nix::sys::signalfd::SignalFd,
    init: i32,
    pidfd: std::os::fd::BorrowedFd,
) -> Result<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    loop {
        let Some(info) = sigfd.read_signal()? else {
            continue;
        };
        let sig = info.ssi_signo as i32;
        if sig != libc::SIGCHLD {
            let _ = libcontainer::sys::pidfd_send_signal(pidfd, sig);
            continue;
        }
        // Reap every child that exited (a subreaper also inherits orphans of the container).
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == init => return Ok(code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid.as_raw() == init => {
                    return Ok(128 + s as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) => {}
                Err(e) => return Err(e).context("waitpid"),
            }
        }
    }
}
