//! Just enough of the protobuf wire format to write a Perfetto trace:
//! varints, 64-bit fixed fields, length-delimited fields and nested
//! messages. The trace is written, never read, and uses a handful of
//! messages, so the wire encoding is written by hand here. That needs no
//! `protoc`, no build script, no generated code and no dependency. The
//! field numbers live with their use in `perfetto.rs`. The tests check
//! the output against Perfetto's own schema (`tests/perfetto_check.py`),
//! which catches a wrong number.

/// How a field's value is framed on the wire.
#[derive(Clone, Copy)]
enum WireType {
    Varint = 0,
    Fixed64 = 1,
    Len = 2,
}

/// A message being built: its fields, encoded in the order they are added.
/// The buffer can be reused for the next message once [`clear`](Self::clear)ed.
#[derive(Default)]
pub struct Message {
    buf: Vec<u8>,
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, field: u32, wire: WireType) {
        varint(&mut self.buf, u64::from(field) << 3 | wire as u64);
    }

    /// A `uint32`, `uint64` or enum field.
    pub fn uint(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, WireType::Varint);
        varint(&mut self.buf, v);
        self
    }

    /// An `int32` or `int64` field: a negative value is its two's
    /// complement as a 64-bit varint (ten bytes), not zigzag (`sint*`).
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.uint(field, v as u64)
    }

    pub fn bool(&mut self, field: u32, v: bool) -> &mut Self {
        self.uint(field, u64::from(v))
    }

    /// A `fixed64` field: eight bytes, little-endian.
    pub fn fixed64(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, WireType::Fixed64);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `double` field.
    pub fn double(&mut self, field: u32, v: f64) -> &mut Self {
        self.fixed64(field, v.to_bits())
    }

    /// A `bytes` field.
    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, WireType::Len);
        varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// A `string` field.
    pub fn string(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    /// A nested message, filled by `fill`. It is encoded in place and its
    /// length inserted before it afterwards: no buffer per nesting level.
    pub fn message(&mut self, field: u32, fill: impl FnOnce(&mut Message)) -> &mut Self {
        self.key(field, WireType::Len);
        let start = self.buf.len();
        fill(self);
        let len = self.buf.len() - start;
        let mut prefix = Vec::with_capacity(10);
        varint(&mut prefix, len as u64);
        self.buf.splice(start..start, prefix);
        self
    }

    /// An already encoded message, as a nested message field.
    pub fn embed(&mut self, field: u32, message: &Message) -> &mut Self {
        self.bytes(field, &message.buf)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(fill: impl FnOnce(&mut Message)) -> Vec<u8> {
        let mut m = Message::new();
        fill(&mut m);
        m.as_bytes().to_vec()
    }

    // Expected bytes from the protobuf encoding guide's examples.
    #[test]
    fn varints() {
        assert_eq!(encoded(|m| _ = m.uint(1, 150)), [0x08, 0x96, 0x01]);
        assert_eq!(encoded(|m| _ = m.uint(1, 0)), [0x08, 0x00]);
        assert_eq!(encoded(|m| _ = m.uint(2, 127)), [0x10, 0x7f]);
        assert_eq!(encoded(|m| _ = m.uint(2, 128)), [0x10, 0x80, 0x01]);
        assert_eq!(
            encoded(|m| _ = m.uint(1, u64::MAX)),
            [
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
        // int32 -2: ten bytes, as protobuf sign-extends to 64 bits.
        assert_eq!(
            encoded(|m| _ = m.int(1, -2)),
            [
                0x08, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
        assert_eq!(encoded(|m| _ = m.bool(3, true)), [0x18, 0x01]);
        // A field number that needs a two-byte key: (60 << 3) | 2 = 482.
        assert_eq!(encoded(|m| _ = m.bytes(60, b"")), [0xe2, 0x03, 0x00]);
    }

    #[test]
    fn fixed_and_length_delimited() {
        assert_eq!(
            encoded(|m| _ = m.fixed64(47, 1)),
            [0xf9, 0x02, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encoded(|m| _ = m.double(5, 1.0)),
            [0x29, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]
        );
        assert_eq!(
            encoded(|m| _ = m.string(2, "testing")),
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
    }

    #[test]
    fn nested_messages_get_their_length_prefix() {
        // message Test3 { optional Test1 c = 3; } with c.a = 150.
        assert_eq!(
            encoded(|m| _ = m.message(3, |c| _ = c.uint(1, 150))),
            [0x1a, 0x03, 0x08, 0x96, 0x01]
        );
        // Two levels, and a body of 200 bytes: a two-byte length.
        let big = encoded(|m| {
            m.message(1, |a| {
                a.message(2, |b| _ = b.bytes(3, &[7; 197]));
            });
        });
        assert_eq!(&big[..6], [0x0a, 0xcb, 0x01, 0x12, 0xc8, 0x01]);
        assert_eq!(&big[6..8], [0x1a, 0xc5]);
        assert_eq!(big.len(), 3 + 3 + 3 + 197);
        // An empty nested message is still present, with length 0.
        assert_eq!(encoded(|m| _ = m.message(4, |_| {})), [0x22, 0x00]);
        let mut inner = Message::new();
        inner.uint(1, 150);
        assert_eq!(
            encoded(|m| _ = m.embed(3, &inner)),
            [0x1a, 0x03, 0x08, 0x96, 0x01]
        );
    }
}
