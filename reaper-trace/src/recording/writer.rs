//! Building the bytes of a recording. Pure: callers write them out.

use bytes::{BufMut, Bytes, BytesMut};

use super::format::*;

/// Records accumulated for the next block.
#[derive(Default)]
pub struct BlockBuilder {
    raw: BytesMut,
    records: u32,
}

/// A block is cut when its raw records reach this size.
pub const TARGET_BLOCK: usize = 256 << 10;

impl BlockBuilder {
    /// Adds one record (at most 64 KiB; the kernel's are a few hundred bytes).
    pub fn push(&mut self, record: &[u8]) {
        let len = u16::try_from(record.len()).expect("records are far smaller than 64 KiB");
        self.raw.put_u16_le(len);
        self.raw.put_slice(record);
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
    pub fn take_block(&mut self) -> Bytes {
        let compressed = lz4_flex::block::compress(&self.raw);
        let mut out = BytesMut::with_capacity(BLOCK_HEADER_LEN + compressed.len());
        out.put_slice(BLOCK_MAGIC);
        out.put_u32_le(compressed.len() as u32);
        out.put_u32_le(self.raw.len() as u32);
        out.put_u32_le(self.records);
        out.put_u32_le(crc32fast::hash(&compressed));
        out.put_u32_le(0);
        out.put_slice(&compressed);
        self.raw.clear();
        self.records = 0;
        out.freeze()
    }
}

/// The file header.
pub fn header(meta: &Meta) -> Bytes {
    let json = serde_json::to_vec(meta).expect("metadata serialises");
    let mut out = BytesMut::with_capacity(HEADER_LEN + json.len());
    out.put_slice(MAGIC);
    out.put_u16_le(VERSION);
    out.put_u16_le(0);
    out.put_u32_le(json.len() as u32);
    out.put_u32_le(crc32fast::hash(&json));
    out.put_slice(&json);
    out.freeze()
}

/// The trailer.
pub fn trailer(trailer: &Trailer) -> Bytes {
    let json = serde_json::to_vec(trailer).expect("trailer serialises");
    let mut out = BytesMut::with_capacity(TRAILER_HEADER_LEN + json.len());
    out.put_slice(TRAILER_MAGIC);
    out.put_u32_le(json.len() as u32);
    out.put_u32_le(crc32fast::hash(&json));
    out.put_u32_le(0);
    out.put_slice(&json);
    out.freeze()
}
