//! Records the tracer itself adds to a recording, beside the kernel's: what
//! /proc said of a parent (`PROBE`), a change of the kernel's loss counter
//! (`LOST`), and the path of a cgroup id the first time it is seen
//! (`CGROUP`), so that `report` names containers as `live` did. They share the kernel records' 24-byte header layout (kind,
//! payload length, time, tgid, 0) with kind numbers the kernel never uses,
//! so one framing carries both. The one codec for them: live writes with
//! [`probe`] and [`lost`], replay reads with [`parse`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::trace::{comm::Comm, host_facts::ParentProbe, stack::Module};

/// A STACK record: frames name modules by the ids of earlier MODULE records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordedStack {
    pub time_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub owner: u32,
    pub truncated: bool,
    /// (module id, file offset), innermost first.
    pub frames: Vec<(u32, u64)>,
}

/// Userspace record kinds, above every kernel kind (`reaper_trace_common::kind`).
pub mod kind {
    /// What /proc said of a parent when one of its exits became overdue
    /// (JSON after the header).
    pub const PROBE: u32 = 0x1000;
    /// The kernel's loss counter changed: the u64 total after the header,
    /// then the u64 time of the previous read (absent in older recordings):
    /// the losses happened between that read and the header's time.
    pub const LOST: u32 = 0x1001;
    /// A cgroup v2 id's path: the id as u64, then the path's UTF-8 bytes.
    pub const CGROUP: u32 = 0x1002;
    /// A module user stacks refer to, once, before the first: its id (u32),
    /// build id length (u32), size (u64) and modification time (i64) when
    /// it has no build id (0, 0 otherwise), the build id, then the path's
    /// UTF-8 bytes.
    pub const MODULE: u32 = 0x1003;
    /// An unwound user stack: tid, owner (`reaper_trace_common::stack_owner`),
    /// truncated (0/1) and frame count (u32 each), then per frame the
    /// module id (u32) and file offset (u64). The header's time is the
    /// stack's, its tgid the process's.
    pub const STACK: u32 = 0x1004;
    /// The name of a process that sent a signal without being followed
    /// (the kernel kept it in its `SENDERS` map): the comm's bytes. The
    /// header's time and tgid are the signal record's, which it precedes.
    pub const SENDER: u32 = 0x1005;
    /// As the trace ended, /proc showed that the exited process `tgid`
    /// (the header's) was no longer a zombie, though neither its reap nor
    /// its free had been seen (the kernel may run a free long after the
    /// reap). No payload.
    pub const GONE: u32 = 0x1006;
    /// /proc showed the exited process `tgid` still a zombie at the
    /// header's time, as it became overdue. No payload.
    pub const ZOMBIE: u32 = 0x1007;
    /// The user stack of a thread of a probed parent, just before its
    /// `PROBE` record: the `STACK` payload, owner 0 (the header's tgid is
    /// the parent). Older readers skip it: their report then shows the
    /// threads' system calls without the lines.
    pub const THREAD_STACK: u32 = 0x1008;
}

/// The most frames a STACK record keeps: the unwinder's own limit
/// (`host::unwind::MAX_FRAMES`). A record claiming more is from no
/// reaper-trace: its first frames are kept, marked truncated, so that a
/// crafted file cannot make every process hold a huge stack.
const MAX_FRAMES: usize = 64;
/// The longest path a MODULE or CGROUP record may name (`PATH_MAX`), and
/// the longest build id (GNU's are 20 bytes): longer ones are from no
/// reaper-trace, and are skipped rather than kept.
pub const MAX_PATH: usize = 4096;
const MAX_BUILD_ID: usize = 64;

const HEADER_LEN: usize = 24;

/// A userspace record, decoded.
#[derive(Debug, PartialEq)]
pub enum UserRecord {
    Probe {
        tgid: u32,
        probe: ParentProbe,
    },
    Lost {
        time_ns: u64,
        total: u64,
        /// The previous read of the counters (absent in older recordings).
        since_ns: Option<u64>,
    },
    Cgroup {
        id: u64,
        path: String,
    },
    Module {
        id: u32,
        module: Module,
    },
    Stack(RecordedStack),
    /// A probed thread's user stack (`owner` 0).
    ThreadStack(RecordedStack),
    Sender {
        time_ns: u64,
        tgid: u32,
        comm: Comm,
    },
    Gone {
        time_ns: u64,
        tgid: u32,
    },
    Zombie {
        time_ns: u64,
        tgid: u32,
    },
    /// A userspace kind this build does not know (a newer writer's).
    Unknown(u32),
}

fn encode(kind: u32, time_ns: u64, tgid: u32, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len() + 8);
    out.put_u32_le(kind);
    out.put_u32_le(payload.len() as u32);
    out.put_u64_le(time_ns);
    out.put_u32_le(tgid);
    out.put_u32_le(0);
    out.put_slice(payload);
    // Every record is a multiple of 8 bytes, like the kernel's.
    out.put_bytes(0, out.len().next_multiple_of(8) - out.len());
    out.freeze()
}

/// The `PROBE` record for what /proc said of `tgid` at `time_ns`.
pub fn probe(time_ns: u64, tgid: u32, probe: &ParentProbe) -> Bytes {
    let json = serde_json::to_vec(probe).expect("a probe serialises");
    encode(kind::PROBE, time_ns, tgid, &json)
}

/// The `LOST` record for the kernel's loss total at `time_ns`, grown since
/// the read at `since_ns`.
pub fn lost(time_ns: u64, total: u64, since_ns: u64) -> Bytes {
    let mut payload = [0u8; 16];
    payload[..8].copy_from_slice(&total.to_le_bytes());
    payload[8..].copy_from_slice(&since_ns.to_le_bytes());
    encode(kind::LOST, time_ns, 0, &payload)
}

/// The `CGROUP` record naming cgroup `id`.
pub fn cgroup(time_ns: u64, id: u64, path: &str) -> Bytes {
    let mut payload = Vec::with_capacity(8 + path.len());
    payload.extend_from_slice(&id.to_le_bytes());
    payload.extend_from_slice(path.as_bytes());
    encode(kind::CGROUP, time_ns, 0, &payload)
}

/// The `SENDER` record naming `tgid`, which sent the signal recorded at
/// `time_ns`.
pub fn sender(time_ns: u64, tgid: u32, comm: &Comm) -> Bytes {
    encode(kind::SENDER, time_ns, tgid, comm.as_bytes())
}

/// The `GONE` record: `tgid` was no longer a zombie at `time_ns`.
pub fn gone(time_ns: u64, tgid: u32) -> Bytes {
    encode(kind::GONE, time_ns, tgid, &[])
}

/// The `ZOMBIE` record: `tgid` was still a zombie at `time_ns`.
pub fn zombie(time_ns: u64, tgid: u32) -> Bytes {
    encode(kind::ZOMBIE, time_ns, tgid, &[])
}

/// The `MODULE` record giving `module` the id `id`.
pub fn module(time_ns: u64, id: u32, module: &Module) -> Bytes {
    let build_id = module.build_id.as_deref().unwrap_or_default();
    let mut payload = Vec::with_capacity(8 + build_id.len() + module.path.len());
    payload.extend_from_slice(&id.to_le_bytes());
    payload.extend_from_slice(&(build_id.len() as u32).to_le_bytes());
    let (size, mtime) = module.stamp.unwrap_or_default();
    payload.extend_from_slice(&size.to_le_bytes());
    payload.extend_from_slice(&mtime.to_le_bytes());
    payload.extend_from_slice(build_id);
    payload.extend_from_slice(module.path.as_bytes());
    encode(kind::MODULE, time_ns, 0, &payload)
}

/// The `STACK` record of `stack`.
pub fn stack(stack: &RecordedStack) -> Bytes {
    stack_of_kind(kind::STACK, stack)
}

/// The `THREAD_STACK` record of a probed thread's `stack`.
pub fn thread_stack(stack: &RecordedStack) -> Bytes {
    stack_of_kind(kind::THREAD_STACK, stack)
}

fn stack_of_kind(kind: u32, stack: &RecordedStack) -> Bytes {
    let mut payload = Vec::with_capacity(16 + 12 * stack.frames.len());
    for word in [
        stack.tid,
        stack.owner,
        stack.truncated as u32,
        stack.frames.len() as u32,
    ] {
        payload.extend_from_slice(&word.to_le_bytes());
    }
    for (module, offset) in &stack.frames {
        payload.extend_from_slice(&module.to_le_bytes());
        payload.extend_from_slice(&offset.to_le_bytes());
    }
    encode(kind, stack.time_ns, stack.tgid, &payload)
}

fn parse_module(mut payload: &[u8]) -> Option<UserRecord> {
    if payload.remaining() < 24 {
        return None;
    }
    let id = payload.get_u32_le();
    let id_len = payload.get_u32_le() as usize;
    let (size, mtime) = (payload.get_u64_le(), payload.get_i64_le());
    let stamp = (size, mtime) != (0, 0);
    if payload.remaining() < id_len || id_len > MAX_BUILD_ID {
        return None;
    }
    let build_id = (id_len > 0).then(|| payload[..id_len].to_vec());
    let path = &payload[id_len..];
    if path.len() > MAX_PATH {
        return None;
    }
    let path = std::str::from_utf8(path).ok()?.to_owned();
    Some(UserRecord::Module {
        id,
        module: Module {
            path,
            build_id,
            stamp: stamp.then_some((size, mtime)),
        },
    })
}

fn parse_stack(time_ns: u64, tgid: u32, mut payload: &[u8]) -> Option<RecordedStack> {
    if payload.remaining() < 16 {
        return None;
    }
    let (tid, owner) = (payload.get_u32_le(), payload.get_u32_le());
    let truncated = payload.get_u32_le() != 0;
    let count = payload.get_u32_le() as usize;
    if payload.remaining() < count.saturating_mul(12) {
        return None;
    }
    let frames = (0..count.min(MAX_FRAMES))
        .map(|_| (payload.get_u32_le(), payload.get_u64_le()))
        .collect();
    Some(RecordedStack {
        time_ns,
        tgid,
        tid,
        owner,
        truncated: truncated || count > MAX_FRAMES,
        frames,
    })
}

/// Decodes `record` if it is a userspace record (`None` for the kernel's).
pub fn parse(record: &[u8]) -> Option<UserRecord> {
    let mut buf = record;
    if buf.remaining() < HEADER_LEN {
        return None;
    }
    let kind = buf.get_u32_le();
    if kind < kind::PROBE {
        return None;
    }
    let len = (buf.get_u32_le() as usize).min(record.len() - HEADER_LEN);
    let time_ns = buf.get_u64_le();
    let tgid = buf.get_u32_le();
    buf.advance(4);
    let mut payload = &buf[..len];
    Some(match kind {
        kind::PROBE => match serde_json::from_slice(payload) {
            Ok(probe) => UserRecord::Probe { tgid, probe },
            Err(_) => UserRecord::Unknown(kind),
        },
        kind::LOST if payload.remaining() >= 8 => UserRecord::Lost {
            time_ns,
            total: payload.get_u64_le(),
            since_ns: (payload.remaining() >= 8).then(|| payload.get_u64_le()),
        },
        kind::CGROUP if payload.remaining() >= 8 && payload.remaining() <= 8 + MAX_PATH => {
            let id = payload.get_u64_le();
            match std::str::from_utf8(payload) {
                Ok(path) => UserRecord::Cgroup {
                    id,
                    path: path.to_owned(),
                },
                Err(_) => UserRecord::Unknown(kind),
            }
        }
        kind::MODULE => parse_module(payload).unwrap_or(UserRecord::Unknown(kind)),
        kind::STACK => parse_stack(time_ns, tgid, payload)
            .map(UserRecord::Stack)
            .unwrap_or(UserRecord::Unknown(kind)),
        kind::THREAD_STACK => parse_stack(time_ns, tgid, payload)
            .map(UserRecord::ThreadStack)
            .unwrap_or(UserRecord::Unknown(kind)),
        kind::GONE => UserRecord::Gone { time_ns, tgid },
        kind::ZOMBIE => UserRecord::Zombie { time_ns, tgid },
        kind::SENDER if payload.len() <= 16 => {
            let mut comm = Comm::default();
            comm.0[..payload.len()].copy_from_slice(payload);
            UserRecord::Sender {
                time_ns,
                tgid,
                comm,
            }
        }
        other => UserRecord::Unknown(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::host_facts::ThreadProbe;

    #[test]
    fn round_trips_and_leaves_kernel_records_alone() {
        let p = ParentProbe {
            threads: vec![ThreadProbe::basic(7, "x", 'D', "pipe_read")],
            signalfd_sigchld: true,
            ..Default::default()
        };
        let bytes = probe(5, 7, &p);
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(parse(&bytes), Some(UserRecord::Probe { tgid: 7, probe: p }));
        assert_eq!(
            parse(&lost(9, 123, 4)),
            Some(UserRecord::Lost {
                time_ns: 9,
                total: 123,
                since_ns: Some(4)
            })
        );
        // Older writers gave the total alone.
        let old = encode(kind::LOST, 9, 0, &123u64.to_le_bytes());
        assert_eq!(
            parse(&old),
            Some(UserRecord::Lost {
                time_ns: 9,
                total: 123,
                since_ns: None
            })
        );
        assert_eq!(
            parse(&cgroup(9, 1 << 33 | 5, "/system.slice/a b.service")),
            Some(UserRecord::Cgroup {
                id: 1 << 33 | 5,
                path: "/system.slice/a b.service".into()
            })
        );
        let libc = Module {
            path: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
            build_id: Some(vec![0xab, 0xcd]),
            stamp: None,
        };
        let go = Module {
            path: "/opt/app".into(),
            build_id: None,
            stamp: Some((12345, 1_700_000_000)),
        };
        assert_eq!(
            parse(&module(9, 4, &go)),
            Some(UserRecord::Module { id: 4, module: go })
        );
        assert_eq!(
            parse(&module(9, 3, &libc)),
            Some(UserRecord::Module {
                id: 3,
                module: libc
            })
        );
        let unwound = RecordedStack {
            time_ns: 11,
            tgid: 7,
            tid: 8,
            owner: 1,
            truncated: true,
            frames: vec![(3, 0x1234), (4, 1 << 40)],
        };
        assert_eq!(parse(&stack(&unwound)), Some(UserRecord::Stack(unwound)));
        // A frame count larger than the record is refused, not trusted.
        let mut lying = stack(&RecordedStack {
            frames: vec![],
            ..Default::default()
        })
        .to_vec();
        lying[HEADER_LEN + 12] = 200;
        assert_eq!(parse(&lying), Some(UserRecord::Unknown(kind::STACK)));
        let mut kernel = vec![0u8; 32];
        kernel[0] = 3;
        assert_eq!(parse(&kernel), None);
        assert_eq!(parse(&[0u8; 8]), None);
        let future = encode(0x1fff, 0, 0, b"");
        assert_eq!(parse(&future), Some(UserRecord::Unknown(0x1fff)));
    }

    #[test]
    fn a_senders_name_round_trips_and_a_long_one_is_refused() {
        for name in ["runc", "", "fifteen-chars-x"] {
            let comm = Comm::from_str_lossy(name);
            assert_eq!(
                parse(&sender(42, 7, &comm)),
                Some(UserRecord::Sender {
                    time_ns: 42,
                    tgid: 7,
                    comm
                })
            );
        }
        let long = encode(kind::SENDER, 42, 7, &[b'a'; 17]);
        assert_eq!(parse(&long), Some(UserRecord::Unknown(kind::SENDER)));
        assert_eq!(
            parse(&zombie(42, 7)),
            Some(UserRecord::Zombie {
                time_ns: 42,
                tgid: 7
            })
        );
        assert_eq!(
            parse(&gone(42, 7)),
            Some(UserRecord::Gone {
                time_ns: 42,
                tgid: 7
            })
        );
    }

    #[test]
    fn oversized_names_and_stacks_are_bounded() {
        let long = "/".repeat(MAX_PATH + 1);
        let m = Module {
            path: long.clone(),
            build_id: None,
            stamp: Some((1, 1)),
        };
        assert_eq!(
            parse(&module(1, 2, &m)),
            Some(UserRecord::Unknown(kind::MODULE))
        );
        assert_eq!(
            parse(&cgroup(1, 2, &long)),
            Some(UserRecord::Unknown(kind::CGROUP))
        );
        let fits = Module {
            path: "/".repeat(MAX_PATH),
            ..m
        };
        assert!(matches!(
            parse(&module(1, 2, &fits)),
            Some(UserRecord::Module { .. })
        ));
        let deep = RecordedStack {
            time_ns: 1,
            tgid: 2,
            tid: 2,
            owner: 1,
            truncated: false,
            frames: vec![(0, 0); MAX_FRAMES + 10],
        };
        match parse(&stack(&deep)) {
            Some(UserRecord::Stack(s)) => {
                assert_eq!(s.frames.len(), MAX_FRAMES);
                assert!(s.truncated);
            }
            other => panic!("{other:?}"),
        }
    }
}
