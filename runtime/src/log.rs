//! runc-compatible logging: `--log FILE`, `--log-format text|json` (`{"level","msg","time"}`
//! lines, which containerd's shim reads back), `--debug`.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

pub struct Logger {
    file: Option<File>,
    json: bool,
    debug: bool,
}

impl Logger {
    pub fn new(path: Option<&Path>, json: bool, debug: bool) -> anyhow::Result<Logger> {
        let file = match path {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("open log file {p:?}"))?,
            ),
            None => None,
        };
        Ok(Logger { file, json, debug })
    }

    fn line(&self, level: &str, msg: &str) -> String {
        let time = libcontainer::timefmt::now_rfc3339();
        if self.json {
            let v = serde_json::json!({"level": level, "msg": msg, "time": time});
            format!("{v}\n")
        } else {
            format!("time={time:?} level={level} msg={msg:?}\n")
        }
    }

    /// A debug line, formatted only when `--debug` asked for debug lines.
    pub fn debug(&self, msg: impl FnOnce() -> String) {
        if self.debug {
            self.log("debug", &msg());
        }
    }

    pub fn log(&self, level: &str, msg: &str) {
        if level == "debug" && !self.debug {
            return;
        }
        let line = self.line(level, msg);
        match &self.file {
            Some(f) => {
                let mut f: &File = f;
                let _ = f.write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    /// Log a fatal error; like runc, also print it plainly on stderr when logging to a file.
    pub fn fatal(&self, msg: &str) {
        self.log("error", msg);
        if self.file.is_some() {
            eprintln!("{msg}");
        }
    }
}
