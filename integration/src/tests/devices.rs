//! /dev: default devices, symlinks, pts and shm, and `linux.devices`.

use serde_json::json;

use super::{key_values, map_to_userns};
use crate::context::Ctx;
use crate::harness::{Test, TestResult};
use crate::{ensure, ensure_eq, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        default_devices,
        dev_symlinks,
        dev_pts_ptmx_and_shm,
        linux_devices,
        devices_path_leaving_dev_refused,
        devices_path_cleaned_below_dev,
    ]
}

fn default_devices(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.sh("for d in null zero full random urandom tty; do \
         echo $d $(stat -c %F,%t,%T,%a /dev/$d | tr ' ' _); done; \
         echo write $(echo x > /dev/null && echo ok); \
         echo readzero $(head -c 4 /dev/zero | od -An -tx1 | tr -d ' ')");
    let kv = key_values(&b.run_ok()?);
    for (dev, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let want = format!("character_special_file,{major:x},{minor:x},666");
        ensure_eq!(
            kv.get(dev).cloned().unwrap_or_default(),
            want,
            format!("/dev/{dev}")
        );
    }
    ensure_eq!(
        kv.get("write").map(String::as_str),
        Some("ok"),
        "write to /dev/null"
    );
    ensure_eq!(
        kv.get("readzero").map(String::as_str),
        Some("00000000"),
        "read /dev/zero"
    );
    Ok(())
}

fn dev_symlinks(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg
        .sh("for l in fd stdin stdout stderr core ptmx; do echo $l $(readlink /dev/$l); done");
    let kv = key_values(&b.run_ok()?);
    let mut want = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    if std::path::Path::new("/proc/kcore").exists() {
        want.push(("core", "/proc/kcore"));
    }
    for (link, target) in want {
        ensure_eq!(
            kv.get(link).map(String::as_str),
            Some(target),
            format!("/dev/{link} symlink target")
        );
    }
    Ok(())
}

fn dev_pts_ptmx_and_shm(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg
        .sh("echo ptmx $(stat -c %F,%t,%T /dev/pts/ptmx | tr ' ' _); \
         echo shm $(stat -c %F,%a /dev/shm | tr ' ' _); \
         echo shmw $(touch /dev/shm/x && echo ok)");
    let kv = key_values(&b.run_ok()?);
    ensure_eq!(
        kv.get("ptmx").map(String::as_str),
        Some("character_special_file,5,2"),
        "/dev/pts/ptmx"
    );
    ensure_eq!(
        kv.get("shm").map(String::as_str),
        Some("directory,1777"),
        "/dev/shm"
    );
    ensure_eq!(
        kv.get("shmw").map(String::as_str),
        Some("ok"),
        "write to /dev/shm"
    );
    Ok(())
}

fn linux_devices(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/devices",
        json!([
            {"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3,
             "fileMode": 0o620, "uid": 1000, "gid": 1000},
            {"path": "/dev/sub/myblk", "type": "b", "major": 7, "minor": 200,
             "fileMode": 0o600, "uid": 0, "gid": 0}
        ]),
    );
    b.cfg.sh(
        "echo mydev $(stat -c %F,%t,%T,%a,%u,%g /dev/mydev | tr ' ' _); \
         echo myblk $(stat -c %F,%t,%T,%a /dev/sub/myblk | tr ' ' _); \
         ls -l /dev/mydev",
    );
    let out = b.run_ok()?;
    let kv = key_values(&out);
    ensure_eq!(
        kv.get("mydev").map(String::as_str),
        Some("character_special_file,1,3,620,1000,1000"),
        "/dev/mydev (type,major,minor,mode,uid,gid)"
    );
    ensure_eq!(
        kv.get("myblk").map(String::as_str),
        Some("block_special_file,7,c8,600"),
        "/dev/sub/myblk (type,major,minor,mode)"
    );
    ensure!(
        out.lines()
            .any(|l| l.starts_with("crw--w----") && l.contains("user")),
        "ls -l /dev/mydev: {out}"
    );
    Ok(())
}

/// `linux.devices[].path` `/dev/../x` passed the below-/dev check (a prefix test on the raw
/// path). It is cleaned lexically first and refused: in a user namespace berth bind-mounts the
/// host's node at that path, so `/dev/../<host file>` put a host file into the container.
fn devices_path_leaving_dev_refused(ctx: &Ctx) -> TestResult {
    for userns in [false, true] {
        if userns && ctx.rt.is_runc() {
            skip!(
                "runc (1.1.5 and 1.3.6 alike) bind-mounts the host's /dev/../<file> into a \
                 user-namespaced container (a runc deviation; the case without a user \
                 namespace passed)"
            );
        }
        let mut b = ctx.bundle()?;
        let secret = b.dir.join("host-secret");
        std::fs::write(&secret, "host only\n")?;
        if userns {
            map_to_userns(&mut b)?;
        }
        let path = format!("/dev/..{}", secret.display());
        b.cfg.set(
            "/linux/devices",
            json!([{"path": path, "type": "c", "major": 1, "minor": 3, "fileMode": 438}]),
        );
        b.cfg.sh(&format!("cat {} 2>&1; true", secret.display()));
        let out = b.run(&[]);
        ensure!(
            !out.stdout.contains("host only"),
            "userns {userns}: the host file is visible in the container: {}",
            out.describe()
        );
        if !ctx.rt.is_runc() {
            let out = out.failed()?;
            out.stderr_mentions("linux.devices[0].path")?;
            out.stderr_mentions("not below /dev")?;
        }
        b.ensure_clean()?;
    }
    Ok(())
}

/// A device path that stays below /dev after cleaning (`/dev/x/../berth-null`) is made at
/// its clean path.
fn devices_path_cleaned_below_dev(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/linux/devices",
        json!([{"path": "/dev/./x/../berth-null", "type": "c", "major": 1, "minor": 3,
                "fileMode": 438}]),
    );
    b.cfg
        .sh("stat -c %F,%t,%T /dev/berth-null; [ -e /dev/x ] && echo has-x; true");
    let out = b.run_ok()?;
    ensure_eq!(
        out,
        "character special file,1,3\n",
        "the device at its clean path"
    );
    b.ensure_clean()
}
