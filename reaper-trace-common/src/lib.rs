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

pub use config::{Config, ForkFailKey, SenderKey};
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

/// The `syscall` field of wait records.
pub mod wait_syscall {
    pub const WAIT4: u32 = 4;
    pub const WAITID: u32 = 247;
    /// Set when the call began before tracing: its arguments are unknown and
    /// the low bits hold the raw `__syscall_nr` instead.
    pub const UNKNOWN_ARGS: u32 = 0x8000_0000;
}

/// x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl), which
/// the raw `sys_enter`/`sys_exit` probes dispatch on.
pub mod syscall_nr {
    pub const RT_SIGACTION: i64 = 13;
    pub const CLONE: i64 = 56;
    pub const FORK: i64 = 57;
    pub const VFORK: i64 = 58;
    pub const WAIT4: i64 = 61;
    pub const WAITID: i64 = 247;
    pub const CLONE3: i64 = 435;
}

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` lets the loader pass these types to and from maps and globals.
    use super::*;

    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for ForkFailKey {}
    unsafe impl aya::Pod for SenderKey {}
}
