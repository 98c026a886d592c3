//! Reading `task_struct` fields at the offsets the loader resolved from BTF.

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf};
use reaper_trace_common::{COMM_LEN, NS_LEVELS};

use crate::config::conf;

pub type Task = *const u8;

const EINVAL: i64 = 22;

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read<T>(base: *const u8, offset: u32) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel(base.add(offset as usize).cast::<T>()) }.map_err(|e| e as i64)
}

#[inline(always)]
pub fn tgid(task: Task) -> Result<u32, i64> {
    read::<u32>(task, conf!(task_tgid))
}

#[inline(always)]
pub fn pid(task: Task) -> Result<u32, i64> {
    read::<u32>(task, conf!(task_pid))
}

#[inline(always)]
pub fn start_ns(task: Task) -> Result<u64, i64> {
    read::<u64>(task, conf!(task_start_time))
}

/// The tgid of the task's real parent (not its tracer).
#[inline(always)]
pub fn real_parent_tgid(task: Task) -> Result<u32, i64> {
    let parent: Task = read(task, conf!(task_real_parent))?;
    tgid(parent)
}

/// Start time of the task's thread-group leader: with the tgid, the identity
/// of the process.
#[inline(always)]
pub fn process_start_ns(task: Task) -> Result<u64, i64> {
    let leader: Task = read(task, conf!(task_group_leader))?;
    start_ns(leader)
}

#[inline(always)]
pub fn comm(task: Task, out: &mut [u8; COMM_LEN]) {
    let src = unsafe { task.add(conf!(task_comm) as usize) };
    if unsafe { bpf_probe_read_kernel_buf(src, out) }.is_err() {
        *out = [0; COMM_LEN];
    }
}

/// A task's namespace depth, its pid at each level (outermost first; the
/// innermost NS_LEVELS when it is deeper) and each level's namespace inode.
pub type NsPids = (u32, [u32; NS_LEVELS], [u32; NS_LEVELS]);

/// The task's [`NsPids`]; `None` in the initial namespace (level 0), where
/// the global pid says it all.
#[inline(always)]
pub fn ns_pids(task: Task) -> Result<Option<NsPids>, i64> {
    let pid: *const u8 = read(task, conf!(task_thread_pid))?;
    let level = read::<u32>(pid, conf!(pid_level))?;
    if level == 0 {
        return Ok(None);
    }
    let mut nr = [0u32; NS_LEVELS];
    let mut ns = [0u32; NS_LEVELS];
    let numbers = unsafe { pid.add(conf!(pid_numbers) as usize) };
    let size = conf!(upid_size) as usize;
    // The innermost levels: past NS_LEVELS deep, the outermost are dropped
    // (the global pid is the record's child_tgid anyway).
    let first = (level as usize + 1).saturating_sub(NS_LEVELS);
    for i in 0..NS_LEVELS {
        let at = first + i;
        if at > level as usize {
            break;
        }
        let upid = unsafe { numbers.add(at * size) };
        nr[i] = read::<u32>(upid, conf!(upid_nr))?;
        let namespace: *const u8 = read(upid, conf!(upid_ns))?;
        ns[i] = read::<u32>(namespace, conf!(pid_ns_inum))?;
    }
    Ok(Some((level, nr, ns)))
}

/// The task's action for signal `sig`: (handler, flags).
#[inline(always)]
pub fn sigaction(task: Task, sig: i32) -> Result<(u64, u64), i64> {
    if !(1..=64).contains(&sig) {
        // Cannot happen: every caller passes a valid signal number.
        return Err(-EINVAL);
    }
    let sighand: *const u8 = read(task, conf!(task_sighand))?;
    let offset = conf!(sighand_action) + (sig as u32 - 1) * conf!(k_sigaction_size);
    let action = unsafe { sighand.add(offset as usize) };
    Ok((
        read::<u64>(action, conf!(sigaction_handler))?,
        read::<u64>(action, conf!(sigaction_flags))?,
    ))
}
