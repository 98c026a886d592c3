//! `reaper-trace verify-kernel`: the reaping semantics the analysis relies
//! on, checked on the running kernel. `suite` judges traces (pure),
//! `workloads` are the programs traced, `run` traces them, `render` prints
//! the verdicts (table, JSON, JUnit).

pub mod render;
#[cfg(feature = "kernel")]
mod run;
pub mod suite;
pub mod workloads;

#[cfg(feature = "kernel")]
pub use run::run;
