//! Syscall name -> number, per ABI.
//!
//! x86_64 and i386 come from the `syscalls` crate's tables (generated from the kernel's
//! `syscall_64.tbl` / `syscall_32.tbl`). x32 has no table there; it is the x86_64 table with
//! `__X32_SYSCALL_BIT` set, except the syscalls that `syscall_64.tbl` marks `64` (x86_64 only):
//! 36 of them have an x32 variant at 512..=547, the rest do not exist in x32. A test checks the
//! result against `<asm/unistd_x32.h>` where the host has it.
//!
//! A name unknown to an ABI's table is simply not filtered for that ABI (libseccomp does the
//! same); a name unknown to every accepted ABI is ignored, as runc ignores it.

use std::str::FromStr;

use super::abi::{Abi, X32_SYSCALL_BIT};

/// The x32 variants of x86_64-only syscalls (`syscall_64.tbl`, ABI `x32`, numbers 512..=547).
const X32_VARIANTS: [(&str, u32); 36] = [
    ("rt_sigaction", 512),
    ("rt_sigreturn", 513),
    ("ioctl", 514),
    ("readv", 515),
    ("writev", 516),
    ("recvfrom", 517),
    ("sendmsg", 518),
    ("recvmsg", 519),
    ("execve", 520),
    ("ptrace", 521),
    ("rt_sigpending", 522),
    ("rt_sigtimedwait", 523),
    ("rt_sigqueueinfo", 524),
    ("sigaltstack", 525),
    ("timer_create", 526),
    ("mq_notify", 527),
    ("kexec_load", 528),
    ("waitid", 529),
    ("set_robust_list", 530),
    ("get_robust_list", 531),
    ("vmsplice", 532),
    ("move_pages", 533),
    ("preadv", 534),
    ("pwritev", 535),
    ("rt_tgsigqueueinfo", 536),
    ("recvmmsg", 537),
    ("sendmmsg", 538),
    ("process_vm_readv", 539),
    ("process_vm_writev", 540),
    ("setsockopt", 541),
    ("getsockopt", 542),
    ("io_setup", 543),
    ("io_submit", 544),
    ("execveat", 545),
    ("preadv2", 546),
    ("pwritev2", 547),
];

/// x86_64-only syscalls without an x32 variant (`syscall_64.tbl`, ABI `64`, none at 512+).
const NOT_IN_X32: [&str; 11] = [
    "_sysctl",
    "create_module",
    "epoll_ctl_old",
    "epoll_wait_old",
    "get_kernel_syms",
    "get_thread_area",
    "nfsservctl",
    "query_module",
    "set_thread_area",
    "uselib",
    "vserver",
];

/// The number `seccomp_data.nr` holds when `name` is called through `abi`.
pub(crate) fn number(abi: Abi, name: &str) -> Option<u32> {
    match abi {
        Abi::X86_64 => syscalls::x86_64::Sysno::from_str(name)
            .ok()
            .map(|s| s.id() as u32),
        // `break` (unimplemented) is missing from the crate: it cannot name a Rust keyword.
        Abi::I386 if name == "break" => Some(17),
        Abi::I386 => syscalls::x86::Sysno::from_str(name)
            .ok()
            .map(|s| s.id() as u32),
        Abi::X32 => x32_number(name),
    }
}

fn x32_number(name: &str) -> Option<u32> {
    if let Some((_, nr)) = X32_VARIANTS.iter().find(|(n, _)| *n == name) {
        return Some(X32_SYSCALL_BIT | nr);
    }
    if NOT_IN_X32.contains(&name) {
        return None;
    }
    number(Abi::X86_64, name).map(|nr| X32_SYSCALL_BIT | nr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers() {
        assert_eq!(number(Abi::X86_64, "read"), Some(0));
        assert_eq!(number(Abi::X86_64, "seccomp"), Some(317));
        assert_eq!(number(Abi::X86_64, "socketcall"), None);
        assert_eq!(number(Abi::I386, "getpid"), Some(20));
        assert_eq!(number(Abi::I386, "socketcall"), Some(102));
        assert_eq!(number(Abi::I386, "arch_prctl"), Some(384));
        assert_eq!(number(Abi::X32, "read"), Some(X32_SYSCALL_BIT));
        assert_eq!(number(Abi::X32, "readv"), Some(X32_SYSCALL_BIT | 515));
        assert_eq!(number(Abi::X32, "uselib"), None);
        assert_eq!(number(Abi::X32, "clone3"), Some(X32_SYSCALL_BIT | 435));
        assert_eq!(number(Abi::X86_64, "no_such_syscall"), None);
    }

    /// `__NR_name` -> number of a kernel header, or None when the host has no such header.
    fn parse_header(path: &str) -> Option<Vec<(String, u32)>> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut out = Vec::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some("#define"), Some(macro_name)) = (words.next(), words.next()) else {
                continue;
            };
            let Some(name) = macro_name.strip_prefix("__NR_") else {
                continue;
            };
            let rest: String = words.collect::<Vec<_>>().join(" ");
            let nr = match rest.strip_prefix("(__X32_SYSCALL_BIT + ") {
                Some(n) => X32_SYSCALL_BIT | n.trim_end_matches(')').parse::<u32>().unwrap(),
                None => rest.parse::<u32>().unwrap(),
            };
            out.push((name.to_string(), nr));
        }
        Some(out)
    }

    #[test]
    fn tables_agree_with_kernel_headers() {
        let dir = "/usr/include/x86_64-linux-gnu/asm";
        let (Some(h64), Some(h32), Some(hx32)) = (
            parse_header(&format!("{dir}/unistd_64.h")),
            parse_header(&format!("{dir}/unistd_32.h")),
            parse_header(&format!("{dir}/unistd_x32.h")),
        ) else {
            eprintln!("{dir}/unistd_*.h not present: skipped");
            return;
        };
        for (abi, header) in [(Abi::X86_64, &h64), (Abi::I386, &h32), (Abi::X32, &hx32)] {
            assert!(header.len() > 300);
            for (name, nr) in header.iter() {
                assert_eq!(number(abi, name), Some(*nr), "{abi:?} {name}");
            }
        }
        // And the other way: an x86_64 syscall missing from the x32 header has no x32 number.
        for (name, _) in h64.iter() {
            if !hx32.iter().any(|(n, _)| n == name) {
                assert_eq!(number(Abi::X32, name), None, "x32 {name}");
            }
        }
    }
}
