//! clone, clone3, fork and vfork returned (from the raw `sys_exit`
//! dispatch): failed forks, counted per (tgid, errno) and reported. An init
//! stuck on ENOMEM stops reaping; this is how that shows.

use reaper_trace_common::{ForkFailKey, ForkFailedRecord, kind};

use crate::{emit, filter, log, maps::FORK_FAILS};

const PROBE: &str = "sys_exit_fork";

/// A fork-family syscall (number `nr`) returned `ret`.
pub fn exit(nr: i64, ret: i64) -> Result<(), i64> {
    if ret >= 0 {
        return Ok(());
    }
    let header = emit::current_header(kind::FORK_FAILED);
    if !filter::current_is_traced(PROBE, header.tgid) {
        return Ok(());
    }
    // The stack sent as it entered belongs to no fork.
    super::user_stack::take_fork_stack(header.tid);
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
        syscall_nr: nr as i32,
        errno,
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
