//! `spec`, `features`, `--version`, and the rest of runc's command-line contract that clients
//! rely on: `exec --process`, exec's exit status 255, `--debug`, unknown commands.

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
        exec_cap_adds_no_inheritable,
        exec_failures_exit_255,
        debug_logs_debug_lines,
        unknown_command_has_no_help_topic,
        one_dash_long_options,
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

/// runc's layout, which go-runc (containerd) and dockerd parse: `<name> version X`, then
/// `commit: ...`, `spec: 1.x.y` and the toolchain (`go: ...`; berth: `rust: ...`); `-v` is the
/// same as `--version`.
fn version_flag(ctx: &Ctx) -> TestResult {
    let out = ctx.rt.exec(&["--version"]).ok()?;
    let short = ctx.rt.exec(&["-v"]).ok()?;
    ensure!(
        short.stdout == out.stdout,
        "-v and --version differ: {} / {}",
        short.describe(),
        out.describe()
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    let first: Vec<&str> = lines.first().copied().unwrap_or("").split(' ').collect();
    ensure!(
        first.len() == 3 && first[1] == "version" && !first[2].is_empty(),
        "the first line is not `<name> version X`: {}",
        out.describe()
    );
    for (prefix, what) in [
        ("commit: ", "the commit"),
        ("spec: 1.", "the OCI spec version"),
    ] {
        ensure!(
            lines
                .iter()
                .any(|l| l.starts_with(prefix) && l.len() > prefix.len()),
            "--version does not name {what} (`{prefix}...`): {}",
            out.describe()
        );
    }
    ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("go: ") || l.starts_with("rust: ")),
        "--version does not name its toolchain: {}",
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

/// `exec --cap` adds the capability to the bounding, effective and permitted sets; runc 1.2+
/// never to the inheritable set, and to ambient only when an inheritable set exists (runc 1.1
/// added it to all five).
fn exec_cap_adds_no_inheritable(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(super::WAIT_FOR_GO);
    b.run_detached().ok()?;
    let out = ctx
        .rt
        .exec(&[
            "exec",
            "--cap",
            "CAP_SYS_TIME",
            &b.id,
            "grep",
            "^Cap",
            "/proc/self/status",
        ])
        .ok()?;
    let field = |k: &str| -> u64 {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(u64::MAX)
    };
    const SYS_TIME: u64 = 1 << 25;
    ensure!(
        field("CapEff:") & SYS_TIME != 0 && field("CapBnd:") & SYS_TIME != 0,
        "CAP_SYS_TIME is not effective and bounding: {}",
        out.stdout
    );
    if !ctx.rt.is_runc_before(1, 2) {
        ensure!(
            field("CapInh:") & SYS_TIME == 0,
            "--cap added an inheritable capability: {}",
            out.stdout
        );
    }
    b.kill("KILL").ok()?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// runc exits 255 when `exec` fails (not its process: that one's status passes through), and
/// words the reasons as clients match them: docker maps `executable file not found` and `no
/// such file or directory` to 127, `permission denied` to 126; containerd looks for `does not
/// exist`.
fn exec_failures_exit_255(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(super::WAIT_FOR_GO);
    b.run_detached().ok()?;
    let id = b.id.as_str();
    let out = ctx.rt.exec(&["exec", id, "sh", "-c", "exit 7"]);
    ensure!(
        out.code == Some(7),
        "exit status of the process: {}",
        out.describe()
    );
    let cases: [(&[&str], &str); 4] = [
        (&["exec", id, "no-such-cmd"], "executable file not found"),
        (&["exec", id, "/no/such/cmd"], "no such file or directory"),
        (&["exec", id, "/etc/passwd"], "permission denied"),
        (
            &["exec", "no-such-container-berth", "true"],
            "does not exist",
        ),
    ];
    for (args, words) in cases {
        let out = ctx.rt.exec(args);
        ensure!(
            out.code == Some(255),
            "`{}` should exit 255: {}",
            args.join(" "),
            out.describe()
        );
        out.stderr_mentions(words)?;
    }
    b.kill("KILL").ok()?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// `--debug` logs debug lines: as text on stderr, or as JSON lines into `--log`.
fn debug_logs_debug_lines(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.args(&["true"]);
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    let out = ctx
        .rt
        .exec(&["--debug", "run", "--bundle", &dir, &b.id])
        .ok()?;
    ensure!(
        out.stderr.lines().any(|l| l.contains("level=debug")),
        "no debug line on stderr: {}",
        out.describe()
    );
    let log = b.dir.join("debug.json");
    let log_arg = log.to_string_lossy().into_owned();
    ctx.rt
        .exec(&[
            "--debug",
            "--log",
            &log_arg,
            "--log-format",
            "json",
            "run",
            "--bundle",
            &dir,
            &b.id,
        ])
        .ok()?;
    let text = fs::read_to_string(&log)?;
    let debug = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "debug" && v["msg"].is_string())
        .count();
    ensure!(debug > 0, "no JSON debug line in --log: {text:?}");
    b.ensure_clean()
}

/// runc says `No help topic for 'foo'` for a command it does not have (also for `help foo` and
/// `foo -h`), exiting non-zero. checkpoint and restore are real commands: `checkpoint --help`
/// exits 0 (podman's probe for "supported"), and a failing one leaves what containerd's runc
/// shim reads back from `--log`: one error line of one sentence.
fn unknown_command_has_no_help_topic(ctx: &Ctx) -> TestResult {
    for args in [&["foo"][..], &["help", "foo"], &["foo", "-h"]] {
        let out = ctx.rt.exec(args).failed()?;
        out.stderr_mentions("No help topic for 'foo'")?;
    }
    if ctx.rt.is_runc_before(1, 0) {
        return Ok(());
    }
    for cmd in ["checkpoint", "restore"] {
        let out = ctx.rt.exec(&[cmd, "--help"]).ok()?;
        ensure!(
            out.stdout.contains("--image-path"),
            "`{cmd} --help` does not list --image-path: {}",
            out.describe()
        );
    }
    let dir = ctx.scratch_dir("unknown-command")?;
    let log = dir.join("log.json");
    let log_arg = log.to_string_lossy().into_owned();
    let missing = ctx.new_id();
    for cmd in ["checkpoint", "restore"] {
        let _ = fs::remove_file(&log);
        ctx.rt
            .exec_in(
                &dir,
                &[
                    "--log",
                    &log_arg,
                    "--log-format",
                    "json",
                    cmd,
                    "--image-path",
                    "/x",
                    &missing,
                ],
            )
            .failed()?;
        let text = fs::read_to_string(&log)?;
        let lines: Vec<&str> = text.lines().collect();
        ensure!(lines.len() == 1, "{cmd}: want one log line: {text:?}");
        let v: Value = serde_json::from_str(lines[0])?;
        let msg = v["msg"].as_str().unwrap_or_default();
        ensure!(
            v["level"] == "error" && !msg.is_empty() && !msg.contains('\n'),
            "{cmd}: the log line is not one error sentence: {text:?}"
        );
    }
    Ok(())
}

/// runc's parser (urfave/cli on Go's flag) takes a long option with one dash too, and
/// go-runc relies on it: containerd's runc shim restores with `restore ... -no-subreaper`.
/// Global and command options, `-name value` and `-name=value`, and a restore that fails for
/// its missing image, not for its options.
fn one_dash_long_options(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.args(&["sleep", "100"]);
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    let pid_file = b.dir.join("pid");
    let log = b.dir.join("log.json");
    let (pid_arg, log_arg) = (
        format!("-pid-file={}", pid_file.display()),
        log.to_string_lossy().into_owned(),
    );
    ctx.rt
        .exec(&[
            "-log",
            &log_arg,
            "-log-format",
            "json",
            "create",
            "-bundle",
            &dir,
            &pid_arg,
            &b.id,
        ])
        .ok()?;
    ensure!(pid_file.exists(), "create -pid-file= wrote no pid file");
    let state: Value = serde_json::from_str(&ctx.rt.exec(&["state", &b.id]).ok()?.stdout)?;
    ensure!(state["status"] == "created", "state after create: {state}");
    ctx.rt.exec(&["delete", "-force", &b.id]).ok()?;
    b.ensure_clean()?;
    if ctx.rt.is_runc_before(1, 0) {
        return Ok(());
    }
    let images = ctx.scratch_dir("one-dash-restore")?;
    let missing = images.join("none").to_string_lossy().into_owned();
    let _ = fs::remove_file(&log);
    let out = ctx
        .rt
        .exec(&[
            "-log",
            &log_arg,
            "-log-format",
            "json",
            "restore",
            "-detach",
            "-no-subreaper",
            "-image-path",
            &missing,
            "-bundle",
            &dir,
            &b.id,
        ])
        .failed()?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    ensure!(
        !text.is_empty()
            && !out.stderr.contains("unexpected argument")
            && !out.stderr.contains("flag provided but not defined")
            && !out.stderr.contains("Incorrect Usage"),
        "restore with one-dash options failed on its command line, not on the missing \
         image: {} log {text:?}",
        out.describe()
    );
    b.ensure_clean()
}
