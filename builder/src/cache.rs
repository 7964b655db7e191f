//! The build cache: a step's key and what a hit gives back.
//!
//! A step's key is the digest of the whole state it starts from and of what it does:
//! - the parent's key (the first step's parent is the base image's id, or `scratch`);
//! - the stage's image config as it is before the step (ENV, USER, WORKDIR, SHELL, ...);
//! - the ARGs in scope with their values (RUN sees them in its environment);
//! - the instruction as written, and as expanded with those variables;
//! - for COPY and ADD the digest of the selected context files (see `context::digest`).
//!
//! So a change to a COPYed file changes that step's key and, through the parent chain, every
//! later one; an unchanged rebuild finds every key. Entries are JSON files named by key, each
//! written atomically; `prune` removes them all (or those older than a bound).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What a step's key is made of.
pub struct StepInput<'a> {
    pub parent: &'a str,
    pub config: &'a Map<String, Value>,
    pub args: &'a [(String, Option<String>)],
    pub original: &'a str,
    pub expanded: &'a str,
    pub content: Option<&'a str>,
}

/// The key of a step (`sha256:<hex>`).
pub fn step_key(input: &StepInput<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        // Length-prefixed, so that no two inputs give the same byte stream.
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    };
    field("parent", input.parent.as_bytes());
    // serde_json's maps are sorted: the same config gives the same bytes.
    field(
        "config",
        &serde_json::to_vec(input.config).unwrap_or_default(),
    );
    let mut args: Vec<String> = input
        .args
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    args.sort();
    field("args", args.join("\0").as_bytes());
    field("original", input.original.as_bytes());
    field("expanded", input.expanded.as_bytes());
    field("content", input.content.unwrap_or("").as_bytes());
    format!("sha256:{:x}", h.finalize())
}

/// Cache entries in a directory.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(dir: &Path) -> std::io::Result<Cache> {
        fs::create_dir_all(dir)?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir
            .join(key.strip_prefix("sha256:").unwrap_or(key))
            .with_extension("json")
    }

    /// The entry of `key`, if there is a readable one.
    pub fn get(&self, key: &str) -> Option<Value> {
        let bytes = fs::read(self.path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Record `entry` for `key` (written to a temp file, then renamed).
    pub fn put(&self, key: &str, entry: &Value) -> std::io::Result<()> {
        let p = self.path(key);
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        fs::write(
            &tmp,
            serde_json::to_vec(entry).map_err(std::io::Error::other)?,
        )?;
        fs::rename(tmp, p)
    }

    /// Remove the entries not used for `older_than` (all with None); returns how many.
    pub fn prune(&self, older_than: Option<Duration>) -> std::io::Result<usize> {
        let now = SystemTime::now();
        let mut n = 0;
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            let old = match older_than {
                None => true,
                Some(d) => e
                    .metadata()?
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age > d),
            };
            if old {
                fs::remove_file(e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(
        parent: &str,
        env: &str,
        args: &[(&str, Option<&str>)],
        text: &str,
        content: Option<&str>,
    ) -> String {
        let config = json!({"Env": [env]}).as_object().unwrap().clone();
        let args: Vec<(String, Option<String>)> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect();
        step_key(&StepInput {
            parent,
            config: &config,
            args: &args,
            original: text,
            expanded: text,
            content,
        })
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = key("img", "A=1", &[("V", Some("1"))], "RUN make", None);
        assert_eq!(
            base,
            key("img", "A=1", &[("V", Some("1"))], "RUN make", None)
        );
        for other in [
            key("img2", "A=1", &[("V", Some("1"))], "RUN make", None),
            key("img", "A=2", &[("V", Some("1"))], "RUN make", None),
            key("img", "A=1", &[("V", Some("2"))], "RUN make", None),
            key("img", "A=1", &[("V", None)], "RUN make", None),
            key("img", "A=1", &[("V", Some("1"))], "RUN make all", None),
            key(
                "img",
                "A=1",
                &[("V", Some("1"))],
                "RUN make",
                Some("sha256:1"),
            ),
        ] {
            assert_ne!(other, base);
        }
        // The order ARGs were declared in does not matter.
        assert_eq!(
            key("p", "", &[("A", Some("1")), ("B", None)], "x", None),
            key("p", "", &[("B", None), ("A", Some("1"))], "x", None)
        );
        // Fields cannot run into each other.
        assert_ne!(key("ab", "", &[], "c", None), key("a", "", &[], "bc", None));
    }

    #[test]
    fn entries_round_trip_and_prune() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(&t.path().join("cache")).unwrap();
        let k = key("p", "", &[], "RUN x", None);
        assert_eq!(c.get(&k), None);
        c.put(&k, &json!({"layer": "sha256:ab"})).unwrap();
        assert_eq!(c.get(&k), Some(json!({"layer": "sha256:ab"})));
        assert_eq!(c.prune(Some(Duration::from_secs(3600))).unwrap(), 0);
        assert_eq!(c.prune(None).unwrap(), 1);
        assert_eq!(c.get(&k), None);
    }
}
