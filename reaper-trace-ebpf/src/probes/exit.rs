//! `sched_process_exit` (raw): a thread finished `do_exit`. Fires once per
//! thread; `group_dead` tells the last one.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use reaper_trace_common::{COMM_LEN, ExitRecord, SIGCHLD, kind};

use crate::{config::conf, emit, filter, log::OrLog, task};

const PROBE: &str = "sched_process_exit";

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let exiting: task::Task = ctx.arg(0);
    // The exiting task is the current one: no memory read before filtering.
    let tgid = emit::current_tgid();
    if !filter::current_is_traced(PROBE, tgid) {
        return Ok(());
    }
    let group_dead = if conf!(exit_has_group_dead) != 0 {
        // 6.16+: TP_PROTO(struct task_struct *p, bool group_dead).
        let dead: u64 = ctx.arg(1);
        dead as u8 != 0
    } else {
        // Older kernels: do_exit has already decremented signal->live.
        let signal: *const u8 = task::read(exiting, conf!(task_signal))?;
        task::read::<i32>(signal, conf!(signal_live)).or_log(PROBE, "reading signal->live")? == 0
    };
    let tid = task::pid(exiting).unwrap_or(0);
    if tid != tgid && !group_dead && conf!(thread_events) == 0 {
        // A thread leaving a live group: nothing the analysis needs.
        return Ok(());
    }
    let Some(mut entry) = emit::reserve::<ExitRecord>(kind::EXIT) else {
        return Ok(());
    };
    let mut comm = [0u8; COMM_LEN];
    task::comm(exiting, &mut comm);
    let parent: task::Task =
        task::read(exiting, conf!(task_real_parent)).unwrap_or(core::ptr::null());
    let (parent_handler, parent_flags) = if group_dead && !parent.is_null() {
        task::sigaction(parent, SIGCHLD)
            .or_log(PROBE, "reading the parent's SIGCHLD action")
            .unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    entry.write(ExitRecord {
        header: emit::header(kind::EXIT, tgid, tid, emit::current_cgroup()),
        exit_code: task::read::<i32>(exiting, conf!(task_exit_code)).unwrap_or(0),
        exit_signal: task::read::<i32>(exiting, conf!(task_exit_signal)).unwrap_or(0),
        real_parent_tgid: if parent.is_null() {
            0
        } else {
            task::tgid(parent)
                .or_log(PROBE, "reading the parent's tgid")
                .unwrap_or(0)
        },
        group_dead: group_dead as u32,
        process_start_ns: task::process_start_ns(exiting)
            .or_log(PROBE, "reading the process start time")
            .unwrap_or(0),
        parent_sigchld_handler: parent_handler,
        parent_sigchld_flags: parent_flags,
        comm,
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
