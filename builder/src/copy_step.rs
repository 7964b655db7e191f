//! The COPY and ADD steps, as BuildKit runs them:
//! - sources are words expanded with the stage's variables (the last word is the
//!   destination); `<<NAME` names one of the instruction's heredocs (a file of that name, its
//!   body expanded unless the name was quoted); ADD also takes `http(s)://` URLs (the file
//!   gets mode 0600, as docker gives it) and extracts local tar archives;
//! - they come from the context (with `.dockerignore`), or with `--from` from an earlier
//!   stage or an image: every source path is resolved inside its root, never outside it;
//! - the destination is relative to WORKDIR; it is a directory when it ends with `/`, when
//!   there are several sources or a directory or a glob, or when it exists as one; several
//!   sources need a destination ending with `/`;
//! - a directory source stands for its content; the destination directory, when it is new,
//!   gets the source directory's mode (and `--chown`'s owner);
//! - `--chown` names are resolved in the image being built; `--chmod` is octal;
//! - the step's cache key has the digest of everything it copies (names, modes, owners,
//!   contents; not times).

use std::io::Read;
use std::os::fd::AsFd;
use std::path::PathBuf;

use sha2::Digest as _;

use crate::build::{Builder, Error, Result, State};
use crate::context::{self, Context, Selected};
use crate::copy::{self, Attrs, Item, Source};
use crate::copy_layer;
use crate::dockerfile::{Args, Instruction, Keyword};
use crate::ignore::{is_glob, Ignore};

/// One source of a COPY/ADD, as resolved before the step runs.
enum Src {
    /// A file or symlink (`dir: false`), or a directory's content (`dir: true`), or what a
    /// glob selected.
    Paths {
        selected: Vec<Selected>,
        /// The directory itself, when the source is one.
        dir: Option<PathBuf>,
        glob: bool,
        archive: bool,
    },
    Data {
        name: String,
        bytes: Vec<u8>,
        mode: u32,
    },
    /// A downloaded file (ADD of a URL): its name, where it is, its content's digest.
    File {
        name: String,
        path: PathBuf,
        digest: String,
        mode: u32,
    },
}

/// The largest file ADD downloads.
const MAX_DOWNLOAD: u64 = 8 << 30;

impl Builder<'_> {
    pub(crate) fn copy_step(
        &self,
        st: &mut State,
        ins: &Instruction,
        stage: usize,
    ) -> Result<bool> {
        let add = ins.keyword == Keyword::Add;
        let name = ins.keyword.name();
        let err = |m: String| Error::step(ins.line, format!("{name}: {m}"));
        let snapshot = st.stage.clone();
        let lookup = |n: &str| snapshot.lookup(n, &self.opts.build_args);
        let (mut from, mut chown, mut chmod) = (None, None, None);
        for f in &ins.flags {
            // Flag values see the stage's variables, as BuildKit expands them.
            let v = self
                .lexer
                .word(f.value.as_deref().unwrap_or(""), &lookup)
                .map_err(err)?;
            match f.name.as_str() {
                "from" => from = Some(v),
                "chown" => chown = Some(v),
                "chmod" => {
                    chmod = Some(
                        u32::from_str_radix(&v, 8)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| err(format!("--chmod={v}: use an octal mode")))?,
                    )
                }
                // The layer is the same either way: --link only changes how BuildKit
                // rebases it.
                "link" => {}
                other => {
                    return Err(err(format!(
                        "--{other} is not supported by this builder yet"
                    )))
                }
            }
        }
        let words: Vec<String> = match &ins.args {
            Args::Exec(v) => v
                .iter()
                .map(|w| self.lexer.word(w, &lookup))
                .collect::<std::result::Result<_, _>>(),
            Args::Shell(s) => self.lexer.words(s, &lookup),
        }
        .map_err(err)?;
        if words.len() < 2 {
            return Err(err(
                "requires at least two arguments, but only one was provided. Destination \
                 could not be determined"
                    .into(),
            ));
        }
        let (srcs, dest) = words.split_at(words.len() - 1);
        let dest = &dest[0];
        let workdir = match st.stage.config_str("WorkingDir") {
            "" => "/".to_string(),
            d => d.to_string(),
        };
        let dest_abs = if dest.starts_with('/') {
            dest.clone()
        } else {
            format!("{workdir}/{dest}")
        };
        let dest_is_dir =
            dest.ends_with('/') || dest.ends_with("/.") || dest == "." || dest.is_empty();
        if srcs.len() > 1 && !dest_is_dir {
            return Err(err(format!(
                "When using {name} with more than one source file, the destination must be a \
                 directory and end with a /"
            )));
        }
        let dest_rel = crate::clean(&dest_abs);

        // The root sources come from.
        let from_state;
        let (_view, root, ignore) = match &from {
            Some(f) => {
                from_state = self.source_state(f, ins.line, stage)?;
                let (dir, view) = self.view_of(&from_state)?;
                (Some(view), dir, Ignore::default())
            }
            None => (None, self.context.root.clone(), self.context.ignore.clone()),
        };
        let ctx = Context::new(root.clone(), ignore);
        let mut sources: Vec<Src> = Vec::new();
        for s in srcs {
            if let Some(doc) = s.strip_prefix("<<").and_then(|n| {
                ins.heredocs
                    .iter()
                    .find(|d| d.name == n.trim_start_matches('-'))
            }) {
                let body = if doc.expand {
                    self.lexer.expand_raw(&doc.body, &lookup).map_err(err)?
                } else {
                    doc.body.clone()
                };
                sources.push(Src::Data {
                    name: doc.name.clone(),
                    bytes: body.into_bytes(),
                    mode: 0o644,
                });
                continue;
            }
            if s.starts_with("http://") || s.starts_with("https://") {
                if !add || from.is_some() {
                    return Err(err(format!("source can't be a URL for COPY: {s}")));
                }
                let file = self
                    .tmp
                    .join(format!("download-{}", image::fsutil::random_hex(6)));
                let digest = download(s, &file).map_err(|m| err(format!("{s}: {m}")))?;
                sources.push(Src::File {
                    name: url_name(s),
                    path: file,
                    digest,
                    mode: 0o600,
                });
                continue;
            }
            let mut rel =
                context::resolve_source(&root, s).map_err(|m| err(format!("{s}: {m}")))?;
            let glob = is_glob(&rel);
            // A source that is a symlink stands for what it points at (inside its root), under
            // its own name: BuildKit copies with FollowSymlinks.
            let link_name = (!glob
                && std::fs::symlink_metadata(root.join(&rel)).is_ok_and(|m| m.is_symlink()))
            .then(|| rel.rsplit('/').next().unwrap_or(&rel).to_string());
            if link_name.is_some() {
                let real = context::real_path_in_root(&root, &rel).map_err(err)?;
                let root_real = std::fs::canonicalize(&root)?;
                rel = real
                    .strip_prefix(&root_real)
                    .map(|p| p.to_string_lossy().into_owned())
                    .map_err(|_| err(format!("{s}: resolves outside its root")))?;
            }
            let mut selected = ctx.select(std::slice::from_ref(&rel)).map_err(err)?;
            let path = root.join(&rel);
            if let (Some(n), true) = (
                &link_name,
                std::fs::metadata(&path).is_ok_and(|m| m.is_file()),
            ) {
                if let Some(first) = selected.first_mut() {
                    first.dest = n.clone();
                }
            }
            let md = (!glob)
                .then(|| std::fs::symlink_metadata(&path).ok())
                .flatten();
            let dir = md
                .as_ref()
                .is_some_and(|m| m.is_dir())
                .then(|| path.clone());
            let archive = add
                && from.is_none()
                && md.as_ref().is_some_and(|m| m.is_file())
                && copy::is_archive(&path);
            sources.push(Src::Paths {
                selected,
                dir,
                glob,
                archive,
            });
        }

        // The key: the instruction and a digest of everything copied.
        let mut h = sha2::Sha256::new();
        {
            let mut stat = self.stat_cache.lock().unwrap_or_else(|e| e.into_inner());
            for s in &sources {
                match s {
                    Src::Paths {
                        selected,
                        dir,
                        archive,
                        ..
                    } => {
                        let d = context::digest(selected, &mut stat).map_err(err)?;
                        h.update(format!("paths {d} {} {archive}\n", dir.is_some()));
                        if let Some(d) = dir {
                            let md = std::fs::symlink_metadata(d)?;
                            use std::os::unix::fs::MetadataExt;
                            h.update(format!("dir {:o} {}:{}\n", md.mode(), md.uid(), md.gid()));
                        }
                    }
                    Src::File {
                        name, digest, mode, ..
                    } => {
                        h.update(format!("file {name} {mode:o} {digest}\n"));
                    }
                    Src::Data { name, bytes, mode } => {
                        h.update(format!("data {name} {mode:o} {}\n", bytes.len()));
                        h.update(bytes);
                    }
                }
            }
        }
        let content = format!("{:x}", h.finalize());
        let expanded =
            serde_json::to_string(&(srcs, &dest_abs, &from, &chown, &chmod)).unwrap_or_default();
        // ARG values count where they are used: in the expanded words and the config.
        let key = self.key_of(st, ins, &[], &expanded, &content);
        let by = format!("{} {} {} # buildkit", name, srcs.join(" "), dest);
        if self.take_cached(st, &key, &by)? {
            return Ok(true);
        }

        let mut step = self.begin(st)?;
        let rootfs = step.rootfs();
        let owner = match &chown {
            Some(c) => {
                let u = image::user::resolve_user(&rootfs, c)
                    .map_err(|e| err(format!("--chown={c}: {e}")))?;
                Some((u.uid, u.gid))
            }
            None => None,
        };
        let attrs = Attrs {
            chown: owner,
            chmod,
            keep_owner: from.is_some(),
        };
        let dest_exists_dir = image::fsutil::open_dir_in_root(
            image::fsutil::open_dir(&rootfs)?.as_fd(),
            dest_rel.as_bytes(),
        )
        .is_ok();
        let join = |a: &str, b: &str| match (a.is_empty(), b.is_empty()) {
            (true, _) => b.to_string(),
            (_, true) => a.to_string(),
            _ => format!("{a}/{b}"),
        };
        let into_dir = dest_is_dir || dest_exists_dir;
        // Missing directories on the way to the destination are made 0755, owned by --chown's
        // owner (BuildKit's mkdir -p with the copy's user).
        let dest_dir = if into_dir {
            dest_rel.as_str()
        } else {
            dest_rel.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
        };
        let missing = crate::step::missing_dirs(&rootfs, dest_dir)?;
        let fast = fast_path(&rootfs, missing.first().map(String::as_str));
        let mut items: Vec<Item> = missing
            .into_iter()
            .map(|d| Item {
                source: Source::Dir {
                    mode: 0o755,
                    owner: owner.unwrap_or((0, 0)),
                    mtime: self.now_secs(),
                },
                dest: d,
            })
            .collect();
        // Where a named source (a heredoc, a download) lands.
        let named = |name: &str| {
            if into_dir {
                join(&dest_rel, name)
            } else {
                dest_rel.clone()
            }
        };
        for s in &sources {
            match s {
                Src::File {
                    name, path, mode, ..
                } => items.push(Item {
                    source: Source::File {
                        path: path.clone(),
                        mode: *mode,
                        mtime: 0,
                    },
                    dest: named(name),
                }),
                Src::Data { name, bytes, mode } => items.push(Item {
                    source: Source::Data {
                        bytes: bytes.clone(),
                        mode: *mode,
                        mtime: 0,
                    },
                    dest: named(name),
                }),
                Src::Paths {
                    selected,
                    dir,
                    glob,
                    archive,
                } => {
                    if *archive {
                        items.push(Item {
                            source: Source::Archive(selected[0].src.clone()),
                            dest: dest_rel.clone(),
                        });
                        continue;
                    }
                    if let Some(d) = dir {
                        if !dest_exists_dir && !dest_rel.is_empty() {
                            // The destination takes the source directory's attributes.
                            items.retain(|i| i.dest != dest_rel);
                            items.push(Item {
                                source: Source::Path(d.clone()),
                                dest: dest_rel.clone(),
                            });
                        }
                    }
                    let single_file = dir.is_none() && !glob && selected.len() == 1;
                    for sel in selected {
                        let d = if single_file && !into_dir {
                            dest_rel.clone()
                        } else {
                            join(&dest_rel, &sel.dest)
                        };
                        items.push(Item {
                            source: Source::Path(sel.src.clone()),
                            dest: d,
                        });
                    }
                }
            }
        }
        // A name overlayfs and the layer format read as a whiteout cannot be copied.
        if let Some(i) = items.iter().find(|i| {
            i.dest
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(".wh."))
        }) {
            return Err(err(format!(
                "{}: a file named .wh.* would be a whiteout in the layer",
                i.dest
            )));
        }
        let fast = fast
            && !sources
                .iter()
                .any(|s| matches!(s, Src::Paths { archive: true, .. }));
        if let (true, Some(snap)) = (fast, step.key.clone()) {
            // Everything lands below a directory the rootfs does not have: the layer is known
            // from the sources alone, written before any file is (and instead of them when
            // its snapshot exists already).
            let lowers = self.lowers(st)?;
            let upper = self.store.snapshots.active_fs_path(&snap);
            let inherits = !image::layer::xattrs_of(&upper)?.is_empty();
            let tree = if inherits {
                None
            } else {
                copy_layer::plan(&items, &attrs, &lowers, image::fsutil::now_secs())
                    .map_err(|e| err(format!("read the sources: {e}")))?
            };
            if let Some(tree) = tree {
                step.unmount()?;
                let layer = image::diff::write_layer_with(
                    &self.store.content,
                    &image::diff::DiffOptions {
                        zstd: self.opts.zstd,
                        ..Default::default()
                    },
                    |out| {
                        copy_layer::write_tar(&tree, out, self.opts.timestamp)
                            .map_err(|e| image::Error::io("read the sources", e))
                    },
                )?;
                let (blob, diff_id) = (
                    self.store.content.path(&layer.record.digest),
                    layer.record.diff_id.clone(),
                );
                self.record(st, step, layer, &key, &by, |upper, lowers| {
                    // Unpacked as a pulled layer is: the snapshot is what its blob says.
                    image::layer::apply_blob(
                        upper,
                        &blob,
                        Some(&diff_id),
                        &image::layer::ApplyOptions::overlay(lowers),
                    )?;
                    Ok(())
                })?;
                return Ok(false);
            }
        }
        let tar_path = step.bundle.join("copy.tar");
        {
            let f = std::fs::File::create(&tar_path)
                .map_err(|e| Error::io(format!("create {}", tar_path.display()), e))?;
            copy::write_tar(&items, &attrs, std::io::BufWriter::new(f))
                .map_err(|e| err(format!("read the sources: {e}")))?;
        }
        let f = std::fs::File::open(&tar_path)
            .map_err(|e| Error::io(format!("open {}", tar_path.display()), e))?;
        let f = std::io::BufReader::new(f);
        match (fast, step.key.clone()) {
            (true, Some(key)) => {
                // Everything lands below a directory the rootfs does not have: written straight
                // into the upper directory (unmounted first), as a layer is unpacked, with the
                // directories above it copied up from the layers below as overlayfs would.
                let lowers = self.lowers(st)?;
                step.unmount()?;
                image::layer::apply(
                    &self.store.snapshots.active_fs_path(&key),
                    f,
                    &image::layer::ApplyOptions::overlay(lowers),
                )?;
            }
            _ => {
                image::layer::apply(&rootfs, f, &image::layer::ApplyOptions::delete())?;
            }
        }
        let _ = std::fs::remove_file(&tar_path);
        self.finish(st, step, &key, &by)?;
        Ok(false)
    }
}

/// Whether a COPY whose destination is below `new_dir` (the top-most directory of the
/// destination that does not exist yet) can write straight into the upper directory: the
/// directory is really absent (not a file, not a dangling symlink) and no symlink leads to it
/// (else its real place is elsewhere in the rootfs).
fn fast_path(rootfs: &std::path::Path, new_dir: Option<&str>) -> bool {
    let Some(dir) = new_dir else { return false };
    let Ok(root) = image::fsutil::open_dir(rootfs) else {
        return false;
    };
    let no_links = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_BENEATH;
    let parent = dir.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    let parent_ok =
        image::fsutil::openat2(root.as_fd(), parent.as_bytes(), libc::O_PATH, 0, no_links).is_ok();
    let absent = matches!(
        image::fsutil::openat2(root.as_fd(), dir.as_bytes(), libc::O_PATH, 0, no_links),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT)
    );
    parent_ok && absent
}

/// The file name ADD gives a URL's content: the last part of its path.
fn url_name(url: &str) -> String {
    let path = url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(url)
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    let name = path
        .split_once('/')
        .map(|(_, p)| p)
        .unwrap_or("")
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("");
    if name.is_empty() {
        "__unnamed__".into()
    } else {
        name.to_string()
    }
}

/// Download `url` into `to` (at most MAX_DOWNLOAD bytes); returns the content's sha256.
fn download(url: &str, to: &std::path::Path) -> std::result::Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .into();
    let resp = agent.get(url).call().map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("the server answered {}", resp.status()));
    }
    let mut r = resp.into_body().into_reader().take(MAX_DOWNLOAD + 1);
    let mut f = std::fs::File::create(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n_total: u64 = 0;
    loop {
        let n = r.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        n_total += n as u64;
        if n_total > MAX_DOWNLOAD {
            return Err(format!("larger than {MAX_DOWNLOAD} bytes"));
        }
        h.update(&buf[..n]);
        std::io::Write::write_all(&mut f, &buf[..n]).map_err(|e| e.to_string())?;
    }
    Ok(format!("{:x}", h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_names() {
        assert_eq!(url_name("https://example.com/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(url_name("https://example.com/a/"), "a");
        assert_eq!(url_name("https://example.com"), "__unnamed__");
    }
}
