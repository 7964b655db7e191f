//! Tests of the seccomp module: compiled programs checked with a BPF interpreter (`bpf_vm`),
//! Docker's default profile (`docker`), and filters loaded in forked children (`child`).

mod bpf_vm;
mod child;
mod compile;
mod docker;

use oci_spec::runtime::LinuxSeccomp;

use super::sysno;
use super::{Abi, Compiled};
use bpf_vm::Call;

/// A profile from its JSON text (as it appears under `linux.seccomp`).
fn profile(json: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(json).expect("test profile parses")
}

/// The kernel's verdict for `name(args...)` through `abi` under `compiled`.
fn verdict(compiled: &Compiled, abi: Abi, name: &str, args: &[u64]) -> u32 {
    let nr = sysno::number(abi, name).unwrap_or_else(|| panic!("{name} on {abi:?}"));
    verdict_nr(compiled, abi, nr, args)
}

fn verdict_nr(compiled: &Compiled, abi: Abi, nr: u32, args: &[u64]) -> u32 {
    let mut all = [0u64; 6];
    all[..args.len()].copy_from_slice(args);
    for filter in compiled.filters() {
        bpf_vm::validate(filter.instructions());
    }
    bpf_vm::evaluate(compiled, &Call { abi, nr, args: all })
}

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}
