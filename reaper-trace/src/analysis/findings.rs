//! What the analysis reports: findings, the per-parent table and the
//! summary. The JSON names here are a documented, stable schema
//! (docs/findings.md): add fields freely, never rename.

use serde::Serialize;

pub use super::reap::{Reap, ReapKind};
use super::{diagnosis::Diag, facts::ProcessEnd};
use crate::{
    cgroup::Cgroup,
    trace::{
        comm::Comm,
        event::NsPid,
        host_facts::ThreadNow,
        stack::{Stack, Symbol},
    },
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An exit its parent never reaped.
    Unreaped,
    /// Reaped by its parent, but later than the threshold.
    LateReap,
    /// Still running when its parent died, and adopted: information, not a
    /// failure (`check` fails on it only with `--fail-on orphaned`).
    Orphaned,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Still a zombie when the trace ended.
    Zombie,
    /// Its parent died first; a subreaper or init reaped it.
    Adopted,
    /// Its parent reaped it in the end (late reaps).
    Reaped,
}

/// How one exited process's lifecycle ended: the analyzer's conclusion,
/// which the timeline draws rather than deciding again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub pid: u32,
    /// With `pid`, the process's identity (0 when unknown).
    pub start_ns: u64,
    /// `None` for a zombie that predates the trace.
    pub exited_at_ns: Option<u64>,
    pub reap: Reap,
    /// The process's cgroup v2 id at its exit (0: unknown).
    pub cgroup_id: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub pid: u32,
    pub comm: Comm,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub core_dumped: bool,
    pub parent_pid: u32,
    pub parent_comm: Comm,
    /// `None` for a zombie that predates the trace.
    pub exited_at_ns: Option<u64>,
    pub reaped_at_ns: Option<u64>,
    pub reaped_by_pid: Option<u32>,
    pub reap_kind: Option<ReapKind>,
    pub resolution: Option<Resolution>,
    /// Exit to reap, or to the end of the trace while unresolved; a lower
    /// bound when the zombie predates the trace.
    pub latency_ns: Option<u64>,
    pub diagnosis: Vec<Diag>,
    /// The process was already a zombie when tracing started.
    pub predates_trace: bool,
    /// False when events were lost: the finding may be wrong.
    pub certain: bool,
    /// Process start time (CLOCK_MONOTONIC ns): with `pid`, its identity.
    pub start_ns: u64,
    /// How the parent ended, when it died during the trace.
    pub parent_end: Option<ProcessEnd>,
    /// Orphaned: the process it was reparented to, once known.
    pub adopted_by_pid: Option<u32>,
    /// Orphaned: the adopter's pid in its own pid namespace, outside the
    /// initial one (as `parent_ns_pid` is for the parent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adopted_by_ns_pid: Option<NsPid>,
    /// A short, specific remediation derived from the diagnosis.
    pub hint: Option<String>,
    /// Outside the initial pid namespace: the pid (and namespace) the
    /// process, its parent and its reaper have in their own namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<NsPid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_ns_pid: Option<NsPid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reaped_by_ns_pid: Option<NsPid>,
    /// The process's cgroup (where the kernel charges the zombie against
    /// `pids.max`) and the container or unit it names, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Cgroup>,
    /// Where the parent forked it, and where the parent's SIGCHLD action
    /// in force was set, as unwound (when stacks were copied).
    #[serde(skip)]
    pub fork_frames: Option<Stack>,
    #[serde(skip)]
    pub sigaction_frames: Option<Stack>,
    /// The same, symbolized (innermost first); filled where findings are
    /// shown, since it reads the modules' files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fork_stack: Option<Vec<Symbol>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigaction_stack: Option<Vec<Symbol>>,
    /// The parent's threads (the first few) as /proc showed them when the
    /// exit went overdue: each one's system call and its user stack, named
    /// where findings are shown: where it waits instead of reaping.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadNow>,
    /// The stretch of time the finding was built from: events lost in it
    /// make it uncertain (see `analysis::losses`).
    #[serde(skip)]
    pub window_ns: (u64, u64),
}

impl FindingKind {
    /// The stable name (as in JSON).
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::Unreaped => "unreaped",
            FindingKind::LateReap => "late_reap",
            FindingKind::Orphaned => "orphaned",
        }
    }

    /// What `check` fails on unless told otherwise: children left unreaped
    /// or reaped late. Orphans are information.
    pub const FAIL_BY_DEFAULT: [FindingKind; 2] = [FindingKind::Unreaped, FindingKind::LateReap];
}

/// What the analyzer tells its caller as the trace goes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notice {
    /// An exit has waited past the threshold, unreaped so far.
    Pending(Finding),
    /// A finding with its resolution.
    Finding(Finding),
    /// A process's thread-group leader exited while other threads live on
    /// (`ps` shows it as Z, yet it is not dead).
    LeaderExit { pid: u32, comm: Comm, time_ns: u64 },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub exits: u64,
    pub reaped_by_parent: u64,
    pub autoreaped: u64,
    pub adopted: u64,
    pub unreaped: u64,
    pub late_reaps: u64,
    pub lost_events: u64,
    /// Non-leader threads released.
    pub threads_reaped: u64,
    /// Leaders that exited before the rest of their thread group.
    pub leader_exits: u64,
    /// Orphans adopted while still running (double forks, a parent that
    /// crashed): each is an `orphaned` finding.
    pub adopted_while_running: u64,
    /// Exits whose outcome the trace does not show (still running, or lost).
    pub zombies_at_end: u64,
    /// Zombies at the end counted here and in the parent rows but not
    /// listed as findings, past the first `MAX_LISTED_ZOMBIES`.
    pub zombies_not_listed: u64,
    /// Unreaped children and late reaps that events lost around them may
    /// have made up: listed apart, and not counted in `unreaped` or
    /// `late_reaps`.
    pub uncertain: u64,
    /// Exits whose end went with lost events: their pid was reused, so
    /// they were released, but by whom and when is unknown. No finding.
    pub unknown_ends: u64,
}

/// One row of the per-parent table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ParentRow {
    pub parent_pid: u32,
    pub parent_comm: Comm,
    pub exits: u64,
    pub unreaped: u64,
    pub late: u64,
    pub worst_latency_ns: u64,
}

/// The end-of-trace report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Certain findings, and orphans (information).
    pub findings: Vec<Finding>,
    /// Unreaped children and late reaps that events lost around them may
    /// have made up: listed apart, counted apart, and failing `check` only
    /// with `--fail-on uncertain`.
    #[serde(rename = "uncertain_findings")]
    pub uncertain: Vec<Finding>,
    pub summary: Summary,
    pub parents: Vec<ParentRow>,
}
