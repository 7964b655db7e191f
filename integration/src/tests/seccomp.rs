//! seccomp: Docker's default profile, actions, argument conditions, the notify listener, bad
//! profiles.

use serde_json::{json, Value};

use crate::context::Ctx;
use crate::harness::{Test, TestResult};
use crate::seccomp_agent::{Agent, Answer};
use crate::{ensure, ensure_eq, fail};

pub fn tests() -> Vec<Test> {
    crate::tests![
        seccomp_docker_default_profile,
        seccomp_errno_ret_and_unknown_names,
        seccomp_other_machines_architectures_are_accepted,
        seccomp_argument_conditions,
        seccomp_kill_process,
        seccomp_notify_listener,
        seccomp_notify_without_agent_in_runcs_words,
        seccomp_invalid_profile_fails,
        seccomp_notify_on_write_is_refused_in_runcs_words,
    ]
}

/// Docker's default profile in OCI form, as dockerd hands it to a runtime for a container with
/// Docker's default capabilities on amd64 (kept in sync with moby's by a libcontainer test).
fn docker_default() -> Result<Value, crate::harness::Failure> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../libcontainer/src/seccomp/testdata/docker-default.oci.json"
    );
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

/// Under Docker's default profile busybox works normally, while what the profile forbids
/// (user namespaces, mount) fails with EPERM.
fn seccomp_docker_default_profile(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/linux/seccomp", docker_default()?);
    b.cfg.sh(
        "echo hi; ls / >/dev/null && echo ls-ok; date >/dev/null && echo date-ok; \
         grep '^Seccomp:' /proc/self/status; \
         unshare -U true 2>&1; echo unshare=$?; mount -t tmpfs x /tmp 2>&1; echo mount=$?",
    );
    let out = b.run_ok()?;
    for want in [
        "hi",
        "ls-ok",
        "date-ok",
        "Seccomp:\t2",
        "unshare=1",
        "mount=1",
        "Operation not permitted",
    ] {
        ensure!(out.contains(want), "{want:?} missing from {out:?}");
    }
    Ok(())
}

/// An ERRNO rule returns its errnoRet; unknown syscall names are ignored (as runc does).
fn seccomp_errno_ret_and_unknown_names(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["no_such_syscall_berth", "getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]}),
    );
    b.cfg.sh("/bin/pwd 2>&1; echo pwd=$?; echo alive");
    let out = b.run_ok()?;
    ensure!(out.contains("pwd=1"), "pwd should fail: {out:?}");
    ensure!(
        out.contains("Function not implemented"),
        "errno 38 is ENOSYS: {out:?}"
    );
    ensure!(out.contains("alive"), "{out:?}");
    Ok(())
}

/// A multi-arch profile lists architectures this host cannot run (ARM, ppc64le): runc takes
/// them and filters the ABIs the host has, so the profile loads and is enforced. (Big-endian
/// ones, s390x for one, fail in runc: libseccomp cannot mix byte orders in one filter.)
fn seccomp_other_machines_architectures_are_accepted(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM",
                                 "SCMP_ARCH_PPC64LE", "SCMP_ARCH_MIPSEL"],
               "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}),
    );
    b.cfg.sh("/bin/pwd 2>&1; echo pwd=$?; echo alive");
    let out = b.run_ok()?;
    ensure!(out.contains("pwd=1"), "pwd should fail: {out:?}");
    ensure!(
        out.contains("Function not implemented"),
        "errno 38 is ENOSYS: {out:?}"
    );
    ensure!(out.contains("alive"), "{out:?}");
    b.ensure_clean()
}

/// An argument condition: kill(pid, SIGTERM) is denied, kill(pid, 0) is not.
fn seccomp_argument_conditions(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}
        ]}),
    );
    b.cfg.sh("sleep 30 & p=$!; kill -0 $p; echo probe=$?; kill -TERM $p 2>&1; echo term=$?; kill -KILL $p; echo killed=$?");
    let out = b.run_ok()?;
    ensure!(out.contains("probe=0"), "{out:?}");
    ensure!(out.contains("term=1"), "SIGTERM should be denied: {out:?}");
    ensure!(
        out.contains("killed=0"),
        "SIGKILL is another value: {out:?}"
    );
    Ok(())
}

/// KILL_PROCESS ends the process with SIGSYS (exit status 128+31 from `run`).
fn seccomp_kill_process(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_KILL_PROCESS"}
        ]}),
    );
    b.cfg.args(&["/bin/pwd"]);
    let out = b.run(&[]);
    ensure_eq!(
        out.code,
        Some(159),
        format!("exit status of a SIGSYS kill: {out:?}")
    );
    b.ensure_clean()
}

/// SCMP_ACT_NOTIFY: the runtime connects to `listenerPath` and hands over the container
/// process state (runtime-spec's `containerProcessState`: `fds` naming `seccompFd`, init's
/// `pid`, `listenerMetadata`, the container's state) with the listener descriptor. The agent
/// lets `execve` run (the first one is init's, from the state's pid) and answers `mkdir` with a
/// fake success, so the directory is reported made but absent.
///
/// Can it fail? A runtime that sends no listener leaves the container blocked or its calls
/// failing (ENOSYS); one that sends the wrong state or pid fails the field checks.
fn seccomp_notify_listener(ctx: &Ctx) -> TestResult {
    let sock = ctx.scratch_dir("seccomp-agent")?.join("agent.sock");
    let agent = Agent::start(&sock, |nr| {
        if is_mkdir(nr) {
            Answer::Return(0)
        } else {
            Answer::Continue
        }
    })?;
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "listenerPath": sock, "listenerMetadata": "berth-test-metadata",
               "syscalls": [{"names": ["mkdir", "mkdirat", "execve", "execveat"],
                             "action": "SCMP_ACT_NOTIFY"}]}),
    );
    b.cfg.sh(
        "mkdir /tmp/notified && echo mkdir=ok; [ -d /tmp/notified ] && echo dir=present || echo dir=absent",
    );
    let out = b.run_ok()?;
    let got = agent.finish();
    ensure!(got.errors.is_empty(), "the agent: {:?}", got.errors);
    ensure!(
        out.contains("mkdir=ok") && out.contains("dir=absent"),
        "the agent's answer (success, nothing made) did not reach the container: {out:?}"
    );
    ensure_eq!(got.states.len(), 1, "container process states received");
    let st = &got.states[0];
    ensure_eq!(st["fds"], json!(["seccompFd"]), format!("fds in {st}"));
    ensure_eq!(
        st["metadata"],
        json!("berth-test-metadata"),
        format!("metadata in {st}")
    );
    ensure_eq!(st["state"]["id"], json!(b.id), format!("state.id in {st}"));
    ensure!(st["ociVersion"].is_string(), "no ociVersion in {st}");
    let Some(first) = got.notifications.first() else {
        fail!("no notification arrived");
    };
    ensure!(
        !is_mkdir(first.nr) && st["pid"].as_u64() == Some(first.pid as u64),
        "the first notification (system call {}, pid {}) is not init's execve from the state's pid ({st})",
        first.nr,
        first.pid
    );
    let mkdirs = got.notifications.iter().filter(|n| is_mkdir(n.nr)).count();
    ensure_eq!(mkdirs, 1, "mkdir notifications");
    b.ensure_clean()
}

fn is_mkdir(nr: i64) -> bool {
    nr == libc::SYS_mkdir || nr == libc::SYS_mkdirat
}

/// An action the runtime-spec does not know is an error naming seccomp, and nothing is left.
fn seccomp_invalid_profile_fails(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_BOGUS"}]}),
    );
    let out = b.create(&[]).failed()?;
    out.stderr_mentions("SCMP_ACT_BOGUS")?;
    b.ensure_clean()
}

/// A listenerPath nobody listens on: create fails in runc's words, which its tests match.
fn seccomp_notify_without_agent_in_runcs_words(ctx: &Ctx) -> TestResult {
    notify_without_agent_fails(
        ctx,
        &["mkdir", "mkdirat"],
        "failed to connect with seccomp agent",
    )
}

/// runc refuses SCMP_ACT_NOTIFY for write (it needs write to hand the listener over), saying
/// `cannot be used for the write syscall`, which runc's own tests look for.
fn seccomp_notify_on_write_is_refused_in_runcs_words(ctx: &Ctx) -> TestResult {
    notify_without_agent_fails(ctx, &["write"], "cannot be used for the write syscall")
}

/// `run` with SCMP_ACT_NOTIFY for `names` and a listenerPath nobody listens on must fail,
/// saying `words`, and leave nothing behind.
fn notify_without_agent_fails(ctx: &Ctx, names: &[&str], words: &str) -> TestResult {
    let mut b = ctx.bundle()?;
    let sock = b.dir.join("no-agent.sock").to_string_lossy().into_owned();
    b.cfg.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock,
               "syscalls": [{"names": names, "action": "SCMP_ACT_NOTIFY"}]}),
    );
    b.cfg.args(&["true"]);
    let out = b.run(&[]).failed()?;
    out.stderr_mentions(words)?;
    b.ensure_clean()
}
