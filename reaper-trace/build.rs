//! Builds the eBPF programs (package `reaper-trace-ebpf`) with aya-build and
//! the nightly toolchain, into OUT_DIR, where `src/kernel/loader.rs` embeds them.

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    // Without the `kernel` feature (the pure core alone) there is nothing to embed.
    if std::env::var_os("CARGO_FEATURE_KERNEL").is_none() {
        return Ok(());
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let package = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "reaper-trace-ebpf")
        .ok_or_else(|| anyhow!("reaper-trace-ebpf package not found"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", package.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: package.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
