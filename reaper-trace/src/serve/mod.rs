//! `reaper-trace serve`: the daemon, and its HTTP endpoint.

pub mod auth;
pub mod daemon;
pub mod http;
pub mod slots;
pub mod tls;
pub mod webconfig;

pub use daemon::run;
