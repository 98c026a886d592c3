//! `report --format perfetto` (and `perfetto-json`): a recording as a
//! timeline that ui.perfetto.dev opens.
//!
//! One track per process: a `running` slice from fork to exit, then a
//! `ZOMBIE` slice from exit to the reap; exec, exit, SIGCHLD and the
//! parent's waits as instant events; a flow arrow from each parent to its
//! child. Where and by whom a child was reaped is the analyzer's verdict
//! (the replay feeds it here), so the ZOMBIE slice ends where the report
//! says the reap happened. The output is streamed; state is bounded by the
//! processes in flight.
//!
//! What to draw is decided once, here; a [`Sink`] writes it in one format:
//! the native Perfetto protobuf trace ([`perfetto`], the default), or
//! the Chrome trace-event JSON ([`json`], which Perfetto calls legacy
//! and imports best-effort). Both formats know only the [`model`], never
//! the drawing, so imports flow one way: this file → formats → model.

pub mod json;
pub mod model;
pub mod perfetto;

use std::{
    collections::{HashMap, HashSet},
    io::{Read, Write},
};

use reaper_trace_common::stack_owner;
use serde_json::{Value, json};

use self::{
    json::JsonSink,
    model::{Instant, Sink, Slice, Track},
    perfetto::PerfettoSink,
};
use crate::{
    analysis::{Analyzer, ReapKind, Resolution, Verdict},
    output::events::{disposition, wait_outcome},
    pipeline::{
        Visitor,
        replay::{ReplayError, ReplayOptions, replay_with},
    },
    recording::Meta,
    trace::{
        event::{Event, EventData, Fork},
        names::{sa_flags, signal_name},
        stack::{PendingStacks, Stack, Symbol},
    },
};

/// Which file the timeline is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineFormat {
    /// Perfetto's native protobuf trace.
    Perfetto,
    /// Chrome trace-event JSON.
    PerfettoJson,
}

/// How the timeline names the frames of a stack (a fork's, a SIGCHLD
/// sigaction's) the recording holds: innermost frame first.
pub type StackLookup<'a> = &'a mut dyn FnMut(&Stack) -> Vec<Symbol>;

/// A process's track, while its lifecycle is open.
#[derive(Default)]
struct Span {
    comm: String,
    /// The process's identity with its pid (0: unknown).
    start_ns: u64,
    fork_ns: Option<u64>,
    exit_ns: Option<u64>,
    named: bool,
    /// The flow from the parent's fork, ending at the `running` slice.
    flow_in: Option<u64>,
}

struct Timeline<'a, S: Sink> {
    sink: S,
    spans: HashMap<u32, Span>,
    /// The current track of each pid drawn on, until its verdict.
    tracks: HashMap<u32, u64>,
    last_uuid: u64,
    flow_id: u64,
    stacks: StackLookup<'a>,
    /// Stacks waiting for their fork or sigaction, paired as the analysis
    /// pairs them.
    pending_stacks: PendingStacks,
}

/// Writes the timeline of the recording read from `input` to `out` in
/// `format`, for the processes `options` selects. Returns where the
/// recording is truncated, if it is.
pub fn export(
    input: impl Read,
    out: impl Write,
    options: &ReplayOptions,
    format: TimelineFormat,
) -> Result<Option<u64>, ReplayError> {
    export_with_stacks(input, out, options, format, &mut |_| Vec::new())
}

/// [`export`], with the fork and sigaction instants carrying the stacks
/// `stacks` gives (the native format only: the JSON has no place for them).
pub fn export_with_stacks(
    input: impl Read,
    out: impl Write,
    options: &ReplayOptions,
    format: TimelineFormat,
    stacks: StackLookup,
) -> Result<Option<u64>, ReplayError> {
    match format {
        TimelineFormat::Perfetto => draw(input, PerfettoSink::new(out), options, stacks),
        // Symbolizing for a format that drops the stacks would be waste.
        TimelineFormat::PerfettoJson => {
            draw(input, JsonSink::new(out), options, &mut |_| Vec::new())
        }
    }
}

fn draw(
    input: impl Read,
    sink: impl Sink,
    options: &ReplayOptions,
    stacks: StackLookup,
) -> Result<Option<u64>, ReplayError> {
    let mut timeline = Timeline {
        sink,
        spans: HashMap::new(),
        tracks: HashMap::new(),
        last_uuid: 0,
        flow_id: 0,
        stacks,
        pending_stacks: PendingStacks::default(),
    };
    let replay = replay_with(input, options, &mut timeline)?;
    // Whatever is still open at the end: zombies (as the report says) and
    // processes still running.
    let zombies: HashSet<u32> = replay
        .report
        .findings
        .iter()
        .chain(&replay.report.uncertain)
        .filter(|f| f.resolution == Some(Resolution::Zombie))
        .map(|f| f.pid)
        .collect();
    let end = replay.end_ns;
    let mut open: Vec<_> = std::mem::take(&mut timeline.spans).into_iter().collect();
    open.sort_by_key(|(pid, _)| *pid);
    for (pid, span) in open {
        match span.exit_ns {
            Some(exit) if zombies.contains(&pid) => {
                timeline.running(pid, &span, exit)?;
                let track = timeline.track(pid)?;
                timeline.sink.slice(
                    track,
                    &Slice {
                        name: "ZOMBIE (never reaped)",
                        category: "zombie",
                        color: "terrible",
                        start_ns: exit,
                        end_ns: end,
                        args: json!({"comm": span.comm}),
                        flow_in: None,
                    },
                )?;
            }
            Some(exit) => timeline.running(pid, &span, exit)?,
            None if span.fork_ns.is_some() => timeline.running(pid, &span, end)?,
            None => {}
        }
    }
    timeline.sink.finish()?;
    Ok(replay.truncated_at)
}

impl<S: Sink> Timeline<'_, S> {
    /// The pid's current track; a new one, described without a name, if
    /// it has none.
    fn track(&mut self, pid: u32) -> std::io::Result<Track> {
        if let Some(&uuid) = self.tracks.get(&pid) {
            return Ok(Track { pid, uuid });
        }
        self.new_track(pid, None)
    }

    fn new_track(&mut self, pid: u32, name: Option<&str>) -> std::io::Result<Track> {
        self.last_uuid += 1;
        let track = Track {
            pid,
            uuid: self.last_uuid,
        };
        self.tracks.insert(pid, track.uuid);
        self.sink.describe(track, name)?;
        Ok(track)
    }

    fn running(&mut self, pid: u32, span: &Span, until: u64) -> std::io::Result<()> {
        let track = self.track(pid)?;
        self.sink.slice(
            track,
            &Slice {
                name: "running",
                category: "lifecycle",
                color: "good",
                start_ns: span.fork_ns.unwrap_or(until),
                end_ns: until,
                args: json!({"comm": span.comm}),
                flow_in: span.flow_in,
            },
        )
    }

    fn name(&mut self, pid: u32, comm: &str) -> std::io::Result<()> {
        let span = self.spans.entry(pid).or_default();
        if span.named && span.comm == comm {
            return Ok(());
        }
        span.named = true;
        span.comm = comm.to_owned();
        match self.tracks.get(&pid) {
            Some(&uuid) => self.sink.describe(Track { pid, uuid }, Some(comm)),
            None => self.new_track(pid, Some(comm)).map(drop),
        }
    }

    fn instant(&mut self, pid: u32, ts_ns: u64, name: &str, args: Value) -> std::io::Result<()> {
        let track = self.track(pid)?;
        self.sink.instant(
            track,
            &Instant {
                name,
                category: "event",
                ts_ns,
                args,
                flow_out: None,
                stack: None,
            },
        )
    }
}

impl<S: Sink> Timeline<'_, S> {
    /// A new process: a new lifecycle, on a new track, with a flow from
    /// its parent's fork.
    fn fork(&mut self, e: &Event, f: &Fork) -> std::io::Result<()> {
        let ts = e.time_ns;
        let comm = String::from_utf8_lossy(f.comm.as_bytes()).into_owned();
        self.name(e.tgid, &comm)?;
        // A new process: a new lifecycle, on a new track.
        self.spans.remove(&f.child_tgid);
        self.tracks.remove(&f.child_tgid);
        self.name(f.child_tgid, &comm)?;
        self.flow_id += 1;
        let id = self.flow_id;
        let child = self.spans.entry(f.child_tgid).or_default();
        child.fork_ns = Some(ts);
        child.start_ns = f.child_start_ns;
        child.flow_in = Some(id);
        let (parent, child) = (self.track(e.tgid)?, self.track(f.child_tgid)?);
        let stack = self.stack_of(e.tid, stack_owner::FORK, f.has_stack);
        self.sink.fork(
            parent,
            child,
            &Instant {
                name: "fork",
                category: "fork",
                ts_ns: ts,
                args: json!({"child": f.child_tgid}),
                flow_out: Some(id),
                stack: stack.as_deref(),
            },
        )?;
        Ok(())
    }

    /// The named frames of thread `tid`'s stack for this event, when the
    /// event has one (`has_stack`: paired as the analysis pairs them).
    fn stack_of(&mut self, tid: u32, owner: u32, has_stack: bool) -> Option<Vec<Symbol>> {
        let stack = self.pending_stacks.take(tid, owner, has_stack)?;
        Some((self.stacks)(&stack))
    }
}

impl<S: Sink> Visitor for Timeline<'_, S> {
    fn start(&mut self, meta: &Meta) -> std::io::Result<()> {
        self.sink.start(meta)
    }

    fn stack(&mut self, tid: u32, owner: u32, stack: &Stack) -> std::io::Result<()> {
        self.pending_stacks.insert(tid, owner, stack.clone());
        Ok(())
    }

    fn event(&mut self, e: &Event, _: &Analyzer) -> std::io::Result<()> {
        let ts = e.time_ns;
        match &e.data {
            EventData::Fork(f) if !f.is_thread => self.fork(e, f)?,
            EventData::Exec(x) => {
                self.name(e.tgid, &String::from_utf8_lossy(x.comm.as_bytes()))?;
                self.instant(
                    e.tgid,
                    ts,
                    &format!("exec {}", x.filename),
                    json!({"old_pid": x.old_pid}),
                )?;
            }
            // A process renamed after exec: its track takes the name ps shows.
            EventData::TaskRename(r) if e.tid == e.tgid => {
                self.name(e.tgid, &String::from_utf8_lossy(r.new_comm.as_bytes()))?;
            }
            EventData::Exit(x) if x.group_dead => {
                let span = self.spans.entry(e.tgid).or_default();
                span.exit_ns = Some(ts);
                if span.start_ns == 0 {
                    span.start_ns = x.process_start_ns;
                }
                let how = match (x.exit_code, x.signal) {
                    (Some(c), _) => format!("exit {c}"),
                    (_, Some(s)) => format!("killed by {}", signal_name(s)),
                    _ => "exit".into(),
                };
                self.instant(e.tgid, ts, &how, json!({"parent": x.real_parent_tgid}))?;
            }
            EventData::SignalGenerate(s) if s.sig == reaper_trace_common::SIGCHLD => {
                self.instant(
                    s.target_tgid,
                    ts,
                    &format!("SIGCHLD from {} ({:?})", s.si_pid, s.result).to_lowercase(),
                    json!({"child": s.si_pid, "result": s.result}),
                )?;
            }
            EventData::WaitExit(wx) => {
                self.instant(
                    e.tgid,
                    ts,
                    &format!(
                        "{}({}) -> {}",
                        format!("{:?}", wx.syscall).to_lowercase(),
                        wx.upid,
                        wait_outcome(wx)
                    ),
                    json!({"options": wx.options, "ret": wx.ret}),
                )?;
            }
            EventData::Sigaction(s) if s.sig == reaper_trace_common::SIGCHLD => {
                let track = self.track(e.tgid)?;
                let stack = self.stack_of(e.tid, stack_owner::SIGACTION, s.has_stack);
                self.sink.sigaction(
                    track,
                    &Instant {
                        name: &format!(
                            "{} set to {}",
                            signal_name(s.sig),
                            disposition(s.disposition, s.handler)
                        ),
                        category: "sigaction",
                        ts_ns: ts,
                        args: json!({"flags": sa_flags(s.flags)}),
                        flow_out: None,
                        stack: stack.as_deref(),
                    },
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Closes a lifecycle where the analyzer says it ended.
    fn verdict(&mut self, v: &Verdict, _: &Analyzer) -> std::io::Result<()> {
        let same_process = self
            .spans
            .get(&v.pid)
            .is_some_and(|s| s.start_ns == 0 || v.start_ns == 0 || s.start_ns == v.start_ns);
        if !same_process {
            return Ok(());
        }
        let Some(span) = self.spans.remove(&v.pid) else {
            return Ok(());
        };
        let reaped = v.reap.time_ns;
        let exit = span.exit_ns.unwrap_or(reaped);
        self.running(v.pid, &span, exit)?;
        if reaped > exit {
            let track = self.track(v.pid)?;
            self.sink.slice(
                track,
                &Slice {
                    name: "ZOMBIE",
                    category: "zombie",
                    color: "terrible",
                    start_ns: exit,
                    end_ns: reaped,
                    args: json!({"reaped_by": v.reap.by_pid, "reap_kind": v.reap.kind, "comm": span.comm}),
                    flow_in: None,
                },
            )?;
        }
        let by = match (v.reap.kind, v.reap.by_pid) {
            (ReapKind::Autoreap, _) => " (autoreap)".to_owned(),
            (_, Some(p)) => format!(" by {p}"),
            (_, None) => String::new(),
        };
        self.instant(
            v.pid,
            reaped,
            &format!("reaped{by}"),
            json!({"kind": v.reap.kind}),
        )?;
        // The process is gone: its pid's next process gets a new track.
        self.tracks.remove(&v.pid);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The drawing, through a sink that logs what it is asked to draw.

    use super::*;
    use crate::{
        analysis::reap::Reap,
        trace::{event::Disposition, test_events as ev},
    };

    #[derive(Default)]
    struct Log(Vec<String>);

    fn stack_of(stack: Option<&[Symbol]>) -> String {
        stack.map_or(String::new(), |s| {
            let names: Vec<_> = s.iter().filter_map(|s| s.function.as_deref()).collect();
            format!(" stack {}", names.join("<"))
        })
    }

    impl Sink for Log {
        fn start(&mut self, _: &Meta) -> std::io::Result<()> {
            Ok(())
        }
        fn describe(&mut self, t: Track, name: Option<&str>) -> std::io::Result<()> {
            self.0
                .push(format!("track {} pid {} {name:?}", t.uuid, t.pid));
            Ok(())
        }
        fn slice(&mut self, t: Track, s: &Slice) -> std::io::Result<()> {
            self.0.push(format!(
                "slice {} {} {}..{} in {:?}",
                t.uuid, s.name, s.start_ns, s.end_ns, s.flow_in
            ));
            Ok(())
        }
        fn instant(&mut self, t: Track, i: &Instant) -> std::io::Result<()> {
            self.0
                .push(format!("instant {} {} at {}", t.uuid, i.name, i.ts_ns));
            Ok(())
        }
        fn fork(&mut self, p: Track, c: Track, i: &Instant) -> std::io::Result<()> {
            self.0.push(format!(
                "fork {}->{} at {} out {:?}{}",
                p.uuid,
                c.uuid,
                i.ts_ns,
                i.flow_out,
                stack_of(i.stack)
            ));
            Ok(())
        }
        fn sigaction(&mut self, t: Track, i: &Instant) -> std::io::Result<()> {
            self.0.push(format!(
                "sigaction {} {} at {}{}",
                t.uuid,
                i.name,
                i.ts_ns,
                stack_of(i.stack)
            ));
            Ok(())
        }
        fn finish(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn symbol(function: &str) -> Symbol {
        Symbol {
            module: "/bin/leak".into(),
            function: Some(function.into()),
            ..Symbol::default()
        }
    }

    #[test]
    fn draws_lifecycles_with_stacks_and_a_track_per_process() {
        // Stacks for the forks and sigactions of pid 10 only: the lookup
        // is asked about exactly the events that can carry one.
        let mut asked = 0;
        let mut stacks = |_: &Stack| {
            asked += 1;
            vec![symbol("spawn"), symbol("main")]
        };
        let mut timeline = Timeline {
            sink: Log::default(),
            spans: HashMap::new(),
            tracks: HashMap::new(),
            last_uuid: 0,
            flow_id: 0,
            stacks: &mut stacks,
            pending_stacks: PendingStacks::default(),
        };
        let verdict = |pid, start_ns, at| Verdict {
            pid,
            start_ns,
            exited_at_ns: None,
            reap: Reap {
                time_ns: at,
                by_pid: Some(10),
                kind: ReapKind::Wait,
            },
            cgroup_id: 0,
        };
        // Pid 10's sigaction and forks say their stack was sent (HAS_STACK).
        let events = [
            ev::stacked(ev::sigaction(5, 10, 10, Disposition::Ignore, 1)),
            ev::stacked(ev::fork(100, 10, 11, false)),
            ev::fork(110, 10, 12, true), // a thread: not drawn
            ev::exit(200, 11, 11, 10, true, 100, Disposition::Default),
        ];
        // Pid 10's stacks come before its events, as recorded.
        let analysis = Analyzer::new(0);
        let stack = Stack::default();
        timeline.stack(10, stack_owner::SIGACTION, &stack).unwrap();
        timeline.stack(10, stack_owner::FORK, &stack).unwrap();
        for e in &events {
            timeline.event(e, &analysis).unwrap();
        }
        timeline.verdict(&verdict(11, 100, 300), &analysis).unwrap();
        // Pid 11 again: a new process, on a new track.
        timeline.stack(10, stack_owner::FORK, &stack).unwrap();
        timeline
            .event(&ev::stacked(ev::fork(400, 10, 11, false)), &analysis)
            .unwrap();
        // A stack whose own sigaction was lost: the next one, which says it
        // has none, does not get it.
        timeline.stack(11, stack_owner::SIGACTION, &stack).unwrap();
        timeline
            .event(
                &ev::sigaction(450, 11, 11, Disposition::Default, 0),
                &analysis,
            )
            .unwrap();
        let log = std::mem::take(&mut timeline.sink.0);
        drop(timeline);
        assert_eq!(asked, 3, "pid 11's sigaction has no stack of its own");
        assert_eq!(
            log,
            [
                "track 1 pid 10 None",
                "sigaction 1 SIGCHLD set to SIG_IGN at 5 stack spawn<main",
                "track 1 pid 10 Some(\"p\")",
                "track 2 pid 11 Some(\"p\")",
                "fork 1->2 at 100 out Some(1) stack spawn<main",
                "instant 2 exit 0 at 200",
                "slice 2 running 100..200 in Some(1)",
                "slice 2 ZOMBIE 200..300 in None",
                "instant 2 reaped by 10 at 300",
                "track 3 pid 11 Some(\"p\")",
                "fork 1->3 at 400 out Some(2) stack spawn<main",
                "sigaction 3 SIGCHLD set to SIG_DFL at 450",
            ]
        );
    }
}
