//! The shim's log: logrus text lines written to the `log` fifo containerd opens in the bundle
//! (never blocking: a line that does not fit is dropped). Debug lines with `-debug` or
//! BERTH_SHIM_DEBUG=1 in the shim's (containerd's) environment.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;
use std::time::SystemTime;

struct Logger {
    out: Option<File>,
    debug: bool,
}

static LOGGER: Mutex<Logger> = Mutex::new(Logger {
    out: None,
    debug: false,
});

/// Open the bundle's `log` fifo (created by containerd, which reads it) without blocking.
pub fn init(debug: bool) {
    let out = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("log")
        .ok();
    if let Ok(mut l) = LOGGER.lock() {
        l.out = out;
        l.debug = debug || std::env::var_os("BERTH_SHIM_DEBUG").is_some_and(|v| v == "1");
    }
}

pub fn enabled_debug() -> bool {
    LOGGER.lock().map(|l| l.debug).unwrap_or(false)
}

pub fn log(level: &str, msg: &str) {
    let Ok(mut l) = LOGGER.lock() else { return };
    if level == "debug" && !l.debug {
        return;
    }
    let line = format!(
        "time={} level={level} msg={} runtime=io.containerd.berth.v2 pid={}\n",
        crate::util::quote(&crate::util::rfc3339(SystemTime::now())),
        crate::util::quote(msg),
        std::process::id()
    );
    match l.out.as_mut() {
        Some(f) => {
            if let Err(e) = f.write_all(line.as_bytes()) {
                if e.raw_os_error() == Some(libc::EPIPE) {
                    l.out = None; // containerd went away; its next incarnation does not reopen it
                }
            }
        }
        None if std::env::var_os("BERTH_SHIM_LOG_STDERR").is_some() => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        None => {}
    }
}

#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::logger::log("info", &format!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::logger::log("warning", &format!($($t)*)) } }
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::logger::log("error", &format!($($t)*)) } }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { if $crate::logger::enabled_debug() { $crate::logger::log("debug", &format!($($t)*)) } } }
