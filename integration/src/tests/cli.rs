//! `spec`, `features`, `--version`, and the rest of runc's command-line contract that clients
//! rely on (`exec --process`).

use std::fs;

use serde_json::Value;

use crate::context::Ctx;
use crate::harness::{Test, TestResult};
use crate::{ensure, fail};

pub fn tests() -> Vec<Test> {
    crate::tests![
        spec_writes_config,
        spec_in_cwd,
        spec_rootless,
        features_json,
        version_flag,
        exec_process_file_without_user,
    ]
}

fn read_config(dir: &std::path::Path) -> Result<Value, crate::harness::Failure> {
    let text = fs::read_to_string(dir.join("config.json"))?;
    Ok(serde_json::from_str(&text)?)
}

fn ns_types(cfg: &Value) -> Vec<String> {
    cfg["linux"]["namespaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn spec_writes_config(ctx: &Ctx) -> TestResult {
    let dir = ctx.scratch_dir("spec")?;
    let d = dir.to_string_lossy().into_owned();
    ctx.rt.exec(&["spec", "--bundle", &d]).ok()?;
    let cfg = read_config(&dir)?;
    ensure!(cfg["ociVersion"].is_string(), "no ociVersion: {cfg}");
    ensure!(
        cfg["process"]["args"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "no process.args: {cfg}"
    );
    ensure!(
        cfg["root"]["path"] == "rootfs",
        "root.path is not rootfs: {cfg}"
    );
    ensure!(
        ns_types(&cfg).iter().any(|t| t == "mount"),
        "no mount namespace: {cfg}"
    );
    // A second spec refuses to overwrite.
    fs::write(dir.join("config.json"), "{\"keep\": true}")?;
    ctx.rt.exec(&["spec", "--bundle", &d]).failed()?;
    let text = fs::read_to_string(dir.join("config.json"))?;
    ensure!(
        text == "{\"keep\": true}",
        "spec overwrote config.json: {text}"
    );
    Ok(())
}

fn spec_in_cwd(ctx: &Ctx) -> TestResult {
    let dir = ctx.scratch_dir("spec-cwd")?;
    ctx.rt.exec_in(&dir, &["spec"]).ok()?;
    read_config(&dir)?;
    ctx.rt.exec_in(&dir, &["spec"]).failed()?;
    Ok(())
}

fn spec_rootless(ctx: &Ctx) -> TestResult {
    let dir = ctx.scratch_dir("spec-rootless")?;
    let d = dir.to_string_lossy().into_owned();
    ctx.rt.exec(&["spec", "--rootless", "--bundle", &d]).ok()?;
    let cfg = read_config(&dir)?;
    ensure!(
        ns_types(&cfg).iter().any(|t| t == "user"),
        "rootless spec has no user namespace: {:?}",
        ns_types(&cfg)
    );
    for m in ["uidMappings", "gidMappings"] {
        ensure!(
            cfg["linux"][m].as_array().is_some_and(|a| !a.is_empty()),
            "rootless spec has no linux.{m}: {cfg}"
        );
    }
    Ok(())
}

fn features_json(ctx: &Ctx) -> TestResult {
    let f = ctx.rt.exec(&["features"]).ok()?.json()?;
    for k in ["ociVersionMin", "ociVersionMax"] {
        ensure!(
            f[k].as_str().is_some_and(|v| v.starts_with("1.")),
            "features {k} is not a 1.x version: {f}"
        );
    }
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let hooks = list(&f["hooks"]);
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        ensure!(
            hooks.iter().any(|x| x == h),
            "features hooks lacks {h}: {hooks:?}"
        );
    }
    let opts = list(&f["mountOptions"]);
    for o in [
        "bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "rprivate", "rshared", "rslave",
    ] {
        ensure!(
            opts.iter().any(|x| x == o),
            "features mountOptions lacks {o}: {opts:?}"
        );
    }
    let ns = list(&f["linux"]["namespaces"]);
    for n in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        ensure!(
            ns.iter().any(|x| x == n),
            "features linux.namespaces lacks {n}: {ns:?}"
        );
    }
    let caps = list(&f["linux"]["capabilities"]);
    if !caps.iter().any(|c| c == "CAP_SYS_ADMIN") {
        fail!("features linux.capabilities lacks CAP_SYS_ADMIN: {caps:?}");
    }
    Ok(())
}

fn version_flag(ctx: &Ctx) -> TestResult {
    let out = ctx.rt.exec(&["--version"]).ok()?;
    ensure!(
        out.stdout.to_lowercase().contains("version"),
        "--version prints no version: {}",
        out.describe()
    );
    ensure!(
        out.stdout.contains("spec: 1."),
        "--version does not name the OCI spec version (`spec: 1.x`): {}",
        out.describe()
    );
    Ok(())
}

/// runc reads `exec --process FILE` with Go's zero values for what is missing: a process.json
/// without `user` runs as uid 0, gid 0.
fn exec_process_file_without_user(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(super::WAIT_FOR_GO);
    b.run_detached().ok()?;
    let process = b.dir.join("process.json");
    let spec = serde_json::json!({"args": ["id"], "cwd": "/", "env": ["PATH=/bin:/usr/bin"]});
    fs::write(&process, spec.to_string())?;
    let process = process.to_string_lossy().into_owned();
    let out = ctx.rt.exec(&["exec", "--process", &process, &b.id]).ok()?;
    ensure!(
        out.stdout.contains("uid=0(") && out.stdout.contains("gid=0("),
        "exec of a process.json without user: {}",
        out.describe()
    );
    b.kill("KILL").ok()?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}
