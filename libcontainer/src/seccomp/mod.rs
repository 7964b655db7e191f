//! seccomp: the OCI profile (`linux.seccomp`) compiled to BPF and attached with seccomp(2).
//!
//! Init calls [`compile`] (pure: no syscalls, no root; errors name the JSON field) and, just
//! before exec, after no_new_privs, [`load`], which returns the SCMP_ACT_NOTIFY listener if the
//! profile has NOTIFY rules. Handing the listener to `listenerPath` is the caller's job.
//!
//! # One filter per action
//!
//! seccompiler (the BPF generator) builds filters with one match action and one mismatch
//! action. A profile has many actions, so it becomes several filters, all attached:
//!
//! - per action of the rules other than ALLOW (per verdict, so ERRNO(1) and ERRNO(38) are two):
//!   "the calls these rules match -> that verdict, everything else -> ALLOW";
//! - the default filter: "the calls any rule matches, with its argument conditions, under any
//!   action -> ALLOW, everything else -> the default action" (left out when that is ALLOW);
//! - an architecture filter that kills the syscall ABIs the profile does not accept (left out
//!   when it accepts all three, see below).
//!
//! The kernel runs every filter and takes the verdict of highest precedence (KILL_PROCESS >
//! KILL_THREAD > TRAP > ERRNO > USER_NOTIF > TRACE > LOG > ALLOW), which is the profile's
//! meaning: a matched rule's action wins over the ALLOW of the other filters, and only calls
//! no rule matches reach the default action. Where rules of several actions match one call,
//! the strongest action wins; between two verdicts of the same action (ERRNO with two
//! errnos) the filter loaded later wins, i.e. the action that appears later in the profile.
//!
//! As runc does, berth drops rules whose action equals the default action, ORs (instead of
//! ANDs) the args of a rule that tests one argument index twice, ignores syscall names no
//! accepted ABI knows ([`Compiled::ignored_syscalls`] lists them), and, unless the default
//! action lets syscalls run, makes syscalls numbered above every syscall the profile names
//! fail with ENOSYS (runc's "ENOSYS stub", so that libcs fall back from syscalls newer than the
//! profile). NOTIFY as the default action and NOTIFY on `write` are refused, as runc refuses
//! them.
//!
//! NOTIFY: seccompiler has no notify action, so the NOTIFY filter is compiled with a unique
//! TRACE placeholder as its match action and its `ret` instructions are patched to
//! `SECCOMP_RET_USER_NOTIF`. All NOTIFY rules share one filter (a process has at most one
//! listener), which alone is attached with `SECCOMP_FILTER_FLAG_NEW_LISTENER` (plus
//! `WAIT_KILLABLE_RECV` if asked, and `TSYNC_ESRCH` with `TSYNC`, which the kernel requires).
//! TSYNC, LOG and SPEC_ALLOW go on every filter.
//!
//! Load order: architecture filter, action filters in order of first appearance, default
//! filter, except that a filter that may stop seccomp(2) itself (the default filter of a
//! profile that does not allow `seccomp`, say) is attached last, since nothing can be attached
//! after it. A profile where two filters may stop seccomp(2) is refused at compile time.
//!
//! # Architectures
//!
//! On an x86_64 host, three syscall ABIs reach seccomp (see [`Abi`]). Each filter dispatches on
//! `seccomp_data.arch` and the x32 bit of the syscall number to a body compiled for that ABI's
//! syscall numbers (`program` lays them out; a filter that outgrows the kernel's 4096
//! instructions is split into one per ABI):
//!
//! - `SCMP_ARCH_X86_64` (and `SCMP_ARCH_NATIVE`): always accepted and enforced, as libseccomp
//!   always includes the native architecture.
//! - `SCMP_ARCH_X86` (i386, also `int 0x80` from 64-bit code): enforced with the i386 syscall
//!   table; argument conditions compare the low 32 bits of arguments, as libseccomp does for
//!   32-bit ABIs (profile values are truncated to 32 bits). Not enforced: libseccomp also
//!   expands rules on socket calls (`socket`, `connect`, ...) and SysV IPC calls into rules on
//!   the i386 multiplexers `socketcall(2)` and `ipc(2)` with the matching call number; berth
//!   filters `socketcall` and `ipc` only as the profile names them, so a profile that allows
//!   `socketcall` allows every socket call through it on i386 (Docker's default profile allows
//!   both the multiplexers and the socket calls, so it means the same either way).
//! - `SCMP_ARCH_X32`: enforced with x32 numbers (bit 30 set; the x32 variants 512..=547 of
//!   `readv` etc.); arguments are compared as 64-bit, as x32 syscalls get 64-bit registers.
//! - an accepted ABI the profile does not list is killed with `SECCOMP_RET_KILL_PROCESS`
//!   (libseccomp's bad-arch action kills the thread).
//! - any other architecture (ARM, MIPS, PPC, S390, RISC-V, ...) is an error: berth cannot
//!   filter it. (runc accepts those silently: on an x86_64 host their syscalls never occur.)
//!
//! The `unsafe` seccomp(2) call is in `sys`; everything else is safe code.

mod abi;
mod compile;
mod error;
mod filter;
mod load;
mod load_order;
mod program;
mod rules;
mod sys;
mod sysno;
mod verdict;

// The tests compile and load x86_64 filters (and use x86_64 assembly).
#[cfg(all(test, target_arch = "x86_64"))]
mod tests;

pub use abi::Abi;
pub use compile::compile;
pub use error::SeccompError;
pub use filter::{Compiled, Filter, FilterKind};
pub use load::load;
pub use program::Instruction;
pub use verdict::Verdict;
