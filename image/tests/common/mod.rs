//! Test images made with umoci + skopeo from Debian's busybox-static (ENVIRONMENT.md's recipe),
//! built once per test process under /tmp/berth-image-fixture-<pid>, removed when the process
//! exits (atexit) and, should it die, by the next run.
#![allow(dead_code)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const BUSYBOX: &str = "/bin/busybox";

/// Why the fixture cannot be built here (None: it can).
pub fn missing_tools() -> Option<String> {
    if !nix_is_root() {
        return Some("not root".into());
    }
    for t in ["/usr/bin/umoci", "/usr/bin/skopeo", BUSYBOX] {
        if !Path::new(t).exists() {
            return Some(format!(
                "{t} missing (apt-get install umoci skopeo busybox-static)"
            ));
        }
    }
    None
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub struct Fixture {
    /// An OCI layout with tags `busybox` (one layer) and `layered` (three layers, the third with
    /// whiteouts).
    pub layout: PathBuf,
    /// `oci-archive` of `busybox`, named docker.io/library/busybox:latest.
    pub archive: PathBuf,
    /// `oci-archive` of `layered`, named docker.io/library/layered:latest.
    pub layered_archive: PathBuf,
    pub dir: PathBuf,
}

static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn fill_busybox_rootfs(r: &Path) -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    for d in ["bin", "etc", "root", "tmp", "home/user1"] {
        std::fs::create_dir_all(r.join(d)).map_err(e)?;
    }
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).map_err(e)?;
    std::fs::copy(BUSYBOX, r.join("bin/busybox")).map_err(e)?;
    let list = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .map_err(e)?;
    for a in String::from_utf8_lossy(&list.stdout).lines() {
        if a == "bin/busybox" || a.is_empty() {
            continue;
        }
        let p = r.join(a);
        std::fs::create_dir_all(p.parent().unwrap()).map_err(e)?;
        let _ = symlink("/bin/busybox", &p);
    }
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser1:x:1000:1000:User One:/home/user1:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .map_err(e)?;
    std::fs::write(
        r.join("etc/group"),
        "root:x:0:\nuser1:x:1000:\nextra:x:2000:user1,other\nwheel:x:10:root,user1\nnogroup:x:65534:\n",
    )
    .map_err(e)?;
    Ok(())
}

fn build(dir: &Path) -> Result<Fixture, String> {
    let l = dir.join("layout");
    let ls = l.display().to_string();
    let img = |t: &str| format!("{ls}:{t}");
    run(Command::new("umoci").args(["init", "--layout", &ls]))?;
    run(Command::new("umoci").args(["new", "--image", &img("busybox")]))?;
    let w = dir.join("w1");
    run(Command::new("umoci")
        .args(["unpack", "--image", &img("busybox")])
        .arg(&w))?;
    fill_busybox_rootfs(&w.join("rootfs"))?;
    run(Command::new("umoci")
        .args(["repack", "--image", &img("busybox")])
        .arg(&w))?;
    run(Command::new("umoci").args([
        "config",
        "--image",
        &img("busybox"),
        "--config.cmd",
        "/bin/sh",
        "--config.env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]))?;
    // layered: + files, then - some of them (whiteouts in the third layer).
    let w2 = dir.join("w2");
    run(Command::new("umoci")
        .args(["unpack", "--image", &img("busybox")])
        .arg(&w2))?;
    let r2 = w2.join("rootfs");
    std::fs::create_dir_all(r2.join("data/sub")).unwrap();
    std::fs::write(r2.join("data/keep"), "keep\n").unwrap();
    std::fs::write(r2.join("data/gone"), "gone\n").unwrap();
    std::fs::write(r2.join("data/sub/inner"), "inner\n").unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &img("layered")])
        .arg(&w2))?;
    let w3 = dir.join("w3");
    run(Command::new("umoci")
        .args(["unpack", "--image", &img("layered")])
        .arg(&w3))?;
    let r3 = w3.join("rootfs");
    std::fs::remove_file(r3.join("data/gone")).unwrap();
    std::fs::remove_dir_all(r3.join("data/sub")).unwrap();
    std::fs::write(r3.join("data/new"), "new\n").unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &img("layered")])
        .arg(&w3))?;
    let archive = dir.join("busybox.tar");
    let layered_archive = dir.join("layered.tar");
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci:{}", img("busybox")),
        &format!(
            "oci-archive:{}:docker.io/library/busybox:latest",
            archive.display()
        ),
    ]))?;
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci:{}", img("layered")),
        &format!(
            "oci-archive:{}:docker.io/library/layered:latest",
            layered_archive.display()
        ),
    ]))?;
    for w in [w, w2, w3] {
        let _ = std::fs::remove_dir_all(w);
    }
    Ok(Fixture {
        layout: l,
        archive,
        layered_archive,
        dir: dir.to_path_buf(),
    })
}

/// The fixture, built on first use.
pub fn fixture() -> Result<&'static Fixture, String> {
    FIXTURE
        .get_or_init(|| {
            if let Some(why) = missing_tools() {
                return Err(why);
            }
            remove_stale_fixtures();
            let dir = PathBuf::from(format!("/tmp/berth-image-fixture-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            // SAFETY: registers a plain extern "C" function.
            unsafe { libc::atexit(remove_fixture) };
            build(&dir)
        })
        .as_ref()
        .map_err(|e| e.clone())
}

/// Remove fixture directories of test processes that are gone.
fn remove_stale_fixtures() {
    let Ok(rd) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = n.strip_prefix("berth-image-fixture-") {
            if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

extern "C" fn remove_fixture() {
    let _ = std::fs::remove_dir_all(format!("/tmp/berth-image-fixture-{}", std::process::id()));
}
