//! A stopped container run again (`start`, `restart`) and waited for (`wait`), as docker:
//! `start` re-runs it with its kept writable layer and settings under a new monitor (its log
//! goes on), `-a` follows its output and exits with its code; `wait` prints exit codes.

use std::os::fd::OwnedFd;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::containers::{Container, Status};
use crate::ctx::Ctx;

/// `start [-a] CONTAINER...`.
pub fn start(ctx: &Ctx, names: &[String], attach: bool, root_args: &[String]) -> Result<i32> {
    if attach && names.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let mut failed = false;
    for n in names {
        let r = ctx.find(n).and_then(|c| {
            let from = std::fs::metadata(ctx.log_path(&c.id)).map_or(0, |m| m.len());
            start_one(ctx, c, root_args).map(|c| (c, from))
        });
        match r {
            Ok((c, from)) if attach => return crate::logs::follow_from(ctx, &c, from),
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("berthctl: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Start `c` unless it runs; a failed start leaves it as it was (its exit kept).
pub fn start_one(ctx: &Ctx, mut c: Container, root_args: &[String]) -> Result<Container> {
    match ctx.status(&c) {
        Status::Running | Status::Paused | Status::Restarting => return Ok(c),
        Status::Created | Status::Exited(..) | Status::Unknown => {}
    }
    // Whatever a dead monitor left (the runtime's container, the rootfs mount) goes first.
    ctx.release_runtime(&c.id);
    crate::restart::clear_stopped(ctx, &c.id);
    let mounts = ctx
        .store
        .snapshots
        .mounts(&c.id)
        .with_context(|| format!("container {}: its writable layer", c.name))?;
    image::snapshot::mount_all(&mounts, &ctx.rootfs_dir(&c.id)).context("mount the rootfs")?;
    let exit = ctx.container_dir(&c.id).join("exit.json");
    let kept = std::fs::read(&exit).ok();
    let _ = std::fs::remove_file(&exit);
    c.detached = true;
    // As docker's start: the policy counts its restarts afresh.
    c.restart_count = 0;
    let r = ctx
        .save(&c)
        .and_then(|()| crate::run::start_monitor(ctx, &c, root_args));
    if let Err(e) = r {
        ctx.release_runtime(&c.id);
        if let Some(data) = kept {
            let _ = image::fsutil::write_atomic(&exit, &data);
        }
        return Err(e).with_context(|| format!("start {}", c.name));
    }
    Ok(c)
}

/// `restart [-t SECS] CONTAINER...`: stop (when running), then start.
pub fn restart(ctx: &Ctx, names: &[String], secs: u64, root_args: &[String]) -> Result<i32> {
    let mut failed = false;
    for n in names {
        let r = crate::stop_one(ctx, n, None, secs)
            .and_then(|()| ctx.find(n))
            .and_then(|c| start_one(ctx, c, root_args));
        match r {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("berthctl: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// `wait CONTAINER...`: block until each stops, print its exit code.
pub fn wait(ctx: &Ctx, names: &[String]) -> Result<i32> {
    let mut failed = false;
    for n in names {
        match ctx.find(n).and_then(|c| exit_code(ctx, &c)) {
            Ok(code) => println!("{code}"),
            Err(e) => {
                eprintln!("berthctl: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Wait for `c`'s exit record. While it runs, the wait is on its process (a pidfd), not a
/// timer; after it the record follows within moments (its monitor writes it).
fn exit_code(ctx: &Ctx, c: &Container) -> Result<i32> {
    loop {
        if let Some(e) = ctx.exit_of(&c.id) {
            return Ok(e.code);
        }
        if !ctx.container_dir(&c.id).is_dir() {
            bail!("container {} was removed", c.name);
        }
        let pid = ctx
            .runtime_state_json(&c.id)
            .and_then(|s| s["pid"].as_i64())
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0);
        match pid.and_then(|p| libcontainer::sys::pidfd_open(p).ok()) {
            Some(fd) => wait_readable(&fd),
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Block until `fd` (a pidfd: its process exited) is readable.
fn wait_readable(fd: &OwnedFd) {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own, for the call's duration; EINTR just returns early.
    unsafe { libc::poll(&mut p, 1, -1) };
}

/// `rename CONTAINER NAME`.
pub fn rename(ctx: &Ctx, what: &str, name: &str) -> Result<i32> {
    let mut c = ctx.find(what)?;
    if c.name == name {
        bail!("renaming a container with the same name as its current name");
    }
    ctx.reserve_name(name, &c.id)?;
    let old = std::mem::replace(&mut c.name, name.to_string());
    if let Err(e) = ctx.save(&c) {
        ctx.release_name(name, &c.id);
        return Err(e);
    }
    ctx.release_name(&old, &c.id);
    Ok(0)
}

/// `top CONTAINER [ps ARGS]`: the host's `ps` (with ARGS, default `-ef`), only the lines of
/// the container's processes (the runtime's `ps` gives their pids), as docker does.
pub fn top(ctx: &Ctx, what: &str, args: &[String]) -> Result<i32> {
    let c = ctx.find(what)?;
    if !matches!(ctx.status(&c), Status::Running | Status::Paused) {
        bail!("container {} is not running", c.name);
    }
    let o = ctx
        .runtime_cmd()
        .args(["ps", "--format", "json", &c.id])
        .output()
        .context("the runtime's ps")?;
    if !o.status.success() {
        bail!(
            "the runtime's ps: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let pids: Vec<u64> = serde_json::from_slice(&o.stdout).context("the runtime's ps output")?;
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let o = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    if !o.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines();
    let head = lines.next().unwrap_or("");
    let Some(col) = head.split_whitespace().position(|h| h == "PID") else {
        bail!("ps {}: its output has no PID column", args.join(" "));
    };
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    writeln!(out, "{head}")?;
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<u64>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(out, "{l}")?;
        }
    }
    Ok(0)
}
