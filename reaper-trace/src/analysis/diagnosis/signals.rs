//! Rules about SIGCHLD: the child's exit signal, the parent's action for
//! it and its changes, and what became of this exit's signal.

use super::{Diag, Scene, diag, since_exit, thread_name};
use crate::{
    analysis::{codes::DiagCode, facts::SigchldFacts},
    trace::{
        event::{Disposition, SignalResult},
        names::{sa_flags, signal_name},
    },
};

/// The SIGCHLD sent to the parent itself (not a later one to an adopter).
fn sent<'a>(s: &Scene<'a>) -> Option<&'a SigchldFacts> {
    s.exit.sigchld.iter().find(|sig| sig.target_tgid == s.p)
}

pub(super) fn no_sigchld(s: &Scene) -> Option<Diag> {
    (s.exit.exit_signal == 0).then(|| {
        diag(
            DiagCode::NoSigchld,
            format!("{} was created with exit_signal 0 (clone): no SIGCHLD is sent, and only a wait with __WALL or __WCLONE reaps it", s.ctx.child_pid),
        )
    })
}

/// A "clone child": wait_consider_task skips it unless __WALL or __WCLONE
/// is given (and, conversely, __WCLONE sees only those).
pub(super) fn exit_signal_not_sigchld(s: &Scene) -> Option<Diag> {
    let (p, exit) = (s.p, s.exit);
    if exit.exit_signal == 0 || exit.exit_signal == reaper_trace_common::SIGCHLD {
        return None;
    }
    let blind = s
        .facts
        .waits
        .iter()
        .filter(|w| {
            w.time_ns >= exit.time_ns.unwrap_or(0)
                && w.options & (libc::__WALL | libc::__WCLONE) == 0
        })
        .count();
    let waits = match blind {
        0 => String::new(),
        n => format!(
            "; {n} wait call{} by parent {p} after the exit had neither, so could not see it",
            if n == 1 { "" } else { "s" }
        ),
    };
    Some(diag(
        DiagCode::ExitSignalNotSigchld,
        format!(
            "{} was created by clone with exit signal {} instead of SIGCHLD: parent {p} was sent {} at the exit, and wait(), waitpid() and waitid() without __WALL or __WCLONE do not see such a child (ECHILD){waits}",
            s.ctx.child_pid,
            signal_name(exit.exit_signal),
            signal_name(exit.exit_signal),
        ),
    ))
}

/// The parent's SIGCHLD action when the child exited: as the signal sent
/// found it, else as last seen.
struct Action {
    disposition: Option<Disposition>,
    handler: u64,
    flags: u64,
    blocked: bool,
}

fn action(s: &Scene) -> Action {
    let (disposition, handler, flags, blocked) =
        match (sent(s), s.exit.parent_disposition.or(s.facts.disposition)) {
            (Some(sig), _) => (
                Some(sig.disposition),
                sig.handler,
                sig.sa_flags,
                sig.blocked,
            ),
            (None, Some((d, f))) => (Some(d), 0, f, false),
            (None, None) => (None, 0, 0, false),
        };
    Action {
        disposition,
        handler,
        flags,
        blocked,
    }
}

pub(super) fn sigchld_blocked(s: &Scene) -> Option<Diag> {
    let p = s.p;
    let blocked = action(s).blocked;
    let signalfd_seen = s.facts.probe.as_ref().is_some_and(|pr| pr.signalfd_sigchld);
    if signalfd_seen {
        Some(diag(
            DiagCode::SigchldSignalfd,
            format!(
                "parent {p} blocks SIGCHLD and reads it through a signalfd: it reaps only when its event loop gets back to that fd, so anything slow in the loop delays every reap"
            ),
        ))
    } else if blocked && s.facts.sigchld_delivered == 0 {
        Some(diag(
            DiagCode::SigchldSignalfd,
            format!(
                "SIGCHLD was blocked in parent {p} and never delivered to a handler: it is consumed through a signalfd (or sigwait), so the parent reaps only when its loop reads that fd"
            ),
        ))
    } else if blocked {
        Some(diag(
            DiagCode::SigchldBlocked,
            format!("SIGCHLD was blocked in parent {p}'s thread when the child exited"),
        ))
    } else {
        None
    }
}

pub(super) fn sigchld_action(s: &Scene) -> Option<Diag> {
    let p = s.p;
    let Action {
        disposition,
        handler,
        flags,
        ..
    } = action(s);
    Some(match disposition? {
        Disposition::Default => diag(
            DiagCode::SigchldDefault,
            format!(
                "parent {p} kept SIGCHLD at SIG_DFL (flags {}): the kernel discards the signal, so only an explicit wait() reaps",
                sa_flags(flags)
            ),
        ),
        Disposition::Handler => diag(
            DiagCode::SigchldHandler,
            format!(
                "parent {p} has a SIGCHLD handler at {handler:#x} (flags {})",
                sa_flags(flags)
            ),
        ),
        Disposition::Ignore if s.exit.exit_signal == reaper_trace_common::SIGCHLD => diag(
            DiagCode::SigchldIgnored,
            format!("parent {p} ignores SIGCHLD (SIG_IGN): the kernel reaps its children at exit"),
        ),
        Disposition::Ignore => diag(
            DiagCode::SigchldIgnored,
            format!(
                "parent {p} ignores SIGCHLD (SIG_IGN), but the kernel reaps at exit only children whose exit signal is SIGCHLD: not {}",
                s.ctx.child_pid
            ),
        ),
    })
}

/// What the kernel did with this exit's SIGCHLD, or that none was seen.
pub(super) fn sigchld_fate(s: &Scene) -> Option<Diag> {
    let p = s.p;
    if let Some(sig) = sent(s) {
        let result = match sig.result {
            SignalResult::Delivered => "queued",
            SignalResult::Ignored => "discarded as ignored",
            SignalResult::AlreadyPending => "merged into one already pending",
            _ => "lost",
        };
        Some(diag(
            DiagCode::SigchldResult,
            format!("the SIGCHLD for this exit was {result}"),
        ))
    } else if s.exit.exit_signal == reaper_trace_common::SIGCHLD && s.exit.time_ns.is_some() {
        Some(diag(
            DiagCode::SigchldNotSeen,
            format!("no SIGCHLD to parent {p} was seen for this exit"),
        ))
    } else {
        None
    }
}

/// Coalescing only loses reaps when a handler reaps once per signal.
pub(super) fn sigchld_coalesced(s: &Scene) -> Option<Diag> {
    let (p, facts) = (s.p, s.facts);
    let handled = s
        .exit
        .sigchld
        .iter()
        .any(|sig| sig.disposition == Disposition::Handler)
        || s.exit
            .parent_disposition
            .or(facts.disposition)
            .is_some_and(|(d, _)| d == Disposition::Handler);
    (facts.sigchld_coalesced > 0 && handled).then(|| {
        diag(
            DiagCode::SigchldCoalesced,
            format!(
                "{} children of {p} exited, {} SIGCHLD were generated, {} coalesced into one already pending, {} delivered to a handler: a handler that reaps one child per signal leaves the rest as zombies (loop on waitpid(-1, WNOHANG) instead)",
                facts.children_exited, facts.sigchld_generated, facts.sigchld_coalesced, facts.sigchld_delivered
            ),
        )
    })
}

/// Each change of the parent's SIGCHLD action, repeats collapsed.
pub(super) fn disposition_changes(s: &Scene) -> Vec<Diag> {
    let (p, exit) = (s.p, s.exit);
    s.facts
        .disposition_history
        .iter()
        .map(|change| {
            let to = match change.disposition {
                Disposition::Default => "SIG_DFL".to_owned(),
                Disposition::Ignore => "SIG_IGN".to_owned(),
                Disposition::Handler => format!("a handler at {:#x}", change.handler),
            };
            let when = if change.times > 1 {
                format!(
                    "×{} between {} and {}",
                    change.times,
                    since_exit(exit, change.time_ns),
                    since_exit(exit, change.last_ns)
                )
            } else {
                since_exit(exit, change.time_ns)
            };
            diag(
                DiagCode::SigchldDispositionChange,
                format!(
                    "thread {}{} of {p} set SIGCHLD to {to} with flags {} {when}",
                    change.tid,
                    thread_name(change.comm),
                    sa_flags(change.flags),
                ),
            )
        })
        .collect()
}
