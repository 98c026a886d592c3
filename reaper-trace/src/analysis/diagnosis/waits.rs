//! Rules about the parent's waits after the exit: none, for other pids,
//! blocked, late, empty polls, and pidfds held but not waited on.

use std::collections::BTreeSet;

use super::{Diag, Scene, diag, since_exit};
use crate::{
    analysis::{
        codes::DiagCode,
        parent::{KernelWait, WaitCall, wait_target},
    },
    trace::names::{seconds, wait_options},
};

/// The parent's waits since the child exited, oldest first.
fn after<'a>(s: &Scene<'a>) -> impl Iterator<Item = &'a WaitCall> {
    let exit_time = s.exit_time;
    s.facts.waits.iter().filter(move |w| w.time_ns >= exit_time)
}

/// The kernel's reports of the parent's waits since the child exited.
fn kernel_waits_after<'a>(s: &Scene<'a>) -> impl Iterator<Item = &'a KernelWait> {
    let exit_time = s.exit_time;
    s.facts
        .kernel_waits
        .iter()
        .filter(move |w| w.time_ns >= exit_time)
}

/// The parent's waits are known only from the kernel's `sched_process_wait`
/// (a trace without syscall hooks): when each began, never when it ended.
fn waits_only_from_kernel(s: &Scene) -> bool {
    s.facts.waits.is_empty() && s.facts.waiting.is_empty() && !s.facts.kernel_waits.is_empty()
}

pub(super) fn never_waited(s: &Scene) -> Option<Diag> {
    // A wait whose end was not traced may still have been going on.
    if after(s).next().is_some() || !s.facts.waiting.is_empty() || waits_only_from_kernel(s) {
        return None;
    }
    let ever = if s.facts.waits.is_empty() && s.facts.kernel_waits.is_empty() {
        ", nor at any time during the trace"
    } else {
        ""
    };
    Some(diag(
        DiagCode::NeverWaited,
        format!(
            "parent {} made no wait call after the child exited{ever}",
            s.p
        ),
    ))
}

/// The pids the parent waited for (or is blocked waiting for) since the
/// exit, other than this child.
pub(super) fn waited_for_other(s: &Scene) -> Option<Diag> {
    let child = s.ctx.child_pid as i32;
    let others: BTreeSet<i32> = after(s)
        .map(|w| w.pid)
        .chain(s.facts.waiting.values().map(|w| w.pid))
        .filter(|&pid| pid > 0 && pid != child)
        .collect();
    if others.is_empty() {
        return None;
    }
    let list: Vec<String> = others.iter().map(|o| o.to_string()).collect();
    Some(diag(
        DiagCode::WaitedForOther,
        format!(
            "parent {} waited for pid {} instead of {}",
            s.p,
            list.join(", "),
            s.ctx.child_pid
        ),
    ))
}

pub(super) fn blocked_in_wait(s: &Scene) -> Vec<Diag> {
    let p = s.p;
    s.facts
        .waiting
        .iter()
        .map(|(tid, w)| {
            diag(
                DiagCode::BlockedInWait,
                format!(
                    "thread {tid} of {p} is blocked in a wait for {} (options {}) since {}",
                    wait_target(w.pid, w.pidfd),
                    wait_options(w.options),
                    since_exit(s.exit, w.since_ns)
                ),
            )
        })
        .collect()
}

pub(super) fn first_wait_after(s: &Scene) -> Option<Diag> {
    let (first, exited) = (after(s).next()?, s.exit.time_ns?);
    Some(diag(
        DiagCode::FirstWaitAfter,
        format!(
            "parent {}'s first wait call after the exit came {} later ({}, options {})",
            s.p,
            seconds(first.time_ns - exited),
            first_wait_target(first),
            wait_options(first.options)
        ),
    ))
}

/// The first wait's target as the `first_wait_after` item has always said
/// it (`pid 12`, `pid -1`), a pidfd wait as `pidfd 3 (pid 12)`.
fn first_wait_target(w: &WaitCall) -> String {
    match w.pidfd {
        Some(_) => w.target(),
        None => format!("pid {}", w.pid),
    }
}

/// Waits that only the kernel's `sched_process_wait` told (a trace without
/// syscall hooks): that the parent waited, when, and for what, but not with
/// which options, what each returned, or when it ended.
pub(super) fn waits_untraced(s: &Scene) -> Option<Diag> {
    if !waits_only_from_kernel(s) {
        return None;
    }
    let unknown = "the system calls were not hooked, so";
    let mut after_exit = kernel_waits_after(s);
    let text = match (after_exit.next(), s.exit.time_ns) {
        (Some(first), exited) => {
            let count = 1 + after_exit.count();
            let calls = if count == 1 { "call" } else { "calls" };
            let when = exited.map_or(String::new(), |e| {
                format!(
                    ", the first {} after it",
                    seconds(first.time_ns.saturating_sub(e))
                )
            });
            format!(
                "parent {} made {count} wait {calls} after the child exited{when} ({}); {unknown} their options and results are unknown",
                s.p,
                kernel_wait_target(first)
            )
        }
        (None, _) => {
            let last = s.facts.kernel_waits.back()?;
            format!(
                "parent {}'s last wait call (thread {}, {}) began {}; {unknown} when it ended is unknown: it may have been blocked in it since",
                s.p,
                last.tid,
                kernel_wait_target(last),
                since_exit(s.exit, last.time_ns)
            )
        }
    };
    Some(diag(DiagCode::WaitsUntraced, text))
}

/// What `sched_process_wait` says a wait was for: its pid argument, which
/// for a process-group wait is the group's number.
fn kernel_wait_target(w: &KernelWait) -> String {
    match w.pid {
        0 => "for any child".to_owned(),
        pid => format!("for pid or process group {pid}"),
    }
}

pub(super) fn wnohang_empty(s: &Scene) -> Option<Diag> {
    let empty_polls = after(s)
        .filter(|w| w.options & libc::WNOHANG != 0 && w.ret == 0)
        .count();
    (empty_polls > 0).then(|| {
        diag(
            DiagCode::WnohangEmpty,
            format!(
                "{empty_polls} WNOHANG polls by parent {} found nothing ready after the exit",
                s.p
            ),
        )
    })
}

/// The parent holds a pidfd for the child (/proc, when the exit passed the
/// threshold): it may poll it, but only a wait reaps.
pub(super) fn pidfds(s: &Scene) -> Vec<Diag> {
    let Some(probe) = &s.facts.probe else {
        return Vec::new();
    };
    let ctx = s.ctx;
    probe
        .pidfds
        .iter()
        .filter(|h| h.pid == ctx.child_pid as i32)
        .map(|held| {
            let waited = s
                .facts
                .waits
                .iter()
                .find(|w| w.pidfd == Some(held.fd) && w.time_ns >= s.exit_time);
            match waited {
                None => diag(
                    DiagCode::PidfdNotWaited,
                    format!(
                        "parent {} holds pidfd {} for {} and has not waited on it since the exit: a pidfd reports the exit (it polls readable) but does not reap; waitid(P_PIDFD, {}, ..., WEXITED) does",
                        ctx.parent_pid, held.fd, ctx.child_pid, held.fd
                    ),
                ),
                Some(w) => diag(
                    DiagCode::PidfdHeld,
                    format!(
                        "parent {} held pidfd {} for {} and waited on it only {}",
                        ctx.parent_pid,
                        held.fd,
                        ctx.child_pid,
                        since_exit(ctx.exit, w.time_ns)
                    ),
                ),
            }
        })
        .collect()
}
