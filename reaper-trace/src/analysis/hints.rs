//! One short, specific remediation per finding, derived from its diagnosis:
//! what the person who owns the parent's code should change. The most
//! specific cause wins. Where the child's fork stack has been named
//! (`output::stacks::symbolize_finding`), the hint names the line that
//! forked it: `pclose() the stream opened at leak.c:41`.

use super::{
    codes::DiagCode::{self, *},
    diagnosis::Diag,
    findings::{Finding, FindingKind},
};
use crate::trace::{comm::Comm, escape::escape, stack};

/// What a hint is derived from: a finding, or a parent of zombies seen in
/// a snapshot (`reaper-trace zombies`).
pub struct HintInput<'a> {
    pub kind: FindingKind,
    /// The child's name: a shell child is most likely a popen()'s.
    pub comm: Comm,
    pub parent_pid: u32,
    /// The parent is PID 1 of a pid namespace of its own.
    pub parent_ns_init: bool,
    /// The parent died of a signal.
    pub parent_killed: bool,
    pub diagnosis: &'a [Diag],
    /// Nothing waited for the child: the trace saw no wait after its exit
    /// (`never_waited`), or a snapshot found it a zombie.
    pub unwaited: bool,
    /// The line that forked the child (`leak.c:41`, escaped) and the
    /// function it called there, once its fork stack is named.
    pub forked_at: Option<(String, Option<String>)>,
}

/// The hint for a finding, if its diagnosis points at a fix.
pub fn hint(f: &Finding) -> Option<String> {
    let forked_at = f
        .fork_stack
        .as_deref()
        .and_then(stack::blamed_line)
        .map(|(line, callee)| (escape(&line), callee.map(str::to_owned)));
    hint_for(&HintInput {
        kind: f.kind,
        comm: f.comm,
        parent_pid: f.parent_pid,
        parent_ns_init: f.parent_ns_pid.is_some_and(|p| p.pid == 1),
        parent_killed: f.parent_end.as_ref().is_some_and(|e| e.signal.is_some()),
        diagnosis: &f.diagnosis,
        unwaited: f.diagnosis.iter().any(|d| d.code == NeverWaited),
        forked_at,
    })
}

/// The hint for what `input` says, if it points at a fix.
pub fn hint_for(input: &HintInput) -> Option<String> {
    let diagnosis = input.diagnosis;
    let has = |code: DiagCode| diagnosis.iter().any(|d| d.code == code);
    let text = |code: DiagCode| {
        diagnosis
            .iter()
            .find(|d| d.code == code)
            .map(|d| d.text.as_str())
    };
    let unwaited = input.unwaited;
    let parent = input.parent_pid;
    // The latest change by a thread other than the main one that took
    // reaping away (SIG_IGN or SIG_DFL): a library behind the main loop.
    let other_thread_change = diagnosis
        .iter()
        .rev()
        .filter(|d| d.code == SigchldDispositionChange)
        .map(|d| d.text.as_str())
        .find(|t| {
            !t.starts_with(&format!("thread {parent} "))
                && (t.contains("to SIG_IGN") || t.contains("to SIG_DFL"))
        });
    let at = input.forked_at.as_ref().map(|(line, _)| line.as_str());
    let called = |name: &str| {
        input
            .forked_at
            .as_ref()
            .and_then(|(_, callee)| callee.as_deref())
            .is_some_and(|c| c.contains(name))
    };
    let shell_child = input.comm.as_bytes() == b"sh";
    let hint = match input.kind {
        // A parent that exits on purpose may leave children behind (a double
        // fork); one that was killed did not mean to.
        FindingKind::Orphaned if input.parent_killed => {
            "the parent was killed while its children ran: on SIGTERM, stop and reap the children before exiting, and keep the shutdown path free of crashes"
                .to_owned()
        }
        FindingKind::Orphaned => return None,
        // What /proc shows the parent doing now comes first: nothing else
        // helps while it lasts.
        _ if has(ParentStopped) => format!(
            "the parent is stopped: it reaps nothing until it gets SIGCONT (kill -CONT {parent}); find what stopped it (a job-control stop, a SIGSTOP from a supervisor)"
        ),
        _ if has(ParentTraced) => {
            "a tracer (debugger or strace) holds the parent: continue or detach it, and the parent can reap again".into()
        }
        _ if has(SigchldPendingBlocked) && has(SigchldHandler) && !has(SigchldSignalfd) => {
            "SIGCHLD is blocked in every thread, so the handler never runs: unblock it (sigprocmask, pthread_sigmask) in a thread that lives, or read it with sigwaitinfo or a signalfd and loop waitpid(-1, WNOHANG) then".into()
        }
        _ if input.parent_ns_init && (unwaited || has(WaitedForOther)) => {
            "this parent is PID 1 of its pid namespace (a container's init) and does not reap: run it under an init (tini, docker --init)".into()
        }
        _ if has(CollectedByTracer) => {
            "a tracer collected this exit first; the parent must still call wait() for it".into()
        }
        _ if has(NoSigchld) => {
            "children made with exit_signal 0 send no SIGCHLD: reap them with waitpid(pid, __WALL) (or __WCLONE)".into()
        }
        _ if has(ExitSignalNotSigchld) => {
            let signal = text(ExitSignalNotSigchld)
                .and_then(|t| t.split("with exit signal ").nth(1))
                .and_then(|t| t.split(' ').next())
                .unwrap_or("another signal");
            format!(
                "this child was cloned with exit signal {signal}, which plain wait() never sees: reap it with waitpid(pid, &status, __WALL) (or __WCLONE), or clone it with SIGCHLD as its exit signal"
            )
        }
        _ if has(PidfdNotWaited) => {
            "the parent holds a pidfd for this child but never waits on it: when the pidfd polls readable, call waitid(P_PIDFD, fd, &info, WEXITED) (closing the pidfd does not reap)".into()
        }
        _ if has(ParentExeced) => {
            "the parent exec'd another program after forking this child: reap children before exec, or have the new program reap what it inherits (waitpid(-1, WNOHANG) at start and on SIGCHLD)".into()
        }
        // Whatever else it waited for (leak.c peeks with WNOWAIT): only
        // pclose() reaps a popen()'s child.
        _ if input.kind == FindingKind::Unreaped && called("popen") => format!(
            "pclose() the stream opened at {}: popen()'s child is reaped by pclose() alone",
            at.unwrap_or_default()
        ),
        _ if shell_child && unwaited => match at {
            Some(at) => format!(
                "a shell child forked at {at} is never waited for: waitpid() it (pclose() it, if it came from popen())"
            ),
            None => "a shell child never waited for: pclose() every popen(), and waitpid() every child of system()-like calls".into(),
        },
        _ if unwaited && called("Command::spawn") && at.is_some() => format!(
            "wait() on the Child spawned at {}: dropping a std::process::Child does not reap it",
            at.unwrap_or_default()
        ),
        _ if has(SigchldCoalesced) && has(SigchldHandler) => {
            "SIGCHLD does not queue: loop waitpid(-1, WNOHANG) in the handler until it returns 0".into()
        }
        _ if has(SigchldSignalfd) => {
            "read the signalfd before any slow work in the event loop, and loop waitpid(-1, WNOHANG) until it returns 0 each time".into()
        }
        _ if has(ParentThreadUninterruptible) => {
            "the parent is stuck in uninterruptible sleep: fix what it waits on (I/O, a hung mount); it cannot reap until then".into()
        }
        _ if has(ParentLeaderExited) => {
            "the main thread exited while other threads run: join the threads before main returns, or reap from a thread that lives".into()
        }
        _ if has(WaitedForOther) => match at {
            Some(at) => format!(
                "the parent waits for specific pids only: also reap the child forked at {at} (waitpid(-1, WNOHANG), or one wait per spawned child)"
            ),
            None => "the parent waits for specific pids only: also reap the rest with waitpid(-1, WNOHANG) (or one wait per spawned child)".into(),
        },
        _ if has(BlockedInWait) => {
            "a thread blocks in a wait for another child: use waitpid(-1, …) or WNOHANG polling so one slow child does not hold up the rest".into()
        }
        // Before "the parent exited": a thread that took reaping away is why
        // nothing reaped before the parent ended.
        _ if other_thread_change.is_some() => {
            format!(
                "SIGCHLD was changed by another thread of {parent} — a library changed it behind the main loop: {}",
                other_thread_change.unwrap_or_default()
            )
        }
        _ if has(ParentExited) && unwaited => match at {
            Some(at) => format!(
                "the parent exited without waiting for the child forked at {at}: wait for it before exiting"
            ),
            None => "the parent exited without waiting for its children: wait for them before exiting".into(),
        },
        _ if unwaited => match at {
            Some(at) => format!(
                "call waitpid() for the child forked at {at} (or set SIGCHLD to SIG_IGN if its exit status is not needed)"
            ),
            None => "call waitpid() for every child (or set SIGCHLD to SIG_IGN if their exit statuses are not needed)".into(),
        },
        _ if input.kind == FindingKind::LateReap => match at {
            Some(at) => format!(
                "reap the child forked at {at} promptly: a SIGCHLD handler (or signalfd) that loops waitpid(-1, WNOHANG), instead of waiting later"
            ),
            None => "reap promptly: a SIGCHLD handler (or signalfd) that loops waitpid(-1, WNOHANG), instead of waiting later".into(),
        },
        _ => return None,
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis::tests_support::finding,
        trace::{comm::Comm, stack::Symbol},
    };

    fn with(codes: &[DiagCode]) -> Finding {
        let mut f = finding();
        f.diagnosis = codes
            .iter()
            .map(|&code| Diag {
                code,
                text: format!("thread 10 of 10 {code}"),
            })
            .collect();
        f
    }

    #[test]
    fn the_most_specific_cause_wins() {
        let coalesced = hint(&with(&[SigchldHandler, SigchldCoalesced, NeverWaited]));
        assert!(coalesced.unwrap().contains("loop waitpid(-1, WNOHANG)"));
        let mut popen = with(&[SigchldDefault, NeverWaited]);
        popen.comm = Comm::from_str_lossy("sh");
        assert!(hint(&popen).unwrap().contains("pclose() every popen()"));
        let plain = hint(&with(&[SigchldDefault, NeverWaited])).unwrap();
        assert!(plain.starts_with("call waitpid()"), "{plain}");
        assert_eq!(hint(&with(&[SigchldDefault])), None);
        let mut other_thread = with(&[SigchldDispositionChange]);
        other_thread.diagnosis[0].text = "thread 812 of 10 set SIGCHLD to SIG_IGN".into();
        assert!(
            hint(&other_thread)
                .unwrap()
                .contains("thread 812 of 10 set SIGCHLD to SIG_IGN")
        );
    }

    fn frame(module: &str, function: &str, file: Option<&str>, line: Option<u32>) -> Symbol {
        Symbol {
            module: module.into(),
            address: 0x1139,
            function: Some(function.into()),
            file: file.map(Into::into),
            line,
        }
    }

    /// A fork stack: libc's `callee` called from `leak.c:41` in `caller`.
    fn forked_by(callee: &str, caller: &str) -> Vec<Symbol> {
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        vec![
            frame(libc, "__clone3", None, None),
            frame(libc, callee, None, None),
            frame("/src/leak", caller, Some("/src/leak.c"), Some(41)),
        ]
    }

    #[test]
    fn a_named_fork_line_goes_into_the_hint() {
        let mut popen = with(&[SigchldDefault, NeverWaited]);
        popen.comm = Comm::from_str_lossy("sh");
        popen.fork_stack = Some(forked_by("_IO_new_popen", "leak_popen"));
        let pclose =
            "pclose() the stream opened at leak.c:41: popen()'s child is reaped by pclose() alone";
        assert_eq!(hint(&popen).unwrap(), pclose);
        // A parent that peeked (WNOWAIT) and exited never reaped it either.
        let mut peeked = with(&[FirstWaitAfter, ParentExited]);
        peeked.fork_stack = Some(forked_by("_IO_new_popen", "leak_popen"));
        assert_eq!(hint(&peeked).unwrap(), pclose);
        // A shell child forked by plain fork() is not popen()'s.
        popen.fork_stack = Some(forked_by("__libc_fork", "run_script"));
        assert!(
            hint(&popen)
                .unwrap()
                .starts_with("a shell child forked at leak.c:41 is never waited for")
        );
        let mut plain = with(&[SigchldDefault, NeverWaited]);
        plain.fork_stack = Some(forked_by("__libc_fork", "main"));
        assert!(
            hint(&plain)
                .unwrap()
                .starts_with("call waitpid() for the child forked at leak.c:41 ")
        );
        let mut late = with(&[SigchldDefault]);
        late.kind = FindingKind::LateReap;
        late.fork_stack = Some(forked_by("__libc_fork", "main"));
        assert!(
            hint(&late)
                .unwrap()
                .starts_with("reap the child forked at leak.c:41 promptly")
        );
        let mut rust = with(&[NeverWaited]);
        rust.fork_stack = Some(vec![
            frame(
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "__clone3",
                None,
                None,
            ),
            frame(
                "/app",
                "std::process::Command::spawn",
                Some("/rustc/abc/library/std/src/process.rs"),
                Some(900),
            ),
            frame("/app", "app::main", Some("/src/main.rs"), Some(7)),
        ]);
        assert_eq!(
            hint(&rust).unwrap(),
            "wait() on the Child spawned at main.rs:7: dropping a std::process::Child does not reap it"
        );
        // Without line info the hint stays general; names are escaped.
        plain.fork_stack = Some(vec![frame("/src/leak", "main", None, None)]);
        assert!(
            hint(&plain)
                .unwrap()
                .starts_with("call waitpid() for every child")
        );
        plain.fork_stack = Some(vec![frame(
            "/src/leak",
            "main",
            Some("/src/le\nak.c"),
            Some(3),
        )]);
        assert!(!hint(&plain).unwrap().contains('\n'));
    }

    #[test]
    fn what_proc_shows_now_comes_first() {
        let stopped = with(&[NeverWaited, ParentStopped]);
        assert!(hint(&stopped).unwrap().contains("kill -CONT 10"));
        let blocked = with(&[SigchldHandler, SigchldPendingBlocked, NeverWaited]);
        assert!(
            hint(&blocked)
                .unwrap()
                .starts_with("SIGCHLD is blocked in every thread")
        );
        let with_fd = with(&[SigchldSignalfd, SigchldPendingBlocked, NeverWaited]);
        assert!(hint(&with_fd).unwrap().starts_with("read the signalfd"));
    }
}
