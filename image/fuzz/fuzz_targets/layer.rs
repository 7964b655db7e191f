//! Arbitrary bytes as an uncompressed layer tar, applied with overlay whiteouts and then with
//! deleting whiteouts (a second layer on top): no panic, and nothing outside the root written.
#![no_main]

use image::layer::{apply, ApplyOptions};
use libfuzzer_sys::fuzz_target;

#[path = "sandbox.rs"]
mod sandbox;

fuzz_target!(|data: &[u8]| {
    let s = sandbox::Sandbox::new();
    let _ = apply(&s.root, data, &ApplyOptions::overlay(Vec::new()));
    s.check();
    let _ = apply(&s.root, data, &ApplyOptions::delete());
    s.check();
});
