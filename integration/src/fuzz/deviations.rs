//! The documented deviations: differences between berth and the reference runc that are
//! intended (berth follows crun, the runtime-spec or runc 1.3 where Debian's runc 1.1.5
//! differs), each with its reason. The fuzzer filters every difference through this list
//! and reports only the unexplained ones. A deviation may never weaken isolation or change
//! an exit code or an error text that a client matches on; a berth bug never goes here.
//!
//! A difference is an item (`steps`, `exit`, `section:<probe section>`, `hostcgroup`,
//! `leftover:<runtime>`) with detail lines (a diff: `- runc's line`, `+ berth's line`); an
//! item is explained when every one of its lines is explained by some deviation.

use std::collections::{BTreeMap, BTreeSet};

use super::gen::Case;
use super::Outcome;

pub struct Deviation {
    pub id: &'static str,
    pub reason: &'static str,
    /// Does this deviation explain `line` of item `key` of this case?
    pub applies: fn(&Case, &str, &str, &Outcome, &Outcome) -> bool,
}

pub static DEVIATIONS: &[Deviation] = &[
    Deviation {
        id: "no-mount-namespace",
        reason: "berth runs a container without a mount namespace (it chroots into the rootfs \
                 and makes no mount in the caller's namespace); runc refuses such a config \
                 ('unable to restrict sys entries without a private MNT namespace'), or, with a \
                 new user namespace, fails to make the caller's / a slave mount (EPERM). \
                 Intended: DESIGN.md's create path; the caller asked for no mount namespace.",
        // Never a leftover: mounts that berth leaves behind are a bug, not this deviation.
        applies: |case, key, _, runc, _| {
            !case.has("linux.namespaces.mount")
                && !key.starts_with("leftover")
                && (runc.stderr.contains("without a private MNT namespace")
                    || (case.has("linux.namespaces.user")
                        && runc.stderr.contains(
                            "mount dst=/, flags=MS_REC|MS_SLAVE: operation not permitted",
                        )))
        },
    },
    Deviation {
        id: "no-mount-namespace-mounts",
        reason: "without a mount namespace runc 1.3 makes the config's mounts below the rootfs \
                 in the caller's own mount namespace and leaves them there after `delete` \
                 (a runc leftover); berth makes no mount in a namespace that is not the \
                 container's, so its process sees the rootfs as it is (README, 'No mount \
                 namespace'). No wider access: berth's container has fewer mounts.",
        applies: |case, key, _, runc, berth| {
            !case.has("linux.namespaces.mount")
                && (key.starts_with("section:") || key == "leftover:runc")
                && runc.steps.iter().all(|(_, ok)| *ok)
                && berth.steps.iter().all(|(_, ok)| *ok)
        },
    },
    Deviation {
        id: "cwd-checked-before-seccomp",
        reason: "berth checks the cwd (CVE-2024-21626) before loading the seccomp filter, as \
                 crun does; runc (1.3, and Debian's 1.1.5 with the backported fix) checks \
                 after, so a profile denying getcwd makes runc fail ('failed to verify if \
                 current working directory is safe') while berth runs the container (issue 10 \
                 item 6: a documented improvement). A kill action can also hang runc 1.3.6's \
                 `create` until the fuzzer's timeout kills it, leaving runc's init and \
                 cgroups behind (runc's leftovers, removed by the fuzzer after runc's side, \
                 so berth's create in the same cgroup path may fail behind them).",
        applies: |case, key, _, runc, berth| {
            // An errno action makes runc say why; a kill action kills its init silently, so
            // `start` (or `run`) finds it gone.
            let init_gone = runc.stderr.contains("container process is already dead")
                || runc
                    .stderr
                    .contains("cannot start a container that has stopped");
            let runc_failed = runc
                .stderr
                .contains("failed to verify if current working directory is safe")
                || getcwd_kills(case) && (init_gone || !runc.steps.iter().all(|(_, ok)| *ok));
            let runc_hung = getcwd_kills(case) && runc.timed_out;
            case.has("linux.seccomp.getcwd")
                && (!key.starts_with("leftover") || (key == "leftover:runc" && runc_hung))
                && (runc_failed || runc_hung)
                // After runc hung, what it left in the case's cgroup path (the fuzzer kills it
                // only after its side) can make berth's create of the same path fail too.
                && (runc_hung || berth.steps.iter().all(|(_, ok)| *ok))
        },
    },
    Deviation {
        id: "tmpfs-explicit-mode",
        reason: "runc 1.1 chmods a tmpfs mount's root back to the mode of the directory it \
                 covers (0755 for a directory it created), so an explicit `mode=` (e.g. \
                 mode=1777 or mode=700 on /dev or /dev/shm) is lost; runc 1.3 prepends \
                 `mode=<dir mode>` to the options so that an explicit `mode=` wins, and berth \
                 does what 1.3 does. The effects differ: who may enter /dev, who may write \
                 /dev/shm, and O_CREAT opens of device nodes owned by another user in a \
                 sticky world-writable /dev (EACCES, kernel may_create_in_sticky) in a user \
                 namespace.",
        applies: |case, key, line, runc, _| {
            let explicit = explicit_tmpfs_modes(case);
            if !runc.runc_1_1 || explicit.is_empty() {
                return false;
            }
            // The probe's scratch directory is /dev/shm, else /tmp.
            let dev = explicit
                .iter()
                .any(|d| d == "/dev" || d == "/dev/shm" || d == "/tmp");
            match key {
                "section:devices" | "section:sys" => dev,
                "section:mntdirs" => {
                    // A directory listing follows its mount point's stat line without naming
                    // it again: `. .. ...`, or ls's own refusal.
                    let listing = line
                        .get(2..)
                        .is_some_and(|l| l.starts_with(". ..") || l.starts_with("ls: can't open"));
                    dev || listing
                        || explicit.iter().any(|d| {
                            line.get(2..)
                                .is_some_and(|l| l.starts_with(&format!("{d} ")))
                                || line.contains(&format!("'{d}'"))
                                || line.contains(&format!("{d}/"))
                        })
                }
                _ => false,
            }
        },
    },
    Deviation {
        id: "seccomp-syscall-under-two-actions",
        reason: "a profile listing one syscall under two actions, each rule with argument \
                 conditions, is ambiguous in the runtime-spec where the conditions overlap: \
                 runc follows libseccomp's rule tree, berth loads one filter per action and \
                 the kernel applies the strongest verdict (DESIGN.md, seccomp). Only the \
                 probe's syscall results differ. (With an unconditional rule berth does as \
                 libseccomp: the first one decides the syscall.)",
        applies: |case, key, _, _, _| {
            (key == "section:sys" || key == "section:uts") && duplicate_syscall(case)
        },
    },
    Deviation {
        id: "seccomp-refused-before-hooks",
        reason: "a profile libseccomp refuses (one syscall's same conditions under two \
                 actions) is refused by berth when it validates the config, before anything \
                 is made, so no hook runs; runc compiles the profile in init, after the \
                 createRuntime and createContainer hooks, and then runs the poststop hooks. \
                 Both fail the container with the same words.",
        applies: |_, key, _, runc, berth| {
            key == "section:hooks"
                && runc
                    .stderr
                    .contains("error adding seccomp rule for syscall")
                && berth
                    .stderr
                    .contains("error adding seccomp rule for syscall")
        },
    },
    Deviation {
        id: "cgroup-v1-mount-layout",
        reason: "for a `cgroup` mount on a v1/hybrid host runc 1.1 mounts the /sys/fs/cgroup \
                 tmpfs read-write with fixed nosuid,nodev,noexec and omits the hybrid host's \
                 cgroup2 `unified` hierarchy, and adds nosuid,nodev,noexec to every hierarchy's \
                 mount; berth mounts the tmpfs and the hierarchies with the mount's own \
                 options (read-only when asked) and binds the container's own directory of \
                 `unified` too (libcontainer/src/init/rootfs.rs mount_cgroup). No wider \
                 access: the tmpfs is stricter, `unified` shows only the container's cgroup.",
        applies: |case, key, line, _, _| {
            let cgroup_ro = case.cfg["mounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["type"] == "cgroup")
                .map(|m| {
                    m["options"]
                        .as_array()
                        .is_some_and(|o| o.iter().any(|o| o == "ro"))
                });
            let Some(ro) = cgroup_ro.reduce(|a, b| a || b) else {
                return false; // no cgroup mount asked for
            };
            // `+ point root=R fstype source opts | super`: berth's per-mount options.
            let berth_rw = line.starts_with('+')
                && line
                    .split(' ')
                    .nth(5)
                    .is_some_and(|o| !o.split(',').any(|o| o == "ro"));
            key == "section:mounts"
                && line
                    .get(2..)
                    .is_some_and(|l| l.starts_with("/sys/fs/cgroup"))
                && !(ro && berth_rw)
        },
    },
    Deviation {
        id: "runc-1.1-userns-bind",
        reason: "runc 1.1 opens bind sources as /proc/self/fd/N before a new user namespace \
                 and mounts them `via /proc/self/fd/M`, which the kernel refuses (EINVAL, a \
                 mount from another mount namespace; EPERM when its remount then drops a \
                 locked flag); runc 1.2+ clones them with open_tree and \
                 attaches them, as berth does (issue 10 item 8). runc fails the container, \
                 berth runs it.",
        applies: |case, key, _, runc, berth| {
            case.has("linux.namespaces.user")
                && !key.starts_with("leftover")
                && runc.stderr.contains("(via /proc/self/fd/")
                && (runc.stderr.contains("invalid argument")
                    || runc.stderr.contains("operation not permitted"))
                && berth.steps.iter().all(|(_, ok)| *ok)
        },
    },
    Deviation {
        id: "no-proc-in-rootfs",
        reason: "a container without a /proc mount: runc 1.1 lists /proc/self/fd inside it to \
                 close inherited descriptors ('error closing exec fds') and writes sysctls \
                 through its /proc; runc 1.3 reads /proc/sys/kernel/cap_last_cap there, \
                 refuses the rootfs's /proc directory as 'unsafe procfs', and binds masked \
                 files and the console through /proc/thread-self/fd. berth marks descriptors \
                 close-on-exec with close_range(2), mounts by descriptor, and writes sysctls \
                 and reopens the exec fifo through a procfs taken before pivot_root: it \
                 needs no /proc.",
        applies: |_, key, _, runc, berth| {
            !key.starts_with("leftover")
                && (runc
                    .stderr
                    .contains("error closing exec fds: open /proc/self/fd")
                    || runc
                        .stderr
                        .contains("open /proc/sys/kernel/cap_last_cap: no such file")
                    || runc
                        .stderr
                        .contains("unsafe procfs detected: incorrect procfs root filesystem type")
                    || (runc.stderr.contains("dstFd=/proc/thread-self/fd/")
                        && runc.stderr.contains("no such file or directory"))
                    || (runc.runc_1_1
                        && runc
                            .stderr
                            .contains("error during container init: open /proc/sys/")
                        && runc.stderr.contains("no such file or directory")))
                && berth.steps.iter().all(|(_, ok)| *ok)
        },
    },
    Deviation {
        id: "tmpfs-covered-mode-option",
        reason: "a tmpfs over an existing directory gets that directory's mode: runc 1.1 \
                 chmods the tmpfs root after mounting, runc 1.3 and berth prepend \
                 `mode=<dir mode>` to the mount data (so an explicit `mode=` wins), which \
                 mountinfo then shows among the superblock options. Same mode either way.",
        applies: |case, key, line, _, _| {
            if key != "section:mounts" || !line.contains(" tmpfs tmpfs ") {
                return false;
            }
            let Some(point) = line.get(2..).and_then(|l| l.split(' ').next()) else {
                return false;
            };
            let is_config_tmpfs = case.cfg["mounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["type"] == "tmpfs" && m["destination"] == point);
            let supers = line.rsplit_once(" | ").map_or("", |(_, s)| s);
            is_config_tmpfs
                && match line.as_bytes().first() {
                    Some(b'+') => supers.contains("mode="),
                    Some(b'-') => !supers.contains("mode="),
                    _ => false,
                }
        },
    },
    Deviation {
        id: "no-capabilities-field",
        reason: "without `process.capabilities` berth gives the process no capabilities, as \
                 runc 1.1 does; runc 1.2+ leaves them alone, so its process keeps root's full \
                 sets. berth's choice only narrows privileges (README, deviations).",
        applies: |case, key, line, _, _| {
            if case.cfg["process"].get("capabilities").is_some() {
                return false;
            }
            // What the probe tries that needs a capability (unshare, sethostname, opening a
            // device node whose mode only CAP_DAC_OVERRIDE passes, ...): berth's lines may
            // only be refusals, runc's only successes.
            let denied = line.contains("not permitted") || line.contains("denied");
            match (key, line.as_bytes().first()) {
                ("section:sys", Some(b'+')) => return denied,
                ("section:sys", Some(b'-')) => return line.ends_with(" ok"),
                // A device line ends with what the probe could open: `rw`, `r-`, `-w`, `--`;
                // berth's may only have less.
                ("section:devices", Some(b'+')) => {
                    return denied || [" --", " r-", " -w"].iter().any(|e| line.ends_with(e))
                }
                // A directory only CAP_DAC_OVERRIDE/READ_SEARCH lets root list.
                ("section:mntdirs", Some(b'+')) => return denied,
                ("section:mntdirs", Some(b'-')) => return !denied,
                // With the capability runc's `true <$d 2>/dev/null` opens the node and then
                // fails at the redirection of stderr (a /dev/null it may not write), or gets
                // past the node's mode to the device cgroup (EPERM).
                ("section:devices", Some(b'-')) => {
                    return !denied
                        || line.ends_with("can't create /dev/null: Permission denied")
                        || line.ends_with(": Operation not permitted")
                }
                _ => {}
            }
            key == "section:status"
                && match line.split_once(':') {
                    Some((head, value)) if head.len() == 8 && head[2..].starts_with("Cap") => {
                        let zero = value.trim() == "0000000000000000";
                        // runc's line (-) has capabilities, berth's (+) has none.
                        if line.starts_with('+') {
                            zero
                        } else {
                            !zero
                        }
                    }
                    _ => false,
                }
        },
    },
    Deviation {
        id: "runc-1.3-userns-plain-bind",
        reason: "in a new user namespace runc 1.3 fails a non-recursive `bind` mount: with \
                 EINVAL ('flags=MS_BIND...: invalid argument', its source being a mount of the \
                 host's namespace) or, for an atime option other than the source's, with \
                 'cannot change locked atime flags'. berth clones the source with open_tree \
                 before entering the user namespace, sets the requested flags on the clone as \
                 the root that runs it, and attaches it (issue 10 item 8): the container gets \
                 exactly the options its config asks for. runc fails the container, berth runs \
                 it.",
        applies: |case, key, _, runc, berth| {
            let e = &runc.stderr;
            let einval = (e.contains("|MS_BIND") || e.contains("flags=MS_BIND"))
                && e.contains("invalid argument");
            let locked_atime = e.contains("on bind-mount: cannot change locked atime flags");
            // berth gets further: to the end, or to a hook the case makes fail.
            let berth_further = berth.steps.iter().all(|(_, ok)| *ok)
                || berth.stderr.contains("error running")
                    && ["prestart", "createRuntime", "createContainer", "poststart"]
                        .iter()
                        .any(|p| failing_hook(case, p));
            case.has("linux.namespaces.user")
                && !key.starts_with("leftover")
                && e.contains("error mounting")
                && (einval || locked_atime)
                && berth_further
        },
    },
    Deviation {
        id: "poststart-after-start",
        reason: "berth runs poststart hooks after the user process has started, as the \
                 runtime-spec says, so their state's status is `running`; runc (1.1 to 1.4) \
                 runs them during `create`, before the process is executed, with status \
                 `created` (runc issue #1710; moved to `start` by runc PR #5186, after 1.4). \
                 Test: hook_poststart_runs_after_the_process_starts.",
        applies: |_, key, line, _, _| {
            key == "section:hooks"
                && match line.split_once(' ') {
                    Some(("+", rest)) => {
                        rest.starts_with("poststart#") && rest.contains(" running ")
                    }
                    Some(("-", rest)) => {
                        rest.starts_with("poststart#") && rest.contains(" created ")
                    }
                    _ => false,
                }
        },
    },
    Deviation {
        id: "poststart-failure-after-start",
        reason: "a failing poststart hook: runc runs poststart hooks during `create`, before the \
                 process is executed, so `create` (or `run`) fails and the process never runs; \
                 berth runs them after the process started (runtime-spec), so `start` (or \
                 `run`) fails after the probe ran, and the container is stopped. Both fail the \
                 operation with the hook's error. Test: \
                 hook_poststart_failure_stops_the_container.",
        applies: |case, key, _, runc, berth| {
            failing_hook(case, "poststart")
                && !key.starts_with("leftover")
                && runc.stderr.contains("error running")
                && berth.stderr.contains("error running poststart hook")
        },
    },
    Deviation {
        id: "poststop-runs-all",
        reason: "after a poststop hook fails, berth logs a warning and runs the remaining \
                 poststop hooks, and `delete` succeeds, as the runtime-spec says ('the \
                 remaining hooks and lifecycle continue as if the hook had succeeded'); runc \
                 stops at the first failure and its `delete` fails (README, deviations). \
                 Test: hook_poststop_failure_runs_the_remaining_hooks.",
        applies: |case, key, line, runc, berth| {
            // runc's `delete` then fails; berth's logs a warning and succeeds: the only
            // difference in the steps.
            let only_delete = runc.steps.len() == berth.steps.len()
                && runc
                    .steps
                    .iter()
                    .zip(&berth.steps)
                    .all(|(r, b)| r == b || *r == ("delete", false) && *b == ("delete", true));
            failing_hook(case, "poststop")
                && (key == "section:hooks" && line.starts_with("+ poststop#")
                    || key == "steps"
                        && only_delete
                        && runc.stderr.contains("error running poststop hook"))
        },
    },
    Deviation {
        id: "userns-sysfs-bind",
        reason: "a user namespace without a network namespace of its own may not mount sysfs \
                 (EPERM); runc 1.1 and berth then bind the host's /sys with the mount's \
                 options, which is what runc 1.3's code means to do too, but runc 1.3.6 fails \
                 the container with the mount's EPERM. The container shares the host's network \
                 namespace, so /sys shows it nothing that namespace does not.",
        applies: |case, key, _, runc, berth| {
            case.has("linux.namespaces.user")
                && !case.has("linux.namespaces.network")
                && !key.starts_with("leftover")
                && runc
                    .stderr
                    .contains("error mounting \\\"sysfs\\\" to rootfs")
                && runc.stderr.contains("operation not permitted")
                && berth.steps.iter().all(|(_, ok)| *ok)
        },
    },
    Deviation {
        id: "joined-userns-with-mappings",
        reason: "berth accepts uid/gid mappings together with a user namespace joined by path \
                 (they must match the joined namespace's); runc refuses the config. Not \
                 generated by the fuzzer (it joins no namespaces); listed for completeness.",
        applies: |_, _, _, _, _| false,
    },
];

/// Whether one of the case's `phase` hooks fails (gen.rs makes it `exit 1`).
fn failing_hook(case: &Case, phase: &str) -> bool {
    case.cfg["hooks"][phase]
        .as_array()
        .into_iter()
        .flatten()
        .any(|h| h["args"][2].as_str().is_some_and(|s| s.ends_with("exit 1")))
}

/// Whether the case's seccomp profile kills on getcwd.
fn getcwd_kills(case: &Case) -> bool {
    case.cfg["linux"]["seccomp"]["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| {
            r["names"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n == "getcwd"))
                && r["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("SCMP_ACT_KILL"))
        })
}

/// Destinations of tmpfs mounts with an explicit `mode=` other than the covered
/// directory's (1777 for /tmp, 0755 for the others).
fn explicit_tmpfs_modes(case: &Case) -> Vec<String> {
    let mut v = Vec::new();
    for m in case.cfg["mounts"].as_array().into_iter().flatten() {
        if m["type"] != "tmpfs" {
            continue;
        }
        // The mode of the directory the tmpfs covers in the fuzzer's rootfs.
        let covered = if m["destination"] == "/tmp" {
            "1777"
        } else {
            "755"
        };
        let explicit = m["options"].as_array().into_iter().flatten().any(|o| {
            o.as_str()
                .and_then(|o| o.strip_prefix("mode="))
                .is_some_and(|mode| mode.trim_start_matches('0') != covered)
        });
        if explicit {
            v.push(m["destination"].as_str().unwrap_or("").to_string());
        }
    }
    v
}

/// Some syscall of the case's seccomp profile appears in two rules with different actions.
/// Whether the profile lists one syscall under two verdicts (action and errno) with only
/// conditional rules: with an unconditional one, berth decides as libseccomp does.
fn duplicate_syscall(case: &Case) -> bool {
    let Some(rules) = case.cfg["linux"]["seccomp"]["syscalls"].as_array() else {
        return false;
    };
    // name -> (verdicts, whether a rule for it has no conditions)
    let mut seen: BTreeMap<&str, (BTreeSet<String>, bool)> = BTreeMap::new();
    for r in rules {
        let verdict = format!("{} {}", r["action"], r["errnoRet"]);
        let unconditional = r["args"].as_array().is_none_or(Vec::is_empty);
        for n in r["names"].as_array().into_iter().flatten() {
            let e = seen.entry(n.as_str().unwrap_or("")).or_default();
            e.0.insert(verdict.clone());
            e.1 |= unconditional;
        }
    }
    seen.values()
        .any(|(verdicts, uncond)| verdicts.len() > 1 && !uncond)
}

/// The id of the first deviation that explains `line` of item `key`.
pub fn explain(
    case: &Case,
    key: &str,
    line: &str,
    runc: &Outcome,
    berth: &Outcome,
) -> Option<&'static str> {
    DEVIATIONS
        .iter()
        .find(|d| (d.applies)(case, key, line, runc, berth))
        .map(|d| d.id)
}

/// The list, for `difffuzz --deviations`.
pub fn print() {
    for d in DEVIATIONS {
        println!(
            "{}:\n  {}",
            d.id,
            d.reason.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn case(syscalls: serde_json::Value) -> Case {
        Case {
            seed: 0,
            n: 0,
            id: "x".into(),
            mode: super::super::gen::Mode::Run,
            cfg: json!({"linux": {"seccomp": {"syscalls": syscalls}}}),
            fields: Default::default(),
            vols: Vec::new(),
            rootfs_owner: None,
            probe: Default::default(),
        }
    }

    #[test]
    fn two_verdicts_deviate_only_with_conditions_alone() {
        let errno = |e: u32| json!({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": e});
        let cond = |e: u32| {
            json!({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": e,
                   "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]})
        };
        // Unconditional duplicates: berth decides as runc (seed 601 case 114).
        assert!(!duplicate_syscall(&case(json!([errno(95), errno(13)]))));
        assert!(!duplicate_syscall(&case(json!([cond(95), errno(13)]))));
        assert!(!duplicate_syscall(&case(json!([cond(95), cond(95)]))));
        assert!(duplicate_syscall(&case(json!([cond(95), cond(13)]))));
    }
}
