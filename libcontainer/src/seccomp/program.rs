//! BPF programs: seccompiler compiles each ABI's rules into a body, and berth lays the bodies
//! out behind its own ABI dispatch.
//!
//! seccompiler starts every program with "arch != AUDIT_ARCH_X86_64 -> KILL_PROCESS" and knows
//! nothing of x32 or i386. berth checks that prologue is exactly the expected three
//! instructions, strips it, and puts its own in front:
//!
//! ```text
//!       ld  [arch]
//!       jeq AUDIT_ARCH_X86_64, 0, 1 ; ja L64     (when an x86_64 or x32 body is present)
//!       jeq AUDIT_ARCH_I386,   0, 1 ; ja L386    (when an i386 body is present)
//!       ret OTHER
//! L64:  ld  [nr]
//!       jge __X32_SYSCALL_BIT, 0, 1
//!       ja  LX32 | ret OTHER
//!       <x86_64 body> | ret OTHER
//! LX32: <x32 body>
//! L386: <i386 body>
//! ```
//!
//! Each body is self-contained (BPF jumps are relative and forward), so laying bodies end to end
//! keeps them valid. OTHER is what the filter returns for an ABI it has no body for.

use std::collections::BTreeMap;

use seccompiler::{
    BackendError, BpfProgram, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::abi::{Abi, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use super::rules::{Cond, Op};
use super::verdict::Verdict;
use super::SeccompError;

/// One classic-BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const _: () = assert!(
    std::mem::size_of::<Instruction>() == std::mem::size_of::<libc::sock_filter>()
        && std::mem::align_of::<Instruction>() == std::mem::align_of::<libc::sock_filter>()
);

/// The kernel's limit on one program (`BPF_MAXINSNS`).
pub(crate) const BPF_MAXINSNS: usize = 4096;

pub(crate) const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
pub(crate) const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
pub(crate) const JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
pub(crate) const JMP_JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
pub(crate) const JMP_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
pub(crate) const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Offsets in `struct seccomp_data`.
pub(crate) const DATA_NR: u32 = 0;
pub(crate) const DATA_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> Instruction {
    Instruction {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}

fn ret(value: u32) -> Instruction {
    stmt(RET_K, value)
}

/// Which calls of one syscall a body matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Match {
    /// Every call.
    All,
    /// Calls for which one of the condition sets holds (each set ANDed).
    Any(Vec<Vec<Cond>>),
}

/// Syscall number -> which of its calls match.
pub(crate) type SyscallMap = BTreeMap<u32, Match>;

/// Adds "calls of `nr` where all `conds` hold" to `map`.
pub(crate) fn add_rule(map: &mut SyscallMap, nr: u32, conds: &[Cond]) {
    let entry = map.entry(nr).or_insert_with(|| Match::Any(Vec::new()));
    match entry {
        Match::All => {}
        Match::Any(_) if conds.is_empty() => *entry = Match::All,
        Match::Any(sets) => sets.push(conds.to_vec()),
    }
}

/// The body for one ABI: calls in `map` -> `on_match`, all others -> `on_mismatch`.
pub(crate) fn body(
    abi: Abi,
    map: &SyscallMap,
    on_match: Verdict,
    on_mismatch: Verdict,
    what: &str,
) -> Result<Vec<Instruction>, SeccompError> {
    let bpf_err = |source: BackendError| match source {
        BackendError::FilterTooLarge(len) => SeccompError::TooLarge {
            what: format!("{what} for {}", abi.oci_name()),
            len,
            limit: BPF_MAXINSNS,
        },
        err => SeccompError::Bpf {
            what: what.to_string(),
            err,
        },
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (&nr, matching) in map {
        match matching {
            Match::All => {
                rules.insert(i64::from(nr), Vec::new());
            }
            Match::Any(sets) => {
                let mut chain = Vec::new();
                'sets: for set in sets {
                    let mut conditions = Vec::with_capacity(set.len());
                    for cond in set {
                        match condition(abi, cond).map_err(bpf_err)? {
                            Some(c) => conditions.push(c),
                            None => continue 'sets, // can never hold: the set never matches
                        }
                    }
                    chain.push(SeccompRule::new(conditions).map_err(bpf_err)?);
                }
                if !chain.is_empty() {
                    rules.insert(i64::from(nr), chain);
                }
            }
        }
    }
    let filter = SeccompFilter::new(
        rules,
        on_mismatch.to_seccompiler(),
        on_match.to_seccompiler(),
        TargetArch::x86_64,
    )
    .map_err(bpf_err)?;
    let program = BpfProgram::try_from(filter).map_err(bpf_err)?;
    strip_arch_check(&program).ok_or_else(|| SeccompError::Bpf {
        what: what.to_string(),
        err: BackendError::InvalidTargetArch(
            "seccompiler's program does not start with its x86_64 check".to_string(),
        ),
    })
}

/// seccompiler's condition for `cond` on `abi`, or None when it can never hold.
fn condition(abi: Abi, cond: &Cond) -> Result<Option<SeccompCondition>, BackendError> {
    let (len, narrow): (SeccompCmpArgLen, fn(u64) -> u64) = if abi.has_32bit_args() {
        (SeccompCmpArgLen::Dword, |v| v & 0xffff_ffff)
    } else {
        (SeccompCmpArgLen::Qword, |v| v)
    };
    let value = narrow(cond.value);
    let op = match cond.op {
        Op::Ne => SeccompCmpOp::Ne,
        Op::Lt => SeccompCmpOp::Lt,
        Op::Le => SeccompCmpOp::Le,
        Op::Eq => SeccompCmpOp::Eq,
        Op::Ge => SeccompCmpOp::Ge,
        Op::Gt => SeccompCmpOp::Gt,
        Op::MaskedEq { mask } => {
            let mask = narrow(mask);
            // seccompiler compares (arg & mask) with (value & mask); libseccomp with value.
            // They differ only when value has bits outside the mask: then nothing matches.
            if value & !mask != 0 {
                return Ok(None);
            }
            SeccompCmpOp::MaskedEq(mask)
        }
    };
    SeccompCondition::new(cond.index, len, op, value).map(Some)
}

/// seccompiler's program without its 3-instruction x86_64 check (None if it is not there).
fn strip_arch_check(program: &BpfProgram) -> Option<Vec<Instruction>> {
    let insns: Vec<Instruction> = program
        .iter()
        .map(|i| Instruction {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let expected = [
        stmt(LD_W_ABS, DATA_ARCH),
        jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
    ];
    (insns.len() > expected.len() && insns[..expected.len()] == expected)
        .then(|| insns[expected.len()..].to_vec())
}

/// runc's ENOSYS stub for one ABI: syscalls numbered above anything the profile names (newer
/// than the profile) fail with ENOSYS, so that libcs fall back to older syscalls.
pub(crate) fn enosys_stub(max_listed: u32) -> Vec<Instruction> {
    vec![
        stmt(LD_W_ABS, DATA_NR),
        jump(JMP_JGT_K, max_listed, 0, 1),
        ret(Verdict::Errno(libc::ENOSYS as u16).ret()),
    ]
}

/// Lays out per-ABI bodies behind the ABI dispatch; ABIs without a body get `other`.
pub(crate) fn assemble(sections: &[(Abi, Vec<Instruction>)], other: u32) -> Vec<Instruction> {
    let find = |abi: Abi| {
        sections
            .iter()
            .find(|(a, _)| *a == abi)
            .map(|(_, b)| b.as_slice())
    };
    let (x86_64, x32, i386) = (find(Abi::X86_64), find(Abi::X32), find(Abi::I386));
    let family64 = x86_64.is_some() || x32.is_some();
    let other_body = [ret(other)];

    let head_len = 1 + 2 * usize::from(family64) + 2 * usize::from(i386.is_some()) + 1;
    let l64 = head_len;
    let x86_64_body = x86_64.unwrap_or(&other_body);
    let len64 = if family64 { 3 + x86_64_body.len() } else { 0 };
    let lx32 = l64 + len64;
    let l386 = lx32 + x32.map_or(0, <[_]>::len);

    let mut out = Vec::with_capacity(l386 + i386.map_or(0, <[_]>::len));
    let ja_to =
        |out: &Vec<Instruction>, target: usize| stmt(JMP_JA, (target - out.len() - 1) as u32);
    out.push(stmt(LD_W_ABS, DATA_ARCH));
    if family64 {
        out.push(jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, 0, 1));
        out.push(ja_to(&out, l64));
    }
    if i386.is_some() {
        out.push(jump(JMP_JEQ_K, AUDIT_ARCH_I386, 0, 1));
        out.push(ja_to(&out, l386));
    }
    out.push(ret(other));
    if family64 {
        debug_assert_eq!(out.len(), l64);
        out.push(stmt(LD_W_ABS, DATA_NR));
        out.push(jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1));
        if x32.is_some() {
            out.push(ja_to(&out, lx32));
        } else {
            out.push(ret(other));
        }
        out.extend_from_slice(x86_64_body);
    }
    if let Some(body) = x32 {
        debug_assert_eq!(out.len(), lx32);
        out.extend_from_slice(body);
    }
    if let Some(body) = i386 {
        debug_assert_eq!(out.len(), l386);
        out.extend_from_slice(body);
    }
    out
}

/// Replaces every `ret from` with `ret to`; returns how many it replaced.
pub(crate) fn patch_returns(program: &mut [Instruction], from: u32, to: u32) -> usize {
    let mut patched = 0;
    for insn in program
        .iter_mut()
        .filter(|i| i.code == RET_K && i.k == from)
    {
        insn.k = to;
        patched += 1;
    }
    patched
}
