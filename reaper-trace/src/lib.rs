//! reaper-trace: finds the children that never get reaped, and says why.
//!
//! The pure core (decoding, rendering) does no I/O and is unit-tested with
//! made-up records; `kernel` and `live` do the talking to the kernel.

pub mod analysis;
pub mod check;
pub mod clock;
pub mod comm;
#[cfg(feature = "kernel")]
pub mod command;
pub mod decode;
pub mod escape;
pub mod event;
#[cfg(test)]
pub mod event_builders;
pub mod follow;
pub mod junit;
#[cfg(feature = "kernel")]
pub mod kernel;
pub mod kernel_suite;
#[cfg(feature = "kernel")]
pub mod live;
pub mod procfs;
pub mod recording;
pub mod render;
pub mod replay;
pub mod report;
pub mod timeline;
pub mod totals;
#[cfg(feature = "kernel")]
pub mod verify;
pub mod workloads;
