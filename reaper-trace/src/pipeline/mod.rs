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
    analysis::{Analyzer, Verdict},
    recording::Meta,
    trace::{
        event::Event, follow::Follow, host_facts::SeedProcess, pidns::PidNamespaces, stack::Stack,
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
}

/// No output: the analysis alone (a report).
pub struct NoOutput;
impl Visitor for NoOutput {}

/// Several outputs, fed in order.
impl Visitor for [&mut dyn Visitor] {
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

    /// The verdicts reached since the last call, to the outputs.
    fn verdicts(&mut self, outputs: &mut dyn Visitor) -> io::Result<()> {
        for verdict in self.analyzer.drain_verdicts() {
            outputs.verdict(&verdict, &self.analyzer)?;
        }
        Ok(())
    }
}
