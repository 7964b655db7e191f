//! The container's root filesystem: propagation, the config's mounts in order, pivot_root,
//! read-only and masked paths.
//!
//! Every mount destination is resolved inside the rootfs with openat2(RESOLVE_IN_ROOT), so a
//! symlink in the rootfs can never point a mount outside it (CVE-2021-30465), and the mount is
//! made onto `/proc/self/fd/N` of that very file. /proc and /sys targets must end up as real
//! procfs/sysfs (CVE-2019-19921), and masked paths are covered only with the real /dev/null
//! (CVE-2025-31133).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Mount;

use super::copyup;
use super::mountopts::{self, MountOpts};
use super::{InitContext, InitError, Result, StepExt};
use crate::sys::{fd_path, openat2};

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// An open rootfs: the directory fd every destination is resolved against.
pub struct Root {
    pub fd: OwnedFd,
}

fn flags(bits: u64) -> MsFlags {
    MsFlags::from_bits_retain(bits)
}

fn none() -> Option<&'static str> {
    None
}

/// Whether `rootfsPropagation` can only be applied after pivot_root: pivot_root refuses a
/// shared current root, and an unbindable tree cannot be bound.
fn propagation_after_pivot(propagation: Option<&str>) -> Option<u64> {
    propagation
        .and_then(mountopts::propagation)
        .filter(|p| p & (libc::MS_SHARED | libc::MS_UNBINDABLE) != 0)
}

/// Set the propagation of the whole tree (`rootfsPropagation`, rslave by default) so nothing
/// the container mounts reaches the host unless asked, and bind the rootfs onto itself so
/// pivot_root can use it. pivot_root refuses a shared new root or parent, and an unbindable
/// tree cannot be bound, so for those the rootfs's parent mount is made private first and the
/// propagation is applied to the new `/` again after the pivot ([`finish_propagation`]).
pub fn prepare_root(rootfs: &Path, propagation: Option<&str>) -> Result<Root> {
    let prop = propagation
        .and_then(mountopts::propagation)
        .unwrap_or(libc::MS_SLAVE | libc::MS_REC);
    mount(none(), "/", none(), flags(prop), none())
        .step("set rootfs propagation", Some(Path::new("/")))?;
    if propagation_after_pivot(propagation).is_some() {
        let parent = mount_point_of(rootfs)?;
        mount(none(), &parent, none(), MsFlags::MS_PRIVATE, none())
            .step("make rootfs parent mount private", Some(&parent))?;
    }
    mount(
        Some(rootfs),
        rootfs,
        none(),
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none(),
    )
    .step("bind rootfs", Some(rootfs))?;
    Root::open(rootfs).step("open rootfs", Some(rootfs))
}

impl Root {
    /// The rootfs directory as an O_PATH descriptor, the base every destination resolves in.
    pub fn open(rootfs: &Path) -> nix::Result<Root> {
        let fd = nix::fcntl::open(
            rootfs,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        Ok(Root { fd })
    }
}

/// The mount point of the mount that holds `path` (the longest mount point prefixing it).
fn mount_point_of(path: &Path) -> Result<PathBuf> {
    let info = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(info).step("read", Some(info))?;
    Ok(crate::procfs::parse_mountinfo(&text)
        .into_iter()
        .map(|m| PathBuf::from(m.mount_point))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/")))
}

/// `path` relative to the rootfs ("/a/b" -> "a/b"), without `.` components.
fn rel(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Open `path` inside the rootfs as O_PATH, resolving symlinks as if the rootfs were `/`.
pub fn open_in_root(root: &Root, path: &Path) -> std::io::Result<OwnedFd> {
    let r = rel(path);
    let r = if r.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        r
    };
    openat2(
        root.fd.as_fd(),
        &r,
        libc::O_PATH,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// Create `path` inside the rootfs (directories, and a file at the end when `file` is set),
/// each level resolved inside the rootfs; returns an O_PATH fd of it. A dangling symlink on the
/// way is followed inside the rootfs and its target created (as runc does), never outside.
pub fn create_in_root(root: &Root, path: &Path, file: bool) -> std::io::Result<OwnedFd> {
    create_in_root_depth(root, path, file, 0)
}

fn create_in_root_depth(
    root: &Root,
    path: &Path,
    file: bool,
    depth: u32,
) -> std::io::Result<OwnedFd> {
    // The kernel's own limit on symlinks followed in one lookup.
    if depth > 40 {
        return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
    }
    // Most destinations exist already (/proc, /dev, /sys): one lookup instead of one per prefix.
    match open_in_root(root, path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        found => return found,
    }
    let target = rel(path);
    let comps: Vec<_> = target.components().collect();
    let mut parent = open_in_root(root, Path::new("/"))?;
    let mut prefix = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let here = prefix.clone();
        prefix.push(c);
        let last = i + 1 == comps.len();
        match open_in_root(root, &prefix) {
            Ok(fd) => parent = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let name = c.as_os_str();
                let made = if last && file {
                    nix::fcntl::openat(
                        parent.as_fd(),
                        name,
                        nix::fcntl::OFlag::O_CREAT
                            | nix::fcntl::OFlag::O_EXCL
                            | nix::fcntl::OFlag::O_WRONLY
                            | nix::fcntl::OFlag::O_NOFOLLOW
                            | nix::fcntl::OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                } else {
                    nix::sys::stat::mkdirat(
                        parent.as_fd(),
                        name,
                        nix::sys::stat::Mode::from_bits_truncate(0o755),
                    )
                };
                match made {
                    Ok(()) => {}
                    Err(nix::errno::Errno::EEXIST) => {
                        // Something is there but does not resolve: a dangling symlink. Follow it
                        // inside the rootfs: the rest of the path continues from its target.
                        let link = nix::fcntl::readlinkat(parent.as_fd(), name)?;
                        let link = Path::new(&link);
                        let mut next = if link.is_absolute() {
                            PathBuf::from("/")
                        } else {
                            Path::new("/").join(&here)
                        };
                        next.push(link);
                        for rest in &comps[i + 1..] {
                            next.push(rest);
                        }
                        return create_in_root_depth(root, &normalize(&next), file, depth + 1);
                    }
                    Err(e) => return Err(e.into()),
                }
                parent = open_in_root(root, &prefix)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(parent)
}

/// `..` and `.` removed lexically, never above `/` (the rootfs's root, as RESOLVE_IN_ROOT).
fn normalize(p: &Path) -> PathBuf {
    crate::config::clean_path(&Path::new("/").join(p))
}

fn fs_magic(fd: BorrowedFd) -> std::io::Result<i64> {
    let st = nix::sys::statfs::fstatfs(fd)?;
    Ok(st.filesystem_type().0 as i64)
}

/// The MS_* flags a mount has now (needed to remount without dropping locked flags in a user
/// namespace).
fn current_flags(fd: BorrowedFd) -> u64 {
    use nix::sys::statvfs::FsFlags;
    let Ok(st) = nix::sys::statvfs::fstatvfs(fd) else {
        return 0;
    };
    let f = st.flags();
    let mut out = 0;
    for (st_flag, ms) in [
        (FsFlags::ST_NOSUID, libc::MS_NOSUID),
        (FsFlags::ST_NODEV, libc::MS_NODEV),
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
        (FsFlags::ST_NOATIME, libc::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
        // ST_RELATIME (4096): nix names it on glibc only.
        (FsFlags::from_bits_retain(4096), libc::MS_RELATIME),
    ] {
        if f.contains(st_flag) {
            out |= ms;
        }
    }
    out
}

/// The source of a bind mount: absolute, or relative to the bundle.
fn bind_source(m: &Mount, bundle: &Path) -> PathBuf {
    let src = m.source().as_deref().unwrap_or(Path::new(""));
    if src.is_absolute() {
        src.to_path_buf()
    } else {
        bundle.join(src)
    }
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || mountopts::parse(m.options().as_deref().unwrap_or_default()).is_bind()
}

/// Run by `create` before init is cloned: open bind sources as detached mount trees
/// (open_tree(OPEN_TREE_CLONE), recursive for rbind), which init inherits and attaches with
/// move_mount. Indexed like `mounts`; `None` for a mount init makes itself.
/// - Every idmapped bind mount (see [`crate::idmap`]): the tree gets its idmapping here,
///   while it is detached and berth has the host's credentials.
/// - With `all_binds` (a new user namespace): every other bind too, opened with the host's
///   credentials, so a source that only the host's root can reach (below a 0700 directory)
///   still works, as runc passes it opened mount sources.
///
/// Without either, nothing is opened (an empty list) and no system call is made.
pub fn open_bind_sources(
    spec: &oci_spec::runtime::Spec,
    bundle: &Path,
    all_binds: bool,
) -> crate::Result<Vec<Option<OwnedFd>>> {
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    let idmapped = crate::idmap::any(mounts);
    if !all_binds && !idmapped {
        return Ok(Vec::new());
    }
    if idmapped && crate::namespaces::rootless_euid() {
        // As runc: the helper user namespace needs mappings only root may write.
        return Err(crate::Error::Config {
            path: "mounts".into(),
            msg: "idmapped mounts are not supported in a rootless container".into(),
        });
    }
    let linux = spec.linux().as_ref();
    let mut helpers = crate::idmap::Helpers::default();
    mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let idmap = if idmapped {
                crate::idmap::of_mount(linux, m).map_err(|msg| crate::Error::Config {
                    path: format!("mounts[{i}]"),
                    msg,
                })?
            } else {
                None
            };
            if idmap.is_none() && !(all_binds && is_bind(m)) {
                return Ok(None);
            }
            let src = bind_source(m, bundle);
            let rec = mountopts::parse(m.options().as_deref().unwrap_or_default()).is_recursive();
            match idmap {
                Some(idmap) => {
                    let name = || {
                        format!(
                            "mounts[{i}] ({} on {})",
                            crate::error::echo(m.typ().as_deref().unwrap_or("none")),
                            crate::error::echo_path(m.destination())
                        )
                    };
                    crate::idmap::open_tree(&src, rec, &idmap, &mut helpers, &name)
                        .map(Some)
                        .map_err(crate::Error::from)
                }
                None => crate::sys::open_tree(&src, rec)
                    .map(Some)
                    .map_err(|e| crate::Error::io("open bind mount source", src, e)),
            }
        })
        .collect()
}

/// What `cgroup` mounts need of the host: its hierarchies (from mountinfo) and init's own
/// cgroups. Read once per init, at the first cgroup mount, before any of the container's
/// cgroup mounts exist: mountinfo grows by a dozen lines with each of them, and reading it
/// again per mount made 1,000 cgroup mounts quadratic (81 s).
struct CgroupHost {
    hierarchies: Vec<crate::cgroups::fs::Hierarchy>,
    /// /proc/self/cgroup.
    own: String,
}

impl CgroupHost {
    fn read(dest: &Path) -> Result<CgroupHost> {
        let hierarchies = crate::cgroups::fs::hierarchies()
            .map_err(|e| InitError::msg("cgroup mount", Some(dest), e.to_string()))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .step("read", Some(Path::new("/proc/self/cgroup")))?;
        Ok(CgroupHost { hierarchies, own })
    }
}

/// Mount every entry of config.json's `mounts`, in order.
pub fn mount_all(ctx: &InitContext, root: &Root) -> Result<()> {
    let mut cgroup_host = None;
    for (i, m) in ctx
        .spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let tree = ctx.bind_trees.get(i).and_then(Option::as_ref);
        mount_one(ctx, root, m, tree.map(AsFd::as_fd), &mut cgroup_host).map_err(|mut e| {
            e.step = format!(
                "mounts[{i}] ({} on {})",
                crate::error::echo(m.typ().as_deref().unwrap_or("none")),
                crate::error::echo_path(m.destination())
            );
            e
        })?;
    }
    Ok(())
}

/// `linux.mountLabel`, if set.
fn mount_label<'a>(ctx: &InitContext<'a>) -> Option<&'a str> {
    ctx.spec
        .linux()
        .as_ref()
        .and_then(|l| l.mount_label().as_deref())
        .filter(|l| !l.is_empty())
}

/// `tree`: the bind source as a detached mount opened by `create` ([`open_bind_sources`]).
/// `cgroup_host`: what cgroup mounts read of the host, filled by the first one.
fn mount_one(
    ctx: &InitContext,
    root: &Root,
    m: &Mount,
    tree: Option<BorrowedFd>,
    cgroup_host: &mut Option<CgroupHost>,
) -> Result<()> {
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("none");
    let mut opts = mountopts::parse(m.options().as_deref().unwrap_or_default());
    if typ == "bind" {
        opts.flags |= libc::MS_BIND;
    }
    let bind_src = opts.is_bind().then(|| bind_source(m, ctx.bundle));
    check_proc_sys_target(dest, typ, &opts, bind_src.as_deref(), tree)?;
    if typ == "proc" || typ == "sysfs" {
        check_ordinary_dir(root, dest, typ)?;
    }
    if typ == "cgroup" {
        // Needs the container's own cgroup (and cgroup namespace): wait until the parent made it.
        ctx.await_go()?;
        let host = match cgroup_host {
            Some(h) => h,
            None => cgroup_host.insert(CgroupHost::read(dest)?),
        };
        return mount_cgroup(ctx, root, dest, &opts, host);
    }
    if let Some(src) = bind_src {
        let is_dir = match tree {
            Some(fd) => {
                let st = nix::sys::stat::fstat(fd).step("stat bind source", Some(&src))?;
                st.st_mode & libc::S_IFMT == libc::S_IFDIR
            }
            None => std::fs::metadata(&src)
                .step("stat bind source", Some(&src))?
                .is_dir(),
        };
        let target =
            create_in_root(root, dest, !is_dir).step("create mount destination", Some(dest))?;
        let from = match tree {
            Some(fd) => BindFrom::Tree(fd),
            None => BindFrom::Path(&src),
        };
        bind(from, target.as_fd(), root, dest, &opts)
            .map_err(|e| InitError::new("bind mount", Some(&src), e))?;
        set_rec_attr(root, dest, &opts)?;
    } else {
        // What a tmpfs covers: its mode becomes the tmpfs's (an explicit `mode=` after it
        // wins), and `tmpcopyup` copies its contents in, read through this descriptor.
        let covered = match typ {
            "tmpfs" => open_in_root(root, dest).ok(),
            _ => None,
        };
        let target =
            create_in_root(root, dest, false).step("create mount destination", Some(dest))?;
        let src = m.source().as_deref().unwrap_or(Path::new(typ));
        let mut data = opts.data.clone();
        if let Some(fd) = &covered {
            let st = nix::sys::stat::fstat(fd).step("stat mount destination", Some(dest))?;
            let mode = format!("mode={:04o}", st.st_mode & 0o7777);
            data = if data.is_empty() {
                mode
            } else {
                format!("{mode},{data}")
            };
        }
        // linux.mountLabel as `context=` (runc: not on proc and sysfs, which SELinux cannot
        // label; mqueue gets it as an xattr after the mount).
        let label = mount_label(ctx);
        let label_data = match typ {
            "proc" | "sysfs" | "mqueue" => None,
            _ => label,
        };
        let data = super::lsm::format_mount_label(&data, label_data);
        let data = (!data.is_empty()).then_some(data.as_str());
        // /dev and every tmpfs stay writable until finalize_readonly(): devices, /dev/pts and
        // mounts below them come later.
        let mut mflags = opts.flags;
        if deferred_readonly(typ, dest) {
            mflags &= !libc::MS_RDONLY;
        }
        let mut res = mount(
            Some(src),
            &fd_path(target.as_fd()),
            Some(typ),
            flags(mflags),
            data,
        );
        if res == Err(nix::errno::Errno::EPERM) && typ == "sysfs" {
            // Without a network namespace of its own, a user namespace may not mount sysfs;
            // runc binds the host's /sys instead.
            let mut b = opts.clone();
            b.flags |= libc::MS_BIND | libc::MS_REC;
            res = bind(
                BindFrom::Path(Path::new("/sys")),
                target.as_fd(),
                root,
                dest,
                &b,
            )
            .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)));
        }
        res.step("mount", Some(src)).map_err(|mut e| {
            super::lsm::mount_label_hint(&mut e, label_data);
            e
        })?;
        if typ == "mqueue" && label.is_some() {
            let mp = open_in_root(root, dest).step("open mount", Some(dest))?;
            super::lsm::set_file_label(&fd_path(mp.as_fd()), label)?;
        }
        if opts.copyup && typ == "tmpfs" {
            if let Some(from) = &covered {
                let to = open_in_root(root, dest).step("open mount", Some(dest))?;
                copyup::copy_dir(from.as_fd(), to.as_fd())
                    .step("tmpcopyup: copy the directory's contents", Some(dest))?;
            }
        }
    }
    propagate(root, dest, &opts)?;
    verify_proc_sys(root, dest)
}

/// What a bind mount attaches.
enum BindFrom<'a> {
    /// A path, bound with mount(2).
    Path(&'a Path),
    /// A detached mount tree opened by `create` (recursive already when asked), attached
    /// with move_mount(2).
    Tree(BorrowedFd<'a>),
}

/// Bind `src` onto `dest` (already created, `target` its fd), then remount with the requested
/// flags. The remount reopens `dest` by path: the old fd names the covered directory, and a
/// magic link does not cross the new mount.
fn bind(
    src: BindFrom,
    target: BorrowedFd,
    root: &Root,
    dest: &Path,
    opts: &MountOpts,
) -> std::io::Result<()> {
    let rec = if opts.is_recursive() {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    match src {
        BindFrom::Path(src) => mount(
            Some(src),
            &fd_path(target),
            none(),
            MsFlags::MS_BIND | rec,
            none(),
        )?,
        BindFrom::Tree(tree) => crate::sys::move_mount(tree, target)?,
    }
    if opts.remount_flags() != 0 {
        let new = open_in_root(root, dest)?;
        let f = opts.remount_flags() | current_flags(new.as_fd());
        mount(
            none(),
            &fd_path(new.as_fd()),
            none(),
            flags(libc::MS_BIND | libc::MS_REMOUNT | f),
            none(),
        )?;
    }
    Ok(())
}

/// Whether a mount is made read-write first and only made read-only by
/// [`finalize_readonly`], as runc's mountPropagate/finalizeRootfs: every tmpfs and /dev.
fn deferred_readonly(typ: &str, dest: &Path) -> bool {
    typ == "tmpfs" || rel(dest) == Path::new("dev")
}

/// The last rootfs step (runc's finalizeRootfs), after devices, /dev/pts and the console:
/// make the read-only tmpfs mounts and /dev read-only. `/` is the container's root by now.
pub fn finalize_readonly(mounts: &[Mount]) -> Result<()> {
    // Opened at the first read-only mount: most configs have none.
    let mut root: Option<Root> = None;
    for m in mounts {
        let typ = m.typ().as_deref().unwrap_or("none");
        let opts = mountopts::parse(m.options().as_deref().unwrap_or_default());
        if opts.is_bind() || typ == "bind" || opts.flags & libc::MS_RDONLY == 0 {
            continue;
        }
        let dest = m.destination();
        if !deferred_readonly(typ, dest) {
            continue;
        }
        let (set, clear) = readonly_remount_attrs(opts.flags);
        let root = match root {
            Some(ref r) => r,
            None => root.insert(Root {
                fd: nix::fcntl::open(
                    "/",
                    nix::fcntl::OFlag::O_PATH
                        | nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .step("open", Some(Path::new("/")))?,
            }),
        };
        let fd = open_in_root(root, dest).step("open mount", Some(dest))?;
        crate::sys::mount_setattr(fd.as_fd(), false, set, clear)
            .step("remount read-only", Some(dest))?;
    }
    Ok(())
}

/// The mount attributes runc's remount (MS_REMOUNT | MS_BIND | MS_RDONLY | the mount's own
/// flags) gives what is at a destination now: read-only, with exactly this mount's nosuid,
/// nodev and noexec (a mount stacked later on the same destination gets them, and loses its
/// own), and its access-time mode when it names one (else the current one stays).
fn readonly_remount_attrs(flags: u64) -> (u64, u64) {
    use crate::sys::mount_attr as A;
    let (mut set, mut clear) = (A::RDONLY, 0);
    for (ms, attr) in [
        (libc::MS_NOSUID, A::NOSUID),
        (libc::MS_NODEV, A::NODEV),
        (libc::MS_NOEXEC, A::NOEXEC),
    ] {
        if flags & ms != 0 {
            set |= attr;
        } else {
            clear |= attr;
        }
    }
    let atime = libc::MS_NOATIME | libc::MS_RELATIME | libc::MS_STRICTATIME | libc::MS_NODIRATIME;
    if flags & atime != 0 {
        clear |= A::ATIME | A::NODIRATIME;
        set |= if flags & libc::MS_STRICTATIME != 0 {
            A::STRICTATIME
        } else if flags & libc::MS_NOATIME != 0 {
            A::NOATIME
        } else {
            A::RELATIME
        };
        if flags & libc::MS_NODIRATIME != 0 {
            set |= A::NODIRATIME;
        }
    }
    (set, clear)
}

/// The recursive options (`rro`, `rnosuid`, ...) of a bind: mount_setattr(AT_RECURSIVE) on the
/// new mount and everything below it. runc applies them to bind mounts only.
fn set_rec_attr(root: &Root, dest: &Path, opts: &MountOpts) -> Result<()> {
    if !opts.has_rec_attr() {
        return Ok(());
    }
    let fd = open_in_root(root, dest).step("open mount", Some(dest))?;
    crate::sys::mount_setattr(fd.as_fd(), true, opts.rec_set, opts.rec_clr)
        .step("set recursive mount attributes", Some(dest))
}

fn propagate(root: &Root, dest: &Path, opts: &MountOpts) -> Result<()> {
    if opts.propagation.is_empty() {
        return Ok(());
    }
    let fd = open_in_root(root, dest).step("open mount", Some(dest))?;
    for p in &opts.propagation {
        mount(none(), &fd_path(fd.as_fd()), none(), flags(*p), none())
            .step("set propagation", Some(dest))?;
    }
    Ok(())
}

/// On /proc only procfs itself, or a bind whose source is on a procfs (the host's /proc, as
/// rootless setups with the host's pid namespace bind it; runc's checkProcMount); below /proc
/// only binds of a few files (runc allows them for lxcfs). Anything else could cover
/// /proc/self/attr and friends.
fn check_proc_sys_target(
    dest: &Path,
    typ: &str,
    opts: &MountOpts,
    bind_src: Option<&Path>,
    tree: Option<BorrowedFd>,
) -> Result<()> {
    const LXCFS_FILES: &[&str] = &[
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/slabinfo",
        "/proc/net/dev",
        "/proc/sys/kernel/ns_last_pid",
    ];
    let d = Path::new("/").join(rel(dest));
    if d == Path::new("/proc") {
        let procfs_bind = match bind_src {
            Some(src) => {
                let st = match tree {
                    Some(fd) => nix::sys::statfs::fstatfs(fd),
                    None => nix::sys::statfs::statfs(src),
                }
                .step("statfs bind source", Some(src))?;
                st.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC
            }
            None => false,
        };
        if !procfs_bind && (opts.is_bind() || typ != "proc") {
            return Err(InitError::msg(
                "check mount",
                Some(dest),
                format!(
                    "\"/proc\" cannot be mounted because it is not of type proc \
                     (only procfs, or a bind of a procfs, may be mounted on /proc; not {typ})"
                ),
            ));
        }
    } else if d.starts_with("/proc")
        && !(opts.is_bind() && LXCFS_FILES.iter().any(|f| d == Path::new(f)))
    {
        return Err(InitError::msg(
            "check mount",
            Some(dest),
            "mounts below /proc are not allowed",
        ));
    }
    Ok(())
}

/// procfs and sysfs go only on a directory that is really there, or on nothing yet: never
/// through a symlink (runc: "must be mounted on ordinary directory").
fn check_ordinary_dir(root: &Root, dest: &Path, typ: &str) -> Result<()> {
    let r = rel(dest);
    if r.as_os_str().is_empty() {
        return Ok(());
    }
    let fd = match openat2(
        root.fd.as_fd(),
        &r,
        libc::O_PATH | libc::O_NOFOLLOW,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(InitError::new("check mount destination", Some(dest), e)),
    };
    let st = nix::sys::stat::fstat(&fd).step("stat mount destination", Some(dest))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(InitError::msg(
            "check mount destination",
            Some(dest),
            format!("filesystem {typ:?} must be mounted on ordinary directory"),
        ));
    }
    Ok(())
}

/// After mounting on /proc or /sys, make sure what is there really is procfs/sysfs.
fn verify_proc_sys(root: &Root, dest: &Path) -> Result<()> {
    let d = Path::new("/").join(rel(dest));
    let want = if d == Path::new("/proc") {
        PROC_SUPER_MAGIC
    } else if d == Path::new("/sys") {
        SYSFS_MAGIC
    } else {
        return Ok(());
    };
    let fd = open_in_root(root, &d).step("open", Some(&d))?;
    let magic = fs_magic(fd.as_fd()).step("statfs", Some(&d))?;
    if magic != want {
        return Err(InitError::msg(
            "verify mount",
            Some(&d),
            format!(
                "not a real {} mount (filesystem magic {magic:#x})",
                if want == PROC_SUPER_MAGIC {
                    "procfs"
                } else {
                    "sysfs"
                }
            ),
        ));
    }
    Ok(())
}

/// A `cgroup` mount: on cgroup v1 and hybrid hosts a tmpfs with one directory per hierarchy,
/// each a real cgroup mount when the container has its own cgroup namespace, else a bind of the
/// container's own cgroup directory; cgroup2 on unified hosts. Read-only as configured.
fn mount_cgroup(
    ctx: &InitContext,
    root: &Root,
    dest: &Path,
    opts: &MountOpts,
    host: &CgroupHost,
) -> Result<()> {
    let (hier, own) = (&host.hierarchies, host.own.as_str());
    let base = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
    let ro = opts.flags & libc::MS_RDONLY;
    let unified_only = hier.len() == 1 && hier[0].controllers.is_empty();
    let target = create_in_root(root, dest, false).step("create mount destination", Some(dest))?;
    if unified_only {
        mount_one_hierarchy(ctx, root, dest, &hier[0], own, base | ro)?;
        return propagate(root, dest, opts);
    }
    let data = super::lsm::format_mount_label("mode=755", mount_label(ctx));
    mount(
        Some("tmpfs"),
        &fd_path(target.as_fd()),
        Some("tmpfs"),
        flags(base),
        Some(data.as_str()),
    )
    .step("mount tmpfs", Some(dest))
    .map_err(|mut e| {
        super::lsm::mount_label_hint(&mut e, mount_label(ctx));
        e
    })?;
    for h in hier {
        let name = h
            .mount_point
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        let sub = dest.join(&name);
        create_in_root(root, &sub, false).step("create mount destination", Some(&sub))?;
        mount_one_hierarchy(ctx, root, &sub, h, own, base | ro)?;
    }
    if ro != 0 {
        let fd = open_in_root(root, dest).step("open", Some(dest))?;
        mount(
            none(),
            &fd_path(fd.as_fd()),
            none(),
            flags(libc::MS_REMOUNT | base | ro),
            none(),
        )
        .step("remount read-only", Some(dest))?;
    }
    propagate(root, dest, opts)
}

fn mount_one_hierarchy(
    ctx: &InitContext,
    root: &Root,
    dest: &Path,
    h: &crate::cgroups::fs::Hierarchy,
    own: &str,
    f: u64,
) -> Result<()> {
    let fd = open_in_root(root, dest).step("open", Some(dest))?;
    let target = &fd_path(fd.as_fd());
    if ctx.cgroupns {
        let (typ, data) = if h.controllers.is_empty() {
            ("cgroup2", None)
        } else {
            ("cgroup", Some(h.controllers.as_str()))
        };
        return mount(Some("cgroup"), target, Some(typ), flags(f), data)
            .step("mount cgroup", Some(&h.mount_point));
    }
    // Without a cgroup namespace, show the container its own cgroup directory only.
    let inner = own
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, c, p) = (it.next()?, it.next()?, it.next()?);
            let same = if h.controllers.is_empty() {
                c.is_empty()
            } else {
                !c.is_empty()
                    && c.split(',')
                        .all(|x| h.controllers.split(',').any(|y| y == x))
            };
            same.then(|| p.to_string())
        })
        .next()
        .unwrap_or_else(|| "/".into());
    let src = h.mount_point.join(inner.trim_start_matches('/'));
    let o = MountOpts {
        flags: libc::MS_BIND | libc::MS_REC | f,
        ..Default::default()
    };
    bind(BindFrom::Path(&src), fd.as_fd(), root, dest, &o).step("bind cgroup", Some(&src))
}

/// Apply a shared or unbindable `rootfsPropagation` to the container's new `/`.
pub fn finish_propagation(propagation: Option<&str>) -> Result<()> {
    match propagation_after_pivot(propagation) {
        Some(p) => mount(none(), "/", none(), flags(p), none())
            .step("set rootfs propagation", Some(Path::new("/"))),
        None => Ok(()),
    }
}

/// runc creates the process's cwd in the rootfs if it is missing.
pub fn create_cwd(root: &Root, cwd: &Path) -> Result<()> {
    create_in_root(root, cwd, false)
        .map(drop)
        .step("create cwd", Some(cwd))
}

/// pivot_root without a temporary directory: pivot onto "." and detach the old root.
pub fn pivot_root(rootfs: &Path) -> Result<()> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let old = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("open /", None)?;
    let new = open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .step("open rootfs", Some(rootfs))?;
    nix::unistd::fchdir(&new).step("fchdir", Some(rootfs))?;
    nix::unistd::pivot_root(".", ".").step("pivot_root", Some(rootfs))?;
    nix::unistd::fchdir(&old).step("fchdir old root", None)?;
    // Make the old root a slave so that unmounting it does not propagate anywhere.
    mount(
        none(),
        ".",
        none(),
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        none(),
    )
    .step("make old root rslave", None)?;
    umount2(".", MntFlags::MNT_DETACH).step("unmount old root", None)?;
    nix::unistd::chdir("/").step("chdir /", None)
}

/// `--no-pivot`: move the rootfs mount onto / and chroot into it. The host's full procfs and
/// sysfs mounts stay in the mount namespace under the chroot; while one is reachable the
/// kernel lets the container mount a fresh procfs (in a nested user namespace), so each is
/// detached first, or covered with a tmpfs where it cannot be (runc's msMoveRoot).
pub fn move_root(rootfs: &Path, detach_host_mounts: bool) -> Result<()> {
    let host = if detach_host_mounts {
        full_proc_sys_mounts(rootfs)?
    } else {
        Vec::new()
    };
    for p in host {
        match mount(
            none(),
            &p,
            none(),
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            none(),
        ) {
            // A parent was already detached.
            Err(nix::errno::Errno::ENOENT) => continue,
            r => r.step("make host mount rslave", Some(&p))?,
        }
        match umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EPERM) => {
                mount(Some("tmpfs"), &p, Some("tmpfs"), MsFlags::empty(), none())
                    .step("cover host mount", Some(&p))?
            }
            Err(e) => return Err(InitError::new("unmount host mount", Some(&p), e.into())),
        }
    }
    nix::unistd::chdir(rootfs).step("chdir", Some(rootfs))?;
    mount(Some(rootfs), "/", none(), MsFlags::MS_MOVE, none())
        .step("move rootfs to /", Some(rootfs))?;
    nix::unistd::chroot(".").step("chroot", Some(rootfs))?;
    nix::unistd::chdir("/").step("chdir /", None)
}

/// Mount points of whole (root "/") procfs and sysfs mounts outside `rootfs`, from
/// mountinfo. Any order works: a mount whose parent was detached first is skipped (ENOENT).
fn full_proc_sys_mounts(rootfs: &Path) -> Result<Vec<PathBuf>> {
    let info = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(info).step("read", Some(info))?;
    Ok(parse_full_proc_sys(&text)
        .into_iter()
        .filter(|m| !m.starts_with(rootfs))
        .collect())
}

fn parse_full_proc_sys(mountinfo: &str) -> Vec<PathBuf> {
    crate::procfs::parse_mountinfo(mountinfo)
        .into_iter()
        .filter(|m| m.root == "/" && (m.fstype == "proc" || m.fstype == "sysfs"))
        .map(|m| PathBuf::from(m.mount_point))
        .collect()
}

/// Make the mount at `path` read-only, keeping its other (possibly locked) flags. By
/// descriptor: the container need not mount /proc.
pub fn remount_readonly(path: &Path) -> Result<()> {
    let fd = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .step("open", Some(path))?;
    crate::sys::mount_set_readonly(fd.as_fd()).step("remount read-only", Some(path))
}

fn open_nofollow(p: &Path) -> std::io::Result<Option<OwnedFd>> {
    match nix::fcntl::open(
        p,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `linux.readonlyPaths`: bind each onto itself (recursively) and make the bind read-only.
/// These steps run after pivot_root, where the container may have no /proc: every mount is
/// made by descriptor (open_tree, move_mount, mount_setattr), as runc 1.3 does through a
/// procfs of its own.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let p = Path::new(p);
        let Some(fd) = open_nofollow(p).step("open readonly path", Some(p))? else {
            continue;
        };
        let tree =
            crate::sys::open_tree_fd(fd.as_fd(), true).step("bind readonly path", Some(p))?;
        crate::sys::move_mount(tree.as_fd(), fd.as_fd()).step("bind readonly path", Some(p))?;
        crate::sys::mount_set_readonly(tree.as_fd()).step("remount read-only", Some(p))?;
    }
    Ok(())
}

/// `linux.maskedPaths`: cover files with /dev/null and directories with an empty read-only
/// tmpfs. /dev/null is checked to be the real null device first (CVE-2025-31133: a container
/// could otherwise replace it with a symlink to a file it wants writable). By descriptor, as
/// [`readonly_paths`].
pub fn mask_paths(paths: &[String], label: Option<&str>) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let null_path = Path::new("/dev/null");
    let null = nix::fcntl::open(
        null_path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .step("open", Some(null_path))?;
    let st = nix::sys::stat::fstat(&null).step("stat", Some(null_path))?;
    let is_chr = (st.st_mode & libc::S_IFMT) == libc::S_IFCHR;
    if !is_chr || st.st_rdev != libc::makedev(1, 3) {
        return Err(InitError::msg(
            "mask paths",
            Some(null_path),
            "is not the null device (char 1:3); refusing to mask with it",
        ));
    }
    let label = label.filter(|l| !l.is_empty());
    let context = label
        .map(std::ffi::CString::new)
        .transpose()
        .map_err(|_| InitError::msg("mask paths", None, "the mount label contains a NUL byte"))?;
    for p in paths {
        let p = Path::new(p);
        let Some(fd) = open_nofollow(p).step("open masked path", Some(p))? else {
            continue;
        };
        let is_dir =
            nix::sys::stat::fstat(&fd).is_ok_and(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFDIR);
        if is_dir {
            let tmpfs = crate::sys::fsmount_readonly_tmpfs(context.as_deref())
                .step("mask directory", Some(p))
                .map_err(|mut e| {
                    super::lsm::mount_label_hint(&mut e, label);
                    e
                })?;
            crate::sys::move_mount(tmpfs.as_fd(), fd.as_fd()).step("mask directory", Some(p))?;
        } else {
            let tree = crate::sys::open_tree_fd(null.as_fd(), false).step("mask file", Some(p))?;
            crate::sys::move_mount(tree.as_fd(), fd.as_fd()).step("mask file", Some(p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readonly_remount_sets_exactly_the_mounts_flags() {
        use crate::sys::mount_attr as A;
        let (set, clear) = readonly_remount_attrs(libc::MS_RDONLY | libc::MS_NOSUID);
        assert_eq!(set, A::RDONLY | A::NOSUID);
        assert_eq!(clear, A::NODEV | A::NOEXEC, "atime is kept when not named");
        let (set, clear) = readonly_remount_attrs(libc::MS_RDONLY | libc::MS_STRICTATIME);
        assert_eq!(set & A::ATIME, A::STRICTATIME);
        assert_ne!(clear & A::ATIME, 0);
        let (set, _) = readonly_remount_attrs(libc::MS_NOATIME | libc::MS_NODIRATIME);
        assert_eq!(set & (A::ATIME | A::NODIRATIME), A::NOATIME | A::NODIRATIME);
    }

    #[test]
    fn normalize_never_leaves_the_root() {
        assert_eq!(
            normalize(Path::new("/a/../../../etc/x")),
            Path::new("/etc/x")
        );
        assert_eq!(normalize(Path::new("/a/./b/../c")), Path::new("/a/c"));
        assert_eq!(rel(Path::new("/proc/../sys")), Path::new("proc/sys"));
    }

    #[test]
    fn full_proc_and_sys_mounts_from_mountinfo() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
23 22 0:5 / /proc rw,nosuid - proc proc rw
24 22 0:6 / /sys rw - sysfs sysfs rw
25 23 0:7 /sys /proc/sys ro - proc proc rw
26 22 0:5 / /a\\040b rw - proc proc rw
27 22 0:8 / /dev rw - devtmpfs udev rw
28 22 0:6 /kernel /k rw - sysfs sysfs rw
";
        assert_eq!(
            parse_full_proc_sys(info),
            vec![
                PathBuf::from("/proc"),
                PathBuf::from("/sys"),
                PathBuf::from("/a b")
            ]
        );
    }
}
