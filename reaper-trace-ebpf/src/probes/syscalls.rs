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
use reaper_trace_common::wait_syscall;

use super::{fork_failed, sigaction, user_stack, wait_syscalls};
use crate::{
    config::conf,
    regs::{self, Regs, is_nr},
};

/// clone, clone3, fork or vfork: the calls that may make a process (the
/// numbers are this architecture's, from `CONFIG`; arm64 has no fork or
/// vfork).
#[inline(always)]
fn is_fork(id: i64) -> bool {
    is_nr!(id, nr_clone) || is_nr!(id, nr_clone3) || is_nr!(id, nr_fork) || is_nr!(id, nr_vfork)
}

/// wait4 or waitid: the tag wait records carry ([`wait_syscall`]), the same
/// on every architecture; `None` for another call.
#[inline(always)]
fn wait_tag(id: i64) -> Option<u32> {
    if is_nr!(id, nr_wait4) {
        Some(wait_syscall::WAIT4)
    } else if is_nr!(id, nr_waitid) {
        Some(wait_syscall::WAITID)
    } else {
        None
    }
}

/// TP_PROTO(struct pt_regs *regs, long id)
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> u32 {
    let id: i64 = ctx.arg(1);
    let wait = wait_tag(id);
    let sigaction = is_nr!(id, nr_rt_sigaction);
    let fork = is_fork(id);
    if wait.is_none() && !sigaction && !fork {
        return 0;
    }
    if fork && conf!(stacks) == 0 {
        return 0;
    }
    let regs: Regs = ctx.arg(0);
    if regs::is_compat(regs) {
        return 0;
    }
    let _ = if let Some(tag) = wait {
        wait_syscalls::enter(regs, tag)
    } else if sigaction {
        sigaction::enter(regs)
    } else {
        user_stack::at_fork(regs, id)
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
    let wait = wait_tag(id);
    if (wait.is_none() && !is_fork(id)) || regs::is_compat(regs) {
        return 0;
    }
    let ret: i64 = ctx.arg(1);
    let _ = if let Some(tag) = wait {
        wait_syscalls::exit(tag, ret)
    } else {
        fork_failed::exit(id, ret)
    };
    0
}
