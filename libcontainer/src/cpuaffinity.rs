//! `process.execCPUAffinity` (runtime-spec 1.2.1), as runc 1.3 honours it: for `exec` only
//! (the spec: "not applicable to the container's init process"; config.json's lists are still
//! checked at create). `initial` is the affinity of the runtime's process that enters the
//! container, set before it moves into the container's cgroup; `final` is set on the process
//! once it is in the cgroup. An exec process that sets neither list gets config.json's.
//!
//! Nothing here runs unless the field is set.

use oci_spec::runtime::ExecCPUAffinity;

use crate::cpulist::{self, Mask};
use crate::error::{Error, Result};

/// The highest CPU number a list may name (runc's limit; the kernel allows at most 8192 CPUs).
pub const MAX_CPU: u32 = 65536;

/// The parsed lists of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affinity {
    pub initial: Option<Mask>,
    pub final_: Option<Mask>,
}

impl Affinity {
    /// Parse both lists; the error names the field (`{field}.execCPUAffinity.initial: ...`).
    pub fn parse(a: &ExecCPUAffinity, field: &str) -> Result<Affinity, String> {
        let list = |name: &str, s: Option<&String>| {
            cpulist::parse(s.map_or("", String::as_str), MAX_CPU)
                .map_err(|e| format!("{field}.execCPUAffinity.{name}: {e}"))
        };
        Ok(Affinity {
            initial: list("initial", a.initial().as_ref())?,
            final_: list("final", a.cpu_affinity_final().as_ref())?,
        })
    }

    fn is_empty(&self) -> bool {
        self.initial.is_none() && self.final_.is_none()
    }
}

/// What an exec'd process gets: its own lists, or (when it sets neither) those of the
/// container's config.json, as runc does. `None` when neither sets any.
pub fn for_exec(
    own: Option<&ExecCPUAffinity>,
    container: Option<&ExecCPUAffinity>,
) -> Result<Option<Affinity>> {
    let parse = |a: Option<&ExecCPUAffinity>, path: &str| -> Result<Affinity> {
        a.map(|a| Affinity::parse(a, "process"))
            .transpose()
            .map_err(|m| Error::config(path, m))
            .map(Option::unwrap_or_default)
    };
    let own = parse(own, "--process")?;
    let chosen = if own.is_empty() {
        parse(container, "config.json")?
    } else {
        own
    };
    Ok((!chosen.is_empty()).then_some(chosen))
}

/// The runtime's own affinity while it starts an exec process: `initial` set on the calling
/// (single) thread, so that the child is born with it; [`Pinned::restore`] puts the runtime's
/// affinity back once the child exists.
pub struct Pinned(Vec<u64>);

impl Pinned {
    pub fn initial(mask: &Mask) -> Result<Pinned> {
        let saved =
            crate::sys::affinity().map_err(|e| Error::sys("read the runtime's CPU affinity", e))?;
        crate::sys::set_affinity(mask.words()).map_err(|e| {
            Error::sys(
                format!(
                    "process.execCPUAffinity.initial: set the CPU affinity of the runtime's \
                     process to {} (is every CPU listed online?)",
                    crate::error::echo(&mask.to_list())
                ),
                e,
            )
        })?;
        Ok(Pinned(saved))
    }

    /// Best effort: the child has its affinity already, whatever happens to the runtime's.
    pub fn restore(self) {
        let _ = crate::sys::set_affinity(&self.0);
    }
}

/// The step of the exec process, in the container's cgroup: `final`.
pub(crate) fn set_final(mask: &Mask) -> crate::init::Result<()> {
    use crate::init::StepExt;
    crate::sys::set_affinity(mask.words()).step(
        &format!(
            "process.execCPUAffinity.final: set the CPU affinity to {} (is every CPU listed \
             online and in the container's cpuset?)",
            crate::error::echo(&mask.to_list())
        ),
        None,
    )
}

/// runc reads `""` as "not set" and ignores blanks and empty elements (`" 1, 3,"`); the
/// runtime-spec types' parser refuses them. Rewrite the lists of a process object (JSON) to
/// their canonical form (`"1,3"`) or drop empty ones, before the typed parse; a list that is
/// not valid even for runc is an error naming the field.
pub fn normalize_json(process: &mut serde_json::Value, field: &str) -> Result<(), String> {
    let Some(aff) = process
        .get_mut("execCPUAffinity")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return Ok(());
    };
    for name in ["initial", "final"] {
        let Some(serde_json::Value::String(s)) = aff.get(name) else {
            continue;
        };
        match cpulist::parse(s, MAX_CPU)
            .map_err(|e| format!("{field}.execCPUAffinity.{name}: {e}"))?
        {
            None => {
                aff.remove(name);
            }
            Some(m) => {
                aff.insert(name.into(), m.to_list().into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aff(v: serde_json::Value) -> ExecCPUAffinity {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn exec_falls_back_to_the_containers_lists() {
        use serde_json::json;
        let own = aff(json!({"final": "1"}));
        let base = aff(json!({"initial": "0", "final": "0-1"}));
        let got = for_exec(Some(&own), Some(&base)).unwrap().unwrap();
        assert_eq!(got.initial, None);
        assert_eq!(got.final_.unwrap().to_list(), "1");
        let got = for_exec(None, Some(&base)).unwrap().unwrap();
        assert_eq!(got.initial.unwrap().to_list(), "0");
        let got = for_exec(Some(&aff(json!({}))), Some(&base))
            .unwrap()
            .unwrap();
        assert_eq!(got.final_.unwrap().to_list(), "0-1");
        assert_eq!(for_exec(None, None).unwrap(), None);
    }

    #[test]
    fn json_lists_are_normalized_like_runc_reads_them() {
        use serde_json::json;
        let mut p = json!({"execCPUAffinity": {"initial": "", "final": " 3, 1,2 ,"}});
        normalize_json(&mut p, "process").unwrap();
        assert_eq!(p, json!({"execCPUAffinity": {"final": "1-3"}}));
        let a: ExecCPUAffinity = serde_json::from_value(p["execCPUAffinity"].clone()).unwrap();
        assert_eq!(a.cpu_affinity_final().as_deref(), Some("1-3"));
        let mut p = json!({"execCPUAffinity": {"initial": "1-0"}});
        let e = normalize_json(&mut p, "process").unwrap_err();
        assert!(e.starts_with("process.execCPUAffinity.initial: "), "{e}");
        let mut p = json!({"args": ["sh"]});
        normalize_json(&mut p, "process").unwrap();
        assert_eq!(p, json!({"args": ["sh"]}));
    }
}
