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

/// `commit`: a running container's changes (paused while read) as a new image with `-c`
/// changes and `-m`; the runtime's mount points are not in the layer.
#[test]
fn commit_a_running_container() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "cm",
        "busybox",
        "sh",
        "-c",
        "echo changed > /etc/motd; rm /bin/vi; mkdir /newdir; touch /ready; sleep 100",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for _ in 0..100 {
        if e.run(&["exec", "cm", "test", "-e", "/ready"])
            .status
            .success()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let id = e.ok(&[
        "commit",
        "-c",
        r#"CMD ["cat", "/etc/motd"]"#,
        "-c",
        "ENV COMMITTED=1",
        "-m",
        "my change",
        "cm",
        "committed:1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    // Still running after the pause.
    assert!(e.ok(&["ps"]).contains("cm"));
    let o = e.run_ctr(&["--rm", "committed:1"]);
    assert_eq!(
        stdout(&o),
        "changed\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = e.run_ctr(&[
        "--rm",
        "committed:1",
        "sh",
        "-c",
        "echo $COMMITTED; ls -d /newdir; ls /bin/vi 2>&1; true",
    ]);
    assert_eq!(
        stdout(&o),
        "1\n/newdir\nls: /bin/vi: No such file or directory\n"
    );
    let hist = e.ok(&["history", "--no-trunc", "committed:1"]);
    assert!(hist.lines().nth(1).unwrap().contains("my change"), "{hist}");
    // Only what the container changed: no mount points of the runtime's.
    let names = e.layer_names("committed:1", 1).pop().unwrap();
    assert_eq!(
        names,
        ["bin", "bin/.wh.vi", "etc", "etc/motd", "newdir", "ready"]
    );
    // Not while it runs unpaused: it could swap a directory for a symlink to / meanwhile
    // (found in review).
    let o = e.run(&["commit", "--pause=false", "cm"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = e.run(&["commit", "-c", "RUN true", "cm"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("RUN cannot be changed"));
    e.ok(&["rm", "-f", "cm"]);
    e.assert_clean();
}
