//! Lifecycle reconstruction and diagnosis. Pure: events in, findings out; no
//! I/O, no clock, no tokio. Live tracing and (later) replaying a recording
//! feed the same code.

pub mod codes;
pub mod diagnosis;
pub mod facts;
pub mod findings;
pub mod hints;
pub mod lifecycle;
pub mod losses;
mod overdue;
pub mod parent;
pub mod reap;
mod rename;
pub mod snapshot;
mod verdicts;

pub use codes::DiagCode;
pub use findings::{
    Finding, FindingKind, Notice, ParentRow, Reap, ReapKind, Report, Resolution, Summary, Verdict,
};
pub use lifecycle::Analyzer;

#[cfg(test)]
mod sender_tests;
#[cfg(test)]
mod tests;

/// A made-up finding for other modules' tests.
#[cfg(test)]
pub mod tests_support {
    use super::*;
    use crate::trace::comm::Comm;

    pub fn finding() -> Finding {
        Finding {
            kind: FindingKind::Unreaped,
            pid: 11,
            comm: Comm::from_str_lossy("child"),
            exit_code: Some(0),
            signal: None,
            core_dumped: false,
            parent_pid: 10,
            parent_comm: Comm::from_str_lossy("parent"),
            exited_at_ns: Some(1),
            reaped_at_ns: None,
            reaped_by_pid: None,
            reap_kind: None,
            resolution: Some(Resolution::Zombie),
            latency_ns: Some(5),
            diagnosis: vec![diagnosis::Diag {
                code: codes::DiagCode::NeverWaited,
                text: "parent 10 made no wait call".into(),
            }],
            predates_trace: false,
            certain: true,
            start_ns: 1,
            parent_end: None,
            adopted_by_pid: None,
            adopted_by_ns_pid: None,
            hint: None,
            ns_pid: None,
            parent_ns_pid: None,
            reaped_by_ns_pid: None,
            cgroup: None,
            fork_frames: None,
            sigaction_frames: None,
            fork_stack: None,
            sigaction_stack: None,
            threads: Vec::new(),
            window_ns: (1, 6),
        }
    }
}
