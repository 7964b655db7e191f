//! The busybox test image: an OCI layout built with umoci from the host's
//! busybox-static (the suite's own rootfs builder fills the layer), exported
//! with skopeo to an oci-archive that `ctr images import` and `podman pull
//! oci-archive:` accept, and to a docker-archive for `docker load` (docker
//! 20.10 and 26.1 both refuse skopeo's oci-archive: "open .../blobs/json: no
//! such file or directory"). No registry involved.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{require_program, setup_cmd, Runner};

/// The image name inside the archive (what ctr and podman call it).
pub const IMAGE_REF: &str = "docker.io/library/busybox:latest";

pub struct Image {
    /// The oci-archive (`busybox.tar`).
    pub archive: PathBuf,
    /// The same image as a docker-archive (`busybox-docker.tar`).
    pub docker_archive: PathBuf,
}

impl Image {
    /// Build the image below `dir` (about 1 s).
    pub fn build(dir: &Path) -> Result<Image, String> {
        let umoci = require_program("umoci", "umoci (Debian package umoci)")?;
        let skopeo = require_program("skopeo", "skopeo (Debian package skopeo)")?;
        let runner = Runner::new(dir.join("io"))?;
        // Temporary files of the copy go here, not to /var/tmp.
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| format!("mkdir {}: {e}", tmp.display()))?;
        let layout = dir.join("layout");
        let work = dir.join("unpacked");
        let tagged = format!("{}:busybox", layout.display());
        let step = |args: &[&str]| {
            let mut c = Command::new(&umoci);
            c.args(args);
            setup_cmd(&runner, c).map_err(|e| format!("building the test image: {e}"))
        };
        step(&["init", "--layout", &layout.to_string_lossy()])?;
        step(&["new", "--image", &tagged])?;
        step(&["unpack", "--image", &tagged, &work.to_string_lossy()])?;
        crate::fixture::build_rootfs(&work.join("rootfs"))
            .map_err(|e| format!("building the test image's rootfs: {e}"))?;
        step(&["repack", "--image", &tagged, &work.to_string_lossy()])?;
        step(&[
            "config",
            "--image",
            &tagged,
            "--config.cmd",
            "/bin/sh",
            "--config.env",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "--config.workingdir",
            "/",
        ])?;
        let archive = dir.join("busybox.tar");
        let mut c = Command::new(&skopeo);
        c.arg("--tmpdir")
            .arg(&tmp)
            .args(["copy", "--quiet"])
            .arg(format!("oci:{tagged}"))
            .arg(format!("oci-archive:{}:{IMAGE_REF}", archive.display()))
            .env("TMPDIR", &tmp);
        setup_cmd(&runner, c).map_err(|e| format!("exporting the test image: {e}"))?;
        let docker_archive = dir.join("busybox-docker.tar");
        let mut c = Command::new(&skopeo);
        c.arg("--tmpdir")
            .arg(&tmp)
            .args(["copy", "--quiet"])
            .arg(format!("oci:{tagged}"))
            .arg(format!(
                "docker-archive:{}:{IMAGE_REF}",
                docker_archive.display()
            ))
            .env("TMPDIR", &tmp);
        setup_cmd(&runner, c).map_err(|e| format!("exporting the test image for docker: {e}"))?;
        let _ = Command::new("rm")
            .args(["-rf", "--one-file-system"])
            .arg(&work)
            .status();
        Ok(Image {
            archive,
            docker_archive,
        })
    }
}
