//! Build facts for `berth --version` (runc prints its git commit and Go version the same way):
//! BERTH_COMMIT (`git rev-parse HEAD`, or `unknown` outside a git checkout; a BERTH_COMMIT in
//! the environment wins, for builds from a tarball) and BERTH_RUSTC (`rustc --version`).

use std::process::Command;

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=BERTH_COMMIT");
    let commit = std::env::var("BERTH_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| output(Command::new("git").args(["rev-parse", "HEAD"])))
        .unwrap_or_else(|| "unknown".into());
    // A new commit or checkout rewrites the worktree's HEAD reflog: build again then. Without
    // a reflog (some CI clones) HEAD itself, which a checkout rewrites; a missing file would
    // make this script run on every build.
    for name in ["logs/HEAD", "HEAD"] {
        let path = output(Command::new("git").args(["rev-parse", "--git-path", name]));
        if let Some(p) = path.filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={p}");
            break;
        }
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(Command::new(rustc).arg("--version"))
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BERTH_COMMIT={commit}");
    println!("cargo:rustc-env=BERTH_RUSTC={version}");
}
