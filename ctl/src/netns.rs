//! A container's network namespace: as its config.json asks for it, and the named ones
//! (`/run/netns/berth-<id>`) berthctl makes for containers on a CNI network.

/// Whether `config` (a bundle's config.json) asks for a network namespace of its own (the
/// runtime brings its loopback up, as runc does: `--network none` is "loopback only").
pub fn own_namespace(config: &serde_json::Value) -> bool {
    config["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n["type"] == "network" && n["path"].as_str().is_none_or(str::is_empty))
}

/// The network mode `inspect` and `ps` show: `--network` as given, or for a record made
/// before networks, none or host as its config says.
pub fn mode(c: &crate::containers::Container, config: &serde_json::Value) -> String {
    if !c.net.mode.is_empty() {
        c.net.mode.clone()
    } else if own_namespace(config) {
        "none".into()
    } else {
        "host".into()
    }
}

/// An image's ExposedPorts ("80/tcp").
pub fn exposed_ports(ctx: &crate::ctx::Ctx, image_id: &str) -> Vec<String> {
    let Some(data) = image::digest::Digest::parse(image_id)
        .ok()
        .and_then(|d| ctx.store.content.read(&d).ok())
    else {
        return vec![];
    };
    let v: serde_json::Value = serde_json::from_slice(&data).unwrap_or_default();
    let mut ports: Vec<String> = v["config"]["ExposedPorts"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    ports.sort();
    ports
}

/// Make a network namespace of its own at `path` (a file bind-mounted from the namespace, as
/// `ip netns add` does), with its loopback up: made by a thread that unshares it, so that
/// the rest of berthctl stays in the host's namespace.
pub fn create(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("create the network namespace file {}", path.display()))?;
    let target = path.to_path_buf();
    let r = std::thread::spawn(move || -> anyhow::Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .context("unshare a network namespace")?;
        libcontainer::sys::loopback_up().context("bring lo up in the new network namespace")?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind the network namespace to {}", target.display()))
    })
    .join()
    .unwrap_or_else(|_| Err(anyhow::anyhow!("the network namespace thread panicked")));
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r
}

/// Unmount and remove a namespace file [`create`] made (missing: nothing to do).
pub fn remove(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("unmount {}", path.display())),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
