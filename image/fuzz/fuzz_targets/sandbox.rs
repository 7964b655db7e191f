//! A sandbox for one fuzz input: `<tmp>/root` (where the layer is applied) next to
//! `<tmp>/outside` (a canary file, and the target of tempting symlinks planted in the root:
//! `up -> ../outside`, `abs -> <tmp>/outside`). After the layer, everything outside the root
//! must be exactly as it was.

use std::path::{Path, PathBuf};

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
}

const CANARY: &str = "canary: must stay as it is";

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("berth-fuzz-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("canary"), CANARY).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("up")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../../../..", root.join("dotdot")).unwrap();
        Sandbox { dir, root, outside }
    }

    /// Panics (a finding) when anything outside the root changed.
    pub fn check(&self) {
        let top = names(self.dir.path());
        assert_eq!(top, vec!["outside".to_string(), "root".to_string()], "written outside the root");
        assert_eq!(names(&self.outside), vec!["canary".to_string()], "written into outside/");
        let meta = std::fs::symlink_metadata(self.outside.join("canary")).unwrap();
        assert!(meta.file_type().is_file(), "outside/canary replaced");
        assert_eq!(
            std::fs::read_to_string(self.outside.join("canary")).unwrap(),
            CANARY,
            "outside/canary changed"
        );
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(&self.outside).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o755, "outside/ mode changed");
    }
}

fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
