//! Everything that talks to the kernel: finding offsets, loading and
//! attaching the programs, and reading their maps.

pub mod arch;
pub mod btf;
pub mod loader;
pub mod offsets;
pub mod privileges;
pub mod probe_log;
pub mod support;

pub use loader::{CgroupTarget, FollowSpec, SenderNames, SetupError, Tracer, TracerOptions};
