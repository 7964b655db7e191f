//! OCI hooks: run a program with the container's state JSON on stdin, its args and env, and
//! an optional timeout.
//!
//! Errors read as runc's (`error running poststart hook #0: error running hook: exit status
//! 1, ...`): runc's own tests and tools look for `error running hook`.

use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use oci_spec::runtime::{Hook, Hooks};

#[derive(Debug, thiserror::Error)]
#[error(
    "error running {kind} hook #{index} {}: error running hook: {}",
    crate::error::echo_path(.path),
    crate::error::bound_text(.msg, 4096)
)]
pub struct HookError {
    pub kind: &'static str,
    pub index: usize,
    pub path: PathBuf,
    pub msg: String,
}

fn list(hooks: Option<&Vec<Hook>>) -> &[Hook] {
    hooks.map(|h| h.as_slice()).unwrap_or_default()
}

/// Run the hooks of one kind in order, in `cwd` (else this process's cwd); the first failure
/// stops the rest. runc runs them in the bundle (it chdirs there), createContainer hooks in the
/// container's rootfs.
pub fn run(
    cwd: Option<&Path>,
    kind: &'static str,
    hooks: Option<&Vec<Hook>>,
    state: &[u8],
) -> Result<(), HookError> {
    for (index, hook) in list(hooks).iter().enumerate() {
        run_one(hook, state, cwd).map_err(|msg| HookError {
            kind,
            index,
            path: hook.path().clone(),
            msg,
        })?;
    }
    Ok(())
}

/// Run every hook of one kind, whatever the others did, and return the failures: the
/// runtime-spec's rule for poststop hooks ("log a warning, continue with the remaining hooks").
/// `cwd`: their working directory (else this process's).
pub fn run_all(
    cwd: Option<&Path>,
    kind: &'static str,
    hooks: Option<&Vec<Hook>>,
    state: &[u8],
) -> Vec<HookError> {
    list(hooks)
        .iter()
        .enumerate()
        .filter_map(|(index, hook)| {
            run_one(hook, state, cwd).err().map(|msg| HookError {
                kind,
                index,
                path: hook.path().clone(),
                msg,
            })
        })
        .collect()
}

fn run_one(hook: &Hook, state: &[u8], cwd: Option<&Path>) -> Result<(), String> {
    let mut cmd = Command::new(hook.path());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    if let Some(args) = hook.args() {
        if let Some((first, rest)) = args.split_first() {
            cmd.arg0(first).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().as_deref().unwrap_or_default() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // Output goes to an anonymous file, not a pipe: a hook's own children may keep a pipe
    // open long after the hook exits.
    let out = crate::sys::memfd_create(c"berth-hook-output", libc::MFD_CLOEXEC)
        .map(std::fs::File::from)
        .map_err(|e| format!("memfd: {e}"))?;
    let out_fd = out.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out_fd.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(out_fd));
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook need not read its stdin; EPIPE is not an error.
        let _ = stdin.write_all(state);
    }
    let status = match hook.timeout() {
        Some(secs) => {
            let pidfd = crate::sys::pidfd_open(child.id() as i32).map_err(|e| e.to_string())?;
            let limit = std::time::Duration::from_secs(secs.max(0) as u64);
            let exited =
                crate::sys::pidfd_wait(pidfd.as_fd(), Some(limit)).map_err(|e| e.to_string())?;
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {secs}s"));
            }
            child.wait()
        }
        None => child.wait(),
    }
    .map_err(|e| e.to_string())?;
    if status.success() {
        return Ok(());
    }
    let mut output = String::new();
    let mut out = out;
    let _ = out.rewind();
    let _ = out.take(4096).read_to_string(&mut output);
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    };
    let output = output.trim();
    if output.is_empty() {
        Err(how)
    } else {
        Err(format!("{how}, output: {output}"))
    }
}

/// Check hooks before anything runs: absolute paths, positive timeouts.
pub fn validate(hooks: &Hooks) -> Result<(), String> {
    #[allow(deprecated)]
    let kinds = [
        ("prestart", hooks.prestart()),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
        ("startContainer", hooks.start_container()),
        ("poststart", hooks.poststart()),
        ("poststop", hooks.poststop()),
    ];
    for (kind, list) in kinds {
        for (i, h) in list.as_deref().unwrap_or_default().iter().enumerate() {
            if !h.path().is_absolute() {
                return Err(format!(
                    "hooks.{kind}[{i}].path: {} is not absolute",
                    crate::error::echo_path(h.path())
                ));
            }
            if h.timeout().is_some_and(|t| t <= 0) {
                return Err(format!("hooks.{kind}[{i}].timeout: must be positive"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> Hook {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn passes_state_args_and_env() {
        let dir = std::env::temp_dir().join(format!("berth-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let h = hook(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}; echo \" $0 $1 $FOO\" >> {}", out.display(), out.display()), "zero", "one"],
            "env": ["FOO=bar"]
        }));
        run(None, "prestart", Some(&vec![h]), b"{\"id\":\"x\"}").unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"x\"} zero one bar\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failure_and_timeout_are_errors_with_output() {
        let h = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "echo oops >&2; exit 3"]}),
        );
        let e = run(None, "poststop", Some(&vec![h]), b"{}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("error running poststop hook #0")
                && e.contains("error running hook: exit status 3")
                && e.contains("oops"),
            "{e}"
        );
        let h =
            hook(serde_json::json!({"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}));
        let t = std::time::Instant::now();
        let e = run(None, "prestart", Some(&vec![h]), b"{}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timed out after 1s"), "{e}");
        assert!(t.elapsed().as_secs() < 5);
    }

    #[test]
    fn run_all_runs_every_hook_and_returns_each_failure() {
        let dir = std::env::temp_dir().join(format!("berth-hook-all-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let sh = |script: String| {
            hook(serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", script]}))
        };
        let hooks = vec![
            sh(format!("echo one >> {}; exit 1", out.display())),
            sh(format!("echo two >> {}", out.display())),
            sh(format!("echo three >> {}; exit 2", out.display())),
        ];
        let errs = run_all(None, "poststop", Some(&hooks), b"{}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "one\ntwo\nthree\n");
        let idx: Vec<usize> = errs.iter().map(|e| e.index).collect();
        assert_eq!(idx, [0, 2]);
        // `run` stops at the first failure.
        std::fs::remove_file(&out).unwrap();
        assert!(run(None, "prestart", Some(&hooks), b"{}").is_err());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "one\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn run_sets_the_working_directory() {
        let dir = std::env::temp_dir().join(format!("berth-hook-cwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let h =
            hook(serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "pwd > cwd-seen"]}));
        run(Some(&dir), "createContainer", Some(&vec![h]), b"{}").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("cwd-seen"))
                .unwrap()
                .trim(),
            dir.to_str().unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
