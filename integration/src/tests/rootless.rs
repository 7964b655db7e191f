//! Rootless containers (issue 14, item 2): the runtime run by a user other than root (setpriv
//! to uid 61000, which owns nothing else here) on the config its own `spec --rootless` writes,
//! with $XDG_RUNTIME_DIR as its state root, as runc's. A map of only the caller's own ids is
//! written by the runtime (setgroups denied first); a map with subordinate ids goes through
//! shadow's newuidmap/newgidmap, checked here in a mount namespace of the test's own whose
//! /etc/passwd, /etc/subuid and /etc/subgid name the user (the host's files are untouched).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::context::Ctx;
use crate::harness::{Failure, TestResult};
use crate::runtime::Out;
use crate::{ensure, ensure_eq, skip};

pub fn tests() -> Vec<crate::harness::Test> {
    crate::tests![
        rootless_run_as_the_callers_own_id,
        rootless_create_start_exec_kill_delete,
        rootless_limits_without_a_cgroup_are_an_error,
        rootless_subordinate_ids_through_newuidmap,
    ]
}

const UID: u32 = 61_000;
const SUB_START: u32 = 300_000;

/// A directory of the user's (bundle, state root), removed with this value.
struct Home {
    dir: PathBuf,
    /// A copy of the runtime the user may run (its own directory may be root's only).
    runtime: PathBuf,
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Home {
    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    fn xdg(&self) -> PathBuf {
        self.dir.join("xdg")
    }
}

/// Skip where the kernel or this process cannot run a rootless container.
fn need_rootless(_ctx: &Ctx) -> Result<(), Failure> {
    if !nix::unistd::geteuid().is_root() {
        skip!("the test switches to another user: it needs root");
    }
    Ok(())
}

/// The user's home with a copy of the rootfs, and the config of `<runtime> spec --rootless`
/// run by the user, with `args` as its process.
fn home(ctx: &Ctx, args: &[&str]) -> Result<(Home, Value), Failure> {
    let n = ctx.new_id();
    let dir = PathBuf::from(format!("/tmp/berth-rootless-{}-{n}", std::process::id()));
    let h = Home {
        runtime: dir.join("runtime"),
        dir,
    };
    fs::create_dir_all(h.bundle())?;
    fs::copy(&ctx.rt.path, &h.runtime)?;
    fs::set_permissions(&h.runtime, fs::Permissions::from_mode(0o755))?;
    fs::create_dir_all(h.xdg())?;
    for d in [&h.dir, &h.bundle(), &h.xdg()] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::chown(d, Some(UID), Some(UID))?;
    }
    let st = Command::new("cp")
        .arg("-a")
        .arg(&ctx.rootfs)
        .arg(h.bundle().join("rootfs"))
        .status()?;
    ensure!(st.success(), "cp -a of the rootfs: {st}");
    as_user(ctx, &h, &["spec", "--rootless"], None).ok()?;
    let mut cfg: Value = serde_json::from_slice(&fs::read(h.bundle().join("config.json"))?)
        .map_err(|e| Failure::Fail(format!("spec --rootless wrote no JSON: {e}")))?;
    cfg["process"]["args"] = json!(args);
    cfg["process"]["terminal"] = json!(false);
    cfg["root"]["path"] = json!("rootfs");
    Ok((h, cfg))
}

fn write_config(h: &Home, cfg: &Value) -> Result<(), Failure> {
    let p = h.bundle().join("config.json");
    fs::write(&p, serde_json::to_vec_pretty(cfg).expect("json"))?;
    std::os::unix::fs::chown(&p, Some(UID), Some(UID))?;
    Ok(())
}

/// `<runtime> ARGS...` run by the user in its bundle, $XDG_RUNTIME_DIR its own (no --root:
/// the runtime's default), killed after 30 s; `wrap`: a shell line run (as root) before.
fn as_user(ctx: &Ctx, h: &Home, args: &[&str], wrap: Option<&str>) -> Out {
    let id = UID.to_string();
    let mut user: Vec<String> = vec![
        "setpriv".into(),
        "--reuid".into(),
        id.clone(),
        "--regid".into(),
        id,
        "--clear-groups".into(),
        "env".into(),
        format!("XDG_RUNTIME_DIR={}", h.xdg().display()),
        "HOME=/".into(),
        h.runtime.to_string_lossy().into_owned(),
    ];
    user.extend(args.iter().map(|a| a.to_string()));
    let mut cmd = match wrap {
        Some(line) => {
            let mut c = Command::new("timeout");
            c.args([
                "-k",
                "5",
                "30",
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
            ])
            .arg(format!("{line} && exec \"$@\""))
            .arg("sh")
            .args(&user);
            c
        }
        None => {
            let mut c = Command::new("timeout");
            c.args(["-k", "5", "30"]).args(&user);
            c
        }
    };
    // Output to files: a created container keeps its stdio, which a pipe would wait for.
    let (out, err) = (h.dir.join("out"), h.dir.join("err"));
    let status = cmd
        .current_dir(h.bundle())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("out file"))
        .stderr(fs::File::create(&err).expect("err file"))
        .status()
        .expect("run timeout");
    Out {
        cmd: format!("(uid {UID}) {} {}", ctx.rt.name(), args.join(" ")),
        code: status.code(),
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
        timed_out: status.code() == Some(124),
    }
}

/// The runtime's state root as the user's: $XDG_RUNTIME_DIR/<berth|runc>.
fn state_root(ctx: &Ctx, h: &Home) -> PathBuf {
    h.xdg()
        .join(if ctx.rt.is_runc() { "runc" } else { "berth" })
}

fn rootless_run_as_the_callers_own_id(ctx: &Ctx) -> TestResult {
    need_rootless(ctx)?;
    let script = "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups";
    let (h, cfg) = home(ctx, &["sh", "-c", script])?;
    let maps = &cfg["linux"]["uidMappings"];
    ensure_eq!(
        maps.clone(),
        json!([{"containerID": 0, "hostID": UID, "size": 1}]),
        "spec --rootless maps the caller"
    );
    write_config(&h, &cfg)?;
    let id = format!("rl-{}", ctx.new_id());
    let out = as_user(ctx, &h, &["run", &id], None).ok()?;
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    ensure_eq!(
        lines,
        vec![
            "0",
            "0",
            &format!("0 {UID} 1"),
            &format!("0 {UID} 1"),
            "deny"
        ],
        "ids, maps and setgroups inside"
    );
    ensure!(
        !state_root(ctx, &h).join(&id).exists(),
        "run left its state dir behind"
    );
    Ok(())
}

fn rootless_create_start_exec_kill_delete(ctx: &Ctx) -> TestResult {
    need_rootless(ctx)?;
    let (h, cfg) = home(ctx, &["sleep", "1000"])?;
    write_config(&h, &cfg)?;
    let id = format!("rl-{}", ctx.new_id());
    as_user(ctx, &h, &["create", &id], None).ok()?;
    let state_dir = state_root(ctx, &h).join(&id);
    ensure!(
        state_dir.is_dir(),
        "no state dir at {}",
        state_dir.display()
    );
    let st: Value = serde_json::from_str(&as_user(ctx, &h, &["state", &id], None).ok()?.stdout)
        .map_err(|e| Failure::Fail(format!("state: {e}")))?;
    ensure_eq!(
        st["status"].as_str(),
        Some("created"),
        "status after create"
    );
    let pid = st["pid"].as_u64().unwrap_or(0);
    let owner = fs::metadata(format!("/proc/{pid}"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0);
    ensure_eq!(
        owner,
        UID,
        "the container's init runs as the caller on the host"
    );
    as_user(ctx, &h, &["start", &id], None).ok()?;
    let out = as_user(ctx, &h, &["exec", &id, "id", "-u"], None).ok()?;
    ensure_eq!(out.stdout.trim(), "0", "exec's uid inside");
    let list = as_user(ctx, &h, &["list", "-q"], None).ok()?;
    ensure!(
        list.stdout.lines().any(|l| l == id),
        "list -q: {}",
        list.stdout
    );
    as_user(ctx, &h, &["kill", &id, "KILL"], None).ok()?;
    let stopped = crate::harness::wait_until(std::time::Duration::from_secs(10), || {
        as_user(ctx, &h, &["state", &id], None)
            .stdout
            .contains("\"stopped\"")
    });
    ensure!(stopped, "the container did not stop after kill");
    as_user(ctx, &h, &["delete", &id], None).ok()?;
    ensure!(!state_dir.exists(), "delete left {}", state_dir.display());
    // Gone, or a zombie until whoever it was reparented to reaps it.
    let gone = crate::harness::wait_until(std::time::Duration::from_secs(5), || {
        fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    });
    ensure!(gone, "init {pid} still runs after delete");
    Ok(())
}

fn rootless_limits_without_a_cgroup_are_an_error(ctx: &Ctx) -> TestResult {
    need_rootless(ctx)?;
    let (h, mut cfg) = home(ctx, &["true"])?;
    // The user may write no cgroup here: a limit cannot hold, and that is an error (runc: a
    // permission error is ignored only for a cgroup it needs for nothing).
    cfg["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}});
    write_config(&h, &cfg)?;
    let id = format!("rl-{}", ctx.new_id());
    let out = as_user(ctx, &h, &["run", &id], None);
    let _ = as_user(ctx, &h, &["delete", "-f", &id], None);
    out.failed()?;
    ensure!(
        !state_root(ctx, &h).join(&id).exists(),
        "a failed run left its state dir"
    );
    Ok(())
}

fn rootless_subordinate_ids_through_newuidmap(ctx: &Ctx) -> TestResult {
    need_rootless(ctx)?;
    for tool in ["/usr/bin/newuidmap", "/usr/bin/newgidmap"] {
        if !Path::new(tool).exists() {
            skip!("{tool} is missing (Debian: uidmap)");
        }
        // The VM sees the host's /usr through a mount without setuid.
        let nosuid = nix::sys::statvfs::statvfs(tool)
            .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID));
        if nosuid {
            skip!("{tool} is on a nosuid mount here: it cannot act as the setuid helper it is");
        }
    }
    for f in ["/etc/passwd", "/etc/subuid", "/etc/subgid"] {
        if !Path::new(f).exists() {
            skip!("{f} is missing: no file to bind the test's own over");
        }
    }
    let (h, mut cfg) = home(
        ctx,
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -G",
        ],
    )?;
    let m = json!([{"containerID": 0, "hostID": UID, "size": 1},
        {"containerID": 1, "hostID": SUB_START, "size": 65536}]);
    cfg["linux"]["uidMappings"] = m.clone();
    cfg["linux"]["gidMappings"] = m;
    cfg["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    write_config(&h, &cfg)?;
    // The user exists (newuidmap looks its name up) with subordinate ids, in this mount
    // namespace only.
    let etc = h.dir.join("etc");
    fs::create_dir_all(&etc)?;
    let mut passwd = fs::read_to_string("/etc/passwd")?;
    passwd.push_str(&format!("berthrl:x:{UID}:{UID}::/:/bin/false\n"));
    fs::write(etc.join("passwd"), passwd)?;
    fs::write(etc.join("subuid"), format!("berthrl:{SUB_START}:65536\n"))?;
    fs::write(etc.join("subgid"), format!("berthrl:{SUB_START}:65536\n"))?;
    let e = etc.display();
    let binds = format!(
        "mount --bind {e}/passwd /etc/passwd && mount --bind {e}/subuid /etc/subuid && mount --bind {e}/subgid /etc/subgid"
    );
    let id = format!("rl-{}", ctx.new_id());
    let out = as_user(ctx, &h, &["run", &id], Some(&binds)).ok()?;
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let want_map = [format!("0 {UID} 1"), format!("1 {SUB_START} 65536")];
    ensure_eq!(lines.get(..2), Some(&want_map[..]), "uid_map inside");
    ensure_eq!(lines.get(2..4), Some(&want_map[..]), "gid_map inside");
    ensure_eq!(
        lines.get(4..6),
        Some(&["1000".to_string(), "1000".to_string()][..]),
        "uid and groups of the process"
    );
    // Supplementary groups are refused rootless, as runc refuses them.
    cfg["process"]["user"]["additionalGids"] = json!([1001]);
    write_config(&h, &cfg)?;
    let id = format!("rl-{}", ctx.new_id());
    let out = as_user(ctx, &h, &["run", &id], Some(&binds));
    let _ = as_user(ctx, &h, &["delete", "-f", &id], Some(&binds));
    let out = out.failed()?;
    ensure!(
        out.stderr.contains("additional groups"),
        "the refusal names the groups: {}",
        out.stderr
    );
    Ok(())
}
