//! What /proc tells the tracer, as plain data: the processes that exist when
//! tracing starts (the seed) and what a parent's threads were doing when one
//! of its exits became overdue (a probe). `host::procfs` reads them live, a
//! recording stores them, and the analysis consumes them either way.

use serde::{Deserialize, Deserializer, Serialize};

use crate::trace::{
    comm::Comm,
    event::NsPid,
    names::syscall_name,
    stack::{Stack, UserPlace},
};

/// A process found in /proc when tracing started. Stored as is in the
/// recording's header (docs/recording.md: `seed`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedProcess {
    pub pid: u32,
    pub ppid: u32,
    #[serde(deserialize_with = "comm_from_text")]
    pub comm: Comm,
    /// Already a zombie (state Z) when tracing started.
    pub zombie: bool,
    /// When it started (CLOCK_MONOTONIC ns, to /proc's clock-tick
    /// precision); absent in recordings made before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ns: Option<u64>,
    /// Outside the initial pid namespace: its pid at each level, outermost
    /// (global) first, from /proc's `NSpid`; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ns_pids: Vec<NsPid>,
    /// Its cgroup v2 id (the directory's inode number, as the kernel's
    /// `bpf_get_current_cgroup_id` gives it); 0 when unknown (no v2
    /// hierarchy, or a recording made before it was kept).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cgroup_id: u64,
    /// That cgroup's path below the v2 root (`0::` of /proc/PID/cgroup), so
    /// that a zombie older than the trace is named after its container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn comm_from_text<'de, D: Deserializer<'de>>(d: D) -> Result<Comm, D::Error> {
    let text = String::deserialize(d)?;
    Ok(Comm::from_str_lossy(&text))
}

/// One thread of a parent, as /proc showed it. The fields after `wchan`
/// are absent in recordings made before they were read (`None`, empty):
/// the analysis then says nothing about them rather than guessing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadProbe {
    pub tid: u32,
    pub comm: String,
    pub state: char,
    pub wchan: String,
    /// SIGCHLD in this thread's blocked mask (`SigBlk` of
    /// /proc/PID/task/TID/status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigchld_blocked: Option<bool>,
    /// SIGCHLD pending for this thread alone (`SigPnd`); a SIGCHLD to the
    /// process is pending for all of them (`ParentProbe::sigchld_shared_pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigchld_pending: Option<bool>,
    /// The process ptrace-attached to this thread (`TracerPid`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracer_pid: Option<u32>,
    /// What /proc/PID/task/TID/syscall said: the system call it is
    /// blocked in, with its user stack and program counters (the start of
    /// a user stack walk); `None` when running or unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<SyscallProbe>,
    /// Its kernel stack (/proc/PID/task/TID/stack, root only), function
    /// names innermost first, at most [`MAX_KERNEL_FRAMES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_stack: Vec<String>,
    /// Its user stack, unwound from `syscall`'s stack pointer and program
    /// counter into module + offset frames. Not in the probe's JSON: a
    /// recording keeps it in a `THREAD_STACK` record of its own, whose
    /// frames name modules as fork stacks do.
    #[serde(skip)]
    pub user_stack: Option<Stack>,
    /// The same, named: filled where the probe is shown (naming reads the
    /// modules' files), so never read back.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub user_place: Option<UserPlace>,
}

/// How many kernel frames a thread probe keeps: where it sleeps and why
/// is in the innermost few, and a probe must fit one record.
pub const MAX_KERNEL_FRAMES: usize = 12;

/// A blocked thread's system call, as /proc/PID/task/TID/syscall gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallProbe {
    /// The system call number (x86-64), -1 when blocked outside a system
    /// call (a page fault, a stop).
    pub nr: i64,
    /// The user stack pointer and program counter where it entered the
    /// kernel.
    pub sp: u64,
    pub pc: u64,
}

impl ThreadProbe {
    /// A thread seen only by tid, state and wait channel (what probes held
    /// before the signal masks were read).
    pub fn basic(tid: u32, comm: &str, state: char, wchan: &str) -> ThreadProbe {
        ThreadProbe {
            tid,
            comm: comm.to_owned(),
            state,
            wchan: wchan.to_owned(),
            sigchld_blocked: None,
            sigchld_pending: None,
            tracer_pid: None,
            syscall: None,
            kernel_stack: Vec::new(),
            user_stack: None,
            user_place: None,
        }
    }
}

/// One thread of a parent as shown (a finding's `threads`, a snapshot's):
/// the probe, and its system call named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThreadNow {
    #[serde(flatten)]
    pub probe: ThreadProbe,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall_name: Option<String>,
}

impl ThreadNow {
    pub fn of(probe: &ThreadProbe) -> ThreadNow {
        ThreadNow {
            probe: probe.clone(),
            syscall_name: probe
                .syscall
                .filter(|s| s.nr >= 0)
                .map(|s| syscall_name(s.nr)),
        }
    }
}

/// /proc facts about a parent, read when one of its exits passes the
/// threshold (live), or replayed from the recording.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentProbe {
    pub threads: Vec<ThreadProbe>,
    /// A signalfd whose mask holds SIGCHLD.
    pub signalfd_sigchld: bool,
    /// SIGCHLD in the process's blocked/ignored/caught sets.
    pub sigchld_blocked: bool,
    pub sigchld_ignored: bool,
    pub sigchld_caught: bool,
    /// The pidfds the process holds (`pidfd_open`, `CLONE_PIDFD`): a parent
    /// may hold one for a child it never waits on. Absent in recordings
    /// made before it was read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pidfds: Vec<PidfdProbe>,
    /// A SIGCHLD pending for the whole process (`ShdPnd`): generated while
    /// blocked in every thread, and taken by no one yet. Absent in older
    /// recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigchld_shared_pending: Option<bool>,
    /// How many threads the process has (`Threads:`), of which `threads`
    /// holds the first few; absent in older recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_count: Option<u32>,
    /// The descriptors of the signalfds whose mask holds SIGCHLD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signalfds: Vec<i32>,
}

/// One pidfd a process holds: its descriptor and the process it refers to
/// (`/proc/PID/fdinfo/FD`'s `Pid:`, in the tracer's pid namespace; -1 once
/// that process has been reaped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidfdProbe {
    pub fd: i32,
    pub pid: i32,
}

/// A zombie found in /proc by the `zombies` snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZombieProcess {
    pub pid: u32,
    pub ppid: u32,
    pub comm: Comm,
    /// When it started (CLOCK_MONOTONIC ns), from /proc/PID/stat.
    pub started_ns: Option<u64>,
    /// No later than when it exited (CLOCK_MONOTONIC ns): when it last ran,
    /// from the scheduler (see `host::zombies`); `None` when the kernel
    /// does not say.
    pub exited_by_ns: Option<u64>,
    /// Its cgroup v2 path (the `0::` line of /proc/PID/cgroup) and, on a
    /// hybrid host, its path in the v1 pids hierarchy (`/` for a zombie on
    /// the kernels seen: an exiting task leaves its v1 cgroups, though the
    /// pids controller counts it until it is reaped).
    pub cgroup: Option<String>,
    pub pids_cgroup: Option<String>,
}

/// Everything a zombie snapshot read, at `now_ns` (CLOCK_MONOTONIC).
#[derive(Clone, Debug, Default)]
pub struct ZombieScan {
    pub now_ns: u64,
    pub zombies: Vec<ZombieProcess>,
    pub parents: Vec<ParentNow>,
}

/// A parent of zombies, as /proc showed it at the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentNow {
    pub pid: u32,
    pub comm: Comm,
    /// Its pid in its own pid namespace, outside the initial one (1: a
    /// container's init).
    pub ns_pid: Option<u32>,
    /// `None` when it could not be read (it exited meanwhile).
    pub probe: Option<ParentProbe>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_reads_the_recorded_json() {
        let seed: SeedProcess =
            serde_json::from_str(r#"{"pid":7,"ppid":1,"comm":"sleep","zombie":true}"#).unwrap();
        assert_eq!(seed.comm, Comm::from_str_lossy("sleep"));
        assert_eq!(seed.started_ns, None);
        assert_eq!((seed.cgroup_id, seed.cgroup.as_deref()), (0, None));
        let back = serde_json::to_string(&seed).unwrap();
        assert_eq!(back, r#"{"pid":7,"ppid":1,"comm":"sleep","zombie":true}"#);
    }

    #[test]
    fn probes_recorded_before_pidfds_were_read_still_parse() {
        let old = r#"{"threads":[],"signalfd_sigchld":false,"sigchld_blocked":false,"sigchld_ignored":false,"sigchld_caught":false}"#;
        let probe: ParentProbe = serde_json::from_str(old).unwrap();
        assert!(probe.pidfds.is_empty());
        assert_eq!(serde_json::to_string(&probe).unwrap(), old);
        let new = ParentProbe {
            pidfds: vec![PidfdProbe { fd: 3, pid: 77 }],
            ..probe
        };
        let back: ParentProbe =
            serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }

    #[test]
    fn a_seeds_cgroup_is_kept_in_the_recording() {
        let text = r#"{"pid":7,"ppid":1,"comm":"app","zombie":true,"cgroup_id":4242,"cgroup":"/docker/abc"}"#;
        let seed: SeedProcess = serde_json::from_str(text).unwrap();
        assert_eq!(seed.cgroup_id, 4242);
        assert_eq!(seed.cgroup.as_deref(), Some("/docker/abc"));
        assert_eq!(serde_json::to_string(&seed).unwrap(), text);
    }
}
