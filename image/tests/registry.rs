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
        err.contains("user and password") || err.contains("access denied"),
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
