//! The timeline as Chrome trace-event JSON (`--format perfetto-json`).

use std::io::Write;

use serde_json::{Value, json};

use super::model::{Instant, Sink, Slice, Track};
use crate::recording::Meta;

/// The Chrome trace-event JSON timeline, which ui.perfetto.dev and
/// chrome://tracing open: `pid`s as tracks, times in microseconds.
pub struct JsonSink<W: Write> {
    out: W,
    first: bool,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl<W: Write> JsonSink<W> {
    pub fn new(out: W) -> Self {
        JsonSink { out, first: true }
    }

    fn emit(&mut self, value: Value) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, &value).map_err(std::io::Error::other)
    }
}

impl<W: Write> Sink for JsonSink<W> {
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

    fn describe(&mut self, Track { pid, .. }: Track, name: Option<&str>) -> std::io::Result<()> {
        match name {
            Some(comm) => self.emit(
                json!({"ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": format!("{comm} ({pid})")}}),
            ),
            None => Ok(()),
        }
    }

    fn slice(&mut self, Track { pid, .. }: Track, s: &Slice) -> std::io::Result<()> {
        let ts = us(s.start_ns);
        self.emit(json!({"ph": "X", "name": s.name, "cat": s.category, "cname": s.color, "pid": pid, "tid": pid, "ts": ts, "dur": us(s.end_ns) - ts, "args": s.args}))
    }

    fn instant(&mut self, Track { pid, .. }: Track, i: &Instant) -> std::io::Result<()> {
        self.emit(json!({"ph": "i", "s": "t", "name": i.name, "cat": i.category, "pid": pid, "tid": pid, "ts": us(i.ts_ns), "args": i.args}))
    }

    /// A flow's two ends, both at the fork; the child's binds to its
    /// enclosing slice (`"bp": "e"`), the `running` one.
    fn fork(&mut self, parent: Track, child: Track, fork: &Instant) -> std::io::Result<()> {
        let (ts, id) = (us(fork.ts_ns), fork.flow_out);
        self.emit(json!({"ph": "s", "id": id, "name": "fork", "cat": "fork", "pid": parent.pid, "tid": parent.pid, "ts": ts}))?;
        self.emit(json!({"ph": "f", "bp": "e", "id": id, "name": "fork", "cat": "fork", "pid": child.pid, "tid": child.pid, "ts": ts}))
    }

    /// Not drawn: the JSON timeline stays as it was before stacks, which
    /// are what these instants are for.
    fn sigaction(&mut self, _: Track, _: &Instant) -> std::io::Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()
    }
}
