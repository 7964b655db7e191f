//! The content store: blobs by digest under `<root>/blobs/sha256/<hex>`.
//!
//! A blob is written to a unique temp file under `<root>/ingest/`, hashed while it is written,
//! checked against the expected digest and size, fsynced and renamed into place (then the
//! directory is fsynced). A mismatch is an error and leaves nothing behind. Two processes
//! writing the same blob each write their own temp file; both renames put identical content
//! in place, so either order is correct. A blob already in place is not written again (its
//! temp file is dropped).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

#[derive(Clone, Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// The store under data root `root` (directories are created).
    pub fn open(root: &Path) -> Result<ContentStore> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        for d in [&blobs, &ingest] {
            fs::create_dir_all(d).ctx("create", d)?;
        }
        Ok(ContentStore { blobs, ingest })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    pub fn exists(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Size of a stored blob.
    pub fn size(&self, d: &Digest) -> Result<u64> {
        match fs::metadata(self.path(d)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(d.to_string())),
            Err(e) => Err(Error::io(format!("stat blob {d}"), e)),
        }
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        match File::open(self.path(d)) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(d.to_string())),
            Err(e) => Err(Error::io(format!("open blob {d}"), e)),
        }
    }

    /// Read a (small) blob whole, verifying its digest again.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        self.open_blob(d)?
            .read_to_end(&mut data)
            .ctx_with(|| format!("read blob {d}"))?;
        let actual = Digest::of(&data);
        if &actual != d {
            return Err(Error::DigestMismatch {
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(data)
    }

    /// A writer for a new blob. With `expected`, the content must hash to it (and have `size`
    /// bytes when given); without, the digest is whatever the content hashes to.
    pub fn writer(&self, expected: Option<Digest>, size: Option<u64>) -> Result<BlobWriter> {
        let tmp = fsutil::owned_temp_name(
            &self.ingest,
            expected
                .as_ref()
                .map(|d| d.hex())
                .unwrap_or("blob")
                .as_bytes(),
        );
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ctx("create", &tmp)?;
        Ok(BlobWriter {
            out: Some(HashingWriter::new(BufWriter::with_capacity(1 << 20, f))),
            tmp,
            blobs: self.blobs.clone(),
            expected,
            size,
            keep: false,
        })
    }

    /// A writer for blob `expected` that survives its writer: `ingest/partial-<hex>`, locked
    /// (flock) while written. What an earlier, killed writer left there is hashed again and
    /// the writer continues after it (`written()` says where: a download resumes from there).
    /// Dropped without `commit` the partial file stays for the next writer; a digest or size
    /// mismatch removes it. Another live process writing the same blob is waited for. None:
    /// the blob is in the store (now).
    pub fn resumable_writer(&self, expected: &Digest, size: u64) -> Result<Option<BlobWriter>> {
        let tmp = self.ingest.join(format!("partial-{}", expected.hex()));
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&tmp)
            .ctx("open", &tmp)?;
        fsutil::flock(&f, libc::LOCK_EX).ctx("lock", &tmp)?;
        if self.exists(expected) {
            let _ = fs::remove_file(&tmp);
            return Ok(None);
        }
        let len = f.metadata().ctx("stat", &tmp)?.len();
        if len > size {
            f.set_len(0).ctx("truncate", &tmp)?;
        }
        use std::io::Seek;
        f.seek(io::SeekFrom::Start(0)).ctx("seek", &tmp)?;
        let out = HashingWriter::resume(
            BufWriter::with_capacity(1 << 20, f.try_clone().ctx("dup", &tmp)?),
            &mut (&f).take(size),
        )
        .ctx("read", &tmp)?;
        Ok(Some(BlobWriter {
            out: Some(out),
            tmp,
            blobs: self.blobs.clone(),
            expected: Some(expected.clone()),
            size: Some(size),
            keep: true,
        }))
    }

    /// Copy `r` into the store. Returns the digest and size.
    pub fn ingest(
        &self,
        r: &mut dyn Read,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<(Digest, u64)> {
        if let Some(d) = expected {
            if self.exists(d) {
                return Ok((d.clone(), self.size(d)?));
            }
        }
        let mut w = self.writer(expected.cloned(), size)?;
        io::copy(r, &mut w).ctx_with(|| {
            format!(
                "write blob {}",
                expected.map(|d| d.to_string()).unwrap_or_default()
            )
        })?;
        w.commit()
    }

    /// Store `data`; returns its digest.
    pub fn put(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        if !self.exists(&d) {
            let mut w = self.writer(Some(d.clone()), Some(data.len() as u64))?;
            w.write_all(data).ctx_with(|| format!("write blob {d}"))?;
            w.commit()?;
        }
        Ok(d)
    }

    /// Every stored blob.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.blobs).ctx("read", &self.blobs)? {
            let e = e.ctx("read", &self.blobs)?;
            if let Some(n) = e.file_name().to_str() {
                if let Ok(d) = Digest::parse(&format!("sha256:{n}")) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    pub fn delete(&self, d: &Digest) -> Result<()> {
        match fs::remove_file(self.path(d)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove blob {d}"), e)),
        }
    }

    /// Remove the temp files of writers that are gone (killed): only those whose owner process
    /// (named in the file name, with its start time) no longer runs. Safe while other
    /// processes write. Returns how many went.
    pub fn clean_stale(&self) -> Result<usize> {
        let mut n = 0;
        for e in fs::read_dir(&self.ingest).ctx("read", &self.ingest)? {
            let e = e.ctx("read", &self.ingest)?;
            let name = e.file_name();
            let Some(owner) = name.to_str().and_then(|n| fsutil::owner_of(n, ".tmp-")) else {
                continue;
            };
            if fsutil::owner_gone(owner) {
                fsutil::remove_path(&e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Remove temp files left by writers that died (call with the store's exclusive lock held).
    pub fn clean_ingest(&self) -> Result<usize> {
        let mut n = 0;
        for e in fs::read_dir(&self.ingest).ctx("read", &self.ingest)? {
            let e = e.ctx("read", &self.ingest)?;
            fsutil::remove_path(&e.path())?;
            n += 1;
        }
        Ok(n)
    }
}

/// A blob being written; see `ContentStore::writer`. Dropped without `commit`, it removes its
/// temp file.
pub struct BlobWriter {
    out: Option<HashingWriter<BufWriter<File>>>,
    tmp: PathBuf,
    blobs: PathBuf,
    expected: Option<Digest>,
    size: Option<u64>,
    /// Leave the temp file when dropped without commit (a resumable ingest).
    keep: bool,
}

impl BlobWriter {
    /// Start over from byte 0 (the source cannot resume).
    pub fn restart(&mut self) -> Result<()> {
        use std::io::Seek;
        let out = self.out.take().expect("not committed");
        let (buf, _, _) = out.finish();
        let mut f = buf
            .into_inner()
            .map_err(|e| Error::io(format!("write {}", self.tmp.display()), e.into_error()))?;
        f.set_len(0).ctx("truncate", &self.tmp)?;
        f.seek(io::SeekFrom::Start(0)).ctx("seek", &self.tmp)?;
        self.out = Some(HashingWriter::new(BufWriter::with_capacity(1 << 20, f)));
        Ok(())
    }

    /// Bytes written so far (a retry may resume from here).
    /// Drop what was written, resumable or not (the source sent bad data).
    pub fn discard(mut self) {
        self.keep = false;
    }

    pub fn written(&self) -> u64 {
        self.out.as_ref().map(|o| o.count()).unwrap_or(0)
    }

    /// Verify, fsync and move the blob into place.
    pub fn commit(mut self) -> Result<(Digest, u64)> {
        let out = self.out.take().expect("commit once");
        let (buf, actual, count) = out.finish();
        let f = buf
            .into_inner()
            .map_err(|e| Error::io(format!("write {}", self.tmp.display()), e.into_error()))?;
        // Bad content is never resumed.
        self.keep = false;
        if let Some(want) = &self.expected {
            if let Some(size) = self.size {
                if size != count {
                    return Err(Error::SizeMismatch {
                        digest: want.to_string(),
                        expected: size,
                        actual: count,
                    });
                }
            }
            if &actual != want {
                return Err(Error::DigestMismatch {
                    expected: want.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        let dest = self.blobs.join(actual.hex());
        if fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == count) {
            // Stored already (verified and synced when it was): a rebuild of the same layer.
            // One of another size (damaged) is replaced below.
            drop(f);
            fs::remove_file(&self.tmp).ctx("remove", &self.tmp)?;
            return Ok((actual, count));
        }
        f.sync_all().ctx("fsync", &self.tmp)?;
        drop(f);
        fs::rename(&self.tmp, &dest).ctx("rename blob to", &dest)?;
        fsutil::sync_dir(&self.blobs)?;
        Ok((actual, count))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.as_mut().expect("not committed").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().expect("not committed").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // A resumable writer keeps what it wrote, but not an empty file.
        if self.keep && self.written() > 0 {
            if let Some(mut out) = self.out.take() {
                let _ = out.flush();
            }
            return;
        }
        if self.out.is_some() || self.tmp.exists() {
            self.out = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_write_and_mismatch_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let s = ContentStore::open(t.path()).unwrap();
        let d = s.put(b"hello").unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert_eq!(s.read(&d).unwrap(), b"hello");
        assert_eq!(s.size(&d).unwrap(), 5);

        // Wrong digest: error, nothing stored, no temp file left.
        let wrong = Digest::of(b"other");
        let err = s
            .ingest(&mut &b"hello!"[..], Some(&wrong), None)
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!s.exists(&wrong));
        // Wrong size.
        let d2 = Digest::of(b"abc");
        let err = s.ingest(&mut &b"abc"[..], Some(&d2), Some(4)).unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        assert!(!s.exists(&d2));
        assert_eq!(fs::read_dir(t.path().join("ingest")).unwrap().count(), 0);
        assert_eq!(s.list().unwrap(), vec![d]);
    }

    #[test]
    fn concurrent_writers_of_one_blob() {
        let t = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let d = Digest::of(&data);
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    let s = ContentStore::open(t.path()).unwrap();
                    let mut w = s.writer(Some(d.clone()), Some(data.len() as u64)).unwrap();
                    for c in data.chunks(100_000) {
                        w.write_all(c).unwrap();
                    }
                    w.commit().unwrap();
                });
            }
        });
        let s = ContentStore::open(t.path()).unwrap();
        assert_eq!(s.read(&d).unwrap().len(), data.len());
        assert_eq!(fs::read_dir(t.path().join("ingest")).unwrap().count(), 0);
    }
}
