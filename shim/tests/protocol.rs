//! The shim's ttrpc protocol against an independent implementation: ttrpc-rust's client (with
//! containerd-shim-protos' Task client, task API v3 names) drives the shim server, and
//! ttrpc-rust's server plays containerd's event service. The runtime is a shell script that
//! honours the runc command-line contract with plain processes, so this needs neither root nor
//! containerd and runs with the unit tests.

use containerd_shim_protos::api::*;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim::oci::Options;
use containerd_shim_protos::types::task::Status;
use containerd_shim_protos::{Events, TaskClient};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::empty::Empty;
use protobuf::{Message, MessageField};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FAKE_RUNTIME: &str = r#"#!/bin/sh
# runc's command line, with plain processes: --root R --log L --log-format json CMD ARGS
root=$2; log=$4; shift 6
cmd=$1; shift
fail() { echo "{\"level\":\"error\",\"msg\":\"$1\"}" >> "$log"; exit 1; }
id() { for a; do last=$a; done; echo "$last"; }
case $cmd in
create)
    c=$(id "$@"); pf=
    while [ $# -gt 0 ]; do case $1 in --pid-file) pf=$2; shift 2;; *) shift;; esac; done
    mkdir -p "$root/$c"
    # init: waits for start, prints, reads one line of stdin (through fd 3: sh gives
    # background jobs /dev/null for stdin), exits 7
    exec 3<&0
    ( while [ ! -e "$root/$c/started" ]; do sleep 0.01; done; echo out-from-init; read line <&3; echo "got $line" >&2; exit 7 ) &
    echo $! > "$pf"; echo $! > "$root/$c/pid" ;;
exec)
    c=$(id "$@"); pf=; proc=
    while [ $# -gt 0 ]; do case $1 in --pid-file) pf=$2; shift 2;; --process) proc=$2; shift 2;; *) shift;; esac; done
    grep -q '"args"' "$proc" || fail "bad process spec"
    # Not a child of this shell, which may reap its own background jobs before it exits (and
    # the shim would never see the exit): setsid -f forks and does not wait, so the process is
    # re-parented to the shim, which is what runc's exec leaves behind.
    rm -f "$pf.tmp"
    setsid -f sh -c 'echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; echo exec-out; exit 3' sh "$pf"
    n=0; while [ ! -e "$pf" ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n + 1)); done ;;
start) c=$(id "$@"); [ -d "$root/$c" ] || fail "container $c does not exist"; touch "$root/$c/started" ;;
kill)
    c=$1; sig=$2; [ "$c" = --all ] && { c=$2; sig=$3; }
    kill -s "$sig" "$(cat "$root/$c/pid")" 2>/dev/null || fail "container not running" ;;
delete) c=$(id "$@"); kill -9 "$(cat "$root/$c/pid" 2>/dev/null)" 2>/dev/null; rm -rf "$root/$c" ;;
ps) c=$(id "$@"); echo "[$(cat "$root/$c/pid")]" ;;
pause|resume) : ;;
update) cat > "$root/$(id "$@")/update.json" ;;
checkpoint) echo "$@" > "$root/$(id "$@")/checkpoint.args" ;;
*) fail "unknown command $cmd" ;;
esac
"#;

struct Recorder(Arc<Mutex<Vec<String>>>);

impl Events for Recorder {
    fn forward(&self, _ctx: &ttrpc::TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let env = req.envelope;
        self.0.lock().unwrap().push(format!(
            "{} {} {}",
            env.namespace, env.topic, env.event.type_url
        ));
        Ok(Empty::new())
    }
}

struct Fixture {
    dir: PathBuf,
    shim: Child,
    events: Arc<Mutex<Vec<String>>>,
    _server: ttrpc::Server,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.shim.try_wait().ok().flatten().is_none() {
            let _ = self.shim.kill();
            let _ = self.shim.wait();
        }
        // Whatever the fake runtime started (by pid: their command lines name our directory).
        let dir = self.dir.display().to_string();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&dir) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_duration(Duration::from_secs(20))
}

fn setup(tag: &str) -> (Fixture, TaskClient) {
    let dir = std::env::temp_dir().join(format!("berth-shim-proto-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bundle")).unwrap();
    let rt = dir.join("fake-runtime");
    std::fs::write(&rt, FAKE_RUNTIME).unwrap();
    std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev_sock = dir.join("events.sock");
    let mut server = ttrpc::Server::new()
        .bind(&format!("unix://{}", ev_sock.display()))
        .unwrap()
        .register_service(containerd_shim_protos::create_events(Arc::new(Recorder(
            events.clone(),
        ))));
    server.start().unwrap();
    let sock = dir.join("shim.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_containerd-shim-berth-v2"));
    cmd.args([
        "-namespace",
        "protons",
        "-id",
        "c1",
        "-address",
        "/nonexistent",
    ])
    .current_dir(dir.join("bundle"))
    .env("TTRPC_ADDRESS", &ev_sock)
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    // BERTH_SHIM_TEST_DEBUG=1: the shim's debug log on the test's stderr.
    if std::env::var_os("BERTH_SHIM_TEST_DEBUG").is_some() {
        cmd.env("BERTH_SHIM_LOG_STDERR", "1")
            .env("BERTH_SHIM_DEBUG", "1");
    } else {
        cmd.stderr(Stdio::null());
    }
    // SAFETY: dup2 between fork and exec, nothing else.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear the flag instead.
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let shim = cmd.spawn().unwrap();
    drop(listener);
    let client =
        TaskClient::new(ttrpc::Client::connect(&format!("unix://{}", sock.display())).unwrap());
    (
        Fixture {
            dir,
            shim,
            events,
            _server: server,
        },
        client,
    )
}

fn options(dir: &Path) -> MessageField<Any> {
    let mut o = Options::new();
    o.binary_name = dir.join("fake-runtime").display().to_string();
    o.root = dir.join("root").display().to_string();
    let mut a = Any::new();
    a.type_url = "containerd.runc.v1.Options".into();
    a.value = o.write_to_bytes().unwrap();
    MessageField::some(a)
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

fn code(e: ttrpc::Error) -> ttrpc::Code {
    match e {
        ttrpc::Error::RpcStatus(s) => s.code(),
        other => panic!("not a status: {other:?}"),
    }
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn lifecycle_stdio_events_and_errors() {
    let (mut fx, client) = setup("life");
    let bundle = fx.dir.join("bundle");
    let (stdin, stdout, stderr) = (fx.dir.join("in"), fx.dir.join("out"), fx.dir.join("err"));
    for f in [&stdin, &stdout, &stderr] {
        mkfifo(f);
    }
    // Readers first, as containerd's client opens them.
    let mut out_r = std::fs::File::options()
        .read(true)
        .custom_flags_nonblock()
        .open(&stdout)
        .unwrap();
    let mut err_r = std::fs::File::options()
        .read(true)
        .custom_flags_nonblock()
        .open(&stderr)
        .unwrap();

    let mut req = StateRequest::new();
    req.id = "nope".into();
    assert_eq!(
        code(client.state(ctx(), &req).unwrap_err()),
        ttrpc::Code::NOT_FOUND
    );

    let mut c = CreateTaskRequest::new();
    c.id = "c1".into();
    c.bundle = bundle.display().to_string();
    c.stdin = stdin.display().to_string();
    c.stdout = stdout.display().to_string();
    c.stderr = stderr.display().to_string();
    c.options = options(&fx.dir);
    let created = client.create(ctx(), &c).unwrap();
    assert!(created.pid > 0);
    assert_eq!(
        code(client.create(ctx(), &c).unwrap_err()),
        ttrpc::Code::ALREADY_EXISTS
    );

    let mut st = StateRequest::new();
    st.id = "c1".into();
    let s = client.state(ctx(), &st).unwrap();
    assert_eq!(
        (s.pid, s.status.enum_value().unwrap()),
        (created.pid, Status::CREATED)
    );

    // Wait blocks on its own stream while other calls go through on the same connection.
    let waiter = {
        let client = client.clone();
        std::thread::spawn(move || {
            let mut w = WaitRequest::new();
            w.id = "c1".into();
            client.wait(ttrpc::context::with_duration(Duration::from_secs(30)), &w)
        })
    };
    let mut start = StartRequest::new();
    start.id = "c1".into();
    assert_eq!(client.start(ctx(), &start).unwrap().pid, created.pid);
    assert_eq!(
        client
            .state(ctx(), &st)
            .unwrap()
            .status
            .enum_value()
            .unwrap(),
        Status::RUNNING
    );

    let mut pids = PidsRequest::new();
    pids.id = "c1".into();
    let p = client.pids(ctx(), &pids).unwrap();
    assert_eq!(
        p.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
        vec![created.pid]
    );

    let mut up = UpdateTaskRequest::new();
    up.id = "c1".into();
    let mut res = Any::new();
    res.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
    res.value = br#"{"pids":{"limit":10}}"#.to_vec();
    up.resources = MessageField::some(res);
    client.update(ctx(), &up).unwrap();
    assert_eq!(
        std::fs::read_to_string(fx.dir.join("root/protons/c1/update.json")).unwrap(),
        r#"{"pids":{"limit":10}}"#
    );

    // Checkpoint: containerd always names the image directory; the container keeps running
    // (no Exit in the options), CRIU's work directory is in the bundle.
    let mut ck = CheckpointTaskRequest::new();
    ck.id = "c1".into();
    assert_eq!(
        code(client.checkpoint(ctx(), &ck).unwrap_err()),
        ttrpc::Code::INVALID_ARGUMENT
    );
    ck.path = "/ck-image".into();
    client.checkpoint(ctx(), &ck).unwrap();
    let args = std::fs::read_to_string(fx.dir.join("root/protons/c1/checkpoint.args")).unwrap();
    assert!(
        args.starts_with("--image-path /ck-image --work-path ")
            && args.trim_end().ends_with("/criu-work --leave-running c1"),
        "checkpoint's words: {args:?}"
    );

    // Deleting a running task is refused.
    let mut del = DeleteRequest::new();
    del.id = "c1".into();
    assert_eq!(
        code(client.delete(ctx(), &del).unwrap_err()),
        ttrpc::Code::FAILED_PRECONDITION
    );

    // stdin: one line, then containerd's writer closes: EOF for the container.
    {
        let mut w = std::fs::File::options().write(true).open(&stdin).unwrap();
        std::io::Write::write_all(&mut w, b"hello\n").unwrap();
    }

    let waited = waiter.join().unwrap().unwrap();
    assert_eq!(waited.exit_status, 7);
    assert!(waited.exited_at.seconds > 0);
    let s = client.state(ctx(), &st).unwrap();
    assert_eq!(
        (s.status.enum_value().unwrap(), s.exit_status),
        (Status::STOPPED, 7)
    );

    let mut k = KillRequest::new();
    k.id = "c1".into();
    k.signal = 9;
    assert_eq!(
        code(client.kill(ctx(), &k).unwrap_err()),
        ttrpc::Code::NOT_FOUND
    );

    let d = client.delete(ctx(), &del).unwrap();
    assert_eq!((d.pid, d.exit_status), (created.pid, 7));

    let mut got_out = String::new();
    let mut got_err = String::new();
    assert!(wait_for(|| {
        let mut b = [0u8; 256];
        if let Ok(n) = out_r.read(&mut b) {
            got_out.push_str(&String::from_utf8_lossy(&b[..n]));
        }
        if let Ok(n) = err_r.read(&mut b) {
            got_err.push_str(&String::from_utf8_lossy(&b[..n]));
        }
        got_out.contains('\n') && got_err.contains('\n')
    }));
    assert_eq!(got_out, "out-from-init\n");
    assert_eq!(got_err, "got hello\n");

    assert!(wait_for(|| fx.events.lock().unwrap().len() >= 4));
    let topics = fx.events.lock().unwrap().clone();
    assert_eq!(
        topics,
        vec![
            "protons /tasks/create containerd.events.TaskCreate",
            "protons /tasks/start containerd.events.TaskStart",
            "protons /tasks/exit containerd.events.TaskExit",
            "protons /tasks/delete containerd.events.TaskDelete",
        ]
    );

    let mut cr = ConnectRequest::new();
    cr.id = "c1".into();
    assert_eq!(client.connect(ctx(), &cr).unwrap().shim_pid, fx.shim.id());
    client.shutdown(ctx(), &ShutdownRequest::new()).unwrap();
    assert!(
        wait_for(|| fx.shim.try_wait().ok().flatten().is_some()),
        "the shim did not exit after Shutdown"
    );
}

#[test]
fn exec_kill_of_created_init_null_io() {
    let (mut fx, client) = setup("exec");
    let bundle = fx.dir.join("bundle");
    let mut c = CreateTaskRequest::new();
    c.id = "c1".into();
    c.bundle = bundle.display().to_string();
    c.options = options(&fx.dir);
    let created = client.create(ctx(), &c).unwrap();

    // An exec: added, started, waited (its own exit status), deleted; its output to a fifo.
    let out = fx.dir.join("exec-out");
    mkfifo(&out);
    let mut out_r = std::fs::File::options()
        .read(true)
        .custom_flags_nonblock()
        .open(&out)
        .unwrap();
    let mut e = ExecProcessRequest::new();
    e.id = "c1".into();
    e.exec_id = "e1".into();
    e.stdout = out.display().to_string();
    let mut spec = Any::new();
    spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    spec.value = br#"{"args":["echo","hi"],"cwd":"/"}"#.to_vec();
    e.spec = MessageField::some(spec);
    client.exec(ctx(), &e).unwrap();
    assert_eq!(
        code(client.exec(ctx(), &e).unwrap_err()),
        ttrpc::Code::ALREADY_EXISTS
    );
    let mut s = StartRequest::new();
    s.id = "c1".into();
    s.exec_id = "e1".into();
    let epid = client.start(ctx(), &s).unwrap().pid;
    assert!(epid > 0 && epid != created.pid);
    let mut w = WaitRequest::new();
    w.id = "c1".into();
    w.exec_id = "e1".into();
    assert_eq!(client.wait(ctx(), &w).unwrap().exit_status, 3);
    let mut got = String::new();
    assert!(wait_for(|| {
        let mut b = [0u8; 64];
        if let Ok(n) = out_r.read(&mut b) {
            got.push_str(&String::from_utf8_lossy(&b[..n]));
        }
        got.contains('\n')
    }));
    assert_eq!(got, "exec-out\n");
    let mut k = KillRequest::new();
    k.id = "c1".into();
    k.exec_id = "e1".into();
    k.signal = 9;
    assert_eq!(
        code(client.kill(ctx(), &k).unwrap_err()),
        ttrpc::Code::NOT_FOUND
    );
    let mut d = DeleteRequest::new();
    d.id = "c1".into();
    d.exec_id = "e1".into();
    assert_eq!(client.delete(ctx(), &d).unwrap().exit_status, 3);

    // Kill of a created init goes to the runtime; the reaper reports the signal.
    let mut k = KillRequest::new();
    k.id = "c1".into();
    k.signal = 15;
    client.kill(ctx(), &k).unwrap();
    let mut w = WaitRequest::new();
    w.id = "c1".into();
    assert_eq!(client.wait(ctx(), &w).unwrap().exit_status, 128 + 15);

    // An exec of unknown exec id is NotFound; a duplicate exec id AlreadyExists.
    let mut st = StateRequest::new();
    st.id = "c1".into();
    st.exec_id = "nope".into();
    assert_eq!(
        code(client.state(ctx(), &st).unwrap_err()),
        ttrpc::Code::NOT_FOUND
    );

    let mut del = DeleteRequest::new();
    del.id = "c1".into();
    let d = client.delete(ctx(), &del).unwrap();
    assert_eq!((d.pid, d.exit_status), (created.pid, 143));
    assert!(wait_for(|| fx.events.lock().unwrap().len() >= 6));
    let topics: Vec<String> = fx
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.split(' ').nth(1).unwrap().to_string())
        .collect();
    let want = [
        "/tasks/create",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/exit",
        "/tasks/delete",
    ];
    assert_eq!(topics, want);
    client.shutdown(ctx(), &ShutdownRequest::new()).unwrap();
    assert!(wait_for(|| fx.shim.try_wait().ok().flatten().is_some()));
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NONBLOCK)
    }
}

#[test]
fn delete_of_a_created_task_answers_its_waiters() {
    let (mut fx, client) = setup("created");
    let mut c = CreateTaskRequest::new();
    c.id = "c1".into();
    c.bundle = fx.dir.join("bundle").display().to_string();
    c.options = options(&fx.dir);
    client.create(ctx(), &c).unwrap();
    let waiter = {
        let client = client.clone();
        std::thread::spawn(move || {
            let mut w = WaitRequest::new();
            w.id = "c1".into();
            client.wait(ttrpc::context::with_duration(Duration::from_secs(30)), &w)
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let mut del = DeleteRequest::new();
    del.id = "c1".into();
    client.delete(ctx(), &del).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap().exit_status, 137);
    client.shutdown(ctx(), &ShutdownRequest::new()).unwrap();
    assert!(wait_for(|| fx.shim.try_wait().ok().flatten().is_some()));
}

/// The client's reader connects after the process exited: the exit is announced once the
/// output got to it (so a client never gives up on its stdio before the bytes arrive).
#[test]
fn exit_is_announced_after_the_output_reached_a_late_reader() {
    let (mut fx, client) = setup("late");
    let out = fx.dir.join("out");
    mkfifo(&out);
    let mut c = CreateTaskRequest::new();
    c.id = "c1".into();
    c.bundle = fx.dir.join("bundle").display().to_string();
    c.stdout = out.display().to_string();
    c.options = options(&fx.dir);
    client.create(ctx(), &c).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let client = client.clone();
        std::thread::spawn(move || {
            let mut w = WaitRequest::new();
            w.id = "c1".into();
            let _ =
                tx.send(client.wait(ttrpc::context::with_duration(Duration::from_secs(30)), &w));
        });
    }
    let mut s = StartRequest::new();
    s.id = "c1".into();
    client.start(ctx(), &s).unwrap();
    // The process prints and exits at once (its stdin is /dev/null); nobody reads yet.
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "exit announced before the output was read"
    );
    let mut r = std::fs::File::options()
        .read(true)
        .custom_flags_nonblock()
        .open(&out)
        .unwrap();
    let waited = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no exit")
        .unwrap();
    assert_eq!(waited.exit_status, 7);
    let mut got = String::new();
    assert!(wait_for(|| {
        let mut b = [0u8; 64];
        if let Ok(n) = r.read(&mut b) {
            got.push_str(&String::from_utf8_lossy(&b[..n]));
        }
        got.contains('\n')
    }));
    assert_eq!(got, "out-from-init\n");
    let mut del = DeleteRequest::new();
    del.id = "c1".into();
    client.delete(ctx(), &del).unwrap();
    client.shutdown(ctx(), &ShutdownRequest::new()).unwrap();
    assert!(wait_for(|| fx.shim.try_wait().ok().flatten().is_some()));
}
