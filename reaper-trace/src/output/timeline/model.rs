//! What the timeline draws, apart from how: tracks, slices and instants,
//! and the [`Sink`] each format implements. The drawing (`timeline`)
//! and the formats (`json`, `perfetto`) both depend on this model and
//! never on each other, so imports flow one way.

use serde_json::Value;

use crate::{recording::Meta, trace::stack::Symbol};

/// A process's track. A process gets a new one when its pid is reused
/// (`uuid`); the JSON format knows only the pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Track {
    pub pid: u32,
    /// Nonzero, unique in the trace.
    pub uuid: u64,
}

/// A span of time on a track. Times are the recording's CLOCK_MONOTONIC
/// nanoseconds.
#[derive(Debug)]
pub struct Slice<'a> {
    pub name: &'a str,
    pub category: &'a str,
    /// A color for the JSON format's `cname` (the protobuf one has none:
    /// Perfetto colors slices by name).
    pub color: &'a str,
    pub start_ns: u64,
    pub end_ns: u64,
    /// A JSON object: its members become the slice's arguments.
    pub args: Value,
    /// The flow (from the parent's fork) that ends at this slice.
    pub flow_in: Option<u64>,
}

/// A moment on a track.
#[derive(Debug)]
pub struct Instant<'a> {
    pub name: &'a str,
    pub category: &'a str,
    pub ts_ns: u64,
    /// A JSON object: its members become the instant's arguments.
    pub args: Value,
    /// A flow that starts here (a fork: it ends at the child's track).
    pub flow_out: Option<u64>,
    /// The user stack at this moment, innermost frame first.
    pub stack: Option<&'a [Symbol]>,
}

/// A timeline format: what each thing the timeline draws becomes.
pub trait Sink {
    fn start(&mut self, meta: &Meta) -> std::io::Result<()>;
    /// A new track, or a new name for one (`None`: not known yet). Called
    /// before anything is drawn on the track.
    fn describe(&mut self, track: Track, name: Option<&str>) -> std::io::Result<()>;
    fn slice(&mut self, track: Track, slice: &Slice) -> std::io::Result<()>;
    fn instant(&mut self, track: Track, instant: &Instant) -> std::io::Result<()>;
    /// `parent` forked `child`: `fork.flow_out` is the flow to the child's
    /// `running` slice (its `flow_in`).
    fn fork(&mut self, parent: Track, child: Track, fork: &Instant) -> std::io::Result<()>;
    /// A SIGCHLD disposition change: where a stack says who made it.
    fn sigaction(&mut self, track: Track, sigaction: &Instant) -> std::io::Result<()>;
    fn finish(&mut self) -> std::io::Result<()>;
}
