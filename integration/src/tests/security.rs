//! Security regressions: one test per container escape whose defence lives in the runtime
//! (CVE-2019-5736, CVE-2024-21626, CVE-2021-30465, CVE-2019-19921, CVE-2025-31133).
//!
//! Each test builds the attack's precondition and checks that the runtime either refuses the
//! container or keeps it inside its root. None performs the damaging step: nothing is ever
//! written to a runtime binary or to the host's /proc. Where a leaked mount would only exist in
//! the container's mount namespace, the host directory it would land on is a *shared* tmpfs of
//! the test and the container gets `rootfsPropagation: rshared`, so that such a mount
//! propagates back into the suite's namespace, where the test looks for it.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use libc::{EPERM, EROFS, ETXTBSY, O_PATH};
use serde_json::json;

use crate::context::{alive, mounts_under, Ctx};
use crate::harness::{wait_until, Failure, Test, TestResult};
use crate::hostmount::HostMount;
use crate::mountinfo::{self, require};
use crate::runtime::{Out, Runtime};
use crate::seccomp_agent::{Agent, Answer};
use crate::{ensure, ensure_eq, fail, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        state_json_is_the_owners_alone,
        cve_2019_5736_runtime_binary_not_writable_via_proc_exe,
        cve_2019_5736_immutable_runtime_binary,
        cve_2019_5736_exec_starts_from_a_protected_binary,
        cve_2024_21626_no_host_fds_reach_the_container,
        cve_2024_21626_cwd_in_a_leaked_fd_stays_in_the_root,
        cve_2021_30465_mount_destinations_resolve_in_the_root,
        cve_2019_19921_proc_and_sys_are_real,
        cve_2025_31133_masked_paths_only_with_the_real_dev_null,
    ]
}

/// Printed first by every container script: tells "the runtime refused" from "the container ran".
const STARTED: &str = "started-in-container";

/// The outcome of a `run` that the runtime may legitimately refuse.
enum Outcome {
    /// The container's process ran and exited 0; its stdout.
    Ran(String),
    /// create/run failed before the process started, with a message on stderr.
    Refused,
}

/// Classify `out` (of a `run` whose script echoes [`STARTED`] first): either the process ran
/// (and must have exited 0), or the runtime failed before it with a message on stderr.
fn ran_or_refused(out: Out, case: &str) -> Result<Outcome, Failure> {
    let ran = out.stdout.lines().any(|l| l == STARTED);
    if ran {
        let out = out.ok().map_err(|e| in_case(e, case))?;
        Ok(Outcome::Ran(out.stdout))
    } else {
        out.failed().map_err(|e| in_case(e, case))?;
        Ok(Outcome::Refused)
    }
}

fn in_case(e: Failure, case: &str) -> Failure {
    match e {
        Failure::Fail(m) => Failure::Fail(format!("{case}: {m}")),
        s => s,
    }
}

/// Names and contents of the regular files directly in `dir` (sorted), to tell whether a host
/// directory was touched.
fn dir_snapshot(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let content = if e.file_type()?.is_file() {
            fs::read(e.path())?
        } else {
            b"<not a regular file>".to_vec()
        };
        v.push((name, content));
    }
    v.sort();
    Ok(v)
}

/// A shared tmpfs on the host (in the suite's namespace) holding one marker file: a target a
/// symlink in a rootfs points at. A mount that a runtime makes on it in the container's
/// namespace comes back here when the container's mounts are `rshared`.
struct HostTarget {
    mount: HostMount,
    before: Vec<(String, Vec<u8>)>,
}

impl HostTarget {
    fn new(ctx: &Ctx, name: &str) -> Result<HostTarget, Failure> {
        let mount = HostMount::tmpfs(&ctx.scratch_dir(name)?, true)?;
        fs::write(mount.path.join("host-file"), format!("host {name}\n"))?;
        let before = dir_snapshot(&mount.path)?;
        Ok(HostTarget { mount, before })
    }

    fn path(&self) -> &Path {
        &self.mount.path
    }

    fn path_str(&self) -> String {
        self.mount.path.to_string_lossy().into_owned()
    }

    /// Fail if the directory changed or anything is mounted on or below it besides the
    /// test's own tmpfs. Extra mounts are unmounted (newest first, by exact path) before
    /// failing, so that nothing is left behind.
    fn ensure_untouched(&self, case: &str) -> TestResult {
        let mut extra = Vec::new();
        for _ in 0..10 {
            let mounts = mounts_under(self.path());
            if mounts.len() <= 1 {
                break;
            }
            let top = mounts.last().cloned().unwrap_or_default();
            extra.push(top.clone());
            let _ = std::process::Command::new("umount").arg(&top).output();
        }
        ensure!(
            extra.is_empty(),
            "{case}: the runtime mounted onto the host path {} (mount points {extra:?} \
             appeared in the suite's mount namespace; unmounted again)",
            self.path().display()
        );
        let now = dir_snapshot(self.path())?;
        ensure!(
            now == self.before,
            "{case}: the host directory {} changed: entries now {:?}",
            self.path().display(),
            now.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
        );
        Ok(())
    }
}

/// Removes a file on drop.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// **CVE-2019-5736** (runc < 1.0.0-rc7): a process in the container opens
/// `/proc/<init pid>/exe` with O_PATH while the runtime's init still executes there (writing
/// would fail with ETXTBSY), waits until the runtime has exited, reopens
/// `/proc/self/fd/<fd>` for writing and overwrites the runtime binary on the host, which root
/// then runs. The defence: init runs from a copy that nobody can write (a sealed memfd, or
/// a detached read-only bind mount: berth's, and what Debian's runc 1.1.5 shows here).
///
/// The test does the same from the host: `create` (init is held before the user process
/// runs, so its exe is still the runtime's own executable), open `/proc/<pid>/exe` O_PATH,
/// `delete --force` (so nothing executes the file any more), then reopen
/// `/proc/self/fd/<fd>` O_WRONLY, without O_TRUNC, writing nothing: the open must fail with
/// EROFS, EPERM or ETXTBSY, and the binary on disk must be byte-for-byte unchanged.
///
/// Can it fail? A runtime whose init runs straight from its binary hands out that very file:
/// once the container is deleted nothing executes it, and root's O_WRONLY open succeeds. The
/// runtime under test is a private copy of `BERTH_TEST_RUNTIME`, so no other process (another
/// run of the suite, say) keeps the file busy and turns ETXTBSY into a false pass, and even a
/// runtime that fails could only ever expose the copy.
fn cve_2019_5736_runtime_binary_not_writable_via_proc_exe(ctx: &Ctx) -> TestResult {
    let (copy, rt) = runtime_copy(ctx, "runtime-copy")?;
    let original = fs::read(&ctx.rt.path)?;
    let before = fs::read(&copy)?;

    let mut b = ctx.bundle()?;
    b.cfg.args(&["true"]);
    b.write_config()?;
    let InitExe { link, reopened, .. } = reopen_init_exe(&rt, &b)?;

    ensure_unchanged(&copy, &before)?;
    ensure_unchanged(&ctx.rt.path, &original)?;
    write_refused(&reopened, &format!("init's executable ({link})"))
}

/// The attack's step, minus the write: reopen `exe` (an O_PATH descriptor of a
/// `/proc/<pid>/exe`) O_WRONLY without O_TRUNC, and close it at once.
fn reopen_for_writing(exe: &fs::File) -> std::io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", exe.as_raw_fd()))
        .map(drop)
}

/// The attack's reopen must have failed, and with EROFS, EPERM or ETXTBSY (`who` names the
/// executable in the message).
fn write_refused(reopened: &std::io::Result<()>, who: &str) -> TestResult {
    match reopened {
        Ok(()) => fail!(
            "{who} could be reopened for writing through /proc/<pid>/exe once its process \
             was gone: the runtime binary is exposed (nothing was written)"
        ),
        Err(e) if matches!(e.raw_os_error(), Some(EROFS | EPERM | ETXTBSY)) => Ok(()),
        Err(e) => {
            fail!("reopening {who} for writing failed, but not with EROFS, EPERM or ETXTBSY: {e}")
        }
    }
}

/// The runtime binary at `path` still holds `before`.
fn ensure_unchanged(path: &Path, before: &[u8]) -> TestResult {
    ensure!(
        fs::read(path)? == before,
        "the runtime binary {} changed",
        path.display()
    );
    Ok(())
}

/// A private copy of the runtime under test in a scratch dir `name`, and a [`Runtime`] for it
/// (same state root): no other process keeps the copy busy, and only the copy can be exposed.
fn runtime_copy(ctx: &Ctx, name: &str) -> Result<(PathBuf, Runtime), Failure> {
    let copy = ctx.scratch_dir(name)?.join(ctx.rt.name());
    fs::copy(&ctx.rt.path, &copy)?;
    let rt = Runtime::new(
        copy.clone(),
        ctx.rt.root.clone(),
        ctx.scratch_dir(&format!("{name}-io"))?,
    )?;
    Ok((copy, rt))
}

/// **CVE-2019-5736** with the runtime installed immutable (`chattr +i`, as `hack/setup.sh`
/// installs berth, which then skips its copy). For a container without CAP_LINUX_IMMUTABLE, the
/// attack's reopen of init's executable must fail as above. A container that has
/// CAP_LINUX_IMMUTABLE in its bounding set could clear the flag first, so its init must not run
/// from the installed file itself: `/proc/<init>/exe` must lie on another mount than the file
/// (a read-only bind mount's clone, or a memfd), told apart by `mnt_id` in fdinfo.
///
/// Can it fail? A runtime that trusted the immutable flag for every container would show the
/// installed file's own mount for the second container. Skipped where the scratch filesystem
/// has no immutable flag (`chattr +i` fails).
fn cve_2019_5736_immutable_runtime_binary(ctx: &Ctx) -> TestResult {
    let (copy, rt) = runtime_copy(ctx, "runtime-immutable")?;
    let before = fs::read(&copy)?;
    let immutable = Immutable::set(&copy)?;
    let installed_mnt = mnt_id(&fs::File::open(&copy)?)?;

    for with_cap in [false, true] {
        let case = if with_cap {
            "bounding set with CAP_LINUX_IMMUTABLE"
        } else {
            "default capabilities"
        };
        let mut b = ctx.bundle()?;
        b.cfg.args(&["true"]);
        if with_cap {
            b.cfg.push(
                "/process/capabilities/bounding",
                json!("CAP_LINUX_IMMUTABLE"),
            );
        }
        b.write_config()?;
        let InitExe {
            link,
            reopened,
            mnt_id: exe_mnt,
        } = reopen_init_exe(&rt, &b).map_err(|e| in_case(e, case))?;
        write_refused(&reopened, &format!("init's executable ({link})"))
            .map_err(|e| in_case(e, case))?;
        if with_cap {
            ensure!(
                exe_mnt != installed_mnt,
                "{case}: init ran from the immutable runtime binary itself (mount {exe_mnt}), \
                 whose flag a process with CAP_LINUX_IMMUTABLE can clear"
            );
        }
    }
    drop(immutable);
    ensure_unchanged(&copy, &before)
}

/// **CVE-2019-5736** through `exec`: the process a runtime starts in a running container runs
/// the runtime's own executable until it executes the user's program, and a container process
/// can open it through `/proc/<pid>/exe` then. The test catches it there: the container's
/// seccomp profile notifies `execve`, and a seccomp agent (`listenerPath`) opens the caller's
/// `/proc/<pid>/exe` O_PATH while it is held. Once the exec is over, reopening that for writing
/// must fail as in the `create` tests, for a writable runtime binary and for an immutable one
/// whose exec'd process has CAP_LINUX_IMMUTABLE; the latter must also not run from the
/// installed file itself (another `mnt_id`).
///
/// Can it fail? A runtime whose exec'd process ran from its writable binary hands that file out
/// (root's O_WRONLY reopen succeeds); one that trusted the immutable flag for a process that can
/// clear it shows the installed file's own mount.
fn cve_2019_5736_exec_starts_from_a_protected_binary(ctx: &Ctx) -> TestResult {
    for immutable in [false, true] {
        let case = if immutable {
            "immutable runtime binary, exec'd process with CAP_LINUX_IMMUTABLE"
        } else {
            "writable runtime binary"
        };
        let (copy, rt) = runtime_copy(ctx, "runtime-exec")?;
        let before = fs::read(&copy)?;
        let flag = if immutable {
            Some(Immutable::set(&copy)?)
        } else {
            None
        };
        let installed_mnt = mnt_id(&fs::File::open(&copy)?)?;
        exec_exe_refused(ctx, &rt, immutable, installed_mnt).map_err(|e| in_case(e, case))?;
        drop(flag);
        ensure_unchanged(&copy, &before).map_err(|e| in_case(e, case))?;
    }
    Ok(())
}

/// One case of the test above: a container whose `execve`s are notified, an `exec` of `true`
/// (with CAP_LINUX_IMMUTABLE in every set when `with_cap`), then the checks on the exec'd
/// process's executable as the agent caught it.
fn exec_exe_refused(ctx: &Ctx, rt: &Runtime, with_cap: bool, installed_mnt: u64) -> TestResult {
    let sock = ctx.scratch_dir("exec-agent")?.join("agent.sock");
    let agent = Agent::start(&sock, |_| Answer::Continue)?;
    let mut b = ctx.bundle()?;
    b.cfg.args(&["sleep", "1000"]);
    b.cfg.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock,
               "syscalls": [{"names": ["execve", "execveat"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    b.write_config()?;
    let bundle = b.dir.to_string_lossy().into_owned();
    rt.exec(&["run", "--detach", "--bundle", &bundle, &b.id])
        .ok()?;
    let init = b.pid()?;
    ensure!(
        wait_until(Duration::from_secs(10), || agent
            .with(|r| r.notifications.iter().any(|n| n.pid == init))),
        "init's execve (pid {init}) was not notified"
    );
    let caps = if with_cap {
        json!(["CAP_LINUX_IMMUTABLE"])
    } else {
        json!([])
    };
    let process = b.dir.join("exec-process.json");
    let spec = json!({"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                      "env": ["PATH=/bin:/usr/bin"],
                      "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}});
    fs::write(&process, spec.to_string())?;
    let process = process.to_string_lossy().into_owned();
    rt.exec(&["exec", "--process", &process, &b.id]).ok()?;
    let got = agent.finish();
    ensure!(got.errors.is_empty(), "the agent: {:?}", got.errors);
    let Some(caught) = got.notifications.iter().find(|n| n.pid != init) else {
        fail!("the exec'd process's execve was not notified");
    };
    let exe = match &caught.exe {
        Ok(f) => f,
        Err(e) => fail!(
            "opening /proc/{}/exe of the exec'd process: {e}",
            caught.pid
        ),
    };
    let exe_mnt = mnt_id(exe)?;
    write_refused(
        &reopen_for_writing(exe),
        &format!("the exec'd process's executable ({})", caught.exe_link),
    )?;
    if with_cap {
        ensure!(
            exe_mnt != installed_mnt,
            "the exec'd process ran from the immutable runtime binary itself (mount \
             {exe_mnt}), whose flag a process with CAP_LINUX_IMMUTABLE can clear"
        );
    }
    Ok(())
}

/// What the attack's first steps found: init's executable as `/proc/<pid>/exe` showed it, its
/// mount id, and whether the reopen for writing worked.
struct InitExe {
    link: String,
    mnt_id: u64,
    reopened: std::io::Result<()>,
}

/// The attack's steps, minus the write, on bundle `b` under `rt`: `create` (init is held before
/// the user process runs, so its exe is still the runtime's), open `/proc/<init>/exe` O_PATH,
/// `delete --force`, wait until init is gone, then reopen the descriptor O_WRONLY without
/// O_TRUNC and close it at once.
fn reopen_init_exe(rt: &Runtime, b: &crate::fixture::Bundle) -> Result<InitExe, Failure> {
    let bundle = b.dir.to_string_lossy().into_owned();
    rt.exec(&["create", "--bundle", &bundle, &b.id]).ok()?;
    let st = rt.state(&b.id)?;
    let Some(pid) = st["pid"].as_u64().filter(|p| *p > 0) else {
        fail!("state has no pid > 0: {st}");
    };
    let link = fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("<readlink: {e}>"));
    let exe = fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_PATH)
        .open(format!("/proc/{pid}/exe"))?;
    let mnt_id = mnt_id(&exe)?;
    rt.exec(&["delete", "--force", &b.id]).ok()?;
    ensure!(
        wait_until(Duration::from_secs(10), || !alive(pid as u32)),
        "init {pid} still alive after delete --force"
    );
    let reopened = reopen_for_writing(&exe);
    Ok(InitExe {
        link,
        mnt_id,
        reopened,
    })
}

/// A file made immutable with `chattr +i` for as long as this lives.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Result<Immutable, Failure> {
        let st = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status();
        match st {
            Ok(s) if s.success() => Ok(Immutable(path.to_path_buf())),
            _ => skip!("chattr +i does not work on {} here", path.display()),
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// The mount id of an open file (`mnt_id:` in /proc/self/fdinfo).
fn mnt_id(f: &fs::File) -> Result<u64, Failure> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", f.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Failure::Fail(format!("no mnt_id in fdinfo: {info}")))
}

/// Host descriptors the runtime is started with (as descriptors 3..=8) in the CVE-2024-21626
/// tests: directories of the host, which a container could `fchdir`/`openat` out through.
fn host_fds(ctx: &Ctx) -> Vec<PathBuf> {
    vec![
        PathBuf::from("/"),
        PathBuf::from("/tmp"),
        ctx.tmp.clone(),
        PathBuf::from("/etc"),
        PathBuf::from("/sys/fs/cgroup"),
        PathBuf::from("/usr"),
    ]
}

/// Lists the descriptors of the container's shell (pid 1): `fd N TARGET` lines. The glob's
/// own directory descriptor is closed again before the loop body, so `[ -L ]` drops it.
const LIST_FDS: &str = "echo started-in-container; \
     for f in /proc/$$/fd/*; do [ -L \"$f\" ] && echo \"fd ${f##*/} $(readlink \"$f\")\"; done; \
     true";

/// **CVE-2024-21626** (runc < 1.1.12), part 1: runc leaked descriptors of its own (an
/// O_PATH of the host's `/sys/fs/cgroup`) into the container's init, and a container whose
/// process could reach one (`/proc/self/fd/7`, `openat`) had the host's filesystem. Rule: no
/// host descriptor reaches the container's process except stdio and exactly the `N` that
/// `--preserve-fds N` asks for.
///
/// The runtime is started with six host directories open as descriptors 3..=8 (not
/// close-on-exec, as a careless caller leaves them), and the container's shell lists its own
/// descriptors: without `--preserve-fds` it must see exactly 0, 1, 2; with
/// `--preserve-fds 2` exactly 0..=4.
///
/// Can it fail? A runtime that leaks an internal descriptor, or lets inherited ones through
/// unasked (or passes more or fewer than asked), shows a different set of numbers.
fn cve_2024_21626_no_host_fds_reach_the_container(ctx: &Ctx) -> TestResult {
    let host = host_fds(ctx);
    let host: Vec<&Path> = host.iter().map(PathBuf::as_path).collect();
    for preserve in [0u32, 2] {
        let mut b = ctx.bundle()?;
        b.cfg.sh(LIST_FDS);
        b.write_config()?;
        let bundle = b.dir.to_string_lossy().into_owned();
        let n = preserve.to_string();
        let mut args = vec!["run"];
        if preserve > 0 {
            args.extend_from_slice(&["--preserve-fds", &n]);
        }
        args.extend_from_slice(&["--bundle", &bundle, &b.id]);
        let out = ctx.rt.exec_with_fds(&host, &args).ok()?;
        ensure!(
            out.stdout.lines().any(|l| l == STARTED),
            "the container did not run: {}",
            out.describe()
        );
        let listed: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("fd "))
            .collect();
        let fds: Vec<u32> = listed
            .iter()
            .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
            .collect();
        let want: Vec<u32> = (0..3 + preserve).collect();
        ensure_eq!(
            fds,
            want,
            format!(
                "descriptors of the container's process with --preserve-fds {preserve} \
                 (runtime started with host descriptors 3..=8; container saw {listed:?})"
            )
        );
        b.ensure_clean()?;
    }
    Ok(())
}

/// A file in the container's root that the host's `/` does not have.
const CONTAINER_MARKER: &str = "berth-it-container-root";

/// **CVE-2024-21626** (runc < 1.1.12), part 2: with `process.cwd` set to
/// `/proc/self/fd/<n>`, runc's init `chdir`ed through its leaked descriptor of the host's
/// `/sys/fs/cgroup`, so the container's process started with a cwd on the host and reached
/// the host's `/` with `../../..`. Rule: a cwd must never leave the process outside the
/// container's root; either create/run fails, or the process's cwd is inside the container.
///
/// For n in 3..=8, once with the runtime started plainly and once with six host directories
/// inherited as descriptors 3..=8, the container prints `pwd` and lists `.` and
/// `../../../../../../../../..` (which is the root of whatever tree the cwd is in: the
/// container's, or the host's). A marker file created in the host's `/` must not show up,
/// and when the process ran, the `..` listing must be the container's root (it holds
/// [`CONTAINER_MARKER`]).
///
/// Can it fail? A runtime that leaks a directory descriptor into init at any of 3..=8 (its
/// own, or one it inherited) and `chdir`s through it without checking the result starts the
/// process with a host cwd: the listing then shows the host's `/` with the marker.
fn cve_2024_21626_cwd_in_a_leaked_fd_stays_in_the_root(ctx: &Ctx) -> TestResult {
    let marker_name = format!("berth-it-{}-host-root-marker", std::process::id());
    let marker = Path::new("/").join(&marker_name);
    fs::write(&marker, "host\n")?;
    let _guard = RemoveOnDrop(marker);
    let host = host_fds(ctx);
    let host: Vec<&Path> = host.iter().map(PathBuf::as_path).collect();
    let script = "echo started-in-container; echo \"pwd $(pwd)\"; \
                  echo \"here $(ls -A -1 . | tr '\\n' ' ')\"; \
                  echo \"up $(ls -A -1 ../../../../../../../../.. | tr '\\n' ' ')\"; true";
    for inherit in [false, true] {
        for n in 3..=8 {
            let case = format!(
                "cwd /proc/self/fd/{n}{}",
                if inherit {
                    " (runtime started with host descriptors 3..=8)"
                } else {
                    ""
                }
            );
            let mut b = ctx.bundle()?;
            fs::write(b.rootfs().join(CONTAINER_MARKER), "")?;
            b.cfg
                .set("/process/cwd", json!(format!("/proc/self/fd/{n}")));
            b.cfg.sh(script);
            b.write_config()?;
            let bundle = b.dir.to_string_lossy().into_owned();
            let args = ["run", "--bundle", &bundle, &b.id];
            let out = if inherit {
                ctx.rt.exec_with_fds(&host, &args)
            } else {
                ctx.rt.exec(&args)
            };
            ensure!(
                !out.stdout.contains(&marker_name),
                "{case}: the container sees the host's / (marker {marker_name} listed): {}",
                out.describe()
            );
            if let Outcome::Ran(stdout) = ran_or_refused(out, &case)? {
                let up = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("up "))
                    .unwrap_or("");
                ensure!(
                    up.split(' ').any(|e| e == CONTAINER_MARKER),
                    "{case}: `..` from the cwd is not the container's root: {stdout:?}"
                );
            }
            b.ensure_clean().map_err(|e| in_case(e, &case))?;
        }
    }
    Ok(())
}

/// `../` repeated more often than any bundle path is deep, then `abs` without its leading `/`:
/// a relative symlink that climbs out of the rootfs when resolved on the host.
fn climbing_link(abs: &Path) -> PathBuf {
    let rel = abs.strip_prefix("/").unwrap_or(abs);
    Path::new(&"../".repeat(12)).join(rel)
}

/// **CVE-2021-30465** (runc < 1.0.0-rc95): runc joined mount destinations onto the rootfs
/// and let the kernel follow symlinks in them on the host, so a symlink in the rootfs (placed
/// there by the image, or swapped in by a racing container sharing a volume) pointed a mount
/// at a host path. Rule: a mount destination is resolved inside the rootfs, as if the rootfs
/// were `/`; a symlink can never make a mount land outside it.
///
/// The rootfs gets `escape -> /<host dir A>` (absolute) and
/// `escape2 -> ../../../(...)/<host dir B>` (relative, climbing past the rootfs), where A and
/// B exist on the host as shared tmpfs mounts of the test holding one file each; once with
/// A and B missing in the rootfs (dangling symlinks there), once with them present as empty
/// directories of the rootfs too (so a runtime that refuses dangling destinations is checked
/// on the mounts it makes). The config
/// mounts a tmpfs at `/escape` and binds a test directory at `/escape2/sub`, with
/// `rootfsPropagation: rshared`, so that a mount made on A or B in the container's namespace
/// would propagate back into the suite's namespace. After the run, A and B must be unchanged
/// (no `sub` made, same file) and nothing but the test's own tmpfs mounted on them in the
/// suite's `/proc/self/mountinfo`; inside, the container must see the tmpfs and the bind at
/// the in-root paths `/<A>` and `/<B>/sub` (or the runtime refuses the config).
///
/// Can it fail? A runtime following the symlinks on the host mounts onto A and B (the mounts
/// show up here through the shared peer groups, and `sub` is created in B), and the
/// container does not find the mounts at the in-root paths.
fn cve_2021_30465_mount_destinations_resolve_in_the_root(ctx: &Ctx) -> TestResult {
    for in_root_exists in [false, true] {
        let case = if in_root_exists {
            "symlinked mount destinations (targets exist in the rootfs too)"
        } else {
            "symlinked mount destinations (targets dangle in the rootfs)"
        };
        let a = HostTarget::new(ctx, "escape-a")?;
        let b_host = HostTarget::new(ctx, "escape-b")?;
        let src = ctx.scratch_dir("escape-bind-src")?;
        fs::write(src.join("from-bind"), "bind\n")?;
        let mut b = ctx.bundle()?;
        let rootfs = b.rootfs();
        symlink(a.path(), rootfs.join("escape"))?;
        symlink(climbing_link(b_host.path()), rootfs.join("escape2"))?;
        if in_root_exists {
            for t in [a.path(), b_host.path()] {
                fs::create_dir_all(rootfs.join(t.strip_prefix("/").unwrap_or(t)))?;
            }
        }
        b.cfg.set("/linux/rootfsPropagation", json!("rshared"));
        b.cfg.add_mount("/escape", "tmpfs", "tmpfs", &["size=2m"]);
        b.cfg.add_bind(&src, "/escape2/sub", &[]);
        b.cfg.sh(&format!(
            "echo {STARTED}; echo \"bind $(cat /escape2/sub/from-bind)\"; \
             echo \"tmpfs $(stat -f -c %T /escape/)\"; cat /proc/self/mountinfo"
        ));
        let outcome = ran_or_refused(b.run(&[]), case);
        let clean = b.ensure_clean();
        drop(b);
        a.ensure_untouched(case)?;
        b_host.ensure_untouched(case)?;
        if let Outcome::Ran(out) = outcome? {
            let m = mountinfo::parse(&out);
            let at_a = require(&m, &a.path_str()).map_err(|e| in_case(e, case))?;
            ensure!(
                at_a.fstype == "tmpfs" && at_a.has_super_opt("size=2048k"),
                "{case}: the mount at the in-root path of /escape is not the config's tmpfs: \
                 {at_a:?}"
            );
            let b_sub = format!("{}/sub", b_host.path_str());
            require(&m, &b_sub).map_err(|e| in_case(e, case))?;
            let kv = super::key_values(&out);
            ensure_eq!(
                kv.get("bind").map(String::as_str),
                Some("bind"),
                format!("{case}: content of the bind through /escape2/sub")
            );
            ensure_eq!(
                kv.get("tmpfs").map(String::as_str),
                Some("tmpfs"),
                format!("{case}: filesystem through /escape")
            );
        }
        clean.map_err(|e| in_case(e, case))?;
    }
    Ok(())
}

/// **CVE-2019-19921** (runc < 1.0.0-rc10; reintroduced as CVE-2023-27561, fixed again in
/// 1.1.5): with `/proc` in the rootfs a symlink (or a config mount covering /proc), the
/// runtime mounted procfs somewhere else, and then wrote the process's LSM labels to a fake
/// `/proc/self/attr/*`, or the container got a /proc it controls. Rule: what ends up at /proc
/// and /sys is the real procfs and sysfs, and the config may not mount over /proc or below
/// it (except the few files lxcfs emulates, bound from regular files).
///
/// (a) `rootfs/proc` (then `rootfs/sys`) is a symlink to an absolute path that exists twice:
/// as a directory in the rootfs, and as a shared tmpfs of the test on the host (with
/// `rootfsPropagation: rshared`, so a mount made on it in the container's namespace shows up
/// here). Either create/run fails, or inside `stat -f` of /proc (/sys) says proc (sysfs);
/// the host directory is untouched either way. (b) A tmpfs at `/proc`, a tmpfs at
/// `/proc/self/attr` and a bind of a directory at `/proc/sys/kernel` must each make create
/// fail with a message, while a bind of a regular file at `/proc/cpuinfo` (as lxcfs does)
/// runs and shows the file.
///
/// Can it fail? A runtime following the symlink on the host mounts procfs (sysfs) onto the
/// host directory (seen here) and leaves the container's /proc (/sys) pointing at an empty
/// directory of the rootfs, not procfs (sysfs); a runtime without the check on /proc
/// destinations creates the containers of (b).
fn cve_2019_19921_proc_and_sys_are_real(ctx: &Ctx) -> TestResult {
    for (dir, fstype) in [("proc", "proc"), ("sys", "sysfs")] {
        let case = format!("/{dir} a symlink to a host path");
        let host = HostTarget::new(ctx, &format!("{dir}-target"))?;
        let mut b = ctx.bundle()?;
        let rootfs = b.rootfs();
        let in_root = rootfs.join(host.path().strip_prefix("/").unwrap_or(host.path()));
        fs::create_dir_all(&in_root)?;
        fs::remove_dir(rootfs.join(dir))?;
        symlink(host.path(), rootfs.join(dir))?;
        b.cfg.set("/linux/rootfsPropagation", json!("rshared"));
        b.cfg.sh(&format!(
            "echo {STARTED}; echo \"fs $(stat -f -c %T /{dir}/)\""
        ));
        let outcome = ran_or_refused(b.run(&[]), &case);
        let clean = b.ensure_clean();
        drop(b);
        host.ensure_untouched(&case)?;
        if let Outcome::Ran(out) = outcome? {
            ensure_eq!(
                super::key_values(&out).get("fs").map(String::as_str),
                Some(fstype),
                format!("{case}: filesystem at /{dir} in the container")
            );
        }
        clean.map_err(|e| in_case(e, &case))?;
    }

    let dir_src = ctx.scratch_dir("proc-mount-src")?;
    let cases: [(&str, &str, &[&str]); 3] = [
        ("/proc/sys/kernel", "bind", &["rbind"]),
        ("/proc", "tmpfs", &["size=1m"]),
        ("/proc/self/attr", "tmpfs", &["size=1m"]),
    ];
    // tmpfs cases runc accepted (see the skip below).
    let mut runc_accepted = Vec::new();
    for (dest, typ, opts) in cases {
        let case = format!("a {typ} mount at {dest}");
        let mut b = ctx.bundle()?;
        let source = if typ == "bind" {
            dir_src.to_string_lossy().into_owned()
        } else {
            typ.to_string()
        };
        b.cfg.add_mount(dest, typ, &source, opts);
        b.cfg.args(&["true"]);
        let out = b.create(&[]);
        if out.success() && typ == "tmpfs" && ctx.rt.runc.is_some() {
            runc_accepted.push(dest);
            continue;
        }
        ensure!(
            !out.success(),
            "{case} was accepted (create succeeded): {}",
            out.describe()
        );
        out.failed().map_err(|e| in_case(e, &case))?;
        b.ensure_clean().map_err(|e| in_case(e, &case))?;
    }

    let cpuinfo = ctx.scratch_dir("lxcfs")?.join("cpuinfo");
    fs::write(&cpuinfo, "processor : berth-it-lxcfs\n")?;
    let mut b = ctx.bundle()?;
    b.cfg.add_bind(&cpuinfo, "/proc/cpuinfo", &["ro"]);
    b.cfg.args(&["cat", "/proc/cpuinfo"]);
    let out = b
        .run(&[])
        .ok()
        .map_err(|e| in_case(e, "an lxcfs-style bind of a file at /proc/cpuinfo"))?;
    ensure_eq!(
        out.stdout.trim(),
        "processor : berth-it-lxcfs",
        "/proc/cpuinfo bound from a regular file"
    );
    if !runc_accepted.is_empty() {
        skip!(
            "CVE-2019-19921: runc refuses binds below /proc (checkProcMount) but not tmpfs \
             mounts, and mounted a tmpfs at {runc_accepted:?} (runc 1.1 calls checkProcMount \
             only for bind and `default` mounts; upstream answered the /proc/self/attr \
             overmount by verifying its procfs writes, CVE-2025-52881, runc 1.2.8/1.3.3/\
             1.4.0-rc.3, not by refusing the mount). The rest of this test passed."
        );
    }
    Ok(())
}

/// A writable procfs file the container's `/dev/null` is made to point at. Only ever
/// `stat`ed: neither the test nor the container script opens it.
const NULL_TARGET: &str = "/proc/sys/kernel/core_pattern";

/// **CVE-2025-31133** (runc < 1.2.8, 1.3.3, 1.4.0-rc.3): runc masked `linux.maskedPaths` by
/// bind-mounting the container's `/dev/null` over them without checking what that is; with
/// `/dev/null` a symlink to a procfs file (`/proc/sys/kernel/core_pattern`), the masked path
/// became a view of that file, which (depending on mount order) the container could write:
/// a host escape through core_pattern. Rule: masked files are covered only with the real null
/// device (character device 1:3), or the container is refused.
///
/// `/dev` is a bind of a test directory in which `null -> /proc/sys/kernel/core_pattern` (as
/// an image or a volume could arrange it; runc then creates no device nodes of its own), and
/// `maskedPaths` holds a file of the rootfs, core_pattern itself and `/proc/kcore` (when the
/// kernel has it). Either create/run fails with a message, or inside each masked file is the
/// character device 1:3; a masked file that is anything else (a view of core_pattern) fails,
/// and the message says whether the container could write it (`test -w`, which writes
/// nothing). Nothing in the container ever opens `/dev/null`, and the host's core_pattern is
/// compared (read only) before and after.
///
/// Can it fail? A runtime that binds whatever `/dev/null` resolves to puts core_pattern (a
/// regular procfs file, never a character device) on every masked file.
fn cve_2025_31133_masked_paths_only_with_the_real_dev_null(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 2) {
        skip!(
            "CVE-2025-31133: runc 1.1 binds whatever /dev/null resolves to over masked paths \
             (fixed upstream in runc 1.2.8, 1.3.3 and 1.4.0-rc.3; the 1.1 branch, Debian's \
             1.1.5+ds1-1+deb12u1 included, has no fix)"
        );
    }
    masked_paths_with_a_symlinked_dev_null(ctx)
}

fn masked_paths_with_a_symlinked_dev_null(ctx: &Ctx) -> TestResult {
    let host_before = fs::read(NULL_TARGET)?;
    let dev = ctx.scratch_dir("dev-null-symlink")?;
    symlink(NULL_TARGET, dev.join("null"))?;
    let mut b = ctx.bundle()?;
    fs::write(b.rootfs().join("etc/masked-secret"), "secret\n")?;
    let mut masked = vec!["/etc/masked-secret", NULL_TARGET];
    if Path::new("/proc/kcore").exists() {
        masked.push("/proc/kcore");
    }
    let Some(mounts) = b.cfg.0["mounts"].as_array_mut() else {
        fail!("config has no mounts array");
    };
    let Some(m) = mounts.iter_mut().find(|m| m["destination"] == "/dev") else {
        fail!("config has no /dev mount");
    };
    *m = json!({"destination": "/dev", "type": "bind",
                "source": dev.to_string_lossy(), "options": ["rbind"]});
    for p in &masked {
        b.cfg.push("/linux/maskedPaths", json!(p));
    }
    b.cfg.sh(&format!(
        "echo {STARTED}; for p in {}; do \
           echo \"masked $p $(stat -c '%F' $p | tr ' ' _) $(stat -c '%t:%T' $p) \
           $([ -w $p ] && echo writable || echo not-writable)\"; done",
        masked.join(" ")
    ));
    let case = "/dev/null a symlink to core_pattern";
    let outcome = ran_or_refused(b.run(&[]), case);
    ensure!(
        fs::read(NULL_TARGET)? == host_before,
        "the host's {NULL_TARGET} changed"
    );
    let Outcome::Ran(out) = outcome? else {
        return b.ensure_clean();
    };
    for p in &masked {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("masked {p} ")))
            .unwrap_or("");
        let f: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            f.len() == 5 && f[2] == "character_special_file" && f[3] == "1:3",
            "masked path {p} is not the null device (char 1:3) but {:?} ({}): it was covered \
             with what the container's /dev/null resolves to; output {out:?}",
            f.get(2..).unwrap_or_default(),
            f.get(4).copied().unwrap_or("?")
        );
    }
    b.ensure_clean()
}

/// state.json holds the whole config (process.env with its secrets): only its owner may read
/// it, as runc writes it (0600).
fn state_json_is_the_owners_alone(ctx: &Ctx) -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let b = ctx.bundle()?;
    b.write_config()?;
    b.create(&[]).ok()?;
    let p = ctx.rt.root.join(&b.id).join("state.json");
    let mode = fs::metadata(&p)?.permissions().mode() & 0o777;
    crate::ensure!(
        mode & 0o077 == 0,
        "{} is mode {mode:o}: others may read the container's config",
        p.display()
    );
    b.delete().ok()?;
    b.ensure_clean()
}
