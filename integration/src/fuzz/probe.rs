//! The probe: a busybox `sh` script run as the container's process that prints what the
//! container sees, in sections (`@@name`), and the normalisation that makes two runs'
//! outputs comparable.

use std::collections::BTreeMap;

use super::gen::ProbeSpec;

/// Device nodes whose presence, owner, mode and openability are reported.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/console",
    "/dev/ptmx",
    "/dev/pts/ptmx",
];

/// Cgroup v1 files (below /sys/fs/cgroup) read from inside the container.
pub const CGROUP_FILES: &[&str] = &[
    "memory/memory.limit_in_bytes",
    "memory/memory.soft_limit_in_bytes",
    "memory/memory.memsw.limit_in_bytes",
    "memory/memory.swappiness",
    "memory/memory.oom_control",
    "cpu/cpu.shares",
    "cpu/cpu.cfs_quota_us",
    "cpu/cpu.cfs_period_us",
    "cpuset/cpuset.cpus",
    "cpuset/cpuset.mems",
    "pids/pids.max",
    "devices/devices.list",
];

/// The script for `spec`.
pub fn script(spec: &ProbeSpec) -> String {
    let mut s = String::from("exec 2>&1\n");
    s.push_str("echo @@id; id\n");
    s.push_str(
        "echo @@status; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status\n",
    );
    s.push_str("echo @@limits; cat /proc/self/limits\n");
    s.push_str("echo @@uts; hostname; cat /proc/sys/kernel/domainname\n");
    s.push_str("echo @@umask; umask\n");
    s.push_str("echo @@cwd; pwd\n");
    s.push_str("echo @@oom; cat /proc/self/oom_score_adj\n");
    s.push_str("echo @@mounts; cat /proc/self/mountinfo\n");
    if !spec.sysctls.is_empty() {
        s.push_str("echo @@sysctl\n");
        for k in &spec.sysctls {
            let p = k.replace('.', "/");
            s.push_str(&format!("echo {k}=$(cat /proc/sys/{p})\n"));
        }
    }
    s.push_str("echo @@cgroup\n");
    s.push_str(&format!(
        "for f in {}; do echo \"$f:\"; cat /sys/fs/cgroup/$f; done\n",
        CGROUP_FILES.join(" ")
    ));
    s.push_str("echo @@devices\n");
    let mut devs: Vec<&str> = DEVICES.to_vec();
    devs.extend(spec.devices.iter().map(String::as_str));
    s.push_str(&format!(
        "for d in {}; do if [ -e $d ]; then r=-; w=-; true <$d 2>/dev/null && r=r; true 2>/dev/null >>$d && w=w; echo $(stat -c '%n %F %a %u %g %t:%T' $d) $r$w; else echo $d absent; fi; done\n",
        devs.join(" ")
    ));
    if !spec.mount_dests.is_empty() {
        s.push_str("echo @@mntdirs\n");
        s.push_str(&format!(
            "for m in {}; do stat -c '%n %F %a %u %g' $m; ls -a $m 2>&1 | sort | tr '\\n' ' '; echo; done\n",
            spec.mount_dests.join(" ")
        ));
    }
    s.push_str("echo @@sys\n");
    s.push_str(
        "D=/dev/shm; [ -d $D ] && [ -w $D ] || D=/tmp\n\
         mkdir $D/fzd && echo mkdir ok\n\
         chmod 700 $D/fzd && echo chmod700 ok\n\
         chmod 755 $D/fzd && echo chmod755 ok\n\
         ln -s x $D/fzl && echo symlink ok\n\
         touch $D/fzd && echo touch ok\n\
         uname -s\n\
         nice -n 1 true && echo nice ok\n\
         unshare -n true && echo unshare ok\n\
         hostname fzset && echo sethostname ok\n\
         rm -rf $D/fzd $D/fzl && echo rm ok\n",
    );
    s.push_str("echo @@end\n");
    s.push_str(&format!("exit {}\n", spec.exit_code));
    s
}

/// The probe's output split into sections, each normalised; `bundle` (this runtime's
/// bundle directory) becomes `<bundle>`.
pub fn sections(out: &str, bundle: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cur = "(before)".to_string();
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            cur = name.trim().to_string();
            map.entry(cur.clone()).or_default();
            continue;
        }
        let line = line.replace(bundle, "<bundle>");
        let norm = match cur.as_str() {
            "mounts" => match mountinfo_line(&line) {
                Some(l) => l,
                None => continue,
            },
            "status" if line.starts_with("Seccomp_filters") => continue,
            // A listing of a proc mount: pids differ between runs, and one may exit while
            // `ls` reads it ("ls: /mnt/p/123: No such file or directory").
            // (the message sorts among the names: words, not spaces, are compared).
            "mntdirs" => drop_vanished(&line)
                .split_whitespace()
                .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
                .collect::<Vec<_>>()
                .join(" "),
            _ => line,
        };
        map.entry(cur.clone()).or_default().push(norm);
    }
    // Mount order between runtimes is not meaningful where they mount the same set
    // (device binds, masked paths): compare the sorted table.
    if let Some(m) = map.get_mut("mounts") {
        m.sort();
    }
    map
}

/// `line` without `ls: PATH: No such file or directory` reports of entries that vanished
/// between listing a directory and statting them.
fn drop_vanished(line: &str) -> String {
    const GONE: &str = ": No such file or directory";
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("ls: ") {
        let Some(end) = rest[start..].find(GONE) else {
            break;
        };
        out.push_str(&rest[..start]);
        rest = &rest[start + end + GONE.len()..];
    }
    out.push_str(rest);
    out
}

/// One mountinfo line reduced to `mountpoint root fstype source per-mount-opts | super-opts
/// [propagation tags]`: no mount ids, no device numbers, no peer group numbers, and no
/// tmpfs sizes or inode counts (the kernel rounds them).
pub fn mountinfo_line(line: &str) -> Option<String> {
    let (left, right) = line.split_once(" - ")?;
    let lf: Vec<&str> = left.split(' ').collect();
    if lf.len() < 6 {
        return None;
    }
    let root = lf[3];
    let mp = lf[4];
    let mut opts: Vec<&str> = lf[5].split(',').collect();
    opts.sort();
    let tags: Vec<String> = lf[6..]
        .iter()
        .map(|t| t.split(':').next().unwrap_or("").to_string())
        .collect();
    let rf: Vec<&str> = right.split(' ').collect();
    let fstype = rf.first().copied().unwrap_or("");
    let source = rf.get(1).copied().unwrap_or("");
    let mut sup: Vec<&str> = rf
        .get(2)
        .copied()
        .unwrap_or("")
        .split(',')
        .filter(|o| !o.starts_with("size=") && !o.starts_with("nr_inodes=") && *o != "inode64")
        .collect();
    sup.sort();
    Some(format!(
        "{mp} root={root} {fstype} {source} {} | {} {}",
        opts.join(","),
        sup.join(","),
        tags.join(",")
    ))
}

/// The line diff of two lists (an LCS), as `- a` / `+ b` lines with a little context.
pub fn diff(a: &[String], b: &[String]) -> Vec<String> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn mountinfo_normalised() {
        let l =
            "612 611 0:61 / /dev rw,nosuid master:3 - tmpfs tmpfs rw,size=65536k,mode=755,inode64";
        assert_eq!(
            mountinfo_line(l).unwrap(),
            "/dev root=/ tmpfs tmpfs nosuid,rw | mode=755,rw master"
        );
    }

    #[test]
    fn sections_and_diff() {
        let s = sections("@@a\nx /b/u\n@@b\ny\n", "/b/u");
        assert_eq!(s["a"], vec!["x <bundle>"]);
        let a: Vec<String> = ["1", "2", "3"].iter().map(|s| s.to_string()).collect();
        let b: Vec<String> = ["1", "3", "4"].iter().map(|s| s.to_string()).collect();
        assert_eq!(diff(&a, &b), vec!["- 2", "+ 4"]);
    }

    /// A pid that exits while `ls` lists /proc leaves a message among the sorted names; it is
    /// dropped with its spaces (seed 623 cases 43 and 68 differed by one empty word).
    #[test]
    fn a_vanished_pid_leaves_no_trace_in_a_listing() {
        let seen = "@@mntdirs
. .. 1 locks ls: /mnt/p/77: No such file or directory meminfo 
";
        let clean = "@@mntdirs
. .. 1 locks meminfo 
";
        assert_eq!(sections(seen, "/b"), sections(clean, "/b"));
        assert_eq!(sections(clean, "/b")["mntdirs"], vec![". .. locks meminfo"]);
    }
}
