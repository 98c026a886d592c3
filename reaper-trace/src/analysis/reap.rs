//! The reap rules, in one place. Whether a wait's result released a child,
//! whether an exit was reaped by the kernel itself (autoreap), and who
//! reaped an orphan: the analyzer decides with these, and the event lines,
//! the timeline and the kernel suite show or check what they say.
//!
//! The kernel's words (kernel/exit.c, kernel/signal.c):
//! - `wait_task_zombie` releases the child unless the caller passed
//!   `WNOWAIT`, or is a ptrace tracer that is not the child's parent (the
//!   tracee then goes back to its real parent, which must still reap it).
//! - `wait_task_stopped` and `wait_task_continued` report stops, ptrace
//!   traps and continues: nothing is released.
//! - `do_notify_parent` autoreaps when the parent ignores SIGCHLD or set
//!   `SA_NOCLDWAIT`.
//! - When a parent dies, its children go to a subreaper or the namespace's
//!   init; a zombie among them is announced to its new parent with a SIGCHLD.

use serde::Serialize;

use crate::trace::event::{Disposition, WaitExit, WaitSyscall};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReapKind {
    /// The parent's wait4/waitid.
    Wait,
    /// The parent ignores SIGCHLD or set SA_NOCLDWAIT: released at exit.
    Autoreap,
    /// Reparented to a subreaper or init and reaped there.
    Adopted,
}

/// A reap: when, by whom, how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Reap {
    pub time_ns: u64,
    pub by_pid: Option<u32>,
    pub kind: ReapKind,
}

/// What a child's status said, as a wait returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by a signal.
    Killed { signal: i32, core_dumped: bool },
    /// Stopped by a signal (`WUNTRACED`, or a ptrace signal-delivery stop).
    Stopped(i32),
    /// A ptrace event stop: `SIGTRAP | event << 8` in the status.
    Trapped { signal: i32, event: i32 },
    /// Resumed by SIGCONT (`WCONTINUED`).
    Continued,
    /// A wait that began before tracing: the status is unknown.
    Unknown,
}

impl ChildStatus {
    /// From wait4's status word.
    pub fn from_wait4(status: i32) -> ChildStatus {
        if libc::WIFEXITED(status) {
            ChildStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            ChildStatus::Killed {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            }
        } else if libc::WIFCONTINUED(status) {
            ChildStatus::Continued
        } else if (status >> 16) != 0 {
            ChildStatus::Trapped {
                signal: libc::WSTOPSIG(status),
                event: status >> 16,
            }
        } else {
            ChildStatus::Stopped(libc::WSTOPSIG(status))
        }
    }

    /// From waitid's `si_code` and `si_status`.
    pub fn from_waitid(si_code: i32, si_status: i32) -> ChildStatus {
        match si_code {
            libc::CLD_EXITED => ChildStatus::Exited(si_status),
            libc::CLD_KILLED | libc::CLD_DUMPED => ChildStatus::Killed {
                signal: si_status,
                core_dumped: si_code == libc::CLD_DUMPED,
            },
            libc::CLD_CONTINUED => ChildStatus::Continued,
            // A ptrace trap reports SIGTRAP | event << 8 in si_status.
            libc::CLD_TRAPPED => ChildStatus::Trapped {
                signal: si_status & 0x7f,
                event: si_status >> 8,
            },
            _ => ChildStatus::Stopped(si_status),
        }
    }

    /// An exit (normal or by a signal): the only status a wait can reap.
    pub fn is_exit(self) -> bool {
        matches!(
            self,
            ChildStatus::Exited(_) | ChildStatus::Killed { .. } | ChildStatus::Unknown
        )
    }
}

/// What one wait4/waitid call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// `WNOHANG` and no child was ready.
    Nothing,
    /// The call failed: `-errno`.
    Error(i64),
    /// A child's status, for `pid` as the waiter numbers it.
    Child {
        pid: i32,
        status: ChildStatus,
        /// `WNOWAIT`: the status was only peeked at.
        peek: bool,
    },
}

impl WaitResult {
    pub fn of(w: &WaitExit) -> WaitResult {
        if w.ret < 0 {
            return WaitResult::Error(w.ret);
        }
        if w.reaped_pid <= 0 {
            return WaitResult::Nothing;
        }
        let status = match w.syscall {
            WaitSyscall::Wait4 if !w.args_known => ChildStatus::Unknown,
            WaitSyscall::Wait4 => ChildStatus::from_wait4(w.status),
            WaitSyscall::Waitid => ChildStatus::from_waitid(w.si_code, w.status),
        };
        WaitResult::Child {
            pid: w.reaped_pid,
            status,
            peek: w.options & libc::WNOWAIT != 0,
        }
    }

    /// The child whose exit this call collected without `WNOWAIT`: released,
    /// unless the caller is a tracer rather than the parent or an adopter
    /// (see [`collector`]). A stop, a continue, a ptrace trap or a peek
    /// collects no exit.
    pub fn collected_exit(self) -> Option<i32> {
        match self {
            WaitResult::Child {
                pid,
                status,
                peek: false,
            } if status.is_exit() => Some(pid),
            _ => None,
        }
    }
}

/// Who waited, relative to the child whose exit it collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collector {
    /// The parent it had when it exited: a reap by wait.
    Parent,
    /// The process it was reparented to after its parent died: an adoption.
    Adopter,
    /// Anyone else: a ptrace tracer collecting its tracee's exit. Not a reap;
    /// the tracee goes back to its real parent.
    Tracer,
}

/// Who collected an exit: `waiter` is the tgid of the waiting process;
/// `parent` the child's parent at exit; `adopted_by` the new parent a
/// SIGCHLD was sent to when the zombie was reparented, if seen. A zombie
/// whose parent died is announced to its new parent with that SIGCHLD,
/// except a traced one (`reparent_leader` skips tracees): so a wait by
/// anyone else, the parent dead or alive, is a tracer's.
pub fn collector(waiter: u32, parent: u32, adopted_by: Option<u32>) -> Collector {
    if waiter == parent {
        Collector::Parent
    } else if adopted_by == Some(waiter) {
        Collector::Adopter
    } else {
        Collector::Tracer
    }
}

/// Whether a SIGCHLD for a child's exit sent to `target` (not the parent)
/// means the child was adopted: only once the parent has died. While the
/// parent lives, a SIGCHLD to another process is its tracer being told.
pub fn adopted_by_signal(target: u32, parent: u32, parent_gone: bool) -> Option<u32> {
    (target != parent && parent_gone).then_some(target)
}

/// Whether the kernel releases a child at its exit, given its exit signal
/// and its parent's SIGCHLD action at that moment: `SIG_IGN` or
/// `SA_NOCLDWAIT`, and only for a child whose exit signal is SIGCHLD
/// (`do_notify_parent` autoreaps only then: a clone child with another
/// exit signal, or none, stays a zombie whatever its parent's SIGCHLD).
pub fn autoreaps(exit_signal: i32, parent_disposition: Disposition, parent_sa_flags: u64) -> bool {
    exit_signal == reaper_trace_common::SIGCHLD
        && (parent_disposition == Disposition::Ignore
            || parent_sa_flags & libc::SA_NOCLDWAIT as u64 != 0)
}

/// How a child was released when its `free` arrives without a reaping wait
/// seen: at exit by the kernel, by the reaper that adopted it, or by its
/// parent through a wait the trace did not show (one begun before tracing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    Autoreap,
    Adopted,
    UnseenWait,
}

pub fn release_without_wait(autoreap: bool, adopted: bool, parent_gone: bool) -> Release {
    if autoreap {
        Release::Autoreap
    } else if adopted || parent_gone {
        Release::Adopted
    } else {
        Release::UnseenWait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait4(status: i32, options: i32) -> WaitExit {
        WaitExit {
            syscall: WaitSyscall::Wait4,
            which: 0,
            upid: -1,
            options,
            ret: 12,
            reaped_pid: 12,
            status,
            si_code: 0,
            enter_time_ns: 0,
            args_known: true,
            upid_ns: None,
            reaped_ns_pid: None,
            pidfd: None,
        }
    }

    fn waitid(si_code: i32, si_status: i32, options: i32) -> WaitExit {
        WaitExit {
            syscall: WaitSyscall::Waitid,
            ret: 0,
            si_code,
            status: si_status,
            ..wait4(0, options)
        }
    }

    #[test]
    fn only_an_exit_collected_without_wnowait_releases() {
        assert_eq!(
            WaitResult::of(&wait4(42 << 8, 0)).collected_exit(),
            Some(12)
        );
        assert_eq!(WaitResult::of(&wait4(9, 0)).collected_exit(), Some(12));
        let peek = waitid(libc::CLD_EXITED, 0, libc::WEXITED | libc::WNOWAIT);
        assert_eq!(WaitResult::of(&peek).collected_exit(), None);
        let stopped = wait4(0x137f, libc::WUNTRACED);
        assert_eq!(
            WaitResult::of(&stopped),
            WaitResult::Child {
                pid: 12,
                status: ChildStatus::Stopped(19),
                peek: false
            }
        );
        assert_eq!(WaitResult::of(&stopped).collected_exit(), None);
        // The status "killed by SIG127" a naive reader sees in 0x7f.
        assert_eq!(WaitResult::of(&wait4(0x7f, 0)).collected_exit(), None);
        assert_eq!(WaitResult::of(&wait4(0xffff, 0)).collected_exit(), None);
        let trap = wait4((libc::PTRACE_EVENT_EXIT << 16) | (5 << 8) | 0x7f, 0);
        assert_eq!(
            ChildStatus::from_wait4(trap.status),
            ChildStatus::Trapped {
                signal: 5,
                event: libc::PTRACE_EVENT_EXIT
            }
        );
        for code in [libc::CLD_STOPPED, libc::CLD_TRAPPED, libc::CLD_CONTINUED] {
            assert_eq!(
                WaitResult::of(&waitid(code, 19, libc::WEXITED)).collected_exit(),
                None
            );
        }
        assert_eq!(
            WaitResult::of(&waitid(libc::CLD_KILLED, 9, libc::WEXITED)).collected_exit(),
            Some(12)
        );
    }

    #[test]
    fn a_wait_begun_before_tracing_counts_as_a_reap() {
        let early = WaitExit {
            args_known: false,
            upid_ns: None,
            reaped_ns_pid: None,
            ..wait4(0, 0)
        };
        assert_eq!(WaitResult::of(&early).collected_exit(), Some(12));
    }

    #[test]
    fn nothing_ready_and_errors_release_nothing() {
        let empty = WaitExit {
            ret: 0,
            reaped_pid: 0,
            ..wait4(0, libc::WNOHANG)
        };
        assert_eq!(WaitResult::of(&empty), WaitResult::Nothing);
        let echild = WaitExit {
            ret: -10,
            reaped_pid: 0,
            ..wait4(0, 0)
        };
        assert_eq!(WaitResult::of(&echild), WaitResult::Error(-10));
    }

    #[test]
    fn collectors_tell_parents_adopters_and_tracers_apart() {
        assert_eq!(collector(10, 10, None), Collector::Parent);
        assert_eq!(collector(1, 10, Some(1)), Collector::Adopter);
        // The parent died and no reparenting SIGCHLD came: a traced zombie,
        // whose tracer waits first.
        assert_eq!(collector(99, 10, None), Collector::Tracer);
        assert_eq!(collector(99, 10, Some(1)), Collector::Tracer);
        assert_eq!(adopted_by_signal(99, 10, false), None);
        assert_eq!(adopted_by_signal(1, 10, true), Some(1));
        assert_eq!(adopted_by_signal(10, 10, true), None);
    }

    #[test]
    fn autoreap_follows_the_parents_action() {
        let sigchld = reaper_trace_common::SIGCHLD;
        assert!(autoreaps(sigchld, Disposition::Ignore, 0));
        assert!(autoreaps(
            sigchld,
            Disposition::Default,
            libc::SA_NOCLDWAIT as u64
        ));
        assert!(!autoreaps(
            sigchld,
            Disposition::Handler,
            libc::SA_RESTART as u64
        ));
        // Another exit signal, or none: never autoreaped.
        assert!(!autoreaps(libc::SIGUSR1, Disposition::Ignore, 0));
        assert!(!autoreaps(
            0,
            Disposition::Default,
            libc::SA_NOCLDWAIT as u64
        ));
        assert_eq!(release_without_wait(true, true, true), Release::Autoreap);
        assert_eq!(release_without_wait(false, false, true), Release::Adopted);
        assert_eq!(
            release_without_wait(false, false, false),
            Release::UnseenWait
        );
    }
}
