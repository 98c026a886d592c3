//! What the trace showed of one exit and what followed it: the facts the
//! lifecycle state machine gathers and the diagnosis reads.

use super::reap::Reap;
use crate::trace::event::{Disposition, SignalResult};

/// A SIGCHLD caused by a child's exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigchldFacts {
    pub time_ns: u64,
    pub target_tgid: u32,
    pub target_tid: u32,
    pub result: SignalResult,
    pub disposition: Disposition,
    pub handler: u64,
    pub sa_flags: u64,
    pub blocked: bool,
}

/// A process's exit and what followed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitFacts {
    /// `None` for a zombie found at start-up.
    pub time_ns: Option<u64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub core_dumped: bool,
    pub exit_signal: i32,
    /// The parent when it exited: the one expected to reap it.
    pub parent: u32,
    pub sigchld: Vec<SigchldFacts>,
    /// Where it was reparented after its parent died, if seen.
    pub adopted_by: Option<u32>,
    /// A ptrace tracer (not the parent) that collected this exit with its
    /// own wait, which does not reap.
    pub collected_by_tracer: Option<u32>,
    /// The parent's SIGCHLD disposition and flags when it exited.
    pub parent_disposition: Option<(Disposition, u64)>,
    pub reap: Option<Reap>,
}

impl ExitFacts {
    /// A zombie that was already there when tracing started.
    pub fn predating(parent: u32) -> ExitFacts {
        ExitFacts {
            time_ns: None,
            exit_code: None,
            signal: None,
            core_dumped: false,
            exit_signal: reaper_trace_common::SIGCHLD,
            parent,
            sigchld: Vec::new(),
            adopted_by: None,
            collected_by_tracer: None,
            parent_disposition: None,
            reap: None,
        }
    }
}
