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

use crate::{
    deb,
    platform::{self, Platform},
    target_dir,
};

/// The static binaries: the tool and the scenario programs the kernel tests
/// and the VM matrix drive.
pub struct StaticBins {
    pub tool: PathBuf,
    pub scenario: PathBuf,
}

/// Builds both, in release mode, for the host's musl target.
pub fn build_static() -> anyhow::Result<StaticBins> {
    build_static_for(&platform::X86_64)
}

/// Builds both, in release mode, for the platform's musl target.
pub fn build_static_for(platform: &Platform) -> anyhow::Result<StaticBins> {
    let args = [
        "build",
        "--release",
        "--target",
        platform.rust_target,
        "-p",
        "reaper-trace",
        "--bin",
        "reaper-trace",
        "-p",
        "reaper-trace-tests",
        "--bin",
        "scenario",
    ];
    let status = Command::new(env!("CARGO"))
        .args(args)
        .envs(platform.cross_env.iter().copied())
        .status()
        .with_context(|| format!("running cargo {args:?}"))?;
    if !status.success() {
        bail!(
            "cargo {} failed ({status}){}",
            args.join(" "),
            if platform.is_host() {
                ""
            } else {
                " (the cross linker and target come with cargo xtask setup)"
            }
        );
    }
    let dir = PathBuf::from(target_dir())
        .join(platform.rust_target)
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

/// `cargo xtask dist`: for each platform, the static binary, its checksum
/// file and the .deb in `target/dist/` (made anew), each printed with its
/// sha256 and size.
pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../reaper-trace/Cargo.toml");
    let version = package_version(
        &std::fs::read_to_string(manifest).with_context(|| format!("reading {manifest}"))?,
    )
    .with_context(|| format!("in {manifest}"))?;

    let target = PathBuf::from(target_dir());
    let dist = target.join("dist");
    deb::remove_dir_if_present(&dist)?;
    std::fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;

    // The host's binary first: it writes the man pages and completions of
    // every package (they do not depend on the architecture).
    let mut host_binary = None;
    let mut artifacts = Vec::new();
    for platform in platform::ALL {
        let bins = build_static_for(platform)?;
        let binary = dist.join(format!("reaper-trace-{version}-{}", platform.name));
        std::fs::copy(&bins.tool, &binary)
            .with_context(|| format!("copying {}", bins.tool.display()))?;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
        check_machine(&binary, platform)?;
        if platform.is_host() {
            check_version(&binary, &version)?;
            host_binary = Some(binary.clone());
        }
        let generator = host_binary
            .as_deref()
            .context("the host's platform is built first")?;
        let staging = target.join(format!("deb-staging-{}", platform.deb_arch));
        let deb = deb::build(
            &binary,
            generator,
            platform.deb_arch,
            &version,
            &staging,
            &dist,
        )?;
        artifacts.extend([binary, deb]);
    }

    for artifact in &artifacts {
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

/// The program header of a dynamic executable's loader path.
const PT_INTERP: u64 = 3;

/// ELF's `e_machine` of each platform.
fn elf_machine(platform: &Platform) -> u16 {
    match platform.deb_arch {
        "arm64" => 183, // EM_AARCH64
        _ => 62,        // EM_X86_64
    }
}

/// Why `bytes` are not a static ELF executable for the platform, if not:
/// what can be checked of a binary that does not run here.
fn not_static_for(bytes: &[u8], platform: &Platform) -> Option<String> {
    let field = |at: usize, len: usize| -> Option<u64> {
        let b = bytes.get(at..at + len)?;
        Some(b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
    };
    let machine = field(18, 2);
    if !bytes.starts_with(b"\x7fELF") || machine != Some(u64::from(elf_machine(platform))) {
        return Some(format!(
            "no {} ELF file (e_machine {machine:?})",
            platform.name
        ));
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (field(32, 8), field(54, 2), field(56, 2))
    else {
        return Some("a truncated ELF header".into());
    };
    // A static executable has no PT_INTERP program header (no loader).
    (0..phnum)
        .any(|i| field((phoff + i * phentsize) as usize, 4) == Some(PT_INTERP))
        .then(|| "it asks for a dynamic loader (PT_INTERP)".into())
}

fn check_machine(binary: &Path, platform: &Platform) -> anyhow::Result<()> {
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    match not_static_for(&bytes, platform) {
        Some(why) => bail!(
            "{} is not a static {} binary: {why}",
            binary.display(),
            platform.name
        ),
        None => Ok(()),
    }
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

    /// A 64-bit ELF header for `machine` with one program header of `ptype`.
    fn elf(machine: u16, ptype: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&ptype.to_le_bytes());
        b
    }

    #[test]
    fn static_binaries_are_told_by_machine_and_loader() {
        const PT_LOAD: u32 = 1;
        let arm = &platform::AARCH64;
        assert_eq!(not_static_for(&elf(183, PT_LOAD), arm), None);
        assert!(not_static_for(&elf(62, PT_LOAD), arm).is_some());
        assert_eq!(not_static_for(&elf(62, PT_LOAD), &platform::X86_64), None);
        assert!(not_static_for(&elf(183, PT_INTERP as u32), arm).is_some());
        assert!(not_static_for(b"#!/bin/sh\n", arm).is_some());
        assert!(not_static_for(&elf(183, PT_LOAD)[..40], arm).is_some());
    }

    #[test]
    fn checksum_lines_are_what_sha256sum_writes() {
        assert_eq!(sha256sum_line("ab12", "f-1.0"), "ab12  f-1.0\n");
    }
}
