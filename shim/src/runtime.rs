//! The runtime, driven through the runc command-line contract:
//! `RUNTIME --root R --log BUNDLE/log.json --log-format json [--systemd-cgroup] CMD ...`.
//! Every call is synchronous (the shim is single-threaded; calls take milliseconds). A failed
//! call's error is the runtime's last `error` line in its JSON log, as the runc shim reports it.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub systemd: bool,
    pub log: PathBuf,
}

/// Stdio for a runtime call: the container's own (create/exec) or captured.
#[derive(Default)]
pub struct CallIo {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub input: Option<Vec<u8>>,
    /// The call starts a container process that inherits its stdio.
    pub container: bool,
}

impl Runtime {
    pub fn new(binary: PathBuf, root: PathBuf, systemd: bool, bundle: &Path) -> Runtime {
        Runtime {
            binary,
            root,
            systemd,
            log: bundle.join("log.json"),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        if self.systemd {
            c.arg("--systemd-cgroup");
        }
        c
    }

    fn name(&self) -> String {
        self.binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "runtime".into())
    }

    /// Run `args`; on success return the captured stdout (empty when stdout was given).
    pub fn call<S: AsRef<OsStr>>(&self, args: &[S], io: CallIo) -> Result<Vec<u8>, String> {
        let mut cmd = self.command();
        cmd.args(args);
        // A call that starts a container process (create, exec) never captures: what it does
        // not get from containerd is /dev/null, or the process would hold our pipes open.
        let capture_out = io.stdout.is_none() && !io.container;
        let capture_err = io.stderr.is_none() && !io.container;
        let own = |fd: Option<OwnedFd>, capture: bool| match fd {
            Some(fd) => Stdio::from(fd),
            None if capture => Stdio::piped(),
            None => Stdio::null(),
        };
        cmd.stdin(match (io.stdin, &io.input) {
            (Some(fd), _) => Stdio::from(fd),
            (None, Some(_)) => Stdio::piped(),
            (None, None) => Stdio::null(),
        });
        cmd.stdout(own(io.stdout, capture_out));
        cmd.stderr(own(io.stderr, capture_err));
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let verb = args
            .first()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .unwrap_or_default();
        let started = std::time::Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {} {verb}: {e}", self.binary.display()))?;
        if let Some(input) = io.input {
            if let Some(mut w) = child.stdin.take() {
                let _ = w.write_all(&input);
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for {} {verb}: {e}", self.name()))?;
        crate::debug!(
            "{} {verb}: {} in {:?}",
            self.name(),
            out.status,
            started.elapsed()
        );
        if out.status.success() {
            return Ok(if capture_out { out.stdout } else { Vec::new() });
        }
        let mut msg = last_error(&self.log, log_start).unwrap_or_default();
        if msg.is_empty() && capture_err {
            msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        if msg.is_empty() {
            msg = "no error message".into();
        }
        let status = match out.status.code() {
            Some(c) => format!("exit status {c}"),
            None => format!("{}", out.status),
        };
        Err(format!("{} {verb} failed: {msg}: {status}", self.name()))
    }
}

/// The message of the last `"level":"error"` (or fatal) line written to the log after `from`.
pub fn last_error(log: &Path, from: u64) -> Option<String> {
    let mut f = File::open(log).ok()?;
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut text = String::new();
    f.take(1 << 20).read_to_string(&mut text).ok()?;
    let mut last = None;
    for line in text.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => {
                let lvl = v.get("level").and_then(|l| l.as_str()).unwrap_or("");
                if matches!(lvl, "error" | "fatal" | "panic") {
                    if let Some(m) = v.get("msg").and_then(|m| m.as_str()) {
                        last = Some(m.to_string());
                    }
                }
            }
            Err(_) if !line.trim().is_empty() => last = Some(line.trim().to_string()),
            Err(_) => {}
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-shim-rt-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn error_from_json_log() {
        let d = tmpdir("log");
        let log = d.join("log.json");
        std::fs::write(&log, "{\"level\":\"error\",\"msg\":\"old\"}\n").unwrap();
        let from = std::fs::metadata(&log).unwrap().len();
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(f, "{{\"level\":\"info\",\"msg\":\"fine\"}}").unwrap();
        writeln!(
            f,
            "{{\"level\":\"error\",\"msg\":\"container \\\"x\\\" does not exist\"}}"
        )
        .unwrap();
        assert_eq!(
            last_error(&log, from).as_deref(),
            Some("container \"x\" does not exist")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn call_shell_as_runtime() {
        let d = tmpdir("call");
        let script = d.join("rt");
        std::fs::write(
            &script,
            "#!/bin/sh\n# args: --root R --log L --log-format json CMD...\nlog=$4; shift 6\ncase \"$1\" in\n  ok) echo \"out $2\";;\n  cat) cat;;\n  *) echo '{\"level\":\"error\",\"msg\":\"bad thing\"}' >> \"$log\"; exit 3;;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let rt = Runtime::new(script, d.join("root"), false, &d);
        assert_eq!(
            rt.call(&["ok", "x"], CallIo::default()).unwrap(),
            b"out x\n"
        );
        let io = CallIo {
            input: Some(b"in".to_vec()),
            ..Default::default()
        };
        assert_eq!(rt.call(&["cat"], io).unwrap(), b"in");
        let e = rt.call(&["fail"], CallIo::default()).unwrap_err();
        assert!(e.contains("fail failed: bad thing: exit status 3"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
