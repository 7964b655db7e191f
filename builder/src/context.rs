//! The build context: what COPY and ADD select from it, and the digest of a selection for the
//! step's cache key.
//! - a source is cleaned and must stay inside the context ("forbidden path outside the build
//!   context"); it may be a glob (`*`, `?`, `[...]`), matched against every path of the
//!   context; a source that matches nothing (or only what `.dockerignore` leaves out) is an
//!   error naming it;
//! - a directory source stands for its content; `.dockerignore` applies at every level;
//! - the digest covers each selected entry's name (as it lands under the destination), type,
//!   mode, owner and content (a symlink's target), not its times, so touching a file does not
//!   invalidate the cache; contents are hashed once per (inode, size, mtime, ctime) through a
//!   [`StatCache`], so an unchanged context is not read again.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::clean;
use crate::ignore::{glob_match, is_glob, Ignore};

/// One selected context entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// Its path in the context.
    pub src: PathBuf,
    /// Its path relative to the destination.
    pub dest: String,
}

/// Hashes of file contents by what identifies an unchanged file.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct StatCache {
    /// "dev:ino:size:mtime_ns:ctime_ns" -> sha256 hex.
    entries: BTreeMap<String, String>,
    /// Files read (cache misses) since it was made or loaded.
    #[serde(skip)]
    pub reads: u64,
}

impl StatCache {
    /// The cache saved at `path` (empty if there is none or it is unreadable).
    pub fn load(path: &Path) -> StatCache {
        fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        fs::rename(tmp, path)
    }

    fn content(&mut self, path: &Path, md: &fs::Metadata) -> std::io::Result<String> {
        let key = format!(
            "{}:{}:{}:{}.{}:{}.{}",
            md.dev(),
            md.ino(),
            md.size(),
            md.mtime(),
            md.mtime_nsec(),
            md.ctime(),
            md.ctime_nsec()
        );
        if let Some(h) = self.entries.get(&key) {
            return Ok(h.clone());
        }
        let mut f = fs::File::open(path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let hex = format!("{:x}", h.finalize());
        self.reads += 1;
        self.entries.insert(key, hex.clone());
        Ok(hex)
    }
}

/// A build context directory and its `.dockerignore`.
pub struct Context {
    pub root: PathBuf,
    pub ignore: Ignore,
}

impl Context {
    pub fn new(root: PathBuf, ignore: Ignore) -> Context {
        Context { root, ignore }
    }

    /// The entries `sources` select (COPY/ADD's sources, before the destination).
    pub fn select(&self, sources: &[String]) -> Result<Vec<Selected>, String> {
        let mut out = Vec::new();
        for s in sources {
            if s.split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .fold(0i32, |depth, c| {
                    if depth < 0 {
                        depth
                    } else if c == ".." {
                        depth - 1
                    } else {
                        depth + 1
                    }
                })
                < 0
            {
                return Err(format!("forbidden path outside the build context: {s}"));
            }
            let rel = clean(s);
            let roots: Vec<String> = if is_glob(&rel) {
                let mut all = Vec::new();
                self.walk("", &mut |p, _| all.push(p.to_string()))?;
                let mut hits = Vec::new();
                for p in all {
                    if glob_match(&rel, &p)? {
                        hits.push(p);
                    }
                }
                hits
            } else if rel.is_empty()
                || (fs::symlink_metadata(self.root.join(&rel)).is_ok()
                    && !self.ignore.excluded(&rel))
            {
                vec![rel.clone()]
            } else {
                Vec::new()
            };
            if roots.is_empty() {
                return Err(format!(
                    "file not found in build context or excluded by .dockerignore: {s}"
                ));
            }
            for r in roots {
                let path = self.root.join(&r);
                let md = fs::symlink_metadata(&path).map_err(|e| format!("{r}: {e}"))?;
                if md.is_dir() {
                    self.walk(&r, &mut |p, _| {
                        let dest = p[r.len()..].trim_start_matches('/').to_string();
                        out.push(Selected {
                            src: self.root.join(p),
                            dest,
                        })
                    })?;
                } else {
                    let name = r.rsplit('/').next().unwrap_or(&r).to_string();
                    out.push(Selected {
                        src: path,
                        dest: name,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Every entry below `rel` (not itself), in byte order, that `.dockerignore` keeps; an
    /// excluded directory is entered only when exceptions may bring files back.
    fn walk(&self, rel: &str, f: &mut dyn FnMut(&str, &fs::Metadata)) -> Result<(), String> {
        let dir = self.root.join(rel);
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let p = if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            };
            let md = fs::symlink_metadata(self.root.join(&p)).map_err(|e| format!("{p}: {e}"))?;
            let excluded = self.ignore.excluded(&p);
            if !excluded {
                f(&p, &md);
            }
            if md.is_dir() && (!excluded || self.ignore.has_exceptions()) {
                self.walk(&p, f)?;
            }
        }
        Ok(())
    }
}

/// The digest of a selection: names, types, modes, owners and contents, no times.
pub fn digest(selected: &[Selected], cache: &mut StatCache) -> Result<String, String> {
    let mut lines: Vec<String> = Vec::new();
    for s in selected {
        let md = fs::symlink_metadata(&s.src).map_err(|e| format!("{}: {e}", s.src.display()))?;
        let ft = md.file_type();
        let what = if ft.is_file() {
            format!(
                "f {}",
                cache
                    .content(&s.src, &md)
                    .map_err(|e| format!("{}: {e}", s.src.display()))?
            )
        } else if ft.is_symlink() {
            let t = fs::read_link(&s.src).map_err(|e| e.to_string())?;
            format!("l {}", t.display())
        } else if ft.is_dir() {
            "d".to_string()
        } else {
            format!("o {:o}", md.mode() & libc::S_IFMT)
        };
        lines.push(format!(
            "{}\0{what}\0{:o}\0{}\0{}\n",
            s.dest,
            md.mode() & 0o7777,
            md.uid(),
            md.gid()
        ));
    }
    lines.sort();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
    }
    Ok(format!("sha256:{:x}", h.finalize()))
}

/// `src` with its directory part resolved inside `root` (symlinks followed as if `root` were
/// `/`): a relative path with no symlink before its last component, so that nothing outside
/// `root` is reached through one.
pub(crate) fn resolve_source(root: &Path, src: &str) -> std::result::Result<String, String> {
    let rel = crate::clean(src);
    let (parent, last) = match rel.rsplit_once('/') {
        Some((p, l)) => (p, l),
        None => return Ok(rel),
    };
    if is_glob(parent) {
        // Globs are matched against the real paths of the root (no symlink is followed).
        return Ok(rel);
    }
    let rootfd = image::fsutil::open_dir(root).map_err(|e| e.to_string())?;
    let fd = match image::fsutil::open_dir_in_root(rootfd.as_fd(), parent.as_bytes()) {
        Ok(fd) => fd,
        Err(_) => return Err("no such file or directory".into()),
    };
    let real = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .map_err(|e| e.to_string())?;
    let root_real = std::fs::canonicalize(root).map_err(|e| e.to_string())?;
    let inside = real
        .strip_prefix(&root_real)
        .map_err(|_| "resolves outside its root".to_string())?;
    let inside = inside.to_string_lossy();
    Ok(if inside.is_empty() {
        last.to_string()
    } else {
        format!("{inside}/{last}")
    })
}

/// The real path of `rel` inside `root`, every symlink (the last one too) followed as if
/// `root` were `/`: what a bind mount of it may use as its source.
pub(crate) fn real_path_in_root(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let rootfd = image::fsutil::open_dir(root).map_err(|e| e.to_string())?;
    let fd = image::fsutil::openat2(
        rootfd.as_fd(),
        crate::clean(rel).as_bytes(),
        libc::O_PATH,
        0,
        image::fsutil::IN_ROOT,
    )
    .map_err(|e| format!("{rel}: {e}"))?;
    let real = fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .map_err(|e| e.to_string())?;
    let root_real = fs::canonicalize(root).map_err(|e| e.to_string())?;
    if !real.starts_with(&root_real) {
        return Err(format!("{rel}: resolves outside its root"));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("src/sub")).unwrap();
        fs::write(r.join("src/a.rs"), "a").unwrap();
        fs::write(r.join("src/sub/b.rs"), "b").unwrap();
        fs::write(r.join("src/notes.md"), "n").unwrap();
        fs::write(r.join("app.py"), "print()").unwrap();
        fs::write(r.join("secret.key"), "k").unwrap();
        std::os::unix::fs::symlink("app.py", r.join("link")).unwrap();
        t
    }

    fn ctx(t: &tempfile::TempDir, ignore: &str) -> Context {
        Context::new(t.path().to_path_buf(), Ignore::parse(ignore).unwrap())
    }

    fn dests(sel: &[Selected]) -> Vec<&str> {
        sel.iter().map(|s| s.dest.as_str()).collect()
    }

    #[test]
    fn selection() {
        let t = tree();
        let c = ctx(&t, "*.key\n**/*.md");
        assert_eq!(
            dests(&c.select(&["src".into()]).unwrap()),
            ["a.rs", "sub", "sub/b.rs"]
        );
        assert_eq!(
            dests(&c.select(&["./app.py".into(), "*.p?".into()]).unwrap()),
            ["app.py", "app.py"]
        );
        assert_eq!(dests(&c.select(&["src/*.rs".into()]).unwrap()), ["a.rs"]);
        assert_eq!(
            c.select(&["secret.key".into()]).unwrap_err(),
            "file not found in build context or excluded by .dockerignore: secret.key"
        );
        assert_eq!(
            c.select(&["../etc/passwd".into()]).unwrap_err(),
            "forbidden path outside the build context: ../etc/passwd"
        );
        assert!(c.select(&["src/../app.py".into()]).is_ok());
        assert!(c.select(&["*.none".into()]).is_err());
        // The whole context, without what is ignored.
        let all = c.select(&[".".into()]).unwrap();
        assert_eq!(
            dests(&all),
            [
                "app.py",
                "link",
                "src",
                "src/a.rs",
                "src/sub",
                "src/sub/b.rs"
            ]
        );
    }

    #[test]
    fn digest_ignores_times_and_reads_each_file_once() {
        let t = tree();
        let c = ctx(&t, "");
        let sel = c.select(&["src".into(), "link".into()]).unwrap();
        let mut cache = StatCache::default();
        let d1 = digest(&sel, &mut cache).unwrap();
        assert_eq!(cache.reads, 3);
        // Unchanged: nothing read again, same digest.
        assert_eq!(digest(&sel, &mut cache).unwrap(), d1);
        assert_eq!(cache.reads, 3);
        // A new mtime alone: read again (the stat changed), same digest.
        let f = t.path().join("src/a.rs");
        let now = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(now)
            .unwrap();
        assert_eq!(digest(&sel, &mut cache).unwrap(), d1);
        // Content, mode, a name: another digest.
        fs::write(&f, "A").unwrap();
        let d2 = digest(&sel, &mut cache).unwrap();
        assert_ne!(d2, d1);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(digest(&sel, &mut cache).unwrap(), d2);
        // The cache survives a save and a load.
        let p = t.path().join("cache.json");
        cache.save(&p).unwrap();
        let mut loaded = StatCache::load(&p);
        digest(&sel, &mut loaded).unwrap();
        assert_eq!(loaded.reads, 0);
    }
    #[test]
    fn sources_resolve_inside_their_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/x"), "").unwrap();
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        assert_eq!(resolve_source(root, "/lib/x").unwrap(), "usr/lib/x");
        // Up and out is the root itself: the host's /etc is never reached.
        assert!(resolve_source(root, "up/etc/passwd").is_err());
        assert_eq!(resolve_source(root, "up/usr/lib/x").unwrap(), "usr/lib/x");
        assert_eq!(resolve_source(root, "x").unwrap(), "x");
    }

    #[test]
    fn real_paths_stay_in_their_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::write(root.join("f"), "").unwrap();
        std::os::unix::fs::symlink("/f", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("host")).unwrap();
        let real = fs::canonicalize(root).unwrap();
        assert_eq!(real_path_in_root(root, "abs").unwrap(), real.join("f"));
        // The host's /etc/passwd is never what it names.
        assert!(real_path_in_root(root, "host").is_err());
    }
}
