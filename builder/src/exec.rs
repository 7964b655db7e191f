//! A RUN step's command in a container of the runtime (berth, or `--runtime`): the bundle's
//! config.json is made from the stage's image config as `berthctl run` makes it (user resolved
//! in the rootfs, docker's default capabilities and seccomp profile, the network namespace
//! chosen), with the ARGs in scope in the environment (ENV wins over an ARG of the same name);
//! the command's stdout and stderr go to one pipe that is streamed to the build's report, the
//! last part kept for the error of a failing step. `runtime run` waits for the container and
//! exits with its code; the runtime removes its state itself.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use image::bundle::{self, Bind, BundleOptions, Network};
use serde_json::{Map, Value};

use crate::build::{Error, Report, Result};

/// How much of a step's output is kept for its error.
const TAIL: usize = 4096;

/// Where and how RUN steps run.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub path: PathBuf,
    /// Its `--root` (state directory).
    pub root: PathBuf,
    /// The cgroup every step's container goes under (absolute).
    pub cgroup_parent: String,
}

/// One RUN command to run.
pub struct Job<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    /// The whole image config of the stage (its `config` object is what counts).
    pub image_config: &'a Map<String, Value>,
    pub argv: Vec<String>,
    /// `KEY=value` of the ARGs in scope (under the config's Env).
    pub args_env: Vec<String>,
    /// `KEY=value` of secrets given as variables (over everything).
    pub secret_env: Vec<String>,
    pub network: Network,
    pub binds: Vec<Bind>,
    /// More mounts (OCI `mounts` entries: RUN --mount's).
    pub mounts: Vec<Value>,
    pub line: usize,
}

/// Run `job` (its rootfs mounted at `<bundle>/rootfs`); returns when the container has exited.
pub fn run(rt: &Runtime, job: &Job<'_>, report: &dyn Report) -> Result<()> {
    let rootfs = job.bundle.join("rootfs");
    let config: image::oci_spec::image::ImageConfiguration =
        serde_json::from_value(Value::Object(job.image_config.clone()))
            .map_err(|e| Error::step(job.line, format!("the stage's image config: {e}")))?;
    let mut o = BundleOptions::new(job.id);
    o.entrypoint = Some(Vec::new());
    o.args = job.argv.clone();
    let image_env: Vec<String> = config
        .config()
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default();
    o.env = job
        .args_env
        .iter()
        .filter(|kv| {
            let k = kv.split('=').next().unwrap_or(kv);
            !image_env.iter().any(|e| e.split('=').next() == Some(k))
        })
        .chain(&job.secret_env)
        .cloned()
        .collect();
    o.network = job.network;
    o.hostname = "berth-build".into();
    o.binds = job.binds.clone();
    o.cgroups_path = format!("{}/{}", rt.cgroup_parent.trim_end_matches('/'), job.id);
    let mut spec = bundle::generate(&config, &rootfs, &o).map_err(|e| Error::step(job.line, e))?;
    if let Some(m) = spec["mounts"].as_array_mut() {
        m.extend(job.mounts.iter().cloned());
    }
    image::fsutil::write_atomic(
        &job.bundle.join("config.json"),
        &serde_json::to_vec(&spec).map_err(|e| Error::step(job.line, e))?,
    )?;
    let (mut reader, writer) = std::io::pipe().map_err(|e| Error::io("create a pipe", e))?;
    let mut cmd = Command::new(&rt.path);
    cmd.arg("--root")
        .arg(&rt.root)
        .arg("run")
        .arg("--bundle")
        .arg(job.bundle)
        .arg(job.id)
        .stdin(Stdio::null())
        .stdout(
            writer
                .try_clone()
                .map_err(|e| Error::io("duplicate a pipe", e))?,
        )
        .stderr(writer);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("run {}", rt.path.display()), e))?;
    // Our copies of the write end are gone with `cmd`: EOF comes when the container's last
    // process closes its own.
    drop(cmd);
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 14];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                report.output(&buf[..n]);
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * TAIL {
                    tail.drain(..tail.len() - TAIL);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read the step's output", e)),
        }
    }
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("wait for {}", rt.path.display()), e))?;
    if status.success() {
        return Ok(());
    }
    if tail.len() > TAIL {
        tail.drain(..tail.len() - TAIL);
    }
    Err(Error::Run {
        line: job.line,
        command: job.argv.join(" "),
        code: status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        }),
        output: String::from_utf8_lossy(&tail).into_owned(),
    })
}
