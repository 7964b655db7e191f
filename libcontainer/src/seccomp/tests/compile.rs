//! compile(): profiles in, verdicts out (through the BPF interpreter), no syscalls.

use serde_json::json;

use super::{errno, profile, verdict, verdict_nr, ALLOW, KILL_PROCESS};
use crate::seccomp::abi::X32_SYSCALL_BIT;
use crate::seccomp::program::RET_K;
use crate::seccomp::verdict::NOTIFY_PLACEHOLDER;
use crate::seccomp::{compile, Abi, FilterKind, SeccompError, Verdict};

const X64: Abi = Abi::X86_64;

fn compile_json(json: serde_json::Value) -> crate::seccomp::Compiled {
    compile(&profile(json)).expect("profile compiles")
}

fn compile_err(json: serde_json::Value) -> String {
    compile(&profile(json)).unwrap_err().to_string()
}

#[test]
fn default_action_and_errno() {
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["getpid", "read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
        ]
    }));
    assert_eq!(verdict(&c, X64, "getpid", &[]), ALLOW);
    assert_eq!(verdict(&c, X64, "read", &[3, 0, 10]), ALLOW);
    // ERRNO without errnoRet is EPERM, and so is the default: that rule is dropped as runc does.
    assert_eq!(verdict(&c, X64, "getppid", &[]), errno(libc::EPERM));
    assert_eq!(verdict(&c, X64, "getpriority", &[]), errno(42));
    assert_eq!(verdict(&c, X64, "mkdir", &[]), errno(libc::EPERM));
    // Above every listed number (getpriority, 140): ENOSYS (runc's stub, see below).
    assert_eq!(verdict(&c, X64, "openat", &[]), errno(libc::ENOSYS));

    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(verdict(&c, X64, "openat", &[]), errno(libc::ENOSYS));
}

#[test]
fn every_action() {
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["getuid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["getgid"], "action": "SCMP_ACT_TRAP"},
            {"names": ["geteuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["getegid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["getpgrp"], "action": "SCMP_ACT_TRACE"},
            {"names": ["getsid"], "action": "SCMP_ACT_LOG"},
            {"names": ["gettid"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["uname"], "action": "SCMP_ACT_ALLOW"},
        ]
    }));
    assert_eq!(
        verdict(&c, X64, "getpid", &[]),
        libc::SECCOMP_RET_KILL_THREAD
    );
    assert_eq!(
        verdict(&c, X64, "getppid", &[]),
        libc::SECCOMP_RET_KILL_THREAD
    );
    assert_eq!(verdict(&c, X64, "getuid", &[]), KILL_PROCESS);
    assert_eq!(verdict(&c, X64, "getgid", &[]), libc::SECCOMP_RET_TRAP);
    assert_eq!(verdict(&c, X64, "geteuid", &[]), errno(13));
    assert_eq!(
        verdict(&c, X64, "getegid", &[]),
        libc::SECCOMP_RET_TRACE | 7
    );
    assert_eq!(
        verdict(&c, X64, "getpgrp", &[]),
        libc::SECCOMP_RET_TRACE | 1
    );
    assert_eq!(verdict(&c, X64, "getsid", &[]), libc::SECCOMP_RET_LOG);
    assert_eq!(
        verdict(&c, X64, "gettid", &[]),
        libc::SECCOMP_RET_USER_NOTIF
    );
    assert_eq!(verdict(&c, X64, "uname", &[]), ALLOW);
    assert_eq!(verdict(&c, X64, "read", &[]), ALLOW);
    // Default ALLOW: no default filter; only native listed: an architecture filter.
    assert!(!c
        .filters()
        .iter()
        .any(|f| matches!(f.kind(), FilterKind::Default(_))));
    assert_eq!(c.filters()[0].kind(), FilterKind::Architectures);
}

#[test]
fn notify_is_patched_into_one_listener_filter() {
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [
            {"names": ["getpid", "seccomp", "exit_group"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["rmdir"], "action": "SCMP_ACT_NOTIFY",
             "args": [{"index": 1, "value": 5, "op": "SCMP_CMP_EQ"}]},
        ]
    }));
    assert!(c.has_listener());
    let listeners: Vec<_> = c
        .filters()
        .iter()
        .filter(|f| f.creates_listener())
        .collect();
    assert_eq!(listeners.len(), 1, "one listener per process");
    let notify = listeners[0];
    assert_eq!(notify.kind(), FilterKind::Action(Verdict::Notify));
    assert_eq!(notify.abis(), &Abi::ALL);
    assert_eq!(
        notify.flags(),
        libc::SECCOMP_FILTER_FLAG_TSYNC
            | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
            | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
    );
    for other in c.filters().iter().filter(|f| !f.creates_listener()) {
        assert_eq!(other.flags(), libc::SECCOMP_FILTER_FLAG_TSYNC);
    }
    // The program returns USER_NOTIF, and nothing is left of the placeholder.
    let rets: Vec<u32> = notify
        .instructions()
        .iter()
        .filter(|i| i.code == RET_K)
        .map(|i| i.k)
        .collect();
    assert!(rets.contains(&libc::SECCOMP_RET_USER_NOTIF));
    let placeholder = libc::SECCOMP_RET_TRACE | u32::from(NOTIFY_PLACEHOLDER);
    assert!(!rets.contains(&placeholder));
    assert!(rets
        .iter()
        .all(|&r| r == libc::SECCOMP_RET_USER_NOTIF || r == ALLOW));
    for abi in Abi::ALL {
        assert_eq!(
            verdict(&c, abi, "mkdir", &[]),
            libc::SECCOMP_RET_USER_NOTIF,
            "{abi:?}"
        );
        assert_eq!(
            verdict(&c, abi, "rmdir", &[0, 5]),
            libc::SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(verdict(&c, abi, "rmdir", &[0, 6]), errno(libc::EPERM));
        assert_eq!(verdict(&c, abi, "getpid", &[]), ALLOW);
    }
}

/// (op, value, valueTwo, argument, expected match)
#[test]
fn every_operator() {
    let big = 0x1_0000_0005u64;
    let cases: &[(&str, u64, u64, u64, bool)] = &[
        ("SCMP_CMP_EQ", 5, 0, 5, true),
        ("SCMP_CMP_EQ", 5, 0, 6, false),
        ("SCMP_CMP_EQ", 5, 0, big, false),
        ("SCMP_CMP_EQ", big, 0, big, true),
        ("SCMP_CMP_NE", 5, 0, 5, false),
        ("SCMP_CMP_NE", 5, 0, 6, true),
        ("SCMP_CMP_NE", 5, 0, big, true),
        ("SCMP_CMP_LT", 5, 0, 4, true),
        ("SCMP_CMP_LT", 5, 0, 5, false),
        ("SCMP_CMP_LT", big, 0, 6, true),
        ("SCMP_CMP_LE", 5, 0, 5, true),
        ("SCMP_CMP_LE", 5, 0, 6, false),
        ("SCMP_CMP_LE", 5, 0, big, false),
        ("SCMP_CMP_GE", 5, 0, 5, true),
        ("SCMP_CMP_GE", 5, 0, 4, false),
        ("SCMP_CMP_GE", 6, 0, big, true),
        ("SCMP_CMP_GT", 5, 0, 6, true),
        ("SCMP_CMP_GT", 5, 0, 5, false),
        ("SCMP_CMP_GT", big, 0, 7, false),
        ("SCMP_CMP_GT", 0xffff_ffff, 0, big, true),
        // (arg & value) == valueTwo
        ("SCMP_CMP_MASKED_EQ", 0xf0, 0x30, 0x3f, true),
        ("SCMP_CMP_MASKED_EQ", 0xf0, 0x30, 0x4f, false),
        ("SCMP_CMP_MASKED_EQ", 0x7e02_0000, 0, 0x11, true),
        ("SCMP_CMP_MASKED_EQ", 0x7e02_0000, 0, 0x1000_0000, false),
        (
            "SCMP_CMP_MASKED_EQ",
            0xf_0000_0000,
            0x1_0000_0000,
            0x1_0000_0007,
            true,
        ),
        (
            "SCMP_CMP_MASKED_EQ",
            0xf_0000_0000,
            0x1_0000_0000,
            0x2_0000_0007,
            false,
        ),
        // valueTwo outside the mask can never match (as with libseccomp).
        ("SCMP_CMP_MASKED_EQ", 0x0f, 0xf0, 0x00, false),
    ];
    for &(op, value, value_two, arg, expected) in cases {
        let c = compile_json(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": value, "valueTwo": value_two, "op": op}]}]
        }));
        let want = if expected { ALLOW } else { errno(libc::EPERM) };
        assert_eq!(
            verdict(&c, X64, "personality", &[arg]),
            want,
            "{op} value={value:#x} valueTwo={value_two:#x} arg={arg:#x}"
        );
    }
}

#[test]
fn args_are_anded_and_rules_ored() {
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            // rule 1: a0 == 1 && a2 > 10
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                      {"index": 2, "value": 10, "op": "SCMP_CMP_GT"}]},
            // rule 2: a1 == 3
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
             "args": [{"index": 1, "value": 3, "op": "SCMP_CMP_EQ"}]},
        ]
    }));
    let denied = errno(97);
    assert_eq!(verdict(&c, X64, "socket", &[1, 0, 11]), denied);
    assert_eq!(verdict(&c, X64, "socket", &[1, 0, 10]), ALLOW);
    assert_eq!(verdict(&c, X64, "socket", &[2, 0, 11]), ALLOW);
    assert_eq!(verdict(&c, X64, "socket", &[2, 3, 0]), denied);
    assert_eq!(verdict(&c, X64, "socket", &[1, 3, 0]), denied);
}

#[test]
fn same_index_twice_is_ored_as_runc_does() {
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                               {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]
    }));
    assert_eq!(verdict(&c, X64, "personality", &[0]), ALLOW);
    assert_eq!(verdict(&c, X64, "personality", &[8]), ALLOW);
    assert_eq!(verdict(&c, X64, "personality", &[9]), errno(libc::EPERM));
}

/// libseccomp (and so runc, 1.1.5 and 1.3.6 measured) refuses one syscall with the same
/// argument conditions, in any order, under two actions ("error adding seccomp rule for
/// syscall fchmodat: file exists"); the same action twice, other values, and rules without
/// conditions are accepted (differential fuzzer, seed 37 case 21: berth accepted it).
#[test]
fn same_conditions_under_two_actions_are_refused() {
    let rule = |action: &str, errno: Option<u32>, args: serde_json::Value| {
        let mut r = json!({"names": ["fchmodat"], "action": action, "args": args});
        if let Some(e) = errno {
            r["errnoRet"] = json!(e);
        }
        r
    };
    let a2 = json!([{"index": 2, "op": "SCMP_CMP_EQ", "value": 448}]);
    let a20 = json!([{"index": 2, "op": "SCMP_CMP_EQ", "value": 448},
                     {"index": 0, "op": "SCMP_CMP_EQ", "value": 1}]);
    let a02 = json!([{"index": 0, "op": "SCMP_CMP_EQ", "value": 1},
                     {"index": 2, "op": "SCMP_CMP_EQ", "value": 448}]);
    let refused = [
        (
            rule("SCMP_ACT_ERRNO", Some(13), a2.clone()),
            rule("SCMP_ACT_ERRNO", None, a2.clone()),
        ),
        (
            rule("SCMP_ACT_KILL", None, a2.clone()),
            rule("SCMP_ACT_ERRNO", None, a2.clone()),
        ),
        (
            rule("SCMP_ACT_KILL", None, a20.clone()),
            rule("SCMP_ACT_ERRNO", None, a02.clone()),
        ),
    ];
    for (first, second) in refused {
        let err = compile_err(json!({"defaultAction": "SCMP_ACT_ALLOW",
                                      "syscalls": [first, {"names": ["getpid"], "action": "SCMP_ACT_KILL"}, second]}));
        assert_eq!(
            err,
            "linux.seccomp.syscalls[2].names[0]: error adding seccomp rule for syscall \
             fchmodat: file exists (linux.seccomp.syscalls[0] gives the same argument \
             conditions another action)"
        );
    }
    let other = json!([{"index": 2, "op": "SCMP_CMP_EQ", "value": 449}]);
    let accepted = [
        (
            rule("SCMP_ACT_ERRNO", None, a2.clone()),
            rule("SCMP_ACT_ERRNO", None, a2.clone()),
        ),
        (
            rule("SCMP_ACT_ERRNO", None, a2.clone()),
            rule("SCMP_ACT_KILL", None, other),
        ),
        (
            rule("SCMP_ACT_ERRNO", None, a2.clone()),
            rule("SCMP_ACT_KILL", None, a20),
        ),
        (
            rule("SCMP_ACT_ERRNO", None, json!([])),
            rule("SCMP_ACT_KILL", None, json!([])),
        ),
        (
            rule("SCMP_ACT_ERRNO", None, json!([])),
            rule("SCMP_ACT_KILL", None, a2),
        ),
    ];
    for (first, second) in accepted {
        compile_json(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [first, second]}));
    }
}

/// An unconditional rule decides its syscall, as libseccomp's rule database does: the first
/// one wins over later rules and over earlier conditional ones, whatever the actions'
/// strength. Checked against runc 1.1.5 and 1.3.6 with mkdir(path, 0777); berth used to give
/// the strongest action, or the last errno (differential fuzzer, seed 601 case 114).
#[test]
fn an_unconditional_rule_decides_its_syscall() {
    let uncond = |e: u32| json!({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": e});
    let when_0777 = |action: &str, e: u32| {
        json!({"names": ["mkdir"], "action": action, "errnoRet": e,
               "args": [{"index": 1, "value": 0o777, "op": "SCMP_CMP_EQ"}]})
    };
    let cases = [
        (vec![uncond(95), uncond(13)], errno(95)),
        (vec![uncond(13), uncond(95)], errno(13)),
        (vec![uncond(1), uncond(95), uncond(13)], errno(1)),
        (vec![when_0777("SCMP_ACT_ERRNO", 95), uncond(13)], errno(13)),
        (vec![uncond(13), when_0777("SCMP_ACT_ERRNO", 95)], errno(13)),
        (
            vec![uncond(13), when_0777("SCMP_ACT_KILL_PROCESS", 0)],
            errno(13),
        ),
        (
            vec![when_0777("SCMP_ACT_KILL_PROCESS", 0), uncond(13)],
            errno(13),
        ),
        // A later rule with the same conditions as a dropped one is no conflict.
        (
            vec![
                uncond(13),
                when_0777("SCMP_ACT_ERRNO", 95),
                when_0777("SCMP_ACT_KILL", 0),
            ],
            errno(13),
        ),
    ];
    for (rules, want) in cases {
        let c = compile_json(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
        assert_eq!(verdict(&c, X64, "mkdir", &[0, 0o777]), want, "{rules:?}");
        assert_eq!(verdict(&c, X64, "mkdir", &[0, 0o700]), want, "{rules:?}");
    }
    // Under a deny-by-default profile, an unconditional ALLOW first lets the call run.
    let c = compile_json(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}, uncond(13)]}));
    assert_eq!(verdict(&c, X64, "mkdir", &[0, 0o777]), ALLOW);
}

#[test]
fn strongest_action_wins_and_default_needs_no_match() {
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [
            {"names": ["exit_group", "seccomp"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 0x5401, "op": "SCMP_CMP_EQ"}]},
            {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 0x5402, "op": "SCMP_CMP_EQ"}]},
            {"names": ["ioctl"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}]},
        ]
    }));
    assert_eq!(verdict(&c, X64, "ioctl", &[0, 0x5401]), ALLOW);
    assert_eq!(verdict(&c, X64, "ioctl", &[0, 0x5402]), errno(libc::EPERM));
    assert_eq!(
        verdict(&c, X64, "ioctl", &[7, 0x5401]),
        libc::SECCOMP_RET_LOG
    );
    // ERRNO is stronger than LOG.
    assert_eq!(verdict(&c, X64, "ioctl", &[7, 0x5402]), errno(libc::EPERM));
    // No rule matches: the default.
    assert_eq!(verdict(&c, X64, "ioctl", &[0, 0x5403]), KILL_PROCESS);
    assert_eq!(verdict(&c, X64, "getpid", &[]), KILL_PROCESS);
}

#[test]
fn unknown_names_are_ignored_and_reported() {
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid", "no_such_call", "socketcall", "getpid"],
                      "action": "SCMP_ACT_ALLOW"}]
    }));
    // socketcall exists on i386 only, which this profile does not accept.
    assert_eq!(c.ignored_syscalls(), ["no_such_call", "socketcall"]);
    assert_eq!(verdict(&c, X64, "getpid", &[]), ALLOW);
}

#[test]
fn enosys_for_syscalls_newer_than_the_profile() {
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "clone3"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(verdict(&c, X64, "clone3", &[]), ALLOW);
    assert_eq!(verdict(&c, X64, "close_range", &[]), errno(libc::ENOSYS)); // 436 > 435
    assert_eq!(verdict(&c, X64, "openat2", &[]), errno(libc::ENOSYS)); // 437 > 435
    assert_eq!(verdict(&c, X64, "openat", &[]), errno(libc::EPERM)); // 257 < 435
                                                                     // Not for a default that lets syscalls run (runc's rule).
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_LOG",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert_eq!(verdict(&c, X64, "openat2", &[]), libc::SECCOMP_RET_LOG);
}

#[test]
fn architectures() {
    let base = |arches: serde_json::Value| {
        compile_json(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": arches,
            "syscalls": [
                {"names": ["getpid", "readv", "socketcall", "arch_prctl"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]},
            ]
        }))
    };

    // Native only (no list): i386 and x32 are killed.
    let c = base(json!(null));
    assert_eq!(c.abis(), [Abi::X86_64]);
    assert_eq!(verdict(&c, X64, "getpid", &[]), ALLOW);
    assert_eq!(verdict(&c, Abi::I386, "getpid", &[]), KILL_PROCESS);
    assert_eq!(verdict(&c, Abi::X32, "getpid", &[]), KILL_PROCESS);
    assert_eq!(base(json!(["SCMP_ARCH_NATIVE"])).abis(), [Abi::X86_64]);

    // All three: each enforced with its own numbers.
    let c = base(json!([
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32"
    ]));
    assert_eq!(c.abis(), Abi::ALL);
    assert!(c
        .filters()
        .iter()
        .all(|f| f.kind() != FilterKind::Architectures));
    for abi in Abi::ALL {
        assert_eq!(verdict(&c, abi, "getpid", &[]), ALLOW, "{abi:?}");
        assert_eq!(verdict(&c, abi, "readv", &[]), ALLOW, "{abi:?}");
        assert_eq!(verdict(&c, abi, "arch_prctl", &[]), ALLOW, "{abi:?}");
        assert_eq!(
            verdict(&c, abi, "mkdir", &[]),
            errno(libc::EPERM),
            "{abi:?}"
        );
        assert_eq!(verdict(&c, abi, "personality", &[0xffff_ffff]), ALLOW);
        assert_eq!(verdict(&c, abi, "personality", &[8]), errno(libc::EPERM));
    }
    assert_eq!(verdict(&c, Abi::I386, "socketcall", &[]), ALLOW);
    // i386 compares the low 32 bits only; x86_64 all 64.
    let junk_high = 0xdead_beef_ffff_ffffu64;
    assert_eq!(verdict(&c, Abi::I386, "personality", &[junk_high]), ALLOW);
    assert_eq!(
        verdict(&c, X64, "personality", &[junk_high]),
        errno(libc::EPERM)
    );
    // x32 readv is 515 | bit 30; the x86_64 number with bit 30 is not readv on x32.
    assert_eq!(verdict_nr(&c, Abi::X32, X32_SYSCALL_BIT | 515, &[]), ALLOW);
    // The x86_64 number of getpid, seen as i386, is another syscall (39 = mkdir on i386).
    assert_eq!(verdict_nr(&c, Abi::I386, 39, &[]), errno(libc::EPERM));

    // x86 only: native is still accepted (libseccomp always includes it), x32 is killed.
    let c = base(json!(["SCMP_ARCH_X86"]));
    assert_eq!(c.abis(), [Abi::X86_64, Abi::I386]);
    assert_eq!(verdict(&c, Abi::I386, "getpid", &[]), ALLOW);
    assert_eq!(verdict(&c, X64, "getpid", &[]), ALLOW);
    assert_eq!(verdict(&c, Abi::X32, "getpid", &[]), KILL_PROCESS);

    // Other machines' architectures are accepted, as runc (libseccomp) accepts them, and
    // change nothing on this host: only its own ABIs are compiled.
    let c = base(json!([
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_RISCV64"
    ]));
    assert_eq!(c.abis(), [Abi::X86_64, Abi::I386]);
    assert_eq!(verdict(&c, X64, "getpid", &[]), ALLOW);
    assert_eq!(verdict(&c, X64, "mkdir", &[]), errno(libc::EPERM));
    assert_eq!(verdict(&c, Abi::I386, "getpid", &[]), ALLOW);
    assert_eq!(verdict(&c, Abi::X32, "getpid", &[]), KILL_PROCESS);
    // Foreign ones only: the native ABI, as with no list.
    let c = base(json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_PPC64LE"]));
    assert_eq!(c.abis(), [Abi::X86_64]);
    assert_eq!(verdict(&c, X64, "getpid", &[]), ALLOW);
    assert_eq!(verdict(&c, X64, "mkdir", &[]), errno(libc::EPERM));
    assert_eq!(verdict(&c, Abi::I386, "getpid", &[]), KILL_PROCESS);
    // A big-endian one cannot share a filter with x86 (libseccomp's EDOM): an error naming
    // the field.
    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64", "SCMP_ARCH_S390X"]
    }));
    assert!(
        err.starts_with("linux.seccomp.architectures[2]: SCMP_ARCH_S390X is big-endian"),
        "{err}"
    );
}

#[test]
fn flags_on_every_filter() {
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [
            {"names": ["getpid", "seccomp"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"},
        ]
    }));
    assert!(c.filters().len() >= 3);
    for f in c.filters() {
        // WAIT_KILLABLE_RECV only makes sense (and is only accepted) with a listener.
        assert_eq!(
            f.flags(),
            libc::SECCOMP_FILTER_FLAG_TSYNC
                | libc::SECCOMP_FILTER_FLAG_LOG
                | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            "{f}"
        );
    }
    assert!(!c.has_listener());
}

#[test]
fn a_filter_that_stops_seccomp_is_loaded_last() {
    // The default filter stops seccomp(2) (not listed): it must come after the others.
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"},
        ]
    }));
    let kinds: Vec<_> = c.filters().iter().map(|f| f.kind()).collect();
    assert_eq!(
        kinds,
        [
            FilterKind::Architectures,
            FilterKind::Action(Verdict::KillProcess),
            FilterKind::Default(Verdict::Errno(1))
        ]
    );
    // An action filter that stops seccomp(2) goes after the default filter.
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["seccomp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ]
    }));
    let kinds: Vec<_> = c.filters().iter().map(|f| f.kind()).collect();
    assert_eq!(
        kinds,
        [
            FilterKind::Default(Verdict::Errno(1)),
            FilterKind::Action(Verdict::Errno(38))
        ]
    );
    // Two filters that may both stop it cannot both be loaded.
    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["seccomp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                      "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]
    }));
    assert!(
        err.starts_with("linux.seccomp.syscalls: seccomp(2) itself is stopped"),
        "{err}"
    );
}

#[test]
fn big_profiles_split_per_abi() {
    // 300 syscalls with 3 conditional rules each do not fit one 4096-instruction program for
    // three ABIs; the default filter is split in three and means the same.
    let names: Vec<String> = syscalls::x86_64::Sysno::iter()
        .map(|s| s.name().to_string())
        .filter(|n| n != "personality")
        .take(300)
        .collect();
    let mut rules = vec![json!({"names": names, "action": "SCMP_ACT_ALLOW"})];
    for v in 0..40u64 {
        rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": 0, "value": v * 3, "op": "SCMP_CMP_EQ"}]}));
    }
    let c = compile_json(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules
    }));
    let defaults: Vec<_> = c
        .filters()
        .iter()
        .filter(|f| matches!(f.kind(), FilterKind::Default(_)))
        .collect();
    assert_eq!(defaults.len(), 3);
    for f in &defaults {
        assert_eq!(f.abis().len(), 1);
        assert!(f.instructions().len() <= 4096);
    }
    for abi in Abi::ALL {
        assert_eq!(verdict(&c, abi, "read", &[]), ALLOW);
        assert_eq!(verdict(&c, abi, "personality", &[39]), ALLOW);
        assert_eq!(verdict(&c, abi, "personality", &[40]), errno(libc::EPERM));
    }
}

#[test]
fn errors_name_the_field() {
    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["close"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]},
        ]
    }));
    assert_eq!(
        err,
        "linux.seccomp.syscalls[3].args[0].index: 6 is not a syscall argument (0 to 5)"
    );

    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]
    }));
    assert!(
        err.starts_with("linux.seccomp.syscalls[0].errnoRet: 70000"),
        "{err}"
    );

    let err = compile_err(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536}));
    assert!(
        err.starts_with("linux.seccomp.defaultErrnoRet: 65536"),
        "{err}"
    );

    let err = compile_err(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert_eq!(
        err,
        "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action"
    );

    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(
        err.starts_with(
            "linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY cannot be used for the write syscall"
        ),
        "{err}"
    );

    let err = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert_eq!(
        err,
        "linux.seccomp.syscalls[0].names[1]: an empty string is not a syscall name"
    );

    assert!(matches!(
        compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
                                 "architectures": ["SCMP_ARCH_PPC64"]}))),
        Err(SeccompError::Invalid { .. })
    ));
}
