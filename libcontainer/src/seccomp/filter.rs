//! The result of `compile`: BPF programs in load order, each with its seccomp(2) flags.

use std::fmt;

use super::abi::Abi;
use super::program::Instruction;
use super::verdict::Verdict;

/// A compiled profile: BPF programs in load order.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub(crate) filters: Vec<Filter>,
    pub(crate) abis: Vec<Abi>,
    pub(crate) ignored: Vec<String>,
}

impl Compiled {
    /// The filters, in the order `load` attaches them.
    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }

    /// The ABIs the profile lets through (the others are killed).
    pub fn abis(&self) -> &[Abi] {
        &self.abis
    }

    /// Syscall names the profile lists that no accepted ABI has; they are ignored, as runc
    /// ignores them (the caller may log them).
    pub fn ignored_syscalls(&self) -> &[String] {
        &self.ignored
    }

    /// Whether loading creates a SCMP_ACT_NOTIFY listener.
    pub fn has_listener(&self) -> bool {
        self.filters.iter().any(Filter::creates_listener)
    }
}

/// What a filter is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    /// Kills syscalls of ABIs the profile does not accept; allows the rest.
    Architectures,
    /// The profile's rules of one verdict -> that verdict; everything else -> ALLOW.
    Action(Verdict),
    /// Anything some rule matches -> ALLOW; everything else -> the default verdict.
    Default(Verdict),
}

/// One BPF program and the flags seccomp(2) attaches it with.
#[derive(Clone, Debug)]
pub struct Filter {
    pub(crate) kind: FilterKind,
    pub(crate) abis: Vec<Abi>,
    pub(crate) program: Vec<Instruction>,
    pub(crate) flags: libc::c_ulong,
    /// Whether it may stop seccomp(2) itself, so that it must be loaded last.
    pub(crate) blocks_seccomp: bool,
}

impl Filter {
    pub fn kind(&self) -> FilterKind {
        self.kind
    }

    /// The ABIs whose syscalls this program judges (it allows the others).
    pub fn abis(&self) -> &[Abi] {
        &self.abis
    }

    pub fn instructions(&self) -> &[Instruction] {
        &self.program
    }

    /// `SECCOMP_FILTER_FLAG_*` for seccomp(2).
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    pub fn creates_listener(&self) -> bool {
        self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FilterKind::Architectures => f.write_str("the architecture filter")?,
            FilterKind::Action(v) => write!(f, "the filter of the {v} rules")?,
            FilterKind::Default(v) => write!(f, "the default-action filter ({v})")?,
        }
        let names: Vec<_> = self.abis.iter().map(|a| a.oci_name()).collect();
        write!(f, " [{}]", names.join(", "))
    }
}
