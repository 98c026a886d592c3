//! The `struct kernel_siginfo *` that signal tracepoints pass, which may be
//! one of two markers instead of a pointer.

use crate::{config::conf, task};

/// `SEND_SIG_NOINFO` (0) and `SEND_SIG_PRIV` (1) are not pointers.
pub const SEND_SIG_PRIV: u64 = 1;
pub const SI_USER: i32 = 0;
pub const SI_QUEUE: i32 = -1;
pub const SI_TKILL: i32 = -6;
pub const SI_KERNEL: i32 = 0x80;

/// `si_code`, as the classic tracepoints' `TP_STORE_SIGINFO` reports it:
/// SI_USER for no info, SI_KERNEL for a privileged kernel signal.
#[inline(always)]
pub fn code(info: u64) -> i32 {
    if info > SEND_SIG_PRIV {
        task::read::<i32>(info as *const u8, conf!(siginfo_code)).unwrap_or(0)
    } else if info == SEND_SIG_PRIV {
        SI_KERNEL
    } else {
        SI_USER
    }
}
