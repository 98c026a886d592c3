//! `report --format perfetto`: a recording as a Chrome trace-event JSON
//! timeline that ui.perfetto.dev (and chrome://tracing) opens.
//!
//! One track per process: a `running` slice from fork to exit, then a red
//! `ZOMBIE` slice from exit to the reap; exec, exit, SIGCHLD and the
//! parent's waits as instant events; a flow arrow from each parent to its
//! child. Where and by whom a child was reaped is the analyzer's verdict
//! (the replay feeds it here), so the ZOMBIE slice ends where the report
//! says the reap happened. The output is streamed; state is bounded by the
//! processes in flight.

use std::{
    collections::{HashMap, HashSet},
    io::{Read, Write},
};

use serde_json::{Value, json};

use crate::{
    analysis::{ReapKind, Resolution, Verdict},
    output::events::wait_outcome,
    recording::{
        Meta,
        replay::{ReplayError, ReplayOptions, Visitor, replay_with},
    },
    trace::{
        event::{Event, EventData},
        names::signal_name,
    },
};

/// A process's track, while its lifecycle is open.
#[derive(Default)]
struct Span {
    comm: String,
    start_ns: u64,
    start_us: Option<f64>,
    exit_us: Option<f64>,
    named: bool,
}

struct Timeline<W: Write> {
    out: W,
    first: bool,
    spans: HashMap<u32, Span>,
    flow_id: u64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Writes the timeline of the recording read from `input` to `out`, for the
/// processes `options` selects. Returns where the recording is truncated,
/// if it is.
pub fn export(
    input: impl Read,
    out: impl Write,
    options: &ReplayOptions,
) -> Result<Option<u64>, ReplayError> {
    let mut timeline = Timeline {
        out,
        first: true,
        spans: HashMap::new(),
        flow_id: 0,
    };
    let replay = replay_with(input, options, &mut timeline)?;
    // Whatever is still open at the end: zombies (as the report says) and
    // processes still running.
    let zombies: HashSet<u32> = replay
        .report
        .findings
        .iter()
        .filter(|f| f.resolution == Some(Resolution::Zombie))
        .map(|f| f.pid)
        .collect();
    let end = us(replay.end_ns);
    let mut open: Vec<_> = std::mem::take(&mut timeline.spans).into_iter().collect();
    open.sort_by_key(|(pid, _)| *pid);
    for (pid, span) in open {
        match span.exit_us {
            Some(exit) if zombies.contains(&pid) => {
                timeline.running(pid, &span, exit)?;
                timeline.emit(json!({"ph": "X", "name": "ZOMBIE (never reaped)", "cat": "zombie", "cname": "terrible", "pid": pid, "tid": pid, "ts": exit, "dur": end - exit, "args": {"comm": span.comm}}))?;
            }
            Some(exit) => timeline.running(pid, &span, exit)?,
            None if span.start_us.is_some() => timeline.running(pid, &span, end)?,
            None => {}
        }
    }
    timeline.out.write_all(b"\n]}\n")?;
    timeline.out.flush()?;
    Ok(replay.truncated_at)
}

impl<W: Write> Timeline<W> {
    fn emit(&mut self, value: Value) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, &value).map_err(std::io::Error::other)
    }

    fn running(&mut self, pid: u32, span: &Span, until: f64) -> std::io::Result<()> {
        let start = span.start_us.unwrap_or(until);
        self.emit(json!({"ph": "X", "name": "running", "cat": "lifecycle", "cname": "good", "pid": pid, "tid": pid, "ts": start, "dur": until - start, "args": {"comm": span.comm}}))
    }

    fn name(&mut self, pid: u32, comm: &str) -> std::io::Result<()> {
        let span = self.spans.entry(pid).or_default();
        if span.named && span.comm == comm {
            return Ok(());
        }
        span.named = true;
        span.comm = comm.to_owned();
        self.emit(json!({"ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": format!("{comm} ({pid})")}}))
    }

    fn instant(&mut self, pid: u32, ts: f64, name: String, args: Value) -> std::io::Result<()> {
        self.emit(json!({"ph": "i", "s": "t", "name": name, "cat": "event", "pid": pid, "tid": pid, "ts": ts, "args": args}))
    }
}

impl<W: Write> Visitor for Timeline<W> {
    fn start(&mut self, meta: &Meta) -> std::io::Result<()> {
        self.out
            .write_all(b"{\"displayTimeUnit\":\"ms\",\"otherData\":")?;
        serde_json::to_writer(
            &mut self.out,
            &json!({"hostname": meta.hostname, "kernel": meta.kernel_release, "scope": meta.scope}),
        )
        .map_err(std::io::Error::other)?;
        self.out.write_all(b",\"traceEvents\":[\n")
    }

    fn event(&mut self, e: &Event) -> std::io::Result<()> {
        let ts = us(e.time_ns);
        match &e.data {
            EventData::Fork(f) if !f.is_thread => {
                let comm = String::from_utf8_lossy(f.comm.as_bytes()).into_owned();
                self.name(e.tgid, &comm)?;
                self.spans.remove(&f.child_tgid);
                self.name(f.child_tgid, &comm)?;
                let child = self.spans.entry(f.child_tgid).or_default();
                child.start_us = Some(ts);
                child.start_ns = f.child_start_ns;
                self.flow_id += 1;
                let id = self.flow_id;
                self.emit(json!({"ph": "s", "id": id, "name": "fork", "cat": "fork", "pid": e.tgid, "tid": e.tgid, "ts": ts}))?;
                self.emit(json!({"ph": "f", "bp": "e", "id": id, "name": "fork", "cat": "fork", "pid": f.child_tgid, "tid": f.child_tgid, "ts": ts}))?;
            }
            EventData::Exec(x) => {
                self.name(e.tgid, &String::from_utf8_lossy(x.comm.as_bytes()))?;
                self.instant(
                    e.tgid,
                    ts,
                    format!("exec {}", x.filename),
                    json!({"old_pid": x.old_pid}),
                )?;
            }
            EventData::Exit(x) if x.group_dead => {
                let span = self.spans.entry(e.tgid).or_default();
                span.exit_us = Some(ts);
                if span.start_ns == 0 {
                    span.start_ns = x.process_start_ns;
                }
                let how = match (x.exit_code, x.signal) {
                    (Some(c), _) => format!("exit {c}"),
                    (_, Some(s)) => format!("killed by {}", signal_name(s)),
                    _ => "exit".into(),
                };
                self.instant(e.tgid, ts, how, json!({"parent": x.real_parent_tgid}))?;
            }
            EventData::SignalGenerate(s) if s.sig == reaper_trace_common::SIGCHLD => {
                self.instant(
                    s.target_tgid,
                    ts,
                    format!("SIGCHLD from {} ({:?})", s.si_pid, s.result).to_lowercase(),
                    json!({"child": s.si_pid, "result": s.result}),
                )?;
            }
            EventData::WaitExit(wx) => {
                self.instant(
                    e.tgid,
                    ts,
                    format!(
                        "{}({}) -> {}",
                        format!("{:?}", wx.syscall).to_lowercase(),
                        wx.upid,
                        wait_outcome(wx)
                    ),
                    json!({"options": wx.options, "ret": wx.ret}),
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Closes a lifecycle where the analyzer says it ended.
    fn verdict(&mut self, v: &Verdict) -> std::io::Result<()> {
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
        let reaped = us(v.reap.time_ns);
        let exit = span.exit_us.unwrap_or(reaped);
        self.running(v.pid, &span, exit)?;
        if reaped > exit {
            self.emit(json!({"ph": "X", "name": "ZOMBIE", "cat": "zombie", "cname": "terrible", "pid": v.pid, "tid": v.pid, "ts": exit, "dur": reaped - exit, "args": {"reaped_by": v.reap.by_pid, "reap_kind": v.reap.kind, "comm": span.comm}}))?;
        }
        let by = match (v.reap.kind, v.reap.by_pid) {
            (ReapKind::Autoreap, _) => " (autoreap)".to_owned(),
            (_, Some(p)) => format!(" by {p}"),
            (_, None) => String::new(),
        };
        self.instant(
            v.pid,
            reaped,
            format!("reaped{by}"),
            json!({"kind": v.reap.kind}),
        )
    }
}
