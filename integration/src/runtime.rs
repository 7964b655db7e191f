//! Driving the runtime under test through runc's command-line contract.

use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Failure;

/// How long one runtime command may take before the harness kills it: 20 s, times
/// `BERTH_TEST_TIMEOUT_SCALE` (an integer, default 1; hack/test.sh sets it in the slow VM).
pub fn cmd_timeout() -> Duration {
    Duration::from_secs(20) * timeout_scale()
}

/// `BERTH_TEST_TIMEOUT_SCALE`, or 1.
pub fn timeout_scale() -> u32 {
    static SCALE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SCALE.get_or_init(|| {
        std::env::var("BERTH_TEST_TIMEOUT_SCALE")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n >= 1)
            .unwrap_or(1)
    })
}

/// The result of one runtime command.
#[derive(Debug)]
pub struct Out {
    pub cmd: String,
    /// Exit code; `None` if killed by a signal or by the harness's timeout.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    /// After a timeout: where the command's processes waited ([`hang_report`]); shown by
    /// [`Out::describe`].
    pub hang: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// A one-line description for failure messages.
    pub fn describe(&self) -> String {
        let status = match (self.code, self.timed_out) {
            (_, true) => "timed out".to_string(),
            (Some(c), _) => format!("exit {c}"),
            (None, _) => "killed by a signal".to_string(),
        };
        format!(
            "`{}` -> {status}; stdout {:?}; stderr {:?}",
            self.cmd,
            crate::campaign::clip(&self.stdout, 600),
            crate::campaign::clip(&self.stderr, 600)
        ) + &self.hang
    }

    /// Require exit status 0.
    pub fn ok(self) -> Result<Out, Failure> {
        if self.success() {
            Ok(self)
        } else {
            Err(Failure::Fail(self.describe()))
        }
    }

    /// Require a non-zero exit (not a timeout, not a crash by signal) and a message on stderr.
    pub fn failed(self) -> Result<Out, Failure> {
        match self.code {
            Some(c) if c != 0 && !self.timed_out => {
                if self.stderr.trim().is_empty() {
                    Err(Failure::Fail(format!(
                        "failed without a message on stderr: {}",
                        self.describe()
                    )))
                } else {
                    Ok(self)
                }
            }
            _ => Err(Failure::Fail(format!(
                "expected a non-zero exit: {}",
                self.describe()
            ))),
        }
    }

    /// Require stderr to mention `needle` (case-insensitive).
    pub fn stderr_mentions(&self, needle: &str) -> Result<(), Failure> {
        if self.stderr.to_lowercase().contains(&needle.to_lowercase()) {
            Ok(())
        } else {
            Err(Failure::Fail(format!(
                "stderr does not mention {needle:?}: {}",
                self.describe()
            )))
        }
    }

    /// Parse stdout as JSON.
    pub fn json(&self) -> Result<Value, Failure> {
        serde_json::from_str(&self.stdout)
            .map_err(|e| Failure::Fail(format!("stdout is not JSON ({e}): {}", self.describe())))
    }
}

/// A runtime command started in the background (see [`Runtime::spawn`]).
pub struct Pending {
    cmd: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Pending {
    /// Wait for the command (killing it after `timeout`) and collect its output.
    pub fn wait(mut self, timeout: Duration) -> Out {
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        let mut hang = String::new();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    timed_out = true;
                    let tree;
                    (hang, tree) = hang_report(self.child.id());
                    // Our own child, by pid (Child::kill), then what it started (the tree just
                    // read: a runtime's init left behind would otherwise outlive the test).
                    let _ = self.child.kill();
                    for &pid in &tree[1..] {
                        crate::clients::kill_pid(pid, "KILL");
                    }
                    break self.child.wait().ok();
                }
                Err(_) => break None,
            }
        };
        let read = |p: &Path| {
            let s = std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let _ = std::fs::remove_file(p);
            s
        };
        Out {
            cmd: self.cmd,
            code: if timed_out {
                None
            } else {
                status.and_then(|s| s.code())
            },
            stdout: read(&self.out),
            stderr: read(&self.err),
            timed_out,
            hang,
        }
    }
}

/// At most this many processes in a hang report.
const HANG_REPORT_MAX: usize = 32;

/// Where a timed-out command and its descendants wait, for [`Out::describe`], so that a hang
/// seen once (in CI, in the VM) says where it was: each process's pid, name, state, wchan, the
/// wchans of its threads (Go's runc blocks in a thread other than its first) and its kernel
/// stack where readable. Also the pids of that tree, children after parents, at most
/// [`HANG_REPORT_MAX`].
pub fn hang_report(root: u32) -> (String, Vec<u32>) {
    // (pid, stat) of every process.
    let procs: Vec<(u32, crate::context::ProcStat)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, crate::context::proc_stat(pid)?)))
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() && tree.len() < HANG_REPORT_MAX {
        let parent = tree[i];
        for p in procs.iter().filter(|p| p.1.ppid == parent) {
            if !tree.contains(&p.0) && tree.len() < HANG_REPORT_MAX {
                tree.push(p.0);
            }
        }
        i += 1;
    }
    let read = |p: String| std::fs::read_to_string(p).unwrap_or_default();
    let mut report = String::from("\n[hang report: the command's process tree when it timed out]");
    for &pid in &tree {
        let Some((_, st)) = procs.iter().find(|p| p.0 == pid) else {
            continue;
        };
        let (ppid, comm, state) = (st.ppid, &st.comm, st.state);
        let wchan = read(format!("/proc/{pid}/wchan"));
        let stack = read(format!("/proc/{pid}/stack"))
            .lines()
            .take(8)
            .map(|l| l.trim_start_matches("[<0>] ").to_string())
            .collect::<Vec<_>>()
            .join(" < ");
        // The threads' wchans, counted: "futex_wait_queue x5, ep_poll".
        let mut threads: Vec<(String, usize)> = Vec::new();
        for t in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let w = read(format!("{}/wchan", t.path().display()));
            let w = if w.is_empty() { "-".to_string() } else { w };
            match threads.iter_mut().find(|(name, _)| *name == w) {
                Some((_, n)) => *n += 1,
                None => threads.push((w, 1)),
            }
        }
        let threads = threads
            .iter()
            .map(|(w, n)| {
                if *n > 1 {
                    format!("{w} x{n}")
                } else {
                    w.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        report += &format!(
            "\n  pid {pid} ppid {ppid} {comm:?} state {state} wchan {wchan:?} threads [{threads}] stack [{stack}]"
        );
    }
    (report, tree)
}

/// The runtime binary under test, with its private `--root`.
pub struct Runtime {
    pub path: PathBuf,
    pub root: PathBuf,
    /// First line of `--version`.
    pub version: String,
    /// `(major, minor)` when the binary is runc.
    pub runc: Option<(u32, u32)>,
    io_dir: PathBuf,
    seq: Cell<u64>,
}

impl Runtime {
    pub fn new(path: PathBuf, root: PathBuf, io_dir: PathBuf) -> Result<Runtime, String> {
        let out = Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let version = text.lines().next().unwrap_or("").trim().to_string();
        let runc = parse_runc_version(&text);
        Ok(Runtime {
            path,
            root,
            version,
            runc,
            io_dir,
            seq: Cell::new(0),
        })
    }

    /// True when the runtime is runc (of any version).
    pub fn is_runc(&self) -> bool {
        self.runc.is_some()
    }

    /// True when the runtime is runc older than `major.minor`.
    pub fn is_runc_before(&self, major: u32, minor: u32) -> bool {
        matches!(self.runc, Some(v) if v < (major, minor))
    }

    /// Start `<runtime> --root R ARGS...` with stdin from /dev/null and stdout/stderr
    /// going to files (so that a container inheriting them never blocks the harness).
    pub fn spawn(&self, args: &[&str]) -> Result<Pending, Failure> {
        self.spawn_in(None, args)
    }

    /// Start `WRAPPER... <runtime> --root R ARGS...` with `env` added, without waiting (a
    /// `checkpoint --lazy-pages` that serves pages until the restore has them all).
    pub fn spawn_wrapped(
        &self,
        wrapper: &[&str],
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Pending, Failure> {
        self.spawn_full(None, &[], wrapper, env, args)
    }

    /// Like [`Runtime::spawn`], in working directory `cwd`.
    pub fn spawn_in(&self, cwd: Option<&Path>, args: &[&str]) -> Result<Pending, Failure> {
        self.spawn_full(cwd, &[], &[], &[], args)
    }

    /// Run `WRAPPER... <runtime> --root R ARGS...` to completion (killed after `timeout`): the
    /// runtime under a tool such as strace.
    pub fn exec_wrapped(&self, wrapper: &[&str], args: &[&str], timeout: Duration) -> Out {
        self.finish(
            self.spawn_full(None, &[], wrapper, &[], args),
            wrapper,
            args,
            timeout,
        )
    }

    /// Like [`Runtime::spawn_in`]; the runtime also starts with `fds[i]` open (read-only, not
    /// close-on-exec) as descriptor `3 + i`, the way a careless parent leaves descriptors to
    /// its children. A `/bin/sh` opens them and then `exec`s the runtime (same pid), since the
    /// standard library opens everything close-on-exec. At most 7 (descriptors 3..=9). With a
    /// `wrapper` (and no `fds`), `WRAPPER... <runtime>` runs instead. `env` is added to the runtime's environment.
    fn spawn_full(
        &self,
        cwd: Option<&Path>,
        fds: &[&Path],
        wrapper: &[&str],
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Pending, Failure> {
        if fds.len() > 7 {
            return Err(Failure::Fail(format!(
                "at most 7 inherited descriptors, not {}",
                fds.len()
            )));
        }
        let n = self.seq.get() + 1;
        self.seq.set(n);
        let out = self.io_dir.join(format!("{n}.out"));
        let err = self.io_dir.join(format!("{n}.err"));
        let mut cmd = if let Some((tool, tool_args)) = wrapper.split_first() {
            let mut c = Command::new(tool);
            c.args(tool_args).arg(&self.path);
            c
        } else if fds.is_empty() {
            Command::new(&self.path)
        } else {
            let opens: Vec<String> = (0..fds.len())
                .map(|i| format!("{}<\"${}\"", i + 3, i + 1))
                .collect();
            let script = format!(
                "exec {} || exit 127; shift {}; exec \"$@\"",
                opens.join(" "),
                fds.len()
            );
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(script).arg("sh").args(fds).arg(&self.path);
            c
        };
        cmd.arg("--root").arg(&self.root).args(args);
        cmd.envs(env.iter().copied());
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out)?)
            .stderr(File::create(&err)?);
        let child = cmd.spawn()?;
        let inherited = if fds.is_empty() {
            String::new()
        } else {
            format!(" (inheriting {} host descriptors)", fds.len())
        };
        Ok(Pending {
            cmd: describe(
                wrapper,
                &format!("{} {}{inherited}", self.name(), args.join(" ")),
            ),
            child,
            out,
            err,
        })
    }

    /// Run `<runtime> --root R ARGS...` to completion (killed after [`cmd_timeout`]).
    pub fn exec(&self, args: &[&str]) -> Out {
        self.exec_timeout(args, cmd_timeout())
    }

    /// Run a command to completion in working directory `cwd`.
    pub fn exec_in(&self, cwd: &Path, args: &[&str]) -> Out {
        self.exec_full(Some(cwd), args, cmd_timeout())
    }

    /// Run a command to completion with `fds` inherited as descriptors 3, 4, ... (see
    /// [`Runtime::spawn_full`]).
    pub fn exec_with_fds(&self, fds: &[&Path], args: &[&str]) -> Out {
        self.finish(
            self.spawn_full(None, fds, &[], &[], args),
            &[],
            args,
            cmd_timeout(),
        )
    }

    /// Run a command to completion with extra environment variables (`PATH` with CRIU's
    /// directory for checkpoint/restore).
    pub fn exec_env(&self, env: &[(&str, &str)], args: &[&str]) -> Out {
        self.finish(
            self.spawn_full(None, &[], &[], env, args),
            &[],
            args,
            cmd_timeout(),
        )
    }

    /// Wait for what `spawned` started, or describe why it did not start.
    fn finish(
        &self,
        spawned: Result<Pending, Failure>,
        wrapper: &[&str],
        args: &[&str],
        timeout: Duration,
    ) -> Out {
        match spawned {
            Ok(p) => p.wait(timeout),
            Err(e) => Out {
                cmd: describe(wrapper, &format!("{} {}", self.name(), args.join(" "))),
                code: None,
                stdout: String::new(),
                stderr: format!("harness could not spawn the runtime: {e:?}"),
                timed_out: false,
                hang: String::new(),
            },
        }
    }

    pub fn exec_timeout(&self, args: &[&str], timeout: Duration) -> Out {
        self.exec_full(None, args, timeout)
    }

    fn exec_full(&self, cwd: Option<&Path>, args: &[&str], timeout: Duration) -> Out {
        self.finish(self.spawn_in(cwd, args), &[], args, timeout)
    }

    /// The basename of the binary.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `state <id>` parsed as JSON.
    pub fn state(&self, id: &str) -> Result<Value, Failure> {
        self.exec(&["state", id]).ok()?.json()
    }

    /// The `status` field of `state <id>`, or `None` if `state` fails.
    pub fn status(&self, id: &str) -> Option<String> {
        let out = self.exec(&["state", id]);
        if !out.success() {
            return None;
        }
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        v.get("status")?.as_str().map(str::to_string)
    }

    /// Wait until `state <id>` reports `status`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Result<(), Failure> {
        let mut last = None;
        let ok = crate::harness::wait_until(timeout, || {
            last = self.status(id);
            last.as_deref() == Some(status)
        });
        if ok {
            Ok(())
        } else {
            Err(Failure::Fail(format!(
                "container {id} never reached status {status:?} (last {last:?})"
            )))
        }
    }
}

/// Parse `runc version X.Y.Z...` from `--version` output.
/// A command line for messages: `WRAPPER... rest`.
fn describe(wrapper: &[&str], rest: &str) -> String {
    if wrapper.is_empty() {
        rest.to_string()
    } else {
        format!("{} {rest}", wrapper.join(" "))
    }
}

fn parse_runc_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.lines().next()?.trim().strip_prefix("runc version ")?;
    let mut it = rest.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod unit {
    use super::parse_runc_version;

    #[test]
    fn runc_version() {
        assert_eq!(
            parse_runc_version("runc version 1.1.5+ds1\ncommit: x\n"),
            Some((1, 1))
        );
        assert_eq!(parse_runc_version("berth version 0.1.0\n"), None);
    }
}
