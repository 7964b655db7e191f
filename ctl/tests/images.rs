//! `tag`, `history`, `image inspect`, `save` and `load` end to end on the busybox fixture;
//! docker's, podman's and containerd's loading of `save` archives is tested in the
//! integration crate against the real tools.

mod support;

use support::*;

#[test]
fn tag_inspect_history_save_and_load() {
    let Some(e) = env() else { return };
    e.import_busybox();
    e.ok(&["tag", "busybox", "localhost:5000/tools/bb:v1"]);
    let id = e.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]);
    assert!(id.starts_with("sha256:") && id.len() == 72, "{id}");
    assert_eq!(
        e.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            "localhost:5000/tools/bb:v1"
        ]),
        id
    );
    let tags = e.ok(&["image", "inspect", "-f", "{{json .RepoTags}}", "busybox"]);
    assert_eq!(
        tags.trim(),
        r#"["busybox:latest","localhost:5000/tools/bb:v1"]"#
    );
    let v: serde_json::Value =
        serde_json::from_str(&e.ok(&["image", "inspect", "busybox"])).unwrap();
    assert_eq!(v[0]["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert!(v[0]["Size"].as_u64().unwrap() > 1_000_000);
    let o = e.run(&["image", "inspect", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    let hist = e.ok(&["history", "busybox"]);
    let lines: Vec<&str> = hist.lines().collect();
    assert!(lines[0].starts_with("IMAGE"), "{hist}");
    assert!(lines[1].starts_with(&id.trim()[7..19]), "{hist}");
    assert!(lines.last().unwrap().contains("umoci repack"), "{hist}");
    assert_eq!(
        e.ok(&["history", "-q", "busybox"]).lines().count(),
        lines.len() - 1
    );

    // save, then load into another store: the same image, under both names.
    let archive = e.root.path().join("out.tar");
    e.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "busybox",
        "localhost:5000/tools/bb:v1",
    ]);
    let Some(f) = env() else { return };
    let out = f.ok(&["load", "-i", archive.to_str().unwrap(), "-q"]);
    assert!(out.contains("docker.io/library/busybox:latest"), "{out}");
    assert!(out.contains("localhost:5000/tools/bb:v1"), "{out}");
    assert_eq!(
        f.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            "localhost:5000/tools/bb:v1"
        ]),
        id
    );
    let o = f.run_ctr(&["--rm", "busybox", "echo", "loaded"]);
    assert_eq!(stdout(&o), "loaded\n");
    // load from stdin.
    let Some(g) = env() else { return };
    let o = g
        .cmd(&["load"])
        .stdin(std::fs::File::open(&archive).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(g.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]), id);
    // No temp file stays behind.
    let ingest: Vec<_> = std::fs::read_dir(g.root.path().join("ingest"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(ingest.is_empty(), "{ingest:?}");
    e.assert_clean();
}
