//! `reaper-trace live` and `record`: trace, analyse as events arrive, and
//! optionally write a recording that `report` reads later.

mod metrics;
mod outputs;
mod recording;
mod run;
mod setup;
mod source;
mod stacks;

use std::{ffi::OsString, path::PathBuf, time::Duration};

pub use run::{run, run_with};

use crate::{
    analysis::Report,
    output::metrics::Metrics,
    recording::file::RecorderError,
    trace::{event::Event, totals::Totals},
};

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

/// A live run: what to trace, and what to make of it.
#[derive(Clone, Debug, Default)]
pub struct LiveOptions {
    pub trace: TraceOptions,
    pub emit: Emit,
}

/// What to trace: which processes, how, for how long.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// An exit unreaped for longer than this is reported.
    pub threshold_ns: u64,
    pub pids: Vec<u32>,
    pub comm: Option<String>,
    /// The command to run, as bytes: passed to exec unchanged.
    pub command: Vec<OsString>,
    pub ringbuf_bytes: u32,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Once the command has exited, how long to wait for the rest of its
    /// tree before reporting; and once a SIGINT, SIGTERM or SIGHUP has been
    /// forwarded to it, how long its tree gets before it is killed.
    pub drain_timeout: Duration,
    /// Run the command as this (uid, gid), supplementary groups dropped.
    pub run_as: Option<(u32, u32)>,
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
    /// Leave the ring buffer's reader at the scheduling it inherited,
    /// instead of raising it (`host::priority`).
    pub normal_priority: bool,
    /// Hook the system calls (see `TracerOptions::syscall_hooks`): on for
    /// `live`, `record` and `check`, off for `serve`.
    pub syscall_hooks: bool,
}

/// What to emit: stdout, a recording, the outcome's events and metrics.
#[derive(Clone, Debug)]
pub struct Emit {
    pub json: bool,
    pub display: Display,
    /// Write a recording here.
    pub record: Option<PathBuf>,
    /// Replace the recording's path if it exists (never writing through it).
    pub record_force: bool,
    /// Keep every event in the outcome.
    pub capture: bool,
    /// Keep Prometheus metrics (returned in the outcome).
    pub metrics: bool,
    /// `serve`: no final report; findings feed the metrics as they resolve,
    /// and nothing is kept for a report, so memory stays bounded.
    pub daemon: Option<Daemon>,
}

/// `serve`'s bounds on what a run that never ends keeps.
#[derive(Clone, Copy, Debug)]
pub struct Daemon {
    /// How long a cgroup that is gone keeps its series and name.
    pub gone_cgroup_retention: Duration,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon {
            gone_cgroup_retention: Duration::from_nanos(metrics::GONE_CGROUP_RETENTION_NS),
        }
    }
}

/// The default ring buffer: room for about 50k records. It shows twice in
/// RSS (the kernel maps its data pages twice so that a record never wraps),
/// and two parallel 20,000-process storms lose nothing with it, nor with
/// half of it: the reader is woken at a sixteenth full.
pub const DEFAULT_RINGBUF_BYTES: u32 = 4 << 20;

/// How long `-- CMD` runs wait for the rest of the tree once CMD exits.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for TraceOptions {
    /// The whole system, the command line's defaults.
    fn default() -> Self {
        TraceOptions {
            threshold_ns: 1_000_000_000,
            pids: Vec::new(),
            comm: None,
            command: Vec::new(),
            ringbuf_bytes: DEFAULT_RINGBUF_BYTES,
            duration: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            run_as: None,
            thread_events: false,
            probe_log: false,
            stacks: None,
            cgroup: None,
            container: None,
            normal_priority: false,
            syscall_hooks: true,
        }
    }
}

impl Default for Emit {
    /// Every event as text, nothing else.
    fn default() -> Self {
        Emit {
            json: false,
            display: Display::Everything,
            record: None,
            record_force: false,
            capture: false,
            metrics: false,
            daemon: None,
        }
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
