//! Images with many layers: a generated 60-layer OCI layout (past the ~40 layers at which
//! `lowerdir=` with absolute paths no longer fits in mount(2)'s one page), imported and
//! unpacked, then mounted as a container rootfs with each overlay strategy (root only; the test
//! thread first moves into a private mount namespace of its own, so nothing can leak). A layer
//! count over overlayfs's 500 is refused with a clear error.

use std::io::Write;
use std::path::{Path, PathBuf};

use image::import::{import, ImportOptions};
use image::overlay::{self, Strategy};
use image::snapshot;
use image::{Digest, Quiet, Store};

const LAYERS: usize = 60;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tar layer: `layers/<i>` (a file per layer), `top` overwritten by every layer, and in
/// layer 30 a whiteout of `layers/7` and an opaque `dir`.
fn layer_tar(i: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add(&format!("layers/{i}"), format!("{i}\n").as_bytes());
    add("top", format!("{i}\n").as_bytes());
    if i < 30 {
        add(&format!("dir/below-{i}"), b"x");
    }
    if i == 30 {
        add("layers/.wh.7", b"");
        add("dir/.wh..wh..opq", b"");
        add("dir/kept", b"30");
    }
    b.into_inner().unwrap()
}

fn write_blob(layout: &Path, data: &[u8]) -> (Digest, u64) {
    let d = Digest::of(data);
    std::fs::write(layout.join("blobs/sha256").join(d.hex()), data).unwrap();
    (d, data.len() as u64)
}

/// An OCI layout with one image of `n` gzip layers, tag `many`.
fn make_layout(dir: &Path, n: usize) -> PathBuf {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..n {
        let tar = layer_tar(i);
        diff_ids.push(Digest::of(&tar).to_string());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let (d, size) = write_blob(&layout, &gz.finish().unwrap());
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.to_string(), "size": size,
        }));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cs) = write_blob(&layout, &serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd.to_string(), "size": cs},
        "layers": layers,
    });
    let (md, ms) = write_blob(&layout, &serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": md.to_string(), "size": ms,
                       "annotations": {"io.containerd.image.name": "docker.io/library/many:latest"}}],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    layout
}

fn check_rootfs(r: &Path, n: usize) {
    assert_eq!(
        std::fs::read_to_string(r.join("top")).unwrap(),
        format!("{}\n", n - 1)
    );
    for i in 0..n {
        let p = r.join(format!("layers/{i}"));
        assert_eq!(p.exists(), i != 7, "{}", p.display());
    }
    let mut dir: Vec<String> = std::fs::read_dir(r.join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dir.sort();
    assert_eq!(dir, vec!["kept".to_string()]);
}

#[test]
fn sixty_layers_unpack_and_mount() {
    let t = tempfile::tempdir().unwrap();
    let layout = make_layout(t.path(), LAYERS);
    let store = Store::open(&t.path().join("root"), None).unwrap();
    let recs = import(&store, &layout, &ImportOptions::default(), &Quiet).unwrap();
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec.layers.len(), LAYERS);
    let top = rec.top_chain_id().unwrap();
    assert_eq!(store.snapshots.chain(&top).unwrap().len(), LAYERS);

    if !is_root() || !snapshot::overlay_supported() {
        eprintln!("skipping the overlay mounts: needs root and overlayfs");
        return;
    }
    // Mounts go into a private mount namespace of this test process, so nothing can leak.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();

    let mounts = store.snapshots.prepare("ctr-many", Some(&top)).unwrap();
    assert_eq!(mounts[0].typ, "overlay");
    let data = mounts[0].options.join(",");
    assert!(
        data.len() > 4096,
        "the test must exceed a page: {}",
        data.len()
    );
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // Auto, then each strategy that can hold 60 layers, by itself.
    for s in [Strategy::Auto, Strategy::FsConfig, Strategy::ShortLinks] {
        match overlay::mount(&mounts[0].options, &mnt, s) {
            Ok(used) => {
                eprintln!("{s:?}: mounted with {used:?}");
                check_rootfs(&mnt, LAYERS);
                // The container's layer is writable.
                std::fs::write(mnt.join("new"), "w").unwrap();
                snapshot::unmount(&mnt).unwrap();
                assert!(store
                    .snapshots
                    .active_fs_path("ctr-many")
                    .join("new")
                    .exists());
                std::fs::remove_file(store.snapshots.active_fs_path("ctr-many").join("new"))
                    .unwrap();
            }
            // Before Linux 6.8 overlayfs has no lowerdir+: only that may fail.
            Err(e) if s == Strategy::FsConfig && e.to_string().contains("unsupported") => {
                eprintln!("FsConfig not available here: {e}");
            }
            Err(e) => panic!("{s:?}: {e}"),
        }
    }
    // The plain strategy cannot: a clear error, no mount.
    let e = overlay::mount(&mounts[0].options, &mnt, Strategy::Plain).unwrap_err();
    assert!(e.to_string().contains("mount overlay"), "{e}");
    // A read-only view of 60 layers, through Mount::mount (Auto).
    let view = store.snapshots.view("view-many", &top).unwrap();
    snapshot::mount_all(&view, &mnt).unwrap();
    check_rootfs(&mnt, LAYERS);
    snapshot::unmount(&mnt).unwrap();
    store.snapshots.remove("view-many").unwrap();
    store.snapshots.remove("ctr-many").unwrap();
}

#[test]
fn over_500_layers_is_refused_clearly() {
    let lowers: Vec<String> = (0..600).map(|i| format!("/nonexistent/{i}/fs")).collect();
    let m = snapshot::Mount {
        typ: "overlay".into(),
        source: "overlay".into(),
        options: vec![format!("lowerdir={}", lowers.join(":"))],
    };
    let e = m.mount(Path::new("/nonexistent-target")).unwrap_err();
    assert!(e.to_string().contains("600 lower layers"), "{e}");
    assert!(e.to_string().contains("at most 500"), "{e}");
}
