//! Rootfs and mounts: order, bind/rbind, flags, tmpfs data, special filesystems,
//! propagation, read-only root, --no-pivot, masked and read-only paths.

use std::fs;

use serde_json::json;

use super::{wait_file, WAIT_FOR_GO};
use crate::context::Ctx;
use crate::harness::{Test, TestResult};
use crate::hostmount::HostMount;
use crate::mountinfo::{self, require};
use crate::{ensure, ensure_eq, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        mounts_in_config_order,
        bind_and_rbind,
        mount_flags_ro_nosuid_nodev_noexec,
        tmpfs_size_and_mode,
        special_filesystems,
        mount_propagation_rprivate_rslave,
        mount_propagation_rshared,
        rootfs_propagation_private,
        rootfs_propagation_shared_unbindable,
        root_readonly,
        root_writable,
        no_pivot,
        no_pivot_hides_host_procfs,
        proc_and_sys_refuse_symlink_destination,
        masked_paths,
        readonly_paths,
        recursive_readonly_rro,
        tmpfs_takes_mode_of_covered_dir,
        readonly_tmpfs_and_dev_made_readonly_last,
        tmpfs_copyup,
        bind_of_host_proc_onto_proc,
        userns_bind_source_only_host_root_can_reach,
        readonly_tmpfs_flags_reach_a_tmpfs_stacked_on_it,
        readonly_tmpfs_remount_gives_exactly_its_own_flags,
        no_proc_mount_sysctls_readonly_and_masked_paths,
        cgroup_mounts_read_mountinfo_once,
    ]
}

const MOUNTINFO: &str = "cat /proc/self/mountinfo";

fn mounts_in_config_order(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let src = ctx.scratch_dir("order-src")?;
    fs::write(src.join("marker"), "deep")?;
    b.cfg.add_mount("/a", "tmpfs", "tmpfs", &["size=1m"]);
    b.cfg.add_mount("/a/b", "tmpfs", "tmpfs", &["size=1m"]);
    b.cfg.add_bind(&src, "/a/b/c", &[]);
    b.cfg.sh(&format!("cat /a/b/c/marker; echo; {MOUNTINFO}"));
    let out = b.run_ok()?;
    ensure_eq!(
        out.lines().next().unwrap_or(""),
        "deep",
        "file through nested mounts"
    );
    let m = mountinfo::parse(&out);
    let pos = |mp: &str| m.iter().position(|x| x.mount_point == mp);
    let (a, ab, abc) = (pos("/a"), pos("/a/b"), pos("/a/b/c"));
    ensure!(
        a.is_some() && ab.is_some() && abc.is_some() && a < ab && ab < abc,
        "mounts not in config order: /a {a:?}, /a/b {ab:?}, /a/b/c {abc:?}"
    );
    Ok(())
}

fn bind_and_rbind(ctx: &Ctx) -> TestResult {
    let src = ctx.scratch_dir("rbind-src")?;
    fs::write(src.join("top"), "top")?;
    let sub = HostMount::tmpfs(&src.join("sub"), false)?;
    fs::write(sub.path.join("subfile"), "sub")?;
    let mut b = ctx.bundle()?;
    b.cfg.add_bind(&src, "/bind", &[]);
    b.cfg
        .add_mount("/rbind", "bind", &src.to_string_lossy(), &["rbind"]);
    b.cfg.sh(&format!(
        "echo bind-top $(cat /bind/top); echo bind-sub $(ls -A /bind/sub | wc -l); \
         echo rbind-sub $(cat /rbind/sub/subfile); {MOUNTINFO}"
    ));
    let out = b.run_ok()?;
    let kv = super::key_values(&out);
    ensure_eq!(
        kv.get("bind-top").map(String::as_str),
        Some("top"),
        "bind content"
    );
    ensure_eq!(
        kv.get("bind-sub").map(String::as_str),
        Some("0"),
        "submount under a non-recursive bind (must be empty)"
    );
    ensure_eq!(
        kv.get("rbind-sub").map(String::as_str),
        Some("sub"),
        "submount under rbind"
    );
    let m = mountinfo::parse(&out);
    ensure!(
        mountinfo::find(&m, "/rbind/sub").is_some(),
        "no /rbind/sub mount"
    );
    ensure!(
        mountinfo::find(&m, "/bind/sub").is_none(),
        "/bind/sub is mounted"
    );
    drop(b);
    drop(sub);
    Ok(())
}

fn mount_flags_ro_nosuid_nodev_noexec(ctx: &Ctx) -> TestResult {
    let src = ctx.scratch_dir("flags-src")?;
    let mut b = ctx.bundle()?;
    b.cfg
        .add_bind(&src, "/m", &["ro", "nosuid", "nodev", "noexec"]);
    b.cfg.add_mount(
        "/t",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "noexec", "size=1m"],
    );
    b.cfg.sh(&format!(
        "touch /m/x 2>/dev/null && echo m-writable || echo m-readonly; \
         touch /t/x && echo t-writable; {MOUNTINFO}"
    ));
    let out = b.run_ok()?;
    ensure!(
        out.contains("m-readonly"),
        "a ro bind mount is writable: {out}"
    );
    ensure!(
        out.contains("t-writable"),
        "a rw tmpfs is not writable: {out}"
    );
    ensure!(!src.join("x").exists(), "a ro bind mount wrote to the host");
    let m = mountinfo::parse(&out);
    let mm = require(&m, "/m")?;
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        ensure!(mm.has_opt(o), "/m lacks {o}: {:?}", mm.opts);
    }
    let t = require(&m, "/t")?;
    for o in ["rw", "nosuid", "nodev", "noexec"] {
        ensure!(t.has_opt(o), "/t lacks {o}: {:?}", t.opts);
    }
    Ok(())
}

fn tmpfs_size_and_mode(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg
        .add_mount("/t", "tmpfs", "tmpfs", &["size=1m", "mode=710"]);
    b.cfg.sh(&format!("stat -c %a /t; {MOUNTINFO}"));
    let out = b.run_ok()?;
    ensure_eq!(
        out.lines().next().unwrap_or(""),
        "710",
        "mode of the tmpfs root"
    );
    let m = mountinfo::parse(&out);
    let t = require(&m, "/t")?;
    ensure_eq!(t.fstype, "tmpfs", "fstype of /t");
    ensure!(
        t.has_super_opt("size=1024k"),
        "tmpfs size not 1m: {:?}",
        t.super_opts
    );
    ensure!(
        t.has_super_opt("mode=710"),
        "tmpfs mode not 710: {:?}",
        t.super_opts
    );
    Ok(())
}

fn special_filesystems(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg
        .sh(&format!("echo init $(cat /proc/1/comm); {MOUNTINFO}"));
    let out = b.run_ok()?;
    let m = mountinfo::parse(&out);
    for (mp, fstype) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
    ] {
        ensure_eq!(require(&m, mp)?.fstype, fstype, format!("fstype at {mp}"));
    }
    ensure!(require(&m, "/sys")?.has_opt("ro"), "/sys is not ro");
    let cg: Vec<_> = m
        .iter()
        .filter(|x| {
            x.mount_point == "/sys/fs/cgroup" || x.mount_point.starts_with("/sys/fs/cgroup/")
        })
        .collect();
    ensure!(
        cg.iter()
            .any(|x| x.fstype == "cgroup" || x.fstype == "cgroup2"),
        "no cgroup filesystem under /sys/fs/cgroup: {cg:?}"
    );
    for x in cg
        .iter()
        .filter(|x| x.fstype == "cgroup" || x.fstype == "cgroup2")
    {
        ensure!(x.has_opt("ro"), "cgroup mount {} is not ro", x.mount_point);
    }
    if std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        // A v1 host: each hierarchy is visible at its usual place.
        let mem = require(&m, "/sys/fs/cgroup/memory")?;
        ensure_eq!(mem.fstype, "cgroup", "fstype of /sys/fs/cgroup/memory");
    }
    ensure!(
        out.lines().next() == Some("init sh"),
        "/proc is not the container's pid namespace: {out}"
    );
    Ok(())
}

/// One propagation case: a bind of a shared host tmpfs at `dest` with
/// propagation option `opt`, and what the container must see.
struct PropCase {
    dest: &'static str,
    opt: &'static str,
    shared: bool,
    master: bool,
    /// Does a mount made on the host after the start reach the container?
    sees_host_mount: bool,
}

/// Bind a shared host tmpfs into a container (with `linux.rootfsPropagation`
/// `root_prop`, as the CRI sets it for such mounts) once per case, check the
/// propagation fields in mountinfo, then mount on the host and check which
/// binds receive it.
fn check_mount_propagation(ctx: &Ctx, root_prop: &str, cases: &[PropCase]) -> TestResult {
    let src = ctx.scratch_dir("prop-src")?;
    let host = HostMount::tmpfs(&src, true)?;
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    let s = host.path.to_string_lossy().into_owned();
    b.cfg.set("/linux/rootfsPropagation", json!(root_prop));
    let mut dests = Vec::new();
    for c in cases {
        b.cfg.add_mount(c.dest, "bind", &s, &["rbind", c.opt]);
        dests.push(c.dest);
    }
    b.cfg.sh(&format!(
        "{MOUNTINFO} > /shared/mountinfo; touch /shared/ready; {WAIT_FOR_GO}; \
         for d in {}; do [ -e $d/late/f ] && echo $d yes || echo $d no; done > /shared/seen",
        dests.join(" ")
    ));
    b.run_detached().ok()?;
    wait_file(&shared.join("ready"))?;
    let m = mountinfo::parse(&fs::read_to_string(shared.join("mountinfo"))?);
    for c in cases {
        let x = require(&m, c.dest)?;
        let got = (x.has_optional("shared:"), x.has_optional("master:"));
        ensure_eq!(
            got,
            (c.shared, c.master),
            format!(
                "{} bind at {} (rootfsPropagation {root_prop}): (shared, master) in {:?}",
                c.opt, c.dest, x.optional
            )
        );
    }
    let late = HostMount::tmpfs(&host.path.join("late"), false)?;
    fs::write(late.path.join("f"), "")?;
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    let seen = super::key_values(&fs::read_to_string(shared.join("seen"))?);
    for c in cases {
        let want = if c.sees_host_mount { "yes" } else { "no" };
        ensure_eq!(
            seen.get(c.dest).map(String::as_str),
            Some(want),
            format!("a later host mount seen through the {} bind", c.opt)
        );
    }
    drop(b);
    drop(late);
    drop(host);
    Ok(())
}

fn mount_propagation_rprivate_rslave(ctx: &Ctx) -> TestResult {
    check_mount_propagation(
        ctx,
        "rslave",
        &[
            PropCase {
                dest: "/priv",
                opt: "rprivate",
                shared: false,
                master: false,
                sees_host_mount: false,
            },
            PropCase {
                dest: "/slave",
                opt: "rslave",
                shared: false,
                master: true,
                sees_host_mount: true,
            },
        ],
    )
}

fn mount_propagation_rshared(ctx: &Ctx) -> TestResult {
    check_mount_propagation(
        ctx,
        "rshared",
        &[PropCase {
            dest: "/shr",
            opt: "rshared",
            shared: true,
            master: false,
            sees_host_mount: true,
        }],
    )
}

/// Run with `linux.rootfsPropagation` set to each value and check the
/// propagation of `/` inside: (shared, master, unbindable).
fn check_rootfs_propagation(ctx: &Ctx, cases: &[(&str, bool, bool, bool)]) -> TestResult {
    for &(prop, want_shared, want_master, want_unbindable) in cases {
        let mut b = ctx.bundle()?;
        b.cfg.set("/linux/rootfsPropagation", json!(prop));
        b.cfg.args(&["cat", "/proc/self/mountinfo"]);
        let out = b.run_ok()?;
        let m = mountinfo::parse(&out);
        let root = require(&m, "/")?;
        let got = (
            root.has_optional("shared:"),
            root.has_optional("master:"),
            root.has_optional("unbindable"),
        );
        ensure_eq!(
            got,
            (want_shared, want_master, want_unbindable),
            format!(
                "rootfsPropagation {prop}: (shared, master, unbindable) of / ({:?})",
                root.optional
            )
        );
    }
    Ok(())
}

fn rootfs_propagation_private(ctx: &Ctx) -> TestResult {
    check_rootfs_propagation(ctx, &[("private", false, false, false)])
}

fn rootfs_propagation_shared_unbindable(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 3) {
        skip!(
            "runc before 1.3 (and 1.2.x before the backport of runc PR #4724) does not apply \
             rootfsPropagation shared/unbindable to the container's / (runc issue #1755)"
        );
    }
    check_rootfs_propagation(
        ctx,
        &[
            ("shared", true, false, false),
            ("unbindable", false, false, true),
        ],
    )
}

fn root_readonly(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/root/readonly", json!(true));
    b.cfg.sh(&format!(
        "touch /x 2>/dev/null && echo writable || echo readonly; touch /tmp/x 2>/dev/null || echo tmp-readonly; {MOUNTINFO}"
    ));
    let out = b.run_ok()?;
    ensure!(
        out.contains("readonly") && out.contains("tmp-readonly"),
        "root.readonly: / is writable: {out}"
    );
    ensure!(
        !b.rootfs().join("x").exists(),
        "file written to a read-only rootfs"
    );
    let m = mountinfo::parse(&out);
    ensure!(require(&m, "/")?.has_opt("ro"), "/ is not mounted ro");
    Ok(())
}

fn root_writable(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/root/readonly", json!(false));
    b.cfg.sh("echo hello > /x && cat /x");
    ensure_eq!(b.run_ok()?.trim(), "hello", "write to a writable root");
    ensure!(
        b.rootfs().join("x").exists(),
        "the file is not in the bundle's rootfs"
    );
    Ok(())
}

fn no_pivot(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.sh("head -n1 /etc/passwd; ls /; echo pid $$");
    let out = b.run(&["--no-pivot"]).ok()?.stdout;
    ensure!(
        out.starts_with("root:x:0:0"),
        "wrong /etc/passwd with --no-pivot: {out}"
    );
    ensure!(out.contains("pid 1"), "not pid 1 with --no-pivot: {out}");
    let host_only = ctx
        .tmp
        .file_name()
        .map(|s| s.to_string_lossy().into_owned());
    ensure!(
        !out.lines()
            .any(|l| l == "work" || Some(l.to_string()) == host_only),
        "host root visible with --no-pivot: {out}"
    );
    b.ensure_clean()
}

/// With --no-pivot the host's procfs is still in the container's mount namespace, under the
/// chroot; while it is there the kernel lets a nested user+pid namespace mount a fresh procfs
/// (a full view of /proc without the masks). runc detaches every full procfs and sysfs mount
/// of the old root first, so that mount fails with EPERM.
fn no_pivot_hides_host_procfs(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    fs::create_dir(b.rootfs().join("newproc"))?;
    // A user, so that mapping it to root of the nested namespace needs no CAP_SETFCAP.
    b.cfg
        .set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.cfg.sh("unshare -mrpf true && echo nested yes; \
         if unshare -mrpf mount -t proc proc /newproc 2>/dev/null; then echo mounted yes; \
         else echo mounted no; fi");
    for args in [&["--no-pivot"][..], &[]] {
        let out = b.run(args).ok()?.stdout;
        if !out.contains("nested yes") {
            skip!("unprivileged user namespaces are not available here ({args:?}): {out}");
        }
        ensure!(
            out.contains("mounted no"),
            "a fresh procfs could be mounted ({args:?}): {out}"
        );
    }
    b.ensure_clean()
}

/// procfs and sysfs are never mounted through a symlink in the rootfs (runc: "must be mounted
/// on ordinary directory").
fn proc_and_sys_refuse_symlink_destination(ctx: &Ctx) -> TestResult {
    for (dest, typ) in [("proc", "proc"), ("sys", "sysfs")] {
        let mut b = ctx.bundle()?;
        let rootfs = b.rootfs();
        fs::remove_dir(rootfs.join(dest))?;
        fs::create_dir(rootfs.join("elsewhere"))?;
        std::os::unix::fs::symlink("elsewhere", rootfs.join(dest))?;
        b.cfg.args(&["true"]);
        let out = b.run(&[]).failed()?;
        out.stderr_mentions("must be mounted on ordinary directory")?;
        ensure!(
            fs::read_dir(rootfs.join("elsewhere"))?.next().is_none(),
            "{typ} was mounted through the symlink"
        );
        b.ensure_clean()?;
    }
    Ok(())
}

fn masked_paths(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let rootfs = b.rootfs();
    fs::write(rootfs.join("etc/secret"), "s3cr3t")?;
    fs::create_dir(rootfs.join("secretdir"))?;
    fs::write(rootfs.join("secretdir/f"), "x")?;
    b.cfg.push("/linux/maskedPaths", json!("/etc/secret"));
    b.cfg.push("/linux/maskedPaths", json!("/secretdir"));
    b.cfg.push("/linux/maskedPaths", json!("/does/not/exist"));
    b.cfg.sh(&format!(
        "echo file [$(cat /etc/secret)]; echo dir $(ls -A /secretdir | wc -l); \
         echo dev $(stat -c %F,%t,%T /etc/secret | tr ' ' _); {MOUNTINFO}"
    ));
    let out = b.run_ok()?;
    let kv = super::key_values(&out);
    ensure_eq!(
        kv.get("file").map(String::as_str),
        Some("[]"),
        "content of a masked file"
    );
    ensure_eq!(
        kv.get("dir").map(String::as_str),
        Some("0"),
        "entries of a masked dir"
    );
    ensure_eq!(
        kv.get("dev").map(String::as_str),
        Some("character_special_file,1,3"),
        "a masked file is /dev/null"
    );
    let m = mountinfo::parse(&out);
    ensure_eq!(
        require(&m, "/secretdir")?.fstype,
        "tmpfs",
        "fstype of a masked dir"
    );
    if std::path::Path::new("/proc/kcore").exists() {
        ensure!(
            m.iter().any(|x| x.mount_point == "/proc/kcore"),
            "/proc/kcore not masked"
        );
    }
    Ok(())
}

fn readonly_paths(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/root/readonly", json!(false));
    fs::create_dir(b.rootfs().join("rodir"))?;
    b.cfg.push("/linux/readonlyPaths", json!("/rodir"));
    b.cfg.push("/linux/readonlyPaths", json!("/does/not/exist"));
    b.cfg.sh(&format!(
        "touch /rodir/x 2>/dev/null && echo rodir writable || echo rodir readonly; \
         touch /x && echo root writable; {MOUNTINFO}"
    ));
    let out = b.run_ok()?;
    let kv = super::key_values(&out);
    ensure_eq!(
        kv.get("rodir").map(String::as_str),
        Some("readonly"),
        "a readonlyPaths dir"
    );
    ensure_eq!(
        kv.get("root").map(String::as_str),
        Some("writable"),
        "the rest of the root"
    );
    let m = mountinfo::parse(&out);
    ensure!(
        require(&m, "/rodir")?.has_opt("ro"),
        "/rodir is not mounted ro"
    );
    ensure!(
        require(&m, "/proc/sys")?.has_opt("ro"),
        "/proc/sys is not mounted ro"
    );
    Ok(())
}

/// `rro` (runc 1.1+, mount_setattr(AT_RECURSIVE)): the bind and every submount under it are
/// read-only; a plain `ro` leaves a submount writable. Both the ro and rro flags must show in
/// mountinfo.
fn recursive_readonly_rro(ctx: &Ctx) -> TestResult {
    let src = ctx.scratch_dir("rro-src")?;
    let sub = HostMount::tmpfs(&src.join("sub"), false)?;
    let mut b = ctx.bundle()?;
    let s = src.to_string_lossy().into_owned();
    b.cfg
        .add_mount("/rro", "bind", &s, &["rbind", "rro", "rnosuid"]);
    b.cfg.add_mount("/ro", "bind", &s, &["rbind", "ro"]);
    b.cfg.sh(&format!(
        "for d in /rro /rro/sub /ro /ro/sub; do \
           touch $d/x 2>/dev/null && echo $d writable || echo $d readonly; done; {MOUNTINFO}"
    ));
    let out = b.run_ok()?;
    let kv = super::key_values(&out);
    for (d, want) in [
        ("/rro", "readonly"),
        ("/rro/sub", "readonly"),
        ("/ro", "readonly"),
        ("/ro/sub", "writable"),
    ] {
        ensure_eq!(
            kv.get(d).map(String::as_str),
            Some(want),
            format!("{d}: {out}")
        );
    }
    let m = mountinfo::parse(&out);
    for mp in ["/rro", "/rro/sub"] {
        let x = require(&m, mp)?;
        ensure!(x.has_opt("ro") && x.has_opt("nosuid"), "{mp}: {:?}", x.opts);
    }
    ensure!(require(&m, "/ro/sub")?.has_opt("rw"), "/ro/sub not rw");
    drop(b);
    let _ = fs::remove_file(sub.path.join("x"));
    drop(sub);
    Ok(())
}

/// A tmpfs over an existing directory takes that directory's mode (runc prepends
/// `mode=<dir mode>` to the data); an explicit `mode=` still wins.
fn tmpfs_takes_mode_of_covered_dir(ctx: &Ctx) -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let mut b = ctx.bundle()?;
    for d in ["m-inherit", "m-explicit"] {
        let p = b.rootfs().join(d);
        fs::create_dir(&p)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o1711))?;
    }
    b.cfg
        .add_mount("/m-inherit", "tmpfs", "tmpfs", &["size=1m"]);
    b.cfg
        .add_mount("/m-explicit", "tmpfs", "tmpfs", &["size=1m", "mode=750"]);
    b.cfg.add_mount("/m-new", "tmpfs", "tmpfs", &["size=1m"]);
    b.cfg.sh(&format!(
        "for d in /m-inherit /m-explicit /m-new; do echo $d $(stat -c %a $d); done; {MOUNTINFO}"
    ));
    let out = b.run_ok()?;
    let kv = super::key_values(&out);
    ensure_eq!(
        kv.get("/m-inherit").map(String::as_str),
        Some("1711"),
        "mode of a tmpfs over a 1711 directory"
    );
    // A new directory: tmpfs's own default.
    ensure_eq!(
        kv.get("/m-new").map(String::as_str),
        Some("1777"),
        "mode of a new tmpfs"
    );
    if ctx.rt.is_runc_before(1, 2) {
        // runc 1.1 chmods the tmpfs to the directory's mode after mounting, so the directory's
        // mode wins over an explicit mode=; runc 1.2+ (the reference) lets mode= win.
        return Ok(());
    }
    ensure_eq!(
        kv.get("/m-explicit").map(String::as_str),
        Some("750"),
        "an explicit mode= over a 1711 directory"
    );
    Ok(())
}

/// /dev and every tmpfs are mounted read-write and made read-only as the last rootfs step
/// (runc's finalizeRootfs): with a `ro` /dev the device nodes, /dev/pts, /dev/shm and
/// /dev/mqueue are still made under it, and a mount below a `ro` tmpfs still works.
fn readonly_tmpfs_and_dev_made_readonly_last(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let mut mounts = b.cfg.0["mounts"].as_array().cloned().unwrap_or_default();
    for m in mounts.iter_mut() {
        if m["destination"] == "/dev" {
            m["options"].as_array_mut().unwrap().push(json!("ro"));
        }
    }
    b.cfg.set("/mounts", json!(mounts));
    b.cfg.add_mount("/t", "tmpfs", "tmpfs", &["size=1m", "ro"]);
    b.cfg.add_mount("/t/sub", "tmpfs", "tmpfs", &["size=1m"]);
    b.cfg.sh(&format!(
        "for p in /dev/x /t/x /t/sub/x /dev/shm/x; do \
           touch $p 2>/dev/null && echo $p writable || echo $p readonly; done; \
         echo null $(stat -c %t,%T /dev/null); {MOUNTINFO}"
    ));
    let out = b.run_ok()?;
    let kv = super::key_values(&out);
    for (p, want) in [
        ("/dev/x", "readonly"),
        ("/t/x", "readonly"),
        ("/t/sub/x", "writable"),
        ("/dev/shm/x", "writable"),
        ("null", "1,3"),
    ] {
        ensure_eq!(
            kv.get(p).map(String::as_str),
            Some(want),
            format!("{p}: {out}")
        );
    }
    let m = mountinfo::parse(&out);
    ensure!(require(&m, "/dev")?.has_opt("ro"), "/dev is not ro");
    ensure!(require(&m, "/t")?.has_opt("ro"), "/t is not ro");
    ensure_eq!(
        require(&m, "/dev/pts")?.fstype,
        "devpts",
        "fstype at /dev/pts"
    );
    Ok(())
}

/// `tmpcopyup`: the tmpfs starts with a copy of what the directory under it holds (files,
/// subdirectories, symlinks as symlinks, modes, owners, extended attributes), and writes go
/// to the tmpfs, not to the rootfs. Checked from the host through /proc/PID/root while the
/// container is created.
fn tmpfs_copyup(ctx: &Ctx) -> TestResult {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut b = ctx.bundle()?;
    let cu = b.rootfs().join("cu");
    fs::create_dir(&cu)?;
    fs::create_dir(cu.join("d"))?;
    fs::write(cu.join("f"), "copied")?;
    fs::write(cu.join("d/g"), "deep")?;
    std::os::unix::fs::symlink("/etc/passwd", cu.join("l"))?;
    fs::set_permissions(cu.join("f"), fs::Permissions::from_mode(0o640))?;
    fs::set_permissions(&cu, fs::Permissions::from_mode(0o750))?;
    std::os::unix::fs::chown(cu.join("f"), Some(1000), Some(1000))?;
    std::os::unix::fs::lchown(cu.join("l"), Some(1000), Some(65534))?;
    // tmpfs holds user.* extended attributes only since Linux 6.6 (the VM's kernel is 6.1).
    let xattr_ok = set_user_xattr(&cu.join("f"), "user.berth", b"v1") && kernel_at_least(6, 6);
    b.cfg
        .add_mount("/cu", "tmpfs", "tmpfs", &["size=1m", "tmpcopyup"]);
    b.cfg.sh("touch /cu/new");
    b.create(&[]).ok()?;
    let inside = std::path::PathBuf::from(format!("/proc/{}/root/cu", b.pid()?));
    let st = nix::sys::statfs::statfs(&inside).map_err(std::io::Error::from)?;
    ensure!(
        st.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC,
        "/cu is not a tmpfs"
    );
    ensure_eq!(
        fs::read_to_string(inside.join("f"))?,
        "copied",
        "content of f"
    );
    ensure_eq!(
        fs::read_to_string(inside.join("d/g"))?,
        "deep",
        "content of d/g"
    );
    ensure_eq!(
        fs::read_link(inside.join("l"))?,
        std::path::PathBuf::from("/etc/passwd"),
        "symlink target"
    );
    let f = fs::metadata(inside.join("f"))?;
    ensure_eq!(
        (f.mode() & 0o7777, f.uid(), f.gid()),
        (0o640, 1000, 1000),
        "mode and owner of f"
    );
    let l = fs::symlink_metadata(inside.join("l"))?;
    ensure_eq!((l.uid(), l.gid()), (1000, 65534), "owner of the symlink");
    ensure_eq!(
        fs::metadata(&inside)?.mode() & 0o7777,
        0o750,
        "mode of the tmpfs root"
    );
    // runc copies with fileutils.CopyDirectory, which keeps modes and owners but no extended
    // attributes (1.1 and 1.3 alike); berth keeps them too.
    if xattr_ok && !ctx.rt.is_runc() {
        ensure_eq!(
            get_user_xattr(&inside.join("f"), "user.berth"),
            Some(b"v1".to_vec()),
            "user xattr of f"
        );
    }
    b.start().ok()?;
    b.wait_status("stopped")?;
    ensure!(
        !cu.join("new").exists(),
        "a write to the tmpfs reached the rootfs"
    );
    Ok(())
}

fn set_user_xattr(p: &std::path::Path, name: &str, value: &[u8]) -> bool {
    let (p, n) = (cpath(p), std::ffi::CString::new(name).unwrap());
    // SAFETY: NUL-terminated strings and a buffer of value.len() bytes.
    unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

fn get_user_xattr(p: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let (p, n) = (cpath(p), std::ffi::CString::new(name).unwrap());
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer of buf.len() bytes.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}

fn cpath(p: &std::path::Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// A bind of the host's /proc onto /proc (rootless setups sharing the host's pid namespace do
/// this) is allowed, as runc's checkProcMount allows a bind whose source is a procfs; a bind of
/// any other directory onto /proc is still refused ("not of type proc").
fn bind_of_host_proc_onto_proc(ctx: &Ctx) -> TestResult {
    let host_pidns = super::host_ns("pid");
    let with_proc_bind =
        |src: &str| -> Result<crate::fixture::Bundle<'_>, crate::harness::Failure> {
            let mut b = ctx.bundle()?;
            b.cfg.ns_remove("pid");
            let mut mounts = b.cfg.0["mounts"].as_array().cloned().unwrap_or_default();
            for m in mounts.iter_mut() {
                if m["destination"] == "/proc" {
                    *m = json!({"destination": "/proc", "type": "bind", "source": src,
                            "options": ["rbind", "nosuid", "noexec", "nodev"]});
                }
            }
            b.cfg.set("/mounts", json!(mounts));
            Ok(b)
        };
    let mut b = with_proc_bind("/proc")?;
    b.cfg
        .sh("echo pidns $(readlink /proc/self/ns/pid); echo fs $(stat -f -c %T /proc/)");
    let out = b.run_ok()?;
    let kv = super::key_values(&out);
    ensure_eq!(
        kv.get("pidns"),
        Some(&host_pidns),
        "pid namespace seen through /proc"
    );
    ensure_eq!(
        kv.get("fs").map(String::as_str),
        Some("proc"),
        "filesystem at /proc"
    );
    drop(b);

    let other = ctx.scratch_dir("not-proc")?;
    let mut b = with_proc_bind(&other.to_string_lossy())?;
    b.cfg.args(&["true"]);
    let out = b.run(&[]).failed()?;
    out.stderr_mentions("not of type proc")?;
    b.ensure_clean()
}

/// With a new user namespace, a bind source is opened with the host's credentials (runc opens
/// it before init enters the namespace): a directory below a 0700 root-owned host directory,
/// which the container's mapped root could not even look up, is bound read-only and its file
/// is visible.
fn userns_bind_source_only_host_root_can_reach(ctx: &Ctx) -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let private = ctx.scratch_dir("userns-private")?;
    let data = private.join("data");
    fs::create_dir(&data)?;
    fs::write(data.join("f"), "reached")?;
    fs::set_permissions(data.join("f"), fs::Permissions::from_mode(0o644))?;
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755))?;
    std::os::unix::fs::chown(&private, Some(0), Some(0))?;
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700))?;
    let mut b = ctx.bundle()?;
    super::map_to_userns(&mut b)?;
    b.cfg.add_bind(&data, "/data", &["ro"]);
    b.cfg.sh(&format!(
        "echo f $(cat /data/f); touch /data/x 2>/dev/null && echo data writable \
         || echo data readonly; {MOUNTINFO}"
    ));
    let out = b.run_ok()?;
    let kv = super::key_values(&out);
    ensure_eq!(
        kv.get("f").map(String::as_str),
        Some("reached"),
        format!("{out}")
    );
    ensure_eq!(
        kv.get("data").map(String::as_str),
        Some("readonly"),
        "ro bind"
    );
    ensure!(
        require(&mountinfo::parse(&out), "/data")?.has_opt("ro"),
        "/data is not ro"
    );
    ensure!(!data.join("x").exists(), "a ro bind wrote to the host");
    Ok(())
}

/// Whether the running kernel is at least `major.minor` (uname's release).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

/// Two tmpfs mounts on one destination, the first `ro,nosuid,nodev,noexec`: the read-only
/// step runs last and, as runc's remount, applies the first mount's flags to what is at the
/// destination then, the second tmpfs (found by the differential fuzzer: berth applied only
/// `ro`).
fn readonly_tmpfs_flags_reach_a_tmpfs_stacked_on_it(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.add_mount(
        "/st",
        "tmpfs",
        "tmpfs",
        &["ro", "nosuid", "nodev", "noexec"],
    );
    b.cfg.add_mount("/st", "tmpfs", "tmpfs", &["mode=700"]);
    b.cfg.args(&["cat", "/proc/self/mountinfo"]);
    let out = b.run_ok()?;
    let mounts = crate::mountinfo::parse(&out);
    let top = crate::mountinfo::require(&mounts, "/st")?;
    for want in ["ro", "nosuid", "nodev", "noexec"] {
        ensure!(top.has_opt(want), "top mount on /st lacks {want}: {top:?}");
    }
    b.ensure_clean()
}

/// Two read-only tmpfs mounts on one destination, `ro,noexec` then `ro,nosuid`: runc's
/// remounts (MS_REMOUNT | MS_BIND | MS_RDONLY | the mount's flags) each set exactly their own
/// flags on the top mount, so it ends `ro,nosuid` without `noexec` (runc 1.3.6 measured;
/// found by the differential fuzzer, seed 32 case 43: berth kept the union).
fn readonly_tmpfs_remount_gives_exactly_its_own_flags(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg
        .add_mount("/st", "tmpfs", "tmpfs", &["ro", "noexec", "size=1m"]);
    b.cfg
        .add_mount("/st", "tmpfs", "tmpfs", &["ro", "nosuid", "size=2m"]);
    b.cfg.args(&["cat", "/proc/self/mountinfo"]);
    let out = b.run_ok()?;
    let mounts = crate::mountinfo::parse(&out);
    let top = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == "/st" && m.super_opts.iter().any(|o| o == "size=2048k"))
        .ok_or_else(|| format!("no second tmpfs on /st in {out}"))?;
    ensure!(
        top.has_opt("ro") && top.has_opt("nosuid") && !top.has_opt("noexec"),
        "the second tmpfs on /st should be ro,nosuid without noexec: {top:?}"
    );
    b.ensure_clean()
}

/// A config that mounts no procfs on /proc (here it is at /mnt/proc) but has sysctls,
/// read-only and masked paths, through create + start (the exec fifo is reopened through
/// procfs): runc 1.3 runs it through a procfs of its own; berth needed /proc in the
/// container for all four (differential fuzzer, seeds 21 case 2 and 36 case 18). runc 1.3.6
/// still masks a file through /proc/thread-self and fails on that one; berth masks it by
/// descriptor.
fn no_proc_mount_sysctls_readonly_and_masked_paths(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 2) {
        skip!("runc 1.1 writes sysctls through the container's /proc: 'open /proc/sys/kernel/shmmni: no such file'");
    }
    let mask_file = !ctx.rt.is_runc();
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.set("/root/readonly", json!(false));
    let rootfs = b.rootfs();
    fs::create_dir_all(rootfs.join("ro-dir"))?;
    fs::create_dir_all(rootfs.join("masked-dir"))?;
    fs::write(rootfs.join("masked-dir/f"), "x")?;
    fs::write(rootfs.join("masked-file"), "secret")?;
    if let Some(serde_json::Value::Array(m)) = b.cfg.0.pointer_mut("/mounts") {
        m.retain(|m| m["destination"] != "/proc");
    }
    b.cfg.add_mount("/mnt/proc", "proc", "proc", &[]);
    b.cfg.set("/linux/sysctl", json!({"kernel.shmmni": "1234"}));
    b.cfg.set("/linux/readonlyPaths", json!(["/ro-dir"]));
    b.cfg.set("/linux/maskedPaths", json!(["/masked-dir"]));
    if mask_file {
        b.cfg.push("/linux/maskedPaths", json!("/masked-file"));
    } else {
        // runc 1.3 reads /proc/sys/kernel/cap_last_cap in the container to set capabilities.
        b.cfg.remove("/process/capabilities");
    }
    b.cfg
        .sh("{ echo shmmni $(cat /mnt/proc/sys/kernel/shmmni); \
         touch /ro-dir/x 2>/dev/null && echo ro-dir writable || echo ro-dir read-only; \
         echo masked-dir $(ls -A /masked-dir | wc -l); \
         echo masked-file [$(cat /masked-file)]; \
         echo proc-dir $(ls -A /proc | wc -l); } > /shared/out.tmp 2>&1; \
         mv /shared/out.tmp /shared/out");
    b.create(&[]).ok()?;
    b.start().ok()?;
    wait_file(&shared.join("out"))?;
    let out = fs::read_to_string(shared.join("out"))?;
    let kv = super::key_values(&out);
    for (k, want) in [
        ("shmmni", "1234"),
        ("ro-dir", "read-only"),
        ("masked-dir", "0"),
        ("masked-file", if mask_file { "[]" } else { "[secret]" }),
        ("proc-dir", "0"),
    ] {
        ensure_eq!(
            kv.get(k).map(String::as_str),
            Some(want),
            format!("{k} in {out:?}")
        );
    }
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}

/// Many `cgroup` mounts (issue 11: 1,000 took 81 s, runc 16 s): init read and parsed
/// /proc/self/mountinfo, a dozen lines longer after each of them, once per cgroup mount. It is
/// read once per init now. Counted with strace, not timed; each mount still shows every
/// hierarchy.
fn cgroup_mounts_read_mountinfo_once(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc() {
        skip!("counts berth's own reads of /proc/self/mountinfo (runc's are its own business)");
    }
    super::need_strace()?;
    const N: usize = 40;
    let mut b = ctx.bundle()?;
    b.cfg.set("/root/readonly", json!(false));
    b.cfg.add_mount("/cg", "tmpfs", "tmpfs", &[]);
    for i in 0..N {
        b.cfg
            .add_mount(&format!("/cg/{i}"), "cgroup", "cgroup", &["ro", "nosuid"]);
    }
    b.cfg
        .sh("ls /sys/fs/cgroup | sort | tr '\\n' ' '; echo; ls /cg/39 | sort | tr '\\n' ' '");
    b.write_config()?;
    let trace = b.dir.join("strace.out");
    let trace_arg = trace.to_string_lossy().into_owned();
    let dir = b.dir.to_string_lossy().into_owned();
    let out = ctx.rt.exec_wrapped(
        &[
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=open,openat,openat2",
            "-o",
            &trace_arg,
        ],
        &["run", "--bundle", &dir, &b.id],
        crate::runtime::cmd_timeout(),
    );
    let stdout = out.ok()?.stdout;
    let lines: Vec<&str> = stdout.lines().collect();
    ensure!(
        lines.len() == 2 && !lines[0].trim().is_empty() && lines[0] == lines[1],
        "/cg/39 should show the hierarchies /sys/fs/cgroup shows: {stdout:?}"
    );
    let reads = std::fs::read_to_string(&trace)?
        .lines()
        .filter(|l| l.contains("/proc/self/mountinfo") || l.contains("/mountinfo\""))
        .count();
    ensure!(
        reads < N / 4,
        "{reads} opens of mountinfo for {N} cgroup mounts: it is read per mount"
    );
    b.ensure_clean()
}
