//! `sched_process_exec` (raw): a successful exec. With `--comm`, a process
//! that execs into the wanted name starts being followed here.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_probe_read_kernel_str_bytes},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use reaper_trace_common::{COMM_LEN, ExecRecord, kind};

use crate::{config::conf, emit, filter, log::OrLog, task};

const PROBE: &str = "sched_process_exec";

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &RawTracePointContext) -> Result<(), i64> {
    // TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
    let header = emit::current_header(kind::EXEC);
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    if filter::comm_matches(&comm) {
        filter::follow(PROBE, header.tgid);
    }
    if !filter::current_is_traced(PROBE, header.tgid) {
        return Ok(());
    }
    let Some(mut entry) = emit::reserve::<ExecRecord>(kind::EXEC) else {
        return Ok(());
    };
    let execed: task::Task = ctx.arg(0);
    let bprm: *const u8 = ctx.arg(2);
    let record = entry.as_mut_ptr();
    // Filled in place: the record is too large for the 512-byte stack.
    unsafe {
        (*record).header = header;
        (*record).pid = task::pid(execed).unwrap_or(0);
        (*record).old_pid = ctx.arg::<u64>(1) as u32;
        (*record).process_start_ns = task::process_start_ns(execed)
            .or_log(PROBE, "reading the process start time")
            .unwrap_or(0);
        (*record).comm = comm;
        let filename = &mut (*record).filename;
        let read = task::read::<*const u8>(bprm, conf!(binprm_filename))
            .and_then(|src| bpf_probe_read_kernel_str_bytes(src, filename).map_err(|e| e as i64));
        if read.is_err() {
            filename[0] = 0;
        }
    }
    entry.submit(emit::wakeup_flags());
    Ok(())
}
