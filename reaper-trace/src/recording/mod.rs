//! The recording format: capture on one machine, analyse later or elsewhere.
//! See docs/recording.md. Encoding and decoding are pure (`writer`,
//! `reader`); `file` does the I/O of recording.

#[cfg(feature = "kernel")]
pub mod file;
pub mod format;
pub mod reader;
pub mod seeds;
pub mod stacks;
pub mod user_record;
pub mod writer;

pub use format::{Meta, RecordingError, Trailer};
pub use reader::{Item, Reader};
pub use writer::BlockBuilder;
