//! reaper-trace: finds the children that never get reaped, and says why.
//!
//! The folders follow the pipeline, and data flows one way through them:
//!
//! ```text
//! kernel/ ─records─▶ trace/ ─events─▶ analysis/ ─findings─▶ output/
//!   host/ ─/proc facts─▶┘                 ▲
//! recording/ ─replayed records────────────┘
//! ```
//!
//! - [`trace`]: what the kernel (and /proc) tell us, typed: decoding the
//!   ring-buffer records, events, comm and escaping, signal names, totals,
//!   the `--pid`/`--comm` follow rule.
//! - [`cgroup`]: cgroup naming: what a cgroup v2 path says (container,
//!   pod, unit), the id → name map, and this machine's cgroup filesystems.
//! - [`analysis`]: the pure lifecycle state machine, the one home of the reap
//!   rules, diagnosis and findings.
//! - [`output`]: rendering events, reports, the Perfetto timeline, JUnit.
//! - [`pipeline`]: the one path records take, live or replayed: pid
//!   namespaces, follow, the analyzer, and the outputs (visitors); and
//!   replay, the recording as its source.
//! - [`recording`]: the file format, its writer and reader.
//! - [`kernel`], [`host`], [`live`], [`serve`], [`verify`]: the parts that do
//!   I/O (behind the `kernel` feature, except the pure judging of `verify`).
//!
//! Everything but `kernel`, `host::command`, `live`, `serve` and `verify::run`
//! is pure and builds without the `kernel` feature (fuzzing, tests without
//! root).

pub mod analysis;
pub mod cgroup;
pub mod host;
#[cfg(feature = "kernel")]
pub mod kernel;
#[cfg(test)]
mod layers;
#[cfg(feature = "kernel")]
pub mod live;
pub mod output;
pub mod pipeline;
pub mod recording;
#[cfg(feature = "kernel")]
pub mod serve;
pub mod trace;
pub mod verify;
