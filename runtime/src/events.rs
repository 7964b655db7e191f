//! `events [--stats] [--interval DURATION] <id>`, as runc: with `--stats` one stats event and
//! exit; otherwise a stats event every interval plus an `oom` event for each OOM of the
//! container, until the container stops. Events are JSON lines on stdout.
//!
//! One poll(2) waits on the interval timer (a timerfd), the OOM notification (see
//! [`OomNotifier`]) and the container's init pidfd; nothing is polled by sleeping.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use libcontainer::cgroups::stats::{self, Event, OomNotifier, Stats};
use libcontainer::container;
use libcontainer::state::{State, Status};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::log::Logger;

#[derive(Args)]
pub struct EventsArgs {
    /// Display the container's stats then exit.
    #[arg(long)]
    stats: bool,
    /// Set the stats collection interval (Go duration syntax: 5s, 500ms, 1m30s).
    #[arg(long, default_value = "5s", value_parser = parse_duration, allow_hyphen_values = true)]
    interval: GoDuration,
    /// Container id.
    pub id: String,
}

/// A Go `time.Duration`: signed nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoDuration(i64);

/// Go's `time.ParseDuration`: `[-+]` then one or more decimal numbers (with an optional
/// fraction) each followed by a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), or a bare `0`.
pub fn parse_duration(s: &str) -> Result<GoDuration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(GoDuration(0));
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac = &r[..n];
            rest = &r[n..];
        }
        if int.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        let overflow = || invalid();
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| overflow())?
        };
        let mut v = whole.checked_mul(unit).ok_or_else(overflow)?;
        if !frac.is_empty() {
            // Truncated to whole nanoseconds, as Go does.
            let digits = &frac[..frac.len().min(18)];
            let f: u128 = digits.parse().map_err(|_| overflow())?;
            v += f * unit / 10u128.pow(digits.len() as u32);
        }
        total = total.checked_add(v).ok_or_else(overflow)?;
        if total > i64::MAX as u128 + u128::from(neg) {
            return Err(invalid());
        }
    }
    let n = if neg {
        (-(total as i128)) as i64
    } else {
        total as i64
    };
    Ok(GoDuration(n))
}

/// Write one event as a JSON line (Go's json.Encoder.Encode) and flush it.
fn emit(out: &mut impl Write, kind: &str, id: &str, data: Option<Stats>) -> Result<()> {
    let ev = Event {
        kind: kind.into(),
        id: id.into(),
        data,
    };
    let mut line = serde_json::to_vec(&ev)?;
    line.push(b'\n');
    out.write_all(&line)
        .and_then(|()| out.flush())
        .context("write event to stdout")
}

/// A pidfd for the container's init, if it is still the process that was created.
fn init_pidfd(state: &State) -> Option<OwnedFd> {
    let fd = libcontainer::sys::pidfd_open(state.pid).ok()?;
    // Checked after opening: the pidfd pins the process, so a match is not a reused pid.
    match libcontainer::procfs::stat(state.pid) {
        Ok(Some(st)) if st.start_time == state.pid_start && st.state != 'Z' => Some(fd),
        _ => None,
    }
}

pub fn run(root: &Path, a: &EventsArgs, logger: &Logger) -> Result<()> {
    if a.interval.0 <= 0 {
        bail!("duration interval must be greater than 0");
    }
    let id = a.id.as_str();
    let l = container::load(root, id)?;
    let not_running = || anyhow::anyhow!("container with id {id} is not running");
    if l.status == Status::Stopped {
        return Err(not_running());
    }
    let cgroup = &l.state.cgroup;
    let mut out = std::io::stdout().lock();
    if a.stats {
        let s = stats::stats(cgroup).with_context(|| format!("stats of container {id}"))?;
        return emit(&mut out, "stats", id, Some(s));
    }

    let pidfd = init_pidfd(&l.state).ok_or_else(not_running)?;
    let mut oom =
        OomNotifier::new(cgroup).with_context(|| format!("watch container {id} for OOM events"))?;
    if oom.is_none() {
        logger.log(
            "warning",
            &format!("container {id} has no memory cgroup: no OOM events will be reported"),
        );
    }
    let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC)
        .context("timerfd_create")?;
    let every = TimeSpec::from_duration(Duration::from_nanos(a.interval.0 as u64));
    timer
        .set(Expiration::Interval(every), TimerSetTimeFlags::empty())
        .context("timerfd_settime")?;

    let oom_events = |oom: &mut Option<OomNotifier>, out: &mut _| -> Result<()> {
        let Some(n) = oom.as_mut() else { return Ok(()) };
        match n
            .read()
            .with_context(|| format!("OOM events of container {id}"))?
        {
            Some(count) => {
                for _ in 0..count {
                    emit(out, "oom", id, None)?;
                }
            }
            // The cgroup is gone: nothing more can come from it.
            None => *oom = None,
        }
        Ok(())
    };

    loop {
        let (timer_ready, init_exited, oom_ready) = {
            let mut fds = vec![
                PollFd::new(timer.as_fd(), PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(n) = &oom {
                fds.push(PollFd::new(n.fd(), n.poll_flags()));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => r.context("poll")?,
            };
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            (ready(0), ready(1), ready(2))
        };
        if oom_ready {
            oom_events(&mut oom, &mut out)?;
        }
        if timer_ready {
            timer.wait().context("read timerfd")?;
            match stats::stats(cgroup) {
                Ok(s) => emit(&mut out, "stats", id, Some(s))?,
                // As runc: a failed collection is logged and the next one tried.
                Err(e) => logger.log("error", &format!("stats of container {id}: {e}")),
            }
        }
        if init_exited {
            // An OOM kill is counted before its victim dies: report it before leaving.
            oom_events(&mut oom, &mut out)?;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> i64 {
        parse_duration(s).unwrap().0
    }

    #[test]
    fn go_durations() {
        assert_eq!(ns("5s"), 5_000_000_000);
        assert_eq!(ns("500ms"), 500_000_000);
        assert_eq!(ns("1m"), 60_000_000_000);
        assert_eq!(ns("1h2m3s"), 3_723_000_000_000);
        assert_eq!(ns("1.5s"), 1_500_000_000);
        assert_eq!(ns(".5m"), 30_000_000_000);
        assert_eq!(ns("1.s"), 1_000_000_000);
        assert_eq!(ns("250us"), 250_000);
        assert_eq!(ns("250µs"), 250_000);
        assert_eq!(ns("10ns"), 10);
        assert_eq!(ns("0"), 0);
        assert_eq!(ns("0s"), 0);
        assert_eq!(ns("-2s"), -2_000_000_000);
        assert_eq!(ns("+3ms"), 3_000_000);
        assert_eq!(ns("2562047h47m16.854775807s"), i64::MAX);
        for bad in [
            "",
            "5",
            "s",
            "-",
            "1x",
            "1.2.3s",
            ".s",
            "5 s",
            "9999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn flags_as_runc() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: EventsArgs,
        }
        let t = T::try_parse_from(["events", "c1"]).unwrap();
        assert_eq!(
            (t.a.stats, t.a.interval.0, t.a.id.as_str()),
            (false, 5_000_000_000, "c1")
        );
        let t = T::try_parse_from(["events", "--stats", "--interval", "100ms", "c1"]).unwrap();
        assert_eq!((t.a.stats, t.a.interval.0), (true, 100_000_000));
        let t = T::try_parse_from(["events", "--interval=-1s", "c1"]).unwrap();
        assert_eq!(t.a.interval.0, -1_000_000_000);
        assert!(T::try_parse_from(["events", "--interval", "fast", "c1"]).is_err());
        assert!(T::try_parse_from(["events"]).is_err());
    }

    #[test]
    fn event_lines() {
        let mut buf = Vec::new();
        emit(&mut buf, "oom", "c1", None).unwrap();
        emit(&mut buf, "stats", "c1", Some(Stats::default())).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"type":"oom","id":"c1"}"#);
        assert!(lines[1].starts_with(r#"{"type":"stats","id":"c1","data":{"cpu":"#));
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn missing_container_is_an_error() {
        let root = std::env::temp_dir().join(format!("berth-events-test-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let logger = Logger::new(None, false, false).unwrap();
        let a = EventsArgs {
            stats: true,
            interval: GoDuration(1),
            id: "nope".into(),
        };
        let e = run(&root, &a, &logger).unwrap_err();
        assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
        let a = EventsArgs {
            interval: GoDuration(0),
            ..a
        };
        let e = run(&root, &a, &logger).unwrap_err();
        assert_eq!(e.to_string(), "duration interval must be greater than 0");
        let _ = std::fs::remove_dir_all(&root);
    }
}
