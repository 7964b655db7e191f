//! Pull from Debian's docker-registry (distribution 2.8) started by the test on 127.0.0.1,
//! anonymously and through a bearer-token front (a tiny proxy in this test that challenges,
//! hands out a token, and forwards to the registry). Skipped without root, the fixture tools, or
//! /usr/bin/docker-registry (apt-get install docker-registry).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::push::{push as push_image, PushOptions};
use image::registry::{pull, PullOptions};
use image::{Event, Progress, Store};

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

/// A free port (random: tests start registries in parallel).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_registry() -> Option<Registry> {
    start_registry_with("", &[])
}

/// A registry with `extra` YAML appended to its config (auth sections; `{dir}` is its
/// directory) and `files` written there first.
fn start_registry_with(extra: &str, files: &[(&str, String)]) -> Option<Registry> {
    if !Path::new("/usr/bin/docker-registry").exists() {
        eprintln!("skipped: /usr/bin/docker-registry missing (apt-get install docker-registry)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{}",
            dir.path().join("data").display(),
            extra.replace("{dir}", &dir.path().display().to_string())
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
    Some(reg)
}

fn push(layout: &Path, tag: &str, dest: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Counts blobs actually downloaded.
#[derive(Default)]
struct Count {
    fetched: AtomicUsize,
    cached: AtomicUsize,
    unpacked: AtomicUsize,
}

impl Progress for Count {
    fn event(&self, e: Event<'_>) {
        match e {
            Event::Fetched { cached: false, .. } => {
                self.fetched.fetch_add(1, Ordering::SeqCst);
            }
            Event::Fetched { cached: true, .. } => {
                self.cached.fetch_add(1, Ordering::SeqCst);
            }
            Event::Unpacked { cached: false, .. } => {
                self.unpacked.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

fn plain() -> PullOptions {
    PullOptions {
        plain_http: true,
        ..Default::default()
    }
}

#[test]
fn pull_fetches_only_missing_layers() {
    let f = match common::fixture() {
        Ok(f) => f,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let Some(reg) = start_registry() else { return };
    push(
        &f.layout,
        "busybox",
        &format!("{}/busybox:latest", reg.addr),
    );
    push(
        &f.layout,
        "layered",
        &format!("{}/test/layered:v1", reg.addr),
    );

    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path(), None).unwrap();
    let c = Count::default();
    let rec = pull(&store, &format!("{}/busybox", reg.addr), &plain(), &c).unwrap();
    assert_eq!(rec.name, format!("{}/busybox:latest", reg.addr));
    // manifest, config, 1 layer.
    assert_eq!(c.fetched.load(Ordering::SeqCst), 3);
    assert_eq!(c.cached.load(Ordering::SeqCst), 0);
    assert_eq!(c.unpacked.load(Ordering::SeqCst), 1);
    let top = rec.top_chain_id().unwrap();
    assert!(store.snapshots.fs_path(&top).join("bin/busybox").is_file());

    // Again: nothing to fetch or unpack.
    let c = Count::default();
    pull(
        &store,
        &format!("{}/busybox:latest", reg.addr),
        &plain(),
        &c,
    )
    .unwrap();
    assert_eq!(c.fetched.load(Ordering::SeqCst), 0);
    assert_eq!(c.unpacked.load(Ordering::SeqCst), 0);

    // layered shares its first layer: manifest, config, 2 layers fetched, 2 unpacked.
    let c = Count::default();
    let rec = pull(
        &store,
        &format!("{}/test/layered:v1", reg.addr),
        &plain(),
        &c,
    )
    .unwrap();
    assert_eq!(rec.layers.len(), 3);
    assert_eq!(c.fetched.load(Ordering::SeqCst), 4);
    assert_eq!(c.cached.load(Ordering::SeqCst), 1);
    assert_eq!(c.unpacked.load(Ordering::SeqCst), 2);

    // By digest, and errors for what does not exist.
    let by_digest = format!(
        "{}/busybox@{}",
        reg.addr,
        store
            .image(&format!("{}/busybox", reg.addr))
            .unwrap()
            .target
            .digest
    );
    pull(&store, &by_digest, &plain(), &Count::default()).unwrap();
    let err = pull(
        &store,
        &format!("{}/nosuch:latest", reg.addr),
        &plain(),
        &Count::default(),
    )
    .unwrap_err();
    assert!(matches!(err, image::Error::NotFound(_)), "{err}");

    // Through a bearer-token front.
    let front = TokenFront::start(&reg.addr);
    let t2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(t2.path(), None).unwrap();
    let rec = pull(
        &store2,
        &format!("{}/test/layered:v1", front.addr),
        &plain(),
        &Count::default(),
    )
    .unwrap();
    assert_eq!(rec.layers.len(), 3);
    assert!(front.tokens_issued.load(Ordering::SeqCst) >= 1);
    assert!(
        front.denied.load(Ordering::SeqCst) >= 1,
        "the first request was challenged"
    );
    front.stop();
}

/// A front that answers 401 with a Bearer challenge unless the request carries the token it
/// hands out at /token, and forwards authorized requests to the registry.
struct TokenFront {
    addr: String,
    tokens_issued: Arc<AtomicUsize>,
    denied: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl TokenFront {
    fn start(upstream: &str) -> TokenFront {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        l.set_nonblocking(true).unwrap();
        let tokens_issued = Arc::new(AtomicUsize::new(0));
        let denied = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (ti, de, st, up, me) = (
            tokens_issued.clone(),
            denied.clone(),
            stop.clone(),
            upstream.to_string(),
            addr.clone(),
        );
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
                match l.accept() {
                    Ok((s, _)) => {
                        let (ti, de, up, me) = (ti.clone(), de.clone(), up.clone(), me.clone());
                        std::thread::spawn(move || serve(s, &ti, &de, &up, &me));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenFront {
            addr,
            tokens_issued,
            denied,
            stop,
            handle: Mutex::new(Some(handle)),
        }
    }
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.lock().unwrap().take() {
            let _ = h.join();
        }
    }
}

fn serve(s: TcpStream, issued: &AtomicUsize, denied: &AtomicUsize, upstream: &str, me: &str) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            headers.push(h);
        }
        let auth = headers
            .iter()
            .find(|h| h.to_ascii_lowercase().starts_with("authorization:"))
            .map(|h| h[14..].trim().to_string());
        if path.starts_with("/token") {
            issued.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"token":"t0k3n"}"#;
            let _ = write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            continue;
        }
        if auth.as_deref() != Some("Bearer t0k3n") {
            denied.fetch_add(1, Ordering::SeqCst);
            let body = "{}";
            let _ = write!(
                w,
                "HTTP/1.1 401 Unauthorized\r\nWww-Authenticate: Bearer realm=\"http://{me}/token\",service=\"test\",scope=\"repository:test/layered:pull\"\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            continue;
        }
        // Forward to the registry (GET only), following its redirects itself.
        let mut req = ureq_get(&format!("http://{upstream}{path}"), &headers);
        let status = req.0;
        let _ = write!(w, "HTTP/1.1 {status} X\r\n");
        for (k, v) in &req.1 {
            let _ = write!(w, "{k}: {v}\r\n");
        }
        let _ = write!(w, "Content-Length: {}\r\n\r\n", req.2.len());
        let _ = w.write_all(&std::mem::take(&mut req.2));
    }
}

fn ureq_get(url: &str, headers: &[String]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    // A plain HTTP/1.0 client for the upstream registry: enough for GETs in a test.
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = TcpStream::connect(host).unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n");
    for h in headers {
        let l = h.to_ascii_lowercase();
        if l.starts_with("accept:") || l.starts_with("range:") {
            req.push_str(h);
            req.push_str("\r\n");
        }
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let body = all[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let hs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k == "content-type"
                || k == "docker-content-digest"
                || k == "location"
                || k == "content-range"
        })
        .collect();
    if (300..400).contains(&status) {
        let loc = hs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.clone())
            .unwrap();
        let loc = if loc.starts_with('/') {
            format!("http://{host}{loc}")
        } else {
            loc
        };
        return ureq_get(&loc, headers);
    }
    (status, hs, body)
}

/// A store with the fixture's images imported, and the fixture.
fn fixture_store() -> Option<(tempfile::TempDir, Store)> {
    let f = match common::fixture() {
        Ok(f) => f,
        Err(why) => {
            eprintln!("skipped: {why}");
            return None;
        }
    };
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path(), None).unwrap();
    for a in [&f.archive, &f.layered_archive] {
        image::import::import(&store, a, &Default::default(), &image::Quiet).unwrap();
    }
    Some((t, store))
}

/// The image `name` of `store` also named `as_name`.
fn tag(store: &Store, name: &str, as_name: &str) {
    let mut r = store.image(name).unwrap();
    r.name = image::Reference::parse(as_name).unwrap().to_string();
    store.save_image(&r).unwrap();
}

/// Push uploads what the registry lacks, skips what it has, mounts what another repository of
/// it holds; the manifest arrives byte for byte (the same digest comes back on pull).
#[test]
fn push_uploads_skips_and_mounts() {
    let Some((_t, store)) = fixture_store() else {
        return;
    };
    let Some(reg) = start_registry() else { return };
    let a = format!("{}/a/layered:v1", reg.addr);
    tag(&store, "layered", &a);
    let p = push_image(
        &store,
        &a,
        None,
        &plain(),
        &PushOptions::default(),
        &image::Quiet,
    )
    .unwrap();
    assert_eq!((p.uploaded, p.existed, p.mounted), (4, 0, 0));
    let rec = store.image(&a).unwrap();
    assert_eq!(p.digest.as_ref(), Some(&rec.manifest));
    // Again: all there.
    let p = push_image(
        &store,
        &a,
        None,
        &plain(),
        &PushOptions::default(),
        &image::Quiet,
    )
    .unwrap();
    assert_eq!((p.uploaded, p.existed, p.mounted), (0, 4, 0));
    // To another repository of the same registry: mounted from the first.
    let b = format!("{}/b/layered:v2", reg.addr);
    tag(&store, "layered", &b);
    let p = push_image(
        &store,
        &b,
        None,
        &plain(),
        &PushOptions::default(),
        &image::Quiet,
    )
    .unwrap();
    assert_eq!((p.uploaded, p.existed, p.mounted), (0, 0, 4));
    // What comes back is what went.
    let t2 = tempfile::tempdir().unwrap();
    let other = Store::open(t2.path(), None).unwrap();
    let back = pull(&other, &b, &plain(), &Count::default()).unwrap();
    assert_eq!(back.manifest, rec.manifest);
    assert_eq!(back.config, rec.config);
}

/// Big blobs go in PATCH chunks; a second image sharing a layer uploads only what is
/// missing (a repeated push after an interruption does the same: HEAD first).
#[test]
fn chunked_uploads_and_only_missing_blobs() {
    let Some((_t, store)) = fixture_store() else {
        return;
    };
    let Some(reg) = start_registry() else { return };
    let bb = format!("{}/c/busybox:1", reg.addr);
    // Pushed under a name no other local image has on this registry: nothing to mount from.
    let mut r = store.image("busybox").unwrap();
    r.name = image::Reference::parse(&bb).unwrap().to_string();
    let t3 = tempfile::tempdir().unwrap();
    let solo = Store::open(t3.path(), None).unwrap();
    for d in &r.blobs {
        solo.content.put(&store.content.read(d).unwrap()).unwrap();
    }
    solo.save_image(&r).unwrap();
    let opts = PushOptions {
        chunk_size: 64 * 1024,
        ..Default::default()
    };
    let p = push_image(&solo, &bb, None, &plain(), &opts, &image::Quiet).unwrap();
    assert_eq!((p.uploaded, p.existed), (2, 0));
    let t2 = tempfile::tempdir().unwrap();
    let other = Store::open(t2.path(), None).unwrap();
    let back = pull(&other, &bb, &plain(), &Count::default()).unwrap();
    assert_eq!(back.layers[0].digest, r.layers[0].digest);
    // layered shares busybox's layer: 2 layers and the config go up, 1 is there.
    let p = push_image(
        &store,
        "layered",
        Some(&format!("{}/c/busybox:2", reg.addr)),
        &plain(),
        &opts,
        &image::Quiet,
    )
    .unwrap();
    assert_eq!((p.uploaded, p.existed), (3, 1));
}

/// A registry behind htpasswd (basic auth): login and push need the right credentials, and
/// say so clearly when they are wrong or missing.
#[test]
fn basic_auth_login_and_push() {
    let Some((_t, store)) = fixture_store() else {
        return;
    };
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let extra = "auth:\n  htpasswd:\n    realm: test\n    path: {dir}/htpasswd\n";
    let Some(reg) = start_registry_with(extra, &[("htpasswd", format!("alice:{hash}\n"))]) else {
        return;
    };
    let name = format!("{}/private/bb:1", reg.addr);
    tag(&store, "busybox", &name);
    let with = |u: &str, p: &str| PullOptions {
        credentials: Some((u.into(), p.into())),
        ..plain()
    };
    let err = push_image(
        &store,
        &name,
        None,
        &plain(),
        &PushOptions::default(),
        &image::Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&reg.addr)
            && err.contains("authentication required")
            && err.contains("user and password"),
        "{err}"
    );
    // A wrong password: the registry's 401 and its message, and whose credentials it refused.
    let err = push_image(
        &store,
        &name,
        None,
        &with("alice", "wrong"),
        &PushOptions::default(),
        &image::Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("access denied by {} (401 Unauthorized)", reg.addr))
            && err.contains("authentication required")
            && err.contains("the user and password of alice were refused"),
        "{err}"
    );
    let host = reg.addr.clone();
    let err = image::registry::login(&host, &with("alice", "wrong"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("incorrect username or password"), "{err}");
    image::registry::login(&host, &with("alice", "s3cret")).unwrap();
    let p = push_image(
        &store,
        &name,
        None,
        &with("alice", "s3cret"),
        &PushOptions::default(),
        &image::Quiet,
    )
    .unwrap();
    assert_eq!(p.uploaded, 2);
    let t2 = tempfile::tempdir().unwrap();
    let other = Store::open(t2.path(), None).unwrap();
    assert!(pull(&other, &name, &plain(), &Count::default()).is_err());
    pull(&other, &name, &with("alice", "s3cret"), &Count::default()).unwrap();
}

// ---- push through a bearer-token service, interrupted pushes, stalled uploads ----

fn b64(data: &[u8], url: bool) -> String {
    let t: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(t[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if !url {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for c in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &b) in c.iter().enumerate() {
            n |= (val(b) as u32) << (18 - 6 * i);
        }
        for i in 0..c.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!("openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => false,
    }
}

/// One request to the token service: who asked (None: no credentials) and for which scopes
/// (one per `scope` parameter, as the token spec has them).
#[derive(Clone, Debug)]
struct TokenRequest {
    user: Option<String>,
    scopes: Vec<String>,
}

/// A token service as distribution's `auth: token:` expects one: RS256 JWTs whose `x5c` is a
/// certificate in the registry's `rootcertbundle`. alice may pull and push, bob only pull,
/// anyone else gets a token granting nothing (as Docker Hub answers for a repository one may
/// not touch); a wrong password is a 401 with Docker Hub's message.
struct TokenServer {
    addr: String,
    /// The certificate (PEM) for the registry's rootcertbundle.
    cert_pem: String,
    log: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

const TOKEN_SERVICE: &str = "berth-test-registry";
const TOKEN_ISSUER: &str = "berth-test-issuer";

impl TokenServer {
    fn start() -> Option<TokenServer> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        if !openssl(d, &["version"]) {
            eprintln!("skipped: openssl missing");
            return None;
        }
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "2",
                "-subj",
                "/CN=berth test token issuer",
            ],
        );
        openssl(
            d,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out",
                "key.der",
            ],
        );
        openssl(
            d,
            &[
                "x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der",
            ],
        );
        let key =
            ring::signature::RsaKeyPair::from_pkcs8(&std::fs::read(d.join("key.der")).unwrap())
                .unwrap();
        let cert_der = std::fs::read(d.join("cert.der")).unwrap();
        let cert_pem = std::fs::read_to_string(d.join("cert.pem")).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        l.set_nonblocking(true).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let key = Arc::new(key);
        let x5c = b64(&cert_der, false);
        let (lg, st) = (log.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
                match l.accept() {
                    Ok((s, _)) => {
                        let (lg, key, x5c) = (lg.clone(), key.clone(), x5c.clone());
                        std::thread::spawn(move || serve_token(s, &lg, &key, &x5c));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Some(TokenServer {
            addr,
            cert_pem,
            log,
            stop,
            handle: Some(handle),
            _dir: dir,
        })
    }

    /// The registry's `auth:` section for this service.
    fn registry_auth(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {{dir}}/token.crt\n",
            self.addr
        )
    }

    fn take_log(&self) -> Vec<TokenRequest> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve_token(
    s: TcpStream,
    log: &Mutex<Vec<TokenRequest>>,
    key: &ring::signature::RsaKeyPair,
    x5c: &str,
) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut auth = None;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("authorization") {
                    auth = Some(v.trim().to_string());
                }
            }
        }
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let mut scopes = Vec::new();
        let mut service = String::new();
        for kv in query.split('&') {
            match kv.split_once('=') {
                Some(("scope", v)) => scopes.push(percent_decode(v)),
                Some(("service", v)) => service = percent_decode(v),
                _ => {}
            }
        }
        let basic = auth
            .as_deref()
            .and_then(|a| a.strip_prefix("Basic "))
            .map(|b| String::from_utf8(b64_decode(b)).unwrap());
        let (user, password) = match basic.as_deref().and_then(|b| b.split_once(':')) {
            Some((u, p)) => (Some(u.to_string()), p.to_string()),
            None => (None, String::new()),
        };
        log.lock().unwrap().push(TokenRequest {
            user: user.clone(),
            scopes: scopes.clone(),
        });
        let allowed: &[&str] = match (user.as_deref(), password.as_str()) {
            (Some("alice"), "s3cret") => &["pull", "push"],
            (Some("bob"), "b0b") => &["pull"],
            (None, _) => &[],
            _ => {
                let body = r#"{"details":"incorrect username or password"}"#;
                let _ = write!(
                    w,
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                continue;
            }
        };
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|sc| {
                let (kind, rest) = sc.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                let granted: Vec<&str> =
                    actions.split(',').filter(|a| allowed.contains(a)).collect();
                Some(serde_json::json!({"type": kind, "name": name, "actions": granted}))
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER, "sub": user.clone().unwrap_or_default(), "aud": service,
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", scopes.len()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes(), true),
            b64(claims.to_string().as_bytes(), true)
        );
        let mut sig = vec![0u8; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        let token = format!("{signing_input}.{}", b64(&sig, true));
        let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300})
            .to_string();
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}

/// Issue 12: push to a registry that wants bearer tokens (distribution with `auth: token:`).
/// The token is asked for `repository:NAME:pull,push` with the user's basic credentials (as
/// containerd asks, remotes/docker/scope.go), a cross-repository mount also for
/// `repository:FROM:pull`, each scope a parameter of its own; without credentials, with a
/// token for pulling only, and with a wrong password the error says who refused what, and why.
#[test]
fn bearer_token_push() {
    let Some((_t, store)) = fixture_store() else {
        return;
    };
    let Some(tokens) = TokenServer::start() else {
        return;
    };
    let Some(reg) = start_registry_with(
        &tokens.registry_auth(),
        &[("token.crt", tokens.cert_pem.clone())],
    ) else {
        return;
    };
    let name = format!("{}/bt/img:1", reg.addr);
    tag(&store, "busybox", &name);
    let with = |u: &str, p: &str| PullOptions {
        credentials: Some((u.into(), p.into())),
        ..plain()
    };
    let push_as = |opts: &PullOptions, dest: &str| {
        push_image(
            &store,
            "busybox",
            Some(dest),
            opts,
            &PushOptions::default(),
            &image::Quiet,
        )
    };

    // No credentials: a token that grants nothing, and the registry's refusal.
    let err = push_as(&plain(), &name).unwrap_err().to_string();
    assert!(
        err.contains(&format!("access denied by {}", reg.addr))
            && err.contains("authentication required")
            && err.contains("no credentials were given"),
        "{err}"
    );
    let log = tokens.take_log();
    assert!(log.iter().all(|r| r.user.is_none()), "{log:?}");

    // A wrong password: the token service's answer.
    let err = push_as(&with("alice", "nope"), &name)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("http://{}/token", tokens.addr))
            && err.contains("401")
            && err.contains("incorrect username or password")
            && err.contains("as alice"),
        "{err}"
    );
    tokens.take_log();

    // bob may only pull: the registry refuses the upload.
    let err = push_as(&with("bob", "b0b"), &name).unwrap_err().to_string();
    assert!(
        err.contains(&format!("access denied by {}", reg.addr))
            && err.contains("insufficient_scope")
            && err.contains("repository:bt/img:pull,push"),
        "{err}"
    );
    let log = tokens.take_log();
    assert!(
        log.iter().any(
            |r| r.user.as_deref() == Some("bob") && r.scopes == ["repository:bt/img:pull,push"]
        ),
        "{log:?}"
    );

    // alice: every token request asks for pulling and pushing, with her credentials.
    let p = push_as(&with("alice", "s3cret"), &name).unwrap();
    assert_eq!((p.uploaded, p.existed, p.mounted), (2, 0, 0));
    let log = tokens.take_log();
    assert!(!log.is_empty());
    for r in &log {
        assert_eq!(r.user.as_deref(), Some("alice"), "{log:?}");
        assert_eq!(r.scopes, ["repository:bt/img:pull,push"], "{log:?}");
    }

    // To another repository: mounted from bt/img, the token also for pulling from there.
    let other = format!("{}/bt/other:1", reg.addr);
    let p = push_as(&with("alice", "s3cret"), &other).unwrap();
    assert_eq!((p.uploaded, p.existed, p.mounted), (0, 0, 2));
    let log = tokens.take_log();
    assert!(
        log.iter()
            .any(|r| r.scopes == ["repository:bt/img:pull", "repository:bt/other:pull,push"]),
        "{log:?}"
    );

    // Pulled back with the token: the same manifest; anonymous pulls are refused.
    let t2 = tempfile::tempdir().unwrap();
    let back_store = Store::open(t2.path(), None).unwrap();
    let err = pull(&back_store, &name, &plain(), &Count::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("access denied") && err.contains("no credentials"),
        "{err}"
    );
    let back = pull(&back_store, &name, &with("bob", "b0b"), &Count::default()).unwrap();
    assert_eq!(back.manifest, store.image(&name).unwrap().manifest);
    // login against the token service (no repository scope asked for).
    tokens.take_log();
    image::registry::login(&reg.addr, &with("alice", "s3cret")).unwrap();
    let err = image::registry::login(&reg.addr, &with("alice", "nope"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("incorrect username or password"), "{err}");
    let log = tokens.take_log();
    assert!(
        log.len() >= 2 && log.iter().all(|r| r.scopes.is_empty()),
        "{log:?}"
    );
}

/// What the cutting proxy saw: one request, its answer (0: cut or stalled by the proxy) and
/// the body bytes it read.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    status: u16,
    body: u64,
}

const FORWARD: u8 = 0;
/// Once a blob upload is committed, every later upload request is cut half-way through its
/// body (the connection closed): the first chunk of the next blob has reached the registry.
const CUT: u8 = 1;
/// Every upload body: read up to 64 KiB, then nothing more is read (the connection held open).
const STALL: u8 = 2;

/// A proxy in front of a registry that forwards every request (one per connection) and logs
/// it, and can break uploads (`CUT`, `STALL`).
struct Cutter {
    addr: String,
    mode: Arc<std::sync::atomic::AtomicU8>,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Cutter {
    fn start(upstream: &str, mode: u8, small_receive_buffer: bool) -> Cutter {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        if small_receive_buffer {
            // Accepted sockets inherit it: a stalled upload fills the sender's buffers quickly.
            use std::os::fd::AsRawFd;
            let v: libc::c_int = 4096;
            let r = unsafe {
                libc::setsockopt(
                    l.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    &v as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0);
        }
        let addr = l.local_addr().unwrap().to_string();
        l.set_nonblocking(true).unwrap();
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(mode));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicUsize::new(0));
        let (m, lg, st, up) = (
            mode.clone(),
            log.clone(),
            stop.clone(),
            upstream.to_string(),
        );
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
                match l.accept() {
                    Ok((s, _)) => {
                        let (m, lg, st, up, c) = (
                            m.clone(),
                            lg.clone(),
                            st.clone(),
                            up.clone(),
                            committed.clone(),
                        );
                        std::thread::spawn(move || cut_serve(s, &up, &m, &lg, &st, &c));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Cutter {
            addr,
            mode,
            log,
            stop,
            handle: Some(handle),
        }
    }

    fn take_log(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn cut_serve(
    s: TcpStream,
    upstream: &str,
    mode: &std::sync::atomic::AtomicU8,
    log: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
    committed: &AtomicUsize,
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
    let mut range_start = 0u64;
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
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "content-length" {
            len = v.parse().unwrap();
        }
        if k == "content-range" {
            range_start = v.split('-').next().unwrap().parse().unwrap_or(0);
        }
        if k != "connection" {
            headers.push(h);
        }
    }
    let upload = path.contains("/blobs/uploads/") && len > 0;
    let m = mode.load(Ordering::SeqCst);
    let seen = |status: u16, body: u64| {
        log.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            status,
            body,
        })
    };
    if upload && m == CUT && committed.load(Ordering::SeqCst) >= 1 && range_start > 0 {
        let mut half = vec![0u8; (len / 2) as usize];
        let _ = r.read_exact(&mut half);
        seen(0, half.len() as u64);
        let _ = w.shutdown(std::net::Shutdown::Both);
        return;
    }
    if upload && m == STALL {
        let mut part = vec![0u8; len.min(64 << 10) as usize];
        let _ = r.read_exact(&mut part);
        seen(0, part.len() as u64);
        let until = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    }
    let mut body = vec![0u8; len as usize];
    if r.read_exact(&mut body).is_err() {
        seen(0, 0);
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
    let status: u16 = String::from_utf8_lossy(&answer[..answer.len().min(20)])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if method == "PUT" && path.contains("digest=") && status == 201 {
        committed.fetch_add(1, Ordering::SeqCst);
    }
    seen(status, len);
    let _ = w.write_all(&answer);
}

/// Incompressible bytes (xorshift), so a layer's blob is about as big as its file.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An image named `name` of layers of `sizes` bytes of noise each.
fn noise_image(store: &Store, name: &str, sizes: &[usize]) -> image::ImageRecord {
    use image::commit::{write_image, Format, NewImage};
    let mut layers = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(format!("f{i}")), noise(*n, 7 + i as u64)).unwrap();
        let l = image::diff::write_layer(&store.content, d.path(), &Default::default()).unwrap();
        layers.push(l.record);
    }
    write_image(
        store,
        NewImage {
            names: &[name.to_string()],
            base_config: None,
            layers,
            history: vec![],
            config: serde_json::Map::new(),
            created: "2026-12-07T00:00:00Z".into(),
            format: Format::Oci,
        },
    )
    .unwrap()
}

/// Every file under `dir`, relative.
fn files_under(dir: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

/// Collects push progress.
#[derive(Default)]
struct PushEvents(Mutex<Vec<(String, u64, u64)>>);

impl Progress for PushEvents {
    fn event(&self, e: Event<'_>) {
        if let Event::Pushing {
            digest,
            done,
            total,
        } = e
        {
            self.0
                .lock()
                .unwrap()
                .push((digest.to_string(), done, total));
        }
    }
}

/// Issue 12: a push really interrupted half-way through a blob (the connection closed after
/// the first blob is committed and the next one's first chunk went up) fails with an error
/// that names the blob, the repository, the attempts and the cause, and leaves nothing in the
/// store; pushed again, the registry is asked for each blob and only what it lacks goes up:
/// the committed blob is not sent again, the half-sent one is sent whole, and the image pulls
/// back with the same manifest digest. Progress goes with the bytes sent.
#[test]
fn an_interrupted_push_repeated_sends_only_what_is_missing() {
    let Some(reg) = start_registry() else { return };
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path(), None).unwrap();
    let cut = Cutter::start(&reg.addr, CUT, false);
    let name = format!("{}/int/img:1", cut.addr);
    let rec = noise_image(&store, &name, &[100 << 10, 300 << 10, 3 << 20]);
    let (l0, l1) = (&rec.layers[0], &rec.layers[1]);
    // `lock` is the store's lock file (the layout's, kept).
    let mut before = files_under(t.path());
    before.insert("lock".into());
    // One blob at a time, in 64 KiB chunks: l0 goes up whole, l1's second chunk is cut.
    let serial = PullOptions {
        parallel: 1,
        ..plain()
    };
    let chunks = PushOptions {
        chunk_size: 64 << 10,
        ..Default::default()
    };
    let err = push_image(&store, &name, None, &serial, &chunks, &image::Quiet)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("push of blob {}", l1.digest))
            && err.contains(&format!("to {}/int/img", cut.addr))
            && err.contains("after 3 attempts")
            && err.contains(&format!("sending bytes 65536..=131071 of {}", l1.size))
            && err.contains("PATCH http://")
            && err.contains("Peer disconnected"),
        "{err}"
    );
    assert_eq!(files_under(t.path()), before, "nothing left in the store");
    let first = cut.take_log();
    assert_eq!(
        first.iter().filter(|s| s.status == 0).count(),
        3,
        "three attempts, each cut: {first:?}"
    );

    // Again, nothing cut: l0 is there (HEAD 200) and not sent; l1 goes up whole.
    cut.mode.store(FORWARD, Ordering::SeqCst);
    let events = PushEvents::default();
    let p = push_image(
        &store,
        &name,
        None,
        &plain(),
        &PushOptions::default(),
        &events,
    )
    .unwrap();
    assert_eq!((p.uploaded, p.existed, p.mounted), (3, 1, 0));
    let second = cut.take_log();
    assert!(second.iter().all(|s| s.status != 0), "{second:?}");
    let head_l0 = format!("/blobs/{}", l0.digest);
    assert!(
        second
            .iter()
            .any(|s| s.method == "HEAD" && s.path.ends_with(&head_l0) && s.status == 200),
        "{second:?}"
    );
    // Bytes sent per blob, by the upload session its closing PUT names.
    let session = |s: &Seen| s.path.split('?').next().unwrap().to_string();
    let sent_for = |d: &image::Digest| -> u64 {
        let q = format!("digest={}", d.as_str().replace(':', "%3A"));
        let Some(put) = second
            .iter()
            .find(|s| s.method == "PUT" && s.path.contains(&q))
        else {
            return 0;
        };
        second
            .iter()
            .filter(|s| session(s) == session(put) && s.path.contains("/blobs/uploads/"))
            .map(|s| s.body)
            .sum()
    };
    assert_eq!(sent_for(&l0.digest), 0, "{second:?}");
    assert_eq!(sent_for(&l1.digest), l1.size, "{second:?}");
    let uploaded: u64 = second
        .iter()
        .filter(|s| s.path.contains("/blobs/uploads/"))
        .map(|s| s.body)
        .sum();
    let cfg_size = store.content.size(&rec.config).unwrap();
    assert_eq!(uploaded, l1.size + rec.layers[2].size + cfg_size);
    // The 3 MiB layer went up in one PUT, reported while it went.
    let big = rec.layers[2].digest.to_string();
    let ev = events.0.lock().unwrap().clone();
    let between = ev
        .iter()
        .filter(|(d, done, total)| *d == big && *done > 0 && done < total)
        .count();
    assert!(between >= 2, "{ev:?}");

    let t2 = tempfile::tempdir().unwrap();
    let other = Store::open(t2.path(), None).unwrap();
    let back = pull(&other, &name, &plain(), &Count::default()).unwrap();
    assert_eq!(back.manifest, rec.manifest);
}

/// A registry that stops reading an upload (the connection open, nothing taken) fails the
/// push after the stall timeout instead of hanging it: a 12 MiB blob does not fit in the
/// socket buffers, so the write itself blocks.
#[test]
fn a_registry_that_stops_reading_an_upload_fails_the_push() {
    let Some(reg) = start_registry() else { return };
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path(), None).unwrap();
    let stall = Cutter::start(&reg.addr, STALL, true);
    let name = format!("{}/stall/img:1", stall.addr);
    let rec = noise_image(&store, &name, &[12 << 20]);
    let opts = PullOptions {
        stall_timeout: Duration::from_secs(2),
        parallel: 1,
        ..plain()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    let store = Arc::new(store);
    let s2 = store.clone();
    let n2 = name.clone();
    std::thread::spawn(move || {
        let r = push_image(
            &s2,
            &n2,
            None,
            &opts,
            &PushOptions {
                attempts: 1,
                ..Default::default()
            },
            &image::Quiet,
        );
        let _ = tx.send(r.map(|_| ()).map_err(|e| e.to_string()));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the push hangs on a registry that stopped reading");
    let err = r.unwrap_err();
    assert!(
        err.contains(&format!("push of blob {}", rec.layers[0].digest))
            && err.contains("took nothing for 2s"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
}

/// An OCI layout at `dir` whose one entry (ref name `v1`) is an index of two platforms:
/// linux/amd64 (busybox's config and layer) and linux/arm64 (a config of its own and a layer
/// no other image has). Returns the index's digest and the arm64 layer's.
fn two_platform_layout(store: &Store, dir: &Path) -> (image::Digest, image::Digest) {
    use serde_json::json;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = image::Digest::of(data);
        std::fs::write(blobs.join(d.hex()), data).unwrap();
        d
    };
    let bb = store.image("busybox").unwrap();
    let layer = &bb.layers[0];
    put(&store.content.read(&layer.digest).unwrap());
    let amd_config = store.content.read(&bb.config).unwrap();
    put(&amd_config);
    // arm64: a one-file layer (plain tar) and a config naming it.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "arch", &b"arm\n"[..]).unwrap();
    let arm_layer = tar.into_inner().unwrap();
    let arm_layer_d = put(&arm_layer);
    let arm_config = serde_json::to_vec(&json!({
        "architecture": "arm64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [arm_layer_d.to_string()]},
    }))
    .unwrap();
    let arm_config_d = put(&arm_config);
    let manifest = |config: &[u8], config_d: &image::Digest, layer: serde_json::Value| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_d.to_string(), "size": config.len()},
            "layers": [layer],
        }))
        .unwrap()
    };
    let amd = manifest(
        &amd_config,
        &bb.config,
        json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
               "digest": layer.digest.to_string(), "size": layer.size}),
    );
    let arm = manifest(
        &arm_config,
        &arm_config_d,
        json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
               "digest": arm_layer_d.to_string(), "size": arm_layer.len()}),
    );
    let (amd_d, arm_d) = (put(&amd), put(&arm));
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd_d.to_string(),
             "size": amd.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm_d.to_string(),
             "size": arm.len(), "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }))
    .unwrap();
    let index_d = put(&index);
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                           "digest": index_d.to_string(), "size": index.len(),
                           "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (index_d, arm_layer_d)
}

/// A multi-platform image kept with --all-platforms is pushed whole (every platform's blobs
/// and manifest, then the index under the tag), pulled back whole, and saved as its index;
/// kept for this host only, it is pushed as the host's manifest (docker 20.10's push).
#[test]
fn all_platforms_push_the_index() {
    let Some((_t, store)) = fixture_store() else {
        return;
    };
    let Some(reg) = start_registry() else { return };
    let layout = tempfile::tempdir().unwrap();
    let (index_d, arm_layer) = two_platform_layout(&store, layout.path());
    let name = format!("{}/multi/img:v1", reg.addr);
    let all = image::import::ImportOptions {
        name: Some(name.clone()),
        all_platforms: true,
        ..Default::default()
    };
    let t1 = tempfile::tempdir().unwrap();
    let s1 = Store::open(t1.path(), None).unwrap();
    let rec = image::import::import(&s1, layout.path(), &all, &image::Quiet).unwrap()[0].clone();
    assert_eq!(rec.target.digest, index_d);
    assert!(rec.blobs.contains(&arm_layer), "{:?}", rec.blobs);
    let p = push_image(
        &s1,
        &name,
        None,
        &plain(),
        &PushOptions::default(),
        &image::Quiet,
    )
    .unwrap();
    // Two configs and two layers.
    assert_eq!(
        (p.uploaded, p.existed, p.digest.as_ref()),
        (4, 0, Some(&index_d))
    );
    let (status, hs, body) = ureq_get(
        &format!("http://{}/v2/multi/img/manifests/v1", reg.addr),
        &["Accept: application/vnd.oci.image.index.v1+json".to_string()],
    );
    assert_eq!(status, 200);
    assert_eq!(image::Digest::of(&body), index_d);
    assert!(
        hs.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-type")
                && v == "application/vnd.oci.image.index.v1+json"),
        "{hs:?}"
    );

    // Pulled back whole: the arm64 layer comes too, only amd64 is unpacked.
    let t2 = tempfile::tempdir().unwrap();
    let s2 = Store::open(t2.path(), None).unwrap();
    let opts = PullOptions {
        all_platforms: true,
        ..plain()
    };
    let back = pull(&s2, &name, &opts, &Count::default()).unwrap();
    assert_eq!(back.target.digest, index_d);
    assert_eq!(
        s2.content.read(&arm_layer).unwrap(),
        s1.content.read(&arm_layer).unwrap()
    );
    // ... and saved as the index with every blob.
    let mut archive = Vec::new();
    image::export::save(&s2, &[back], &mut archive).unwrap();
    let mut saved = std::collections::BTreeMap::new();
    for e in tar::Archive::new(&archive[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        saved.insert(path, data);
    }
    let idx: serde_json::Value = serde_json::from_slice(&saved["index.json"]).unwrap();
    assert_eq!(idx["manifests"][0]["digest"], index_d.to_string());
    assert_eq!(
        idx["manifests"][0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(saved.contains_key(&format!("blobs/sha256/{}", arm_layer.hex())));

    // Without --all-platforms only this host's image is kept, and pushed as its manifest.
    let t3 = tempfile::tempdir().unwrap();
    let s3 = Store::open(t3.path(), None).unwrap();
    let host_only = image::import::ImportOptions {
        all_platforms: false,
        ..all
    };
    let rec =
        image::import::import(&s3, layout.path(), &host_only, &image::Quiet).unwrap()[0].clone();
    assert!(!s3.content.exists(&arm_layer));
    let other = format!("{}/multi/host:v1", reg.addr);
    let p = push_image(
        &s3,
        &rec.name,
        Some(&other),
        &plain(),
        &PushOptions::default(),
        &image::Quiet,
    )
    .unwrap();
    assert_eq!(p.digest.as_ref(), Some(&rec.manifest));
}
