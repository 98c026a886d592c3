//! `report --format perfetto`: a recording as a Chrome trace-event JSON
//! timeline that ui.perfetto.dev (and chrome://tracing) opens.
//!
//! One track per process: a `running` slice from fork to exit, then a red
//! `ZOMBIE` slice from exit to reap; exec, SIGCHLD, the parent's waits and the
//! reap as instant events; a flow arrow from each parent to its child. The
//! output is streamed; state is bounded by the processes in flight.

use std::{
    collections::HashMap,
    io::{Read, Write},
};

use serde_json::{Value, json};

use crate::{
    output::events::signal_name,
    recording::{Item, Reader, RecordingError},
    trace::decode::decode,
    trace::event::{Disposition, Event, EventData, flags::SA_NOCLDWAIT},
};

/// Errors of the export: reading the recording, or writing the output.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error("writing the timeline: {0}")]
    Write(#[from] std::io::Error),
}

#[derive(Default)]
struct Span {
    comm: String,
    start_us: Option<f64>,
    exit_us: Option<f64>,
    reaped_us: Option<f64>,
    reaped_by: Option<u32>,
    autoreap: bool,
    named: bool,
}

struct Writer<W: Write> {
    out: W,
    first: bool,
}

impl<W: Write> Writer<W> {
    fn emit(&mut self, value: Value) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, &value).map_err(std::io::Error::other)
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Writes the timeline of the recording read from `input` to `out`.
/// Returns where the recording is truncated, if it is.
pub fn export(input: impl Read, out: impl Write) -> Result<Option<u64>, TimelineError> {
    let (mut reader, meta) = Reader::open(input)?;
    let mut w = Writer { out, first: true };
    w.out
        .write_all(b"{\"displayTimeUnit\":\"ms\",\"otherData\":")?;
    serde_json::to_writer(
        &mut w.out,
        &json!({"hostname": meta.hostname, "kernel": meta.kernel_release, "scope": meta.scope}),
    )
    .map_err(std::io::Error::other)?;
    w.out.write_all(b",\"traceEvents\":[\n")?;
    let mut spans: HashMap<u32, Span> = HashMap::new();
    let mut flow_id = 0u64;
    let mut last_us = 0.0f64;
    let mut truncated = None;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Block => {
                for record in reader.records() {
                    if let Ok(event) = decode(record) {
                        last_us = last_us.max(us(event.time_ns));
                        on_event(&mut w, &mut spans, &mut flow_id, &event)?;
                    }
                }
            }
            Item::Trailer(t) => last_us = last_us.max(us(t.ended_ns)),
            Item::Truncated { at } => truncated = Some(at),
        }
    }
    // Whatever is still open at the end: running processes and zombies.
    let mut open: Vec<_> = spans.into_iter().collect();
    open.sort_by_key(|(pid, _)| *pid);
    for (pid, span) in open {
        if let (Some(exit), None) = (span.exit_us, span.reaped_us) {
            running(&mut w, pid, &span, exit)?;
            w.emit(json!({"ph": "X", "name": "ZOMBIE (never reaped)", "cat": "zombie", "cname": "terrible", "pid": pid, "tid": pid, "ts": exit, "dur": last_us - exit, "args": {"comm": span.comm}}))?;
        } else if span.exit_us.is_none()
            && let Some(start) = span.start_us
        {
            w.emit(json!({"ph": "X", "name": "running", "cat": "lifecycle", "cname": "good", "pid": pid, "tid": pid, "ts": start, "dur": last_us - start, "args": {"comm": span.comm}}))?;
        }
    }
    w.out.write_all(b"\n]}\n")?;
    w.out.flush()?;
    Ok(truncated)
}

fn running<W: Write>(w: &mut Writer<W>, pid: u32, span: &Span, exit: f64) -> std::io::Result<()> {
    let start = span.start_us.unwrap_or(exit);
    w.emit(json!({"ph": "X", "name": "running", "cat": "lifecycle", "cname": "good", "pid": pid, "tid": pid, "ts": start, "dur": exit - start, "args": {"comm": span.comm}}))
}

fn name<W: Write>(
    w: &mut Writer<W>,
    spans: &mut HashMap<u32, Span>,
    pid: u32,
    comm: &str,
) -> std::io::Result<()> {
    let span = spans.entry(pid).or_default();
    if span.named && span.comm == comm {
        return Ok(());
    }
    span.named = true;
    span.comm = comm.to_owned();
    w.emit(json!({"ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": format!("{comm} ({pid})")}}))
}

fn instant<W: Write>(
    w: &mut Writer<W>,
    pid: u32,
    ts: f64,
    name: String,
    args: Value,
) -> std::io::Result<()> {
    w.emit(json!({"ph": "i", "s": "t", "name": name, "cat": "event", "pid": pid, "tid": pid, "ts": ts, "args": args}))
}

fn on_event<W: Write>(
    w: &mut Writer<W>,
    spans: &mut HashMap<u32, Span>,
    flow_id: &mut u64,
    e: &Event,
) -> std::io::Result<()> {
    let ts = us(e.time_ns);
    match &e.data {
        EventData::Fork(f) if !f.is_thread => {
            let comm = String::from_utf8_lossy(f.comm.as_bytes()).into_owned();
            name(w, spans, e.tgid, &comm)?;
            spans.remove(&f.child_tgid);
            name(w, spans, f.child_tgid, &comm)?;
            spans.entry(f.child_tgid).or_default().start_us = Some(ts);
            *flow_id += 1;
            w.emit(json!({"ph": "s", "id": *flow_id, "name": "fork", "cat": "fork", "pid": e.tgid, "tid": e.tgid, "ts": ts}))?;
            w.emit(json!({"ph": "f", "bp": "e", "id": *flow_id, "name": "fork", "cat": "fork", "pid": f.child_tgid, "tid": f.child_tgid, "ts": ts}))?;
        }
        EventData::Exec(x) => {
            name(
                w,
                spans,
                e.tgid,
                &String::from_utf8_lossy(x.comm.as_bytes()),
            )?;
            instant(
                w,
                e.tgid,
                ts,
                format!("exec {}", x.filename),
                json!({"old_pid": x.old_pid}),
            )?;
        }
        EventData::Exit(x) if x.group_dead => {
            let span = spans.entry(e.tgid).or_default();
            span.exit_us = Some(ts);
            span.autoreap = x.parent_disposition == Disposition::Ignore
                || x.parent_sa_flags & SA_NOCLDWAIT != 0;
            let how = match (x.exit_code, x.signal) {
                (Some(c), _) => format!("exit {c}"),
                (_, Some(s)) => format!("killed by {}", signal_name(s)),
                _ => "exit".into(),
            };
            instant(w, e.tgid, ts, how, json!({"parent": x.real_parent_tgid}))?;
        }
        EventData::SignalGenerate(s) if s.sig == 17 => {
            instant(
                w,
                s.target_tgid,
                ts,
                format!("SIGCHLD from {} ({:?})", s.si_pid, s.result).to_lowercase(),
                json!({"child": s.si_pid, "result": s.result}),
            )?;
        }
        EventData::WaitExit(wx) => {
            let what = if wx.reaped_pid > 0 {
                format!("reaps {}", wx.reaped_pid)
            } else {
                "nothing".into()
            };
            instant(
                w,
                e.tgid,
                ts,
                format!("{:?}({}) -> {what}", wx.syscall, wx.upid).to_lowercase(),
                json!({"options": wx.options, "ret": wx.ret}),
            )?;
            if wx.reaped_pid > 0
                && let Some(span) = spans.get_mut(&(wx.reaped_pid as u32))
                && span.exit_us.is_some()
                && span.reaped_us.is_none()
            {
                span.reaped_us = Some(ts);
                span.reaped_by = Some(e.tgid);
            }
        }
        EventData::Free(_) if e.tid == e.tgid => {
            let Some(mut span) = spans.remove(&e.tgid) else {
                return Ok(());
            };
            let Some(exit) = span.exit_us else {
                return Ok(());
            };
            running(w, e.tgid, &span, exit)?;
            let reaped = span
                .reaped_us
                .unwrap_or(if span.autoreap { exit } else { ts });
            span.reaped_us = Some(reaped);
            if reaped > exit {
                w.emit(json!({"ph": "X", "name": "ZOMBIE", "cat": "zombie", "cname": "terrible", "pid": e.tgid, "tid": e.tgid, "ts": exit, "dur": reaped - exit, "args": {"reaped_by": span.reaped_by, "comm": span.comm}}))?;
            }
            let by = span
                .reaped_by
                .map(|p| format!(" by {p}"))
                .unwrap_or_else(|| {
                    if span.autoreap {
                        " (autoreap)".into()
                    } else {
                        String::new()
                    }
                });
            instant(w, e.tgid, reaped, format!("reaped{by}"), json!({}))?;
        }
        _ => {}
    }
    Ok(())
}
