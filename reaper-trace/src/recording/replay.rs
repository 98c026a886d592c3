//! Reading a recording back through the same analysis as live: `report`,
//! and the outputs that draw every lifecycle (the timeline) as visitors.

use std::io::Read;

use crate::{
    analysis::{Analyzer, Report, Verdict},
    recording::{
        Item, Meta, Reader, RecordingError, Trailer,
        stacks::ModuleTable,
        user_record::{self, UserRecord},
    },
    trace::{
        decode::decode_abi,
        event::Event,
        follow::{Follow, initial_pids},
        pidns::PidNamespaces,
        stack::Stack,
    },
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
    /// CLOCK_MONOTONIC ns when the trace ended (the trailer's, or the last
    /// record's in a truncated file).
    pub end_ns: u64,
}

pub struct ReplayOptions {
    pub threshold_ns: u64,
    pub pids: Vec<u32>,
    pub comm: Option<String>,
}

/// Why a replay stopped: the recording, or the output a visitor writes.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    #[error(
        "the recording's record ABI is version {found}, newer than the {} this reaper-trace reads; use a newer reaper-trace",
        reaper_trace_common::ABI_VERSION
    )]
    FutureAbi { found: u32 },
}

/// An output fed as the replay goes: each admitted event, then each
/// lifecycle's verdict as the analyzer reaches it.
pub trait Visitor {
    fn start(&mut self, _meta: &Meta) -> std::io::Result<()> {
        Ok(())
    }
    fn event(&mut self, _event: &Event) -> std::io::Result<()> {
        Ok(())
    }
    /// A process's exit, once per process (the analysis counted it).
    fn exit(&mut self, _event: &Event) -> std::io::Result<()> {
        Ok(())
    }
    /// A user stack of thread `tid`, for its next fork or SIGCHLD action
    /// change (`owner`, a `reaper_trace_common::stack_owner`).
    fn stack(&mut self, _tid: u32, _owner: u32, _stack: &Stack) -> std::io::Result<()> {
        Ok(())
    }
    /// The path of a cgroup id, before the first event in it.
    fn cgroup(&mut self, _id: u64, _path: &str) -> std::io::Result<()> {
        Ok(())
    }
    fn verdict(&mut self, _verdict: &Verdict) -> std::io::Result<()> {
        Ok(())
    }
}

/// The most bytes of cgroup paths a replay names cgroups with: far more
/// than any host's cgroups, and a bound on what a crafted file naming a
/// new cgroup in every record can make `report` hold.
pub const MAX_CGROUP_NAME_BYTES: usize = 16 << 20;

/// Only the report.
struct ReportOnly;
impl Visitor for ReportOnly {}

/// Reads a whole recording through the analyzer. Memory is bounded by one
/// block plus the lifecycles in flight.
pub fn replay(input: impl Read, options: &ReplayOptions) -> Result<Replay, ReplayError> {
    replay_with(input, options, &mut ReportOnly)
}

/// [`replay`], feeding `visitor` the events and verdicts.
pub fn replay_with(
    input: impl Read,
    options: &ReplayOptions,
    visitor: &mut dyn Visitor,
) -> Result<Replay, ReplayError> {
    let (mut reader, meta) = Reader::open(input)?;
    if meta.abi_version > reaper_trace_common::ABI_VERSION {
        return Err(ReplayError::FutureAbi {
            found: meta.abi_version,
        });
    }
    visitor.start(&meta)?;
    let mut analyzer = Analyzer::new(options.threshold_ns).with_verdicts();
    let mut pidns = PidNamespaces::default();
    let start_ns = meta.clock.monotonic_ns;
    let mut follow = None;
    if options.pids.is_empty() && options.comm.is_none() {
        // Each process becomes analysis state as it is read: no list of
        // them all (a recording may hold millions).
        reader.seeds(&mut |seed| {
            let one = std::slice::from_ref(&seed);
            analyzer.seed(one, start_ns);
            pidns.seed(one);
        })?;
    } else {
        // Following needs the whole tree to find descendants.
        let mut seeds = Vec::new();
        reader.seeds(&mut |seed| seeds.push(seed))?;
        follow = Some(Follow::new(
            initial_pids(&seeds, &options.pids, options.comm.as_deref()),
            options.comm.clone(),
        ));
        analyzer.seed(&seeds, start_ns);
        pidns.seed(&seeds);
    }
    let mut modules = ModuleTable::default();
    let (mut records, mut skipped, mut last_ns) = (0u64, 0u64, 0u64);
    let mut cgroup_bytes = 0;
    let (mut trailer, mut truncated_at) = (None, None);
    // Where the next loss window opens, when a LOST record does not say.
    let mut losses_read_ns = meta.clock.monotonic_ns;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Block => {
                for record in reader.records() {
                    records += 1;
                    match user_record::parse(record) {
                        Some(UserRecord::Probe { tgid, probe }) => {
                            analyzer.attach_probe(tgid, probe)
                        }
                        Some(UserRecord::Lost {
                            time_ns,
                            total,
                            since_ns,
                        }) => {
                            let since = since_ns.unwrap_or(losses_read_ns);
                            analyzer.losses_in(total, since, time_ns);
                            losses_read_ns = time_ns;
                        }
                        Some(UserRecord::Cgroup { id, path }) => {
                            // Names past the budget stay unnamed ids.
                            if cgroup_bytes + path.len() <= MAX_CGROUP_NAME_BYTES {
                                cgroup_bytes += path.len();
                                visitor.cgroup(id, &path)?;
                                analyzer.name_cgroup(id, &path);
                            }
                        }
                        Some(UserRecord::Module { id, module }) => modules.insert(id, module),
                        Some(UserRecord::Stack(recorded)) => {
                            if follow.as_ref().is_none_or(|f| f.is_followed(recorded.tgid)) {
                                let stack = modules.stack(&recorded);
                                visitor.stack(recorded.tid, recorded.owner, &stack)?;
                                analyzer.attach_stack(recorded.tid, recorded.owner, stack);
                            }
                        }
                        Some(UserRecord::Sender {
                            time_ns,
                            tgid,
                            comm,
                        }) => analyzer.name_sender(tgid, time_ns, comm),
                        Some(UserRecord::Gone { time_ns, tgid }) => {
                            analyzer.gone(tgid, time_ns);
                            for verdict in analyzer.drain_verdicts() {
                                visitor.verdict(&verdict)?;
                            }
                        }
                        Some(UserRecord::Zombie { time_ns, tgid }) => {
                            analyzer.zombie_seen(tgid, time_ns)
                        }
                        Some(UserRecord::Unknown(_)) => skipped += 1,
                        None => match decode_abi(record, meta.abi_version) {
                            Ok(mut event) => {
                                pidns.apply(&mut event);
                                last_ns = last_ns.max(event.time_ns);
                                if follow.as_mut().is_none_or(|f| f.admit(&event)) {
                                    let exits_before = analyzer.exits();
                                    analyzer.on_event(&event);
                                    visitor.event(&event)?;
                                    if analyzer.exits() > exits_before {
                                        visitor.exit(&event)?;
                                    }
                                    for verdict in analyzer.drain_verdicts() {
                                        visitor.verdict(&verdict)?;
                                    }
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
            analyzer.losses_in(t.lost, losses_read_ns, t.ended_ns);
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
        end_ns,
    })
}
