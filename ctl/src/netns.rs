//! A container's network as its config.json has it.

/// Whether `config` (a bundle's config.json) asks for a network namespace of its own (the
/// runtime brings its loopback up, as runc does: `--network none` is "loopback only").
pub fn own_namespace(config: &serde_json::Value) -> bool {
    config["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n["type"] == "network" && n["path"].as_str().is_none_or(str::is_empty))
}
