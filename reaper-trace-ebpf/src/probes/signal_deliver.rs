//! `signal_deliver` (classic): the target dequeued a signal in `get_signal`.
//! Never fires for a signal read through a signalfd, nor for an ignored one.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use reaper_trace_common::{SIGCHLD, SIGKILL, SignalDeliverRecord, kind};

use crate::{config::conf, emit, filter};

const PROBE: &str = "signal_deliver";

#[tracepoint]
pub fn signal_deliver(ctx: TracePointContext) -> u32 {
    let _ = try_signal_deliver(&ctx);
    0
}

fn try_signal_deliver(ctx: &TracePointContext) -> Result<(), i64> {
    let sig: i32 = unsafe { ctx.read_at(conf!(deliver_sig) as usize) }.map_err(|e| e as i64)?;
    if sig != SIGCHLD && sig != SIGKILL {
        return Ok(());
    }
    if !filter::current_is_traced(PROBE, emit::current_tgid()) {
        return Ok(());
    }
    let Some(mut entry) = emit::reserve::<SignalDeliverRecord>(kind::SIGNAL_DELIVER) else {
        return Ok(());
    };
    entry.write(SignalDeliverRecord {
        header: emit::current_header(kind::SIGNAL_DELIVER),
        sig,
        code: unsafe { ctx.read_at::<i32>(conf!(deliver_code) as usize) }.unwrap_or(0),
        sa_handler: unsafe { ctx.read_at::<u64>(conf!(deliver_handler) as usize) }.unwrap_or(0),
        sa_flags: unsafe { ctx.read_at::<u64>(conf!(deliver_flags) as usize) }.unwrap_or(0),
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
