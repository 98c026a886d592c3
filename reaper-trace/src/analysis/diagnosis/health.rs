//! Rules about the state of the parent itself: its failed forks, and its
//! threads as /proc showed them (live only) when the exit passed the
//! threshold.

use super::{Diag, Scene, diag};
use crate::{
    analysis::codes::DiagCode,
    trace::{escape::escape, host_facts::ParentProbe, names::errno_name},
};

pub(super) fn fork_failures(s: &Scene) -> Option<Diag> {
    let failures = &s.facts.fork_failures;
    if failures.is_empty() {
        return None;
    }
    let total: u64 = failures.values().sum();
    let by: Vec<String> = failures
        .iter()
        .map(|(e, n)| format!("{} {n}", errno_name(*e)))
        .collect();
    Some(diag(
        DiagCode::ForkFailures,
        format!(
            "{total} of parent {}'s forks failed during the trace ({})",
            s.p,
            by.join(", ")
        ),
    ))
}

pub(super) fn parent_thread_uninterruptible(s: &Scene) -> Option<Diag> {
    uninterruptible(s.p, s.facts.probe.as_ref()?)
}

/// Threads of parent `p` in D state, with their wait channels.
pub(super) fn uninterruptible(p: u32, probe: &ParentProbe) -> Option<Diag> {
    let stuck: Vec<String> = probe
        .threads
        .iter()
        .filter(|t| t.state == 'D')
        .map(|t| format!("{} ({}) at {}", t.tid, escape(&t.comm), escape(&t.wchan)))
        .collect();
    (!stuck.is_empty()).then(|| {
        diag(
            DiagCode::ParentThreadUninterruptible,
            format!(
                "parent {p} has threads in D state (uninterruptible sleep): {}",
                stuck.join(", ")
            ),
        )
    })
}

pub(super) fn parent_threads(s: &Scene) -> Option<Diag> {
    let threads: Vec<String> = s
        .facts
        .probe
        .as_ref()?
        .threads
        .iter()
        .take(8)
        .map(|t| {
            format!(
                "{} {} {}",
                t.tid,
                t.state,
                if t.wchan.is_empty() {
                    "-".into()
                } else {
                    escape(&t.wchan)
                }
            )
        })
        .collect();
    Some(diag(
        DiagCode::ParentThreads,
        format!(
            "parent {}'s threads (tid, state, wchan) when the exit passed the threshold: {}",
            s.p,
            threads.join("; ")
        ),
    ))
}
