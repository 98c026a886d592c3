//! Rules about who the child was left to: a zombie older than the trace, a
//! parent that ended, exec'd or lost its main thread, a tracer that
//! collected the exit first.

use super::{Diag, Scene, diag, since_exit};
use crate::{
    analysis::codes::DiagCode,
    trace::{escape::escape, names::seconds},
};

pub(super) fn predates_trace(s: &Scene) -> Option<Diag> {
    let p = s.exit.predates?;
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
    Some(diag(
        DiagCode::PredatesTrace,
        format!("it was already a zombie when tracing started{age}"),
    ))
}

pub(super) fn parent_was_exiting(s: &Scene) -> Option<Diag> {
    let from = s.exit.adopted_at_exit_from.as_ref()?;
    let p = s.p;
    Some(diag(
        DiagCode::ParentWasExiting,
        format!(
            "its parent {} ({}) was already exiting when it exited ({}): the kernel had handed it to {p} before announcing its exit, so it was {p}'s to reap",
            from.parent,
            from.parent_comm,
            from.parent_end.describe()
        ),
    ))
}

pub(super) fn parent_exited(s: &Scene) -> Option<Diag> {
    let t = s.parent_exited_ns.filter(|&t| t >= s.exit_time)?;
    let adopter = s
        .exit
        .adopted_by
        .map(|a| format!(" and {} took it over", a))
        .unwrap_or_default();
    let how = s
        .ctx
        .parent_end
        .map(|end| format!(" ({})", end.describe()))
        .unwrap_or_default();
    Some(diag(
        DiagCode::ParentExited,
        format!(
            "parent {} ended {}{how} without reaping it{adopter}",
            s.p,
            since_exit(s.exit, t)
        ),
    ))
}

pub(super) fn namespace_ended(s: &Scene) -> Option<Diag> {
    (s.ctx.parent_ns_init && s.parent_exited_ns.is_some()).then(|| {
        diag(
            DiagCode::NamespaceEnded,
            format!("parent {} is PID 1 of its pid namespace: when it exited, the kernel killed the namespace and the dying init reaped what was left", s.p),
        )
    })
}

/// The parent exec'd another program after forking the child: the code
/// that forked it (and would have waited for it) is gone.
pub(super) fn parent_execed(s: &Scene) -> Option<Diag> {
    let ctx = s.ctx;
    if ctx.child_start_ns == 0 {
        return None;
    }
    let mut execs = s.facts.execs_since(ctx.child_start_ns);
    let first = execs.next()?;
    let last = execs.last().unwrap_or(first);
    let old = if first.old_filename.is_empty() {
        format!("{}", first.old_comm)
    } else {
        format!("{} ({})", first.old_comm, escape(&first.old_filename))
    };
    Some(diag(
        DiagCode::ParentExeced,
        format!(
            "parent {} exec'd {} ({}) {} after forking {}: the program that forked it, {old}, is gone, and the new image does not know about the children it inherited, so nothing in it waits for this one",
            ctx.parent_pid,
            escape(&last.new_filename),
            last.new_comm,
            seconds(first.time_ns.saturating_sub(ctx.child_start_ns)),
            ctx.child_pid,
        ),
    ))
}

pub(super) fn collected_by_tracer(s: &Scene) -> Option<Diag> {
    let tracer = s.exit.collected_by_tracer?;
    Some(diag(
        DiagCode::CollectedByTracer,
        format!(
            "its tracer {tracer} (ptrace) collected the exit with its own wait, which does not reap: the child went back to parent {} to be reaped",
            s.p
        ),
    ))
}

pub(super) fn parent_leader_exited(s: &Scene) -> Option<Diag> {
    let (Some(t), None) = (s.facts.leader_exited_ns, s.parent_exited_ns) else {
        return None;
    };
    Some(diag(
        DiagCode::ParentLeaderExited,
        format!(
            "parent {}'s main thread exited {} while its other threads live on: ps shows it as Z, but it is not dead and gets no SIGCHLD of its own",
            s.p,
            since_exit(s.exit, t)
        ),
    ))
}
