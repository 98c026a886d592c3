//! The diagnosis codes: one enum, so a typo is a compile error rather than
//! a new code. Each code's string is part of the stable JSON schema
//! (docs/findings.md lists them all, and a test holds it to that).

use std::fmt;

use serde::{Serialize, Serializer};

/// Declares the enum, its strings and the list of every code from one
/// table, so none of them can miss a code.
macro_rules! diag_codes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What one diagnosis item is about. Serialized as its string.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum DiagCode {
            $($(#[$doc])* $variant,)*
        }

        impl DiagCode {
            /// Every code, in the order docs/findings.md lists them.
            pub const ALL: &[DiagCode] = &[$(DiagCode::$variant,)*];

            /// The stable string (as in JSON and in the text report).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DiagCode::$variant => $name,)*
                }
            }
        }
    };
}

diag_codes! {
    /// The parent kept SIGCHLD at SIG_DFL.
    SigchldDefault => "sigchld_default",
    /// The parent has a SIGCHLD handler.
    SigchldHandler => "sigchld_handler",
    /// The parent ignores SIGCHLD.
    SigchldIgnored => "sigchld_ignored",
    /// SIGCHLD was blocked in the parent's thread at the exit.
    SigchldBlocked => "sigchld_blocked",
    /// SIGCHLD is read through a signalfd (seen or inferred).
    SigchldSignalfd => "sigchld_signalfd",
    /// What the kernel did with this exit's SIGCHLD.
    SigchldResult => "sigchld_result",
    /// No SIGCHLD to the parent was seen for this exit.
    SigchldNotSeen => "sigchld_not_seen",
    /// The child was created with exit_signal 0.
    NoSigchld => "no_sigchld",
    /// The child was created with another exit signal than SIGCHLD.
    ExitSignalNotSigchld => "exit_signal_not_sigchld",
    /// SIGCHLDs coalesced while a handler reaps one child per signal.
    SigchldCoalesced => "sigchld_coalesced",
    /// The parent made no wait call after the exit.
    NeverWaited => "never_waited",
    /// The parent waited for other pids instead.
    WaitedForOther => "waited_for_other",
    /// A thread of the parent is blocked in a wait for another pid.
    BlockedInWait => "blocked_in_wait",
    /// How long after the exit the parent's first wait came.
    FirstWaitAfter => "first_wait_after",
    /// Waits after the exit seen only by the kernel's `sched_process_wait`
    /// (no syscall hooks): their options and results are unknown.
    WaitsUntraced => "waits_untraced",
    /// WNOHANG polls after the exit that found nothing.
    WnohangEmpty => "wnohang_empty",
    /// The parent ended without reaping it.
    ParentExited => "parent_exited",
    /// (Orphans) the parent died while this child ran.
    Orphaned => "orphaned",
    /// The parent was already exiting and had handed it over.
    ParentWasExiting => "parent_was_exiting",
    /// It was already a zombie when tracing started.
    PredatesTrace => "predates_trace",
    /// The parent was PID 1 of its pid namespace and exited.
    NamespaceEnded => "namespace_ended",
    /// A ptrace tracer collected the exit first.
    CollectedByTracer => "collected_by_tracer",
    /// The parent exec'd another program after forking the child.
    ParentExeced => "parent_execed",
    /// The parent holds a pidfd for the child and has not waited on it.
    PidfdNotWaited => "pidfd_not_waited",
    /// The parent held a pidfd for the child and waited on it late.
    PidfdHeld => "pidfd_held",
    /// The parent's main thread exited while its other threads live on.
    ParentLeaderExited => "parent_leader_exited",
    /// One change of the parent's SIGCHLD disposition.
    SigchldDispositionChange => "sigchld_disposition_change",
    /// The parent's failed forks.
    ForkFailures => "fork_failures",
    /// Threads of the parent in uninterruptible sleep.
    ParentThreadUninterruptible => "parent_thread_uninterruptible",
    /// The parent's threads when the finding was made.
    ParentThreads => "parent_threads",
    /// (/proc now) SIGCHLD pending and blocked in every thread of the parent.
    SigchldPendingBlocked => "sigchld_pending_blocked",
    /// (/proc now) The parent is stopped (state T).
    ParentStopped => "parent_stopped",
    /// (/proc now) Threads of the parent are ptrace-attached.
    ParentTraced => "parent_traced",
    /// (/proc now) Where one thread of the parent waits: its state, system
    /// call, wait channel and kernel stack.
    ParentThreadAt => "parent_thread_at",
    /// No wait that reaped it was seen: dated by its free.
    ReapUnseen => "reap_unseen",
    /// Events were lost while this finding was built.
    EventsLost => "events_lost",
}

impl Serialize for DiagCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for DiagCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The codes in docs/findings.md's table: the first cell of each row
    /// under "## Diagnosis codes", in backquotes.
    fn documented() -> Vec<&'static str> {
        let doc = include_str!("../../../docs/findings.md");
        let section = doc
            .split("\n## Diagnosis codes\n")
            .nth(1)
            .expect("docs/findings.md has a Diagnosis codes section");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`'))
            .map(|(code, _)| code)
            .collect()
    }

    #[test]
    fn docs_list_every_code_and_no_other() {
        let documented = documented();
        let in_docs: BTreeSet<&str> = documented.iter().copied().collect();
        assert_eq!(in_docs.len(), documented.len(), "a code listed twice");
        let in_enum: BTreeSet<&str> = DiagCode::ALL.iter().map(|c| c.as_str()).collect();
        let undocumented: Vec<_> = in_enum.difference(&in_docs).collect();
        let unknown: Vec<_> = in_docs.difference(&in_enum).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "docs/findings.md lacks {undocumented:?} and lists codes that do not exist: {unknown:?}"
        );
    }

    #[test]
    fn a_code_serializes_as_its_string() {
        for &code in DiagCode::ALL {
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{code}\""));
        }
        let strings: BTreeSet<&str> = DiagCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            strings.len(),
            DiagCode::ALL.len(),
            "two codes share a string"
        );
    }
}
