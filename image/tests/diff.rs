//! The layer differ (issue 12): an overlayfs-style upper directory (whiteouts as 0/0 character
//! devices, an opaque directory, hard links, a symlink, a FIFO, setuid, owners, xattrs) as a
//! tar, applied back with `layer::apply` in overlay mode: the same tree comes out. The tar is
//! the same for the same tree, and `clamp_mtime` bounds every time. Root only (mknod, chown,
//! trusted.* xattrs).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use image::diff::{diff_upper, write_layer, DiffOptions};
use image::layer::{apply, ApplyOptions};

fn setxattr(p: &Path, k: &str, v: &[u8]) -> bool {
    let cp = CString::new(p.as_os_str().as_bytes()).unwrap();
    let ck = CString::new(k).unwrap();
    // SAFETY: valid strings and buffer.
    unsafe { libc::lsetxattr(cp.as_ptr(), ck.as_ptr(), v.as_ptr().cast(), v.len(), 0) == 0 }
}

fn getxattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let cp = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: valid string and buffer.
    let n = unsafe { libc::llistxattr(cp.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let mut out = BTreeMap::new();
    if n <= 0 {
        return out;
    }
    for k in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|k| !k.is_empty())
    {
        let ck = CString::new(k).unwrap();
        let mut v = vec![0u8; 4096];
        // SAFETY: valid strings and buffer.
        let m =
            unsafe { libc::lgetxattr(cp.as_ptr(), ck.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if m >= 0 {
            v.truncate(m as usize);
            out.insert(String::from_utf8_lossy(k).into_owned(), v);
        }
    }
    out
}

/// Every entry below `root`: type, mode, owner, content or target, device, xattrs, mtime (s),
/// and which entries share an inode.
fn describe(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = md.file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                let mut s = String::new();
                fs::File::open(&p).unwrap().read_to_string(&mut s).unwrap();
                let first = inodes
                    .entry(md.ino())
                    .or_insert_with(|| rel.clone())
                    .clone();
                format!("file {s:?} inode-of {first}")
            } else {
                format!("node rdev {}", md.rdev())
            };
            let mtime = if ft.is_symlink() { 0 } else { md.mtime() };
            out.push(format!(
                "{rel} {what} mode {:o} {}:{} mtime {mtime} xattrs {:?}",
                md.mode() & 0o7777,
                md.uid(),
                md.gid(),
                getxattrs(&p)
            ));
        }
    }
    out.sort();
    out
}

fn mknod(p: &Path, mode: libc::mode_t, dev: libc::dev_t) {
    let cp = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(
        unsafe { libc::mknod(cp.as_ptr(), mode, dev) },
        0,
        "mknod {}",
        p.display()
    );
}

fn set_mtime(p: &Path, secs: i64) {
    let cp = CString::new(p.as_os_str().as_bytes()).unwrap();
    let t = [libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    }; 2];
    // SAFETY: a valid path and times.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cp.as_ptr(),
            t.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}

#[test]
fn an_upper_dir_round_trips_through_its_layer() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (mknod, chown, trusted.* xattrs)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::write(upper.join("etc/conf"), "x").unwrap();
    fs::set_permissions(upper.join("etc/conf"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(upper.join("etc/conf"), Some(1000), Some(1001)).unwrap();
    fs::create_dir(upper.join("bin")).unwrap();
    fs::write(upper.join("bin/tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(upper.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("etc/conf", upper.join("link")).unwrap();
    fs::create_dir(upper.join("a")).unwrap();
    fs::write(upper.join("a/hard1"), "shared").unwrap();
    fs::hard_link(upper.join("a/hard1"), upper.join("a/hard2")).unwrap();
    mknod(&upper.join("gone"), libc::S_IFCHR, 0);
    mknod(&upper.join("etc/gone-too"), libc::S_IFCHR, 0);
    mknod(&upper.join("fifo"), libc::S_IFIFO | 0o600, 0);
    fs::create_dir(upper.join("opq")).unwrap();
    fs::write(upper.join("opq/new"), "n").unwrap();
    let opaque = setxattr(&upper.join("opq"), "trusted.overlay.opaque", b"y");
    let user_xattr = setxattr(&upper.join("etc/conf"), "user.test", b"1");
    for p in [
        "etc/conf", "bin/tool", "a/hard1", "fifo", "opq/new", "opq", "a", "bin", "etc",
    ] {
        set_mtime(&upper.join(p), 1_600_000_000);
    }

    let mut tar = Vec::new();
    let stats = diff_upper(&upper, &mut tar, &DiffOptions::default()).unwrap();
    assert_eq!(stats.whiteouts, 2);
    assert_eq!(stats.hardlinks, 1);
    assert_eq!(stats.opaque_dirs, u64::from(opaque));

    // The names, in order, as a layer has them.
    let mut names = Vec::new();
    let mut a = tar::Archive::new(&tar[..]);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        names.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
    }
    let mut want = vec![
        "a/",
        "a/hard1",
        "a/hard2",
        "bin/",
        "bin/tool",
        "etc/",
        "etc/conf",
        "etc/.wh.gone-too",
        "fifo",
        ".wh.gone",
        "link",
        "opq/",
    ];
    if opaque {
        want.push("opq/.wh..wh..opq");
    }
    want.push("opq/new");
    assert_eq!(names, want);

    // Applied back as an overlay layer: the same tree.
    let back = t.path().join("back");
    fs::create_dir(&back).unwrap();
    apply(&back, &tar[..], &ApplyOptions::overlay(Vec::new())).unwrap();
    assert_eq!(describe(&back), describe(&upper));
    if user_xattr {
        assert_eq!(getxattrs(&back.join("etc/conf"))["user.test"], b"1");
    }

    // Deterministic, and clamped.
    let mut again = Vec::new();
    diff_upper(&upper, &mut again, &DiffOptions::default()).unwrap();
    assert!(again == tar, "the same tree gives the same tar");
    let mut clamped = Vec::new();
    diff_upper(
        &upper,
        &mut clamped,
        &DiffOptions {
            clamp_mtime: Some(1000),
            ..Default::default()
        },
    )
    .unwrap();
    let mut a = tar::Archive::new(&clamped[..]);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        assert!(e.header().mtime().unwrap() <= 1000);
    }
}

#[test]
fn redirect_and_metacopy_uppers_are_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (trusted.* xattrs)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    fs::create_dir(t.path().join("moved")).unwrap();
    if !setxattr(&t.path().join("moved"), "trusted.overlay.redirect", b"/old") {
        eprintln!("skipped: no trusted.* xattrs here");
        return;
    }
    let err = diff_upper(t.path(), std::io::sink(), &DiffOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("redirect_dir and metacopy are not supported"),
        "{err}"
    );
}

/// A layer written to the store: a gzip blob whose digest and DiffID (the digest of the tar)
/// are what they claim, the same blob for the same tree, and the tree comes back from it.
#[test]
fn a_written_layer_is_reproducible_and_applies() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir_all(upper.join("usr/bin")).unwrap();
    fs::write(upper.join("usr/bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(
        upper.join("usr/bin/hello"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    set_mtime(&upper.join("usr/bin/hello"), 1_700_000_000);
    let store = image::Store::open(&t.path().join("store"), None).unwrap();
    let opts = DiffOptions {
        clamp_mtime: Some(1_600_000_000),
        ..Default::default()
    };
    let l1 = write_layer(&store.content, &upper, &opts).unwrap();
    let blob = store.content.read(&l1.record.digest).unwrap();
    assert_eq!(image::Digest::of(&blob), l1.record.digest);
    assert_eq!(blob.len() as u64, l1.record.size);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(image::Digest::of(&tar), l1.record.diff_id);
    // Again, 1 s later: the same blob.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let l2 = write_layer(&store.content, &upper, &opts).unwrap();
    assert_eq!(l2.record.digest, l1.record.digest);
    // Applied: the tree, with its time clamped.
    let back = t.path().join("back");
    fs::create_dir(&back).unwrap();
    apply(&back, &tar[..], &ApplyOptions::overlay(Vec::new())).unwrap();
    let md = fs::metadata(back.join("usr/bin/hello")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o755);
    assert_eq!(md.mtime(), 1_600_000_000);
    assert_eq!(
        fs::read_to_string(back.join("usr/bin/hello")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
}

/// A layer and a config as an image in the store (OCI), unpacked to a snapshot; then an image
/// on top of it with no new layer in docker's format (media types converted, history kept).
#[test]
fn a_written_image_is_stored_and_unpacks() {
    use image::commit::{config_of, write_image, Format, NewImage};
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir_all(upper.join("app")).unwrap();
    fs::write(upper.join("app/main.sh"), "echo app\n").unwrap();
    let store = image::Store::open(&t.path().join("store"), None).unwrap();
    let layer = write_layer(&store.content, &upper, &DiffOptions::default()).unwrap();
    let mut config = serde_json::Map::new();
    config.insert("Cmd".into(), serde_json::json!(["/app/main.sh"]));
    let created = "2026-12-06T00:00:00Z".to_string();
    let rec = write_image(
        &store,
        NewImage {
            names: &["localhost/built:1".to_string()],
            base_config: None,
            layers: vec![layer.record.clone()],
            history: vec![serde_json::json!({"created": created, "created_by": "COPY app /app"})],
            config,
            created: created.clone(),
            format: Format::Oci,
        },
    )
    .unwrap();
    let again = store.image("localhost/built:1").unwrap();
    assert_eq!(again.config, rec.config);
    let cfg: serde_json::Value =
        serde_json::from_slice(&store.content.read(&rec.config).unwrap()).unwrap();
    assert_eq!(
        cfg["rootfs"]["diff_ids"][0],
        layer.record.diff_id.to_string()
    );
    assert_eq!(cfg["config"]["Cmd"][0], "/app/main.sh");
    store.unpack(&rec, &image::Quiet).unwrap();
    let top = store.snapshots.fs_path(&rec.top_chain_id().unwrap());
    assert_eq!(
        fs::read_to_string(top.join("app/main.sh")).unwrap(),
        "echo app\n"
    );

    let mut config = serde_json::Map::new();
    config.insert("Healthcheck".into(), serde_json::json!({"Test": ["NONE"]}));
    let rec2 = write_image(
        &store,
        NewImage {
            names: &[
                "localhost/built:2".to_string(),
                "localhost/other".to_string(),
            ],
            base_config: Some(config_of(&store, &rec).unwrap()),
            layers: rec.layers.clone(),
            history: vec![
                serde_json::json!({"created": created, "created_by": "HEALTHCHECK NONE",
                                             "empty_layer": true}),
            ],
            config,
            created,
            format: Format::Docker,
        },
    )
    .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.content.read(&rec2.manifest).unwrap()).unwrap();
    assert_eq!(manifest["mediaType"], image::images::media::DOCKER_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        image::images::media::DOCKER_CONFIG
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        image::images::media::DOCKER_LAYER_GZIP
    );
    assert_eq!(
        manifest["layers"][0]["digest"],
        layer.record.digest.to_string()
    );
    let cfg2: serde_json::Value =
        serde_json::from_slice(&store.content.read(&rec2.config).unwrap()).unwrap();
    assert_eq!(cfg2["history"].as_array().unwrap().len(), 2);
    assert_eq!(rec2.chain_ids(), rec.chain_ids());
    assert_eq!(rec2.name, "localhost/built:2");
    assert_eq!(
        store.image("localhost/other:latest").unwrap().config,
        rec2.config
    );
}
