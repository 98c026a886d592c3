//! Everything people and tools read: event lines, findings and reports,
//! the Perfetto timeline (native protobuf, or JSON), JUnit. Renders what
//! the analysis concluded; decides nothing itself.

pub mod check;
pub mod error_line;
pub mod events;
pub mod junit;
pub mod metrics;
pub mod protobuf;
pub mod report;
pub mod stacks;
pub mod timeline;
pub mod zombies;
