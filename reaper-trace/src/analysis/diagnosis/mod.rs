//! Why a child was not reaped (or was reaped late), from what the trace
//! showed of its parent. Each item has a stable code and a sentence.

use serde::Serialize;

use super::{
    facts::{ExitFacts, ProcessEnd},
    parent::{ParentFacts, WaitCall, wait_target},
};
use crate::trace::{
    comm::Comm,
    escape::escape,
    event::{Disposition, NsPid, SignalResult},
    names::{errno_name, sa_flags, seconds, signal_name, wait_options},
};

/// One diagnosis item. `code` is stable (docs/findings.md); `text` is for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diag {
    pub code: &'static str,
    pub text: String,
}

fn diag(code: &'static str, text: String) -> Diag {
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

/// When `t` happened relative to the child's exit.
fn since_exit(exit: &ExitFacts, t: u64) -> String {
    match exit.time_ns {
        Some(e) if t >= e => format!("{} after the exit", seconds(t - e)),
        Some(e) => format!("{} before the exit", seconds(e - t)),
        None => "during the trace".into(),
    }
}

pub fn diagnose(ctx: &DiagContext) -> Vec<Diag> {
    let mut out = Vec::new();
    let p = ctx.parent_pid;
    let empty = ParentFacts::default();
    let facts = ctx.parent.unwrap_or(&empty);
    let exit = ctx.exit;
    let exit_time = exit.time_ns.unwrap_or(0);

    if let Some(p) = exit.predates {
        let age = p
            .started_ns
            .filter(|&started| started <= p.trace_start_ns)
            .map(|started| {
                format!(
                    ", {} after the process started",
                    seconds(p.trace_start_ns - started)
                )
            })
            .unwrap_or_default();
        out.push(diag(
            "predates_trace",
            format!("it was already a zombie when tracing started{age}"),
        ));
    }
    if let Some(from) = &exit.adopted_at_exit_from {
        out.push(diag(
            "parent_was_exiting",
            format!(
                "its parent {} ({}) was already exiting when it exited ({}): the kernel had handed it to {p} before announcing its exit, so it was {p}'s to reap",
                from.parent,
                from.parent_comm,
                from.parent_end.describe()
            ),
        ));
    }
    disposition(ctx, facts, &mut out);

    // Coalescing only loses reaps when a handler reaps once per signal.
    let handled = exit
        .sigchld
        .iter()
        .any(|s| s.disposition == Disposition::Handler)
        || exit
            .parent_disposition
            .or(facts.disposition)
            .is_some_and(|(d, _)| d == Disposition::Handler);
    if facts.sigchld_coalesced > 0 && handled {
        out.push(diag(
            "sigchld_coalesced",
            format!(
                "{} children of {p} exited, {} SIGCHLD were generated, {} coalesced into one already pending, {} delivered to a handler: a handler that reaps one child per signal leaves the rest as zombies (loop on waitpid(-1, WNOHANG) instead)",
                facts.children_exited, facts.sigchld_generated, facts.sigchld_coalesced, facts.sigchld_delivered
            ),
        ));
    }

    waits(ctx, facts, exit_time, &mut out);

    let parent_exited_ns = ctx.parent_end.map(|end| end.time_ns);
    if let Some(t) = parent_exited_ns.filter(|&t| t >= exit_time) {
        let adopter = exit
            .adopted_by
            .map(|a| format!(" and {} took it over", a))
            .unwrap_or_default();
        let how = ctx
            .parent_end
            .map(|end| format!(" ({})", end.describe()))
            .unwrap_or_default();
        out.push(diag(
            "parent_exited",
            format!(
                "parent {p} ended {}{how} without reaping it{adopter}",
                since_exit(exit, t)
            ),
        ));
    }
    if ctx.parent_ns_init && parent_exited_ns.is_some() {
        out.push(diag(
            "namespace_ended",
            format!("parent {p} is PID 1 of its pid namespace: when it exited, the kernel killed the namespace and the dying init reaped what was left"),
        ));
    }
    parent_execed(ctx, facts, &mut out);
    if let Some(tracer) = exit.collected_by_tracer {
        out.push(diag(
            "collected_by_tracer",
            format!("its tracer {tracer} (ptrace) collected the exit with its own wait, which does not reap: the child went back to parent {p} to be reaped"),
        ));
    }
    if let (Some(t), None) = (facts.leader_exited_ns, parent_exited_ns) {
        out.push(diag(
            "parent_leader_exited",
            format!("parent {p}'s main thread exited {} while its other threads live on: ps shows it as Z, but it is not dead and gets no SIGCHLD of its own", since_exit(exit, t)),
        ));
    }
    for change in &facts.disposition_history {
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
        out.push(diag(
            "sigchld_disposition_change",
            format!(
                "thread {}{} of {p} set SIGCHLD to {to} with flags {} {when}",
                change.tid,
                thread_name(change.comm),
                sa_flags(change.flags),
            ),
        ));
    }
    if !facts.fork_failures.is_empty() {
        let total: u64 = facts.fork_failures.values().sum();
        let by: Vec<String> = facts
            .fork_failures
            .iter()
            .map(|(e, n)| format!("{} {n}", errno_name(*e)))
            .collect();
        out.push(diag(
            "fork_failures",
            format!(
                "{total} of parent {p}'s forks failed during the trace ({})",
                by.join(", ")
            ),
        ));
    }
    pidfd_held(ctx, facts, &mut out);
    if let Some(probe) = &facts.probe {
        let stuck: Vec<String> = probe
            .threads
            .iter()
            .filter(|t| t.state == 'D')
            .map(|t| format!("{} ({}) at {}", t.tid, escape(&t.comm), escape(&t.wchan)))
            .collect();
        if !stuck.is_empty() {
            out.push(diag(
                "parent_thread_uninterruptible",
                format!(
                    "parent {p} has threads in D state (uninterruptible sleep): {}",
                    stuck.join(", ")
                ),
            ));
        }
        let threads: Vec<String> = probe
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
        out.push(diag(
            "parent_threads",
            format!(
                "parent {p}'s threads (tid, state, wchan) when the exit passed the threshold: {}",
                threads.join("; ")
            ),
        ));
    }
    out
}

/// A reap no wait showed (a reaper whose waits the probes do not see, such
/// as an init that reaps through io_uring): dated by the task's free.
pub fn reap_unseen(parent: u32, freed_ns: u64, exit: &ExitFacts) -> Diag {
    diag(
        "reap_unseen",
        format!(
            "no wait by {parent} that reaped it was seen; it was released no later than {}, when the kernel freed it, but the kernel frees tasks from an RCU callback that can trail the reap by seconds on a busy machine: it may have been reaped in time, so this finding is not certain",
            since_exit(exit, freed_ns)
        ),
    )
}

pub fn events_lost(lost: u64, pid: u32) -> Diag {
    diag(
        "events_lost",
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
        "orphaned",
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

/// The parent exec'd another program after forking the child: the code
/// that forked it (and would have waited for it) is gone.
fn parent_execed(ctx: &DiagContext, facts: &ParentFacts, out: &mut Vec<Diag>) {
    if ctx.child_start_ns == 0 {
        return;
    }
    let mut execs = facts.execs_since(ctx.child_start_ns);
    let Some(first) = execs.next() else {
        return;
    };
    let last = execs.last().unwrap_or(first);
    let old = if first.old_filename.is_empty() {
        format!("{}", first.old_comm)
    } else {
        format!("{} ({})", first.old_comm, escape(&first.old_filename))
    };
    out.push(diag(
        "parent_execed",
        format!(
            "parent {} exec'd {} ({}) {} after forking {}: the program that forked it, {old}, is gone, and the new image does not know about the children it inherited, so nothing in it waits for this one",
            ctx.parent_pid,
            escape(&last.new_filename),
            last.new_comm,
            seconds(first.time_ns.saturating_sub(ctx.child_start_ns)),
            ctx.child_pid,
        ),
    ));
}

/// The parent holds a pidfd for the child (/proc, when the exit passed the
/// threshold): it may poll it, but only a wait reaps.
fn pidfd_held(ctx: &DiagContext, facts: &ParentFacts, out: &mut Vec<Diag>) {
    let Some(probe) = &facts.probe else {
        return;
    };
    let exit_time = ctx.exit.time_ns.unwrap_or(0);
    for held in probe
        .pidfds
        .iter()
        .filter(|h| h.pid == ctx.child_pid as i32)
    {
        let waited = facts
            .waits
            .iter()
            .find(|w| w.pidfd == Some(held.fd) && w.time_ns >= exit_time);
        let text = match waited {
            None => format!(
                "parent {} holds pidfd {} for {} and has not waited on it since the exit: a pidfd reports the exit (it polls readable) but does not reap; waitid(P_PIDFD, {}, ..., WEXITED) does",
                ctx.parent_pid, held.fd, ctx.child_pid, held.fd
            ),
            Some(w) => format!(
                "parent {} held pidfd {} for {} and waited on it only {}",
                ctx.parent_pid,
                held.fd,
                ctx.child_pid,
                since_exit(ctx.exit, w.time_ns)
            ),
        };
        let code = if waited.is_none() {
            "pidfd_not_waited"
        } else {
            "pidfd_held"
        };
        out.push(diag(code, text));
    }
}

fn disposition(ctx: &DiagContext, facts: &ParentFacts, out: &mut Vec<Diag>) {
    let p = ctx.parent_pid;
    let exit = ctx.exit;
    // The SIGCHLD sent to the parent itself (not a later one to an adopter).
    let sent = exit.sigchld.iter().find(|s| s.target_tgid == p);
    if exit.exit_signal == 0 {
        out.push(diag(
            "no_sigchld",
            format!("{} was created with exit_signal 0 (clone): no SIGCHLD is sent, and only a wait with __WALL or __WCLONE reaps it", ctx.child_pid),
        ));
    } else if exit.exit_signal != reaper_trace_common::SIGCHLD {
        // A "clone child": wait_consider_task skips it unless __WALL or
        // __WCLONE is given (and, conversely, __WCLONE sees only those).
        let blind = facts
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
        out.push(diag(
            "exit_signal_not_sigchld",
            format!(
                "{} was created by clone with exit signal {} instead of SIGCHLD: parent {p} was sent {} at the exit, and wait(), waitpid() and waitid() without __WALL or __WCLONE do not see such a child (ECHILD){waits}",
                ctx.child_pid,
                signal_name(exit.exit_signal),
                signal_name(exit.exit_signal),
            ),
        ));
    }
    let (disposition, handler, flags, blocked) =
        match (sent, exit.parent_disposition.or(facts.disposition)) {
            (Some(s), _) => (Some(s.disposition), s.handler, s.sa_flags, s.blocked),
            (None, Some((d, f))) => (Some(d), 0, f, false),
            (None, None) => (None, 0, 0, false),
        };
    let signalfd_seen = facts.probe.as_ref().is_some_and(|pr| pr.signalfd_sigchld);
    if signalfd_seen {
        out.push(diag(
            "sigchld_signalfd",
            format!("parent {p} blocks SIGCHLD and reads it through a signalfd: it reaps only when its event loop gets back to that fd, so anything slow in the loop delays every reap"),
        ));
    } else if blocked && facts.sigchld_delivered == 0 {
        out.push(diag(
            "sigchld_signalfd",
            format!("SIGCHLD was blocked in parent {p} and never delivered to a handler: it is consumed through a signalfd (or sigwait), so the parent reaps only when its loop reads that fd"),
        ));
    } else if blocked {
        out.push(diag(
            "sigchld_blocked",
            format!("SIGCHLD was blocked in parent {p}'s thread when the child exited"),
        ));
    }
    match disposition {
        Some(Disposition::Default) => out.push(diag(
            "sigchld_default",
            format!("parent {p} kept SIGCHLD at SIG_DFL (flags {}): the kernel discards the signal, so only an explicit wait() reaps", sa_flags(flags)),
        )),
        Some(Disposition::Handler) => out.push(diag(
            "sigchld_handler",
            format!("parent {p} has a SIGCHLD handler at {handler:#x} (flags {})", sa_flags(flags)),
        )),
        Some(Disposition::Ignore) if exit.exit_signal == reaper_trace_common::SIGCHLD => out.push(diag(
            "sigchld_ignored",
            format!("parent {p} ignores SIGCHLD (SIG_IGN): the kernel reaps its children at exit"),
        )),
        Some(Disposition::Ignore) => out.push(diag(
            "sigchld_ignored",
            format!("parent {p} ignores SIGCHLD (SIG_IGN), but the kernel reaps at exit only children whose exit signal is SIGCHLD: not {}", ctx.child_pid),
        )),
        None => {}
    }
    if let Some(s) = sent {
        let result = match s.result {
            SignalResult::Delivered => "queued",
            SignalResult::Ignored => "discarded as ignored",
            SignalResult::AlreadyPending => "merged into one already pending",
            _ => "lost",
        };
        out.push(diag(
            "sigchld_result",
            format!("the SIGCHLD for this exit was {result}"),
        ));
    } else if exit.exit_signal == reaper_trace_common::SIGCHLD && exit.time_ns.is_some() {
        out.push(diag(
            "sigchld_not_seen",
            format!("no SIGCHLD to parent {p} was seen for this exit"),
        ));
    }
}

fn waits(ctx: &DiagContext, facts: &ParentFacts, exit_time: u64, out: &mut Vec<Diag>) {
    let p = ctx.parent_pid;
    let child = ctx.child_pid as i32;
    let after: Vec<_> = facts
        .waits
        .iter()
        .filter(|w| w.time_ns >= exit_time)
        .collect();
    let others: std::collections::BTreeSet<i32> = after
        .iter()
        .map(|w| w.pid)
        .chain(facts.waiting.values().map(|w| w.pid))
        .filter(|&pid| pid > 0 && pid != child)
        .collect();
    if after.is_empty() && facts.waiting.is_empty() {
        let ever = if facts.waits.is_empty() {
            ", nor at any time during the trace"
        } else {
            ""
        };
        out.push(diag(
            "never_waited",
            format!("parent {p} made no wait call after the child exited{ever}"),
        ));
    }
    if !others.is_empty() {
        let list: Vec<String> = others.iter().map(|o| o.to_string()).collect();
        out.push(diag(
            "waited_for_other",
            format!(
                "parent {p} waited for pid {} instead of {}",
                list.join(", "),
                ctx.child_pid
            ),
        ));
    }
    for (tid, w) in &facts.waiting {
        out.push(diag(
            "blocked_in_wait",
            format!(
                "thread {tid} of {p} is blocked in a wait for {} (options {}) since {}",
                wait_target(w.pid, w.pidfd),
                wait_options(w.options),
                since_exit(ctx.exit, w.since_ns)
            ),
        ));
    }
    if let (Some(first), Some(exited)) = (after.first(), ctx.exit.time_ns) {
        out.push(diag(
            "first_wait_after",
            format!(
                "parent {p}'s first wait call after the exit came {} later ({}, options {})",
                seconds(first.time_ns - exited),
                first_wait_target(first),
                wait_options(first.options)
            ),
        ));
    }
    let empty_polls = after
        .iter()
        .filter(|w| w.options & libc::WNOHANG != 0 && w.ret == 0)
        .count();
    if empty_polls > 0 {
        out.push(diag(
            "wnohang_empty",
            format!("{empty_polls} WNOHANG polls by parent {p} found nothing ready after the exit"),
        ));
    }
}

/// The first wait's target as the `first_wait_after` item has always said
/// it (`pid 12`, `pid -1`), a pidfd wait as `pidfd 3 (pid 12)`.
fn first_wait_target(w: &WaitCall) -> String {
    match w.pidfd {
        Some(_) => w.target(),
        None => format!("pid {}", w.pid),
    }
}
