//! The user stack where a followed process forks a process or changes its
//! SIGCHLD action: the registers an unwinder starts from and a copy of the
//! top of the stack. Debian's glibc has no frame pointers, so walking them
//! here would lose the caller of fork(), the line users need; userspace
//! unwinds the copy with the modules' `.eh_frame` instead.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_probe_read_user as read_user, generated::bpf_probe_read_user},
};
use reaper_trace_common::{NO_OFFSET, USTACK_PAGES, UserStackRecord, kind, stack_owner};

use crate::{
    config::conf,
    emit, filter, log,
    maps::STACKED,
    regs::{self, Regs, is_nr},
    task,
};

const PROBE: &str = "sys_enter_fork";
const PAGE: usize = 4096;
/// `CLONE_THREAD`: the new task shares the caller's thread group.
const CLONE_THREAD: u64 = 0x0001_0000;

/// clone, clone3, fork or vfork (number `nr`) entered: the stack, when the
/// call makes a process (not a thread) and the caller is traced.
pub fn at_fork(regs: Regs, id: i64) -> Result<(), i64> {
    if !filter::current_is_traced(PROBE, emit::current_tgid()) {
        return Ok(());
    }
    let flags = if is_nr!(id, nr_clone) {
        // clone(flags, newsp, parent_tid, child_tid, tls)
        regs::arg(regs, 0)?
    } else if is_nr!(id, nr_clone3) {
        // clone3(struct clone_args *args, size): flags is its first field.
        unsafe { read_user(regs::arg(regs, 0)? as *const u64) }.map_err(|e| e as i64)?
    } else {
        0
    };
    if flags & CLONE_THREAD != 0 {
        return Ok(());
    }
    if capture(regs, stack_owner::FORK)
        && let Err(e) = STACKED.insert(emit::current_tid(), 1, 0)
    {
        log::failed(PROBE, "adding the thread to STACKED", i64::from(e));
    }
    Ok(())
}

/// Whether the current thread's stack was sent as it entered this fork;
/// forgets it either way (the fork probe asks once per fork).
#[inline(always)]
pub fn take_fork_stack(tid: u32) -> bool {
    conf!(stacks) != 0 && STACKED.remove(tid).is_ok()
}

/// Copies the registers and up to [`USTACK_PAGES`] pages of user stack from
/// the page holding the stack pointer upwards, into one fixed-size record
/// (its size must be a constant for the verifier). Whether it was sent.
pub fn capture(regs: Regs, owner: u32) -> bool {
    let (Ok(ip), Ok(sp), Ok(bp)) = (
        task::read::<u64>(regs, conf!(regs_ip)),
        task::read::<u64>(regs, conf!(regs_sp)),
        task::read::<u64>(regs, conf!(regs_fp)),
    ) else {
        return false;
    };
    // x86_64 has no link register: the return address is on the stack.
    let lr_offset = conf!(regs_lr);
    let lr = if lr_offset == NO_OFFSET {
        0
    } else {
        match task::read::<u64>(regs, lr_offset) {
            Ok(lr) => lr,
            Err(_) => return false,
        }
    };
    // The lifecycle records that follow matter more than a finding's
    // source line.
    let Some(mut entry) = emit::reserve_if_room::<UserStackRecord>(kind::USTACK) else {
        return false;
    };
    let record = entry.as_mut_ptr();
    let base = sp & !(PAGE as u64 - 1);
    // Filled in place: the record is 16 KiB, the BPF stack 512 bytes.
    unsafe {
        (*record).header = emit::current_header(kind::USTACK);
        (*record).owner = owner;
        (*record).ip = ip;
        (*record).sp = sp;
        (*record).bp = bp;
        (*record).lr = lr;
        (*record).base = base;
        let bytes = (&raw mut (*record).bytes).cast::<u8>();
        let mut len = 0u32;
        // Page by page: a read that fails fails whole, and the page above
        // the stack's top is not mapped.
        for page in 0..USTACK_PAGES {
            let at = page * PAGE;
            let copied = bpf_probe_read_user(
                bytes.add(at).cast::<c_void>(),
                PAGE as u32,
                (base + at as u64) as *const c_void,
            );
            if copied != 0 {
                break;
            }
            len += PAGE as u32;
        }
        (*record).len = len;
    }
    // Woken at once: the stack is unwound with the process's maps, which a
    // parent that forks then execs or exits would soon take away.
    entry.submit(emit::BPF_RB_FORCE_WAKEUP);
    true
}
