//! Mount options of config.json: flags to set or clear, propagation, and filesystem data.

/// The parsed options of one mount.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOpts {
    /// MS_* flags for mount(2), without propagation.
    pub flags: u64,
    /// Propagation changes, applied one by one after the mount.
    pub propagation: Vec<u64>,
    /// Options the kernel's filesystem takes as data (`size=64k,mode=755`).
    pub data: String,
}

impl MountOpts {
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }

    pub fn is_recursive(&self) -> bool {
        self.flags & libc::MS_REC != 0
    }

    /// Flags that need a remount after a bind mount (a bind ignores them on the first call).
    pub fn remount_flags(&self) -> u64 {
        self.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT)
    }
}

/// Parse options; unknown ones are filesystem data, as runc treats them.
pub fn parse(options: &[String]) -> MountOpts {
    let mut o = MountOpts::default();
    let mut data = Vec::new();
    for opt in options {
        if let Some((set, flag)) = flag(opt) {
            if set {
                o.flags |= flag;
            } else {
                o.flags &= !flag;
            }
        } else if let Some(p) = propagation(opt) {
            o.propagation.push(p);
        } else if opt == "tmpcopyup" {
            // runc's extension; berth does not copy up (yet) and the kernel must not see it.
        } else {
            data.push(opt.as_str());
        }
    }
    o.data = data.join(",");
    o
}

/// `Some((true, F))` sets F, `Some((false, F))` clears it.
fn flag(opt: &str) -> Option<(bool, u64)> {
    use libc::*;
    Some(match opt {
        "defaults" => (true, 0),
        "ro" => (true, MS_RDONLY),
        "rw" => (false, MS_RDONLY),
        "nosuid" => (true, MS_NOSUID),
        "suid" => (false, MS_NOSUID),
        "nodev" => (true, MS_NODEV),
        "dev" => (false, MS_NODEV),
        "noexec" => (true, MS_NOEXEC),
        "exec" => (false, MS_NOEXEC),
        "sync" => (true, MS_SYNCHRONOUS),
        "async" => (false, MS_SYNCHRONOUS),
        "dirsync" => (true, MS_DIRSYNC),
        "remount" => (true, MS_REMOUNT),
        "mand" => (true, MS_MANDLOCK),
        "nomand" => (false, MS_MANDLOCK),
        "noatime" => (true, MS_NOATIME),
        "atime" => (false, MS_NOATIME),
        "nodiratime" => (true, MS_NODIRATIME),
        "diratime" => (false, MS_NODIRATIME),
        "bind" => (true, MS_BIND),
        "rbind" => (true, MS_BIND | MS_REC),
        "relatime" => (true, MS_RELATIME),
        "norelatime" => (false, MS_RELATIME),
        "strictatime" => (true, MS_STRICTATIME),
        "nostrictatime" => (false, MS_STRICTATIME),
        "lazytime" => (true, MS_LAZYTIME),
        "nolazytime" => (false, MS_LAZYTIME),
        "silent" => (true, MS_SILENT),
        "loud" => (false, MS_SILENT),
        "iversion" => (true, MS_I_VERSION),
        "noiversion" => (false, MS_I_VERSION),
        _ => return None,
    })
}

/// The propagation flags of one option name (`rslave` -> MS_SLAVE|MS_REC).
pub fn propagation(opt: &str) -> Option<u64> {
    use libc::*;
    Some(match opt {
        "private" => MS_PRIVATE,
        "rprivate" => MS_PRIVATE | MS_REC,
        "shared" => MS_SHARED,
        "rshared" => MS_SHARED | MS_REC,
        "slave" => MS_SLAVE,
        "rslave" => MS_SLAVE | MS_REC,
        "unbindable" => MS_UNBINDABLE,
        "runbindable" => MS_UNBINDABLE | MS_REC,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_propagation_and_data() {
        let o = parse(&s(&[
            "rbind", "ro", "nosuid", "rslave", "size=64k", "mode=755",
        ]));
        assert!(o.is_bind() && o.is_recursive());
        assert_eq!(o.remount_flags(), libc::MS_RDONLY | libc::MS_NOSUID);
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert_eq!(o.data, "size=64k,mode=755");
        let o = parse(&s(&["ro", "rw", "noexec", "exec"]));
        assert_eq!(o.flags, 0);
    }
}
