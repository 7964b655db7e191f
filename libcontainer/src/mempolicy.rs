//! `linux.memoryPolicy` (runtime-spec 1.3): the NUMA memory policy of the container's processes,
//! set with set_mempolicy(2) by init (and by each exec'd process) once it is in the container's
//! cgroups, so that the kernel checks the nodes against the container's cpuset. The task policy
//! is inherited by children and kept across execve.
//!
//! The config is checked with the kernel's own rules first (mpol_new, sanitize_mpol_flags), so
//! that a policy the kernel would refuse is named with its reason before anything is made; what
//! only the host can say (a node that is not online, or not in the cpuset) is the kernel's
//! EINVAL, reported with the field.

use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType as F, MemoryPolicyModeType as M};

use crate::cpulist::{self, Mask};

// include/uapi/linux/mempolicy.h
const MPOL_DEFAULT: i32 = 0;
const MPOL_PREFERRED: i32 = 1;
const MPOL_BIND: i32 = 2;
const MPOL_INTERLEAVE: i32 = 3;
const MPOL_LOCAL: i32 = 4;
const MPOL_PREFERRED_MANY: i32 = 5;
const MPOL_WEIGHTED_INTERLEAVE: i32 = 6;
const MPOL_F_STATIC_NODES: i32 = 1 << 15;
const MPOL_F_RELATIVE_NODES: i32 = 1 << 14;
const MPOL_F_NUMA_BALANCING: i32 = 1 << 13;

/// The highest node number a list may name (x86's MAX_NUMNODES is at most 1024).
const MAX_NODE: u32 = 1023;

/// A checked policy: set_mempolicy's `mode` argument (mode and flags) and node mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    mode: i32,
    nodes: Option<Mask>,
    /// How messages show it (`MPOL_BIND nodes "0-1"`).
    shown: String,
}

fn mode_value(m: M) -> i32 {
    match m {
        M::MpolDefault => MPOL_DEFAULT,
        M::MpolPreferred => MPOL_PREFERRED,
        M::MpolBind => MPOL_BIND,
        M::MpolInterleave => MPOL_INTERLEAVE,
        M::MpolLocal => MPOL_LOCAL,
        M::MpolPreferredMany => MPOL_PREFERRED_MANY,
        M::MpolWeightedInterleave => MPOL_WEIGHTED_INTERLEAVE,
    }
}

fn flag_value(f: F) -> i32 {
    match f {
        F::MpolFStaticNodes => MPOL_F_STATIC_NODES,
        F::MpolFRelativeNodes => MPOL_F_RELATIVE_NODES,
        F::MpolFNumaBalancing => MPOL_F_NUMA_BALANCING,
    }
}

impl Policy {
    /// Check `p` as the kernel would, without the host; errors name the field.
    pub fn parse(p: &LinuxMemoryPolicy) -> Result<Policy, String> {
        let mode = mode_value(p.mode());
        let nodes = cpulist::parse(p.nodes().as_deref().unwrap_or(""), MAX_NODE)
            .map_err(|e| format!("linux.memoryPolicy.nodes: {e}"))?;
        let flags: i32 = p
            .flags()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|f| flag_value(*f))
            .fold(0, |a, f| a | f);
        let name = p.mode().to_string();
        let relative_or_static = flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES) != 0;
        let why = if flags & MPOL_F_STATIC_NODES != 0 && flags & MPOL_F_RELATIVE_NODES != 0 {
            Some((
                "flags",
                "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other".to_string(),
            ))
        } else if flags & MPOL_F_NUMA_BALANCING != 0
            && mode != MPOL_BIND
            && mode != MPOL_PREFERRED_MANY
        {
            Some((
                "flags",
                format!("MPOL_F_NUMA_BALANCING needs MPOL_BIND or MPOL_PREFERRED_MANY, not {name}"),
            ))
        } else {
            match mode {
                MPOL_DEFAULT | MPOL_LOCAL if nodes.is_some() => {
                    Some(("nodes", format!("{name} takes no nodes")))
                }
                MPOL_DEFAULT if flags != 0 => Some(("flags", format!("{name} takes no flags"))),
                MPOL_LOCAL if relative_or_static => Some((
                    "flags",
                    format!("{name} takes neither MPOL_F_STATIC_NODES nor MPOL_F_RELATIVE_NODES"),
                )),
                MPOL_PREFERRED if nodes.is_none() && relative_or_static => Some((
                    "nodes",
                    "MPOL_PREFERRED without nodes (local allocation) takes neither \
                     MPOL_F_STATIC_NODES nor MPOL_F_RELATIVE_NODES"
                        .to_string(),
                )),
                MPOL_BIND | MPOL_INTERLEAVE | MPOL_WEIGHTED_INTERLEAVE | MPOL_PREFERRED_MANY
                    if nodes.is_none() =>
                {
                    Some(("nodes", format!("{name} needs at least one node")))
                }
                _ => None,
            }
        };
        if let Some((field, why)) = why {
            return Err(format!("linux.memoryPolicy.{field}: {why}"));
        }
        let shown = match &nodes {
            Some(n) => format!("{name} nodes {}", crate::error::echo(&n.to_list())),
            None => name,
        };
        Ok(Policy {
            mode: mode | flags,
            nodes,
            shown,
        })
    }
}

/// Set the calling thread's policy (init's, or an exec'd process's, before it execs).
pub(crate) fn apply(p: &Policy) -> crate::init::Result<()> {
    use crate::init::StepExt;
    let (mask, bits): (&[u64], u64) = match &p.nodes {
        Some(m) => (m.words(), m.words().len() as u64 * 64),
        None => (&[], 0),
    };
    crate::sys::set_mempolicy(p.mode, mask, bits).step(
        &format!(
            "linux.memoryPolicy: set_mempolicy({}) (are the nodes online and in the \
             container's cpuset.mems?)",
            p.shown
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(v: serde_json::Value) -> Result<Policy, String> {
        Policy::parse(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn modes_flags_and_nodes() {
        use serde_json::json;
        let p =
            policy(json!({"mode": "MPOL_BIND", "nodes": "0-1", "flags": ["MPOL_F_STATIC_NODES"]}))
                .unwrap();
        assert_eq!(p.mode, MPOL_BIND | MPOL_F_STATIC_NODES);
        assert_eq!(p.nodes.as_ref().unwrap().words(), [0b11]);
        assert_eq!(p.shown, "MPOL_BIND nodes \"0-1\"");
        assert_eq!(
            policy(json!({"mode": "MPOL_LOCAL"})).unwrap().mode,
            MPOL_LOCAL
        );
        assert_eq!(
            policy(json!({"mode": "MPOL_PREFERRED"})).unwrap().nodes,
            None
        );
        policy(json!({"mode": "MPOL_PREFERRED_MANY", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]})).unwrap();
        policy(json!({"mode": "MPOL_DEFAULT", "nodes": ""})).unwrap();
        for (v, want) in [
            (
                json!({"mode": "MPOL_BIND"}),
                "linux.memoryPolicy.nodes: MPOL_BIND needs at least one node",
            ),
            (
                json!({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": ""}),
                "needs at least one node",
            ),
            (
                json!({"mode": "MPOL_DEFAULT", "nodes": "0"}),
                "linux.memoryPolicy.nodes: MPOL_DEFAULT takes no nodes",
            ),
            (
                json!({"mode": "MPOL_LOCAL", "nodes": "0"}),
                "MPOL_LOCAL takes no nodes",
            ),
            (
                json!({"mode": "MPOL_DEFAULT", "flags": ["MPOL_F_STATIC_NODES"]}),
                "linux.memoryPolicy.flags: MPOL_DEFAULT takes no flags",
            ),
            (
                json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
                "exclude each other",
            ),
            (
                json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}),
                "MPOL_F_NUMA_BALANCING needs MPOL_BIND",
            ),
            (
                json!({"mode": "MPOL_PREFERRED", "flags": ["MPOL_F_RELATIVE_NODES"]}),
                "local allocation",
            ),
            (
                json!({"mode": "MPOL_BIND", "nodes": "1-0"}),
                "linux.memoryPolicy.nodes: invalid range",
            ),
            (json!({"mode": "MPOL_BIND", "nodes": "1024"}), "above 1023"),
        ] {
            let e = policy(v.clone()).unwrap_err();
            assert!(e.contains(want), "{v}: {e} should contain {want}");
        }
    }
}
