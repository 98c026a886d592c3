//! Which processes are reported. In FOLLOW mode only the tgids in `FOLLOWED`
//! are; the fork probe adds each new child of a followed process, so a whole
//! tree is followed from the kernel side without racing userspace.

use aya_ebpf::helpers::bpf_get_current_ancestor_cgroup_id;
use reaper_trace_common::{COMM_LEN, filter};

use crate::{config::conf, log, maps::FOLLOWED};

#[inline(always)]
pub fn is_traced(tgid: u32) -> bool {
    if conf!(filter_mode) != filter::FOLLOW {
        return true;
    }
    unsafe { FOLLOWED.get(tgid) }.is_some()
}

/// Whether the current process, `tgid`, is reported: it is followed, or it
/// runs in the `--cgroup` subtree, which follows it from here on (so its
/// later frees, and signals others send it, are reported too).
#[inline(always)]
pub fn current_is_traced(probe: &'static str, tgid: u32) -> bool {
    if is_traced(tgid) {
        return true;
    }
    if in_cgroup() {
        follow(probe, tgid);
        return true;
    }
    false
}

/// Whether the current task runs in the `--cgroup` cgroup or below it: its
/// ancestor at the cgroup's level is that cgroup.
#[inline(always)]
fn in_cgroup() -> bool {
    let id = (u64::from(conf!(cgroup_id_hi)) << 32) | u64::from(conf!(cgroup_id_lo));
    if id == 0 {
        return false;
    }
    let level = conf!(cgroup_level) as i32;
    unsafe { bpf_get_current_ancestor_cgroup_id(level) == id }
}

/// Follows `tgid`; `probe` names the calling program in the log.
#[inline(always)]
pub fn follow(probe: &'static str, tgid: u32) {
    // A full map means the tree is larger than the map: the process is then
    // not followed, which userspace notices as missing forks.
    if let Err(errno) = FOLLOWED.insert(tgid, 1, 0) {
        log::failed(probe, "adding a process to FOLLOWED", i64::from(errno));
    }
}

#[inline(always)]
pub fn is_self(tgid: u32) -> bool {
    conf!(self_tgid) == tgid
}

/// Whether `comm` is the name given with `--comm`.
#[inline(always)]
pub fn comm_matches(comm: &[u8; COMM_LEN]) -> bool {
    let len = conf!(comm_len) as usize;
    if len == 0 || len > COMM_LEN {
        return false;
    }
    let want: [u8; COMM_LEN] = conf!(comm);
    let mut i = 0;
    while i < COMM_LEN {
        if comm[i] != want[i] {
            return false;
        }
        if comm[i] == 0 {
            return true;
        }
        i += 1;
    }
    true
}
