//! `linux.intelRdt`. berth does not drive resctrl (no host it runs on has one), so a config that
//! sets the field is refused, with why: the runtime-spec says a runtime "MUST generate an error"
//! when no resctrl filesystem is mounted, and runc words the same situation as "intelRdt is
//! specified in config, but Intel RDT is not supported or enabled". `closID` is checked first,
//! as runc checks it (it names a directory of resctrl).
//!
//! Only a config with the field reads /proc/self/mountinfo.

use oci_spec::runtime::LinuxIntelRdt;

/// Why a config with `linux.intelRdt` cannot run here; the message names the field.
pub fn check(rdt: &LinuxIntelRdt) -> Result<(), String> {
    check_with(rdt, resctrl_mount().as_deref())
}

/// [`check`] with where resctrl is mounted (`None`: nowhere) given.
fn check_with(rdt: &LinuxIntelRdt, resctrl: Option<&str>) -> Result<(), String> {
    if let Some(id) = rdt.clos_id() {
        if id == "." || id == ".." || id.contains('/') {
            return Err(format!(
                "linux.intelRdt.closID: {} is not a valid resctrl group name",
                crate::error::echo(id)
            ));
        }
    }
    let Some(mount) = resctrl else {
        // runc's words for each schema (its CAT and MBA checks), else for the field.
        let (field, what) = if rdt
            .l3_cache_schema()
            .as_ref()
            .is_some_and(|s| !s.is_empty())
        {
            (
                "linux.intelRdt.l3CacheSchema",
                "Intel RDT/CAT is not enabled",
            )
        } else if rdt.mem_bw_schema().as_ref().is_some_and(|s| !s.is_empty()) {
            ("linux.intelRdt.memBwSchema", "Intel RDT/MBA is not enabled")
        } else {
            ("linux.intelRdt", "Intel RDT is not supported or enabled")
        };
        return Err(format!(
            "{field}: is specified in config, but {what}: no resctrl filesystem is mounted \
             (the runtime-spec requires an error then)"
        ));
    };
    Err(format!(
        "linux.intelRdt: berth does not drive Intel RDT (resctrl is mounted at {}, but berth \
         cannot place the container in a resctrl group)",
        crate::error::echo(mount)
    ))
}

/// Where a resctrl filesystem is mounted in berth's mount namespace, if anywhere.
fn resctrl_mount() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    crate::procfs::parse_mountinfo(&text)
        .into_iter()
        .find(|m| m.fstype == "resctrl")
        .map(|m| m.mount_point)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdt(v: serde_json::Value) -> LinuxIntelRdt {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn refused_with_the_field_and_why() {
        use serde_json::json;
        for (v, want) in [
            (json!({}), "linux.intelRdt: is specified in config, but Intel RDT is not supported or enabled: no resctrl filesystem is mounted"),
            (json!({"closID": "g", "enableMonitoring": true}), "linux.intelRdt: is specified"),
            (json!({"l3CacheSchema": "L3:0=f"}), "linux.intelRdt.l3CacheSchema: is specified in config, but Intel RDT/CAT is not enabled"),
            (json!({"memBwSchema": "MB:0=50"}), "linux.intelRdt.memBwSchema: is specified in config, but Intel RDT/MBA is not enabled"),
            (json!({"closID": "a/b"}), "linux.intelRdt.closID: \"a/b\" is not a valid"),
            (json!({"closID": ".."}), "linux.intelRdt.closID: \"..\""),
        ] {
            let e = check_with(&rdt(v), None).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
        let e = check_with(&rdt(json!({"closID": "g"})), Some("/sys/fs/resctrl")).unwrap_err();
        assert!(
            e.contains("resctrl is mounted at \"/sys/fs/resctrl\""),
            "{e}"
        );
    }
}
