//! COPY and ADD as a tar stream: what they put into the image, written as tar entries under
//! their destination and applied to the step's rootfs with `image::layer::apply` (so every
//! path is resolved inside the rootfs, never outside it: a symlinked `/etc` in the image is
//! followed as the container would see it). What each entry gets:
//! - its type, content and mtime from the source (a symlink stays a symlink; sockets and
//!   device nodes are left out);
//! - mode: `--chmod` (octal) or the source's, with setuid/setgid/sticky;
//! - owner: `--chown` or, for context files and URLs, 0:0; from a stage or an image
//!   (`--from`) the source's own;
//! - a local tar archive given to ADD (plain, gzip or zstd) is extracted at the destination
//!   (its entries prefixed, hard links too).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// What an entry's content comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file, directory or symlink on the host (context, another stage's rootfs).
    Path(PathBuf),
    /// Bytes (a heredoc, a downloaded URL), with a mode and an mtime.
    Data {
        bytes: Vec<u8>,
        mode: u32,
        mtime: u64,
    },
    /// A tar archive to extract under `dest` (a directory).
    Archive(PathBuf),
    /// A file's content with the given mode and mtime (a download).
    File {
        path: PathBuf,
        mode: u32,
        mtime: u64,
    },
    /// A directory to create (a missing parent of the destination), with its mode and owner
    /// whatever `--chmod` says.
    Dir {
        mode: u32,
        owner: (u32, u32),
        mtime: u64,
    },
}

/// One entry: `dest` is its path in the image, cleaned and relative (`usr/bin/x`).
#[derive(Clone, Debug)]
pub struct Item {
    pub source: Source,
    pub dest: String,
}

/// `--chown` and `--chmod`, and whether sources keep their owner.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attrs {
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<u32>,
    pub keep_owner: bool,
}

/// Write `items` as an (uncompressed) tar to `out`.
pub fn write_tar(items: &[Item], attrs: &Attrs, out: impl Write) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    for item in items {
        match &item.source {
            Source::Path(p) => path_entry(&mut tar, p, &item.dest, attrs)?,
            Source::Data { bytes, mode, mtime } => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(bytes.len() as u64);
                h.set_mode(attrs.chmod.unwrap_or(*mode));
                let (uid, gid) = attrs.chown.unwrap_or((0, 0));
                h.set_uid(uid.into());
                h.set_gid(gid.into());
                h.set_mtime(*mtime);
                tar.append_data(&mut h, &item.dest, bytes.as_slice())?;
            }
            Source::Archive(p) => archive_entries(&mut tar, p, &item.dest)?,
            Source::File { path, mode, mtime } => {
                let f = fs::File::open(path)?;
                let len = f.metadata()?.len();
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(len);
                h.set_mode(attrs.chmod.unwrap_or(*mode));
                let (uid, gid) = attrs.chown.unwrap_or((0, 0));
                h.set_uid(uid.into());
                h.set_gid(gid.into());
                h.set_mtime(*mtime);
                tar.append_data(&mut h, &item.dest, f.take(len))?;
            }
            Source::Dir { mode, owner, mtime } => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(*mode);
                h.set_uid(owner.0.into());
                h.set_gid(owner.1.into());
                h.set_mtime(*mtime);
                tar.append_data(&mut h, &item.dest, io::empty())?;
            }
        }
    }
    tar.finish()
}

/// Open a context file that was a regular file when listed: never through a symlink swapped
/// in since (which could pull a host file into the image), and still a regular file.
pub(crate) fn open_regular(path: &std::path::Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{}: no longer a regular file",
            path.display()
        )));
    }
    Ok(f)
}

fn path_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &std::path::Path,
    dest: &str,
    attrs: &Attrs,
) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    let ft = md.file_type();
    let mut h = tar::Header::new_gnu();
    let mode = md.mode() & 0o7777;
    h.set_mode(attrs.chmod.unwrap_or(mode));
    let (uid, gid) = match (attrs.chown, attrs.keep_owner) {
        (Some(o), _) => o,
        (None, true) => (md.uid(), md.gid()),
        (None, false) => (0, 0),
    };
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(md.mtime().max(0) as u64);
    if ft.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        tar.append_data(&mut h, dest, io::empty())
    } else if ft.is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        // A symlink's own mode is not kept by Linux; tar writes 0777 as docker does.
        h.set_mode(0o777);
        tar.append_link(&mut h, dest, fs::read_link(path)?)
    } else if ft.is_fifo() {
        h.set_entry_type(tar::EntryType::Fifo);
        h.set_size(0);
        tar.append_data(&mut h, dest, io::empty())
    } else if ft.is_file() {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(md.len());
        let f = open_regular(path)?;
        // The size is the one stat gave: a file that grows meanwhile is cut there.
        tar.append_data(&mut h, dest, f.take(md.len()))
    } else {
        // Sockets and device nodes: nothing a COPY carries.
        Ok(())
    }
}

/// Whether the file at `path` is a tar archive ADD extracts (plain, gzip or zstd).
pub fn is_archive(path: &std::path::Path) -> bool {
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    let mut magic = [0u8; 4];
    let mut f = f;
    let n = read_full(&mut f, &mut magic);
    let c = image::layer::Compression::detect(&magic[..n]);
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    let Ok(mut r) = image::layer::decompress(f, c) else {
        return false;
    };
    let mut block = [0u8; 512];
    read_full(&mut r, &mut block) == 512 && &block[257..262] == b"ustar"
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

fn archive_entries<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &std::path::Path,
    dest: &str,
) -> io::Result<()> {
    let mut f = fs::File::open(path)?;
    let mut magic = [0u8; 4];
    let n = read_full(&mut f, &mut magic);
    let c = image::layer::Compression::detect(&magic[..n]);
    let r = image::layer::decompress(fs::File::open(path)?, c).map_err(io::Error::other)?;
    let mut archive = tar::Archive::new(r);
    let prefix = |p: &[u8]| {
        let rel = crate::clean(&String::from_utf8_lossy(p));
        match (dest.is_empty(), rel.is_empty()) {
            (true, _) => rel,
            (false, true) => dest.to_string(),
            (false, false) => format!("{dest}/{rel}"),
        }
    };
    for e in archive.entries()? {
        let mut e = e?;
        let name = prefix(&e.path_bytes());
        if name.is_empty() {
            // The archive's own root (`./`, as `tar -C DIR -cf A .` writes it) extracted at
            // `/`: the image's root, which no layer entry names (BuildKit and buildah extract
            // such a rootfs tarball; it used to fail here with "paths in archives must have at
            // least one component").
            continue;
        }
        if name
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with(".wh."))
        {
            return Err(io::Error::other(format!(
                "{name}: a file named .wh.* would be a whiteout in the layer"
            )));
        }
        let mut h = e.header().clone();
        match h.entry_type() {
            tar::EntryType::Link => {
                let target = prefix(&e.link_name_bytes().unwrap_or_default());
                h.set_size(0);
                tar.append_link(&mut h, &name, target)?;
            }
            tar::EntryType::Symlink => {
                let target = e.link_name()?.unwrap_or_default().into_owned();
                h.set_size(0);
                tar.append_link(&mut h, &name, target)?;
            }
            tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::Directory
            | tar::EntryType::Fifo => {
                tar.append_data(&mut h, &name, &mut e)?;
            }
            // Devices, sparse and other special entries are left out as layer apply does.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<(String, u32, u64, u64)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn owners_modes_and_archives() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        fs::write(&f, "x").unwrap();
        let items = vec![Item {
            source: Source::Path(f.clone()),
            dest: "app/f".into(),
        }];
        let mut out = Vec::new();
        write_tar(&items, &Attrs::default(), &mut out).unwrap();
        let mode = fs::metadata(&f).unwrap().mode() & 0o7777;
        assert_eq!(names(&out), [("app/f".to_string(), mode, 0, 0)]);
        let attrs = Attrs {
            chown: Some((10, 20)),
            chmod: Some(0o4750),
            keep_owner: true,
        };
        let mut out = Vec::new();
        write_tar(&items, &attrs, &mut out).unwrap();
        assert_eq!(names(&out), [("app/f".to_string(), 0o4750, 10, 20)]);

        // An archive: entries under the destination, hard links re-pointed.
        let arc = t.path().join("a.tar");
        let mut b = tar::Builder::new(fs::File::create(&arc).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o600);
        b.append_data(&mut h, "d/x", &b"1"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "d/y", "d/x").unwrap();
        b.finish().unwrap();
        drop(b);
        assert!(is_archive(&arc));
        assert!(!is_archive(&f));
        let items = vec![Item {
            source: Source::Archive(arc),
            dest: "opt".into(),
        }];
        let mut out = Vec::new();
        write_tar(&items, &Attrs::default(), &mut out).unwrap();
        let mut a = tar::Archive::new(out.as_slice());
        let got: Vec<(String, Option<String>)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.link_name()
                        .unwrap()
                        .map(|l| l.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("opt/d/x".to_string(), None),
                ("opt/d/y".to_string(), Some("opt/d/x".to_string()))
            ]
        );
    }
}
