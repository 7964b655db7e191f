//! Applying a layer (a tar stream) to a directory, with the OCI whiteout rules, never writing
//! outside that directory.
//!
//! Confinement rules, each with a unit test below:
//! - entry names are cleaned lexically: a leading `/` is dropped and `..` stops at the root
//!   (`/etc/x`, `../../etc/x` and `a/../../etc/x` all land at `<root>/etc/x`);
//! - parent directories are opened with `openat2(RESOLVE_IN_ROOT)`, so a symlinked parent
//!   (`lib -> /usr/lib`, `x -> ../../..`) is followed as if `<root>` were `/`;
//! - the last component is created with *at calls relative to that parent and is never followed:
//!   whatever exists there (a symlink to anywhere, say) is removed first and the new entry made
//!   with `O_CREAT|O_EXCL|O_NOFOLLOW` / `mkdirat` / `symlinkat` / `linkat`;
//! - hard link targets are resolved the same way, inside the root; `linkat` without
//!   `AT_SYMLINK_FOLLOW` links a symlink itself, never what it points at;
//! - symlinks are stored as they are (their targets are only ever resolved inside a root);
//! - character and block devices are skipped (or refused, by policy); FIFOs are created;
//! - a duplicate entry replaces the earlier one (a directory over a directory merges);
//! - `trusted.overlay.*` xattrs in the tar are dropped (a layer cannot forge whiteouts).
//!
//! Ownership (numeric uid/gid, when running as root), modes (with setuid/setgid/sticky), xattrs
//! (PAX `SCHILY.xattr.*`) and mtimes (directories' after their content) are preserved.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, c_name, errno_result, lstat_at, openat2};

/// How whiteouts are recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The directory is an overlayfs upper layer: `.wh.x` becomes a 0/0 character device `x`,
    /// `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory.
    Overlay,
    /// The directory holds the merged content of the layers below: whiteouts delete.
    Delete,
}

/// What to do with character and block device entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePolicy {
    /// Leave them out (counted in `ApplyStats::skipped`).
    Skip,
    /// Fail the whole layer.
    Refuse,
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub whiteouts: WhiteoutMode,
    /// For `Overlay`: the lower layers' directories, top-most first. A directory this layer
    /// needs but does not carry is created with the attributes it has below.
    pub lowers: Vec<PathBuf>,
    pub devices: DevicePolicy,
    /// chown entries to their uid/gid (default: when running as root).
    pub chown: bool,
    /// Hard links to files of the layers below (`Overlay` only) are left in
    /// `ApplyStats::lower_links` for `link_from_lowers`, for a layer applied before its lowers
    /// are known (parallel unpack). Otherwise they are made at the end from `lowers`.
    pub defer_lower_links: bool,
}

impl ApplyOptions {
    pub fn overlay(lowers: Vec<PathBuf>) -> Self {
        ApplyOptions {
            whiteouts: WhiteoutMode::Overlay,
            lowers,
            devices: DevicePolicy::Skip,
            chown: nix::unistd::geteuid().is_root(),
            defer_lower_links: false,
        }
    }
    pub fn delete() -> Self {
        ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            lowers: Vec::new(),
            devices: DevicePolicy::Skip,
            chown: nix::unistd::geteuid().is_root(),
            defer_lower_links: false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub entries: u64,
    pub whiteouts: u64,
    /// Entries left out (device nodes, unknown types).
    pub skipped: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Directories this layer implies but does not carry (created for an entry below them),
    /// parents first: created with the attributes they have in `ApplyOptions::lowers`, or, where
    /// no lower has them, root-owned 0755. A layer applied before its lowers are known (parallel
    /// unpack) gets them from `fix_implicit_dirs` later.
    pub implicit_dirs: Vec<Vec<u8>>,
    /// Hard links whose target is not in this layer: (link, target), cleaned paths, in order.
    /// In overlayfs a link to a lower file copies it up and links to the copy; see
    /// `link_from_lowers`.
    pub lower_links: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Compression of a layer blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the first bytes of the blob.
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A decompressing reader over `r`.
pub fn decompress<'a, R: Read + 'a>(r: R, c: Compression) -> Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 17, r),
        )),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(r).map_err(|e| Error::io("zstd decoder", e))?)
        }
    })
}

/// Apply the layer blob at `blob` (tar, tar+gzip or tar+zstd: detected from its first bytes)
/// to `root`. Decompression (and hashing of the uncompressed stream) runs in a second thread.
/// With `diff_id`, the uncompressed stream must hash to it. Returns the stats and the DiffID.
pub fn apply_blob(
    root: &Path,
    blob: &Path,
    diff_id: Option<&Digest>,
    opts: &ApplyOptions,
) -> Result<(ApplyStats, Digest)> {
    let mut f = File::open(blob).ctx("open layer", blob)?;
    let mut magic = [0u8; 4];
    let n = read_full(&mut f, &mut magic).ctx("read layer", blob)?;
    let compression = Compression::detect(&magic[..n]);
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(16);
    let blob_owned = blob.to_path_buf();
    let producer = std::thread::spawn(move || -> Result<(Digest, u64)> {
        let f = File::open(&blob_owned).ctx("open layer", &blob_owned)?;
        let mut r = HashingReader::new(decompress(f, compression)?);
        loop {
            let mut buf = vec![0u8; 1 << 18];
            let mut filled = 0;
            while filled < buf.len() {
                match r.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let msg = e.to_string();
                        let _ = tx.send(Err(e));
                        return Err(Error::io(
                            format!("decompress {}", blob_owned.display()),
                            io::Error::other(msg),
                        ));
                    }
                }
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            if tx.send(Ok(buf)).is_err() {
                // The consumer failed and went away; its error is the one reported.
                break;
            }
        }
        drop(tx);
        Ok(r.finish())
    });
    let mut reader = ChannelReader {
        rx,
        cur: Vec::new(),
        pos: 0,
    };
    let applied = apply(root, &mut reader, opts).and_then(|s| {
        // Read to the end so the whole stream is hashed (tar padding after the last entry).
        io::copy(&mut reader, &mut io::sink()).ctx("read layer", blob)?;
        Ok(s)
    });
    drop(reader);
    let produced = producer
        .join()
        .map_err(|_| Error::io("decompress", io::Error::other("thread panicked")))?;
    // A decompression error reaches the tar reader too: report it as what it is (the producer
    // fails only for that; when the consumer fails first, the producer just stops).
    let (actual, _) = produced?;
    let stats = applied?;
    if let Some(want) = diff_id {
        if &actual != want {
            return Err(Error::DigestMismatch {
                expected: want.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    Ok((stats, actual))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(v)) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Apply the (uncompressed) tar stream `tar` to the directory `root`.
pub fn apply(root: &Path, tar: impl Read, opts: &ApplyOptions) -> Result<ApplyStats> {
    let root_fd = openat2(
        fsutil::open_dir(root)?.as_fd(),
        b".",
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        0,
    )
    .ctx("open", root)?;
    let lowers = open_all(&opts.lowers)?;
    let mut a = Applier {
        root: root_fd,
        root_path: root.to_path_buf(),
        opts,
        lowers,
        cache: None,
        written: HashSet::new(),
        dir_times: Vec::new(),
        implicit: HashSet::new(),
        stats: ApplyStats::default(),
        buf: vec![0u8; 1 << 17],
    };
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().ctx("read tar", root)?;
    for (n, e) in entries.enumerate() {
        let e = e.map_err(|e| {
            Error::invalid(
                "layer",
                format!(
                    "not a tar archive, or a damaged one (at entry {}): {}",
                    n + 1,
                    crate::error::echo(&e.to_string())
                ),
            )
        })?;
        a.entry(e)?;
    }
    a.finish()?;
    if !opts.defer_lower_links && !a.stats.lower_links.is_empty() {
        link_from_lowers(root, &a.stats.lower_links, &opts.lowers, opts.chown)?;
        a.stats.lower_links.clear();
    }
    let implicit = std::mem::take(&mut a.implicit);
    a.stats.implicit_dirs.retain(|p| implicit.contains(p));
    Ok(a.stats)
}

/// Give the directories `dirs` of `root` (`ApplyStats::implicit_dirs` of a layer applied there
/// without its lowers) the mode and owner they have in the first of `lowers` (top-most first)
/// that has them as a directory, as `apply` with those lowers would have. Directories that are
/// no longer there (or no longer directories) are left alone; nothing outside `root` is opened.
pub fn fix_implicit_dirs(
    root: &Path,
    dirs: &[Vec<u8>],
    lowers: &[PathBuf],
    chown: bool,
) -> Result<()> {
    if dirs.is_empty() || lowers.is_empty() {
        return Ok(());
    }
    let root_fd = fsutil::open_dir(root)?;
    let lowers = open_all(lowers)?;
    for d in dirs {
        let Some((mode, uid, gid)) = lower_dir_attrs(&lowers, d) else {
            continue;
        };
        let Ok(fd) = openat2(
            root_fd.as_fd(),
            d,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        ) else {
            continue;
        };
        if chown {
            nix::unistd::fchown(&fd, Some(uid.into()), Some(gid.into()))
                .ctx_with(|| format!("chown {:?} in {}", show(d), root.display()))?;
        }
        nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(mode))
            .ctx_with(|| format!("chmod {:?} in {}", show(d), root.display()))?;
    }
    Ok(())
}

/// The directories `dirs`, opened.
fn open_all(dirs: &[PathBuf]) -> Result<Vec<OwnedFd>> {
    dirs.iter().map(|d| fsutil::open_dir(d)).collect()
}

/// An overlayfs whiteout: a 0/0 character device.
fn is_whiteout_st(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

fn split_path(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&b""[..], p),
    }
}

/// Where `path` is in the merged view of `lowers` (top-most first) as overlayfs shows it: the
/// directory holding it in that lower, and its stat. A whiteout or a non-directory on the way
/// hides it, an opaque directory on the way hides the layers below. Nothing is followed.
fn lower_lookup(lowers: &[OwnedFd], path: &[u8]) -> io::Result<Option<(OwnedFd, libc::stat)>> {
    let comps = clean_name(path);
    let Some((last, dirs)) = comps.split_last() else {
        return Ok(None);
    };
    for l in lowers {
        let mut cur = openat2(l.as_fd(), b".", libc::O_PATH | libc::O_DIRECTORY, 0, 0)?;
        let mut opaque = false;
        let mut walked = true;
        for c in dirs {
            match lstat_at(cur.as_fd(), c)? {
                None => {
                    walked = false;
                    break;
                }
                Some(st) if fsutil::is_dir(&st) => {
                    cur = open_nofollow(cur.as_fd(), c, libc::O_RDONLY | libc::O_DIRECTORY)?;
                    opaque |= is_opaque(cur.as_fd());
                }
                Some(_) => return Ok(None), // a whiteout or a file hides what is below
            }
        }
        if walked {
            match lstat_at(cur.as_fd(), last)? {
                Some(st) if is_whiteout_st(&st) || fsutil::is_dir(&st) => return Ok(None),
                Some(st) => return Ok(Some((cur, st))),
                None => {}
            }
        }
        if opaque {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Make the hard links `links` ((link, target) in layer `root`, `ApplyStats::lower_links`)
/// whose targets are in the layers below (`lowers`, top-most first), as a link on an overlayfs
/// mount does: the target is copied up into `root` (with its attributes; directories it needs
/// with theirs) and the link made to the copy. A target this layer wrote or deleted after the
/// link: the link gets a copy of the lower file of its own. A link whose directory is gone
/// (replaced later by the layer) is skipped. A target not found below is refused.
pub fn link_from_lowers(
    root: &Path,
    links: &[(Vec<u8>, Vec<u8>)],
    lowers: &[PathBuf],
    chown: bool,
) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let rfd = fsutil::open_dir(root)?;
    let lfds = open_all(lowers)?;
    let beneath = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
    for (link, target) in links {
        let ctx = || {
            format!(
                "hard link {:?} to {:?} in {}",
                show(link),
                show(target),
                root.display()
            )
        };
        let Some((src_dir, st)) = lower_lookup(&lfds, target).ctx_with(ctx)? else {
            return Err(Error::Unsafe {
                path: show(link),
                why: format!(
                    "hard link target {:?} is not in the layer or the layers below",
                    show(target)
                ),
            });
        };
        let (ldir, lname) = split_path(link);
        let Ok(ldfd) = openat2(
            rfd.as_fd(),
            ldir,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            beneath,
        ) else {
            continue;
        };
        if lstat_at(ldfd.as_fd(), lname).ctx_with(ctx)?.is_some() {
            continue;
        }
        let (tdir, tname) = split_path(target);
        let in_upper = match openat2(
            rfd.as_fd(),
            tdir,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            beneath,
        ) {
            Ok(fd) => lstat_at(fd.as_fd(), tname).ctx_with(ctx)?.is_some(),
            Err(_) => false,
        };
        if in_upper {
            copy_node(src_dir.as_fd(), tname, ldfd.as_fd(), lname, &st).ctx_with(ctx)?;
            continue;
        }
        // Copy up: the target's directories (as they are below), the target, then the link.
        let mut cur =
            openat2(rfd.as_fd(), b".", libc::O_PATH | libc::O_DIRECTORY, 0, 0).ctx_with(ctx)?;
        let mut sofar: Vec<Vec<u8>> = Vec::new();
        for c in clean_name(tdir) {
            sofar.push(c.clone());
            if lstat_at(cur.as_fd(), &c).ctx_with(ctx)?.is_none() {
                let (mode, uid, gid) =
                    lower_dir_attrs(&lfds, &join(&sofar)).unwrap_or((0o755, 0, 0));
                let cc = c_name(&c).ctx_with(ctx)?;
                // SAFETY: valid fd and C string.
                errno_result(unsafe { libc::mkdirat(cur.as_raw_fd(), cc.as_ptr(), 0o700) })
                    .ctx_with(ctx)?;
                let d = open_nofollow(cur.as_fd(), &c, libc::O_RDONLY | libc::O_DIRECTORY)
                    .ctx_with(ctx)?;
                if chown {
                    nix::unistd::fchown(&d, Some(uid.into()), Some(gid.into())).ctx_with(ctx)?;
                }
                nix::sys::stat::fchmod(&d, nix::sys::stat::Mode::from_bits_truncate(mode))
                    .ctx_with(ctx)?;
            }
            cur = openat2(
                cur.as_fd(),
                &c,
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                beneath,
            )
            .ctx_with(ctx)?;
        }
        copy_node(src_dir.as_fd(), tname, cur.as_fd(), tname, &st).ctx_with(ctx)?;
        let (ct, cl) = (c_name(tname).ctx_with(ctx)?, c_name(lname).ctx_with(ctx)?);
        // SAFETY: valid fds and C strings; flags 0: a symlink is linked itself.
        errno_result(unsafe {
            libc::linkat(
                cur.as_raw_fd(),
                ct.as_ptr(),
                ldfd.as_raw_fd(),
                cl.as_ptr(),
                0,
            )
        })
        .ctx_with(ctx)?;
    }
    Ok(())
}

/// The mode, uid and gid a directory `path` implied by a layer entry gets when the layer is
/// applied over `lowers` (top-most first) in `WhiteoutMode::Overlay`: the attributes it has in
/// the first lower that has it as a directory, else None (root-owned 0755).
pub fn implied_dir_attrs(lowers: &[PathBuf], path: &[u8]) -> Result<Option<(u32, u32, u32)>> {
    Ok(lower_dir_attrs(&open_all(lowers)?, path))
}

/// Mode, uid and gid of `path` in the first of `lowers` that has it as a directory.
fn lower_dir_attrs(lowers: &[OwnedFd], path: &[u8]) -> Option<(u32, u32, u32)> {
    for l in lowers {
        let Ok(fd) = openat2(
            l.as_fd(),
            path,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
            fsutil::IN_ROOT,
        ) else {
            continue;
        };
        let st = fsutil::fstat(fd.as_fd()).ok()?;
        if fsutil::is_dir(&st) {
            return Some((st.st_mode & 0o7777, st.st_uid, st.st_gid));
        }
        return None;
    }
    None
}

/// A cleaned entry name: its components, none of them empty, `.` or `..`.
pub fn clean_name(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c.to_vec()),
        }
    }
    out
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

/// An entry name or link target for a message (shown with `{:?}`, which escapes it): at most
/// `ECHO_MAX` characters of it.
fn show(p: &[u8]) -> String {
    let s = String::from_utf8_lossy(p);
    match s.char_indices().nth(crate::error::ECHO_MAX) {
        Some((i, _)) => format!("{}... ({} bytes in all)", &s[..i], p.len()),
        None => s.into_owned(),
    }
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: libc::timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Applier<'o> {
    root: OwnedFd,
    root_path: PathBuf,
    opts: &'o ApplyOptions,
    lowers: Vec<OwnedFd>,
    /// The last parent directory opened: (its cleaned path, an O_PATH fd).
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// Paths written by this layer (for opaque directories in `Delete` mode).
    written: HashSet<Vec<u8>>,
    /// Directories whose mtime is set at the end: (path, mtime).
    dir_times: Vec<(Vec<Vec<u8>>, libc::timespec)>,
    /// Implied directories not (yet) given by an entry of their own.
    implicit: HashSet<Vec<u8>>,
    stats: ApplyStats,
    buf: Vec<u8>,
}

impl Applier<'_> {
    fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<()> {
        use tar::EntryType as T;
        let etype = e.header().entry_type();
        if matches!(
            etype,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        let sparse = pax_sparse(&mut e)?;
        let raw = match &sparse {
            Some(PaxSparse { name: Some(n), .. }) => n.clone(),
            _ => e.path_bytes().into_owned(),
        };
        let comps = clean_name(&raw);
        let Some((name, parent)) = comps.split_last() else {
            // The root itself ("./", "/"): its attributes are the snapshot's, not the layer's.
            return Ok(());
        };
        self.stats.entries += 1;
        if let Some(target) = name.strip_prefix(b".wh.") {
            self.stats.whiteouts += 1;
            if target == b".wh..opq" {
                return self.opaque(parent);
            }
            if target.starts_with(b".wh.") {
                // AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not content.
                return Ok(());
            }
            if target.is_empty() || target == b"." || target == b".." {
                return Err(Error::Unsafe {
                    path: show(&raw),
                    why: "whiteout of an invalid name".into(),
                });
            }
            return self.whiteout(parent, target);
        }
        let meta = self.meta(&mut e, &raw)?;
        let pfd = self.dir(parent, true).map_err(|err| match err {
            Error::Io { err, .. } => Error::io(format!("parent of {:?}", show(&raw)), err),
            other => other,
        })?;
        let pfd = pfd.as_fd();
        let cname = c_name(name).map_err(|_| Error::Unsafe {
            path: show(&raw),
            why: "NUL in name".into(),
        })?;
        let existing = lstat_at(pfd, name).ctx_with(|| format!("stat {:?}", show(&raw)))?;
        let full = join(&comps);
        if !self.stats.lower_links.is_empty() {
            // Replaced later in this layer: that link is gone.
            self.stats.lower_links.retain(|(l, _)| *l != full);
        }
        if self.opts.whiteouts == WhiteoutMode::Delete {
            self.written.insert(full.clone());
        }
        let io_err = |op: &str, err: io::Error| Error::io(format!("{op} {:?}", show(&raw)), err);
        match etype {
            T::Directory => {
                if !self.implicit.is_empty() {
                    self.implicit.remove(&full);
                }
                if let Some(st) = existing {
                    if !fsutil::is_dir(&st) {
                        self.remove(pfd, name).map_err(|er| io_err("replace", er))?;
                        self.mkdir(pfd, &cname).map_err(|er| io_err("mkdir", er))?;
                    }
                } else {
                    self.mkdir(pfd, &cname).map_err(|er| io_err("mkdir", er))?;
                }
                let fd = openat2(
                    pfd,
                    name,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                    libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
                )
                .map_err(|er| io_err("open", er))?;
                self.set_meta_fd(fd.as_fd(), &meta, false)
                    .map_err(|er| io_err("set attributes of", er))?;
                self.dir_times.push((comps.clone(), meta.mtime));
            }
            T::GNUSparse => {
                if existing.is_some() {
                    self.remove(pfd, name).map_err(|er| io_err("replace", er))?;
                }
                let f = self
                    .old_gnu_sparse(&mut e, pfd, name, &raw)
                    .map_err(|er| io_err("write sparse file", er))?;
                self.set_meta_fd(f.as_fd(), &meta, true)
                    .map_err(|er| io_err("set attributes of", er))?;
            }
            T::Regular | T::Continuous if sparse.is_some() => {
                if existing.is_some() {
                    self.remove(pfd, name).map_err(|er| io_err("replace", er))?;
                }
                let f = create_excl(pfd, &cname).map_err(|er| io_err("create", er))?;
                let sp = sparse.as_ref().expect("checked");
                self.pax_sparse_data(&mut e, &f, sp)
                    .map_err(|er| match er.kind() {
                        io::ErrorKind::InvalidData => Error::Unsafe {
                            path: show(&raw),
                            why: format!("sparse file: {er}"),
                        },
                        _ => io_err("write sparse file", er),
                    })?;
                self.set_meta_fd(f.as_fd(), &meta, true)
                    .map_err(|er| io_err("set attributes of", er))?;
            }
            T::Regular | T::Continuous => {
                if existing.is_some() {
                    self.remove(pfd, name).map_err(|er| io_err("replace", er))?;
                }
                // SAFETY: valid fd and C string; O_EXCL|O_NOFOLLOW never opens something else.
                let fd = unsafe {
                    libc::openat(
                        pfd.as_raw_fd(),
                        cname.as_ptr(),
                        libc::O_WRONLY
                            | libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        0o600,
                    )
                };
                if fd < 0 {
                    return Err(io_err("create", io::Error::last_os_error()));
                }
                // SAFETY: fresh descriptor we own.
                let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                loop {
                    let n = match e.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(er) if er.kind() == io::ErrorKind::Interrupted => continue,
                        Err(er) => return Err(io_err("read content of", er)),
                    };
                    f.write_all(&self.buf[..n])
                        .map_err(|er| io_err("write", er))?;
                    self.stats.bytes += n as u64;
                }
                self.set_meta_fd(f.as_fd(), &meta, true)
                    .map_err(|er| io_err("set attributes of", er))?;
            }
            T::Symlink => {
                let target = e.link_name_bytes().ok_or_else(|| Error::Unsafe {
                    path: show(&raw),
                    why: "symlink without a target".into(),
                })?;
                let ctarget = c_name(&target).map_err(|_| Error::Unsafe {
                    path: show(&raw),
                    why: "NUL in link target".into(),
                })?;
                if existing.is_some() {
                    self.remove(pfd, name).map_err(|er| io_err("replace", er))?;
                }
                // SAFETY: valid fd and C strings.
                errno_result(unsafe {
                    libc::symlinkat(ctarget.as_ptr(), pfd.as_raw_fd(), cname.as_ptr())
                })
                .map_err(|er| io_err("symlink", er))?;
                self.set_meta_at(pfd, &cname, &meta)
                    .map_err(|er| io_err("set attributes of", er))?;
            }
            T::Link => {
                let target = e.link_name_bytes().ok_or_else(|| Error::Unsafe {
                    path: show(&raw),
                    why: "hard link without a target".into(),
                })?;
                self.hardlink(&raw, pfd, name, &cname, &target, existing)?;
            }
            T::Char | T::Block => {
                match self.opts.devices {
                    DevicePolicy::Skip => self.stats.skipped += 1,
                    DevicePolicy::Refuse => {
                        return Err(Error::Unsafe {
                            path: show(&raw),
                            why: "device node".into(),
                        })
                    }
                }
                self.written.remove(&full);
            }
            T::Fifo => {
                if existing.is_some() {
                    self.remove(pfd, name).map_err(|er| io_err("replace", er))?;
                }
                // SAFETY: valid fd and C string.
                errno_result(unsafe {
                    libc::mknodat(pfd.as_raw_fd(), cname.as_ptr(), libc::S_IFIFO | 0o600, 0)
                })
                .map_err(|er| io_err("mkfifo", er))?;
                self.set_meta_at(pfd, &cname, &meta)
                    .map_err(|er| io_err("set attributes of", er))?;
                self.chmod_at(pfd, &cname, meta.mode)
                    .map_err(|er| io_err("chmod", er))?;
            }
            _ => {
                self.stats.skipped += 1;
                self.written.remove(&full);
            }
        }
        Ok(())
    }

    fn meta<R: Read>(&self, e: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<Meta> {
        let h = e.header();
        let bad = |what: &str, er: io::Error| Error::Unsafe {
            path: show(raw),
            why: format!("bad {what} in header: {er}"),
        };
        // A numeric field left blank (all NULs or spaces) reads as 0, as Go's archive/tar does.
        let old = h.as_old();
        let num = |v: io::Result<u64>, raw: &[u8], what: &str| -> Result<u64> {
            match v {
                Ok(v) => Ok(v),
                Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
                Err(er) => Err(bad(what, er)),
            }
        };
        let mode = num(h.mode().map(u64::from), &old.mode, "mode")? as u32 & 0o7777;
        let mut uid = num(h.uid(), &old.uid, "uid")?;
        let mut gid = num(h.gid(), &old.gid, "gid")?;
        let mut mtime = libc::timespec {
            tv_sec: num(h.mtime(), &old.mtime, "mtime")? as _,
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().map_err(|er| bad("PAX header", er))? {
            for ext in pax {
                let ext = ext.map_err(|er| bad("PAX header", er))?;
                let Ok(key) = ext.key() else { continue };
                let val = ext.value_bytes();
                if let Some(x) = key.strip_prefix("SCHILY.xattr.") {
                    if x.starts_with("trusted.overlay.") {
                        continue;
                    }
                    if ["user.", "trusted.", "security."]
                        .iter()
                        .any(|p| x.starts_with(p))
                    {
                        xattrs.push((x.as_bytes().to_vec(), val.to_vec()));
                    }
                } else if key == "mtime" {
                    if let Some(t) = parse_pax_time(val) {
                        mtime = t;
                    }
                } else if key == "uid" {
                    if let Some(v) = std::str::from_utf8(val).ok().and_then(|s| s.parse().ok()) {
                        uid = v;
                    }
                } else if key == "gid" {
                    if let Some(v) = std::str::from_utf8(val).ok().and_then(|s| s.parse().ok()) {
                        gid = v;
                    }
                }
            }
        }
        let id = |v: u64, what: &str| -> Result<u32> {
            u32::try_from(v).map_err(|_| Error::Unsafe {
                path: show(raw),
                why: format!("{what} {v} out of range"),
            })
        };
        Ok(Meta {
            mode,
            uid: id(uid, "uid")?,
            gid: id(gid, "gid")?,
            mtime,
            xattrs,
        })
    }

    /// An O_PATH fd of the directory `comps` inside the root, creating missing directories
    /// (with the attributes they have in a lower layer, else root-owned 0755) when `create`.
    fn dir(&mut self, comps: &[Vec<u8>], create: bool) -> Result<OwnedFd> {
        let path = join(comps);
        if let Some((p, fd)) = &self.cache {
            if *p == path {
                return fd.try_clone().ctx("dup", &self.root_path);
            }
        }
        let fd = self.open_dir_rec(comps, create)?;
        self.cache = Some((path, fd.try_clone().ctx("dup", &self.root_path)?));
        Ok(fd)
    }

    fn open_dir_rec(&mut self, comps: &[Vec<u8>], create: bool) -> Result<OwnedFd> {
        let path = join(comps);
        let root_path = self.root_path.clone();
        let open_err = |p: &[u8], e: io::Error| {
            Error::io(
                format!("open directory {:?} in {}", show(p), root_path.display()),
                e,
            )
        };
        match fsutil::open_dir_in_root(self.root.as_fd(), &path) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {}
            Err(e) => return Err(open_err(&path, e)),
        }
        // Something on the way is missing: walk it one component at a time, never following
        // anything, creating missing directories. A symlink's target is resolved inside the
        // root as RESOLVE_IN_ROOT would (absolute from the root, relative from its directory,
        // `..` stopping at the root; `done` never holds a symlink, so `..` is lexical), and the
        // walk starts over from the root with it (40 links at most, as the kernel).
        let mut todo: std::collections::VecDeque<Vec<u8>> = comps.iter().cloned().collect();
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut cur =
            fsutil::open_dir_in_root(self.root.as_fd(), b"").ctx("open", &self.root_path)?;
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            let here = |done: &[Vec<u8>]| {
                let mut p = done.to_vec();
                p.push(c.clone());
                join(&p)
            };
            let st = lstat_at(cur.as_fd(), &c).map_err(|e| open_err(&here(&done), e))?;
            match st.map(|st| st.st_mode & libc::S_IFMT) {
                None => {
                    self.mkdir_implied(cur.as_fd(), &here(&done), &c)?;
                }
                Some(libc::S_IFDIR) => {}
                Some(libc::S_IFLNK) => {
                    links += 1;
                    if links > 40 {
                        return Err(open_err(&path, io::Error::from_raw_os_error(libc::ELOOP)));
                    }
                    let target =
                        nix::fcntl::readlinkat(cur.as_fd(), std::ffi::OsStr::from_bytes(&c))
                            .map_err(|e| open_err(&here(&done), e.into()))?;
                    let target = target.as_bytes();
                    let mut base = if target.starts_with(b"/") {
                        Vec::new()
                    } else {
                        done
                    };
                    for t in target.split(|&b| b == b'/') {
                        match t {
                            b"" | b"." => {}
                            b".." => {
                                base.pop();
                            }
                            t => base.push(t.to_vec()),
                        }
                    }
                    for b in base.into_iter().rev() {
                        todo.push_front(b);
                    }
                    done = Vec::new();
                    cur = fsutil::open_dir_in_root(self.root.as_fd(), b"")
                        .ctx("open", &self.root_path)?;
                    continue;
                }
                Some(_) => {
                    return Err(open_err(
                        &here(&done),
                        io::Error::from_raw_os_error(libc::ENOTDIR),
                    ))
                }
            }
            cur = openat2(
                cur.as_fd(),
                &c,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
            )
            .map_err(|e| open_err(&here(&done), e))?;
            done.push(c);
        }
        Ok(cur)
    }

    /// Make directory `name` in `pfd` (at `path` in the root), implied by an entry below it:
    /// with the attributes it has in a lower layer, else root-owned 0755. Already there (a
    /// race with ourselves cannot happen; a duplicate can) is fine.
    fn mkdir_implied(&mut self, pfd: BorrowedFd<'_>, path: &[u8], name: &[u8]) -> Result<()> {
        let (mode, uid, gid) = lower_dir_attrs(&self.lowers, path).unwrap_or((0o755, 0, 0));
        let c = c_name(name).ctx_with(|| format!("mkdir {:?}", show(path)))?;
        // SAFETY: valid fd and C string.
        let r = unsafe { libc::mkdirat(pfd.as_raw_fd(), c.as_ptr(), 0o700) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EEXIST) {
                return Ok(());
            }
            return Err(Error::io(format!("mkdir {:?}", show(path)), e));
        }
        self.implicit.insert(path.to_vec());
        self.stats.implicit_dirs.push(path.to_vec());
        let fd = openat2(
            pfd,
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        )
        .ctx_with(|| format!("open {:?}", show(path)))?;
        if self.opts.chown {
            nix::unistd::fchown(&fd, Some(uid.into()), Some(gid.into()))
                .ctx_with(|| format!("chown {:?}", show(path)))?;
        }
        nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(mode))
            .ctx_with(|| format!("chmod {:?}", show(path)))
    }

    fn mkdir(&mut self, pfd: BorrowedFd<'_>, name: &std::ffi::CStr) -> io::Result<()> {
        // SAFETY: valid fd and C string.
        errno_result(unsafe { libc::mkdirat(pfd.as_raw_fd(), name.as_ptr(), 0o700) })
    }

    /// Remove whatever is at `name` (it is about to be replaced): drops the parent cache.
    fn remove(&mut self, pfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        self.cache = None;
        fsutil::remove_at(pfd, name)
    }

    fn set_meta_fd(&self, fd: BorrowedFd<'_>, m: &Meta, times: bool) -> io::Result<()> {
        if self.opts.chown {
            nix::unistd::fchown(fd, Some(m.uid.into()), Some(m.gid.into()))?;
        }
        nix::sys::stat::fchmod(fd, nix::sys::stat::Mode::from_bits_retain(m.mode))?;
        for (k, v) in &m.xattrs {
            let ck = c_name(k)?;
            // SAFETY: valid fd, C string name and value buffer.
            let r = unsafe {
                libc::fsetxattr(
                    fd.as_raw_fd(),
                    ck.as_ptr(),
                    v.as_ptr() as *const libc::c_void,
                    v.len(),
                    0,
                )
            };
            if r != 0 {
                let e = io::Error::last_os_error();
                // Not supported here (or not permitted unprivileged): like containerd, go on.
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::ENOTSUP) | Some(libc::EPERM) | Some(libc::EACCES)
                ) {
                    return Err(e);
                }
            }
        }
        if times {
            let ts = [m.mtime, m.mtime];
            // SAFETY: valid fd and two timespecs.
            errno_result(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) })?;
        }
        Ok(())
    }

    /// Owner and times of `name` in `pfd`, without following it (symlinks, FIFOs).
    fn set_meta_at(&self, pfd: BorrowedFd<'_>, name: &std::ffi::CStr, m: &Meta) -> io::Result<()> {
        if self.opts.chown {
            // SAFETY: valid fd and C string.
            errno_result(unsafe {
                libc::fchownat(
                    pfd.as_raw_fd(),
                    name.as_ptr(),
                    m.uid,
                    m.gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })?;
        }
        let ts = [m.mtime, m.mtime];
        // SAFETY: valid fd, C string and two timespecs.
        errno_result(unsafe {
            libc::utimensat(
                pfd.as_raw_fd(),
                name.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
    }

    fn chmod_at(&self, pfd: BorrowedFd<'_>, name: &std::ffi::CStr, mode: u32) -> io::Result<()> {
        // A FIFO: opening it could block, so chmod by name (fchmodat never follows the last
        // component here: it was just created as a FIFO and is not a symlink).
        // SAFETY: valid fd and C string.
        errno_result(unsafe { libc::fchmodat(pfd.as_raw_fd(), name.as_ptr(), mode, 0) })
    }

    fn hardlink(
        &mut self,
        raw: &[u8],
        pfd: BorrowedFd<'_>,
        name: &[u8],
        cname: &std::ffi::CStr,
        target: &[u8],
        existing: Option<libc::stat>,
    ) -> Result<()> {
        let tcomps = clean_name(target);
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(Error::Unsafe {
                path: show(raw),
                why: "hard link to the root".into(),
            });
        };
        let not_here = || Error::Unsafe {
            path: show(raw),
            why: format!("hard link target {:?} is not in the layer", show(target)),
        };
        let tpfd = match self.dir(tparent, false) {
            Ok(fd) => Some(fd),
            Err(_) if self.opts.whiteouts == WhiteoutMode::Overlay => None,
            Err(_) => return Err(not_here()),
        };
        let tst = match &tpfd {
            Some(fd) => {
                lstat_at(fd.as_fd(), tname).ctx_with(|| format!("stat {:?}", show(target)))?
            }
            None => None,
        };
        let (Some(tpfd), Some(tst)) = (tpfd, tst.filter(|st| !is_whiteout_st(st))) else {
            if self.opts.whiteouts == WhiteoutMode::Delete {
                return Err(not_here());
            }
            // Maybe in a layer below: linked at the end (or by the caller), from the layers
            // below as overlayfs shows them.
            if existing.is_some() {
                self.remove(pfd, name)
                    .ctx_with(|| format!("replace {:?}", show(raw)))?;
            }
            self.stats
                .lower_links
                .push((join(&clean_name(raw)), join(&tcomps)));
            return Ok(());
        };
        if fsutil::is_dir(&tst) {
            return Err(Error::Unsafe {
                path: show(raw),
                why: "hard link to a directory".into(),
            });
        }
        if let Some(st) = existing {
            if st.st_ino == tst.st_ino && st.st_dev == tst.st_dev {
                return Ok(());
            }
            self.remove(pfd, name)
                .ctx_with(|| format!("replace {:?}", show(raw)))?;
        }
        let ctname = c_name(tname).ctx_with(|| format!("link {:?}", show(raw)))?;
        // SAFETY: valid fds and C strings; flags 0: a symlink target is linked itself.
        errno_result(unsafe {
            libc::linkat(
                tpfd.as_raw_fd(),
                ctname.as_ptr(),
                pfd.as_raw_fd(),
                cname.as_ptr(),
                0,
            )
        })
        .ctx_with(|| format!("link {:?} to {:?}", show(raw), show(target)))
    }

    fn whiteout(&mut self, parent: &[Vec<u8>], target: &[u8]) -> Result<()> {
        let mut full = parent.to_vec();
        full.push(target.to_vec());
        let shown = show(&join(&full));
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let pfd = self.dir(parent, true)?;
                if lstat_at(pfd.as_fd(), target)
                    .ctx_with(|| format!("stat {shown:?}"))?
                    .is_some()
                {
                    self.remove(pfd.as_fd(), target)
                        .ctx_with(|| format!("whiteout {shown:?}"))?;
                }
                let c = c_name(target).ctx_with(|| format!("whiteout {shown:?}"))?;
                // SAFETY: valid fd and C string; a 0/0 char device is overlayfs's whiteout.
                errno_result(unsafe {
                    libc::mknodat(
                        pfd.as_raw_fd(),
                        c.as_ptr(),
                        libc::S_IFCHR,
                        libc::makedev(0, 0),
                    )
                })
                .ctx_with(|| format!("whiteout {shown:?}"))
            }
            WhiteoutMode::Delete => {
                let pfd = match self.dir(parent, false) {
                    Ok(fd) => fd,
                    // Nothing below to hide.
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) =>
                    {
                        return Ok(())
                    }
                    Err(e) => return Err(e),
                };
                self.remove(pfd.as_fd(), target)
                    .ctx_with(|| format!("whiteout {shown:?}"))
            }
        }
    }

    fn opaque(&mut self, dir: &[Vec<u8>]) -> Result<()> {
        let shown = show(&join(dir));
        let pfd = self.dir(dir, true)?;
        let fd = openat2(pfd.as_fd(), b".", libc::O_RDONLY | libc::O_DIRECTORY, 0, 0)
            .ctx_with(|| format!("open {shown:?}"))?;
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let v = b"y";
                // SAFETY: valid fd, C string and value.
                errno_result(unsafe {
                    libc::fsetxattr(
                        fd.as_raw_fd(),
                        c"trusted.overlay.opaque".as_ptr(),
                        v.as_ptr() as *const libc::c_void,
                        1,
                        0,
                    )
                })
                .ctx_with(|| format!("mark {shown:?} opaque"))
            }
            WhiteoutMode::Delete => {
                let prefix = join(dir);
                for n in fsutil::list_dir(fd.as_fd()).ctx_with(|| format!("list {shown:?}"))? {
                    let nb = std::os::unix::ffi::OsStrExt::as_bytes(n.as_os_str()).to_vec();
                    let mut p = prefix.clone();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(&nb);
                    if !self.written.contains(&p) {
                        self.remove(fd.as_fd(), &nb)
                            .ctx_with(|| format!("clear opaque {shown:?}"))?;
                    }
                }
                Ok(())
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        let times = std::mem::take(&mut self.dir_times);
        for (comps, t) in times.iter().rev() {
            let Some((name, parent)) = comps.split_last() else {
                continue;
            };
            let Ok(pfd) = self.dir(parent, false) else {
                continue;
            };
            let Ok(c) = c_name(name) else { continue };
            match lstat_at(pfd.as_fd(), name) {
                Ok(Some(st)) if fsutil::is_dir(&st) => {}
                _ => continue,
            }
            let ts = [*t, *t];
            // SAFETY: valid fd, C string and two timespecs.
            errno_result(unsafe {
                libc::utimensat(
                    pfd.as_raw_fd(),
                    c.as_ptr(),
                    ts.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
            .ctx_with(|| format!("set times of {:?}", show(&join(comps))))?;
        }
        Ok(())
    }
}

/// `openat(O_CREAT|O_EXCL|O_NOFOLLOW)` of a new regular file, 0600.
fn create_excl(pfd: BorrowedFd<'_>, cname: &std::ffi::CStr) -> io::Result<File> {
    // SAFETY: valid fd and C string; O_EXCL|O_NOFOLLOW never opens something else.
    let fd = unsafe {
        libc::openat(
            pfd.as_raw_fd(),
            cname.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor we own.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// A PAX sparse file (GNU tar's formats 0.0, 0.1 and 1.0): its real name and size, and where
/// its data segments go (for 1.0 the map is at the start of the entry's data: `map` is empty).
#[derive(Debug)]
struct PaxSparse {
    name: Option<Vec<u8>>,
    real_size: u64,
    /// (offset, length) of each data segment, in the order the data holds them.
    map: Vec<(u64, u64)>,
    /// Format 1.0: the map is in the data.
    map_in_data: bool,
}

fn bad_sparse(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// The PAX sparse description of entry `e`, if it has one (GNU.sparse.* keys).
fn pax_sparse<R: Read>(e: &mut tar::Entry<'_, R>) -> Result<Option<PaxSparse>> {
    let path = show(&e.path_bytes());
    let bad = |why: String| Error::Unsafe {
        path: path.clone(),
        why: format!("sparse file: {why}"),
    };
    let Some(pax) = e
        .pax_extensions()
        .map_err(|er| bad(format!("bad PAX header: {er}")))?
    else {
        return Ok(None);
    };
    let num = |v: &[u8], k: &str| -> Result<u64> {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| bad(format!("{k} is not a number")))
    };
    let (mut major, mut minor, mut name, mut size) = (None, None, None, None);
    let (mut map, mut offsets, mut lengths) = (None, Vec::new(), Vec::new());
    for ext in pax {
        let ext = ext.map_err(|er| bad(format!("bad PAX header: {er}")))?;
        let Ok(key) = ext.key() else { continue };
        let v = ext.value_bytes();
        match key {
            "GNU.sparse.major" => major = Some(num(v, key)?),
            "GNU.sparse.minor" => minor = Some(num(v, key)?),
            "GNU.sparse.name" => name = Some(v.to_vec()),
            "GNU.sparse.realsize" | "GNU.sparse.size" => size = Some(num(v, key)?),
            "GNU.sparse.map" => map = Some(v.to_vec()),
            "GNU.sparse.offset" => offsets.push(num(v, key)?),
            "GNU.sparse.numbytes" => lengths.push(num(v, key)?),
            _ => {}
        }
    }
    let Some(real_size) = size else {
        if major.is_some() || map.is_some() || !offsets.is_empty() {
            return Err(bad("no GNU.sparse.size / GNU.sparse.realsize".into()));
        }
        return Ok(None);
    };
    let mut segments = Vec::new();
    let map_in_data = match (major, minor) {
        (Some(1), Some(0)) => true,
        (None | Some(0), _) => {
            if let Some(m) = map {
                // 0.1: "offset,length,offset,length..."
                let s = std::str::from_utf8(&m).map_err(|_| bad("map is not text".into()))?;
                let nums = s
                    .split(',')
                    .filter(|x| !x.is_empty())
                    .map(|x| num(x.as_bytes(), "GNU.sparse.map"))
                    .collect::<Result<Vec<_>>>()?;
                if nums.len() % 2 != 0 {
                    return Err(bad("GNU.sparse.map has an odd count of numbers".into()));
                }
                segments = nums.chunks(2).map(|c| (c[0], c[1])).collect();
            } else {
                // 0.0: repeated GNU.sparse.offset / GNU.sparse.numbytes.
                if offsets.len() != lengths.len() {
                    return Err(bad("unpaired GNU.sparse.offset / numbytes".into()));
                }
                segments = offsets.into_iter().zip(lengths).collect();
            }
            false
        }
        (Some(a), b) => {
            return Err(bad(format!(
                "GNU sparse format {a}.{} is not supported",
                b.map(|b| b.to_string()).unwrap_or_default()
            )))
        }
    };
    check_sparse_map(&segments, real_size).map_err(|er| bad(er.to_string()))?;
    let name = name.or_else(|| {
        // 1.0 without GNU.sparse.name: drop the "GNUSparseFile.N/" component.
        let raw = e.path_bytes();
        let comps: Vec<&[u8]> = raw.split(|&b| b == b'/').collect();
        let i = comps
            .iter()
            .position(|c| c.starts_with(b"GNUSparseFile."))?;
        let mut c = comps.clone();
        c.remove(i);
        Some(c.join(&b'/'))
    });
    Ok(Some(PaxSparse {
        name,
        real_size,
        map: segments,
        map_in_data,
    }))
}

/// Segments in order, not overlapping, inside the file.
fn check_sparse_map(map: &[(u64, u64)], real_size: u64) -> io::Result<()> {
    let mut end = 0u64;
    for &(off, len) in map {
        if off < end {
            return Err(bad_sparse(format!(
                "segment at {off} overlaps or is out of order"
            )));
        }
        end = off
            .checked_add(len)
            .filter(|&e| e <= real_size)
            .ok_or_else(|| {
                bad_sparse(format!(
                    "segment {off}+{len} ends past the file's size {real_size}"
                ))
            })?;
    }
    Ok(())
}

/// The next decimal number of a PAX 1.0 sparse map ("N\n"); counts the bytes read.
fn map_number(r: &mut impl Read, read: &mut u64) -> io::Result<u64> {
    let mut v: u64 = 0;
    let mut digits = 0;
    loop {
        let mut b = [0u8; 1];
        if r.read(&mut b)? == 0 {
            return Err(bad_sparse("the map ends early"));
        }
        *read += 1;
        match b[0] {
            b'\n' if digits > 0 => return Ok(v),
            c @ b'0'..=b'9' if digits < 20 => {
                v = v
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(c - b'0')))
                    .ok_or_else(|| bad_sparse("a map number overflows"))?;
                digits += 1;
            }
            _ => return Err(bad_sparse("the map is not decimal numbers, one a line")),
        }
    }
}

/// Read exactly `buf.len()` bytes.
fn read_exact_or(r: &mut impl Read, buf: &mut [u8], what: &str) -> io::Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            bad_sparse(format!("{what}: the entry's data ends early"))
        } else {
            e
        }
    })
}

impl Applier<'_> {
    /// Write a PAX sparse file's data segments where they go, leaving holes unwritten (never
    /// zeros), then give the file its real size.
    fn pax_sparse_data<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        f: &File,
        sp: &PaxSparse,
    ) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let size = e.size();
        let mut map = sp.map.clone();
        if sp.map_in_data {
            let mut read = 0u64;
            let n = map_number(e, &mut read)?;
            // Each segment takes at least 4 bytes of map ("0\n0\n"): more cannot be there.
            if n > size / 4 {
                return Err(bad_sparse(format!(
                    "{n} segments announced in {size} bytes"
                )));
            }
            for _ in 0..n {
                let off = map_number(e, &mut read)?;
                let len = map_number(e, &mut read)?;
                map.push((off, len));
            }
            check_sparse_map(&map, sp.real_size)?;
            let pad = (512 - read % 512) % 512;
            let mut skip = vec![0u8; pad as usize];
            read_exact_or(e, &mut skip, "map padding")?;
        }
        for &(off, len) in &map {
            let mut left = len;
            let mut at = off;
            while left > 0 {
                let n = left.min(self.buf.len() as u64) as usize;
                read_exact_or(e, &mut self.buf[..n], "data segment")?;
                f.write_all_at(&self.buf[..n], at)?;
                self.stats.bytes += n as u64;
                at += n as u64;
                left -= n as u64;
            }
        }
        let mut rest = [0u8; 1];
        if e.read(&mut rest)? != 0 {
            return Err(bad_sparse("the entry holds more data than its map says"));
        }
        f.set_len(sp.real_size)
    }

    /// An old-GNU sparse entry (type 'S'). The tar reader turns its holes into runs of zeros
    /// to read; its own `unpack` seeks over them instead, so it writes the file, through the
    /// parent's descriptor (`/proc/self/fd/N/name`: the name is created O_EXCL, never followed).
    /// Returns the file, reopened for its attributes.
    fn old_gnu_sparse<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        pfd: BorrowedFd<'_>,
        name: &[u8],
        raw: &[u8],
    ) -> io::Result<File> {
        if raw.ends_with(b"/") {
            return Err(bad_sparse("a sparse file named like a directory"));
        }
        let mut path = format!("/proc/self/fd/{}/", pfd.as_raw_fd()).into_bytes();
        path.extend_from_slice(name);
        e.set_preserve_permissions(false);
        e.set_unpack_xattrs(false);
        let claimed = e.size();
        e.unpack(std::ffi::OsStr::from_bytes(&path)).map_err(|er| {
            // tar's message names only the /proc path; its cause is the OS error.
            let cause = er
                .get_ref()
                .and_then(|i| i.source())
                .map(|c| c.to_string())
                .unwrap_or_else(|| er.to_string());
            io::Error::new(er.kind(), format!("{claimed} bytes claimed: {cause}"))
        })?;
        self.stats.bytes += e.header().entry_size().unwrap_or(0);
        let fd = openat2(
            pfd,
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        )?;
        let f = File::from(fd);
        if !f.metadata()?.file_type().is_file() {
            return Err(bad_sparse("not a regular file after unpacking"));
        }
        Ok(f)
    }
}

fn parse_pax_time(v: &[u8]) -> Option<libc::timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let sec: i64 = sec.parse().ok()?;
    let mut nsec: i64 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().take(9).collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        nsec = format!("{digits:0<9}").parse().ok()?;
    }
    Some(libc::timespec {
        tv_sec: sec as _,
        tv_nsec: nsec as _,
    })
}

/// Count of hard links already made while merging, by (dev, ino) of the source.
type LinkMap = HashMap<(u64, u64), Vec<u8>>;

/// Merge overlay-format layer directories (bottom-most first) into `dest` as overlayfs would
/// show them: 0/0 character devices delete, `trusted.overlay.opaque=y` directories hide what is
/// below. The copy fallback for hosts without overlayfs.
pub fn merge_layers(layers: &[PathBuf], dest: &Path) -> Result<()> {
    let dfd = fsutil::open_dir(dest)?;
    for l in layers {
        let sfd = fsutil::open_dir(l)?;
        let mut links = LinkMap::new();
        merge_dir(sfd.as_fd(), dfd.as_fd(), dfd.as_fd(), &[], &mut links)
            .ctx_with(|| format!("merge {} into {}", l.display(), dest.display()))?;
    }
    Ok(())
}

fn open_nofollow(dir: BorrowedFd<'_>, name: &[u8], flags: i32) -> io::Result<OwnedFd> {
    openat2(
        dir,
        name,
        flags | libc::O_NOFOLLOW,
        0,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    )
}

/// The xattrs of `path` (not followed) that a layer of it would carry (all but overlayfs's own
/// `trusted.overlay.*`).
pub fn xattrs_of(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ctx("open", path)?;
    Ok(xattr_list(f.as_fd())
        .ctx("list xattrs of", path)?
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v))
        .collect())
}

pub(crate) fn xattr_list(fd: BorrowedFd<'_>) -> io::Result<Vec<(std::ffi::CString, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    // SAFETY: valid fd and buffer.
    let n = unsafe {
        libc::flistxattr(
            fd.as_raw_fd(),
            names.as_mut_ptr() as *mut libc::c_char,
            names.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOTSUP) {
            Ok(Vec::new())
        } else {
            Err(e)
        };
    }
    let mut out = Vec::new();
    for k in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|k| !k.is_empty())
    {
        if k.starts_with(b"trusted.overlay.") {
            continue;
        }
        let ck = c_name(k)?;
        let mut v = vec![0u8; 65536];
        // SAFETY: valid fd, name and buffer.
        let m = unsafe {
            libc::fgetxattr(
                fd.as_raw_fd(),
                ck.as_ptr(),
                v.as_mut_ptr() as *mut libc::c_void,
                v.len(),
            )
        };
        if m >= 0 {
            v.truncate(m as usize);
            out.push((ck, v));
        }
    }
    Ok(out)
}

/// Whether the directory open at `fd` (not O_PATH) is an overlayfs opaque directory.
pub fn is_opaque(fd: BorrowedFd<'_>) -> bool {
    let mut v = [0u8; 4];
    // SAFETY: valid fd, name and buffer.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr() as *mut libc::c_void,
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}

fn copy_attrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, st: &libc::stat) -> io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        nix::unistd::fchown(dst, Some(st.st_uid.into()), Some(st.st_gid.into()))?;
    }
    nix::sys::stat::fchmod(
        dst,
        nix::sys::stat::Mode::from_bits_retain(st.st_mode & 0o7777),
    )?;
    for (k, v) in xattr_list(src)? {
        // SAFETY: valid fd, name and value.
        unsafe {
            libc::fsetxattr(
                dst.as_raw_fd(),
                k.as_ptr(),
                v.as_ptr() as *const libc::c_void,
                v.len(),
                0,
            )
        };
    }
    Ok(())
}

fn times_of(st: &libc::stat) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ]
}

/// Owner (as root) and times of `st` on `name` in `dir`, never following it.
fn owner_and_times_at(
    dir: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    st: &libc::stat,
) -> io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        // SAFETY: valid fd and C string.
        errno_result(unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                name.as_ptr(),
                st.st_uid,
                st.st_gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
    }
    let ts = times_of(st);
    // SAFETY: valid fd, C string and timespecs.
    errno_result(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

fn merge_dir(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    droot: BorrowedFd<'_>,
    rel: &[u8],
    links: &mut LinkMap,
) -> io::Result<()> {
    for n in fsutil::list_dir(src)? {
        let name = std::os::unix::ffi::OsStrExt::as_bytes(n.as_os_str()).to_vec();
        let cname = c_name(&name)?;
        let Some(st) = lstat_at(src, &name)? else {
            continue;
        };
        let fmt = st.st_mode & libc::S_IFMT;
        let existing = lstat_at(dst, &name)?;
        let mut child_rel = rel.to_vec();
        if !child_rel.is_empty() {
            child_rel.push(b'/');
        }
        child_rel.extend_from_slice(&name);
        if fmt == libc::S_IFCHR && st.st_rdev == 0 {
            fsutil::remove_at(dst, &name)?;
            continue;
        }
        if fmt == libc::S_IFDIR {
            let sfd = open_nofollow(src, &name, libc::O_RDONLY | libc::O_DIRECTORY)?;
            match existing {
                Some(e) if fsutil::is_dir(&e) => {
                    if is_opaque(sfd.as_fd()) {
                        fsutil::remove_tree_at(dst, &name)?;
                    }
                }
                Some(_) => {
                    fsutil::remove_at(dst, &name)?;
                    // SAFETY: valid fd and C string.
                    errno_result(unsafe { libc::mkdirat(dst.as_raw_fd(), cname.as_ptr(), 0o700) })?;
                }
                None => {
                    // SAFETY: valid fd and C string.
                    errno_result(unsafe { libc::mkdirat(dst.as_raw_fd(), cname.as_ptr(), 0o700) })?;
                }
            }
            let dfd = open_nofollow(dst, &name, libc::O_RDONLY | libc::O_DIRECTORY)?;
            copy_attrs(sfd.as_fd(), dfd.as_fd(), &st)?;
            merge_dir(sfd.as_fd(), dfd.as_fd(), droot, &child_rel, links)?;
            let ts = times_of(&st);
            // SAFETY: valid fd and timespecs.
            errno_result(unsafe { libc::futimens(dfd.as_raw_fd(), ts.as_ptr()) })?;
            continue;
        }
        if existing.is_some() {
            fsutil::remove_at(dst, &name)?;
        }
        match fmt {
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    if let Some(first) = links.get(&(st.st_dev, st.st_ino)) {
                        let (fdir, fname) = match first.iter().rposition(|&b| b == b'/') {
                            Some(i) => (&first[..i], &first[i + 1..]),
                            None => (&b""[..], &first[..]),
                        };
                        let fd_dir = openat2(
                            droot,
                            fdir,
                            libc::O_PATH | libc::O_DIRECTORY,
                            0,
                            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
                        )?;
                        let cf = c_name(fname)?;
                        // SAFETY: valid fds and C strings.
                        errno_result(unsafe {
                            libc::linkat(
                                fd_dir.as_raw_fd(),
                                cf.as_ptr(),
                                dst.as_raw_fd(),
                                cname.as_ptr(),
                                0,
                            )
                        })?;
                        continue;
                    }
                    links.insert((st.st_dev, st.st_ino), child_rel.clone());
                }
                copy_node(src, &name, dst, &name, &st)?;
            }
            _ => copy_node(src, &name, dst, &name, &st)?,
        }
    }
    Ok(())
}

/// Copy the non-directory `sname` of `src` (`st` its stat) to the new `dname` in `dst`: a
/// regular file's content, a symlink's target, a FIFO or socket; with mode, owner (as root),
/// xattrs and times. Device nodes are left out (they never come out of `apply`).
fn copy_node(
    src: BorrowedFd<'_>,
    sname: &[u8],
    dst: BorrowedFd<'_>,
    dname: &[u8],
    st: &libc::stat,
) -> io::Result<()> {
    let cname = c_name(dname)?;
    let fmt = st.st_mode & libc::S_IFMT;
    match fmt {
        libc::S_IFREG => {
            let sfd = open_nofollow(src, sname, libc::O_RDONLY)?;
            let mut sf = File::from(sfd);
            let mut df = create_excl(dst, &cname)?;
            io::copy(&mut sf, &mut df)?;
            copy_attrs(sf.as_fd(), df.as_fd(), st)?;
            let ts = times_of(st);
            // SAFETY: valid fd and timespecs.
            errno_result(unsafe { libc::futimens(df.as_raw_fd(), ts.as_ptr()) })?;
        }
        libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(src, std::ffi::OsStr::from_bytes(sname))
                .map_err(io::Error::from)?;
            nix::unistd::symlinkat(target.as_os_str(), dst, std::ffi::OsStr::from_bytes(dname))
                .map_err(io::Error::from)?;
            owner_and_times_at(dst, &cname, st)?;
        }
        libc::S_IFIFO | libc::S_IFSOCK => {
            // SAFETY: valid fd and C string.
            errno_result(unsafe {
                libc::mknodat(dst.as_raw_fd(), cname.as_ptr(), fmt | 0o600, 0)
            })?;
            // mknod's mode goes through the umask: set it, the owner and the times after,
            // by name (opening a FIFO could block; it was just made, it is no symlink).
            // The owner first: chown clears setuid/setgid bits (chmod keeps the mtime).
            owner_and_times_at(dst, &cname, st)?;
            // SAFETY: valid fd and C string.
            errno_result(unsafe {
                libc::fchmodat(dst.as_raw_fd(), cname.as_ptr(), st.st_mode & 0o7777, 0)
            })?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
