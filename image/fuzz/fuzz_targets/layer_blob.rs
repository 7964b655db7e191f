//! Arbitrary bytes as a layer blob (plain, gzip or zstd, detected from the magic bytes, as
//! `Store::unpack` reads them), applied through `apply_blob`: no panic, no hang on the
//! decompressing thread, nothing outside the root written.
#![no_main]

use image::layer::{apply_blob, ApplyOptions};
use libfuzzer_sys::fuzz_target;

#[path = "sandbox.rs"]
mod sandbox;

fuzz_target!(|data: &[u8]| {
    let s = sandbox::Sandbox::new();
    let blob = s.dir.path().join("blob");
    std::fs::write(&blob, data).unwrap();
    let _ = apply_blob(&s.root, &blob, None, &ApplyOptions::overlay(Vec::new()));
    std::fs::remove_file(&blob).unwrap();
    s.check();
});
