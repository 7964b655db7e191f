//! Idmapped bind mounts (runtime-spec 1.1 mount uidMappings/gidMappings, 1.2 `idmap` and
//! `ridmap`) with and without a user namespace, their refusals, and the `nosymfollow` option.
//!
//! Sources live on an ext4 image loop-mounted in the run's own scratch dir: every kernel with
//! idmapped mounts can idmap ext4 (the VM's 6.1 cannot idmap tmpfs or 9p). runc before 1.2
//! has no idmapped mounts: those tests skip there.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::context::Ctx;
use crate::harness::{Failure, TestResult};
use crate::hostmount::HostMount;
use crate::{ensure, ensure_eq, skip};

pub fn tests() -> Vec<crate::harness::Test> {
    crate::tests![
        idmap_mount_without_userns_maps_ids_both_ways,
        idmap_mount_in_userns_takes_the_containers_mappings,
        idmap_mount_ridmap_maps_submounts_and_idmap_does_not,
        idmap_mount_refusals,
        idmap_mount_of_a_filesystem_that_cannot_be_idmapped,
        idmap_mount_features,
        nosymfollow_mount_option,
    ]
}

/// Skip where idmapped mounts cannot work: runc before 1.2, a kernel before 5.12.
fn need_idmap(ctx: &Ctx) -> Result<(), Failure> {
    if ctx.rt.is_runc_before(1, 2) {
        skip!("runc before 1.2 has no idmapped mounts");
    }
    if !libcontainer::sys::has_mount_setattr() {
        skip!("the kernel has no mount_setattr(2) (Linux 5.12), so no idmapped mounts");
    }
    Ok(())
}

/// An ext4 image with `d/` (owned 0:0, 0755) holding `foo` (0:0) and `bar` (1:2), and `e/`
/// holding `baz` (0:0). Returns the mount and `d`.
fn ext4_source(ctx: &Ctx, name: &str) -> Result<(HostMount, PathBuf), Failure> {
    let dir = ctx.scratch_dir(name)?;
    let img = match HostMount::ext4_image(&dir) {
        Ok(m) => m,
        Err(e) => skip!("cannot loop-mount an ext4 image to idmap ({e:?})"),
    };
    let d = img.path.join("d");
    let e = img.path.join("e");
    fs::create_dir(&d)?;
    fs::create_dir(&e)?;
    fs::create_dir(d.join("sub"))?;
    fs::write(d.join("foo"), "foo")?;
    fs::write(d.join("bar"), "bar")?;
    fs::write(e.join("baz"), "baz")?;
    std::os::unix::fs::chown(d.join("bar"), Some(1), Some(2))?;
    Ok((img, d))
}

fn maps(container: u32, host: u32, size: u32) -> Value {
    json!([{"containerID": container, "hostID": host, "size": size}])
}

fn idmapped_bind(src: &Path, dest: &str, options: &[&str], uid: Value, gid: Value) -> Value {
    let mut m = json!({"destination": dest, "type": "bind",
        "source": src.to_string_lossy(), "options": options});
    if !uid.is_null() {
        m["uidMappings"] = uid;
    }
    if !gid.is_null() {
        m["gidMappings"] = gid;
    }
    m
}

/// `name uid gid` lines printed by `stat -c '%n %u %g'`, as a map of name -> "uid gid".
fn owners(out: &str) -> std::collections::BTreeMap<String, String> {
    super::key_values(out)
}

fn owner(kv: &std::collections::BTreeMap<String, String>, name: &str) -> String {
    kv.get(name).cloned().unwrap_or_else(|| "(none)".into())
}

fn host_owner(p: &Path) -> Result<String, Failure> {
    let md = fs::metadata(p).map_err(|e| Failure::Fail(format!("{}: {e}", p.display())))?;
    Ok(format!("{} {}", md.uid(), md.gid()))
}

/// No user namespace: mappings 0->100000 (uids) and 0->200000 (gids). The container sees the
/// source's files shifted; root, unmapped by the mount, cannot create a file through it;
/// uid 100000 can, and the file is owned by 0:0 on the host.
fn idmap_mount_without_userns_maps_ids_both_ways(ctx: &Ctx) -> TestResult {
    need_idmap(ctx)?;
    let (_img, d) = ext4_source(ctx, "idmap-nouserns")?;
    let mut b = ctx.bundle()?;
    b.cfg.push(
        "/mounts",
        idmapped_bind(
            &d,
            "/m",
            &["bind"],
            maps(0, 100000, 65536),
            maps(0, 200000, 65536),
        ),
    );
    b.cfg.sh(
        "stat -c '%n %u %g' /m/foo /m/bar; touch /m/by-root 2>/dev/null || echo root-write failed",
    );
    let out = b.run_ok()?;
    let kv = owners(&out);
    ensure_eq!(
        owner(&kv, "/m/foo"),
        "100000 200000",
        format!("/m/foo ({out})")
    );
    ensure_eq!(
        owner(&kv, "/m/bar"),
        "100001 200002",
        format!("/m/bar ({out})")
    );
    ensure_eq!(
        owner(&kv, "root-write"),
        "failed",
        format!("root, unmapped by the mount, wrote through it ({out})")
    );
    ensure!(!d.join("by-root").exists(), "by-root exists on the host");
    drop(b);

    let mut b = ctx.bundle()?;
    b.cfg.push(
        "/mounts",
        idmapped_bind(
            &d,
            "/m",
            &["bind"],
            maps(0, 100000, 65536),
            maps(0, 200000, 65536),
        ),
    );
    b.cfg
        .set("/process/user", json!({"uid": 100000, "gid": 200000}));
    b.cfg.sh("touch /m/new && stat -c '%n %u %g' /m/new");
    let out = b.run_ok()?;
    ensure_eq!(
        owner(&owners(&out), "/m/new"),
        "100000 200000",
        "/m/new inside"
    );
    ensure_eq!(host_owner(&d.join("new"))?, "0 0", "/m/new on the host");
    Ok(())
}

/// A user namespace 0->100000 and a bare `idmap`: the mount takes the container's mappings,
/// so the container's root owns the host root's files (a plain bind shows them as the
/// overflow id) and what it creates is owned by 0:0 on the host.
fn idmap_mount_in_userns_takes_the_containers_mappings(ctx: &Ctx) -> TestResult {
    need_idmap(ctx)?;
    let (_img, d) = ext4_source(ctx, "idmap-userns")?;
    let mut b = ctx.bundle()?;
    super::map_to_userns(&mut b)?;
    b.cfg.push(
        "/mounts",
        idmapped_bind(&d, "/m", &["bind", "idmap"], Value::Null, Value::Null),
    );
    b.cfg.add_bind(&d, "/plain", &[]);
    b.cfg.sh(
        "stat -c '%n %u %g' /m/foo /m/bar /plain/foo; touch /m/new && stat -c '%n %u %g' /m/new",
    );
    let out = b.run_ok()?;
    let kv = owners(&out);
    let overflow = fs::read_to_string("/proc/sys/kernel/overflowuid")?
        .trim()
        .to_string();
    let overflow_gid = fs::read_to_string("/proc/sys/kernel/overflowgid")?
        .trim()
        .to_string();
    ensure_eq!(owner(&kv, "/m/foo"), "0 0", format!("/m/foo ({out})"));
    ensure_eq!(owner(&kv, "/m/bar"), "1 2", format!("/m/bar ({out})"));
    ensure_eq!(
        owner(&kv, "/plain/foo"),
        format!("{overflow} {overflow_gid}"),
        format!("/plain/foo, not idmapped ({out})")
    );
    ensure_eq!(
        owner(&kv, "/m/new"),
        "0 0",
        format!("/m/new inside ({out})")
    );
    ensure_eq!(host_owner(&d.join("new"))?, "0 0", "/m/new on the host");
    Ok(())
}

/// An rbind of a source with a submount: `idmap` maps the top mount only, `ridmap` the
/// submount too (runc: open_tree is recursive for rbind, mount_setattr for ridmap).
fn idmap_mount_ridmap_maps_submounts_and_idmap_does_not(ctx: &Ctx) -> TestResult {
    need_idmap(ctx)?;
    let (img, d) = ext4_source(ctx, "idmap-ridmap")?;
    let sub = HostMount::bind(&img.path.join("e"), &d.join("sub"))?;
    let mut b = ctx.bundle()?;
    for (dest, opt) in [("/i", "idmap"), ("/r", "ridmap")] {
        b.cfg.push(
            "/mounts",
            idmapped_bind(
                &d,
                dest,
                &["rbind", opt],
                maps(0, 100000, 65536),
                maps(0, 100000, 65536),
            ),
        );
    }
    b.cfg
        .sh("stat -c '%n %u %g' /i/foo /i/sub/baz /r/foo /r/sub/baz");
    let out = b.run_ok()?;
    let kv = owners(&out);
    ensure_eq!(
        owner(&kv, "/i/foo"),
        "100000 100000",
        format!("/i/foo ({out})")
    );
    ensure_eq!(
        owner(&kv, "/i/sub/baz"),
        "0 0",
        format!("a submount of an idmap rbind ({out})")
    );
    ensure_eq!(
        owner(&kv, "/r/foo"),
        "100000 100000",
        format!("/r/foo ({out})")
    );
    ensure_eq!(
        owner(&kv, "/r/sub/baz"),
        "100000 100000",
        format!("a submount of a ridmap rbind ({out})")
    );
    drop(b);
    drop(sub);
    Ok(())
}

/// What runc 1.3 refuses: idmapping a mount that is not a bind (a `type` of "bind" without the
/// option included), a bare `idmap` without a user namespace to take mappings from, one of the
/// two mappings alone. Nothing is left behind.
fn idmap_mount_refusals(ctx: &Ctx) -> TestResult {
    need_idmap(ctx)?;
    let src = ctx.scratch_dir("idmap-refusals")?;
    let cases: Vec<(&str, bool, Value)> = vec![
        (
            "idmap on a tmpfs",
            true,
            json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs",
                "options": ["idmap"]}),
        ),
        (
            "mappings on a tmpfs",
            false,
            json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs",
                "uidMappings": maps(0, 100000, 65536), "gidMappings": maps(0, 100000, 65536)}),
        ),
        (
            "type bind without a bind or rbind option",
            false,
            json!({"destination": "/m", "type": "bind", "source": src.to_string_lossy(),
                "options": ["idmap"],
                "uidMappings": maps(0, 100000, 65536), "gidMappings": maps(0, 100000, 65536)}),
        ),
        (
            "idmap without mappings or a user namespace",
            false,
            idmapped_bind(&src, "/m", &["bind", "idmap"], Value::Null, Value::Null),
        ),
        (
            "uidMappings without gidMappings",
            false,
            idmapped_bind(&src, "/m", &["bind"], maps(0, 100000, 65536), Value::Null),
        ),
        (
            "ridmap with empty gidMappings",
            true,
            idmapped_bind(
                &src,
                "/m",
                &["bind", "ridmap"],
                maps(0, 100000, 65536),
                json!([]),
            ),
        ),
    ];
    for (what, userns, mount) in cases {
        let mut b = ctx.bundle()?;
        if userns {
            super::map_to_userns(&mut b)?;
        }
        b.cfg.push("/mounts", mount);
        b.cfg.args(&["true"]);
        let out = b.run(&[]);
        if out.success() {
            crate::fail!("{what}: accepted: {}", out.describe());
        }
        let out = out.failed()?;
        if !ctx.rt.is_runc() {
            let index = 7; // after the base config's seven mounts
            out.stderr_mentions(&format!("mounts[{index}]"))
                .map_err(|e| Failure::Fail(format!("{what}: {e:?}")))?;
        }
        b.ensure_clean()?;
    }
    Ok(())
}

/// A source on ramfs, which no kernel can idmap: the error says which mount, which source and
/// which filesystem, and nothing is left behind.
fn idmap_mount_of_a_filesystem_that_cannot_be_idmapped(ctx: &Ctx) -> TestResult {
    need_idmap(ctx)?;
    let dir = ctx.scratch_dir("idmap-ramfs")?;
    let ram = HostMount::fs(&dir.join("ram"), "ramfs")?;
    let mut b = ctx.bundle()?;
    b.cfg.push(
        "/mounts",
        idmapped_bind(
            &ram.path,
            "/m",
            &["bind"],
            maps(0, 100000, 65536),
            maps(0, 100000, 65536),
        ),
    );
    b.cfg.args(&["true"]);
    let out = b.run(&[]).failed()?;
    if ctx.rt.is_runc() {
        out.stderr_mentions("MOUNT_ATTR_IDMAP")?;
    } else {
        for needle in [
            "mounts[7]",
            "on \\\"/m\\\"",
            &ram.path.to_string_lossy(),
            "(ramfs)",
            "does not support idmapped mounts",
        ] {
            out.stderr_mentions(needle)?;
        }
    }
    b.ensure_clean()?;
    drop(b);
    drop(ram);
    Ok(())
}

/// `features` reports idmapped mounts (runtime-spec features.md `mountExtensions.idmap`);
/// berth also lists the `idmap` and `ridmap` options it takes (runc 1.3 does not list them).
fn idmap_mount_features(ctx: &Ctx) -> TestResult {
    need_idmap(ctx)?;
    let f = ctx.rt.exec(&["features"]).ok()?.json()?;
    ensure_eq!(
        f["linux"]["mountExtensions"]["idmap"]["enabled"],
        json!(true),
        "linux.mountExtensions.idmap.enabled"
    );
    if !ctx.rt.is_runc() {
        let opts = f["mountOptions"].as_array().cloned().unwrap_or_default();
        for o in ["idmap", "ridmap", "nosymfollow", "symfollow"] {
            ensure!(opts.contains(&json!(o)), "mountOptions lacks {o}: {opts:?}");
        }
    }
    Ok(())
}

/// `nosymfollow` (MS_NOSYMFOLLOW): symlinks on the mount are not followed; `symfollow`
/// after it clears it again.
fn nosymfollow_mount_option(ctx: &Ctx) -> TestResult {
    let src = ctx.scratch_dir("nosymfollow")?;
    fs::write(src.join("f"), "target")?;
    std::os::unix::fs::symlink("f", src.join("l"))?;
    let mut b = ctx.bundle()?;
    b.cfg.add_bind(&src, "/n", &["nosymfollow"]);
    b.cfg.add_bind(&src, "/s", &["nosymfollow", "symfollow"]);
    b.cfg.sh(
        "echo n-file $(cat /n/f); cat /n/l >/dev/null 2>&1 && echo n-link followed \
         || echo n-link refused; echo s-link $(cat /s/l); cat /proc/self/mountinfo",
    );
    let out = b.run_ok()?;
    let kv = super::key_values(&out);
    ensure_eq!(
        kv.get("n-file").map(String::as_str),
        Some("target"),
        "a file"
    );
    ensure_eq!(
        kv.get("n-link").map(String::as_str),
        Some("refused"),
        format!("a symlink on a nosymfollow mount ({out})")
    );
    ensure_eq!(
        kv.get("s-link").map(String::as_str),
        Some("target"),
        "symfollow"
    );
    let m = crate::mountinfo::parse(&out);
    ensure!(
        crate::mountinfo::require(&m, "/n")?.has_opt("nosymfollow"),
        "/n lacks nosymfollow in mountinfo"
    );
    ensure!(
        !crate::mountinfo::require(&m, "/s")?.has_opt("nosymfollow"),
        "/s has nosymfollow in mountinfo"
    );
    Ok(())
}
