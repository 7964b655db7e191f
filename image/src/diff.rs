//! The layer differ: an overlayfs upper directory (what a build step or a container changed)
//! as a layer tar, the reverse of `layer::apply` with `WhiteoutMode::Overlay`:
//! - a 0/0 character device `x` (overlayfs's whiteout) is the entry `.wh.x`;
//! - a directory with `trusted.overlay.opaque=y` is the directory, then `.wh..wh..opq` in it;
//! - regular files, directories, symlinks, FIFOs and other device nodes keep their mode (with
//!   setuid/setgid/sticky), numeric owner, mtime and xattrs (PAX `SCHILY.xattr.*`, without
//!   overlayfs's own `trusted.overlay.*`); files linked more than once inside the upper
//!   directory are one file and hard links to it;
//! - entries come in byte order of their paths, a directory before its content, so the same
//!   tree always gives the same tar; with `clamp_mtime` (SOURCE_DATE_EPOCH) no time is later.
//!
//! An upper directory written with overlayfs's `redirect_dir` or `metacopy` features (a
//! `trusted.overlay.redirect` or `.metacopy` xattr) is refused: its files are not whole there.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::layer_tar::{Attrs, LayerTar};

#[derive(Clone, Debug, Default)]
pub struct DiffOptions {
    /// No mtime later than this (seconds since the epoch): SOURCE_DATE_EPOCH.
    pub clamp_mtime: Option<u64>,
    /// Paths (relative, clean) left out when they are an empty file or an empty directory:
    /// the mount points a runtime made for a container's mounts.
    pub skip_empty: Vec<Vec<u8>>,
    /// Compress with zstd (OCI's `tar+zstd`) instead of gzip.
    pub zstd: bool,
}

/// What a layer holds (see `layer_tar::LayerStats`).
pub use crate::layer_tar::LayerStats as DiffStats;

struct Differ<'a, W: Write> {
    tar: LayerTar<W>,
    opts: &'a DiffOptions,
    /// (dev, ino) of files linked more than once -> the path they were written under.
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// Write the layer of `upper` as an (uncompressed) tar to `out`.
pub fn diff_upper(upper: &Path, out: impl Write, opts: &DiffOptions) -> Result<DiffStats> {
    let mut d = Differ {
        tar: LayerTar::new(out, opts.clamp_mtime),
        opts,
        links: HashMap::new(),
    };
    d.dir(upper, b"")?;
    d.tar.finish().ctx("write layer of", upper)
}

fn sorted_entries(dir: &Path) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .ctx("read directory", dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .ctx("read directory", dir)?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// An xattr's name and value.
type XattrPair = (Vec<u8>, Vec<u8>);

/// The xattrs to carry, and whether the directory is opaque; overlayfs features that leave
/// files incomplete are refused.
fn attrs_of(path: &Path, dir: bool) -> Result<(Vec<XattrPair>, bool)> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | if dir { libc::O_DIRECTORY } else { 0 })
        .open(path)
        .ctx("open", path)?;
    for bad in [c"trusted.overlay.redirect", c"trusted.overlay.metacopy"] {
        // SAFETY: valid fd and name; a zero-size query only asks whether it exists.
        let n = unsafe {
            libc::fgetxattr(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                bad.as_ptr(),
                std::ptr::null_mut(),
                0,
            )
        };
        if n >= 0 {
            return Err(Error::invalid(
                "upper directory",
                format!(
                    "{} has {}: overlayfs's redirect_dir and metacopy are not supported",
                    path.display(),
                    bad.to_string_lossy()
                ),
            ));
        }
    }
    let xattrs = crate::layer::xattr_list(f.as_fd())
        .ctx("list xattrs of", path)?
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v))
        .collect();
    let opaque = dir && crate::layer::is_opaque(f.as_fd());
    Ok((xattrs, opaque))
}

fn attrs(md: &fs::Metadata) -> Attrs {
    Attrs {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime().max(0) as u64,
    }
}

impl<W: Write> Differ<'_, W> {
    fn dir(&mut self, dir: &Path, rel: &[u8]) -> Result<()> {
        for name in sorted_entries(dir)? {
            let path = dir.join(&name);
            let mut entry = rel.to_vec();
            entry.extend_from_slice(name.as_bytes());
            self.node(&path, &entry)?;
        }
        Ok(())
    }

    fn node(&mut self, path: &Path, rel: &[u8]) -> Result<()> {
        let md = fs::symlink_metadata(path).ctx("stat", path)?;
        let ft = md.file_type();
        if ft.is_socket() {
            // Nothing a layer can hold.
            return Ok(());
        }
        if self.opts.skip_empty.iter().any(|p| p == rel) {
            let empty = (ft.is_file() && md.len() == 0)
                || (ft.is_dir() && sorted_entries(path)?.is_empty());
            if empty {
                return Ok(());
            }
        }
        let a = attrs(&md);
        let written = || format!("write layer entry {}", path.display());
        if ft.is_char_device() && md.rdev() == 0 {
            // A whiteout.
            return self.tar.whiteout(rel, a.mtime).ctx_with(written);
        }
        if ft.is_dir() {
            let (xattrs, opaque) = attrs_of(path, true)?;
            self.tar.dir(rel, &a, &xattrs, opaque).ctx_with(written)?;
            let mut sub = rel.to_vec();
            sub.push(b'/');
            return self.dir(path, &sub);
        }
        if ft.is_symlink() {
            let target = fs::read_link(path).ctx("readlink", path)?;
            return self
                .tar
                .symlink(rel, &a, target.as_os_str().as_bytes())
                .ctx_with(written);
        }
        if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = self.links.get(&key) {
                    return self.tar.hardlink(rel, &a, first).ctx_with(written);
                }
                self.links.insert(key, rel.to_vec());
            }
            let (xattrs, _) = attrs_of(path, false)?;
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .ctx("open", path)?;
            return self
                .tar
                .file(rel, &a, &xattrs, md.len(), f)
                .ctx_with(written);
        }
        let (kind, rdev) = if ft.is_fifo() {
            (tar::EntryType::Fifo, None)
        } else if ft.is_char_device() {
            (tar::EntryType::Char, Some(md.rdev()))
        } else {
            (tar::EntryType::Block, Some(md.rdev()))
        };
        self.tar.special(rel, &a, kind, rdev).ctx_with(written)
    }
}

/// A layer written into the content store.
#[derive(Clone, Debug)]
pub struct NewLayer {
    pub record: crate::images::LayerRecord,
    pub stats: DiffStats,
}

/// Hashes what passes through (the DiffID is the digest of the uncompressed tar).
struct Tee<W: Write> {
    inner: W,
    hash: sha2::Sha256,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hash, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The layer of `upper` as a gzip (or, with `opts.zstd`, zstd) blob in `content` (OCI media
/// type): the same tree gives the same blob (gzip header without name or time, fixed levels),
/// whose DiffID is recorded.
pub fn write_layer(
    content: &crate::store::ContentStore,
    upper: &Path,
    opts: &DiffOptions,
) -> Result<NewLayer> {
    write_layer_with(content, opts, |out| diff_upper(upper, out, opts))
}

/// A layer blob in `content` of the tar `produce` writes (with a `LayerTar`, whose stats it
/// returns), compressed as `write_layer` does (`opts.zstd`; the other options are the
/// producer's to apply).
pub fn write_layer_with(
    content: &crate::store::ContentStore,
    opts: &DiffOptions,
    produce: impl FnOnce(&mut dyn Write) -> Result<DiffStats>,
) -> Result<NewLayer> {
    let w = content.writer(None, None)?;
    let compress_err = |e| Error::io("compress layer", e);
    let (w, diff_id, stats, media_type) = if opts.zstd {
        let z = zstd::stream::write::Encoder::new(w, 3).map_err(compress_err)?;
        let mut tee = Tee {
            inner: z,
            hash: <sha2::Sha256 as sha2::Digest>::new(),
        };
        let stats = produce(&mut tee)?;
        let diff_id = crate::digest::Digest::from_hasher(tee.hash);
        let w = tee.inner.finish().map_err(compress_err)?;
        (w, diff_id, stats, crate::images::media::OCI_LAYER_ZSTD)
    } else {
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(w, flate2::Compression::new(6));
        let mut tee = Tee {
            inner: gz,
            hash: <sha2::Sha256 as sha2::Digest>::new(),
        };
        let stats = produce(&mut tee)?;
        let diff_id = crate::digest::Digest::from_hasher(tee.hash);
        let w = tee.inner.finish().map_err(compress_err)?;
        (w, diff_id, stats, crate::images::media::OCI_LAYER_GZIP)
    };
    let (digest, size) = w.commit()?;
    Ok(NewLayer {
        record: crate::images::LayerRecord {
            media_type: media_type.into(),
            digest,
            size,
            diff_id,
        },
        stats,
    })
}
