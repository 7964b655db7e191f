//! Mount options of config.json: flags to set or clear, propagation, and filesystem data.

use crate::sys::mount_attr;

/// The parsed options of one mount.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOpts {
    /// MS_* flags for mount(2), without propagation.
    pub flags: u64,
    /// Propagation changes, applied one by one after the mount.
    pub propagation: Vec<u64>,
    /// Options the kernel's filesystem takes as data (`size=64k,mode=755`).
    pub data: String,
    /// Recursive attributes (`rro`, `rnosuid`, ...) for mount_setattr(AT_RECURSIVE): set.
    pub rec_set: u64,
    /// Recursive attributes to clear (`rrw`, `rsuid`, ...).
    pub rec_clr: u64,
    /// `tmpcopyup`: fill a new tmpfs with what the directory under it holds.
    pub copyup: bool,
    /// `idmap` or `ridmap` (runtime-spec 1.2): an idmapped bind mount.
    pub idmap: Option<IdmapScope>,
}

/// Which mounts of an idmapped bind get the mapping (runc's semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdmapScope {
    /// `idmap`: the bind's top mount only (an rbind's submounts keep the ids they have).
    Top,
    /// `ridmap`: every mount of the bound tree.
    Recursive,
}

impl MountOpts {
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }

    /// Whether any recursive attribute was asked for.
    pub fn has_rec_attr(&self) -> bool {
        self.rec_set != 0 || self.rec_clr != 0
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
        } else if let Some((clear, attr)) = rec_attr(opt) {
            // As runc: a later option for the same attribute wins, and an access-time value
            // can only be set together with clearing the whole access-time field.
            if clear {
                o.rec_clr |= attr;
                o.rec_set &= !attr;
            } else {
                o.rec_set |= attr;
                o.rec_clr &= !attr;
                if attr & mount_attr::ATIME == attr {
                    o.rec_clr |= mount_attr::ATIME;
                }
            }
        } else if opt == "tmpcopyup" {
            o.copyup = true;
        } else if opt == "idmap" {
            o.idmap = Some(IdmapScope::Top);
        } else if opt == "ridmap" {
            o.idmap = Some(IdmapScope::Recursive);
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
        "nosymfollow" => (true, MS_NOSYMFOLLOW),
        "symfollow" => (false, MS_NOSYMFOLLOW),
        _ => return None,
    })
}

/// The recursive mount attributes runc takes: (name, clear, MOUNT_ATTR_*), applied with
/// mount_setattr(AT_RECURSIVE) after the mount; one table for the parser and `berth features`.
const REC_ATTRS: &[(&str, bool, u64)] = {
    use mount_attr::*;
    &[
        ("rro", false, RDONLY),
        ("rrw", true, RDONLY),
        ("rnosuid", false, NOSUID),
        ("rsuid", true, NOSUID),
        ("rnodev", false, NODEV),
        ("rdev", true, NODEV),
        ("rnoexec", false, NOEXEC),
        ("rexec", true, NOEXEC),
        ("rnodiratime", false, NODIRATIME),
        ("rdiratime", true, NODIRATIME),
        ("rrelatime", false, RELATIME),
        ("rnorelatime", true, RELATIME),
        ("rnoatime", false, NOATIME),
        ("ratime", true, NOATIME),
        ("rstrictatime", false, STRICTATIME),
        ("rnostrictatime", true, STRICTATIME),
        ("rnosymfollow", false, NOSYMFOLLOW),
        ("rsymfollow", true, NOSYMFOLLOW),
    ]
};

/// `Some((clear, MOUNT_ATTR_*))` for a recursive option name.
fn rec_attr(opt: &str) -> Option<(bool, u64)> {
    REC_ATTRS
        .iter()
        .find(|(name, _, _)| *name == opt)
        .map(|&(_, clear, attr)| (clear, attr))
}

/// Names of the recursive options, for `berth features`.
pub fn rec_attr_options() -> impl Iterator<Item = &'static str> {
    REC_ATTRS.iter().map(|(name, _, _)| *name)
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
        let o = parse(&s(&["bind", "nosymfollow"]));
        assert_eq!(o.remount_flags(), libc::MS_NOSYMFOLLOW);
        assert_eq!(parse(&s(&["nosymfollow", "symfollow"])).flags, 0);
    }

    #[test]
    fn idmap_options_are_not_data() {
        let o = parse(&s(&["rbind", "idmap"]));
        assert_eq!((o.idmap, o.data.as_str()), (Some(IdmapScope::Top), ""));
        let o = parse(&s(&["bind", "ridmap"]));
        assert_eq!(o.idmap, Some(IdmapScope::Recursive));
        assert_eq!(parse(&s(&["bind"])).idmap, None);
    }

    #[test]
    fn recursive_attributes_and_copyup() {
        let o = parse(&s(&[
            "rbind",
            "rro",
            "rnosuid",
            "tmpcopyup",
            "rrw",
            "rnoexec",
        ]));
        assert_eq!(o.data, "", "neither reaches the kernel as data");
        assert!(o.copyup);
        assert_eq!(o.rec_set, mount_attr::NOSUID | mount_attr::NOEXEC);
        assert_eq!(o.rec_clr, mount_attr::RDONLY);
        // An access-time value clears the whole field first (mount_setattr(2)).
        let o = parse(&s(&["rnoatime"]));
        assert_eq!(o.rec_set, mount_attr::NOATIME);
        assert_eq!(o.rec_clr, mount_attr::ATIME);
        let o = parse(&s(&["rrelatime"]));
        assert!(o.has_rec_attr());
        assert_eq!((o.rec_set, o.rec_clr), (0, mount_attr::ATIME));
        for name in rec_attr_options() {
            assert!(rec_attr(name).is_some(), "{name}");
        }
    }
}
