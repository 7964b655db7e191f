//! Image references, normalized the way docker and containerd do it:
//! `busybox` is `docker.io/library/busybox:latest`, `127.0.0.1:5000/x` is
//! `127.0.0.1:5000/x:latest`, `name@sha256:...` pins a digest.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const DEFAULT_DOMAIN: &str = "docker.io";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (and port): `docker.io`, `127.0.0.1:5000`.
    pub domain: String,
    /// Repository path: `library/busybox`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

fn valid_path_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |why: &str| Error::invalid("image reference", format!("{s:?}: {why}"));
        if s.is_empty() || s.len() > 512 {
            return Err(bad("empty or too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|_| bad("bad digest"))?)),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => {
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(bad("invalid tag"));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if !valid_domain(&domain) {
            return Err(bad("invalid registry host"));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.split('/').any(|c| !valid_path_component(c)) {
            return Err(bad(
                "invalid repository name (lowercase letters, digits, '.', '_', '-', '/')",
            ));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short form docker prints: `busybox` for `docker.io/library/busybox`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix("library/")
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        }
    }

    /// The host to speak the registry API to.
    pub fn registry_host(&self) -> &str {
        if self.domain == DEFAULT_DOMAIN {
            "registry-1.docker.io"
        } else {
            &self.domain
        }
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar_repository(), "busybox");
        assert_eq!(r.registry_host(), "registry-1.docker.io");
        assert_eq!(
            Reference::parse("foo/bar:1.0").unwrap().to_string(),
            "docker.io/foo/bar:1.0"
        );
        let l = Reference::parse("127.0.0.1:5000/busybox").unwrap();
        assert_eq!(l.to_string(), "127.0.0.1:5000/busybox:latest");
        assert_eq!(l.registry_host(), "127.0.0.1:5000");
        assert_eq!(l.familiar_repository(), "127.0.0.1:5000/busybox");
        assert_eq!(
            Reference::parse("localhost/a/b:t").unwrap().to_string(),
            "localhost/a/b:t"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let p = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(p.tag, None);
        assert_eq!(p.object(), d);
        assert_eq!(
            Reference::parse("docker.io/library/busybox:latest").unwrap(),
            Reference::parse("busybox:latest").unwrap()
        );
        for bad in ["", "UPPER", "a//b", "a:", "a:b/c:", "-a", "a@sha256:12"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
