//! `signal_deliver` (raw): the target dequeued a signal in `get_signal`.
//! Never fires for a signal read through a signalfd, nor for an ignored one.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use reaper_trace_common::{SIGCHLD, SIGKILL, SignalDeliverRecord, kind};

use crate::{config::conf, emit, filter, siginfo, task};

const PROBE: &str = "signal_deliver";

#[raw_tracepoint(tracepoint = "signal_deliver")]
pub fn signal_deliver(ctx: RawTracePointContext) -> u32 {
    let _ = try_signal_deliver(&ctx);
    0
}

fn try_signal_deliver(ctx: &RawTracePointContext) -> Result<(), i64> {
    // TP_PROTO(int sig, struct kernel_siginfo *info, struct k_sigaction *ka)
    let sig = ctx.arg::<u64>(0) as i32;
    if sig != SIGCHLD && sig != SIGKILL {
        return Ok(());
    }
    if !filter::current_is_traced(PROBE, emit::current_tgid()) {
        return Ok(());
    }
    let Some(mut entry) = emit::reserve::<SignalDeliverRecord>(kind::SIGNAL_DELIVER) else {
        return Ok(());
    };
    let action: *const u8 = ctx.arg(2);
    let (sa_handler, sa_flags) = if action.is_null() {
        (0, 0)
    } else {
        (
            task::read::<u64>(action, conf!(sigaction_handler)).unwrap_or(0),
            task::read::<u64>(action, conf!(sigaction_flags)).unwrap_or(0),
        )
    };
    entry.write(SignalDeliverRecord {
        header: emit::current_header(kind::SIGNAL_DELIVER),
        sig,
        code: siginfo::code(ctx.arg(1)),
        sa_handler,
        sa_flags,
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
