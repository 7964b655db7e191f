//! `berthctl push` killed (SIGKILL, by pid) half-way through a blob, then run again: the
//! second push asks for each blob and uploads only what the registry lacks. Debian's
//! docker-registry on 127.0.0.1 behind a proxy of the test's own that logs every request and
//! holds the layer's upload (reads part of its body, then nothing) until the push is killed.
//! Skipped without root, docker-registry or the fixture.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reg = Registry {
        child,
        addr: addr.clone(),
        _dir: dir,
    };
    let start = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    reg
}

/// One request the proxy saw: its answer (0: held) and the body bytes it read.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    status: u16,
    body: u64,
}

struct Proxy {
    addr: String,
    /// Hold upload bodies bigger than 4 KiB (the layer, not the config).
    hold: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        l.set_nonblocking(true).unwrap();
        let hold = Arc::new(AtomicBool::new(true));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, lg, st, up) = (
            hold.clone(),
            log.clone(),
            stop.clone(),
            upstream.to_string(),
        );
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
                match l.accept() {
                    Ok((s, _)) => {
                        let (h, lg, st, up) = (h.clone(), lg.clone(), st.clone(), up.clone());
                        std::thread::spawn(move || serve(s, &up, &h, &lg, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy {
            addr,
            hold,
            log,
            stop,
            handle: Some(handle),
        }
    }

    fn take_log(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One request per connection: forwarded (the Host header kept, so the registry's Locations
/// name the proxy), or held.
fn serve(
    s: TcpStream,
    upstream: &str,
    hold: &AtomicBool,
    log: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    let mut len = 0u64;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end().to_string();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        if k.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse().unwrap();
        }
        if !k.eq_ignore_ascii_case("connection") {
            headers.push(h);
        }
    }
    let seen = |status: u16, body: u64| {
        log.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            status,
            body,
        })
    };
    if path.contains("/blobs/uploads/") && len > 4096 && hold.load(Ordering::SeqCst) {
        let mut part = vec![0u8; 4096];
        let _ = r.read_exact(&mut part);
        seen(0, part.len() as u64);
        while !stop.load(Ordering::SeqCst) && hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    let mut body = vec![0u8; len as usize];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let mut up = TcpStream::connect(upstream).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for h in &headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes()).unwrap();
    up.write_all(&body).unwrap();
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    let status = String::from_utf8_lossy(&answer[..answer.len().min(20)])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    seen(status, len);
    let _ = w.write_all(&answer);
}

/// Bytes uploaded for blob `d` in `log`: the upload session its closing PUT names.
fn sent_for(log: &[Seen], d: &image::Digest) -> u64 {
    let q = format!("digest={}", d.as_str().replace(':', "%3A"));
    let session = |s: &Seen| s.path.split('?').next().unwrap().to_string();
    let Some(put) = log
        .iter()
        .find(|s| s.method == "PUT" && s.path.contains(&q))
    else {
        return 0;
    };
    log.iter()
        .filter(|s| session(s) == session(put))
        .map(|s| s.body)
        .sum()
}

#[test]
fn a_killed_push_repeated_uploads_only_what_is_missing() {
    if !Path::new("/usr/bin/docker-registry").exists() {
        eprintln!("skipped: docker-registry missing");
        return;
    }
    let Some(e) = env() else { return };
    e.import_busybox();
    let reg = start_registry();
    let proxy = Proxy::start(&reg.addr);
    let name = format!("{}/k/bb:1", proxy.addr);
    e.ok(&["tag", "busybox", &name]);
    let rec = e.store().image(&name).unwrap();
    let (config, layer) = (rec.config.clone(), rec.layers[0].clone());

    // The config goes up; the layer's upload is held; then the push is killed.
    let mut child = e
        .cmd(&["push", "--plain-http", &name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let log = proxy.log.lock().unwrap().clone();
        let held = log.iter().any(|s| s.status == 0);
        if held && sent_for(&log, &config) > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the push did not reach the layer: {log:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL, by its pid
    let status = child.wait().unwrap();
    assert!(!status.success());
    proxy.hold.store(false, Ordering::SeqCst);
    let first = proxy.take_log();
    // The layer was on its way (held), never committed.
    let q = format!("digest={}", layer.digest.as_str().replace(':', "%3A"));
    assert!(
        first.iter().any(|s| s.path.contains(&q) && s.status == 0)
            && !first.iter().any(|s| s.path.contains(&q) && s.status == 201),
        "{first:?}"
    );
    let ingest: Vec<_> = std::fs::read_dir(e.root.path().join("ingest"))
        .unwrap()
        .collect();
    assert!(ingest.is_empty(), "{ingest:?}");

    // Again: the config is there (asked for, not sent); the layer goes up whole.
    let o = e.run(&["push", "--plain-http", &name]);
    let (out, err) = (stdout(&o), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        err.contains(&format!("{}: layer already exists", config.short()))
            && err.contains(&format!("{}: pushed", layer.digest.short())),
        "{err}"
    );
    assert!(
        out.contains(&format!("1: digest: {}", rec.manifest)),
        "{out}"
    );
    let second = proxy.take_log();
    assert_eq!(sent_for(&second, &config), 0, "{second:?}");
    assert_eq!(sent_for(&second, &layer.digest), layer.size, "{second:?}");

    // What the registry holds pulls back as the same image.
    let other = e.root.path().join("other");
    let direct = format!("{}/k/bb:1", reg.addr);
    let o = Command::new(berthctl())
        .arg("--root")
        .arg(&other)
        .args(["pull", "--plain-http", "--no-unpack", &direct])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let back = image::Store::open(&other, None)
        .unwrap()
        .image(&direct)
        .unwrap();
    assert_eq!(back.manifest, rec.manifest);
}
