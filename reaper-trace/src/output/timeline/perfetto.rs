//! The timeline as a native Perfetto trace: a `Trace` of `TracePacket`s
//! carrying TrackEvents (protos/perfetto/trace/track_event/ in Perfetto's
//! source), written packet by packet as the timeline is drawn.
//!
//! - One packet sequence: every packet has `trusted_packet_sequence_id` 1;
//!   the first clears the incremental state, and every packet that defines
//!   or uses interned data says it needs it.
//! - One process track per process (`TrackDescriptor` with a
//!   `ProcessDescriptor`), described again when the process is renamed
//!   (exec). A reused pid gets a new track, which trace processor takes
//!   as a new process.
//! - Slices are `SLICE_BEGIN`/`SLICE_END` pairs, written when the slice
//!   closes, so packets are not in time order; trace processor sorts them
//!   (stably, so a slice that ends where the next begins stays apart).
//! - Event names, categories, argument names and stacks (function names,
//!   source paths, mapping paths, mappings, frames, callstacks) are
//!   interned. Memory is bounded: past [`INTERN_LIMIT`] entries the tables
//!   are dropped and the next packet clears the incremental state.
//! - Timestamps are the recording's CLOCK_MONOTONIC nanoseconds, with no
//!   clock id: trace processor reads them as its default clock (BOOTTIME).
//!   A clock id without a ClockSnapshot would make it drop the packets.

use std::{collections::HashMap, io::Write};

use serde_json::Value;

use super::model::{Instant, Sink, Slice, Track};
use crate::{output::protobuf::Message, recording::Meta, trace::stack::Symbol};

/// Field numbers, from Perfetto's protos (checked against the PyPI
/// `perfetto` package's `perfetto_trace_pb2` by the tests).
mod field {
    /// `Trace`.
    pub const PACKET: u32 = 1;
    /// `TracePacket`.
    pub mod packet {
        pub const TIMESTAMP: u32 = 8;
        pub const TRUSTED_PACKET_SEQUENCE_ID: u32 = 10;
        pub const TRACK_EVENT: u32 = 11;
        pub const INTERNED_DATA: u32 = 12;
        pub const SEQUENCE_FLAGS: u32 = 13;
        pub const SYSTEM_INFO: u32 = 45;
        pub const TRACK_DESCRIPTOR: u32 = 60;
        pub const FIRST_PACKET_ON_SEQUENCE: u32 = 87;
    }
    /// `SystemInfo` and its `Utsname`.
    pub mod system_info {
        pub const UTSNAME: u32 = 1;
        pub const SYSNAME: u32 = 1;
        pub const RELEASE: u32 = 3;
    }
    /// `TrackDescriptor` and its `ProcessDescriptor`.
    pub mod track {
        pub const UUID: u32 = 1;
        pub const PROCESS: u32 = 3;
        pub const PID: u32 = 1;
        pub const PROCESS_NAME: u32 = 6;
    }
    /// `TrackEvent`.
    pub mod event {
        pub const CATEGORY_IIDS: u32 = 3;
        pub const DEBUG_ANNOTATIONS: u32 = 4;
        pub const TYPE: u32 = 9;
        pub const NAME_IID: u32 = 10;
        pub const TRACK_UUID: u32 = 11;
        pub const FLOW_IDS: u32 = 47;
        pub const TERMINATING_FLOW_IDS: u32 = 48;
        /// Perfetto v53 (2025-11) and later; older versions ignore it.
        pub const CALLSTACK_IID: u32 = 56;
    }
    /// `DebugAnnotation`.
    pub mod annotation {
        pub const NAME_IID: u32 = 1;
        pub const BOOL_VALUE: u32 = 2;
        pub const UINT_VALUE: u32 = 3;
        pub const INT_VALUE: u32 = 4;
        pub const DOUBLE_VALUE: u32 = 5;
        pub const STRING_VALUE: u32 = 6;
    }
    /// `InternedData`: each a repeated message whose `iid` is field 1 and,
    /// for the named ones (`EventName`, `EventCategory`,
    /// `DebugAnnotationName`, `InternedString`), the string field 2.
    pub mod interned {
        pub const IID: u32 = 1;
        pub const STR: u32 = 2;
        pub const EVENT_CATEGORIES: u32 = 1;
        pub const EVENT_NAMES: u32 = 2;
        pub const DEBUG_ANNOTATION_NAMES: u32 = 3;
        pub const FUNCTION_NAMES: u32 = 5;
        pub const FRAMES: u32 = 6;
        pub const CALLSTACKS: u32 = 7;
        pub const MAPPING_PATHS: u32 = 17;
        pub const SOURCE_PATHS: u32 = 18;
        pub const MAPPINGS: u32 = 19;
    }
    /// `Mapping` (profiling/profile_common.proto).
    pub mod mapping {
        pub const PATH_STRING_IDS: u32 = 7;
    }
    /// `Frame`; `source_path_iid` and `line_number` since Perfetto v53.
    pub mod frame {
        pub const FUNCTION_NAME_ID: u32 = 2;
        pub const MAPPING_ID: u32 = 3;
        pub const REL_PC: u32 = 4;
        pub const SOURCE_PATH_IID: u32 = 5;
        pub const LINE_NUMBER: u32 = 6;
    }
    /// `Callstack`.
    pub mod callstack {
        pub const FRAME_IDS: u32 = 2;
    }
}

/// `TracePacket.SequenceFlags`.
const SEQ_INCREMENTAL_STATE_CLEARED: u64 = 1;
const SEQ_NEEDS_INCREMENTAL_STATE: u64 = 2;
/// `TrackEvent.Type`.
const TYPE_SLICE_BEGIN: u64 = 1;
const TYPE_SLICE_END: u64 = 2;
const TYPE_INSTANT: u64 = 3;
/// The one packet sequence of the trace.
const SEQUENCE_ID: u64 = 1;

/// Interned entries kept at most (all tables together, a stack's worth
/// more at worst): a few MiB.
pub const INTERN_LIMIT: usize = 1 << 15;

/// A frame as interned: its parts by iid.
#[derive(PartialEq, Eq, Hash)]
struct FrameKey {
    mapping: u64,
    rel_pc: u64,
    function: Option<u64>,
    source: Option<u64>,
    line: Option<u32>,
}

/// What the current incremental state defines: value → iid, per table
/// (each `InternedData` field numbers its own entries from 1).
#[derive(Default)]
struct Tables {
    event_names: HashMap<String, u64>,
    categories: HashMap<String, u64>,
    annotation_names: HashMap<String, u64>,
    function_names: HashMap<String, u64>,
    source_paths: HashMap<String, u64>,
    mapping_paths: HashMap<String, u64>,
    mappings: HashMap<String, u64>,
    frames: HashMap<FrameKey, u64>,
    callstacks: HashMap<Vec<u64>, u64>,
}

impl Tables {
    fn len(&self) -> usize {
        self.event_names.len()
            + self.categories.len()
            + self.annotation_names.len()
            + self.function_names.len()
            + self.source_paths.len()
            + self.mapping_paths.len()
            + self.mappings.len()
            + self.frames.len()
            + self.callstacks.len()
    }
}

/// The iid of `value` in `table`; if new, defined in `interned` (the
/// packet's `InternedData`) as field `field`.
fn intern(
    table: &mut HashMap<String, u64>,
    interned: &mut Message,
    field: u32,
    value: &str,
) -> u64 {
    if let Some(&iid) = table.get(value) {
        return iid;
    }
    let iid = table.len() as u64 + 1;
    table.insert(value.to_owned(), iid);
    interned.message(field, |m| {
        m.uint(field::interned::IID, iid)
            .string(field::interned::STR, value);
    });
    iid
}

/// The mapping of the module at `path`: Perfetto keeps its path as
/// components, and joins them with a leading `/` each.
fn intern_mapping(tables: &mut Tables, interned: &mut Message, path: &str) -> u64 {
    if let Some(&iid) = tables.mappings.get(path) {
        return iid;
    }
    let parts: Vec<u64> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            intern(
                &mut tables.mapping_paths,
                interned,
                field::interned::MAPPING_PATHS,
                p,
            )
        })
        .collect();
    let iid = tables.mappings.len() as u64 + 1;
    tables.mappings.insert(path.to_owned(), iid);
    interned.message(field::interned::MAPPINGS, |m| {
        m.uint(field::interned::IID, iid);
        for part in parts {
            m.uint(field::mapping::PATH_STRING_IDS, part);
        }
    });
    iid
}

/// The callstack of `stack` (innermost frame first, as
/// `trace::stack::Stack` has it; Perfetto wants the outermost first).
fn intern_callstack(tables: &mut Tables, interned: &mut Message, stack: &[Symbol]) -> u64 {
    let mut frame_ids = Vec::with_capacity(stack.len());
    for symbol in stack.iter().rev() {
        let key = FrameKey {
            mapping: intern_mapping(tables, interned, &symbol.module),
            // The address in the ELF file's own address space: what
            // Perfetto's `rel_pc` is (libunwindstack's relative pc) and
            // what its symbolizer looks up.
            rel_pc: symbol.address,
            function: symbol.function.as_deref().map(|f| {
                intern(
                    &mut tables.function_names,
                    interned,
                    field::interned::FUNCTION_NAMES,
                    f,
                )
            }),
            source: symbol.file.as_deref().map(|f| {
                intern(
                    &mut tables.source_paths,
                    interned,
                    field::interned::SOURCE_PATHS,
                    f,
                )
            }),
            line: symbol.line,
        };
        let next = tables.frames.len() as u64 + 1;
        let iid = *tables.frames.entry(key).or_insert_with_key(|key| {
            interned.message(field::interned::FRAMES, |m| {
                m.uint(field::interned::IID, next);
                // No name where none is known: the mapping and rel_pc say
                // what the frame is, and no name is made up.
                if let Some(function) = key.function {
                    m.uint(field::frame::FUNCTION_NAME_ID, function);
                }
                m.uint(field::frame::MAPPING_ID, key.mapping)
                    .uint(field::frame::REL_PC, key.rel_pc);
                if let Some(source) = key.source {
                    m.uint(field::frame::SOURCE_PATH_IID, source);
                }
                if let Some(line) = key.line {
                    m.uint(field::frame::LINE_NUMBER, line.into());
                }
            });
            next
        });
        frame_ids.push(iid);
    }
    let next = tables.callstacks.len() as u64 + 1;
    *tables
        .callstacks
        .entry(frame_ids)
        .or_insert_with_key(|frames| {
            interned.message(field::interned::CALLSTACKS, |m| {
                m.uint(field::interned::IID, next);
                for &frame in frames {
                    m.uint(field::callstack::FRAME_IDS, frame);
                }
            });
            next
        })
}

/// A TrackEvent being written: what differs between slices and instants.
struct EventFields<'a> {
    kind: u64,
    track: u64,
    ts_ns: u64,
    name: Option<&'a str>,
    category: Option<&'a str>,
    args: Option<&'a Value>,
    flow_out: Option<u64>,
    flow_in: Option<u64>,
    stack: Option<&'a [Symbol]>,
}

/// Writes the native Perfetto trace to `out`, packet by packet.
pub struct PerfettoSink<W: Write> {
    out: W,
    /// The packet being built, its TrackEvent and its new interned
    /// entries; buffers reused from packet to packet.
    packet: Message,
    event: Message,
    interned: Message,
    /// A packet framed as a `Trace.packet` field.
    frame: Message,
    tables: Tables,
    intern_limit: usize,
    /// No packet written yet.
    first: bool,
    /// The tables were dropped: the next packet says so.
    cleared: bool,
}

impl<W: Write> PerfettoSink<W> {
    pub fn new(out: W) -> Self {
        PerfettoSink {
            out,
            packet: Message::new(),
            event: Message::new(),
            interned: Message::new(),
            frame: Message::new(),
            tables: Tables::default(),
            intern_limit: INTERN_LIMIT,
            first: true,
            cleared: false,
        }
    }

    /// [`new`](Self::new), with fewer interned entries kept (to test the
    /// incremental state's reset).
    pub fn with_intern_limit(out: W, limit: usize) -> Self {
        PerfettoSink {
            intern_limit: limit,
            ..Self::new(out)
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    /// Starts a packet: its sequence, and the flags the sequence needs.
    fn begin_packet(&mut self, uses_interning: bool) {
        self.packet.clear();
        self.packet
            .uint(field::packet::TRUSTED_PACKET_SEQUENCE_ID, SEQUENCE_ID);
        let mut flags = 0;
        if uses_interning {
            flags |= SEQ_NEEDS_INCREMENTAL_STATE;
        }
        if self.first || self.cleared {
            flags |= SEQ_INCREMENTAL_STATE_CLEARED;
        }
        if self.first {
            self.packet
                .bool(field::packet::FIRST_PACKET_ON_SEQUENCE, true);
        }
        if flags != 0 {
            self.packet.uint(field::packet::SEQUENCE_FLAGS, flags);
        }
        self.first = false;
        self.cleared = false;
    }

    fn write_packet(&mut self) -> std::io::Result<()> {
        self.frame.clear();
        self.frame.embed(field::PACKET, &self.packet);
        self.out.write_all(self.frame.as_bytes())
    }

    fn track_event(&mut self, e: EventFields) -> std::io::Result<()> {
        use field::event;
        // Drop the tables at a packet's start, never inside one: the
        // packet that redefines entries is the one that says they were
        // cleared.
        if self.tables.len() >= self.intern_limit {
            self.tables = Tables::default();
            self.cleared = true;
        }
        let Self {
            tables,
            interned,
            event: ev,
            ..
        } = self;
        interned.clear();
        ev.clear();
        ev.uint(event::TYPE, e.kind)
            .uint(event::TRACK_UUID, e.track);
        if let Some(name) = e.name {
            let iid = intern(
                &mut tables.event_names,
                interned,
                field::interned::EVENT_NAMES,
                name,
            );
            ev.uint(event::NAME_IID, iid);
        }
        if let Some(category) = e.category {
            let iid = intern(
                &mut tables.categories,
                interned,
                field::interned::EVENT_CATEGORIES,
                category,
            );
            ev.uint(event::CATEGORY_IIDS, iid);
        }
        for (key, value) in e.args.and_then(Value::as_object).into_iter().flatten() {
            if value.is_null() {
                continue;
            }
            let iid = intern(
                &mut tables.annotation_names,
                interned,
                field::interned::DEBUG_ANNOTATION_NAMES,
                key,
            );
            ev.message(event::DEBUG_ANNOTATIONS, |a| annotation(a, iid, value));
        }
        if let Some(id) = e.flow_out {
            ev.fixed64(event::FLOW_IDS, id);
        }
        if let Some(id) = e.flow_in {
            ev.fixed64(event::TERMINATING_FLOW_IDS, id);
        }
        if let Some(stack) = e.stack.filter(|s| !s.is_empty()) {
            let iid = intern_callstack(tables, interned, stack);
            ev.uint(event::CALLSTACK_IID, iid);
        }
        self.begin_packet(true);
        self.packet.uint(field::packet::TIMESTAMP, e.ts_ns);
        if !self.interned.is_empty() {
            self.packet
                .embed(field::packet::INTERNED_DATA, &self.interned);
        }
        self.packet.embed(field::packet::TRACK_EVENT, &self.event);
        self.write_packet()
    }
}

/// A `DebugAnnotation` named `name_iid` holding a JSON value (not null).
fn annotation(a: &mut Message, name_iid: u64, value: &Value) {
    use field::annotation::*;
    a.uint(NAME_IID, name_iid);
    match value {
        Value::Bool(b) => _ = a.bool(BOOL_VALUE, *b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => _ = a.uint(UINT_VALUE, u),
            (_, Some(i)) => _ = a.int(INT_VALUE, i),
            _ => _ = a.double(DOUBLE_VALUE, n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => _ = a.string(STRING_VALUE, s),
        // Not used by the timeline; kept readable if it ever is.
        other => _ = a.string(STRING_VALUE, &other.to_string()),
    }
}

impl<W: Write> Sink for PerfettoSink<W> {
    /// The kernel release, as the trace's system info. (The JSON's
    /// hostname and scope have no field in a Perfetto trace.)
    fn start(&mut self, meta: &Meta) -> std::io::Result<()> {
        use field::system_info::*;
        self.begin_packet(false);
        self.packet.message(field::packet::SYSTEM_INFO, |s| {
            s.message(UTSNAME, |u| {
                u.string(SYSNAME, "Linux")
                    .string(RELEASE, &meta.kernel_release);
            });
        });
        self.write_packet()
    }

    fn describe(&mut self, track: Track, name: Option<&str>) -> std::io::Result<()> {
        use field::track::*;
        self.begin_packet(false);
        self.packet.message(field::packet::TRACK_DESCRIPTOR, |t| {
            t.uint(UUID, track.uuid).message(PROCESS, |p| {
                p.uint(PID, track.pid.into());
                if let Some(name) = name {
                    p.string(PROCESS_NAME, name);
                }
            });
        });
        self.write_packet()
    }

    fn slice(&mut self, track: Track, s: &Slice) -> std::io::Result<()> {
        self.track_event(EventFields {
            kind: TYPE_SLICE_BEGIN,
            track: track.uuid,
            ts_ns: s.start_ns,
            name: Some(s.name),
            category: Some(s.category),
            args: Some(&s.args),
            flow_out: None,
            flow_in: s.flow_in,
            stack: None,
        })?;
        self.track_event(EventFields {
            kind: TYPE_SLICE_END,
            track: track.uuid,
            ts_ns: s.end_ns,
            name: None,
            category: None,
            args: None,
            flow_out: None,
            flow_in: None,
            stack: None,
        })
    }

    fn instant(&mut self, track: Track, i: &Instant) -> std::io::Result<()> {
        self.track_event(EventFields {
            kind: TYPE_INSTANT,
            track: track.uuid,
            ts_ns: i.ts_ns,
            name: Some(i.name),
            category: Some(i.category),
            args: Some(&i.args),
            flow_out: i.flow_out,
            flow_in: None,
            stack: i.stack,
        })
    }

    /// An instant on the parent's track, where the flow to the child's
    /// `running` slice starts (and the parent's stack, if known).
    fn fork(&mut self, parent: Track, _child: Track, fork: &Instant) -> std::io::Result<()> {
        self.instant(parent, fork)
    }

    fn sigaction(&mut self, track: Track, sigaction: &Instant) -> std::io::Result<()> {
        self.instant(track, sigaction)
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    //! The wire bytes decoded back by a small reader, so these tests check
    //! what the trace says (iids, references, flags); that the schema
    //! agrees is checked with Perfetto's own bindings in
    //! tests/tests/perfetto.rs.

    use serde_json::json;

    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    enum V {
        Int(u64),
        Fixed(u64),
        Bytes(Vec<u8>),
    }

    type Fields = Vec<(u32, V)>;

    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0;
        for shift in (0..64).step_by(7) {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        v
    }

    fn decode(mut b: &[u8]) -> Fields {
        let mut fields = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let value = match key & 7 {
                0 => V::Int(varint(&mut b)),
                1 => {
                    let (v, rest) = b.split_at(8);
                    b = rest;
                    V::Fixed(u64::from_le_bytes(v.try_into().unwrap()))
                }
                2 => {
                    let len = varint(&mut b) as usize;
                    let (v, rest) = b.split_at(len);
                    b = rest;
                    V::Bytes(v.to_vec())
                }
                wire => panic!("wire type {wire}"),
            };
            fields.push(((key >> 3) as u32, value));
        }
        fields
    }

    fn all(m: &Fields, field: u32) -> Vec<&V> {
        m.iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, v)| v)
            .collect()
    }

    fn int(m: &Fields, field: u32) -> Option<u64> {
        all(m, field).last().map(|v| match v {
            V::Int(i) | V::Fixed(i) => *i,
            V::Bytes(_) => panic!("field {field} is bytes"),
        })
    }

    fn ints(m: &Fields, field: u32) -> Vec<u64> {
        all(m, field)
            .into_iter()
            .map(|v| match v {
                V::Int(i) | V::Fixed(i) => *i,
                V::Bytes(_) => panic!("field {field} is bytes"),
            })
            .collect()
    }

    fn sub(m: &Fields, field: u32) -> Option<Fields> {
        all(m, field).last().map(|v| match v {
            V::Bytes(b) => decode(b),
            _ => panic!("field {field} is not a message"),
        })
    }

    fn subs(m: &Fields, field: u32) -> Vec<Fields> {
        all(m, field)
            .into_iter()
            .map(|v| match v {
                V::Bytes(b) => decode(b),
                _ => panic!("field {field} is not a message"),
            })
            .collect()
    }

    fn string(m: &Fields, field: u32) -> Option<String> {
        all(m, field).last().map(|v| match v {
            V::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
            _ => panic!("field {field} is not a string"),
        })
    }

    /// The packets of a whole trace.
    fn packets(trace: &[u8]) -> Vec<Fields> {
        let top = decode(trace);
        assert!(top.iter().all(|(f, _)| *f == field::PACKET));
        subs(&top, field::PACKET)
    }

    /// The interned tables as the packets define them, as a reader
    /// resolves them: (InternedData field, iid) → entry, cleared with
    /// the incremental state. Returns each track event with the tables
    /// current at its packet.
    struct Reader {
        tables: HashMap<(u32, u64), Fields>,
        defined: usize,
    }

    impl Reader {
        fn new() -> Self {
            Reader {
                tables: HashMap::new(),
                defined: 0,
            }
        }

        fn read(&mut self, packet: &Fields) {
            if int(packet, field::packet::SEQUENCE_FLAGS).unwrap_or(0)
                & SEQ_INCREMENTAL_STATE_CLEARED
                != 0
            {
                self.tables.clear();
            }
            if let Some(interned) = sub(packet, field::packet::INTERNED_DATA) {
                for (table, entry) in &interned {
                    let V::Bytes(b) = entry else { panic!() };
                    let entry = decode(b);
                    let iid = int(&entry, field::interned::IID).unwrap();
                    let old = self.tables.insert((*table, iid), entry);
                    assert!(old.is_none(), "table {table} iid {iid} defined twice");
                    self.defined += 1;
                }
            }
        }

        fn entry(&self, table: u32, iid: u64) -> &Fields {
            self.tables
                .get(&(table, iid))
                .unwrap_or_else(|| panic!("table {table} iid {iid} undefined"))
        }

        fn str(&self, table: u32, iid: u64) -> String {
            string(self.entry(table, iid), field::interned::STR).unwrap()
        }

        /// A callstack as (function, file, line, mapping path, rel_pc),
        /// outermost first.
        #[allow(clippy::type_complexity)]
        fn callstack(
            &self,
            iid: u64,
        ) -> Vec<(Option<String>, Option<String>, Option<u64>, String, u64)> {
            use field::{frame, interned};
            let stack = self.entry(interned::CALLSTACKS, iid);
            ints(stack, field::callstack::FRAME_IDS)
                .into_iter()
                .map(|f| {
                    let f = self.entry(interned::FRAMES, f);
                    let mapping =
                        self.entry(interned::MAPPINGS, int(f, frame::MAPPING_ID).unwrap());
                    let path: String = ints(mapping, field::mapping::PATH_STRING_IDS)
                        .into_iter()
                        .map(|p| format!("/{}", self.str(interned::MAPPING_PATHS, p)))
                        .collect();
                    (
                        int(f, frame::FUNCTION_NAME_ID)
                            .map(|i| self.str(interned::FUNCTION_NAMES, i)),
                        int(f, frame::SOURCE_PATH_IID).map(|i| self.str(interned::SOURCE_PATHS, i)),
                        int(f, frame::LINE_NUMBER),
                        path,
                        int(f, frame::REL_PC).unwrap(),
                    )
                })
                .collect()
        }
    }

    const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";

    /// A popen leak's stack, innermost first: libc without symbols for
    /// its innermost frame, then popen, then the caller with its line.
    fn popen_stack() -> Vec<Symbol> {
        vec![
            Symbol {
                module: LIBC.into(),
                address: 0xf7a4d,
                function: None,
                file: None,
                line: None,
            },
            Symbol {
                module: LIBC.into(),
                address: 0x78a11,
                function: Some("popen".into()),
                file: None,
                line: None,
            },
            Symbol {
                module: "/work/leak".into(),
                address: 0x1189,
                function: Some("main".into()),
                file: Some("/work/leak.c".into()),
                line: Some(12),
            },
        ]
    }

    fn instant<'a>(name: &'a str, ts_ns: u64, stack: Option<&'a [Symbol]>) -> Instant<'a> {
        Instant {
            name,
            category: "fork",
            ts_ns,
            args: json!({"child": 42, "ret": -10, "none": null}),
            flow_out: Some(7),
            stack,
        }
    }

    #[test]
    fn instants_carry_interned_callstacks() {
        let mut sink = PerfettoSink::new(Vec::new());
        let parent = Track { pid: 40, uuid: 1 };
        let child = Track { pid: 42, uuid: 2 };
        let stack = popen_stack();
        sink.describe(parent, Some("leak")).unwrap();
        sink.describe(child, Some("leak")).unwrap();
        sink.fork(parent, child, &instant("fork", 1_000, Some(&stack)))
            .unwrap();
        // The same stack again, and a different one sharing frames.
        sink.sigaction(
            parent,
            &instant("SIGCHLD set to SIG_IGN", 2_000, Some(&stack)),
        )
        .unwrap();
        let shorter = &stack[1..];
        sink.instant(parent, &instant("fork", 3_000, Some(shorter)))
            .unwrap();
        sink.instant(parent, &instant("fork", 4_000, None)).unwrap();
        sink.finish().unwrap();
        let packets = packets(&sink.into_inner());
        assert_eq!(packets.len(), 6);

        // The first packet starts the sequence; descriptors use no
        // interned data; every track event does.
        let flags: Vec<_> = packets
            .iter()
            .map(|p| int(p, field::packet::SEQUENCE_FLAGS))
            .collect();
        assert_eq!(flags, [Some(1), None, Some(2), Some(2), Some(2), Some(2)]);
        assert_eq!(
            int(&packets[0], field::packet::FIRST_PACKET_ON_SEQUENCE),
            Some(1)
        );
        for p in &packets {
            assert_eq!(
                int(p, field::packet::TRUSTED_PACKET_SEQUENCE_ID),
                Some(SEQUENCE_ID)
            );
        }
        let descriptor = sub(&packets[0], field::packet::TRACK_DESCRIPTOR).unwrap();
        assert_eq!(int(&descriptor, field::track::UUID), Some(1));
        let process = sub(&descriptor, field::track::PROCESS).unwrap();
        assert_eq!(int(&process, field::track::PID), Some(40));
        assert_eq!(
            string(&process, field::track::PROCESS_NAME).as_deref(),
            Some("leak")
        );

        let mut reader = Reader::new();
        let mut stacks = Vec::new();
        for p in &packets {
            reader.read(p);
            let Some(event) = sub(p, field::packet::TRACK_EVENT) else {
                continue;
            };
            assert_eq!(int(&event, field::event::TYPE), Some(TYPE_INSTANT));
            assert_eq!(int(&event, field::event::TRACK_UUID), Some(1));
            assert_eq!(ints(&event, field::event::FLOW_IDS), [7]);
            stacks.push(int(&event, field::event::CALLSTACK_IID).map(|iid| reader.callstack(iid)));
        }
        let libc = |pc, f: Option<&str>| (f.map(str::to_owned), None, None, LIBC.to_owned(), pc);
        let main = (
            Some("main".to_owned()),
            Some("/work/leak.c".to_owned()),
            Some(12),
            "/work/leak".to_owned(),
            0x1189,
        );
        let full = vec![
            main.clone(),
            libc(0x78a11, Some("popen")),
            libc(0xf7a4d, None),
        ];
        assert_eq!(stacks[0].as_ref(), Some(&full), "outermost first");
        assert_eq!(stacks[1].as_ref(), Some(&full));
        assert_eq!(
            stacks[2].as_ref(),
            Some(&vec![main, libc(0x78a11, Some("popen"))])
        );
        assert_eq!(stacks[3], None);

        // Each thing defined once: names "fork" and "SIGCHLD set to
        // SIG_IGN", category "fork", annotation names "child" and "ret"
        // (null members are left out), function names 2, source paths 1,
        // path components 6 (usr lib x86_64-linux-gnu libc.so.6 work
        // leak), mappings 2, frames 3, callstacks 2.
        assert_eq!(reader.defined, 2 + 1 + 2 + 2 + 1 + 6 + 2 + 3 + 2);
        let second = sub(&packets[3], field::packet::INTERNED_DATA).unwrap();
        assert_eq!(
            second.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            [field::interned::EVENT_NAMES],
            "the repeated stack reuses every entry"
        );
    }

    #[test]
    fn arguments_are_typed_debug_annotations() {
        let mut sink = PerfettoSink::new(Vec::new());
        let track = Track { pid: 40, uuid: 1 };
        sink.describe(track, None).unwrap();
        sink.instant(
            track,
            &Instant {
                name: "wait4(-1) -> error ECHILD",
                category: "event",
                ts_ns: 5,
                args: json!({"ret": -10, "options": 0, "kind": "wait", "b": true, "x": 0.5}),
                flow_out: None,
                stack: None,
            },
        )
        .unwrap();
        let packets = packets(&sink.into_inner());
        // A track without a name is still a process track.
        let descriptor = sub(&packets[0], field::packet::TRACK_DESCRIPTOR).unwrap();
        let process = sub(&descriptor, field::track::PROCESS).unwrap();
        assert_eq!(process, [(field::track::PID, V::Int(40))]);
        let mut reader = Reader::new();
        reader.read(&packets[1]);
        let event = sub(&packets[1], field::packet::TRACK_EVENT).unwrap();
        let name = int(&event, field::event::NAME_IID).unwrap();
        assert_eq!(
            reader.str(field::interned::EVENT_NAMES, name),
            "wait4(-1) -> error ECHILD"
        );
        let args: Vec<(String, V)> = subs(&event, field::event::DEBUG_ANNOTATIONS)
            .into_iter()
            .map(|a| {
                let name = int(&a, field::annotation::NAME_IID).unwrap();
                let name = reader.str(field::interned::DEBUG_ANNOTATION_NAMES, name);
                // After the name, the value: which field says its type.
                let (number, value) = a[1].clone();
                (format!("{name}#{number}"), value)
            })
            .collect();
        use field::annotation::*;
        assert_eq!(
            args,
            [
                (format!("b#{BOOL_VALUE}"), V::Int(1)),
                (format!("kind#{STRING_VALUE}"), V::Bytes(b"wait".to_vec())),
                (format!("options#{UINT_VALUE}"), V::Int(0)),
                (format!("ret#{INT_VALUE}"), V::Int(-10i64 as u64)),
                (format!("x#{DOUBLE_VALUE}"), V::Fixed(0.5f64.to_bits())),
            ]
        );
    }

    #[test]
    fn slices_are_begin_end_pairs_with_the_flow_in() {
        let mut sink = PerfettoSink::new(Vec::new());
        let track = Track { pid: 42, uuid: 3 };
        sink.describe(track, Some("leak")).unwrap();
        sink.slice(
            track,
            &Slice {
                name: "running",
                category: "lifecycle",
                color: "good",
                start_ns: 100,
                end_ns: 250,
                args: json!({"comm": "leak"}),
                flow_in: Some(9),
            },
        )
        .unwrap();
        let packets = packets(&sink.into_inner());
        let begin = sub(&packets[1], field::packet::TRACK_EVENT).unwrap();
        let end = sub(&packets[2], field::packet::TRACK_EVENT).unwrap();
        assert_eq!(int(&packets[1], field::packet::TIMESTAMP), Some(100));
        assert_eq!(int(&packets[2], field::packet::TIMESTAMP), Some(250));
        assert_eq!(int(&begin, field::event::TYPE), Some(TYPE_SLICE_BEGIN));
        assert_eq!(ints(&begin, field::event::TERMINATING_FLOW_IDS), [9]);
        assert_eq!(
            end,
            [
                (field::event::TYPE, V::Int(TYPE_SLICE_END)),
                (field::event::TRACK_UUID, V::Int(3)),
            ]
        );
    }

    #[test]
    fn interned_state_is_bounded_and_cleared_in_band() {
        let mut sink = PerfettoSink::with_intern_limit(Vec::new(), 4);
        let track = Track { pid: 40, uuid: 1 };
        sink.describe(track, None).unwrap();
        let names: Vec<String> = (0..6).map(|i| format!("exit {i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let mut e = instant(name, i as u64, None);
            e.args = json!({});
            sink.instant(track, &e).unwrap();
        }
        let packets = packets(&sink.into_inner());
        let mut reader = Reader::new();
        let mut cleared = Vec::new();
        for p in &packets[1..] {
            reader.read(p);
            cleared.push(int(p, field::packet::SEQUENCE_FLAGS).unwrap() & 1 == 1);
            // Every name resolves with the state current at its packet.
            let event = sub(p, field::packet::TRACK_EVENT).unwrap();
            let name = int(&event, field::event::NAME_IID).unwrap();
            reader.str(field::interned::EVENT_NAMES, name);
            assert!(reader.tables.len() <= 4, "{}", reader.tables.len());
        }
        // A category and three names fill the tables; the next packet
        // starts over with both.
        assert_eq!(cleared, [false, false, false, true, false, false]);
        let fifth = sub(&packets[4], field::packet::INTERNED_DATA).unwrap();
        assert_eq!(
            fifth.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            [
                field::interned::EVENT_NAMES,
                field::interned::EVENT_CATEGORIES
            ]
        );
    }
}
