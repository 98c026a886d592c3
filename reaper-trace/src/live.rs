//! `reaper-trace live`: stream decoded events as they happen.

use std::{
    collections::{HashSet, VecDeque},
    io::{BufWriter, Write},
    os::fd::{AsRawFd, RawFd},
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
    procfs, render, report,
    totals::{ForkFailures, Totals},
};

/// How long to wait, once the traced command's tree is gone, for the last
/// `free` events (they trail the reap by an RCU grace period).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How long after a followed process's last free its tgid stays in the
/// kernel's follow map (RCU grace periods take ~10-20 ms here).
const UNFOLLOW_DELAY_NS: u64 = 1_000_000_000;

#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub json: bool,
    /// Print every event, not only findings.
    pub show_events: bool,
    /// An exit unreaped for longer than this is reported.
    pub threshold_ns: u64,
    pub pids: Vec<u32>,
    pub comm: Option<String>,
    pub command: Vec<String>,
    pub ringbuf_bytes: u32,
}

/// The ring buffer's fd, owned by the `Tracer`, for `AsyncFd`.
struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Where events go: the analyzer, and stdout.
struct Output {
    json: bool,
    show_events: bool,
    analyzer: Analyzer,
    clock: ClockRef,
    out: BufWriter<std::io::Stdout>,
    totals: Totals,
    /// Tasks that exited and have not been freed yet.
    unfreed: HashSet<u32>,
    /// Followed processes that are gone, with when to stop following them.
    /// Not at once: RCU may run a thread's free after its leader's.
    to_unfollow: VecDeque<(u32, u64)>,
}

impl Output {
    fn record(&mut self, bytes: &[u8]) {
        match decode(bytes) {
            Ok(event) => self.event(&event),
            Err(_) => self.totals.undecodable += 1,
        }
    }

    fn event(&mut self, event: &Event) {
        self.totals.count(event.data.kind_name());
        match &event.data {
            EventData::Exit(_) => {
                self.unfreed.insert(event.tid);
            }
            EventData::Free(_) => {
                self.unfreed.remove(&event.tid);
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
        if self.show_events {
            let line = if self.json {
                render::json_line(event)
            } else {
                render::text_line(event, &self.clock)
            };
            let _ = writeln!(self.out, "{line}");
        }
    }

    /// Prints what the analyzer noticed since last time.
    fn notices(&mut self) {
        for notice in self.analyzer.drain_notices() {
            let line = if self.json {
                report::notice_json(&notice)
            } else {
                report::notice_text(&notice)
            };
            let _ = writeln!(self.out, "{line}");
        }
    }

    /// Reads every record the ring buffer holds, then flushes.
    fn drain(&mut self, tracer: &mut Tracer) {
        while let Some(item) = tracer.events.next() {
            self.record(&item);
        }
        self.notices();
        let _ = self.out.flush();
    }
}

/// Runs until Ctrl-C/SIGTERM or, with a command, until its tree is gone.
/// Returns the process exit code.
pub async fn run(options: LiveOptions) -> anyhow::Result<i32> {
    let follow = follow_spec(&options)?;
    let has_command = !options.command.is_empty();
    if has_command {
        command::become_subreaper().context("becoming a child subreaper")?;
    }
    let mut tracer = Tracer::start(&TracerOptions {
        follow: follow.clone(),
        ringbuf_bytes: options.ringbuf_bytes,
    })?;
    let clock = ClockRef::now();

    let mut reaper = None;
    let mut command_pid = None;
    if has_command {
        let mut child = command::spawn_gated(&options.command)?;
        tracer.follow(child.pid)?;
        reaper = Some(command::spawn_reaper());
        child.release().context("starting the command")?;
        command_pid = Some(child.pid);
    }
    let scope = match (&follow, command_pid) {
        (None, _) => "the whole system".to_owned(),
        (Some(_), Some(pid)) => format!(
            "command {} (pid {pid}) and its descendants",
            crate::escape::escape(&options.command.join(" "))
        ),
        (Some(f), None) => describe_follow(f),
    };
    eprintln!(
        "reaper-trace: tracing {scope}; {} hooks attached; Ctrl-C to stop",
        tracer.hooks.len()
    );

    // SAFETY: the fd belongs to `tracer`, which outlives `ring` (declared
    // later, dropped first) and never closes or replaces it meanwhile.
    let ring = unsafe {
        AsyncFd::register_with_interest(RingFd(tracer.events_fd()), tokio::io::Interest::READABLE)
    }
    .map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut analyzer = Analyzer::new(options.threshold_ns);
    analyzer.seed(&seed_processes(follow.as_ref()));
    let mut output = Output {
        json: options.json,
        show_events: options.show_events,
        analyzer,
        clock,
        out: BufWriter::new(std::io::stdout()),
        totals: Totals::default(),
        unfreed: HashSet::new(),
        to_unfollow: VecDeque::new(),
    };
    let mut command_status = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut reported_lost = 0;

    loop {
        tokio::select! {
            guard = ring.readable() => {
                let mut guard = guard.context("ring buffer")?;
                output.drain(&mut tracer);
                guard.clear_ready();
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            event = recv(&mut reaper) => match event {
                Some(ReaperEvent::Reaped(r)) if Some(r.pid) == command_pid => command_status = Some(r.status),
                Some(ReaperEvent::Reaped(_)) => {}
                Some(ReaperEvent::Drained) | None => {
                    reaper = None;
                    drain_deadline = Some(Instant::now() + DRAIN_GRACE);
                }
            },
            _ = tick.tick() => {
                output.drain(&mut tracer);
                let now = clock::monotonic_ns();
                while let Some(&(tgid, due)) = output.to_unfollow.front() && due <= now {
                    tracer.unfollow(tgid);
                    output.to_unfollow.pop_front();
                }
                output.analyzer.tick(now, &mut procfs::probe_parent);
                output.notices();
                let lost: u64 = tracer.lost().iter().sum();
                output.analyzer.set_lost(lost);
                if lost > reported_lost {
                    eprintln!("reaper-trace: warning: {} events lost so far (ring buffer full); raise --ringbuf-size", lost);
                    reported_lost = lost;
                }
                if let Some(deadline) = drain_deadline
                    && (output.unfreed.is_empty() || Instant::now() >= deadline)
                {
                    break;
                }
            }
        }
    }

    output.drain(&mut tracer);
    let lost = tracer.lost();
    output.totals.set_lost(&lost);
    output.totals.fork_failures = tracer
        .fork_failures()
        .into_iter()
        .map(|(key, count)| ForkFailures {
            tgid: key.tgid,
            errno: key.errno,
            count,
        })
        .collect();
    let mut analyzer = std::mem::replace(&mut output.analyzer, Analyzer::new(0));
    analyzer.set_lost(lost.iter().sum());
    let report = analyzer.finish(clock::monotonic_ns());
    let rendered = if options.json {
        report::json(&report)
    } else {
        report::text(&report)
    };
    writeln!(output.out, "{}", rendered.trim_end())?;
    let exit_code = command_status.map(command::exit_code).unwrap_or(0);
    if options.json {
        let mut totals = serde_json::to_value(&output.totals)?;
        totals["type"] = "totals".into();
        if let Some(status) = command_status {
            totals["command_exit_code"] = command::exit_code(status).into();
        }
        writeln!(output.out, "{totals}")?;
    } else {
        write!(output.out, "{}", output.totals.text())?;
        if let Some(status) = command_status {
            writeln!(
                output.out,
                "command exit code: {}",
                command::exit_code(status)
            )?;
        }
    }
    output.out.flush()?;
    Ok(exit_code)
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
