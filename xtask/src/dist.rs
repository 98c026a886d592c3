//! The static release binary: linked against musl, with the eBPF object
//! embedded, so that it runs on a machine with no Rust toolchain and any C
//! library (or none). `vm-test` boots other kernels with it; `dist`
//! packages it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use crate::{cargo, setup::STATIC_TARGET, target_dir};

/// The static binaries: the tool and the scenario programs the kernel tests
/// and the VM matrix drive.
pub struct StaticBins {
    pub tool: PathBuf,
    pub scenario: PathBuf,
}

/// Builds both, in release mode, for the musl target.
pub fn build_static() -> anyhow::Result<StaticBins> {
    cargo(&[
        "build",
        "--release",
        "--target",
        STATIC_TARGET,
        "-p",
        "reaper-trace",
        "--bin",
        "reaper-trace",
        "-p",
        "reaper-trace-tests",
        "--bin",
        "scenario",
    ])?;
    let dir = PathBuf::from(target_dir())
        .join(STATIC_TARGET)
        .join("release");
    Ok(StaticBins {
        tool: dir.join("reaper-trace"),
        scenario: dir.join("scenario"),
    })
}

/// The sha256 (hex) and size of a file.
pub fn checksum(path: &Path) -> anyhow::Result<(String, u64)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, bytes.len() as u64))
}

/// `cargo xtask dist`: the static binary, with its checksum and size.
pub fn run() -> anyhow::Result<()> {
    let bins = build_static()?;
    let (sha256, size) = checksum(&bins.tool)?;
    let tool = bins.tool.canonicalize().unwrap_or(bins.tool);
    println!("{}", tool.display());
    println!("  sha256 {sha256}");
    println!(
        "  size   {size} bytes ({:.1} MiB)",
        size as f64 / (1 << 20) as f64
    );
    Ok(())
}
