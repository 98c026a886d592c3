//! `syscalls/sys_exit_{clone,clone3,fork,vfork}` (classic): failed forks,
//! counted per (tgid, errno) and reported. An init stuck on ENOMEM stops
//! reaping; this is how that shows.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use reaper_trace_common::{ForkFailKey, ForkFailedRecord, kind};

use crate::{config::conf, emit, filter, log, maps::FORK_FAILS};

const PROBE: &str = "sys_exit_fork";

#[tracepoint]
pub fn sys_exit_fork(ctx: TracePointContext) -> u32 {
    let _ = try_fork_exit(&ctx);
    0
}

fn try_fork_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let ret: i64 = unsafe { ctx.read_at(conf!(sys_exit_ret) as usize) }.map_err(|e| e as i64)?;
    if ret >= 0 {
        return Ok(());
    }
    let header = emit::current_header(kind::FORK_FAILED);
    if !filter::current_is_traced(PROBE, header.tgid) {
        return Ok(());
    }
    let errno = (-ret) as i32;
    let key = ForkFailKey {
        tgid: header.tgid,
        errno: errno as u32,
    };
    match FORK_FAILS.get_ptr_mut(key) {
        Some(count) => unsafe { *count += 1 },
        None => {
            if let Err(e) = FORK_FAILS.insert(key, 1, 0) {
                log::failed(PROBE, "adding a count to FORK_FAILS", i64::from(e));
            }
        }
    }
    let Some(mut entry) = emit::reserve::<ForkFailedRecord>(kind::FORK_FAILED) else {
        return Ok(());
    };
    entry.write(ForkFailedRecord {
        header,
        syscall_nr: unsafe { ctx.read_at::<i32>(conf!(sys_nr) as usize) }.unwrap_or(-1),
        errno,
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
