//! Reserving records in the ring buffer, and counting the ones that do not fit.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    maps::ring_buf::RingBufEntry,
};
use reaper_trace_common::Header;

use crate::{
    config::conf,
    maps::{EVENTS, LOST},
};

/// Reserves a record of type `T`; when the buffer is full, counts the loss
/// against `kind` so that userspace can report it.
#[inline(always)]
pub fn reserve<T: 'static>(kind: u32) -> Option<RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count_lost(kind);
    }
    entry
}

/// [`reserve`], for a record that must not crowd out the others (a 16 KiB
/// stack copy): refused, and counted lost, once half the buffer is waiting.
#[inline(always)]
pub fn reserve_if_room<T: 'static>(kind: u32) -> Option<RingBufEntry<T>> {
    if EVENTS.query(BPF_RB_AVAIL_DATA) > u64::from(conf!(ringbuf_bytes) / 2) {
        count_lost(kind);
        return None;
    }
    reserve(kind)
}

#[inline(always)]
fn count_lost(kind: u32) {
    if let Some(counter) = LOST.get_ptr_mut(kind) {
        // Per-CPU slot: no other writer can race this increment.
        unsafe { *counter += 1 };
    }
}

const BPF_RB_NO_WAKEUP: u64 = 1;
/// Submit flag that wakes the reader at once, whatever is pending.
pub const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Flags for submitting a record. Waking the reader costs the traced task
/// an interrupt (a VM exit on a virtual machine: tens of microseconds, more
/// than everything else a probe does), so the reader is woken only when a
/// batch has built up; between batches it polls on a timer.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    let threshold = conf!(wakeup_bytes) as u64;
    if threshold == 0 {
        return 0;
    }
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// A header for an event in the current task.
#[inline(always)]
pub fn current_header(kind: u32) -> Header {
    let pid_tgid = bpf_get_current_pid_tgid();
    header(
        kind,
        (pid_tgid >> 32) as u32,
        pid_tgid as u32,
        current_cgroup(),
    )
}

/// A header for an event about `tgid`/`tid`; `cgroup_id` 0 when the event
/// runs in no task of its own (a free, in softirq).
#[inline(always)]
pub fn header(kind: u32, tgid: u32, tid: u32, cgroup_id: u64) -> Header {
    Header {
        kind,
        flags: 0,
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        tgid,
        tid,
        cgroup_id,
    }
}

/// The current task's cgroup v2 id.
#[inline(always)]
pub fn current_cgroup() -> u64 {
    unsafe { bpf_get_current_cgroup_id() }
}

/// The current task's tgid.
#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// The current task's tid.
#[inline(always)]
pub fn current_tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}
