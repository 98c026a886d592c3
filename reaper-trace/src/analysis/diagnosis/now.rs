//! What /proc says of a parent now explains about its zombies: its SIGCHLD
//! action, whether SIGCHLD is blocked and pending in its threads (and a
//! signalfd that would read it), threads stopped or held by a tracer, and
//! where each thread waits. One home for `reaper-trace zombies` (every
//! item, [`explain`]) and for the zombies a trace finds already there (the
//! items the trace cannot know otherwise, [`predates`]).
//!
//! A probe recorded before these fields were read (`sigchld_shared_pending`
//! absent) says nothing here: a report of an old recording stays as it was.

use super::{Diag, Scene, diag, health};
use crate::{
    analysis::codes::DiagCode,
    trace::{
        escape::escape,
        host_facts::{ParentProbe, ThreadProbe},
        names::syscall_name,
    },
};

/// How many threads get a `parent_thread_at` item (and a finding's
/// `threads`).
pub const MAX_THREADS_SHOWN: usize = 8;

/// Every item for parent `p`, as `reaper-trace zombies` shows them.
pub fn explain(p: u32, probe: &ParentProbe) -> Vec<Diag> {
    let mut out = vec![action(p, probe)];
    out.extend(masks(p, probe));
    out.extend(stopped(p, probe));
    out.extend(traced(p, probe));
    out.extend(health::uninterruptible(p, probe));
    out.extend(threads_at(p, probe));
    out
}

/// For a zombie already there when the trace started: what the trace's own
/// rules cannot say (the action when the trace saw none, the masks, stops,
/// tracers and where each thread waits); the signalfd and D state items
/// come from those rules.
pub(super) fn predates(s: &Scene) -> Vec<Diag> {
    let (Some(_), Some(probe)) = (s.exit.predates, s.facts.probe.as_ref()) else {
        return Vec::new();
    };
    if probe.sigchld_shared_pending.is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    if s.exit.parent_disposition.or(s.facts.disposition).is_none() {
        out.push(action(s.p, probe));
    }
    out.extend(masks(s.p, probe));
    out.extend(stopped(s.p, probe));
    out.extend(traced(s.p, probe));
    out.extend(threads_at(s.p, probe));
    out
}

/// The SIGCHLD action in force, from the process's ignored and caught sets.
fn action(p: u32, probe: &ParentProbe) -> Diag {
    if probe.sigchld_ignored {
        diag(
            DiagCode::SigchldIgnored,
            format!(
                "parent {p} ignores SIGCHLD now (SigIgn): the kernel reaps the children that exit from now on, but not these, which exited before it ignored it or have another exit signal"
            ),
        )
    } else if probe.sigchld_caught {
        diag(
            DiagCode::SigchldHandler,
            format!("parent {p} has a SIGCHLD handler installed (SigCgt)"),
        )
    } else {
        diag(
            DiagCode::SigchldDefault,
            format!(
                "parent {p} keeps SIGCHLD at SIG_DFL (neither caught nor ignored): the kernel discards the signal unless it is blocked, so only an explicit wait() reaps"
            ),
        )
    }
}

/// `in every thread (3 of 3)`, or `in the 64 threads read (of 900)`.
fn every_thread(read: usize, probe: &ParentProbe) -> String {
    match probe.thread_count {
        Some(total) if total as usize > read => {
            format!("in the {read} threads read (of {total})")
        }
        _ => format!("in every thread ({read} of {read})"),
    }
}

fn tids(threads: &[&ThreadProbe]) -> String {
    let list: Vec<String> = threads.iter().map(|t| t.tid.to_string()).collect();
    list.join(", ")
}

fn signalfd_list(probe: &ParentProbe) -> String {
    let fds: Vec<String> = probe.signalfds.iter().map(|fd| fd.to_string()).collect();
    match fds.len() {
        1 => format!("signalfd {}", fds[0]),
        _ => format!("signalfds {}", fds.join(", ")),
    }
}

/// SIGCHLD blocked and pending, per thread, and the signalfds that read it.
fn masks(p: u32, probe: &ParentProbe) -> Option<Diag> {
    let known: Vec<&ThreadProbe> = probe
        .threads
        .iter()
        .filter(|t| t.sigchld_blocked.is_some())
        .collect();
    if known.is_empty() {
        return None;
    }
    let (blocked, open): (Vec<&ThreadProbe>, Vec<&ThreadProbe>) =
        known.iter().partition(|t| t.sigchld_blocked == Some(true));
    let pending = probe.sigchld_shared_pending == Some(true)
        || known.iter().any(|t| t.sigchld_pending == Some(true));
    let has_signalfd = !probe.signalfds.is_empty();
    let reader = if has_signalfd {
        format!(
            "; {} would read it, so the parent has not read that fd since the signal came",
            signalfd_list(probe)
        )
    } else {
        "; nothing reads it (no signalfd; sigwaitinfo would)".to_owned()
    };
    let handler = if probe.sigchld_caught {
        ", so its handler never runs"
    } else {
        ""
    };
    Some(match (blocked.is_empty(), open.is_empty(), pending) {
        // Blocked nowhere: delivered (or discarded) at once; only a
        // signalfd beside it is a mistake worth saying.
        (true, _, _) if has_signalfd => diag(
            DiagCode::SigchldSignalfd,
            format!(
                "parent {p} has {} for SIGCHLD but blocks SIGCHLD in no thread: the signal goes to its action (discarded at SIG_DFL) and the fd never becomes readable",
                signalfd_list(probe)
            ),
        ),
        (true, _, _) => return None,
        (false, true, true) => diag(
            DiagCode::SigchldPendingBlocked,
            format!(
                "SIGCHLD is pending and blocked {} of parent {p}{handler}{reader}",
                every_thread(known.len(), probe)
            ),
        ),
        (false, true, false) => diag(
            DiagCode::SigchldBlocked,
            format!(
                "SIGCHLD is blocked {} of parent {p}, and none is pending: the last one was taken{}",
                every_thread(known.len(), probe),
                if has_signalfd {
                    format!(" (through {})", signalfd_list(probe))
                } else {
                    String::new()
                }
            ),
        ),
        (false, false, _) => diag(
            DiagCode::SigchldBlocked,
            format!(
                "SIGCHLD is blocked in thread{} {} of parent {p} but not in {}: the signal goes to a thread that does not block it",
                if blocked.len() == 1 { "" } else { "s" },
                tids(&blocked),
                tids(&open)
            ),
        ),
    })
}

/// Threads in state T: stopped by SIGSTOP, SIGTSTP or job control.
fn stopped(p: u32, probe: &ParentProbe) -> Option<Diag> {
    let stopped: Vec<&ThreadProbe> = probe.threads.iter().filter(|t| t.state == 'T').collect();
    if stopped.is_empty() {
        return None;
    }
    let text = if stopped.len() == probe.threads.len() {
        format!(
            "parent {p} is stopped (state T: SIGSTOP, SIGTSTP or job control) {}: it runs no code, so it reaps nothing until it gets SIGCONT",
            every_thread(stopped.len(), probe)
        )
    } else {
        format!(
            "thread{} {} of parent {p} {} stopped (state T)",
            if stopped.len() == 1 { "" } else { "s" },
            tids(&stopped),
            if stopped.len() == 1 { "is" } else { "are" }
        )
    };
    Some(diag(DiagCode::ParentStopped, text))
}

/// Threads with a ptrace tracer, and whether it holds them stopped (t).
fn traced(p: u32, probe: &ParentProbe) -> Vec<Diag> {
    let mut tracers: Vec<u32> = probe.threads.iter().filter_map(|t| t.tracer_pid).collect();
    tracers.sort_unstable();
    tracers.dedup();
    tracers
        .into_iter()
        .map(|tracer| {
            let held: Vec<&ThreadProbe> = probe
                .threads
                .iter()
                .filter(|t| t.tracer_pid == Some(tracer))
                .collect();
            let trapped: Vec<&ThreadProbe> =
                held.iter().copied().filter(|t| t.state == 't').collect();
            let stop = if trapped.is_empty() {
                String::new()
            } else {
                format!(
                    ", which holds {} stopped (state t): it reaps nothing until the tracer lets it go on",
                    tids(&trapped)
                )
            };
            diag(
                DiagCode::ParentTraced,
                format!(
                    "thread{} {} of parent {p} {} traced by {tracer} (ptrace: a debugger or strace){stop}",
                    if held.len() == 1 { "" } else { "s" },
                    tids(&held),
                    if held.len() == 1 { "is" } else { "are" }
                ),
            )
        })
        .collect()
}

fn threads_at(p: u32, probe: &ParentProbe) -> Vec<Diag> {
    probe
        .threads
        .iter()
        .take(MAX_THREADS_SHOWN)
        .map(|t| {
            diag(
                DiagCode::ParentThreadAt,
                format!("thread {} of {p}: {}", t.tid, whereabouts(t)),
            )
        })
        .collect()
}

/// Where one thread is in the kernel, escaped: `(main) S in clock_nanosleep
/// (wchan hrtimer_nanosleep; kernel do_nanosleep ← hrtimer_nanosleep ← …)`.
/// Where it is in its own code, once its user stack is named, is
/// [`thread_line`]'s.
pub fn whereabouts(t: &ThreadProbe) -> String {
    let mut out = format!("({}) {}{}", escape(&t.comm), t.state, call_text(t, "in"));
    let mut notes = Vec::new();
    if !t.wchan.is_empty() {
        notes.push(format!("wchan {}", escape(&t.wchan)));
    }
    if !t.kernel_stack.is_empty() {
        let frames: Vec<String> = t.kernel_stack.iter().map(|f| escape(f)).collect();
        notes.push(format!("kernel {}", frames.join(" ← ")));
    }
    if !notes.is_empty() {
        out.push_str(&format!(" ({})", notes.join("; ")));
    }
    out
}

/// ` in clock_nanosleep` (`lead` first), ` outside a system call`,
/// ` running`, or nothing when /proc did not say.
fn call_text(t: &ThreadProbe, lead: &str) -> String {
    match t.syscall {
        Some(call) if call.nr >= 0 => format!(" {lead} {}", syscall_name(call.nr)),
        Some(_) => " outside a system call".to_owned(),
        None if t.state == 'R' => " running".to_owned(),
        None => String::new(),
    }
}

/// ` ← sleep ← main.c:40 in wait_for_jobs`, escaped: the named user stack's
/// part, empty before naming or when only libc was found.
fn outward(t: &ThreadProbe) -> String {
    t.user_place
        .as_ref()
        .map(|p| escape(&p.outward()))
        .unwrap_or_default()
}

/// One line per thread for a finding, escaped: `thread 4426 (main) blocked
/// in clock_nanosleep ← sleep ← main.c:40 in wait_for_jobs`, `thread 4427
/// (worker) running`. The state is said where it is not a plain sleep (S).
pub fn thread_line(t: &ThreadProbe) -> String {
    let mut out = format!(
        "thread {} ({}){}{}",
        t.tid,
        escape(&t.comm),
        call_text(t, "blocked in"),
        outward(t)
    );
    if let Some(place) = t.user_place.as_ref().filter(|p| p.waits_at.is_none()) {
        // Unwound, but nothing outside libc was found.
        let depth = place.frames.len();
        out.push_str(&format!(
            " (no frame of its own in the {depth} unwound{})",
            if place.truncated { ", truncated" } else { "" }
        ));
    }
    if !matches!(t.state, 'S' | 'R') {
        out.push_str(&format!(" (state {})", t.state));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::host_facts::SyscallProbe;

    fn thread(tid: u32, state: char, blocked: bool, pending: bool) -> ThreadProbe {
        ThreadProbe {
            sigchld_blocked: Some(blocked),
            sigchld_pending: Some(pending),
            ..ThreadProbe::basic(tid, "app", state, "do_sys_poll")
        }
    }

    fn probe(threads: Vec<ThreadProbe>, shared_pending: bool) -> ParentProbe {
        ParentProbe {
            thread_count: Some(threads.len() as u32),
            threads,
            sigchld_shared_pending: Some(shared_pending),
            ..Default::default()
        }
    }

    fn only(items: &[Diag], code: DiagCode) -> Vec<&str> {
        items
            .iter()
            .filter(|d| d.code == code)
            .map(|d| d.text.as_str())
            .collect()
    }

    #[test]
    fn pending_and_blocked_in_every_thread() {
        let p = probe(
            vec![thread(10, 'S', true, false), thread(11, 'S', true, false)],
            true,
        );
        let items = explain(10, &p);
        assert_eq!(
            only(&items, DiagCode::SigchldPendingBlocked),
            [
                "SIGCHLD is pending and blocked in every thread (2 of 2) of parent 10; nothing reads it (no signalfd; sigwaitinfo would)"
            ]
        );
        let mut caught = p.clone();
        caught.sigchld_caught = true;
        assert!(
            only(&explain(10, &caught), DiagCode::SigchldPendingBlocked)[0]
                .contains("of parent 10, so its handler never runs; nothing reads it")
        );
        // With a signalfd: it would read it, and has not.
        let mut with_fd = p.clone();
        with_fd.signalfds = vec![5];
        let items = explain(10, &with_fd);
        assert!(
            only(&items, DiagCode::SigchldPendingBlocked)[0]
                .ends_with("; signalfd 5 would read it, so the parent has not read that fd since the signal came"),
            "{items:?}"
        );
        // Pending for one thread alone counts too; a truncated list says so.
        let mut partial = probe(vec![thread(10, 'S', true, true)], false);
        partial.thread_count = Some(70);
        assert!(
            only(&explain(10, &partial), DiagCode::SigchldPendingBlocked)[0]
                .contains("in the 1 threads read (of 70)")
        );
    }

    #[test]
    fn blocked_somewhere_or_nowhere() {
        let some = probe(
            vec![thread(10, 'S', true, false), thread(12, 'S', false, false)],
            false,
        );
        assert_eq!(
            only(&explain(10, &some), DiagCode::SigchldBlocked),
            [
                "SIGCHLD is blocked in thread 10 of parent 10 but not in 12: the signal goes to a thread that does not block it"
            ]
        );
        let none = probe(vec![thread(10, 'S', false, false)], false);
        let items = explain(10, &none);
        assert!(only(&items, DiagCode::SigchldBlocked).is_empty());
        assert!(only(&items, DiagCode::SigchldSignalfd).is_empty());
        let mut fd_unblocked = none.clone();
        fd_unblocked.signalfds = vec![3];
        assert!(
            only(&explain(10, &fd_unblocked), DiagCode::SigchldSignalfd)[0]
                .contains("blocks SIGCHLD in no thread")
        );
    }

    #[test]
    fn the_action_comes_from_the_ignored_and_caught_sets() {
        let mut p = probe(vec![thread(10, 'S', false, false)], false);
        assert_eq!(explain(10, &p)[0].code, DiagCode::SigchldDefault);
        p.sigchld_caught = true;
        assert_eq!(explain(10, &p)[0].code, DiagCode::SigchldHandler);
        p.sigchld_ignored = true;
        assert_eq!(explain(10, &p)[0].code, DiagCode::SigchldIgnored);
    }

    #[test]
    fn stopped_traced_and_where_each_thread_waits() {
        let mut main = thread(10, 'T', false, false);
        main.syscall = Some(SyscallProbe {
            nr: libc::SYS_wait4,
            sp: 1,
            pc: 2,
        });
        main.kernel_stack = vec!["do_signal_stop".into(), "get_signal".into()];
        let p = probe(vec![main], false);
        let items = explain(10, &p);
        assert_eq!(
            only(&items, DiagCode::ParentStopped),
            [
                "parent 10 is stopped (state T: SIGSTOP, SIGTSTP or job control) in every thread (1 of 1): it runs no code, so it reaps nothing until it gets SIGCONT"
            ]
        );
        assert_eq!(
            only(&items, DiagCode::ParentThreadAt),
            [
                "thread 10 of 10: (app) T in wait4 (wchan do_sys_poll; kernel do_signal_stop ← get_signal)"
            ]
        );
        let mut traced = thread(10, 't', false, false);
        traced.tracer_pid = Some(99);
        let mut other = thread(11, 'S', false, false);
        other.tracer_pid = Some(99);
        let items = explain(10, &probe(vec![traced, other], false));
        assert_eq!(
            only(&items, DiagCode::ParentTraced),
            [
                "threads 10, 11 of parent 10 are traced by 99 (ptrace: a debugger or strace), which holds 10 stopped (state t): it reaps nothing until the tracer lets it go on"
            ]
        );
        assert!(only(&items, DiagCode::ParentStopped).is_empty());
    }

    #[test]
    fn names_from_the_traced_system_are_escaped() {
        let mut t = thread(10, 'S', false, false);
        t.comm = "a\nb".into();
        t.kernel_stack = vec!["x\u{1b}[2J".into()];
        let text = whereabouts(&t);
        assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn a_threads_line_names_its_call_and_where_its_code_waits() {
        use crate::trace::stack::{Symbol, UserPlace};
        let frame = |module: &str, function: &str, line: Option<u32>| Symbol {
            module: module.into(),
            address: 0x40,
            function: Some(function.into()),
            file: line.map(|_| "/src/main\u{1b}[2J.c".to_owned()),
            line,
        };
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        let mut t = thread(4426, 'S', false, false);
        t.comm = "main".into();
        t.syscall = Some(SyscallProbe {
            nr: libc::SYS_clock_nanosleep,
            sp: 1,
            pc: 2,
        });
        t.user_place = Some(UserPlace::new(
            vec![
                frame(libc, "clock_nanosleep", None),
                frame(libc, "sleep", None),
                frame("/src/app", "wait_for_jobs", Some(40)),
            ],
            false,
        ));
        assert_eq!(
            thread_line(&t),
            "thread 4426 (main) blocked in clock_nanosleep ← sleep ← main\\x1b[2J.c:40 in wait_for_jobs"
        );
        // The kernel's side stays as it was.
        assert_eq!(
            whereabouts(&t),
            "(main) S in clock_nanosleep (wchan do_sys_poll)"
        );
        // Unwound into libc alone; stopped; running.
        t.user_place = Some(UserPlace::new(vec![frame(libc, "pause", None)], true));
        t.state = 'T';
        assert_eq!(
            thread_line(&t),
            "thread 4426 (main) blocked in clock_nanosleep (no frame of its own in the 1 unwound, truncated) (state T)"
        );
        let running = ThreadProbe::basic(4427, "worker", 'R', "");
        assert_eq!(thread_line(&running), "thread 4427 (worker) running");
    }

    #[test]
    fn an_old_probe_says_nothing_new() {
        let old = ParentProbe {
            threads: vec![ThreadProbe::basic(10, "app", 'T', "")],
            ..Default::default()
        };
        // `explain` is for fresh probes; the trace's rule skips old ones.
        assert!(old.sigchld_shared_pending.is_none());
        assert!(only(&explain(10, &old), DiagCode::SigchldPendingBlocked).is_empty());
    }
}
