//! The lifecycle state machine: per process, fork → exec → exit → SIGCHLD →
//! the parent's waits → reap, and the findings that fall out of it.
//!
//! A process is identified by (tgid, start time), never by pid alone: when
//! a fork or exit names a tgid whose entry has another start time, the old
//! entry is stale (its pid was reused) and is replaced. State is bounded:
//! an entry leaves once its own lifecycle is finished and none of its
//! exited children is still waiting for a verdict.

use std::collections::{BTreeMap, HashMap};

use super::{
    diagnosis::{self, DiagContext},
    facts::{ExitFacts, Orphaning, Predates, SigchldFacts, SignalSent},
    findings::*,
    parent::{DispositionChange, ParentFacts, WaitCall},
    reap::{self, Collector, Release, WaitResult},
};
use crate::trace::{
    comm::Comm,
    event::{Event, EventData, NsPid, SignalResult, WaitSyscall},
    host_facts::{ParentProbe, SeedProcess},
};

#[derive(Clone, Debug, Default)]
struct Proc {
    /// 0 when unknown (found in /proc, or only seen as a parent).
    start_ns: u64,
    comm: Comm,
    parent_at_fork: Option<u32>,
    exit: Option<ExitFacts>,
    announced: bool,
    finished: bool,
    facts: ParentFacts,
    /// Exited children whose verdict is still open.
    open_children: u32,
    /// Children forked during the trace that have not exited yet.
    running_children: Vec<u32>,
    /// Set when its parent died while it was running.
    orphaning: Option<Orphaning>,
    /// Its pid in its own pid namespace, outside the initial one.
    ns_pid: Option<NsPid>,
}

/// Rebuilds lifecycles from events and reports what was never reaped.
pub struct Analyzer {
    threshold_ns: u64,
    procs: HashMap<u32, Proc>,
    rows: BTreeMap<u32, ParentRow>,
    findings: Vec<Finding>,
    notices: Vec<Notice>,
    summary: Summary,
    /// Every lifecycle's end, for outputs that draw them all (the timeline);
    /// `None` unless asked for.
    verdicts: Option<Vec<Verdict>>,
}

impl Analyzer {
    pub fn new(threshold_ns: u64) -> Analyzer {
        Analyzer {
            threshold_ns,
            procs: HashMap::new(),
            rows: BTreeMap::new(),
            findings: Vec::new(),
            notices: Vec::new(),
            summary: Summary::default(),
            verdicts: None,
        }
    }

    /// Also keep a [`Verdict`] for every reaped process, taken with
    /// [`Analyzer::drain_verdicts`].
    pub fn with_verdicts(mut self) -> Analyzer {
        self.verdicts = Some(Vec::new());
        self
    }

    /// Takes the verdicts reached since the last call.
    pub fn drain_verdicts(&mut self) -> Vec<Verdict> {
        self.verdicts
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Processes (and zombies) that exist when tracing starts, at `now_ns`.
    pub fn seed(&mut self, processes: &[SeedProcess], now_ns: u64) {
        for seed in processes {
            let proc = self.procs.entry(seed.pid).or_default();
            proc.comm = seed.comm;
            if seed.ns_pids.len() > 1 {
                proc.ns_pid = seed.ns_pids.last().copied();
            }
            if seed.zombie {
                proc.exit = Some(ExitFacts::predating(
                    seed.ppid,
                    Predates {
                        trace_start_ns: now_ns,
                        started_ns: seed.started_ns,
                    },
                ));
                self.procs.entry(seed.ppid).or_default().open_children += 1;
                self.row(seed.ppid).exits += 1;
            }
        }
    }

    /// Losses reported by the kernel so far: findings then say they may be wrong.
    pub fn set_lost(&mut self, lost: u64) {
        self.summary.lost_events = lost;
    }

    /// /proc facts about a parent, read (live) or replayed (from a recording).
    pub fn attach_probe(&mut self, parent: u32, probe: ParentProbe) {
        self.procs.entry(parent).or_default().facts.probe = Some(probe);
    }

    /// Takes what was noticed since the last call.
    pub fn drain_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Number of processes held: bounded by the live ones plus open verdicts.
    pub fn tracked(&self) -> usize {
        self.procs.len()
    }

    pub fn on_event(&mut self, event: &Event) {
        match &event.data {
            EventData::Fork(f) if !f.is_thread => {
                let stale = self
                    .procs
                    .get(&f.child_tgid)
                    .is_some_and(|p| p.start_ns != 0 && p.start_ns != f.child_start_ns);
                if stale {
                    self.procs.remove(&f.child_tgid);
                }
                let parent_comm = f.comm;
                let parent = self.procs.entry(event.tgid).or_default();
                if parent.comm == Comm::default() {
                    parent.comm = parent_comm;
                }
                if parent.start_ns == 0 {
                    parent.start_ns = f.parent_start_ns;
                }
                parent.running_children.push(f.child_tgid);
                let child = self.procs.entry(f.child_tgid).or_default();
                child.start_ns = f.child_start_ns;
                child.comm = f.comm;
                child.parent_at_fork = Some(event.tgid);
            }
            EventData::NsPids(n) => {
                self.procs.entry(n.child_tgid).or_default().ns_pid = n.levels.last().copied();
            }
            EventData::Exec(x) => {
                let proc = self.procs.entry(event.tgid).or_default();
                proc.comm = x.comm;
                proc.facts.exec_reset();
            }
            EventData::Exit(x) => {
                if x.group_dead {
                    self.process_exit(event, x);
                } else if !x.is_thread {
                    let proc = self.procs.entry(event.tgid).or_default();
                    proc.facts.leader_exited_ns = Some(event.time_ns);
                    self.summary.leader_exits += 1;
                    self.notices.push(Notice::LeaderExit {
                        pid: event.tgid,
                        comm: x.comm,
                        time_ns: event.time_ns,
                    });
                }
            }
            EventData::SignalGenerate(s) if s.sig == reaper_trace_common::SIGCHLD => {
                self.sigchld(event, s)
            }
            EventData::SignalGenerate(s) => {
                let from_comm = self
                    .procs
                    .get(&event.tgid)
                    .map(|p| p.comm)
                    .unwrap_or_default();
                self.procs
                    .entry(s.target_tgid)
                    .or_default()
                    .facts
                    .record_signal(SignalSent {
                        time_ns: event.time_ns,
                        sig: s.sig,
                        from_pid: event.tgid,
                        from_comm,
                    });
            }
            EventData::SignalDeliver(d) if d.sig == reaper_trace_common::SIGCHLD => {
                self.procs
                    .entry(event.tgid)
                    .or_default()
                    .facts
                    .sigchld_delivered += 1;
            }
            EventData::Sigaction(s) if s.sig == reaper_trace_common::SIGCHLD => {
                self.procs
                    .entry(event.tgid)
                    .or_default()
                    .facts
                    .record_disposition(DispositionChange {
                        time_ns: event.time_ns,
                        tid: event.tid,
                        disposition: s.disposition,
                        handler: s.handler,
                        flags: s.flags,
                        times: 1,
                        last_ns: event.time_ns,
                    });
            }
            EventData::WaitEnter(w) => {
                let pid = wait_pid(w.syscall, w.which, w.upid);
                self.procs
                    .entry(event.tgid)
                    .or_default()
                    .facts
                    .waiting
                    .insert(event.tid, (pid, w.options, event.time_ns));
            }
            EventData::WaitExit(w) => self.wait_exit(event, w),
            EventData::Free(f) => self.free(event, f),
            EventData::ForkFailed(f) => {
                *self
                    .procs
                    .entry(event.tgid)
                    .or_default()
                    .facts
                    .fork_failures
                    .entry(f.errno)
                    .or_default() += 1;
            }
            _ => {}
        }
    }

    fn process_exit(&mut self, event: &Event, x: &crate::trace::event::Exit) {
        let stale = self
            .procs
            .get(&event.tgid)
            .is_some_and(|p| p.start_ns != 0 && p.start_ns != x.process_start_ns);
        if stale {
            self.procs.remove(&event.tgid);
        }
        let proc = self.procs.entry(event.tgid).or_default();
        proc.start_ns = x.process_start_ns;
        proc.comm = x.comm;
        proc.facts.exited_ns = Some(event.time_ns);
        proc.exit = Some(ExitFacts {
            time_ns: Some(event.time_ns),
            exit_code: x.exit_code,
            signal: x.signal,
            core_dumped: x.core_dumped,
            exit_signal: x.exit_signal,
            parent: x.real_parent_tgid,
            sigchld: Vec::new(),
            adopted_by: None,
            collected_by_tracer: None,
            parent_disposition: Some((x.parent_disposition, x.parent_sa_flags)),
            reap: None,
            predates: None,
        });
        let parent_end = proc.facts.record_end(event.time_ns, x);
        let orphaned_from = proc.parent_at_fork.filter(|&p| p != x.real_parent_tgid);
        let orphans = std::mem::take(&mut proc.running_children);
        if let Some(at_fork) = proc.parent_at_fork
            && let Some(parent) = self.procs.get_mut(&at_fork)
            && let Some(i) = parent
                .running_children
                .iter()
                .position(|&c| c == event.tgid)
        {
            parent.running_children.swap_remove(i);
        }
        // Its children still running are orphans now, adopted by a subreaper
        // or init: say so when each of them ends.
        let comm = x.comm;
        for child in orphans {
            if let Some(c) = self.procs.get_mut(&child)
                && c.exit.is_none()
            {
                c.orphaning = Some(Orphaning {
                    parent: event.tgid,
                    parent_comm: comm,
                    parent_end: parent_end.clone(),
                });
            }
        }
        if orphaned_from.is_some() {
            self.summary.adopted_while_running += 1;
            let finding = self.orphan_finding(event.tgid, Some(x.real_parent_tgid));
            self.report(finding);
        }
        self.summary.exits += 1;
        self.row(x.real_parent_tgid).exits += 1;
        let parent = self.procs.entry(x.real_parent_tgid).or_default();
        parent.facts.children_exited += 1;
        parent.open_children += 1;
    }

    fn sigchld(&mut self, event: &Event, s: &crate::trace::event::SignalGenerate) {
        let target = self.procs.entry(s.target_tgid).or_default();
        target.facts.sigchld_generated += 1;
        if s.result == SignalResult::AlreadyPending {
            target.facts.sigchld_coalesced += 1;
        }
        if s.target_blocked {
            target.facts.sigchld_blocked_seen += 1;
        }
        if target.facts.disposition_history.is_empty() {
            target.facts.disposition = Some((s.target_disposition, s.target_sa_flags));
        }
        let Ok(child_pid) = u32::try_from(s.si_pid) else {
            return;
        };
        let Some(parent) = self
            .procs
            .get(&child_pid)
            .and_then(|c| c.exit.as_ref())
            .map(|e| e.parent)
        else {
            return;
        };
        let parent_gone = self.parent_gone(child_pid);
        let Some(exit) = self.procs.get_mut(&child_pid).and_then(|c| c.exit.as_mut()) else {
            return;
        };
        exit.sigchld.push(SigchldFacts {
            time_ns: event.time_ns,
            target_tgid: s.target_tgid,
            target_tid: s.target_tid,
            result: s.result,
            disposition: s.target_disposition,
            handler: s.target_handler,
            sa_flags: s.target_sa_flags,
            blocked: s.target_blocked,
        });
        if let Some(adopter) = reap::adopted_by_signal(s.target_tgid, parent, parent_gone) {
            exit.adopted_by = Some(adopter);
        }
    }

    fn wait_exit(&mut self, event: &Event, w: &crate::trace::event::WaitExit) {
        let facts = &mut self.procs.entry(event.tgid).or_default().facts;
        facts.waiting.remove(&event.tid);
        let pid = wait_pid(w.syscall, w.which, w.upid);
        facts.record_wait(WaitCall {
            time_ns: event.time_ns,
            tid: event.tid,
            syscall: w.syscall,
            pid,
            options: w.options,
            ret: w.ret,
            reaped: w.reaped_pid,
        });
        let Some(child_pid) = WaitResult::of(w).collected_exit() else {
            return;
        };
        let child_pid = child_pid as u32;
        let parent_gone = self.parent_gone(child_pid);
        let Some(exit) = self.procs.get_mut(&child_pid).and_then(|c| c.exit.as_mut()) else {
            return;
        };
        if exit.reap.is_some() {
            return;
        }
        let kind = match reap::collector(event.tgid, exit.parent, exit.adopted_by, parent_gone) {
            Collector::Parent => ReapKind::Wait,
            Collector::Adopter => ReapKind::Adopted,
            Collector::Tracer => {
                exit.collected_by_tracer = Some(event.tgid);
                return;
            }
        };
        exit.reap = Some(Reap {
            time_ns: event.time_ns,
            by_pid: Some(event.tgid),
            kind,
        });
        self.finish_child(child_pid, event.time_ns);
    }

    fn free(&mut self, event: &Event, f: &crate::trace::event::Free) {
        if event.tid != event.tgid {
            self.summary.threads_reaped += 1;
            return;
        }
        let Some(proc) = self.procs.get(&event.tgid) else {
            return;
        };
        // The free trails the release by an RCU grace period: by now the pid
        // may belong to a new process. Only its own lifecycle's free counts.
        if proc.start_ns != 0 && f.process_start_ns != 0 && proc.start_ns != f.process_start_ns {
            return;
        }
        let Some(exit) = &proc.exit else {
            // Its exit was never seen (lost, or before the trace): nothing to judge.
            if proc.open_children == 0 {
                self.procs.remove(&event.tgid);
            }
            return;
        };
        if exit.reap.is_some() {
            return;
        }
        let autoreap = exit
            .parent_disposition
            .is_some_and(|(d, flags)| reap::autoreaps(d, flags));
        let parent_is_ns_init = self
            .procs
            .get(&exit.parent)
            .and_then(|p| p.ns_pid)
            .is_some_and(|ns| ns.pid == 1);
        let release = reap::release_without_wait(
            autoreap,
            exit.adopted_by.is_some(),
            self.parent_gone(event.tgid),
        );
        let reap = match release {
            Release::Autoreap => Reap {
                time_ns: exit.time_ns.unwrap_or(event.time_ns),
                by_pid: Some(exit.parent),
                kind: ReapKind::Autoreap,
            },
            // A pid namespace's init has no one to hand its orphans to: when
            // it exits, the kernel kills the namespace and the dying init
            // reaps what is left.
            Release::Adopted => Reap {
                time_ns: event.time_ns,
                by_pid: exit.adopted_by.or(parent_is_ns_init.then_some(exit.parent)),
                kind: ReapKind::Adopted,
            },
            // No later than this free.
            Release::UnseenWait => Reap {
                time_ns: event.time_ns,
                by_pid: Some(exit.parent),
                kind: ReapKind::Wait,
            },
        };
        if let Some(exit) = self
            .procs
            .get_mut(&event.tgid)
            .and_then(|p| p.exit.as_mut())
        {
            exit.reap = Some(reap);
        }
        self.finish_child(event.tgid, event.time_ns);
    }

    /// A child's verdict, once it is reaped.
    fn finish_child(&mut self, pid: u32, now_ns: u64) {
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
            });
        }
        let latency = exit
            .zombie_since_ns()
            .map(|t| reap.time_ns.saturating_sub(t));
        match reap.kind {
            ReapKind::Wait => {
                self.summary.reaped_by_parent += 1;
                let late = exit.predates.is_some() || latency.is_none_or(|l| l > self.threshold_ns);
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
            ReapKind::Thread => self.summary.threads_reaped += 1,
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
    fn release(&mut self, pid: u32) {
        if self
            .procs
            .get(&pid)
            .is_some_and(|p| p.finished && p.open_children == 0)
        {
            self.procs.remove(&pid);
        }
    }

    fn report(&mut self, finding: Finding) {
        self.notices.push(Notice::Finding(finding.clone()));
        self.findings.push(finding);
    }

    fn row(&mut self, parent: u32) -> &mut ParentRow {
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

    fn finding(
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
        let diagnosis = diagnosis::diagnose(&DiagContext {
            child_pid: pid,
            exit,
            parent_pid: exit.parent,
            parent: parent.map(|p| &p.facts),
            lost_events: self.summary.lost_events,
            parent_ns_init: parent.and_then(|p| p.ns_pid).is_some_and(|ns| ns.pid == 1),
        });
        Finding {
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
            certain: self.summary.lost_events == 0,
            start_ns: proc.start_ns,
            parent_end: parent.and_then(|p| p.facts.end.clone()),
            adopted_by_pid: None,
            hint: None,
            ns_pid: proc.ns_pid,
            parent_ns_pid: parent.and_then(|p| p.ns_pid),
            reaped_by_ns_pid: reap
                .and_then(|r| r.by_pid)
                .and_then(|by| self.procs.get(&by))
                .and_then(|p| p.ns_pid),
        }
        .with_hint()
    }

    /// Whether the parent `pid` had at its exit has died since.
    fn parent_gone(&self, pid: u32) -> bool {
        let Some(exit) = self.procs.get(&pid).and_then(|p| p.exit.as_ref()) else {
            return false;
        };
        self.procs
            .get(&exit.parent)
            .and_then(|p| p.facts.exited_ns)
            .is_some_and(|t| exit.time_ns.is_none_or(|e| t >= e))
    }

    /// Exits unreaped past the threshold and not yet announced.
    fn overdue(&self, now_ns: u64) -> impl Iterator<Item = (u32, &ExitFacts)> {
        self.procs
            .iter()
            .filter(|(_, p)| !p.announced)
            .filter_map(move |(&pid, p)| {
                let exit = p.exit.as_ref()?;
                let overdue = exit
                    .time_ns
                    .is_none_or(|t| now_ns.saturating_sub(t) > self.threshold_ns);
                (exit.reap.is_none() && overdue).then_some((pid, exit))
            })
    }

    /// The live parents whose /proc state is worth reading now: those with an
    /// exit about to be announced as overdue. The caller reads /proc (live)
    /// and hands the answers to [`Analyzer::attach_probe`] before
    /// [`Analyzer::announce_overdue`].
    pub fn due_probes(&self, now_ns: u64) -> Vec<u32> {
        let mut parents: Vec<u32> = self
            .overdue(now_ns)
            .map(|(_, exit)| exit.parent)
            .filter(|parent| {
                self.procs
                    .get(parent)
                    .is_none_or(|p| p.facts.exited_ns.is_none())
            })
            .collect();
        parents.sort_unstable();
        parents.dedup();
        parents
    }

    /// Announces exits that have waited past the threshold (`Pending`
    /// notices), each once.
    pub fn announce_overdue(&mut self, now_ns: u64) {
        let due: Vec<u32> = self.overdue(now_ns).map(|(pid, _)| pid).collect();
        for pid in due {
            if let Some(p) = self.procs.get_mut(&pid) {
                p.announced = true;
            }
            let finding = self.finding(pid, FindingKind::Unreaped, None, now_ns);
            self.notices.push(Notice::Pending(finding));
        }
    }

    /// An `orphaned` finding about `pid`, adopted by `adopter` (`None` while
    /// it still runs at the end of the trace).
    fn orphan_finding(&self, pid: u32, adopter: Option<u32>) -> Finding {
        let proc = &self.procs[&pid];
        let orphaning = proc.orphaning.as_ref();
        let parent = orphaning
            .map(|o| o.parent)
            .or(proc.parent_at_fork)
            .unwrap_or(0);
        let exit = proc.exit.as_ref();
        let parent_end = orphaning.map(|o| o.parent_end.clone());
        let mut diagnosis = vec![diagnosis::orphaned(
            pid,
            parent,
            parent_end.as_ref(),
            adopter,
            exit.and_then(|e| e.time_ns),
        )];
        if self.summary.lost_events > 0 {
            diagnosis.push(diagnosis::events_lost(self.summary.lost_events, pid));
        }
        Finding {
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
            certain: self.summary.lost_events == 0,
            start_ns: proc.start_ns,
            parent_end,
            adopted_by_pid: adopter,
            hint: None,
            ns_pid: proc.ns_pid,
            parent_ns_pid: self.procs.get(&parent).and_then(|p| p.ns_pid),
            reaped_by_ns_pid: None,
        }
        .with_hint()
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
            let finding = self.orphan_finding(pid, None);
            self.findings.push(finding);
        }
        let mut zombies: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.exit.as_ref().is_some_and(|e| e.reap.is_none()))
            .map(|(&pid, _)| pid)
            .collect();
        zombies.sort_unstable();
        for pid in zombies {
            let parent = self.procs[&pid]
                .exit
                .as_ref()
                .map(|e| e.parent)
                .unwrap_or(0);
            self.summary.unreaped += 1;
            self.summary.zombies_at_end += 1;
            let finding =
                self.finding(pid, FindingKind::Unreaped, Some(Resolution::Zombie), now_ns);
            let row = self.row(parent);
            row.unreaped += 1;
            row.worst_latency_ns = row.worst_latency_ns.max(finding.latency_ns.unwrap_or(0));
            self.findings.push(finding);
        }
        if self.summary.lost_events > 0 {
            for f in &mut self.findings {
                f.certain = false;
            }
        }
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
            summary: self.summary,
            parents,
        }
    }
}

/// The pid a wait asked for, in wait4's terms (-1: any child, -g: group g).
fn wait_pid(syscall: WaitSyscall, which: i32, upid: i32) -> i32 {
    match (syscall, which) {
        (WaitSyscall::Wait4, _) => upid,
        (WaitSyscall::Waitid, 0) => -1,
        (WaitSyscall::Waitid, 1) => upid,
        (WaitSyscall::Waitid, 2) => -upid,
        (WaitSyscall::Waitid, _) => 0,
    }
}
