//! `reaper-trace live` and `record`: trace, analyse as events arrive, and
//! optionally write a recording that `report` reads later.

mod recording;
mod setup;
mod sink;
mod stacks;

use std::{
    ffi::OsString,
    io::Write,
    os::fd::{AsRawFd, RawFd},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
    time::Instant,
};

use crate::{
    analysis::{Analyzer, Report},
    host::command::{self, ReaperEvent},
    output::{metrics::Metrics, report},
    recording::{Trailer, file::RecorderError},
    trace::{
        clock,
        event::Event,
        totals::{ForkFailures, Totals},
    },
};

/// How long to wait, once the traced command's tree is gone, for the last
/// `free` events (they trail the reap by an RCU grace period).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

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
    pub report: Report,
    pub totals: Totals,
    /// Every event, when `capture` was asked for.
    pub events: Vec<Event>,
    /// With `metrics`: fed by the whole run, the report's findings included.
    pub metrics: Option<Metrics>,
    /// With a command: the signal that stopped the run early, forwarded to it.
    pub interrupted: Option<Interrupted>,
    /// The recording's first failed write: the trace went on without it.
    pub recording_error: Option<RecorderError>,
}

/// A run with a command that SIGINT, SIGTERM or SIGHUP stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted {
    /// The signal received, and forwarded to the command.
    pub signal: i32,
    /// The processes of the command's tree still alive when the drain
    /// timeout ran out, which were killed (SIGKILL).
    pub killed: usize,
}

impl Interrupted {
    /// The signal's name, as `kill -l` prints it with the SIG prefix.
    pub fn signal_name(&self) -> &'static str {
        nix::sys::signal::Signal::try_from(self.signal).map_or("a signal", |s| s.as_str())
    }

    /// The shell's convention for a program that a signal ended: 128 + its
    /// number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
    pub fn exit_code(&self) -> i32 {
        128 + self.signal
    }

    /// One line for people: what happened to the command.
    pub fn text(&self, drain_timeout: Duration) -> String {
        let mut line = format!(
            "interrupted by {}: forwarded to the command",
            self.signal_name()
        );
        if self.killed > 0 {
            line.push_str(&format!(
                "; its tree did not end within the drain timeout ({drain_timeout:?}): {} process(es) killed",
                self.killed
            ));
        }
        line
    }
}

#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub json: bool,
    pub display: Display,
    /// An exit unreaped for longer than this is reported.
    pub threshold_ns: u64,
    pub pids: Vec<u32>,
    pub comm: Option<String>,
    /// The command to run, as bytes: passed to exec unchanged.
    pub command: Vec<OsString>,
    pub ringbuf_bytes: u32,
    /// Write a recording here.
    pub record: Option<PathBuf>,
    /// Replace the recording's path if it exists (never writing through it).
    pub record_force: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Once the command has exited, how long to wait for the rest of its
    /// tree before reporting; and once a SIGINT, SIGTERM or SIGHUP has been
    /// forwarded to it, how long its tree gets before it is killed.
    pub drain_timeout: Duration,
    /// Run the command as this (uid, gid), supplementary groups dropped.
    pub run_as: Option<(u32, u32)>,
    /// Keep every event in the outcome.
    pub capture: bool,
    /// Also trace per-thread events (thread forks, exits and frees).
    pub thread_events: bool,
    /// Print the probes' rare-path logs (failed kernel or user reads, full
    /// maps) on stderr.
    pub probe_log: bool,
    /// Copy user stacks at forks and SIGCHLD action changes: `None` for the
    /// default, on when following processes (--pid, --comm, a command) and
    /// off system-wide or for a cgroup.
    pub stacks: Option<bool>,
    /// Only processes in this cgroup v2 (and below it), by path.
    pub cgroup: Option<String>,
    /// Only processes in the container (or pod) whose id starts with this.
    pub container: Option<String>,
    /// Keep Prometheus metrics (returned in the outcome).
    pub metrics: bool,
    /// `serve`: no final report; findings feed the metrics as they resolve,
    /// and nothing is kept for a report, so memory stays bounded.
    pub daemon: bool,
    /// `serve`: how long a cgroup that is gone keeps its series and name.
    pub gone_cgroup_retention: Duration,
}

/// The default ring buffer: room for about 50k records. It shows twice in
/// RSS (the kernel maps its data pages twice so that a record never wraps),
/// and two parallel 20,000-process storms lose nothing with it, nor with
/// half of it: the reader is woken at a sixteenth full.
pub const DEFAULT_RINGBUF_BYTES: u32 = 4 << 20;

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
            record_force: false,
            duration: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            run_as: None,
            capture: false,
            thread_events: false,
            probe_log: false,
            stacks: None,
            cgroup: None,
            container: None,
            metrics: false,
            daemon: false,
            gone_cgroup_retention: Duration::from_nanos(sink::GONE_CGROUP_RETENTION_NS),
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

/// Runs until SIGINT/SIGTERM/SIGHUP, `--duration`, or, with a command,
/// until its tree is gone. With a command, those signals are forwarded to it
/// (as timeout(1) and tini do) and the trace goes on while its tree ends,
/// for at most the drain timeout; what is left then is killed, so that
/// nothing the tool started runs on untraced.
pub async fn run(options: LiveOptions) -> anyhow::Result<Outcome> {
    let metrics = options.metrics.then(Metrics::new);
    run_with(options, metrics).await
}

/// [`run`], feeding `metrics` (which the caller may be serving meanwhile).
pub async fn run_with(options: LiveOptions, metrics: Option<Metrics>) -> anyhow::Result<Outcome> {
    let setup::Started {
        mut tracer,
        clock,
        seed,
        scope,
        recorder,
        command: gated,
        cgroups,
    } = setup::start(&options)?;
    let mut gated = gated;
    let command_pid = gated.as_ref().map(|c| c.pid);
    let command_pidfd = gated.as_mut().and_then(|c| c.pidfd.take());
    // Whatever ends this function early (an error), the command's tree
    // does not run on untraced.
    let mut tree_guard = TreeGuard(command_pid.is_some());
    // Before saying we trace: a Ctrl-C from then on must stop us cleanly.
    // SIGHUP (an SSH session closing) stops as SIGTERM does.
    let mut sigint = stop_signal(SignalKind::interrupt())?;
    let mut sigterm = stop_signal(SignalKind::terminate())?;
    let mut sighup = stop_signal(SignalKind::hangup())?;
    if !options.capture {
        // One write, before the command runs: its own stderr shares ours.
        let line = format!(
            "reaper-trace: tracing {scope}; {} hooks attached; Ctrl-C to stop\n",
            tracer.hooks.len()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    let mut reaper = None;
    if let Some(mut child) = gated {
        reaper = Some(command::spawn_reaper());
        child.release().context("starting the command")?;
    }

    // SAFETY: the fd belongs to `tracer`, which outlives `ring` (declared
    // later, dropped first) and never closes or replaces it meanwhile.
    let ring = unsafe {
        AsyncFd::register_with_interest(RingFd(tracer.events_fd()), tokio::io::Interest::READABLE)
    }
    .map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;
    // Reads the ring at least this often: the probes wake us only for batches.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut analyzer = Analyzer::new(options.threshold_ns);
    if metrics.is_some() {
        // Every lifecycle's end: the reap latency histogram.
        analyzer = analyzer.with_verdicts();
    }
    analyzer.seed(&seed, clock.monotonic_ns);
    let mut sink = sink::Sink::new(
        options.json,
        options.display,
        analyzer,
        recording::Recording::new(recorder),
        clock,
        options.capture,
    );
    sink.cgroups = cgroups;
    sink.metrics = metrics;
    sink.daemon = options.daemon;
    sink.gone_cgroup_retention_ns = options.gone_cgroup_retention.as_nanos() as u64;
    sink.pidns.seed(&seed);
    let mut command_status = None;
    let mut drain_deadline: Option<Instant> = None;
    let stop_at = options.duration.map(|d| Instant::now() + d);
    let mut interrupted: Option<Interrupted> = None;
    let mut killed = false;

    loop {
        let received = tokio::select! {
            guard = ring.readable() => {
                let mut guard = guard.context("ring buffer")?;
                sink.drain(&mut tracer)?;
                guard.clear_ready();
                None
            }
            _ = recv_signal(&mut sigint) => Some(libc::SIGINT),
            _ = recv_signal(&mut sigterm) => Some(libc::SIGTERM),
            _ = recv_signal(&mut sighup) => Some(libc::SIGHUP),
            event = recv(&mut reaper) => {
                match event {
                    Some(ReaperEvent::Reaped(r)) if Some(r.pid) == command_pid => {
                        command_status = Some(r.status);
                        if let Some(stop) = &interrupted {
                            // The job is being stopped: what the command left
                            // running gets the signal too (as timeout(1) sends
                            // it to the command's whole group), before the
                            // drain timeout's SIGKILL.
                            command::signal_tree(stop.signal, 1);
                        }
                        // The rest of the tree gets a bounded time to finish.
                        drain_deadline.get_or_insert(Instant::now() + options.drain_timeout);
                    }
                    Some(ReaperEvent::Reaped(_)) => {}
                    Some(ReaperEvent::Drained) | None => {
                        reaper = None;
                        let grace = Instant::now() + DRAIN_GRACE;
                        drain_deadline = Some(drain_deadline.map_or(grace, |d| d.min(grace)));
                    }
                }
                None
            }
            _ = tick.tick() => {
                sink.drain(&mut tracer)?;
                sink.tick(&mut tracer)?;
                if let Some(deadline) = drain_deadline
                    && ((reaper.is_none() && sink.unfreed.is_empty()) || Instant::now() >= deadline)
                {
                    match &mut interrupted {
                        // Stopped by a signal and the tree outlived the
                        // drain timeout: nothing may run on untraced.
                        Some(stop) if !killed && reaper.is_some() => {
                            killed = true;
                            stop.killed = command::signal_tree(libc::SIGKILL, KILL_PASSES);
                            eprintln!(
                                "reaper-trace: the command's tree did not end within the drain timeout ({:?}) after {}: killed {} process(es)",
                                options.drain_timeout,
                                stop.signal_name(),
                                stop.killed
                            );
                            // Their reaps and frees, then the report.
                            drain_deadline = Some(Instant::now() + DRAIN_GRACE);
                        }
                        _ => break,
                    }
                }
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                // Nothing is left to protect without a command: a recording
                // that cannot be written ends the run.
                if command_pid.is_none() && sink.recorder.has_failed() {
                    break;
                }
                None
            }
        };
        let Some(signal) = received else { continue };
        let Some(pid) = command_pid else { break };
        // Forwarded even when it may have come from a terminal's Ctrl-C,
        // which reaches the command too (it shares our process group), so
        // that it then sees SIGINT twice, as under timeout(1): a signal sent
        // to the tracer alone (a CI runner cancelling the job) must reach
        // it. A second signal is forwarded too; the first names the stop.
        interrupted.get_or_insert(Interrupted { signal, killed: 0 });
        if command_status.is_none() {
            // Gone already (not yet reaped): nothing to forward to.
            let _ = command::signal_command(pid, command_pidfd.as_ref(), signal);
        } else {
            // The command is gone: what is left of its tree gets it.
            command::signal_tree(signal, 1);
        }
        let deadline = Instant::now() + options.drain_timeout;
        drain_deadline = Some(drain_deadline.map_or(deadline, |d| d.min(deadline)));
    }
    tree_guard.0 = false;

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
    sink.settle_gone(end_ns)?;
    // The last drain read the loss counters after the last records.
    let analyzer = std::mem::replace(&mut sink.analyzer, Analyzer::new(0));
    let mut report = analyzer.finish(end_ns);
    for finding in report.findings.iter_mut().chain(&mut report.uncertain) {
        sink.stacks.symbolize(finding);
    }
    // The cgroups' pids controllers as the trace ends, however recently read.
    sink.cgroups_polled_ns = 0;
    sink.update_metrics(end_ns);
    if let Some(metrics) = &mut sink.metrics
        && !options.daemon
    {
        metrics.report(&report);
    }
    let recording_error = {
        let mut lost_by_kind: std::collections::BTreeMap<String, u64> = sink
            .totals
            .lost_by_kind
            .iter()
            .map(|(kind, n)| ((*kind).to_owned(), *n))
            .collect();
        // Lost stack copies too, apart from `lost`: they cost findings their
        // line, not their certainty.
        if sink.totals.stacks_lost > 0 {
            lost_by_kind.insert("ustack".into(), sink.totals.stacks_lost);
        }
        std::mem::take(&mut sink.recorder)
            .finish(Trailer {
                ended_ns: end_ns,
                lost: sink.totals.lost,
                lost_by_kind,
                ..Default::default()
            })
            .err()
    };
    if !matches!(options.display, Display::Silent) && !options.daemon {
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
            if let Some(stop) = &interrupted {
                totals["interrupted_by"] = stop.signal_name().into();
                totals["killed_after_drain_timeout"] = stop.killed.into();
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
            if let Some(stop) = &interrupted {
                writeln!(sink.out, "{}", stop.text(options.drain_timeout))?;
            }
        }
    }
    sink.out.flush()?;
    let seen: u64 = sink.totals.events.values().sum();
    if !options.capture {
        eprintln!("reaper-trace: {seen} events, {} lost", sink.totals.lost);
    }
    if let Some(path) = &options.record
        && recording_error.is_none()
    {
        eprintln!("reaper-trace: recorded to {}", path.display());
    }
    Ok(Outcome {
        command_pid,
        command_status,
        report,
        events: sink.captured.take().unwrap_or_default(),
        metrics: sink.metrics.take(),
        totals: sink.totals,
        interrupted,
        recording_error,
    })
}

/// How many times the remaining tree is looked for and killed: a process
/// forking as it is killed leaves a child the next pass finds.
const KILL_PASSES: usize = 50;

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

async fn recv(
    reaper: &mut Option<tokio::sync::mpsc::UnboundedReceiver<ReaperEvent>>,
) -> Option<ReaperEvent> {
    match reaper {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_run_names_its_signal_and_exits_as_a_shell_would() {
        let term = Interrupted {
            signal: libc::SIGTERM,
            killed: 0,
        };
        assert_eq!(term.signal_name(), "SIGTERM");
        assert_eq!(term.exit_code(), 143);
        assert_eq!(
            term.text(Duration::from_secs(10)),
            "interrupted by SIGTERM: forwarded to the command"
        );
        let int = Interrupted {
            signal: libc::SIGINT,
            killed: 2,
        };
        assert_eq!(int.exit_code(), 130);
        assert_eq!(
            int.text(Duration::from_millis(1500)),
            "interrupted by SIGINT: forwarded to the command; its tree did not end within the drain timeout (1.5s): 2 process(es) killed"
        );
    }
}
