//! Records the tracer itself adds to a recording, beside the kernel's: what
//! /proc said of a parent (`PROBE`), a change of the kernel's loss counter
//! (`LOST`), and the path of a cgroup id the first time it is seen
//! (`CGROUP`), so that `report` names containers as `live` did. They share the kernel records' 24-byte header layout (kind,
//! payload length, time, tgid, 0) with kind numbers the kernel never uses,
//! so one framing carries both. The one codec for them: live writes with
//! [`probe`] and [`lost`], replay reads with [`parse`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::trace::host_facts::ParentProbe;

/// Userspace record kinds, above every kernel kind (`reaper_trace_common::kind`).
pub mod kind {
    /// What /proc said of a parent when one of its exits became overdue
    /// (JSON after the header).
    pub const PROBE: u32 = 0x1000;
    /// The kernel's loss counter changed: the u64 total after the header.
    pub const LOST: u32 = 0x1001;
    /// A cgroup v2 id's path: the id as u64, then the path's UTF-8 bytes.
    pub const CGROUP: u32 = 0x1002;
}

const HEADER_LEN: usize = 24;

/// A userspace record, decoded.
#[derive(Debug, PartialEq)]
pub enum UserRecord {
    Probe {
        tgid: u32,
        probe: ParentProbe,
    },
    Lost(u64),
    Cgroup {
        id: u64,
        path: String,
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

/// The `LOST` record for the kernel's loss total at `time_ns`.
pub fn lost(time_ns: u64, total: u64) -> Bytes {
    encode(kind::LOST, time_ns, 0, &total.to_le_bytes())
}

/// The `CGROUP` record naming cgroup `id`.
pub fn cgroup(time_ns: u64, id: u64, path: &str) -> Bytes {
    let mut payload = Vec::with_capacity(8 + path.len());
    payload.extend_from_slice(&id.to_le_bytes());
    payload.extend_from_slice(path.as_bytes());
    encode(kind::CGROUP, time_ns, 0, &payload)
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
    buf.advance(8);
    let tgid = buf.get_u32_le();
    buf.advance(4);
    let mut payload = &buf[..len];
    Some(match kind {
        kind::PROBE => match serde_json::from_slice(payload) {
            Ok(probe) => UserRecord::Probe { tgid, probe },
            Err(_) => UserRecord::Unknown(kind),
        },
        kind::LOST if payload.remaining() >= 8 => UserRecord::Lost(payload.get_u64_le()),
        kind::CGROUP if payload.remaining() >= 8 => {
            let id = payload.get_u64_le();
            match std::str::from_utf8(payload) {
                Ok(path) => UserRecord::Cgroup {
                    id,
                    path: path.to_owned(),
                },
                Err(_) => UserRecord::Unknown(kind),
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
            threads: vec![ThreadProbe {
                tid: 7,
                comm: "x".into(),
                state: 'D',
                wchan: "pipe_read".into(),
            }],
            signalfd_sigchld: true,
            ..Default::default()
        };
        let bytes = probe(5, 7, &p);
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(parse(&bytes), Some(UserRecord::Probe { tgid: 7, probe: p }));
        assert_eq!(parse(&lost(9, 123)), Some(UserRecord::Lost(123)));
        assert_eq!(
            parse(&cgroup(9, 1 << 33 | 5, "/system.slice/a b.service")),
            Some(UserRecord::Cgroup {
                id: 1 << 33 | 5,
                path: "/system.slice/a b.service".into()
            })
        );
        let mut kernel = vec![0u8; 32];
        kernel[0] = 3;
        assert_eq!(parse(&kernel), None);
        assert_eq!(parse(&[0u8; 8]), None);
        let future = encode(0x1fff, 0, 0, b"");
        assert_eq!(parse(&future), Some(UserRecord::Unknown(0x1fff)));
    }
}
