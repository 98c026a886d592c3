//! `sched_process_wait` (raw): the start of `do_wait`. Says who waits for
//! what; the wait syscall probes say what was reaped.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use reaper_trace_common::{ProcessWaitRecord, kind};

use crate::{config::conf, emit, filter, task};

const PROBE: &str = "sched_process_wait";

#[raw_tracepoint(tracepoint = "sched_process_wait")]
pub fn sched_process_wait(ctx: RawTracePointContext) -> u32 {
    let _ = try_process_wait(&ctx);
    0
}

fn try_process_wait(ctx: &RawTracePointContext) -> Result<(), i64> {
    // TP_PROTO(struct pid *pid): NULL when waiting for any child.
    let tgid = emit::current_tgid();
    if !filter::current_is_traced(PROBE, tgid) && !filter::is_self(tgid) {
        return Ok(());
    }
    let Some(mut entry) = emit::reserve::<ProcessWaitRecord>(kind::PROCESS_WAIT) else {
        return Ok(());
    };
    let pid: *const u8 = ctx.arg(0);
    entry.write(ProcessWaitRecord {
        header: emit::current_header(kind::PROCESS_WAIT),
        pid: if pid.is_null() {
            0
        } else {
            // pid_nr(): the number in the initial namespace, numbers[0].
            task::read::<i32>(pid, conf!(pid_numbers) + conf!(upid_nr)).unwrap_or(0)
        },
        _pad: 0,
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
