//! A detached container's output, kept as docker's json-file driver keeps it: one JSON object
//! per line of output, `{"log":"...\n","stream":"stdout"|"stderr","time":"<RFC 3339, ns>"}`
//! (a line longer than 16 KiB is cut into pieces, the last piece of a stream without its
//! newline; a terminal's output is all "stdout"). So `logs` gives stdout and stderr back apart,
//! and `--tail`, `--since` and `-t` work on lines. Logs written before this format (plain
//! bytes) are shown as they are.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::containers::Container;
use crate::ctx::Ctx;

/// docker's longest log line before it is cut.
const MAX_LINE: usize = 16 * 1024;

#[derive(Serialize, Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

/// The log file, shared by the copiers of one container's streams.
#[derive(Clone)]
pub struct Writer(Arc<Mutex<File>>);

impl Writer {
    pub fn new(f: File) -> Writer {
        Writer(Arc::new(Mutex::new(f)))
    }

    fn entry(&self, stream: &str, data: &[u8]) {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let e = Entry {
            log: String::from_utf8_lossy(data).into_owned(),
            stream: stream.to_string(),
            time: libcontainer::timefmt::rfc3339(d.as_secs() as i64, d.subsec_nanos()),
        };
        if let Ok(mut line) = serde_json::to_vec(&e) {
            line.push(b'\n');
            let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let _ = f.write_all(&line);
        }
    }

    /// One line of berthctl's own in the container's log (as stderr).
    pub fn note(&self, line: &str) {
        self.entry("stderr", line.as_bytes());
    }

    /// Copy `from` (a pipe or a pty master) into the log as `stream` lines until it ends
    /// (EOF, or EIO once a pty has no other side).
    pub fn copy(&self, mut from: File, stream: &'static str) {
        let mut buf = vec![0u8; 8192];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            pending.extend_from_slice(&buf[..n]);
            let mut start = 0;
            while let Some(i) = pending[start..].iter().position(|b| *b == b'\n') {
                self.entry(stream, &pending[start..start + i + 1]);
                start += i + 1;
            }
            pending.drain(..start);
            while pending.len() >= MAX_LINE {
                self.entry(stream, &pending[..MAX_LINE]);
                pending.drain(..MAX_LINE);
            }
        }
        if !pending.is_empty() {
            self.entry(stream, &pending);
        }
    }
}

pub struct Options {
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only lines from this time on (seconds since the epoch).
    pub since: Option<u64>,
    pub timestamps: bool,
}

/// `--since`: an RFC 3339 time, seconds since the epoch, or a duration before now (`10m`).
pub fn parse_since(s: &str) -> Result<u64> {
    if let Some(t) = crate::util::parse_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(t) = s.split('.').next().unwrap_or(s).parse::<u64>() {
        return Ok(t);
    }
    let nanos = builder::meta::go_duration(s).map_err(|e| {
        anyhow::anyhow!("--since {s:?}: a time, a timestamp or a duration (10m, 1h30m): {e}")
    })?;
    Ok(crate::util::now().saturating_sub(nanos / 1_000_000_000))
}

/// Write the entry lines of `text` that pass `opts` to stdout or stderr.
fn show(lines: &[&str], opts: &Options) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for l in lines {
        let Ok(e) = serde_json::from_str::<Entry>(l) else {
            // An older plain log.
            out.write_all(l.as_bytes())?;
            out.write_all(b"\n")?;
            continue;
        };
        if let Some(since) = opts.since {
            if crate::util::parse_rfc3339(&e.time).is_some_and(|t| t < since) {
                continue;
            }
        }
        let w: &mut dyn Write = if e.stream == "stderr" {
            &mut err
        } else {
            &mut out
        };
        if opts.timestamps {
            write!(w, "{} ", e.time)?;
        }
        w.write_all(e.log.as_bytes())?;
    }
    out.flush()?;
    err.flush()?;
    Ok(())
}

/// `logs [-f] [--tail N] [--since T] [-t] CONTAINER`.
pub fn logs(ctx: &Ctx, c: &Container, opts: &Options) -> Result<i32> {
    let path = ctx.log_path(&c.id);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !c.detached {
                bail!(
                    "container {} ran in the foreground: its output went to the terminal",
                    c.name
                );
            }
            return Ok(0);
        }
        Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
    };
    let mut r = BufReader::new(f);
    let mut text = String::new();
    r.read_to_string(&mut text)?;
    // Only whole lines; a line being written is read on the next round.
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    let lines: Vec<&str> = text[..whole].lines().collect();
    let first = opts.tail.map_or(0, |n| lines.len().saturating_sub(n));
    show(&lines[first..], opts)?;
    if !opts.follow {
        return Ok(0);
    }
    let mut pos = whole as u64;
    let mut f = r.into_inner();
    loop {
        let done = ctx.exit_of(&c.id).is_some() || !ctx.container_dir(&c.id).is_dir();
        f.seek(SeekFrom::Start(pos))?;
        let mut more = String::new();
        BufReader::new(&mut f).read_to_string(&mut more)?;
        let whole = more.rfind('\n').map_or(0, |i| i + 1);
        let lines: Vec<&str> = more[..whole].lines().collect();
        show(&lines, opts)?;
        pos += whole as u64;
        if done {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lines of `c`'s log from byte `from` on, shown until it exits (start -a, a foreground
/// run with a restart policy); its exit code.
pub fn follow_from(ctx: &Ctx, c: &Container, from: u64) -> Result<i32> {
    let path = ctx.log_path(&c.id);
    let mut f = File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let mut pos = from;
    let opts = Options {
        follow: true,
        tail: None,
        since: None,
        timestamps: false,
    };
    loop {
        let done = ctx.exit_of(&c.id);
        f.seek(SeekFrom::Start(pos))?;
        let mut more = Vec::new();
        let mut r = BufReader::new(&mut f);
        loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line)? == 0 || !line.ends_with(b"\n") {
                break;
            }
            pos += line.len() as u64;
            more.push(
                String::from_utf8_lossy(&line)
                    .trim_end_matches('\n')
                    .to_string(),
            );
        }
        let lines: Vec<&str> = more.iter().map(String::as_str).collect();
        show(&lines, &opts)?;
        if let Some(e) = done {
            return Ok(e.code);
        }
        if !ctx.container_dir(&c.id).is_dir() {
            bail!("container {} was removed", c.name);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_cut_as_docker_cuts_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let w = Writer::new(File::create(&p).unwrap());
        let (r, mut wr) = std::io::pipe().unwrap();
        let t = {
            let w = w.clone();
            std::thread::spawn(move || w.copy(File::from(std::os::fd::OwnedFd::from(r)), "stderr"))
        };
        wr.write_all(b"one\ntw").unwrap();
        wr.write_all(b"o\n").unwrap();
        wr.write_all(&vec![b'x'; MAX_LINE + 5]).unwrap();
        drop(wr);
        t.join().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let entries: Vec<Entry> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let logs: Vec<usize> = entries.iter().map(|e| e.log.len()).collect();
        assert_eq!(entries[0].log, "one\n");
        assert_eq!(entries[1].log, "two\n");
        assert_eq!(logs[2..], [MAX_LINE, 5]);
        assert!(entries
            .iter()
            .all(|e| e.stream == "stderr" && e.time.ends_with('Z')));
    }

    #[test]
    fn since_takes_times_timestamps_and_durations() {
        assert_eq!(parse_since("2026-01-02T03:04:05Z").unwrap(), 1767323045);
        assert_eq!(parse_since("1767323045").unwrap(), 1767323045);
        let now = crate::util::now();
        let t = parse_since("10m").unwrap();
        assert!(t <= now - 600 && t >= now - 602);
        assert!(parse_since("soon").is_err());
        let t = parse_since("1h30m").unwrap();
        assert!(t <= now - 5400 && t >= now - 5402);
    }
}
