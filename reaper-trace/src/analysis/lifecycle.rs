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
    facts::{ExitFacts, Orphaning, Predates, ProcessEnd, SigchldFacts, SignalSent},
    findings::*,
    losses::Losses,
    parent::{DispositionChange, KernelWait, ParentFacts, WaitCall, Waiting},
    reap::{self, Collector, Release, WaitResult},
};
use reaper_trace_common::stack_owner;

use crate::{
    cgroup::{Cgroup, CgroupNames},
    trace::{
        comm::Comm,
        event::{
            Event, EventData, Exec, Exit, Fork, Free, NsPid, Sigaction, SignalGenerate,
            SignalResult, WaitEnter, WaitExit, WaitSyscall,
        },
        host_facts::{ParentProbe, SeedProcess},
        stack::{PendingStacks, Stack},
    },
};

/// One process. There is one per open lifecycle, and a recording from
/// another machine decides how many: what every process has is inline and
/// small, what only some have (an exit, the facts of a parent, an
/// orphaning, a stack) is boxed and allocated when first needed.
/// `a_process_entry_stays_small` holds the size down.
#[derive(Clone, Debug, Default)]
pub(super) struct Proc {
    /// 0 when unknown (found in /proc, or only seen as a parent).
    pub(super) start_ns: u64,
    pub(super) comm: Comm,
    pub(super) parent_at_fork: Option<u32>,
    pub(super) exit: Option<Box<ExitFacts>>,
    pub(super) announced: bool,
    pub(super) finished: bool,
    /// Empty (and unallocated) until it acts as a parent or gets a signal.
    pub(super) facts: LazyFacts,
    /// Exited children whose verdict is still open.
    pub(super) open_children: u32,
    /// Set when its parent died while it was running.
    pub(super) orphaning: Option<Box<Orphaning>>,
    /// Its pid in its own pid namespace, outside the initial one.
    pub(super) ns_pid: Option<NsPid>,
    /// Its cgroup v2 id when last seen running (0: unknown).
    pub(super) cgroup_id: u64,
    /// Where its parent's code forked it, when stacks are copied.
    pub(super) fork_stack: Option<Box<Stack>>,
}

/// A process's [`ParentFacts`], allocated on the first write: most
/// processes never fork, wait or get a signal, and reading the facts of
/// one that did not reads an empty set.
#[derive(Clone, Debug, Default)]
pub(super) struct LazyFacts(Option<Box<ParentFacts>>);

impl Proc {
    /// How it ended, once it has (not for a zombie older than the trace).
    pub(super) fn end(&self) -> Option<&ProcessEnd> {
        self.exit.as_ref()?.end.as_deref()
    }
}

impl LazyFacts {
    /// Its running children, emptied, without allocating facts for a
    /// process that has none.
    fn take_running_children(&mut self) -> std::collections::BTreeSet<u32> {
        self.0
            .as_mut()
            .map(|f| std::mem::take(&mut f.running_children))
            .unwrap_or_default()
    }
}

impl std::ops::Deref for LazyFacts {
    type Target = ParentFacts;
    fn deref(&self) -> &ParentFacts {
        static EMPTY: std::sync::LazyLock<ParentFacts> =
            std::sync::LazyLock::new(ParentFacts::default);
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl std::ops::DerefMut for LazyFacts {
    fn deref_mut(&mut self) -> &mut ParentFacts {
        self.0.get_or_insert_default()
    }
}

/// Rebuilds lifecycles from events and reports what was never reaped.
pub struct Analyzer {
    pub(super) threshold_ns: u64,
    /// Boxed: the table stays a few bytes per slot, and its growth copies
    /// pointers, not entries.
    pub(super) procs: HashMap<u32, Box<Proc>>,
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
    /// When events were lost: what decides whether a finding is certain.
    pub(super) losses: Losses,
    /// When the loss counters were last read (0: since the trace began).
    losses_read_ns: u64,
    /// Whether the wait calls were traced (syscall hooks): without them a
    /// reap is dated by its free and by /proc, and who made it, once the
    /// parent is gone, only by the free.
    pub(super) waits_traced: bool,
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
            losses: Losses::default(),
            losses_read_ns: 0,
            next_sender: None,
            waits_traced: true,
        }
    }

    /// The trace has no wait records (no syscall hooks, see
    /// [`Analyzer::waits_traced`]): exits are looked up in /proc from half
    /// the threshold on, and one found gone after its parent died waits for
    /// its free to say who released it.
    pub fn without_wait_records(mut self) -> Analyzer {
        self.waits_traced = false;
        self
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
                proc.exit = Some(Box::new(ExitFacts::predating(
                    seed.ppid,
                    Predates {
                        trace_start_ns: now_ns,
                        started_ns: seed.started_ns,
                    },
                )));
                self.procs.entry(seed.ppid).or_default().open_children += 1;
                // Counted as an exit in the summary as in the parent's row:
                // every unreaped child is an exit, and a summary with more
                // unreaped than exits contradicts itself. The exit happened
                // before the trace, which `predates_trace` says.
                self.summary.exits += 1;
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

    /// The cgroups named so far (seeded, or named before their first event).
    pub fn named_cgroups(&self) -> impl Iterator<Item = &Cgroup> {
        self.cgroups.iter()
    }

    /// The kernel's loss counters read at `now_ns` said `lost` in all:
    /// losses since the previous read happened between the two. Call it
    /// after handing over every record read before `now_ns` and before
    /// taking the notices, so that no finding is shown as certain before
    /// the counters covering it were read. Returns the new loss window,
    /// if any, for the caller to record.
    pub fn losses_read(&mut self, lost: u64, now_ns: u64) -> Option<(u64, u64)> {
        let since = self.losses_read_ns;
        self.losses_read_ns = self.losses_read_ns.max(now_ns);
        self.losses_in(lost, since, now_ns)
    }

    /// Replay: the loss total grew to `lost` somewhere in `(since_ns, now_ns]`.
    pub fn losses_in(&mut self, lost: u64, since_ns: u64, now_ns: u64) -> Option<(u64, u64)> {
        let window = self.losses.read(lost, since_ns, now_ns);
        self.summary.lost_events = self.losses.total();
        window
    }

    /// /proc facts about a parent, read (live) or replayed (from a recording).
    pub fn attach_probe(&mut self, parent: u32, probe: ParentProbe) {
        self.facts_mut(parent).probe = Some(probe);
    }

    /// Takes what was noticed since the last call, each finding marked
    /// certain or not by the losses known now.
    pub fn drain_notices(&mut self) -> Vec<Notice> {
        let mut notices = std::mem::take(&mut self.notices);
        for notice in &mut notices {
            if let Notice::Finding(f) | Notice::Pending(f) = notice {
                self.settle_certainty(f);
            }
        }
        notices
    }

    /// Number of processes held: bounded by the live ones plus open verdicts.
    pub fn tracked(&self) -> usize {
        self.procs.len()
    }

    pub fn on_event(&mut self, event: &Event) {
        self.note_cgroup(event);
        match &event.data {
            EventData::Fork(f) if !f.is_thread => self.fork(event, f),
            EventData::NsPids(n) if n.levels.len() > 1 => {
                self.procs.entry(n.child_tgid).or_default().ns_pid = n.levels.last().copied();
            }
            EventData::Exec(x) => self.exec(event, x),
            EventData::TaskRename(r) => self.renamed(event, r),
            EventData::Exit(x) => self.exit(event, x),
            EventData::SignalGenerate(s) if s.sig == reaper_trace_common::SIGCHLD => {
                self.sigchld(event, s)
            }
            // Signals a process sent (kill, tkill, sigqueue), not the
            // kernel's own (faults, timers): who asked a process to end.
            EventData::SignalGenerate(s)
                if matches!(s.code, libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL) =>
            {
                self.signal_sent(event, s)
            }
            EventData::SignalDeliver(d) if d.sig == reaper_trace_common::SIGCHLD => {
                self.facts_mut(event.tgid).sigchld_delivered += 1;
            }
            EventData::Sigaction(s) if s.sig == reaper_trace_common::SIGCHLD => {
                self.sigchld_action(event, s)
            }
            EventData::WaitEnter(w) => self.wait_enter(event, w),
            EventData::WaitExit(w) => self.wait_exit(event, w),
            EventData::ProcessWait(w) => {
                // A namespace's init reaps what is left as it dies
                // (`zap_pid_ns_processes`): the kernel's waits, not the
                // program's.
                let dying = self
                    .procs
                    .get(&event.tgid)
                    .is_some_and(|p| p.end().is_some());
                let facts = self.facts_mut(event.tgid);
                facts.resolve_pidfd_wait(event.tid, w.pid);
                if !dying {
                    facts.record_kernel_wait(KernelWait {
                        time_ns: event.time_ns,
                        tid: event.tid,
                        pid: w.pid,
                    });
                }
            }
            EventData::Free(f) => self.free(event, f),
            EventData::ForkFailed(f) => {
                self.pending_stacks.fork_failed(event.tid);
                *self
                    .facts_mut(event.tgid)
                    .fork_failures
                    .entry(f.errno)
                    .or_default() += 1;
            }
            _ => {}
        }
    }

    /// The facts of `tgid` as a parent, allocated when first written.
    fn facts_mut(&mut self, tgid: u32) -> &mut ParentFacts {
        &mut self.procs.entry(tgid).or_default().facts
    }

    fn fork(&mut self, event: &Event, f: &Fork) {
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
        self.facts_mut(parent).running_children.insert(f.child_tgid);
        let child = self.procs.entry(f.child_tgid).or_default();
        child.start_ns = f.child_start_ns;
        child.comm = f.comm;
        child.parent_at_fork = Some(parent);
        // A child starts in its forker's cgroup (CLONE_INTO_CGROUP
        // aside, which its own first event corrects).
        child.cgroup_id = event.cgroup_id;
        child.fork_stack = self
            .pending_stacks
            .take(event.tid, stack_owner::FORK, f.has_stack)
            .map(Box::new);
    }

    fn exec(&mut self, event: &Event, x: &Exec) {
        let proc = self.procs.entry(event.tgid).or_default();
        proc.facts
            .record_exec(event.time_ns, proc.comm, x.comm, &x.filename);
        proc.comm = x.comm;
        proc.facts.exec_reset();
    }

    /// A task exited: the whole process, or its leader before the rest of
    /// its threads (noted, not flagged: `ps` shows it as Z, yet it lives).
    fn exit(&mut self, event: &Event, x: &Exit) {
        self.pending_stacks.exited(event.tid);
        if x.group_dead {
            self.process_exit(event, x);
        } else if !x.is_thread {
            self.facts_mut(event.tgid).leader_exited_ns = Some(event.time_ns);
            self.summary.leader_exits += 1;
            self.notices.push(Notice::LeaderExit {
                pid: event.tgid,
                comm: x.comm,
                time_ns: event.time_ns,
            });
        }
    }

    fn signal_sent(&mut self, event: &Event, s: &SignalGenerate) {
        let from_comm = self.sender_comm(event);
        self.facts_mut(s.target_tgid).record_signal(SignalSent {
            time_ns: event.time_ns,
            sig: s.sig,
            from_pid: event.tgid,
            from_comm,
        });
    }

    fn sigchld_action(&mut self, event: &Event, s: &Sigaction) {
        let stack = self
            .pending_stacks
            .take(event.tid, stack_owner::SIGACTION, s.has_stack);
        self.facts_mut(event.tgid)
            .record_disposition(DispositionChange {
                time_ns: event.time_ns,
                tid: event.tid,
                disposition: s.disposition,
                handler: s.handler,
                flags: s.flags,
                times: 1,
                last_ns: event.time_ns,
                comm: s.comm,
                stack,
            });
    }

    fn wait_enter(&mut self, event: &Event, w: &WaitEnter) {
        let pid = wait_pid(w.syscall, w.which, w.upid);
        self.facts_mut(event.tgid).waiting.insert(
            event.tid,
            Waiting {
                pid,
                options: w.options,
                since_ns: event.time_ns,
                pidfd: w.pidfd,
            },
        );
    }

    fn process_exit(&mut self, event: &Event, x: &Exit) {
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
        // How it ended, for its children: read from its facts, not written
        // there (most processes have none, and get none).
        let parent_end = proc.facts.end(event.time_ns, x);
        proc.exit = Some(Box::new(ExitFacts {
            time_ns: Some(event.time_ns),
            exit_code: x.exit_code,
            signal: x.signal,
            core_dumped: x.core_dumped,
            exit_signal: x.exit_signal,
            parent: x.real_parent_tgid,
            sigchld: Vec::new(),
            adopted_by: None,
            collected_by_tracer: None,
            parent_died: false,
            reap_unseen: false,
            releaser_unknown: false,
            zombie_seen_ns: 0,
            next_zombie_check_ns: 0,
            gone_ns: 0,
            adopted_at_exit_from: None,
            parent_disposition: Some((x.parent_disposition, x.parent_sa_flags)),
            reap: None,
            predates: None,
            end: Some(Box::new(parent_end.clone())),
        }));
        let orphaned_from = proc.parent_at_fork.filter(|&p| p != x.real_parent_tgid);
        let orphans = proc.facts.take_running_children();
        self.forget_running(event.tgid);
        // Its children still running are orphans now, adopted by a subreaper
        // or init: say so when each of them ends.
        let comm = x.comm;
        let parent_ns_pid = self.procs.get(&event.tgid).and_then(|p| p.ns_pid);
        for child in orphans {
            if let Some(c) = self.procs.get_mut(&child)
                && c.exit.is_none()
            {
                c.orphaning = Some(Box::new(Orphaning {
                    parent: event.tgid,
                    parent_comm: comm,
                    parent_end: parent_end.clone(),
                    parent_ns_pid,
                }));
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
        self.charge_exit(x.real_parent_tgid);
    }

    /// A child's exit is `parent`'s: in its row, its facts, and the open
    /// verdicts that keep it.
    fn charge_exit(&mut self, parent: u32) {
        self.row(parent).exits += 1;
        let parent = self.procs.entry(parent).or_default();
        parent.facts.children_exited += 1;
        parent.open_children += 1;
    }

    /// Undoes [`Analyzer::charge_exit`]: the exit turned out to be
    /// another's. `parent` is forgotten if nothing more is open about it.
    fn uncharge_exit(&mut self, parent: u32) {
        let row = self.row(parent);
        row.exits = row.exits.saturating_sub(1);
        if let Some(p) = self.procs.get_mut(&parent) {
            p.facts.children_exited = p.facts.children_exited.saturating_sub(1);
            p.open_children = p.open_children.saturating_sub(1);
        }
        self.release(parent);
    }

    fn sigchld(&mut self, event: &Event, s: &SignalGenerate) {
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
            let disposition = (s.target_disposition, s.target_sa_flags);
            self.adopt_if_parent_died_first(child_pid, adopter, Some(disposition));
        }
    }

    /// The free said `pid` was released with `by` as its real parent. When
    /// that is not the parent it exited under, its parent died and `by`
    /// adopted it (reparenting happens only then), whatever the order in
    /// which the records arrived.
    fn released_under(&mut self, pid: u32, by: u32) {
        let Some(exit) = self.procs.get_mut(&pid).and_then(|p| p.exit.as_mut()) else {
            return;
        };
        if exit.reap.is_some() || exit.parent == by {
            return;
        }
        exit.parent_died = true;
        exit.adopted_by.get_or_insert(by);
        self.adopt_if_parent_died_first(pid, by, None);
    }

    /// A child that the kernel had already reparented when it became a
    /// zombie was never its dead parent's: its exit record (written early
    /// in `do_exit`) can still name the parent, which then reached its own
    /// `exit_notify` and handed its children over before the child reached
    /// its. The kernel's own word on whose zombie it became is where its
    /// exit's SIGCHLD went (`do_notify_parent` in the child's
    /// `exit_notify`); without one (another exit signal, or not seen), the
    /// order of the two exits. Its lifecycle then becomes the adopter's, as
    /// if its exit had named the adopter (which is what /proc shows), and
    /// its parent's death makes it an orphan. A zombie that was announced
    /// to its parent stays the parent's: dying without reaping it leaves it
    /// unreaped, adopted.
    fn adopt_if_parent_died_first(
        &mut self,
        pid: u32,
        adopter: u32,
        disposition: Option<(crate::trace::event::Disposition, u64)>,
    ) {
        let Some(exit) = self.procs.get(&pid).and_then(|p| p.exit.as_ref()) else {
            return;
        };
        let old = exit.parent;
        // How the parent ended: set with its exit, so known once it exited.
        let Some(end) = self.procs.get(&old).and_then(|p| p.end().cloned()) else {
            return;
        };
        let parent_end = end.time_ns;
        if adopter == old || exit.reap.is_some() {
            return;
        }
        // Only a SIGCHLD child's first SIGCHLD is its own notification: any
        // other child is announced with SIGCHLD only when reparented.
        let own_sigchld = (exit.exit_signal == reaper_trace_common::SIGCHLD)
            .then(|| exit.sigchld.first())
            .flatten();
        let handed_over = match own_sigchld {
            Some(notified) => notified.target_tgid == adopter,
            None => exit.time_ns.is_some_and(|t| parent_end <= t),
        };
        if !handed_over {
            return;
        }
        let orphaning = self.procs.get(&old).map(|p| Orphaning {
            parent: old,
            parent_comm: p.comm,
            parent_ns_pid: p.ns_pid,
            parent_end: end,
        });
        let proc = self.procs.get_mut(&pid).expect("looked up above");
        if proc.orphaning.is_none() {
            proc.orphaning = orphaning.clone().map(Box::new);
        }
        let exit = proc.exit.as_mut().expect("looked up above");
        exit.parent = adopter;
        exit.parent_died = false;
        exit.adopted_by = None;
        exit.adopted_at_exit_from = orphaning.map(Box::new);
        exit.parent_disposition = disposition;
        // The counts move with it.
        self.uncharge_exit(old);
        self.charge_exit(adopter);
        self.summary.adopted_while_running += 1;
        if self.orphans_listed() {
            let finding = self.orphan_finding(pid, Some(adopter));
            self.report(finding);
        }
    }

    fn wait_exit(&mut self, event: &Event, w: &WaitExit) {
        let facts = self.facts_mut(event.tgid);
        let waiting = facts.waiting.remove(&event.tid);
        // A pidfd wait can report only the process its fd stands for (which
        // the kernel's process_wait named, when it came).
        let pid = match w.pidfd {
            Some(_) if w.reaped_pid > 0 => w.reaped_pid,
            Some(_) => waiting.filter(|x| x.pidfd == w.pidfd).map_or(0, |x| x.pid),
            None => wait_pid(w.syscall, w.which, w.upid),
        };
        facts.record_wait(WaitCall {
            time_ns: event.time_ns,
            tid: event.tid,
            syscall: w.syscall,
            pid,
            options: w.options,
            ret: w.ret,
            reaped: w.reaped_pid,
            pidfd: w.pidfd,
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

    fn free(&mut self, event: &Event, f: &Free) {
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
        let freed_under = f
            .real_parent_tgid
            .filter(|&by| self.free_names_releaser(event.tgid, by));
        if let Some(by) = freed_under {
            self.released_under(event.tgid, by);
        }
        let Some(proc) = self.procs.get(&event.tgid) else {
            return;
        };
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
        self.release_unseen(event.tgid, event.time_ns, freed_under);
    }

    /// Whether the real parent `by` that `pid`'s free read can be taken at
    /// its word. A child its parent released keeps pointing at that parent,
    /// whose task, once it has died too, may be freed and its memory
    /// reused by the time the child's free runs: the free then reads a
    /// stranger's tgid. With wait records the parent's reap was seen first;
    /// without them another parent than the exit's is believed only when the
    /// kernel's SIGCHLD announced the child to it (a zombie's reparenting
    /// does).
    fn free_names_releaser(&self, pid: u32, by: u32) -> bool {
        let Some(exit) = self.procs.get(&pid).and_then(|p| p.exit.as_ref()) else {
            return true;
        };
        self.waits_traced
            || by == exit.parent
            || exit.adopted_by == Some(by)
            || !self.parent_gone(pid)
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
        if self.end_may_be_lost(pid, now_ns) {
            self.close_unknown(pid);
        } else {
            self.release_unseen(pid, now_ns, None);
        }
        self.forget_running(pid);
        self.procs.remove(&pid);
    }

    /// Whether events lost between `pid`'s exit and `now_ns` may have held
    /// its reap.
    fn end_may_be_lost(&self, pid: u32, now_ns: u64) -> bool {
        let from = self
            .procs
            .get(&pid)
            .and_then(|p| p.exit.as_ref())
            .and_then(|e| e.time_ns)
            .unwrap_or(0);
        !self.losses.clear(from, now_ns)
    }

    /// Closes `pid`'s open exit without a verdict: its pid was reused, so
    /// it was released, but how and when went with lost events. It counts
    /// as an unknown end, never as a finding.
    pub(super) fn close_unknown(&mut self, pid: u32) {
        let Some(exit) = self.procs.get(&pid).and_then(|p| p.exit.as_ref()) else {
            return;
        };
        if exit.reap.is_some() {
            return;
        }
        let parent = exit.parent;
        self.summary.unknown_ends += 1;
        if let Some(proc) = self.procs.get_mut(&pid) {
            proc.finished = true;
        }
        if let Some(p) = self.procs.get_mut(&parent) {
            p.open_children = p.open_children.saturating_sub(1);
        }
        self.release(parent);
    }

    /// Takes `pid` off its parent's running children.
    fn forget_running(&mut self, pid: u32) {
        let Some(parent) = self.procs.get(&pid).and_then(|p| p.parent_at_fork) else {
            return;
        };
        if let Some(p) = self.procs.get_mut(&parent)
            && p.facts.running_children.contains(&pid)
        {
            p.facts.running_children.remove(&pid);
        }
    }

    /// `pid` was released at `now_ns` at the latest, and no reaping wait was
    /// seen: decide how (the reap rules) and close its lifecycle. `freed_under`
    /// is the real parent its free named, when a free did.
    fn release_unseen(&mut self, pid: u32, now_ns: u64, freed_under: Option<u32>) {
        let Some(exit) = self.procs.get(&pid).and_then(|p| p.exit.as_ref()) else {
            return;
        };
        if exit.reap.is_some() {
            return;
        }
        // Seen gone from /proc before: released by then.
        let now_ns = match exit.gone_ns {
            0 => now_ns,
            gone => gone.min(now_ns),
        };
        let autoreap = exit
            .parent_disposition
            .is_some_and(|(d, flags)| reap::autoreaps(exit.exit_signal, d, flags));
        let parent_is_ns_init = self.is_ns_init(exit.parent);
        // A dying process hands its zombies over rather than reaping them,
        // except a namespace's init, which reaps what is left as it dies.
        // So a free that still names the parent says the parent released
        // it while alive, however long the free trailed the reap (and the
        // parent may well have exited in between).
        let freed_by_parent = freed_under == Some(exit.parent) && !parent_is_ns_init;
        let parent_gone = self.parent_gone(pid) && !freed_by_parent;
        // Without wait records, a parent that died leaves open whether it
        // released the child before (in time or late) or handed it over:
        // only the kernel's SIGCHLD to an adopter, or a free naming one,
        // says. Otherwise no verdict, unless /proc showed the zombie past
        // the threshold: then a finding, but not a certain one.
        let releaser_unknown = !self.waits_traced
            && parent_gone
            && !autoreap
            && exit.adopted_by.is_none()
            && freed_under.is_none_or(|by| by == exit.parent);
        if releaser_unknown && !self.zombie_seen_past_threshold(exit) {
            self.close_unknown(pid);
            self.release(pid);
            return;
        }
        let release = reap::release_without_wait(autoreap, exit.adopted_by.is_some(), parent_gone);
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
            // Dated by now (a free, a reused pid, the end): no record of
            // the reap itself.
            exit.reap_unseen = matches!(release, Release::UnseenWait | Release::Adopted);
            exit.releaser_unknown = releaser_unknown;
        }
        self.finish_child(pid, now_ns);
    }

    /// Exits whose reap has not been seen: as the trace ends, live asks
    /// /proc which of them are still zombies ([`Analyzer::gone`]).
    pub fn open_exits(&self) -> Vec<u32> {
        let mut open: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| {
                p.exit
                    .as_ref()
                    .is_some_and(|e| e.reap.is_none() && e.gone_ns == 0)
            })
            .map(|(&pid, _)| pid)
            .collect();
        open.sort_unstable();
        open
    }

    /// `pid` was found no longer a zombie at `now_ns`: released, though
    /// neither its reap nor its free was seen (the kernel runs frees from
    /// RCU callbacks, at times long after the reap). Closed as released by
    /// then, so never a zombie at the end; a finding it makes is uncertain.
    ///
    /// Without wait records, one whose parent has died since its exit may
    /// have been released by the parent before it died or by the adopter
    /// after: its free, which names the real parent, decides (and dates the
    /// release no later than now).
    pub fn gone(&mut self, pid: u32, now_ns: u64) {
        let undecided = !self.waits_traced && self.parent_gone(pid);
        if let Some(exit) = self.procs.get_mut(&pid).and_then(|p| p.exit.as_mut())
            && undecided
            && exit.adopted_by.is_none()
        {
            if exit.gone_ns == 0 {
                exit.gone_ns = now_ns;
            }
            return;
        }
        self.release_unseen(pid, now_ns, None);
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
        // A parent that exited is gone for good, whether it began to exit
        // before or after the child: a dying process never waits again.
        exit.parent_died
            || self
                .procs
                .get(&exit.parent)
                .is_some_and(|p| p.end().is_some())
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

#[cfg(test)]
mod size_tests {
    use super::*;

    /// What one open lifecycle costs: a recording of N forks that never
    /// exit holds N of these (1,072 bytes each, inline in the table, before
    /// issue 19), and N zombies as many exits.
    #[test]
    fn a_process_entry_stays_small() {
        eprintln!(
            "Proc {} ExitFacts {} ParentFacts {}",
            size_of::<Proc>(),
            size_of::<ExitFacts>(),
            size_of::<ParentFacts>()
        );
        assert!(size_of::<Proc>() <= 96, "{}", size_of::<Proc>());
        assert!(size_of::<ExitFacts>() <= 192, "{}", size_of::<ExitFacts>());
    }
}
