//! Constants, metadata and errors of the recording format (version 1).
//!
//! ```text
//! file    := header block* trailer?
//! header  := "RPTRACE\0" u16 version u16 0 u32 meta_len u32 meta_crc32 meta(JSON)
//! block   := "RBLK" u32 compressed_len u32 raw_len u32 records u32 crc32 u32 0 lz4(raw)
//! raw     := (u16 len, record[len])*      records as the kernel wrote them,
//!                                         plus userspace kinds (PROBE, LOST)
//! trailer := "RTRL" u32 len u32 crc32 u32 0 trailer(JSON)
//! ```
//! All integers little-endian; CRC-32 (IEEE) over the bytes that follow a
//! block's or trailer's header.

use serde::{Deserialize, Serialize};

use crate::trace::{clock::ClockRef, host_facts::SeedProcess};

pub const MAGIC: &[u8; 8] = b"RPTRACE\0";
pub const VERSION: u16 = 1;
pub const BLOCK_MAGIC: &[u8; 4] = b"RBLK";
pub const TRAILER_MAGIC: &[u8; 4] = b"RTRL";
/// Fixed part of the file header.
pub const HEADER_LEN: usize = 20;
/// Fixed part of a block header.
pub const BLOCK_HEADER_LEN: usize = 24;
/// Fixed part of the trailer.
pub const TRAILER_HEADER_LEN: usize = 16;

/// Limits a reader enforces before allocating: lengths past these are
/// corruption, not data.
pub const MAX_META: u32 = 64 << 20;
pub const MAX_BLOCK: u32 = 16 << 20;
pub const MAX_TRAILER: u32 = 16 << 20;

/// The file header's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub abi_version: u32,
    pub tool_version: String,
    pub kernel_release: String,
    pub boot_id: String,
    pub hostname: String,
    /// Maps the records' CLOCK_MONOTONIC timestamps to wall-clock time.
    pub clock: ClockRef,
    pub hooks: Vec<String>,
    /// What was traced: "the whole system", "command ...".
    pub scope: String,
    /// Written whole; never read with the rest (a recording may list
    /// millions): [`super::Reader::seeds`] hands them over one at a time.
    #[serde(skip_deserializing)]
    pub seed: Vec<SeedProcess>,
}

/// Written when recording ends cleanly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// CLOCK_MONOTONIC ns when recording ended.
    pub ended_ns: u64,
    pub records: u64,
    pub blocks: u64,
    /// Events the kernel could not queue, in all and per kind.
    pub lost: u64,
    pub lost_by_kind: std::collections::BTreeMap<String, u64>,
}

/// Why a recording cannot be read. Every variant names the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("empty file: no reaper-trace header at byte 0")]
    Empty,
    #[error("truncated header: the file ends at byte {len}, the header needs {need} bytes")]
    ShortHeader { len: usize, need: usize },
    #[error("not a reaper-trace recording: bad magic at byte 0")]
    BadMagic,
    #[error(
        "format version {found} at byte 8 is newer than the {VERSION} this reaper-trace reads; use a newer reaper-trace"
    )]
    FutureVersion { found: u16 },
    #[error(
        "{what} at byte {offset} is {len} bytes, more than the {max} allowed: the file is corrupt"
    )]
    AbsurdLength {
        what: &'static str,
        offset: u64,
        len: u32,
        max: u32,
    },
    #[error("{what} at byte {offset} fails its checksum: the file is corrupt")]
    Checksum { what: &'static str, offset: u64 },
    #[error("{what} at byte {offset} is malformed: {reason}")]
    Malformed {
        what: &'static str,
        offset: u64,
        reason: String,
    },
    #[error("reading at byte {offset}: {source}")]
    Io { offset: u64, source: std::io::Error },
}
