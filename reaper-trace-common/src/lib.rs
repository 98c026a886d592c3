//! The event ABI shared by the eBPF programs and the userspace loader.
//!
//! Every record in the ring buffer is one of the `#[repr(C)]` structs of
//! [`events`], and each starts with the same [`Header`]. The structs hold only
//! fixed-size integers and byte arrays, with explicit padding, so that both
//! sides agree on every byte and the userspace decoder can check lengths
//! before it reads anything.
//!
//! Kinds are numbered explicitly and a number is never reused: a recording
//! made by an older build must keep decoding.
#![no_std]

pub mod config;
pub mod events;

pub use config::{Config, ForkFailKey, NO_OFFSET, SenderKey};
pub use events::*;

/// Bumped whenever a record layout changes in a way an old reader cannot read.
/// Version 3 added the calling thread's `comm` to `SIGACTION` records.
pub const ABI_VERSION: u32 = 3;

/// Size of [`Header`] in ABI version 1, before `cgroup_id`: readers of old
/// recordings widen each record's header to the current one.
pub const V1_HEADER_LEN: usize = 24;

/// `TASK_COMM_LEN` in the kernel.
pub const COMM_LEN: usize = 16;

/// Bytes kept of an exec'd filename, NUL included.
pub const FILENAME_LEN: usize = 256;

/// Signal numbers used on both sides (x86_64 and every other Linux ABI agree).
pub const SIGKILL: i32 = 9;
pub const SIGCHLD: i32 = 17;

/// Values of `Config::filter_mode`.
pub mod filter {
    /// Every process on the system.
    pub const ALL: u32 = 0;
    /// Only the processes in the `FOLLOWED` map, which the fork probe extends
    /// to every new child of a followed process.
    pub const FOLLOW: u32 = 1;
}

/// The `syscall` field of wait records: tags, the same on every
/// architecture (x86_64's numbers, by history), so that a recording made on
/// one decodes on another.
pub mod wait_syscall {
    pub const WAIT4: u32 = 4;
    pub const WAITID: u32 = 247;
    /// Set when the call began before tracing: its arguments are unknown
    /// (the low bits still hold the tag).
    pub const UNKNOWN_ARGS: u32 = 0x8000_0000;
}

/// The syscall numbers the raw `sys_enter`/`sys_exit` probes dispatch on.
/// They differ per architecture, and the eBPF object is the same on all of
/// them: the loader writes its own architecture's into `Config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallTable {
    pub rt_sigaction: u32,
    pub clone: u32,
    pub clone3: u32,
    pub fork: u32,
    pub vfork: u32,
    pub wait4: u32,
    pub waitid: u32,
}

/// Each architecture's [`SyscallTable`].
pub mod syscall_nr {
    use super::SyscallTable;

    /// A call the architecture does not have (matches no syscall id).
    pub const NONE: u32 = u32::MAX;

    /// arch/x86/entry/syscalls/syscall_64.tbl
    pub const X86_64: SyscallTable = SyscallTable {
        rt_sigaction: 13,
        clone: 56,
        clone3: 435,
        fork: 57,
        vfork: 58,
        wait4: 61,
        waitid: 247,
    };

    /// include/uapi/asm-generic/unistd.h, which arm64 uses: no fork or
    /// vfork (glibc and musl call clone).
    pub const AARCH64: SyscallTable = SyscallTable {
        rt_sigaction: 134,
        clone: 220,
        clone3: 435,
        fork: NONE,
        vfork: NONE,
        wait4: 260,
        waitid: 95,
    };
}

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` lets the loader pass these types to and from maps and globals.
    use super::*;

    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for ForkFailKey {}
    unsafe impl aya::Pod for SenderKey {}
}
