//! End-to-end: a private containerd 1.6 (and, in `containerd2_e2e`, sid's 2.1.9 from
//! hack/install-peers.sh's cache) runs containers through containerd-shim-berth-v2,
//! once with berth and once with Debian's runc as the shim's runtime (BinaryName from a
//! `--runtime-config-path` file), so that every scenario is checked against the reference.
//!
//! Opt-in (it needs root and real peers): `BERTH_SHIM_E2E=1 cargo test -p
//! containerd-shim-berth-v2 --release --test containerd -- --nocapture`.
//! `BERTH_SHIM_E2E_RUNTIMES=berth` (or `runc`) narrows the runtimes, `BERTH_SHIM_E2E_ONLY=TEXT`
//! the scenarios (those whose name has TEXT); `BERTH_BINARY` names berth
//! (default: next to the shim binary).

mod common;

use common::{run_timeout, Env, Runtime, IMAGE};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Scenario = fn(&mut Env, &Runtime, &str) -> Result<(), String>;

/// A scenario's error that starts with this is a skip (a peer it needs is missing).
const SKIP: &str = "SKIP: ";

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

fn ctr_run(
    env: &Env,
    rt: &Runtime,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<std::process::Output, String> {
    let a = env.run_args(rt, args);
    run_timeout(env.ctr_cmd().args(&a), stdin, Duration::from_secs(60))
}

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn run_rm_echo(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let o = ctr_run(env, rt, &["--rm", IMAGE, id, "echo", "hi"], None)?;
    check(o.status.success() && out(&o) == "hi\n", || {
        format!(
            "status {} stdout {:?} stderr {}",
            o.status,
            out(&o),
            err(&o)
        )
    })?;
    check(
        env.ctr_ok(&["container", "ls", "-q"])?.trim().is_empty(),
        || "container left behind".into(),
    )
}

/// No stdio at all: the runtime's own stdio must not leak into the container (or it would
/// hold the shim's capture pipes and hang create).
fn null_io(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let o = ctr_run(
        env,
        rt,
        &[
            "--rm",
            "--null-io",
            IMAGE,
            id,
            "sh",
            "-c",
            "echo nowhere; exit 2",
        ],
        None,
    )?;
    check(o.status.code() == Some(2) && o.stdout.is_empty(), || {
        format!("status {} stdout {:?} {}", o.status, out(&o), err(&o))
    })
}

fn nonzero_exit(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let o = ctr_run(
        env,
        rt,
        &[
            "--rm",
            IMAGE,
            id,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    )?;
    check(o.status.code() == Some(3), || {
        format!("exit {:?}, want 3; stderr {}", o.status.code(), err(&o))
    })?;
    check(out(&o) == "out\n" && err(&o).contains("err\n"), || {
        format!("stdout {:?} stderr {:?}", out(&o), err(&o))
    })
}

fn stdin_eof(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let data = b"line one\nline two\n";
    let o = ctr_run(
        env,
        rt,
        &["--rm", IMAGE, id, "sh", "-c", "cat; echo done"],
        Some(data),
    )?;
    check(
        o.status.success() && out(&o) == "line one\nline two\ndone\n",
        || format!("status {} stdout {:?} {}", o.status, out(&o), err(&o)),
    )
}

fn big_output(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    // 4 MiB through the pipes and fifos: backpressure, nothing lost.
    let o = ctr_run(
        env,
        rt,
        &[
            "--rm",
            IMAGE,
            id,
            "sh",
            "-c",
            "head -c 4194304 /dev/zero | tr '\\0' x",
        ],
        None,
    )?;
    check(
        o.status.success() && o.stdout.len() == 4 << 20 && o.stdout.iter().all(|b| *b == b'x'),
        || {
            format!(
                "status {} got {} bytes; {}",
                o.status,
                o.stdout.len(),
                err(&o)
            )
        },
    )
}

/// Run ctr on a new terminal of 33x77; its exit status and everything it printed.
fn on_pty(env: &Env, args: &[String]) -> Result<(std::process::ExitStatus, String), String> {
    let ws = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 77,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).map_err(|e| e.to_string())?;
    let slave: OwnedFd = pty.slave;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| e.to_string());
    let mut child = env
        .ctr_cmd()
        .args(args)
        .stdin(Stdio::from(dup(&slave)?))
        .stdout(Stdio::from(dup(&slave)?))
        .stderr(Stdio::from(slave))
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            v.extend_from_slice(&buf[..n]);
        }
        v
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("ctr {args:?} on a terminal timed out"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok((
        status,
        String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned(),
    ))
}

/// `ctr run -t` on a 33x77 terminal: the container sees a tty of that size (ResizePty).
fn tty(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let a = env.run_args(
        rt,
        &[
            "--rm",
            "-t",
            IMAGE,
            id,
            "sh",
            "-c",
            "sleep 0.5; tty; stty size; exit 4",
        ],
    );
    let (status, text) = on_pty(env, &a)?;
    check(status.code() == Some(4), || {
        format!("exit {status}, want 4; output {text:?}")
    })?;
    check(text.contains("/dev/pts/") && text.contains("33 77"), || {
        format!("terminal output {text:?}")
    })
}

/// `ctr task exec -t` into a running container, on a terminal; stdin reaches it.
fn exec_tty(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let o = ctr_run(env, rt, &["-d", IMAGE, id, "sleep", "1000"], None)?;
    check(o.status.success(), || format!("run -d: {}", err(&o)))?;
    env.wait_status(id, "RUNNING", Duration::from_secs(5))?;
    let args: Vec<String> = [
        "task",
        "exec",
        "-t",
        "--exec-id",
        "t1",
        id,
        "sh",
        "-c",
        "sleep 0.5; tty; stty size; exit 6",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = on_pty(env, &args);
    env.remove(id);
    let (status, text) = r?;
    check(status.code() == Some(6), || {
        format!("exit {status}, want 6; output {text:?}")
    })?;
    check(text.contains("/dev/pts/") && text.contains("33 77"), || {
        format!("terminal output {text:?}")
    })
}

/// `--log-uri file://` and `binary://` instead of fifos.
fn log_uris(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let file = env.dir.join(format!("{id}.log"));
    let uri = format!("file://{}", file.display());
    let o = ctr_run(
        env,
        rt,
        &[
            "--rm",
            "--log-uri",
            &uri,
            IMAGE,
            id,
            "sh",
            "-c",
            "echo to-out; echo to-err >&2",
        ],
        None,
    )?;
    check(o.status.success(), || format!("file:// run: {}", err(&o)))?;
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    check(
        text.contains("to-out\n") && text.contains("to-err\n"),
        || format!("log file: {text:?}"),
    )?;
    let logger = env.dir.join("logger.sh");
    std::fs::write(
        &logger,
        "#!/bin/sh\nwhile [ $# -gt 1 ]; do case \"$1\" in out) OUT=$2;; err) ERR=$2;; esac; shift 2; done\n\
         echo \"$CONTAINER_NAMESPACE/$CONTAINER_ID\" > \"$OUT.env\"\nexec 5>&-\ncat <&3 > \"$OUT\" &\n\
         cat <&4 > \"$ERR\" &\nexec 3<&- 4<&-\nwait\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let (bo, be) = (
        env.dir.join(format!("{id}.out")),
        env.dir.join(format!("{id}.err")),
    );
    let uri = format!(
        "binary://{}?out={}&err={}",
        logger.display(),
        bo.display(),
        be.display()
    );
    let id2 = format!("{id}-b");
    env.note_id(&id2);
    let o = ctr_run(
        env,
        rt,
        &[
            "--rm",
            "--log-uri",
            &uri,
            IMAGE,
            &id2,
            "sh",
            "-c",
            "echo to-out; echo to-err >&2",
        ],
        None,
    )?;
    check(o.status.success(), || format!("binary:// run: {}", err(&o)))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    while read(&be).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let env_line = read(&bo.with_extension("out.env"));
    // The logging binary ends with its container's output.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !env.our_helpers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    check(env.our_helpers().is_empty(), || {
        format!("logging binary still running: {:?}", env.our_helpers())
    })?;
    check(read(&bo) == "to-out\n" && read(&be) == "to-err\n", || {
        format!("logger got {:?} {:?}", read(&bo), read(&be))
    })?;
    check(env_line.trim() == format!("{}/{id2}", env.ns), || {
        format!("logger environment {env_line:?}")
    })
}

/// Containers of one pod (io.kubernetes.cri.sandbox-id) share one shim, which exits with the last.
fn pod_grouping(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    let (a, b) = (format!("{id}-a"), format!("{id}-b"));
    env.note_id(&a);
    env.note_id(&b);
    let ann = format!("io.kubernetes.cri.sandbox-id={id}-pod");
    for c in [&a, &b] {
        let o = ctr_run(
            env,
            rt,
            &["-d", "--annotation", &ann, IMAGE, c, "sleep", "1000"],
            None,
        )?;
        check(o.status.success(), || format!("run -d {c}: {}", err(&o)))?;
    }
    let addr = |c: &str| std::fs::read_to_string(env.bundle(c).join("address")).unwrap_or_default();
    check(!addr(&a).is_empty() && addr(&a) == addr(&b), || {
        format!("addresses {:?} {:?}", addr(&a), addr(&b))
    })?;
    let o = env.ctr(&["task", "exec", "--exec-id", "x", &b, "echo", "in-b"])?;
    check(out(&o) == "in-b\n", || {
        format!("exec in b: {:?} {}", out(&o), err(&o))
    })?;
    let shim = env.shim_pid(&a).ok_or("no shim for the pod")?;
    env.remove(&a);
    check(
        std::path::Path::new(&format!("/proc/{shim}")).exists(),
        || "the pod's shim exited with a container left".into(),
    )?;
    check(env.task_status(&b) == "RUNNING", || {
        format!("b is {:?}", env.task_status(&b))
    })?;
    env.remove(&b);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{shim}/stat")).is_ok_and(|s| !s.contains(") Z "))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    check(
        std::fs::read_to_string(format!("/proc/{shim}/stat")).map_or(true, |s| s.contains(") Z ")),
        || "the pod's shim outlived its containers".into(),
    )
}

fn detach_exec_ps_kill(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let o = ctr_run(env, rt, &["-d", IMAGE, id, "sleep", "1000"], None)?;
    check(o.status.success(), || format!("run -d: {}", err(&o)))?;
    env.wait_status(id, "RUNNING", Duration::from_secs(5))?;
    let o = env.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo from-exec; exit 5",
    ])?;
    check(
        o.status.code() == Some(5) && out(&o) == "from-exec\n",
        || format!("exec: {} {:?} {}", o.status, out(&o), err(&o)),
    )?;
    let o = run_timeout(
        env.ctr_cmd()
            .args(["task", "exec", "--exec-id", "e2", id, "cat"]),
        Some(b"via-stdin\n"),
        Duration::from_secs(30),
    )?;
    check(o.status.success() && out(&o) == "via-stdin\n", || {
        format!("exec stdin: {} {:?}", o.status, out(&o))
    })?;
    // A long exec shows up in `task ps` with its exec id.
    let mut bg = env
        .ctr_cmd()
        .args(["task", "exec", "--exec-id", "sleeper", id, "sleep", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let ps = loop {
        let ps = env.ctr_ok(&["task", "ps", id])?;
        if ps.contains("sleeper") || Instant::now() > deadline {
            break ps;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let init_pid = env
        .ctr_ok(&["task", "ls"])?
        .lines()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        .unwrap_or_default();
    check(ps.contains(&init_pid) && ps.contains("sleeper"), || {
        format!("task ps: {ps:?} (init {init_pid})")
    })?;
    let o = env.ctr(&["task", "kill", "-s", "KILL", "--exec-id", "sleeper", id])?;
    check(o.status.success(), || format!("kill exec: {}", err(&o)))?;
    let st = bg.wait().map_err(|e| e.to_string())?;
    check(st.code() == Some(137), || {
        format!("killed exec exited {st}")
    })?;
    let o = env.ctr(&["task", "kill", "-s", "KILL", id])?;
    check(o.status.success(), || format!("kill: {}", err(&o)))?;
    env.wait_status(id, "STOPPED", Duration::from_secs(5))?;
    // Killing a finished process: NotFound.
    let o = env.ctr(&["task", "kill", "-s", "KILL", id])?;
    check(!o.status.success() && err(&o).contains("not found"), || {
        format!("kill of a stopped task: {} {}", o.status, err(&o))
    })?;
    env.ctr_ok(&["task", "rm", id])?;
    env.ctr_ok(&["container", "rm", id])?;
    Ok(())
}

fn pause_resume(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let o = ctr_run(env, rt, &["-d", IMAGE, id, "sleep", "1000"], None)?;
    check(o.status.success(), || format!("run -d: {}", err(&o)))?;
    env.wait_status(id, "RUNNING", Duration::from_secs(5))?;
    env.ctr_ok(&["task", "pause", id])?;
    env.wait_status(id, "PAUSED", Duration::from_secs(5))?;
    env.ctr_ok(&["task", "resume", id])?;
    env.wait_status(id, "RUNNING", Duration::from_secs(5))?;
    env.remove(id);
    check(env.task_status(id).is_empty(), || {
        "task still listed".into()
    })
}

/// The value the counter of [`checkpoint_restore`] last wrote, read through an exec.
fn counter(env: &Env, id: &str, n: &mut u32) -> Option<u64> {
    *n += 1;
    let exec_id = format!("count-{n}");
    let o = env
        .ctr(&["task", "exec", "--exec-id", &exec_id, id, "cat", "/count"])
        .ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

fn wait_counter(env: &Env, id: &str, n: &mut u32, at_least: u64) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        last = counter(env, id, n);
        if last.is_some_and(|c| c >= at_least) {
            return Ok(last.unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "the counter did not reach {at_least} (last {last:?})"
    ))
}

/// containerd's checkpoint flow through the shim: `ctr c checkpoint --task --rw` (the
/// Checkpoint RPC, the container left running), the container removed, `ctr c restore --live
/// --rw` (a Create naming the checkpoint, restored by Start): the counter goes on from where
/// the checkpoint caught it, with the stdio the shim gives the restored process. Skipped
/// without a CRIU whose `criu check` passes.
fn checkpoint_restore(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    let run = env.run_args(rt, &[]);
    checkpoint_restore_through(env, run, id)
}

/// The same through containerd's own runc shim (io.containerd.runc.v2) driving the runtime
/// as its BinaryName: go-runc's words (`restore ... -no-subreaper`) reach the runtime as they
/// reach runc.
fn checkpoint_restore_runc_shim(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    let run = vec![
        "run".to_string(),
        "--runtime".into(),
        "io.containerd.runc.v2".into(),
        "--runc-binary".into(),
        rt.binary.display().to_string(),
    ];
    checkpoint_restore_through(env, run, id)
}

fn checkpoint_restore_through(env: &mut Env, run: Vec<String>, id: &str) -> Result<(), String> {
    if common::criu_dir().is_none() {
        return Err(format!(
            "{SKIP}no CRIU whose `criu check` passes (hack/install-peers.sh)"
        ));
    }
    env.note_id(id);
    let script = "i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.1; done";
    let mut args = run;
    args.extend(["-d", IMAGE, id, "sh", "-c", script].map(String::from));
    let o = run_timeout(env.ctr_cmd().args(&args), None, Duration::from_secs(60))?;
    check(o.status.success(), || format!("run -d: {}", err(&o)))?;
    env.wait_status(id, "RUNNING", Duration::from_secs(5))?;
    let mut n = 0;
    // Far enough that a fresh start (from 1, 0.1 s a step) is told from a restore below.
    let before = wait_counter(env, id, &mut n, 10)?;
    let image = format!("berth-test/checkpoint-{id}:1");
    let o = env.ctr(&["container", "checkpoint", "--task", "--rw", id, &image])?;
    check(o.status.success(), || {
        format!(
            "checkpoint: {} {}; containerd: {}",
            out(&o),
            err(&o),
            env.containerd_log_tail()
        )
    })?;
    env.wait_status(id, "RUNNING", Duration::from_secs(5))?;
    wait_counter(env, id, &mut n, before + 2)
        .map_err(|e| format!("after the checkpoint (left running): {e}"))?;
    env.remove(id);
    let o = env.ctr(&["container", "restore", "--live", "--rw", id, &image])?;
    let restored = (|| {
        check(o.status.success(), || {
            format!("restore: {} {}", out(&o), err(&o))
        })?;
        env.wait_status(id, "RUNNING", Duration::from_secs(10))?;
        // Half a second on: a fresh start would have written about 5 over the restored
        // /count by now.
        std::thread::sleep(Duration::from_millis(500));
        let first = wait_counter(env, id, &mut n, 1)?;
        check(first >= before, || {
            format!("the restored counter is at {first}, below {before} before the checkpoint: it started afresh")
        })?;
        wait_counter(env, id, &mut n, first + 3)
            .map(|_| ())
            .map_err(|e| format!("the restored counter does not count: {e}"))
    })();
    env.remove(id);
    let _ = env.ctr(&["image", "rm", &image]);
    restored
}

/// `ctr task checkpoint --exit` (CheckpointTaskRequest with exit): the checkpoint is made
/// (ctr prints the name of the checkpoint image it stores), the task is stopped by it and reported STOPPED (the
/// runtime's checkpoint without --leave-running kills the container; the shim sees init
/// exit), and the task deletes cleanly.
fn checkpoint_exit(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    if common::criu_dir().is_none() {
        return Err(format!(
            "{SKIP}no CRIU whose `criu check` passes (hack/install-peers.sh)"
        ));
    }
    // ctr 1.6 sets CheckpointOptions (and so Exit) only for runtimes named io.containerd.runc.*
    // (its withCheckpointOpts): for this shim it sends no options, and the task runs on.
    let version = env.ctr_ok(&["version"])?;
    if version.contains("Version:  1.") || version.contains("Version:  v1.") {
        return Err(format!(
            "{SKIP}ctr 1.x sends --exit only to runtimes named io.containerd.runc.*"
        ));
    }
    env.note_id(id);
    let script = "i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.1; done";
    let o = ctr_run(env, rt, &["-d", IMAGE, id, "sh", "-c", script], None)?;
    check(o.status.success(), || format!("run -d: {}", err(&o)))?;
    env.wait_status(id, "RUNNING", Duration::from_secs(5))?;
    let mut n = 0;
    wait_counter(env, id, &mut n, 3)?;
    let o = env.ctr(&["task", "checkpoint", "--exit", id])?;
    let r = (|| {
        check(o.status.success(), || {
            format!(
                "task checkpoint --exit: {} {}; containerd: {}",
                out(&o),
                err(&o),
                env.containerd_log_tail()
            )
        })?;
        let image = out(&o).trim().to_string();
        let images = env.ctr_ok(&["image", "ls", "-q"])?;
        let _ = env.ctr(&["image", "rm", &image]);
        check(
            image.starts_with("containerd.io/checkpoint/") && images.lines().any(|l| l == image),
            || format!("ctr printed {image:?}, not a checkpoint image it keeps: {images:?}"),
        )?;
        env.wait_status(id, "STOPPED", Duration::from_secs(10))
            .map_err(|e| format!("after checkpoint --exit: {e}"))?;
        env.ctr_ok(&["task", "rm", id])?;
        check(env.task_status(id).is_empty(), || {
            "task still listed".into()
        })
    })();
    env.remove(id);
    r
}

fn runtime_has_events(rt: &Runtime) -> bool {
    Command::new(&rt.binary)
        .args(["events", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn metrics(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let o = ctr_run(env, rt, &["-d", IMAGE, id, "sleep", "1000"], None)?;
    check(o.status.success(), || format!("run -d: {}", err(&o)))?;
    env.wait_status(id, "RUNNING", Duration::from_secs(5))?;
    let o = env.ctr(&["task", "metrics", id])?;
    let r = if runtime_has_events(rt) {
        check(
            o.status.success()
                && out(&o).contains("memory.usage_in_bytes")
                && out(&o).contains("pids.current"),
            || format!("metrics: {} {:?} {}", o.status, out(&o), err(&o)),
        )
    } else {
        // containerd logs the shim's error and reports no metrics.
        let log = env.containerd_log_tail();
        check(
            !o.status.success() && log.contains("events --stats"),
            || format!("metrics without `events`: {} {}", err(&o), log),
        )
    };
    env.remove(id);
    r
}

/// Watch `ctr events` while running `f`; return the topics seen for container `id`.
fn with_events(
    env: &mut Env,
    id: &str,
    f: impl FnOnce(&mut Env) -> Result<(), String>,
) -> Result<Vec<String>, String> {
    let mut ev = env
        .ctr_cmd()
        .args(["events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdout = ev.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    std::thread::sleep(Duration::from_millis(200));
    let r = f(env);
    std::thread::sleep(Duration::from_millis(300));
    let _ = ev.kill();
    let _ = ev.wait();
    let text = reader.join().unwrap_or_default();
    r?;
    let needle = format!("\"container_id\":\"{id}\"");
    Ok(text
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("/tasks/"))
                .map(String::from)
        })
        .collect())
}

fn events_order(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let topics = with_events(env, id, |env| {
        let o = ctr_run(env, rt, &["-d", IMAGE, id, "sleep", "1000"], None)?;
        check(o.status.success(), || format!("run -d: {}", err(&o)))?;
        env.ctr_ok(&["task", "exec", "--exec-id", "x", id, "true"])?;
        env.ctr_ok(&["task", "pause", id])?;
        env.ctr_ok(&["task", "resume", id])?;
        env.ctr_ok(&["task", "kill", "-s", "KILL", id])?;
        env.wait_status(id, "STOPPED", Duration::from_secs(5))?;
        env.ctr_ok(&["task", "rm", id])?;
        env.ctr_ok(&["container", "rm", id])?;
        Ok(())
    })?;
    let want = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ];
    check(topics == want, || {
        format!("events {topics:?}, want {want:?}")
    })
}

fn oom(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let topics = with_events(env, id, |env| {
        let o = ctr_run(
            env,
            rt,
            &[
                "--rm",
                "--memory-limit",
                "16777216",
                IMAGE,
                id,
                "sh",
                "-c",
                "x=a; while true; do x=$x$x; done",
            ],
            None,
        )?;
        check(o.status.code() == Some(137), || {
            format!(
                "OOM-killed container exited {:?}: {}",
                o.status.code(),
                err(&o)
            )
        })
    })?;
    check(topics.iter().any(|t| t == "/tasks/oom"), || {
        format!("no /tasks/oom event: {topics:?}")
    })
}

fn containerd_restart(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let o = ctr_run(env, rt, &["-d", IMAGE, id, "sleep", "1000"], None)?;
    check(o.status.success(), || format!("run -d: {}", err(&o)))?;
    env.wait_status(id, "RUNNING", Duration::from_secs(5))?;
    env.stop_containerd();
    env.start_containerd()?;
    env.wait_status(id, "RUNNING", Duration::from_secs(10))?;
    let o = env.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        id,
        "echo",
        "still-managed",
    ])?;
    check(o.status.success() && out(&o) == "still-managed\n", || {
        format!("exec after restart: {} {:?} {}", o.status, out(&o), err(&o))
    })?;
    env.ctr_ok(&["task", "kill", "-s", "KILL", id])?;
    env.wait_status(id, "STOPPED", Duration::from_secs(5))?;
    env.ctr_ok(&["task", "rm", id])?;
    env.ctr_ok(&["container", "rm", id])?;
    Ok(())
}

fn shim_killed(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    env.note_id(id);
    let o = ctr_run(env, rt, &["-d", IMAGE, id, "sleep", "1000"], None)?;
    check(o.status.success(), || format!("run -d: {}", err(&o)))?;
    env.wait_status(id, "RUNNING", Duration::from_secs(5))?;
    let bundle = env.bundle(id);
    let shim_pid: i32 = std::fs::read_to_string(bundle.join("shim.pid"))
        .map_err(|e| e.to_string())?
        .trim()
        .parse()
        .map_err(|_| "bad shim.pid".to_string())?;
    let init_pid: i32 = std::fs::read_to_string(bundle.join("init.pid"))
        .map_err(|e| e.to_string())?
        .trim()
        .parse()
        .map_err(|_| "bad init.pid".to_string())?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| e.to_string())?;
    // containerd notices, runs `shim delete` (runtime delete --force, unmount) and drops the task.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.task_status(id).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    check(env.task_status(id).is_empty(), || {
        format!("task still listed: {}", env.task_status(id))
    })?;
    let alive = || {
        std::fs::read_to_string(format!("/proc/{init_pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    check(!alive(), || {
        format!(
            "container init {init_pid} survived its shim; containerd:\n{}",
            env.containerd_log_tail()
        )
    })?;
    let mounted = || env.our_mounts().iter().any(|m| m.contains(id));
    let deadline = Instant::now() + Duration::from_secs(10);
    while mounted() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    check(!mounted(), || {
        format!("rootfs still mounted: {:?}", env.our_mounts())
    })?;
    let sock = common::shim_socket(&env.sock, &env.ns, id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    check(!sock.exists(), || {
        format!(
            "dead shim's socket {} left; processes:\n{}\ncontainerd:\n{}",
            sock.display(),
            env.process_report(),
            env.containerd_log_tail()
        )
    })?;
    env.ctr_ok(&["container", "rm", id])?;
    Ok(())
}

const SCENARIOS: &[(&str, Scenario)] = &[
    ("run --rm echo", run_rm_echo),
    ("non-zero exit, stdout+stderr", nonzero_exit),
    ("--null-io", null_io),
    ("stdin to EOF", stdin_eof),
    ("4 MiB of output", big_output),
    ("run -t (terminal, resize)", tty),
    ("exec -t", exec_tty),
    ("--log-uri file:// and binary://", log_uris),
    ("pod grouping (one shim)", pod_grouping),
    ("run -d, exec, task ps, kill", detach_exec_ps_kill),
    ("pause/resume", pause_resume),
    ("metrics", metrics),
    ("events in containerd's order", events_order),
    ("OOM kill -> /tasks/oom", oom),
    ("containerd restarted", containerd_restart),
    ("shim SIGKILLed", shim_killed),
    ("checkpoint --task --rw, restore --live", checkpoint_restore),
    (
        "checkpoint/restore through containerd's runc shim",
        checkpoint_restore_runc_shim,
    ),
    ("task checkpoint --exit", checkpoint_exit),
    ("containers in parallel (load)", load),
];

/// Issue 11's load through containerd: `BERTH_SHIM_LOAD` (default 200) containers started at
/// once through this shim, all running together, then removed with nothing lost or left.
fn load(env: &mut Env, rt: &Runtime, id: &str) -> Result<(), String> {
    let n = std::env::var("BERTH_SHIM_LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    // `ctr run` and the shim options of this runtime, without the `run`.
    let opts: Vec<String> = env.run_args(rt, &[]).into_iter().skip(1).collect();
    let report = common::parallel(env, &opts, id, n)?;
    eprintln!("     {report}");
    Ok(())
}

#[test]
fn containerd_e2e() {
    if std::env::var("BERTH_SHIM_E2E").as_deref() != Ok("1") {
        eprintln!("skipped: set BERTH_SHIM_E2E=1 to run against a private containerd (root, containerd 1.6, umoci, skopeo, busybox-static)");
        return;
    }
    if let Some(why) = common::missing_prerequisite() {
        panic!("BERTH_SHIM_E2E is set but {why}");
    }
    let env = Env::new("e2e").expect("setting up containerd");
    let failures = e2e(env, false);
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

/// The same scenarios with Debian sid's containerd 2.1.9 (hack/install-peers.sh unpacks it;
/// `BERTH_PEERS_DIR`), which also checks the bootstrap: containerd 2.x connects a shim whose
/// `start` answers with a version 3 BootstrapResult over task API v3 (`connecting to shim
/// ... protocol=ttrpc version=3` in its log, as for its own runc shim); a bare address is
/// connected as version 2 (DESIGN: the shim must answer version 3).
#[test]
fn containerd2_e2e() {
    if std::env::var("BERTH_SHIM_E2E").as_deref() != Ok("1") {
        eprintln!("skipped: set BERTH_SHIM_E2E=1 to run against a private containerd 2.1.9 (root, hack/install-peers.sh, umoci, skopeo, busybox-static)");
        return;
    }
    if let Some(why) = common::missing_prerequisite() {
        panic!("BERTH_SHIM_E2E is set but {why}");
    }
    let bin = common::containerd2_bin().expect(
        "BERTH_SHIM_E2E is set but containerd 2.1.9 is not unpacked: run hack/install-peers.sh",
    );
    let env = Env::with_containerd("e2e2", Some(bin)).expect("setting up containerd 2.1.9");
    let failures = e2e(env, true);
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

/// Every scenario with every runtime (BERTH_SHIM_E2E_RUNTIMES) in `env`, then the checks that
/// nothing is left; with `want_v3`, also that containerd connected every shim as version 3.
fn e2e(mut env: Env, want_v3: bool) -> Vec<String> {
    let mut runtimes = Vec::new();
    let wanted = std::env::var("BERTH_SHIM_E2E_RUNTIMES").unwrap_or_else(|_| "berth,runc".into());
    for name in wanted.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let binary = match name {
            "berth" => common::berth_binary()
                .expect("berth binary: build it (cargo build -p berth) or set BERTH_BINARY"),
            "runc" => std::path::PathBuf::from("/usr/sbin/runc"),
            other => std::path::PathBuf::from(other),
        };
        let short = binary.file_name().unwrap().to_string_lossy().into_owned();
        let config = env.dir.join(format!("{short}.toml"));
        let root = env.dir.join(format!("rt-{short}"));
        std::fs::write(
            &config,
            format!(
                "BinaryName = \"{}\"\nRoot = \"{}\"\n",
                binary.display(),
                root.display()
            ),
        )
        .unwrap();
        runtimes.push(Runtime {
            name: short,
            binary,
            config,
        });
    }
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    let only = std::env::var("BERTH_SHIM_E2E_ONLY").ok();
    for rt in &runtimes {
        for (i, (name, f)) in SCENARIOS.iter().enumerate() {
            if only.as_deref().is_some_and(|o| !name.contains(o)) {
                continue;
            }
            let id = format!("{}-{i}", rt.name);
            let start = Instant::now();
            let r = f(&mut env, rt, &id);
            let skipped = r
                .as_ref()
                .err()
                .and_then(|e| e.strip_prefix(SKIP))
                .map(String::from);
            if r.is_err() && skipped.is_none() {
                env.remove(&id);
            }
            let line = format!(
                "{:4} {:6} {name} ({} ms)",
                if skipped.is_some() {
                    "SKIP"
                } else if r.is_ok() {
                    "PASS"
                } else {
                    "FAIL"
                },
                rt.name,
                start.elapsed().as_millis()
            );
            eprintln!("{line}");
            if let Some(why) = skipped {
                eprintln!("     {why}");
                lines.push(line);
                continue;
            }
            if let Err(e) = r {
                eprintln!("     {e}");
                if let Some(dest) = std::env::var_os("BERTH_SHIM_E2E_SAVE_LOG") {
                    let _ = std::fs::copy(env.dir.join("containerd.log"), dest);
                }
                failures.push(format!("{} / {name}: {e}", rt.name));
            }
            lines.push(line);
        }
    }
    // Nothing may be left behind: containers, shims, mounts.
    let left = env.ctr_ok(&["container", "ls", "-q"]).unwrap_or_default();
    if !left.trim().is_empty() {
        failures.push(format!("containers left: {left}"));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !env.our_shims().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !env.our_shims().is_empty() {
        failures.push(format!("shims still running: {:?}", env.our_shims()));
    }
    let mounts: Vec<String> = env
        .our_mounts()
        .into_iter()
        .filter(|m| m.contains("io.containerd.runtime.v2.task"))
        .collect();
    if !mounts.is_empty() {
        failures.push(format!("bundle mounts left: {mounts:?}"));
    }
    let sockets: Vec<String> = env
        .ids
        .iter()
        .map(|id| common::shim_socket(&env.sock, &env.ns, id))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !sockets.is_empty() {
        failures.push(format!("shim sockets left: {sockets:?}"));
    }
    for rt in &runtimes {
        let pass = lines
            .iter()
            .filter(|l| l.starts_with("PASS") && l[5..].starts_with(&rt.name))
            .count();
        eprintln!("{}: {pass}/{} scenarios passed", rt.name, SCENARIOS.len());
    }
    if want_v3 {
        let log = std::fs::read_to_string(env.dir.join("containerd.log")).unwrap_or_default();
        let versions: std::collections::BTreeSet<&str> = log
            .lines()
            .filter(|l| l.contains("connecting to shim"))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("version=")))
            .collect();
        eprintln!("containerd 2.1.9 connected the shims as {versions:?}");
        if versions.iter().any(|v| *v != "version=3") || versions.is_empty() {
            failures.push(format!(
                "containerd 2.1.9 connected the shim as {versions:?}, not version=3 only: `start` \
                 must answer with a version 3 BootstrapResult (task API v3), as its runc shim does"
            ));
        }
    }
    drop(env);
    failures
}
