//! berthctl's images with the real tools (issue 12): what berthctl builds (every RUN step in a
//! container of the runtime under test), saves and pushes is loaded, pulled and run by docker
//! 20.10, podman 4.3 and containerd 1.6 (`ctr`), each running it on the runtime under test;
//! and the same Dockerfile built by `podman build --format docker` (buildah 1.28) and by
//! docker 20.10's BuildKit gives the same config and the same files, modes and owners.
//! Two of those builds start from a Debian bookworm base made once by debootstrap
//! (`hack/debian-base.sh`, cached): a multi-stage C build with gcc and a Python web app.
//!
//! berthctl is the one next to the integration binary (host runs only: the VM pass has
//! none). The registry is Debian's docker-registry on 127.0.0.1 (a random port), which every
//! client reaches over plain HTTP as a loopback registry.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::clients::containerd::strs;
use crate::clients::docker::{Docker, Version as DockerVersion};
use crate::clients::podman::Podman;
use crate::context::Ctx;
use crate::harness::{Failure, Test, TestResult};
use crate::runtime::Out;
use crate::{ensure, ensure_eq, fail, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        client_images_save_loads_in_docker_podman_ctr,
        client_images_push_then_pull_with_docker_podman_ctr,
        client_images_build_like_podman_and_buildkit,
        client_images_debian_gcc_multistage,
        client_images_debian_python_web_app,
    ]
}

/// berthctl with a data root of its own, RUN steps on the runtime under test.
struct Ctl {
    bin: PathBuf,
    root: PathBuf,
    runtime: PathBuf,
    cgroup_parent: String,
}

impl Ctl {
    fn new(ctx: &Ctx, name: &str) -> Result<Ctl, Failure> {
        crate::clients::matrix_enabled()?;
        let bin = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("berthctl")))
            .filter(|p| p.is_file());
        let Some(bin) = bin else {
            skip!("no berthctl next to the integration binary (cargo build --release --workspace)");
        };
        let c = Ctl {
            bin,
            root: ctx.tmp.join(format!("berthctl-{name}")),
            runtime: ctx.rt.path.clone(),
            cgroup_parent: format!("/berth-it-{}-ctl", std::process::id()),
        };
        let image = ctx.clients.image()?;
        c.ok(&["load", "-q", "-i", &image.archive.to_string_lossy()])?;
        Ok(c)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        // The host's network is never touched: no bridge (each test says what it needs).
        c.env("BERTHCTL_NETWORK", "none");
        c.arg("--root")
            .arg(&self.root)
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        let o = self
            .cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("run berthctl: {e}"));
        Out {
            cmd: format!("berthctl {}", args.join(" ")),
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            timed_out: false,
            hang: String::new(),
        }
    }

    fn ok(&self, args: &[&str]) -> Result<String, Failure> {
        Ok(self.run(args).ok()?.stdout)
    }

    /// `image inspect IMAGE`'s one object.
    fn inspect(&self, image: &str) -> Result<serde_json::Value, Failure> {
        inspect_json(&self.ok(&["image", "inspect", image])?, "berthctl")
    }

    /// `build --cgroup-parent P -t TAG DIR`; returns the image id.
    fn build(&self, tag: &str, dir: &Path) -> Result<String, Failure> {
        let out = self.ok(&[
            "build",
            "--cgroup-parent",
            &self.cgroup_parent,
            "-t",
            tag,
            &dir.to_string_lossy(),
        ])?;
        Ok(out.trim().to_string())
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        for d in crate::clients::cgroup_dirs(&self.cgroup_parent) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A context directory with `files`.
fn context(ctx: &Ctx, name: &str, files: &[(&str, &str)]) -> Result<PathBuf, Failure> {
    let dir = ctx.tmp.join(format!("ctx-{name}"));
    for (p, content) in files {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().expect("a parent"))
            .map_err(|e| Failure::Fail(format!("mkdir: {e}")))?;
        std::fs::write(&p, content).map_err(|e| Failure::Fail(format!("write: {e}")))?;
    }
    Ok(dir)
}

const APP: &str = "FROM busybox\nRUN echo built-by-berth > /msg\nCMD [\"cat\", \"/msg\"]\n";

/// `save`: docker 20.10, podman and ctr load the archive and run the image (with the same
/// id for docker), each on the runtime under test.
fn client_images_save_loads_in_docker_podman_ctr(ctx: &Ctx) -> TestResult {
    let ctl = Ctl::new(ctx, "save")?;
    let dir = context(ctx, "save", &[("Dockerfile", APP)])?;
    let name = "localhost/berth-it/app:1";
    let id = ctl.build(name, &dir)?;
    let archive = ctx.tmp.join("berthctl-save.tar");
    ctl.ok(&["save", "-o", &archive.to_string_lossy(), name])?;
    let archive = archive.to_string_lossy().into_owned();

    let docker = ctx.clients.docker(ctx, DockerVersion::V20)?;
    let out = docker.docker(&["load", "-i", &archive]).ok()?;
    ensure!(
        out.stdout.contains(&format!("Loaded image: {name}")),
        "docker load: {}",
        out.describe()
    );
    let got = docker
        .docker(&["image", "inspect", "-f", "{{.Id}}", name])
        .ok()?;
    ensure_eq!(got.stdout.trim(), id, "docker's image id");
    let c = docker.container(ctx);
    let out = docker
        .docker(&strs(&docker.run_image_args(&["--rm"], &c.name, name, &[])))
        .ok()?;
    ensure_eq!(out.stdout.trim(), "built-by-berth", "docker run");
    c.ensure_gone()?;

    let podman = ctx.clients.podman(ctx)?;
    podman.podman(&["load", "-i", &archive]).ok()?;
    let c = podman.container(ctx);
    let out = podman
        .podman(&strs(&podman.run_image_args(&["--rm"], &c.name, name, &[])))
        .ok()?;
    ensure_eq!(out.stdout.trim(), "built-by-berth", "podman run");
    c.ensure_gone()?;

    let ctd = ctx.clients.containerd(ctx)?;
    ctd.ctr(&["images", "import", &archive]).ok()?;
    let c = ctd.container(ctx);
    let out = ctd
        .ctr(&strs(&ctd.run_image_args(&["--rm"], &c.id, name, &[])))
        .ok()?;
    ensure_eq!(out.stdout.trim(), "built-by-berth", "ctr run");
    c.ensure_gone()?;
    Ok(())
}

/// Debian's docker-registry on 127.0.0.1, stopped when dropped.
struct Registry {
    child: Child,
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry(ctx: &Ctx) -> Result<Registry, Failure> {
    let bin = Path::new("/usr/bin/docker-registry");
    if !bin.exists() {
        fail!("docker-registry is not installed (hack/install-deps.sh installs it)");
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| Failure::Fail(format!("a free port: {e}")))?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = ctx.tmp.join(format!("registry-{port}"));
    std::fs::create_dir_all(&dir).map_err(|e| Failure::Fail(format!("mkdir: {e}")))?;
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        ),
    )
    .map_err(|e| Failure::Fail(format!("write: {e}")))?;
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Failure::Fail(format!("start docker-registry: {e}")))?;
    let reg = Registry { child, addr };
    let start = Instant::now();
    while std::net::TcpStream::connect(&reg.addr).is_err() {
        if start.elapsed() > Duration::from_secs(15) {
            fail!("docker-registry did not start on {}", reg.addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(reg)
}

/// `push` to a registry; docker 20.10, podman and ctr pull the image (the manifest digest
/// berthctl pushed) and run it on the runtime under test.
fn client_images_push_then_pull_with_docker_podman_ctr(ctx: &Ctx) -> TestResult {
    let ctl = Ctl::new(ctx, "push")?;
    let reg = registry(ctx)?;
    let dir = context(ctx, "push", &[("Dockerfile", APP)])?;
    let name = format!("{}/berth-it/app:1", reg.addr);
    ctl.build(&name, &dir)?;
    let out = ctl.run(&["push", &name]).ok()?;
    let digest = out
        .stdout
        .lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string);
    let Some(digest) = digest else {
        fail!("no digest in the push output: {}", out.describe());
    };

    let docker = ctx.clients.docker(ctx, DockerVersion::V20)?;
    docker.docker(&["pull", &name]).ok()?;
    let got = docker
        .docker(&["image", "inspect", "-f", "{{index .RepoDigests 0}}", &name])
        .ok()?;
    ensure!(
        got.stdout.trim().ends_with(&digest),
        "docker's digest: {} (pushed {digest})",
        got.describe()
    );
    let c = docker.container(ctx);
    let out = docker
        .docker(&strs(&docker.run_image_args(
            &["--rm"],
            &c.name,
            &name,
            &[],
        )))
        .ok()?;
    ensure_eq!(out.stdout.trim(), "built-by-berth", "docker run");
    c.ensure_gone()?;

    let podman = ctx.clients.podman(ctx)?;
    podman.podman(&["pull", "--tls-verify=false", &name]).ok()?;
    let c = podman.container(ctx);
    let out = podman
        .podman(&strs(&podman.run_image_args(
            &["--rm"],
            &c.name,
            &name,
            &[],
        )))
        .ok()?;
    ensure_eq!(out.stdout.trim(), "built-by-berth", "podman run");
    c.ensure_gone()?;

    let ctd = ctx.clients.containerd(ctx)?;
    ctd.ctr(&["images", "pull", "--plain-http", &name]).ok()?;
    let out = ctd.ctr(&["images", "ls", "-q"]).ok()?;
    ensure!(
        out.stdout.lines().any(|l| l == name),
        "ctr images: {}",
        out.describe()
    );
    let c = ctd.container(ctx);
    let out = ctd
        .ctr(&strs(&ctd.run_image_args(&["--rm"], &c.id, &name, &[])))
        .ok()?;
    ensure_eq!(out.stdout.trim(), "built-by-berth", "ctr run");
    c.ensure_gone()?;
    Ok(())
}

/// Every instruction the peers here support the same way (no heredocs: neither buildah 1.28
/// nor docker 20.10's built-in frontend has them).
const EVERYTHING: &str = r#"FROM busybox
ARG GREETING=hello
ENV APP=/app
WORKDIR $APP
COPY src/ ./
COPY --chown=1000:1000 src/a.txt /opt/a
RUN echo "$GREETING" > greeting && rm /bin/vi && mkdir -p /var/empty && touch /etc/marker && chmod 4755 /app/greeting
USER 1000:1000
EXPOSE 8080 53/udp
VOLUME /data
LABEL org.example.a=b
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=3s CMD true
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat greeting"]
"#;

/// What the comparison reads from a running image: its files (below the paths the
/// Dockerfile touches) with mode, owner and size.
const LIST: &str = "for p in /app /opt /etc/marker /var/empty /bin/vi; do \
                    find $p -exec stat -c '%n %a %u:%g %s' {} + 2>&1; done | sort";

/// The config fields compared, from an `image inspect` object. Known additions of the peers
/// are left out: buildah's `io.buildah.version` label; podman shows HEALTHCHECK at the top
/// level (`Healthcheck`), not in `Config`.
fn config_fields(v: &serde_json::Value) -> serde_json::Value {
    let c = &v["Config"];
    let mut labels = c["Labels"].clone();
    if let Some(m) = labels.as_object_mut() {
        m.remove("io.buildah.version");
    }
    let health = [&c["Healthcheck"], &v["Healthcheck"], &v["HealthCheck"]]
        .into_iter()
        .find(|h| !h.is_null())
        .cloned()
        .unwrap_or_default();
    let mut fields = serde_json::json!({
        "Cmd": c["Cmd"], "Entrypoint": c["Entrypoint"], "Env": c["Env"], "WorkingDir": c["WorkingDir"],
        "User": c["User"], "ExposedPorts": c["ExposedPorts"], "Volumes": c["Volumes"],
        "Labels": labels, "StopSignal": c["StopSignal"], "Healthcheck": health,
    });
    // Unset is written three ways: docker shows `"User": ""` and podman `"Labels": {}` where
    // the other has null; they mean the same.
    for (_, f) in fields.as_object_mut().into_iter().flatten() {
        let empty = match f {
            serde_json::Value::String(s) => s.is_empty(),
            serde_json::Value::Object(m) => m.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            _ => false,
        };
        if empty {
            *f = serde_json::Value::Null;
        }
    }
    fields
}

/// `fields` (berthctl's) as buildah writes the same: a `FROM scratch` stage (and an image
/// built on one) gets WorkingDir "/" from BuildKit and berthctl, none from buildah 1.28; both
/// mean `/`.
fn as_buildah_writes(fields: &serde_json::Value) -> serde_json::Value {
    let mut f = fields.clone();
    if f["WorkingDir"] == "/" {
        f["WorkingDir"] = serde_json::Value::Null;
    }
    f
}

/// The one object of an `image inspect` array (`who` names the client for errors).
fn inspect_json(text: &str, who: &str) -> Result<serde_json::Value, Failure> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Failure::Fail(format!("{who} image inspect: {e}: {text}")))?;
    match v {
        serde_json::Value::Array(mut a) if a.len() == 1 => Ok(a.remove(0)),
        other => fail!("{who} image inspect: not one object: {other}"),
    }
}

/// How long a peer's build may take: importing the 344 MB Debian base takes a minute or so.
fn build_timeout() -> Duration {
    Duration::from_secs(600) * crate::runtime::timeout_scale()
}

/// `podman build --format docker -t TAG DIR` (buildah 1.28); returns the image's inspect object.
fn podman_build(podman: &Podman, tag: &str, dir: &Path) -> Result<serde_json::Value, Failure> {
    let dir = dir.to_string_lossy();
    podman
        .podman_timeout(
            &["build", "--format", "docker", "-t", tag, &dir],
            build_timeout(),
        )
        .ok()?;
    inspect_json(
        &podman.podman(&["image", "inspect", tag]).ok()?.stdout,
        "podman",
    )
}

/// `DOCKER_BUILDKIT=1 docker build -t TAG DIR` (docker 20.10's BuildKit); returns the image's
/// inspect object.
fn buildkit_build(docker: &Docker, tag: &str, dir: &Path) -> Result<serde_json::Value, Failure> {
    let dir = dir.to_string_lossy();
    docker
        .buildkit(
            &["build", "--network", "host", "-q", "-t", tag, &dir],
            build_timeout(),
        )
        .ok()?;
    inspect_json(
        &docker.docker(&["image", "inspect", tag]).ok()?.stdout,
        "docker",
    )
}

/// The same Dockerfile built by berthctl, by `podman build --format docker` and by docker
/// 20.10's BuildKit: the same config fields and the same files, modes, owners and sizes.
fn client_images_build_like_podman_and_buildkit(ctx: &Ctx) -> TestResult {
    let ctl = Ctl::new(ctx, "cmp")?;
    let dir = context(
        ctx,
        "cmp",
        &[
            ("Dockerfile", EVERYTHING),
            ("src/a.txt", "a\n"),
            ("src/sub/b.txt", "bb\n"),
            ("src/skip.log", "left out\n"),
            (".dockerignore", "src/*.log\n"),
        ],
    )?;
    let ours = ctl.build("berth-it/cmp:berth", &dir)?;
    let berth_cfg = ctl.inspect(&ours)?;
    let berth_files = ctl
        .run(&[
            "run",
            "--rm",
            "--cgroup-parent",
            &ctl.cgroup_parent,
            "--entrypoint",
            "",
            &ours,
            "sh",
            "-c",
            LIST,
        ])
        .ok()?
        .stdout;
    ensure!(
        berth_files.contains("/app/greeting 4755 0:0 6"),
        "berthctl's image: {berth_files}"
    );
    ensure!(
        !berth_files.contains("skip.log"),
        "the ignored file: {berth_files}"
    );

    let podman = ctx.clients.podman(ctx)?;
    let pod_cfg = podman_build(podman, "berth-it/cmp:podman", &dir)?;
    ensure_eq!(
        config_fields(&pod_cfg),
        config_fields(&berth_cfg),
        "config: podman vs berthctl"
    );
    let c = podman.container(ctx);
    let out = podman
        .podman(&strs(&podman.run_image_args(
            &["--rm", "--entrypoint", ""],
            &c.name,
            "berth-it/cmp:podman",
            &["sh", "-c", LIST],
        )))
        .ok()?;
    ensure_eq!(out.stdout, berth_files, "files: podman vs berthctl");
    c.ensure_gone()?;

    let docker = ctx.clients.docker(ctx, DockerVersion::V20)?;
    let bk_cfg = buildkit_build(docker, "berth-it/cmp:buildkit", &dir)?;
    ensure_eq!(
        config_fields(&bk_cfg),
        config_fields(&berth_cfg),
        "config: BuildKit vs berthctl"
    );
    let c = docker.container(ctx);
    let out = docker
        .docker(&strs(&docker.run_image_args(
            &["--rm", "--entrypoint", ""],
            &c.name,
            "berth-it/cmp:buildkit",
            &["sh", "-c", LIST],
        )))
        .ok()?;
    ensure_eq!(out.stdout, berth_files, "files: BuildKit vs berthctl");
    c.ensure_gone()?;
    Ok(())
}

/// The Debian base's tarball: `hack/debian-base.sh`'s cache (`BERTH_DEBIAN_BASE`, default
/// /var/cache/berth-test/debian-bookworm-gcc-python.tar), made by that script when missing
/// (debootstrap from the Debian archive: about 75 s and 344 MB here). A skip, saying why,
/// when it cannot be made (no debootstrap, no network to the archive).
fn debian_tarball() -> Result<PathBuf, Failure> {
    let path = std::env::var_os("BERTH_DEBIAN_BASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/berth-test/debian-bookworm-gcc-python.tar"));
    if path.is_file() {
        return Ok(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/debian-base.sh");
    if !script.is_file() {
        skip!(
            "no Debian base at {} and no {} to make it",
            path.display(),
            script.display()
        );
    }
    let o = Command::new("timeout")
        .args(["--kill-after=10", "900"])
        .arg(&script)
        .env("BERTH_DEBIAN_BASE", &path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Failure::Fail(format!("run {}: {e}", script.display())))?;
    if !o.status.success() || !path.is_file() {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        skip!(
            "no Debian base at {}: hack/debian-base.sh could not make it (debootstrap from the \
             Debian archive; no network?): {}",
            path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(path)
}

/// The base image every Debian build starts from, tagged alike in each builder's store.
const DEBIAN_BASE: &str = "localhost/berth-it/debian:base";

/// The Debian base imported by berthctl, podman and BuildKit with one Dockerfile (`FROM
/// scratch`, `ADD` of the tarball, which each extracts); the three configs compared. Built
/// again by the second test it is a cache hit for each builder (one context dir, the tarball
/// hard-linked into it).
fn debian_base(
    ctx: &Ctx,
    tarball: &Path,
    ctl: &Ctl,
    podman: &Podman,
    docker: &Docker,
) -> TestResult {
    let dir = context(
        ctx,
        "debian-base",
        &[(
            "Dockerfile",
            "FROM scratch\nADD debian.tar /\nCMD [\"bash\"]\n",
        )],
    )?;
    let tar = dir.join("debian.tar");
    if !tar.exists() && std::fs::hard_link(tarball, &tar).is_err() {
        std::fs::copy(tarball, &tar).map_err(|e| Failure::Fail(format!("copy: {e}")))?;
    }
    let ours = ctl.build(DEBIAN_BASE, &dir)?;
    let berth_cfg = config_fields(&ctl.inspect(&ours)?);
    let pod_cfg = config_fields(&podman_build(podman, DEBIAN_BASE, &dir)?);
    let bk_cfg = config_fields(&buildkit_build(docker, DEBIAN_BASE, &dir)?);
    ensure_eq!(
        pod_cfg,
        as_buildah_writes(&berth_cfg),
        format!("the Debian base's config: podman vs berthctl (BuildKit: {bk_cfg})")
    );
    ensure_eq!(
        bk_cfg,
        berth_cfg,
        "the Debian base's config: BuildKit vs berthctl"
    );
    Ok(())
}

/// The three builds of one Dockerfile: berthctl's image id and the peers' tags.
struct Three {
    berth: String,
    podman: String,
    docker: String,
}

/// Build `dir` with berthctl (RUN steps on the runtime under test), podman and BuildKit as
/// `name:<builder>`, compare the config fields (podman's and BuildKit's with berthctl's), and
/// return the three.
fn build_three(
    ctl: &Ctl,
    podman: &Podman,
    docker: &Docker,
    name: &str,
    dir: &Path,
) -> Result<Three, Failure> {
    let berth = ctl.build(&format!("{name}:berth"), dir)?;
    let ours = config_fields(&ctl.inspect(&berth)?);
    let t = Three {
        berth,
        podman: format!("{name}:podman"),
        docker: format!("{name}:buildkit"),
    };
    let pod = config_fields(&podman_build(podman, &t.podman, dir)?);
    let bk = config_fields(&buildkit_build(docker, &t.docker, dir)?);
    ensure_eq!(
        pod,
        as_buildah_writes(&ours),
        format!("config: podman vs berthctl (BuildKit: {bk})")
    );
    ensure_eq!(bk, ours, "config: BuildKit vs berthctl");
    Ok(t)
}

/// Run `argv` (entrypoint cleared, `env` added) in each of the three images, each with its own
/// builder's client (berthctl, podman, docker 20.10, each on the runtime under test), and
/// require the same output from all; returns berthctl's. `buildah_lines` are the known
/// differences of buildah's image: (berthctl's line, podman's line instead).
#[allow(clippy::too_many_arguments)]
fn run_three(
    ctx: &Ctx,
    ctl: &Ctl,
    podman: &Podman,
    docker: &Docker,
    t: &Three,
    env: &[&str],
    argv: &[&str],
    buildah_lines: &[(&str, &str)],
) -> Result<String, Failure> {
    let mut flags = vec!["--rm", "--entrypoint", ""];
    for e in env {
        flags.extend(["-e", e]);
    }
    let mut args = vec!["run", "--cgroup-parent", &ctl.cgroup_parent];
    args.extend(&flags);
    args.push(&t.berth);
    args.extend(argv);
    let ours = ctl.run(&args).ok()?.stdout;

    let c = podman.container(ctx);
    let pod = podman
        .podman(&strs(
            &podman.run_image_args(&flags, &c.name, &t.podman, argv),
        ))
        .ok()?
        .stdout;
    c.ensure_gone()?;
    let c = docker.container(ctx);
    let bk = docker
        .docker(&strs(
            &docker.run_image_args(&flags, &c.name, &t.docker, argv),
        ))
        .ok()?
        .stdout;
    c.ensure_gone()?;
    ensure_eq!(
        bk,
        ours,
        format!("BuildKit's image in docker vs berthctl's in berthctl (podman's: {pod:?})")
    );
    let mut want_pod = ours.clone();
    for (line, instead) in buildah_lines {
        let (line, instead) = (format!("{line}\n"), format!("{instead}\n"));
        ensure!(
            want_pod.contains(&line),
            "no {line:?} in berthctl's output: {ours}"
        );
        want_pod = want_pod.replace(&line, &instead);
    }
    ensure_eq!(
        pod,
        want_pod,
        "podman's image in podman vs berthctl's in berthctl (known differences applied)"
    );
    Ok(ours)
}

/// Remove the three images (the base stays for the other Debian test; the stores go with
/// the suite's tmp dir).
fn remove_three(ctl: &Ctl, podman: &Podman, docker: &Docker, t: &Three) -> TestResult {
    ctl.ok(&["rmi", &t.berth])?;
    podman.podman(&["rmi", &t.podman]).ok()?;
    docker.docker(&["rmi", &t.docker]).ok()?;
    Ok(())
}

/// What the Debian comparisons read from a running image: the files the builds added or
/// changed (not the whole Debian tree) with mode, owner and size, and their contents' digests.
fn debian_list(paths: &str, hashed: &str) -> String {
    format!(
        "for p in {paths}; do find $p -exec stat -c '%n %a %u:%g %s' {{}} + 2>&1; done | sort; \
         find {hashed} -type f -exec sha256sum {{}} + 2>&1 | sort"
    )
}

/// The files a `useradd` changes in /etc and /var/log.
const USERADD_FILES: &str = "/etc/passwd /etc/passwd- /etc/group /etc/group- /etc/shadow \
                             /etc/shadow- /etc/gshadow /etc/gshadow- /etc/subuid /etc/subgid \
                             /var/log/lastlog /var/log/faillog";

const HELLO_C: &str = r#"#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char cwd[256];
    if (!getcwd(cwd, sizeof cwd))
        return 2;
    printf("hello, %s: uid %d gid %d in %s\n", argc > 1 ? argv[1] : "nobody",
           (int)getuid(), (int)getgid(), cwd);
    return 0;
}
"#;

/// A multi-stage C build: gcc in the first stage, the binary copied into a second stage with
/// a user of its own (useradd: a RUN in each stage), USER before WORKDIR (the builders make
/// the directory owned by that user), ENTRYPOINT and CMD.
const GCC_MULTISTAGE: &str = r#"FROM localhost/berth-it/debian:base AS build
WORKDIR /src
COPY hello.c .
RUN mkdir -p /out && gcc -O2 -static -o /out/hello hello.c && strip /out/hello

FROM localhost/berth-it/debian:base
RUN useradd -u 1234 -U -m -s /bin/sh app
COPY --from=build --chown=app:app /out/hello /usr/local/bin/hello
USER app
WORKDIR /home/app/work
ENTRYPOINT ["/usr/local/bin/hello"]
CMD ["world"]
"#;

/// The multi-stage gcc build on the Debian base, by berthctl, podman and BuildKit: the same
/// config fields, the same added files (modes, owners, sizes, digests: gcc's output is the
/// same bytes) and the same output of the program, each image run by its own builder's client.
fn client_images_debian_gcc_multistage(ctx: &Ctx) -> TestResult {
    let ctl = Ctl::new(ctx, "debian")?;
    let tarball = debian_tarball()?;
    let podman = ctx.clients.podman(ctx)?;
    let docker = ctx.clients.docker(ctx, DockerVersion::V20)?;
    debian_base(ctx, &tarball, &ctl, podman, docker)?;
    let dir = context(
        ctx,
        "debian-gcc",
        &[("Dockerfile", GCC_MULTISTAGE), ("hello.c", HELLO_C)],
    )?;
    let t = build_three(&ctl, podman, docker, "localhost/berth-it/hello", &dir)?;

    // The program itself, as the image says to run it.
    let args = [
        "run",
        "--rm",
        "--cgroup-parent",
        &ctl.cgroup_parent,
        &t.berth,
    ];
    let out = ctl.run(&args).ok()?.stdout;
    ensure_eq!(
        out,
        "hello, world: uid 1234 gid 1234 in /home/app/work\n",
        "berthctl run of berthctl's image"
    );
    let c = podman.container(ctx);
    let pod = podman
        .podman(&strs(&podman.run_image_args(
            &["--rm"],
            &c.name,
            &t.podman,
            &["podman"],
        )))
        .ok()?;
    ensure_eq!(
        pod.stdout,
        "hello, podman: uid 1234 gid 1234 in /home/app/work\n",
        "podman run of podman's image"
    );
    c.ensure_gone()?;
    let c = docker.container(ctx);
    let dk = docker
        .docker(&strs(&docker.run_image_args(
            &["--rm"],
            &c.name,
            &t.docker,
            &["docker"],
        )))
        .ok()?;
    ensure_eq!(
        dk.stdout,
        "hello, docker: uid 1234 gid 1234 in /home/app/work\n",
        "docker run of BuildKit's image"
    );
    c.ensure_gone()?;

    let list = debian_list(
        &format!("/usr/local/bin/hello /home/app /src /out {USERADD_FILES}"),
        "/usr/local/bin /home/app",
    );
    let files = run_three(
        ctx,
        &ctl,
        podman,
        docker,
        &t,
        &[],
        &["sh", "-c", &list],
        &[],
    )?;
    for want in [
        "/usr/local/bin/hello 755 1234:1234 ",
        "/home/app/work 755 1234:1234 4096",
        "/etc/passwd 644 0:0 ",
        "/etc/shadow 640 0:42 ",
        "find: '/src': No such file or directory",
    ] {
        ensure!(files.contains(want), "no {want:?} in the listing: {files}");
    }
    remove_three(&ctl, podman, docker, &t)
}

/// A web app on python3-minimal's standard library (python3-minimal has no http.server: the
/// server is a plain socket one). `PORT` and `HOST` choose where it listens; `app.py get`
/// is its own client (tries 127.0.0.1:$PORT for up to 10 s and prints the response).
const APP_PY: &str = r#"import os, signal, socket, sys, time

BODY = b"hello from a python app built by three builders\n"


def serve(host, port):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        with c:
            req = b""
            while b"\r\n\r\n" not in req:
                d = c.recv(4096)
                if not d:
                    break
                req += d
            line = req.split(b"\r\n", 1)[0].split()
            status, body = (b"200 OK", BODY) if line[:2] == [b"GET", b"/"] else (b"404 Not Found", b"")
            head = b"HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nX-Uid: %d\r\n\r\n"
            c.sendall(head % (status, len(body), os.getuid()) + body)


def get(port):
    for _ in range(100):
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            time.sleep(0.1)
            continue
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            d = c.recv(4096)
            if not d:
                break
            data += d
        sys.stdout.write(data.decode())
        return
    sys.exit("no answer on port %d" % port)


port = int(os.environ.get("PORT", "8080"))
if sys.argv[1:] == ["get"]:
    get(port)
else:
    serve(os.environ.get("HOST", "0.0.0.0"), port)
"#;

const PY_WEB_APP: &str = r#"FROM localhost/berth-it/debian:base
RUN useradd --system --uid 999 --user-group --no-create-home web
WORKDIR /app
COPY --chown=web:web app.py /app/app.py
ENV PORT=8080 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080/tcp
USER web
CMD ["python3", "/app/app.py"]
"#;

/// What the app answers on GET /.
const APP_RESPONSE: &str = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 48\r\n\
                            X-Uid: 999\r\n\r\nhello from a python app built by three builders\n";

/// A berthctl container by name, removed (`rm --force`) when dropped.
struct CtlContainer<'a> {
    ctl: &'a Ctl,
    name: String,
}

impl Drop for CtlContainer<'_> {
    fn drop(&mut self) {
        let _ = self.ctl.run(&["rm", "--force", &self.name]);
    }
}

/// GET / from 127.0.0.1:`port`, retried for up to 20 s while nothing listens.
fn http_get(port: u16) -> Result<String, Failure> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(20) * crate::runtime::timeout_scale();
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .map_err(|e| Failure::Fail(format!("set_read_timeout: {e}")))?;
                s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    .map_err(|e| Failure::Fail(format!("send the request: {e}")))?;
                let mut resp = String::new();
                s.read_to_string(&mut resp)
                    .map_err(|e| Failure::Fail(format!("read the response: {e}")))?;
                return Ok(resp);
            }
            Err(e) if Instant::now() > deadline => {
                fail!("nothing answers on 127.0.0.1:{port}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The Python web app on the Debian base, by berthctl, podman and BuildKit: the same config
/// fields and added files; each image serves GET / inside its own builder's client (the app
/// and its client in one container); berthctl's image runs detached with the host's network
/// on a free port and answers the test's own GET, then is stopped and removed.
fn client_images_debian_python_web_app(ctx: &Ctx) -> TestResult {
    let ctl = Ctl::new(ctx, "debian")?;
    let tarball = debian_tarball()?;
    let podman = ctx.clients.podman(ctx)?;
    let docker = ctx.clients.docker(ctx, DockerVersion::V20)?;
    debian_base(ctx, &tarball, &ctl, podman, docker)?;
    let dir = context(
        ctx,
        "debian-python",
        &[("Dockerfile", PY_WEB_APP), ("app.py", APP_PY)],
    )?;
    let t = build_three(&ctl, podman, docker, "localhost/berth-it/web", &dir)?;

    let list = debian_list(&format!("/app {USERADD_FILES}"), "/app");
    // buildah 1.28 makes a WORKDIR only when a later step needs it: here the COPY --chown into
    // it makes /app, owned by web. BuildKit (and berthctl) make it at WORKDIR, owned by USER
    // (root here); COPY --chown owns only what it copies and the parents it makes.
    let files = run_three(
        ctx,
        &ctl,
        podman,
        docker,
        &t,
        &[],
        &["sh", "-c", &list],
        &[("/app 755 0:0 4096", "/app 755 999:999 4096")],
    )?;
    for want in [
        "/app 755 0:0 4096",
        "/app/app.py 644 999:999 ",
        "/etc/passwd 644 0:0 ",
    ] {
        ensure!(files.contains(want), "no {want:?} in the listing: {files}");
    }
    // The server and its client in one container (each builder's image in its client, with no
    // network but loopback).
    let out = run_three(
        ctx,
        &ctl,
        podman,
        docker,
        &t,
        &["PORT=8081"],
        &[
            "sh",
            "-c",
            "python3 /app/app.py & python3 /app/app.py get; kill $!",
        ],
        &[],
    )?;
    ensure_eq!(out, APP_RESPONSE, "the app's answer inside the container");

    // berthctl's image as a service: detached, the host's network, the image's CMD.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| Failure::Fail(format!("a free port: {e}")))?
        .port();
    let c = CtlContainer {
        ctl: &ctl,
        name: ctx.new_id(),
    };
    let port_env = format!("PORT={port}");
    let id = ctl
        .ok(&[
            "run",
            "-d",
            "--name",
            &c.name,
            "--network",
            "host",
            "--cgroup-parent",
            &ctl.cgroup_parent,
            "-e",
            &port_env,
            "-e",
            "HOST=127.0.0.1",
            &t.berth,
        ])?
        .trim()
        .to_string();
    let resp = http_get(port)?;
    ensure_eq!(resp, APP_RESPONSE, "GET / from the host");
    ctl.ok(&["stop", "-t", "10", &c.name])?;
    let ps = ctl.ok(&["ps", "-a", "--no-trunc"])?;
    ensure!(
        ps.lines()
            .any(|l| l.contains(&c.name) && l.contains("Exited (0)")),
        "after stop (the app exits 0 on TERM): {ps}"
    );
    ctl.ok(&["rm", &c.name])?;
    let ps = ctl.ok(&["ps", "-a", "-q"])?;
    ensure!(!ps.contains(&id[..12.min(id.len())]), "after rm: {ps}");
    let cg = format!("{}/{id}", ctl.cgroup_parent);
    ensure!(
        crate::clients::cgroup_dirs(&cg).is_empty(),
        "the container's cgroup is left: {:?}",
        crate::clients::cgroup_dirs(&cg)
    );
    remove_three(&ctl, podman, docker, &t)
}
