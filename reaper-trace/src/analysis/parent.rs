//! What reaper-trace knows about a process in its role as a parent: its
//! SIGCHLD disposition and its history, the SIGCHLDs it was sent, its waits,
//! its failing forks, and (live only) what /proc said of its threads.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Serialize;

use super::facts::{ProcessEnd, SignalSent};
use crate::trace::{
    comm::Comm,
    event::{Disposition, WaitSyscall},
    host_facts::ParentProbe,
    stack::Stack,
};

/// How many recent waits to keep per parent.
const WAIT_HISTORY: usize = 32;
/// How many SIGCHLD disposition changes to keep per parent.
const DISPOSITION_HISTORY: usize = 16;
/// How many other signals to keep per process.
const SIGNAL_HISTORY: usize = 4;
/// How many execs to keep per process (a wrapper that execs another
/// wrapper that execs the server).
const EXEC_HISTORY: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DispositionChange {
    pub time_ns: u64,
    pub tid: u32,
    pub disposition: Disposition,
    pub handler: u64,
    pub flags: u64,
    /// The same change made this many times in a row (1: once), the last
    /// of them at `last_ns`.
    pub times: u32,
    pub last_ns: u64,
    /// The name of the thread that made it (empty when unknown: recordings
    /// made before ABI version 3).
    pub comm: Comm,
    /// Where in the program the change was made, when stacks are copied.
    #[serde(skip)]
    pub stack: Option<Stack>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitCall {
    pub time_ns: u64,
    pub tid: u32,
    pub syscall: WaitSyscall,
    /// The pid asked for (wait4 convention: -1 any, >0 that pid).
    pub pid: i32,
    pub options: i32,
    pub ret: i64,
    pub reaped: i32,
    /// `waitid(P_PIDFD, fd, ...)`: the descriptor waited on (`pid` is then
    /// the pid it reported, or 0).
    pub pidfd: Option<i32>,
}

impl WaitCall {
    /// What it waited for: `pid 12`, `any child`, `pidfd 3 (pid 12)`.
    pub fn target(&self) -> String {
        wait_target(self.pid, self.pidfd)
    }
}

/// `pid 12`, `any child`, `process group 7`, `pidfd 3` or `pidfd 3 (pid
/// 12)`: what a wait asked for, with the pid a pidfd stands for when known.
pub fn wait_target(pid: i32, pidfd: Option<i32>) -> String {
    match (pidfd, pid) {
        (Some(fd), p) if p > 0 => format!("pidfd {fd} (pid {p})"),
        (Some(fd), _) => format!("pidfd {fd}"),
        (None, -1) => "any child".into(),
        (None, 0) => "any child in its process group".into(),
        (None, p) if p < -1 => format!("process group {}", p.wrapping_neg()),
        (None, p) => format!("pid {p}"),
    }
}

/// A wait as the kernel's `sched_process_wait` told it, at the start of
/// `do_wait`: who waited, for what, with no word on the options or the
/// result. Without syscall hooks, the only sign of a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelWait {
    pub time_ns: u64,
    pub tid: u32,
    /// The pid (or process group, or a pidfd's process) waited for, in the
    /// initial namespace; 0: any child.
    pub pid: i32,
}

/// A wait in progress on one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// The pid asked for (wait4 convention); for a pidfd wait, the pid the
    /// kernel's `sched_process_wait` resolved the fd to (0 until then).
    pub pid: i32,
    pub options: i32,
    pub since_ns: u64,
    pub pidfd: Option<i32>,
}

/// An exec: the program image that forked a child before it may be gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecChange {
    pub time_ns: u64,
    /// The name and file of the image it replaced (file empty when that
    /// image was exec'd before the trace).
    pub old_comm: Comm,
    pub old_filename: String,
    pub new_comm: Comm,
    pub new_filename: String,
}

#[derive(Clone, Debug, Default)]
pub struct ParentFacts {
    /// The disposition as last seen (from rt_sigaction or a SIGCHLD).
    pub disposition: Option<(Disposition, u64)>,
    pub disposition_history: VecDeque<DispositionChange>,
    pub sigchld_generated: u64,
    pub sigchld_coalesced: u64,
    pub sigchld_delivered: u64,
    pub sigchld_blocked_seen: u64,
    pub children_exited: u64,
    pub waits: VecDeque<WaitCall>,
    pub wnohang_empty: u64,
    /// Waits in progress, per thread.
    pub waiting: HashMap<u32, Waiting>,
    /// The recent waits as the kernel reported them (`sched_process_wait`),
    /// whether or not the wait syscalls were hooked.
    pub kernel_waits: VecDeque<KernelWait>,
    pub fork_failures: BTreeMap<i32, u64>,
    pub leader_exited_ns: Option<u64>,
    pub probe: Option<ParentProbe>,
    /// The last few other signals sent to it (newest last).
    pub signals: VecDeque<SignalSent>,
    /// Its last few execs (oldest first), and the file of its image now.
    pub execs: VecDeque<ExecChange>,
    pub filename: String,
    /// Children forked during the trace that have not exited yet: a set,
    /// since each exit takes one out (a list made that quadratic), ordered
    /// so that orphans are told in pid order.
    pub running_children: BTreeSet<u32>,
}

impl ParentFacts {
    pub fn record_wait(&mut self, call: WaitCall) {
        if call.ret == 0 && call.reaped == 0 {
            self.wnohang_empty += 1;
        }
        if self.waits.len() == WAIT_HISTORY {
            self.waits.pop_front();
        }
        self.waits.push_back(call);
    }

    pub fn record_kernel_wait(&mut self, wait: KernelWait) {
        if self.kernel_waits.len() == WAIT_HISTORY {
            self.kernel_waits.pop_front();
        }
        self.kernel_waits.push_back(wait);
    }

    /// A SIGCHLD disposition change; a repeat of the previous one (same
    /// thread, same action) is counted, not listed again.
    pub fn record_disposition(&mut self, change: DispositionChange) {
        self.disposition = Some((change.disposition, change.flags));
        if let Some(last) = self.disposition_history.back_mut()
            && (last.tid, last.disposition, last.handler, last.flags)
                == (change.tid, change.disposition, change.handler, change.flags)
        {
            last.times += 1;
            last.last_ns = change.time_ns;
            // The first call's stack stays: the same change, made again.
            if last.stack.is_none() {
                last.stack = change.stack;
            }
            return;
        }
        if self.disposition_history.len() == DISPOSITION_HISTORY {
            self.disposition_history.pop_front();
        }
        self.disposition_history.push_back(change);
    }

    /// An exec into `filename`, named `new_comm`; the process was `old_comm`.
    pub fn record_exec(&mut self, time_ns: u64, old_comm: Comm, new_comm: Comm, filename: &str) {
        if self.execs.len() == EXEC_HISTORY {
            self.execs.pop_front();
        }
        self.execs.push_back(ExecChange {
            time_ns,
            old_comm,
            old_filename: std::mem::replace(&mut self.filename, filename.to_owned()),
            new_comm,
            new_filename: filename.to_owned(),
        });
    }

    /// The execs after `since_ns` (a child's fork): the program that forked
    /// the child is the first one's old image, the one now the last one's
    /// new image.
    pub fn execs_since(&self, since_ns: u64) -> impl Iterator<Item = &ExecChange> {
        self.execs.iter().filter(move |e| e.time_ns >= since_ns)
    }

    /// The kernel's `sched_process_wait` for thread `tid`'s wait names the
    /// pid it waits for, globally: for a pidfd wait, the process the fd
    /// stands for (the syscall's argument is only the fd).
    pub fn resolve_pidfd_wait(&mut self, tid: u32, pid: i32) {
        if let Some(w) = self.waiting.get_mut(&tid)
            && w.pidfd.is_some()
            && pid > 0
        {
            w.pid = pid;
        }
    }

    pub fn record_signal(&mut self, signal: SignalSent) {
        if self.signals.len() == SIGNAL_HISTORY {
            self.signals.pop_front();
        }
        self.signals.push_back(signal);
    }

    /// How the process ended (kept with its exit, [`super::facts::ExitFacts::end`]):
    /// its exit, and the latest other signal sent to it before (a SIGTERM before the SIGSEGV of a crash during shutdown).
    pub fn end(&self, time_ns: u64, x: &crate::trace::event::Exit) -> ProcessEnd {
        // A request to end that came shortly before (a minute at most).
        const WINDOW_NS: u64 = 60_000_000_000;
        let after_signal = self
            .signals
            .iter()
            .rev()
            .find(|s| {
                Some(s.sig) != x.signal && s.time_ns <= time_ns && time_ns - s.time_ns <= WINDOW_NS
            })
            .cloned();
        // The fatal signal itself, when a process sent it (the kernel's own,
        // a fault's SIGSEGV, are not kept).
        let signal_from = self
            .signals
            .iter()
            .rev()
            .find(|s| {
                Some(s.sig) == x.signal && s.time_ns <= time_ns && time_ns - s.time_ns <= WINDOW_NS
            })
            .cloned();
        ProcessEnd {
            time_ns,
            exit_code: x.exit_code,
            signal: x.signal,
            core_dumped: x.core_dumped,
            after_signal,
            signal_from,
        }
    }

    /// A new program image: exec resets a handled SIGCHLD to SIG_DFL (an
    /// ignored one stays ignored) and clears the flags, so the changes the
    /// previous program made no longer say anything about this one.
    pub fn exec_reset(&mut self) {
        self.disposition = Some(match self.disposition {
            Some((Disposition::Ignore, _)) => (Disposition::Ignore, 0),
            _ => (Disposition::Default, 0),
        });
        self.disposition_history.clear();
    }
}
