//! `sched_process_wait` (classic): the start of `do_wait`. Says who waits for
//! what; the wait syscall probes say what was reaped.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use reaper_trace_common::{ProcessWaitRecord, kind};

use crate::{config::conf, emit, filter};

const PROBE: &str = "sched_process_wait";

#[tracepoint]
pub fn sched_process_wait(ctx: TracePointContext) -> u32 {
    let _ = try_process_wait(&ctx);
    0
}

fn try_process_wait(ctx: &TracePointContext) -> Result<(), i64> {
    let tgid = emit::current_tgid();
    if !filter::current_is_traced(PROBE, tgid) && !filter::is_self(tgid) {
        return Ok(());
    }
    let Some(mut entry) = emit::reserve::<ProcessWaitRecord>(kind::PROCESS_WAIT) else {
        return Ok(());
    };
    entry.write(ProcessWaitRecord {
        header: emit::current_header(kind::PROCESS_WAIT),
        pid: unsafe { ctx.read_at::<i32>(conf!(wait_pid) as usize) }.unwrap_or(0),
        _pad: 0,
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
