//! Bad input: each failure exits non-zero, says what was wrong on stderr, and
//! leaves nothing behind (state dir, cgroup, mount, process).

use std::fs;

use serde_json::json;

use crate::context::Ctx;
use crate::fixture::Bundle;
use crate::harness::{Test, TestResult};
use crate::{ensure, ensure_eq, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        bad_malformed_config,
        bad_unknown_namespace_type,
        bad_string_for_number,
        bad_missing_rootfs,
        bad_missing_binary,
        bad_mount_source,
        bad_prestart_hook_fails,
        bad_create_runtime_hook_fails,
        bad_huge_values_are_echoed_bounded,
        bad_config_json_fifo_or_device,
        bad_fifo_mount_sources,
    ]
}

/// `create` must fail mentioning `needle`, and leave nothing behind.
fn create_fails(b: &Bundle, needle: &str) -> TestResult {
    let out = b.create(&[]).failed()?;
    out.stderr_mentions(needle)?;
    b.ensure_clean()
}

fn bad_malformed_config(ctx: &Ctx) -> TestResult {
    let b = ctx.bundle()?;
    fs::write(
        b.dir.join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": {",
    )?;
    let dir = b.dir.to_string_lossy().into_owned();
    let out = ctx.rt.exec(&["create", "--bundle", &dir, &b.id]).failed()?;
    // Name the file or the problem (runc says only "unexpected EOF").
    if out.stderr_mentions("config.json").is_err() {
        out.stderr_mentions("EOF")?;
    }
    b.ensure_clean()
}

/// Hostile bundles (issue 11 item 9): config.json a FIFO nobody writes (berth waited on it
/// forever; runc 1.1.5 and 1.3.6 still do) or a symlink to /dev/zero (read to the end, never
/// reached: memory until the OOM killer). Refused at once, naming the file and what it is.
fn bad_config_json_fifo_or_device(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc() {
        skip!("runc opens a FIFO config.json and waits for a writer forever");
    }
    for kind in ["a FIFO", "a character device"] {
        let b = ctx.bundle()?;
        let config = b.dir.join("config.json");
        let _ = fs::remove_file(&config);
        if kind == "a FIFO" {
            nix::unistd::mkfifo(&config, nix::sys::stat::Mode::from_bits_truncate(0o644))
                .map_err(std::io::Error::from)?;
        } else {
            std::os::unix::fs::symlink("/dev/zero", &config)?;
        }
        let dir = b.dir.to_string_lossy().into_owned();
        let out = ctx.rt.exec(&["create", "--bundle", &dir, &b.id]).failed()?;
        out.stderr_mentions("config.json")?;
        out.stderr_mentions(&format!("is {kind}, not a regular file"))?;
        b.ensure_clean()?;
    }
    Ok(())
}

/// FIFO mount sources (issue 11 item 9): a bind of a FIFO nobody writes binds the FIFO (it is
/// never opened for reading, which would wait forever), with or without a user namespace; a
/// filesystem mount whose source is a FIFO fails at once, saying the kernel's reason.
fn bad_fifo_mount_sources(ctx: &Ctx) -> TestResult {
    for userns in [false, true] {
        let mut b = ctx.bundle()?;
        let fifo = b.dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .map_err(std::io::Error::from)?;
        b.cfg.add_bind(&fifo, "/f", &["rbind"]);
        if userns {
            crate::tests::map_to_userns(&mut b)?;
        }
        b.cfg.args(&["sh", "-c", "test -p /f && echo fifo"]);
        let out = b.run(&[]);
        ensure!(!out.timed_out, "userns {userns}: run hung");
        ensure_eq!(
            out.stdout.trim(),
            "fifo",
            format!("userns {userns}: {}", out.describe())
        );
        drop(b);
    }
    let mut b = ctx.bundle()?;
    let fifo = b.dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644))
        .map_err(std::io::Error::from)?;
    b.cfg.add_mount("/f", "ext4", &fifo.to_string_lossy(), &[]);
    let out = b.run(&[]);
    ensure!(!out.timed_out, "ext4 from a FIFO: run hung");
    let out = out.failed()?;
    if !ctx.rt.is_runc_before(1, 2) {
        // runc 1.1 says "mkdir .../f: not a directory".
        out.stderr_mentions("block device required")?;
    }
    b.ensure_clean()
}

fn bad_unknown_namespace_type(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.ns_add("bogusns");
    create_fails(&b, "bogusns")
}

fn bad_string_for_number(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/process/user/uid", json!("zero"));
    create_fails(&b, "uid")
}

fn bad_missing_rootfs(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.set("/root/path", json!("no-such-rootfs"));
    create_fails(&b, "no-such-rootfs")
}

fn bad_missing_binary(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.args(&["/no/such/binary", "arg"]);
    let out = b.run(&[]).failed()?;
    out.stderr_mentions("/no/such/binary")?;
    b.ensure_clean()
}

fn bad_mount_source(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg
        .add_mount("/mnt/x", "bind", "/no/such/source-dir", &["rbind"]);
    create_fails(&b, "/no/such/source-dir")
}

fn failing_hook(ctx: &Ctx, phase: &str) -> TestResult {
    let mut b = ctx.bundle()?;
    b.cfg.add_hook(
        phase,
        json!({"path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no >&2; exit 7"]}),
    );
    let out = b.create(&[]).failed()?;
    out.stderr_mentions("hook")?;
    out.stderr_mentions("hook-said-no")?;
    b.ensure_clean()
}

fn bad_prestart_hook_fails(ctx: &Ctx) -> TestResult {
    failing_hook(ctx, "prestart")
}

fn bad_create_runtime_hook_fails(ctx: &Ctx) -> TestResult {
    failing_hook(ctx, "createRuntime")
}

/// A hostile value echoed in an error (a 20,000-byte mount destination, sysctl name or env
/// entry) arrives as one bounded line: init's report is not cut on its socket (it was at
/// 16 KiB, and then misreported as a sync error), and each echoed value is cut after a few
/// hundred bytes with an ellipsis.
fn bad_huge_values_are_echoed_bounded(ctx: &Ctx) -> TestResult {
    let huge = "a".repeat(20_000);
    type Edit<'a> = Box<dyn Fn(&mut Bundle) + 'a>;
    let cases: [(&str, Edit, &str); 3] = [
        (
            "mount destination",
            Box::new(|b: &mut Bundle| {
                b.cfg.add_mount(&format!("/{huge}"), "tmpfs", "tmpfs", &[]);
            }),
            "file name too long",
        ),
        (
            "sysctl name",
            Box::new(|b: &mut Bundle| {
                b.cfg
                    .set("/linux/sysctl", json!({format!("net.{huge}"): "1"}));
            }),
            "file name too long",
        ),
        (
            "env entry",
            Box::new(|b: &mut Bundle| {
                b.cfg.set("/process/env", json!([huge]));
            }),
            "process.env[0]",
        ),
    ];
    for (what, edit, needle) in cases {
        let mut b = ctx.bundle()?;
        edit(&mut b);
        b.cfg.sh("true");
        let out = b.run(&[]).failed()?;
        if !ctx.rt.is_runc() {
            let err = &out.stderr;
            ensure!(
                err.contains(needle) && err.contains("aaaa") && err.contains('…'),
                "{what}: the error should say {needle:?} and show the value cut: {}",
                &err[..err.len().min(600)]
            );
            ensure!(
                err.len() < 2048 && !err.contains(&"a".repeat(1000)),
                "{what}: the error is {} bytes, the value is not bounded: {}…",
                err.len(),
                &err[..err.len().min(600)]
            );
        }
        b.ensure_clean()?;
    }
    Ok(())
}
