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
    facts::{ExitFacts, Orphaning, Predates, SigchldFacts, SignalSent},
    findings::*,
    parent::{DispositionChange, ParentFacts, WaitCall},
    reap::{self, Collector, Release, WaitResult},
};
use reaper_trace_common::stack_owner;

use crate::trace::{
    cgroup::{Cgroup, CgroupNames},
    comm::Comm,
    event::{Event, EventData, NsPid, SignalResult, WaitSyscall},
    host_facts::{ParentProbe, SeedProcess},
    stack::{PendingStacks, Stack},
};

#[derive(Clone, Debug, Default)]
pub(super) struct Proc {
    /// 0 when unknown (found in /proc, or only seen as a parent).
    pub(super) start_ns: u64,
    pub(super) comm: Comm,
    pub(super) parent_at_fork: Option<u32>,
    pub(super) exit: Option<ExitFacts>,
    pub(super) announced: bool,
    pub(super) finished: bool,
    pub(super) facts: ParentFacts,
    /// Exited children whose verdict is still open.
    pub(super) open_children: u32,
    /// Children forked during the trace that have not exited yet.
    pub(super) running_children: Vec<u32>,
    /// Set when its parent died while it was running.
    pub(super) orphaning: Option<Orphaning>,
    /// Its pid in its own pid namespace, outside the initial one.
    pub(super) ns_pid: Option<NsPid>,
    /// Its cgroup v2 id when last seen running (0: unknown).
    pub(super) cgroup_id: u64,
    /// Where its parent's code forked it, when stacks are copied.
    pub(super) fork_stack: Option<Stack>,
}

/// Rebuilds lifecycles from events and reports what was never reaped.
pub struct Analyzer {
    pub(super) threshold_ns: u64,
    pub(super) procs: HashMap<u32, Proc>,
    pub(super) rows: BTreeMap<u32, ParentRow>,
    pub(super) findings: Vec<Finding>,
    pub(super) notices: Vec<Notice>,
    pub(super) summary: Summary,
    /// Every lifecycle's end, for outputs that draw them all (the timeline);
    /// `None` unless asked for.
    pub(super) verdicts: Option<Vec<Verdict>>,
    /// Cgroup paths by id, as the caller resolved them.
    pub(super) cgroups: CgroupNames,
    /// Stacks waiting for the fork or SIGCHLD action change they belong to.
    pub(super) pending_stacks: PendingStacks,
    /// The name of the sender of the next signal, when the trace never saw
    /// that process (see [`Analyzer::name_sender`]).
    pub(super) next_sender: Option<(u32, u64, Comm)>,
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
            cgroups: CgroupNames::default(),
            pending_stacks: PendingStacks::default(),
            next_sender: None,
        }
    }

    /// A user stack, unwound, taken as thread `tid` entered a fork
    /// (`stack_owner::FORK`) or a SIGCHLD action change
    /// (`stack_owner::SIGACTION`): it belongs to that thread's next such
    /// event when that event says it has one (`has_stack`), and is dropped
    /// otherwise. At most one waits per thread and kind; a failed fork's is
    /// dropped with its failure, an exited thread's with its exit.
    pub fn attach_stack(&mut self, tid: u32, owner: u32, stack: Stack) {
        self.pending_stacks.insert(tid, owner, stack);
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
            if let Some(path) = &seed.cgroup
                && seed.cgroup_id != 0
                && !self.cgroups.contains(seed.cgroup_id)
            {
                self.cgroups.insert(seed.cgroup_id, path);
            }
            let proc = self.procs.entry(seed.pid).or_default();
            proc.comm = seed.comm;
            proc.cgroup_id = seed.cgroup_id;
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

    /// The path of cgroup `id`, resolved live or read from a recording.
    pub fn name_cgroup(&mut self, id: u64, path: &str) {
        self.cgroups.insert(id, path);
    }

    /// The name of process `tgid`, which sent the signal recorded at
    /// `time_ns` (the next event) though the trace never saw it start (an
    /// unfollowed `runc kill`): live has it from the kernel, replay from
    /// the recording.
    pub fn name_sender(&mut self, tgid: u32, time_ns: u64, comm: Comm) {
        self.next_sender = Some((tgid, time_ns, comm));
    }

    /// The name of the process that sent signal `event`: as the trace knows
    /// it, else as [`Analyzer::name_sender`] gave it; empty if neither.
    fn sender_comm(&mut self, event: &Event) -> Comm {
        let named = self
            .next_sender
            .take()
            .filter(|&(tgid, time_ns, _)| (tgid, time_ns) == (event.tgid, event.time_ns))
            .map(|(_, _, comm)| comm);
        self.procs
            .get(&event.tgid)
            .map(|p| p.comm)
            .filter(|comm| *comm != Comm::default())
            .or(named)
            .unwrap_or_default()
    }

    /// Whether cgroup `id` has a name already.
    pub fn knows_cgroup(&self, id: u64) -> bool {
        self.cgroups.contains(id)
    }

    /// Drops the name of a cgroup that is gone, and the findings and parent
    /// rows kept for a final report: a daemon that never reports keeps
    /// only what open lifecycles need.
    pub fn forget_history(&mut self, gone_cgroups: &[u64]) {
        for id in gone_cgroups {
            self.cgroups.remove(*id);
        }
        self.findings.clear();
        self.rows.clear();
        // Orphans are listed up to a cap per report; a daemon has none.
        self.summary.adopted_while_running = 0;
    }

    /// The cgroup the event's process runs in, for a process already known.
    /// An exit sets its own (`process_exit`), after settling a reused pid;
    /// a free runs in no task of its own.
    fn note_cgroup(&mut self, event: &Event) {
        if event.cgroup_id == 0 || matches!(event.data, EventData::Exit(_) | EventData::Free(_)) {
            return;
        }
        if let Some(proc) = self.procs.get_mut(&event.tgid) {
            proc.cgroup_id = event.cgroup_id;
        }
    }

    /// Processes whose exit has been counted (one per process, however many
    /// of its threads report the group's death on older kernels).
    pub fn exits(&self) -> u64 {
        self.summary.exits
    }

    /// The cgroup process `pid` was last seen in, named when known.
    pub(super) fn cgroup_of(&self, pid: u32) -> Option<Cgroup> {
        self.cgroup(self.procs.get(&pid)?.cgroup_id)
    }

    /// Cgroup `id`, named when its path is known; `None` for id 0.
    pub fn cgroup(&self, id: u64) -> Option<Cgroup> {
        self.cgroups.cgroup(id)
    }

    /// Cgroup `id`'s name, when known.
    pub fn cgroup_name(&self, id: u64) -> Option<&Cgroup> {
        self.cgroups.get(id).map(|c| &**c)
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
        self.note_cgroup(event);
        match &event.data {
            EventData::Fork(f) if !f.is_thread => {
                // A fork reusing a pid proves the old process was released,
                // whether or not its reap reached us.
                self.settle_stale(f.child_tgid, f.child_start_ns, event.time_ns);
                let parent_comm = f.comm;
                let forker = self.procs.entry(event.tgid).or_default();
                if forker.comm == Comm::default() {
                    forker.comm = parent_comm;
                }
                if forker.start_ns == 0 {
                    forker.start_ns = f.parent_start_ns;
                }
                // With CLONE_PARENT the child's parent is the forker's parent.
                let parent = f.real_parent_tgid.unwrap_or(event.tgid);
                self.procs
                    .entry(parent)
                    .or_default()
                    .running_children
                    .push(f.child_tgid);
                let child = self.procs.entry(f.child_tgid).or_default();
                child.start_ns = f.child_start_ns;
                child.comm = f.comm;
                child.parent_at_fork = Some(parent);
                // A child starts in its forker's cgroup (CLONE_INTO_CGROUP
                // aside, which its own first event corrects).
                child.cgroup_id = event.cgroup_id;
                child.fork_stack =
                    self.pending_stacks
                        .take(event.tid, stack_owner::FORK, f.has_stack);
            }
            EventData::NsPids(n) if n.levels.len() > 1 => {
                self.procs.entry(n.child_tgid).or_default().ns_pid = n.levels.last().copied();
            }
            EventData::Exec(x) => {
                let proc = self.procs.entry(event.tgid).or_default();
                proc.comm = x.comm;
                proc.facts.exec_reset();
            }
            EventData::Exit(x) => {
                self.pending_stacks.exited(event.tid);
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
            // Signals a process sent (kill, tkill, sigqueue), not the
            // kernel's own (faults, timers): who asked a process to end.
            EventData::SignalGenerate(s)
                if matches!(s.code, libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL) =>
            {
                let from_comm = self.sender_comm(event);
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
                        stack: self.pending_stacks.take(
                            event.tid,
                            stack_owner::SIGACTION,
                            s.has_stack,
                        ),
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
                self.pending_stacks.fork_failed(event.tid);
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
        // Before 6.16 the probe infers group_dead, and under exit_group
        // several threads may each report it: one exit per process.
        let repeated = self.procs.get(&event.tgid).is_some_and(|p| {
            p.exit.as_ref().is_some_and(|e| e.time_ns.is_some())
                && (p.start_ns == x.process_start_ns || x.process_start_ns == 0)
        });
        if repeated {
            return;
        }
        self.settle_stale(event.tgid, x.process_start_ns, event.time_ns);
        let proc = self.procs.entry(event.tgid).or_default();
        if event.cgroup_id != 0 {
            // Where the zombie is charged; set after a stale entry of a
            // reused pid is gone, so that it keeps its own.
            proc.cgroup_id = event.cgroup_id;
        }
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
        self.forget_running(event.tgid);
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
            if self.orphans_listed() {
                let finding = self.orphan_finding(event.tgid, Some(x.real_parent_tgid));
                self.report(finding);
            }
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
        let Some(exit) = self.procs.get_mut(&child_pid).and_then(|c| c.exit.as_mut()) else {
            return;
        };
        if exit.reap.is_some() {
            return;
        }
        let kind = match reap::collector(event.tgid, exit.parent, exit.adopted_by) {
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
        if proc.exit.is_none() {
            // Its exit was never seen (lost, or before the trace): nothing to judge.
            self.forget_running(event.tgid);
            if self
                .procs
                .get(&event.tgid)
                .is_some_and(|p| p.open_children == 0)
            {
                self.procs.remove(&event.tgid);
            }
            return;
        }
        self.release_unseen(event.tgid, event.time_ns);
    }

    /// An entry for `pid` with another start time belongs to a process that
    /// is gone: settle its open exit (released no later than `now_ns`) and
    /// drop it.
    fn settle_stale(&mut self, pid: u32, start_ns: u64, now_ns: u64) {
        let stale = self
            .procs
            .get(&pid)
            .is_some_and(|p| p.start_ns != 0 && start_ns != 0 && p.start_ns != start_ns);
        if !stale {
            return;
        }
        self.release_unseen(pid, now_ns);
        self.forget_running(pid);
        self.procs.remove(&pid);
    }

    /// Takes `pid` off its parent's running children.
    fn forget_running(&mut self, pid: u32) {
        let Some(parent) = self.procs.get(&pid).and_then(|p| p.parent_at_fork) else {
            return;
        };
        if let Some(p) = self.procs.get_mut(&parent)
            && let Some(i) = p.running_children.iter().position(|&c| c == pid)
        {
            p.running_children.swap_remove(i);
        }
    }

    /// `pid` was released at `now_ns` at the latest, and no reaping wait was
    /// seen: decide how (the reap rules) and close its lifecycle.
    fn release_unseen(&mut self, pid: u32, now_ns: u64) {
        let Some(exit) = self.procs.get(&pid).and_then(|p| p.exit.as_ref()) else {
            return;
        };
        if exit.reap.is_some() {
            return;
        }
        let autoreap = exit
            .parent_disposition
            .is_some_and(|(d, flags)| reap::autoreaps(d, flags));
        let parent_is_ns_init = self.is_ns_init(exit.parent);
        let release =
            reap::release_without_wait(autoreap, exit.adopted_by.is_some(), self.parent_gone(pid));
        let reap = match release {
            Release::Autoreap => Reap {
                time_ns: exit.time_ns.unwrap_or(now_ns),
                by_pid: Some(exit.parent),
                kind: ReapKind::Autoreap,
            },
            // A pid namespace's init has no one to hand its orphans to: when
            // it exits, the kernel kills the namespace and the dying init
            // reaps what is left.
            Release::Adopted => Reap {
                time_ns: now_ns,
                by_pid: exit.adopted_by.or(parent_is_ns_init.then_some(exit.parent)),
                kind: ReapKind::Adopted,
            },
            // No later than now.
            Release::UnseenWait => Reap {
                time_ns: now_ns,
                by_pid: Some(exit.parent),
                kind: ReapKind::Wait,
            },
        };
        if let Some(exit) = self.procs.get_mut(&pid).and_then(|p| p.exit.as_mut()) {
            exit.reap = Some(reap);
        }
        self.finish_child(pid, now_ns);
    }

    /// Whether `pid` is PID 1 of a pid namespace of its own.
    pub(super) fn is_ns_init(&self, pid: u32) -> bool {
        self.procs
            .get(&pid)
            .and_then(|p| p.ns_pid)
            .is_some_and(|ns| ns.pid == 1)
    }

    /// Whether the parent `pid` had at its exit has died since.
    pub(super) fn parent_gone(&self, pid: u32) -> bool {
        let Some(exit) = self.procs.get(&pid).and_then(|p| p.exit.as_ref()) else {
            return false;
        };
        self.procs
            .get(&exit.parent)
            .and_then(|p| p.facts.exited_ns)
            .is_some_and(|t| exit.time_ns.is_none_or(|e| t >= e))
    }
}

/// The pid a wait asked for, in wait4's terms (-1: any child, -g: group g).
fn wait_pid(syscall: WaitSyscall, which: i32, upid: i32) -> i32 {
    match (syscall, which) {
        (WaitSyscall::Wait4, _) => upid,
        (WaitSyscall::Waitid, 0) => -1,
        (WaitSyscall::Waitid, 1) => upid,
        (WaitSyscall::Waitid, 2) => upid.wrapping_neg(),
        (WaitSyscall::Waitid, _) => 0,
    }
}
