//! Reading a recording, one block at a time: memory is bounded by one block,
//! whatever the file's length. Every length is checked against a limit
//! before anything is allocated, and every block against its checksum.

use std::io::{self, Read};

use super::format::*;
use crate::trace::host_facts::SeedProcess;

/// What the next step of reading found.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// A block; its records are in [`Reader::records`].
    Block,
    /// The trailer: the recording ended cleanly.
    Trailer(Trailer),
    /// The file stops before its trailer (the recorder was killed, or the
    /// disk filled): everything before `at` was read.
    Truncated { at: u64 },
}

pub struct Reader<R> {
    input: R,
    offset: u64,
    compressed: Vec<u8>,
    raw: Vec<u8>,
    finished: bool,
    /// The metadata JSON, until its seed list has been read.
    meta_json: Vec<u8>,
}

/// Outcome of filling a buffer from the input.
enum Fill {
    Full,
    /// End of input after this many bytes.
    Short(usize),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<R: Read> Reader<R> {
    /// Reads and checks the header. The metadata comes without its seed
    /// list, which [`Reader::seeds`] reads.
    pub fn open(input: R) -> Result<(Reader<R>, Meta), RecordingError> {
        let mut reader = Reader {
            input,
            offset: 0,
            compressed: Vec::new(),
            raw: Vec::new(),
            finished: false,
            meta_json: Vec::new(),
        };
        let mut head = [0u8; HEADER_LEN];
        match reader.fill(&mut head)? {
            Fill::Full => {}
            Fill::Short(0) => return Err(RecordingError::Empty),
            Fill::Short(n) => {
                if !MAGIC.starts_with(&head[..n.min(MAGIC.len())]) {
                    return Err(RecordingError::BadMagic);
                }
                return Err(RecordingError::ShortHeader {
                    len: n,
                    need: HEADER_LEN,
                });
            }
        }
        if &head[..8] != MAGIC {
            return Err(RecordingError::BadMagic);
        }
        let version = u16::from_le_bytes([head[8], head[9]]);
        if version > VERSION || version == 0 {
            return Err(RecordingError::FutureVersion { found: version });
        }
        let meta_len = u32_at(&head, 12);
        if meta_len > MAX_META {
            return Err(RecordingError::AbsurdLength {
                what: "the metadata length",
                offset: 12,
                len: meta_len,
                max: MAX_META,
            });
        }
        let mut json = Vec::new();
        if let Fill::Short(n) = reader.fill_vec(&mut json, meta_len)? {
            return Err(RecordingError::ShortHeader {
                len: HEADER_LEN + n,
                need: HEADER_LEN + meta_len as usize,
            });
        }
        if crc32fast::hash(&json) != u32_at(&head, 16) {
            return Err(RecordingError::Checksum {
                what: "the metadata",
                offset: HEADER_LEN as u64,
            });
        }
        let meta = serde_json::from_slice(&json).map_err(|e| RecordingError::Malformed {
            what: "the metadata",
            offset: HEADER_LEN as u64,
            reason: e.to_string(),
        })?;
        reader.meta_json = json;
        Ok((reader, meta))
    }

    /// Hands over the header's seed list one process at a time, then frees
    /// the metadata; a second call finds none.
    pub fn seeds(&mut self, each: &mut dyn FnMut(SeedProcess)) -> Result<(), RecordingError> {
        let json = std::mem::take(&mut self.meta_json);
        super::seeds::for_each_seed(&json, each).map_err(|e| RecordingError::Malformed {
            what: "the metadata's seed list",
            offset: HEADER_LEN as u64,
            reason: e.to_string(),
        })
    }

    /// Byte offset of the next read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<Fill, RecordingError> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => {
                    self.offset += got as u64;
                    return Ok(Fill::Short(got));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(RecordingError::Io {
                        offset: self.offset + got as u64,
                        source,
                    });
                }
            }
        }
        self.offset += got as u64;
        Ok(Fill::Full)
    }

    /// Reads `len` bytes into `buf`, which grows only as data arrives: a
    /// length field that lies costs no more memory than the file holds.
    fn fill_vec(&mut self, buf: &mut Vec<u8>, len: u32) -> Result<Fill, RecordingError> {
        buf.clear();
        let start = self.offset;
        let result = (&mut self.input).take(len as u64).read_to_end(buf);
        self.offset += buf.len() as u64;
        match result {
            Ok(n) if n == len as usize => Ok(Fill::Full),
            Ok(n) => Ok(Fill::Short(n)),
            Err(source) => Err(RecordingError::Io {
                offset: start + buf.len() as u64,
                source,
            }),
        }
    }

    /// Reads the next block or the trailer. After `Trailer` or `Truncated`
    /// there is nothing more.
    pub fn next_item(&mut self) -> Result<Option<Item>, RecordingError> {
        if self.finished {
            return Ok(None);
        }
        let start = self.offset;
        let mut head = [0u8; BLOCK_HEADER_LEN];
        // The trailer's header is a prefix of a block header's size.
        match self.fill(&mut head[..TRAILER_HEADER_LEN])? {
            Fill::Full => {}
            Fill::Short(_) => return Ok(self.truncated(start)),
        }
        if &head[..4] == TRAILER_MAGIC {
            return self.trailer(start, &head).map(Some);
        }
        if &head[..4] != BLOCK_MAGIC {
            return Err(RecordingError::Malformed {
                what: "the block",
                offset: start,
                reason: "no block or trailer magic".into(),
            });
        }
        if let Fill::Short(_) = self.fill(&mut head[TRAILER_HEADER_LEN..])? {
            return Ok(self.truncated(start));
        }
        let (compressed_len, raw_len) = (u32_at(&head, 4), u32_at(&head, 8));
        for (what, len, at) in [
            ("the block's compressed length", compressed_len, 4),
            ("the block's raw length", raw_len, 8),
        ] {
            if len > MAX_BLOCK {
                return Err(RecordingError::AbsurdLength {
                    what,
                    offset: start + at,
                    len,
                    max: MAX_BLOCK,
                });
            }
        }
        // LZ4 expands at most ~255x: a larger claim is corruption, and
        // refusing it keeps the output buffer proportional to the input.
        if raw_len as u64 > compressed_len as u64 * 255 + 16 {
            return Err(RecordingError::Malformed {
                what: "the block",
                offset: start + 8,
                reason: format!(
                    "{raw_len} raw bytes cannot come from {compressed_len} compressed ones"
                ),
            });
        }
        let mut compressed = std::mem::take(&mut self.compressed);
        let filled = self.fill_vec(&mut compressed, compressed_len);
        self.compressed = compressed;
        if let Fill::Short(_) = filled? {
            return Ok(self.truncated(start));
        }
        if crc32fast::hash(&self.compressed) != u32_at(&head, 16) {
            return Err(RecordingError::Checksum {
                what: "the block",
                offset: start,
            });
        }
        self.raw.resize(raw_len as usize, 0);
        let n = lz4_flex::block::decompress_into(&self.compressed, &mut self.raw).map_err(|e| {
            RecordingError::Malformed {
                what: "the block",
                offset: start,
                reason: format!("decompression failed: {e}"),
            }
        })?;
        if n != raw_len as usize {
            return Err(RecordingError::Malformed {
                what: "the block",
                offset: start,
                reason: format!("{n} bytes decompressed, {raw_len} announced"),
            });
        }
        self.check_framing(start, u32_at(&head, 12))?;
        Ok(Some(Item::Block))
    }

    fn truncated(&mut self, at: u64) -> Option<Item> {
        self.finished = true;
        Some(Item::Truncated { at })
    }

    fn trailer(&mut self, start: u64, head: &[u8]) -> Result<Item, RecordingError> {
        self.finished = true;
        let len = u32_at(head, 4);
        if len > MAX_TRAILER {
            return Err(RecordingError::AbsurdLength {
                what: "the trailer length",
                offset: start + 4,
                len,
                max: MAX_TRAILER,
            });
        }
        let mut json = Vec::new();
        if let Fill::Short(_) = self.fill_vec(&mut json, len)? {
            return Ok(Item::Truncated { at: start });
        }
        if crc32fast::hash(&json) != u32_at(head, 8) {
            return Err(RecordingError::Checksum {
                what: "the trailer",
                offset: start,
            });
        }
        let trailer = serde_json::from_slice(&json).map_err(|e| RecordingError::Malformed {
            what: "the trailer",
            offset: start,
            reason: e.to_string(),
        })?;
        let mut extra = [0u8; 1];
        if let Fill::Full = self.fill(&mut extra)? {
            return Err(RecordingError::Malformed {
                what: "the file",
                offset: self.offset - 1,
                reason: "data after the trailer".into(),
            });
        }
        Ok(Item::Trailer(trailer))
    }

    /// Checks that the block's records tile it exactly.
    fn check_framing(&self, start: u64, announced: u32) -> Result<(), RecordingError> {
        let mut at = 0;
        let mut count = 0u32;
        while at < self.raw.len() {
            let len = match self.raw.get(at..at + 2) {
                Some(b) => u16::from_le_bytes([b[0], b[1]]) as usize,
                None => {
                    return Err(RecordingError::Malformed {
                        what: "the block",
                        offset: start,
                        reason: "a record length is cut".into(),
                    });
                }
            };
            if len == 0 || at + 2 + len > self.raw.len() {
                return Err(RecordingError::Malformed {
                    what: "the block",
                    offset: start,
                    reason: format!("record {count} overruns the block"),
                });
            }
            at += 2 + len;
            count += 1;
        }
        if count != announced {
            return Err(RecordingError::Malformed {
                what: "the block",
                offset: start,
                reason: format!("{count} records, {announced} announced"),
            });
        }
        Ok(())
    }

    /// The records of the block just read.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        let raw = &self.raw[..];
        let mut at = 0;
        std::iter::from_fn(move || {
            let len = u16::from_le_bytes([*raw.get(at)?, *raw.get(at + 1)?]) as usize;
            let record = raw.get(at + 2..at + 2 + len)?;
            at += 2 + len;
            Some(record)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{super::writer, *};

    fn meta() -> Meta {
        Meta {
            kernel_release: "6.18".into(),
            hostname: "h".into(),
            ..Default::default()
        }
    }

    fn file(blocks: &[&[&[u8]]], with_trailer: bool) -> Vec<u8> {
        let mut out = writer::header(&meta()).to_vec();
        for block in blocks {
            let mut b = writer::BlockBuilder::default();
            for r in *block {
                b.push(r);
            }
            out.extend(b.take_block());
        }
        if with_trailer {
            out.extend(writer::trailer(&Trailer {
                records: 3,
                ..Default::default()
            }));
        }
        out
    }

    fn read_all(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, Item), RecordingError> {
        let (mut r, m) = Reader::open(bytes)?;
        assert_eq!(m, meta());
        let mut records = Vec::new();
        loop {
            match r.next_item()?.expect("an item") {
                Item::Block => records.extend(r.records().map(<[u8]>::to_vec)),
                end => return Ok((records, end)),
            }
        }
    }

    #[test]
    fn roundtrips() {
        let bytes = file(&[&[b"aaaaaaaa", b"bbbbbbbbbbbbbbbb"], &[b"cccccccc"]], true);
        let (records, end) = read_all(&bytes).unwrap();
        assert_eq!(
            records,
            vec![
                b"aaaaaaaa".to_vec(),
                b"bbbbbbbbbbbbbbbb".to_vec(),
                b"cccccccc".to_vec()
            ]
        );
        assert!(matches!(end, Item::Trailer(t) if t.records == 3));
    }

    #[test]
    fn a_cut_file_reads_to_the_last_whole_block() {
        let whole = file(&[&[b"aaaaaaaa"], &[b"bbbbbbbb"]], false);
        let first_block_end = file(&[&[b"aaaaaaaa"]], false).len() as u64;
        let (records, end) = read_all(&whole[..whole.len() - 3]).unwrap();
        assert_eq!(records, vec![b"aaaaaaaa".to_vec()]);
        assert_eq!(
            end,
            Item::Truncated {
                at: first_block_end
            }
        );
        let (_, end) = read_all(&whole).unwrap();
        assert_eq!(
            end,
            Item::Truncated {
                at: whole.len() as u64
            },
            "no trailer"
        );
    }

    #[test]
    fn bad_input_is_named_with_its_offset() {
        assert!(matches!(Reader::open(&b""[..]), Err(RecordingError::Empty)));
        let good = file(&[&[b"aaaaaaaa"]], true);
        assert!(matches!(
            Reader::open(&good[..10]),
            Err(RecordingError::ShortHeader { .. })
        ));
        assert!(matches!(
            Reader::open(&b"GIF89a..................."[..]),
            Err(RecordingError::BadMagic)
        ));
        let mut future = good.clone();
        future[8] = 9;
        assert!(matches!(
            Reader::open(&future[..]),
            Err(RecordingError::FutureVersion { found: 9 })
        ));
        let mut absurd = good.clone();
        absurd[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Reader::open(&absurd[..]),
            Err(RecordingError::AbsurdLength { offset: 12, .. })
        ));
        let block_at = writer::header(&meta()).len();
        let mut flipped = good.clone();
        flipped[block_at + BLOCK_HEADER_LEN + 1] ^= 0x40;
        let err = read_all(&flipped).unwrap_err();
        assert!(
            matches!(err, RecordingError::Checksum { offset, .. } if offset == block_at as u64),
            "{err}"
        );
        let mut huge = good.clone();
        huge[block_at + 4..block_at + 8].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(matches!(
            read_all(&huge),
            Err(RecordingError::AbsurdLength { .. })
        ));
        let mut inflated = good.clone();
        inflated[block_at + 8..block_at + 12].copy_from_slice(&(8u32 << 20).to_le_bytes());
        assert!(matches!(
            read_all(&inflated),
            Err(RecordingError::Malformed { .. })
        ));
        let mut meta_flip = good;
        meta_flip[HEADER_LEN + 2] ^= 1;
        assert!(matches!(
            Reader::open(&meta_flip[..]),
            Err(RecordingError::Checksum { offset: 20, .. })
        ));
    }
}
