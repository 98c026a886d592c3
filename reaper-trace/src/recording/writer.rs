//! Building the bytes of a recording. Pure: callers write them out.

use super::format::*;

/// Records accumulated for the next block.
#[derive(Default)]
pub struct BlockBuilder {
    raw: Vec<u8>,
    records: u32,
}

/// A block is cut when its raw records reach this size.
pub const TARGET_BLOCK: usize = 256 << 10;

impl BlockBuilder {
    /// Adds one record (at most 64 KiB; the kernel's are a few hundred bytes).
    pub fn push(&mut self, record: &[u8]) {
        let len = u16::try_from(record.len()).expect("records are far smaller than 64 KiB");
        self.raw.extend_from_slice(&len.to_le_bytes());
        self.raw.extend_from_slice(record);
        self.records += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    pub fn is_full(&self) -> bool {
        self.raw.len() >= TARGET_BLOCK
    }

    pub fn records(&self) -> u32 {
        self.records
    }

    /// The framed, compressed block, and the builder emptied for the next.
    pub fn take_block(&mut self) -> Vec<u8> {
        let compressed = lz4_flex::block::compress(&self.raw);
        let mut out = Vec::with_capacity(BLOCK_HEADER_LEN + compressed.len());
        out.extend_from_slice(BLOCK_MAGIC);
        out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.raw.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.records.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&compressed).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&compressed);
        self.raw.clear();
        self.records = 0;
        out
    }
}

/// The file header.
pub fn header(meta: &Meta) -> Vec<u8> {
    let json = serde_json::to_vec(meta).expect("metadata serialises");
    let mut out = Vec::with_capacity(HEADER_LEN + json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// The trailer.
pub fn trailer(trailer: &Trailer) -> Vec<u8> {
    let json = serde_json::to_vec(trailer).expect("trailer serialises");
    let mut out = Vec::with_capacity(TRAILER_HEADER_LEN + json.len());
    out.extend_from_slice(TRAILER_MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// A userspace record: the common 24-byte header, then `payload`, padded
/// to a multiple of 8.
pub fn user_record(kind: u32, time_ns: u64, tgid: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + payload.len() + 8);
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&time_ns.to_le_bytes());
    out.extend_from_slice(&tgid.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(payload);
    while out.len() % 8 != 0 {
        out.push(0);
    }
    out
}
