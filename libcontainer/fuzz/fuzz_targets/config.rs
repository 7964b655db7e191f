//! Arbitrary bytes as a config.json through `config::check` (parse, normalize, validate,
//! compile the seccomp profile and the device-cgroup rules): never a panic, and an error is
//! one bounded line.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// A bundle with an empty rootfs, made once per fuzzing process.
fn bundle() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("berth-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).expect("make the bundle");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    if let Err(msg) = libcontainer::config::check(data, bundle()) {
        assert!(!msg.is_empty() && !msg.contains('\n') && msg.len() <= 4096, "{msg:?}");
    }
});
