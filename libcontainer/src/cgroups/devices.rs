//! Device access rules: the container's `linux.resources.devices`, then runc's default allow
//! list. `linux.devices` only creates nodes: like runc, it adds no rule of its own, so a listed
//! device under a deny-all rule stays denied. Applied to the v1 devices cgroup as the minimal
//! transition from its current state ([`super::emulator`]).

use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::emulator::Emulator;
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

/// The devices every container may use whatever its config says (runc's list), with the
/// path runc knows each by.
type Default = (
    char,
    Option<i64>,
    Option<i64>,
    &'static str,
    Option<&'static str>,
);
const DEFAULT_ALLOWED: &[Default] = &[
    ('c', None, None, "m", None),
    ('b', None, None, "m", None),
    ('c', Some(1), Some(3), "rwm", Some("/dev/null")),
    ('c', Some(1), Some(8), "rwm", Some("/dev/random")),
    ('c', Some(1), Some(7), "rwm", Some("/dev/full")),
    ('c', Some(5), Some(0), "rwm", Some("/dev/tty")),
    ('c', Some(1), Some(5), "rwm", Some("/dev/zero")),
    ('c', Some(1), Some(9), "rwm", Some("/dev/urandom")),
    ('c', Some(136), None, "rwm", None),     // pts/*
    ('c', Some(5), Some(2), "rwm", None),    // ptmx
    ('c', Some(10), Some(200), "rwm", None), // net/tun
];

/// The rules of `linux.resources.devices`, then runc's default allow list, minus the defaults
/// whose path `linux.devices` (`listed`) names again: runc's createDevices lets the listed
/// device replace the default one, and a listed device gets no rule of its own.
pub fn rules(cgroup_rules: &[LinuxDeviceCgroup], listed: &[LinuxDevice]) -> Vec<Rule> {
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
        DEFAULT_ALLOWED
            .iter()
            .filter(|d| {
                d.4.is_none_or(|p| !listed.iter().any(|l| l.path() == std::path::Path::new(p)))
            })
            .map(|&(k, major, minor, access, _)| Rule {
                allow: true,
                kind: k,
                major,
                minor,
                access: access.into(),
            }),
    );
    out
}

/// Bring the v1 devices cgroup `dir` to the state `rules` describe, writing only the
/// transition from what its `devices.list` says now (runc's DevicesGroup.Set), then check the
/// result.
pub fn apply_v1(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    let target = Emulator::from_rules(rules)?;
    let list = || {
        let p = dir.join("devices.list");
        std::fs::read_to_string(&p).map_err(|e| CgroupError::io("read", &p, e))
    };
    let current = Emulator::from_list(&list()?)?;
    for r in current.transition(&target) {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let p = dir.join(file);
        std::fs::write(&p, r.v1_line()).map_err(|e| CgroupError::io("write", &p, e))?;
    }
    let after = Emulator::from_list(&list()?)?;
    // A cgroup that allows by default shows no exceptions: only its mode can be checked.
    if (!target.allows_by_default() && after != target)
        || after.allows_by_default() != target.allows_by_default()
    {
        return Err(CgroupError::Other(format!(
            "linux.resources.devices: the resulting devices cgroup {} does not match the rules",
            dir.display()
        )));
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
        let r = rules(std::slice::from_ref(&deny_all), &[]);
        assert_eq!(r[0].v1_line(), "a");
        assert!(!r[0].allow);
        assert_eq!(r[1].v1_line(), "c *:* m");
        assert_eq!(r[3].v1_line(), "c 1:3 rwm");
        assert_eq!(r[9].v1_line(), "c 136:* rwm");
    }

    #[test]
    fn a_listed_device_replaces_the_default_rule_for_its_path() {
        let deny_all: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":false,"access":"rwm"}"#).unwrap();
        let full: LinuxDevice =
            serde_json::from_str(r#"{"path":"/dev/full","type":"c","major":1,"minor":7}"#).unwrap();
        let lines: Vec<String> = rules(&[deny_all], &[full])
            .iter()
            .map(Rule::v1_line)
            .collect();
        assert!(!lines.iter().any(|l| l == "c 1:7 rwm"), "{lines:?}");
        assert!(lines.iter().any(|l| l == "c 1:3 rwm"), "{lines:?}");
    }
}
