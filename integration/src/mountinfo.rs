//! Parsing `/proc/<pid>/mountinfo` text (read inside a container).

#[derive(Clone, Debug)]
pub struct Mount {
    /// The filesystem's device (`major:minor`).
    pub dev: String,
    /// The root of the mount within its filesystem.
    pub root: String,
    pub mount_point: String,
    /// Per-mount options (`rw,nosuid,...`).
    pub opts: Vec<String>,
    /// Optional fields (`shared:N`, `master:N`, `unbindable`, ...).
    pub optional: Vec<String>,
    pub fstype: String,
    /// Superblock options (`size=...,mode=...`).
    pub super_opts: Vec<String>,
}

impl Mount {
    pub fn has_opt(&self, o: &str) -> bool {
        self.opts.iter().any(|x| x == o)
    }

    pub fn has_super_opt(&self, o: &str) -> bool {
        self.super_opts.iter().any(|x| x == o)
    }

    /// Is there an optional field starting with `prefix` (`shared:`, `master:`)?
    pub fn has_optional(&self, prefix: &str) -> bool {
        self.optional.iter().any(|x| x.starts_with(prefix))
    }
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text; lines that are not mountinfo are ignored.
pub fn parse(text: &str) -> Vec<Mount> {
    let mut v = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if sep < 6 || f.len() < sep + 3 {
            continue;
        }
        v.push(Mount {
            dev: f[2].to_string(),
            root: unescape(f[3]),
            mount_point: unescape(f[4]),
            opts: f[5].split(',').map(str::to_string).collect(),
            optional: f[6..sep].iter().map(|s| s.to_string()).collect(),
            fstype: f[sep + 1].to_string(),
            super_opts: f
                .get(sep + 3)
                .map(|s| s.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
        });
    }
    v
}

/// The topmost (last) mount at `mount_point`.
pub fn find<'a>(mounts: &'a [Mount], mount_point: &str) -> Option<&'a Mount> {
    mounts.iter().rev().find(|m| m.mount_point == mount_point)
}

/// Like [`find`], failing with a message that lists what was mounted.
pub fn require<'a>(
    mounts: &'a [Mount],
    mount_point: &str,
) -> Result<&'a Mount, crate::harness::Failure> {
    find(mounts, mount_point).ok_or_else(|| {
        let all: Vec<&str> = mounts.iter().map(|m| m.mount_point.as_str()).collect();
        crate::harness::Failure::Fail(format!("no mount at {mount_point}; mounts: {all:?}"))
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn parses() {
        let t = "36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n\
                 40 35 0:5 / /tmp ro,nosuid - tmpfs tmpfs rw,size=1024k,mode=710\n";
        let m = parse(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, "/mnt 2");
        assert!(m[0].has_optional("master:") && m[0].has_optional("shared:"));
        assert_eq!(m[1].fstype, "tmpfs");
        assert!(m[1].has_opt("ro") && m[1].has_super_opt("mode=710"));
        assert!(find(&m, "/tmp").is_some());
    }
}
