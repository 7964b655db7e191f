//! Runtime options, as containerd's runc shim reads them: `containerd.runc.v1.Options` in
//! CreateTaskRequest.options (BinaryName, Root, SystemdCgroup, NoPivotRoot, NoNewKeyring,
//! IoUid/IoGid), or `runtimeoptions.v1.Options` whose ConfigPath names a TOML file with the same
//! keys (what the CRI plugin sends for a non-runc runtime type). They are saved in the bundle
//! (`options.json`) so that `delete` of a dead shim drives the same runtime.

use anyhow::{bail, Context, Result};
use containerd_shim_protos::shim::oci::Options as RuncOptions;
use protobuf::well_known_types::any::Any;
use protobuf::Message;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuntimeOpts {
    pub binary_name: String,
    pub root: String,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    pub io_uid: u32,
    pub io_gid: u32,
    pub shim_cgroup: String,
    /// CRIU's work directory for restores (runc's CriuWorkPath; default: the image's).
    pub criu_work_path: String,
}

pub const OPTIONS_FILE: &str = "options.json";
/// Default root of the runtime's state, below which each namespace gets a directory.
pub const DEFAULT_ROOT: &str = "/run/containerd/berth";

fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or("")
}

impl RuntimeOpts {
    pub fn from_any(any: &Any) -> Result<RuntimeOpts> {
        match type_name(any) {
            "containerd.runc.v1.Options" | "containerd.linux.runc.RuncOptions" => {
                let o =
                    RuncOptions::parse_from_bytes(&any.value).context("decoding runc options")?;
                Ok(RuntimeOpts {
                    binary_name: o.binary_name,
                    root: o.root,
                    systemd_cgroup: o.systemd_cgroup,
                    no_pivot_root: o.no_pivot_root,
                    no_new_keyring: o.no_new_keyring,
                    io_uid: o.io_uid,
                    io_gid: o.io_gid,
                    shim_cgroup: o.shim_cgroup,
                    criu_work_path: o.criu_work_path,
                })
            }
            "runtimeoptions.v1.Options" => {
                let (_, config_path) = decode_runtimeoptions(&any.value)?;
                if config_path.is_empty() {
                    return Ok(RuntimeOpts::default());
                }
                let text = std::fs::read_to_string(&config_path)
                    .with_context(|| format!("reading runtime config {config_path}"))?;
                parse_toml(&text).with_context(|| format!("runtime config {config_path}"))
            }
            "" => Ok(RuntimeOpts::default()),
            t => bail!("unsupported runtime options type {t:?}"),
        }
    }

    pub fn save(&self, bundle: &Path) -> Result<()> {
        let path = bundle.join(OPTIONS_FILE);
        std::fs::write(&path, serde_json::to_vec(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn load(bundle: &Path) -> RuntimeOpts {
        std::fs::read(bundle.join(OPTIONS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The runtime binary: BinaryName (a path, or a name looked up in PATH), else `berth` next to
    /// this shim, else `berth` in PATH.
    pub fn binary(&self) -> PathBuf {
        if !self.binary_name.is_empty() {
            return lookup(&self.binary_name);
        }
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            let p = dir.join("berth");
            if p.is_file() {
                return p;
            }
        }
        lookup("berth")
    }

    /// The runtime's state root for a namespace: `<Root or default>/<namespace>`.
    pub fn root(&self, namespace: &str) -> PathBuf {
        let base = if self.root.is_empty() {
            DEFAULT_ROOT
        } else {
            &self.root
        };
        Path::new(base).join(namespace)
    }
}

fn lookup(name: &str) -> PathBuf {
    if name.contains('/') {
        return PathBuf::from(name);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    PathBuf::from(name)
}

/// runtimeoptions.v1.Options { string type_url = 1; string config_path = 2; }
fn decode_runtimeoptions(b: &[u8]) -> Result<(String, String)> {
    let mut is = protobuf::CodedInputStream::from_bytes(b);
    let (mut type_url, mut config_path) = (String::new(), String::new());
    while let Some(tag) = is.read_raw_tag_or_eof()? {
        match tag {
            10 => type_url = is.read_string()?,
            18 => config_path = is.read_string()?,
            t => is.skip_field(protobuf::rt::WireType::new(t & 7).context("bad wire type")?)?,
        }
    }
    Ok((type_url, config_path))
}

/// The TOML subset a runtime config file needs: `Key = "string" | true | false | number`
/// lines, comments and (ignored) table headers. Keys as in containerd's runc options.
pub fn parse_toml(text: &str) -> Result<RuntimeOpts> {
    let mut o = RuntimeOpts::default();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('[') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!("line {}: expected key = value", n + 1);
        };
        let k = k.trim().trim_matches('"');
        let v = v.trim();
        let s = || -> Result<String> {
            v.strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .map(str::to_string)
                .with_context(|| format!("line {}: {k} needs a quoted string", n + 1))
        };
        let b = || -> Result<bool> {
            match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => bail!("line {}: {k} needs true or false", n + 1),
            }
        };
        let u = || -> Result<u32> {
            v.parse()
                .with_context(|| format!("line {}: {k} needs a number", n + 1))
        };
        match k {
            "BinaryName" | "binary_name" => o.binary_name = s()?,
            "Root" | "root" => o.root = s()?,
            "SystemdCgroup" | "systemd_cgroup" => o.systemd_cgroup = b()?,
            "NoPivotRoot" | "no_pivot_root" => o.no_pivot_root = b()?,
            "NoNewKeyring" | "no_new_keyring" => o.no_new_keyring = b()?,
            "IoUid" | "io_uid" => o.io_uid = u()?,
            "IoGid" | "io_gid" => o.io_gid = u()?,
            "ShimCgroup" | "shim_cgroup" => o.shim_cgroup = s()?,
            "CriuWorkPath" | "criu_work_path" => o.criu_work_path = s()?,
            _ => {}
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_options_any() {
        let mut o = RuncOptions::new();
        o.binary_name = "/usr/sbin/runc".into();
        o.root = "/r".into();
        o.systemd_cgroup = true;
        let mut any = Any::new();
        any.type_url = "containerd.runc.v1.Options".into();
        any.value = o.write_to_bytes().unwrap();
        let r = RuntimeOpts::from_any(&any).unwrap();
        assert_eq!(r.binary_name, "/usr/sbin/runc");
        assert_eq!(r.root("default"), PathBuf::from("/r/default"));
        assert!(r.systemd_cgroup);
        assert_eq!(r.binary(), PathBuf::from("/usr/sbin/runc"));
    }

    #[test]
    fn runtimeoptions_config_path() {
        let dir = std::env::temp_dir().join(format!("berth-shim-opt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("cfg.toml");
        std::fs::write(
            &cfg,
            "# runtime\n[options]\nBinaryName = \"/x/runc\"\nSystemdCgroup = false\nIoUid = 7\n",
        )
        .unwrap();
        // runtimeoptions.v1.Options { type_url = 1, config_path = 2 }
        let mut v = vec![10, 1, b'x', 18, cfg.as_os_str().len() as u8];
        v.extend_from_slice(cfg.as_os_str().as_encoded_bytes());
        let mut any = Any::new();
        any.type_url = "runtimeoptions.v1.Options".into();
        any.value = v;
        let r = RuntimeOpts::from_any(&any).unwrap();
        assert_eq!((r.binary_name.as_str(), r.io_uid), ("/x/runc", 7));
        r.save(&dir).unwrap();
        assert_eq!(RuntimeOpts::load(&dir), r);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn toml_errors_and_defaults() {
        assert!(parse_toml("BinaryName = runc").is_err());
        assert!(parse_toml("SystemdCgroup = yes").is_err());
        assert_eq!(parse_toml("Other = 1\n").unwrap(), RuntimeOpts::default());
        assert_eq!(
            RuntimeOpts::default().root("ns"),
            PathBuf::from("/run/containerd/berth/ns")
        );
        let mut any = Any::new();
        any.type_url = "types.example/Other".into();
        assert!(RuntimeOpts::from_any(&any).is_err());
    }
}
