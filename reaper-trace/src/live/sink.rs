//! Where each ring-buffer record goes: the recording (as the kernel wrote
//! it), the analyzer, and stdout; and, once a tick, what the kernel and
//! /proc say beside the records (losses, the parents worth probing).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io::{BufWriter, Write},
};

use super::{Display, recording::Recording, stacks::LiveStacks};
use crate::{
    analysis::{Analyzer, Notice, Verdict},
    cgroup::fs::CgroupResolver,
    host::procfs,
    kernel::{SenderNames, Tracer},
    output::{events, metrics::Metrics, report},
    pipeline::{Pipeline, Visitor},
    recording::user_record,
    trace::{
        clock::{self, ClockRef},
        comm::Comm,
        decode::{decode, user_stack},
        event::{Event, EventData},
        starts::Starts,
        totals::Totals,
    },
};

/// How long after a followed process's last free its tgid stays in the
/// kernel's follow map (RCU grace periods take ~10-20 ms here).
const UNFOLLOW_DELAY_NS: u64 = 1_000_000_000;

/// How often the metrics' cgroups are checked: their pids controller read,
/// and the ones that are gone noticed.
const CGROUP_POLL_NS: u64 = 5_000_000_000;

/// How long a gone cgroup's series stay exported by default: long enough
/// for the last scrapes to see their final values.
pub const GONE_CGROUP_RETENTION_NS: u64 = 300_000_000_000;

/// What live does with each admitted event and verdict besides the
/// analysis: its counts and follow bookkeeping, the capture for
/// `verify-kernel`, the event printer, and the metrics.
pub struct LiveOutputs {
    pub json: bool,
    pub display: Display,
    pub clock: ClockRef,
    pub out: BufWriter<std::io::Stdout>,
    pub totals: Totals,
    /// Processes that exited and have not been freed yet.
    pub unfreed: HashSet<u32>,
    /// Followed processes that are gone, with when to stop following them.
    /// Not at once: RCU may run a thread's free after its leader's.
    to_unfollow: VecDeque<(u32, u64)>,
    /// So that a free arriving after the pid was reused is matched to its
    /// own process.
    starts: Starts,
    pub captured: Option<Vec<Event>>,
    /// Reused for every rendered line.
    line: String,
    /// Fed as the trace goes, when asked for (`serve`, `--metrics-file`).
    pub metrics: Option<Metrics>,
    /// Unwinds the user stacks the kernel copies, and names their frames.
    pub stacks: LiveStacks,
}

impl LiveOutputs {
    pub fn new(
        json: bool,
        display: Display,
        clock: ClockRef,
        capture: bool,
        metrics: Option<Metrics>,
    ) -> LiveOutputs {
        LiveOutputs {
            json,
            display,
            clock,
            out: BufWriter::new(std::io::stdout()),
            totals: Totals::default(),
            unfreed: HashSet::new(),
            to_unfollow: VecDeque::new(),
            starts: Starts::default(),
            captured: capture.then(Vec::new),
            line: String::with_capacity(256),
            metrics,
            stacks: LiveStacks::default(),
        }
    }

    /// Which processes are gone and when to unfollow them; a process's
    /// stack unwinding state goes with its image.
    fn follow_bookkeeping(&mut self, event: &Event) {
        self.totals.count(event.data.kind_name());
        match &event.data {
            EventData::Exit(x) if x.group_dead => {
                self.unfreed.insert(event.tgid);
                self.stacks.forget(event.tgid);
            }
            EventData::Exec(_) => self.stacks.forget(event.tgid),
            // Only the free of the pid's current process, not a late one.
            EventData::Free(f)
                if event.tid == event.tgid && self.starts.freed(event.tgid, f.process_start_ns) =>
            {
                self.unfreed.remove(&event.tgid);
                self.to_unfollow
                    .push_back((event.tgid, event.time_ns + UNFOLLOW_DELAY_NS));
            }
            EventData::Fork(f) if !f.is_thread => {
                self.starts.forked(f.child_tgid, f.child_start_ns);
                // The pid was reused by a new followed process: keep it.
                self.to_unfollow.retain(|(tgid, _)| *tgid != f.child_tgid);
            }
            _ => {}
        }
    }

    /// The event as a line on stdout, when every event is shown.
    fn print(&mut self, event: &Event, analysis: &Analyzer) {
        if self.display != Display::Everything {
            return;
        }
        self.line.clear();
        let cgroup = analysis.cgroup_name(event.cgroup_id);
        if self.json {
            self.line.push_str(&events::json_line(event, cgroup));
        } else {
            events::write_text_line(&mut self.line, event, &self.clock, cgroup);
        }
        self.line.push('\n');
        let _ = self.out.write_all(self.line.as_bytes());
    }
}

impl Visitor for LiveOutputs {
    fn event(&mut self, event: &Event, analysis: &Analyzer) -> std::io::Result<()> {
        self.follow_bookkeeping(event);
        if let Some(captured) = &mut self.captured {
            captured.push(event.clone());
        }
        self.print(event, analysis);
        Ok(())
    }

    fn exit(&mut self, event: &Event, analysis: &Analyzer) -> std::io::Result<()> {
        if let Some(metrics) = &mut self.metrics {
            metrics.exit(event.cgroup_id, || analysis.cgroup(event.cgroup_id));
        }
        Ok(())
    }

    /// A lifecycle's end: the metrics' reap-latency histogram.
    fn verdict(&mut self, verdict: &Verdict, analysis: &Analyzer) -> std::io::Result<()> {
        if let Some(metrics) = &mut self.metrics {
            metrics.verdict(verdict, || analysis.cgroup(verdict.cgroup_id));
        }
        Ok(())
    }
}

/// `serve`'s memory bound: the cgroups gone long enough are forgotten, with
/// their series, and nothing is kept for a final report.
pub struct CgroupExpiry {
    /// How long a gone cgroup keeps its series and name.
    pub retention_ns: u64,
    /// Cgroups found gone, with when.
    gone_since: HashMap<u64, u64>,
}

impl CgroupExpiry {
    pub fn new(retention_ns: u64) -> CgroupExpiry {
        CgroupExpiry {
            retention_ns,
            gone_since: HashMap::new(),
        }
    }
}

/// The live source: ring-buffer records into the recording (as the kernel
/// wrote them) and the pipeline; once a tick, what the kernel and /proc say
/// beside the records.
pub struct Sink {
    pub pipeline: Pipeline,
    pub outputs: LiveOutputs,
    pub recorder: Recording,
    /// Cgroup ids to paths, read from the cgroup filesystem.
    pub cgroups: CgroupResolver,
    /// `serve`: findings count as they resolve, and gone cgroups expire.
    pub expiry: Option<CgroupExpiry>,
    /// When the metrics' cgroups were last checked.
    pub cgroups_polled_ns: u64,
}

impl Sink {
    pub fn new(pipeline: Pipeline, outputs: LiveOutputs, recorder: Recording) -> Sink {
        Sink {
            pipeline,
            outputs,
            recorder,
            cgroups: CgroupResolver::default(),
            expiry: None,
            cgroups_polled_ns: 0,
        }
    }

    /// Names the event's cgroup the first time it is seen: for the
    /// analysis, and in the recording so that `report` names it too.
    fn name_cgroup(&mut self, event: &Event) -> anyhow::Result<()> {
        let id = event.cgroup_id;
        if id == 0 || self.pipeline.analyzer().knows_cgroup(id) {
            return Ok(());
        }
        let Some(path) = self.cgroups.resolve(id) else {
            return Ok(());
        };
        let path = path.to_owned();
        self.recorder
            .push(&user_record::cgroup(event.time_ns, id, &path));
        self.pipeline.cgroup(id, &path, &mut self.outputs)?;
        Ok(())
    }

    /// Names the sender of a signal that the trace never saw start, from
    /// what the kernel kept (the record has no room for it, and the sender
    /// is often gone before /proc can be read): for the analysis, and in
    /// the recording, just before the signal, so that `report` names it too.
    fn name_sender(&mut self, event: &Event, senders: &mut SenderNames) -> anyhow::Result<()> {
        let EventData::SignalGenerate(_) = &event.data else {
            return Ok(());
        };
        let Some(comm) = senders.take(event.tgid, event.time_ns) else {
            return Ok(());
        };
        let comm = Comm(comm);
        self.recorder
            .push(&user_record::sender(event.time_ns, event.tgid, &comm));
        self.pipeline
            .analyzer_mut()
            .name_sender(event.tgid, event.time_ns, comm);
        Ok(())
    }

    fn record(&mut self, bytes: &[u8], senders: &mut SenderNames) -> anyhow::Result<()> {
        // A stack copy is unwound now, while its process is alive; the
        // recording gets the frames, not the 16 KiB copy.
        if let Some(raw) = user_stack(bytes) {
            self.outputs.totals.count("ustack");
            match self.outputs.stacks.unwind(&raw, &mut self.recorder) {
                Some(unwound) => {
                    self.pipeline
                        .stack(raw.header.tgid, || unwound, &mut self.outputs)?
                }
                None => self.outputs.totals.stacks_not_unwound += 1,
            }
            return Ok(());
        }
        let mut decoded = decode(bytes);
        if let Ok(event) = &mut decoded {
            if !self.cgroups.fs().has_v2() {
                // Without a v2 hierarchy every task reports the root's id:
                // it names nothing.
                event.cgroup_id = 0;
            }
            // The cgroup's name goes into the recording before the record
            // from it, so that replay names it as this run does.
            self.name_cgroup(event)?;
            self.name_sender(event, senders)?;
        }
        self.recorder.push(bytes);
        match decoded {
            Ok(event) => {
                self.pipeline.event(event, &mut self.outputs)?;
            }
            Err(_) => self.outputs.totals.undecodable += 1,
        }
        Ok(())
    }

    /// Prints what the analyzer noticed since last time.
    fn notices(&mut self) {
        let outputs = &mut self.outputs;
        for mut notice in self.pipeline.analyzer_mut().drain_notices() {
            if self.expiry.is_some()
                && let (Notice::Finding(finding), Some(metrics)) = (&notice, &mut outputs.metrics)
            {
                metrics.finding(finding);
            }
            if matches!(outputs.display, Display::ReportOnly | Display::Silent) {
                continue;
            }
            // Named only when shown: the first look into a large binary's
            // DWARF takes a while, and the final report names them anyway.
            if let Notice::Finding(finding) | Notice::Pending(finding) = &mut notice {
                outputs.stacks.symbolize(finding);
            }
            let line = if outputs.json {
                report::notice_json(&notice)
            } else {
                report::notice_text(&notice)
            };
            let _ = writeln!(outputs.out, "{line}");
        }
    }

    /// Reads every record the ring buffer holds, then the loss counters
    /// (so that no finding is shown as certain before the losses that
    /// could touch it are known), then shows what was found and flushes.
    pub fn drain(&mut self, tracer: &mut Tracer) -> anyhow::Result<()> {
        while let Some(item) = tracer.events.next() {
            self.record(&item, &mut tracer.senders)?;
        }
        self.read_losses(tracer)?;
        self.notices();
        let _ = self.outputs.out.flush();
        Ok(())
    }

    /// The kernel's loss counters, now: a growth is a loss window for the
    /// analysis, a warning, and a `LOST` record.
    fn read_losses(&mut self, tracer: &Tracer) -> anyhow::Result<()> {
        let now = clock::monotonic_ns();
        self.outputs.totals.set_lost(&tracer.lost());
        // Lost stacks leave findings without a line, not uncertain.
        let lost = self.outputs.totals.lost;
        if let Some((since, _)) = self.pipeline.analyzer_mut().losses_read(lost, now) {
            eprintln!(
                "reaper-trace: warning: {lost} events lost so far (ring buffer full); findings around them are marked uncertain; raise --ringbuf-size"
            );
            self.recorder.push(&user_record::lost(now, lost, since));
        }
        Ok(())
    }

    /// Once a tick: unfollowing, losses, /proc probes of the parents of
    /// overdue exits, announcing them, and the recording's flush. What /proc
    /// said is recorded, so that `report` reaches the same findings.
    pub fn tick(&mut self, tracer: &mut Tracer) -> anyhow::Result<()> {
        let now = clock::monotonic_ns();
        let to_unfollow = &mut self.outputs.to_unfollow;
        while let Some(&(tgid, due)) = to_unfollow.front()
            && due <= now
        {
            tracer.unfollow(tgid);
            to_unfollow.pop_front();
        }
        for parent in self.pipeline.analyzer_mut().due_probes(now) {
            let Some(probe) = procfs::probe_parent(parent) else {
                continue;
            };
            self.recorder.push(&user_record::probe(now, parent, &probe));
            self.pipeline.analyzer_mut().attach_probe(parent, probe);
        }
        for pid in self.pipeline.analyzer_mut().due_zombie_checks(now) {
            self.look_in_proc(pid, now)?;
        }
        self.pipeline.analyzer_mut().announce_overdue(now);
        self.notices();
        self.update_metrics(now);
        if self.expiry.is_some() {
            // Nothing is kept for a final report.
            self.pipeline.analyzer_mut().forget_history(&[]);
        }
        self.recorder.tick();
        Ok(())
    }

    /// As the trace ends: the exits whose reap was not seen that /proc
    /// says are zombies no more. The kernel frees a task from an RCU
    /// callback, which on a busy machine can come many seconds after the
    /// reap, so a missing free does not make a zombie. Recorded, so that
    /// `report` closes them as this run does.
    pub fn settle_gone(&mut self, now: u64) -> anyhow::Result<()> {
        for pid in self.pipeline.analyzer().open_exits() {
            self.look_in_proc(pid, now)?;
        }
        Ok(())
    }

    /// Whether exited `pid` is still a zombie, as /proc says now: for the
    /// analysis, and in the recording (`ZOMBIE`, `GONE`) for `report`.
    fn look_in_proc(&mut self, pid: u32, now: u64) -> anyhow::Result<()> {
        let zombie = procfs::is_zombie(pid);
        if self.recorder.is_active() {
            let record = if zombie {
                user_record::zombie(now, pid)
            } else {
                user_record::gone(now, pid)
            };
            self.recorder.push(&record);
        }
        if zombie {
            self.pipeline.analyzer_mut().zombie_seen(pid, now);
        } else {
            self.pipeline.gone(pid, now, &mut self.outputs)?;
        }
        Ok(())
    }

    /// What the metrics show besides events and findings: the tracer's own
    /// counts and the zombies now; every few seconds, the cgroups' pids
    /// controllers and (`serve`) the cgroups gone long enough to forget.
    pub fn update_metrics(&mut self, now: u64) {
        let analyzer = self.pipeline.analyzer();
        if let Some(metrics) = &mut self.outputs.metrics {
            metrics.totals(&self.outputs.totals, analyzer.tracked());
            let zombies: Vec<_> = analyzer
                .overdue_by_cgroup(now)
                .into_iter()
                .map(|(id, n)| (analyzer.cgroup(id), n))
                .collect();
            metrics.set_zombies(&zombies);
        }
        if now.saturating_sub(self.cgroups_polled_ns) < CGROUP_POLL_NS {
            return;
        }
        self.cgroups_polled_ns = now;
        self.read_pids();
        if let Some(expiry) = &mut self.expiry {
            let expired = expiry.expire(now, &mut self.cgroups, self.outputs.metrics.as_mut());
            self.pipeline.analyzer_mut().forget_history(&expired);
        }
    }

    /// Each metered cgroup's pids controller.
    fn read_pids(&mut self) {
        let Some(metrics) = &mut self.outputs.metrics else {
            return;
        };
        let fs = self.cgroups.fs();
        let metered: Vec<(u64, String)> = metrics
            .cgroups()
            .map(|(id, path)| (id, path.to_owned()))
            .collect();
        for (id, path) in metered {
            if let Some(pids) = fs.pids(&path) {
                metrics.set_pids(id, pids.current, pids.max);
            }
        }
    }
}

impl CgroupExpiry {
    /// The cgroups, named or metered, that have been gone for the
    /// retention time: their series and names are dropped, so a daemon on
    /// a node whose containers come and go holds only what exists.
    fn expire(
        &mut self,
        now: u64,
        cgroups: &mut CgroupResolver,
        mut metrics: Option<&mut Metrics>,
    ) -> Vec<u64> {
        let fs = cgroups.fs();
        let mut candidates: Vec<(u64, String)> = cgroups
            .known()
            .map(|(id, path)| (id, path.to_owned()))
            .collect();
        if let Some(metrics) = &metrics {
            // A cgroup never named (gone before it could be) is gone now.
            candidates.extend(
                metrics
                    .cgroups()
                    .filter(|(id, _)| !cgroups.knows(*id))
                    .map(|(id, _)| (id, String::new())),
            );
        }
        let mut expired = Vec::new();
        for (id, path) in candidates {
            if !path.is_empty() && fs.is_alive(id, &path) {
                self.gone_since.remove(&id);
                continue;
            }
            let since = *self.gone_since.entry(id).or_insert(now);
            if now.saturating_sub(since) >= self.retention_ns {
                expired.push(id);
            }
        }
        for id in &expired {
            if let Some(metrics) = &mut metrics {
                metrics.expire(*id);
            }
            self.gone_since.remove(id);
        }
        cgroups.forget(&expired);
        expired
    }
}
