//! User and group ids at the edge of their range (issue 11, item 1). (u32)-1 is never an id:
//! setresuid(-1) means "unchanged", so a process given uid 4294967295 kept root's ids and
//! capabilities. Every id field refuses it, and id maps that run past it; 4294967294 is a valid
//! id and keeps working (runc 1.3 behaves so; runc 1.1 refused everything above 2147483647).

use std::fs;

use serde_json::json;

use super::{map_to_userns, wait_file, WAIT_FOR_GO};
use crate::context::Ctx;
use crate::fixture::Bundle;
use crate::harness::{Failure, Test, TestResult};
use crate::{ensure, ensure_eq, skip};

pub fn tests() -> Vec<Test> {
    crate::tests![
        ids_minus_one_refused_in_config,
        ids_highest_valid_id_runs,
        ids_highest_valid_id_in_user_namespace,
        ids_overflowing_maps_refused,
        ids_device_owner_minus_one_refused,
        ids_exec_minus_one_refused,
    ]
}

const MINUS_ONE: u32 = u32::MAX;
const HIGHEST: u32 = u32::MAX - 1;

/// The Uid, Gid and Groups lines of the process's /proc/self/status.
const SHOW_IDS: &str = "grep -E '^(Uid|Gid|Groups):' /proc/self/status";

/// `run` must fail; berth must name `field` and the value; nothing may be left behind.
fn run_refused(b: &Bundle, field: &str) -> TestResult {
    let out = b.run(&[]).failed()?;
    if !b.ctx.rt.is_runc() {
        out.stderr_mentions(field)?;
        out.stderr_mentions("4294967295")?;
    }
    b.ensure_clean()
}

/// process.user.uid, .gid and .additionalGids of 4294967295: refused, never run as root.
fn ids_minus_one_refused_in_config(ctx: &Ctx) -> TestResult {
    for (pointer, value, field) in [
        ("/process/user/uid", json!(MINUS_ONE), "process.user.uid"),
        ("/process/user/gid", json!(MINUS_ONE), "process.user.gid"),
        (
            "/process/user/additionalGids",
            json!([5, MINUS_ONE]),
            "process.user.additionalGids[1]",
        ),
    ] {
        let mut b = ctx.bundle()?;
        b.cfg.set(pointer, value);
        b.cfg.sh(SHOW_IDS);
        run_refused(&b, field).map_err(|e| in_case(e, field))?;
    }
    Ok(())
}

fn in_case(e: Failure, case: &str) -> Failure {
    match e {
        Failure::Fail(m) => Failure::Fail(format!("{case}: {m}")),
        other => other,
    }
}

/// 4294967294 is an id like any other: the process runs with it.
fn ids_highest_valid_id_runs(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 3) {
        skip!("runc before 1.3 refuses ids above 2147483647 (runc 1.3 accepts them)");
    }
    let mut b = ctx.bundle()?;
    b.cfg.set(
        "/process/user",
        json!({"uid": HIGHEST, "gid": HIGHEST, "additionalGids": [HIGHEST]}),
    );
    b.cfg.sh(SHOW_IDS);
    let out = b.run_ok()?;
    let want = format!(
        "Uid:\t{HIGHEST}\t{HIGHEST}\t{HIGHEST}\t{HIGHEST}\nGid:\t{HIGHEST}\t{HIGHEST}\t{HIGHEST}\t{HIGHEST}\nGroups:\t{HIGHEST} \n"
    );
    ensure_eq!(out, want, "ids of the process");
    b.ensure_clean()
}

/// In a user namespace whose maps include 4294967294, the process runs as that uid.
fn ids_highest_valid_id_in_user_namespace(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc_before(1, 3) {
        skip!("runc before 1.3 refuses ids above 2147483647 (runc 1.3 accepts them)");
    }
    let mut b = ctx.bundle()?;
    map_to_userns(&mut b)?;
    let maps = json!([
        {"containerID": 0, "hostID": 100000, "size": 65536},
        {"containerID": HIGHEST, "hostID": 300000, "size": 1}
    ]);
    b.cfg.set("/linux/uidMappings", maps.clone());
    b.cfg.set("/linux/gidMappings", maps);
    b.cfg
        .set("/process/user", json!({"uid": HIGHEST, "gid": HIGHEST}));
    b.cfg.sh(SHOW_IDS);
    let out = b.run_ok()?;
    ensure!(
        out.contains(&format!(
            "Uid:\t{HIGHEST}\t{HIGHEST}\t{HIGHEST}\t{HIGHEST}\n"
        )) && out.contains(&format!(
            "Gid:\t{HIGHEST}\t{HIGHEST}\t{HIGHEST}\t{HIGHEST}\n"
        )),
        "ids of the process in the user namespace: {out:?}"
    );
    b.ensure_clean()
}

/// A map range that runs into (u32)-1 or past 2^32 is refused with the field that holds it.
fn ids_overflowing_maps_refused(ctx: &Ctx) -> TestResult {
    let base = json!({"containerID": 0, "hostID": 100000, "size": 65536});
    let mut runc_leaked = Vec::new();
    for (pointer, extra, field) in [
        (
            "/linux/uidMappings",
            json!({"containerID": 4294967290u32, "hostID": 200000, "size": 10}),
            "linux.uidMappings[1]",
        ),
        (
            "/linux/gidMappings",
            json!({"containerID": 65536, "hostID": 4294967290u32, "size": 6}),
            "linux.gidMappings[1]",
        ),
    ] {
        let mut b = ctx.bundle()?;
        map_to_userns(&mut b)?;
        b.cfg.set(pointer, json!([base, extra]));
        b.cfg.sh("true");
        let out = b.run(&[]).failed().map_err(|e| in_case(e, field))?;
        if !ctx.rt.is_runc() {
            out.stderr_mentions(field)
                .and_then(|()| out.stderr_mentions("overflows"))
                .map_err(|e| in_case(e, field))?;
        } else if !crate::context::cgroup_dirs(&b.id).is_empty() {
            // runc 1.1.5 on cgroup v2 (the VM) leaves the cgroup of a container whose map the
            // kernel refused: removed here, so that only that leak is excused.
            for cg in crate::context::cgroup_dirs(&b.id) {
                let _ = std::fs::remove_dir(&cg);
            }
            runc_leaked.push(field);
        }
        b.ensure_clean()?;
    }
    if !runc_leaked.is_empty() {
        skip!(
            "runc refused the maps but left the container's cgroup behind ({}; a runc leak, \
             seen with runc 1.1.5 on cgroup v2; the test removed it)",
            runc_leaked.join(", ")
        );
    }
    Ok(())
}

/// linux.devices[].uid/gid of 4294967295 would leave the device root's (chown(-1) changes
/// nothing): refused.
fn ids_device_owner_minus_one_refused(ctx: &Ctx) -> TestResult {
    if ctx.rt.is_runc() {
        skip!(
            "runc (1.1.5 and 1.3.6 alike) runs it and leaves the device root's (chown with \
             -1): a runc deviation"
        );
    }
    for field in ["uid", "gid"] {
        let mut b = ctx.bundle()?;
        let mut dev = json!({"path": "/dev/berth-null", "type": "c", "major": 1, "minor": 3,
                             "fileMode": 438, "uid": 0, "gid": 0});
        dev[field] = json!(MINUS_ONE);
        b.cfg.set("/linux/devices", json!([dev]));
        b.cfg.sh("ls -ln /dev/berth-null");
        let name = format!("linux.devices[0].{field}");
        run_refused(&b, &name).map_err(|e| in_case(e, &name))?;
    }
    Ok(())
}

/// `exec --user 4294967295:4294967295`, `--additional-gids 4294967295` and a process.json with
/// uid 4294967295 are refused; `--user 4294967294:4294967294` runs as that id.
fn ids_exec_minus_one_refused(ctx: &Ctx) -> TestResult {
    let mut b = ctx.bundle()?;
    let shared = b.shared()?;
    b.cfg.sh(&format!("touch /shared/up; {WAIT_FOR_GO}"));
    b.run_detached().ok()?;
    wait_file(&shared.join("up"))?;
    let rt = &ctx.rt;
    let id = b.id.clone();
    let minus = format!("{MINUS_ONE}:{MINUS_ONE}");
    let cases: [(&[&str], &str); 3] = [
        (&["--user", &minus], "--user"),
        (&["--user", &format!("0:{MINUS_ONE}")], "gid"),
        (
            &["--user", "0:0", "--additional-gids", "4294967295"],
            "--additional-gids",
        ),
    ];
    for (flags, field) in cases {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[&id, "sh", "-c", SHOW_IDS]);
        let out = rt.exec(&args).failed().map_err(|e| in_case(e, field))?;
        if !rt.is_runc() {
            out.stderr_mentions(field)
                .and_then(|()| out.stderr_mentions("4294967295"))
                .map_err(|e| in_case(e, field))?;
        }
    }
    let process = b.dir.join("exec-process.json");
    fs::write(
        &process,
        json!({"args": ["sh", "-c", SHOW_IDS], "cwd": "/", "env": ["PATH=/bin:/usr/bin"],
               "user": {"uid": MINUS_ONE, "gid": 0}})
        .to_string(),
    )?;
    let p = process.to_string_lossy().into_owned();
    let out = rt.exec(&["exec", "--process", &p, &id]).failed()?;
    if !rt.is_runc() {
        out.stderr_mentions("process.user.uid")?;
    }
    if !rt.is_runc_before(1, 3) {
        let highest = format!("{HIGHEST}:{HIGHEST}");
        let out = rt
            .exec(&["exec", "--user", &highest, &id, "sh", "-c", SHOW_IDS])
            .ok()?;
        ensure!(
            out.stdout.contains(&format!(
                "Uid:\t{HIGHEST}\t{HIGHEST}\t{HIGHEST}\t{HIGHEST}\n"
            )),
            "exec --user {highest}: {:?}",
            out.stdout
        );
    }
    fs::write(shared.join("go"), "")?;
    b.wait_status("stopped")?;
    b.delete().ok()?;
    b.ensure_clean()
}
