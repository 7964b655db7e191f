//! /dev inside the container: the default device nodes, `linux.devices`, /dev/ptmx and the
//! standard symlinks. Outside a user namespace nodes are made with mknod; inside one (where
//! mknod is not allowed) the host's node is bind-mounted onto an empty file, as runc does.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknodat, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::rootfs::{create_in_root, open_in_root, Root};
use super::{InitContext, InitError, Result, StepExt};
use crate::sys::fd_path;

/// The device nodes every container gets (path, major, minor).
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// The default nodes a config does not configure itself (`linux.devices` wins, by path).
fn defaults_left(
    configured: &[LinuxDevice],
) -> impl Iterator<Item = &'static (&'static str, u64, u64)> + '_ {
    DEFAULT_DEVICES
        .iter()
        .filter(move |(p, _, _)| !configured.iter().any(|d| d.path() == Path::new(p)))
}

/// Every device node path of a container: the defaults and `linux.devices` (what runc's
/// config.Devices holds; its checkpoint and restore give each to CRIU as an external mount,
/// since in a user namespace each is a bind of the host's node).
pub(crate) fn node_paths(spec: &oci_spec::runtime::Spec) -> Vec<String> {
    let configured = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    defaults_left(configured)
        .map(|(p, _, _)| p.to_string())
        .chain(
            configured
                .iter()
                .map(|d| d.path().to_string_lossy().into_owned()),
        )
        .collect()
}

struct Node {
    path: PathBuf,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Whether berth sets up /dev: not when the config bind-mounts the host's /dev.
fn owns_dev(ctx: &InitContext) -> bool {
    !ctx.spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|m| {
            m.destination() == Path::new("/dev")
                && (m.typ().as_deref() == Some("bind")
                    || m.options()
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|o| o == "bind" || o == "rbind"))
        })
}

pub fn setup(ctx: &InitContext, root: &Root) -> Result<()> {
    if !owns_dev(ctx) {
        return Ok(());
    }
    let configured = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    let mut nodes: Vec<Node> = defaults_left(configured)
        .map(|&(p, major, minor)| Node {
            path: p.into(),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect();
    nodes.extend(configured.iter().map(node));
    for n in &nodes {
        make_node(root, n, ctx.in_userns)?;
    }
    setup_ptmx(root)?;
    symlinks(root)
}

fn node(d: &LinuxDevice) -> Node {
    let kind = match d.typ() {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    Node {
        path: d.path().clone(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    }
}

fn make_node(root: &Root, n: &Node, userns: bool) -> Result<()> {
    let parent = n.path.parent().unwrap_or(Path::new("/dev"));
    let name = n
        .path
        .file_name()
        .ok_or_else(|| InitError::msg("create device", Some(&n.path), "no file name"))?;
    let dir = create_in_root(root, parent, false).step("create device directory", Some(parent))?;
    let dirfd = nix::fcntl::open(
        &fd_path(dir.as_fd()),
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("open device directory", Some(parent))?;
    if userns {
        // mknod is not allowed in a user namespace: bind the host's node instead.
        let target =
            create_in_root(root, &n.path, true).step("create device file", Some(&n.path))?;
        return nix::mount::mount(
            Some(&n.path),
            &fd_path(target.as_fd()),
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .step("bind device", Some(&n.path));
    }
    let dev = libc::makedev(n.major as u32, n.minor as u32);
    match mknodat(&dirfd, name, n.kind, Mode::from_bits_truncate(n.mode), dev) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) => {
            // Replace whatever the image has there with the configured node.
            nix::unistd::unlinkat(&dirfd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .step("replace device", Some(&n.path))?;
            mknodat(&dirfd, name, n.kind, Mode::from_bits_truncate(n.mode), dev)
                .step("mknod", Some(&n.path))?;
        }
        Err(e) => return Err(InitError::new("mknod", Some(&n.path), e.into())),
    }
    nix::unistd::fchownat(
        &dirfd,
        name,
        Some(n.uid.into()),
        Some(n.gid.into()),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .step("chown device", Some(&n.path))
}

/// The container's /dev as a directory descriptor (resolved inside the rootfs).
fn open_dev(root: &Root) -> Result<OwnedFd> {
    let dev = open_in_root(root, Path::new("/dev")).step("open", Some(Path::new("/dev")))?;
    nix::fcntl::open(
        &fd_path(dev.as_fd()),
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("open", Some(Path::new("/dev")))
}

/// /dev/ptmx points at the container's own devpts instance.
fn setup_ptmx(root: &Root) -> Result<()> {
    let dev = open_dev(root)?;
    match nix::unistd::unlinkat(&dev, "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(InitError::new("remove /dev/ptmx", None, e.into())),
    }
    nix::unistd::symlinkat("pts/ptmx", &dev, "ptmx").step("symlink", Some(Path::new("/dev/ptmx")))
}

fn symlinks(root: &Root) -> Result<()> {
    let dev = open_dev(root)?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match nix::unistd::symlinkat(target, &dev, name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => {
                return Err(InitError::new(
                    "symlink",
                    Some(&Path::new("/dev").join(name)),
                    e.into(),
                ))
            }
        }
    }
    Ok(())
}

/// runc's `reOpenDevNull`: after pivot_root, stdio descriptors open on the null device (the
/// host's /dev/null, on a mount outside the container) are reopened on the container's own
/// /dev/null when berth set up /dev. CRIU refuses to dump a descriptor on a mount the
/// container's mount namespace does not have.
pub fn reopen_dev_null(ctx: &InitContext) -> Result<()> {
    if !owns_dev(ctx) {
        return Ok(());
    }
    let null_path = Path::new("/dev/null");
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(null_path)
        .step("open", Some(null_path))?;
    let st = nix::sys::stat::fstat(&null).step("fstat", Some(null_path))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFCHR
        || st.st_rdev != nix::sys::stat::makedev(1, 3)
    {
        return Ok(());
    }
    let is_null = |fd: std::os::fd::BorrowedFd| {
        nix::sys::stat::fstat(fd).is_ok_and(|s| {
            SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
                && s.st_rdev == st.st_rdev
        })
    };
    if is_null(std::io::stdin().as_fd()) {
        nix::unistd::dup2_stdin(&null).step("dup2 /dev/null to", Some(Path::new("stdin")))?;
    }
    if is_null(std::io::stdout().as_fd()) {
        nix::unistd::dup2_stdout(&null).step("dup2 /dev/null to", Some(Path::new("stdout")))?;
    }
    if is_null(std::io::stderr().as_fd()) {
        nix::unistd::dup2_stderr(&null).step("dup2 /dev/null to", Some(Path::new("stderr")))?;
    }
    Ok(())
}
