//! A COPY's layer written straight from its sources, before (and, when its snapshot exists
//! already, instead of) writing any file: the tree the step's items would make in the step's
//! upper directory, encoded by `image::layer_tar` as the differ encodes an upper directory, so
//! the DiffID is the one applying the items and diffing the result gives.
//!
//! The tree is known without looking at the filesystem only where the copy lands below a
//! directory the rootfs does not have (`copy_step::fast_path`): [`plan`] says `None`
//! elsewhere, and for what it does not model (archives, names with `..`, an entry below a
//! non-directory), and the step takes the general way (apply through the mounted rootfs, then
//! diff). What `image::layer::apply` (as root, overlay whiteouts) makes of `copy::write_tar`'s
//! entries, and so what the tree holds:
//! - each entry with the attributes `write_tar` gives it (`--chmod`, `--chown`, the source's);
//!   sockets and device nodes are left out; symlinks are 0777;
//! - directories an entry needs but no entry gives are made with the attributes the lowers
//!   have (`layer::implied_dir_attrs`), else root-owned 0755, and the time they are made;
//! - a later entry replaces an earlier one at the same path (and what was below it); a
//!   directory over a directory keeps its content, takes the later mode and owner and the
//!   first mtime (apply sets directory times last, in reverse order);
//! - no xattrs (none are given, and none are inherited: checked on the upper directory);
//! - entries in byte order of their names, a directory before its content (the differ's).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use image::layer_tar::{Attrs, LayerStats, LayerTar};

use crate::copy::{self, Item, Source};

/// What a COPY puts in its layer.
pub(crate) struct Tree {
    root: BTreeMap<Vec<u8>, Node>,
    /// The time of directories only implied.
    now: u64,
}

struct Node {
    attrs: Attrs,
    kind: Kind,
}

enum Kind {
    /// `explicit`: an entry gave it (its mtime is that entry's, else the tree's `now`).
    Dir {
        children: BTreeMap<Vec<u8>, Node>,
        explicit: bool,
    },
    File {
        size: u64,
        content: Content,
    },
    Symlink(Vec<u8>),
    Fifo,
}

enum Content {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// The tree `items` make (see the module's doc), or None where it is not modelled. `lowers`:
/// the step's parent layers, top-most first; `now`: the time of implied directories.
pub(crate) fn plan(
    items: &[Item],
    attrs: &copy::Attrs,
    lowers: &[PathBuf],
    now: u64,
) -> io::Result<Option<Tree>> {
    if !image::layer::ApplyOptions::overlay(Vec::new()).chown {
        // Apply gives files their owners only as root.
        return Ok(None);
    }
    let mut tree = Tree {
        root: BTreeMap::new(),
        now,
    };
    let owner = |md: &fs::Metadata| match (attrs.chown, attrs.keep_owner) {
        (Some(o), _) => o,
        (None, true) => (md.uid(), md.gid()),
        (None, false) => (0, 0),
    };
    let given = |mode: u32, (uid, gid): (u32, u32), mtime: u64| Attrs {
        mode: mode & 0o7777,
        uid,
        gid,
        mtime,
    };
    for item in items {
        let comps: Vec<&[u8]> = item
            .dest
            .as_bytes()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        if comps.is_empty() || comps.contains(&&b".."[..]) {
            return Ok(None);
        }
        let node = match &item.source {
            Source::Archive(_) => return Ok(None),
            Source::Dir { mode, owner, mtime } => Node {
                attrs: given(*mode, *owner, *mtime),
                kind: Kind::Dir {
                    children: BTreeMap::new(),
                    explicit: true,
                },
            },
            Source::Data { bytes, mode, mtime } => Node {
                attrs: given(
                    attrs.chmod.unwrap_or(*mode),
                    attrs.chown.unwrap_or((0, 0)),
                    *mtime,
                ),
                kind: Kind::File {
                    size: bytes.len() as u64,
                    content: Content::Bytes(bytes.clone()),
                },
            },
            Source::File { path, mode, mtime } => Node {
                attrs: given(
                    attrs.chmod.unwrap_or(*mode),
                    attrs.chown.unwrap_or((0, 0)),
                    *mtime,
                ),
                kind: Kind::File {
                    size: fs::metadata(path)?.len(),
                    content: Content::Path(path.clone()),
                },
            },
            Source::Path(p) => {
                let md = fs::symlink_metadata(p)?;
                let ft = md.file_type();
                let mut a = given(
                    attrs.chmod.unwrap_or(md.mode()),
                    owner(&md),
                    md.mtime().max(0) as u64,
                );
                let kind = if ft.is_dir() {
                    Kind::Dir {
                        children: BTreeMap::new(),
                        explicit: true,
                    }
                } else if ft.is_symlink() {
                    a.mode = 0o777;
                    Kind::Symlink(fs::read_link(p)?.into_os_string().into_vec())
                } else if ft.is_fifo() {
                    Kind::Fifo
                } else if ft.is_file() {
                    Kind::File {
                        size: md.len(),
                        content: Content::Path(p.clone()),
                    }
                } else {
                    // Sockets and device nodes: nothing a COPY carries.
                    continue;
                };
                Node { attrs: a, kind }
            }
        };
        if !tree.insert(&comps, node, lowers)? {
            return Ok(None);
        }
    }
    Ok(Some(tree))
}

impl Tree {
    /// Put `node` at `comps`; false: a parent is not a directory (not modelled).
    fn insert(&mut self, comps: &[&[u8]], node: Node, lowers: &[PathBuf]) -> io::Result<bool> {
        let (last, parents) = comps.split_last().expect("a name");
        let mut dir = &mut self.root;
        for (i, c) in parents.iter().enumerate() {
            if !dir.contains_key(*c) {
                let path = comps[..=i].join(&b'/');
                let (mode, uid, gid) = image::layer::implied_dir_attrs(lowers, &path)
                    .map_err(io::Error::other)?
                    .unwrap_or((0o755, 0, 0));
                let implied = Node {
                    attrs: Attrs {
                        mode,
                        uid,
                        gid,
                        mtime: self.now,
                    },
                    kind: Kind::Dir {
                        children: BTreeMap::new(),
                        explicit: false,
                    },
                };
                dir.insert(c.to_vec(), implied);
            }
            match dir.get_mut(*c).map(|n| &mut n.kind) {
                Some(Kind::Dir { children, .. }) => dir = children,
                _ => return Ok(false),
            }
        }
        match (dir.get_mut(*last), node.kind) {
            (
                Some(Node {
                    attrs,
                    kind: Kind::Dir { explicit, .. },
                }),
                Kind::Dir { .. },
            ) => {
                // A directory over a directory: merged.
                let mtime = if *explicit {
                    attrs.mtime
                } else {
                    node.attrs.mtime
                };
                *attrs = Attrs {
                    mtime,
                    ..node.attrs
                };
                *explicit = true;
            }
            (_, kind) => {
                dir.insert(
                    last.to_vec(),
                    Node {
                        attrs: node.attrs,
                        kind,
                    },
                );
            }
        }
        Ok(true)
    }

    /// Write the layer's entries to `out`.
    pub(crate) fn write<W: io::Write>(&self, out: &mut LayerTar<W>) -> io::Result<()> {
        self.write_dir(&self.root, b"", out)
    }

    fn write_dir<W: io::Write>(
        &self,
        dir: &BTreeMap<Vec<u8>, Node>,
        prefix: &[u8],
        out: &mut LayerTar<W>,
    ) -> io::Result<()> {
        for (name, node) in dir {
            let mut rel = prefix.to_vec();
            rel.extend_from_slice(name);
            let a = &node.attrs;
            match &node.kind {
                Kind::Dir { children, explicit } => {
                    let a = Attrs {
                        mtime: if *explicit { a.mtime } else { self.now },
                        ..*a
                    };
                    out.dir(&rel, &a, &[], false)?;
                    rel.push(b'/');
                    self.write_dir(children, &rel, out)?;
                }
                Kind::File { size, content } => match content {
                    Content::Bytes(b) => out.file(&rel, a, &[], *size, b.as_slice())?,
                    Content::Path(p) => out
                        .file(&rel, a, &[], *size, crate::copy::open_regular(p)?)
                        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
                },
                Kind::Symlink(t) => out.symlink(&rel, a, t)?,
                Kind::Fifo => out.special(&rel, a, tar::EntryType::Fifo, None)?,
            }
        }
        Ok(())
    }
}

/// Write `tree` as an (uncompressed) layer tar to `out`.
pub(crate) fn write_tar(
    tree: &Tree,
    out: impl io::Write,
    clamp_mtime: Option<u64>,
) -> io::Result<LayerStats> {
    let mut t = LayerTar::new(out, clamp_mtime);
    tree.write(&mut t)?;
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// The layer `items` give the general way: `write_tar`, applied to an empty upper
    /// directory over `lowers` (as the fast path does), diffed.
    fn applied(items: &[Item], attrs: &copy::Attrs, lowers: &[PathBuf], clamp: u64) -> Vec<u8> {
        let t = tempfile::tempdir().unwrap();
        let mut tar = Vec::new();
        copy::write_tar(items, attrs, &mut tar).unwrap();
        image::layer::apply(
            t.path(),
            tar.as_slice(),
            &image::layer::ApplyOptions::overlay(lowers.to_vec()),
        )
        .unwrap();
        let mut out = Vec::new();
        image::diff::diff_upper(
            t.path(),
            &mut out,
            &image::diff::DiffOptions {
                clamp_mtime: Some(clamp),
                ..Default::default()
            },
        )
        .unwrap();
        out
    }

    fn direct(items: &[Item], attrs: &copy::Attrs, lowers: &[PathBuf], clamp: u64) -> Vec<u8> {
        let tree = plan(items, attrs, lowers, image::fsutil::now_secs())
            .unwrap()
            .expect("modelled");
        let mut out = Vec::new();
        write_tar(&tree, &mut out, Some(clamp)).unwrap();
        out
    }

    fn names(tar: &[u8]) -> Vec<String> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn path(p: &Path) -> Source {
        Source::Path(p.to_path_buf())
    }

    /// A context with every kind of entry COPY meets; its entries as `COPY ctx/ DEST/` lists
    /// them (the directory's content, parents first).
    fn context(root: &Path) -> Vec<(PathBuf, String)> {
        let c = root.join("ctx");
        fs::create_dir_all(c.join("d/empty")).unwrap();
        fs::create_dir_all(c.join("a")).unwrap();
        fs::write(c.join("a/b"), "ab").unwrap();
        fs::write(c.join("a-b"), "dash").unwrap();
        fs::write(c.join("d/f"), "f").unwrap();
        fs::set_permissions(c.join("d/f"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(c.join("d/f"), c.join("d/hard")).unwrap();
        std::os::unix::fs::symlink("../a/b", c.join("d/link")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .args(["-m", "640"])
            .arg(c.join("d/fifo"))
            .status()
            .unwrap();
        assert!(fifo.success());
        let _sock = std::os::unix::net::UnixListener::bind(c.join("d/sock")).unwrap();
        let long = "l".repeat(120);
        fs::write(c.join(&long), "long name").unwrap();
        std::os::unix::fs::lchown(c.join("a/b"), Some(7), Some(8)).unwrap();
        fs::set_permissions(c.join("d"), fs::Permissions::from_mode(0o750)).unwrap();
        let mut out = Vec::new();
        let mut walk = vec![String::new()];
        while let Some(dir) = walk.pop() {
            let mut names: Vec<String> = fs::read_dir(c.join(&dir))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                let rel = if dir.is_empty() {
                    n
                } else {
                    format!("{dir}/{n}")
                };
                if fs::symlink_metadata(c.join(&rel)).unwrap().is_dir() {
                    walk.push(rel.clone());
                }
                out.push((c.join(&rel), rel));
            }
        }
        out
    }

    fn lower(root: &Path) -> Vec<PathBuf> {
        let l = root.join("lower");
        fs::create_dir_all(l.join("usr/local")).unwrap();
        fs::set_permissions(l.join("usr/local"), fs::Permissions::from_mode(0o2770)).unwrap();
        std::os::unix::fs::chown(l.join("usr/local"), Some(3), Some(4)).unwrap();
        fs::write(l.join("usr/local/old"), "old").unwrap();
        vec![l]
    }

    #[test]
    fn direct_layers_are_the_differs() {
        if !image::layer::ApplyOptions::overlay(Vec::new()).chown {
            eprintln!("skipped: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let lowers = lower(t.path());
        let ctx = context(t.path());
        let now = image::fsutil::now_secs();
        for dest in ["new", "usr/local/new/deeper"] {
            // COPY ctx/ DEST/, the destination new: it takes the source directory's attributes,
            // its missing parents are 0755 and owned by --chown's owner.
            let missing: Vec<&str> = match dest {
                "new" => vec![],
                _ => vec!["usr/local/new"],
            };
            for attrs in [
                copy::Attrs::default(),
                copy::Attrs {
                    chown: Some((1000, 1001)),
                    chmod: Some(0o640),
                    keep_owner: false,
                },
                copy::Attrs {
                    chown: None,
                    chmod: None,
                    keep_owner: true,
                },
            ] {
                let mut items: Vec<Item> = missing
                    .iter()
                    .map(|d| Item {
                        source: Source::Dir {
                            mode: 0o755,
                            owner: attrs.chown.unwrap_or((0, 0)),
                            mtime: now,
                        },
                        dest: d.to_string(),
                    })
                    .collect();
                items.push(Item {
                    source: path(&t.path().join("ctx")),
                    dest: dest.into(),
                });
                for (src, rel) in &ctx {
                    items.push(Item {
                        source: path(src),
                        dest: format!("{dest}/{rel}"),
                    });
                }
                items.push(Item {
                    source: Source::Data {
                        bytes: b"heredoc\n".to_vec(),
                        mode: 0o644,
                        mtime: 0,
                    },
                    dest: format!("{dest}/doc"),
                });
                for clamp in [now + 3600, 1000] {
                    let want = applied(&items, &attrs, &lowers, clamp);
                    let got = direct(&items, &attrs, &lowers, clamp);
                    assert_eq!(names(&got), names(&want), "{dest} {attrs:?}");
                    assert!(got == want, "{dest} {attrs:?} {clamp}: the tars differ");
                }
            }
        }
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        if !image::layer::ApplyOptions::overlay(Vec::new()).chown {
            eprintln!("skipped: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let lowers = lower(t.path());
        let ctx = context(t.path());
        let src = |rel: &str| path(&ctx.iter().find(|(_, r)| r == rel).unwrap().0);
        let item = |source: Source, dest: &str| Item {
            source,
            dest: dest.into(),
        };
        let dir = |mode: u32, mtime: u64| Source::Dir {
            mode,
            owner: (0, 0),
            mtime,
        };
        let items = vec![
            // An implied directory, then given: its attributes and time are the entry's.
            item(src("a-b"), "n/implied/x"),
            item(dir(0o700, 50), "n/implied"),
            // A directory twice: the later mode, the first time; content kept.
            item(dir(0o755, 100), "n/twice"),
            item(src("a-b"), "n/twice/x"),
            item(dir(0o711, 200), "n/twice"),
            // A file over a directory (and what was in it), a directory over a file.
            item(dir(0o755, 100), "n/was_dir"),
            item(src("a-b"), "n/was_dir/x"),
            item(src("d/f"), "n/was_dir"),
            item(src("d/f"), "n/was_file"),
            item(dir(0o755, 300), "n/was_file"),
            // A file twice, a symlink over a file.
            item(src("d/f"), "n/f"),
            item(src("a/b"), "n/f"),
            item(src("a/b"), "n/l"),
            item(src("d/link"), "n/l"),
        ];
        for attrs in [
            copy::Attrs::default(),
            copy::Attrs {
                chown: None,
                chmod: None,
                keep_owner: true,
            },
        ] {
            let want = applied(&items, &attrs, &lowers, 10_000);
            let got = direct(&items, &attrs, &lowers, 10_000);
            assert_eq!(names(&got), names(&want));
            assert!(got == want, "{attrs:?}: the tars differ");
        }
        // Below a file, beyond the root, an archive: not modelled.
        for bad in [
            vec![item(src("a-b"), "n/f"), item(src("a-b"), "n/f/x")],
            vec![item(src("a-b"), "n/../../x")],
            vec![item(Source::Archive(t.path().join("a.tar")), "n")],
        ] {
            let p = plan(&bad, &copy::Attrs::default(), &lowers, 0).unwrap();
            assert!(p.is_none());
        }
    }
}
