//! The live source: each ring-buffer record into the pipeline, with what
//! the source adds beside it (cgroup and sender names, unwound stacks, the
//! kernel's loss counters, /proc probes), in the order a recording keeps
//! them; and the bookkeeping of which processes the kernel still follows.

use std::collections::{HashSet, VecDeque};

use super::{outputs::LiveOutputs, stacks::LiveStacks};
use crate::{
    cgroup::fs::CgroupResolver,
    host::{procfs, thread_stacks},
    kernel::{SenderNames, Tracer},
    pipeline::{Pipeline, Visitor},
    recording::user_record,
    trace::{
        clock,
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

/// Ring-buffer records → the pipeline and its outputs.
pub struct RingSource {
    pub pipeline: Pipeline,
    pub outputs: LiveOutputs,
    /// Cgroup ids to paths, read from the cgroup filesystem.
    pub cgroups: CgroupResolver,
    /// Unwinds the user stacks the kernel copies, and names their frames.
    pub stacks: LiveStacks,
    /// What the tracer saw: events per kind, losses.
    pub totals: Totals,
    /// Processes that exited and have not been freed yet.
    pub unfreed: HashSet<u32>,
    /// Followed processes that are gone, with when to stop following them.
    /// Not at once: RCU may run a thread's free after its leader's.
    to_unfollow: VecDeque<(u32, u64)>,
    /// So that a free arriving after the pid was reused is matched to its
    /// own process.
    starts: Starts,
}

impl RingSource {
    pub fn new(pipeline: Pipeline, outputs: LiveOutputs, cgroups: CgroupResolver) -> RingSource {
        RingSource {
            pipeline,
            outputs,
            cgroups,
            stacks: LiveStacks::default(),
            totals: Totals::default(),
            unfreed: HashSet::new(),
            to_unfollow: VecDeque::new(),
            starts: Starts::default(),
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

    /// Names the event's cgroup the first time it is seen: for the
    /// analysis and the outputs, and in the recording so that `report`
    /// names it too.
    fn name_cgroup(&mut self, event: &Event) -> anyhow::Result<()> {
        let id = event.cgroup_id;
        if id == 0 || self.pipeline.analyzer().knows_cgroup(id) {
            return Ok(());
        }
        let Some(path) = self.cgroups.resolve(id) else {
            return Ok(());
        };
        let path = path.to_owned();
        let outputs = &mut self.outputs.all();
        outputs.record(&user_record::cgroup(event.time_ns, id, &path));
        self.pipeline.cgroup(id, &path, outputs)?;
        Ok(())
    }

    /// Names the sender of a signal that the trace never saw start, from
    /// what the kernel kept (the record has no room for it, and the sender
    /// is often gone before /proc can be read): for the analysis, and in
    /// the recording, just before the signal, so that `report` names it too.
    fn name_sender(&mut self, event: &Event, senders: &mut SenderNames) {
        let EventData::SignalGenerate(_) = &event.data else {
            return;
        };
        let Some(comm) = senders.take(event.tgid, event.time_ns) else {
            return;
        };
        let comm = Comm(comm);
        self.outputs
            .all()
            .record(&user_record::sender(event.time_ns, event.tgid, &comm));
        self.pipeline
            .analyzer_mut()
            .name_sender(event.tgid, event.time_ns, comm);
    }

    /// One ring-buffer record.
    fn record(&mut self, bytes: &[u8], senders: &mut SenderNames) -> anyhow::Result<()> {
        // A stack copy is unwound now, while its process is alive; the
        // recording gets the frames, not the 16 KiB copy.
        if let Some(raw) = user_stack(bytes) {
            self.totals.count("ustack");
            let outputs = &mut self.outputs.all();
            match self.stacks.unwind(&raw, outputs) {
                Some(unwound) => self.pipeline.stack(raw.header.tgid, || unwound, outputs)?,
                None => self.totals.stacks_not_unwound += 1,
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
            self.name_sender(event, senders);
        }
        let outputs = &mut self.outputs.all();
        outputs.record(bytes);
        match decoded {
            Ok(event) => {
                if let Some(event) = self.pipeline.event(event, outputs)? {
                    self.follow_bookkeeping(&event);
                }
            }
            Err(_) => self.totals.undecodable += 1,
        }
        Ok(())
    }

    /// What the analyzer noticed since last time, to the outputs; frames
    /// named only for an output that shows them: the first look into a
    /// large binary's DWARF takes a while, and the final report names
    /// them anyway.
    fn notices(&mut self) -> anyhow::Result<()> {
        let stacks = &mut self.stacks;
        self.pipeline
            .notices(&mut self.outputs.all(), |finding| stacks.symbolize(finding))?;
        Ok(())
    }

    /// Reads every record the ring buffer holds, then the loss counters
    /// (so that no finding is shown as certain before the losses that
    /// could touch it are known), then shows what was found.
    pub fn drain(&mut self, tracer: &mut Tracer) -> anyhow::Result<()> {
        while let Some(item) = tracer.events.next() {
            self.record(&item, &mut tracer.senders)?;
        }
        self.read_losses(tracer);
        self.notices()?;
        self.outputs.all().flush()?;
        Ok(())
    }

    /// The kernel's loss counters, now: a growth is a loss window for the
    /// analysis, a warning, and a `LOST` record.
    fn read_losses(&mut self, tracer: &Tracer) {
        let now = clock::monotonic_ns();
        self.totals.set_lost(&tracer.lost());
        // Lost stacks leave findings without a line, not uncertain.
        let lost = self.totals.lost;
        if let Some((since, _)) = self.pipeline.analyzer_mut().losses_read(lost, now) {
            eprintln!(
                "reaper-trace: warning: {lost} events lost so far (ring buffer full); findings around them are marked uncertain; raise --ringbuf-size"
            );
            self.outputs
                .all()
                .record(&user_record::lost(now, lost, since));
        }
    }

    /// Once a tick: unfollowing, /proc probes of the parents of overdue
    /// exits, announcing them, and the outputs' periodic work. What /proc
    /// said is recorded, so that `report` reaches the same findings.
    pub fn tick(&mut self, tracer: &mut Tracer) -> anyhow::Result<()> {
        let now = clock::monotonic_ns();
        while let Some(&(tgid, due)) = self.to_unfollow.front()
            && due <= now
        {
            tracer.unfollow(tgid);
            self.to_unfollow.pop_front();
        }
        // The first parents' threads are unwound (a tick on a machine with
        // many zombies already there probes every parent at once).
        let due = self.pipeline.analyzer_mut().due_probes(now);
        for (i, parent) in due.into_iter().enumerate() {
            let Some(mut probe) = procfs::probe_parent(parent) else {
                continue;
            };
            let outputs = &mut self.outputs.all();
            if i < thread_stacks::MAX_UNWOUND_PARENTS {
                self.stacks.unwind_threads(parent, now, &mut probe, outputs);
            }
            outputs.record(&user_record::probe(now, parent, &probe));
            self.pipeline.analyzer_mut().attach_probe(parent, probe);
        }
        for pid in self.pipeline.analyzer_mut().due_zombie_checks(now) {
            self.look_in_proc(pid, now)?;
        }
        self.pipeline.analyzer_mut().announce_overdue(now);
        self.notices()?;
        let outputs = &mut self.outputs.all();
        let forgotten = self.pipeline.tick(now, &self.totals, outputs)?;
        self.cgroups.forget(&forgotten);
        outputs.flush()?;
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
        let outputs = &mut self.outputs.all();
        if outputs.keeps_records() {
            let record = if zombie {
                user_record::zombie(now, pid)
            } else {
                user_record::gone(now, pid)
            };
            outputs.record(&record);
        }
        if zombie {
            self.pipeline.analyzer_mut().zombie_seen(pid, now);
        } else {
            self.pipeline.gone(pid, now, outputs)?;
        }
        Ok(())
    }
}
