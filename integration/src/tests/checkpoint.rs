//! `checkpoint` and `restore` with CRIU: a counting container checkpointed and restored keeps
//! counting, `--leave-running`, and the restored container's state/kill/delete. CRIU's
//! directory is put first in the runtime's PATH; the tests skip when CRIU is missing or
//! `criu check` fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::context::Ctx;
use crate::fixture::Bundle;
use crate::harness::{wait_until, Failure, Test, TestResult};
use crate::runtime::Out;
use crate::{ensure, ensure_eq, fail, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        checkpoint_restore_keeps_counting,
        checkpoint_leave_running,
        restored_container_state_kill_delete,
        checkpoint_stdio_dev_null_reopened_inside,
        restore_into_a_fresh_rootfs_with_a_bind_on_dev,
        client_podman_checkpoint_restore_export_import,
        checkpoint_restore_terminal,
        pre_dump_then_dump_and_restore,
        checkpoint_to_a_page_server,
        lazy_pages_migration,
        tcp_established_connection_survives,
        checkpoint_restore_user_namespace,
        checkpoint_restore_non_root_process,
        checkpoint_restore_in_a_joined_network_namespace,
        checkpoint_external_unix_socket,
        checkpoint_restore_nested_binds,
        checkpoint_restore_lsm_profile,
    ]
}

/// Where hack/install-peers.sh puts sid's CRIU (bookworm's 3.17 fails `criu check` on 6.x).
const PEER_CRIU: &str = "/var/tmp/berth-peers/criu-4.2.1/bin/criu";

/// Counts in /shared/count every 0.1 s. The shell's stdout and stderr are the container's
/// /dev/null: a descriptor on a host file outside the container cannot be dumped (by runc
/// either); stdin stays the harness's /dev/null, which the runtime reopens inside.
const COUNTER: &str = "exec >/dev/null 2>&1; i=0; while true; do i=$((i+1)); \
                       echo $i > /shared/count; sleep 0.1; done";

/// The CRIU binary: `$BERTH_TEST_CRIU`, the peer install, or `criu` in PATH.
fn find_criu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_TEST_CRIU") {
        return Some(PathBuf::from(p));
    }
    if Path::new(PEER_CRIU).exists() {
        return Some(PEER_CRIU.into());
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("criu"))
        .find(|p| p.is_file())
}

/// The PATH to give the runtime (CRIU's directory first), or why CRIU is not usable.
fn criu_path() -> &'static Result<String, String> {
    static PATH: OnceLock<Result<String, String>> = OnceLock::new();
    PATH.get_or_init(|| {
        let criu = find_criu().ok_or_else(|| {
            format!(
                "criu not found (set BERTH_TEST_CRIU, install it at {PEER_CRIU} with \
                 hack/install-peers.sh, or put it in PATH)"
            )
        })?;
        let out = Command::new(&criu)
            .arg("check")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", criu.display()))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            return Err(format!(
                "`{} check` fails on this host: {}",
                criu.display(),
                crate::campaign::clip(text.trim(), 300)
            ));
        }
        let dir = criu.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut dirs = vec![dir];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs)
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| format!("PATH with CRIU's directory: {e}"))
    })
}

/// Skip unless CRIU works and the runtime has checkpoint/restore with runc 1.x's flags.
fn need_criu(ctx: &Ctx) -> Result<String, Failure> {
    if ctx.rt.is_runc_before(1, 0) {
        skip!("runc before 1.0 lacks checkpoint/restore's flags (--image-path, --pid-file)");
    }
    if ctx.rt.is_runc_before(1, 2) && Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        // CRIU puts the restored tree back into the cgroup recorded at dump, the checkpointed
        // container's, which nobody removes (cri-o#6894; fixed by runc#3546 in runc 1.2).
        skip!("runc before 1.2 restores into the checkpointed container's cgroup on cgroup v2 and leaves it behind");
    }
    match criu_path() {
        Ok(p) => Ok(p.clone()),
        Err(why) => skip!("{why}"),
    }
}

/// The counter's current value (retried: a read may land between truncate and write).
fn count(shared: &Path) -> Option<u64> {
    let p = shared.join("count");
    for _ in 0..20 {
        if let Some(n) = fs::read_to_string(&p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            return Some(n);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Wait until the counter reaches `n`.
fn wait_count(shared: &Path, n: u64) -> Result<u64, Failure> {
    let mut last = None;
    if wait_until(Duration::from_secs(10), || {
        last = count(shared);
        last.is_some_and(|c| c >= n)
    }) {
        Ok(last.unwrap_or_default())
    } else {
        fail!("the counter did not reach {n} (last value {last:?})")
    }
}

/// A running counter container: its bundle and the host side of /shared.
fn start_counter(ctx: &Ctx) -> Result<(Bundle<'_>, PathBuf), Failure> {
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.sh(COUNTER);
    b.run_detached().ok()?;
    wait_count(&shared, 3)?;
    Ok((b, shared))
}

/// A bundle for restoring `from` under a new id: the same config (its /shared bind included)
/// with the new id's cgroup path, and a fresh copy of the rootfs.
fn restore_bundle<'a>(ctx: &'a Ctx, from: &Bundle) -> Result<Bundle<'a>, Failure> {
    let mut b = ctx.bundle()?;
    let cgroups_path = b.cfg.0["linux"]["cgroupsPath"].clone();
    b.cfg = from.cfg.clone();
    b.cfg.set("/linux/cgroupsPath", cgroups_path);
    b.write_config()?;
    Ok(b)
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Checkpoint `b` into a new image dir; the container is gone afterwards.
fn checkpoint(ctx: &Ctx, path: &str, b: &Bundle, extra: &[&str]) -> Result<PathBuf, Failure> {
    let images = ctx.scratch_dir("criu-images")?;
    let img = path_str(&images);
    let mut args = vec!["checkpoint", "--image-path", &img];
    args.extend_from_slice(extra);
    args.push(&b.id);
    ctx.rt.exec_env(&[("PATH", path)], &args).ok()?;
    Ok(images)
}

/// `restore -d --image-path DIR --bundle B --pid-file F ID`; the pid from the pid file.
fn restore(ctx: &Ctx, path: &str, images: &Path, b: &Bundle) -> Result<u32, Failure> {
    restore_with(ctx, path, images, b, &[])
}

/// The pid file [`restore_command`] names, in the bundle's dir.
fn restored_pid_file(b: &Bundle) -> PathBuf {
    b.dir.join("restored.pid")
}

/// Run `restore -d EXTRA... --image-path DIR --bundle B --pid-file F ID` and return its result.
fn restore_command(ctx: &Ctx, path: &str, images: &Path, b: &Bundle, extra: &[&str]) -> Out {
    let (img, dir, pf) = (
        path_str(images),
        path_str(&b.dir),
        path_str(&restored_pid_file(b)),
    );
    let mut args = vec!["restore", "-d"];
    args.extend_from_slice(extra);
    args.extend([
        "--image-path",
        &img,
        "--bundle",
        &dir,
        "--pid-file",
        &pf,
        &b.id,
    ]);
    ctx.rt.exec_env(&[("PATH", path)], &args)
}

/// [`restore`] with `extra` options; a failure names CRIU's errors from the images' log.
fn restore_with(
    ctx: &Ctx,
    path: &str,
    images: &Path,
    b: &Bundle,
    extra: &[&str],
) -> Result<u32, Failure> {
    let pid_file = restored_pid_file(b);
    let out = restore_command(ctx, path, images, b, extra);
    if !out.success() {
        let log = fs::read_to_string(images.join("restore.log")).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
        fail!(
            "{}; CRIU's errors: {}",
            crate::campaign::clip(&out.describe(), 400),
            errors.join(" | ")
        );
    }
    let text = fs::read_to_string(&pid_file)
        .map_err(|e| Failure::Fail(format!("read the pid file {}: {e}", pid_file.display())))?;
    text.trim()
        .parse()
        .map_err(|_| Failure::Fail(format!("pid file holds {text:?}")))
}

/// Whether this CRIU and kernel have a feature (`criu check --feature NAME`).
fn criu_has(feature: &str) -> bool {
    let criu = find_criu().unwrap_or_default();
    std::process::Command::new(&criu)
        .args(["check", "--feature", feature])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// After a restore: the counter goes on from where the checkpoint stopped it (just above
/// `at`, not from 1).
fn ensure_counts_on(shared: &Path, at: u64) -> TestResult {
    let first = wait_count(shared, at + 1)?;
    ensure!(
        first > at && first < at + 20,
        "after the restore the counter went from {at} to {first}"
    );
    Ok(())
}

/// SIGKILL a container, wait for it to stop, delete it; nothing may be left.
fn kill_and_delete(b: &Bundle) -> TestResult {
    b.kill("KILL").ok()?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// The counter stands still (its container is gone or frozen).
fn ensure_stopped_counting(shared: &Path) -> Result<u64, Failure> {
    let before = count(shared);
    std::thread::sleep(Duration::from_millis(500));
    let after = count(shared);
    ensure!(
        before == after,
        "the counter still moves after the checkpoint: {before:?} -> {after:?}"
    );
    after.ok_or_else(|| Failure::Fail("no counter value".into()))
}

/// Checkpointed, the container is gone and stops counting; restored under a new id, it
/// counts on from where it was (not from 1).
fn checkpoint_restore_keeps_counting(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let (b, shared) = start_counter(ctx)?;
    let images = checkpoint(ctx, &path, &b, &[])?;
    ensure!(
        b.status().is_none(),
        "the checkpointed container still exists: {:?}",
        b.status()
    );
    b.ensure_clean()?;
    let at = ensure_stopped_counting(&shared)?;
    ensure!(
        images.join("inventory.img").exists(),
        "no inventory.img in the image dir"
    );

    let r = restore_bundle(ctx, &b)?;
    restore(ctx, &path, &images, &r)?;
    ensure_counts_on(&shared, at)?;
    let later = wait_count(&shared, at + 5)?;
    ensure!(later >= at + 5, "the restored counter is stuck at {later}");
    ensure_eq!(r.status().as_deref(), Some("running"), "restored status");
    kill_and_delete(&r)
}

/// `--leave-running`: the images are written and the container keeps running and counting;
/// it is then killed and deleted as usual.
fn checkpoint_leave_running(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let (b, shared) = start_counter(ctx)?;
    let pid = b.pid()?;
    let images = checkpoint(ctx, &path, &b, &["--leave-running"])?;
    ensure!(
        images.join("inventory.img").exists(),
        "no inventory.img in the image dir"
    );
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after the dump"
    );
    ensure_eq!(b.pid()?, pid, "pid after the dump");
    let at = count(&shared).unwrap_or_default();
    wait_count(&shared, at + 3)?;
    b.kill("KILL").ok()?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// The restored container: `state` reports it running with the pid of `--pid-file`, its
/// bundle and id; `kill` stops it; `delete` leaves nothing (state dir, cgroups, mounts,
/// processes); the checkpointed original left nothing either.
fn restored_container_state_kill_delete(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let (b, shared) = start_counter(ctx)?;
    let images = checkpoint(ctx, &path, &b, &[])?;
    let at = ensure_stopped_counting(&shared)?;
    let r = restore_bundle(ctx, &b)?;
    let pid = restore(ctx, &path, &images, &r)?;
    wait_count(&shared, at + 2)?;
    let st = r.state()?;
    ensure_eq!(st["status"].as_str(), Some("running"), "state.status");
    ensure_eq!(st["id"].as_str(), Some(r.id.as_str()), "state.id");
    ensure_eq!(
        st["pid"].as_u64(),
        Some(pid as u64),
        "state.pid vs --pid-file"
    );
    let bundle = path_str(&r.dir);
    ensure_eq!(st["bundle"].as_str(), Some(bundle.as_str()), "state.bundle");
    ensure!(
        crate::context::alive(pid),
        "the restored pid {pid} is not alive"
    );
    r.kill("KILL").ok()?;
    r.wait_status("stopped")?;
    ensure!(
        wait_until(Duration::from_secs(5), || !crate::context::alive(pid)),
        "the restored init {pid} survived SIGKILL"
    );
    let stopped_at = ensure_stopped_counting(&shared)?;
    ensure!(stopped_at > at, "the restored container never counted");
    r.delete().ok()?;
    ensure!(
        r.status().is_none(),
        "state still answers after delete: {:?}",
        r.status()
    );
    r.ensure_clean()?;
    b.ensure_clean()
}

/// The mount id of a process's descriptor (`mnt_id` in fdinfo).
fn fd_mnt_id(pid: u32, fd: u32) -> Option<String> {
    let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .map(|v| v.trim().to_string())
}

/// Stdio that is the host's /dev/null (the harness's stdin) is reopened on the container's own
/// /dev/null (runc's reOpenDevNull): CRIU cannot dump a descriptor on a mount the container's
/// mount namespace lacks. Needs no CRIU.
fn checkpoint_stdio_dev_null_reopened_inside(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.shared()?;
    b.cfg.sh(super::WAIT_FOR_GO);
    b.run_detached().ok()?;
    let pid = b.pid()?;
    let link = fs::read_link(format!("/proc/{pid}/fd/0"))?;
    ensure_eq!(link, PathBuf::from("/dev/null"), "the init's stdin");
    let Some(id) = fd_mnt_id(pid, 0) else {
        fail!("no mnt_id in /proc/{pid}/fdinfo/0")
    };
    let info = fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    let dev = info
        .lines()
        .find(|l| l.split(' ').next() == Some(id.as_str()));
    ensure!(
        dev.is_some_and(|l| l.split(' ').nth(4) == Some("/dev")),
        "the init's stdin is on mount {id}, not the container's /dev: {dev:?}"
    );
    b.kill("KILL").ok()?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// What podman's checkpoint/restore lays out: a bind whose mount point is on the /dev tmpfs
/// (podman's /dev/shm) and, for `restore --import`, a fresh rootfs without the mount points
/// of /proc, /sys and a tmpfs at /var/run (a symlink to /run, as in Debian images). The bind
/// must still be mapped as external on restore (only its mount point comes from CRIU's tmpfs
/// image), and every mount point is made again, as runc's prepareCriuRestoreMounts does.
fn restore_into_a_fresh_rootfs_with_a_bind_on_dev(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    let devdir = b.dir.join("dev-bind");
    fs::create_dir(&devdir)?;
    fs::write(devdir.join("mark"), "on dev\n")?;
    b.cfg.add_bind(&devdir, "/dev/berth-bind", &[]);
    // A tmpfs whose mount point is reached through a symlink, as /var/run -> /run in Debian
    // images: created inside the rootfs on restore as on create.
    b.cfg.add_mount("/var/run", "tmpfs", "tmpfs", &[]);
    let symlinked_run = |rootfs: &Path| -> Result<(), Failure> {
        fs::create_dir_all(rootfs.join("var"))?;
        let _ = fs::remove_dir(rootfs.join("run"));
        let _ = fs::remove_file(rootfs.join("var/run"));
        std::os::unix::fs::symlink("/run", rootfs.join("var/run"))?;
        Ok(())
    };
    symlinked_run(&b.rootfs())?;
    b.cfg.sh(COUNTER);
    b.run_detached().ok()?;
    wait_count(&shared, 3)?;
    let images = checkpoint(ctx, &path, &b, &[])?;
    b.ensure_clean()?;
    let at = ensure_stopped_counting(&shared)?;

    let r = restore_bundle(ctx, &b)?;
    for d in ["proc", "sys"] {
        let p = r.rootfs().join(d);
        if p.is_dir() {
            fs::remove_dir(&p)?;
        }
    }
    symlinked_run(&r.rootfs())?;
    restore(ctx, &path, &images, &r)?;
    ensure_counts_on(&shared, at)?;
    let pid = r.pid()?;
    let mark = fs::read_to_string(format!("/proc/{pid}/root/dev/berth-bind/mark"))?;
    ensure_eq!(
        mark.as_str(),
        "on dev\n",
        "the bind on /dev after the restore"
    );
    kill_and_delete(&r)
}

/// The value of the podman container's /count (through `podman exec`).
fn podman_count(pm: &crate::clients::podman::Podman, name: &str) -> Option<u64> {
    pm.podman(&["exec", name, "cat", "/count"])
        .stdout
        .trim()
        .parse()
        .ok()
}

fn podman_wait_count(
    pm: &crate::clients::podman::Podman,
    name: &str,
    n: u64,
) -> Result<u64, Failure> {
    let mut last = None;
    if wait_until(Duration::from_secs(15), || {
        last = podman_count(pm, name);
        last.is_some_and(|c| c >= n)
    }) {
        Ok(last.unwrap_or_default())
    } else {
        fail!("{name}: the counter did not reach {n} (last value {last:?})")
    }
}

/// podman 4.3 drives the runtime's checkpoint and restore: `container checkpoint` (the
/// container exits), `container restore` (it counts on), `checkpoint --export` to a tarball,
/// `rm`, and `restore --import` under a new name, which restores into a fresh rootfs with
/// podman's binds (its /dev/shm on the /dev tmpfs, /etc/hosts, /run/.containerenv).
fn client_podman_checkpoint_restore_export_import(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let pm = ctx.clients.podman(ctx)?;
    let env = [("PATH", path.as_str())];
    let long = Duration::from_secs(60);
    let script = "i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.1; done";
    let c = pm.run_detached(ctx, &["sh", "-c", script])?;
    // Far enough that a fresh start (from 1, 0.1 s a step) is told from a restore below.
    let before = podman_wait_count(pm, &c.name, 10)?;
    pm.podman_env(&env, &["container", "checkpoint", &c.name], long)
        .ok()?;
    ensure_eq!(
        c.inspect("{{.State.Status}}")?,
        "exited",
        "status after podman container checkpoint"
    );
    pm.podman_env(&env, &["container", "restore", &c.name], long)
        .ok()?;
    ensure_eq!(
        c.inspect("{{.State.Status}}")?,
        "running",
        "status after podman container restore"
    );
    // Half a second on: a fresh start would have written about 5 over /count by now.
    std::thread::sleep(Duration::from_millis(500));
    let first = podman_wait_count(pm, &c.name, 1)?;
    ensure!(
        first >= before,
        "the restored counter is at {first}, below {before}: it started afresh"
    );
    let later = podman_wait_count(pm, &c.name, first + 3)?;
    let export = ctx.scratch_dir("podman-export")?.join("checkpoint.tar.gz");
    let export_arg = path_str(&export);
    pm.podman_env(
        &env,
        &["container", "checkpoint", "--export", &export_arg, &c.name],
        long,
    )
    .ok()?;
    pm.podman(&["rm", "--force", "--time", "0", &c.name]).ok()?;
    c.ensure_gone()?;
    let c2 = pm.container(ctx);
    pm.podman_env(
        &env,
        &[
            "container",
            "restore",
            "--import",
            &export_arg,
            "--name",
            &c2.name,
        ],
        long,
    )
    .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    let imported = podman_wait_count(pm, &c2.name, 1)?;
    ensure!(
        imported >= later,
        "the imported counter is at {imported}, below {later} of the export: it started afresh"
    );
    podman_wait_count(pm, &c2.name, imported + 3)?;
    pm.podman(&["rm", "--force", "--time", "0", &c2.name])
        .ok()?;
    c2.ensure_gone()
}

/// A container with a terminal (`process.terminal`, `--console-socket`), checkpointed and
/// restored under a new id as runc's own checkpoint tests do it (no `--shell-job`): CRIU
/// makes a new pty on restore and the runtime hands its master to the restore's
/// `--console-socket` (CRIU's orphan-pts-master); the counter goes on and writes to it.
fn checkpoint_restore_terminal(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.set("/process/terminal", serde_json::json!(true));
    b.cfg.sh(
        "i=0; while true; do i=$((i+1)); echo $i > /shared/count; echo tick $i; sleep 0.1; done",
    );
    let sock = b.dir.join("console.sock");
    let console = crate::console::Console::listen(&sock, b.dir.join("console.out"))?;
    let sock_arg = path_str(&sock);
    b.create(&["--console-socket", &sock_arg]).ok()?;
    b.start().ok()?;
    wait_count(&shared, 3)?;
    let images = checkpoint(ctx, &path, &b, &[])?;
    b.ensure_clean()?;
    let _ = console.finish(Duration::from_secs(5));
    let at = ensure_stopped_counting(&shared)?;

    let r = restore_bundle(ctx, &b)?;
    let sock2 = r.dir.join("console2.sock");
    let out2 = r.dir.join("console2.out");
    let console2 = crate::console::Console::listen(&sock2, out2.clone())?;
    let cs = path_str(&sock2);
    restore_with(ctx, &path, &images, &r, &["--console-socket", &cs])?;
    ensure_counts_on(&shared, at)?;
    wait_count(&shared, at + 5)?;
    r.kill("KILL").ok()?;
    r.wait_status("stopped")?;
    if let Some(why) = console2.finish(Duration::from_secs(10)) {
        fail!("the restore's console socket: {why}");
    }
    let text = fs::read_to_string(&out2)?;
    ensure!(
        text.contains(&format!("tick {}", at + 3)),
        "the restored process did not write to the new terminal: {:?}",
        crate::campaign::clip(&text, 300)
    );
    r.delete().ok()?;
    r.ensure_clean()
}

/// The 512-byte blocks the pages images of an image dir hold (a hole holds none).
fn page_blocks(dir: &Path) -> Result<u64, Failure> {
    let mut n = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with("pages-") {
            n += std::os::unix::fs::MetadataExt::blocks(&e.metadata()?);
        }
    }
    Ok(n)
}

/// `checkpoint --pre-dump` (the container keeps running, its memory is written and tracked
/// with soft-dirty bits), then `checkpoint --parent-path` (only what changed since; CRIU
/// links the images to their parent), then a restore that counts on. Needs CRIU's
/// mem_dirty_track (this host's kernel has no soft-dirty tracking; the VM's Debian 6.1 has).
fn pre_dump_then_dump_and_restore(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    if !criu_has("mem_dirty_track") {
        skip!("CRIU's mem_dirty_track is missing here (no soft-dirty bits in this kernel)");
    }
    let (b, shared) = start_counter(ctx)?;
    let pre = checkpoint(ctx, &path, &b, &["--pre-dump"])?;
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after the pre-dump"
    );
    let at = count(&shared).unwrap_or_default();
    wait_count(&shared, at + 3)?;
    let parent = format!(
        "../{}",
        pre.file_name().unwrap_or_default().to_string_lossy()
    );
    let blocks_before = page_blocks(&pre)?;
    let images = checkpoint(ctx, &path, &b, &["--parent-path", &parent, "--auto-dedup"])?;
    ensure!(
        fs::symlink_metadata(images.join("parent")).is_ok_and(|m| m.file_type().is_symlink()),
        "the dump's images have no `parent` link to the pre-dump"
    );
    // --auto-dedup: the parent's copies of the pages the dump writes again are punched out.
    let blocks_after = page_blocks(&pre)?;
    ensure!(
        blocks_after < blocks_before,
        "--auto-dedup punched no hole in the pre-dump's pages: {blocks_before} -> {blocks_after} blocks"
    );
    b.ensure_clean()?;
    let at = ensure_stopped_counting(&shared)?;
    let r = restore_bundle(ctx, &b)?;
    restore(ctx, &path, &images, &r)?;
    ensure_counts_on(&shared, at)?;
    wait_count(&shared, at + 5)?;
    kill_and_delete(&r)
}

/// A TCP port nobody listens on right now (for CRIU's page server).
fn free_port() -> Result<u16, Failure> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `criu MODE... --address 127.0.0.1 --port PORT -D IMAGES -o LOG` in the background (a page
/// server, or the lazy-pages daemon that fetches from one).
fn criu_serving(
    criu: &Path,
    mode: &[&str],
    port: &str,
    images: &Path,
    log: &Path,
) -> std::io::Result<std::process::Child> {
    std::process::Command::new(criu)
        .args(mode)
        .args(["--address", "127.0.0.1", "--port", port, "-D"])
        .arg(images)
        .arg("-o")
        .arg(log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
}

/// Wait (at most 30 s) for a process to end; kill it if it does not.
fn reap_child(
    c: &mut std::process::Child,
    what: &str,
) -> Result<std::process::ExitStatus, Failure> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = c.try_wait()? {
            return Ok(st);
        }
        if std::time::Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            fail!("{what} did not end within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `checkpoint --page-server ADDR:PORT`: the memory pages go to a `criu page-server` (here on
/// the same host, into the image dir), the rest to `--image-path`; the restore from that
/// dir counts on. The page server ends with the dump.
fn checkpoint_to_a_page_server(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let criu = find_criu().unwrap_or_default();
    let (b, shared) = start_counter(ctx)?;
    let images = ctx.scratch_dir("page-server-images")?;
    let port = free_port()?.to_string();
    let mut server = criu_serving(
        &criu,
        &["page-server"],
        &port,
        &images,
        &images.join("page-server.log"),
    )?;
    // Listening: a connect would take its one session, so wait for the socket in /proc.
    let hex_port = format!(":{:04X} ", port.parse::<u16>().unwrap_or_default());
    if !wait_until(Duration::from_secs(10), || {
        fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
            t.lines().any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| format!("{a} ").ends_with(&hex_port))
                    && l.split_whitespace().nth(3) == Some("0A")
            })
        })
    }) {
        let _ = server.kill();
        let _ = server.wait();
        fail!("criu page-server did not listen on port {port}");
    }
    let img = path_str(&images);
    let ps = format!("127.0.0.1:{port}");
    let dumped = ctx
        .rt
        .exec_env(
            &[("PATH", path.as_str())],
            &[
                "checkpoint",
                "--image-path",
                &img,
                "--page-server",
                &ps,
                &b.id,
            ],
        )
        .ok();
    let served = reap_child(&mut server, "criu page-server");
    dumped?;
    let st = served?;
    ensure!(st.success(), "criu page-server ended with {st}");
    let pages = fs::read_dir(&images)?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("pages-"));
    ensure!(pages, "the page server wrote no pages-*.img into {img}");
    b.ensure_clean()?;
    let at = ensure_stopped_counting(&shared)?;
    let r = restore_bundle(ctx, &b)?;
    restore(ctx, &path, &images, &r)?;
    ensure_counts_on(&shared, at)?;
    kill_and_delete(&r)
}

/// runc's lazy migration: `checkpoint --lazy-pages --page-server --status-fd` dumps
/// everything but the memory and then serves it (a '\\0' on the status descriptor says so),
/// `criu lazy-pages` fetches it for `restore --lazy-pages`, which runs the container under a
/// new id while its pages arrive by userfaultfd; the checkpoint ends when the last page went,
/// and the old container is gone then.
fn lazy_pages_migration(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let criu = find_criu().unwrap_or_default();
    if !criu_has("uffd-noncoop") {
        skip!("CRIU's uffd-noncoop is missing here (no userfaultfd for lazy pages)");
    }
    // CRIU 4.2.1's page transfer fails on this host's 6.18 (`page-pipe: splice: Bad file
    // descriptor` in the dump's log, and the restore then hangs), for runc 1.3.6 alike; it
    // works on the VM's 6.1. Kernels between are not known to fail, so they run it.
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 18) {
        skip!("CRIU 4.2.1's lazy page transfer fails on Linux {release} (splice EBADF, runc too); it works on 6.1");
    }
    let (b, shared) = start_counter(ctx)?;
    let images = ctx.scratch_dir("lazy-images")?;
    let work = ctx.scratch_dir("lazy-work")?;
    let status = work.join("status");
    fs::write(&status, "")?;
    let port = free_port()?.to_string();
    let (img, wk, st) = (path_str(&images), path_str(&work), path_str(&status));
    let ps = format!("127.0.0.1:{port}");
    let r = restore_bundle(ctx, &b)?;
    let cpt = ctx.rt.spawn_wrapped(
        &["/bin/sh", "-c", "exec 3>>\"$0\"; exec \"$@\"", &st],
        &[("PATH", path.as_str())],
        &[
            "checkpoint",
            "--lazy-pages",
            "--page-server",
            &ps,
            "--status-fd",
            "3",
            "--manage-cgroups-mode",
            "ignore",
            "--work-path",
            &wk,
            "--image-path",
            &img,
            &b.id,
        ],
    )?;
    // From here to cpt.wait() nothing returns early: the checkpoint would be left serving.
    let ready = wait_until(Duration::from_secs(30), || {
        fs::metadata(&status).is_ok_and(|m| m.len() > 0)
    });
    let byte = fs::read(&status).unwrap_or_default();
    let inventory = images.join("inventory.img").exists();
    if !ready || byte != [0u8] || !inventory {
        let out = cpt.wait(Duration::from_secs(5));
        fail!(
            "the lazy checkpoint is not ready to serve (--status-fd got {byte:?}, \
             inventory.img {inventory}): {}",
            out.describe()
        );
    }
    let at = count(&shared).unwrap_or_default();
    let lazy = criu_serving(
        &criu,
        &["lazy-pages", "--page-server"],
        &port,
        &images,
        &work.join("lazy-pages.log"),
    );
    let mut lazy = match lazy {
        Ok(c) => c,
        Err(e) => {
            let out = cpt.wait(Duration::from_secs(5));
            fail!("cannot start criu lazy-pages: {e} ({})", out.describe());
        }
    };
    let restored = restore_with(
        ctx,
        &path,
        &images,
        &r,
        &[
            "--lazy-pages",
            // The images' dir as the work dir: `criu lazy-pages` has its socket there.
            "--work-path",
            &img,
            // As at dump: the restored tree stays in the new container's cgroup (in the
            // default mode CRIU would put it back into the old container's, on v2).
            "--manage-cgroups-mode",
            "ignore",
        ],
    );
    let dumped = cpt.wait(Duration::from_secs(60)).ok();
    let fetched = reap_child(&mut lazy, "criu lazy-pages");
    restored?;
    dumped?;
    let fst = fetched?;
    ensure!(fst.success(), "criu lazy-pages ended with {fst}");
    b.ensure_clean()?;
    let first = wait_count(&shared, at + 1)?;
    ensure!(
        first > at && first < at + 30,
        "after the lazy restore the counter went from {at} to {first}"
    );
    wait_count(&shared, first + 3)?;
    kill_and_delete(&r)
}

/// The last number a file of lines holds (the receiving end of the TCP test).
fn last_number(p: &Path) -> Option<u64> {
    fs::read_to_string(p)
        .ok()?
        .lines()
        .rev()
        .find_map(|l| l.trim().parse().ok())
}

/// An established TCP connection inside the container (its own network namespace: a
/// counter piped into `nc` to an `nc -l` on 127.0.0.1, whose stdin is a pipe that never ends:
/// busybox nc hangs up at its stdin's EOF). A plain checkpoint refuses it and
/// leaves the container running; `--tcp-established` dumps it, and a restore with the same
/// flag brings the connection back: the receiver goes on getting the counter's lines.
fn tcp_established_connection_survives(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    if ctx.rt.is_runc() {
        // Seen with runc 1.1.5 and 1.3.6 here: CRIU's restore under runc cannot connect the
        // sockets back ("soccr: Can't connect inet socket back: Network is unreachable").
        skip!("runc's restore of this connection fails here (CRIU: Network is unreachable)");
    }
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.sh(
        "exec >/dev/null 2>&1; sleep 100000 | nc -l -p 5000 > /shared/recv & sleep 0.5; \
         i=0; while true; do i=$((i+1)); echo $i > /shared/count; echo $i; sleep 0.1; done \
         | nc 127.0.0.1 5000",
    );
    b.run_detached().ok()?;
    wait_count(&shared, 3)?;
    let recv = shared.join("recv");
    ensure!(
        wait_until(Duration::from_secs(10), || last_number(&recv)
            .is_some_and(|n| n >= 3)),
        "the receiver got nothing over TCP: {:?}",
        fs::read_to_string(&recv).ok()
    );
    let images = ctx.scratch_dir("tcp-images")?;
    let img = path_str(&images);
    let out = ctx.rt.exec_env(
        &[("PATH", path.as_str())],
        &["checkpoint", "--image-path", &img, &b.id],
    );
    ensure!(
        !out.success(),
        "a checkpoint of an established connection without --tcp-established succeeded"
    );
    ensure_eq!(
        b.status().as_deref(),
        Some("running"),
        "status after the refused checkpoint"
    );
    let at = count(&shared).unwrap_or_default();
    wait_count(&shared, at + 3)?;
    let images = checkpoint(ctx, &path, &b, &["--tcp-established"])?;
    b.ensure_clean()?;
    let at = ensure_stopped_counting(&shared)?;
    let r = restore_bundle(ctx, &b)?;
    restore_with(ctx, &path, &images, &r, &["--tcp-established"])?;
    wait_count(&shared, at + 5)?;
    ensure!(
        wait_until(Duration::from_secs(10), || last_number(&recv)
            .is_some_and(|n| n >= at + 3)),
        "the restored connection carries nothing: the receiver stopped at {:?} (counter at {at})",
        last_number(&recv)
    );
    kill_and_delete(&r)
}

/// [`start_counter`] after `prepare` has changed the bundle (before it is written).
fn start_counter_with<'a>(
    ctx: &'a Ctx,
    prepare: impl FnOnce(&mut Bundle) -> TestResult,
) -> Result<(Bundle<'a>, PathBuf), Failure> {
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.sh(COUNTER);
    prepare(&mut b)?;
    b.run_detached().ok()?;
    wait_count(&shared, 3)?;
    Ok((b, shared))
}

/// Checkpoint `b` (the container is gone afterwards and its counter stands still), restore it
/// under a new id after `adjust` has prepared the new bundle, and check that the counter counts
/// on from where it stopped: the restored bundle and its init's pid.
fn checkpoint_then_restore<'a>(
    ctx: &'a Ctx,
    path: &str,
    b: &Bundle,
    shared: &Path,
    adjust: impl FnOnce(&Bundle) -> TestResult,
) -> Result<(Bundle<'a>, u32), Failure> {
    let images = checkpoint(ctx, path, b, &[])?;
    b.ensure_clean()?;
    let at = ensure_stopped_counting(shared)?;
    let r = restore_bundle(ctx, b)?;
    adjust(&r)?;
    let pid = restore(ctx, path, &images, &r)?;
    ensure_counts_on(shared, at)?;
    Ok((r, pid))
}

/// A container with its own user namespace (ids 0..65536 mapped to 100000..): CRIU dumps the
/// namespace's maps and restores the tree into a new one with the same maps; the restored
/// counter counts on, as the mapped root (100000 on the host).
fn checkpoint_restore_user_namespace(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let (b, shared) = start_counter_with(ctx, |b| {
        super::map_to_userns(b)?;
        std::os::unix::fs::chown(b.dir.join("shared"), Some(100_000), Some(100_000))?;
        Ok(())
    })?;
    let (r, pid) = checkpoint_then_restore(ctx, &path, &b, &shared, |r| {
        let st = Command::new("chown")
            .args(["-R", "100000:100000"])
            .arg(r.rootfs())
            .status()?;
        ensure!(st.success(), "chown of the restore rootfs failed");
        Ok(())
    })?;
    let map = fs::read_to_string(format!("/proc/{pid}/uid_map"))?;
    ensure_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        vec!["0", "100000", "65536"],
        "the restored init's uid_map"
    );
    let owner = fs::metadata(format!("/proc/{pid}"))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0);
    ensure_eq!(owner, 100_000, "the restored init's uid on the host");
    kill_and_delete(&r)
}

/// A container whose process runs as uid/gid 1000 with a supplementary group: restored, it
/// still does (CRIU restores credentials) and counts on.
fn checkpoint_restore_non_root_process(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    // CRIU reads the rlimits of a process of another user with prlimit, which needs
    // CAP_SYS_RESOURCE (runc fails here the same way without it).
    const SYS_RESOURCE: u64 = 1 << 24;
    let eff = fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if eff & SYS_RESOURCE == 0 {
        skip!("no CAP_SYS_RESOURCE here: CRIU cannot read another user's rlimits to dump them");
    }
    let (b, shared) = start_counter_with(ctx, |b| {
        b.cfg.set(
            "/process/user",
            serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [1001]}),
        );
        std::os::unix::fs::chown(b.dir.join("shared"), Some(1000), Some(1000))?;
        Ok(())
    })?;
    let (r, pid) = checkpoint_then_restore(ctx, &path, &b, &shared, |_| Ok(()))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    ensure_eq!(field("Uid:"), "1000 1000 1000 1000", "restored Uid");
    ensure_eq!(field("Gid:"), "1000 1000 1000 1000", "restored Gid");
    ensure_eq!(field("Groups:"), "1001", "restored Groups");
    kill_and_delete(&r)
}

/// A container that joined another's network namespace by path: CRIU dumps that namespace as
/// external (runc's `extRootNetNS` key) and the restore puts the tree back into the namespace
/// the restored config names, not a new one.
fn checkpoint_restore_in_a_joined_network_namespace(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let mut holder = ctx.bundle()?;
    let hs = holder.shared()?;
    holder
        .cfg
        .sh(&format!("touch /shared/ready; {}", super::WAIT_FOR_GO));
    holder.run_detached().ok()?;
    super::wait_file(&hs.join("ready"))?;
    let holder_pid = holder.pid()?;
    let netns = format!("/proc/{holder_pid}/ns/net");
    let want = fs::read_link(&netns)?;
    let r = (|| -> TestResult {
        let (b, shared) = start_counter_with(ctx, |b| {
            b.cfg.ns_join("network", &netns);
            Ok(())
        })?;
        let (r, pid) = checkpoint_then_restore(ctx, &path, &b, &shared, |_| Ok(()))?;
        ensure_eq!(
            fs::read_link(format!("/proc/{pid}/ns/net"))?,
            want,
            "the restored init's network namespace"
        );
        kill_and_delete(&r)
    })();
    let stopped = fs::write(hs.join("go"), "")
        .map_err(Failure::from)
        .and_then(|()| holder.wait_status("stopped"));
    r.and(stopped)
}

/// A container whose process holds a unix datagram socket connected to a peer outside it (a
/// socket of the test's bound to a path, passed in with --preserve-fds): a plain checkpoint
/// refuses (CRIU: an external socket) and leaves the container running; `--ext-unix-sk` dumps it, and a restore
/// with `--ext-unix-sk` brings the process back with its socket connected: the peer receives
/// the restored counter's values.
fn checkpoint_external_unix_socket(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    // The counter also sends each value to the peer through fd 3 (the socket).
    b.cfg.sh(&COUNTER.replace(
        "echo $i > /shared/count;",
        "echo $i > /shared/count; echo $i >&3;",
    ));
    // CRIU finds a socket's peer through sock_diag of the dumped tree's network namespace:
    // the peer must be in it, so the container shares the host's.
    b.cfg.ns_remove("network");
    // CRIU dumps an external socket by its peer's name, and a restore connects to that name
    // from inside the container: the test's end is bound in a dir the container sees at the
    // same path.
    let sockdir = b.dir.join("sockdir");
    fs::create_dir_all(&sockdir)?;
    let sd = path_str(&sockdir);
    b.cfg.push(
        "/mounts",
        serde_json::json!({"destination": sd, "source": sd, "type": "bind", "options": ["rbind"]}),
    );
    b.write_config()?;
    let peer = sockdir.join("peer.sock");
    let ours = std::os::unix::net::UnixDatagram::bind(&peer)?;
    let theirs = std::os::unix::net::UnixDatagram::unbound()?;
    theirs.connect(&peer)?;
    let dir = path_str(&b.dir);
    let rt = &ctx.rt;
    // The socket arrives as the shell's stdin and becomes fd 3 of the runtime.
    let st = Command::new("/bin/sh")
        .args(["-c", "exec 3<&0 </dev/null; exec \"$@\"", "sh"])
        .arg(&rt.path)
        .arg("--root")
        .arg(&rt.root)
        .args(["run", "-d", "--preserve-fds", "1", "--bundle", &dir, &b.id])
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    ensure!(st.success(), "run -d --preserve-fds 1: {st}");
    // The peer reads every datagram (a full queue would block the sender) and keeps the
    // highest value, so that the restored process is seen sending on its socket again.
    let highest = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    ours.set_read_timeout(Some(Duration::from_millis(100)))?;
    let reader = {
        let (highest, stop) = (highest.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = ours.recv(&mut buf) {
                    let v = String::from_utf8_lossy(&buf[..n])
                        .trim()
                        .parse()
                        .unwrap_or(0);
                    highest.fetch_max(v, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    let r = (|| -> TestResult {
        wait_count(&shared, 3)?;
        let fd3 = fs::read_link(format!("/proc/{}/fd/3", b.pid()?))?;
        ensure!(
            fd3.to_string_lossy().starts_with("socket:"),
            "the container's fd 3 is {fd3:?}, not the socket"
        );
        let images = ctx.scratch_dir("criu-images")?;
        let img = path_str(&images);
        let out = rt.exec_env(
            &[("PATH", &path)],
            &["checkpoint", "--image-path", &img, &b.id],
        );
        let out = out.failed()?;
        // runc 1.1 says only "container still running"; berth quotes CRIU's reason.
        ensure!(
            ctx.rt.is_runc() || out.stderr.contains("unix") || out.stderr.contains("external"),
            "the refusal does not name the external socket: {}",
            out.stderr
        );
        ensure_eq!(
            b.status().as_deref(),
            Some("running"),
            "status after the refused checkpoint"
        );
        let images = checkpoint(ctx, &path, &b, &["--ext-unix-sk", "--leave-running"])?;
        ensure!(
            images.join("inventory.img").exists(),
            "no inventory.img after --ext-unix-sk"
        );
        ensure_eq!(
            b.status().as_deref(),
            Some("running"),
            "status after --leave-running"
        );
        // Restored (`restore --ext-unix-sk`) under a new id: CRIU connects the socket to the
        // peer's name again.
        b.kill("KILL").ok()?;
        b.wait_status("stopped")?;
        b.delete().ok()?;
        let at = ensure_stopped_counting(&shared)?;
        let r = restore_bundle(ctx, &b)?;
        let pid = restore_with(ctx, &path, &images, &r, &["--ext-unix-sk"])?;
        let restored = (|| -> TestResult {
            ensure_counts_on(&shared, at)?;
            let sent = wait_until(Duration::from_secs(10), || {
                highest.load(std::sync::atomic::Ordering::Relaxed) > at
            });
            ensure!(
                sent,
                "no datagram above {at} reached the peer after the restore: the socket is not connected again"
            );
            let fd3 = fs::read_link(format!("/proc/{pid}/fd/3"))?;
            ensure!(
                fd3.to_string_lossy().starts_with("socket:"),
                "the restored process's fd 3 is {fd3:?}, not a socket"
            );
            Ok(())
        })();
        kill_and_delete(&r)?;
        restored
    })();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.join();
    let _ = b.kill("KILL");
    let _ = b.wait_status("stopped");
    let _ = b.delete();
    r.and_then(|()| b.ensure_clean())
}

/// A bind inside another bind (runc#2748): /shared, and /shared/inner from another host dir,
/// plus a tmpfs inside the outer bind. Restored under a new id with the same binds, the
/// counter counts on and the nested mounts are back in place (a file of the inner source is
/// seen through it).
fn checkpoint_restore_nested_binds(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let inner = ctx.scratch_dir("nested-inner")?;
    fs::write(inner.join("marker"), "inner\n")?;
    let (b, shared) = start_counter_with(ctx, |b| {
        let src = path_str(&inner);
        b.cfg.push(
            "/mounts",
            serde_json::json!({"destination": "/shared/inner", "source": src, "type": "bind", "options": ["rbind"]}),
        );
        b.cfg.push(
            "/mounts",
            serde_json::json!({"destination": "/shared/tmp", "source": "tmpfs", "type": "tmpfs", "options": ["size=1m"]}),
        );
        Ok(())
    })?;
    let (r, pid) = checkpoint_then_restore(ctx, &path, &b, &shared, |_| Ok(()))?;
    let seen = fs::read_to_string(format!("/proc/{pid}/root/shared/inner/marker"))?;
    ensure_eq!(seen, "inner\n", "the inner bind's file, seen inside");
    let mounts = crate::mountinfo::parse(&fs::read_to_string(format!("/proc/{pid}/mountinfo"))?);
    ensure!(
        crate::mountinfo::find(&mounts, "/shared/tmp").is_some_and(|m| m.fstype == "tmpfs"),
        "no tmpfs at /shared/tmp after the restore"
    );
    kill_and_delete(&r)
}

/// The LSM this host enforces labels with, for [`checkpoint_restore_lsm_profile`]: two
/// process labels the container may run under (A and B), how a config names A, and the
/// `TYPE:` of `restore --lsm-profile`.
enum Lsm {
    AppArmor {
        /// Unloaded on drop (after the containers, which are declared later).
        _loaded: super::lsm::Profiles,
        a: String,
        b: String,
    },
    SeLinux {
        a: String,
        b: String,
        /// Mount labels for `linux.mountLabel` (A) and `--lsm-mount-context` (B).
        mount_a: String,
        mount_b: String,
        /// Whether CRIU was built with libselinux (it names the library among those it
        /// needs): without it CRIU neither dumps the label nor takes `--lsm-profile selinux:`.
        criu_knows: bool,
    },
}

impl Lsm {
    fn here(ctx: &Ctx) -> Result<Lsm, Failure> {
        if super::lsm::apparmor_enabled() {
            let tag = std::process::id();
            let (a, b) = (
                format!("berth-it-{tag}-ck-a"),
                format!("berth-it-{tag}-ck-b"),
            );
            let profiles = super::lsm::Profiles::load(&ctx.scratch_dir("apparmor")?, &[&a, &b])?;
            return Ok(Lsm::AppArmor {
                _loaded: profiles,
                a,
                b,
            });
        }
        if super::lsm::selinux_enabled() {
            let (process, file) = super::lsm::selinux_types()?;
            let criu = find_criu().ok_or_else(|| Failure::Skip("no CRIU".into()))?;
            let binary = fs::read(&criu)?;
            let criu_knows = binary.windows(13).any(|w| w == b"libselinux.so");
            return Ok(Lsm::SeLinux {
                a: format!("{process}:s0:c1,c2"),
                b: format!("{process}:s0:c3,c4"),
                mount_a: format!("{file}:s0:c1,c2"),
                mount_b: format!("{file}:s0:c3,c4"),
                criu_knows,
            });
        }
        skip!(
            "neither AppArmor nor SELinux is enabled here; it runs in the cgroup v2 VM \
             (AppArmor) and in its SELinux boot"
        )
    }

    /// The labels A and B.
    fn labels(&self) -> (&str, &str) {
        match self {
            Lsm::AppArmor { a, b, .. } | Lsm::SeLinux { a, b, .. } => (a, b),
        }
    }

    /// Confine the container with A (and SELinux's mount label A).
    fn confine(&self, bundle: &mut Bundle) {
        match self {
            Lsm::AppArmor { a, .. } => {
                bundle
                    .cfg
                    .set("/process/apparmorProfile", serde_json::json!(a));
            }
            Lsm::SeLinux { a, mount_a, .. } => {
                bundle
                    .cfg
                    .set("/process/selinuxLabel", serde_json::json!(a));
                bundle
                    .cfg
                    .set("/linux/mountLabel", serde_json::json!(mount_a));
            }
        }
    }

    /// Whether /proc/PID/attr/current shows `label` (AppArmor adds the mode).
    fn shows(&self, current: &str, label: &str) -> bool {
        let current = super::lsm::trim_label(current);
        match self {
            Lsm::AppArmor { .. } => current == format!("{label} (enforce)"),
            Lsm::SeLinux { .. } => current == label,
        }
    }

    /// The label a restore without `--lsm-profile` gives: the dumped A, except SELinux's
    /// under a CRIU without libselinux, which leaves the restorer's own (the suite's).
    fn restored_without_option(&self) -> Result<String, Failure> {
        Ok(match self {
            Lsm::SeLinux {
                criu_knows: false, ..
            } => {
                super::lsm::trim_label(&fs::read_to_string("/proc/self/attr/current")?).to_string()
            }
            _ => self.labels().0.to_string(),
        })
    }
}

/// The restored /dev tmpfs carries `context="CONTEXT"` (`--lsm-mount-context`).
fn ensure_dev_context(pid: u32, context: &str) -> TestResult {
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    let mounts = crate::mountinfo::parse(&mountinfo);
    let dev = crate::mountinfo::require(&mounts, "/dev")?;
    // The label holds commas (s0:c3,c4): look in the joined super options.
    ensure!(
        dev.super_opts
            .join(",")
            .contains(&format!("context=\"{context}\"")),
        "restored with --lsm-mount-context {context}: /dev is {dev:?}"
    );
    Ok(())
}

/// `restore --lsm-profile TYPE:NAME` and `--lsm-mount-context` (CRIU's lsm_profile and
/// lsm_mount_context), with AppArmor (the cgroup v2 VM) or SELinux (its SELinux boot,
/// permissive); skipped without either. A container confined by label A is checkpointed and
/// restored: without the option it comes back under A, but for SELinux under a CRIU without
/// libselinux (Debian's), which leaves the restorer's own label (runc 1.3.6: the same). Then
/// checkpointed again and restored under B with `--lsm-profile` (SELinux: and its /dev tmpfs
/// relabelled with `--lsm-mount-context`). A CRIU without libselinux refuses `--lsm-profile
/// selinux:` with its reason, which the runtime reports, leaving nothing; `--lsm-mount-context`
/// alone, a rewrite of the mounts' `context=`, it still takes. CRIU looks for the LSM once a
/// boot (its cached kerndat) in /sys/kernel/security: hack/vm/init mounts securityfs at boot.
fn checkpoint_restore_lsm_profile(ctx: &Ctx) -> TestResult {
    let path = need_criu(ctx)?;
    let lsm = Lsm::here(ctx)?;
    let (first, second) = lsm.labels();
    let (b, shared) = start_counter_with(ctx, |b| {
        lsm.confine(b);
        Ok(())
    })?;
    let label_of = |pid: u32| fs::read_to_string(format!("/proc/{pid}/attr/current"));
    let current = label_of(b.pid()?)?;
    ensure!(
        lsm.shows(&current, first),
        "the container runs as {current:?}, not {first:?}"
    );

    let (r, pid) = checkpoint_then_restore(ctx, &path, &b, &shared, |_| Ok(()))?;
    let current = label_of(pid)?;
    let want = lsm.restored_without_option()?;
    ensure!(
        lsm.shows(&current, &want),
        "restored without --lsm-profile: {current:?}, want {want:?}"
    );

    let images = checkpoint(ctx, &path, &r, &[])?;
    r.ensure_clean()?;
    let at = ensure_stopped_counting(&shared)?;
    let r2 = restore_bundle(ctx, &r)?;
    let profile = match &lsm {
        Lsm::AppArmor { .. } => format!("apparmor:{second}"),
        Lsm::SeLinux { .. } => format!("selinux:{second}"),
    };
    let mut extra = vec!["--lsm-profile", profile.as_str()];
    if let Lsm::SeLinux {
        mount_b,
        criu_knows,
        ..
    } = &lsm
    {
        if !criu_knows {
            let out = restore_command(ctx, &path, &images, &r2, &extra).failed()?;
            out.stderr_mentions("selinux LSM specified but selinux not supported")?;
            r2.ensure_clean()?;
            ensure_eq!(
                count(&shared),
                Some(at),
                "the counter after the refused restore"
            );
            extra.clear();
        }
        extra.extend(["--lsm-mount-context", mount_b.as_str()]);
    }
    let pid = restore_with(ctx, &path, &images, &r2, &extra)?;
    ensure_counts_on(&shared, at)?;
    let current = label_of(pid)?;
    let want = if extra.contains(&"--lsm-profile") {
        second.to_string()
    } else {
        want
    };
    ensure!(
        lsm.shows(&current, &want),
        "restored with {extra:?}: {current:?}, want {want:?}"
    );
    if let Lsm::SeLinux { mount_b, .. } = &lsm {
        ensure_dev_context(pid, mount_b)?;
    }
    kill_and_delete(&r2)
}
