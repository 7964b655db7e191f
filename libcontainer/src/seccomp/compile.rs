//! A checked profile -> the filters to load, in load order, with their seccomp(2) flags.

use oci_spec::runtime::LinuxSeccomp;

use super::abi::{self, Abi};
use super::filter::{Compiled, Filter, FilterKind};
use super::load_order::{order, with_flags};
use super::program::{self, Instruction, SyscallMap, BPF_MAXINSNS};
use super::rules::{self, Profile};
use super::sysno;
use super::verdict::{Verdict, NOTIFY_PLACEHOLDER};
use super::SeccompError;

/// The kernel's limit on all filters of a thread, each counted with 4 extra instructions
/// (`MAX_INSNS_PER_PATH`).
const MAX_INSNS_PER_PATH: usize = 32768;

/// Per-ABI syscall maps.
type PerAbi = Vec<(Abi, SyscallMap)>;

/// Programs with the ABIs each judges.
type Programs = Vec<(Vec<Abi>, Vec<Instruction>)>;

/// Compiles an OCI profile (see the module documentation for the layout).
pub fn compile(profile: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    let abis = abi::accepted(profile)?;
    let native = abi::native()?;
    let profile = rules::normalize(profile)?;

    let ignored = unknown_names(&profile, &abis);
    let per_verdict = verdict_maps(&profile, &abis);
    let default_maps = default_maps(&profile, &abis);

    let mut filters = Vec::new();
    if abis != Abi::ALL {
        let sections: Vec<_> = abis
            .iter()
            .map(|&a| (a, vec![ret_insn(Verdict::Allow)]))
            .collect();
        let program = program::assemble(&sections, Verdict::KillProcess.ret());
        filters.push(new_filter(
            FilterKind::Architectures,
            &abis,
            program,
            false,
        )?);
    }
    for (verdict, maps) in &per_verdict {
        let blocks = !verdict.runs_syscall() && lists(maps, native, seccomp_nr(native));
        let what = format!("the filter of the {verdict} rules");
        let mut sections = Vec::new();
        for (abi, map) in maps.iter().filter(|(_, m)| !m.is_empty()) {
            sections.push((
                *abi,
                program::body(*abi, map, *verdict, Verdict::Allow, &what)?,
            ));
        }
        if sections.is_empty() {
            continue;
        }
        let splittable = *verdict != Verdict::Notify;
        for (abis, mut program) in lay_out(&sections, Verdict::Allow, splittable, &what)? {
            if *verdict == Verdict::Notify {
                let placeholder = Verdict::Trace(NOTIFY_PLACEHOLDER).ret();
                let patched =
                    program::patch_returns(&mut program, placeholder, Verdict::Notify.ret());
                debug_assert!(patched > 0);
            }
            filters.push(new_filter(
                FilterKind::Action(*verdict),
                &abis,
                program,
                blocks,
            )?);
        }
    }
    if profile.default != Verdict::Allow {
        let default = profile.default;
        let native_map = &default_maps.iter().find(|(a, _)| *a == native).unwrap().1;
        let blocks = !default.runs_syscall()
            && native_map.get(&seccomp_nr(native)) != Some(&program::Match::All);
        let what = format!("the default-action filter ({default})");
        let stub = needs_enosys_stub(default);
        let mut sections = Vec::new();
        for (abi, map) in &default_maps {
            let mut section = match max_listed(&profile, *abi) {
                Some(max) if stub => program::enosys_stub(max),
                _ => Vec::new(),
            };
            section.extend(program::body(*abi, map, Verdict::Allow, default, &what)?);
            sections.push((*abi, section));
        }
        for (abis, program) in lay_out(&sections, Verdict::Allow, true, &what)? {
            filters.push(new_filter(
                FilterKind::Default(default),
                &abis,
                program,
                blocks,
            )?);
        }
    }

    let filters = order(filters)?;
    let filters = with_flags(filters, profile.flags);
    let total: usize = filters.iter().map(|f| f.program.len() + 4).sum();
    if total > MAX_INSNS_PER_PATH {
        return Err(SeccompError::TooLarge {
            what: format!("the profile's {} filters together", filters.len()),
            len: total,
            limit: MAX_INSNS_PER_PATH,
        });
    }
    Ok(Compiled {
        filters,
        abis,
        ignored,
    })
}

fn ret_insn(verdict: Verdict) -> Instruction {
    Instruction {
        code: program::RET_K,
        jt: 0,
        jf: 0,
        k: verdict.ret(),
    }
}

fn seccomp_nr(abi: Abi) -> u32 {
    sysno::number(abi, "seccomp").expect("every x86 ABI has seccomp(2)")
}

fn lists(maps: &PerAbi, abi: Abi, nr: u32) -> bool {
    maps.iter().any(|(a, m)| *a == abi && m.contains_key(&nr))
}

/// Names that resolve on no accepted ABI, each once, in profile order.
fn unknown_names(profile: &Profile, abis: &[Abi]) -> Vec<String> {
    let mut ignored: Vec<String> = Vec::new();
    for name in &profile.names {
        let known = abis.iter().any(|&a| sysno::number(a, name).is_some());
        if !known && !ignored.contains(name) {
            ignored.push(name.clone());
        }
    }
    ignored
}

/// For each verdict but ALLOW, in order of first appearance: its rules, per ABI.
fn verdict_maps(profile: &Profile, abis: &[Abi]) -> Vec<(Verdict, PerAbi)> {
    let mut out: Vec<(Verdict, PerAbi)> = Vec::new();
    for rule in profile.rules.iter().filter(|r| r.verdict != Verdict::Allow) {
        let index = match out.iter().position(|(v, _)| *v == rule.verdict) {
            Some(i) => i,
            None => {
                let empty = abis.iter().map(|&a| (a, SyscallMap::new())).collect();
                out.push((rule.verdict, empty));
                out.len() - 1
            }
        };
        for (abi, map) in out[index].1.iter_mut() {
            if let Some(nr) = sysno::number(*abi, &rule.name) {
                program::add_rule(map, nr, &rule.conds);
            }
        }
    }
    out
}

/// Every rule, whatever its verdict, per ABI: what the default filter lets through.
fn default_maps(profile: &Profile, abis: &[Abi]) -> PerAbi {
    abis.iter()
        .map(|&abi| {
            let mut map = SyscallMap::new();
            for rule in &profile.rules {
                if let Some(nr) = sysno::number(abi, &rule.name) {
                    program::add_rule(&mut map, nr, &rule.conds);
                }
            }
            (abi, map)
        })
        .collect()
}

/// runc prepends its ENOSYS stub unless the default action lets syscalls through (ALLOW, LOG,
/// TRACE) or already is ENOSYS.
fn needs_enosys_stub(default: Verdict) -> bool {
    !matches!(
        default,
        Verdict::Allow | Verdict::Log | Verdict::Trace(_) | Verdict::Errno(38)
    )
}

/// The highest number, on `abi`, of any syscall the profile names.
fn max_listed(profile: &Profile, abi: Abi) -> Option<u32> {
    profile
        .names
        .iter()
        .filter_map(|n| sysno::number(abi, n))
        .max()
}

/// One program for all sections if it fits, else (when allowed) one per ABI.
fn lay_out(
    sections: &[(Abi, Vec<Instruction>)],
    other: Verdict,
    splittable: bool,
    what: &str,
) -> Result<Programs, SeccompError> {
    let all: Vec<Abi> = sections.iter().map(|(a, _)| *a).collect();
    let program = program::assemble(sections, other.ret());
    if program.len() <= BPF_MAXINSNS {
        return Ok(vec![(all, program)]);
    }
    if !splittable || sections.len() == 1 {
        return Err(SeccompError::TooLarge {
            what: what.to_string(),
            len: program.len(),
            limit: BPF_MAXINSNS,
        });
    }
    let mut out = Vec::new();
    for section in sections {
        let program = program::assemble(std::slice::from_ref(section), other.ret());
        if program.len() > BPF_MAXINSNS {
            return Err(SeccompError::TooLarge {
                what: format!("{what} for {}", section.0.oci_name()),
                len: program.len(),
                limit: BPF_MAXINSNS,
            });
        }
        out.push((vec![section.0], program));
    }
    Ok(out)
}

fn new_filter(
    kind: FilterKind,
    abis: &[Abi],
    program: Vec<Instruction>,
    blocks_seccomp: bool,
) -> Result<Filter, SeccompError> {
    // Only the part of a split filter that judges the native ABI can stop seccomp(2).
    let blocks_seccomp = blocks_seccomp && abis.contains(&abi::native()?);
    Ok(Filter {
        kind,
        abis: abis.to_vec(),
        program,
        flags: 0,
        blocks_seccomp,
    })
}
