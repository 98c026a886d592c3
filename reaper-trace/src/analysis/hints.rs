//! One short, specific remediation per finding, derived from its diagnosis:
//! what the person who owns the parent's code should change. The most
//! specific cause wins.

use super::{
    codes::DiagCode::{self, *},
    findings::{Finding, FindingKind},
};

/// The hint for a finding, if its diagnosis points at a fix.
pub fn hint(f: &Finding) -> Option<String> {
    let has = |code: DiagCode| f.diagnosis.iter().any(|d| d.code == code);
    let text = |code: DiagCode| {
        f.diagnosis
            .iter()
            .find(|d| d.code == code)
            .map(|d| d.text.as_str())
    };
    // The latest change by a thread other than the main one that took
    // reaping away (SIG_IGN or SIG_DFL): a library behind the main loop.
    let other_thread_change = f
        .diagnosis
        .iter()
        .rev()
        .filter(|d| d.code == SigchldDispositionChange)
        .map(|d| d.text.as_str())
        .find(|t| {
            !t.starts_with(&format!("thread {} ", f.parent_pid))
                && (t.contains("to SIG_IGN") || t.contains("to SIG_DFL"))
        });
    let hint = match f.kind {
        // A parent that exits on purpose may leave children behind (a double
        // fork); one that was killed did not mean to.
        FindingKind::Orphaned if f.parent_end.as_ref().is_some_and(|e| e.signal.is_some()) => {
            "the parent was killed while its children ran: on SIGTERM, stop and reap the children before exiting, and keep the shutdown path free of crashes"
                .to_owned()
        }
        FindingKind::Orphaned => return None,
        _ if f.parent_ns_pid.is_some_and(|p| p.pid == 1)
            && (has(NeverWaited) || has(WaitedForOther)) =>
        {
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
        _ if f.comm.as_bytes() == b"sh" && has(NeverWaited) => {
            "a shell child never waited for: pclose() every popen(), and waitpid() every child of system()-like calls".into()
        }
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
        _ if has(WaitedForOther) => {
            "the parent waits for specific pids only: also reap the rest with waitpid(-1, WNOHANG) (or one wait per spawned child)".into()
        }
        _ if has(BlockedInWait) => {
            "a thread blocks in a wait for another child: use waitpid(-1, …) or WNOHANG polling so one slow child does not hold up the rest".into()
        }
        // Before "the parent exited": a thread that took reaping away is why
        // nothing reaped before the parent ended.
        _ if other_thread_change.is_some() => {
            format!(
                "SIGCHLD was changed by another thread of {} — a library changed it behind the main loop: {}",
                f.parent_pid,
                other_thread_change.unwrap_or_default()
            )
        }
        _ if has(ParentExited) && has(NeverWaited) => {
            "the parent exited without waiting for its children: wait for them before exiting".into()
        }
        _ if has(NeverWaited) => {
            "call waitpid() for every child (or set SIGCHLD to SIG_IGN if their exit statuses are not needed)".into()
        }
        _ if f.kind == FindingKind::LateReap => {
            "reap promptly: a SIGCHLD handler (or signalfd) that loops waitpid(-1, WNOHANG), instead of waiting later".into()
        }
        _ => return None,
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis::{diagnosis::Diag, tests_support::finding},
        trace::comm::Comm,
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
}
