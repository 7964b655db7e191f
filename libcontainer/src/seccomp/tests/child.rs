//! Behaviour: filters loaded for real, each in a forked child that sets no_new_privs first (so
//! no root is needed) and reports through its exit status.
//!
//! The test harness is multi-threaded, so a child does only plain syscalls between fork and
//! `_exit` (no allocation, no locks): the profile is compiled before the fork, `load` makes
//! only seccomp(2) calls on success, and checks return small exit codes.

use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::json;

use super::docker::docker_default;
use super::profile;
use crate::seccomp::{compile, load, Compiled};

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Exited(i32),
    Signaled(i32),
}

/// Forks; the child sets no_new_privs, loads `compiled` and exits with `body(listener)`.
/// Exit codes 200 and up are reserved for failures of the harness itself.
fn in_child(compiled: &Compiled, body: impl FnOnce(Option<OwnedFd>) -> i32) -> Outcome {
    // SAFETY: the child only makes async-signal-safe calls (see the module doc) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // No core files from the SIGSYS deaths tested here.
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit reads the struct; prctl takes integers.
        let code = if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) } != 0 {
            202
        } else if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            200
        } else {
            match load(compiled) {
                Ok(listener) => body(listener),
                Err(_) => 201,
            }
        };
        // SAFETY: ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    wait(pid)
}

fn wait(pid: libc::pid_t) -> Outcome {
    let mut status = 0;
    // SAFETY: waits for our own child.
    let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(ret, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        Outcome::Exited(libc::WEXITSTATUS(status))
    } else {
        Outcome::Signaled(libc::WTERMSIG(status))
    }
}

/// A raw syscall: Ok(return value) or Err(errno).
fn sys(nr: libc::c_long, args: [u64; 3]) -> Result<i64, i32> {
    // SAFETY: the syscalls tested here take integers (or are refused before they run).
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2]) };
    if ret == -1 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(ret)
    }
}

/// 0 when every check holds, else the number (1-based) of the first that failed.
fn checks(results: &[bool]) -> i32 {
    results
        .iter()
        .position(|ok| !ok)
        .map_or(0, |i| i as i32 + 1)
}

fn compiled(json: serde_json::Value) -> Compiled {
    compile(&profile(json)).expect("profile compiles")
}

#[test]
fn errno_rule_returns_its_errno() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
            {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO"},
        ]
    }));
    let outcome = in_child(&c, |_| {
        checks(&[
            sys(libc::SYS_getpriority, [libc::PRIO_PROCESS as u64, 0, 0]) == Err(42),
            sys(libc::SYS_getpgid, [0, 0, 0]) == Err(libc::EPERM),
            sys(libc::SYS_getpid, [0; 3]).is_ok(),
        ])
    });
    assert_eq!(outcome, Outcome::Exited(0));
}

#[test]
fn argument_condition_and_default_action() {
    // Default ERRNO: only exit_group, getpid and personality(0xffffffff) (which only reads the
    // persona) are allowed.
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["exit_group", "exit", "getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]},
        ]
    }));
    let outcome = in_child(&c, |_| {
        checks(&[
            sys(libc::SYS_personality, [0xffff_ffff, 0, 0]).is_ok(),
            sys(libc::SYS_personality, [0x0040_0000, 0, 0]) == Err(libc::EPERM),
            sys(libc::SYS_personality, [0, 0, 0]) == Err(libc::EPERM),
            sys(libc::SYS_getpid, [0; 3]).is_ok(),
            // Unlisted: the default action.
            sys(libc::SYS_getppid, [0; 3]) == Err(libc::EPERM),
            sys(libc::SYS_getuid, [0; 3]) == Err(libc::EPERM),
            // Above every listed number (exit_group, 231): ENOSYS, as runc does.
            sys(libc::SYS_openat, [0; 3]) == Err(libc::ENOSYS),
        ])
    });
    assert_eq!(outcome, Outcome::Exited(0));
}

#[test]
fn kill_process_kills() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
    }));
    let outcome = in_child(&c, |_| {
        let _ = sys(libc::SYS_getppid, [0; 3]);
        1
    });
    assert_eq!(outcome, Outcome::Signaled(libc::SIGSYS));
}

#[test]
fn default_kill_process_applies_to_unlisted() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [{"names": ["exit_group", "getpid", "seccomp"], "action": "SCMP_ACT_ALLOW"}]
    }));
    let outcome = in_child(&c, |_| {
        if sys(libc::SYS_getpid, [0; 3]).is_err() {
            return 1;
        }
        let _ = sys(libc::SYS_getppid, [0; 3]);
        2
    });
    assert_eq!(outcome, Outcome::Signaled(libc::SIGSYS));
}

#[test]
fn trap_and_kill_thread_end_with_sigsys() {
    for action in ["SCMP_ACT_TRAP", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"] {
        let c = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": action}]
        }));
        let outcome = in_child(&c, |_| {
            let _ = sys(libc::SYS_getppid, [0; 3]);
            1
        });
        assert_eq!(outcome, Outcome::Signaled(libc::SIGSYS), "{action}");
    }
}

#[test]
fn log_allows() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"}]
    }));
    // SAFETY: getpid has no preconditions.
    let parent = i64::from(unsafe { libc::getpid() });
    let outcome = in_child(&c, |_| {
        checks(&[sys(libc::SYS_getppid, [0; 3]) == Ok(parent)])
    });
    assert_eq!(outcome, Outcome::Exited(0));
}

#[test]
fn every_flag_loads() {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [
            {"names": ["exit_group", "getpid", "seccomp"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 11},
        ]
    }));
    let outcome = in_child(&c, |_| {
        checks(&[
            sys(libc::SYS_getpid, [0; 3]).is_ok(),
            sys(libc::SYS_getppid, [0; 3]) == Err(11),
            sys(libc::SYS_getuid, [0; 3]) == Err(libc::EPERM),
        ])
    });
    assert_eq!(outcome, Outcome::Exited(0));
}

/// The child loads a NOTIFY rule on getppid and gets a listener; its own child calls getppid,
/// the child answers the notification with 4242, and the grandchild sees 4242.
fn notify_round_trip(flags: serde_json::Value) {
    let c = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": flags,
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(c.has_listener());
    let outcome = in_child(&c, |listener| {
        let Some(listener) = listener else { return 1 };
        // SAFETY: the grandchild only makes plain syscalls and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return 2;
        }
        if pid == 0 {
            let code = if sys(libc::SYS_getppid, [0; 3]) == Ok(4242) {
                0
            } else {
                3
            };
            // SAFETY: ends the grandchild.
            unsafe { libc::_exit(code) };
        }
        // Wait at most 5 s for the notification, so a broken filter fails instead of hanging.
        let mut pollfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one pollfd we own.
        if unsafe { libc::poll(&mut pollfd, 1, 5000) } != 1 {
            // SAFETY: kills and reaps our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait(pid);
            return 7;
        }
        // SAFETY: both structs are plain integers; RECV requires a zeroed seccomp_notif.
        let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: ioctl on our listener with a struct of the size the request encodes.
        let ret = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut notif as *mut libc::seccomp_notif,
            )
        };
        if ret != 0 || notif.data.nr != libc::SYS_getppid as i32 || notif.pid != pid as u32 {
            return 4;
        }
        // SAFETY: as above.
        let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
        resp.id = notif.id;
        resp.val = 4242;
        // SAFETY: as above.
        let ret = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &mut resp as *mut libc::seccomp_notif_resp,
            )
        };
        if ret != 0 {
            return 5;
        }
        match wait(pid) {
            Outcome::Exited(0) => 0,
            Outcome::Exited(code) => 10 + code,
            Outcome::Signaled(_) => 6,
        }
    });
    assert_eq!(outcome, Outcome::Exited(0));
}

#[test]
fn notify_yields_a_working_listener() {
    notify_round_trip(json!([]));
}

#[test]
fn notify_with_tsync_and_wait_killable() {
    notify_round_trip(json!([
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
    ]));
}

#[test]
fn docker_default_profile_behaves() {
    let c = compile(&docker_default()).expect("compiles");
    let outcome = in_child(&c, |_| {
        let socket = sys(
            libc::SYS_socket,
            [libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0],
        );
        if let Ok(fd) = socket {
            // SAFETY: closes the socket just made.
            unsafe { libc::close(fd as i32) };
        }
        checks(&[
            sys(libc::SYS_getpid, [0; 3]).is_ok(),
            sys(libc::SYS_unshare, [libc::CLONE_NEWUSER as u64, 0, 0]) == Err(libc::EPERM),
            sys(libc::SYS_keyctl, [0; 3]) == Err(libc::EPERM),
            sys(libc::SYS_clone3, [0; 3]) == Err(libc::ENOSYS),
            sys(libc::SYS_personality, [0xffff_ffff, 0, 0]).is_ok(),
            sys(libc::SYS_personality, [0x0040_0000, 0, 0]) == Err(libc::EPERM),
            socket.is_ok(),
            sys(libc::SYS_socket, [40, libc::SOCK_STREAM as u64, 0]) == Err(libc::EPERM),
            sys(libc::SYS_mount, [0; 3]) == Err(libc::EPERM),
            // fchmodat2 (452) is newer than the profile: ENOSYS, so libcs fall back.
            sys(452, [0; 3]) == Err(libc::ENOSYS),
        ])
    });
    assert_eq!(outcome, Outcome::Exited(0));
}

/// `int 0x80` (i386 ABI, from 64-bit code): (eax = nr, ebx, ecx) -> eax.
fn int80(nr: u32, a: u32, b: u32) -> i32 {
    let ret: i32;
    // SAFETY: an i386 syscall with integer arguments; rbx is reserved by LLVM, so the first
    // argument is swapped in and out around the call.
    unsafe {
        std::arch::asm!(
            "xchg {a:r}, rbx",
            "int 0x80",
            "xchg {a:r}, rbx",
            a = inout(reg) u64::from(a) => _,
            inlateout("eax") nr as i32 => ret,
            in("ecx") b,
            lateout("r8") _,
            lateout("r9") _,
            lateout("r10") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// x86_64's `syscall` instruction with any number (e.g. an x32 one): nr, a0 -> rax.
fn raw_syscall(nr: u64, a0: u64) -> i64 {
    let ret: i64;
    // SAFETY: a syscall with integer arguments; rcx and r11 are clobbered by `syscall`.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") a0,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

const I386_GETPID: u32 = 20;
const I386_PERSONALITY: u32 = 136;
const I386_KEYCTL: u32 = 288;
const X32_BIT: u64 = 0x4000_0000;

/// Whether this kernel runs i386 syscalls (IA32 emulation), tried in a child without filters.
fn has_ia32() -> bool {
    // SAFETY: the child makes one syscall and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = if int80(I386_GETPID, 0, 0) > 0 { 0 } else { 1 };
        // SAFETY: ends the child.
        unsafe { libc::_exit(code) };
    }
    wait(pid) == Outcome::Exited(0)
}

#[test]
fn i386_syscalls_are_filtered_with_i386_numbers() {
    if !has_ia32() {
        eprintln!("no IA32 emulation in this kernel: skipped");
        return;
    }
    let c = compile(&docker_default()).expect("compiles");
    let outcome = in_child(&c, |_| {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        checks(&[
            int80(I386_GETPID, 0, 0) == me,
            int80(I386_PERSONALITY, 0xffff_ffff, 0) >= 0,
            int80(I386_PERSONALITY, 0x0040_0000, 0) == -libc::EPERM,
            int80(I386_KEYCTL, 0, 0) == -libc::EPERM,
        ])
    });
    assert_eq!(outcome, Outcome::Exited(0));

    // Not accepted: killed.
    let c = compiled(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}));
    let outcome = in_child(&c, |_| {
        int80(I386_GETPID, 0, 0);
        1
    });
    assert_eq!(outcome, Outcome::Signaled(libc::SIGSYS));
}

#[test]
fn x32_syscalls_are_filtered_or_killed() {
    // The filter runs before the kernel looks the number up, so this works whether or not the
    // kernel runs x32 syscalls.
    let c = compile(&docker_default()).expect("compiles");
    let outcome = in_child(&c, |_| {
        checks(&[raw_syscall(X32_BIT | libc::SYS_keyctl as u64, 0) == -i64::from(libc::EPERM)])
    });
    assert_eq!(outcome, Outcome::Exited(0));

    let c = compiled(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}));
    let outcome = in_child(&c, |_| {
        raw_syscall(X32_BIT | libc::SYS_getpid as u64, 0);
        1
    });
    assert_eq!(outcome, Outcome::Signaled(libc::SIGSYS));
}
