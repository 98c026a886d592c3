//! Lifecycle reconstruction and diagnosis. Pure: events in, findings out; no
//! I/O, no clock, no tokio. Live tracing and (later) replaying a recording
//! feed the same code.

pub mod diagnosis;
pub mod findings;
pub mod lifecycle;
pub mod parent;

pub use findings::{
    Finding, FindingKind, Notice, ParentRow, Reap, ReapKind, Report, Resolution, Summary,
};
pub use lifecycle::{Analyzer, SeedProcess};
pub use parent::{ParentProbe, ThreadProbe};

#[cfg(test)]
mod tests;
