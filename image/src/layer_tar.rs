//! How a layer's entries are written as tar: one encoder for every producer of layers (the
//! differ walking an upper directory, the builder writing a COPY's layer straight from its
//! sources), so that the same tree gives the same bytes, and so the same DiffID, whichever
//! produced it:
//! - ustar headers (GNU long names past 100 bytes, as the `tar` crate writes them), numeric
//!   owners, mode with setuid/setgid/sticky, size 0 for everything but regular files;
//! - a directory's name ends with `/`; an opaque directory is followed by `.wh..wh..opq` in it;
//!   a whiteout is `.wh.NAME`, a root-owned 0644 empty file;
//! - xattrs go in a PAX header (`SCHILY.xattr.*`) before their entry;
//! - with a clamp (SOURCE_DATE_EPOCH), no mtime is later than it;
//! - a regular file's content must be exactly the size its header says (a file that changed
//!   while it was read is an error, not a damaged tar).
//!
//! The order of entries is the producer's business (the differ's: byte order of names, a
//! directory before its content).

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What a layer holds, counted as it is written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    pub entries: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    pub hardlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// An entry's attributes: mode (with setuid/setgid/sticky), numeric owner, mtime (seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
}

/// xattr (name, value) pairs.
pub type Xattrs = [(Vec<u8>, Vec<u8>)];

/// Writes layer entries as an (uncompressed) tar.
pub struct LayerTar<W: Write> {
    tar: tar::Builder<W>,
    clamp_mtime: Option<u64>,
    stats: LayerStats,
}

fn name(rel: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(rel))
}

impl<W: Write> LayerTar<W> {
    /// `clamp_mtime`: no mtime later than this (SOURCE_DATE_EPOCH).
    pub fn new(out: W, clamp_mtime: Option<u64>) -> LayerTar<W> {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Complete);
        LayerTar {
            tar,
            clamp_mtime,
            stats: LayerStats::default(),
        }
    }

    fn header(&self, a: &Attrs, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(a.mode & 0o7777);
        h.set_uid(a.uid.into());
        h.set_gid(a.gid.into());
        h.set_mtime(self.clamp_mtime.map_or(a.mtime, |c| a.mtime.min(c)));
        h.set_size(0);
        h
    }

    fn xattrs(&mut self, xattrs: &Xattrs) -> io::Result<()> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let data = pax_records(xattrs);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_path("PaxHeader")?;
        h.set_cksum();
        self.tar.append(&h, &data[..])
    }

    /// Directory `rel` (no trailing `/`); `opaque`: it hides what the layers below have in it.
    pub fn dir(&mut self, rel: &[u8], a: &Attrs, xattrs: &Xattrs, opaque: bool) -> io::Result<()> {
        self.stats.entries += 1;
        self.xattrs(xattrs)?;
        let mut dname = rel.to_vec();
        dname.push(b'/');
        let mut h = self.header(a, tar::EntryType::Directory);
        self.tar.append_data(&mut h, name(&dname), io::empty())?;
        if opaque {
            dname.extend_from_slice(b".wh..wh..opq");
            self.marker(&dname, a.mtime)?;
            self.stats.opaque_dirs += 1;
        }
        Ok(())
    }

    /// A root-owned 0644 empty file named `rel` (a whiteout or opaque marker).
    fn marker(&mut self, rel: &[u8], mtime: u64) -> io::Result<()> {
        let a = Attrs {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime,
        };
        let mut h = self.header(&a, tar::EntryType::Regular);
        self.tar.append_data(&mut h, name(rel), io::empty())
    }

    /// The whiteout of `rel` (deleted in this layer): `.wh.NAME` beside where it was.
    pub fn whiteout(&mut self, rel: &[u8], mtime: u64) -> io::Result<()> {
        self.stats.entries += 1;
        let (parent, base) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (&rel[..=i], &rel[i + 1..]),
            None => (&b""[..], rel),
        };
        let mut wh = parent.to_vec();
        wh.extend_from_slice(b".wh.");
        wh.extend_from_slice(base);
        self.marker(&wh, mtime)?;
        self.stats.whiteouts += 1;
        Ok(())
    }

    /// Regular file `rel` of `size` bytes read from `content` (exactly that many).
    pub fn file(
        &mut self,
        rel: &[u8],
        a: &Attrs,
        xattrs: &Xattrs,
        size: u64,
        content: impl Read,
    ) -> io::Result<()> {
        self.stats.entries += 1;
        self.xattrs(xattrs)?;
        let mut h = self.header(a, tar::EntryType::Regular);
        h.set_size(size);
        self.stats.bytes += size;
        let exact = Exact {
            inner: content.take(size),
            left: size,
        };
        self.tar.append_data(&mut h, name(rel), exact)
    }

    /// Symlink `rel` to `target`.
    pub fn symlink(&mut self, rel: &[u8], a: &Attrs, target: &[u8]) -> io::Result<()> {
        self.stats.entries += 1;
        let mut h = self.header(a, tar::EntryType::Symlink);
        self.tar.append_link(&mut h, name(rel), name(target))
    }

    /// Hard link `rel` to `target` (an earlier entry of this layer).
    pub fn hardlink(&mut self, rel: &[u8], a: &Attrs, target: &[u8]) -> io::Result<()> {
        self.stats.entries += 1;
        self.stats.hardlinks += 1;
        let mut h = self.header(a, tar::EntryType::Link);
        self.tar.append_link(&mut h, name(rel), name(target))
    }

    /// A FIFO (`rdev` None) or a character or block device.
    pub fn special(
        &mut self,
        rel: &[u8],
        a: &Attrs,
        kind: tar::EntryType,
        rdev: Option<u64>,
    ) -> io::Result<()> {
        self.stats.entries += 1;
        let mut h = self.header(a, kind);
        if let Some(rdev) = rdev {
            h.set_device_major(libc::major(rdev))?;
            h.set_device_minor(libc::minor(rdev))?;
        }
        self.tar.append_data(&mut h, name(rel), io::empty())
    }

    /// The end-of-archive blocks; what was written.
    pub fn finish(mut self) -> io::Result<LayerStats> {
        self.tar.finish()?;
        Ok(self.stats)
    }
}

/// A reader that fails unless it gives exactly `left` bytes.
struct Exact<R: Read> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file shrank while it was read ({} bytes short)",
                    self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A PAX extended header's data for `xattrs`.
fn pax_records(xattrs: &Xattrs) -> Vec<u8> {
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

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let a = Attrs {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 5,
        };
        let mut t = LayerTar::new(Vec::new(), None);
        let e = t.file(b"f", &a, &[], 10, &b"short"[..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // A file that grew is cut at its size.
        let mut t = LayerTar::new(Vec::new(), Some(3));
        t.file(b"f", &a, &[], 2, &b"long"[..]).unwrap();
        let s = t.finish().unwrap();
        assert_eq!((s.entries, s.bytes), (1, 2));
    }
}
