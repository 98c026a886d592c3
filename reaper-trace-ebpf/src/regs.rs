//! A syscall's number and arguments, read from the `struct pt_regs` that the
//! raw `sys_enter`/`sys_exit` tracepoints pass, at offsets from BTF. Which
//! registers those are is the loader's business (per architecture): the
//! programs only see offsets.

use aya_ebpf::helpers::bpf_get_current_task;

use crate::{config::conf, task};

pub type Regs = *const u8;

/// The syscall number the task entered with (x86's `orig_ax`, since `ax`
/// holds the return value by the time `sys_exit` fires; aarch64's
/// `syscallno`, an int).
#[inline(always)]
pub fn syscall_nr(regs: Regs) -> Result<i64, i64> {
    task::read::<i32>(regs, conf!(regs_nr)).map(i64::from)
}

/// Argument `n` (0-based, up to 3) of a 64-bit syscall.
#[inline(always)]
pub fn arg(regs: Regs, n: u32) -> Result<u64, i64> {
    let offset = match n {
        0 => conf!(regs_arg0),
        1 => conf!(regs_arg1),
        2 => conf!(regs_arg2),
        _ => conf!(regs_arg3),
    };
    task::read::<u64>(regs, offset)
}

/// Whether the current syscall is a 32-bit one (x86's int 0x80 or
/// AArch32), whose number means another call in another table. Checked only
/// once the number matched one of ours.
#[inline(always)]
pub fn is_compat(regs: Regs) -> bool {
    let base = if conf!(compat_in_regs) != 0 {
        regs
    } else {
        (unsafe { bpf_get_current_task() }) as task::Task
    };
    task::read::<u32>(base, conf!(compat_offset)).is_ok_and(|word| word & conf!(compat_mask) != 0)
}

/// Whether `id` is this architecture's number for the call whose `Config`
/// field is given (`NONE` matches no id: the numbers are non-negative
/// `i64`s, `NONE` is `u32::MAX`, which no table reaches).
macro_rules! is_nr {
    ($id:expr, $field:ident) => {
        $id == i64::from($crate::config::conf!($field))
    };
}
pub(crate) use is_nr;
