//! The devices cgroup's semantics, emulated as runc does (its `devices` emulator): rules are
//! applied in order to a state (default allow or deny, plus exceptions with their access), and
//! the minimal list of rules that turns one state into another is computed. v1 writes only that
//! transition (so `deny c 1:11 rwa` is never written verbatim, and an update does not deny
//! everything for a moment); v2's eBPF program is generated from the same state.

use std::collections::BTreeMap;

use super::devices::Rule;
use super::CgroupError;

// The same bits as the kernel's BPF_DEVCG_ACC_* (the v2 program uses them as they are).
pub(super) const MKNOD: u8 = 1;
pub(super) const READ: u8 = 2;
pub(super) const WRITE: u8 = 4;

/// The access letters as a set; letters other than r, w and m are ignored, as runc's
/// permission sets do.
pub(super) fn perms(access: &str) -> u8 {
    access.chars().fold(0, |p, c| {
        p | match c {
            'r' => READ,
            'w' => WRITE,
            'm' => MKNOD,
            _ => 0,
        }
    })
}

fn perms_str(p: u8) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .iter()
        .filter(|(b, _)| p & b != 0)
        .map(|(_, c)| c)
        .collect()
}

/// A device or a wildcard (-1) class of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Meta {
    kind: char,
    major: i64,
    minor: i64,
}

impl Meta {
    fn rule(self, allow: bool, p: u8) -> Rule {
        let n = |v: i64| (v >= 0).then_some(v);
        Rule {
            allow,
            kind: self.kind,
            major: n(self.major),
            minor: n(self.minor),
            access: perms_str(p),
        }
    }
}

/// A devices cgroup's state: the default and the exceptions to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Emulator {
    default_allow: bool,
    exceptions: BTreeMap<Meta, u8>,
}

fn err(m: String) -> CgroupError {
    CgroupError::Other(format!("linux.resources.devices: {m}"))
}

impl Emulator {
    /// The state after `rules`, starting from "deny everything" (runc's buildEmulator).
    pub fn from_rules(rules: &[Rule]) -> Result<Emulator, CgroupError> {
        let mut e = Emulator::default();
        for r in rules {
            e.apply(r)?;
        }
        Ok(e)
    }

    /// The state a v1 `devices.list` shows: allowed exceptions, or `a *:* rwm` for a cgroup
    /// that allows by default (whose deny exceptions the file does not show).
    pub fn from_list(list: &str) -> Result<Emulator, CgroupError> {
        let mut e = Emulator::default();
        for line in list.lines().filter(|l| !l.trim().is_empty()) {
            let bad = || err(format!("cannot parse devices.list line {line:?}"));
            let mut f = line.split_whitespace();
            let (kind, nums, access) = (f.next(), f.next(), f.next().unwrap_or(""));
            let kind = kind.and_then(|k| k.chars().next()).ok_or_else(bad)?;
            let (major, minor) = nums.and_then(|n| n.split_once(':')).ok_or_else(bad)?;
            let num = |s: &str| -> Result<Option<i64>, CgroupError> {
                if s == "*" {
                    Ok(None)
                } else {
                    s.parse().map(Some).map_err(|_| bad())
                }
            };
            e.apply(&Rule {
                allow: true,
                kind,
                major: num(major)?,
                minor: num(minor)?,
                access: access.into(),
            })?;
        }
        Ok(e)
    }

    pub fn allows_by_default(&self) -> bool {
        self.default_allow
    }

    /// Apply one rule as the devices cgroup would, refusing what v1 would silently ignore.
    pub fn apply(&mut self, r: &Rule) -> Result<(), CgroupError> {
        if r.kind == 'a' {
            // Every device, every access: a new default, no exceptions.
            *self = Emulator {
                default_allow: r.allow,
                exceptions: BTreeMap::new(),
            };
            return Ok(());
        }
        if !matches!(r.kind, 'c' | 'b') {
            return Err(err(format!(
                "type {:?} cannot be used in a device cgroup rule (a, b or c)",
                r.kind
            )));
        }
        let meta = Meta {
            kind: r.kind,
            major: r.major.filter(|m| *m >= 0).unwrap_or(-1),
            minor: r.minor.filter(|m| *m >= 0).unwrap_or(-1),
        };
        let p = perms(&r.access);
        if r.allow == self.default_allow {
            self.remove(meta, p, r)
        } else {
            *self.exceptions.entry(meta).or_insert(0) |= p;
            Ok(())
        }
    }

    /// Take access `p` out of the exception for `meta`. Taking it out of a wildcard exception
    /// that covers `meta` is refused: v1 would silently ignore it.
    fn remove(&mut self, meta: Meta, p: u8, r: &Rule) -> Result<(), CgroupError> {
        let partials = [
            Meta { major: -1, ..meta },
            Meta { minor: -1, ..meta },
            Meta {
                major: -1,
                minor: -1,
                ..meta
            },
        ];
        for partial in partials.into_iter().filter(|m| *m != meta) {
            if self.exceptions.get(&partial).is_some_and(|q| q & p != 0) {
                return Err(err(format!(
                    "requested rule [{} {}] not supported by devices cgroupv1 (cannot punch hole in existing wildcard rule [{}])",
                    if r.allow { "allow" } else { "deny" },
                    r.v1_line(),
                    partial.rule(true, self.exceptions[&partial]).v1_line()
                )));
            }
        }
        if let Some(q) = self.exceptions.get_mut(&meta) {
            *q &= !p;
            if *q == 0 {
                self.exceptions.remove(&meta);
            }
        }
        Ok(())
    }

    /// The fewest rules that turn this state into `target` (runc's Transition). A source that
    /// allows by default is reset first: its deny exceptions cannot be read back.
    pub fn transition(&self, target: &Emulator) -> Vec<Rule> {
        let mut out = Vec::new();
        let empty = BTreeMap::new();
        let old = if self.default_allow || self.default_allow != target.default_allow {
            out.push(Rule {
                allow: target.default_allow,
                kind: 'a',
                major: None,
                minor: None,
                access: "rwm".into(),
            });
            &empty
        } else {
            &self.exceptions
        };
        for (meta, p) in old {
            let dropped = p & !target.exceptions.get(meta).copied().unwrap_or(0);
            if dropped != 0 {
                out.push(meta.rule(target.default_allow, dropped));
            }
        }
        for (meta, p) in &target.exceptions {
            let gained = p & !old.get(meta).copied().unwrap_or(0);
            if gained != 0 {
                out.push(meta.rule(!target.default_allow, gained));
            }
        }
        out
    }

    /// The rules that build this state from "deny everything", that reset included: a
    /// self-contained list (for the eBPF program).
    pub fn rules(&self) -> Vec<Rule> {
        let mut out = vec![Rule {
            allow: false,
            kind: 'a',
            major: None,
            minor: None,
            access: "rwm".into(),
        }];
        out.extend(
            Emulator::default()
                .transition(self)
                .into_iter()
                .filter(|r| r.kind != 'a' || r.allow),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(allow: bool, kind: char, major: Option<i64>, minor: Option<i64>, access: &str) -> Rule {
        Rule {
            allow,
            kind,
            major,
            minor,
            access: access.into(),
        }
    }

    fn lines(rules: &[Rule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| format!("{} {}", if r.allow { "allow" } else { "deny" }, r.v1_line()))
            .collect()
    }

    #[test]
    fn deny_with_odd_access_is_folded_into_the_exception() {
        let e = Emulator::from_rules(&[
            r(false, 'a', None, None, "rwm"),
            r(true, 'c', Some(1), Some(11), "rwm"),
            r(false, 'c', Some(1), Some(11), "wa"),
        ])
        .unwrap();
        // From a new cgroup (allow all): reset, then the one exception as it ends up.
        let fresh = Emulator::from_list("a *:* rwm\n").unwrap();
        assert_eq!(lines(&fresh.transition(&e)), ["deny a", "allow c 1:11 rm"]);
        // From the same state: nothing to write.
        let same = Emulator::from_list("c 1:11 rm\n").unwrap();
        assert!(same.transition(&e).is_empty());
    }

    #[test]
    fn update_writes_only_the_difference() {
        let cur = Emulator::from_list("c 1:3 rwm\nc 136:* rwm\nc *:* m\n").unwrap();
        let target = Emulator::from_rules(&[
            r(true, 'c', Some(1), Some(3), "rwm"),
            r(true, 'c', Some(136), None, "rw"),
            r(true, 'c', None, None, "m"),
            r(true, 'b', Some(8), Some(0), "r"),
        ])
        .unwrap();
        assert_eq!(
            lines(&cur.transition(&target)),
            ["deny c 136:* m", "allow b 8:0 r"]
        );
    }

    #[test]
    fn allow_all_then_deny() {
        let e = Emulator::from_rules(&[
            r(true, 'a', None, None, "rwm"),
            r(false, 'c', Some(1), Some(11), "rwm"),
            r(true, 'c', Some(1), Some(3), "rwm"),
        ])
        .unwrap();
        assert!(e.allows_by_default());
        let fresh = Emulator::from_list("a *:* rwm\n").unwrap();
        assert_eq!(lines(&fresh.transition(&e)), ["allow a", "deny c 1:11 rwm"]);
    }

    #[test]
    fn punching_a_hole_in_a_wildcard_is_refused() {
        let e = Emulator::from_rules(&[
            r(false, 'a', None, None, "rwm"),
            r(true, 'c', Some(1), None, "rwm"),
            r(false, 'c', Some(1), Some(9), "w"),
        ]);
        let msg = e.unwrap_err().to_string();
        assert!(msg.contains("cannot punch hole"), "{msg}");
    }

    #[test]
    fn rules_rebuild_the_state() {
        let e = Emulator::from_rules(&[
            r(false, 'a', None, None, "rwm"),
            r(true, 'c', Some(1), Some(3), "rwm"),
        ])
        .unwrap();
        assert_eq!(lines(&e.rules()), ["deny a", "allow c 1:3 rwm"]);
        assert_eq!(Emulator::from_rules(&e.rules()).unwrap(), e);
    }
}
