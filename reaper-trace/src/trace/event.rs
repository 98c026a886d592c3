//! Decoded events: the typed form of each ring-buffer record that the rest of
//! the program (rendering, recording, lifecycle analysis) works with.

use reaper_trace_common::kind;
use serde::Serialize;

use crate::trace::comm::Comm;

/// One event from the kernel.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds.
    pub time_ns: u64,
    /// The task the event happened in (for `free`: the freed task).
    pub tgid: u32,
    pub tid: u32,
    /// The cgroup v2 id of the task the event ran in; 0 when unknown (`free`,
    /// recordings made before ABI version 2).
    #[serde(skip_serializing_if = "is_zero")]
    pub cgroup_id: u64,
    #[serde(flatten)]
    pub data: EventData,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventData {
    Fork(Fork),
    Exec(Exec),
    Exit(Exit),
    SignalGenerate(SignalGenerate),
    SignalDeliver(SignalDeliver),
    ProcessWait(ProcessWait),
    WaitEnter(WaitEnter),
    WaitExit(WaitExit),
    Free(Free),
    Sigaction(Sigaction),
    ForkFailed(ForkFailed),
    NsPids(NsPids),
    TaskRename(TaskRename),
}

impl EventData {
    /// The ABI kind number this event was decoded from.
    pub fn kind(&self) -> u32 {
        match self {
            EventData::Fork(_) => kind::FORK,
            EventData::Exec(_) => kind::EXEC,
            EventData::Exit(_) => kind::EXIT,
            EventData::SignalGenerate(_) => kind::SIGNAL_GENERATE,
            EventData::SignalDeliver(_) => kind::SIGNAL_DELIVER,
            EventData::ProcessWait(_) => kind::PROCESS_WAIT,
            EventData::WaitEnter(_) => kind::WAIT_ENTER,
            EventData::WaitExit(_) => kind::WAIT_EXIT,
            EventData::Free(_) => kind::FREE,
            EventData::Sigaction(_) => kind::SIGACTION,
            EventData::ForkFailed(_) => kind::FORK_FAILED,
            EventData::NsPids(_) => kind::NS_PIDS,
            EventData::TaskRename(_) => kind::TASK_RENAME,
        }
    }

    /// The stable name of the kind (`kind::NAMES`), as used in JSON and totals.
    pub fn kind_name(&self) -> &'static str {
        kind::NAMES[self.kind() as usize]
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fork {
    pub child_tgid: u32,
    pub child_tid: u32,
    pub child_start_ns: u64,
    pub parent_start_ns: u64,
    pub is_thread: bool,
    /// The child's real parent, when it is not the forker (`CLONE_PARENT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_parent_tgid: Option<u32>,
    pub comm: Comm,
    /// The forking thread's user stack was sent for this fork (`HAS_STACK`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub has_stack: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Exec {
    pub pid: u32,
    pub old_pid: u32,
    pub process_start_ns: u64,
    pub comm: Comm,
    pub filename: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Exit {
    /// The exit status for a normal exit, `None` when killed by a signal.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    pub core_dumped: bool,
    /// `task->exit_code` as the kernel holds it.
    pub raw_exit_code: i32,
    /// The signal the parent gets (0: none).
    pub exit_signal: i32,
    pub real_parent_tgid: u32,
    /// This was the last thread of its process.
    pub group_dead: bool,
    /// A thread other than the leader.
    pub is_thread: bool,
    pub process_start_ns: u64,
    /// The parent's SIGCHLD disposition and flags at this exit (group exits).
    pub parent_disposition: Disposition,
    pub parent_sa_flags: u64,
    pub comm: Comm,
}

/// What the kernel did with a generated signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalResult {
    Delivered,
    Ignored,
    AlreadyPending,
    Overflow,
    LoseInfo,
    Unknown,
}

impl SignalResult {
    pub fn from_raw(raw: i32) -> Self {
        match raw {
            0 => SignalResult::Delivered,
            1 => SignalResult::Ignored,
            2 => SignalResult::AlreadyPending,
            3 => SignalResult::Overflow,
            4 => SignalResult::LoseInfo,
            _ => SignalResult::Unknown,
        }
    }
}

/// A signal disposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Default,
    Ignore,
    Handler,
}

impl Disposition {
    pub fn from_handler(handler: u64) -> Self {
        match handler {
            0 => Disposition::Default,
            1 => Disposition::Ignore,
            _ => Disposition::Handler,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignalGenerate {
    pub sig: i32,
    pub code: i32,
    pub result: SignalResult,
    pub group: bool,
    pub target_tgid: u32,
    pub target_tid: u32,
    pub si_pid: i32,
    pub si_status: i32,
    pub target_disposition: Disposition,
    pub target_handler: u64,
    pub target_sa_flags: u64,
    /// The target thread had `sig` blocked.
    pub target_blocked: bool,
    /// `si_pid` as the target's pid namespace numbers it, when that differs
    /// from the global `si_pid` (set by `trace::pidns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub si_ns_pid: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignalDeliver {
    pub sig: i32,
    pub code: i32,
    pub disposition: Disposition,
    pub sa_handler: u64,
    pub sa_flags: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessWait {
    pub pid: i32,
}

/// Which wait syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitSyscall {
    Wait4,
    Waitid,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WaitEnter {
    pub syscall: WaitSyscall,
    pub which: i32,
    pub upid: i32,
    pub options: i32,
    /// `upid` as the waiter wrote it, in its pid namespace, when that
    /// differs from the global `upid` (set by `trace::pidns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upid_ns: Option<i32>,
    /// `waitid(P_PIDFD, fd, ...)`: `upid` is this file descriptor, not a pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pidfd: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WaitExit {
    pub syscall: WaitSyscall,
    pub which: i32,
    pub upid: i32,
    pub options: i32,
    pub ret: i64,
    /// The pid reaped or reported; 0 when nothing was.
    pub reaped_pid: i32,
    pub status: i32,
    pub si_code: i32,
    pub enter_time_ns: u64,
    /// False for a wait that began before tracing: `upid`, `options` and
    /// `status` are then unknown (zero).
    pub args_known: bool,
    /// `upid` and `reaped_pid` as the waiter's pid namespace numbers them,
    /// when that differs from the global ones (set by `trace::pidns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upid_ns: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reaped_ns_pid: Option<i32>,
    /// `waitid(P_PIDFD, fd, ...)`: `upid` is this file descriptor, not a
    /// pid; the process it refers to is `reaped_pid` when the wait
    /// reported one (a pidfd wait can report no other).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pidfd: Option<i32>,
}

/// waitid's `which` for a pidfd (`P_PIDFD`, Linux 5.4).
pub const P_PIDFD: i32 = 3;

/// The file descriptor a wait passed, when it waited on a pidfd.
pub fn wait_pidfd(syscall: WaitSyscall, which: i32, upid: i32) -> Option<i32> {
    (syscall == WaitSyscall::Waitid && which == P_PIDFD).then_some(upid)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Free {
    pub process_start_ns: u64,
    pub start_ns: u64,
    pub exit_code: i32,
    /// Its real parent when it was released (`None` in older recordings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_parent_tgid: Option<u32>,
    pub comm: Comm,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sigaction {
    pub sig: i32,
    pub disposition: Disposition,
    pub handler: u64,
    pub flags: u64,
    pub mask: u64,
    /// The thread's user stack was sent for this call (`HAS_STACK`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub has_stack: bool,
    /// The calling thread's name; empty in recordings made before ABI
    /// version 3.
    pub comm: Comm,
}

/// A task's name changed (not by exec). The event's tgid/tid name the
/// renamed task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskRename {
    pub process_start_ns: u64,
    pub old_comm: Comm,
    pub new_comm: Comm,
}

/// A pid as one pid namespace sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NsPid {
    pub pid: u32,
    /// The namespace's inode number (`/proc/PID/ns/pid`).
    pub ns: u32,
}

/// A new process outside the initial pid namespace: its pid at each level,
/// outermost (global) first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NsPids {
    pub child_tgid: u32,
    pub levels: Vec<NsPid>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ForkFailed {
    pub syscall_nr: i32,
    pub errno: i32,
}
