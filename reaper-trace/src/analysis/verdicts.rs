//! How lifecycles end: a reaped child's verdict (and its finding when it was
//! reaped late or by someone else), orphans, and what is still open when the
//! trace ends.

use super::{
    diagnosis::{self, DiagContext},
    findings::*,
    hints,
    lifecycle::Analyzer,
    losses,
};
use crate::trace::{
    comm::Comm,
    host_facts::{ParentProbe, ThreadNow},
    stack::Stack,
};

/// How many zombies left at the end are listed as findings, the rest
/// only counted (`zombies_not_listed`): each finding costs about a
/// kilobyte, and a recording from elsewhere may claim millions of zombies
/// in a few bytes each.
pub const MAX_LISTED_ZOMBIES: u64 = 10_000;

impl Analyzer {
    /// A child's verdict, once it is reaped.
    pub(super) fn finish_child(&mut self, pid: u32, now_ns: u64) {
        let Some(proc) = self.procs.get(&pid) else {
            return;
        };
        let Some(exit) = proc.exit.clone() else {
            return;
        };
        let Some(reap) = exit.reap else { return };
        if let Some(verdicts) = &mut self.verdicts {
            verdicts.push(Verdict {
                pid,
                start_ns: proc.start_ns,
                exited_at_ns: exit.time_ns,
                reap,
                cgroup_id: proc.cgroup_id,
            });
        }
        let latency = exit
            .zombie_since_ns()
            .map(|t| reap.time_ns.saturating_sub(t));
        match reap.kind {
            ReapKind::Wait => {
                self.summary.reaped_by_parent += 1;
                let late = latency.is_none_or(|l| l > self.threshold_ns);
                if late {
                    self.summary.late_reaps += 1;
                    let row = self.row(exit.parent);
                    row.late += 1;
                    row.worst_latency_ns = row.worst_latency_ns.max(latency.unwrap_or(0));
                    let finding =
                        self.finding(pid, FindingKind::LateReap, Some(Resolution::Reaped), now_ns);
                    self.report(finding);
                }
            }
            ReapKind::Autoreap => self.summary.autoreaped += 1,
            ReapKind::Adopted => {
                self.summary.adopted += 1;
                self.summary.unreaped += 1;
                let row = self.row(exit.parent);
                row.unreaped += 1;
                row.worst_latency_ns = row.worst_latency_ns.max(latency.unwrap_or(0));
                let finding = self.finding(
                    pid,
                    FindingKind::Unreaped,
                    Some(Resolution::Adopted),
                    now_ns,
                );
                self.report(finding);
            }
        }
        if let Some(proc) = self.procs.get_mut(&pid) {
            proc.finished = true;
        }
        self.release(pid);
        if let Some(parent) = self.procs.get_mut(&exit.parent) {
            parent.open_children = parent.open_children.saturating_sub(1);
        }
        self.release(exit.parent);
    }

    /// Forgets a process once nothing more can be said about it.
    pub(super) fn release(&mut self, pid: u32) {
        if self
            .procs
            .get(&pid)
            .is_some_and(|p| p.finished && p.open_children == 0)
        {
            self.procs.remove(&pid);
        }
    }

    pub(super) fn report(&mut self, finding: Finding) {
        self.notices.push(Notice::Finding(finding.clone()));
        self.findings.push(finding);
    }

    pub(super) fn row(&mut self, parent: u32) -> &mut ParentRow {
        let comm = self.procs.get(&parent).map(|p| p.comm).unwrap_or_default();
        let row = self.rows.entry(parent).or_insert_with(|| ParentRow {
            parent_pid: parent,
            ..Default::default()
        });
        if comm != Comm::default() {
            row.parent_comm = comm;
        }
        row
    }

    pub(super) fn finding(
        &self,
        pid: u32,
        kind: FindingKind,
        resolution: Option<Resolution>,
        now_ns: u64,
    ) -> Finding {
        let proc = &self.procs[&pid];
        let exit = proc
            .exit
            .as_ref()
            .expect("findings are about exited processes");
        let parent = self.procs.get(&exit.parent);
        let reap = exit.reap;
        let latency_ns = exit
            .zombie_since_ns()
            .map(|t| reap.map_or(now_ns, |r| r.time_ns).saturating_sub(t));
        let mut diagnosis = diagnosis::diagnose(&DiagContext {
            child_pid: pid,
            exit,
            parent_pid: exit.parent,
            parent: parent.map(|p| &*p.facts),
            parent_end: parent.and_then(|p| p.end()),
            parent_ns_init: self.is_ns_init(exit.parent),
            child_start_ns: proc.start_ns,
        });
        // A reap no wait showed is dated by the free, which may trail the
        // reap by seconds: past the threshold, it may not have been late
        // at all, unless /proc showed the zombie still there past it.
        let seen_past_threshold = self.zombie_seen_past_threshold(exit);
        // A zombie older than the trace was seen in /proc as it began: its
        // latency is a lower bound anyway.
        let dated_by_free = exit.reap_unseen
            && exit.predates.is_none()
            && !seen_past_threshold
            && latency_ns.is_some_and(|l| l > self.threshold_ns);
        if let (true, Some(reap)) = (dated_by_free, reap) {
            diagnosis.push(diagnosis::reap_unseen(exit.parent, reap.time_ns, exit));
        }
        with_hint(Finding {
            kind,
            pid,
            comm: proc.comm,
            exit_code: exit.exit_code,
            signal: exit.signal,
            core_dumped: exit.core_dumped,
            parent_pid: exit.parent,
            parent_comm: parent.map(|p| p.comm).unwrap_or_default(),
            exited_at_ns: exit.time_ns,
            reaped_at_ns: reap.map(|r| r.time_ns),
            reaped_by_pid: reap.and_then(|r| r.by_pid),
            reap_kind: reap.map(|r| r.kind),
            resolution,
            latency_ns,
            diagnosis,
            predates_trace: exit.time_ns.is_none(),
            // Losses are settled when shown (`settle_certainty`).
            certain: !dated_by_free && !exit.releaser_unknown,
            start_ns: proc.start_ns,
            parent_end: parent.and_then(|p| p.end().cloned()),
            adopted_by_pid: None,
            adopted_by_ns_pid: None,
            hint: None,
            ns_pid: proc.ns_pid,
            parent_ns_pid: parent.and_then(|p| p.ns_pid),
            reaped_by_ns_pid: reap
                .and_then(|r| r.by_pid)
                .and_then(|by| self.procs.get(&by))
                .and_then(|p| p.ns_pid),
            cgroup: self.cgroup_of(pid),
            fork_frames: proc.fork_stack.as_deref().cloned(),
            sigaction_frames: parent.and_then(|p| sigaction_stack(&p.facts)),
            fork_stack: None,
            sigaction_stack: None,
            threads: parent
                .and_then(|p| p.facts.probe.as_ref())
                .map(threads_shown)
                .unwrap_or_default(),
            window_ns: (
                exit.time_ns
                    .map_or(0, |t| t.saturating_sub(losses::BEFORE_EXIT_NS)),
                reap.map_or(now_ns, |r| r.time_ns),
            ),
        })
    }

    /// The exits with no reap (closed ones aside), in pid order: those
    /// /proc showed gone (waiting for their frees), or the others.
    fn unreaped_exits(&self, seen_gone: bool) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .procs
            .iter()
            // Closed without a verdict (`close_unknown`): not zombies.
            .filter(|(_, p)| !p.finished)
            .filter(|(_, p)| {
                p.exit
                    .as_ref()
                    .is_some_and(|e| e.reap.is_none() && (e.gone_ns != 0) == seen_gone)
            })
            .map(|(&pid, _)| pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Whether /proc showed `exit` still a zombie past the threshold.
    pub(super) fn zombie_seen_past_threshold(&self, exit: &super::facts::ExitFacts) -> bool {
        (exit.zombie_seen_ns != 0)
            .then_some(exit.zombie_seen_ns)
            .zip(exit.zombie_since_ns())
            .is_some_and(|(seen, since)| seen.saturating_sub(since) > self.threshold_ns)
    }

    /// Marks `finding` uncertain when events were lost in the time it was
    /// built from, as far as the loss counters read so far tell.
    pub(super) fn settle_certainty(&self, finding: &mut Finding) {
        let (from, to) = finding.window_ns;
        if finding.certain && !self.losses.clear(from, to) {
            finding.certain = false;
            finding.diagnosis.push(diagnosis::events_lost(
                self.summary.lost_events,
                finding.pid,
            ));
        }
    }

    /// Whether the orphan just counted may still be listed as a finding: a
    /// system-wide trace sees every daemon that double-forks, so orphans
    /// past the first thousand are only counted (`adopted_while_running`).
    pub(super) fn orphans_listed(&self) -> bool {
        const MAX_LISTED_ORPHANS: u64 = 1000;
        self.summary.adopted_while_running <= MAX_LISTED_ORPHANS
    }

    /// An `orphaned` finding about `pid`, adopted by `adopter` (`None` while
    /// it still runs at the end of the trace).
    pub(super) fn orphan_finding(&self, pid: u32, adopter: Option<u32>) -> Finding {
        let proc = &self.procs[&pid];
        let orphaning = proc.orphaning.as_ref();
        let parent = orphaning
            .map(|o| o.parent)
            .or(proc.parent_at_fork)
            .unwrap_or(0);
        let exit = proc.exit.as_ref();
        let parent_end = orphaning.map(|o| o.parent_end.clone());
        let parent_ns_pid = orphaning
            .and_then(|o| o.parent_ns_pid)
            .or_else(|| self.procs.get(&parent).and_then(|p| p.ns_pid));
        let adopter_ns_pid = adopter
            .and_then(|a| self.procs.get(&a))
            .and_then(|p| p.ns_pid);
        let diagnosis = vec![diagnosis::orphaned(
            (pid, proc.ns_pid),
            (parent, parent_ns_pid),
            parent_end.as_ref(),
            adopter.map(|a| (a, adopter_ns_pid)),
            exit.and_then(|e| e.time_ns),
        )];
        let orphaned_at = parent_end.as_ref().map_or(0, |end| end.time_ns);
        with_hint(Finding {
            kind: FindingKind::Orphaned,
            pid,
            comm: proc.comm,
            exit_code: exit.and_then(|e| e.exit_code),
            signal: exit.and_then(|e| e.signal),
            core_dumped: exit.is_some_and(|e| e.core_dumped),
            parent_pid: parent,
            parent_comm: orphaning
                .map(|o| o.parent_comm)
                .or_else(|| self.procs.get(&parent).map(|p| p.comm))
                .unwrap_or_default(),
            exited_at_ns: exit.and_then(|e| e.time_ns),
            reaped_at_ns: None,
            reaped_by_pid: None,
            reap_kind: None,
            resolution: None,
            latency_ns: None,
            diagnosis,
            predates_trace: false,
            certain: true,
            start_ns: proc.start_ns,
            parent_end,
            adopted_by_pid: adopter,
            adopted_by_ns_pid: adopter_ns_pid,
            hint: None,
            ns_pid: proc.ns_pid,
            parent_ns_pid,
            reaped_by_ns_pid: None,
            cgroup: self.cgroup_of(pid),
            fork_frames: proc.fork_stack.as_deref().cloned(),
            sigaction_frames: self
                .procs
                .get(&parent)
                .and_then(|p| sigaction_stack(&p.facts)),
            fork_stack: None,
            sigaction_stack: None,
            // Its parent died: where that parent's threads were is moot.
            threads: Vec::new(),
            window_ns: (
                orphaned_at.saturating_sub(losses::BEFORE_EXIT_NS),
                exit.and_then(|e| e.time_ns).unwrap_or(orphaned_at),
            ),
        })
    }

    /// Ends the trace: every exit still unreaped is a zombie.
    pub fn finish(mut self, now_ns: u64) -> Report {
        let mut running_orphans: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.orphaning.is_some() && p.exit.is_none())
            .map(|(&pid, _)| pid)
            .collect();
        running_orphans.sort_unstable();
        for pid in running_orphans {
            self.summary.adopted_while_running += 1;
            if self.orphans_listed() {
                let finding = self.orphan_finding(pid, None);
                self.findings.push(finding);
            }
        }
        // Seen gone from /proc, their frees not come: released, by whom
        // unknown (only without wait records).
        for pid in self.unreaped_exits(true) {
            self.close_unknown(pid);
        }
        let mut listed_zombies = 0;
        for pid in self.unreaped_exits(false) {
            let parent = self.procs[&pid]
                .exit
                .as_ref()
                .map(|e| e.parent)
                .unwrap_or(0);
            self.summary.unreaped += 1;
            self.summary.zombies_at_end += 1;
            let mut finding =
                self.finding(pid, FindingKind::Unreaped, Some(Resolution::Zombie), now_ns);
            let row = self.row(parent);
            row.unreaped += 1;
            row.worst_latency_ns = row.worst_latency_ns.max(finding.latency_ns.unwrap_or(0));
            if self.summary.zombies_not_listed == 0 && listed_zombies < MAX_LISTED_ZOMBIES {
                listed_zombies += 1;
                self.findings.push(finding);
                continue;
            }
            // Counted as the listed ones are (certainty included), then
            // dropped: a finding costs far more than the records behind it.
            self.summary.zombies_not_listed += 1;
            self.settle_certainty(&mut finding);
            if !finding.certain {
                self.summary.uncertain += 1;
                self.summary.unreaped = self.summary.unreaped.saturating_sub(1);
                let row = self.row(parent);
                row.unreaped = row.unreaped.saturating_sub(1);
            }
        }
        // Certainty, with every loss known; uncertain findings are counted
        // apart, not as unreaped children or late reaps.
        let mut findings = std::mem::take(&mut self.findings);
        for f in &mut findings {
            self.settle_certainty(f);
        }
        let (findings, uncertain): (Vec<Finding>, Vec<Finding>) = findings
            .into_iter()
            .partition(|f| f.certain || f.kind == FindingKind::Orphaned);
        for f in &uncertain {
            self.summary.uncertain += 1;
            let row = self.row(f.parent_pid);
            if f.kind == FindingKind::Unreaped {
                row.unreaped = row.unreaped.saturating_sub(1);
                self.summary.unreaped = self.summary.unreaped.saturating_sub(1);
            } else {
                row.late = row.late.saturating_sub(1);
                self.summary.late_reaps = self.summary.late_reaps.saturating_sub(1);
            }
        }
        self.findings = findings;
        let mut parents: Vec<ParentRow> = self
            .rows
            .into_values()
            .filter(|r| r.unreaped > 0 || r.late > 0)
            .collect();
        parents.sort_by(|a, b| {
            (b.unreaped, b.late, b.worst_latency_ns).cmp(&(a.unreaped, a.late, a.worst_latency_ns))
        });
        Report {
            findings: self.findings,
            uncertain,
            summary: self.summary,
            parents,
        }
    }
}

/// The finding with its remediation hint, derived from its diagnosis.
/// The parent's threads a finding shows: as many as its diagnosis names
/// (each costs a stack's frames per finding, and a parent may leave
/// thousands of zombies).
fn threads_shown(probe: &ParentProbe) -> Vec<ThreadNow> {
    probe
        .threads
        .iter()
        .take(diagnosis::now::MAX_THREADS_SHOWN)
        .map(ThreadNow::of)
        .collect()
}

fn with_hint(mut finding: Finding) -> Finding {
    finding.hint = hints::hint(&finding);
    finding
}

/// The stack of the parent's latest SIGCHLD action change: the line that
/// set the action in force (SIG_IGN, a handler, SA_NOCLDWAIT). None when
/// that change has none, rather than an older change's line.
fn sigaction_stack(facts: &super::parent::ParentFacts) -> Option<Stack> {
    facts.disposition_history.back()?.stack.clone()
}
