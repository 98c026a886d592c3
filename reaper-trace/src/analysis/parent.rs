//! What reaper-trace knows about a process in its role as a parent: its
//! SIGCHLD disposition and its history, the SIGCHLDs it was sent, its waits,
//! its failing forks, and (live only) what /proc said of its threads.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use crate::trace::{
    event::{Disposition, WaitSyscall},
    host_facts::ParentProbe,
};

/// How many recent waits to keep per parent.
const WAIT_HISTORY: usize = 32;
/// How many SIGCHLD disposition changes to keep per parent.
const DISPOSITION_HISTORY: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DispositionChange {
    pub time_ns: u64,
    pub tid: u32,
    pub disposition: Disposition,
    pub handler: u64,
    pub flags: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitCall {
    pub time_ns: u64,
    pub tid: u32,
    pub syscall: WaitSyscall,
    /// The pid asked for (wait4 convention: -1 any, >0 that pid).
    pub pid: i32,
    pub options: i32,
    pub ret: i64,
    pub reaped: i32,
}

#[derive(Clone, Debug, Default)]
pub struct ParentFacts {
    /// The disposition as last seen (from rt_sigaction or a SIGCHLD).
    pub disposition: Option<(Disposition, u64)>,
    pub disposition_history: VecDeque<DispositionChange>,
    pub sigchld_generated: u64,
    pub sigchld_coalesced: u64,
    pub sigchld_delivered: u64,
    pub sigchld_blocked_seen: u64,
    pub children_exited: u64,
    pub waits: VecDeque<WaitCall>,
    pub wnohang_empty: u64,
    /// Waits in progress, per thread: (pid asked for, options, since).
    pub waiting: HashMap<u32, (i32, i32, u64)>,
    pub fork_failures: BTreeMap<i32, u64>,
    pub exited_ns: Option<u64>,
    pub leader_exited_ns: Option<u64>,
    pub probe: Option<ParentProbe>,
}

impl ParentFacts {
    pub fn record_wait(&mut self, call: WaitCall) {
        if call.ret == 0 && call.reaped == 0 {
            self.wnohang_empty += 1;
        }
        if self.waits.len() == WAIT_HISTORY {
            self.waits.pop_front();
        }
        self.waits.push_back(call);
    }

    pub fn record_disposition(&mut self, change: DispositionChange) {
        self.disposition = Some((change.disposition, change.flags));
        if self.disposition_history.len() == DISPOSITION_HISTORY {
            self.disposition_history.pop_front();
        }
        self.disposition_history.push_back(change);
    }
}
