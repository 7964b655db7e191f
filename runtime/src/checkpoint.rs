//! `checkpoint` and `restore`: runc 1.3's command lines over libcontainer::criu.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use libcontainer::criu::{self, CheckpointOptions, RestoreOptions};

#[derive(Args)]
pub struct CheckpointArgs {
    /// Path for saving criu image files.
    #[arg(long = "image-path")]
    image_path: Option<PathBuf>,
    /// Path for saving work files and logs.
    #[arg(long = "work-path")]
    work_path: Option<PathBuf>,
    /// Path for previous criu image files in pre-dump.
    #[arg(long = "parent-path")]
    parent_path: Option<String>,
    /// Leave the process running after checkpointing.
    #[arg(long = "leave-running")]
    leave_running: bool,
    /// Allow open tcp connections.
    #[arg(long = "tcp-established")]
    tcp_established: bool,
    /// Skip in-flight tcp connections.
    #[arg(long = "tcp-skip-in-flight")]
    tcp_skip_in_flight: bool,
    /// Allow one to link unlinked files back when possible.
    #[arg(long = "link-remap")]
    link_remap: bool,
    /// Allow external unix sockets.
    #[arg(long = "ext-unix-sk")]
    ext_unix_sk: bool,
    /// Allow shell jobs.
    #[arg(long = "shell-job")]
    shell_job: bool,
    /// Use userfaultfd to lazily restore memory pages.
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
    /// criu writes \0 to this FD once lazy-pages is ready.
    #[arg(long = "status-fd", default_value_t = -1, allow_negative_numbers = true)]
    status_fd: i32,
    /// ADDRESS:PORT of the page server.
    #[arg(long = "page-server")]
    page_server: Option<String>,
    /// Handle file locks, for safety.
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// Dump the container's memory only, leave it running after this.
    #[arg(long = "pre-dump")]
    pre_dump: bool,
    /// cgroups mode: soft|full|strict|ignore.
    #[arg(long = "manage-cgroups-mode")]
    manage_cgroups_mode: Option<String>,
    /// Create a namespace, but don't restore its properties.
    #[arg(long = "empty-ns")]
    empty_ns: Vec<String>,
    /// Enable auto deduplication of memory images.
    #[arg(long = "auto-dedup")]
    auto_dedup: bool,
    /// Container id.
    id: String,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// Path to an AF_UNIX socket which will receive the console's pseudoterminal master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Path to criu image files for restoring.
    #[arg(long = "image-path")]
    image_path: Option<PathBuf>,
    /// Path for saving work files and logs.
    #[arg(long = "work-path")]
    work_path: Option<PathBuf>,
    /// Allow open tcp connections.
    #[arg(long = "tcp-established")]
    tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long = "ext-unix-sk")]
    ext_unix_sk: bool,
    /// Allow shell jobs.
    #[arg(long = "shell-job")]
    shell_job: bool,
    /// Handle file locks, for safety.
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// cgroups mode: soft|full|strict|ignore.
    #[arg(long = "manage-cgroups-mode")]
    manage_cgroups_mode: Option<String>,
    /// Path to the root of the bundle directory.
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// Detach from the container's process.
    #[arg(short = 'd', long)]
    detach: bool,
    /// File to write the process id to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Disable the use of the subreaper used to reap reparented processes.
    #[arg(long = "no-subreaper")]
    no_subreaper: bool,
    /// Do not use pivot root (CRIU sets up the restored root itself; accepted as runc does).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Create a namespace, but don't restore its properties.
    #[arg(long = "empty-ns")]
    empty_ns: Vec<String>,
    /// Enable auto deduplication of memory images.
    #[arg(long = "auto-dedup")]
    auto_dedup: bool,
    /// Use userfaultfd to lazily restore memory pages.
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
    /// LSM profile to be used during restore, TYPE:NAME.
    #[arg(long = "lsm-profile")]
    lsm_profile: Option<String>,
    /// LSM mount context to be used during restore.
    #[arg(long = "lsm-mount-context")]
    lsm_mount_context: Option<String>,
    /// Container id.
    pub id: String,
}

/// runc's default image directory: `checkpoint` in the current directory.
fn image_path(p: &Option<PathBuf>) -> Result<PathBuf> {
    match p {
        Some(p) => Ok(p.clone()),
        None => Ok(std::env::current_dir()?.join("checkpoint")),
    }
}

fn empty_ns(names: &[String]) -> Result<u32> {
    let mut flags = 0;
    for n in names {
        flags |= criu::namespace_flag(n)?;
    }
    Ok(flags)
}

pub fn checkpoint(root: &std::path::Path, a: &CheckpointArgs) -> Result<()> {
    let opts = CheckpointOptions {
        image_path: image_path(&a.image_path)?,
        work_path: a.work_path.clone(),
        parent_path: a.parent_path.clone(),
        leave_running: a.leave_running,
        tcp_established: a.tcp_established,
        tcp_skip_in_flight: a.tcp_skip_in_flight,
        link_remap: a.link_remap,
        ext_unix_sk: a.ext_unix_sk,
        shell_job: a.shell_job,
        lazy_pages: a.lazy_pages,
        status_fd: (a.status_fd >= 0).then_some(a.status_fd),
        page_server: a.page_server.clone(),
        file_locks: a.file_locks,
        pre_dump: a.pre_dump,
        manage_cgroups_mode: a.manage_cgroups_mode.clone(),
        empty_ns: empty_ns(&a.empty_ns)?,
        auto_dedup: a.auto_dedup,
    };
    criu::checkpoint(root, &a.id, &opts).with_context(|| format!("checkpoint container {:?}", a.id))
}

/// The restore options and whether to stay in the foreground.
pub fn restore_options(
    root: &std::path::Path,
    systemd_cgroup: bool,
    a: &RestoreArgs,
) -> Result<(RestoreOptions, bool)> {
    let _ = (a.no_pivot, a.no_subreaper);
    let opts = RestoreOptions {
        root: root.to_path_buf(),
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        image_path: image_path(&a.image_path)?,
        work_path: a.work_path.clone(),
        tcp_established: a.tcp_established,
        ext_unix_sk: a.ext_unix_sk,
        shell_job: a.shell_job,
        file_locks: a.file_locks,
        manage_cgroups_mode: a.manage_cgroups_mode.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        empty_ns: empty_ns(&a.empty_ns)?,
        auto_dedup: a.auto_dedup,
        lazy_pages: a.lazy_pages,
        lsm_profile: a.lsm_profile.clone(),
        lsm_mount_context: a.lsm_mount_context.clone(),
        systemd_cgroup,
    };
    Ok((opts, !a.detach))
}
