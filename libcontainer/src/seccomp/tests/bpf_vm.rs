//! A classic-BPF interpreter for the instructions berth emits, and the kernel's way of combining
//! the verdicts of several filters, so compiled profiles can be checked without loading them.

use crate::seccomp::program::{
    Instruction, DATA_ARCH, DATA_NR, JMP_JA, JMP_JEQ_K, JMP_JGE_K, JMP_JGT_K, LD_W_ABS, RET_K,
};
use crate::seccomp::{Abi, Compiled};

const ALU_AND_K: u16 = 0x54;
const SECCOMP_DATA_SIZE: usize = 64;

/// One syscall as seccomp sees it.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub abi: Abi,
    pub nr: u32,
    pub args: [u64; 6],
}

impl Call {
    /// `struct seccomp_data` for this call (little endian).
    fn data(&self) -> [u8; SECCOMP_DATA_SIZE] {
        let mut data = [0u8; SECCOMP_DATA_SIZE];
        data[DATA_NR as usize..4].copy_from_slice(&self.nr.to_le_bytes());
        data[DATA_ARCH as usize..8].copy_from_slice(&self.abi.audit_arch().to_le_bytes());
        for (i, arg) in self.args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        data
    }
}

/// Checks a program the way the kernel's verifier would reject it: length, opcodes, loads
/// inside `seccomp_data`, jumps inside the program, no falling off the end.
pub fn validate(program: &[Instruction]) {
    assert!(
        !program.is_empty() && program.len() <= 4096,
        "length {}",
        program.len()
    );
    for (pc, insn) in program.iter().enumerate() {
        let target = |offset: usize| {
            let t = pc + 1 + offset;
            assert!(t < program.len(), "jump at {pc} out of the program");
        };
        match insn.code {
            LD_W_ABS => assert!(insn.k % 4 == 0 && (insn.k as usize) < SECCOMP_DATA_SIZE),
            ALU_AND_K => {}
            JMP_JA => target(insn.k as usize),
            JMP_JEQ_K | JMP_JGT_K | JMP_JGE_K => {
                target(insn.jt as usize);
                target(insn.jf as usize);
            }
            RET_K => {}
            other => panic!("unexpected opcode {other:#x} at {pc}"),
        }
    }
    assert_eq!(
        program.last().unwrap().code,
        RET_K,
        "program must end with ret"
    );
}

/// Runs one program on `call`.
pub fn run(program: &[Instruction], call: &Call) -> u32 {
    let data = call.data();
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let insn = program[pc];
        let cond = |taken: bool| 1 + usize::from(if taken { insn.jt } else { insn.jf });
        pc += match insn.code {
            LD_W_ABS => {
                let k = insn.k as usize;
                a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                1
            }
            ALU_AND_K => {
                a &= insn.k;
                1
            }
            JMP_JA => 1 + insn.k as usize,
            JMP_JEQ_K => cond(a == insn.k),
            JMP_JGT_K => cond(a > insn.k),
            JMP_JGE_K => cond(a >= insn.k),
            RET_K => return insn.k,
            other => panic!("unexpected opcode {other:#x}"),
        };
    }
}

/// What the kernel returns for `call` with all of `compiled`'s filters attached: every filter
/// runs, newest first, and the lowest action (as a signed value) wins; on a tie the newest.
pub fn evaluate(compiled: &Compiled, call: &Call) -> u32 {
    let action = |ret: u32| (ret & libc::SECCOMP_RET_ACTION_FULL) as i32;
    let mut ret = libc::SECCOMP_RET_ALLOW;
    for filter in compiled.filters().iter().rev() {
        let cur = run(filter.instructions(), call);
        if action(cur) < action(ret) {
            ret = cur;
        }
    }
    ret
}
