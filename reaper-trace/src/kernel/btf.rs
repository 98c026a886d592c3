//! A small reader for the kernel's BTF (`/sys/kernel/btf/vmlinux`): just
//! enough to find struct member offsets, type sizes and tracepoint
//! prototypes. Pure: it works on bytes handed to it.
//!
//! Written here rather than taken from a crate: aya-obj keeps its lookups
//! private and btf-rs is LGPL; what we need is ~200 lines.

/// Errors finding kernel types in BTF.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    /// The blob is not BTF, or is cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// A type the probes need does not exist in this kernel.
    #[error("kernel BTF has no {0}")]
    MissingType(String),
    /// A member the probes need does not exist in this kernel's struct.
    #[error("kernel BTF: {ty} has no member {member}")]
    MissingMember { ty: String, member: String },
}

const MAGIC: u16 = 0xeb9f;

mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

#[derive(Clone, Copy, Debug)]
struct TypeEntry {
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    /// `size` for sized kinds, `type` for reference kinds.
    size_or_type: u32,
    /// Byte position of the kind-specific data that follows the entry.
    extra: usize,
    name_off: u32,
}

/// A parsed BTF blob.
pub struct Btf {
    data: Vec<u8>,
    types_start: usize,
    strings_start: usize,
    strings_len: usize,
    /// Index `i` holds type id `i + 1` (id 0 is void).
    types: Vec<TypeEntry>,
}

/// One named member of a struct or union.
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

impl Btf {
    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        let u16_at = |at: usize| -> Result<u16, BtfError> {
            data.get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .ok_or(BtfError::Malformed("short header"))
        };
        if u16_at(0)? != MAGIC {
            return Err(BtfError::Malformed(
                "bad magic (only little-endian BTF is read)",
            ));
        }
        let hdr_len = read_u32(&data, 4).ok_or(BtfError::Malformed("short header"))? as usize;
        let field =
            |i: usize| read_u32(&data, 8 + 4 * i).ok_or(BtfError::Malformed("short header"));
        let (type_off, type_len, str_off, str_len) = (
            field(0)? as usize,
            field(1)? as usize,
            field(2)? as usize,
            field(3)? as usize,
        );
        let types_start = hdr_len + type_off;
        let strings_start = hdr_len + str_off;
        if types_start + type_len > data.len() || strings_start + str_len > data.len() {
            return Err(BtfError::Malformed("sections run past the end"));
        }
        let mut btf = Btf {
            data,
            types_start,
            strings_start,
            strings_len: str_len,
            types: Vec::new(),
        };
        btf.index_types(type_len)?;
        Ok(btf)
    }

    fn index_types(&mut self, type_len: usize) -> Result<(), BtfError> {
        let end = self.types_start + type_len;
        let mut at = self.types_start;
        while at < end {
            let word = |i: usize| {
                read_u32(&self.data, at + 4 * i).ok_or(BtfError::Malformed("type cut short"))
            };
            let (name_off, info, size_or_type) = (word(0)?, word(1)?, word(2)?);
            let kind = (info >> 24) & 0x1f;
            let vlen = info & 0xffff;
            let extra = at + 12;
            let extra_len = match kind {
                kind::INT | kind::VAR | kind::DECL_TAG => 4,
                kind::ARRAY => 12,
                kind::STRUCT | kind::UNION | kind::DATASEC | kind::ENUM64 => 12 * vlen as usize,
                kind::ENUM | kind::FUNC_PROTO => 8 * vlen as usize,
                _ => 0,
            };
            self.types.push(TypeEntry {
                kind,
                vlen,
                kind_flag: info >> 31 == 1,
                size_or_type,
                extra,
                name_off,
            });
            at = extra + extra_len;
        }
        if at != end {
            return Err(BtfError::Malformed("type section ends inside a type"));
        }
        Ok(())
    }

    fn string(&self, off: u32) -> &str {
        let start = self.strings_start + off as usize;
        let limit = self.strings_start + self.strings_len;
        if start >= limit {
            return "";
        }
        let bytes = &self.data[start..limit];
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..len]).unwrap_or("")
    }

    fn entry(&self, id: u32) -> Option<&TypeEntry> {
        id.checked_sub(1).and_then(|i| self.types.get(i as usize))
    }

    /// The first type called `name` of one of `kinds`. A scan, not an
    /// index: the tool looks up a few dozen names once, and indexing every
    /// name of the kernel's ~100,000 types cost more time and memory than
    /// all the scans together.
    fn find(&self, name: &str, kinds: &[u32]) -> Option<u32> {
        self.types
            .iter()
            .position(|t| {
                t.name_off != 0 && kinds.contains(&t.kind) && self.string(t.name_off) == name
            })
            .map(|i| i as u32 + 1)
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.entry(id) {
                Some(t)
                    if matches!(
                        t.kind,
                        kind::TYPEDEF
                            | kind::VOLATILE
                            | kind::CONST
                            | kind::RESTRICT
                            | kind::TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    fn members(&self, id: u32) -> impl Iterator<Item = Member> + '_ {
        let entry = self.entry(id).copied();
        let (count, extra, kind_flag) = match entry {
            Some(t) if matches!(t.kind, kind::STRUCT | kind::UNION) => {
                (t.vlen as usize, t.extra, t.kind_flag)
            }
            _ => (0, 0, false),
        };
        (0..count).filter_map(move |i| {
            let at = extra + 12 * i;
            let offset = read_u32(&self.data, at + 8)?;
            Some(Member {
                name_off: read_u32(&self.data, at)?,
                type_id: read_u32(&self.data, at + 4)?,
                // With kind_flag the high 8 bits hold a bitfield's size.
                bit_offset: if kind_flag {
                    offset & 0xff_ffff
                } else {
                    offset
                },
            })
        })
    }

    /// Byte offset of `path` (members separated by `.`) inside the struct or
    /// union `ty`, looking through anonymous members as C does.
    pub fn member_offset(&self, ty: &str, path: &str) -> Result<u32, BtfError> {
        let offset_bits = self.member_bit_offset(ty, path)?;
        if !offset_bits.is_multiple_of(8) {
            return Err(BtfError::MissingMember {
                ty: ty.to_owned(),
                member: format!("{path} (a bitfield)"),
            });
        }
        Ok(offset_bits / 8)
    }

    /// Bit offset of member `path` from the start of struct `ty`: for a
    /// bitfield (one-bit flags such as `task_struct.in_execve`), which
    /// [`Btf::member_offset`] refuses.
    pub fn member_bit_offset(&self, ty: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = self
            .find(ty, &[kind::STRUCT, kind::UNION])
            .ok_or_else(|| BtfError::MissingType(format!("struct {ty}")))?;
        let mut offset_bits = 0u32;
        for part in path.split('.') {
            let (bits, member_type) =
                self.find_member(id, part, 0)
                    .ok_or_else(|| BtfError::MissingMember {
                        ty: ty.to_owned(),
                        member: path.to_owned(),
                    })?;
            offset_bits += bits;
            id = self.resolve(member_type);
        }
        Ok(offset_bits)
    }

    /// (bit offset, type id) of member `name` of struct `id`, searching
    /// anonymous members depth-first.
    fn find_member(&self, id: u32, name: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        for member in self.members(id) {
            if member.name_off != 0 {
                if self.string(member.name_off) == name {
                    return Some((member.bit_offset, member.type_id));
                }
            } else if let Some((bits, t)) =
                self.find_member(self.resolve(member.type_id), name, depth + 1)
            {
                return Some((member.bit_offset + bits, t));
            }
        }
        None
    }

    /// Size in bytes of the struct or union `ty`.
    pub fn struct_size(&self, ty: &str) -> Result<u32, BtfError> {
        self.find(ty, &[kind::STRUCT, kind::UNION])
            .and_then(|id| self.entry(id))
            .map(|t| t.size_or_type)
            .ok_or_else(|| BtfError::MissingType(format!("struct {ty}")))
    }

    /// How many arguments the BTF tracepoint `tp` passes to a program: the
    /// prototype of `btf_trace_<tp>` minus its leading `void *__data`.
    pub fn tracepoint_arg_count(&self, tp: &str) -> Result<usize, BtfError> {
        let name = format!("btf_trace_{tp}");
        let missing = || BtfError::MissingType(format!("typedef {name} (no BTF tracepoint {tp})"));
        let typedef = self.find(&name, &[kind::TYPEDEF]).ok_or_else(missing)?;
        let ptr = self
            .entry(typedef)
            .map(|t| t.size_or_type)
            .ok_or_else(missing)?;
        let proto = self
            .entry(ptr)
            .filter(|t| t.kind == kind::PTR)
            .map(|t| t.size_or_type)
            .ok_or_else(missing)?;
        let proto = self
            .entry(proto)
            .filter(|t| t.kind == kind::FUNC_PROTO)
            .ok_or_else(missing)?;
        Ok((proto.vlen as usize).saturating_sub(1))
    }
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob from raw type words and a string table.
    fn blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let type_bytes: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            type_bytes.len() as u32,
            type_bytes.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&type_bytes);
        out.extend_from_slice(strings);
        out
    }

    fn info(kind: u32, vlen: u32) -> u32 {
        (kind << 24) | vlen
    }

    /// `struct outer { int a; union { struct inner b; }; }` where
    /// `struct inner { int x; int y; }`, plus `btf_trace_tp` taking 2 args.
    fn sample() -> Btf {
        // strings: 0 "", 1 "int", 5 "outer", 11 "a", 13 "inner", 19 "x", 21 "y", 23 "b", 25 "btf_trace_tp"
        let strings = b"\0int\0outer\0a\0inner\0x\0y\0b\0btf_trace_tp\0";
        #[rustfmt::skip]
        let types = [
            // 1: int
            1, info(kind::INT, 0), 4, 0x0100_0020,
            // 2: struct inner { int x @0; int y @32 }
            13, info(kind::STRUCT, 2), 8, 19, 1, 0, 21, 1, 32,
            // 3: anonymous union { struct inner b @0 }
            0, info(kind::UNION, 1), 8, 23, 2, 0,
            // 4: struct outer { int a @0; <anon> @64 }
            5, info(kind::STRUCT, 2), 16, 11, 1, 0, 0, 3, 64,
            // 5: func_proto (void *, int, int) -> int
            0, info(kind::FUNC_PROTO, 3), 1, 0, 0, 0, 1, 0, 1,
            // 6: ptr -> 5
            0, info(kind::PTR, 0), 5,
            // 7: typedef btf_trace_tp -> 6
            25, info(kind::TYPEDEF, 0), 6,
        ];
        Btf::parse(blob(&types, strings)).unwrap()
    }

    #[test]
    fn finds_members_through_anonymous_unions() {
        let btf = sample();
        assert_eq!(btf.member_offset("outer", "a"), Ok(0));
        assert_eq!(btf.member_offset("outer", "b"), Ok(8));
        assert_eq!(btf.member_offset("outer", "b.y"), Ok(12));
        assert_eq!(btf.struct_size("inner"), Ok(8));
    }

    #[test]
    fn reports_what_is_missing() {
        let btf = sample();
        assert!(matches!(
            btf.member_offset("outer", "zz"),
            Err(BtfError::MissingMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("nope", "a"),
            Err(BtfError::MissingType(_))
        ));
        assert!(matches!(
            btf.tracepoint_arg_count("other"),
            Err(BtfError::MissingType(_))
        ));
    }

    #[test]
    fn counts_tracepoint_arguments() {
        assert_eq!(sample().tracepoint_arg_count("tp"), Ok(2));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(vec![]).is_err());
        assert!(Btf::parse(vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
        let mut cut = blob(&[1, info(kind::INT, 0), 4, 0], b"\0int\0");
        cut.truncate(cut.len() - 8);
        assert!(Btf::parse(cut).is_err());
    }
}
