//! `task_rename` (raw): a task's name changed after exec (`prctl(PR_SET_NAME)`,
//! `pthread_setname_np`, a write to `/proc/PID/comm`), so that a parent that
//! renames itself is shown under the name `ps` shows. The tracepoint fires
//! before the kernel copies the new name in: `task->comm` still holds the
//! old one.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_probe_read_kernel_str_bytes},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use reaper_trace_common::{COMM_LEN, TaskRenameRecord, kind};

use crate::{config::conf, emit, filter, log::OrLog, task};

const PROBE: &str = "task_rename";

#[raw_tracepoint(tracepoint = "task_rename")]
pub fn task_rename(ctx: RawTracePointContext) -> u32 {
    let _ = try_rename(&ctx);
    0
}

/// Whether `renamed` is the current task and it is in execve: exec names
/// the task after its new image, which the EXEC record says already.
#[inline(always)]
fn in_execve(renamed: task::Task, current: task::Task) -> bool {
    let bit = conf!(task_in_execve_bit);
    if bit == u32::MAX || renamed != current {
        return false;
    }
    task::read::<u8>(current, bit / 8).is_ok_and(|byte| byte & (1 << (bit % 8)) != 0)
}

fn try_rename(ctx: &RawTracePointContext) -> Result<(), i64> {
    // TP_PROTO(struct task_struct *task, const char *comm)
    let renamed: task::Task = ctx.arg(0);
    let current = unsafe { bpf_get_current_task() } as task::Task;
    if in_execve(renamed, current) {
        return Ok(());
    }
    let tgid = task::tgid(renamed)?;
    let tid = task::pid(renamed)?;
    if tid != tgid && conf!(thread_events) == 0 {
        return Ok(());
    }
    let mut new_comm = [0u8; COMM_LEN];
    let src: *const u8 = ctx.arg(1);
    if unsafe { bpf_probe_read_kernel_str_bytes(src, &mut new_comm) }.is_err() {
        new_comm = [0; COMM_LEN];
    }
    // `--comm`: a process that renames itself into the wanted name is
    // followed from here on, as one that execs into it is.
    if tid == tgid && filter::comm_matches(&new_comm) {
        filter::follow(PROBE, tgid);
    }
    let traced = if renamed == current {
        filter::current_is_traced(PROBE, tgid)
    } else {
        filter::is_traced(tgid)
    };
    if !traced {
        return Ok(());
    }
    let Some(mut entry) = emit::reserve::<TaskRenameRecord>(kind::TASK_RENAME) else {
        return Ok(());
    };
    let cgroup_id = if renamed == current {
        emit::current_cgroup()
    } else {
        0
    };
    let mut old_comm = [0u8; COMM_LEN];
    task::comm(renamed, &mut old_comm);
    entry.write(TaskRenameRecord {
        header: emit::header(kind::TASK_RENAME, tgid, tid, cgroup_id),
        process_start_ns: task::process_start_ns(renamed)
            .or_log(PROBE, "reading the process start time")
            .unwrap_or(0),
        old_comm,
        new_comm,
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
