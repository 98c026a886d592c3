//! The host around the tracer: /proc, and the command it runs.

#[cfg(feature = "kernel")]
pub mod cgroups;
pub mod command;
pub mod procfs;
