//! Load-time constants handed to the programs as one read-only global.
//!
//! Rust eBPF gets no CO-RE relocations, so the loader resolves every kernel
//! struct offset from `/sys/kernel/btf/vmlinux`, then writes them here before
//! the programs are loaded. Every program is a raw tracepoint, whose
//! arguments are the tracepoint's `TP_PROTO` (never a tracefs record), so
//! nothing in the programs assumes one kernel's layout.

use crate::COMM_LEN;

/// An offset the kernel has no field for.
pub const NO_OFFSET: u32 = u32::MAX;

/// Offsets (bytes) and switches read by the programs. All fields are `u32` so
/// the struct has no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    // --- struct task_struct
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_exit_code: u32,
    pub task_exit_signal: u32,
    pub task_start_time: u32,
    pub task_signal: u32,
    pub task_sighand: u32,
    pub task_blocked: u32,
    pub task_comm: u32,
    /// `task_struct.thread_pid`: the task's `struct pid`.
    pub task_thread_pid: u32,
    // --- struct pid / upid / pid_namespace: a pid at each namespace level
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_nr: u32,
    pub upid_ns: u32,
    /// `pid_namespace.ns.inum`: the namespace's inode number.
    pub pid_ns_inum: u32,
    // --- struct signal_struct: `live` is the count of threads not yet exited
    pub signal_live: u32,
    // --- struct sighand_struct / k_sigaction / sigaction
    pub sighand_action: u32,
    pub k_sigaction_size: u32,
    pub sigaction_handler: u32,
    pub sigaction_flags: u32,
    // --- struct kernel_siginfo
    pub siginfo_code: u32,
    pub siginfo_pid: u32,
    pub siginfo_status: u32,
    /// 1 when the `sched_process_exit` BTF tracepoint passes `group_dead`
    /// (kernel 6.16 and later); otherwise the probe reads `signal->live`.
    pub exit_has_group_dead: u32,

    // --- struct linux_binprm
    pub binprm_filename: u32,
    // --- struct pt_regs: the syscall's number and arguments, at the
    // offsets of this architecture's registers (the loader names them:
    // x86_64 orig_ax, di, si, dx, r10; aarch64 syscallno, orig_x0, regs[1..3])
    /// Read as an `i32`: x86_64's `orig_ax` is a long, aarch64's
    /// `syscallno` an int; syscall numbers fit either way.
    pub regs_nr: u32,
    pub regs_arg0: u32,
    pub regs_arg1: u32,
    pub regs_arg2: u32,
    pub regs_arg3: u32,
    /// The user registers an unwinder starts from: the instruction and
    /// stack pointers, the frame pointer (rbp, x29) and the link register
    /// (x30; [`NO_OFFSET`] on x86_64, which has none).
    pub regs_ip: u32,
    pub regs_sp: u32,
    pub regs_fp: u32,
    pub regs_lr: u32,
    /// Where this architecture marks a 32-bit (compat) syscall, whose number
    /// means another call in another table: a `u32` at `compat_offset` in
    /// the current task (`compat_in_regs` 0: x86's `thread_info.status`,
    /// `TS_COMPAT`) or in `pt_regs` (1: aarch64's `pstate`, whose
    /// `PSR_MODE32_BIT` says the caller runs AArch32), and'ed with
    /// `compat_mask`.
    pub compat_offset: u32,
    pub compat_in_regs: u32,
    pub compat_mask: u32,

    // --- this architecture's syscall numbers ([`crate::SyscallTable`]),
    // which the raw `sys_enter`/`sys_exit` probes dispatch on;
    // [`crate::syscall_nr::NONE`] for a call the architecture lacks.
    pub nr_wait4: u32,
    pub nr_waitid: u32,
    pub nr_rt_sigaction: u32,
    pub nr_clone: u32,
    pub nr_clone3: u32,
    pub nr_fork: u32,
    pub nr_vfork: u32,

    // --- filtering
    /// One of [`crate::filter`].
    pub filter_mode: u32,
    /// Processes whose comm equals this (NUL padded) are followed; empty: off.
    pub comm: [u8; COMM_LEN],
    pub comm_len: u32,
    /// `--cgroup`: processes running in this cgroup v2 (id split in two
    /// halves, low first) or below it are followed; 0: off.
    pub cgroup_id_lo: u32,
    pub cgroup_id_hi: u32,
    /// The cgroup's depth below the v2 root (the root is level 0).
    pub cgroup_level: u32,
    /// The loader's own tgid: its waits are always reported, because in
    /// command mode it is the reaper of the traced tree.
    pub self_tgid: u32,
    /// Wake the reader only once this many bytes wait in the ring buffer
    /// (it also polls on a timer); 0 wakes it for every record.
    pub wakeup_bytes: u32,
    /// 1: also send per-thread events the analysis does not need (thread
    /// forks, exits of threads that leave their group alive, thread frees).
    pub thread_events: u32,
    /// 1: the programs log their rare paths (a failed kernel or user read,
    /// a full map) through aya-log (`--probe-log`). 0: they do not, and since
    /// this global is read-only and frozen, the verifier removes the logging
    /// code: the probes then cost what they cost without it.
    pub probe_log: u32,
    /// 1: copy the user stack of traced processes at each fork of a process
    /// and each SIGCHLD action change ([`crate::UserStackRecord`]).
    pub stacks: u32,
    /// The ring buffer's size: a stack copy is skipped (and counted lost)
    /// once half of it is waiting, so that stacks never crowd out the
    /// lifecycle records.
    pub ringbuf_bytes: u32,
    /// `task_struct.in_execve` as a bit offset from the start of the task
    /// (a bitfield), set while the task is in execve: the rename `exec`
    /// makes is then skipped (the `EXEC` record says it). `u32::MAX` when
    /// this kernel has no such field: every rename is sent.
    pub task_in_execve_bit: u32,
}

/// Key of the `SENDERS` map: a signal, as its `SIGNAL_GENERATE` record's
/// header names it (the sender's tgid and the record's time).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SenderKey {
    pub tgid: u32,
    pub _pad: u32,
    pub time_ns: u64,
}

/// Key of the per-process fork-failure counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ForkFailKey {
    pub tgid: u32,
    /// Positive errno.
    pub errno: u32,
}
