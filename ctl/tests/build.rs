//! `berthctl build` end to end, as root, on the busybox fixture with the berth runtime: every
//! RUN runs in a container, COPY/ADD from the context, stages and images, the layer cache,
//! RUN --mount and secrets, reproducible images, and what a failing build leaves (nothing).
//! Skipped (with a message) where the fixture or the runtime is missing, as cli.rs is.

mod support;

use std::fs;
use std::path::Path;

use support::*;

/// A build context under the test's root.
fn context(e: &Env, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = e.root.path().join("ctx").join(name);
    for (path, content) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
    }
    dir
}

impl Env {
    fn build(&self, args: &[&str], ctx: &Path) -> std::process::Output {
        let mut a = vec!["build", "--cgroup-parent"];
        let cg = cgroup_parent();
        a.push(&cg);
        a.extend_from_slice(args);
        let c = ctx.to_str().unwrap();
        a.push(c);
        self.run(&a)
    }
    /// Build and expect success; returns (image id, stderr).
    fn build_ok(&self, args: &[&str], ctx: &Path) -> (String, String) {
        let o = self.build(args, ctx);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "build {args:?}: {}\n{err}", o.status);
        (stdout(&o).trim().to_string(), err)
    }
    /// The image config of `name`.
    fn config(&self, name: &str) -> serde_json::Value {
        let s = self.store();
        let rec = s.image(name).unwrap();
        serde_json::from_slice(&s.content.read(&rec.config).unwrap()).unwrap()
    }
    /// What a build's temp and snapshot directories hold (should be nothing after a build).
    fn build_leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in ["snapshots/active", "builder/tmp", "runtime"] {
            if let Ok(rd) = fs::read_dir(self.root.path().join(d)) {
                out.extend(rd.flatten().map(|e| format!("{d}/{:?}", e.file_name())));
            }
        }
        out.extend(self.mounts_under_root());
        out
    }
}

fn steps(stderr: &str) -> (usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.ends_with("from the cache"))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    (w[0].parse().unwrap(), w[3].parse().unwrap())
}

const APP: &str = r#"FROM busybox
ARG GREETING=hello
ENV APP=/app
WORKDIR $APP
COPY src/ ./
COPY --chmod=0750 bin/run.sh /usr/local/bin/
RUN echo "$GREETING from RUN" > greeting && rm /bin/vi
RUN <<EOF
echo heredoc > /app/here
EOF
COPY <<EOF /app/conf.json
{"app": "$APP"}
EOF
USER 1000:1000
EXPOSE 8080
LABEL org.example.name=app
CMD ["cat", "greeting"]
"#;

#[test]
fn build_runs_copies_and_caches() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let ctx = context(
        &e,
        "app",
        &[
            ("Dockerfile", APP),
            ("src/a.txt", "a\n"),
            ("src/sub/b.txt", "b\n"),
            ("bin/run.sh", "#!/bin/sh\necho run\n"),
            ("src/debug.log", "left out\n"),
            (".dockerignore", "**/*.log\n"),
        ],
    );
    let (id, err) = e.build_ok(&["-t", "app:1", "--build-arg", "GREETING=hi"], &ctx);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(steps(&err), (6, 0), "{err}");
    let run = |args: &[&str]| {
        let mut a = vec!["--rm", "app:1"];
        a.extend_from_slice(args);
        let o = e.run_ctr(&a);
        assert!(
            o.status.success(),
            "run {args:?}: {}: {}{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            stdout(&o)
        );
        stdout(&o)
    };
    assert_eq!(run(&[]), "hi from RUN\n");
    assert_eq!(
        run(&["ls", "/app"]),
        "a.txt\nconf.json\ngreeting\nhere\nsub\n"
    );
    assert_eq!(
        run(&[
            "sh",
            "-c",
            "cat /app/here /app/conf.json /app/sub/b.txt; id -u; ls /bin/vi 2>&1; true"
        ]),
        "heredoc\n{\"app\": \"/app\"}\nb\n1000\nls: /bin/vi: No such file or directory\n"
    );
    assert!(run(&["ls", "-l", "/usr/local/bin/run.sh"]).starts_with("-rwxr-x---"));
    let cfg = e.config("app:1");
    let c = &cfg["config"];
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Cmd"], serde_json::json!(["cat", "greeting"]));
    assert_eq!(c["Labels"]["org.example.name"], "app");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{c}");
    assert!(c["Env"].as_array().unwrap().iter().any(|v| v == "APP=/app"));
    // Build args are not kept in the config.
    assert!(!cfg.to_string().contains("GREETING=hi\""), "{cfg}");
    // The ignored file is in no layer; the RUN layer has no mount points of the runtime's.
    let layers = e.layer_names("app:1", 1);
    assert!(
        layers.iter().flatten().all(|n| !n.ends_with(".log")),
        "{layers:?}"
    );
    for n in ["proc", "sys", "dev", "etc/hosts", "etc/resolv.conf"] {
        assert!(layers.iter().flatten().all(|l| l != n), "{n} in {layers:?}");
    }
    assert!(e.build_leftovers().is_empty(), "{:?}", e.build_leftovers());

    // Unchanged: everything from the cache, the same image.
    let (id2, err) = e.build_ok(&["-t", "app:1", "--build-arg", "GREETING=hi"], &ctx);
    assert_eq!(steps(&err), (0, 6), "{err}");
    assert_eq!(id2, id);
    // A touched file (same content) is still a hit.
    let f = ctx.join("bin/run.sh");
    let t = fs::metadata(&f).unwrap().modified().unwrap() + std::time::Duration::from_secs(5);
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(t)
        .unwrap();
    let (_, err) = e.build_ok(&["-t", "app:1", "--build-arg", "GREETING=hi"], &ctx);
    assert_eq!(steps(&err), (0, 6), "{err}");
    // A changed file runs its COPY and everything after it, nothing before.
    fs::write(&f, "#!/bin/sh\necho changed\n").unwrap();
    let (id3, err) = e.build_ok(&["-t", "app:1", "--build-arg", "GREETING=hi"], &ctx);
    assert_eq!(steps(&err), (4, 2), "{err}");
    assert_ne!(id3, id);
    // Another build arg value: the RUNs that see it run again.
    let (_, err) = e.build_ok(&["-t", "app:1"], &ctx);
    assert_eq!(steps(&err), (3, 3), "{err}");
    assert_eq!(run(&[]), "hello from RUN\n");
    // --no-cache runs everything.
    let (_, err) = e.build_ok(&["--no-cache", "-t", "app:1"], &ctx);
    assert_eq!(steps(&err), (6, 0), "{err}");
    e.assert_clean();
}

#[test]
fn a_failing_run_shows_its_output_and_leaves_nothing() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let ctx = context(
        &e,
        "fail",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo made > /made\nRUN echo to-stdout; echo to-stderr >&2; exit 3\n",
        )],
    );
    let o = e.build(&["-t", "fail:1"], &ctx);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("Dockerfile:3: RUN"), "{err}");
    assert!(err.contains("exit code 3"), "{err}");
    assert!(
        err.contains("to-stdout") && err.contains("to-stderr"),
        "{err}"
    );
    assert!(e.store().image("fail:1").is_err());
    assert!(e.build_leftovers().is_empty(), "{:?}", e.build_leftovers());
    // A syntax error names its line and runs nothing.
    let bad = context(
        &e,
        "bad",
        &[("Dockerfile", "FROM busybox\nRUN true\nFROB x\n")],
    );
    let o = e.build(&[], &bad);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("Dockerfile:3:"), "{err}");
    assert!(!err.contains("STEP"), "{err}");
    // A file whose name is a whiteout's cannot be copied (found in review).
    let wh = context(
        &e,
        "wh",
        &[
            ("Dockerfile", "FROM busybox\nCOPY . /x/\n"),
            (".wh..wh..opq", ""),
        ],
    );
    let o = e.build(&[], &wh);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("would be a whiteout"),
        "{err}"
    );
    // Unsupported flags are errors naming the line, never skipped.
    let ssh = context(
        &e,
        "ssh",
        &[("Dockerfile", "FROM busybox\nRUN --mount=type=ssh true\n")],
    );
    let o = e.build(&[], &ssh);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("Dockerfile:2:") && err.contains("ssh"),
        "{err}"
    );
    e.assert_clean();
}

#[test]
fn stages_scratch_and_copy_from() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let ctx = context(
        &e,
        "ms",
        &[(
            "Dockerfile",
            "ARG BASE=busybox\n\
             FROM $BASE AS build\n\
             RUN mkdir -p /out && echo built > /out/artifact && ln -s artifact /out/link && chmod 4711 /out/artifact && ln -s /out/artifact /alias\n\
             FROM busybox AS other\n\
             RUN echo other > /o.txt && chown 1000:1000 /o.txt\n\
             FROM scratch\n\
             COPY --from=build /out/ /\n\
             COPY --from=other /o.txt /keep/\n\
             COPY --from=1 --chmod=600 --chown=7:8 /o.txt /x/\n\
             COPY --from=busybox /bin/busybox /bin/busybox\n\
             ARG SRC=build\n\
             ARG UID=1000\n\
             COPY --from=$SRC --chown=$UID:$UID /alias /aliased\n\
             ENTRYPOINT [\"/bin/busybox\"]\n\
             CMD [\"cat\", \"/artifact\"]\n",
        )],
    );
    let (_, err) = e.build_ok(&["-t", "ms"], &ctx);
    assert_eq!(steps(&err), (7, 0), "{err}");
    // A scratch stage starts with BuildKit's PATH and WorkingDir (it had neither; buildah
    // sets the PATH too: found by the integration suite's client_images_debian_*).
    let cfg = e.config("ms");
    assert_eq!(
        cfg["config"]["Env"],
        serde_json::json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
        "{cfg}"
    );
    assert_eq!(cfg["config"]["WorkingDir"], "/", "{cfg}");
    // A symlink source is copied as what it points at, under its own name; --from and
    // --chown see the stage's ARGs (found in review).
    let o = e.run_ctr(&["--rm", "ms", "stat", "-c", "%F %u:%g %s", "/aliased"]);
    assert_eq!(
        stdout(&o),
        "regular file 1000:1000 6\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = e.run_ctr(&["--rm", "ms"]);
    assert_eq!(
        stdout(&o),
        "built\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = e.run_ctr(&[
        "--rm",
        "ms",
        "stat",
        "-c",
        "%n %A %u:%g",
        "/artifact",
        "/keep/o.txt",
        "/x/o.txt",
    ]);
    assert_eq!(
        stdout(&o),
        "/artifact -rws--x--x 0:0\n/keep/o.txt -rw-r--r-- 1000:1000\n/x/o.txt -rw------- 7:8\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = e.run_ctr(&["--rm", "ms", "readlink", "/link"]);
    assert_eq!(stdout(&o), "artifact\n");
    // --target builds only what that stage needs.
    let (_, err) = e.build_ok(&["--target", "other", "-t", "other"], &ctx);
    assert!(!err.contains("[build]"), "{err}");
    let o = e.run_ctr(&["--rm", "other", "cat", "/o.txt"]);
    assert_eq!(stdout(&o), "other\n");
    assert!(e.build_leftovers().is_empty(), "{:?}", e.build_leftovers());
    e.assert_clean();
}

#[test]
fn run_mounts_and_secrets_stay_out_of_the_image() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let secret = "s3cr3t-value-9f1c";
    let secret_file = e.root.path().join("secret.txt");
    fs::write(&secret_file, secret).unwrap();
    let ctx = context(
        &e,
        "mnt",
        &[
            (
                "Dockerfile",
                "FROM busybox\n\
                 RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /len\n\
                 RUN --mount=type=secret,id=tok,target=/etc/tok,mode=0440,uid=1000 stat -c '%a %u' /etc/tok > /tokstat\n\
                 ENV TOKEN=public\n\
                 RUN --mount=type=secret,id=tok,env=TOKEN echo ${#TOKEN} $(ls /run/secrets 2>&1 | grep -c 'No such') > /envlen\n\
                 RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /count\n\
                 RUN --mount=type=bind,source=data,target=/data cat /data/one > /one && ! touch /data/x\n\
                 RUN --mount=type=tmpfs,target=/scratch touch /scratch/y\n\
                 RUN --mount=type=bind,target=/s ls -a /s > /context-seen\n",
            ),
            ("data/one", "1\n"),
            ("secret.env", "TOKEN=x\n"),
            (".dockerignore", "secret.env\n"),
        ],
    );
    let sec = format!("id=tok,src={}", secret_file.display());
    let (_, err) = e.build_ok(
        &[
            "--secret",
            &sec,
            "--build-arg",
            "HTTPS_PROXY=http://u:pw@proxy:3128",
            "-t",
            "mnt",
        ],
        &ctx,
    );
    assert_eq!(steps(&err), (7, 0), "{err}");
    // A bind of the context shows what .dockerignore keeps, nothing else (found in review).
    let o = e.run_ctr(&["--rm", "mnt", "cat", "/context-seen"]);
    assert_eq!(stdout(&o), ".\n..\n.dockerignore\nDockerfile\ndata\n");
    // The proxy ARG's value (credentials, often) is in no history entry.
    assert!(
        !e.config("mnt").to_string().contains("pw@proxy"),
        "{}",
        e.config("mnt")
    );
    let o = e.run_ctr(&["--rm", "mnt", "sh", "-c", "cat /len /tokstat /envlen /count /one; ls /run /cache /data /scratch /etc/tok 2>&1 | grep -c 'No such'"]);
    // env= puts the secret in the step's environment, and no file without a target.
    assert_eq!(
        stdout(&o),
        format!("{}\n440 1000\n{} 1\n1\n1\n4\n", secret.len(), secret.len()),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The secret's bytes are nowhere in the store: no layer, config, history or cache entry.
    let mut hits = Vec::new();
    let mut stack = vec![e.root.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for ent in fs::read_dir(&d).unwrap().flatten() {
            let p = ent.path();
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                stack.push(p);
            } else if md.is_file() && p != secret_file {
                let data = fs::read(&p).unwrap();
                let plain = data.windows(secret.len()).any(|w| w == secret.as_bytes());
                let mut unzipped = Vec::new();
                let gz = std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(data.as_slice()),
                    &mut unzipped,
                )
                .is_ok()
                    && unzipped
                        .windows(secret.len())
                        .any(|w| w == secret.as_bytes());
                if plain || gz {
                    hits.push(p);
                }
            }
        }
    }
    assert!(hits.is_empty(), "the secret is in {hits:?}");
    // Another secret value does not change the cache key; the cache mount is kept between
    // builds, and the rebuild with --no-cache sees it.
    fs::write(&secret_file, "other").unwrap();
    let (_, err) = e.build_ok(
        &[
            "--secret",
            &sec,
            "--build-arg",
            "HTTPS_PROXY=http://u:pw@proxy:3128",
            "-t",
            "mnt",
        ],
        &ctx,
    );
    assert_eq!(steps(&err), (0, 7), "{err}");
    let (_, _) = e.build_ok(&["--no-cache", "--secret", &sec, "-t", "mnt"], &ctx);
    let o = e.run_ctr(&["--rm", "mnt", "cat", "/count", "/len"]);
    assert_eq!(stdout(&o), "2\n5\n");
    // A required secret that is not given fails the step.
    let req = context(
        &e,
        "req",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=secret,id=nope,required true\n",
        )],
    );
    let o = e.build(&[], &req);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("secret nope"), "{err}");
    assert!(e.build_leftovers().is_empty(), "{:?}", e.build_leftovers());
    e.assert_clean();
}

/// With SOURCE_DATE_EPOCH, two --no-cache builds in fresh stores, seconds apart, give the
/// same image digest.
#[test]
fn source_date_epoch_builds_are_reproducible() {
    let Some(a) = env() else { return };
    let Some(b) = env() else { return };
    let files = [
        (
            "Dockerfile",
            "FROM busybox\nCOPY . /src/\nRUN mkdir /out && cp -a /src /out/ && touch /out/new && hostname > /out/host\nENV X=1\n",
        ),
        ("f1", "one\n"),
        ("d/f2", "two\n"),
    ];
    // A build without SOURCE_DATE_EPOCH first in `a`: its layers (mtimes not clamped) must
    // not be taken from the cache by the build with it (found in review).
    a.import_busybox();
    let pre = context(&a, "repro", &files);
    a.build_ok(&["-t", "pre"], &pre);
    let ids: Vec<String> = [&a, &b]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if i == 1 {
                std::thread::sleep(std::time::Duration::from_millis(2100));
            }
            e.import_busybox();
            let ctx = context(e, "repro", &files);
            let o = {
                let mut c = e.cmd(&[
                    "build",
                    "--cgroup-parent",
                    &cgroup_parent(),
                    "-t",
                    "repro",
                    ctx.to_str().unwrap(),
                ]);
                c.env("SOURCE_DATE_EPOCH", "1700000000");
                c.output().unwrap()
            };
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            stdout(&o).trim().to_string()
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
    let cfg = a.config("repro");
    assert_eq!(cfg["created"], "2023-11-14T22:13:20Z");
    for h in cfg["history"].as_array().unwrap().iter().skip(2) {
        assert_eq!(h["created"], "2023-11-14T22:13:20Z", "{h}");
    }
}

/// A COPY below a new directory makes its layer from the context before writing any file: a
/// --no-cache rebuild re-reads the context and re-runs every step, but finds the layer's
/// snapshot by its ChainID and reuses it (nothing written, no duplicate left); a fresh store
/// gives the same image; every snapshot is exactly its layer.
#[test]
fn no_cache_rebuilds_reuse_copy_snapshots() {
    let Some(a) = env() else { return };
    let Some(b) = env() else { return };
    let files = [
        (
            "Dockerfile",
            "FROM busybox\nCOPY files/ /files/\nCOPY --chown=1:2 --chmod=0640 files/ /usr/new/deep/\n\
             COPY files/d/f /bin/new/\nRUN touch /ran\n",
        ),
        ("files/d/f", "f\n"),
        ("files/a-b", "dash\n"),
        ("files/a/b", "ab\n"),
    ];
    let epoch = |c: &mut std::process::Command| {
        c.env("SOURCE_DATE_EPOCH", "1700000000");
    };
    let build = |e: &Env, extra: &[&str]| -> String {
        let ctx = e.root.path().join("ctx/dedup");
        if !ctx.exists() {
            context(e, "dedup", &files);
            fs::create_dir_all(ctx.join("files/empty")).unwrap();
            std::os::unix::fs::symlink("a/b", ctx.join("files/link")).unwrap();
            fs::hard_link(ctx.join("files/d/f"), ctx.join("files/d/hard")).unwrap();
        }
        let mut args = vec!["build", "--cgroup-parent"];
        let cg = cgroup_parent();
        args.push(&cg);
        args.extend_from_slice(extra);
        args.extend(["-t", "dedup", ctx.to_str().unwrap()]);
        let mut c = e.cmd(&args);
        epoch(&mut c);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        stdout(&o).trim().to_string()
    };
    let committed = |e: &Env| -> Vec<(String, u64)> {
        use std::os::unix::fs::MetadataExt;
        let mut v: Vec<(String, u64)> = fs::read_dir(e.root.path().join("snapshots/committed"))
            .unwrap()
            .flatten()
            .map(|d| {
                let ino = fs::metadata(d.path().join("fs")).unwrap().ino();
                (d.file_name().to_string_lossy().into_owned(), ino)
            })
            .collect();
        v.sort();
        v
    };
    a.import_busybox();
    let id1 = build(&a, &[]);
    let before = committed(&a);
    let id2 = build(&a, &["--no-cache"]);
    assert_eq!(id1, id2);
    assert_eq!(committed(&a), before, "the same snapshots, not replaced");
    assert!(a.build_leftovers().is_empty(), "{:?}", a.build_leftovers());
    let trash: Vec<_> = fs::read_dir(a.root.path().join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with(".removing-"))
        .collect();
    assert!(trash.is_empty(), "{trash:?}");
    // Each snapshot holds what its layer says.
    let s = a.store();
    let rec = s.image("dedup").unwrap();
    let ids: Vec<image::Digest> = rec.layers.iter().map(|l| l.diff_id.clone()).collect();
    for (i, chain) in image::digest::chain_ids(&ids).iter().enumerate().skip(1) {
        let mut h = image::digest::HashingWriter::new(std::io::sink());
        image::diff::diff_upper(
            &s.snapshots.fs_path(chain),
            &mut h,
            &image::diff::DiffOptions {
                clamp_mtime: Some(1700000000),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(h.finish().1, ids[i], "layer {i}");
    }
    b.import_busybox();
    assert_eq!(build(&b, &["--no-cache"]), id1, "a fresh store");
    let o = b.run_ctr(&[
        "--rm",
        "dedup",
        "stat",
        "-c",
        "%n %u:%g %a %F",
        "/files/link",
        "/files/empty",
        "/usr/new/deep/a/b",
        "/usr/new",
        "/bin/new/f",
    ]);
    assert_eq!(
        stdout(&o),
        "/files/link 0:0 777 symbolic link\n/files/empty 0:0 755 directory\n\
         /usr/new/deep/a/b 1:2 640 regular file\n/usr/new 1:2 755 directory\n\
         /bin/new/f 0:0 644 regular file\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    a.assert_clean();
    b.assert_clean();
}

/// WORKDIR makes its directory as the stage's USER, COPY --chown makes the missing parents of
/// its destination as that owner: what BuildKit does.
#[test]
fn workdir_and_copy_parents_get_their_owner() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let ctx = context(
        &e,
        "owners",
        &[
            (
                "Dockerfile",
                "FROM busybox\nUSER 1000:1000\nWORKDIR /home/app/work\nCOPY --chown=1000:1000 f /srv/data/f\nUSER root\nWORKDIR /\n",
            ),
            ("f", "x\n"),
        ],
    );
    e.build_ok(&["-t", "owners"], &ctx);
    let o = e.run_ctr(&[
        "--rm",
        "owners",
        "stat",
        "-c",
        "%n %u:%g %a",
        "/home/app/work",
        "/home/app",
        "/srv",
        "/srv/data",
        "/srv/data/f",
    ]);
    assert_eq!(
        stdout(&o),
        "/home/app/work 1000:1000 755\n/home/app 1000:1000 755\n/srv 1000:1000 755\n\
         /srv/data 1000:1000 755\n/srv/data/f 1000:1000 644\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // WORKDIR / exists: no layer for it.
    let cfg = e.config("owners");
    let last = cfg["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["created_by"], "WORKDIR /");
    assert_eq!(last["empty_layer"], true);
    e.assert_clean();
}

/// ONBUILD triggers run in the child build and are not inherited further; ADD extracts a local
/// tar.gz and fetches a URL (mode 0600); `--format oci --compression zstd` gives an OCI image
/// with zstd layers that runs.
#[test]
fn onbuild_add_and_oci_zstd() {
    let Some(e) = env() else { return };
    e.import_busybox();
    let base = context(
        &e,
        "base",
        &[(
            "Dockerfile",
            "FROM busybox\nONBUILD RUN echo triggered > /trig\nONBUILD COPY f /onbuild-f\n",
        )],
    );
    e.build_ok(&["-t", "base:1"], &base);
    let cfg = e.config("base:1");
    assert_eq!(
        cfg["config"]["OnBuild"].as_array().map(Vec::len),
        Some(2),
        "{cfg}"
    );
    // A tiny HTTP server for ADD <url>.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten().take(4) {
            use std::io::{BufRead, Write};
            let mut r = std::io::BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut w = s;
            let _ = w.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nhello-url",
            );
        }
    });
    let child = context(&e, "child", &[("f", "from child\n")]);
    // A local archive to extract.
    let tgz = child.join("a.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(fs::File::create(&tgz).unwrap(), Default::default());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o640);
        b.append_data(&mut h, "d/x", &b"xyz"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    fs::write(
        child.join("Dockerfile"),
        format!(
            "FROM base:1\nADD a.tar.gz /opt/\nADD http://127.0.0.1:{port}/dir/file.txt /srv/\n"
        ),
    )
    .unwrap();
    e.build_ok(&["-t", "child:1"], &child);
    let o = e.run_ctr(&[
        "--rm",
        "child:1",
        "sh",
        "-c",
        "cat /trig /onbuild-f /opt/d/x; echo; stat -c '%a %s' /opt/d/x /srv/file.txt; cat /srv/file.txt",
    ]);
    assert_eq!(
        stdout(&o),
        "triggered\nfrom child\nxyz\n640 3\n600 9\nhello-url",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(e.config("child:1")["config"].get("OnBuild").is_none());

    // A base whose ONBUILD trigger is no instruction is an error, not a crash (found in
    // review).
    {
        let s = e.store();
        let bb = s.image("busybox").unwrap();
        let mut base = image::commit::config_of(&s, &bb).unwrap();
        let mut config = base["config"].as_object().unwrap().clone();
        config.insert("OnBuild".into(), serde_json::json!([""]));
        base.remove("history");
        image::commit::write_image(
            &s,
            image::commit::NewImage {
                names: &["badonbuild:1".to_string()],
                base_config: Some(base),
                layers: bb.layers.clone(),
                history: vec![],
                config,
                created: "2026-01-01T00:00:00Z".into(),
                format: image::commit::Format::Docker,
            },
        )
        .unwrap();
    }
    let bad = context(
        &e,
        "bad-onbuild",
        &[("Dockerfile", "FROM badonbuild:1\nRUN true\n")],
    );
    let o = e.build(&[], &bad);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("ONBUILD trigger"), "{err}");

    // OCI with zstd layers.
    let z = context(
        &e,
        "zstd",
        &[("Dockerfile", "FROM busybox\nRUN echo z > /z\n")],
    );
    let o = e.build(&["--compression", "zstd", "-t", "z:1"], &z);
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --format oci"));
    e.build_ok(
        &["--format", "oci", "--compression", "zstd", "-t", "z:1"],
        &z,
    );
    let s = e.store();
    let rec = s.image("z:1").unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&s.content.read(&rec.manifest).unwrap()).unwrap();
    assert_eq!(m["mediaType"], image::images::media::OCI_MANIFEST);
    assert_eq!(
        m["layers"][1]["mediaType"],
        image::images::media::OCI_LAYER_ZSTD
    );
    let o = e.run_ctr(&["--rm", "z:1", "cat", "/z"]);
    assert_eq!(stdout(&o), "z\n", "{}", String::from_utf8_lossy(&o.stderr));
    e.assert_clean();
}

/// ADD of a rootfs tarball at `/`: `tar -C DIR -cf A .` makes `./` its first entry, which used
/// to fail the build ("paths in archives must have at least one component"); BuildKit and
/// buildah extract it (found by the integration suite's Debian base import,
/// client_images_debian_*). Its entries keep their modes, owners and links.
#[test]
fn add_of_a_rootfs_tarball_at_the_root() {
    use std::os::unix::fs::PermissionsExt;
    let Some(e) = env() else { return };
    e.import_busybox();
    let tree = e.root.path().join("tree");
    fs::create_dir_all(tree.join("opt/app")).unwrap();
    fs::write(tree.join("opt/app/x"), "xyz\n").unwrap();
    fs::set_permissions(tree.join("opt/app/x"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(tree.join("opt/app/x"), Some(7), Some(8)).unwrap();
    std::os::unix::fs::symlink("app/x", tree.join("opt/l")).unwrap();
    let ctx = context(
        &e,
        "rootfs-tar",
        &[("Dockerfile", "FROM busybox\nADD rootfs.tar /\n")],
    );
    let tar = ctx.join("rootfs.tar");
    let o = std::process::Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&tree)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let first = tar::Archive::new(fs::File::open(&tar).unwrap())
        .entries()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path_bytes()
        .into_owned();
    assert_eq!(first, b"./", "the archive's first entry");
    e.build_ok(&["-t", "rootfs:1"], &ctx);
    let o = e.run_ctr(&[
        "--rm",
        "rootfs:1",
        "sh",
        "-c",
        "stat -c '%n %a %u:%g %s' /opt/app/x; readlink /opt/l; cat /opt/l",
    ]);
    assert_eq!(
        stdout(&o),
        "/opt/app/x 640 7:8 4\napp/x\nxyz\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // FROM scratch: the layer names what the archive holds and no root entry.
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nADD rootfs.tar /\n").unwrap();
    e.build_ok(&["-t", "rootfs:2"], &ctx);
    let mut names = e.layer_names("rootfs:2", 0).concat();
    names.sort();
    assert_eq!(names, ["opt", "opt/app", "opt/app/x", "opt/l"]);
    e.assert_clean();
}
