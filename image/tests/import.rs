//! Import and unpack real images (umoci + skopeo made, from busybox-static) into a store, as
//! root. Skipped (with a message) where the tools or root are missing.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use image::import::{import, ImportOptions};
use image::snapshot::{self, Mode};
use image::{Quiet, Store};

macro_rules! fixture_or_skip {
    () => {
        match common::fixture() {
            Ok(f) => f,
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        }
    };
}

#[test]
fn oci_archive_import_unpack_and_gc() {
    let f = fixture_or_skip!();
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path(), Some(Mode::Overlay)).unwrap();
    let recs = import(&store, &f.archive, &ImportOptions::default(), &Quiet).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].name, "docker.io/library/busybox:latest");
    let rec = store.image("busybox").unwrap();
    assert_eq!(rec.layers.len(), 1);
    let top = rec.top_chain_id().unwrap();
    let busybox = store.snapshots.fs_path(&top).join("bin/busybox");
    assert!(busybox.is_file());
    assert_eq!(
        std::fs::metadata(&busybox).unwrap().len(),
        std::fs::metadata(common::BUSYBOX).unwrap().len()
    );
    // Importing again fetches and unpacks nothing new.
    let blobs_before = store.content.list().unwrap().len();
    import(&store, &f.archive, &ImportOptions::default(), &Quiet).unwrap();
    assert_eq!(store.content.list().unwrap().len(), blobs_before);
    // By id prefix too.
    assert_eq!(store.image(&rec.id().hex()[..8]).unwrap().name, rec.name);

    // The layered image shares its first layer's snapshot with busybox.
    let recs = import(
        &store,
        &f.layered_archive,
        &ImportOptions::default(),
        &Quiet,
    )
    .unwrap();
    let layered = &recs[0];
    assert_eq!(layered.name, "docker.io/library/layered:latest");
    assert_eq!(layered.layers.len(), 3);
    assert_eq!(layered.chain_ids()[0], top);
    assert_eq!(store.snapshots.list_committed().unwrap().len(), 3);

    // A container's rootfs: overlay of the three snapshots.
    let mounts = store
        .snapshots
        .prepare("ctr1", layered.top_chain_id().as_ref())
        .unwrap();
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    snapshot::mount_all(&mounts, &mnt).unwrap();
    let check = std::panic::catch_unwind(|| check_layered_rootfs(&mnt));
    std::fs::write(mnt.join("tmp/written"), "x").unwrap();
    snapshot::unmount(&mnt).unwrap();
    check.unwrap();
    assert!(store
        .snapshots
        .active_fs_path("ctr1")
        .join("tmp/written")
        .is_file());

    // GC keeps everything in use: images and the container's snapshot chain.
    store
        .delete_image("docker.io/library/layered:latest")
        .unwrap();
    let r = store.gc().unwrap();
    assert!(r.snapshots.is_empty(), "the container still uses them");
    assert_eq!(store.snapshots.list_committed().unwrap().len(), 3);
    assert!(
        r.blobs.len() >= 3,
        "layered's manifest, config, 2 layers: {r:?}"
    );
    store.snapshots.remove("ctr1").unwrap();
    let r = store.gc().unwrap();
    assert_eq!(r.snapshots.len(), 2);
    assert!(store.snapshots.exists(&top));
    // Removing the last image leaves an empty store.
    store
        .delete_image("docker.io/library/busybox:latest")
        .unwrap();
    store.gc().unwrap();
    assert!(store.content.list().unwrap().is_empty());
    assert!(store.snapshots.list_committed().unwrap().is_empty());
}

fn check_layered_rootfs(root: &Path) {
    assert_eq!(
        std::fs::read_to_string(root.join("data/keep")).unwrap(),
        "keep\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/new")).unwrap(),
        "new\n"
    );
    assert!(!root.join("data/gone").exists(), "whited out");
    assert!(!root.join("data/sub").exists(), "whited out");
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
}

#[test]
fn layout_dir_import_with_copy_fallback() {
    let f = fixture_or_skip!();
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path(), Some(Mode::Copy)).unwrap();
    // The layout holds two tags: --name is refused, the default names are <dir>:<tag>.
    let opts = ImportOptions {
        name: Some("x".into()),
        ..Default::default()
    };
    assert!(import(&store, &f.layout, &opts, &Quiet).is_err());
    let mut names: Vec<_> = import(&store, &f.layout, &ImportOptions::default(), &Quiet)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "docker.io/library/layout:busybox",
            "docker.io/library/layout:layered"
        ]
    );
    let rec = store.image("layout:layered").unwrap();
    let mounts = store
        .snapshots
        .prepare("c", rec.top_chain_id().as_ref())
        .unwrap();
    assert_eq!(mounts[0].typ, "bind");
    check_layered_rootfs(&store.snapshots.active_fs_path("c"));
}

#[test]
fn docker_save_archive_import() {
    let f = fixture_or_skip!();
    let t = tempfile::tempdir().unwrap();
    let archive = t.path().join("docker.tar");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:layered", f.layout.display()))
        .arg(format!(
            "docker-archive:{}:myrepo/layered:v1",
            archive.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Compressed docker archives are accepted too.
    let gz = t.path().join("docker.tar.gz");
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -1 -c {} > {}",
            archive.display(),
            gz.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    for a in [&archive, &gz] {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path(), None).unwrap();
        let recs = import(&store, a, &ImportOptions::default(), &Quiet).unwrap();
        assert_eq!(recs[0].name, "docker.io/myrepo/layered:v1");
        assert_eq!(recs[0].layers.len(), 3);
        let view = store
            .snapshots
            .prepare("c", recs[0].top_chain_id().as_ref())
            .unwrap();
        let mnt = t.path().join("m");
        std::fs::create_dir_all(&mnt).unwrap();
        snapshot::mount_all(&view, &mnt).unwrap();
        let r = std::panic::catch_unwind(|| check_layered_rootfs(&mnt));
        snapshot::unmount(&mnt).unwrap();
        r.unwrap();
        assert!(std::fs::read_dir(store_dir.path().join("ingest"))
            .unwrap()
            .next()
            .is_none());
    }
}

#[test]
fn concurrent_imports_of_one_image() {
    let f = fixture_or_skip!();
    let t = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let store = Store::open(t.path(), None).unwrap();
                import(
                    &store,
                    &f.layered_archive,
                    &ImportOptions::default(),
                    &Quiet,
                )
                .unwrap();
            });
        }
    });
    let store = Store::open(t.path(), None).unwrap();
    assert_eq!(store.snapshots.list_committed().unwrap().len(), 3);
    assert!(store.snapshots.list_active().unwrap().is_empty());
    assert!(std::fs::read_dir(t.path().join("ingest"))
        .unwrap()
        .next()
        .is_none());
}
