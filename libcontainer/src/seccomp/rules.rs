//! `linux.seccomp` -> a checked, flat list of rules (one per syscall name and condition set),
//! with runc's reading of the profile:
//!
//! - `SCMP_ACT_KILL` is KILL_THREAD; `errnoRet` defaults to EPERM for ERRNO and TRACE.
//! - A rule whose verdict equals the default verdict is dropped (runc skips it as redundant).
//! - A rule's `args` are ANDed; when two of them test the same argument index, runc (after
//!   libseccomp's old behaviour) makes each a rule of its own, ORed, and so does berth.
//! - `SCMP_CMP_MASKED_EQ` is `(arg & value) == valueTwo`; other operators ignore `valueTwo`.
//! - SCMP_ACT_NOTIFY is refused as the default action and for `write`, as runc refuses it.
//! - One syscall with the same argument conditions (in any order) under two actions is
//!   refused, as libseccomp refuses the second rule (EEXIST) and runc with it.
//! - A rule without conditions decides its syscall, as in libseccomp's rule database: it
//!   replaces the syscall's earlier conditional rules, and every later rule for the syscall
//!   is dropped, so the first unconditional action wins (runc 1.1 and 1.3 alike; found by
//!   the differential fuzzer, seed 601 case 114). Overlapping conditional rules under
//!   different actions give the strongest action (see verdict.rs).

use std::collections::HashSet;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompFilterFlag, LinuxSeccompOperator};

use super::verdict::Verdict;
use super::SeccompError;

/// A comparison of one syscall argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`.
    MaskedEq {
        mask: u64,
    },
}

/// `args[index] <op> value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cond {
    pub index: u8,
    pub op: Op,
    pub value: u64,
}

/// One syscall name under one verdict, matching when all `conds` hold (always, if empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub verdict: Verdict,
    pub name: String,
    pub conds: Vec<Cond>,
    /// The `linux.seccomp.syscalls[i]` it comes from.
    pub origin: usize,
}

/// The profile's filter flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    pub tsync: bool,
    pub log: bool,
    pub spec_allow: bool,
    pub wait_killable_recv: bool,
}

/// A checked profile.
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    pub default: Verdict,
    pub rules: Vec<Rule>,
    /// Every syscall name the profile lists, under any action (runc's ENOSYS stub and the
    /// "unknown name" report look at all of them).
    pub names: Vec<String>,
    pub flags: Flags,
}

/// Seccomp passes six syscall arguments.
const MAX_ARGS: usize = 6;

pub(crate) fn normalize(profile: &LinuxSeccomp) -> Result<Profile, SeccompError> {
    let default = Verdict::from_oci(
        profile.default_action(),
        profile.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    if default == Verdict::Notify {
        return Err(SeccompError::invalid(
            "linux.seccomp.defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }

    let mut flags = Flags::default();
    for flag in profile.flags().iter().flatten() {
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => flags.tsync = true,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => flags.log = true,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => flags.spec_allow = true,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                flags.wait_killable_recv = true
            }
        }
    }

    let mut rules: Vec<Rule> = Vec::new();
    let mut names = Vec::new();
    // Syscalls with an unconditional rule (no later rule changes them), and those with
    // conditional rules (which a later unconditional one replaces). Sets: docker's profile
    // lists some 350 names, and this runs on every create.
    let mut decided: HashSet<&str> = HashSet::new();
    let mut conditional: HashSet<&str> = HashSet::new();
    for (i, syscall) in profile.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let verdict = Verdict::from_oci(
            syscall.action(),
            syscall.errno_ret(),
            &format!("{field}.errnoRet"),
        )?;
        let cond_sets = condition_sets(syscall.args().as_deref().unwrap_or(&[]), &field)?;
        for (k, name) in syscall.names().iter().enumerate() {
            if name.is_empty() {
                return Err(SeccompError::invalid(
                    format!("{field}.names[{k}]"),
                    "an empty string is not a syscall name",
                ));
            }
            if verdict == Verdict::Notify && name == "write" {
                return Err(SeccompError::invalid(
                    format!("{field}.names[{k}]"),
                    "SCMP_ACT_NOTIFY cannot be used for the write syscall (the runtime needs \
                     write to hand the listener over)",
                ));
            }
            names.push(name.clone());
            if verdict == default {
                continue;
            }
            for conds in &cond_sets {
                if decided.contains(name.as_str()) {
                    continue;
                }
                if conds.is_empty() {
                    decided.insert(name);
                    if conditional.remove(name.as_str()) {
                        rules.retain(|r| &r.name != name);
                    }
                } else if let Some(j) = conflicting(&rules, verdict, name, conds) {
                    return Err(SeccompError::invalid(
                        format!("{field}.names[{k}]"),
                        format!(
                            "error adding seccomp rule for syscall {name}: file exists \
                             (linux.seccomp.syscalls[{j}] gives the same argument conditions \
                             another action)"
                        ),
                    ));
                }
                if !conds.is_empty() {
                    conditional.insert(name);
                }
                rules.push(Rule {
                    verdict,
                    name: name.clone(),
                    conds: conds.clone(),
                    origin: i,
                });
            }
        }
    }
    Ok(Profile {
        default,
        rules,
        names,
        flags,
    })
}

/// The `syscalls[i]` of an earlier rule for `name` with the same (non-empty) conditions but
/// another verdict: libseccomp refuses such a rule, and runc with it.
fn conflicting(rules: &[Rule], verdict: Verdict, name: &str, conds: &[Cond]) -> Option<usize> {
    if conds.is_empty() {
        return None;
    }
    let same_set = |a: &[Cond], b: &[Cond]| {
        a.len() == b.len() && a.iter().all(|c| b.contains(c)) && b.iter().all(|c| a.contains(c))
    };
    rules
        .iter()
        .find(|r| r.name == name && r.verdict != verdict && same_set(&r.conds, conds))
        .map(|r| r.origin)
}

/// The ORed condition sets of one `syscalls[i]` entry: one set of all its args, or (when an
/// argument index repeats, as runc does) one set per arg.
fn condition_sets(
    args: &[oci_spec::runtime::LinuxSeccompArg],
    field: &str,
) -> Result<Vec<Vec<Cond>>, SeccompError> {
    let mut conds = Vec::with_capacity(args.len());
    let mut per_index = [0usize; MAX_ARGS];
    for (j, arg) in args.iter().enumerate() {
        let index = arg.index();
        if index >= MAX_ARGS {
            return Err(SeccompError::invalid(
                format!("{field}.args[{j}].index"),
                format!("{index} is not a syscall argument (0 to 5)"),
            ));
        }
        per_index[index] += 1;
        let (op, value) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => (Op::Ne, arg.value()),
            LinuxSeccompOperator::ScmpCmpLt => (Op::Lt, arg.value()),
            LinuxSeccompOperator::ScmpCmpLe => (Op::Le, arg.value()),
            LinuxSeccompOperator::ScmpCmpEq => (Op::Eq, arg.value()),
            LinuxSeccompOperator::ScmpCmpGe => (Op::Ge, arg.value()),
            LinuxSeccompOperator::ScmpCmpGt => (Op::Gt, arg.value()),
            LinuxSeccompOperator::ScmpCmpMaskedEq => (
                Op::MaskedEq { mask: arg.value() },
                arg.value_two().unwrap_or(0),
            ),
        };
        conds.push(Cond {
            index: index as u8,
            op,
            value,
        });
    }
    if per_index.iter().any(|&n| n > 1) {
        Ok(conds.into_iter().map(|c| vec![c]).collect())
    } else {
        Ok(vec![conds])
    }
}
