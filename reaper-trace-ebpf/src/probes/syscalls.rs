//! The raw `sys_enter` and `sys_exit` tracepoints, dispatching on the
//! syscall number to the wait, sigaction and fork-failure probes.
//!
//! One raw tracepoint per direction rather than a classic tracepoint per
//! syscall: detaching a classic (perf) tracepoint waits for an RCU grace
//! period each, which cost `check` most of a second at exit; a raw
//! tracepoint detaches at once. The classic per-syscall tracepoints are
//! themselves a filter run on these same two hooks, so every syscall already
//! paid for one call here; the number test comes first and is the whole
//! cost for the others.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use reaper_trace_common::{syscall_nr as nr, wait_syscall};

use super::{fork_failed, sigaction, user_stack, wait_syscalls};
use crate::{
    config::conf,
    regs::{self, Regs},
};

/// clone, clone3, fork or vfork: the calls that may make a process.
#[inline(always)]
fn is_fork(id: i64) -> bool {
    id == nr::CLONE || id == nr::CLONE3 || id == nr::FORK || id == nr::VFORK
}

/// TP_PROTO(struct pt_regs *regs, long id)
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> u32 {
    let id: i64 = ctx.arg(1);
    let fork = is_fork(id);
    if id != nr::WAIT4 && id != nr::WAITID && id != nr::RT_SIGACTION && !fork {
        return 0;
    }
    if fork && conf!(stacks) == 0 {
        return 0;
    }
    if regs::current_is_compat() {
        return 0;
    }
    let regs: Regs = ctx.arg(0);
    let _ = match id {
        nr::WAIT4 => wait_syscalls::enter(regs, wait_syscall::WAIT4),
        nr::WAITID => wait_syscalls::enter(regs, wait_syscall::WAITID),
        nr::RT_SIGACTION => sigaction::enter(regs),
        _ => user_stack::at_fork(regs, id),
    };
    0
}

/// TP_PROTO(struct pt_regs *regs, long ret)
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> u32 {
    let regs: Regs = ctx.arg(0);
    let Ok(id) = regs::syscall_nr(regs) else {
        return 0;
    };
    let is_wait = id == nr::WAIT4 || id == nr::WAITID;
    if !(is_wait || is_fork(id)) || regs::current_is_compat() {
        return 0;
    }
    let ret: i64 = ctx.arg(1);
    let _ = if is_wait {
        wait_syscalls::exit(id, ret)
    } else {
        fork_failed::exit(id, ret)
    };
    0
}
