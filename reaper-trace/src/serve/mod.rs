//! `reaper-trace serve`: the daemon, and its HTTP endpoint.

pub mod daemon;
pub mod http;

pub use daemon::run;
