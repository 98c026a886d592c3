//! Where each ring-buffer record goes: the recording (as the kernel wrote
//! it), the analyzer, and stdout; and, once a tick, what the kernel and
//! /proc say beside the records (losses, the parents worth probing).

use std::{
    collections::{HashSet, VecDeque},
    io::{BufWriter, Write},
};

use super::Display;
use crate::{
    analysis::Analyzer,
    host::procfs,
    kernel::Tracer,
    output::{events, report},
    recording::{file::Recorder, user_record},
    trace::{
        clock::{self, ClockRef},
        decode::decode,
        event::{Event, EventData},
        pidns::PidNamespaces,
        starts::Starts,
        totals::Totals,
    },
};

/// How long after a followed process's last free its tgid stays in the
/// kernel's follow map (RCU grace periods take ~10-20 ms here).
const UNFOLLOW_DELAY_NS: u64 = 1_000_000_000;

pub struct Sink {
    pub json: bool,
    pub display: Display,
    pub analyzer: Analyzer,
    pub recorder: Option<Recorder>,
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
    lost: u64,
    pub captured: Option<Vec<Event>>,
    /// Turns namespace-relative pids into global ones before anything else
    /// sees the events.
    pub pidns: PidNamespaces,
    /// Reused for every rendered line.
    line: String,
}

impl Sink {
    pub fn new(
        json: bool,
        display: Display,
        analyzer: Analyzer,
        recorder: Option<Recorder>,
        clock: ClockRef,
        capture: bool,
    ) -> Sink {
        Sink {
            json,
            display,
            analyzer,
            recorder,
            clock,
            out: BufWriter::new(std::io::stdout()),
            totals: Totals::default(),
            unfreed: HashSet::new(),
            to_unfollow: VecDeque::new(),
            starts: Starts::default(),
            lost: 0,
            captured: capture.then(Vec::new),
            pidns: PidNamespaces::default(),
            line: String::with_capacity(256),
        }
    }

    fn record(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if let Some(recorder) = &mut self.recorder {
            recorder.push(bytes)?;
        }
        match decode(bytes) {
            Ok(mut event) => {
                self.pidns.apply(&mut event);
                self.event(&event)
            }
            Err(_) => self.totals.undecodable += 1,
        }
        Ok(())
    }

    fn event(&mut self, event: &Event) {
        self.totals.count(event.data.kind_name());
        match &event.data {
            EventData::Exit(x) if x.group_dead => {
                self.unfreed.insert(event.tgid);
            }
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
        self.analyzer.on_event(event);
        if let Some(captured) = &mut self.captured {
            captured.push(event.clone());
        }
        if self.display == Display::Everything {
            self.line.clear();
            if self.json {
                self.line.push_str(&events::json_line(event));
            } else {
                events::write_text_line(&mut self.line, event, &self.clock);
            }
            self.line.push('\n');
            let _ = self.out.write_all(self.line.as_bytes());
        }
    }

    /// Prints what the analyzer noticed since last time.
    fn notices(&mut self) {
        for notice in self.analyzer.drain_notices() {
            if matches!(self.display, Display::ReportOnly | Display::Silent) {
                continue;
            }
            let line = if self.json {
                report::notice_json(&notice)
            } else {
                report::notice_text(&notice)
            };
            let _ = writeln!(self.out, "{line}");
        }
    }

    /// Reads every record the ring buffer holds, then flushes.
    pub fn drain(&mut self, tracer: &mut Tracer) -> anyhow::Result<()> {
        while let Some(item) = tracer.events.next() {
            self.record(&item)?;
        }
        self.notices();
        let _ = self.out.flush();
        Ok(())
    }

    /// Once a tick: unfollowing, losses, /proc probes of the parents of
    /// overdue exits, announcing them, and the recording's flush. What /proc
    /// said is recorded, so that `report` reaches the same findings.
    pub fn tick(&mut self, tracer: &mut Tracer) -> anyhow::Result<()> {
        let now = clock::monotonic_ns();
        while let Some(&(tgid, due)) = self.to_unfollow.front()
            && due <= now
        {
            tracer.unfollow(tgid);
            self.to_unfollow.pop_front();
        }
        let lost: u64 = tracer.lost().iter().sum();
        if lost != self.lost {
            eprintln!(
                "reaper-trace: warning: {lost} events lost so far (ring buffer full); raise --ringbuf-size"
            );
            self.lost = lost;
            self.analyzer.set_lost(lost);
            if let Some(recorder) = &mut self.recorder {
                recorder.push(&user_record::lost(now, lost))?;
            }
        }
        for parent in self.analyzer.due_probes(now) {
            let Some(probe) = procfs::probe_parent(parent) else {
                continue;
            };
            if let Some(recorder) = &mut self.recorder {
                recorder.push(&user_record::probe(now, parent, &probe))?;
            }
            self.analyzer.attach_probe(parent, probe);
        }
        self.analyzer.announce_overdue(now);
        self.notices();
        if let Some(recorder) = &mut self.recorder {
            recorder.tick()?;
        }
        Ok(())
    }
}
