//! containerd's shim command line: Go `flag` syntax (`-name value`, `-name=value`, `--name`),
//! then an optional action (`start`, `delete`); no action means "serve".

use std::path::PathBuf;

#[derive(Debug, Default, Clone)]
pub struct Args {
    pub namespace: String,
    pub id: String,
    pub address: String,
    pub publish_binary: String,
    pub bundle: Option<PathBuf>,
    pub socket: Option<String>,
    pub debug: bool,
    pub version: bool,
    pub info: bool,
    pub action: Option<String>,
}

const VALUE_FLAGS: &[&str] = &[
    "namespace",
    "id",
    "address",
    "publish-binary",
    "bundle",
    "socket",
];
const BOOL_FLAGS: &[&str] = &["debug", "v", "version", "info"];

fn parse_bool(flag: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {v:?} for -{flag}")),
    }
}

pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = argv.into_iter().peekable();
    while let Some(arg) = it.next() {
        if arg == "--" {
            a.action = it.next();
            break;
        }
        let Some(stripped) = arg.strip_prefix('-') else {
            a.action = Some(arg);
            break;
        };
        let stripped = stripped.strip_prefix('-').unwrap_or(stripped);
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (stripped, None),
        };
        if BOOL_FLAGS.contains(&name) {
            let v = match inline {
                Some(v) => parse_bool(name, &v)?,
                None => true,
            };
            match name {
                "debug" => a.debug = v,
                "info" => a.info = v,
                _ => a.version = v,
            }
        } else if VALUE_FLAGS.contains(&name) {
            let v = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .ok_or_else(|| format!("flag needs an argument: -{name}"))?,
            };
            match name {
                "namespace" => a.namespace = v,
                "id" => a.id = v,
                "address" => a.address = v,
                "publish-binary" => a.publish_binary = v,
                "bundle" => a.bundle = Some(PathBuf::from(v)),
                _ => a.socket = Some(v),
            }
        } else {
            return Err(format!("flag provided but not defined: -{name}"));
        }
    }
    Ok(a)
}

/// The arguments a server process gets: everything but the action.
pub fn server_args(a: &Args) -> Vec<String> {
    let mut v = vec![
        "-namespace".to_string(),
        a.namespace.clone(),
        "-id".to_string(),
        a.id.clone(),
        "-address".to_string(),
        a.address.clone(),
    ];
    if !a.publish_binary.is_empty() {
        v.push("-publish-binary".into());
        v.push(a.publish_binary.clone());
    }
    if a.debug {
        v.push("-debug".into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn containerd_start_line() {
        let a = p("-namespace default -address /run/c.sock -publish-binary /usr/bin/containerd -id abc start").unwrap();
        assert_eq!(a.namespace, "default");
        assert_eq!(a.address, "/run/c.sock");
        assert_eq!(a.publish_binary, "/usr/bin/containerd");
        assert_eq!(a.id, "abc");
        assert_eq!(a.action.as_deref(), Some("start"));
        assert!(!a.debug);
    }

    #[test]
    fn delete_with_bundle_and_equals_and_debug() {
        let a = p("--namespace=k8s.io -debug -id=x -bundle /b delete").unwrap();
        assert_eq!(a.namespace, "k8s.io");
        assert!(a.debug);
        assert_eq!(a.id, "x");
        assert_eq!(a.bundle, Some(PathBuf::from("/b")));
        assert_eq!(a.action.as_deref(), Some("delete"));
        let a = p("-debug=false -id x").unwrap();
        assert!(!a.debug);
        assert_eq!(a.action, None);
    }

    #[test]
    fn errors() {
        assert!(p("-bogus 1 start").unwrap_err().contains("bogus"));
        assert!(p("-id").unwrap_err().contains("-id"));
        assert!(p("-debug=maybe").is_err());
    }

    #[test]
    fn server_args_roundtrip() {
        let a = p("-namespace n -address a -publish-binary b -id i -debug start").unwrap();
        let b = parse(server_args(&a)).unwrap();
        assert_eq!(
            (b.namespace, b.address, b.publish_binary, b.id, b.debug),
            ("n".into(), "a".into(), "b".into(), "i".into(), true)
        );
        assert_eq!(b.action, None);
    }
}
