//! wait4 and waitid, entered and returned (from the raw `sys_enter` and
//! `sys_exit` dispatch): who waited for what, and what each call reaped. The
//! enter probe keeps the arguments per thread so that the exit record is
//! complete on its own.

use aya_ebpf::helpers::{bpf_ktime_get_ns, bpf_probe_read_user};
use reaper_trace_common::{WaitEnterRecord, WaitExitRecord, kind, wait_syscall};

use crate::{
    emit, filter, log,
    maps::{WAIT_ARGS, WaitArgs},
    regs::{self, Regs},
};

const ENTER_PROBE: &str = "sys_enter_wait";
const EXIT_PROBE: &str = "sys_exit_wait";

/// Offsets in the user-space `siginfo_t` (uapi: a 3-int preamble padded to
/// 16 bytes on 64-bit, then `si_pid`, `si_uid`, `si_status`).
const USER_SIGINFO_CODE: usize = 8;
const USER_SIGINFO_PID: usize = 16;
const USER_SIGINFO_STATUS: usize = 24;

/// Reads an `i32` the kernel has just written to user memory, 0 when that
/// fails (a page already gone, or one the read cannot fault in).
#[inline(always)]
fn user_i32(addr: *const i32, what: &'static str) -> i32 {
    match unsafe { bpf_probe_read_user(addr) } {
        Ok(value) => value,
        Err(_) => {
            log::failed_at(EXIT_PROBE, what, addr as u64);
            0
        }
    }
}

fn wanted(probe: &'static str) -> bool {
    let tgid = emit::current_tgid();
    filter::current_is_traced(probe, tgid) || filter::is_self(tgid)
}

/// wait4(upid, stat_addr, options, ru) or waitid(which, upid, infop,
/// options, ru) entered; `syscall` says which.
pub fn enter(regs: Regs, syscall: u32) -> Result<(), i64> {
    // Untraced callers cost nothing here: if one reaps a traced child, the
    // exit probe still sees it through wait4's return value.
    if !wanted(ENTER_PROBE) {
        return Ok(());
    }
    // Registers are 64-bit; the low half holds an int.
    let args = if syscall == wait_syscall::WAIT4 {
        WaitArgs {
            syscall,
            which: 0,
            upid: regs::arg(regs, 0)? as i32,
            options: regs::arg(regs, 2)? as i32,
            user_ptr: regs::arg(regs, 1)?,
            enter_ktime_ns: unsafe { bpf_ktime_get_ns() },
        }
    } else {
        WaitArgs {
            syscall,
            which: regs::arg(regs, 0)? as i32,
            upid: regs::arg(regs, 1)? as i32,
            options: regs::arg(regs, 3)? as i32,
            user_ptr: regs::arg(regs, 2)?,
            enter_ktime_ns: unsafe { bpf_ktime_get_ns() },
        }
    };
    let header = emit::current_header(kind::WAIT_ENTER);
    if let Err(errno) = WAIT_ARGS.insert(header.tid, args, 0) {
        // The exit record then says the arguments are unknown.
        log::failed(
            ENTER_PROBE,
            "adding the call's arguments to WAIT_ARGS",
            i64::from(errno),
        );
    }
    let Some(mut entry) = emit::reserve::<WaitEnterRecord>(kind::WAIT_ENTER) else {
        return Ok(());
    };
    entry.write(WaitEnterRecord {
        header,
        syscall,
        which: args.which,
        upid: args.upid,
        options: args.options,
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}

/// wait4 or waitid (`syscall`: its [`wait_syscall`] tag) returned `ret`.
pub fn exit(syscall: u32, ret: i64) -> Result<(), i64> {
    let header = emit::current_header(kind::WAIT_EXIT);
    let args = match unsafe { WAIT_ARGS.get(header.tid) }.copied() {
        Some(args) => args,
        // A wait that began before tracing: only the return is known.
        None => WaitArgs {
            syscall: wait_syscall::UNKNOWN_ARGS | syscall,
            which: 0,
            upid: 0,
            options: 0,
            user_ptr: 0,
            enter_ktime_ns: 0,
        },
    };
    let _ = WAIT_ARGS.remove(header.tid);
    let (reaped_pid, status, si_code) = if args.user_ptr == 0 {
        (
            if args.syscall == wait_syscall::WAIT4 && ret > 0 {
                ret as i32
            } else {
                0
            },
            0,
            0,
        )
    } else if args.syscall == wait_syscall::WAIT4 {
        if ret > 0 {
            let status = user_i32(
                args.user_ptr as *const i32,
                "reading wait4's status from user memory",
            );
            (ret as i32, status, 0)
        } else {
            (0, 0, 0)
        }
    } else if ret == 0 {
        let infop = args.user_ptr as *const u8;
        let at = |off: usize| unsafe { infop.add(off) }.cast::<i32>();
        (
            user_i32(
                at(USER_SIGINFO_PID),
                "reading waitid's si_pid from user memory",
            ),
            user_i32(
                at(USER_SIGINFO_STATUS),
                "reading waitid's si_status from user memory",
            ),
            user_i32(
                at(USER_SIGINFO_CODE),
                "reading waitid's si_code from user memory",
            ),
        )
    } else {
        (0, 0, 0)
    };
    // Without arguments, a positive return is wait4's reaped pid (waitid
    // returns 0); userspace tells the two apart by syscall number.
    let reaped_or_ret = if args.syscall & wait_syscall::UNKNOWN_ARGS != 0 {
        ret as i32
    } else {
        reaped_pid
    };
    if !wanted(EXIT_PROBE) && (reaped_or_ret <= 0 || !filter::is_traced(reaped_or_ret as u32)) {
        return Ok(());
    }
    let Some(mut entry) = emit::reserve::<WaitExitRecord>(kind::WAIT_EXIT) else {
        return Ok(());
    };
    entry.write(WaitExitRecord {
        header,
        syscall: args.syscall,
        which: args.which,
        upid: args.upid,
        options: args.options,
        ret,
        reaped_pid,
        status,
        si_code,
        _pad: 0,
        enter_ktime_ns: args.enter_ktime_ns,
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
