//! The syscall ABIs an x86_64 kernel runs, and which of them a profile's `architectures` accept.
//!
//! An x86_64 kernel takes syscalls through three ABIs, and seccomp tells them apart by
//! `seccomp_data.arch` and the syscall number:
//!
//! | ABI    | OCI name           | `arch`              | numbers                        |
//! |--------|--------------------|---------------------|--------------------------------|
//! | x86_64 | `SCMP_ARCH_X86_64` | `AUDIT_ARCH_X86_64` | the x86_64 table               |
//! | x32    | `SCMP_ARCH_X32`    | `AUDIT_ARCH_X86_64` | x32 table, bit 30 set          |
//! | i386   | `SCMP_ARCH_X86`    | `AUDIT_ARCH_I386`   | the i386 table (`int 0x80` too)|
//!
//! As with libseccomp (and so runc), the native ABI is always accepted, `SCMP_ARCH_NATIVE`
//! means x86_64, and an ABI the profile does not list is killed (`SECCOMP_RET_KILL_PROCESS`;
//! libseccomp's default bad-arch action kills the thread). Architectures of other machines
//! (ARM, RISC-V, ...) are accepted and have nothing to filter, as in runc: libseccomp adds
//! their sections to the filter, but an x86_64 kernel never makes a syscall with their
//! `arch`. Multi-arch profiles (Docker's default, hand-written ones) list them. Big-endian
//! ones (s390x, ppc64, mips) are refused as runc refuses them: libseccomp cannot put
//! architectures of both byte orders into one filter (EDOM, "error adding architecture to
//! seccomp filter").

use oci_spec::runtime::{Arch, LinuxSeccomp};

use super::SeccompError;

/// `AUDIT_ARCH_X86_64` (`EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386` (`EM_386 | __AUDIT_ARCH_LE`).
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__X32_SYSCALL_BIT`: set in the number of every x32 syscall.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// One syscall ABI of an x86_64 kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Abi {
    X86_64,
    X32,
    I386,
}

impl Abi {
    /// Every ABI, in the order filters are laid out.
    pub const ALL: [Abi; 3] = [Abi::X86_64, Abi::X32, Abi::I386];

    /// The profile's name for the ABI.
    pub fn oci_name(self) -> &'static str {
        match self {
            Abi::X86_64 => "SCMP_ARCH_X86_64",
            Abi::X32 => "SCMP_ARCH_X32",
            Abi::I386 => "SCMP_ARCH_X86",
        }
    }

    /// `seccomp_data.arch` of a syscall made through this ABI.
    pub fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
            Abi::I386 => AUDIT_ARCH_I386,
        }
    }

    /// Whether arguments are 32-bit registers. i386 syscalls take 32-bit arguments, and the
    /// upper halves of `seccomp_data.args` may hold whatever a 64-bit caller of `int 0x80` left
    /// in its registers, so only the low halves are compared (as libseccomp does for 32-bit
    /// ABIs). x32 runs on the 64-bit registers, so its arguments are compared in full.
    pub(crate) fn has_32bit_args(self) -> bool {
        self == Abi::I386
    }
}

/// The host's own ABI: the one berth's init (and so the seccomp(2) calls) runs in.
pub(crate) fn native() -> Result<Abi, SeccompError> {
    if cfg!(all(target_arch = "x86_64", target_pointer_width = "64")) {
        Ok(Abi::X86_64)
    } else {
        Err(SeccompError::UnsupportedHost {
            host: std::env::consts::ARCH,
        })
    }
}

/// The ABIs of this host that `linux.seccomp.architectures` accepts, in [`Abi::ALL`]'s order,
/// without duplicates: the native one always, plus the host's other ABIs the profile lists.
/// Other machines' architectures are skipped (see the module's doc).
pub(crate) fn accepted(profile: &LinuxSeccomp) -> Result<Vec<Abi>, SeccompError> {
    let mut abis = vec![native()?];
    for (i, arch) in profile.architectures().iter().flatten().enumerate() {
        let abi = match arch {
            Arch::ScmpArchNative | Arch::ScmpArchX86_64 => Abi::X86_64,
            Arch::ScmpArchX86 => Abi::I386,
            Arch::ScmpArchX32 => Abi::X32,
            Arch::ScmpArchMips
            | Arch::ScmpArchMips64
            | Arch::ScmpArchMips64n32
            | Arch::ScmpArchPpc
            | Arch::ScmpArchPpc64
            | Arch::ScmpArchS390
            | Arch::ScmpArchS390x => {
                return Err(SeccompError::invalid(
                    format!("linux.seccomp.architectures[{i}]"),
                    format!(
                        "{arch} is big-endian: one seccomp filter cannot hold it and this \
                         little-endian host's ABIs (libseccomp, and so runc, refuse it too)"
                    ),
                ))
            }
            _ => continue,
        };
        if !abis.contains(&abi) {
            abis.push(abi);
        }
    }
    abis.sort();
    Ok(abis)
}
