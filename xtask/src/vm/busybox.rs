//! The busybox each platform's initramfs runs: the host's own
//! busybox-static for its architecture, and for another architecture
//! Debian's busybox-static of that architecture, downloaded (not installed:
//! the two packages hold the same path) and unpacked once.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::command_output;
use crate::platform::Platform;

/// Where busybox-static installs it.
const HOST_BUSYBOX: &str = "/bin/busybox";

pub(super) fn busybox(platform: &Platform, cache: &Path) -> anyhow::Result<PathBuf> {
    if platform.is_host() {
        return Ok(PathBuf::from(HOST_BUSYBOX));
    }
    let dir = cache.join(format!("busybox-static_{}", platform.deb_arch));
    let binary = dir.join("busybox");
    if binary.exists() {
        return Ok(binary);
    }
    let download = cache.join(format!("busybox-static_{}.download", platform.deb_arch));
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download).with_context(|| format!("creating {}", download.display()))?;
    eprintln!("xtask: downloading busybox-static:{}", platform.deb_arch);
    command_output(
        Command::new("apt-get")
            .current_dir(&download)
            .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("busybox-static:{}", platform.deb_arch)),
    )
    .context("downloading busybox-static from the Debian registry (cargo xtask setup adds the architecture)")?;
    let deb = fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download wrote no .deb")?;
    let unpacked = download.join("unpacked");
    command_output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    fs::create_dir_all(&dir)?;
    fs::rename(unpacked.join("bin/busybox"), &binary)
        .with_context(|| format!("no bin/busybox in {}", deb.display()))?;
    fs::remove_dir_all(&download)?;
    Ok(binary)
}
