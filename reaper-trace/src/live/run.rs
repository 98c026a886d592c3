//! One live run: start the tracer and the command, read the ring buffer
//! until the run ends, then settle the analysis into a report.

use std::{
    io::Write,
    os::fd::{AsRawFd, OwnedFd, RawFd},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc::UnboundedReceiver,
    time::{Instant, Interval},
};

use super::{
    Emit, Interrupted, LiveOptions, Outcome, TraceOptions,
    metrics::{CgroupExpiry, LiveMetrics},
    outputs::{Capture, LiveOutputs},
    recording::Recording,
    setup::{self, Started},
    source::RingSource,
};
use crate::{
    analysis::Analyzer,
    host::{
        command::{self, ReaperEvent},
        priority,
    },
    kernel::Tracer,
    output::metrics::Metrics,
    pipeline::{Pipeline, Visitor},
    recording::{Trailer, file::RecorderError},
    trace::{clock, totals::ForkFailures},
};

/// How long to wait, once the traced command's tree is gone, for the last
/// `free` events (they trail the reap by an RCU grace period).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How many times the remaining tree is looked for and killed: a process
/// forking as it is killed leaves a child the next pass finds.
const KILL_PASSES: usize = 50;

/// Runs until SIGINT/SIGTERM/SIGHUP, `--duration`, or, with a command,
/// until its tree is gone. With a command, those signals are forwarded to it
/// (as timeout(1) and tini do) and the trace goes on while its tree ends,
/// for at most the drain timeout; what is left then is killed, so that
/// nothing the tool started runs on untraced.
pub async fn run(options: LiveOptions) -> anyhow::Result<Outcome> {
    let metrics = options.emit.metrics.then(Metrics::new);
    run_with(options, metrics).await
}

/// [`run`], feeding `metrics` (which the caller may be serving meanwhile).
pub async fn run_with(options: LiveOptions, metrics: Option<Metrics>) -> anyhow::Result<Outcome> {
    let LiveOptions { trace, emit } = options;
    let started = setup::start(&trace, emit.record.as_deref(), emit.record_force)?;
    // This thread reads the ring; the command, forked already, keeps the
    // scheduling it inherited.
    if !trace.normal_priority
        && let Some(line) = priority::raise().warning()
        && !emit.capture
    {
        eprintln!("{line}");
    }
    let mut run = Run::start(started, &trace, &emit, metrics)?;
    run.trace().await?;
    run.finish(&emit)
}

/// The ring buffer's fd, owned by the `Tracer`, for `AsyncFd`.
struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A run under way. Fields drop in order: the ring's registration before
/// the tracer that owns its fd, the command's tree guard before the tracer
/// stops tracing it.
struct Run {
    ring: AsyncFd<RingFd>,
    /// Reads the ring at least this often: the probes wake us only for batches.
    tick: Interval,
    sigint: Option<Signal>,
    sigterm: Option<Signal>,
    sighup: Option<Signal>,
    command: CommandControl,
    /// `--duration`'s end.
    stop_at: Option<Instant>,
    source: RingSource,
    tracer: Tracer,
}

impl Run {
    fn start(
        started: Started,
        trace: &TraceOptions,
        emit: &Emit,
        metrics: Option<Metrics>,
    ) -> anyhow::Result<Run> {
        let Started {
            tracer,
            clock,
            seed,
            scope,
            recorder,
            command: mut gated,
            cgroups,
        } = started;
        let mut command = CommandControl::new(gated.as_mut(), trace.drain_timeout);
        // Before saying we trace: a Ctrl-C from then on must stop us cleanly.
        // SIGHUP (an SSH session closing) stops as SIGTERM does.
        let sigint = stop_signal(SignalKind::interrupt())?;
        let sigterm = stop_signal(SignalKind::terminate())?;
        let sighup = stop_signal(SignalKind::hangup())?;
        if !emit.capture {
            // One write, before the command runs: its own stderr shares ours.
            let line = format!(
                "reaper-trace: tracing {scope}; {} hooks attached; Ctrl-C to stop\n",
                tracer.hooks.len()
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        if let Some(mut child) = gated {
            command.reaper = Some(command::spawn_reaper());
            child.release().context("starting the command")?;
        }
        // SAFETY: the fd belongs to `tracer`, which outlives `ring` (a field
        // dropped before it) and never closes or replaces it meanwhile.
        let ring = unsafe {
            AsyncFd::register_with_interest(
                RingFd(tracer.events_fd()),
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;
        let mut analyzer = Analyzer::new(trace.threshold_ns);
        if !trace.syscall_hooks {
            analyzer = analyzer.without_wait_records();
        }
        if metrics.is_some() {
            // Every lifecycle's end: the reap latency histogram.
            analyzer = analyzer.with_verdicts();
        }
        let mut pipeline = Pipeline::new(analyzer);
        pipeline.seed(&seed, clock.monotonic_ns);
        let mut outputs = LiveOutputs {
            recording: Recording::new(recorder),
            capture: emit.capture.then(Capture::default),
            metrics: metrics
                .map(|m| LiveMetrics::new(m, cgroups.fs().clone(), emit.daemon.is_some())),
            expiry: emit.daemon.map(|d| {
                let retention = d.gone_cgroup_retention.as_nanos() as u64;
                CgroupExpiry::new(retention, cgroups.fs().clone())
            }),
            ..LiveOutputs::default()
        };
        outputs.printers(emit.display, emit.json, clock);
        let source = RingSource::new(pipeline, outputs, cgroups);
        Ok(Run {
            ring,
            tick: tokio::time::interval(Duration::from_millis(50)),
            sigint,
            sigterm,
            sighup,
            command,
            stop_at: trace.duration.map(|d| Instant::now() + d),
            source,
            tracer,
        })
    }

    /// Reads the ring buffer until the run ends.
    async fn trace(&mut self) -> anyhow::Result<()> {
        loop {
            let received = tokio::select! {
                guard = self.ring.readable() => {
                    let mut guard = guard.context("ring buffer")?;
                    self.source.drain(&mut self.tracer)?;
                    guard.clear_ready();
                    None
                }
                _ = recv_signal(&mut self.sigint) => Some(libc::SIGINT),
                _ = recv_signal(&mut self.sigterm) => Some(libc::SIGTERM),
                _ = recv_signal(&mut self.sighup) => Some(libc::SIGHUP),
                event = recv(&mut self.command.reaper) => {
                    self.command.reaper_said(event);
                    None
                }
                _ = self.tick.tick() => {
                    if self.on_tick()? {
                        break;
                    }
                    None
                }
            };
            let Some(signal) = received else { continue };
            if !self.command.forward(signal) {
                break;
            }
        }
        self.command.guard.0 = false;
        Ok(())
    }

    /// Reads the ring and does the tick's work; whether the run is over.
    fn on_tick(&mut self) -> anyhow::Result<bool> {
        self.source.drain(&mut self.tracer)?;
        self.source.tick(&mut self.tracer)?;
        if self.command.drained(self.source.unfreed.is_empty()) {
            return Ok(true);
        }
        if self.stop_at.is_some_and(|t| Instant::now() >= t) {
            return Ok(true);
        }
        // Nothing is left to protect without a command: a recording that
        // cannot be written ends the run.
        Ok(self.command.pid.is_none() && self.source.outputs.recording.has_failed())
    }

    /// The last records, the report, the recording's trailer, and what is
    /// printed at the end.
    fn finish(mut self, emit: &Emit) -> anyhow::Result<Outcome> {
        let end_ns = self.settle()?;
        let source = &mut self.source;
        // The last drain read the loss counters after the last records.
        let analyzer = std::mem::replace(source.pipeline.analyzer_mut(), Analyzer::new(0));
        let mut report = analyzer.finish(end_ns);
        for finding in report.findings.iter_mut().chain(&mut report.uncertain) {
            source.stacks.symbolize(finding);
        }
        let outputs = &mut source.outputs;
        let metrics = outputs.metrics.take().map(|m| {
            let analysis = source.pipeline.analyzer();
            m.finish(end_ns, analysis, &source.totals, &report)
        });
        let recording_error = finish_recording(source, end_ns);
        let (status, interrupted) = (self.command.status, self.command.interrupted);
        let outputs = &mut self.source.outputs;
        outputs.all().flush()?;
        if let Some(printer) = &mut outputs.findings
            && emit.daemon.is_none()
        {
            let stop = interrupted.map(|stop| (stop, self.command.drain_timeout));
            printer.print_end(&report, &self.source.totals, status, stop.as_ref())?;
        }
        let totals = std::mem::take(&mut self.source.totals);
        if !emit.capture {
            let seen: u64 = totals.events.values().sum();
            eprintln!("reaper-trace: {seen} events, {} lost", totals.lost);
        }
        if let Some(path) = &emit.record
            && recording_error.is_none()
        {
            eprintln!("reaper-trace: recorded to {}", path.display());
        }
        Ok(Outcome {
            command_pid: self.command.pid,
            command_status: status,
            report,
            events: outputs.capture.take().unwrap_or_default().0,
            metrics,
            totals,
            interrupted,
            recording_error,
        })
    }

    /// The records left in the ring, the kernel's counters, and the exits
    /// whose reap was missed; when the trace ended.
    fn settle(&mut self) -> anyhow::Result<u64> {
        self.source.drain(&mut self.tracer)?;
        let totals = &mut self.source.totals;
        totals.set_lost(&self.tracer.lost());
        totals.fork_failures = self
            .tracer
            .fork_failures()
            .into_iter()
            .map(|(key, count)| ForkFailures {
                tgid: key.tgid,
                errno: key.errno,
                count,
            })
            .collect();
        let end_ns = clock::monotonic_ns();
        self.source.settle_gone(end_ns)?;
        Ok(end_ns)
    }
}

/// The recording's trailer; its first failed write, if any.
fn finish_recording(source: &mut RingSource, end_ns: u64) -> Option<RecorderError> {
    let totals = &source.totals;
    let mut lost_by_kind: std::collections::BTreeMap<String, u64> = totals
        .lost_by_kind
        .iter()
        .map(|(kind, n)| ((*kind).to_owned(), *n))
        .collect();
    // Lost stack copies too, apart from `lost`: they cost findings their
    // line, not their certainty.
    if totals.stacks_lost > 0 {
        lost_by_kind.insert("ustack".into(), totals.stacks_lost);
    }
    std::mem::take(&mut source.outputs.recording)
        .finish(Trailer {
            ended_ns: end_ns,
            lost: totals.lost,
            lost_by_kind,
            ..Default::default()
        })
        .err()
}

/// The traced command, when there is one: its reaping, the signals
/// forwarded to it, and how long its tree gets to end.
struct CommandControl {
    pid: Option<u32>,
    pidfd: Option<OwnedFd>,
    /// Its wait status, once reaped.
    status: Option<i32>,
    /// Reaps the command and the orphans it leaves to us.
    reaper: Option<UnboundedReceiver<ReaperEvent>>,
    /// Whatever ends the run early (an error), the command's tree does
    /// not run on untraced.
    guard: TreeGuard,
    /// When the run ends even if the tree has not.
    drain_deadline: Option<Instant>,
    interrupted: Option<Interrupted>,
    /// Whether what outlived the drain timeout was killed already.
    killed: bool,
    drain_timeout: Duration,
}

impl CommandControl {
    fn new(gated: Option<&mut command::GatedChild>, drain_timeout: Duration) -> CommandControl {
        let pid = gated.as_ref().map(|c| c.pid);
        CommandControl {
            pid,
            pidfd: gated.and_then(|c| c.pidfd.take()),
            status: None,
            reaper: None,
            guard: TreeGuard(pid.is_some()),
            drain_deadline: None,
            interrupted: None,
            killed: false,
            drain_timeout,
        }
    }

    /// A reap, or the reaper's end (the tree is gone).
    fn reaper_said(&mut self, event: Option<ReaperEvent>) {
        match event {
            Some(ReaperEvent::Reaped(r)) if Some(r.pid) == self.pid => {
                self.status = Some(r.status);
                if let Some(stop) = &self.interrupted {
                    // The job is being stopped: what the command left
                    // running gets the signal too (as timeout(1) sends it
                    // to the command's whole group), before the drain
                    // timeout's SIGKILL.
                    command::signal_tree(stop.signal, 1);
                }
                // The rest of the tree gets a bounded time to finish.
                self.drain_deadline
                    .get_or_insert(Instant::now() + self.drain_timeout);
            }
            Some(ReaperEvent::Reaped(_)) => {}
            Some(ReaperEvent::Drained) | None => {
                self.reaper = None;
                let grace = Instant::now() + DRAIN_GRACE;
                self.drain_deadline = Some(self.drain_deadline.map_or(grace, |d| d.min(grace)));
            }
        }
    }

    /// Whether the run is over: the tree is gone and freed (`tree_freed`),
    /// or the drain deadline passed. Stopped by a signal with the tree
    /// still there, it is killed first, and its end awaited.
    fn drained(&mut self, tree_freed: bool) -> bool {
        let Some(deadline) = self.drain_deadline else {
            return false;
        };
        if !((self.reaper.is_none() && tree_freed) || Instant::now() >= deadline) {
            return false;
        }
        match &mut self.interrupted {
            // Stopped by a signal and the tree outlived the drain timeout:
            // nothing may run on untraced.
            Some(stop) if !self.killed && self.reaper.is_some() => {
                self.killed = true;
                stop.killed = command::signal_tree(libc::SIGKILL, KILL_PASSES);
                eprintln!(
                    "reaper-trace: the command's tree did not end within the drain timeout ({:?}) after {}: killed {} process(es)",
                    self.drain_timeout,
                    stop.signal_name(),
                    stop.killed
                );
                // Their reaps and frees, then the report.
                self.drain_deadline = Some(Instant::now() + DRAIN_GRACE);
                false
            }
            _ => true,
        }
    }

    /// A stop signal: forwarded to the command (or what is left of its
    /// tree), which then gets the drain timeout to end. Without a command
    /// the run ends: returns false.
    fn forward(&mut self, signal: i32) -> bool {
        let Some(pid) = self.pid else { return false };
        // Forwarded even when it may have come from a terminal's Ctrl-C,
        // which reaches the command too (it shares our process group), so
        // that it then sees SIGINT twice, as under timeout(1): a signal sent
        // to the tracer alone (a CI runner cancelling the job) must reach
        // it. A second signal is forwarded too; the first names the stop.
        self.interrupted
            .get_or_insert(Interrupted { signal, killed: 0 });
        if self.status.is_none() {
            // Gone already (not yet reaped): nothing to forward to.
            let _ = command::signal_command(pid, self.pidfd.as_ref(), signal);
        } else {
            // The command is gone: what is left of its tree gets it.
            command::signal_tree(signal, 1);
        }
        let deadline = Instant::now() + self.drain_timeout;
        self.drain_deadline = Some(self.drain_deadline.map_or(deadline, |d| d.min(deadline)));
        true
    }
}

/// Kills the command's tree when armed as it drops: the run ended before
/// the command did (an error), and it must not run on untraced.
struct TreeGuard(bool);

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if self.0 {
            let killed = command::signal_tree(libc::SIGKILL, KILL_PASSES);
            if killed > 0 {
                eprintln!(
                    "reaper-trace: tracing stopped before the command's tree ended: killed {killed} process(es) rather than leave them untraced"
                );
            }
        }
    }
}

/// A stream of `kind`, or none for SIGHUP when it was ignored as this
/// process started: under `nohup` the trace must outlive the session.
/// SIGINT and SIGTERM always stop the tracer, even when inherited ignored
/// (a non-interactive shell ignores SIGINT in the jobs it starts in the
/// background, and so does a CI runner started that way): stopping a
/// tracer with them must not depend on how it was started. The command
/// still gets what was inherited (`host::signals`).
fn stop_signal(kind: SignalKind) -> anyhow::Result<Option<Signal>> {
    if kind == SignalKind::hangup()
        && crate::host::signals::inherited().ignored(kind.as_raw_value())
    {
        return Ok(None);
    }
    signal(kind)
        .map(Some)
        .with_context(|| format!("handling signal {}", kind.as_raw_value()))
}

async fn recv_signal(signal: &mut Option<Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv(reaper: &mut Option<UnboundedReceiver<ReaperEvent>>) -> Option<ReaperEvent> {
    match reaper {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
