//! Why a child was not reaped (or was reaped late), from what the trace
//! showed of its parent. Each item has a stable code and a sentence.
//!
//! `diagnose` runs a table of small rules in order; each looks at one thing
//! and says at most one item (a few say one per thread, change or pidfd).
//! The order is the order of the items in a finding.

mod ends;
mod health;
pub mod now;
mod signals;
mod waits;

use serde::Serialize;

use super::{
    codes::DiagCode,
    facts::{ExitFacts, ProcessEnd},
    parent::ParentFacts,
};
use crate::trace::{comm::Comm, event::NsPid, names::seconds};

/// One diagnosis item. `code` is stable (docs/findings.md); `text` is for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diag {
    pub code: DiagCode,
    pub text: String,
}

fn diag(code: DiagCode, text: String) -> Diag {
    Diag { code, text }
}

pub struct DiagContext<'a> {
    pub child_pid: u32,
    pub exit: &'a ExitFacts,
    pub parent_pid: u32,
    pub parent: Option<&'a ParentFacts>,
    /// How the parent ended, once it has.
    pub parent_end: Option<&'a ProcessEnd>,
    /// The parent is PID 1 of a pid namespace of its own.
    pub parent_ns_init: bool,
    /// The child's start time (its fork), 0 when unknown.
    pub child_start_ns: u64,
}

/// What every rule reads: the context, the parent's facts (empty when the
/// trace saw nothing of it), and what several rules derive alike.
struct Scene<'a> {
    ctx: &'a DiagContext<'a>,
    exit: &'a ExitFacts,
    facts: &'a ParentFacts,
    /// The parent's pid.
    p: u32,
    /// The child's exit time, 0 for a zombie older than the trace.
    exit_time: u64,
    /// When the parent ended, once it has.
    parent_exited_ns: Option<u64>,
}

/// One rule: what it sees of the scene, as diagnosis items.
enum Rule {
    /// At most one item.
    One(fn(&Scene) -> Option<Diag>),
    /// One item per thing seen (a thread, a change, a pidfd).
    Each(fn(&Scene) -> Vec<Diag>),
}

use Rule::{Each, One};

/// Every rule, in the order its items appear in a finding.
const RULES: &[Rule] = &[
    One(ends::predates_trace),
    Each(now::predates),
    One(ends::parent_was_exiting),
    One(signals::no_sigchld),
    One(signals::exit_signal_not_sigchld),
    One(signals::sigchld_blocked),
    One(signals::sigchld_action),
    One(signals::sigchld_fate),
    One(signals::sigchld_coalesced),
    One(waits::never_waited),
    One(waits::waited_for_other),
    Each(waits::blocked_in_wait),
    One(waits::first_wait_after),
    One(waits::waits_untraced),
    One(waits::wnohang_empty),
    One(ends::parent_exited),
    One(ends::namespace_ended),
    One(ends::parent_execed),
    One(ends::collected_by_tracer),
    One(ends::parent_leader_exited),
    Each(signals::disposition_changes),
    One(health::fork_failures),
    Each(waits::pidfds),
    One(health::parent_thread_uninterruptible),
    One(health::parent_threads),
];

pub fn diagnose(ctx: &DiagContext) -> Vec<Diag> {
    let empty = ParentFacts::default();
    let scene = Scene {
        ctx,
        exit: ctx.exit,
        facts: ctx.parent.unwrap_or(&empty),
        p: ctx.parent_pid,
        exit_time: ctx.exit.time_ns.unwrap_or(0),
        parent_exited_ns: ctx.parent_end.map(|end| end.time_ns),
    };
    let mut out = Vec::new();
    for rule in RULES {
        match rule {
            One(rule) => out.extend(rule(&scene)),
            Each(rule) => out.extend(rule(&scene)),
        }
    }
    out
}

/// When `t` happened relative to the child's exit.
fn since_exit(exit: &ExitFacts, t: u64) -> String {
    match exit.time_ns {
        Some(e) if t >= e => format!("{} after the exit", seconds(t - e)),
        Some(e) => format!("{} before the exit", seconds(e - t)),
        None => "during the trace".into(),
    }
}

/// A reap no wait showed (a reaper whose waits the probes do not see, such
/// as an init that reaps through io_uring): dated by the task's free.
pub fn reap_unseen(parent: u32, freed_ns: u64, exit: &ExitFacts) -> Diag {
    diag(
        DiagCode::ReapUnseen,
        format!(
            "no wait by {parent} that reaped it was seen; it was released no later than {}, when the kernel freed it, but the kernel frees tasks from an RCU callback that can trail the reap by seconds on a busy machine: it may have been reaped in time, so this finding is not certain",
            since_exit(exit, freed_ns)
        ),
    )
}

pub fn events_lost(lost: u64, pid: u32) -> Diag {
    diag(
        DiagCode::EventsLost,
        format!(
            "{lost} events were lost during the trace, some of them while this lifecycle was traced: what happened to {pid} may be among them, so this finding is not certain"
        ),
    )
}

/// An orphan: its parent died while it ran, and it was adopted. Each pid
/// comes with its number in its own pid namespace, when that differs.
pub fn orphaned(
    pid: (u32, Option<NsPid>),
    parent: (u32, Option<NsPid>),
    parent_end: Option<&ProcessEnd>,
    adopter: Option<(u32, Option<NsPid>)>,
    exited_ns: Option<u64>,
) -> Diag {
    let how = parent_end
        .map(|e| format!(" ({})", e.describe()))
        .unwrap_or_default();
    let fate = match (adopter, exited_ns, parent_end) {
        (Some(a), Some(t), Some(end)) => format!(
            "adopted by {}, it exited {} later",
            pid_text(a),
            seconds(t.saturating_sub(end.time_ns))
        ),
        (Some(a), _, _) => format!("adopted by {}", pid_text(a)),
        (None, _, _) => "it was still running when the trace ended".into(),
    };
    diag(
        DiagCode::Orphaned,
        format!(
            "parent {} died{how} while {} was still running; {fate}",
            pid_text(parent),
            pid_text(pid)
        ),
    )
}

/// `16132 (ns pid 3)` for a process in a pid namespace of its own.
fn pid_text((pid, ns): (u32, Option<NsPid>)) -> String {
    match ns {
        Some(ns) => format!("{pid} (ns pid {})", ns.pid),
        None => pid.to_string(),
    }
}

/// ` (webu)`: a thread's name after its tid, when known.
fn thread_name(comm: Comm) -> String {
    if comm == Comm::default() {
        String::new()
    } else {
        format!(" ({comm})")
    }
}
