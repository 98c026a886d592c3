//! Resolves every offset the programs need, from this kernel's BTF, into the
//! `Config` they are loaded with.

use reaper_trace_common::Config;

use super::btf::{Btf, BtfError};

/// Errors resolving offsets.
#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    /// A tracepoint's prototype is not the one the probe was written for.
    #[error("tracepoint {tracepoint} passes {found} arguments, the probe needs {needed}")]
    Prototype {
        tracepoint: &'static str,
        found: usize,
        needed: usize,
    },
}

/// The raw tracepoints hooked, with the arguments their probes read. Each
/// has a `btf_trace_<name>` typedef in the kernel's BTF giving its
/// `TP_PROTO`, which is how a missing or changed one is caught here, with
/// one line, rather than by the kernel at attach.
pub const RAW_TRACEPOINTS: [(&str, usize); 10] = [
    ("sched_process_fork", 2),
    ("sched_process_exec", 3),
    ("sched_process_exit", 1),
    ("sched_process_wait", 1),
    ("sched_process_free", 1),
    ("signal_generate", 5),
    ("signal_deliver", 3),
    ("sys_enter", 2),
    ("sys_exit", 2),
    // TP_PROTO(struct task_struct *task, const char *comm)
    ("task_rename", 2),
];

/// The raw tracepoints of system calls, which tax every system call of
/// every task once attached (`TracerOptions::syscall_hooks`).
pub const SYSCALL_TRACEPOINTS: [&str; 2] = ["sys_enter", "sys_exit"];

/// The struct offsets, from BTF.
pub fn kernel_struct_offsets(btf: &Btf, config: &mut Config) -> Result<(), OffsetError> {
    let task = |m| btf.member_offset("task_struct", m);
    config.task_pid = task("pid")?;
    config.task_tgid = task("tgid")?;
    config.task_real_parent = task("real_parent")?;
    config.task_group_leader = task("group_leader")?;
    config.task_exit_code = task("exit_code")?;
    config.task_exit_signal = task("exit_signal")?;
    config.task_start_time = task("start_time")?;
    config.task_signal = task("signal")?;
    config.task_sighand = task("sighand")?;
    config.task_blocked = task("blocked")?;
    config.task_comm = task("comm")?;
    config.task_thread_pid = task("thread_pid")?;
    config.pid_level = btf.member_offset("pid", "level")?;
    config.pid_numbers = btf.member_offset("pid", "numbers")?;
    config.upid_size = btf.struct_size("upid")?;
    config.upid_nr = btf.member_offset("upid", "nr")?;
    config.upid_ns = btf.member_offset("upid", "ns")?;
    config.pid_ns_inum = btf.member_offset("pid_namespace", "ns.inum")?;
    config.signal_live = btf.member_offset("signal_struct", "live")?;
    config.sighand_action = btf.member_offset("sighand_struct", "action")?;
    config.k_sigaction_size = btf.struct_size("k_sigaction")?;
    config.sigaction_handler = btf.member_offset("k_sigaction", "sa.sa_handler")?;
    config.sigaction_flags = btf.member_offset("k_sigaction", "sa.sa_flags")?;
    config.siginfo_code = btf.member_offset("kernel_siginfo", "si_code")?;
    config.siginfo_pid = btf.member_offset("kernel_siginfo", "_sifields._sigchld._pid")?;
    config.siginfo_status = btf.member_offset("kernel_siginfo", "_sifields._sigchld._status")?;
    config.binprm_filename = btf.member_offset("linux_binprm", "filename")?;
    let regs = |m| btf.member_offset("pt_regs", m);
    config.regs_orig_ax = regs("orig_ax")?;
    config.regs_di = regs("di")?;
    config.regs_si = regs("si")?;
    config.regs_dx = regs("dx")?;
    config.regs_r10 = regs("r10")?;
    config.regs_ip = regs("ip")?;
    config.regs_sp = regs("sp")?;
    config.regs_bp = regs("bp")?;
    config.task_ti_status = task("thread_info.status")?;
    // A one-bit flag; absent, every rename is sent (exec's too, which the
    // EXEC record follows anyway).
    config.task_in_execve_bit = btf
        .member_bit_offset("task_struct", "in_execve")
        .unwrap_or(u32::MAX);
    for (tracepoint, needed) in RAW_TRACEPOINTS {
        let found = btf.tracepoint_arg_count(tracepoint)?;
        if found < needed {
            return Err(OffsetError::Prototype {
                tracepoint,
                found,
                needed,
            });
        }
    }
    // 6.16 added `bool group_dead` to sched_process_exit.
    config.exit_has_group_dead = (btf.tracepoint_arg_count("sched_process_exit")? >= 2) as u32;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF, when it has one.
    #[test]
    fn resolves_every_offset_on_this_kernel() {
        let Ok(bytes) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("SKIP resolves_every_offset_on_this_kernel: no /sys/kernel/btf/vmlinux");
            return;
        };
        let btf = Btf::parse(bytes).expect("vmlinux BTF parses");
        let mut config = Config::default();
        kernel_struct_offsets(&btf, &mut config).expect("offsets resolve");
        // The user-space ABI fixes these: the kernel copies siginfo as is.
        assert_eq!(
            (
                config.siginfo_code,
                config.siginfo_pid,
                config.siginfo_status
            ),
            (8, 16, 24)
        );
        assert_ne!(config.task_tgid, config.task_pid);
        // x86_64's pt_regs, fixed by the syscall entry code.
        assert_eq!(
            (
                config.regs_di,
                config.regs_si,
                config.regs_dx,
                config.regs_r10,
                config.regs_orig_ax
            ),
            (112, 104, 96, 56, 120)
        );
        assert!(config.k_sigaction_size >= 24);
        // A bitfield inside task_struct, not a byte boundary by chance alone.
        assert!(config.task_in_execve_bit < 8 * 16384, "{config:?}");
    }
}
