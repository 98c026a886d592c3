//! rt_sigaction entered (from the raw `sys_enter` dispatch) for SIGCHLD: a
//! handler, SIG_IGN or SIG_DFL being installed while we trace.

use aya_ebpf::helpers::{bpf_get_current_comm, bpf_probe_read_user};
use reaper_trace_common::{COMM_LEN, SIGCHLD, SigactionRecord, header_flags, kind, stack_owner};

use crate::{
    config::conf,
    emit, filter, log,
    regs::{self, Regs},
};

const PROBE: &str = "sys_enter_rt_sigaction";

/// The kernel's `struct sigaction` as passed by rt_sigaction on x86_64:
/// handler, flags, restorer, mask.
#[repr(C)]
#[derive(Clone, Copy)]
struct UserSigaction {
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
}

/// rt_sigaction(sig, act, oact, sigsetsize) entered.
pub fn enter(regs: Regs) -> Result<(), i64> {
    let sig = regs::arg(regs, 0)? as i32;
    if sig != SIGCHLD {
        return Ok(());
    }
    let act = regs::arg(regs, 1)?;
    if act == 0 || !filter::current_is_traced(PROBE, emit::current_tgid()) {
        return Ok(());
    }
    // Fails when the caller passed a bad pointer (the syscall then fails
    // with EFAULT too) or one to a page not yet faulted in.
    let action = match unsafe { bpf_probe_read_user(act as *const UserSigaction) } {
        Ok(action) => action,
        Err(errno) => {
            log::failed_at(
                PROBE,
                "reading the new SIGCHLD action from user memory",
                act,
            );
            return Err(errno as i64);
        }
    };
    // Before its SIGACTION record, as a fork's stack comes before its FORK,
    // which says so (HAS_STACK).
    let stacked = conf!(stacks) != 0 && super::user_stack::capture(regs, stack_owner::SIGACTION);
    let Some(mut entry) = emit::reserve::<SigactionRecord>(kind::SIGACTION) else {
        return Ok(());
    };
    entry.write(SigactionRecord {
        header: {
            let mut header = emit::current_header(kind::SIGACTION);
            if stacked {
                header.flags |= header_flags::HAS_STACK;
            }
            header
        },
        sig,
        _pad: 0,
        handler: action.handler,
        flags: action.flags,
        mask: action.mask,
        // The thread's own name: the thread that changed SIGCHLD, named.
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
