//! What the trace showed of one exit and what followed it: the facts the
//! lifecycle state machine gathers and the diagnosis reads.

use serde::Serialize;

use super::reap::Reap;
use crate::trace::{
    comm::Comm,
    event::{Disposition, SignalResult},
    names::{seconds, signal_name},
};

/// A SIGCHLD caused by a child's exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigchldFacts {
    pub time_ns: u64,
    pub target_tgid: u32,
    pub target_tid: u32,
    pub result: SignalResult,
    pub disposition: Disposition,
    pub handler: u64,
    pub sa_flags: u64,
    pub blocked: bool,
}

/// A process's exit and what followed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitFacts {
    /// `None` for a zombie found at start-up.
    pub time_ns: Option<u64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub core_dumped: bool,
    pub exit_signal: i32,
    /// The parent when it exited: the one expected to reap it.
    pub parent: u32,
    pub sigchld: Vec<SigchldFacts>,
    /// Where it was reparented after its parent died, if seen.
    pub adopted_by: Option<u32>,
    /// A ptrace tracer (not the parent) that collected this exit with its
    /// own wait, which does not reap.
    pub collected_by_tracer: Option<u32>,
    /// Its parent is known to be dead (it was released under another
    /// parent), even when that parent's own exit was not seen.
    pub parent_died: bool,
    /// No wait that reaped it was seen: its reap is dated by its free (or
    /// the reuse of its pid, or the end of the trace), which the kernel
    /// runs from an RCU callback, at times many seconds after the reap on
    /// a busy machine. A finding whose latency rests on it, past the
    /// threshold, is uncertain.
    pub reap_unseen: bool,
    /// Released after its parent died, without wait records, and nothing
    /// said by whom (see `Analyzer::release_unseen`): its finding is not
    /// certain.
    pub releaser_unknown: bool,
    /// When /proc last showed it still a zombie (live, as it became
    /// overdue): proof that it outlived the threshold, whatever the free
    /// says.
    /// (0: never; plain u64s keep the entry small.)
    pub zombie_seen_ns: u64,
    /// When live should look at it in /proc again (0: as it becomes
    /// overdue).
    pub next_zombie_check_ns: u64,
    /// When /proc showed it gone while the one who released it is for its
    /// free to say (no wait records, and its parent died since its exit);
    /// 0: not seen gone (a plain u64 keeps the entry small).
    pub gone_ns: u64,
    /// The parent its exit record named, when that parent had already begun
    /// to exit and `parent` is the adopter that took it over.
    pub adopted_at_exit_from: Option<Box<Orphaning>>,
    /// The parent's SIGCHLD disposition and flags when it exited.
    pub parent_disposition: Option<(Disposition, u64)>,
    pub reap: Option<Reap>,
    /// For a zombie found when tracing started: when that was.
    pub predates: Option<Predates>,
    /// How the process ended, for its children's findings (`None` for a
    /// zombie older than the trace).
    pub end: Option<Box<ProcessEnd>>,
}

/// A zombie older than the trace: its exit time is unknown, but it has been
/// a zombie at least since tracing started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Predates {
    pub trace_start_ns: u64,
    /// When the process started, if /proc said.
    pub started_ns: Option<u64>,
}

impl ExitFacts {
    /// A zombie that was already there when tracing started.
    pub fn predating(parent: u32, predates: Predates) -> ExitFacts {
        ExitFacts {
            time_ns: None,
            exit_code: None,
            signal: None,
            core_dumped: false,
            exit_signal: reaper_trace_common::SIGCHLD,
            parent,
            sigchld: Vec::new(),
            adopted_by: None,
            collected_by_tracer: None,
            parent_died: false,
            reap_unseen: false,
            releaser_unknown: false,
            zombie_seen_ns: 0,
            next_zombie_check_ns: 0,
            gone_ns: 0,
            adopted_at_exit_from: None,
            parent_disposition: None,
            reap: None,
            predates: Some(predates),
            end: None,
        }
    }

    /// Since when it has been a zombie, as far as the trace knows: its exit,
    /// or the start of the trace for one older than that.
    pub fn zombie_since_ns(&self) -> Option<u64> {
        self.time_ns.or(self.predates.map(|p| p.trace_start_ns))
    }
}

/// A signal sent to a process (not SIGCHLD): kept for saying how a parent
/// ended, e.g. killed by SIGSEGV just after a SIGTERM from systemd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignalSent {
    pub time_ns: u64,
    pub sig: i32,
    pub from_pid: u32,
    /// Empty when the sender is not known to the trace.
    pub from_comm: Comm,
}

/// How a process ended, and the other signal that came just before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessEnd {
    pub time_ns: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub core_dumped: bool,
    pub after_signal: Option<SignalSent>,
    /// Killed by a signal a process sent (`docker kill`'s SIGKILL from
    /// `runc`): who sent it, when the trace saw it sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_from: Option<SignalSent>,
}

impl SignalSent {
    /// `4411 (systemd)`, or the pid alone when the name is unknown.
    fn sender(&self) -> String {
        if self.from_comm == Comm::default() {
            self.from_pid.to_string()
        } else {
            format!("{} ({})", self.from_pid, self.from_comm)
        }
    }
}

impl ProcessEnd {
    /// `exited 0`, `killed by SIGSEGV 0.002s after SIGTERM from 4411 (systemd)`.
    pub fn describe(&self) -> String {
        let mut text = match (self.exit_code, self.signal) {
            (Some(code), _) => format!("exited {code}"),
            (_, Some(sig)) => format!(
                "killed by {}{}",
                signal_name(sig),
                if self.core_dumped {
                    " (core dumped)"
                } else {
                    ""
                }
            ),
            _ => "ended".into(),
        };
        if let Some(s) = &self.signal_from {
            text.push_str(&format!(" from {}", s.sender()));
        }
        if let Some(s) = &self.after_signal {
            text.push_str(&format!(
                " {} after {} from {}",
                seconds(self.time_ns.saturating_sub(s.time_ns)),
                signal_name(s.sig),
                s.sender()
            ));
        }
        text
    }
}

/// A child whose parent died while it was still running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphaning {
    pub parent: u32,
    pub parent_comm: Comm,
    pub parent_end: ProcessEnd,
    /// The parent's pid in its own pid namespace, kept here because the
    /// parent's entry may be gone by the time the orphan's finding is made.
    pub parent_ns_pid: Option<crate::trace::event::NsPid>,
}
