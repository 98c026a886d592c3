//! `sched_process_free` (raw): the task struct is released, after its reap.
//! The one hook that sees every reap: by wait, by autoreap, by an adopting
//! reaper, and of threads. Runs in softirq context, so `current` is unrelated
//! and everything is read from the task argument.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use reaper_trace_common::{COMM_LEN, FreeRecord, kind};

use crate::{config::conf, emit, filter, log::OrLog, task};

const PROBE: &str = "sched_process_free";

#[raw_tracepoint(tracepoint = "sched_process_free")]
pub fn sched_process_free(ctx: RawTracePointContext) -> u32 {
    let _ = try_free(&ctx);
    0
}

fn try_free(ctx: &RawTracePointContext) -> Result<(), i64> {
    let freed: task::Task = ctx.arg(0);
    let tgid = task::tgid(freed)?;
    let tid = task::pid(freed)?;
    if !filter::is_traced(tgid) || (tid != tgid && conf!(thread_events) == 0) {
        return Ok(());
    }
    let process_start_ns = task::process_start_ns(freed)
        .or_log(PROBE, "reading the process start time")
        .unwrap_or(0);
    // The tgid stays followed: RCU may run the frees of the process's other
    // threads after the leader's. Userspace unfollows it a little later.
    let Some(mut entry) = emit::reserve::<FreeRecord>(kind::FREE) else {
        return Ok(());
    };
    let mut comm = [0u8; COMM_LEN];
    task::comm(freed, &mut comm);
    entry.write(FreeRecord {
        header: emit::header(kind::FREE, tgid, tid, 0),
        process_start_ns,
        start_ns: task::start_ns(freed).unwrap_or(0),
        exit_code: task::read::<i32>(freed, conf!(task_exit_code)).unwrap_or(0),
        // Who released it: a child whose parent died first was reparented
        // after its exit record was written, so its exit names a parent
        // that never reaped it.
        real_parent_tgid: task::real_parent_tgid(freed).unwrap_or(0),
        comm,
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
