//! The static release binary: linked against musl, with the eBPF object
//! embedded, so that it runs on a machine with no Rust toolchain and any C
//! library (or none). `vm-test` boots other kernels with it; `dist`
//! packages it into `target/dist/`: the binary, its `.sha256`, and a .deb
//! with its man pages and shell completions.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};
use sha2::{Digest, Sha256};

use crate::{cargo, deb, setup::STATIC_TARGET, target_dir};

/// The platform part of the binary's file name in `target/dist/`.
pub const PLATFORM: &str = "x86_64-linux-musl";

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

/// The `version = "..."` of a manifest's `[package]` table.
pub fn package_version(manifest: &str) -> anyhow::Result<String> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(value) = line.strip_prefix("version")
            && let Some(value) = value.trim_start().strip_prefix('=')
        {
            let value = value.trim();
            if let Some(version) = value
                .strip_prefix('"')
                .and_then(|v| v.split_once('"'))
                .map(|(v, _)| v)
                .filter(|v| !v.is_empty())
            {
                return Ok(version.to_owned());
            }
            bail!("[package] version is not a plain string: {value}");
        }
    }
    bail!("no version in [package]")
}

/// A line of `sha256sum`'s output, which `sha256sum -c` reads.
pub fn sha256sum_line(sha256: &str, file_name: &str) -> String {
    format!("{sha256}  {file_name}\n")
}

/// `cargo xtask dist`: the static binary, its checksum file and the .deb in
/// `target/dist/` (made anew), each printed with its sha256 and size.
pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let bins = build_static()?;
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../reaper-trace/Cargo.toml");
    let version = package_version(
        &std::fs::read_to_string(manifest).with_context(|| format!("reading {manifest}"))?,
    )
    .with_context(|| format!("in {manifest}"))?;

    let target = PathBuf::from(target_dir());
    let dist = target.join("dist");
    deb::remove_dir_if_present(&dist)?;
    std::fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;

    let binary = dist.join(format!("reaper-trace-{version}-{PLATFORM}"));
    std::fs::copy(&bins.tool, &binary)
        .with_context(|| format!("copying {}", bins.tool.display()))?;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
    check_version(&binary, &version)?;
    let deb = deb::build(&binary, &version, &target.join("deb-staging"), &dist)?;

    for artifact in [&binary, &deb] {
        let (sha256, size) = checksum(artifact)?;
        let name = artifact.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let sums = dist.join(format!("{name}.sha256"));
        std::fs::write(&sums, sha256sum_line(&sha256, name))
            .with_context(|| format!("writing {}", sums.display()))?;
        let shown = artifact.canonicalize().unwrap_or(artifact.clone());
        println!("{}", shown.display());
        println!("  sha256 {sha256}");
        println!(
            "  size   {size} bytes ({:.1} MiB)",
            size as f64 / (1 << 20) as f64
        );
    }
    eprintln!("xtask: dist in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The binary says the version it is packaged as.
fn check_version(binary: &Path, version: &str) -> anyhow::Result<()> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    let said = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || said.trim() != format!("reaper-trace {version}") {
        bail!(
            "{} --version said {:?}, expected reaper-trace {version}",
            binary.display(),
            said.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_package_version_only() {
        let manifest = "[workspace]\nversion = \"9\"\n[package]\nname = \"x\"\nversion = \"0.1.0\"\n\n[dependencies]\nversion = \"8\"\n";
        assert_eq!(package_version(manifest).unwrap(), "0.1.0");
        assert_eq!(
            package_version("[package]\nversion=\"1.2.3-rc.1\" # soon\n").unwrap(),
            "1.2.3-rc.1"
        );
        assert!(package_version("[package]\nversion.workspace = true\n").is_err());
        assert!(package_version("[package]\nname = \"x\"\n").is_err());
        // `versioned = ` is another key.
        assert!(package_version("[package]\nversioned = \"1\"\n").is_err());
    }

    #[test]
    fn the_real_manifest_has_a_version() {
        let manifest = include_str!("../../reaper-trace/Cargo.toml");
        assert!(package_version(manifest).is_ok());
    }

    #[test]
    fn checksum_lines_are_what_sha256sum_writes() {
        assert_eq!(sha256sum_line("ab12", "f-1.0"), "ab12  f-1.0\n");
    }
}
