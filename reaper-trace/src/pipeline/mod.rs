//! The one path every record takes, live or replayed: the pid-namespace
//! stage, the `--pid`/`--comm` follow rule, the analyzer, and the outputs
//! (visitors) fed each admitted event and each verdict as it is reached.
//!
//! A source (the ring buffer, a recording) hands records over one at a
//! time; what it does around them (recording, /proc probes, a report at
//! the end) is its own. Outputs never decide what happened: they see the
//! analyzer read-only, to name what they render.

pub mod replay;

use std::io;

use crate::{
    analysis::{Analyzer, Finding, Notice, Verdict},
    recording::Meta,
    trace::{
        event::Event, follow::Follow, host_facts::SeedProcess, pidns::PidNamespaces, stack::Stack,
        totals::Totals,
    },
};

/// An output fed as the trace goes: each admitted event, then each
/// lifecycle's verdict as the analyzer reaches it.
pub trait Visitor {
    fn start(&mut self, _meta: &Meta) -> io::Result<()> {
        Ok(())
    }
    /// An admitted event, once the analyzer has taken it.
    fn event(&mut self, _event: &Event, _analysis: &Analyzer) -> io::Result<()> {
        Ok(())
    }
    /// A process's exit, once per process (the analysis counted it).
    fn exit(&mut self, _event: &Event, _analysis: &Analyzer) -> io::Result<()> {
        Ok(())
    }
    /// A user stack of thread `tid`, for its next fork or SIGCHLD action
    /// change (`owner`, a `reaper_trace_common::stack_owner`).
    fn stack(&mut self, _tid: u32, _owner: u32, _stack: &Stack) -> io::Result<()> {
        Ok(())
    }
    /// The path of a cgroup id, before the first event in it.
    fn cgroup(&mut self, _id: u64, _path: &str) -> io::Result<()> {
        Ok(())
    }
    fn verdict(&mut self, _verdict: &Verdict, _analysis: &Analyzer) -> io::Result<()> {
        Ok(())
    }
    /// Every record of the trace as a recording holds it: the kernel's, and
    /// those the source adds (cgroup names, /proc probes, stacks, losses).
    /// A recorder handles its own failures: the trace goes on without it.
    fn record(&mut self, _record: &[u8]) {}
    /// Whether [`Visitor::record`] is wanted: records made only for a
    /// recording are not made without one.
    fn keeps_records(&self) -> bool {
        false
    }
    /// What the analysis noticed (an overdue exit, a finding resolved), as
    /// it is noticed.
    fn notice(&mut self, _notice: &Notice) -> io::Result<()> {
        Ok(())
    }
    /// Whether notices should come with their frames named. Naming costs
    /// a first look into each binary's DWARF, so only outputs that show
    /// frames ask for it.
    fn names_frames(&self) -> bool {
        false
    }
    /// Now and then, while tracing live: the time, the analysis, the
    /// tracer's own counts; and what the analysis and the other outputs
    /// may forget (a daemon's memory bound).
    fn tick(
        &mut self,
        _now_ns: u64,
        _analysis: &Analyzer,
        _totals: &Totals,
        _forget: &mut Forget,
    ) -> io::Result<()> {
        Ok(())
    }
    /// Cgroups that are gone for good: their state goes.
    fn forget_cgroups(&mut self, _ids: &[u64]) {}
    /// The end of a burst of work (a ring-buffer drain, a tick): what is
    /// buffered goes out, in the order the outputs come.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the outputs ask the analysis to forget at a tick.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forget {
    /// Findings and rows kept for a final report: a daemon makes none.
    pub history: bool,
    /// Cgroups gone long enough: their names, and every output's state.
    pub cgroups: Vec<u64>,
}

/// No output: the analysis alone (a report).
pub struct NoOutput;
impl Visitor for NoOutput {}

/// Several outputs, fed in order.
impl<const N: usize> Visitor for [&mut dyn Visitor; N] {
    fn start(&mut self, meta: &Meta) -> io::Result<()> {
        self.iter_mut().try_for_each(|v| v.start(meta))
    }
    fn event(&mut self, event: &Event, analysis: &Analyzer) -> io::Result<()> {
        self.iter_mut().try_for_each(|v| v.event(event, analysis))
    }
    fn exit(&mut self, event: &Event, analysis: &Analyzer) -> io::Result<()> {
        self.iter_mut().try_for_each(|v| v.exit(event, analysis))
    }
    fn stack(&mut self, tid: u32, owner: u32, stack: &Stack) -> io::Result<()> {
        self.iter_mut().try_for_each(|v| v.stack(tid, owner, stack))
    }
    fn cgroup(&mut self, id: u64, path: &str) -> io::Result<()> {
        self.iter_mut().try_for_each(|v| v.cgroup(id, path))
    }
    fn verdict(&mut self, verdict: &Verdict, analysis: &Analyzer) -> io::Result<()> {
        self.iter_mut()
            .try_for_each(|v| v.verdict(verdict, analysis))
    }
    fn record(&mut self, record: &[u8]) {
        self.iter_mut().for_each(|v| v.record(record))
    }
    fn keeps_records(&self) -> bool {
        self.iter().any(|v| v.keeps_records())
    }
    fn notice(&mut self, notice: &Notice) -> io::Result<()> {
        self.iter_mut().try_for_each(|v| v.notice(notice))
    }
    fn names_frames(&self) -> bool {
        self.iter().any(|v| v.names_frames())
    }
    fn tick(
        &mut self,
        now_ns: u64,
        analysis: &Analyzer,
        totals: &Totals,
        forget: &mut Forget,
    ) -> io::Result<()> {
        self.iter_mut()
            .try_for_each(|v| v.tick(now_ns, analysis, totals, forget))
    }
    fn forget_cgroups(&mut self, ids: &[u64]) {
        self.iter_mut().for_each(|v| v.forget_cgroups(ids))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.iter_mut().try_for_each(|v| v.flush())
    }
}

/// Records → pid-namespace stage → follow → analyzer → outputs.
pub struct Pipeline {
    analyzer: Analyzer,
    /// Turns namespace-relative pids into global ones before anything else
    /// sees the events.
    pidns: PidNamespaces,
    /// `--pid`/`--comm` applied here (a recording of everything); `None`
    /// when everything read is admitted (live filters in the kernel).
    follow: Option<Follow>,
}

impl Pipeline {
    pub fn new(analyzer: Analyzer) -> Pipeline {
        Pipeline {
            analyzer,
            pidns: PidNamespaces::default(),
            follow: None,
        }
    }

    /// Admits only the processes `follow` follows.
    pub fn following(mut self, follow: Follow) -> Pipeline {
        self.follow = Some(follow);
        self
    }

    /// Processes that exist as the trace starts, at `start_ns`.
    pub fn seed(&mut self, seeds: &[SeedProcess], start_ns: u64) {
        self.analyzer.seed(seeds, start_ns);
        self.pidns.seed(seeds);
    }

    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// For what the analysis hears beside events (probes, losses, names).
    pub fn analyzer_mut(&mut self) -> &mut Analyzer {
        &mut self.analyzer
    }

    pub fn into_analyzer(self) -> Analyzer {
        self.analyzer
    }

    /// One decoded event: its pids made global, then, if followed, to the
    /// analyzer and the outputs. Returns the event as the outputs saw it,
    /// or `None` when it was not admitted.
    pub fn event(
        &mut self,
        mut event: Event,
        outputs: &mut dyn Visitor,
    ) -> io::Result<Option<Event>> {
        self.pidns.apply(&mut event);
        if !self.follow.as_mut().is_none_or(|f| f.admit(&event)) {
            return Ok(None);
        }
        let exits_before = self.analyzer.exits();
        self.analyzer.on_event(&event);
        outputs.event(&event, &self.analyzer)?;
        if self.analyzer.exits() > exits_before {
            outputs.exit(&event, &self.analyzer)?;
        }
        self.verdicts(outputs)?;
        Ok(Some(event))
    }

    /// Cgroup `id` is at `path`: for the outputs and the analysis.
    pub fn cgroup(&mut self, id: u64, path: &str, outputs: &mut dyn Visitor) -> io::Result<()> {
        outputs.cgroup(id, path)?;
        self.analyzer.name_cgroup(id, path);
        Ok(())
    }

    /// A user stack of process `tgid`: whose thread (`tid`), for what
    /// (`owner`), and its frames, made only if the process is followed.
    pub fn stack(
        &mut self,
        tgid: u32,
        stack: impl FnOnce() -> (u32, u32, Stack),
        outputs: &mut dyn Visitor,
    ) -> io::Result<()> {
        if self.follow.as_ref().is_none_or(|f| f.is_followed(tgid)) {
            let (tid, owner, stack) = stack();
            outputs.stack(tid, owner, &stack)?;
            self.analyzer.attach_stack(tid, owner, stack);
        }
        Ok(())
    }

    /// Exited `tgid` is no zombie (any more) at `time_ns`: its reap was
    /// missed, and its lifecycle ends.
    pub fn gone(&mut self, tgid: u32, time_ns: u64, outputs: &mut dyn Visitor) -> io::Result<()> {
        self.analyzer.gone(tgid, time_ns);
        self.verdicts(outputs)
    }

    /// What the analysis noticed since the last call, to the outputs;
    /// `name` names a finding's frames when an output shows them.
    pub fn notices(
        &mut self,
        outputs: &mut dyn Visitor,
        mut name: impl FnMut(&mut Finding),
    ) -> io::Result<()> {
        let names = outputs.names_frames();
        for mut notice in self.analyzer.drain_notices() {
            if names && let Notice::Finding(finding) | Notice::Pending(finding) = &mut notice {
                name(finding);
            }
            outputs.notice(&notice)?;
        }
        Ok(())
    }

    /// A tick of a live trace, at `now_ns`: the outputs' periodic work, and
    /// what they ask the analysis and each other to forget. Returns the
    /// cgroups forgotten, for the source's own names.
    pub fn tick(
        &mut self,
        now_ns: u64,
        totals: &Totals,
        outputs: &mut dyn Visitor,
    ) -> io::Result<Vec<u64>> {
        let mut forget = Forget::default();
        outputs.tick(now_ns, &self.analyzer, totals, &mut forget)?;
        if !forget.cgroups.is_empty() {
            outputs.forget_cgroups(&forget.cgroups);
        }
        if forget.history || !forget.cgroups.is_empty() {
            self.analyzer.forget_history(&forget.cgroups);
        }
        Ok(forget.cgroups)
    }

    /// The verdicts reached since the last call, to the outputs.
    fn verdicts(&mut self, outputs: &mut dyn Visitor) -> io::Result<()> {
        for verdict in self.analyzer.drain_verdicts() {
            outputs.verdict(&verdict, &self.analyzer)?;
        }
        Ok(())
    }
}

/// An output that a run may or may not have: nothing when absent.
impl<V: Visitor> Visitor for Option<V> {
    fn start(&mut self, meta: &Meta) -> io::Result<()> {
        self.as_mut().map_or(Ok(()), |v| v.start(meta))
    }
    fn event(&mut self, event: &Event, analysis: &Analyzer) -> io::Result<()> {
        self.as_mut().map_or(Ok(()), |v| v.event(event, analysis))
    }
    fn exit(&mut self, event: &Event, analysis: &Analyzer) -> io::Result<()> {
        self.as_mut().map_or(Ok(()), |v| v.exit(event, analysis))
    }
    fn stack(&mut self, tid: u32, owner: u32, stack: &Stack) -> io::Result<()> {
        self.as_mut().map_or(Ok(()), |v| v.stack(tid, owner, stack))
    }
    fn cgroup(&mut self, id: u64, path: &str) -> io::Result<()> {
        self.as_mut().map_or(Ok(()), |v| v.cgroup(id, path))
    }
    fn verdict(&mut self, verdict: &Verdict, analysis: &Analyzer) -> io::Result<()> {
        self.as_mut()
            .map_or(Ok(()), |v| v.verdict(verdict, analysis))
    }
    fn record(&mut self, record: &[u8]) {
        if let Some(v) = self {
            v.record(record)
        }
    }
    fn keeps_records(&self) -> bool {
        self.as_ref().is_some_and(|v| v.keeps_records())
    }
    fn notice(&mut self, notice: &Notice) -> io::Result<()> {
        self.as_mut().map_or(Ok(()), |v| v.notice(notice))
    }
    fn names_frames(&self) -> bool {
        self.as_ref().is_some_and(|v| v.names_frames())
    }
    fn tick(
        &mut self,
        now_ns: u64,
        analysis: &Analyzer,
        totals: &Totals,
        forget: &mut Forget,
    ) -> io::Result<()> {
        self.as_mut()
            .map_or(Ok(()), |v| v.tick(now_ns, analysis, totals, forget))
    }
    fn forget_cgroups(&mut self, ids: &[u64]) {
        if let Some(v) = self {
            v.forget_cgroups(ids)
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.as_mut().map_or(Ok(()), |v| v.flush())
    }
}
