//! Device rules on cgroup v2: an eBPF `BPF_PROG_TYPE_CGROUP_DEVICE` program generated from the
//! rules and attached to the container's cgroup.
//!
//! The rules are first reduced the way the v1 devices cgroup would apply them in order (runc's
//! semantics): an `a` rule sets the default and clears everything before it; every other rule is
//! an exception, the last matching one wins. The program checks the exceptions from last to
//! first and returns the first match's verdict, else the default.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::devices::Rule;
use super::CgroupError;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes used here.
const LDX_W: u8 = 0x61; // r_dst = *(u32 *)(r_src + off)
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const AND64_K: u8 = 0x57;
const RSH64_K: u8 = 0x77;
const JNE_K: u8 = 0x55;
const EXIT: u8 = 0x95;

// bpf_cgroup_dev_ctx: access_type (type | access << 16), major, minor.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
// The emulator's access bits are these (rules are masked with emulator::perms).
const _: () = assert!(
    ACC_MKNOD == super::emulator::MKNOD as i32
        && ACC_READ == super::emulator::READ as i32
        && ACC_WRITE == super::emulator::WRITE as i32
);

/// The rules as v1 would end up with them: (default allow?, exceptions in order).
pub fn reduce(rules: &[Rule]) -> (bool, Vec<Rule>) {
    let mut default_allow = true;
    let mut exceptions = Vec::new();
    for r in rules {
        if r.kind == 'a' && r.major.is_none_or(|m| m < 0) && r.minor.is_none_or(|m| m < 0) {
            default_allow = r.allow;
            exceptions.clear();
        } else if r.allow != default_allow || !exceptions.is_empty() {
            exceptions.push(r.clone());
        }
    }
    (default_allow, exceptions)
}

/// Generate the program for `rules`.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let (default_allow, exceptions) = reduce(rules);
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0), // r2 = access_type
        insn(MOV64_X, 3, 2, 0, 0),
        insn(AND64_K, 3, 0, 0, 0xffff), // r3 = device type
        insn(RSH64_K, 2, 0, 0, 16),     // r2 = access
        insn(LDX_W, 4, 1, 4, 0),        // r4 = major
        insn(LDX_W, 5, 1, 8, 0),        // r5 = minor
    ];
    for r in exceptions.iter().rev() {
        let mut block = Vec::new();
        // Each check jumps to the end of this block (patched below) when it does not match.
        match r.kind {
            'b' => block.push(insn(JNE_K, 3, 0, 0, DEV_BLOCK)),
            'c' => block.push(insn(JNE_K, 3, 0, 0, DEV_CHAR)),
            _ => {}
        }
        if let Some(m) = r.major.filter(|m| *m >= 0) {
            block.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor.filter(|m| *m >= 0) {
            block.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        let mask = i32::from(super::emulator::perms(&r.access));
        if mask != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // The request must ask for nothing outside the rule's access.
            block.push(insn(MOV64_X, 6, 2, 0, 0));
            block.push(insn(AND64_K, 6, 0, 0, !mask));
            block.push(insn(JNE_K, 6, 0, 0, 0));
        }
        block.push(insn(MOV64_K, 0, 0, 0, i32::from(r.allow)));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let n = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K {
                ins.off = (n - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV64_K, 0, 0, 0, i32::from(default_allow)));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Load the program for `rules` and attach it to the cgroup directory `cgroup`.
pub fn attach(cgroup: BorrowedFd, rules: &[Rule]) -> Result<(), CgroupError> {
    let prog = program(rules);
    let fd = load(&prog)
        .map_err(|e| CgroupError::Other(format!("load the device eBPF program: {e}")))?;
    // bpf_attr for BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags.
    let mut attr = [0u32; 32];
    attr[0] = cgroup.as_raw_fd() as u32;
    attr[1] = fd.as_raw_fd() as u32;
    attr[2] = BPF_CGROUP_DEVICE;
    attr[3] = BPF_F_ALLOW_MULTI;
    bpf(BPF_PROG_ATTACH, &mut attr)
        .map_err(|e| CgroupError::Other(format!("attach the device eBPF program: {e}")))?;
    Ok(())
}

fn load(prog: &[Insn]) -> std::io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    // bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns (u64), license (u64), ...
    let mut attr = [0u32; 32];
    attr[0] = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr[1] = prog.len() as u32;
    let insns = prog.as_ptr() as u64;
    attr[2] = insns as u32;
    attr[3] = (insns >> 32) as u32;
    let lic = license.as_ptr() as u64;
    attr[4] = lic as u32;
    attr[5] = (lic >> 32) as u32;
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: BPF_PROG_LOAD returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bpf(cmd: libc::c_long, attr: &mut [u32; 32]) -> std::io::Result<i32> {
    // SAFETY: attr is a zero-padded bpf_attr of the size passed; the pointers it holds (program,
    // license) outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: bool, kind: char, major: Option<i64>, minor: Option<i64>, access: &str) -> Rule {
        Rule {
            allow,
            kind,
            major,
            minor,
            access: access.into(),
        }
    }

    /// Run the generated program on a request, with a tiny interpreter of the opcodes it uses.
    fn run(prog: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [(kind | access << 16) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i.imm as i64 as u64,
                AND64_K => r[dst] &= i.imm as i64 as u64,
                RSH64_K => r[dst] >>= i.imm,
                JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn deny_all_then_allow_some() {
        let rules = super::super::devices::rules(
            &[serde_json::from_str(r#"{"allow":false,"access":"rwm"}"#).unwrap()],
            &[],
        );
        let p = program(&rules);
        assert_eq!(
            run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3),
            1,
            "/dev/null rw"
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 136, 5), 1, "/dev/pts/5");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0, "/dev/sda read");
        assert_eq!(
            run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0),
            1,
            "mknod of any block device"
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 10, 229), 0, "/dev/fuse");
    }

    #[test]
    fn last_rule_wins_and_access_is_a_subset() {
        let rules = vec![
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(5), "r"),
            rule(true, 'c', Some(1), None, "rwm"),
            rule(false, 'c', Some(1), Some(9), "w"),
        ];
        let p = program(&rules);
        assert_eq!(
            run(&p, DEV_CHAR, ACC_WRITE, 1, 5),
            1,
            "a later 1:* rwm allows writing 1:5"
        );
        assert_eq!(
            run(&p, DEV_CHAR, ACC_WRITE, 1, 9),
            0,
            "the last rule denies writing 1:9"
        );
        assert_eq!(
            run(&p, DEV_CHAR, ACC_READ, 1, 9),
            1,
            "reading 1:9 is still allowed"
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 2, 0), 0, "default deny");
        let allow_all = program(&[rule(true, 'a', None, None, "rwm")]);
        assert_eq!(run(&allow_all, DEV_BLOCK, ACC_WRITE, 8, 0), 1);
    }

    /// The kernel's verifier accepts the program and it denies what it should. Needs root and a
    /// cgroup2 mount; skipped otherwise.
    #[test]
    fn kernel_enforces_the_program() {
        let base = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(std::path::Path::new)
            .find(|p| {
                nix::sys::statfs::statfs(*p)
                    .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            });
        let (Some(base), true) = (base, nix::unistd::geteuid().is_root()) else {
            eprintln!("skipped: needs root and cgroup2");
            return;
        };
        let dir = base.join(format!("berth-bpf-test-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let fd = nix::fcntl::open(
            &dir,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        // Everything denied but /dev/zero.
        attach(
            std::os::fd::AsFd::as_fd(&fd),
            &[
                rule(false, 'a', None, None, "rwm"),
                rule(true, 'c', Some(1), Some(5), "rwm"),
            ],
        )
        .unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        // SAFETY: the test is single-threaded at this point; the child only calls async-signal-safe code.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).unwrap();
                let null = std::fs::File::open("/dev/null").is_ok();
                let zero = std::fs::File::open("/dev/zero").is_ok();
                nix::unistd::write(&w, &[u8::from(null), u8::from(zero)]).unwrap();
                // SAFETY: leave the forked test process without running the harness's exit path.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
                let mut buf = [9u8; 2];
                nix::unistd::read(&r, &mut buf).unwrap();
                std::fs::remove_dir(&dir).unwrap();
                assert_eq!(buf, [0, 1], "/dev/null denied, /dev/zero allowed");
            }
        }
    }
}
