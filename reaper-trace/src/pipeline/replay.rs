//! Reading a recording back through the same analysis as live: `report`,
//! and the outputs that draw every lifecycle (the timeline) as visitors.

use std::io::Read;

use crate::{
    analysis::{Analyzer, Report},
    pipeline::{NoOutput, Pipeline, Visitor},
    recording::{
        Item, Meta, Reader, RecordingError, Trailer,
        stacks::ModuleTable,
        user_record::{self, UserRecord},
    },
    trace::{
        decode::decode_abi,
        follow::{Follow, initial_pids},
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

/// The most bytes of cgroup paths a replay names cgroups with: far more
/// than any host's cgroups, and a bound on what a crafted file naming a
/// new cgroup in every record can make `report` hold.
pub const MAX_CGROUP_NAME_BYTES: usize = 16 << 20;

/// Reads a whole recording through the analyzer. Memory is bounded by one
/// block plus the lifecycles in flight.
pub fn replay(input: impl Read, options: &ReplayOptions) -> Result<Replay, ReplayError> {
    replay_with(input, options, &mut NoOutput)
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
    let mut replayer = Replayer {
        pipeline: seeded_pipeline(&mut reader, &meta, options)?,
        abi_version: meta.abi_version,
        modules: ModuleTable::default(),
        thread_stacks: Vec::new(),
        records: 0,
        skipped: 0,
        last_ns: 0,
        cgroup_bytes: 0,
        losses_read_ns: meta.clock.monotonic_ns,
    };
    let (mut trailer, mut truncated_at) = (None, None);
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Block => {
                for record in reader.records() {
                    replayer.record(record, visitor)?;
                }
                // As live shows them after each drain of the ring. Frames
                // keep their module + offset: `report` names them once, in
                // the report.
                replayer.pipeline.notices(visitor, |_| {})?;
            }
            Item::Trailer(t) => trailer = Some(t),
            Item::Truncated { at } => truncated_at = Some(at),
        }
    }
    let mut analyzer = replayer.pipeline.into_analyzer();
    let end_ns = match &trailer {
        Some(t) => {
            analyzer.losses_in(t.lost, replayer.losses_read_ns, t.ended_ns);
            t.ended_ns
        }
        None => replayer.last_ns,
    };
    let report = analyzer.finish(end_ns);
    Ok(Replay {
        meta,
        report,
        trailer,
        truncated_at,
        records: replayer.records,
        skipped: replayer.skipped,
        end_ns,
    })
}

/// The hook that sees the wait calls' results: a recording made without it
/// (`--no-syscall-hooks`) has no wait records. A recording that lists no
/// hooks is taken to have had them all.
const WAIT_EXIT_HOOK: &str = "raw_tp/sys_exit";

/// The pipeline, seeded with the processes the recording starts with.
fn seeded_pipeline(
    reader: &mut Reader<impl Read>,
    meta: &Meta,
    options: &ReplayOptions,
) -> Result<Pipeline, ReplayError> {
    let mut analyzer = Analyzer::new(options.threshold_ns).with_verdicts();
    if !meta.hooks.is_empty() && !meta.hooks.iter().any(|h| h == WAIT_EXIT_HOOK) {
        analyzer = analyzer.without_wait_records();
    }
    let mut pipeline = Pipeline::new(analyzer);
    let start_ns = meta.clock.monotonic_ns;
    if options.pids.is_empty() && options.comm.is_none() {
        // Each process becomes analysis state as it is read: no list of
        // them all (a recording may hold millions).
        reader.seeds(&mut |seed| pipeline.seed(std::slice::from_ref(&seed), start_ns))?;
    } else {
        // Following needs the whole tree to find descendants.
        let mut seeds = Vec::new();
        reader.seeds(&mut |seed| seeds.push(seed))?;
        pipeline = pipeline.following(Follow::new(
            initial_pids(&seeds, &options.pids, options.comm.as_deref()),
            options.comm.clone(),
        ));
        pipeline.seed(&seeds, start_ns);
    }
    Ok(pipeline)
}

/// The most thread stacks held for the next `PROBE` record: a probe
/// unwinds 16 threads (`host::thread_stacks`), and a file with more comes
/// from no reaper-trace.
const MAX_PENDING_THREAD_STACKS: usize = 64;

/// A replay under way: the pipeline, and what the records said besides
/// events.
struct Replayer {
    pipeline: Pipeline,
    abi_version: u32,
    modules: ModuleTable,
    /// The user stacks of a probed parent's threads (tid, stack), which
    /// come just before its `PROBE` record; at most
    /// [`MAX_PENDING_THREAD_STACKS`].
    thread_stacks: Vec<(u32, Stack)>,
    records: u64,
    /// Records this build could not decode.
    skipped: u64,
    /// The latest event's time, for a truncated file's end.
    last_ns: u64,
    /// The bytes of cgroup names so far, against the budget.
    cgroup_bytes: usize,
    /// Where the next loss window opens, when a LOST record does not say.
    losses_read_ns: u64,
}

impl Replayer {
    /// One record, as the live run handed it over.
    fn record(&mut self, record: &[u8], visitor: &mut dyn Visitor) -> Result<(), ReplayError> {
        self.records += 1;
        visitor.record(record);
        let pipeline = &mut self.pipeline;
        match user_record::parse(record) {
            Some(UserRecord::Probe { tgid, mut probe }) => {
                let mut stacks = std::mem::take(&mut self.thread_stacks);
                for thread in &mut probe.threads {
                    if let Some(at) = stacks.iter().position(|(tid, _)| *tid == thread.tid) {
                        thread.user_stack = Some(stacks.swap_remove(at).1);
                    }
                }
                pipeline.analyzer_mut().attach_probe(tgid, probe)
            }
            Some(UserRecord::ThreadStack(recorded)) => {
                // More than a probe ever has: from no reaper-trace.
                if self.thread_stacks.len() < MAX_PENDING_THREAD_STACKS {
                    let stack = self.modules.stack(&recorded);
                    self.thread_stacks.push((recorded.tid, stack));
                }
            }
            Some(UserRecord::Lost {
                time_ns,
                total,
                since_ns,
            }) => {
                let since = since_ns.unwrap_or(self.losses_read_ns);
                pipeline.analyzer_mut().losses_in(total, since, time_ns);
                self.losses_read_ns = time_ns;
            }
            Some(UserRecord::Cgroup { id, path }) => {
                // Names past the budget stay unnamed ids.
                if self.cgroup_bytes + path.len() <= MAX_CGROUP_NAME_BYTES {
                    self.cgroup_bytes += path.len();
                    pipeline.cgroup(id, &path, visitor)?;
                }
            }
            Some(UserRecord::Module { id, module }) => self.modules.insert(id, module),
            Some(UserRecord::Stack(recorded)) => {
                // Made only for a followed process.
                let modules = &self.modules;
                let stack = || (recorded.tid, recorded.owner, modules.stack(&recorded));
                pipeline.stack(recorded.tgid, stack, visitor)?;
            }
            Some(UserRecord::Sender {
                time_ns,
                tgid,
                comm,
            }) => pipeline.analyzer_mut().name_sender(tgid, time_ns, comm),
            Some(UserRecord::Gone { time_ns, tgid }) => pipeline.gone(tgid, time_ns, visitor)?,
            Some(UserRecord::Zombie { time_ns, tgid }) => {
                pipeline.analyzer_mut().zombie_seen(tgid, time_ns)
            }
            Some(UserRecord::Unknown(_)) => self.skipped += 1,
            None => match decode_abi(record, self.abi_version) {
                Ok(event) => {
                    self.last_ns = self.last_ns.max(event.time_ns);
                    pipeline.event(event, visitor)?;
                }
                Err(_) => self.skipped += 1,
            },
        }
        Ok(())
    }
}
