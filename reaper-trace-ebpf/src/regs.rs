//! A syscall's number and arguments, read from the `struct pt_regs` that the
//! raw `sys_enter`/`sys_exit` tracepoints pass, at offsets from BTF.

use aya_ebpf::helpers::bpf_get_current_task;

use crate::{config::conf, task};

/// x86's `TS_COMPAT`: the current syscall came through the 32-bit entry.
const TS_COMPAT: u32 = 0x0002;

pub type Regs = *const u8;

/// The syscall number the task entered with (`orig_ax`: `ax` holds the
/// return value by the time `sys_exit` fires).
#[inline(always)]
pub fn syscall_nr(regs: Regs) -> Result<i64, i64> {
    task::read::<i64>(regs, conf!(regs_orig_ax))
}

/// Argument `n` (0-based) of a 64-bit syscall: rdi, rsi, rdx, r10.
#[inline(always)]
pub fn arg(regs: Regs, n: u32) -> Result<u64, i64> {
    let offset = match n {
        0 => conf!(regs_di),
        1 => conf!(regs_si),
        2 => conf!(regs_dx),
        _ => conf!(regs_r10),
    };
    task::read::<u64>(regs, offset)
}

/// Whether the current syscall is a 32-bit one, whose number means another
/// call in the i386 table. Checked only once the number matched one of ours.
#[inline(always)]
pub fn current_is_compat() -> bool {
    let current = unsafe { bpf_get_current_task() } as task::Task;
    task::read::<u32>(current, conf!(task_ti_status)).is_ok_and(|status| status & TS_COMPAT != 0)
}
