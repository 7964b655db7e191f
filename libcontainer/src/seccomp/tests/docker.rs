//! Docker's default seccomp profile.
//!
//! `testdata/docker-default.json` is a copy of moby/moby `profiles/seccomp/default.json` (commit
//! 00f3d189e420d485e42d15fe494f96d272284e0e). It is Docker's format, not OCI: `archMap`,
//! `includes` and `excludes` are resolved by dockerd for each container
//! (`profiles/seccomp/seccomp_linux.go`, `setupSeccomp`). [`docker_to_oci`] does what dockerd
//! does for a container with Docker's default capabilities on amd64:
//!
//! - `architectures`: the `archMap` entry whose `architecture` is `SCMP_ARCH_X86_64`, followed
//!   by its `subArchitectures` (`SCMP_ARCH_X86`, `SCMP_ARCH_X32`);
//! - `defaultAction`, `defaultErrnoRet` (and `flags`, `listenerPath`, if any) are copied;
//! - a `syscalls` entry is dropped when `excludes.arches` holds `amd64`, `excludes.caps` holds a
//!   capability of the container, `includes.arches` is set and lacks `amd64`, `includes.caps`
//!   holds a capability the container lacks, or `includes.minKernel` is newer than the kernel
//!   (only 4.8 occurs: older than any kernel berth runs on); the others keep `names`, `action`,
//!   `errnoRet` and `args`, in order (`comment`, `includes`, `excludes` are dropped).
//!
//! For the default capabilities that keeps the big ALLOW list, ptrace & co. (minKernel 4.8),
//! `socket` (not AF_VSOCK), the five `personality` values, `arch_prctl`, `modify_ldt`, `clone`
//! without namespace flags, `clone3` -> ENOSYS and `chroot` (CAP_SYS_CHROOT), and drops
//! everything that needs CAP_SYS_ADMIN and other capabilities Docker does not grant.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

use super::{errno, verdict, verdict_nr, ALLOW};
use crate::seccomp::abi::X32_SYSCALL_BIT;
use crate::seccomp::{compile, Abi};

const DOCKER_DEFAULT_JSON: &str = include_str!("../testdata/docker-default.json");

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
const DOCKER_DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The kernel version `includes.minKernel` is compared with (Debian 12's).
const KERNEL: (u32, u32) = (6, 1);

/// dockerd's conversion of a Docker profile for one container (see the module doc).
fn docker_to_oci(docker: &Value, goarch: &str, scmp_arch: &str, caps: &[&str]) -> LinuxSeccomp {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let kernel = |v: &Value| -> Option<(u32, u32)> {
        let s = v.as_str()?;
        let mut parts = s.split('.').map(|p| p.parse::<u32>().unwrap());
        Some((parts.next()?, parts.next().unwrap_or(0)))
    };

    let mut architectures = Vec::new();
    for entry in docker["archMap"].as_array().unwrap() {
        if entry["architecture"] == scmp_arch {
            architectures.push(scmp_arch.to_string());
            architectures.extend(strings(&entry["subArchitectures"]));
        }
    }

    let mut syscalls = Vec::new();
    for call in docker["syscalls"].as_array().unwrap() {
        let (inc, exc) = (&call["includes"], &call["excludes"]);
        let has_cap = |c: &String| caps.contains(&c.as_str());
        let excluded = strings(&exc["arches"]).iter().any(|a| a == goarch)
            || strings(&exc["caps"]).iter().any(has_cap)
            || kernel(&exc["minKernel"]).is_some_and(|k| KERNEL >= k);
        let new_enough = match kernel(&inc["minKernel"]) {
            Some(min) => KERNEL >= min,
            None => true,
        };
        let included = {
            let arches = strings(&inc["arches"]);
            (arches.is_empty() || arches.iter().any(|a| a == goarch))
                && strings(&inc["caps"]).iter().all(has_cap)
                && new_enough
        };
        if excluded || !included {
            continue;
        }
        let mut names = strings(&call["names"]);
        if let Some(name) = call["name"].as_str() {
            names.push(name.to_string());
        }
        let mut oci = json!({"names": names, "action": call["action"]});
        for key in ["errnoRet", "args"] {
            if !call[key].is_null() {
                oci[key] = call[key].clone();
            }
        }
        syscalls.push(oci);
    }

    let mut oci = json!({
        "defaultAction": docker["defaultAction"],
        "architectures": architectures,
        "syscalls": syscalls,
    });
    for key in [
        "defaultErrnoRet",
        "flags",
        "listenerPath",
        "listenerMetadata",
    ] {
        if !docker[key].is_null() {
            oci[key] = docker[key].clone();
        }
    }
    serde_json::from_value(oci).expect("converted profile is OCI")
}

/// Docker's default profile as dockerd hands it to runc for a default container on amd64.
pub(super) fn docker_default() -> LinuxSeccomp {
    let docker: Value = serde_json::from_str(DOCKER_DEFAULT_JSON).unwrap();
    docker_to_oci(&docker, "amd64", "SCMP_ARCH_X86_64", &DOCKER_DEFAULT_CAPS)
}

#[test]
fn conversion_matches_dockerd() {
    let oci = docker_default();
    let arches: Vec<String> = oci
        .architectures()
        .iter()
        .flatten()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(
        arches,
        ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    );
    assert_eq!(oci.default_errno_ret(), Some(1));
    let syscalls = oci.syscalls().as_ref().unwrap();
    let firsts: Vec<&str> = syscalls.iter().map(|s| s.names()[0].as_str()).collect();
    assert_eq!(
        firsts,
        [
            "accept",
            "process_vm_readv",
            "socket",
            "personality",
            "personality",
            "personality",
            "personality",
            "personality",
            "arch_prctl",
            "modify_ldt",
            "clone",
            "clone3",
            "chroot"
        ]
    );
    assert_eq!(syscalls[0].names().len(), 349);
}

#[test]
fn compiles_and_maps_known_syscalls() {
    let c = compile(&docker_default()).expect("Docker's default profile compiles");
    assert!(!c.filters().is_empty());
    assert!(c.filters().iter().all(|f| !f.instructions().is_empty()));
    assert_eq!(c.abis(), Abi::ALL);
    assert!(!c.has_listener());
    let eperm = errno(libc::EPERM);
    let enosys = errno(libc::ENOSYS);
    let x64 = Abi::X86_64;

    for name in [
        "read",
        "write",
        "getpid",
        "execve",
        "futex",
        "openat",
        "exit_group",
        "seccomp",
    ] {
        assert_eq!(verdict(&c, x64, name, &[]), ALLOW, "{name}");
    }
    // Allowed because of minKernel 4.8 and CAP_SYS_CHROOT.
    assert_eq!(verdict(&c, x64, "ptrace", &[]), ALLOW);
    assert_eq!(verdict(&c, x64, "chroot", &[]), ALLOW);
    // Not allowed without CAP_SYS_ADMIN & co.
    for name in [
        "unshare",
        "mount",
        "keyctl",
        "setns",
        "bpf",
        "reboot",
        "init_module",
        "acct",
    ] {
        assert_eq!(verdict(&c, x64, name, &[]), eperm, "{name}");
    }
    assert_eq!(verdict(&c, x64, "clone3", &[]), enosys);
    // clone: allowed without namespace flags only.
    let thread_flags = (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES) as u64;
    assert_eq!(verdict(&c, x64, "clone", &[thread_flags]), ALLOW);
    assert_eq!(
        verdict(&c, x64, "clone", &[libc::CLONE_NEWUSER as u64]),
        eperm
    );
    // personality: the five values only.
    for ok in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(verdict(&c, x64, "personality", &[ok]), ALLOW, "{ok:#x}");
    }
    assert_eq!(verdict(&c, x64, "personality", &[0x0040_0000]), eperm);
    // socket: anything but AF_VSOCK (40).
    assert_eq!(verdict(&c, x64, "socket", &[libc::AF_INET as u64]), ALLOW);
    assert_eq!(verdict(&c, x64, "socket", &[40]), eperm);
    // Newer than anything the profile names (futex_waitv, 449): ENOSYS, as with runc.
    assert_eq!(verdict(&c, x64, "fchmodat2", &[]), enosys);
    assert_eq!(verdict(&c, x64, "mseal", &[]), enosys);

    // i386: its own numbers, 32-bit only syscalls, the multiplexers.
    let i386 = Abi::I386;
    for name in [
        "getpid",
        "socketcall",
        "ipc",
        "chown32",
        "_llseek",
        "mmap2",
        "arch_prctl",
    ] {
        assert_eq!(verdict(&c, i386, name, &[]), ALLOW, "{name}");
    }
    assert_eq!(verdict(&c, i386, "keyctl", &[]), eperm);
    assert_eq!(verdict(&c, i386, "personality", &[0xffff_ffff]), ALLOW);
    assert_eq!(verdict(&c, i386, "personality", &[5]), eperm);

    // x32: bit 30, and the x32 variants at 512+.
    assert_eq!(verdict(&c, Abi::X32, "getpid", &[]), ALLOW);
    assert_eq!(verdict_nr(&c, Abi::X32, X32_SYSCALL_BIT | 515, &[]), ALLOW); // readv
    assert_eq!(verdict(&c, Abi::X32, "keyctl", &[]), eperm);
}

/// `testdata/docker-default.oci.json` is [`docker_default`] written out, for users outside this
/// crate (the integration suite, the image service's bundles). It must stay in sync:
/// `BERTH_UPDATE_GOLDEN=1 cargo test -p libcontainer golden` rewrites it.
#[test]
fn golden_oci_profile_is_current() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/seccomp/testdata/docker-default.oci.json"
    );
    let mut want = serde_json::to_string_pretty(&docker_default()).unwrap();
    want.push('\n');
    if std::env::var_os("BERTH_UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "{path} is stale: run with BERTH_UPDATE_GOLDEN=1"
    );
}
