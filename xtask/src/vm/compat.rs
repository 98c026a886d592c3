//! The `compat-caller` check's program: 32-bit code (i386 on x86_64,
//! AArch32 on arm64) whose system calls follow another table than the
//! kernel's own. Written in assembly (`xtask/vm/compat-*.S`) and built with
//! binutils alone, so no 32-bit C library or compiler is needed.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::command_output;
use crate::platform::Platform;

/// Assembles and links the platform's compat program into `dir`.
pub(super) fn compat_program(platform: &Platform, dir: &Path) -> anyhow::Result<PathBuf> {
    let spec = &platform.compat;
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("vm")
        .join(spec.source);
    let object = dir.join(format!("compat-{}.o", platform.deb_arch));
    let program = dir.join(format!("compat-{}", platform.deb_arch));
    let (assembler, args) = spec.assemble.split_first().context("no assembler")?;
    command_output(
        Command::new(assembler)
            .args(args)
            .arg("-o")
            .arg(&object)
            .arg(&source),
    )
    .with_context(|| {
        format!(
            "assembling {} ({assembler} comes with cargo xtask setup)",
            source.display()
        )
    })?;
    let (linker, args) = spec.link.split_first().context("no linker")?;
    command_output(
        Command::new(linker)
            .args(args)
            .arg("-o")
            .arg(&program)
            .arg(&object),
    )
    .with_context(|| format!("linking {}", program.display()))?;
    Ok(program)
}
