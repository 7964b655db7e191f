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

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffStats {
    pub entries: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    pub hardlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

struct Differ<'a, W: Write> {
    tar: tar::Builder<W>,
    opts: &'a DiffOptions,
    /// (dev, ino) of files linked more than once -> the path they were written under.
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: DiffStats,
}

/// Write the layer of `upper` as an (uncompressed) tar to `out`.
pub fn diff_upper(upper: &Path, out: impl Write, opts: &DiffOptions) -> Result<DiffStats> {
    let mut d = Differ {
        tar: tar::Builder::new(out),
        opts,
        links: HashMap::new(),
        stats: DiffStats::default(),
    };
    d.tar.mode(tar::HeaderMode::Complete);
    d.dir(upper, b"")?;
    d.tar.finish().ctx("write layer of", upper)?;
    Ok(d.stats)
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

/// The xattrs to carry, and whether the directory is opaque; overlayfs features that leave
/// files incomplete are refused.
/// xattr (name, value) pairs.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

fn attrs_of(path: &Path, dir: bool) -> Result<(Xattrs, bool)> {
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

/// A PAX extended header's data for `xattrs`.
fn pax_records(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in xattrs {
        let body_len = b" SCHILY.xattr.".len() + k.len() + 1 + v.len() + 1;
        // The length counts its own digits.
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.extend_from_slice(b" SCHILY.xattr.");
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

impl<W: Write> Differ<'_, W> {
    fn header(&self, md: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(md.uid().into());
        h.set_gid(md.gid().into());
        let mtime = md.mtime().max(0) as u64;
        h.set_mtime(self.opts.clamp_mtime.map_or(mtime, |c| mtime.min(c)));
        h.set_size(0);
        h
    }

    /// An entry without content named `name`: a directory with `md`'s attributes, or a
    /// whiteout marker (a root-owned 0644 empty file).
    fn empty(
        &mut self,
        md: &fs::Metadata,
        kind: tar::EntryType,
        name: &[u8],
        at: &Path,
    ) -> Result<()> {
        let mut h = self.header(md, kind);
        if kind == tar::EntryType::Regular {
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
        }
        self.tar
            .append_data(
                &mut h,
                Path::new(std::ffi::OsStr::from_bytes(name)),
                io::empty(),
            )
            .ctx("write layer entry", at)
    }

    fn xattrs(&mut self, xattrs: &[(Vec<u8>, Vec<u8>)], at: &Path) -> Result<()> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let data = pax_records(xattrs);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_path("PaxHeader").ctx("pax header of", at)?;
        h.set_cksum();
        self.tar.append(&h, &data[..]).ctx("write layer entry", at)
    }

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
        let name = Path::new(std::ffi::OsStr::from_bytes(rel));
        self.stats.entries += 1;
        if ft.is_char_device() && md.rdev() == 0 {
            // A whiteout.
            let (parent, base) = match rel.iter().rposition(|&b| b == b'/') {
                Some(i) => (&rel[..=i], &rel[i + 1..]),
                None => (&b""[..], rel),
            };
            let mut wh = parent.to_vec();
            wh.extend_from_slice(b".wh.");
            wh.extend_from_slice(base);
            self.empty(&md, tar::EntryType::Regular, &wh, path)?;
            self.stats.whiteouts += 1;
            return Ok(());
        }
        if ft.is_dir() {
            let (xattrs, opaque) = attrs_of(path, true)?;
            self.xattrs(&xattrs, path)?;
            let mut dname = rel.to_vec();
            dname.push(b'/');
            self.empty(&md, tar::EntryType::Directory, &dname, path)?;
            if opaque {
                dname.extend_from_slice(b".wh..wh..opq");
                self.empty(&md, tar::EntryType::Regular, &dname, path)?;
                self.stats.opaque_dirs += 1;
            }
            let mut sub = rel.to_vec();
            sub.push(b'/');
            return self.dir(path, &sub);
        }
        if ft.is_symlink() {
            let target = fs::read_link(path).ctx("readlink", path)?;
            let mut h = self.header(&md, tar::EntryType::Symlink);
            return self
                .tar
                .append_link(&mut h, name, target)
                .ctx("write layer entry", path);
        }
        if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = self.links.get(&key).cloned() {
                    let mut h = self.header(&md, tar::EntryType::Link);
                    self.stats.hardlinks += 1;
                    return self
                        .tar
                        .append_link(&mut h, name, Path::new(std::ffi::OsStr::from_bytes(&first)))
                        .ctx("write layer entry", path);
                }
                self.links.insert(key, rel.to_vec());
            }
            let (xattrs, _) = attrs_of(path, false)?;
            self.xattrs(&xattrs, path)?;
            let mut h = self.header(&md, tar::EntryType::Regular);
            h.set_size(md.len());
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .ctx("open", path)?;
            self.stats.bytes += md.len();
            // A file that changes while it is read would not match its header's size.
            return self
                .tar
                .append_data(&mut h, name, io::Read::take(f, md.len()))
                .ctx("write layer entry", path);
        }
        let kind = if ft.is_fifo() {
            tar::EntryType::Fifo
        } else if ft.is_char_device() {
            tar::EntryType::Char
        } else {
            tar::EntryType::Block
        };
        let mut h = self.header(&md, kind);
        if kind != tar::EntryType::Fifo {
            let rdev = md.rdev();
            h.set_device_major(libc::major(rdev))
                .ctx("device of", path)?;
            h.set_device_minor(libc::minor(rdev))
                .ctx("device of", path)?;
        }
        self.tar
            .append_data(&mut h, name, io::empty())
            .ctx("write layer entry", path)
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
    let w = content.writer(None, None)?;
    let (w, diff_id, stats, media_type) = if opts.zstd {
        let z = zstd::stream::write::Encoder::new(w, 3).ctx("compress layer of", upper)?;
        let mut tee = Tee {
            inner: z,
            hash: <sha2::Sha256 as sha2::Digest>::new(),
        };
        let stats = diff_upper(upper, &mut tee, opts)?;
        let diff_id = crate::digest::Digest::from_hasher(tee.hash);
        let w = tee.inner.finish().ctx("compress layer of", upper)?;
        (w, diff_id, stats, crate::images::media::OCI_LAYER_ZSTD)
    } else {
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(w, flate2::Compression::new(6));
        let mut tee = Tee {
            inner: gz,
            hash: <sha2::Sha256 as sha2::Digest>::new(),
        };
        let stats = diff_upper(upper, &mut tee, opts)?;
        let diff_id = crate::digest::Digest::from_hasher(tee.hash);
        let w = tee.inner.finish().ctx("compress layer of", upper)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_lengths_count_themselves() {
        let r = pax_records(&[(b"user.a".to_vec(), b"xyz".to_vec())]);
        let s = String::from_utf8(r).unwrap();
        let (len, _) = s.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), s.len());
        // 9 -> 10 digits crossing: the length is still exact.
        for n in 80..110 {
            let r = pax_records(&[(b"k".to_vec(), vec![b'v'; n])]);
            let s = String::from_utf8(r).unwrap();
            let (len, _) = s.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), s.len(), "{n}");
        }
    }
}
