//! A snapshotter in containerd's model: `prepare`, `view`, `commit`, `mounts`, `remove`.
//!
//! Layout under `<data root>/snapshots/`:
//! - `committed/<hex of ChainID>/fs`: one immutable layer, in overlayfs upper-dir form (whiteouts
//!   as 0/0 character devices, opaque directories marked with `trusted.overlay.opaque`), plus
//!   `info.json` naming its parent. Shared by every image that has this layer stack.
//! - `active/<key>/{fs,work}`: a writable snapshot (a container's own layer, or a layer being
//!   unpacked), plus `info.json`.
//!
//! A layer is unpacked into a fresh active snapshot and committed by renaming the whole
//! directory (`renameat2(RENAME_NOREPLACE)`), so a half-unpacked layer is never visible under
//! its ChainID; of two processes unpacking the same layer, one rename wins and the other's copy
//! is removed.
//!
//! Mounts: an active snapshot with parents is an overlay of the parents' `fs` dirs with its own
//! upper/work dirs; without parents a bind mount. Where overlayfs cannot be used (`Mode::Copy`),
//! `prepare` merges the parents into the snapshot's own `fs` (see `layer::merge_layers`) and the
//! mount is a bind mount.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Committed,
    Active,
    View,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Overlay,
    Copy,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Info {
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
    /// Seconds since the epoch.
    pub created: u64,
    /// Set for snapshots prepared by `prepare_diff` (unpacking a layer: never merged in copy
    /// mode).
    #[serde(default)]
    pub diff: bool,
    /// The mode the snapshot was prepared in.
    #[serde(default = "default_copy")]
    pub copy: bool,
}

fn default_copy() -> bool {
    false
}

/// A mount in containerd's form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub typ: String,
    pub source: String,
    pub options: Vec<String>,
}

impl Mount {
    /// Mount it on `target`.
    pub fn mount(&self, target: &Path) -> Result<()> {
        use nix::mount::{mount, MsFlags};
        match self.typ.as_str() {
            "bind" => {
                mount(
                    Some(self.source.as_str()),
                    target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .ctx("bind mount on", target)?;
                if self.options.iter().any(|o| o == "ro") {
                    mount(
                        None::<&str>,
                        target,
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                        None::<&str>,
                    )
                    .ctx("remount read-only", target)?;
                }
                Ok(())
            }
            "overlay" => {
                crate::overlay::mount(&self.options, target, crate::overlay::Strategy::Auto)?;
                Ok(())
            }
            other => Err(Error::Unsupported(format!("mount type {other}"))),
        }
    }
}

/// Mount `mounts` (one, as this snapshotter makes) on `target`.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for m in mounts {
        m.mount(target)?;
    }
    Ok(())
}

/// Unmount `target`; not mounted is fine. Falls back to a lazy unmount when busy.
pub fn unmount(target: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    loop {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue, // stacked mounts: unmount them all
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                umount2(target, MntFlags::MNT_DETACH).ctx("unmount (lazy)", target)?;
            }
            Err(e) => return Err(Error::io(format!("unmount {}", target.display()), e.into())),
        }
    }
}

/// Whether overlayfs is listed by the kernel.
pub fn overlay_supported() -> bool {
    fs::read_to_string("/proc/filesystems")
        .map(|s| {
            s.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        })
        .unwrap_or(false)
}

#[derive(Clone, Debug)]
pub struct Snapshotter {
    root: PathBuf,
    mode: Mode,
}

/// Active snapshot keys: letters, digits, `.`, `_`, `-`; 1 to 128 of them; not starting with `.`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl Snapshotter {
    /// The snapshotter under data root `root`. `mode` None: overlay when the kernel has it.
    pub fn open(root: &Path, mode: Option<Mode>) -> Result<Snapshotter> {
        let s = root.join("snapshots");
        let text = s.to_string_lossy();
        if text.contains(',') || text.contains(':') {
            return Err(Error::invalid(
                "data root",
                format!("{text:?}: ',' and ':' cannot be used in overlay mount options"),
            ));
        }
        for d in ["committed", "active"] {
            fs::create_dir_all(s.join(d)).ctx("create", &s.join(d))?;
        }
        let mode = mode.unwrap_or(if overlay_supported() {
            Mode::Overlay
        } else {
            Mode::Copy
        });
        Ok(Snapshotter { root: s, mode })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn committed_dir(&self, name: &Digest) -> PathBuf {
        self.root.join("committed").join(name.hex())
    }
    fn active_dir(&self, key: &str) -> PathBuf {
        self.root.join("active").join(key)
    }

    /// The directory with the content of committed snapshot `name`.
    pub fn fs_path(&self, name: &Digest) -> PathBuf {
        self.committed_dir(name).join("fs")
    }
    /// The upper (writable) directory of active snapshot `key`.
    pub fn active_fs_path(&self, key: &str) -> PathBuf {
        self.active_dir(key).join("fs")
    }

    pub fn exists(&self, name: &Digest) -> bool {
        self.committed_dir(name).join("info.json").is_file()
    }

    fn read_info(dir: &Path) -> Result<Info> {
        let p = dir.join("info.json");
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!("snapshot {}", dir.display())))
            }
            Err(e) => return Err(Error::io(format!("read {}", p.display()), e)),
        };
        Ok(serde_json::from_slice(&data)?)
    }

    pub fn info(&self, name: &Digest) -> Result<Info> {
        Self::read_info(&self.committed_dir(name)).map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!("snapshot {name}")),
            e => e,
        })
    }

    pub fn active_info(&self, key: &str) -> Result<Info> {
        if !valid_key(key) {
            return Err(Error::invalid("snapshot key", key));
        }
        Self::read_info(&self.active_dir(key)).map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!("snapshot {key}")),
            e => e,
        })
    }

    /// `name` and its ancestors, top-most first.
    pub fn chain(&self, name: &Digest) -> Result<Vec<Digest>> {
        let mut out = vec![name.clone()];
        let mut cur = self.info(name)?.parent;
        while let Some(p) = cur {
            if out.len() > 1000 {
                return Err(Error::invalid("snapshot chain", "loop or over 1000 layers"));
            }
            cur = self.info(&p)?.parent;
            out.push(p);
        }
        Ok(out)
    }

    fn create_active(
        &self,
        key: &str,
        parent: Option<&Digest>,
        kind: Kind,
        diff: bool,
    ) -> Result<PathBuf> {
        self.create_active_checked(key, parent, kind, diff, true)
    }

    fn create_active_checked(
        &self,
        key: &str,
        parent: Option<&Digest>,
        kind: Kind,
        diff: bool,
        check_parent: bool,
    ) -> Result<PathBuf> {
        if !valid_key(key) {
            return Err(Error::invalid(
                "snapshot key",
                format!("{key:?}: use letters, digits, '.', '_', '-'"),
            ));
        }
        if let (Some(p), true) = (parent, check_parent) {
            if !self.exists(p) {
                return Err(Error::NotFound(format!("parent snapshot {p}")));
            }
        }
        let dir = self.active_dir(key);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(format!("snapshot {key}")))
            }
            Err(e) => return Err(Error::io(format!("create {}", dir.display()), e)),
        }
        let r = (|| {
            if kind == Kind::Active || self.mode == Mode::Copy {
                fs::create_dir(dir.join("fs")).ctx("create", &dir.join("fs"))?;
            }
            if kind == Kind::Active && self.mode == Mode::Overlay && !diff {
                fs::create_dir(dir.join("work")).ctx("create", &dir.join("work"))?;
            }
            if self.mode == Mode::Copy && !diff {
                if let Some(p) = parent {
                    let mut layers: Vec<PathBuf> =
                        self.chain(p)?.iter().map(|d| self.fs_path(d)).collect();
                    layers.reverse();
                    crate::layer::merge_layers(&layers, &dir.join("fs"))?;
                }
            }
            let info = Info {
                kind,
                parent: parent.cloned(),
                created: fsutil::now_secs(),
                diff,
                copy: self.mode == Mode::Copy,
            };
            // Not synced: an active snapshot need not survive a crash; commit syncs.
            fsutil::write_atomic_unsynced(
                &dir.join("info.json"),
                &serde_json::to_vec_pretty(&info)?,
            )
        })();
        if let Err(e) = r {
            let _ = fsutil::remove_path(&dir);
            return Err(e);
        }
        Ok(dir)
    }

    /// A writable snapshot on top of `parent`; returns its mounts.
    pub fn prepare(&self, key: &str, parent: Option<&Digest>) -> Result<Vec<Mount>> {
        self.create_active(key, parent, Kind::Active, false)?;
        self.mounts(key)
    }

    /// A read-only view of `parent`; returns its mounts.
    pub fn view(&self, key: &str, parent: &Digest) -> Result<Vec<Mount>> {
        self.create_active(key, Some(parent), Kind::View, false)?;
        self.mounts(key)
    }

    /// A writable snapshot for unpacking one layer on top of `parent`: returns the directory to
    /// apply the layer to (in overlay upper form, whatever the mode) and the parents' content
    /// directories, top-most first (`ApplyOptions::lowers`).
    pub fn prepare_diff(
        &self,
        key: &str,
        parent: Option<&Digest>,
    ) -> Result<(PathBuf, Vec<PathBuf>)> {
        let dir = self.create_active(key, parent, Kind::Active, true)?;
        let lowers = match parent {
            Some(p) => self.chain(p)?.iter().map(|d| self.fs_path(d)).collect(),
            None => Vec::new(),
        };
        Ok((dir.join("fs"), lowers))
    }

    /// Like `prepare_diff`, for a layer unpacked while its parent is still being unpacked
    /// (parallel unpack): the parent need not be committed yet (it must be before this one is:
    /// `commit_all` in order), and no lowers are returned; the directories the layer implies get
    /// their attributes later (`layer::fix_implicit_dirs`). Returns the directory to apply to.
    pub fn prepare_diff_detached(&self, key: &str, parent: Option<&Digest>) -> Result<PathBuf> {
        let dir = self.create_active_checked(key, parent, Kind::Active, true, false)?;
        Ok(dir.join("fs"))
    }

    /// The mounts of active snapshot or view `key`.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let info = self.active_info(key)?;
        let dir = self.active_dir(key);
        let ro = info.kind == Kind::View;
        let bind = |src: &Path| Mount {
            typ: "bind".into(),
            source: src.to_string_lossy().into_owned(),
            options: if ro {
                vec!["ro".into(), "rbind".into()]
            } else {
                vec!["rw".into(), "rbind".into()]
            },
        };
        if info.copy || info.diff {
            return Ok(vec![bind(&dir.join("fs"))]);
        }
        let chain = match &info.parent {
            Some(p) => self.chain(p)?,
            None => Vec::new(),
        };
        let lowers: Vec<String> = chain
            .iter()
            .map(|d| self.fs_path(d).to_string_lossy().into_owned())
            .collect();
        match (info.kind, lowers.len()) {
            (Kind::View, 1) => Ok(vec![bind(&self.fs_path(&chain[0]))]),
            (Kind::View, _) => Ok(vec![Mount {
                typ: "overlay".into(),
                source: "overlay".into(),
                options: vec![format!("lowerdir={}", lowers.join(":"))],
            }]),
            (_, 0) => Ok(vec![bind(&dir.join("fs"))]),
            _ => Ok(vec![Mount {
                typ: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    format!("lowerdir={}", lowers.join(":")),
                    format!("upperdir={}", dir.join("fs").display()),
                    format!("workdir={}", dir.join("work").display()),
                ],
            }]),
        }
    }

    /// Commit active snapshot `key` as `name`. Returns false when `name` already existed (the
    /// active snapshot is then removed: another process committed the same content first).
    pub fn commit(&self, name: &Digest, key: &str) -> Result<bool> {
        Ok(self.commit_all(&[(name, key)])?[0])
    }

    /// Commit active snapshots (`(name, key)`, parents before children) with one `syncfs` for
    /// all: each one's content and info are on disk before any of them becomes visible under
    /// its name. Returns, for each, whether it was committed (false: `name` already existed, the
    /// active snapshot is removed). On an error, the ones before it are committed and the rest
    /// left active (the caller removes them).
    pub fn commit_all(&self, items: &[(&Digest, &str)]) -> Result<Vec<bool>> {
        for (_, key) in items {
            let mut info = self.active_info(key)?;
            if info.kind != Kind::Active {
                return Err(Error::invalid(
                    "commit",
                    format!("{key} is not an active snapshot"),
                ));
            }
            let dir = self.active_dir(key);
            let _ = fsutil::remove_path(&dir.join("work"));
            info.kind = Kind::Committed;
            info.created = fsutil::now_secs();
            // Made durable with the content by the syncfs below.
            fsutil::write_atomic_unsynced(
                &dir.join("info.json"),
                &serde_json::to_vec_pretty(&info)?,
            )?;
        }
        if let Some((_, key)) = items.first() {
            fsutil::syncfs(&self.active_dir(key))?;
        }
        let mut out = Vec::with_capacity(items.len());
        for (name, key) in items {
            let dir = self.active_dir(key);
            let dest = self.committed_dir(name);
            if fsutil::rename_noreplace(&dir, &dest)? {
                out.push(true);
            } else {
                fsutil::remove_path(&dir)?;
                out.push(false);
            }
        }
        if out.iter().any(|&c| c) {
            fsutil::sync_dir(&self.root.join("committed"))?;
        }
        Ok(out)
    }

    /// Remove active snapshot or view `key` (unmount it first).
    pub fn remove(&self, key: &str) -> Result<()> {
        if !valid_key(key) {
            return Err(Error::invalid("snapshot key", key));
        }
        self.remove_dir(&self.active_dir(key))
    }

    /// Remove committed snapshot `name` (the caller makes sure nothing uses it).
    pub fn remove_committed(&self, name: &Digest) -> Result<()> {
        self.remove_dir(&self.committed_dir(name))
    }

    /// Rename out of sight first (atomic disappearance), then delete.
    fn remove_dir(&self, dir: &Path) -> Result<()> {
        if !dir.exists() {
            return Ok(());
        }
        let trash = self
            .root
            .join(format!(".removing-{}", fsutil::random_hex(8)));
        fs::rename(dir, &trash).ctx("rename", dir)?;
        fsutil::remove_path(&trash)
    }

    /// The bytes of content committed snapshot `name` holds (regular files' sizes, as docker's
    /// layer size counts them); computed once, then kept beside it (snapshots do not change).
    pub fn size(&self, name: &Digest) -> Result<u64> {
        let cached = self.committed_dir(name).join("size");
        if let Some(n) = fs::read_to_string(&cached)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Ok(n);
        }
        fn walk(dir: &Path) -> std::io::Result<u64> {
            let mut n = 0;
            for e in fs::read_dir(dir)? {
                let e = e?;
                let md = e.metadata()?;
                if md.is_dir() {
                    n += walk(&e.path())?;
                } else if md.is_file() {
                    n += md.len();
                }
            }
            Ok(n)
        }
        let fs_dir = self.fs_path(name);
        let n = walk(&fs_dir).ctx("measure", &fs_dir)?;
        let _ = fsutil::write_atomic(&cached, n.to_string().as_bytes());
        Ok(n)
    }

    /// Committed snapshots.
    pub fn list_committed(&self) -> Result<Vec<(Digest, Info)>> {
        let mut out = Vec::new();
        let d = self.root.join("committed");
        for e in fs::read_dir(&d).ctx("read", &d)? {
            let e = e.ctx("read", &d)?;
            let Some(n) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(dg) = Digest::parse(&format!("sha256:{n}")) else {
                continue;
            };
            if let Ok(info) = self.info(&dg) {
                out.push((dg, info));
            }
        }
        Ok(out)
    }

    /// Active snapshots and views (keys whose info is unreadable are listed with `None`).
    pub fn list_active(&self) -> Result<Vec<(String, Option<Info>)>> {
        let mut out = Vec::new();
        let d = self.root.join("active");
        for e in fs::read_dir(&d).ctx("read", &d)? {
            let e = e.ctx("read", &d)?;
            let Some(n) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let info = Self::read_info(&e.path()).ok();
            out.push((n, info));
        }
        Ok(out)
    }

    /// Remove leftovers of interrupted removals (call with the store's exclusive lock held).
    pub fn clean_trash(&self) -> Result<()> {
        for e in fs::read_dir(&self.root).ctx("read", &self.root)? {
            let e = e.ctx("read", &self.root)?;
            if e.file_name().to_string_lossy().starts_with(".removing-") {
                fsutil::remove_path(&e.path())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{apply, ApplyOptions};

    fn tar_with(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (n, c) in files {
            let mut h = tar::Header::new_ustar();
            h.set_path(n).unwrap();
            h.set_size(c.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, c.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn commit_layer(
        s: &Snapshotter,
        parent: Option<&Digest>,
        name: &Digest,
        files: &[(&str, &str)],
    ) {
        let key = format!("extract-{}", name.short());
        let (fs_dir, lowers) = s.prepare_diff(&key, parent).unwrap();
        apply(
            &fs_dir,
            &tar_with(files)[..],
            &ApplyOptions::overlay(lowers),
        )
        .unwrap();
        assert!(s.commit(name, &key).unwrap());
    }

    #[test]
    fn prepare_commit_mounts_remove() {
        let t = tempfile::tempdir().unwrap();
        for mode in [Mode::Overlay, Mode::Copy] {
            let root = t.path().join(format!("{mode:?}"));
            let s = Snapshotter::open(&root, Some(mode)).unwrap();
            let a = Digest::of(b"a");
            let b = Digest::of(b"b");
            commit_layer(&s, None, &a, &[("x", "1"), ("y", "1")]);
            commit_layer(&s, Some(&a), &b, &[("y", "2"), (".wh.x", "")]);
            assert_eq!(s.chain(&b).unwrap(), vec![b.clone(), a.clone()]);
            // A second commit of the same content loses the race gracefully.
            let (d, _) = s.prepare_diff("again", Some(&a)).unwrap();
            std::fs::write(d.join("y"), "2").unwrap();
            assert!(!s.commit(&b, "again").unwrap());
            assert!(s.active_info("again").is_err());

            let m = s.prepare("ctr", Some(&b)).unwrap();
            assert_eq!(m.len(), 1);
            match mode {
                Mode::Overlay => {
                    assert_eq!(m[0].typ, "overlay");
                    let lower = format!(
                        "lowerdir={}:{}",
                        s.fs_path(&b).display(),
                        s.fs_path(&a).display()
                    );
                    assert_eq!(m[0].options[0], lower);
                }
                Mode::Copy => {
                    assert_eq!(m[0].typ, "bind");
                    let fs_dir = s.active_fs_path("ctr");
                    assert_eq!(std::fs::read_to_string(fs_dir.join("y")).unwrap(), "2");
                    assert!(!fs_dir.join("x").exists());
                }
            }
            assert!(s.prepare("ctr", Some(&b)).is_err(), "keys are unique");
            assert!(s.prepare("../evil", None).is_err());
            let v = s.view("v", &a).unwrap();
            if mode == Mode::Overlay {
                assert_eq!(v[0].typ, "bind");
                assert!(v[0].options.contains(&"ro".to_string()));
            }
            s.remove("ctr").unwrap();
            s.remove("v").unwrap();
            assert!(s.list_active().unwrap().is_empty());
            s.remove_committed(&b).unwrap();
            assert!(!s.exists(&b));
            assert_eq!(s.list_committed().unwrap().len(), 1);
        }
    }
}
