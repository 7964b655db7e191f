//! Checkpoint and restore, as containerd's runc shim drives runc: the Checkpoint RPC runs
//! `checkpoint` into the image directory containerd gives (it makes the checkpoint image of
//! it), and a Create that names a checkpoint creates nothing yet: its Start runs `restore
//! --detach` with the stdio prepared at Create, which CRIU gives to the restored process in
//! place of the old one's.

use crate::io;
use containerd_shim_protos::shim::oci::CheckpointOptions;
use protobuf::well_known_types::any::Any;
use protobuf::Message;
use std::path::{Path, PathBuf};

/// A restore that Start will run: what Create prepared.
pub struct Pending {
    pub prep: io::Prepared,
    /// The checkpoint's image directory (containerd unpacked it there).
    pub image: String,
    /// CRIU's work directory (runc options' CriuWorkPath), if set.
    pub work: String,
}

/// The CheckpointTaskRequest's options: `containerd.runc.v1.CheckpointOptions` (also under
/// its runtime v1 name), or none.
pub fn options(any: Option<&Any>) -> Result<CheckpointOptions, String> {
    let Some(any) = any.filter(|a| !a.type_url.is_empty()) else {
        return Ok(CheckpointOptions::new());
    };
    match any.type_url.rsplit('/').next().unwrap_or("") {
        "containerd.runc.v1.CheckpointOptions" | "containerd.linux.runc.CheckpointOptions" => {
            CheckpointOptions::parse_from_bytes(&any.value)
                .map_err(|e| format!("decoding checkpoint options: {e}"))
        }
        t => Err(format!("unsupported checkpoint options type {t:?}")),
    }
}

/// CRIU's work directory for a checkpoint: the options' WorkPath (kept), else one in the bundle
/// (removed afterwards, as the runc shim does).
pub fn work_dir(o: &CheckpointOptions, bundle: &Path) -> (PathBuf, bool) {
    if o.work_path.is_empty() {
        (bundle.join("criu-work"), true)
    } else {
        (PathBuf::from(&o.work_path), false)
    }
}

/// `checkpoint` and its options as go-runc words them; without Exit the container keeps
/// running (`--leave-running`).
pub fn checkpoint_args(id: &str, image: &str, work: &Path, o: &CheckpointOptions) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "checkpoint".into(),
        "--image-path".into(),
        image.into(),
        "--work-path".into(),
        work.to_string_lossy().into_owned(),
    ];
    for (on, flag) in [
        (o.open_tcp, "--tcp-established"),
        (o.external_unix_sockets, "--ext-unix-sk"),
        (o.terminal, "--shell-job"),
        (o.file_locks, "--file-locks"),
        (!o.exit, "--leave-running"),
    ] {
        if on {
            a.push(flag.into());
        }
    }
    if !o.cgroups_mode.is_empty() {
        a.push("--manage-cgroups-mode".into());
        a.push(o.cgroups_mode.clone());
    }
    for ns in &o.empty_namespaces {
        a.push("--empty-ns".into());
        a.push(ns.clone());
    }
    a.push(id.into());
    a
}

/// `restore --detach` into `bundle`, the pid into `pid_file`, the restored process left to
/// the shim (`--no-subreaper`), as the runc shim's createdCheckpointState starts it.
pub fn restore_args(
    id: &str,
    bundle: &str,
    p: &Pending,
    pid_file: &Path,
    console_socket: Option<&Path>,
    no_pivot: bool,
) -> Vec<String> {
    let mut a: Vec<String> = vec!["restore".into(), "--image-path".into(), p.image.clone()];
    if !p.work.is_empty() {
        a.push("--work-path".into());
        a.push(p.work.clone());
    }
    a.push("--detach".into());
    a.push("--pid-file".into());
    a.push(pid_file.to_string_lossy().into_owned());
    if let Some(cs) = console_socket {
        a.push("--console-socket".into());
        a.push(cs.to_string_lossy().into_owned());
    }
    if no_pivot {
        a.push("--no-pivot".into());
    }
    a.push("--no-subreaper".into());
    a.push("--bundle".into());
    a.push(bundle.into());
    a.push(id.into());
    a
}

/// After a failed checkpoint: CRIU's log kept in the bundle (`criu-dump.log`, the runc shim's
/// name), for the error to point at.
pub fn keep_dump_log(work: &Path, bundle: &Path) -> Option<PathBuf> {
    let dest = bundle.join("criu-dump.log");
    std::fs::copy(work.join("dump.log"), &dest)
        .ok()
        .map(|_| dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_words_follow_go_runc() {
        let mut o = CheckpointOptions::new();
        let a = checkpoint_args("c1", "/img", Path::new("/w"), &o);
        assert_eq!(
            a,
            [
                "checkpoint",
                "--image-path",
                "/img",
                "--work-path",
                "/w",
                "--leave-running",
                "c1"
            ]
        );
        o.exit = true;
        o.open_tcp = true;
        o.terminal = true;
        o.cgroups_mode = "soft".into();
        o.empty_namespaces = vec!["network".into()];
        let a = checkpoint_args("c1", "/img", Path::new("/w"), &o);
        assert!(!a.contains(&"--leave-running".to_string()));
        for w in ["--tcp-established", "--shell-job", "soft", "network"] {
            assert!(a.contains(&w.to_string()), "{w} missing from {a:?}");
        }
    }

    #[test]
    fn options_by_type() {
        assert!(options(None).is_ok_and(|o| !o.exit));
        let mut o = CheckpointOptions::new();
        o.exit = true;
        o.work_path = "/w".into();
        let mut any = Any::new();
        any.type_url = "containerd.runc.v1.CheckpointOptions".into();
        any.value = o.write_to_bytes().unwrap();
        let got = options(Some(&any)).unwrap();
        assert!(got.exit && got.work_path == "/w");
        any.type_url = "example/Other".into();
        assert!(options(Some(&any)).is_err());
    }
}
