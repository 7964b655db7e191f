//! Small helpers: ids, names, times, sizes, process status.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A new container id: 64 hex digits.
pub fn new_id() -> String {
    image::fsutil::random_hex(32)
}

/// Container names: a letter or digit, then letters, digits, `_`, `.`, `-` (docker's rule).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// "3 seconds", "5 minutes", "2 hours", "4 days", "3 weeks", "2 months", "1 year".
pub fn human_duration(secs: u64) -> String {
    let (n, unit) = match secs {
        0..=1 => return "Less than a second".into(),
        2..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        86_400..=1_209_599 => (secs / 86_400, "day"),
        1_209_600..=5_183_999 => (secs / 604_800, "week"),
        5_184_000..=31_535_999 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    if n == 1 {
        format!("{} {unit}", if unit == "hour" { "An" } else { "1" })
    } else {
        format!("{n} {unit}s")
    }
}

pub fn ago(t: u64) -> String {
    let d = now().saturating_sub(t);
    if d < 2 {
        "Less than a second ago".into()
    } else {
        format!("{} ago", human_duration(d))
    }
}

/// docker's sizes: "4.3MB" (powers of 1000).
pub fn human_size(n: u64) -> String {
    sized(n, 1000.0, &["B", "kB", "MB", "GB", "TB"])
}

/// docker's memory sizes: "2.23MiB" (powers of 1024).
pub fn human_size_binary(n: u64) -> String {
    sized(n, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"])
}

fn sized(n: u64, base: f64, units: &[&str]) -> String {
    let mut v = n as f64;
    let mut i = 0;
    while v >= base && i < units.len() - 1 {
        v /= base;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

/// Show inspect-like values: each through the `--format` template, else all as a JSON array.
pub fn print_values(values: &[serde_json::Value], format: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match format {
        Some(f) => {
            for v in values {
                writeln!(out, "{}", template(f, v).map_err(anyhow::Error::msg)?)?;
            }
        }
        None => writeln!(out, "{}", serde_json::to_string_pretty(values)?)?,
    }
    Ok(())
}

/// The rows of an `ls --format FORMAT` as docker prints them: `json`, one object a line, or
/// each row through the template (`\t` and `\n` as tab and newline).
pub fn print_rows(rows: &[serde_json::Value], format: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let f = format.replace("\\t", "\t").replace("\\n", "\n");
    for r in rows {
        match format {
            "json" => writeln!(out, "{r}")?,
            _ => writeln!(out, "{}", template(&f, r).map_err(anyhow::Error::msg)?)?,
        }
    }
    Ok(())
}

/// Seconds since the epoch of an RFC 3339 time ("2024-01-02T03:04:05.123Z", "+01:00" offsets).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut t = days * 86_400 + h * 3600 + mi * 60 + se;
    // Offset.
    let rest = &s[19..];
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(sign) = rest.chars().next().filter(|c| *c == '+' || *c == '-') {
        let oh: i64 = rest.get(1..3)?.parse().ok()?;
        let om: i64 = rest.get(4..6)?.parse().ok()?;
        let off = oh * 3600 + om * 60;
        t -= if sign == '+' { off } else { -off };
    }
    u64::try_from(t).ok()
}

/// Parse a docker memory size: "64m", "1g", "512k", "1000" (bytes).
pub fn parse_memory(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mul) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1i64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.parse().ok()?;
    if v <= 0.0 {
        return None;
    }
    Some((v * mul as f64) as i64)
}

/// Signal names and numbers: "TERM", "SIGTERM", "15".
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let sig = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "WINCH" => libc::SIGWINCH,
        "ALRM" => libc::SIGALRM,
        "PWR" => libc::SIGPWR,
        _ => return None,
    };
    Some(sig)
}

/// RFC 3339 of `secs` since the epoch (UTC).
pub fn rfc3339(secs: u64) -> String {
    builder::build::rfc3339(secs)
}

/// The subset of Go templates `--format` takes here: text with `{{.A.B}}` (a string as it is,
/// anything else as JSON) and `{{json .A.B}}`.
pub fn template(f: &str, v: &serde_json::Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = f;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after
            .find("}}")
            .ok_or_else(|| format!("template {f:?}: unclosed action"))?;
        let action = after[..j].trim();
        let (json, path) = match action.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, action),
        };
        let path = path
            .strip_prefix('.')
            .ok_or_else(|| format!("template {f:?}: {action:?} is not supported (use .Field)"))?;
        let mut cur = v;
        for k in path.split('.').filter(|k| !k.is_empty()) {
            cur = cur
                .get(k)
                .ok_or_else(|| format!("template {f:?}: no field {k:?}"))?;
        }
        match (json, cur) {
            (false, serde_json::Value::String(s)) => out.push_str(s),
            (false, serde_json::Value::Null) => out.push_str("<no value>"),
            _ => out.push_str(&cur.to_string()),
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:10Z"), Some(10));
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00.5+01:00"),
            Some(951_865_200)
        );
        assert_eq!(parse_memory("64m"), Some(64 << 20));
        assert_eq!(parse_memory("1G"), Some(1 << 30));
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("x"), None);
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("kill"), Some(9));
        assert_eq!(parse_signal("10"), Some(10));
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_duration(3600), "An hour");
        assert_eq!(human_duration(7200), "2 hours");
        assert!(valid_name("web-1") && !valid_name("-x") && !valid_name("a/b"));
    }

    #[test]
    fn templates() {
        let v =
            serde_json::json!({"Id": "sha256:1", "Config": {"Cmd": ["sh"], "User": ""}, "Size": 3});
        assert_eq!(template("{{.Id}} {{.Size}}", &v).unwrap(), "sha256:1 3");
        assert_eq!(template("{{json .Config.Cmd}}", &v).unwrap(), "[\"sh\"]");
        assert_eq!(template("{{ .Config.User }}x", &v).unwrap(), "x");
        assert!(template("{{.Nope}}", &v).is_err());
        assert!(template("{{range .X}}", &v).is_err());
    }
}

/// An error that ends berthctl with a code of its own (docker's 126 and 127), not 125.
#[derive(Debug)]
pub struct CodedError {
    pub code: i32,
    pub msg: String,
}

impl std::fmt::Display for CodedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for CodedError {}

/// The exit code docker gives a container that could not start, from the runtime's error:
/// 127 when its command is not there (or a mount's source is a file where a directory is
/// needed, or the reverse), 126 when it cannot be invoked, 125 for anything else.
pub fn start_error_code(cmd: &str, msg: &str) -> i32 {
    // docker's checks, the later ones winning: the command not found, then EACCES, then
    // ENOTDIR (a file mounted on a directory or the reverse).
    let m = msg.to_ascii_lowercase();
    if m.contains("not a directory") {
        127
    } else if m.contains("permission denied") {
        126
    } else if m.contains(&cmd.to_ascii_lowercase())
        && (m.contains("executable file not found") || m.contains("no such file or directory"))
    {
        127
    } else {
        125
    }
}

/// The error for a container that could not start: the runtime's message, docker's code.
pub fn start_error(cmd: &str, msg: String) -> anyhow::Error {
    anyhow::Error::new(CodedError {
        code: start_error_code(cmd, &msg),
        msg,
    })
}

#[cfg(test)]
mod coded_tests {
    use super::*;

    #[test]
    fn start_error_codes_as_docker() {
        let nf = r#"create container "x": exec "nosuch": executable file not found in $PATH"#;
        assert_eq!(start_error_code("nosuch", nf), 127);
        let enoent = r#"exec "/bin/nope": no such file or directory"#;
        assert_eq!(start_error_code("/bin/nope", enoent), 127);
        // ENOENT of something else (a mount source) is not the command's.
        assert_eq!(
            start_error_code("sh", "mount /x: no such file or directory"),
            125
        );
        assert_eq!(
            start_error_code("/etc/passwd", r#"exec "/etc/passwd": permission denied"#),
            126
        );
        assert_eq!(
            start_error_code("sh", "mount /etc/hosts: not a directory"),
            127
        );
        assert_eq!(
            start_error_code("sh", "cgroup: device or resource busy"),
            125
        );
    }
}
