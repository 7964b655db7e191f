//! Push over the distribution API v2, as docker does it:
//! - each blob (layers, then the config) is first asked for (`HEAD`): one the registry has is
//!   not sent again, so a push that was interrupted and is repeated uploads only what is
//!   missing;
//! - a blob that another repository of the same registry holds (an image in the store was
//!   pulled from or pushed to it) is mounted from there (`POST ...?mount=&from=`);
//! - otherwise it is uploaded: in one `PUT` up to `chunk_size` bytes, in `PATCH` chunks
//!   of `chunk_size` above that, then the closing `PUT ?digest=`; up to 3 attempts per blob;
//! - then the manifest, byte for byte as stored (its digest unchanged), with its media type,
//!   under the tag (or by digest for a reference without one).
//!
//! An image of a multi-platform index is pushed whole (every platform's blobs, their manifests
//! by digest, then the index under the tag) when all of it is in the store (pulled or loaded
//! with `--all-platforms`); otherwise as the platform manifest the store holds, as docker
//! 20.10 does.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::{Event, ImageRecord, Progress, Store};
use crate::reference::Reference;
use crate::registry::{Client, Payload, PullOptions};

#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Blobs up to this size go in one PUT; bigger ones in PATCH chunks of this size.
    pub chunk_size: u64,
    /// Attempts per blob.
    pub attempts: u32,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            chunk_size: 64 << 20,
            attempts: 3,
        }
    }
}

/// What a push did.
#[derive(Clone, Debug, Default)]
pub struct Pushed {
    /// The manifest's digest and size.
    pub digest: Option<Digest>,
    pub size: u64,
    /// Blobs uploaded, found there already, mounted from another repository.
    pub uploaded: usize,
    pub existed: usize,
    pub mounted: usize,
}

fn location(resp: &ureq::http::Response<ureq::Body>, what: &str) -> Result<String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| Error::Registry(format!("{what}: no Location in the answer")))
}

/// A request of an upload failed: say which part of the blob was on its way.
fn in_upload(e: Error, part: &str) -> Error {
    match e {
        Error::Registry(m) => Error::Registry(format!("sending {part}: {m}")),
        e => e,
    }
}

fn with_digest(loc: &str, d: &Digest) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}digest={}", d.as_str().replace(':', "%3A"))
}

/// How a blob got there.
enum Outcome {
    Uploaded,
    Existed,
    Mounted,
}

struct Pusher<'a> {
    client: &'a Client,
    store: &'a Store,
    opts: &'a PushOptions,
    progress: &'a dyn Progress,
    /// Other repositories of the same registry, by blob: where a mount may come from.
    sources: Vec<(String, Vec<Digest>)>,
}

impl Pusher<'_> {
    /// Whether the registry has blob `d` (a 401/403 is left to the upload to explain: a
    /// registry may let a user push what it does not let the user read back).
    fn exists(&self, d: &Digest) -> Result<bool> {
        let mut resp = self
            .client
            .request("HEAD", &format!("blobs/{d}"), &[], Payload::Empty)?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            401 | 403 | 404 => Ok(false),
            _ => self
                .client
                .check(&mut resp, &format!("ask for blob {d}"))
                .map(|()| false),
        }
    }

    fn blob(&self, d: &Digest, size: u64) -> Result<Outcome> {
        if self.exists(d)? {
            return Ok(Outcome::Existed);
        }
        for (repo, _) in self.sources.iter().filter(|(_, b)| b.contains(d)) {
            // A token must also let us read the repository mounted from (as containerd asks).
            let resp = self.client.request_scoped(
                "POST",
                &format!(
                    "blobs/uploads/?mount={}&from={}",
                    d.as_str().replace(':', "%3A"),
                    repo
                ),
                &[],
                Payload::Empty,
                &[format!("repository:{repo}:pull")],
            )?;
            match resp.status().as_u16() {
                201 => return Ok(Outcome::Mounted),
                // Not mountable (no access to `from`): the registry opened an upload.
                202 => {
                    let loc = location(&resp, "mount")?;
                    return self.upload(d, size, loc).map(|()| Outcome::Uploaded);
                }
                _ => {}
            }
        }
        let mut resp = self
            .client
            .request("POST", "blobs/uploads/", &[], Payload::Empty)?;
        self.client
            .check(&mut resp, &format!("start upload of {d}"))?;
        let loc = location(&resp, "start upload")?;
        self.upload(d, size, loc).map(|()| Outcome::Uploaded)
    }

    fn upload(&self, d: &Digest, size: u64, mut loc: String) -> Result<()> {
        let path = self.store.content.path(d);
        let octet = ("Content-Type", "application/octet-stream".to_string());
        let report = |done: u64| {
            self.progress.event(Event::Pushing {
                digest: d,
                done,
                total: size,
            })
        };
        // While a request body goes out: every 100 ms (as a pull reports) or 1 MiB.
        let last = Mutex::new((Instant::now(), 0u64));
        let base = AtomicU64::new(0);
        let sent = |n: u64| {
            let done = base.load(Ordering::SeqCst) + n;
            let mut l = last.lock().expect("lock");
            if l.0.elapsed() >= Duration::from_millis(100) || done >= l.1 + (1 << 20) {
                *l = (Instant::now(), done);
                report(done);
            }
        };
        report(0);
        if size <= self.opts.chunk_size {
            let mut resp = self
                .client
                .request(
                    "PUT",
                    &with_digest(&loc, d),
                    &[octet],
                    Payload::File {
                        path: &path,
                        offset: 0,
                        len: size,
                        sent: Some(&sent),
                    },
                )
                .map_err(|e| in_upload(e, &format!("{size} bytes in one request")))?;
            self.client.check(&mut resp, &format!("upload {d}"))?;
            report(size);
            return Ok(());
        }
        let mut offset = 0;
        while offset < size {
            let len = self.opts.chunk_size.min(size - offset);
            base.store(offset, Ordering::SeqCst);
            let end = offset + len - 1;
            let mut resp = self
                .client
                .request(
                    "PATCH",
                    &loc,
                    &[octet.clone(), ("Content-Range", format!("{offset}-{end}"))],
                    Payload::File {
                        path: &path,
                        offset,
                        len,
                        sent: Some(&sent),
                    },
                )
                .map_err(|e| in_upload(e, &format!("bytes {offset}..={end} of {size}")))?;
            self.client
                .check(&mut resp, &format!("upload {d} (bytes {offset}..={end})"))?;
            loc = location(&resp, "upload chunk")?;
            offset += len;
            report(offset);
        }
        let mut resp =
            self.client
                .request("PUT", &with_digest(&loc, d), &[octet], Payload::Empty)?;
        self.client
            .check(&mut resp, &format!("finish upload of {d}"))
    }

    /// `blob`, attempted up to `attempts` times; the error names the blob, the repository
    /// and the attempts.
    fn blob_with_retries(&self, d: &Digest, size: u64) -> Result<Outcome> {
        let attempts = self.opts.attempts.max(1);
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(300 * u64::from(attempt)));
            }
            match self.blob(d, size) {
                Ok(o) => return Ok(o),
                // Access denied is not going to change.
                Err(e @ Error::Registry(_)) if e.to_string().contains("access denied") => {
                    return Err(e)
                }
                Err(e) => last = Some((e, attempt + 1)),
            }
        }
        let (e, n) = last.expect("at least one attempt");
        let why = match e {
            Error::Registry(m) => m,
            e => e.to_string(),
        };
        Err(Error::Registry(format!(
            "push of blob {d} ({size} bytes) to {} failed after {n} attempt{} (a push \
             repeated sends only what the registry lacks): {why}",
            self.client.repository(),
            if n == 1 { "" } else { "s" }
        )))
    }
}

/// Push the image `name` of `store` to `dest` (a reference; `name` itself when None).
pub fn push(
    store: &Store,
    name: &str,
    dest: Option<&str>,
    opts: &PullOptions,
    push_opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<Pushed> {
    let _lock = store.lock_shared()?;
    let rec = store.image(name)?;
    let r = Reference::parse(dest.unwrap_or(&rec.name))?;
    let mut client = Client::connect(&r, opts)?;
    // A token for a push must allow pulling and pushing (containerd's and docker's scope).
    client.actions = "pull,push";
    let host = r.registry_host();
    let sources: Vec<(String, Vec<Digest>)> = store
        .list_images()?
        .into_iter()
        .filter_map(|i| Reference::parse(&i.name).ok().map(|ir| (ir, i)))
        .filter(|(ir, _)| ir.registry_host() == host && ir.path != r.path)
        .map(|(ir, i): (Reference, ImageRecord)| (ir.path, i.blobs))
        .collect();
    let pusher = Pusher {
        client: &client,
        store,
        opts: push_opts,
        progress,
        sources,
    };
    // The whole index when every platform is here (kept with --all-platforms), else the
    // host's manifest alone.
    let entries = crate::images::whole_index(store, &rec)?;
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    let mut add = |d: &Digest, size: u64| {
        if !blobs.iter().any(|(b, _)| b == d) {
            blobs.push((d.clone(), size));
        }
    };
    match &entries {
        Some(entries) => {
            for b in entries.iter().flat_map(|e| &e.blobs) {
                add(&b.digest, b.size);
            }
        }
        None => {
            for l in &rec.layers {
                add(&l.digest, l.size);
            }
            add(&rec.config, store.content.size(&rec.config)?);
        }
    }
    let counts = [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..blobs.len().clamp(1, opts.parallel.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((d, size)) = blobs.get(i) else {
                    return;
                };
                if first_error.lock().expect("lock").is_some() {
                    return;
                }
                match pusher.blob_with_retries(d, *size) {
                    Ok(o) => {
                        let (k, how) = match o {
                            Outcome::Uploaded => (0, "pushed"),
                            Outcome::Existed => (1, "layer already exists"),
                            Outcome::Mounted => (2, "mounted"),
                        };
                        counts[k].fetch_add(1, Ordering::SeqCst);
                        progress.event(Event::Pushed { digest: d, how });
                    }
                    Err(e) => {
                        first_error.lock().expect("lock").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("lock") {
        return Err(e);
    }
    // The platforms' manifests go by digest before the index that names them.
    for e in entries.iter().flatten() {
        let data = store.content.read(&e.manifest.digest)?;
        put_manifest(
            &client,
            &r,
            e.manifest.digest.as_str(),
            &e.manifest.media_type,
            &data,
        )?;
    }
    let top = match entries {
        Some(_) => rec.target.digest.clone(),
        None => rec.manifest.clone(),
    };
    let manifest = store.content.read(&top)?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&manifest)?["mediaType"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| match entries {
            Some(_) => rec.target.media_type.clone(),
            None => crate::images::media::OCI_MANIFEST.to_string(),
        });
    let object = r.tag.clone().unwrap_or_else(|| top.to_string());
    put_manifest(&client, &r, &object, &media_type, &manifest)?;
    Ok(Pushed {
        digest: Some(top),
        size: manifest.len() as u64,
        uploaded: counts[0].load(Ordering::SeqCst),
        existed: counts[1].load(Ordering::SeqCst),
        mounted: counts[2].load(Ordering::SeqCst),
    })
}

fn put_manifest(
    client: &Client,
    r: &Reference,
    object: &str,
    media_type: &str,
    data: &[u8],
) -> Result<()> {
    let mut resp = client.request(
        "PUT",
        &format!("manifests/{object}"),
        &[("Content-Type", media_type.to_string())],
        Payload::Bytes(data),
    )?;
    client.check(&mut resp, &format!("manifest {}:{object}", r.path))
}
