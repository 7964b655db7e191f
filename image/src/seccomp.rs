//! Docker's default seccomp profile for bundles: moby's `profiles/seccomp/default.json` as
//! dockerd resolves it for a container with Docker's default capabilities on amd64 (the
//! capabilities `bundle` gives). The OCI form lives in libcontainer's test data, where a test
//! keeps it in sync with moby's file; this crate embeds that data (no code dependency).

use serde_json::Value;

const DOCKER_DEFAULT: &str =
    include_str!("../../libcontainer/src/seccomp/testdata/docker-default.oci.json");

/// Docker's default profile, as `linux.seccomp`.
pub fn default_profile() -> Value {
    serde_json::from_str(DOCKER_DEFAULT).expect("the embedded profile is JSON")
}

/// Set `linux.seccomp` of `spec` to Docker's default profile.
pub fn add_default_profile(spec: &mut Value) {
    spec["linux"]["seccomp"] = default_profile();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_is_dockers_default() {
        let p = default_profile();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        let rules = p["syscalls"].as_array().unwrap();
        let allows = |name: &str| {
            rules.iter().any(|r| {
                r["action"] == "SCMP_ACT_ALLOW"
                    && r.get("args").is_none()
                    && r["names"].as_array().unwrap().iter().any(|n| n == name)
            })
        };
        assert!(allows("read") && allows("chroot"));
        assert!(
            !allows("mount") && !allows("unshare"),
            "needs CAP_SYS_ADMIN"
        );
        assert!(rules
            .iter()
            .any(|r| r["names"][0] == "clone3" && r["errnoRet"] == libc::ENOSYS));
    }
}
