//! Pull over the distribution API v2: manifests, indexes and blobs, anonymous or with bearer
//! tokens (and basic auth), `plain_http` for a local registry. Only blobs missing from the
//! content store are fetched, layers in parallel (3 at a time); an interrupted download is
//! resumed with a Range request on retry (up to 3 attempts), every byte verified by the store.
//!
//! How a registry is reached (pull and push alike), as docker does it:
//! - HTTPS, verified against the web's roots, or against `ca.crt`/`*.crt` in
//!   `<certs dir>/<host[:port]>/` (`/etc/docker/certs.d`, `/etc/containers/certs.d`, and the
//!   caller's), with a client certificate from `*.cert` + `*.key` there;
//! - localhost, 127.0.0.0/8, ::1 and `insecure_registries` are tried over HTTPS without
//!   verification first, then over plain HTTP;
//! - a registry that answers HTTPS with plain HTTP is reported as such ("server gave HTTP
//!   response to HTTPS client");
//! - `plain_http` goes straight to HTTP.

use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::{
    media, resolve, BlobSource, Desc, Event, ImageRecord, Platform, Progress, Store,
};
use crate::reference::Reference;
use crate::store::ContentStore;

#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Speak HTTP, not HTTPS (a local registry).
    pub plain_http: bool,
    /// user, password (basic auth, or to get a bearer token).
    pub credentials: Option<(String, String)>,
    pub platform: Platform,
    pub unpack: bool,
    /// Keep every platform of a multi-platform image (fetched, not unpacked), so that save
    /// and push send the whole index.
    pub all_platforms: bool,
    /// Parallel blob downloads.
    pub parallel: usize,
    /// A registry that sends nothing for this long fails the request (retried as a failed
    /// download is); a slow but live connection never does.
    pub stall_timeout: Duration,
    /// Directories with a `<host[:port]>/` directory of CA and client certificates each.
    pub certs_dirs: Vec<PathBuf>,
    /// Hosts (`host[:port]`) reached like localhost: HTTPS unverified, then HTTP.
    pub insecure_registries: Vec<String>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            plain_http: false,
            credentials: None,
            platform: Platform::host(),
            unpack: true,
            all_platforms: false,
            parallel: 3,
            stall_timeout: Duration::from_secs(60),
            certs_dirs: vec![
                PathBuf::from("/etc/docker/certs.d"),
                PathBuf::from("/etc/containers/certs.d"),
                PathBuf::from("/etc/berth/certs.d"),
            ],
            insecure_registries: Vec::new(),
        }
    }
}

/// Whether `host` (`name[:port]`) is a loopback address docker treats as insecure.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(n, _)| n)
    };
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.octets()[0] == 127)
}

/// The TLS settings for `host` from the certificate directories: CA roots and a client
/// certificate, when there are any.
fn tls_for(host: &str, dirs: &[PathBuf], insecure: bool) -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let mut b = TlsConfig::builder();
    if insecure {
        return Ok(b.disable_verification(true).build());
    }
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    let mut client: Option<ClientCert> = None;
    for d in dirs.iter().map(|d| d.join(host)) {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        let bad = |p: &Path, e: &dyn std::fmt::Display| {
            Error::Registry(format!("certificate {}: {e}", p.display()))
        };
        for p in &names {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            match ext {
                "crt" => {
                    let pem = std::fs::read(p).map_err(|e| bad(p, &e))?;
                    for item in ureq::tls::parse_pem(&pem) {
                        if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| bad(p, &e))? {
                            roots.push(c);
                        }
                    }
                }
                "cert" => {
                    let key = p.with_extension("key");
                    let pem = std::fs::read(p).map_err(|e| bad(p, &e))?;
                    let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                        .filter_map(|i| match i {
                            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                            _ => None,
                        })
                        .collect();
                    let kp = std::fs::read(&key).map_err(|e| bad(&key, &e))?;
                    let k = PrivateKey::from_pem(&kp).map_err(|e| bad(&key, &e))?;
                    check_client_cert(&chain, &kp).map_err(|e| bad(p, &e))?;
                    client = Some(ClientCert::new_with_certs(&chain, k));
                }
                _ => {}
            }
        }
    }
    if !roots.is_empty() {
        b = b.root_certs(RootCerts::new_with_certs(&roots));
    }
    Ok(b.client_cert(client).build())
}

/// Whether TLS can use `chain` and `key` as a client certificate (ureq would panic on one it
/// cannot: an X.509 v1 certificate, a key that does not match).
fn check_client_cert(
    chain: &[ureq::tls::Certificate<'static>],
    key_pem: &[u8],
) -> std::result::Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty());
    let certs: Vec<CertificateDer<'static>> = chain
        .iter()
        .map(|c| CertificateDer::from(c.der()).into_owned())
        .collect();
    let k = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("the key: {e}"))?;
    b.with_client_auth_cert(certs, k)
        .map(|_| ())
        .map_err(|e| format!("not usable as a client certificate: {e}"))
}

/// What a request sends.
#[derive(Clone, Copy)]
pub(crate) enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of the file at `offset`; `sent` is told how many of them went so far.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
        sent: Option<&'a (dyn Fn(u64) + Sync)>,
    },
}

/// A reader that tells `sent` how many bytes were read through it.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    sent: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if let Some(f) = self.sent {
            f(self.done);
        }
        Ok(n)
    }
}

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Whether a body read failed on the stall timeout.
fn is_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

/// Redirects followed before a request fails.
const MAX_REDIRECTS: usize = 10;

/// `scheme://authority` of an absolute URL.
fn origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

/// Where a redirect from `from` to `location` leads. Only http(s) targets are followed, and
/// never from https to plain http: a downgrade would expose the request (and, on the same
/// host, its credentials) to the network.
fn redirect_target(from: &str, location: &str) -> std::result::Result<String, String> {
    let from_origin = origin(from).ok_or("not an absolute URL")?;
    let from_scheme = &from_origin[..from_origin.find(':').unwrap_or(0)];
    let next = if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{from_scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{from_origin}{location}")
    } else {
        let path = &from[from_origin.len()..];
        let path = path.split(['?', '#']).next().unwrap_or("");
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("{from_origin}{dir}{location}")
    };
    let scheme = next
        .split_once("://")
        .map_or("", |(s, _)| s)
        .to_ascii_lowercase();
    match scheme.as_str() {
        "https" => Ok(next),
        "http" if from_scheme.eq_ignore_ascii_case("http") => Ok(next),
        "http" => Err(format!(
            "redirected to {next}: refusing to leave HTTPS for plain HTTP"
        )),
        _ => Err(format!("redirected to {next}: not an http(s) URL")),
    }
}

/// A client for one repository.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    repo: String,
    /// What a token is asked for on this repository (`pull`, or `pull,push` for a push; empty:
    /// no repository scope, as for a login), as containerd and docker ask for it.
    pub(crate) actions: &'static str,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
    /// The scheme of the last challenge answered (`bearer`, `basic`): how a 401 is explained.
    scheme: Mutex<String>,
    /// Blobs this client stored (not reported again as already there).
    fresh: Mutex<std::collections::HashSet<Digest>>,
}

pub(crate) fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Bearer realm="...",service="...",scope="..."` -> (scheme, params).
fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, v)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_string();
        let v = v.trim_start();
        let (val, rest) = if let Some(q) = v.strip_prefix('"') {
            match q.find('"') {
                Some(e) => (q[..e].to_string(), &q[e + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match v.find(',') {
                Some(e) => (v[..e].to_string(), &v[e..]),
                None => (v.to_string(), ""),
            }
        };
        params.push((k, val));
        s = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    (scheme.to_ascii_lowercase(), params)
}

fn query_escape(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn reg_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Registry(format!("{what}: {e}"))
}

/// What an error answer says, as `": message"` (empty when it says nothing readable): the
/// distribution API's `errors[].message` (and `detail` when it is a string), a token
/// service's `details`/`detail`/`error_description`/`error`/`message`, else a short plain-text
/// body. Read up to 64 KiB, echoed escaped and capped.
fn error_message(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    let Ok(body) = resp.body_mut().with_config().limit(64 << 10).read_to_vec() else {
        return String::new();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
        for e in v["errors"].as_array().into_iter().flatten() {
            let mut m = e["message"].as_str().unwrap_or("").to_string();
            if m.is_empty() {
                m = e["code"].as_str().unwrap_or("").to_ascii_lowercase();
            }
            if let Some(d) = e["detail"].as_str() {
                m = format!("{m}: {d}");
            }
            if !m.is_empty() {
                parts.push(m);
            }
        }
        for k in ["details", "detail", "error_description", "error", "message"] {
            if let Some(m) = v[k].as_str() {
                parts.push(m.to_string());
                break;
            }
        }
    } else {
        let t = String::from_utf8_lossy(&body);
        let t = t.trim();
        if !t.is_empty() && !t.starts_with('<') {
            parts.push(t.to_string());
        }
    }
    parts.dedup();
    if parts.is_empty() {
        return String::new();
    }
    format!(": {}", crate::error::echo(&parts.join("; ")))
}

impl Client {
    fn agent(opts: &PullOptions, tls: ureq::tls::TlsConfig) -> ureq::Agent {
        // Redirects are followed by `call`, which applies their policy.
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(None)
            .timeout_per_read(Some(opts.stall_timeout))
            // A registry that stops reading an upload fails it as one that stops sending does.
            .timeout_per_write(Some(opts.stall_timeout))
            .tls_config(tls)
            .build()
            .into()
    }

    /// A client for `r`'s repository, with the scheme and TLS settings its registry needs
    /// (see the module's notes); loopback and insecure registries are probed once.
    pub fn connect(r: &Reference, opts: &PullOptions) -> Result<Client> {
        let host = r.registry_host();
        let insecure = is_loopback(host) || opts.insecure_registries.iter().any(|h| *h == host);
        let tls = tls_for(host, &opts.certs_dirs, insecure)?;
        let mut c = Client {
            agent: Self::agent(opts, tls),
            base: format!(
                "{}://{host}",
                if opts.plain_http { "http" } else { "https" }
            ),
            repo: r.path.clone(),
            actions: "pull",
            credentials: opts.credentials.clone(),
            token: Mutex::new(None),
            scheme: Mutex::new(String::new()),
            fresh: Mutex::new(Default::default()),
        };
        if opts.plain_http {
            return Ok(c);
        }
        let probe = |c: &Client| c.call(&format!("{}/v2/", c.base), &[], None).map(|_| ());
        if let Err(e) = probe(&c) {
            if !insecure && e.to_string().contains("certificate") {
                let dirs: Vec<String> = opts
                    .certs_dirs
                    .iter()
                    .map(|d| d.join(host).display().to_string())
                    .collect();
                return Err(Error::Registry(format!(
                    "{e} (a registry with a certificate of its own CA: put the CA's ca.crt in \
                     one of {})",
                    dirs.join(", ")
                )));
            }
            let http = format!("http://{host}");
            let answers_http = c.call(&format!("{http}/v2/"), &[], None).is_ok();
            if insecure && answers_http {
                c.base = http;
            } else if answers_http {
                return Err(Error::Registry(format!(
                    "{host}: server gave HTTP response to HTTPS client (a registry without \
                     TLS: --plain-http, or --insecure-registry {host})"
                )));
            } else {
                return Err(e);
            }
        }
        Ok(c)
    }

    fn basic(&self) -> Option<String> {
        self.credentials
            .as_ref()
            .map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())))
    }

    /// GET `url` with `headers`, following redirects by hand (see `redirect_target`).
    /// `auth` is sent only to the origin of `url`, never to where it redirects elsewhere
    /// (registries send blobs to storage hosts with signed URLs).
    fn call(
        &self,
        url: &str,
        headers: &[(&str, String)],
        auth: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let first_origin = origin(url).unwrap_or("").to_string();
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.agent.get(&url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(a) = auth.filter(|_| origin(&url) == Some(first_origin.as_str())) {
                req = req.header("Authorization", a);
            }
            let resp = req.call().map_err(|e| match e {
                ureq::Error::Timeout(ureq::Timeout::PerRead) => self.stalled(&format!("GET {url}")),
                e => reg_err(&format!("GET {url}"), e),
            })?;
            if !resp.status().is_redirection() {
                if resp.status().as_u16() == 401 && origin(&url) != Some(first_origin.as_str()) {
                    // A redirect target that wants credentials gets none of the registry's.
                    return Err(reg_err(
                        &format!("GET {url}"),
                        "unauthorized (a redirect target of the registry; no credentials are sent there)",
                    ));
                }
                return Ok(resp);
            }
            let Some(location) = resp.headers().get("location").and_then(|v| v.to_str().ok())
            else {
                return Ok(resp);
            };
            url = redirect_target(&url, location).map_err(|e| reg_err(&format!("GET {url}"), e))?;
        }
        Err(reg_err(
            &format!("GET {url}"),
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// Send `method` to `url` with `payload` (no redirect followed: the registry answers
    /// uploads with 201/202 and a Location).
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        payload: Payload<'_>,
        auth: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let what = || format!("{method} {url}");
        let mut b = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        let bad = |e: ureq::http::Error| reg_err(&what(), e);
        let res = match payload {
            Payload::Empty if method == "HEAD" || method == "GET" => {
                self.agent.run(b.body(()).map_err(bad)?)
            }
            Payload::Empty => self
                .agent
                .run(b.header("Content-Length", "0").body(&[][..]).map_err(bad)?),
            Payload::Bytes(d) => self.agent.run(
                b.header("Content-Length", d.len().to_string())
                    .body(d)
                    .map_err(bad)?,
            ),
            Payload::File {
                path,
                offset,
                len,
                sent,
            } => {
                let mut f = std::fs::File::open(path).map_err(|e| reg_err(&what(), e))?;
                f.seek(io::SeekFrom::Start(offset))
                    .map_err(|e| reg_err(&what(), e))?;
                let mut r = Counting {
                    inner: f.take(len),
                    done: 0,
                    sent,
                };
                self.agent.run(
                    b.header("Content-Length", len.to_string())
                        .body(ureq::SendBody::from_reader(&mut r))
                        .map_err(bad)?,
                )
            }
        };
        res.map_err(|e| match e {
            ureq::Error::Timeout(ureq::Timeout::PerRead) => self.stalled(&what()),
            ureq::Error::Timeout(ureq::Timeout::PerWrite) => {
                let t = self.agent.config().timeout_per_write().unwrap_or_default();
                reg_err(&what(), format!("the registry took nothing for {t:?}"))
            }
            e => reg_err(&what(), e),
        })
    }

    /// `method` on `target` (an absolute URL, a path from the registry's root, or a path below
    /// /v2/<repo>/), authenticating on a 401 challenge.
    pub(crate) fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, String)],
        payload: Payload<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        self.request_scoped(method, target, headers, payload, &[])
    }

    /// `request`, asking a token service also for `scopes` (a cross-repository mount needs
    /// `repository:<from>:pull`).
    pub(crate) fn request_scoped(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, String)],
        payload: Payload<'_>,
        scopes: &[String],
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let url = if target.starts_with("http://") || target.starts_with("https://") {
            target.to_string()
        } else if target.starts_with('/') {
            format!("{}{target}", self.base)
        } else {
            format!("{}/v2/{}/{}", self.base, self.repo, target)
        };
        for attempt in 0..2 {
            let auth = self
                .token
                .lock()
                .expect("lock")
                .clone()
                .or_else(|| self.basic());
            // Credentials go to the registry only, never to another host a Location names.
            let auth = auth.filter(|_| origin(&url) == origin(&self.base));
            let resp = if method == "GET" {
                self.call(&url, headers, auth.as_deref())?
            } else {
                self.send(method, &url, headers, payload, auth.as_deref())?
            };
            // Only the registry's own challenge is answered: a 401 from another host (a
            // Location or redirect target) never gets the user's credentials or a token.
            let foreign = origin(&url) != origin(&self.base);
            if resp.status().as_u16() != 401 || attempt == 1 || foreign {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            self.authenticate(&challenge, scopes)?;
        }
        unreachable!("two attempts")
    }

    /// `what` failed: the registry sent nothing for the stall timeout.
    fn stalled(&self, what: &str) -> Error {
        let t = self.agent.config().timeout_per_read().unwrap_or_default();
        reg_err(what, format!("no data for {t:?}"))
    }

    /// GET `path` (below /v2/<repo>/), authenticating on a 401 challenge.
    fn get(
        &self,
        path: &str,
        accept: Option<&str>,
        from: u64,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut headers = Vec::new();
        if let Some(a) = accept {
            headers.push(("Accept", a.to_string()));
        }
        if from > 0 {
            headers.push(("Range", format!("bytes={from}-")));
        }
        self.request("GET", path, &headers, Payload::Empty)
    }

    /// The scopes a token is asked for: this repository's (`actions`), `extra`, and those the
    /// challenge names (space-separated there); each goes in a `scope` parameter of its own,
    /// sorted, as containerd sends them (remotes/docker/scope.go). Scopes of one resource are
    /// merged (`repository:a:pull` and `repository:a:pull,push` ask for `pull,push`).
    fn token_scopes(&self, challenge_scope: Option<&str>, extra: &[String]) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        if !self.actions.is_empty() {
            all.push(format!("repository:{}:{}", self.repo, self.actions));
        }
        all.extend(extra.iter().cloned());
        all.extend(
            challenge_scope
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string),
        );
        let mut merged: Vec<(String, Vec<String>)> = Vec::new();
        for s in all {
            let (resource, actions) = s.rsplit_once(':').unwrap_or((s.as_str(), ""));
            let i = match merged.iter().position(|(r, _)| r == resource) {
                Some(i) => i,
                None => {
                    merged.push((resource.to_string(), Vec::new()));
                    merged.len() - 1
                }
            };
            for a in actions.split(',').filter(|a| !a.is_empty()) {
                if !merged[i].1.iter().any(|x| x == a) {
                    merged[i].1.push(a.to_string());
                }
            }
        }
        let mut scopes: Vec<String> = merged
            .into_iter()
            .map(|(r, a)| format!("{r}:{}", a.join(",")))
            .collect();
        scopes.sort();
        scopes
    }

    fn authenticate(&self, challenge: &str, extra_scopes: &[String]) -> Result<()> {
        let (scheme, params) = parse_challenge(challenge);
        *self.scheme.lock().expect("lock") = scheme.clone();
        match scheme.as_str() {
            "bearer" => {
                let get = |k: &str| params.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
                let realm = get("realm")
                    .ok_or_else(|| reg_err("auth", "bearer challenge without realm"))?;
                let mut url = realm.clone();
                let mut sep = if url.contains('?') { '&' } else { '?' };
                if let Some(s) = get("service") {
                    url.push_str(&format!("{sep}service={}", query_escape(&s)));
                    sep = '&';
                }
                let scopes = self.token_scopes(get("scope").as_deref(), extra_scopes);
                for scope in &scopes {
                    url.push_str(&format!("{sep}scope={}", query_escape(scope)));
                    sep = '&';
                }
                let what = if scopes.is_empty() {
                    format!("token from {realm}")
                } else {
                    format!("token from {realm} for {}", scopes.join(" "))
                };
                let mut resp = self.call(&url, &[], self.basic().as_deref())?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    let msg = error_message(&mut resp);
                    let who = match &self.credentials {
                        Some((u, _)) => format!(" (as {u})"),
                        None => " (no credentials given)".to_string(),
                    };
                    return Err(reg_err(
                        &what,
                        format!("the token service answered {status}{who}{msg}"),
                    ));
                }
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(|e| reg_err(&what, e))?;
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                let tok = v["token"]
                    .as_str()
                    .or_else(|| v["access_token"].as_str())
                    .ok_or_else(|| reg_err(&what, "no token in the answer"))?;
                *self.token.lock().expect("lock") = Some(format!("Bearer {tok}"));
                Ok(())
            }
            "basic" => {
                if self.credentials.is_none() {
                    return Err(Error::Registry(format!(
                        "{}: authentication required: the registry wants a user and password \
                         (--user, or log in first)",
                        self.host()
                    )));
                }
                Ok(())
            }
            _ => Err(Error::Registry(format!(
                "{}: unauthorized, and no usable challenge ({challenge:?})",
                self.host()
            ))),
        }
    }

    /// `host[:port]` of the registry.
    pub(crate) fn host(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, h)| h)
    }

    /// `host[:port]/repository`.
    pub(crate) fn repository(&self) -> String {
        format!("{}/{}", self.host(), self.repo)
    }

    /// An error for `resp` unless it succeeded: 404 is `NotFound`; 401 and 403 say who denied
    /// access to what, why (the registry's own message, the token's missing scope), and with
    /// which credentials; the registry's message goes with any other status too.
    pub(crate) fn check(
        &self,
        resp: &mut ureq::http::Response<ureq::Body>,
        what: &str,
    ) -> Result<()> {
        let s = resp.status();
        if s.is_success() {
            return Ok(());
        }
        if s.as_u16() == 404 {
            return Err(Error::NotFound(what.to_string()));
        }
        let challenge_error = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(parse_challenge)
            .and_then(|(_, p)| p.into_iter().find(|(k, _)| k == "error").map(|(_, v)| v));
        let msg = error_message(resp);
        if !matches!(s.as_u16(), 401 | 403) {
            return Err(Error::Registry(format!(
                "{what}: {} answered {s}{msg}",
                self.host()
            )));
        }
        let bearer = self.scheme.lock().expect("lock").as_str() == "bearer";
        let why = match (&self.credentials, bearer) {
            (None, _) => " (no credentials were given: log in, or pass --user)".to_string(),
            (Some((u, _)), true) => match challenge_error.as_deref() {
                Some("insufficient_scope") => format!(
                    " (insufficient_scope: the token issued to {u} does not grant {})",
                    self.token_scopes(None, &[]).join(" ")
                ),
                _ => format!(" (the token issued to {u} was not accepted)"),
            },
            (Some((u, _)), false) => format!(" (the user and password of {u} were refused)"),
        };
        Err(Error::Registry(format!(
            "{what}: access denied by {} ({s}){msg}{why}",
            self.host()
        )))
    }

    /// The manifest or index for `object` (a tag or digest): (media type, bytes, digest).
    pub fn manifest(&self, object: &str) -> Result<(String, Vec<u8>, Digest)> {
        let mut resp = self.get(&format!("manifests/{object}"), Some(MANIFEST_ACCEPT), 0)?;
        self.check(&mut resp, &format!("manifest {}:{object}", self.repo))?;
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let body = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_vec()
            .map_err(|e| reg_err("read manifest", e))?;
        let d = Digest::of(&body);
        if object.starts_with("sha256:") && d.as_str() != object {
            return Err(Error::DigestMismatch {
                expected: object.to_string(),
                actual: d.to_string(),
            });
        }
        Ok((ct, body, d))
    }

    /// Download blob `desc` into the store (resuming after a failure, up to 3 attempts).
    fn fetch_blob(&self, store: &ContentStore, desc: &Desc, progress: &dyn Progress) -> Result<()> {
        if media::is_index(&desc.media_type) || media::is_manifest(&desc.media_type) {
            let (_, body, d) = self.manifest(desc.digest.as_str())?;
            if d != desc.digest {
                return Err(Error::DigestMismatch {
                    expected: desc.digest.to_string(),
                    actual: d.to_string(),
                });
            }
            store.put(&body)?;
            return Ok(());
        }
        // What a killed pull left is resumed (hashed again, then a Range request).
        let Some(mut w) = store.resumable_writer(&desc.digest, desc.size)? else {
            return Ok(());
        };
        let mut last_err = None;
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(500 * attempt as u64));
            }
            let from = w.written();
            if from >= desc.size {
                // Complete already (killed before the rename): verify and store.
                w.commit()?;
                return Ok(());
            }
            let mut resp = match self.get(&format!("blobs/{}", desc.digest), None, from) {
                Ok(r) => r,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            self.check(&mut resp, &format!("blob {}", desc.digest))?;
            if from > 0 && resp.status().as_u16() != 206 {
                // No range support: start over.
                w.restart()?;
            }
            let mut r = resp.into_body().into_reader();
            let mut buf = vec![0u8; 256 * 1024];
            let mut last_report = std::time::Instant::now();
            let res: io::Result<()> = loop {
                match r.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) if w.written() + n as u64 > desc.size => {
                        // An endless (or oversized) body is not written to disk beyond the size
                        // the manifest gives, and not retried.
                        w.discard();
                        return Err(reg_err(
                            &format!("blob {}", desc.digest),
                            format!(
                                "the registry sent more than the {} bytes the manifest gives",
                                desc.size
                            ),
                        ));
                    }
                    Ok(n) => {
                        if let Err(e) = w.write_all(&buf[..n]) {
                            break Err(e);
                        }
                        if last_report.elapsed() > Duration::from_millis(100) {
                            progress.event(Event::Fetching {
                                digest: &desc.digest,
                                done: w.written(),
                                total: desc.size,
                            });
                            last_report = std::time::Instant::now();
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            match res {
                Ok(()) if w.written() >= desc.size => {
                    progress.event(Event::Fetching {
                        digest: &desc.digest,
                        done: w.written(),
                        total: desc.size,
                    });
                    w.commit()?;
                    return Ok(());
                }
                Ok(()) => last_err = Some(reg_err("blob", "connection closed early")),
                Err(e) if is_timeout(&e) => {
                    last_err = Some(self.stalled(&format!("download {}", desc.digest)))
                }
                Err(e) => last_err = Some(reg_err(&format!("download {}", desc.digest), e)),
            }
        }
        Err(last_err.unwrap_or_else(|| reg_err("blob", "failed")))
    }
}

impl BlobSource for Client {
    fn fetch(&self, store: &ContentStore, descs: &[Desc], progress: &dyn Progress) -> Result<()> {
        let missing: Vec<&Desc> = descs
            .iter()
            .filter(|d| {
                let have = store.exists(&d.digest);
                if have && !self.fresh.lock().expect("lock").contains(&d.digest) {
                    progress.event(Event::Fetched {
                        digest: &d.digest,
                        cached: true,
                    });
                }
                !have
            })
            .collect();
        let next = AtomicUsize::new(0);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..missing.len().clamp(1, 3) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(d) = missing.get(i) else { return };
                    if first_error.lock().expect("lock").is_some() {
                        return;
                    }
                    progress.event(Event::Fetching {
                        digest: &d.digest,
                        done: 0,
                        total: d.size,
                    });
                    match self.fetch_blob(store, d, progress) {
                        Ok(()) => progress.event(Event::Fetched {
                            digest: &d.digest,
                            cached: false,
                        }),
                        Err(e) => {
                            first_error.lock().expect("lock").get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        match first_error.into_inner().expect("lock") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Check `opts.credentials` against the registry `domain` as `docker login` does: its API
/// root must answer 200 with them (as basic auth, or through a bearer token they get).
pub fn login(domain: &str, opts: &PullOptions) -> Result<()> {
    let r = Reference::parse(&format!("{domain}/login"))?;
    let mut c = Client::connect(&r, opts)?;
    // A login asks a token service for no repository (as docker login).
    c.actions = "";
    let resp = c
        .request("GET", "/v2/", &[], Payload::Empty)
        .map_err(|e| match e {
            Error::Registry(m) if m.starts_with("token from ") => Error::Registry(format!(
                "login to {domain}: unauthorized: incorrect username or password ({m})"
            )),
            e => e,
        })?;
    match resp.status().as_u16() {
        200 => Ok(()),
        401 | 403 => Err(Error::Registry(format!(
            "login to {domain}: unauthorized: incorrect username or password"
        ))),
        s => Err(Error::Registry(format!(
            "login to {domain}: the registry answered {s}"
        ))),
    }
}

/// Pull `reference` into `store` (and unpack it). Returns the stored image.
pub fn pull(
    store: &Store,
    reference: &str,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    let r = Reference::parse(reference)?;
    let client = Client::connect(&r, opts)?;
    let _lock = store.lock_shared()?;
    store.clean_stale()?;
    let (ct, body, digest) = client.manifest(&r.object())?;
    let had = store.content.exists(&digest);
    store.content.put(&body)?;
    if !had {
        client.fresh.lock().expect("lock").insert(digest.clone());
        progress.event(Event::Fetched {
            digest: &digest,
            cached: false,
        });
    }
    let media_type = if ct.is_empty() || !(media::is_index(&ct) || media::is_manifest(&ct)) {
        // Let resolution sniff it from the document.
        String::new()
    } else {
        ct
    };
    let top = Desc {
        media_type,
        digest,
        size: body.len() as u64,
    };
    let mut rec = resolve(
        &store.content,
        &client,
        &r.to_string(),
        &top,
        &opts.platform,
        progress,
    )?;
    if opts.all_platforms {
        crate::images::keep_all_platforms(&store.content, &client, &mut rec, progress)?;
    }
    if opts.unpack {
        store.unpack(&rec, progress)?;
    }
    store.save_image(&rec)?;
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_policy() {
        let from = "https://reg.example:5000/v2/r/blobs/sha256:ab?x=1";
        for (location, want) in [
            (
                "https://s3.example/b?sig=1",
                Ok("https://s3.example/b?sig=1"),
            ),
            ("//s3.example/b", Ok("https://s3.example/b")),
            ("/v2/other", Ok("https://reg.example:5000/v2/other")),
            ("next", Ok("https://reg.example:5000/v2/r/blobs/next")),
            (
                "http://s3.example/b",
                Err("refusing to leave HTTPS for plain HTTP"),
            ),
            ("HTTP://reg.example:5000/x", Err("refusing to leave HTTPS")),
            ("file:///etc/passwd", Err("not an http(s) URL")),
        ] {
            match (redirect_target(from, location), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{location}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{location}: {got}"),
                (got, want) => panic!("{location}: {got:?}, wanted {want:?}"),
            }
        }
        assert_eq!(
            redirect_target("http://127.0.0.1:5000/v2/x", "http://127.0.0.1:6000/y"),
            Ok("http://127.0.0.1:6000/y".to_string())
        );
        assert_eq!(origin("https://h:1/p?q"), Some("https://h:1"));
        assert_eq!(origin("https://h?q"), Some("https://h"));
        assert_eq!(origin("h/p"), None);
    }

    #[test]
    fn challenges_and_encodings() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(
            p[0],
            ("realm".into(), "https://auth.docker.io/token".into())
        );
        assert_eq!(p[1], ("service".into(), "registry.docker.io".into()));
        assert_eq!(p[2].1, "repository:library/busybox:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "basic");
        assert_eq!(p[0].1, "Registry Realm");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            query_escape("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }

    #[test]
    fn token_scopes_as_containerd_asks() {
        let r = Reference::parse("127.0.0.1:5000/team/app:1").unwrap();
        let mut c = Client::connect(
            &r,
            &PullOptions {
                plain_http: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.token_scopes(None, &[]), ["repository:team/app:pull"]);
        c.actions = "pull,push";
        // distribution's challenge for a HEAD, and for a mount (two scopes, space-separated).
        assert_eq!(
            c.token_scopes(Some("repository:team/app:pull"), &[]),
            ["repository:team/app:pull,push"]
        );
        assert_eq!(
            c.token_scopes(
                Some("repository:team/app:pull,push repository:team/base:pull"),
                &["repository:team/base:pull".to_string()]
            ),
            ["repository:team/app:pull,push", "repository:team/base:pull"]
        );
        c.actions = "";
        assert!(c.token_scopes(None, &[]).is_empty());
        assert_eq!(
            c.token_scopes(Some("registry:catalog:*"), &[]),
            ["registry:catalog:*"]
        );
    }
}
