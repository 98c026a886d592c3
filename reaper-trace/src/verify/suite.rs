//! `reaper-trace verify-kernel`: the reaping semantics reaper-trace relies on,
//! checked on the running kernel with reaper-trace's own tracing. This part
//! is pure: it judges traces; `verify` (kernel feature) produces them.

use serde::Serialize;

use reaper_trace_common::SIGCHLD;

use crate::{
    analysis::reap::WaitResult,
    trace::event::{Event, EventData, SignalResult},
};

/// One behaviour, its workload, and what the kernel should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    SigIgnAutoreaps,
    NoCldWaitAutoreaps,
    OrphanGoesToSubreaper,
    SigchldCoalesces,
    ExitSignalZeroSendsNothing,
    LeaderExitsBeforeGroup,
}

impl Behaviour {
    pub const ALL: [Behaviour; 6] = [
        Behaviour::SigIgnAutoreaps,
        Behaviour::NoCldWaitAutoreaps,
        Behaviour::OrphanGoesToSubreaper,
        Behaviour::SigchldCoalesces,
        Behaviour::ExitSignalZeroSendsNothing,
        Behaviour::LeaderExitsBeforeGroup,
    ];

    /// The workload that exercises it (`reaper-trace __workload NAME`).
    pub fn workload(self) -> &'static str {
        match self {
            Behaviour::SigIgnAutoreaps => "sigign",
            Behaviour::NoCldWaitAutoreaps => "nocldwait",
            Behaviour::OrphanGoesToSubreaper => "subreaper",
            Behaviour::SigchldCoalesces => "coalesce",
            Behaviour::ExitSignalZeroSendsNothing => "exit_signal0",
            Behaviour::LeaderExitsBeforeGroup => "leader_exit",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Behaviour::SigIgnAutoreaps => "SIG_IGN autoreaps, no SIGCHLD",
            Behaviour::NoCldWaitAutoreaps => "SA_NOCLDWAIT autoreaps, SIGCHLD generated",
            Behaviour::OrphanGoesToSubreaper => "orphans go to the nearest subreaper",
            Behaviour::SigchldCoalesces => "SIGCHLD coalesces while pending",
            Behaviour::ExitSignalZeroSendsNothing => "exit_signal 0 sends no SIGCHLD",
            Behaviour::LeaderExitsBeforeGroup => "a leader exits before its thread group",
        }
    }
}

/// One line of the behaviour table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    pub behaviour: String,
    pub expected: String,
    pub seen: String,
    pub ok: bool,
}

fn row(behaviour: &str, expected: &str, seen: String, ok: bool) -> Row {
    Row {
        behaviour: behaviour.into(),
        expected: expected.into(),
        seen,
        ok,
    }
}

/// Children `parent` forked (processes, not threads), in order.
fn children(events: &[Event], parent: u32) -> Vec<u32> {
    events
        .iter()
        .filter(|e| e.tgid == parent)
        .filter_map(|e| match &e.data {
            EventData::Fork(f) if !f.is_thread => Some(f.child_tgid),
            _ => None,
        })
        .collect()
}

fn sigchlds(events: &[Event], child: u32) -> Vec<SignalResult> {
    events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::SignalGenerate(s) if s.sig == SIGCHLD && s.si_pid == child as i32 => {
                Some(s.result)
            }
            _ => None,
        })
        .collect()
}

/// Who collected `child`'s exit with a wait that released it (the reap
/// rules: no WNOWAIT, no stop or continue).
fn reaped_by(events: &[Event], child: u32) -> Option<u32> {
    events.iter().find_map(|e| match &e.data {
        EventData::WaitExit(w) if WaitResult::of(w).collected_exit() == Some(child as i32) => {
            Some(e.tgid)
        }
        _ => None,
    })
}

fn freed(events: &[Event], pid: u32) -> bool {
    events
        .iter()
        .any(|e| matches!(e.data, EventData::Free(_)) && e.tid == pid)
}

fn exit_parent(events: &[Event], pid: u32) -> Option<u32> {
    events.iter().find_map(|e| match &e.data {
        EventData::Exit(x) if x.group_dead && e.tgid == pid => Some(x.real_parent_tgid),
        _ => None,
    })
}

/// Judges one behaviour from the trace of its workload (`root` is the
/// workload's pid).
pub fn judge(behaviour: Behaviour, root: u32, events: &[Event]) -> Row {
    let name = behaviour.name();
    let first_child = children(events, root).first().copied();
    use Behaviour::*;
    match (behaviour, first_child) {
        (SigIgnAutoreaps | NoCldWaitAutoreaps | ExitSignalZeroSendsNothing, None) => {
            row(name, "a child", "no fork seen".into(), false)
        }
        (SigIgnAutoreaps | NoCldWaitAutoreaps, Some(child)) => {
            judge_autoreap(behaviour, name, child, events)
        }
        (OrphanGoesToSubreaper, _) => judge_orphan(name, root, first_child, events),
        (SigchldCoalesces, _) => judge_coalescing(name, root, events),
        (ExitSignalZeroSendsNothing, Some(child)) => {
            judge_exit_signal_zero(name, root, child, events)
        }
        (LeaderExitsBeforeGroup, _) => judge_leader_exit(name, root, events),
    }
}

/// SIG_IGN or SA_NOCLDWAIT: the child is released without a wait (and a
/// SIGCHLD is generated only under SA_NOCLDWAIT).
fn judge_autoreap(behaviour: Behaviour, name: &str, child: u32, events: &[Event]) -> Row {
    let signals = sigchlds(events, child).len();
    let waited = reaped_by(events, child).is_some();
    let released = freed(events, child);
    let want_signal = behaviour == Behaviour::NoCldWaitAutoreaps;
    let expected = if want_signal {
        "released without wait; SIGCHLD generated"
    } else {
        "released without wait; no SIGCHLD"
    };
    let seen = format!(
        "{}; {} SIGCHLD",
        if released && !waited {
            "released without wait"
        } else if waited {
            "reaped by a wait"
        } else {
            "never released"
        },
        signals
    );
    row(
        name,
        expected,
        seen,
        released && !waited && (signals > 0) == want_signal,
    )
}

/// A grandchild orphaned below a subreaper is reparented to it and reaped
/// by it.
fn judge_orphan(name: &str, root: u32, first_child: Option<u32>, events: &[Event]) -> Row {
    let grandchild = first_child.and_then(|c| children(events, c).first().copied());
    let Some(grandchild) = grandchild else {
        return row(
            name,
            "a grandchild",
            "no grandchild fork seen".into(),
            false,
        );
    };
    let parent = exit_parent(events, grandchild);
    let reaper = reaped_by(events, grandchild);
    let seen = format!("parent at exit {}, reaped by {}", opt(parent), opt(reaper));
    row(
        name,
        &format!("parent at exit {root}, reaped by {root}"),
        seen,
        parent == Some(root) && reaper == Some(root),
    )
}

/// SIGCHLDs from several children while one is pending coalesce.
fn judge_coalescing(name: &str, root: u32, events: &[Event]) -> Row {
    let results: Vec<SignalResult> = children(events, root)
        .iter()
        .flat_map(|c| sigchlds(events, *c))
        .collect();
    let pending = results
        .iter()
        .filter(|r| **r == SignalResult::AlreadyPending)
        .count();
    let queued = results
        .iter()
        .filter(|r| **r == SignalResult::Delivered)
        .count();
    let seen = format!(
        "{} SIGCHLD: {queued} queued, {pending} already pending",
        results.len()
    );
    row(
        name,
        "1 queued, the rest already pending",
        seen,
        results.len() >= 2 && queued == 1 && pending == results.len() - 1,
    )
}

/// A child with exit signal 0 sends no SIGCHLD, and is still reaped.
fn judge_exit_signal_zero(name: &str, root: u32, child: u32, events: &[Event]) -> Row {
    let signals = sigchlds(events, child).len();
    let reaper = reaped_by(events, child);
    let seen = format!("{signals} SIGCHLD, reaped by {}", opt(reaper));
    row(
        name,
        &format!("0 SIGCHLD, reaped by {root}"),
        seen,
        signals == 0 && reaper == Some(root),
    )
}

/// The group leader exits first; the group dies with another thread.
fn judge_leader_exit(name: &str, root: u32, events: &[Event]) -> Row {
    let exits: Vec<(u32, bool)> = events
        .iter()
        .filter(|e| e.tgid == root)
        .filter_map(|e| match &e.data {
            EventData::Exit(x) => Some((e.tid, x.group_dead)),
            _ => None,
        })
        .collect();
    let leader_first = exits
        .first()
        .is_some_and(|&(tid, dead)| tid == root && !dead);
    let group_dies_later = exits.iter().skip(1).any(|&(tid, dead)| tid != root && dead);
    let seen = exits
        .iter()
        .map(|(tid, dead)| format!("{tid}{}", if *dead { " (group dead)" } else { "" }))
        .collect::<Vec<_>>()
        .join(", ");
    row(
        name,
        "the leader's exit, then the group's death by another thread",
        format!("exits: {seen}"),
        leader_first && group_dies_later,
    )
}

fn opt(pid: Option<u32>) -> String {
    pid.map(|p| p.to_string())
        .unwrap_or_else(|| "nobody".into())
}

/// `sched_process_exit` passes `group_dead` since 6.16.
pub fn judge_group_dead(kernel: (u32, u32), has_group_dead: bool) -> Row {
    let expected = kernel >= (6, 16);
    let say = |b: bool| if b { "has group_dead" } else { "no group_dead" };
    row(
        &format!(
            "sched_process_exit group_dead (kernel {}.{})",
            kernel.0, kernel.1
        ),
        say(expected),
        say(has_group_dead).into(),
        expected == has_group_dead,
    )
}

/// `major.minor` of a kernel release string.
pub fn kernel_version(release: &str) -> (u32, u32) {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|n| n.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{trace::event::Disposition, trace::test_events as b};

    fn fork(parent: u32, child: u32) -> Event {
        b::fork(0, parent, child, false)
    }
    fn sigchld(child: u32, parent: u32, result: SignalResult) -> Event {
        b::sigchld(0, child, parent, result, Disposition::Default, false)
    }
    fn wait(parent: u32, child: u32) -> Event {
        b::wait_exit(0, parent, -1, 0, child as i32)
    }
    fn free(pid: u32) -> Event {
        b::free(0, pid, pid)
    }
    fn exit(pid: u32, tid: u32, parent: u32, group_dead: bool) -> Event {
        b::exit(0, pid, tid, parent, group_dead, 0, Disposition::Default)
    }

    #[test]
    fn sig_ign_check_passes_and_catches_a_kernel_that_did_not_autoreap() {
        let good = [fork(10, 11), exit(11, 11, 10, true), free(11)];
        assert!(judge(Behaviour::SigIgnAutoreaps, 10, &good).ok);
        let no_autoreap = [
            fork(10, 11),
            exit(11, 11, 10, true),
            sigchld(11, 10, SignalResult::Ignored),
            wait(10, 11),
            free(11),
        ];
        let row = judge(Behaviour::SigIgnAutoreaps, 10, &no_autoreap);
        assert!(!row.ok);
        assert_eq!(row.seen, "reaped by a wait; 1 SIGCHLD");
    }

    #[test]
    fn nocldwait_check_needs_the_sigchld() {
        let good = [
            fork(10, 11),
            exit(11, 11, 10, true),
            sigchld(11, 10, SignalResult::Ignored),
            free(11),
        ];
        assert!(judge(Behaviour::NoCldWaitAutoreaps, 10, &good).ok);
        let silent = [fork(10, 11), exit(11, 11, 10, true), free(11)];
        assert!(!judge(Behaviour::NoCldWaitAutoreaps, 10, &silent).ok);
    }

    #[test]
    fn subreaper_check_catches_an_orphan_sent_to_init() {
        let good = [
            fork(10, 11),
            fork(11, 12),
            exit(12, 12, 10, true),
            wait(10, 12),
        ];
        assert!(judge(Behaviour::OrphanGoesToSubreaper, 10, &good).ok);
        let to_init = [
            fork(10, 11),
            fork(11, 12),
            exit(12, 12, 1, true),
            wait(1, 12),
        ];
        assert!(!judge(Behaviour::OrphanGoesToSubreaper, 10, &to_init).ok);
    }

    #[test]
    fn coalescing_check_catches_queued_signals() {
        let good = [
            fork(10, 11),
            fork(10, 12),
            fork(10, 13),
            sigchld(11, 10, SignalResult::Delivered),
            sigchld(12, 10, SignalResult::AlreadyPending),
            sigchld(13, 10, SignalResult::AlreadyPending),
        ];
        assert!(judge(Behaviour::SigchldCoalesces, 10, &good).ok);
        let queued = [
            fork(10, 11),
            fork(10, 12),
            sigchld(11, 10, SignalResult::Delivered),
            sigchld(12, 10, SignalResult::Delivered),
        ];
        assert!(!judge(Behaviour::SigchldCoalesces, 10, &queued).ok);
    }

    #[test]
    fn exit_signal_zero_check_catches_a_sigchld() {
        let good = [fork(10, 11), exit(11, 11, 10, true), wait(10, 11)];
        assert!(judge(Behaviour::ExitSignalZeroSendsNothing, 10, &good).ok);
        let noisy = [
            fork(10, 11),
            exit(11, 11, 10, true),
            sigchld(11, 10, SignalResult::Ignored),
            wait(10, 11),
        ];
        assert!(!judge(Behaviour::ExitSignalZeroSendsNothing, 10, &noisy).ok);
    }

    #[test]
    fn leader_check_catches_a_group_dying_with_its_leader() {
        let good = [exit(10, 10, 1, false), exit(10, 12, 1, true)];
        assert!(judge(Behaviour::LeaderExitsBeforeGroup, 10, &good).ok);
        let together = [exit(10, 12, 1, false), exit(10, 10, 1, true)];
        assert!(!judge(Behaviour::LeaderExitsBeforeGroup, 10, &together).ok);
    }

    #[test]
    fn group_dead_follows_the_kernel_version() {
        assert!(judge_group_dead(kernel_version("6.18.44-fc"), true).ok);
        assert!(!judge_group_dead((6, 18), false).ok);
        assert!(judge_group_dead(kernel_version("6.1.0-13-amd64"), false).ok);
        assert_eq!(kernel_version("6.18.44-fc-v595"), (6, 18));
    }
}
