//! `reaper-trace report`: a recording through the same analysis as live.

use std::io::Read;

use crate::{
    analysis::{Analyzer, ParentProbe, Report, SeedProcess},
    host::procfs,
    recording::{Item, Meta, Reader, RecordingError, Trailer, format::user_kind},
    trace::comm::Comm,
    trace::decode::{decode, peek_kind},
    trace::follow::Follow,
};

/// What a replay found besides the report.
#[derive(Debug)]
pub struct Replay {
    pub meta: Meta,
    pub report: Report,
    pub trailer: Option<Trailer>,
    /// Where the file stops, when it has no trailer.
    pub truncated_at: Option<u64>,
    pub records: u64,
    /// Records this build could not decode (a newer kind, say).
    pub skipped: u64,
}

pub struct ReplayOptions {
    pub threshold_ns: u64,
    pub pids: Vec<u32>,
    pub comm: Option<String>,
}

/// Reads a whole recording through the analyzer. Memory is bounded by one
/// block plus the lifecycles in flight.
pub fn replay(input: impl Read, options: &ReplayOptions) -> Result<Replay, RecordingError> {
    let (mut reader, meta) = Reader::open(input)?;
    let mut follow = follow(&meta, options);
    let mut analyzer = Analyzer::new(options.threshold_ns);
    let seeded: Vec<SeedProcess> = meta
        .seed
        .iter()
        .map(|s| SeedProcess {
            pid: s.pid,
            ppid: s.ppid,
            comm: Comm::from_str_lossy(&s.comm),
            zombie: s.zombie,
        })
        .collect();
    analyzer.seed(&seeded);
    let (mut records, mut skipped, mut last_ns) = (0u64, 0u64, 0u64);
    let (mut trailer, mut truncated_at) = (None, None);
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Block => {
                for record in reader.records() {
                    records += 1;
                    match user_record(record) {
                        Some((user_kind::PROBE, tgid, payload)) => {
                            if let Ok(probe) = serde_json::from_slice::<ParentProbe>(payload) {
                                analyzer.attach_probe(tgid, probe);
                            }
                        }
                        Some((user_kind::LOST, _, payload)) if payload.len() >= 8 => {
                            analyzer.set_lost(u64::from_le_bytes(
                                payload[..8].try_into().expect("8 bytes"),
                            ));
                        }
                        Some(_) => skipped += 1,
                        None => match decode(record) {
                            Ok(event) => {
                                last_ns = last_ns.max(event.time_ns);
                                if follow.as_mut().is_none_or(|f| f.admit(&event)) {
                                    analyzer.on_event(&event);
                                }
                            }
                            Err(_) => skipped += 1,
                        },
                    }
                }
                analyzer.drain_notices();
            }
            Item::Trailer(t) => trailer = Some(t),
            Item::Truncated { at } => truncated_at = Some(at),
        }
    }
    let end_ns = match &trailer {
        Some(t) => {
            analyzer.set_lost(t.lost);
            t.ended_ns
        }
        None => last_ns,
    };
    let report = analyzer.finish(end_ns);
    Ok(Replay {
        meta,
        report,
        trailer,
        truncated_at,
        records,
        skipped,
    })
}

/// A userspace record's (kind, tgid, payload), or `None` for a kernel one.
fn user_record(record: &[u8]) -> Option<(u32, u32, &[u8])> {
    if record.len() < 24 || peek_kind(record).is_ok() {
        return None;
    }
    let word = |at: usize| {
        u32::from_le_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]])
    };
    let kind = word(0);
    if kind < user_kind::PROBE {
        return None;
    }
    let len = (word(4) as usize).min(record.len() - 24);
    Some((kind, word(16), &record[24..24 + len]))
}

fn follow(meta: &Meta, options: &ReplayOptions) -> Option<Follow> {
    if options.pids.is_empty() && options.comm.is_none() {
        return None;
    }
    let procs: Vec<procfs::ProcStat> = meta
        .seed
        .iter()
        .map(|s| procfs::ProcStat {
            pid: s.pid,
            comm: s.comm.clone(),
            state: if s.zombie { 'Z' } else { 'S' },
            ppid: s.ppid,
            start_ticks: 0,
        })
        .collect();
    let mut roots = options.pids.clone();
    if let Some(comm) = &options.comm {
        roots.extend(procs.iter().filter(|p| &p.comm == comm).map(|p| p.pid));
    }
    Some(Follow::new(
        procfs::with_descendants(&procs, &roots),
        options.comm.clone(),
    ))
}
