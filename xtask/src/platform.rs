//! The platforms a release is built for and the kernel matrix boots: what
//! differs between x86_64 and aarch64 for the build (Rust target, linker),
//! the package (Debian architecture) and the VMs (qemu, console, kernels).

use crate::setup::STATIC_TARGET;

pub struct Platform {
    /// Rust's target triple for the static musl binary.
    pub rust_target: &'static str,
    /// The platform part of the binary's file name in `target/dist/`.
    pub name: &'static str,
    /// Debian's architecture name: the .deb's, the kernels' and busybox's.
    pub deb_arch: &'static str,
    /// The qemu that boots this platform's kernels, and its machine options
    /// (TCG always: KVM hangs on these machines, and is no use across
    /// architectures anyway).
    pub qemu: &'static str,
    pub machine: &'static [&'static str],
    /// qemu's `-accel` value.
    pub accel: &'static str,
    /// The kernel's serial console device.
    pub console: &'static str,
    /// How a cross build links and compiles C (ring's) for the target:
    /// environment for cargo, empty for the host's own platform.
    pub cross_env: &'static [(&'static str, &'static str)],
    /// The 32-bit program of the `compat-caller` check (`xtask/vm/`), and
    /// the assembler and linker commands that build it (binutils; no C
    /// library): i386 code on x86_64, AArch32 on aarch64.
    pub compat: Compat,
}

pub struct Compat {
    pub source: &'static str,
    pub assemble: &'static [&'static str],
    pub link: &'static [&'static str],
}

pub const X86_64: Platform = Platform {
    rust_target: STATIC_TARGET,
    name: "x86_64-linux-musl",
    deb_arch: "amd64",
    qemu: "qemu-system-x86_64",
    machine: &[],
    // One host thread runs both vCPUs. With one thread per vCPU (MTTCG), a
    // vCPU can still run an int3 that x86's text_poke_bp has already taken
    // out again while the kernel enables a tracepoint, and the guest
    // oopses (`Oops: int3` in kernel_clone or do_wait, as a probe attaches
    // while the guest forks; seen on 6.12 in two CI runs). arm64 patches
    // text under stop_machine and does not need this.
    accel: "tcg,thread=single",
    console: "ttyS0",
    cross_env: &[],
    compat: Compat {
        source: "compat-i386.S",
        assemble: &["as", "--32"],
        link: &["ld", "-m", "elf_i386", "-static"],
    },
};

/// Linked by Debian's aarch64 cross gcc (gcc-aarch64-linux-gnu, installed
/// by `cargo xtask setup`) against the musl C library and start files that
/// rustup ships inside the target (`self-contained`), so nothing of glibc
/// goes in; the same gcc compiles ring's C and assembly, which use no libc
/// headers that differ. cortex-a57 rather than `max`: TCG emulates pointer
/// authentication slowly, and the a57 runs AArch32 code too.
pub const AARCH64: Platform = Platform {
    rust_target: "aarch64-unknown-linux-musl",
    name: "aarch64-linux-musl",
    deb_arch: "arm64",
    qemu: "qemu-system-aarch64",
    machine: &["-M", "virt", "-cpu", "cortex-a57"],
    accel: "tcg",
    console: "ttyAMA0",
    cross_env: &[
        (
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER",
            "aarch64-linux-gnu-gcc",
        ),
        ("CC_aarch64_unknown_linux_musl", "aarch64-linux-gnu-gcc"),
        ("AR_aarch64_unknown_linux_musl", "aarch64-linux-gnu-ar"),
    ],
    compat: Compat {
        source: "compat-aarch32.S",
        assemble: &["arm-linux-gnueabihf-as"],
        link: &["arm-linux-gnueabihf-ld", "-static"],
    },
};

/// Every platform, the host's first.
pub const ALL: [&Platform; 2] = [&X86_64, &AARCH64];

impl Platform {
    /// Whether binaries of this platform run here.
    pub fn is_host(&self) -> bool {
        self.rust_target.split('-').next() == Some(std::env::consts::ARCH)
    }
}
