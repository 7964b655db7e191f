//! What berth reads about a process from /proc.

use std::io;

/// The fields of /proc/PID/stat that berth uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: R, S, D, Z, T, t, X, ...
    pub state: char,
    /// Field 9: the kernel's PF_* flags (PF_EXITING: 0x4).
    pub flags: u64,
    /// Field 22: start time in clock ticks since boot; with the pid it names one process.
    pub start_time: u64,
}

/// Read /proc/PID/stat. `Ok(None)` when no such process exists.
pub fn stat(pid: i32) -> io::Result<Option<ProcStat>> {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => parse_stat(&s).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/stat: cannot parse"),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Parse the text of /proc/PID/stat; the command name may hold spaces and parentheses, so
/// fields are counted after the last ')'.
pub fn parse_stat(s: &str) -> Option<ProcStat> {
    let rest = &s[s.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 9 is 6 fields after the state, field 22 another 13 after it.
    let flags = fields.nth(5)?.parse().ok()?;
    let start_time = fields.nth(12)?.parse().ok()?;
    Some(ProcStat {
        state,
        flags,
        start_time,
    })
}

/// One line of /proc/PID/mountinfo, as berth reads it.
pub(crate) struct MountEntry<'a> {
    pub(crate) id: u64,
    pub(crate) parent: u64,
    pub(crate) root: &'a str,
    pub(crate) mount_point: String,
    pub(crate) fstype: &'a str,
    pub(crate) super_opts: &'a str,
}

/// Every well-formed line of `mountinfo`, in its order (mount points unescaped).
pub(crate) fn parse_mountinfo(mountinfo: &str) -> Vec<MountEntry<'_>> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = pre.split(' ').collect();
        let (Some(id), Some(parent), Some(root), Some(mp)) = (
            f.first().and_then(|s| s.parse().ok()),
            f.get(1).and_then(|s| s.parse().ok()),
            f.get(3),
            f.get(4),
        ) else {
            continue;
        };
        let mut post = post.split(' ');
        let fstype = post.next().unwrap_or("");
        let _source = post.next();
        out.push(MountEntry {
            id,
            parent,
            root,
            mount_point: unescape_mountinfo(mp),
            fstype,
            super_opts: post.next().unwrap_or(""),
        });
    }
    out
}

/// mountinfo's octal escapes (`\040` for a space, ...).
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The start time of process `pid` (clock ticks since boot; with the pid, what identifies it):
/// `what` names it in the error when it is gone.
pub fn start_time_of(pid: i32, what: &str) -> crate::Result<u64> {
    stat(pid)
        .ok()
        .flatten()
        .map(|s| s.start_time)
        .ok_or_else(|| {
            crate::Error::sys(
                format!("read {what}'s start time"),
                std::io::Error::from_raw_os_error(libc::ESRCH),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_parens_and_spaces() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'S',
                flags: 4194560,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_found_and_missing_one_is_not() {
        let me = stat(std::process::id() as i32).unwrap().unwrap();
        assert!(me.start_time > 0);
        assert_eq!(stat(i32::MAX).unwrap(), None);
    }
}
