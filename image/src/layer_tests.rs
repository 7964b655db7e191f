//! One test per confinement rule of `apply`, and the whiteout rules.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// A tar built entry by entry with raw names (the `tar` crate's own setters refuse `..` and
/// absolute names, which is exactly what these tests need to write).
struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Tar {
    fn new() -> Self {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }
    fn raw(&mut self, name: &str, kind: tar::EntryType, link: &str, mode: u32, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name = [0; 100];
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            g.linkname = [0; 100];
            g.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Directory, "", 0o755, b"");
        self
    }
    fn file(&mut self, name: &str, data: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Regular, "", 0o644, data.as_bytes());
        self
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Symlink, target, 0o777, b"");
        self
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, tar::EntryType::Link, target, 0o644, b"");
        self
    }
    fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

/// A sandbox: `root` (where layers go) and `outside` (must never be written), siblings.
struct Sandbox {
    _t: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "orig").unwrap();
        Sandbox {
            _t: t,
            root,
            outside,
        }
    }
    fn apply(&self, tar: &[u8]) -> Result<ApplyStats> {
        apply(&self.root, tar, &ApplyOptions::overlay(Vec::new()))
    }
    /// `outside` holds exactly its one original file, unchanged.
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")]);
        let m = std::fs::symlink_metadata(self.outside.join("secret")).unwrap();
        assert!(m.is_file());
        assert_eq!(m.nlink(), 1);
        assert_eq!(
            std::fs::read_to_string(self.outside.join("secret")).unwrap(),
            "orig"
        );
        let parent = self.outside.parent().unwrap();
        let mut top: Vec<_> = std::fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        top.sort();
        assert_eq!(top, vec!["outside", "root"]);
    }
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn absolute_names_are_contained() {
    let s = Sandbox::new();
    let abs = format!("{}/evil", s.outside.display());
    s.apply(&Tar::new().file("/etc/passwd", "x").file(&abs, "y").finish())
        .unwrap();
    assert_eq!(read(s.root.join("etc/passwd")), "x");
    assert_eq!(read(s.root.join(abs.trim_start_matches('/'))), "y");
    s.assert_outside_untouched();
}

#[test]
fn dotdot_is_contained() {
    let s = Sandbox::new();
    s.apply(
        &Tar::new()
            .file("../outside/secret", "a")
            .file("x/../../../outside/b", "b")
            .file("./../../c", "c")
            .finish(),
    )
    .unwrap();
    assert_eq!(read(s.root.join("outside/secret")), "a");
    assert_eq!(read(s.root.join("outside/b")), "b");
    assert_eq!(read(s.root.join("c")), "c");
    s.assert_outside_untouched();
}

#[test]
fn symlinked_parents_resolve_inside_the_root() {
    let s = Sandbox::new();
    let abs_out = s.outside.display().to_string();
    s.apply(
        &Tar::new()
            .dir("etc/")
            .symlink("abs", "/etc")
            .symlink("up", "../../../../../..")
            .symlink("hostdir", &abs_out)
            .file("abs/passwd", "p")
            .file("up/at-root", "r")
            .finish(),
    )
    .unwrap();
    assert_eq!(read(s.root.join("etc/passwd")), "p");
    assert_eq!(read(s.root.join("at-root")), "r");
    // Through a link to the real outside directory: resolved inside the root, where that path
    // does not exist as a directory: refused or contained, never outside.
    let r = s.apply(&Tar::new().file("hostdir/secret", "pwned").finish());
    if r.is_ok() {
        assert_eq!(
            read(s.root.join(abs_out.trim_start_matches('/')).join("secret")),
            "pwned"
        );
    }
    s.assert_outside_untouched();
}

#[test]
fn symlink_pointing_out_is_replaced_not_followed() {
    let s = Sandbox::new();
    let secret = format!("{}/secret", s.outside.display());
    s.apply(
        &Tar::new()
            .symlink("f", &secret)
            .file("f", "new")
            .symlink("d", &s.outside.display().to_string())
            .dir("d/")
            .finish(),
    )
    .unwrap();
    let m = std::fs::symlink_metadata(s.root.join("f")).unwrap();
    assert!(m.is_file());
    assert_eq!(read(s.root.join("f")), "new");
    assert!(std::fs::symlink_metadata(s.root.join("d"))
        .unwrap()
        .is_dir());
    // A symlink that points out is stored as it is: harmless inside the snapshot.
    s.apply(&Tar::new().symlink("l", &secret).finish()).unwrap();
    assert_eq!(
        std::fs::read_link(s.root.join("l")).unwrap(),
        PathBuf::from(&secret)
    );
    s.assert_outside_untouched();
}

#[test]
fn hardlinks_pointing_out_are_refused() {
    let s = Sandbox::new();
    let secret = format!("{}/secret", s.outside.display());
    for target in [
        "../outside/secret".to_string(),
        secret.clone(),
        "/etc/passwd".to_string(),
    ] {
        let err = s
            .apply(&Tar::new().hardlink("h", &target).finish())
            .unwrap_err();
        assert!(matches!(err, Error::Unsafe { .. }), "{target}: {err}");
    }
    // Through a symlinked parent: resolved inside the root, so not found.
    let err = s
        .apply(
            &Tar::new()
                .symlink("s", &s.outside.display().to_string())
                .hardlink("h2", "s/secret")
                .finish(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Unsafe { .. }), "{err}");
    // A hard link to a symlink that points out links the symlink itself.
    s.apply(
        &Tar::new()
            .symlink("l", &secret)
            .hardlink("h3", "l")
            .file("inside", "i")
            .hardlink("h4", "./x/../inside")
            .finish(),
    )
    .unwrap();
    assert!(std::fs::symlink_metadata(s.root.join("h3"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(read(s.root.join("h4")), "i");
    assert_eq!(std::fs::metadata(s.root.join("inside")).unwrap().nlink(), 2);
    s.assert_outside_untouched();
}

#[test]
fn hardlink_to_a_directory_is_refused() {
    let s = Sandbox::new();
    let err = s
        .apply(&Tar::new().dir("d/").hardlink("h", "d").finish())
        .unwrap_err();
    assert!(matches!(err, Error::Unsafe { .. }), "{err}");
}

#[test]
fn device_nodes_are_skipped_or_refused() {
    let s = Sandbox::new();
    let mut t = Tar::new();
    t.dir("dev/");
    t.raw("dev/sda", tar::EntryType::Block, "", 0o660, b"");
    t.raw("dev/mem", tar::EntryType::Char, "", 0o660, b"");
    t.raw("fifo", tar::EntryType::Fifo, "", 0o640, b"");
    let tar = t.finish();
    let st = s.apply(&tar).unwrap();
    assert_eq!(st.skipped, 2);
    assert!(!s.root.join("dev/sda").exists());
    assert!(std::fs::symlink_metadata(s.root.join("dev/mem")).is_err());
    let m = std::fs::symlink_metadata(s.root.join("fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
    assert_eq!(m.permissions().mode() & 0o7777, 0o640);

    let mut o = ApplyOptions::overlay(Vec::new());
    o.devices = DevicePolicy::Refuse;
    let s2 = Sandbox::new();
    let err = apply(&s2.root, &tar[..], &o).unwrap_err();
    assert!(matches!(err, Error::Unsafe { .. }), "{err}");
}

#[test]
fn duplicate_entries_replace_or_merge() {
    let s = Sandbox::new();
    s.apply(
        &Tar::new()
            .dir("d/")
            .file("d/a", "1")
            .dir("d/") // directory over directory: merged
            .file("d/b", "2")
            .file("x", "file")
            .dir("x/") // directory over a file: replaced
            .dir("y/")
            .file("y/inner", "z")
            .file("y", "now a file") // file over a directory: replaced
            .file("z", "1")
            .file("z", "2")
            .finish(),
    )
    .unwrap();
    assert_eq!(read(s.root.join("d/a")), "1");
    assert_eq!(read(s.root.join("d/b")), "2");
    assert!(s.root.join("x").is_dir());
    assert_eq!(read(s.root.join("y")), "now a file");
    assert_eq!(read(s.root.join("z")), "2");
    s.assert_outside_untouched();
}

#[test]
fn ownership_modes_xattrs_and_times_are_kept() {
    let s = Sandbox::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_path("d/").unwrap();
    h.set_mode(0o1777);
    h.set_uid(123);
    h.set_gid(456);
    h.set_mtime(1_000_000);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, &b""[..]).unwrap();
    // PAX: an xattr, an overlay xattr that must be dropped, and a fractional mtime.
    b.append_pax_extensions([
        ("SCHILY.xattr.user.k", &b"v"[..]),
        ("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..]),
        ("mtime", &b"1234567.5"[..]),
    ])
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("d/suid").unwrap();
    h.set_mode(0o4755);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(1);
    h.set_size(2);
    h.set_cksum();
    b.append(&h, &b"hi"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    s.apply(&tar).unwrap();
    let d = std::fs::metadata(s.root.join("d")).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o1777);
    assert_eq!(
        d.mtime(),
        1_000_000,
        "directory mtime set after its content"
    );
    let f = std::fs::metadata(s.root.join("d/suid")).unwrap();
    assert_eq!(f.mode() & 0o7777, 0o4755);
    assert_eq!(f.mtime(), 1_234_567);
    assert_eq!(f.mtime_nsec(), 500_000_000);
    if nix::unistd::geteuid().is_root() {
        assert_eq!((d.uid(), d.gid()), (123, 456));
        assert_eq!((f.uid(), f.gid()), (1000, 1001));
    }
    let file = File::open(s.root.join("d/suid")).unwrap();
    let xs = xattr_list(file.as_fd()).unwrap();
    let names: Vec<_> = xs
        .iter()
        .map(|(k, _)| k.to_str().unwrap().to_string())
        .collect();
    if !names.is_empty() {
        assert_eq!(names, vec!["user.k".to_string()]);
    }
    assert!(!is_opaque(file.as_fd()));
}

#[test]
fn invalid_whiteouts_are_refused() {
    let s = Sandbox::new();
    for name in ["a/.wh..", "a/.wh.", "a/.wh.."] {
        let err = s.apply(&Tar::new().file(name, "").finish()).unwrap_err();
        assert!(matches!(err, Error::Unsafe { .. }), "{name}: {err}");
    }
    // A whiteout never reaches outside either.
    s.apply(&Tar::new().file("../outside/.wh.secret", "").finish())
        .unwrap();
    s.assert_outside_untouched();
}

fn is_whiteout(p: &Path) -> bool {
    let m = std::fs::symlink_metadata(p).unwrap();
    std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()) && m.rdev() == 0
}

fn layers_for_whiteouts() -> (Vec<u8>, Vec<u8>) {
    let l1 = Tar::new()
        .dir("a/")
        .file("a/f1", "1")
        .file("a/f2", "2")
        .dir("b/")
        .file("b/x", "x")
        .dir("b/sub/")
        .file("b/sub/deep", "d")
        .file("top", "t")
        .finish();
    let l2 = Tar::new()
        .file("a/.wh.f1", "")
        .dir("b/")
        .file("b/.wh..wh..opq", "")
        .file("b/y", "y")
        .file(".wh.top", "")
        .file("c/new", "n") // c/ is not in the tar: created implicitly
        .finish();
    (l1, l2)
}

#[test]
fn whiteouts_in_overlay_form_and_merged() {
    if !nix::unistd::geteuid().is_root() {
        // trusted.* xattrs (opaque directories) need CAP_SYS_ADMIN.
        eprintln!("skipped: overlay-form whiteouts need root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let l1 = t.path().join("l1");
    let l2 = t.path().join("l2");
    std::fs::create_dir(&l1).unwrap();
    std::fs::create_dir(&l2).unwrap();
    let (t1, t2) = layers_for_whiteouts();
    apply(&l1, &t1[..], &ApplyOptions::overlay(Vec::new())).unwrap();
    std::fs::set_permissions(l1.join("a"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let st = apply(&l2, &t2[..], &ApplyOptions::overlay(vec![l1.clone()])).unwrap();
    assert_eq!(st.whiteouts, 3);
    assert!(is_whiteout(&l2.join("a/f1")));
    assert!(is_whiteout(&l2.join("top")));
    // `a/` was implied by the whiteout: it takes its attributes from the layer below.
    assert_eq!(
        std::fs::metadata(l2.join("a")).unwrap().mode() & 0o7777,
        0o750
    );
    assert_eq!(
        std::fs::metadata(l2.join("c")).unwrap().mode() & 0o7777,
        0o755
    );
    let b = File::open(l2.join("b")).unwrap();
    assert!(is_opaque(b.as_fd()));
    assert!(!l2.join("b/.wh..wh..opq").exists());

    // The copy fallback shows what overlayfs would.
    let merged = t.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    merge_layers(&[l1.clone(), l2.clone()], &merged).unwrap();
    check_merged(&merged);

    // And with overlayfs itself, where it can be mounted.
    if nix::unistd::geteuid().is_root() {
        let mnt = t.path().join("mnt");
        let up = t.path().join("up");
        let work = t.path().join("work");
        for d in [&mnt, &up, &work] {
            std::fs::create_dir(d).unwrap();
        }
        let data = format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            l2.display(),
            l1.display(),
            up.display(),
            work.display()
        );
        if nix::mount::mount(
            Some("overlay"),
            &mnt,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .is_ok()
        {
            let r = std::panic::catch_unwind(|| check_merged(&mnt));
            nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH).unwrap();
            r.unwrap();
        }
    }
}

fn check_merged(m: &Path) {
    let mut a: Vec<_> = std::fs::read_dir(m.join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    a.sort();
    assert_eq!(a, vec!["f2"]);
    let mut b: Vec<_> = std::fs::read_dir(m.join("b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    b.sort();
    assert_eq!(b, vec!["y"]);
    assert!(!m.join("top").exists());
    assert_eq!(read(m.join("c/new")), "n");
    assert_eq!(
        std::fs::metadata(m.join("a")).unwrap().mode() & 0o7777,
        0o750
    );
}

#[test]
fn whiteouts_in_delete_form() {
    let t = tempfile::tempdir().unwrap();
    let (t1, t2) = layers_for_whiteouts();
    apply(t.path(), &t1[..], &ApplyOptions::delete()).unwrap();
    std::fs::set_permissions(t.path().join("a"), std::fs::Permissions::from_mode(0o750)).unwrap();
    apply(t.path(), &t2[..], &ApplyOptions::delete()).unwrap();
    check_merged(t.path());
    // An opaque marker keeps what its own layer put there, wherever the marker comes.
    let t3 = Tar::new()
        .file("b/z1", "1")
        .file("b/.wh..wh..opq", "")
        .file("b/z2", "2")
        .finish();
    apply(t.path(), &t3[..], &ApplyOptions::delete()).unwrap();
    let mut b: Vec<_> = std::fs::read_dir(t.path().join("b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    b.sort();
    assert_eq!(b, vec!["z1", "z2"]);
}

#[test]
fn compressed_blobs_and_diff_ids() {
    let t = tempfile::tempdir().unwrap();
    let tar = Tar::new().dir("d/").file("d/f", "content").finish();
    let diff_id = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (i, blob) in [tar.clone(), gz, zst].into_iter().enumerate() {
        let p = t.path().join(format!("blob{i}"));
        std::fs::write(&p, &blob).unwrap();
        let root = t.path().join(format!("root{i}"));
        std::fs::create_dir(&root).unwrap();
        let (st, d) = apply_blob(
            &root,
            &p,
            Some(&diff_id),
            &ApplyOptions::overlay(Vec::new()),
        )
        .unwrap();
        assert_eq!(d, diff_id);
        assert_eq!(st.bytes, 7);
        assert_eq!(read(root.join("d/f")), "content");
        let root2 = t.path().join(format!("bad{i}"));
        std::fs::create_dir(&root2).unwrap();
        let err = apply_blob(
            &root2,
            &p,
            Some(&Digest::of(b"x")),
            &ApplyOptions::overlay(Vec::new()),
        )
        .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    }
    // A corrupt gzip stream is an error, not a partial success.
    let p = t.path().join("corrupt");
    std::fs::write(&p, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]).unwrap();
    let root = t.path().join("rootc");
    std::fs::create_dir(&root).unwrap();
    assert!(apply_blob(&root, &p, None, &ApplyOptions::overlay(Vec::new())).is_err());
}

#[test]
fn clean_name_rules() {
    let c = |s: &str| {
        clean_name(s.as_bytes())
            .iter()
            .map(|c| String::from_utf8(c.clone()).unwrap())
            .collect::<Vec<_>>()
            .join("/")
    };
    assert_eq!(c("/etc/passwd"), "etc/passwd");
    assert_eq!(c("./a//b/./c/"), "a/b/c");
    assert_eq!(c("../../x"), "x");
    assert_eq!(c("a/../../b"), "b");
    assert_eq!(c("./"), "");
}

/// A small fuzzer on stable Rust: byte-level mutations of a hostile archive (escaping names,
/// links, whiteouts, PAX headers) never panic and never write outside the root.
#[test]
fn mutated_tar_input_never_escapes() {
    let s = Sandbox::new();
    let secret = format!("{}/secret", s.outside.display());
    let mut t = Tar::new();
    t.dir("d/")
        .file("d/f", "data")
        .symlink("up", "../../..")
        .symlink("abs", &secret)
        .file("up/x", "1")
        .hardlink("h", "d/f")
        .hardlink("h2", &secret)
        .file("d/.wh.f", "")
        .file("d/.wh..wh..opq", "")
        .file("../outside/y", "2");
    let base = t.finish();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..400 {
        let mut data = base.clone();
        let flips = 1 + (next() % 8) as usize;
        for _ in 0..flips {
            let i = (next() as usize) % data.len();
            data[i] = match next() % 4 {
                0 => b'/',
                1 => b'.',
                2 => 0,
                _ => next() as u8,
            };
        }
        let root = s.root.join(format!("r{round}"));
        std::fs::create_dir(&root).unwrap();
        let _ = apply(&root, &data[..], &ApplyOptions::overlay(Vec::new()));
        let _ = apply(&root, &data[..], &ApplyOptions::delete());
    }
    s.assert_outside_untouched();
}

#[test]
fn implicit_dirs_fixed_later_match_applying_with_lowers() {
    // The lower layer: a/ 0700, a/b/ 0750, c/ 0711 (the parallel unpack's case: the upper
    // layer is applied before the lower one is known, then fixed up).
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    std::fs::create_dir(&lower).unwrap();
    let mut l = Tar::new();
    l.raw("a/", tar::EntryType::Directory, "", 0o700, b"");
    l.raw("a/b/", tar::EntryType::Directory, "", 0o750, b"");
    l.raw("c/", tar::EntryType::Directory, "", 0o711, b"");
    apply(&lower, &l.finish()[..], &ApplyOptions::overlay(Vec::new())).unwrap();
    // The upper layer implies a/, a/b/, c/ and d/ (not below), carries e/ itself.
    let mut u = Tar::new();
    u.file("a/b/f", "1").file("c/g", "2").file("d/h", "3");
    u.raw("e/", tar::EntryType::Directory, "", 0o701, b"");
    u.file("e/i", "4");
    let upper = u.finish();

    let with_lowers = t.path().join("with");
    std::fs::create_dir(&with_lowers).unwrap();
    let stats = apply(
        &with_lowers,
        &upper[..],
        &ApplyOptions::overlay(vec![lower.clone()]),
    )
    .unwrap();
    let mut implicit = stats.implicit_dirs.clone();
    implicit.sort();
    assert_eq!(
        implicit,
        vec![b"a".to_vec(), b"a/b".to_vec(), b"c".to_vec(), b"d".to_vec()]
    );

    let later = t.path().join("later");
    std::fs::create_dir(&later).unwrap();
    let stats = apply(&later, &upper[..], &ApplyOptions::overlay(Vec::new())).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode(&later.join("a")),
        0o755,
        "before the fix-up: the default"
    );
    fix_implicit_dirs(
        &later,
        &stats.implicit_dirs,
        std::slice::from_ref(&lower),
        false,
    )
    .unwrap();
    for d in ["a", "a/b", "c", "d", "e"] {
        assert_eq!(
            mode(&later.join(d)),
            mode(&with_lowers.join(d)),
            "{d}: fixed up later vs applied with lowers"
        );
    }
    assert_eq!(mode(&later.join("a/b")), 0o750);
    assert_eq!(mode(&later.join("d")), 0o755);
    assert_eq!(mode(&later.join("e")), 0o701);
    // A fix-up never follows a symlink out of the root.
    let s = Sandbox::new();
    std::os::unix::fs::symlink(&s.outside, s.root.join("x")).unwrap();
    let lower2 = t.path().join("lower2");
    std::fs::create_dir_all(lower2.join("x")).unwrap();
    std::fs::set_permissions(lower2.join("x"), std::fs::Permissions::from_mode(0o700)).unwrap();
    fix_implicit_dirs(&s.root, &[b"x".to_vec()], &[lower2], false).unwrap();
    assert_eq!(mode(&s.outside), 0o755);
    s.assert_outside_untouched();
}

#[test]
fn a_layer_that_is_not_a_tar_gets_a_clear_bounded_message() {
    let s = Sandbox::new();
    // Junk with control characters, an escape sequence and invalid UTF-8, 3 KB of it.
    let mut junk: Vec<u8> = (0..3000u32).map(|i| (i * 131 % 256) as u8).collect();
    junk[..9].copy_from_slice(b"\x1b[2J\xff\xfe\n\r\x07");
    for data in [junk, vec![b'A'; 4096]] {
        let e = s.apply(&data).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Invalid { .. }), "{text}");
        assert!(text.contains("not a tar archive"), "{text}");
        assert!(text.len() < 400, "{} bytes: {text}", text.len());
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{fffd}'),
            "{text:?}"
        );
    }
    // Through apply_blob (the path unpacking takes) too, gzip-compressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[0xc3u8; 2048]).unwrap();
    let blob = s.root.parent().unwrap().join("blob");
    std::fs::write(&blob, gz.finish().unwrap()).unwrap();
    let e = apply_blob(&s.root, &blob, None, &ApplyOptions::overlay(Vec::new())).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("not a tar archive") && text.len() < 400,
        "{text}"
    );
    assert!(!text.contains('\u{fffd}'), "{text:?}");
    std::fs::remove_file(&blob).unwrap();
}

#[test]
fn copy_merge_keeps_a_fifo_s_mode_owner_and_mtime() {
    let t = tempfile::tempdir().unwrap();
    let (layer, dest) = (t.path().join("layer"), t.path().join("dest"));
    std::fs::create_dir(&layer).unwrap();
    std::fs::create_dir(&dest).unwrap();
    let mut tar = Tar::new();
    // 0666 shows a umask, 01640 the sticky bit.
    tar.raw("p", tar::EntryType::Fifo, "", 0o666, b"");
    tar.raw("q", tar::EntryType::Fifo, "", 0o1640, b"");
    apply(
        &layer,
        &tar.finish()[..],
        &ApplyOptions::overlay(Vec::new()),
    )
    .unwrap();
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(&layer.join("q"), Some(1234.into()), Some(5678.into())).unwrap();
    }
    merge_layers(std::slice::from_ref(&layer), &dest).unwrap();
    for n in ["p", "q"] {
        let (a, b) = (
            std::fs::symlink_metadata(layer.join(n)).unwrap(),
            std::fs::symlink_metadata(dest.join(n)).unwrap(),
        );
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&b.file_type()));
        assert_eq!(b.mode(), a.mode(), "{n}: mode");
        assert_eq!((b.uid(), b.gid()), (a.uid(), a.gid()), "{n}: owner");
        assert_eq!(
            (b.mtime(), b.mtime_nsec()),
            (1_600_000_000, 0),
            "{n}: mtime"
        );
    }
}

const GIB8: u64 = 8 << 30;

/// A PAX extended header ('x') with `records`, as tar writes it.
fn pax_header(t: &mut Tar, records: &[(&str, &str)]) {
    let mut data = Vec::new();
    for (k, v) in records {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        data.extend_from_slice(format!("{len}{body}").as_bytes());
    }
    t.raw("PaxHeaders/x", tar::EntryType::XHeader, "", 0o644, &data);
}

/// An old-GNU sparse entry ('S') of `real` bytes whose data segments are `segs` (offset,
/// content); over 4 segments the rest go to extension headers.
fn old_gnu_sparse(t: &mut Tar, name: &str, real: u64, segs: &[(u64, &[u8])]) {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o640);
    h.set_mtime(1_600_000_000);
    let data: Vec<u8> = segs
        .iter()
        .flat_map(|(_, d)| {
            let mut v = d.to_vec();
            v.resize(d.len().div_ceil(512) * 512, 0);
            v
        })
        .collect();
    h.set_size(data.len() as u64);
    let g = h.as_gnu_mut().unwrap();
    g.set_real_size(real);
    let seg = |s: &mut tar::GnuSparseHeader, (off, d): &(u64, &[u8])| {
        s.set_offset(*off);
        s.set_length(d.len().div_ceil(512) as u64 * 512);
    };
    for (i, sg) in segs.iter().take(4).enumerate() {
        seg(&mut g.sparse[i], sg);
    }
    let mut ext = Vec::new();
    for chunk in segs[segs.len().min(4)..].chunks(21) {
        let mut e = tar::GnuExtSparseHeader::new();
        for (i, sg) in chunk.iter().enumerate() {
            seg(&mut e.sparse_mut()[i], sg);
        }
        ext.push(e);
    }
    let n = ext.len();
    for (i, e) in ext.iter_mut().enumerate() {
        e.set_is_extended(i + 1 < n);
    }
    g.set_is_extended(n > 0);
    h.set_cksum();
    let w = t.b.get_mut();
    w.extend_from_slice(h.as_bytes());
    for e in &ext {
        w.extend_from_slice(e.as_bytes());
    }
    w.extend_from_slice(&data);
}

/// Size, allocated bytes and the bytes at `at`.
fn sparse_facts(p: &Path, at: &[(u64, usize)]) -> (u64, u64, Vec<Vec<u8>>) {
    use std::os::unix::fs::FileExt;
    let m = std::fs::metadata(p).unwrap();
    let f = File::open(p).unwrap();
    let got = at
        .iter()
        .map(|&(off, n)| {
            let mut b = vec![0u8; n];
            f.read_exact_at(&mut b, off).unwrap();
            b
        })
        .collect();
    (m.len(), m.blocks() * 512, got)
}

#[test]
fn old_gnu_sparse_entries_are_written_sparse() {
    let s = Sandbox::new();
    let a = [b'a'; 512];
    let z = [b'z'; 512];
    let mut t = Tar::new();
    // The issue's bomb: 1.5 KB of tar claiming 8 GiB.
    old_gnu_sparse(
        &mut t,
        "var/log/lastlog",
        GIB8,
        &[(4096, &a), (GIB8 - 512, &z)],
    );
    // Eight segments: four in an extension header.
    let mut segs: Vec<(u64, &[u8])> = (0..7u64).map(|i| (i << 30, &a[..])).collect();
    segs.push((7 << 30, &[])); // GNU tar ends the map at the real size

    old_gnu_sparse(&mut t, "many", 7 << 30, &segs);
    let started = std::time::Instant::now();
    let st = s.apply(&t.finish()).unwrap();
    let took = started.elapsed();
    let (size, alloc, got) = sparse_facts(
        &s.root.join("var/log/lastlog"),
        &[(0, 4), (4096, 512), (1 << 30, 4), (GIB8 - 512, 512)],
    );
    assert_eq!(size, GIB8);
    assert!(
        alloc <= 1 << 20,
        "8 GiB sparse file allocates {alloc} bytes"
    );
    assert_eq!(got, vec![vec![0; 4], a.to_vec(), vec![0; 4], z.to_vec()]);
    let (size, alloc, got) = sparse_facts(&s.root.join("many"), &[(6 << 30, 512), (512, 4)]);
    assert_eq!(size, 7 << 30);
    assert!(alloc <= 1 << 20, "{alloc}");
    assert_eq!(got, vec![a.to_vec(), vec![0; 4]]);
    let m = std::fs::metadata(s.root.join("many")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o640, 1_600_000_000));
    // The layer is measured by what it writes, not by what it claims.
    assert_eq!(st.bytes, 9 * 512);
    println!("old-GNU sparse 8 GiB + 7 GiB: {took:?}, {alloc} bytes allocated");
    s.assert_outside_untouched();
}

#[test]
fn pax_sparse_files_are_real_files_under_their_real_name() {
    let s = Sandbox::new();
    let a = [b'a'; 512];
    let z = [b'z'; 100];
    let mut t = Tar::new();
    // 1.0: the map leads the data, padded to 512 bytes.
    let map = format!("2\n4096\n512\n{}\n100\n", GIB8 - 100);
    let mut data = map.clone().into_bytes();
    data.resize(512, 0);
    data.extend_from_slice(&a);
    data.extend_from_slice(&z);
    pax_header(
        &mut t,
        &[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "var/log/lastlog"),
            ("GNU.sparse.realsize", &GIB8.to_string()),
        ],
    );
    t.raw(
        "var/log/GNUSparseFile.0/lastlog",
        tar::EntryType::Regular,
        "",
        0o600,
        &data,
    );
    // 1.0 without GNU.sparse.name: the GNUSparseFile.N component goes.
    pax_header(
        &mut t,
        &[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.realsize", &GIB8.to_string()),
        ],
    );
    t.raw(
        "d/GNUSparseFile.123/noname",
        tar::EntryType::Regular,
        "",
        0o600,
        &data,
    );
    // 0.1: the map in GNU.sparse.map.
    let mut d01 = a.to_vec();
    d01.extend_from_slice(&z);
    let m01 = format!("4096,512,{},100", GIB8 - 100);
    pax_header(
        &mut t,
        &[
            ("GNU.sparse.size", &GIB8.to_string()),
            ("GNU.sparse.map", &m01),
            ("GNU.sparse.name", "zero-one"),
        ],
    );
    t.raw(
        "GNUSparseFile.9/zero-one",
        tar::EntryType::Regular,
        "",
        0o600,
        &d01,
    );
    // 0.0: repeated offset/numbytes.
    pax_header(
        &mut t,
        &[
            ("GNU.sparse.size", &GIB8.to_string()),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.offset", "4096"),
            ("GNU.sparse.numbytes", "512"),
            ("GNU.sparse.offset", &(GIB8 - 100).to_string()),
            ("GNU.sparse.numbytes", "100"),
        ],
    );
    t.raw("zero-zero", tar::EntryType::Regular, "", 0o600, &d01);
    let st = s.apply(&t.finish()).unwrap();
    for f in ["var/log/lastlog", "d/noname", "zero-one", "zero-zero"] {
        let (size, alloc, got) =
            sparse_facts(&s.root.join(f), &[(0, 4), (4096, 512), (GIB8 - 100, 100)]);
        assert_eq!(size, GIB8, "{f}");
        assert!(alloc <= 1 << 20, "{f}: {alloc}");
        assert_eq!(got, vec![vec![0; 4], a.to_vec(), z.to_vec()], "{f}");
    }
    assert!(!s.root.join("var/log/GNUSparseFile.0").exists());
    assert!(!s.root.join("d/GNUSparseFile.123").exists());
    assert!(!s.root.join("GNUSparseFile.9").exists());
    assert_eq!(st.bytes, 4 * 612);
    s.assert_outside_untouched();
}

#[test]
fn hostile_sparse_maps_are_refused() {
    let gib = GIB8.to_string();
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>);
    let cases: Vec<Case> = vec![
        // Segments out of order.
        (
            "out of order",
            vec![
                ("GNU.sparse.size", gib.clone()),
                ("GNU.sparse.map", "4096,10,0,10".into()),
            ],
            vec![1; 20],
        ),
        // A segment past the end.
        (
            "ends past",
            vec![
                ("GNU.sparse.size", "100".into()),
                ("GNU.sparse.map", "95,10".into()),
            ],
            vec![1; 10],
        ),
        // More data announced than the entry holds.
        (
            "ends early",
            vec![
                ("GNU.sparse.size", gib.clone()),
                ("GNU.sparse.map", "0,4096".into()),
            ],
            vec![1; 10],
        ),
        // An offset that overflows.
        (
            "ends past",
            vec![
                ("GNU.sparse.size", u64::MAX.to_string()),
                ("GNU.sparse.map", format!("{},10", u64::MAX - 5)),
            ],
            vec![1; 10],
        ),
        // 1.0 with a map claiming a billion segments.
        (
            "segments announced",
            vec![
                ("GNU.sparse.major", "1".into()),
                ("GNU.sparse.minor", "0".into()),
                ("GNU.sparse.realsize", gib.clone()),
            ],
            b"1000000000\n0\n".to_vec(),
        ),
        // An unknown format.
        (
            "not supported",
            vec![
                ("GNU.sparse.major", "2".into()),
                ("GNU.sparse.minor", "0".into()),
                ("GNU.sparse.realsize", gib.clone()),
            ],
            vec![],
        ),
    ];
    for (why, recs, data) in cases {
        let s = Sandbox::new();
        let mut t = Tar::new();
        let recs: Vec<(&str, &str)> = recs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pax_header(&mut t, &recs);
        t.raw("f", tar::EntryType::Regular, "", 0o600, &data);
        let err = s.apply(&t.finish()).unwrap_err();
        assert!(matches!(err, Error::Unsafe { .. }), "{why}: {err}");
        assert!(err.to_string().contains(why), "{why}: {err}");
        s.assert_outside_untouched();
    }
    // A claim of 4 EiB: past what ext4 can hold (a clear error, not a hang); tmpfs takes it
    // (sparse, 512 bytes allocated).
    let s = Sandbox::new();
    let mut t = Tar::new();
    old_gnu_sparse(&mut t, "huge", 1 << 62, &[((1 << 62) - 512, &[1u8; 512])]);
    match s.apply(&t.finish()) {
        Err(err) => {
            let text = err.to_string();
            assert!(
                text.contains("huge") && text.contains("bytes claimed: "),
                "{text}"
            );
            assert!(!text.contains("/proc"), "{text}");
        }
        Ok(_) => {
            let (size, alloc, _) = sparse_facts(&s.root.join("huge"), &[]);
            assert_eq!(size, 1 << 62);
            assert!(alloc <= 1 << 20, "{alloc}");
        }
    }
}

#[test]
fn symlinked_parents_to_missing_directories_are_created_inside_the_root() {
    let s = Sandbox::new();
    let abs_out = s.outside.display().to_string();
    s.apply(
        &Tar::new()
            .symlink("hostdir", &abs_out)
            .file("hostdir/secret", "pwned")
            .symlink("opt-link", "/opt/new")
            .file("opt-link/sub/f", "o")
            .symlink("a", "/b")
            .symlink("b", "../../c")
            .file("a/f", "c")
            .finish(),
    )
    .unwrap();
    let inside = s.root.join(abs_out.trim_start_matches('/'));
    assert_eq!(read(inside.join("secret")), "pwned");
    assert_eq!(read(s.root.join("opt/new/sub/f")), "o");
    assert_eq!(read(s.root.join("c/f")), "c");
    for l in ["hostdir", "opt-link", "a", "b"] {
        assert!(std::fs::symlink_metadata(s.root.join(l))
            .unwrap()
            .file_type()
            .is_symlink());
    }
    // A loop is an error naming the entry, not a hang.
    let err = s
        .apply(
            &Tar::new()
                .symlink("x", "y")
                .symlink("y", "/x")
                .file("x/f", "l")
                .finish(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("x/f"), "{err}");
    s.assert_outside_untouched();
}

/// Layer 1 has `etc/data` (0640, mtime 1.6e9), `lib/sym -> data2`, a whited-out `gone` and an
/// opaque `opq/` above `opq/hidden`; layer 2 hard-links to them.
fn lower_link_layers() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut l0 = Tar::new();
    l0.dir("opq/").file("opq/hidden", "h").file("gone", "g");
    let l0 = l0.finish();
    let mut l1 = Tar::new();
    l1.dir("etc/");
    l1.raw(
        "etc/data",
        tar::EntryType::Regular,
        "",
        0o640,
        b"lower data",
    );
    l1.dir("lib/")
        .symlink("lib/sym", "data2")
        .file(".wh.gone", "");
    l1.dir("opq/").file("opq/.wh..wh..opq", "");
    let l1 = l1.finish();
    let mut l2 = Tar::new();
    l2.dir("bin/")
        .hardlink("bin/data-link", "etc/data")
        .hardlink("bin/sym-link", "lib/sym")
        // The target replaced after the link: the link keeps the lower content.
        .hardlink("late", "etc/data")
        .file("etc/data", "new data");
    (l0, l1, l2.finish())
}

#[test]
fn hardlinks_to_a_lower_layer_are_copied_up_as_overlayfs_does() {
    let t = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3).map(|i| t.path().join(format!("l{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
    }
    let (l0, l1, l2) = lower_link_layers();
    apply(&dirs[0], &l0[..], &ApplyOptions::overlay(vec![])).unwrap();
    apply(
        &dirs[1],
        &l1[..],
        &ApplyOptions::overlay(vec![dirs[0].clone()]),
    )
    .unwrap();
    // Applied with its lowers (top-most first), and deferred (the parallel unpack's way).
    let lowers = vec![dirs[1].clone(), dirs[0].clone()];
    let mut deferred = ApplyOptions::overlay(vec![]);
    deferred.defer_lower_links = true;
    let d3 = t.path().join("l2-deferred");
    std::fs::create_dir(&d3).unwrap();
    let st = apply(&d3, &l2[..], &deferred).unwrap();
    assert_eq!(st.lower_links.len(), 3, "{:?}", st.lower_links);
    link_from_lowers(&d3, &st.lower_links, &lowers, deferred.chown).unwrap();
    apply(&dirs[2], &l2[..], &ApplyOptions::overlay(lowers.clone())).unwrap();
    for d in [&dirs[2], &d3] {
        // The target is copied up with its attributes and the link made to it.
        let (a, b) = (
            std::fs::symlink_metadata(d.join("etc/data")).unwrap(),
            std::fs::symlink_metadata(d.join("bin/data-link")).unwrap(),
        );
        assert_eq!(read(d.join("bin/data-link")), "lower data");
        assert_eq!((b.mode() & 0o7777, b.mtime()), (0o640, 1_600_000_000));
        // etc/data was rewritten after the link: the link keeps the copied-up file, as
        // overlayfs (link copies up, the new etc/data replaces that name only).
        assert_eq!(read(d.join("etc/data")), "new data");
        assert_ne!(a.ino(), b.ino());
        assert_eq!(read(d.join("late")), "lower data");
        let s = std::fs::symlink_metadata(d.join("bin/sym-link")).unwrap();
        assert!(s.file_type().is_symlink());
        assert_eq!(
            std::fs::read_link(d.join("bin/sym-link")).unwrap(),
            PathBuf::from("data2")
        );
        assert!(std::fs::symlink_metadata(d.join("lib/sym")).is_ok());
    }
    // Hidden below (a whiteout, an opaque directory) or absent: refused, naming both.
    for (name, target) in [("w", "gone"), ("o", "opq/hidden"), ("n", "nowhere")] {
        let d = t.path().join(format!("bad-{name}"));
        std::fs::create_dir(&d).unwrap();
        let err = apply(
            &d,
            &Tar::new().hardlink(name, target).finish()[..],
            &ApplyOptions::overlay(lowers.clone()),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Unsafe { .. }), "{target}: {err}");
        assert!(err.to_string().contains(target), "{err}");
    }
}
