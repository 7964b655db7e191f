//! Device access rules: the container's `linux.resources.devices`, then an allow rule for each
//! of its `linux.devices`, then runc's default allow list; applied to the v1 devices cgroup.

use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// 'a', 'c' or 'b'
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl Rule {
    /// The line the v1 devices.allow / devices.deny files take: `c 1:3 rwm`, `a` for all.
    pub fn v1_line(&self) -> String {
        if self.kind == 'a' {
            return "a".into();
        }
        let n = |v: Option<i64>| {
            v.filter(|v| *v >= 0)
                .map_or("*".to_string(), |v| v.to_string())
        };
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

fn kind(t: LinuxDeviceType) -> char {
    match t {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C | LinuxDeviceType::U => 'c',
        LinuxDeviceType::P => 'p',
    }
}

/// The devices every container may use whatever its config says (runc's list).
const DEFAULT_ALLOWED: &[(char, Option<i64>, Option<i64>, &str)] = &[
    ('c', None, None, "m"),
    ('b', None, None, "m"),
    ('c', Some(1), Some(3), "rwm"),    // null
    ('c', Some(1), Some(8), "rwm"),    // random
    ('c', Some(1), Some(7), "rwm"),    // full
    ('c', Some(5), Some(0), "rwm"),    // tty
    ('c', Some(1), Some(5), "rwm"),    // zero
    ('c', Some(1), Some(9), "rwm"),    // urandom
    ('c', Some(136), None, "rwm"),     // pts/*
    ('c', Some(5), Some(2), "rwm"),    // ptmx
    ('c', Some(10), Some(200), "rwm"), // net/tun
];

pub fn rules(cgroup_rules: &[LinuxDeviceCgroup], devices: &[LinuxDevice]) -> Vec<Rule> {
    let mut out: Vec<Rule> = cgroup_rules
        .iter()
        .map(|r| Rule {
            allow: r.allow(),
            kind: r.typ().map_or('a', kind),
            major: r.major(),
            minor: r.minor(),
            access: r.access().clone().unwrap_or_else(|| "rwm".into()),
        })
        .collect();
    out.extend(
        devices
            .iter()
            .filter(|d| d.typ() != LinuxDeviceType::P)
            .map(|d| Rule {
                allow: true,
                kind: kind(d.typ()),
                major: Some(d.major()),
                minor: Some(d.minor()),
                access: "rwm".into(),
            }),
    );
    out.extend(
        DEFAULT_ALLOWED
            .iter()
            .map(|&(k, major, minor, access)| Rule {
                allow: true,
                kind: k,
                major,
                minor,
                access: access.into(),
            }),
    );
    out
}

/// Start from "deny everything", then apply the rules in order.
pub fn apply_v1(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    let write = |file: &str, line: &str| {
        let p = dir.join(file);
        std::fs::write(&p, line).map_err(|e| CgroupError::io("write", &p, e))
    };
    write("devices.deny", "a")?;
    for r in rules {
        write(
            if r.allow {
                "devices.allow"
            } else {
                "devices.deny"
            },
            &r.v1_line(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        let deny_all: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":false,"access":"rwm"}"#).unwrap();
        let r = rules(&[deny_all], &[]);
        assert_eq!(r[0].v1_line(), "a");
        assert!(!r[0].allow);
        assert_eq!(r[1].v1_line(), "c *:* m");
        assert_eq!(r[3].v1_line(), "c 1:3 rwm");
        assert_eq!(r[9].v1_line(), "c 136:* rwm");
    }
}
