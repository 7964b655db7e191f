//! The short-lived commands containerd runs: `start` (fork the server, print its address) and
//! `delete` (clean up after a dead shim, print a DeleteResponse).
//!
//! `start`'s answer depends on the containerd that asks. containerd 1.6 takes stdout as the
//! address itself (JSON would be dialed as a path). 1.7 parses JSON `{"version":2,...}` but
//! refuses a version above 2. 2.x parses `BootstrapResult` JSON up to version 3 and speaks
//! task API v3 (`containerd.task.v3.Task`) to a version 3 shim, v2 to a bare address. Since
//! 2.0/2.1 send the same environment as 1.7 (`MAX_SHIM_VERSION=2`, the shim API), the answer
//! is chosen by the containerd binary named by `-publish-binary` (see [`crate::buildinfo`]).

use crate::args::{self, Args};
use crate::options::RuntimeOpts;
use crate::runtime::{CallIo, Runtime};
use anyhow::{bail, Context, Result};
use containerd_shim_protos::api::DeleteResponse;
use protobuf::{Message, MessageField};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where containerd 1.6/1.7 keep shim sockets, whatever their state dir.
const SOCKET_DIR: &str = "/run/containerd/s";
/// Containers of one pod share a shim (the CRI plugin's annotation).
const SANDBOX_ANNOTATIONS: &[&str] = &[
    "io.kubernetes.cri.sandbox-id",
    "io.kubernetes.cri-o.SandboxID",
];

fn bundle_dir(a: &Args) -> Result<PathBuf> {
    match &a.bundle {
        Some(b) => Ok(b.clone()),
        None => std::env::current_dir().context("current directory"),
    }
}

/// The id a shim is shared by: the pod's sandbox id, else the container's id.
pub fn grouping_id(bundle: &Path, id: &str) -> String {
    let v: Option<serde_json::Value> = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    v.as_ref()
        .and_then(|v| v.get("annotations"))
        .and_then(|a| {
            SANDBOX_ANNOTATIONS
                .iter()
                .find_map(|k| a.get(*k).and_then(|s| s.as_str()))
        })
        .filter(|s| !s.is_empty())
        .unwrap_or(id)
        .to_string()
}

/// containerd's shim.SocketAddress: sha256 of "<address>/<namespace>/<id>" under /run/containerd/s.
pub fn socket_path(containerd_address: &str, namespace: &str, id: &str) -> PathBuf {
    let joined = format!(
        "{}/{namespace}/{id}",
        containerd_address.trim_end_matches('/')
    );
    let digest = Sha256::digest(joined.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Path::new(SOCKET_DIR).join(hex)
}

/// Whether a shim serves `sock`: a non-blocking connect is accepted into its backlog. A socket
/// nobody listens on refuses; one whose backlog is full (held open, but nobody accepts) would
/// block a plain connect forever, and counts as dead.
fn shim_listens(sock: &Path) -> bool {
    connect_nonblocking(sock).is_some()
}

/// A connection to `sock` if one is queued at once (see [`shim_listens`]).
fn connect_nonblocking(sock: &Path) -> Option<std::os::fd::OwnedFd> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    let addr = UnixAddr::new(sock).ok()?;
    connect(fd.as_raw_fd(), &addr).ok()?;
    Some(fd)
}

fn listen(path: &Path) -> Result<Option<UnixListener>> {
    std::fs::create_dir_all(SOCKET_DIR).with_context(|| format!("creating {SOCKET_DIR}"))?;
    match UnixListener::bind(path) {
        Ok(l) => {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
            Ok(Some(l))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if shim_listens(path) {
                return Ok(None); // a live shim of the same group
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
            Ok(Some(UnixListener::bind(path).with_context(|| {
                format!("listening on {}", path.display())
            })?))
        }
        Err(e) => Err(e).with_context(|| format!("listening on {}", path.display())),
    }
}

/// Environment override for the bootstrap answer (`2`: bare address, `3`: JSON version 3), for
/// a containerd whose binary does not say which it is (an embedding such as k3s): set it in
/// containerd's environment, which its shims inherit.
const BOOTSTRAP_ENV: &str = "BERTH_SHIM_BOOTSTRAP_VERSION";

/// The bootstrap version to answer containerd with: 3 for containerd 2.x, else 2 (the bare
/// address, which every containerd accepts: 2.x connects it over task API v2).
pub fn bootstrap_version(a: &Args) -> u32 {
    match std::env::var(BOOTSTRAP_ENV).as_deref() {
        Ok("3") => return 3,
        Ok("2") => return 2,
        _ => {}
    }
    if a.publish_binary.is_empty() {
        return 2;
    }
    let major = crate::buildinfo::modinfo(Path::new(&a.publish_binary))
        .as_deref()
        .and_then(crate::buildinfo::containerd_major);
    match major {
        Some(m) if m >= 2 => 3,
        _ => 2,
    }
}

/// What `start` prints: containerd 2.x's JSON BootstrapResult for version 3, else the bare
/// address.
pub fn start_response(address: &str, version: u32) -> String {
    if version >= 3 {
        serde_json::json!({"version": 3, "address": address, "protocol": "ttrpc"}).to_string()
    } else {
        address.to_string()
    }
}

pub fn start(a: &Args) -> Result<()> {
    if a.id.is_empty() || a.namespace.is_empty() {
        bail!("start needs -id and -namespace");
    }
    let bundle = bundle_dir(a)?;
    let group = grouping_id(&bundle, &a.id);
    let path = socket_path(&a.address, &a.namespace, &group);
    let address = format!("unix://{}", path.display());
    if let Some(listener) = listen(&path)? {
        let exe = std::env::current_exe().context("locating the shim binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(args::server_args(a))
            .current_dir(&bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match crate::sys::spawn_with_fds(&mut cmd, &[listener.as_fd()]) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e).context("starting the shim server");
            }
        };
        let _ = std::fs::write(bundle.join("shim.pid"), child.id().to_string());
        // As the runc shim: one point worse than containerd, so the OOM killer takes shims first.
        let ppid = nix::unistd::getppid();
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{ppid}/oom_score_adj")) {
            if let Ok(v) = s.trim().parse::<i32>() {
                let _ = std::fs::write(
                    format!("/proc/{}/oom_score_adj", child.id()),
                    (v + 1).min(1000).to_string(),
                );
            }
        }
    }
    // `address` stays the bare address for every containerd: 2.x reads it (as version 2) only
    // for a bundle without its own bootstrap.json, which it writes from our answer.
    std::fs::write(bundle.join("address"), &address).context("writing the address file")?;
    let mut out = std::io::stdout().lock();
    out.write_all(start_response(&address, bootstrap_version(a)).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Whether nobody serves `sock` any more: nobody accepts on it, or this bundle's shim was
/// still exiting and is gone now.
fn socket_is_stale(sock: &Path, bundle: &Path) -> bool {
    !shim_listens(sock) || dying_shim_gone(bundle) && !shim_listens(sock)
}

/// A SIGKILLed shim's connections can close (and containerd run `delete`) a moment before its
/// listener does: the kernel releases an exiting task's files one by one. When this bundle's
/// shim is exiting, wait for it to be gone (true) so the socket check sees the truth.
fn dying_shim_gone(bundle: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(bundle.join("shim.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
    else {
        return false;
    };
    exiting(pid) && wait_exit(pid, std::time::Duration::from_secs(2))
}

/// Whether `pid` has started to exit (PF_EXITING among its /proc/PID/stat flags).
fn exiting(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    libcontainer::procfs::stat(pid)
        .ok()
        .flatten()
        .is_some_and(|s| s.flags & PF_EXITING != 0)
}

/// Wait up to `timeout` for process `pid` to end: true when it is gone (or never was).
fn wait_exit(pid: i32, timeout: std::time::Duration) -> bool {
    match libcontainer::sys::pidfd_open(pid) {
        Err(e) => e.raw_os_error() == Some(libc::ESRCH),
        Ok(fd) => libcontainer::sys::pidfd_wait(fd.as_fd(), Some(timeout)).unwrap_or(false),
    }
}

pub fn delete(a: &Args) -> Result<()> {
    let bundle = bundle_dir(a)?;
    let opts = RuntimeOpts::load(&bundle);
    let rt = Runtime::new(
        opts.binary(),
        opts.root(&a.namespace),
        opts.systemd_cgroup,
        &bundle,
    );
    let pid = std::fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    // A dead shim's socket stays behind (containerd 1.6 does not remove it); a live one may
    // still serve other containers of the pod. First, while containerd's 5 s cleanup timeout is
    // far away.
    if !a.address.is_empty() {
        let sock = socket_path(&a.address, &a.namespace, &grouping_id(&bundle, &a.id));
        if sock.exists() && socket_is_stale(&sock, &bundle) {
            let _ = std::fs::remove_file(&sock);
        }
    }
    // Unmount before the runtime's delete: a runtime may wait for an init that only a lazy
    // PID 1 reaps (runc polls for up to 10 s), and the container keeps its own copy of the
    // mount in its namespace.
    let rootfs = bundle.join("rootfs");
    if crate::mounts::is_mountpoint(&rootfs) {
        if let Err(e) = crate::mounts::unmount_all(&rootfs) {
            eprintln!("containerd-shim-berth-v2: {e:#}");
        }
    }
    if let Err(e) = rt.call(&["delete", "--force", &a.id], CallIo::default()) {
        eprintln!("containerd-shim-berth-v2: {e}");
    }
    let mut resp = DeleteResponse::new();
    resp.pid = pid;
    resp.exit_status = 128 + libc::SIGKILL as u32;
    resp.exited_at = MessageField::some(crate::util::now());
    let mut out = std::io::stdout().lock();
    out.write_all(&resp.write_to_bytes()?)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not a test on its own: run by `a_dying_shims_socket_is_stale` in a process of its own
    /// (fork is safe there, no other test thread allocates). It listens on the path in
    /// BERTH_DYING_LISTENER from a child whose leader thread has exited (PF_EXITING) while a
    /// second thread keeps the fd table, and so the listener, for a second: what containerd's
    /// `delete` can meet right after a SIGKILLed shim's connections closed.
    #[test]
    fn dying_listener_helper() {
        let Some(path) = std::env::var_os("BERTH_DYING_LISTENER") else {
            return;
        };
        let l = UnixListener::bind(&path).unwrap();
        // SAFETY: this process runs only this test; the child uses only the listener, a
        // thread spawn and raw exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Parent { child } => println!("PID {child}"),
            nix::unistd::ForkResult::Child => {
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(1000));
                    drop(l);
                    // SAFETY: ends this last thread, and so the process.
                    unsafe { libc::syscall(libc::SYS_exit, 0) };
                });
                // SAFETY: ends only the leader thread; the one above keeps the process.
                unsafe { libc::syscall(libc::SYS_exit, 0) };
            }
        }
    }

    #[test]
    fn a_dying_shims_socket_is_stale() {
        let dir = std::env::temp_dir().join(format!("berth-shim-dying-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s");
        // Read up to the PID only: the dying child keeps the pipe open for its last second.
        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "bootstrap::tests::dying_listener_helper"])
            .args(["--nocapture", "--test-threads=1"])
            .env("BERTH_DYING_LISTENER", &sock)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = String::new();
        let mut pipe = helper.stdout.take().unwrap();
        let mut buf = [0u8; 256];
        while !stdout.contains("PID ") || !stdout.ends_with('\n') {
            let n = std::io::Read::read(&mut pipe, &mut buf).unwrap();
            assert!(n > 0, "helper said {stdout:?}");
            stdout.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        helper.wait().unwrap();
        let pid: i32 = stdout
            .split_once("PID ")
            .and_then(|(_, p)| p.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("helper said {stdout:?}"));
        std::fs::write(dir.join("shim.pid"), pid.to_string()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while !exiting(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(exiting(pid), "the helper's leader thread did not exit");
        assert!(shim_listens(&sock), "the dying helper should still accept");
        assert!(socket_is_stale(&sock, &dir));
        assert!(!shim_listens(&sock));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_live_process_is_not_exiting_and_an_ended_one_is_gone() {
        assert!(!exiting(std::process::id() as i32));
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(!wait_exit(pid, std::time::Duration::from_millis(50)));
        child.kill().unwrap();
        // Killed but not yet reaped: a pidfd is readable once it has exited.
        assert!(wait_exit(pid, std::time::Duration::from_secs(5)));
        child.wait().unwrap();
    }

    #[test]
    fn shim_listens_only_while_a_listener_takes_connections() {
        let dir = std::env::temp_dir().join(format!("berth-shim-listens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s");
        let l = UnixListener::bind(&sock).unwrap();
        assert!(shim_listens(&sock));
        drop(l); // the file stays, nobody listens: refused
        assert!(!shim_listens(&sock));
        assert!(!shim_listens(&dir.join("missing")));

        // Held open with a full backlog, nobody accepting: a plain connect would block.
        use nix::sys::socket::{
            bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
        };
        let full = dir.join("full");
        let l = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(l.as_raw_fd(), &UnixAddr::new(&full).unwrap()).unwrap();
        listen(&l, Backlog::new(0).unwrap()).unwrap();
        let mut queued = Vec::new();
        while let Some(c) = connect_nonblocking(&full) {
            queued.push(c);
            assert!(queued.len() < 16, "the backlog never filled");
        }
        assert!(!shim_listens(&full));
        drop(l);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn start_response_by_version() {
        assert_eq!(
            start_response("unix:///run/containerd/s/ab", 2),
            "unix:///run/containerd/s/ab"
        );
        let v: serde_json::Value =
            serde_json::from_str(&start_response("unix:///run/containerd/s/ab", 3)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"version": 3, "address": "unix:///run/containerd/s/ab", "protocol": "ttrpc"})
        );
    }

    #[test]
    fn bootstrap_version_by_publish_binary() {
        // Not a Go binary of containerd's: the bare address. (The env override is not set in
        // tests; setting it here would race other tests.)
        if std::env::var_os(BOOTSTRAP_ENV).is_some() {
            return;
        }
        let mut a = Args::default();
        assert_eq!(bootstrap_version(&a), 2);
        a.publish_binary = "/bin/sh".into();
        assert_eq!(bootstrap_version(&a), 2);
        a.publish_binary = "/nonexistent/containerd".into();
        assert_eq!(bootstrap_version(&a), 2);
        if Path::new("/usr/bin/containerd").is_file() {
            a.publish_binary = "/usr/bin/containerd".into(); // Debian 12's 1.6
            assert_eq!(bootstrap_version(&a), 2);
        }
        let c2 = std::env::var_os("BERTH_PEERS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/var/tmp/berth-peers".into())
            .join("containerd-2.1.9/root/usr/bin/containerd");
        if c2.is_file() {
            a.publish_binary = c2.display().to_string();
            assert_eq!(bootstrap_version(&a), 3);
        }
    }

    #[test]
    fn socket_address_is_containerds() {
        // containerd 1.6: sha256("/run/containerd/containerd.sock/default/abc")
        let p = socket_path("/run/containerd/containerd.sock", "default", "abc");
        let want = Sha256::digest(b"/run/containerd/containerd.sock/default/abc");
        let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(p, Path::new("/run/containerd/s").join(hex));
    }

    #[test]
    fn grouping_by_sandbox() {
        let d = std::env::temp_dir().join(format!("berth-shim-grp-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(grouping_id(&d, "c1"), "c1");
        std::fs::write(
            d.join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#,
        )
        .unwrap();
        assert_eq!(grouping_id(&d, "c1"), "pod1");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
