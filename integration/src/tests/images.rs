//! berthctl's images with the real tools (issue 12): what berthctl builds (every RUN step in a
//! container of the runtime under test), saves and pushes is loaded, pulled and run by docker
//! 20.10, podman 4.3 and containerd 1.6 (`ctr`), each running it on the runtime under test;
//! and the same Dockerfile built by `podman build --format docker` (buildah 1.28) and by
//! docker 20.10's BuildKit gives the same config and the same files, modes and owners.
//!
//! berthctl is the one next to the integration binary (host runs only: the VM pass has
//! none). The registry is Debian's docker-registry on 127.0.0.1 (a random port), which every
//! client reaches over plain HTTP as a loopback registry.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::clients::containerd::strs;
use crate::clients::docker::Version as DockerVersion;
use crate::context::Ctx;
use crate::harness::{Failure, Test, TestResult};
use crate::runtime::Out;
use crate::{ensure, ensure_eq, fail, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        client_images_save_loads_in_docker_podman_ctr,
        client_images_push_then_pull_with_docker_podman_ctr,
        client_images_build_like_podman_and_buildkit,
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
        }
    }

    fn ok(&self, args: &[&str]) -> Result<String, Failure> {
        Ok(self.run(args).ok()?.stdout)
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
    serde_json::json!({
        "Cmd": c["Cmd"], "Entrypoint": c["Entrypoint"], "Env": c["Env"], "WorkingDir": c["WorkingDir"],
        "User": c["User"], "ExposedPorts": c["ExposedPorts"], "Volumes": c["Volumes"],
        "Labels": labels, "StopSignal": c["StopSignal"], "Healthcheck": health,
    })
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
    let berth_cfg: serde_json::Value = serde_json::from_str(&ctl.ok(&["image", "inspect", &ours])?)
        .map_err(|e| Failure::Fail(format!("inspect: {e}")))?;
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
    podman
        .podman(&[
            "build",
            "--format",
            "docker",
            "-t",
            "berth-it/cmp:podman",
            &dir.to_string_lossy(),
        ])
        .ok()?;
    let pod_cfg: serde_json::Value = serde_json::from_str(
        &podman
            .podman(&["image", "inspect", "berth-it/cmp:podman"])
            .ok()?
            .stdout,
    )
    .map_err(|e| Failure::Fail(format!("podman inspect: {e}")))?;
    ensure_eq!(
        config_fields(&pod_cfg[0]),
        config_fields(&berth_cfg[0]),
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
    let mut cmd = docker.docker_command(&[
        "build",
        "--network",
        "host",
        "-q",
        "-t",
        "berth-it/cmp:buildkit",
        &dir.to_string_lossy(),
    ]);
    cmd.env("DOCKER_BUILDKIT", "1");
    let o = cmd
        .output()
        .map_err(|e| Failure::Fail(format!("docker build: {e}")))?;
    if !o.status.success() {
        fail!(
            "docker build (BuildKit): {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let bk_cfg: serde_json::Value = serde_json::from_str(
        &docker
            .docker(&["image", "inspect", "berth-it/cmp:buildkit"])
            .ok()?
            .stdout,
    )
    .map_err(|e| Failure::Fail(format!("docker inspect: {e}")))?;
    ensure_eq!(
        config_fields(&bk_cfg[0]),
        config_fields(&berth_cfg[0]),
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
