//! `reaper-trace live` and `record`: trace, analyse as events arrive, and
//! optionally write a recording that `report` reads later.

use std::{
    collections::{HashSet, VecDeque},
    io::{BufWriter, Write},
    os::fd::{AsRawFd, RawFd},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    time::Instant,
};

use crate::{
    analysis::{Analyzer, SeedProcess},
    clock::{self, ClockRef},
    comm::Comm,
    command::{self, ReaperEvent},
    decode::decode,
    event::{Event, EventData},
    kernel::{FollowSpec, SetupError, Tracer, TracerOptions},
    procfs,
    recording::{
        Meta, SeedEntry, Trailer,
        file::{Recorder, machine_meta},
        format::user_kind,
        writer::user_record,
    },
    render, report,
    totals::{ForkFailures, KIND_NAMES, Totals},
};

/// How long to wait, once the traced command's tree is gone, for the last
/// `free` events (they trail the reap by an RCU grace period).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How long after a followed process's last free its tgid stays in the
/// kernel's follow map (RCU grace periods take ~10-20 ms here).
const UNFOLLOW_DELAY_NS: u64 = 1_000_000_000;

/// What goes to stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// Events, findings and the report.
    Everything,
    /// Findings and the report.
    Findings,
    /// Nothing but the report (`record`, `check`).
    ReportOnly,
    /// Nothing at all: the caller uses the returned outcome.
    Silent,
}

/// What a run produced, for callers that decide the exit status themselves.
pub struct Outcome {
    /// The command's pid and wait status, when one was run (and reaped).
    pub command_pid: Option<u32>,
    pub command_status: Option<i32>,
    pub report: crate::analysis::Report,
    pub totals: Totals,
    /// Every event, when `capture` was asked for.
    pub events: Vec<Event>,
}

#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub json: bool,
    pub display: Display,
    /// An exit unreaped for longer than this is reported.
    pub threshold_ns: u64,
    pub pids: Vec<u32>,
    pub comm: Option<String>,
    pub command: Vec<String>,
    pub ringbuf_bytes: u32,
    /// Write a recording here.
    pub record: Option<PathBuf>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Once the command has exited, how long to wait for the rest of its
    /// tree before reporting.
    pub drain_timeout: Duration,
    /// Run the command as this (uid, gid), supplementary groups dropped.
    pub run_as: Option<(u32, u32)>,
    /// Keep every event in the outcome.
    pub capture: bool,
    /// Also trace per-thread events (thread forks, exits and frees).
    pub thread_events: bool,
}

/// The default ring buffer: room for about 100k records.
pub const DEFAULT_RINGBUF_BYTES: u32 = 8 << 20;

/// How long `-- CMD` runs wait for the rest of the tree once CMD exits.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for LiveOptions {
    /// The whole system, every event as text, the command line's defaults.
    fn default() -> Self {
        LiveOptions {
            json: false,
            display: Display::Everything,
            threshold_ns: 1_000_000_000,
            pids: Vec::new(),
            comm: None,
            command: Vec::new(),
            ringbuf_bytes: DEFAULT_RINGBUF_BYTES,
            record: None,
            duration: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            run_as: None,
            capture: false,
            thread_events: false,
        }
    }
}

/// The ring buffer's fd, owned by the `Tracer`, for `AsyncFd`.
struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Where each record goes: the recording, the analyzer, and stdout.
struct Sink {
    json: bool,
    display: Display,
    analyzer: Analyzer,
    recorder: Option<Recorder>,
    clock: ClockRef,
    out: BufWriter<std::io::Stdout>,
    totals: Totals,
    /// Processes that exited and have not been freed yet.
    unfreed: HashSet<u32>,
    /// Followed processes that are gone, with when to stop following them.
    /// Not at once: RCU may run a thread's free after its leader's.
    to_unfollow: VecDeque<(u32, u64)>,
    lost: u64,
    captured: Option<Vec<Event>>,
    /// Reused for every rendered line.
    line: String,
}

impl Sink {
    fn record(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if let Some(recorder) = &mut self.recorder {
            recorder.push(bytes)?;
        }
        match decode(bytes) {
            Ok(event) => self.event(&event),
            Err(_) => self.totals.undecodable += 1,
        }
        Ok(())
    }

    fn event(&mut self, event: &Event) {
        self.totals.count(event.data.kind_name());
        match &event.data {
            EventData::Exit(x) if x.group_dead => {
                self.unfreed.insert(event.tgid);
            }
            EventData::Free(_) if event.tid == event.tgid => {
                self.unfreed.remove(&event.tgid);
                if event.tid == event.tgid {
                    self.to_unfollow
                        .push_back((event.tgid, event.time_ns + UNFOLLOW_DELAY_NS));
                }
            }
            EventData::Fork(f) if !f.is_thread => {
                // The pid was reused by a new followed process: keep it.
                self.to_unfollow.retain(|(tgid, _)| *tgid != f.child_tgid);
            }
            _ => {}
        }
        self.analyzer.on_event(event);
        if let Some(captured) = &mut self.captured {
            captured.push(event.clone());
        }
        if self.display == Display::Everything {
            self.line.clear();
            if self.json {
                self.line.push_str(&render::json_line(event));
            } else {
                render::write_text_line(&mut self.line, event, &self.clock);
            }
            self.line.push('\n');
            let _ = self.out.write_all(self.line.as_bytes());
        }
    }

    /// Prints what the analyzer noticed since last time.
    fn notices(&mut self) {
        for notice in self.analyzer.drain_notices() {
            if matches!(self.display, Display::ReportOnly | Display::Silent) {
                continue;
            }
            let line = if self.json {
                report::notice_json(&notice)
            } else {
                report::notice_text(&notice)
            };
            let _ = writeln!(self.out, "{line}");
        }
    }

    /// Reads every record the ring buffer holds, then flushes.
    fn drain(&mut self, tracer: &mut Tracer) -> anyhow::Result<()> {
        while let Some(item) = tracer.events.next() {
            self.record(&item)?;
        }
        self.notices();
        let _ = self.out.flush();
        Ok(())
    }

    /// Once a tick: losses, unfollowing, overdue exits, the recording's flush.
    fn tick(&mut self, tracer: &mut Tracer) -> anyhow::Result<()> {
        let now = clock::monotonic_ns();
        while let Some(&(tgid, due)) = self.to_unfollow.front()
            && due <= now
        {
            tracer.unfollow(tgid);
            self.to_unfollow.pop_front();
        }
        let lost: u64 = tracer.lost().iter().sum();
        if lost != self.lost {
            eprintln!(
                "reaper-trace: warning: {lost} events lost so far (ring buffer full); raise --ringbuf-size"
            );
            self.lost = lost;
            self.analyzer.set_lost(lost);
            if let Some(recorder) = &mut self.recorder {
                recorder.push(&user_record(user_kind::LOST, now, 0, &lost.to_le_bytes()))?;
            }
        }
        let Sink {
            analyzer, recorder, ..
        } = self;
        let mut write_error = None;
        analyzer.tick(now, &mut |pid| {
            let probe = procfs::probe_parent(pid)?;
            if let Some(recorder) = recorder.as_mut() {
                let json = serde_json::to_vec(&probe).unwrap_or_default();
                if let Err(e) = recorder.push(&user_record(user_kind::PROBE, now, pid, &json)) {
                    write_error = Some(e);
                }
            }
            Some(probe)
        });
        if let Some(e) = write_error {
            return Err(e.into());
        }
        self.notices();
        if let Some(recorder) = &mut self.recorder {
            recorder.tick()?;
        }
        Ok(())
    }
}

/// Runs until Ctrl-C/SIGTERM, `--duration`, or, with a command, until its
/// tree is gone. Returns the process exit code.
pub async fn run(options: LiveOptions) -> anyhow::Result<Outcome> {
    let follow = follow_spec(&options)?;
    let has_command = !options.command.is_empty();
    if has_command {
        command::become_subreaper().context("becoming a child subreaper")?;
    }
    let mut tracer = Tracer::start(&TracerOptions {
        follow: follow.clone(),
        ringbuf_bytes: options.ringbuf_bytes,
        // A sixteenth of the buffer: woken well before it fills, rarely
        // otherwise; the tick below reads whatever is there meanwhile.
        wakeup_bytes: options.ringbuf_bytes / 16,
        thread_events: options.thread_events,
        // Until `--probe-log` is wired to `LiveOptions`.
        probe_log: false,
    })?;
    let clock = ClockRef::now();
    // Read /proc again now that the probes run (follow_spec read it before,
    // to know what to follow): a zombie reaped in between must not be
    // seeded, and one that appears from here on is traced anyway.
    let seed = seed_processes(follow.as_ref());

    let mut reaper = None;
    let mut command_pid = None;
    let mut gated = None;
    if has_command {
        let child = command::spawn_gated(&options.command, options.run_as)?;
        tracer.follow(child.pid)?;
        command_pid = Some(child.pid);
        gated = Some(child);
    }
    let scope = match (&follow, command_pid) {
        (None, _) => "the whole system".to_owned(),
        (Some(_), Some(pid)) => {
            format!(
                "command {} (pid {pid}) and its descendants",
                crate::escape::escape(&options.command.join(" "))
            )
        }
        (Some(f), None) => describe_follow(f),
    };
    let recorder = match &options.record {
        Some(path) => {
            let (kernel_release, boot_id, hostname) = machine_meta();
            let meta = Meta {
                abi_version: reaper_trace_common::ABI_VERSION,
                tool_version: env!("CARGO_PKG_VERSION").into(),
                kernel_release,
                boot_id,
                hostname,
                clock,
                hooks: tracer.hooks.clone(),
                scope: scope.clone(),
                seed: seed
                    .iter()
                    .map(|s| SeedEntry {
                        pid: s.pid,
                        ppid: s.ppid,
                        comm: String::from_utf8_lossy(s.comm.as_bytes()).into_owned(),
                        zombie: s.zombie,
                    })
                    .collect(),
            };
            Some(Recorder::create(path, &meta)?)
        }
        None => None,
    };
    if let Some(mut child) = gated {
        reaper = Some(command::spawn_reaper());
        child.release().context("starting the command")?;
    }
    if !options.capture {
        eprintln!(
            "reaper-trace: tracing {scope}; {} hooks attached; Ctrl-C to stop",
            tracer.hooks.len()
        );
    }

    // SAFETY: the fd belongs to `tracer`, which outlives `ring` (declared
    // later, dropped first) and never closes or replaces it meanwhile.
    let ring = unsafe {
        AsyncFd::register_with_interest(RingFd(tracer.events_fd()), tokio::io::Interest::READABLE)
    }
    .map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    // Reads the ring at least this often: the probes wake us only for batches.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut analyzer = Analyzer::new(options.threshold_ns);
    analyzer.seed(&seed);
    let mut sink = Sink {
        json: options.json,
        display: options.display,
        analyzer,
        recorder,
        clock,
        out: BufWriter::new(std::io::stdout()),
        totals: Totals::default(),
        unfreed: HashSet::new(),
        to_unfollow: VecDeque::new(),
        lost: 0,
        captured: options.capture.then(Vec::new),
        line: String::with_capacity(256),
    };
    let mut command_status = None;
    let mut drain_deadline: Option<Instant> = None;
    let stop_at = options.duration.map(|d| Instant::now() + d);

    loop {
        tokio::select! {
            guard = ring.readable() => {
                let mut guard = guard.context("ring buffer")?;
                sink.drain(&mut tracer)?;
                guard.clear_ready();
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            event = recv(&mut reaper) => match event {
                Some(ReaperEvent::Reaped(r)) if Some(r.pid) == command_pid => {
                    command_status = Some(r.status);
                    // The rest of the tree gets a bounded time to finish.
                    drain_deadline.get_or_insert(Instant::now() + options.drain_timeout);
                }
                Some(ReaperEvent::Reaped(_)) => {}
                Some(ReaperEvent::Drained) | None => {
                    reaper = None;
                    let grace = Instant::now() + DRAIN_GRACE;
                    drain_deadline = Some(drain_deadline.map_or(grace, |d| d.min(grace)));
                }
            },
            _ = tick.tick() => {
                sink.drain(&mut tracer)?;
                sink.tick(&mut tracer)?;
                if let Some(deadline) = drain_deadline
                    && ((reaper.is_none() && sink.unfreed.is_empty()) || Instant::now() >= deadline)
                {
                    break;
                }
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
            }
        }
    }

    sink.drain(&mut tracer)?;
    let lost = tracer.lost();
    sink.totals.set_lost(&lost);
    sink.totals.fork_failures = tracer
        .fork_failures()
        .into_iter()
        .map(|(key, count)| ForkFailures {
            tgid: key.tgid,
            errno: key.errno,
            count,
        })
        .collect();
    let end_ns = clock::monotonic_ns();
    let mut analyzer = std::mem::replace(&mut sink.analyzer, Analyzer::new(0));
    analyzer.set_lost(sink.totals.lost);
    let report = analyzer.finish(end_ns);
    if let Some(recorder) = sink.recorder.take() {
        let lost_by_kind = KIND_NAMES
            .iter()
            .zip(lost)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| ((*k).to_owned(), n))
            .collect();
        recorder.finish(Trailer {
            ended_ns: end_ns,
            lost: sink.totals.lost,
            lost_by_kind,
            ..Default::default()
        })?;
    }
    if !matches!(options.display, Display::Silent) {
        let rendered = if options.json {
            report::json(&report)
        } else {
            report::text(&report)
        };
        writeln!(sink.out, "{}", rendered.trim_end())?;
        if options.json {
            let mut totals = serde_json::to_value(&sink.totals)?;
            totals["type"] = "totals".into();
            if let Some(status) = command_status {
                totals["command_exit_code"] = command::exit_code(status).into();
            }
            writeln!(sink.out, "{totals}")?;
        } else {
            write!(sink.out, "{}", sink.totals.text())?;
            if let Some(status) = command_status {
                writeln!(
                    sink.out,
                    "command exit code: {}",
                    command::exit_code(status)
                )?;
            }
        }
    }
    sink.out.flush()?;
    let seen: u64 = sink.totals.events.values().sum();
    if !options.capture {
        eprintln!("reaper-trace: {seen} events, {} lost", sink.totals.lost);
    }
    if let Some(path) = &options.record {
        eprintln!("reaper-trace: recorded to {}", path.display());
    }
    Ok(Outcome {
        command_pid,
        command_status,
        report,
        events: sink.captured.take().unwrap_or_default(),
        totals: sink.totals,
    })
}

async fn recv(
    reaper: &mut Option<tokio::sync::mpsc::UnboundedReceiver<ReaperEvent>>,
) -> Option<ReaperEvent> {
    match reaper {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The processes to follow: the named pids and comm, with the descendants
/// they already have.
fn follow_spec(options: &LiveOptions) -> Result<Option<FollowSpec>, SetupError> {
    if options.pids.is_empty() && options.comm.is_none() && options.command.is_empty() {
        return Ok(None);
    }
    let procs = procfs::snapshot();
    let mut roots = Vec::new();
    for &pid in &options.pids {
        if !procs.iter().any(|p| p.pid == pid) {
            return Err(SetupError::NoSuchPid(pid));
        }
        roots.push(pid);
    }
    if let Some(comm) = &options.comm {
        roots.extend(procs.iter().filter(|p| &p.comm == comm).map(|p| p.pid));
    }
    Ok(Some(FollowSpec {
        pids: procfs::with_descendants(&procs, &roots),
        comm: options.comm.clone(),
    }))
}

fn describe_follow(f: &FollowSpec) -> String {
    let mut parts = Vec::new();
    if !f.pids.is_empty() {
        parts.push(format!(
            "{} process(es) and their descendants",
            f.pids.len()
        ));
    }
    if let Some(comm) = &f.comm {
        parts.push(format!("processes named {}", crate::escape::escape(comm)));
    }
    parts.join(" and ")
}

/// The processes and zombies that exist now, for the analyzer: all of them,
/// or only the followed ones.
fn seed_processes(follow: Option<&FollowSpec>) -> Vec<SeedProcess> {
    procfs::snapshot()
        .into_iter()
        .filter(|p| follow.is_none_or(|f| f.pids.contains(&p.pid)))
        .map(|p| SeedProcess {
            pid: p.pid,
            ppid: p.ppid,
            comm: Comm::from_str_lossy(&p.comm),
            zombie: p.state == 'Z',
        })
        .collect()
}
