//! `sched_process_fork` (raw): every new task, threads included.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use reaper_trace_common::{ForkRecord, NsPidsRecord, header_flags, kind};

use crate::{config::conf, emit, filter, log::OrLog, task};

const PROBE: &str = "sched_process_fork";

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), i64> {
    let parent: task::Task = ctx.arg(0);
    let child: task::Task = ctx.arg(1);
    // The parent is the current task: filter before reading any memory.
    let parent_tgid = emit::current_tgid();
    if !filter::current_is_traced(PROBE, parent_tgid) {
        return Ok(());
    }
    let child_tgid = task::tgid(child)?;
    let is_thread = child_tgid == parent_tgid;
    if !is_thread {
        // Follow the child before it can run, so nothing it does is missed.
        filter::follow(PROBE, child_tgid);
    } else if conf!(thread_events) == 0 {
        return Ok(());
    }
    let Some(mut entry) = emit::reserve::<ForkRecord>(kind::FORK) else {
        return Ok(());
    };
    let mut comm = [0u8; reaper_trace_common::COMM_LEN];
    task::comm(child, &mut comm);
    let mut header = emit::current_header(kind::FORK);
    if !is_thread && super::user_stack::take_fork_stack(header.tid) {
        header.flags |= header_flags::HAS_STACK;
    }
    entry.write(ForkRecord {
        header,
        child_tgid,
        child_tid: task::pid(child).unwrap_or(0),
        child_start_ns: task::start_ns(child).unwrap_or(0),
        parent_start_ns: task::process_start_ns(parent)
            .or_log(PROBE, "reading the parent's start time")
            .unwrap_or(0),
        is_thread: is_thread as u32,
        real_parent_tgid: task::real_parent_tgid(child)
            .or_log(PROBE, "reading the child's real parent")
            .unwrap_or(0),
        comm,
    });
    entry.submit(emit::wakeup_flags());
    if !is_thread {
        ns_pids(child, child_tgid)?;
    }
    Ok(())
}

/// For a child outside the initial pid namespace, its pid at each level:
/// what turns its waits' and SIGCHLD's namespace pids back into global ones.
#[inline(always)]
fn ns_pids(child: task::Task, child_tgid: u32) -> Result<(), i64> {
    // Read through the child's struct pid: where a wrong offset would show.
    let Some((level, nr, ns)) =
        task::ns_pids(child).or_log(PROBE, "reading the child's namespace pids")?
    else {
        return Ok(());
    };
    let Some(mut entry) = emit::reserve::<NsPidsRecord>(kind::NS_PIDS) else {
        return Ok(());
    };
    entry.write(NsPidsRecord {
        header: emit::current_header(kind::NS_PIDS),
        child_tgid,
        level,
        nr,
        ns,
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
