//! `sched_process_exec` (classic): a successful exec. With `--comm`, a process
//! that execs into the wanted name starts being followed here.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_comm, bpf_get_current_task, bpf_probe_read_kernel_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use reaper_trace_common::{COMM_LEN, ExecRecord, kind};

use crate::{config::conf, emit, filter, log::OrLog, task};

const PROBE: &str = "sched_process_exec";

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &TracePointContext) -> Result<(), i64> {
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
    let current = unsafe { bpf_get_current_task() } as task::Task;
    let record = entry.as_mut_ptr();
    // Filled in place: the record is too large for the 512-byte stack.
    unsafe {
        (*record).header = header;
        (*record).pid = ctx.read_at::<u32>(conf!(exec_pid) as usize).unwrap_or(0);
        (*record).old_pid = ctx
            .read_at::<u32>(conf!(exec_old_pid) as usize)
            .unwrap_or(0);
        (*record).process_start_ns = task::process_start_ns(current)
            .or_log(PROBE, "reading the process start time")
            .unwrap_or(0);
        (*record).comm = comm;
        // `__data_loc char[]`: the low 16 bits locate the string in the record.
        let loc = ctx
            .read_at::<u32>(conf!(exec_filename) as usize)
            .unwrap_or(0);
        let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
        let filename = &mut (*record).filename;
        if bpf_probe_read_kernel_str_bytes(src, filename).is_err() {
            filename[0] = 0;
        }
    }
    entry.submit(emit::wakeup_flags());
    Ok(())
}
