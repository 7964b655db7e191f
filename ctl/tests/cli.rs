//! End-to-end tests of `berthctl` with the `berth` runtime, as root: import a busybox image made
//! with umoci + skopeo from busybox-static, run containers (foreground, detached, with a
//! terminal), exec, logs, stop, rm, rmi. Each test has its own data root and cleans up after
//! itself: containers (rm -f), mounts under its root, its temp dir, and at exit the cgroup
//! parent this process used (`/berthctl-test-<pid>`, only where empty).
//!
//! The runtime is `BERTH_BIN`, or `berth` next to the berthctl under test (`cargo build -p berth`
//! into the same target dir), or the release build of the same target dir; without it, or
//! without root/umoci/skopeo, tests are skipped with a message.

mod support;

use support::*;

#[test]
fn import_then_run_rm_echo_hi() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let images = e.ok(&["images"]);
    assert!(
        images.contains("busybox") && images.contains("latest"),
        "{images}"
    );
    let o = e.run_ctr(&["--rm", "busybox", "echo", "hi"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o), "hi\n");
    assert_eq!(e.ok(&["ps", "-aq"]), "");
    e.assert_clean();
}

#[test]
fn exit_codes_are_kept_until_rm() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let o = e.run_ctr(&["--name", "three", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    let ps = e.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (3)") && ps.contains("three"), "{ps}");
    assert_eq!(e.ok(&["ps"]).lines().count(), 1, "only the header");
    // The name is taken while the container exists.
    let o = e.run_ctr(&["--name", "three", "busybox", "true"]);
    assert!(!o.status.success());
    e.ok(&["rm", "three"]);
    // An exec failure is an error of run, and leaves nothing behind.
    let o = e.run_ctr(&["--rm", "busybox", "/no/such/binary"]);
    assert!(!o.status.success());
    let o = e.run_ctr(&["--rm", "-d", "busybox", "/no/such/binary"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/binary"));
    e.assert_clean();
}

#[test]
fn detached_logs_exec_stop_rm() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "bg",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-term; exit 0' TERM; echo started; while true; do sleep 0.1; done",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = stdout(&o).trim().to_string();
    assert_eq!(id.len(), 64);
    assert!(e.ok(&["ps"]).contains("Up"));
    // logs: the output so far.
    let mut logs = String::new();
    for _ in 0..50 {
        logs = e.ok(&["logs", "bg"]);
        if logs.contains("started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(logs.contains("started"), "{logs}");
    // exec: output, exit code, user resolved in the image (with additional groups), env, cwd.
    assert_eq!(e.ok(&["exec", "bg", "echo", "from-exec"]), "from-exec\n");
    let o = e.run(&["exec", &id[..12], "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    let idout = e.ok(&["exec", "-u", "user1", "bg", "id"]);
    assert!(
        idout.contains("uid=1000") && idout.contains("2000"),
        "{idout}"
    );
    assert_eq!(
        e.ok(&[
            "exec",
            "-e",
            "X=y",
            "-w",
            "/tmp",
            "bg",
            "sh",
            "-c",
            "echo $X $(pwd)"
        ]),
        "y /tmp\n"
    );
    // stop: the trap runs, the exit is recorded.
    e.ok(&["stop", "-t", "10", "bg"]);
    let ps = e.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (0)"), "{ps}");
    assert!(e.ok(&["logs", "bg"]).contains("got-term"));
    assert!(
        e.mounts_under_root().is_empty(),
        "a stopped container is unmounted"
    );
    e.ok(&["rm", "bg"]);
    e.assert_clean();
}

#[test]
fn detached_with_rm_flag_and_kill() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let id = stdout(&e.run_ctr(&["-d", "--rm", "busybox", "sleep", "1000"]))
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "run -d printed the id");
    assert!(e.ok(&["ps", "-q"]).contains(&id[..12]));
    // rm without -f refuses a running container.
    assert!(!e.run(&["rm", &id]).status.success());
    e.ok(&["kill", &id]);
    // The monitor removes it (--rm).
    for _ in 0..100 {
        if e.ok(&["ps", "-aq"]).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(e.ok(&["ps", "-aq"]), "");
    e.assert_clean();
    // rm -f of a running one.
    let id = stdout(&e.run_ctr(&["-d", "busybox", "sleep", "1000"]))
        .trim()
        .to_string();
    e.ok(&["rm", "-f", &id]);
    e.assert_clean();
}

#[test]
fn terminal_detached_output_goes_to_the_log() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let o = e.run_ctr(&[
        "-d",
        "-t",
        "--name",
        "tty",
        "busybox",
        "sh",
        "-c",
        "tty; echo tty-out",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut logs = String::new();
    for _ in 0..100 {
        logs = e.ok(&["logs", "tty"]);
        if logs.contains("tty-out") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        logs.contains("/dev/pts/0") && logs.contains("tty-out\r\n"),
        "{logs:?}"
    );
    e.ok(&["rm", "-f", "tty"]);
    e.assert_clean();
}

#[test]
fn user_env_workdir_volumes_limits_network() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("f"), "volume\n").unwrap();
    let v = format!("{}:/data:ro", vol.path().display());
    let o = e.run_ctr(&[
        "--rm", "-u", "user1", "-e", "FOO=bar", "-w", "/tmp", "-v", &v, "-m", "64m",
        "--pids-limit", "50", "--cpus", "0.5", "busybox", "sh", "-c",
        "id -u; id -G; echo $FOO $HOME; pwd; cat /data/f; touch /data/x 2>/dev/null || echo read-only; \
         cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; \
         ls /sys/class/net; cat /sys/class/net/lo/flags",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000");
    assert!(
        lines[1].contains("1000") && lines[1].contains("2000"),
        "{out}"
    );
    assert_eq!(lines[2], "bar /home/user1");
    assert_eq!(lines[3], "/tmp");
    assert_eq!(lines[4], "volume");
    assert_eq!(lines[5], "read-only");
    assert_eq!(lines[6], "67108864");
    assert_eq!(lines[7], "50");
    assert_eq!(lines[8], "lo", "--network none: loopback only");
    // ... and up (IFF_UP|IFF_LOOPBACK), as docker and podman have it.
    assert_eq!(lines[9], "0x9", "--network none: lo is up");
    assert!(!vol.path().join("x").exists());
    // --entrypoint, and the host's network.
    let o = e.run_ctr(&[
        "--rm",
        "--network",
        "host",
        "--entrypoint",
        "/bin/echo",
        "busybox",
        "a",
        "b",
    ]);
    assert_eq!(stdout(&o), "a b\n");
    e.assert_clean();
}

#[test]
fn layered_image_and_rmi_gc() {
    let Some(e) = env() else { return };
    e.import_busybox();
    e.ok(&["import", e.fixture.layered_archive.to_str().unwrap()]);
    let o = e.run_ctr(&[
        "--name",
        "l",
        "layered",
        "sh",
        "-c",
        "ls /data; echo changed > /data/keep",
    ]);
    assert_eq!(
        stdout(&o),
        "keep\nnew\n",
        "whiteouts applied: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Another container of the same image does not see the first one's change.
    let o = e.run_ctr(&["--rm", "layered", "cat", "/data/keep"]);
    assert_eq!(stdout(&o), "keep\n");
    // rmi refuses while a container uses the image, then removes only what is unused.
    assert!(!e.run(&["rmi", "layered"]).status.success());
    e.ok(&["rm", "l"]);
    let out = e.ok(&["rmi", "layered"]);
    assert!(
        out.contains("Untagged: docker.io/library/layered:latest"),
        "{out}"
    );
    let snaps = std::fs::read_dir(e.root.path().join("snapshots/committed"))
        .unwrap()
        .count();
    assert_eq!(snaps, 1, "busybox's layer stays");
    assert_eq!(
        stdout(&e.run_ctr(&["--rm", "busybox", "echo", "ok"])),
        "ok\n"
    );
    e.ok(&["rmi", "busybox"]);
    e.ok(&["prune"]);
    assert_eq!(
        std::fs::read_dir(e.root.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    e.assert_clean();
}

/// `start` runs a stopped container again with its writable layer (what the first run wrote
/// is there), `-a` follows its output and gives its exit code, `wait` prints exit codes, and
/// `restart` stops and starts a running one; a foreground container starts detached.
#[test]
fn start_restart_wait_keep_the_writable_layer() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "again",
        "busybox",
        "sh",
        "-c",
        "echo run >> /runs; cat /runs | wc -l; exit 3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(e.ok(&["wait", "again"]), "3\n");
    let o = e.run(&["start", "-a", "again"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Only this run's output; the log keeps both.
    assert_eq!(stdout(&o), "2\n");
    assert_eq!(e.ok(&["logs", "again"]), "1\n2\n");
    assert_eq!(e.ok(&["start", "again"]), "again\n");
    assert_eq!(e.ok(&["wait", "again"]), "3\n");
    assert_eq!(e.ok(&["logs", "again"]), "1\n2\n3\n");
    assert!(e.ok(&["ps", "-a"]).contains("Exited (3)"));
    assert!(e.mounts_under_root().is_empty(), "stopped: unmounted");

    // restart of a running container: a new process (a new pid file line), the layer kept.
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "svc",
        "busybox",
        "sh",
        "-c",
        "echo $$ >> /pids; trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(e.ok(&["restart", "-t", "5", "svc"]), "svc\n");
    assert!(e.ok(&["ps"]).contains("Up"));
    assert_eq!(
        e.ok(&["exec", "svc", "wc", "-l", "/pids"])
            .split_whitespace()
            .next(),
        Some("2")
    );
    // exec -t: a terminal, and TERM as docker sets it. (runc's exec -t needs a terminal of
    // the caller's own, which a test has not: berth only.)
    if e.runtime.file_name().is_some_and(|n| n == "berth") {
        let out = e.ok(&[
            "exec",
            "-t",
            "svc",
            "sh",
            "-c",
            "[ -t 1 ] && echo tty $TERM",
        ]);
        assert!(out.contains("tty xterm"), "{out:?}");
    }
    // start of a running one does nothing.
    assert_eq!(e.ok(&["start", "svc"]), "svc\n");
    e.ok(&["stop", "svc"]);
    assert_eq!(e.ok(&["wait", "svc"]), "0\n");

    // A foreground container starts detached; an unknown one is an error.
    let o = e.run_ctr(&["--name", "fg", "busybox", "sh", "-c", "touch /mark; exit 1"]);
    assert_eq!(o.status.code(), Some(1));
    let o = e.run_ctr(&["--name", "fg2", "busybox", "true"]);
    assert!(o.status.success());
    e.ok(&["rm", "fg2"]);
    e.ok(&["start", "fg"]);
    assert_eq!(e.ok(&["wait", "fg"]), "1\n");
    let o = e.run(&["start", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such container: nope"));
    assert!(e.run(&["start", "-a", "fg", "again"]).status.code() != Some(0));
    for c in ["again", "svc", "fg"] {
        e.ok(&["rm", c]);
    }
    e.assert_clean();
}

/// `inspect` shows a container in docker's shape (the fields scripts read), and an image as
/// `image inspect` does.
#[test]
fn inspect_in_dockers_shape() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let vol = tempfile::tempdir().unwrap();
    let v = format!("{}:/data:ro", vol.path().display());
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "web",
        "-v",
        &v,
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' TERM; while true; do sleep 0.1; done",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = stdout(&o).trim().to_string();
    let all: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "web"])).unwrap();
    let c = &all[0];
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "/web");
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["State"]["Running"], true);
    let pid = c["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_ne!(c["State"]["StartedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(c["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(c["Path"], "sh");
    assert_eq!(c["Config"]["Cmd"][0], "sh");
    assert_eq!(c["Config"]["Image"], "docker.io/library/busybox:latest");
    assert_eq!(c["HostConfig"]["Memory"], 67108864);
    assert_eq!(c["HostConfig"]["NetworkMode"], "none");
    assert_eq!(c["Mounts"][0]["Destination"], "/data");
    assert_eq!(c["Mounts"][0]["RW"], false);
    assert!(c["Image"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        e.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{json .State.Running}} {{.Name}}",
            &id[..12]
        ]),
        "running true /web\n"
    );
    e.ok(&["stop", "web"]);
    assert_eq!(
        e.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}}",
            "web"
        ]),
        "exited 7 0\n"
    );
    let c: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "web"])).unwrap();
    assert_ne!(c[0]["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    // An image by name; an unknown name fails with docker's words.
    let img: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "busybox"])).unwrap();
    assert!(img[0]["RepoTags"].to_string().contains("busybox"), "{img}");
    let o = e.run(&["inspect", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such object: nope"));
    e.ok(&["rm", "web"]);
    e.assert_clean();
}

/// Docker's exit codes when a container cannot start: 127 (no such command), 126 (not
/// executable), 125 (berthctl's own errors, a memory limit under 6 MB); the runtime's log
/// lines are never shown raw.
#[test]
fn docker_exit_codes_for_what_cannot_start() {
    let Some(e) = env() else { return };
    e.import_busybox();
    for detach in [false, true] {
        let mut args = vec!["--rm"];
        if detach {
            args.push("-d");
        }
        let with = |extra: &[&str]| {
            let mut a = args.clone();
            a.extend_from_slice(extra);
            e.run_ctr(&a)
        };
        let o = with(&["busybox", "nosuchcmd"]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(127), "detach {detach}: {err}");
        assert!(err.contains("executable file not found"), "{err}");
        assert!(
            !err.contains("level=error") && !err.contains("time="),
            "raw log line: {err}"
        );
        let o = with(&["busybox", "/etc/passwd"]);
        assert_eq!(o.status.code(), Some(126), "detach {detach}");
        let o = with(&["-m", "4m", "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(String::from_utf8_lossy(&o.stderr).contains("Minimum memory limit allowed is 6MB"));
    }
    // The container's own codes pass through.
    let o = e.run_ctr(&["--rm", "busybox", "sh", "-c", "exit 126"]);
    assert_eq!(o.status.code(), Some(126));
    let o = e.run_ctr(&["--rm", "busybox", "sh", "-c", "exit 1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Without --rm a container that could not start stays, as docker's does.
    for (name, detach) in [("bad", false), ("bad-d", true)] {
        let o = if detach {
            e.run_ctr(&["--name", name, "-d", "busybox", "nosuchcmd"])
        } else {
            e.run_ctr(&["--name", name, "busybox", "nosuchcmd"])
        };
        assert_eq!(o.status.code(), Some(127));
        assert_eq!(
            e.ok(&["inspect", "-f", "{{.State.ExitCode}}", name]),
            "127\n"
        );
        e.ok(&["rm", name]);
    }
    e.assert_clean();
}

/// `cp` in both directions by docker's path rules, running and stopped, and confined to the
/// container's rootfs: a symlink in the container to `/` (or to a host-looking path) leads to
/// the container's own files, never the host's.
#[test]
fn cp_in_and_out_stays_in_the_rootfs() {
    use std::os::unix::fs::MetadataExt;
    let Some(e) = env() else { return };
    e.import_busybox();
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    let hs = h.to_string_lossy().into_owned();
    std::fs::write(h.join("hostmark"), "host only\n").unwrap();
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "box",
        "busybox",
        "sh",
        "-c",
        &format!(
            "mkdir -p /d/sub {hs}; echo inner > /d/sub/f; chown 1000:1000 /d/sub/f; \
             ln -s / /d/up; ln -s {hs}/planted /d/abs; touch /ready; \
             trap 'exit 0' TERM; while true; do sleep 0.1; done"
        ),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Its setup is done when /ready is there (the checks below say what is missing).
    within_5s(|| {
        e.run(&["exec", "box", "test", "-e", "/ready"])
            .status
            .success()
    });
    // Out: a file, then a directory (new name), its symlinks copied as symlinks.
    e.ok(&["cp", "box:/d/sub/f", &format!("{hs}/f")]);
    assert_eq!(std::fs::read_to_string(h.join("f")).unwrap(), "inner\n");
    assert_eq!(std::fs::metadata(h.join("f")).unwrap().uid(), 0);
    e.ok(&["cp", "-a", "box:/d/sub/f", &format!("{hs}/fa")]);
    assert_eq!(std::fs::metadata(h.join("fa")).unwrap().uid(), 1000);
    e.ok(&["cp", "box:/d", &format!("{hs}/out")]);
    assert_eq!(
        std::fs::read_to_string(h.join("out/sub/f")).unwrap(),
        "inner\n"
    );
    assert_eq!(
        std::fs::read_link(h.join("out/up")).unwrap(),
        std::path::Path::new("/")
    );
    // Into an existing directory: under its own name.
    e.ok(&["cp", "box:/d/sub", &format!("{hs}/out")]);
    assert!(h.join("out/sub/f").is_file());
    // Through the container's symlink to /: the container's /, not the host's.
    let o = e.run(&[
        "cp",
        &format!("box:/d/up{hs}/hostmark"),
        &format!("{hs}/leak"),
    ]);
    assert!(!o.status.success(), "read the host's file through /d/up");
    assert!(!h.join("leak").exists());
    // In: through /d/up, the file lands in the container's directory; onto the dangling
    // symlink /d/abs, it replaces the link in the container; the host gets nothing.
    std::fs::write(h.join("newfile"), "new\n").unwrap();
    e.ok(&["cp", &format!("{hs}/newfile"), &format!("box:/d/up{hs}/")]);
    assert_eq!(
        e.ok(&["exec", "box", "cat", &format!("{hs}/newfile")]),
        "new\n"
    );
    e.ok(&["cp", &format!("{hs}/newfile"), "box:/d/abs"]);
    assert!(
        !h.join("planted").exists(),
        "wrote through the container's symlink"
    );
    assert_eq!(e.ok(&["exec", "box", "cat", "/d/abs"]), "new\n");
    // A directory's content with /.; owners are the container's root's without -a.
    std::fs::create_dir(h.join("tree")).unwrap();
    std::fs::write(h.join("tree/a"), "a\n").unwrap();
    e.ok(&["cp", &format!("{hs}/tree/."), "box:/d/sub"]);
    assert_eq!(
        e.ok(&["exec", "box", "stat", "-c", "%u %s", "/d/sub/a"]),
        "0 2\n"
    );
    // Stopped: out and in through a mount of its own, none left afterwards.
    e.ok(&["stop", "box"]);
    e.ok(&["cp", "box:/d/sub/a", &format!("{hs}/after")]);
    assert_eq!(std::fs::read_to_string(h.join("after")).unwrap(), "a\n");
    e.ok(&["cp", &format!("{hs}/after"), "box:/after"]);
    assert!(
        e.mounts_under_root().is_empty(),
        "{:?}",
        e.mounts_under_root()
    );
    e.ok(&["start", "box"]);
    assert_eq!(e.ok(&["exec", "box", "cat", "/after"]), "a\n");
    // What an earlier copy left on the host is never a way out (found in review): the
    // container's /app/x was a symlink to a host directory, then became a directory; copying
    // /app again replaces the host's symlink instead of writing through it. The same for the
    // copied directory itself (/app2 a symlink first, a directory later).
    let target = tempfile::tempdir().unwrap();
    let ts = target.path().to_string_lossy().into_owned();
    e.ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        &format!("mkdir -p /app; ln -s {ts} /app/x; ln -s {ts} /app2"),
    ]);
    std::fs::create_dir(h.join("o1")).unwrap();
    e.ok(&["cp", "box:/app", &format!("{hs}/o1")]);
    e.ok(&["cp", "box:/app2", &format!("{hs}/o1")]);
    assert!(std::fs::symlink_metadata(h.join("o1/app/x"))
        .unwrap()
        .is_symlink());
    e.ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        "rm /app/x /app2; mkdir -p /app/x /app2; echo owned > /app/x/pw; echo owned > /app2/pw",
    ]);
    e.ok(&["cp", "box:/app", &format!("{hs}/o1")]);
    e.ok(&["cp", "box:/app2", &format!("{hs}/o1")]);
    assert!(
        !target.path().join("pw").exists(),
        "wrote through a symlink an earlier cp left"
    );
    assert_eq!(
        std::fs::read_to_string(h.join("o1/app/x/pw")).unwrap(),
        "owned\n"
    );
    assert_eq!(
        std::fs::read_to_string(h.join("o1/app2/pw")).unwrap(),
        "owned\n"
    );
    // A device node is never opened on the host's behalf, even with -L.
    e.ok(&["exec", "box", "ln", "-s", "/dev/zero", "/zero"]);
    let o = e.run(&["cp", "-L", "box:/zero", &format!("{hs}/zero")]);
    assert!(!o.status.success(), "cp -L opened a device");
    assert!(!h.join("zero").exists());
    // Names that would be whiteouts are refused; a missing parent is an error.
    std::fs::write(h.join(".wh.x"), "").unwrap();
    assert!(!e
        .run(&["cp", &format!("{hs}/.wh.x"), "box:/"])
        .status
        .success());
    assert!(!e
        .run(&["cp", &format!("{hs}/f"), "box:/no/such/dir/"])
        .status
        .success());
    e.ok(&["rm", "-f", "box"]);
    e.assert_clean();
}

/// Volumes as docker's: a named one outlives its container and is seen by the next; an
/// empty one first gets the image's content at its path; an image's VOLUME gets an anonymous
/// one that `rm -v` (or `--rm`) removes; `volume rm` refuses one a container has.
#[test]
fn named_and_anonymous_volumes() {
    let Some(e) = env() else { return };
    e.import_busybox();
    // The image's /etc has content: a new volume there starts with it.
    let o = e.run_ctr(&[
        "--rm",
        "-v",
        "etcvol:/etc",
        "busybox",
        "sh",
        "-c",
        "test -s /etc/passwd && echo copied; echo kept > /etc/mine; \
         for f in hostname hosts resolv.conf; do test -s /etc/$f || echo no $f; done",
    ]);
    // ... and the container's own hostname, hosts and resolv.conf are mounted over it, not
    // under it (a mount inside another's destination comes after it, as docker and podman).
    assert_eq!(
        stdout(&o),
        "copied\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(e.ok(&["volume", "ls"]).contains("local     etcvol"));
    // docker's `volume ls --format` (a template per volume, or json).
    let ls = e.ok(&["volume", "ls", "--format", "{{.Name}}\\t{{.Driver}}"]);
    assert_eq!(ls, "etcvol\tlocal\n");
    let ls = e.ok(&["volume", "ls", "--format", "json"]);
    assert!(
        ls.starts_with("{") && ls.contains("\"Name\":\"etcvol\""),
        "{ls}"
    );
    // The next container sees what the first wrote; not copied again (not empty).
    let o = e.run_ctr(&[
        "--rm",
        "-v",
        "etcvol:/etc:ro",
        "busybox",
        "sh",
        "-c",
        "cat /etc/mine; touch /etc/x 2>/dev/null || echo ro",
    ]);
    assert_eq!(stdout(&o), "kept\nro\n");
    // In use: refused; the container gone, removed.
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "user",
        "-v",
        "etcvol:/etc",
        "busybox",
        "sleep",
        "30",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let insp = e.ok(&["inspect", "-f", "{{json .Mounts}}", "user"]);
    assert!(
        insp.contains("\"Type\":\"volume\"") && insp.contains("\"Name\":\"etcvol\""),
        "{insp}"
    );
    let o = e.run(&["volume", "rm", "etcvol"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("volume is in use"));
    e.ok(&["rm", "-f", "user"]);
    let v: serde_json::Value =
        serde_json::from_str(&e.ok(&["volume", "inspect", "etcvol"])).unwrap();
    assert_eq!(v[0]["Driver"], "local");
    e.ok(&["volume", "rm", "etcvol"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
    // Anonymous volumes come from an image's VOLUME: busybox has none, so a committed image
    // declares one.
    let o = e.run_ctr(&[
        "--name",
        "base",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /data && echo seed > /data/s",
    ]);
    assert!(o.status.success());
    e.ok(&["commit", "-c", "VOLUME /data", "base", "withvol"]);
    e.ok(&["rm", "base"]);
    let o = e.run_ctr(&[
        "--name",
        "a1",
        "withvol",
        "sh",
        "-c",
        "cat /data/s; echo more >> /data/s",
    ]);
    assert_eq!(stdout(&o), "seed\n");
    let anon = e.ok(&["volume", "ls", "-q"]);
    assert_eq!(anon.trim().len(), 64, "{anon}");
    e.ok(&["rm", "-v", "a1"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
    // --rm removes its anonymous volume too; a named -v over the VOLUME path replaces it.
    e.run_ctr(&["--rm", "withvol", "true"]);
    e.run_ctr(&["--rm", "-v", "named:/data", "withvol", "cat", "/data/s"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "named\n");
    e.ok(&["volume", "rm", "named"]);
    // Bad names are refused with docker's words.
    let o = e.run_ctr(&["--rm", "-v", "a:/x", "busybox", "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid characters for a local volume name")
    );
    e.ok(&["rmi", "withvol"]);
    e.assert_clean();
}

/// Restart policies carried out by the monitor: on-failure:N with docker's back-off and
/// RestartCount, always until `stop` (held off until `start`), --rm refused, and a foreground
/// run that follows every restart to the last exit.
#[test]
fn restart_policies_as_docker() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(e.ok(&["wait", "flaky"]), "3\n");
    assert_eq!(e.ok(&["logs", "flaky"]), "run\nrun\nrun\n");
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.RestartCount}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}", "flaky"]),
        "2 on-failure 2\n"
    );
    // A marker a dead monitor left (a reboot) means nothing: still exited, and `start` runs
    // it with the retries counted afresh, as docker's start (found in review).
    let id = e
        .ok(&["inspect", "-f", "{{.Id}}", "flaky"])
        .trim()
        .to_string();
    std::fs::write(
        e.root
            .path()
            .join("containers")
            .join(&id)
            .join("restarting"),
        "999999999",
    )
    .unwrap();
    assert!(e.ok(&["ps", "-a"]).contains("Exited (3)"));
    e.ok(&["start", "flaky"]);
    assert_eq!(e.ok(&["wait", "flaky"]), "3\n");
    assert_eq!(e.ok(&["logs", "flaky"]), "run\n".repeat(6));
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.RestartCount}}", "flaky"]),
        "2\n"
    );
    e.ok(&["rm", "flaky"]);
    let count = |name: &str| -> u32 {
        e.ok(&["inspect", "-f", "{{.RestartCount}}", name])
            .trim()
            .parse()
            .unwrap()
    };
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "echo up; sleep 0.2",
    ]);
    assert!(o.status.success());
    assert!(
        within_5s(|| count("loop") >= 2),
        "always: restarted {}",
        count("loop")
    );
    e.ok(&["stop", "-t", "1", "loop"]);
    let stopped_at = count("loop");
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(count("loop"), stopped_at, "restarted after stop");
    assert!(e.ok(&["ps", "-a"]).contains("Exited"));
    // start: the policy applies again.
    e.ok(&["start", "loop"]);
    assert!(
        within_5s(|| count("loop") > stopped_at + 1),
        "not restarted after start"
    );
    e.ok(&["rm", "-f", "loop"]);
    // kill holds the policy off too (docker's kill does).
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "k",
        "--restart",
        "unless-stopped",
        "busybox",
        "sleep",
        "30",
    ]);
    assert!(o.status.success());
    e.ok(&["kill", "k"]);
    assert_eq!(e.ok(&["wait", "k"]), "137\n");
    assert_eq!(count("k"), 0);
    e.ok(&["rm", "k"]);
    // --rm with --restart is refused; a foreground run follows the restarts.
    let o = e.run_ctr(&["--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Conflicting options: --restart and --rm"));
    let o = e.run_ctr(&[
        "--name",
        "fg",
        "--restart",
        "on-failure:1",
        "busybox",
        "sh",
        "-c",
        "echo x; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(stdout(&o), "x\nx\n");
    e.ok(&["rm", "fg"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    e.assert_clean();
}

/// `logs` keeps stdout and stderr apart (docker's json-file lines) and takes --tail, -t and
/// --since.
#[test]
fn logs_streams_tail_since_timestamps() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        // The streams are copied side by side: the sleep orders them.
        "echo err1 >&2; sleep 0.3; echo out1; echo out2; printf partial",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(e.ok(&["wait", "lg"]), "0\n");
    let o = e.run(&["logs", "lg"]);
    assert_eq!(stdout(&o), "out1\nout2\npartial");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err1\n");
    assert_eq!(stdout(&e.run(&["logs", "--tail", "1", "lg"])), "partial");
    let o = e.run(&["logs", "-t", "--tail", "2", "lg"]);
    let out = stdout(&o);
    assert!(out.starts_with("20") && out.contains("Z out2\n"), "{out}");
    assert_eq!(
        stdout(&e.run(&["logs", "--since", "2099-01-01T00:00:00Z", "lg"])),
        ""
    );
    assert_eq!(
        stdout(&e.run(&["logs", "--since", "1h", "lg"])),
        "out1\nout2\npartial"
    );
    assert!(!e.run(&["logs", "--tail", "x", "lg"]).status.success());
    e.ok(&["rm", "lg"]);
    e.assert_clean();
}

/// `ps --format` and `-f` as docker's; `rename`; `top` shows the container's processes.
#[test]
fn ps_format_filters_rename_top() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let o = e.run_ctr(&["-d", "--name", "up1", "busybox", "sleep", "30"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = stdout(&o).trim().to_string();
    let o = e.run_ctr(&["--name", "down3", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    // The default table has docker's columns, PORTS included.
    let head = e.ok(&["ps"]).lines().next().unwrap().to_string();
    let cols: Vec<&str> = head
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cols,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ]
    );
    assert_eq!(
        e.ok(&["ps", "--format", "{{.Names}} {{.State}} {{.Image}}"]),
        "up1 running busybox\n"
    );
    assert_eq!(
        e.ok(&["ps", "-a", "-f", "exited=3", "--format", "{{.Names}}"]),
        "down3\n"
    );
    assert_eq!(
        e.ok(&["ps", "-f", "status=exited", "--format", "{{.Names}}"]),
        "down3\n"
    );
    assert_eq!(
        e.ok(&["ps", "-a", "-f", "name=up", "-q", "--no-trunc"]),
        format!("{id}\n")
    );
    assert_eq!(
        e.ok(&["ps", "-a", "-f", "ancestor=busybox", "-q"])
            .lines()
            .count(),
        2
    );
    assert_eq!(
        e.ok(&["ps", "-a", "-f", "status=running", "-f", "name=down", "-q"]),
        ""
    );
    let j: serde_json::Value =
        serde_json::from_str(e.ok(&["ps", "--format", "json"]).trim()).unwrap();
    assert_eq!(j["Names"], "up1");
    assert_eq!(j["Networks"], "none");
    let t = e.ok(&["ps", "-a", "--format", "table {{.Names}}\t{{.Status}}"]);
    assert!(t.starts_with("NAMES"), "{t}");
    assert!(t.contains("STATUS") && t.contains("Exited (3)"), "{t}");
    assert!(!e.run(&["ps", "-f", "status=up"]).status.success());
    // rename: the new name finds it, the old one is free again.
    e.ok(&["rename", "up1", "renamed"]);
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.Name}}", "renamed"]),
        "/renamed\n"
    );
    assert!(!e.run(&["inspect", "up1"]).status.success());
    assert!(
        !e.run(&["rename", "renamed", "down3"]).status.success(),
        "a taken name"
    );
    // top: the container's sleep, not the host's processes.
    let top = e.ok(&["top", "renamed"]);
    let lines: Vec<&str> = top.lines().collect();
    assert!(lines[0].contains("PID"), "{top}");
    assert_eq!(lines.len(), 2, "{top}");
    assert!(lines[1].contains("sleep 30"), "{top}");
    e.ok(&["rm", "-f", "renamed", "down3"]);
    e.assert_clean();
}

/// `--mount` (bind, volume, tmpfs), `--tmpfs` and `--volumes-from`, as docker reads them.
#[test]
fn mount_tmpfs_and_volumes_from() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("f"), "host\n").unwrap();
    let bind = format!(
        "type=bind,source={},target=/h,readonly",
        host.path().display()
    );
    let o = e.run_ctr(&[
        "--name",
        "src",
        "--mount",
        &bind,
        "--mount",
        "type=volume,source=mv,target=/m",
        "--tmpfs",
        "/scratch:size=1m",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=65536",
        "busybox",
        "sh",
        "-c",
        "cat /h/f; touch /h/x 2>/dev/null || echo ro; echo vol > /m/v; \
         grep -E ' /(scratch|t) ' /proc/mounts | cut -d' ' -f2,3,4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.starts_with("host\nro\n"), "{out}");
    assert!(
        out.contains("/scratch tmpfs rw,nosuid,nodev,noexec"),
        "{out}"
    );
    assert!(out.contains("size=1024k"), "{out}");
    assert!(out.contains("/t tmpfs"), "{out}");
    // Another container gets src's volume and bind, read-only with :ro.
    let o = e.run_ctr(&[
        "--rm",
        "--volumes-from",
        "src:ro",
        "busybox",
        "sh",
        "-c",
        "cat /m/v /h/f; touch /m/y 2>/dev/null || echo ro; test -e /scratch/x || echo no-tmpfs",
    ]);
    assert_eq!(
        stdout(&o),
        "vol\nhost\nro\nno-tmpfs\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for bad in [
        "type=bind,target=/x",
        "type=volume,source=v",
        "type=odd,target=/x",
        "type=tmpfs,source=a,target=/x",
    ] {
        let o = e.run_ctr(&["--rm", "--mount", bad, "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125), "{bad}");
    }
    e.ok(&["rm", "src"]);
    e.ok(&["volume", "rm", "mv"]);
    e.assert_clean();
}

/// A container the OOM killer ended says so (inspect's State.OOMKilled), foreground and
/// detached; one that exits on its own does not.
#[test]
fn oom_killed_is_reported() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let o = e.run_ctr(&[
        "--name",
        "fg",
        "-m",
        "8m",
        "busybox",
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    assert_eq!(
        o.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "bg",
        "-m",
        "8m",
        "busybox",
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    assert!(o.status.success());
    assert_eq!(e.ok(&["wait", "bg"]), "137\n");
    let o = e.run_ctr(&[
        "--name", "fine", "-m", "8m", "busybox", "sh", "-c", "exit 137",
    ]);
    assert_eq!(o.status.code(), Some(137));
    for (name, want) in [("fg", "true"), ("bg", "true"), ("fine", "false")] {
        assert_eq!(
            e.ok(&["inspect", "-f", "{{.State.OOMKilled}}", name]),
            format!("{want}\n"),
            "{name}"
        );
    }
    e.ok(&["rm", "fg", "bg", "fine"]);
    e.assert_clean();
}

/// `stats --no-stream`: docker's columns; a busy container's CPU %, its memory limit, PIDs.
#[test]
fn stats_no_stream() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "busy",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = e.ok(&["stats", "--no-stream", "busy"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID") && lines[0].contains("MEM USAGE / LIMIT"),
        "{out}"
    );
    assert_eq!(lines.len(), 2, "{out}");
    let cells: Vec<&str> = lines[1]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[1], "busy", "{out}");
    let cpu: f64 = cells[2].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 30.0, "a busy loop at {cpu}%: {out}");
    assert!(cells[3].ends_with("/ 64MiB"), "{out}");
    assert!(cells[7].parse::<u32>().unwrap() >= 1, "{out}");
    // Without names: every running container.
    assert!(e.ok(&["stats", "--no-stream"]).contains("busy"));
    e.ok(&["rm", "-f", "busy"]);
    assert!(!e.run(&["stats", "--no-stream", "busy"]).status.success());
    e.assert_clean();
}

/// HEALTHCHECK as docker runs it: starting, unhealthy after `retries` failures, healthy once
/// the check passes; ps shows it and filters on it; inspect has State.Health; the checker
/// ends with the container.
#[test]
fn health_checks_as_docker() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -e /tmp/ok && echo fine",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "60",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let health = || {
        e.ok(&["inspect", "-f", "{{.State.Health.Status}}", "hc"])
            .trim()
            .to_string()
    };
    assert!(
        within_5s(|| health() == "unhealthy"),
        "never unhealthy: {}",
        health()
    );
    assert!(e.ok(&["ps"]).contains("(unhealthy)"));
    e.ok(&["exec", "hc", "touch", "/tmp/ok"]);
    assert!(
        within_5s(|| health() == "healthy"),
        "never healthy: {}",
        health()
    );
    assert_eq!(
        e.ok(&["ps", "-f", "health=healthy", "--format", "{{.Names}}"]),
        "hc\n"
    );
    assert_eq!(e.ok(&["ps", "-f", "health=unhealthy", "-q"]), "");
    let h: serde_json::Value =
        serde_json::from_str(&e.ok(&["inspect", "-f", "{{json .State.Health}}", "hc"])).unwrap();
    assert_eq!(h["FailingStreak"], 0);
    let log = h["Log"].as_array().unwrap();
    assert!(
        log.len() <= 5 && log.last().unwrap()["Output"] == "fine\n",
        "{h}"
    );
    // --no-healthcheck: none at all.
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "plain",
        "--no-healthcheck",
        "busybox",
        "sleep",
        "60",
    ]);
    assert!(o.status.success());
    assert_eq!(
        e.ok(&["inspect", "-f", "{{json .State.Health}}", "plain"]),
        "null\n"
    );
    e.ok(&["rm", "-f", "hc", "plain"]);
    // The checker went with its container.
    let root = e.root.path().to_string_lossy().into_owned();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("__health") && c.contains(&root))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    e.assert_clean();
}

#[test]
fn cp_sees_the_containers_volumes_and_binds() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let host = e.root.path().join("ro-src");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("seen"), "from the host\n").unwrap();
    let ro = format!("{}:/ro:ro", host.display());
    let o = e.run_ctr(&[
        "-d",
        "--name",
        "box",
        "-v",
        "data:/data",
        "-v",
        &ro,
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = e.root.path().join("in.txt");
    std::fs::write(&f, "into the volume\n").unwrap();
    // Into the volume (not the rootfs under it): the container sees it at once.
    e.ok(&["cp", f.to_str().unwrap(), "box:/data/in.txt"]);
    assert_eq!(
        e.ok(&["exec", "box", "cat", "/data/in.txt"]),
        "into the volume\n"
    );
    let out = e.root.path().join("out.txt");
    e.ok(&["cp", "box:/ro/seen", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "from the host\n");
    let o = e.run(&["cp", f.to_str().unwrap(), "box:/ro/x"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("read-only"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!host.join("x").exists());
    e.ok(&["rm", "-f", "-v", "box"]);
    e.ok(&["volume", "rm", "data"]);
}
