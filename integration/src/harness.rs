//! A tiny test harness: test registry, outcomes, assertion macros and polling.

use std::time::{Duration, Instant};

/// Why a test did not pass.
#[derive(Debug)]
pub enum Failure {
    Fail(String),
    Skip(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Fail(s)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Fail(format!("io error: {e}"))
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Fail(format!("json error: {e}"))
    }
}

pub type TestResult = Result<(), Failure>;

/// One registered test.
pub struct Test {
    pub name: &'static str,
    pub run: fn(&crate::context::Ctx) -> TestResult,
}

/// Build a `Vec<Test>` from a list of functions; the name is the function's name.
#[macro_export]
macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        vec![$($crate::harness::Test { name: stringify!($f), run: $f }),*]
    };
}

/// Fail the test with a formatted message.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)+) => {
        return Err($crate::harness::Failure::Fail(format!($($arg)+)))
    };
}

/// Skip the test with a formatted reason.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)+) => {
        return Err($crate::harness::Failure::Skip(format!($($arg)+)))
    };
}

/// Fail unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::fail!($($arg)+);
        }
    };
}

/// Fail unless both sides are equal; the message names what was compared.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $what:expr) => {
        match (&$left, &$right) {
            (l, r) => {
                if l != r {
                    $crate::fail!("{}: got {:?}, want {:?}", $what, l, r);
                }
            }
        }
    };
}

/// Poll `cond` every 20 ms until it is true or `timeout` (times `BERTH_TEST_TIMEOUT_SCALE`)
/// passes; returns whether it became true.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout * crate::runtime::timeout_scale();
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Is `s` an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)`)?
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let date_ok = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !date_ok {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] | [b'z'] => true,
        [sign, h1, h2, b':', m1, m2] => {
            (*sign == b'+' || *sign == b'-') && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// On SIGTERM (hack/test.sh's `timeout`) or SIGINT the suite stops after the test that is
/// running and still removes what it made (the clients' daemons, containers, cgroups) instead
/// of dying with them left on the host; `timeout --kill-after` is the bound on that. (GNU
/// timeout signals its whole process group: the runtime command running then gets the signal
/// too and that test fails.) The handler is one-shot: a second signal kills as usual.
pub fn stop_on_term() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(request_stop),
        SaFlags::SA_RESTART | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; with
        // SA_RESTART no blocking call of the suite fails with EINTR.
        if let Err(e) = unsafe { sigaction(sig, &action) } {
            eprintln!("integration: cannot handle {sig}: {e} (a signal will kill the suite)");
        }
    }
}

/// Whether SIGTERM or SIGINT arrived since [`stop_on_term`].
pub fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod unit {
    use super::is_rfc3339;

    #[test]
    fn rfc3339() {
        assert!(is_rfc3339("2024-01-02T03:04:05Z"));
        assert!(is_rfc3339("2024-01-02T03:04:05.123456789Z"));
        assert!(is_rfc3339("2024-01-02T03:04:05.1+02:00"));
        assert!(!is_rfc3339("2024-01-02 03:04:05Z"));
        assert!(!is_rfc3339("2024-01-02T03:04:05"));
        assert!(!is_rfc3339("2024-01-02T03:04:05.Z"));
    }
}
