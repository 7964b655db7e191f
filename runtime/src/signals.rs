//! Signal names and numbers as `kill` takes them, and forwarding for foreground `run`.

use std::str::FromStr;

use anyhow::{bail, Context};
use nix::sys::signal::Signal;

/// `KILL`, `SIGKILL`, `kill` or `9`; `0` (no signal: only checks that the process exists) as
/// runc takes it.
pub fn parse(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if n < 0 || n > libc::SIGRTMAX() {
            bail!(
                "unknown signal {s:?}: signal numbers are 0 to {}",
                libc::SIGRTMAX()
            );
        }
        return Ok(n);
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&name)
        .map(|s| s as i32)
        .with_context(|| format!("unknown signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("sigterm").unwrap(), 15);
        assert_eq!(parse("SIGUSR1").unwrap(), 10);
        assert_eq!(parse("9").unwrap(), 9);
        assert!(parse("NOPE").is_err());
        assert_eq!(parse("0").unwrap(), 0);
        assert!(parse("-1").is_err());
        assert!(parse("65").is_err());
    }
}
