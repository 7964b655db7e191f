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
        rootless_in_a_delegated_cgroup,
        runtime_in_a_user_namespace_binds_devices,
        client_podman_rootless,
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
    let desc = format!("(uid {UID}) {} {}", ctx.rt.name(), args.join(" "));
    run_as_user(h, &h.runtime, args, wrap, &desc, 30)
}

/// `PROGRAM ARGS...` run by the user (see [`as_user`]), killed after `secs` seconds.
fn run_as_user(
    h: &Home,
    program: &Path,
    args: &[&str],
    wrap: Option<&str>,
    desc: &str,
    secs: u32,
) -> Out {
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
        program.to_string_lossy().into_owned(),
    ];
    user.extend(args.iter().map(|a| a.to_string()));
    let secs = secs.to_string();
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", &secs]);
    match wrap {
        Some(line) => {
            cmd.args(["unshare", "-m", "--propagation", "private", "sh", "-c"])
                .arg(format!("{line} && exec \"$@\""))
                .arg("sh")
                .args(&user);
        }
        None => {
            cmd.args(&user);
        }
    }
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
        cmd: desc.to_string(),
        code: status.code(),
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
        timed_out: status.code() == Some(124),
        hang: String::new(),
    }
}

/// Skip unless shadow's setuid newuidmap/newgidmap can run here (a setuid copy where /usr is
/// nosuid, as in the VM); then give the user
/// subordinate ids (SUB_START, 65536 of them) and a name, in files of the test's own, and
/// return the shell line that binds them over /etc's in a mount namespace of the test's
/// (the host's files are untouched).
fn user_with_subids(h: &Home) -> Result<String, Failure> {
    let mut line = String::from("true");
    for tool in ["/usr/bin/newuidmap", "/usr/bin/newgidmap"] {
        if !Path::new(tool).exists() {
            skip!("{tool} is missing (Debian: uidmap)");
        }
        // The VM sees the host's /usr through a mount without setuid: a setuid copy on the
        // test's own disk is bound over it.
        let nosuid = nix::sys::statvfs::statvfs(tool)
            .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID));
        if nosuid {
            let copy = h.dir.join(Path::new(tool).file_name().unwrap_or_default());
            fs::copy(tool, &copy)?;
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o4755))?;
            let on_nosuid = nix::sys::statvfs::statvfs(&copy)
                .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID));
            if on_nosuid {
                skip!("{tool} and the test's dir are on nosuid mounts: no setuid helper here");
            }
            line.push_str(&format!(" && mount --bind {} {tool}", copy.display()));
        }
    }
    for f in ["/etc/passwd", "/etc/subuid", "/etc/subgid"] {
        if !Path::new(f).exists() {
            skip!("{f} is missing: no file to bind the test's own over");
        }
    }
    let etc = h.dir.join("etc");
    fs::create_dir_all(&etc)?;
    let mut passwd = fs::read_to_string("/etc/passwd")?;
    passwd.push_str(&format!("berthrl:x:{UID}:{UID}::/:/bin/false\n"));
    fs::write(etc.join("passwd"), passwd)?;
    fs::write(etc.join("subuid"), format!("berthrl:{SUB_START}:65536\n"))?;
    fs::write(etc.join("subgid"), format!("berthrl:{SUB_START}:65536\n"))?;
    let e = etc.display();
    Ok(format!(
        "{line} && mount --bind {e}/passwd /etc/passwd && mount --bind {e}/subuid /etc/subuid && mount --bind {e}/subgid /etc/subgid"
    ))
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
    let lines = super::word_lines(&out.stdout);
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
        u32::try_from(pid).map_or(true, |p| !crate::context::alive(p))
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
    let binds = user_with_subids(&h)?;
    let id = format!("rl-{}", ctx.new_id());
    let out = as_user(ctx, &h, &["run", &id], Some(&binds)).ok()?;
    let lines = super::word_lines(&out.stdout);
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

/// A cgroup delegated to the user on every hierarchy mounted here (v1, v2 or both), as a
/// service manager delegates one (cgroups(7), "Cgroup v2 delegation"): the directory and its
/// files are the user's. On v2 the memory and pids controllers are available to it (not
/// enabled in it: that is the runtime's job), and the user's processes are put in an empty
/// child `caller`, since moving a process needs write access to the common ancestor's
/// cgroup.procs. Removed, children first, with this value.
struct Delegated {
    name: String,
    /// (mount point, is cgroup2)
    mounts: Vec<(PathBuf, bool)>,
}

impl Delegated {
    fn new(name: &str) -> Result<Delegated, Failure> {
        let mut seen = Vec::new();
        let mut d = Delegated {
            name: name.to_string(),
            mounts: Vec::new(),
        };
        let info = crate::mountinfo::parse(&fs::read_to_string("/proc/self/mountinfo")?);
        for m in info {
            if !matches!(m.fstype.as_str(), "cgroup" | "cgroup2")
                || m.root != "/"
                || seen.contains(&m.dev)
            {
                continue;
            }
            d.mounts
                .push((PathBuf::from(&m.mount_point), m.fstype == "cgroup2"));
            seen.push(m.dev);
        }
        ensure!(!d.mounts.is_empty(), "no cgroup hierarchy is mounted");
        for (mp, v2) in d.mounts.clone() {
            let dir = mp.join(name);
            if v2 {
                // Best effort, and left so: where the root has them enabled already (the VM
                // enables every controller at boot) this changes nothing; a hybrid host's
                // unified hierarchy has no controllers.
                let _ = fs::write(mp.join("cgroup.subtree_control"), "+memory +pids");
            }
            fs::create_dir(&dir)?;
            for f in ["cpuset.cpus", "cpuset.mems"] {
                // v1 starts a cpuset empty; v2's root has no such files (its children inherit).
                if !v2 && dir.join(f).exists() {
                    fs::write(dir.join(f), fs::read(mp.join(f))?)?;
                }
            }
            std::os::unix::fs::chown(&dir, Some(UID), Some(UID))?;
            for e in fs::read_dir(&dir)? {
                std::os::unix::fs::chown(e?.path(), Some(UID), Some(UID))?;
            }
            if v2 {
                fs::create_dir(dir.join("caller"))?;
            }
        }
        Ok(d)
    }

    /// The directory of `sub` below the delegated cgroup on each hierarchy.
    fn dirs(&self, sub: &str) -> Vec<(PathBuf, bool)> {
        self.mounts
            .iter()
            .map(|(mp, v2)| (mp.join(&self.name).join(sub), *v2))
            .collect()
    }

    /// The shell line that moves the shell into `caller` on each v2 hierarchy.
    fn enter(&self) -> String {
        let mut line = String::from("true");
        for (caller, v2) in self.dirs("caller") {
            if v2 {
                line.push_str(&format!(" && echo $$ > {}/cgroup.procs", caller.display()));
            }
        }
        line
    }

    /// The value of `file` in the container's cgroup `ctr` of the hierarchy that has it.
    fn read(&self, file: &str) -> Option<String> {
        self.mounts.iter().find_map(|(mp, _)| {
            fs::read_to_string(mp.join(&self.name).join("ctr").join(file))
                .ok()
                .map(|s| s.trim().to_string())
        })
    }
}

impl Drop for Delegated {
    /// A container a failed test left in `ctr` is killed first (its state dir may be gone
    /// with the user's home): every process of the cgroups, SIGKILLed, then the directories.
    fn drop(&mut self) {
        for (ctr, _) in self.dirs("ctr") {
            let procs = fs::read_to_string(ctr.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<u32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
            crate::clients::kill_all(&pids);
        }
        for (mp, _) in &self.mounts {
            let dir = mp.join(&self.name);
            for sub in ["ctr", "caller"] {
                let d = dir.join(sub);
                crate::harness::wait_until(std::time::Duration::from_secs(5), || {
                    !d.exists() || fs::remove_dir(&d).is_ok()
                });
            }
            let _ = fs::remove_dir(&dir);
        }
    }
}

/// A cgroupsPath in a subtree delegated to the user: limits hold (v1 and v2), the user's
/// runtime enables v2 controllers where it may and leaves the levels it may not write to
/// whoever delegated (runc ignores those errors); pause, update, kill and delete work, and
/// delete removes the cgroup on every hierarchy.
fn rootless_in_a_delegated_cgroup(ctx: &Ctx) -> TestResult {
    need_rootless(ctx)?;
    let name = format!("berth-deleg-{}-{}", std::process::id(), ctx.new_id());
    let d = Delegated::new(&name)?;
    let (h, mut cfg) = home(ctx, &["sleep", "1000"])?;
    cfg["linux"]["cgroupsPath"] = json!(format!("/{name}/ctr"));
    cfg["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 50}});
    write_config(&h, &cfg)?;
    let id = format!("rl-{}", ctx.new_id());
    let enter = d.enter();
    let user = |args: &[&str]| as_user(ctx, &h, args, Some(&enter));
    let r = (|| -> TestResult {
        user(&["create", &id]).ok()?;
        let st: Value = serde_json::from_str(&user(&["state", &id]).ok()?.stdout)
            .map_err(|e| Failure::Fail(format!("state: {e}")))?;
        let pid = st["pid"].as_u64().unwrap_or(0).to_string();
        for (ctr, _) in d.dirs("ctr") {
            let procs = fs::read_to_string(ctr.join("cgroup.procs")).unwrap_or_default();
            ensure!(
                procs.lines().any(|l| l == pid),
                "init {pid} is not in {}: {procs:?}",
                ctr.display()
            );
        }
        let mem = d
            .read("memory.max")
            .or_else(|| d.read("memory.limit_in_bytes"));
        ensure_eq!(mem.as_deref(), Some("67108864"), "the memory limit");
        ensure_eq!(d.read("pids.max").as_deref(), Some("50"), "the pids limit");
        user(&["start", &id]).ok()?;
        user(&["pause", &id]).ok()?;
        ensure!(
            user(&["state", &id]).ok()?.stdout.contains("\"paused\""),
            "not paused after pause"
        );
        user(&["resume", &id]).ok()?;
        user(&["update", "--pids-limit", "60", &id]).ok()?;
        ensure_eq!(
            d.read("pids.max").as_deref(),
            Some("60"),
            "pids after update"
        );
        user(&["kill", &id, "KILL"]).ok()?;
        let stopped = crate::harness::wait_until(std::time::Duration::from_secs(10), || {
            user(&["state", &id]).stdout.contains("\"stopped\"")
        });
        ensure!(stopped, "the container did not stop after kill");
        user(&["delete", &id]).ok()?;
        for (ctr, _) in d.dirs("ctr") {
            ensure!(!ctr.exists(), "delete left the cgroup {}", ctr.display());
        }
        Ok(())
    })();
    let _ = user(&["delete", "-f", &id]);
    r
}

/// The runtime run as root of a user namespace it did not make, on a config without one of
/// its own: rootless podman runs it so, in podman's namespace. Device nodes cannot be made
/// there (mknod needs CAP_MKNOD in the initial user namespace) and are bound from the host,
/// as runc decides by RunningInUserNS; berth made them and failed with EPERM (found trying
/// rootless podman).
fn runtime_in_a_user_namespace_binds_devices(ctx: &Ctx) -> TestResult {
    need_rootless(ctx)?;
    let mut b = ctx.bundle()?;
    b.cfg.sh(
        "for d in null zero full random urandom tty; do [ -c /dev/$d ] || echo not a device: $d; done; \
         echo x > /dev/null && head -c 3 /dev/zero | wc -c",
    );
    // The namespace maps root alone (util-linux's unshare maps more only through newuidmap):
    // devpts's gid=5 would be unmapped there.
    for m in b.cfg.0["mounts"].as_array_mut().into_iter().flatten() {
        if m["destination"] == "/dev/pts" {
            m["options"] = json!([
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620"
            ]);
        }
    }
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    let out = ctx
        .rt
        .exec_wrapped(
            &[
                "unshare",
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
            ],
            &["run", "--bundle", &dir, &b.id],
            crate::runtime::cmd_timeout(),
        )
        .ok()?;
    ensure_eq!(out.stdout.trim(), "3", "the devices inside");
    b.ensure_clean()
}

/// Rootless podman 4.3 (run by the user, subordinate ids through newuidmap, vfs storage,
/// cgroupfs, no network) with `--runtime` the runtime under test: conmon runs it as root of
/// podman's user namespace on a config without a user namespace of its own. A plain and a
/// `--privileged` container (podman binds the host's devices there), `run -d`, `exec` as root
/// and as another user, `rm -f`. Found failing on berth with mknod EPERM; runc passes.
fn client_podman_rootless(ctx: &Ctx) -> TestResult {
    need_rootless(ctx)?;
    let podman = crate::clients::require_program("podman", "podman (Debian package podman)")
        .map_err(Failure::Skip)?;
    crate::clients::require_program("conmon", "conmon (Debian package conmon)")
        .map_err(Failure::Skip)?;
    let (h, _) = home(ctx, &["true"])?;
    let binds = user_with_subids(&h)?;
    let image = ctx.clients.image()?;
    let archive = h.dir.join("image.tar");
    fs::copy(&image.archive, &archive)?;
    let store = h.dir.join("podman");
    let home_dir = h.dir.join("home");
    fs::create_dir_all(&store)?;
    fs::create_dir_all(&home_dir)?;
    for p in [&archive, &store, &home_dir] {
        std::os::unix::fs::chown(p, Some(UID), Some(UID))?;
    }
    let s = store.display();
    let files = [
        (
            "containers.conf",
            "[containers]\nnetns = \"none\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n".to_string(),
        ),
        (
            "storage.conf",
            format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{s}/root\"\nrunroot = \"{s}/run\"\n"),
        ),
        ("registries.conf", "unqualified-search-registries = []\n".into()),
        (
            "policy.json",
            "{\"default\": [{\"type\": \"insecureAcceptAnything\"}]}\n".into(),
        ),
    ];
    for (name, text) in &files {
        fs::write(h.dir.join(name), text)?;
    }
    let d = h.dir.display();
    let (home_env, conf, storage, registries) = (
        format!("HOME={d}/home"),
        format!("CONTAINERS_CONF={d}/containers.conf"),
        format!("CONTAINERS_STORAGE_CONF={d}/storage.conf"),
        format!("CONTAINERS_REGISTRIES_CONF={d}/registries.conf"),
    );
    let runtime = h.runtime.to_string_lossy().into_owned();
    let podman = podman.to_string_lossy().into_owned();
    let pm = |args: &[&str]| {
        let mut all = vec![
            home_env.as_str(),
            &conf,
            &storage,
            &registries,
            &podman,
            "--runtime",
            &runtime,
        ];
        all.extend_from_slice(args);
        let desc = format!(
            "(uid {UID}) podman --runtime {} {}",
            ctx.rt.name(),
            args.join(" ")
        );
        run_as_user(
            &h,
            Path::new("/usr/bin/env"),
            &all,
            Some(&binds),
            &desc,
            120,
        )
    };
    let r = (|| -> TestResult {
        let policy = format!("{d}/policy.json");
        let src = format!("oci-archive:{}", archive.display());
        pm(&["pull", "--quiet", "--signature-policy", &policy, &src]).ok()?;
        let img = crate::clients::image::IMAGE_REF;
        let script = "id -u; cat /proc/self/uid_map; \
            for d in null zero full random urandom tty; do [ -c /dev/$d ] || echo not a device: $d; done; \
            echo x > /dev/null && echo devices ok";
        let out = pm(&["run", "--rm", img, "sh", "-c", script]).ok()?;
        let lines = super::word_lines(&out.stdout);
        ensure_eq!(
            lines,
            vec![
                "0".to_string(),
                format!("0 {UID} 1"),
                format!("1 {SUB_START} 65536"),
                "devices ok".into()
            ],
            "a rootless podman container"
        );
        let out = pm(&[
            "run",
            "--rm",
            "--privileged",
            img,
            "sh",
            "-c",
            "echo x > /dev/null && echo ok",
        ])
        .ok()?;
        ensure_eq!(out.stdout.trim(), "ok", "--privileged");
        pm(&["run", "-d", "--name", "rl", img, "sleep", "1000"]).ok()?;
        ensure_eq!(
            pm(&["exec", "rl", "id", "-u"]).ok()?.stdout.trim(),
            "0",
            "exec"
        );
        ensure_eq!(
            pm(&["exec", "--user", "1000", "rl", "id", "-u"])
                .ok()?
                .stdout
                .trim(),
            "1000",
            "exec --user 1000"
        );
        pm(&["rm", "-f", "-t", "0", "rl"]).ok()?;
        Ok(())
    })();
    // Then every process left of the user's (its ids are the test's alone): podman's pause
    // process holding its user namespace, conmon, a container `rm` could not remove.
    let _ = pm(&["rm", "-a", "-f", "-t", "0"]);
    crate::clients::kill_all(&processes_of_test_ids());
    r
}

/// The processes running as UID or one of its subordinate ids.
fn processes_of_test_ids() -> Vec<u32> {
    let ours = |uid: u32| uid == UID || (SUB_START..SUB_START + 65536).contains(&uid);
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .is_some_and(ours)
            })
        })
        .collect()
}
