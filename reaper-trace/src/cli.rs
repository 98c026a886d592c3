//! The command line's shape: subcommands, their arguments, and the parsers
//! of durations and sizes. What each subcommand does is in `commands`.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use reaper_trace::{
    analysis::FindingKind,
    live::{self, Daemon, Display, Emit, LiveOptions, TraceOptions},
};

#[derive(Parser, Debug)]
#[command(
    name = "reaper-trace",
    version,
    about = "Finds the children that never get reaped, and says why"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `reaper-trace check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Report an exit left unreaped longer than this.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ns)]
    pub threshold: u64,
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Also write JUnit XML here: one failing case per finding.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write a recording here (a new file: an existing one is refused).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace the recording's path if it exists (a link is replaced, never
    /// written through).
    #[arg(long, requires = "output")]
    pub force: bool,
    /// Once the command exits, or once a SIGINT, SIGTERM or SIGHUP has been
    /// forwarded to it, wait this long for the rest of its tree; what is
    /// left after a signal is killed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_ns)]
    pub drain_timeout: u64,
    /// Under sudo, keep root for the command (default: run it as the invoking user).
    #[arg(long)]
    pub as_root: bool,
    /// Ring buffer size in bytes (a power of two, at least a page).
    #[arg(long, value_name = "BYTES", default_value_t = live::DEFAULT_RINGBUF_BYTES, value_parser = parse_ringbuf_size)]
    pub ringbuf_size: u32,
    /// Also fail on these kinds of finding (repeatable, or comma separated);
    /// unreaped children and late reaps always fail, orphans only when
    /// listed here, and findings made uncertain by lost events only with
    /// `uncertain`.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KIND")]
    pub fail_on: Vec<FailOn>,
    /// Also write the run's Prometheus metrics here, atomically (for
    /// node_exporter's textfile collector).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Do not copy user stacks (by default each finding names the source
    /// line that forked the child and the one that changed SIGCHLD).
    #[arg(long)]
    pub no_stacks: bool,
    /// The command to run (its arguments are bytes, passed on unchanged).
    #[arg(last = true, required = true, value_name = "CMD", value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,
}

/// What to trace, shared by `live` and `record`.
#[derive(Args, Debug)]
pub struct Trace {
    /// Follow this process and all its descendants (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Follow processes with this name, and their descendants.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    #[command(flatten)]
    pub scope: CgroupScope,
    /// Report an exit left unreaped longer than this (e.g. 1s, 500ms, 2.5s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ns)]
    pub threshold: u64,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ns)]
    pub duration: Option<u64>,
    /// Ring buffer size in bytes (a power of two, at least a page).
    #[arg(long, value_name = "BYTES", default_value_t = live::DEFAULT_RINGBUF_BYTES, value_parser = parse_ringbuf_size)]
    pub ringbuf_size: u32,
    /// Also trace per-thread events: thread creation, exits of threads that
    /// leave their process alive, and thread frees (dropped in the kernel by
    /// default: the analysis does not need them).
    #[arg(long)]
    pub threads: bool,
    /// Print the probes' own logs of their rare paths (a failed kernel or
    /// user-memory read, a full map) on stderr; off by default.
    #[arg(long)]
    pub probe_log: bool,
    /// Copy the user stack at each fork and SIGCHLD action change, to name
    /// the source lines: on by default with --pid, --comm and a command;
    /// this turns it on for the whole system or a cgroup.
    #[arg(long, conflicts_with = "no_stacks")]
    pub stacks: bool,
    /// Do not copy user stacks.
    #[arg(long)]
    pub no_stacks: bool,
    /// Hook no system call, so that tracing costs other programs' system
    /// calls nothing (any syscall hook sends every system call of every
    /// process through the kernel's slow path, about 1.9x for a cheap
    /// one). What goes: the wait calls' options and results (reaps are
    /// dated by the kernel's free of the task and by /proc instead),
    /// SIGCHLD action changes, failed forks and user stacks.
    #[arg(long, conflicts_with = "stacks")]
    pub no_syscall_hooks: bool,
    /// Leave the ring buffer's reader at normal priority. By default it
    /// runs at the lowest real-time priority (or nice -10 where that is
    /// refused), so that a busy machine cannot starve it while a burst
    /// fills the ring.
    #[arg(long)]
    pub normal_priority: bool,
    /// With a command: once it exits, or once a SIGINT, SIGTERM or SIGHUP
    /// has been forwarded to it, wait this long for the rest of its tree.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_ns)]
    pub drain_timeout: u64,
    /// Run this command and trace its tree; ends when the tree is gone.
    #[arg(last = true, value_name = "CMD", value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,
}

/// Which cgroup to trace, shared by `live`, `record` and `serve`.
#[derive(Args, Debug, Default)]
pub struct CgroupScope {
    /// Follow the processes in this cgroup v2 and below it, as
    /// /proc/PID/cgroup prints it (e.g. /system.slice/nginx.service).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// Follow the processes of the container (or Kubernetes pod) whose id
    /// starts with this.
    #[arg(long, value_name = "ID", conflicts_with = "cgroup")]
    pub container: Option<String>,
}

/// `reaper-trace serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Serve GET /metrics here (loopback by default: widen it on purpose,
    /// with TLS and basic auth from --web.config.file).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub listen: std::net::SocketAddr,
    /// TLS and basic authentication for the endpoint, in the YAML format of
    /// Prometheus' exporter-toolkit (as node_exporter's flag of the same
    /// name): tls_server_config (cert_file, key_file, client_auth_type,
    /// client_ca_file), basic_auth_users (bcrypt hashes), http_server_config.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// An exit unreaped longer than this is a zombie in the metrics.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ns)]
    pub threshold: u64,
    /// Ring buffer size in bytes (a power of two, at least a page).
    #[arg(long, value_name = "BYTES", default_value_t = live::DEFAULT_RINGBUF_BYTES, value_parser = parse_ringbuf_size)]
    pub ringbuf_size: u32,
    /// How long a cgroup that is gone keeps its series (so the last
    /// scrapes see its final counts) before they are dropped.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration_ns)]
    pub expire_after: u64,
    #[command(flatten)]
    pub scope: CgroupScope,
    /// Print the probes' own logs of their rare paths on stderr.
    #[arg(long)]
    pub probe_log: bool,
    /// Also hook the system calls: each finding then tells the parent's
    /// wait calls (options, results) and SIGCHLD action changes, and reaps
    /// are dated by the wait that made them. Off by default because any
    /// syscall hook sends every system call of every process through the
    /// kernel's slow path (about 1.9x for a cheap one); without it, reaps
    /// are dated by the kernel's free of the task and by /proc.
    #[arg(long)]
    pub syscall_hooks: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Stream process lifecycle events and findings as they happen.
    Live {
        /// Print JSON lines instead of readable text.
        #[arg(long)]
        json: bool,
        /// Print only findings and the report, not every event.
        #[arg(long)]
        no_events: bool,
        /// Also write a recording to this file (a new file: an existing one
        /// is refused).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
        /// Replace the recording's path if it exists (a link is replaced,
        /// never written through).
        #[arg(long, requires = "record")]
        force: bool,
        #[command(flatten)]
        trace: Trace,
    },
    /// Record to a file for `report` later; prints the report at the end.
    Record {
        /// The recording to write, a new file of mode 0600 (an existing
        /// path is refused).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// Replace the path if it exists (a link is replaced, never written
        /// through).
        #[arg(long)]
        force: bool,
        /// Print the final report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        trace: Trace,
    },
    /// Run a command under tracing and fail (exit 1) when it leaves children
    /// unreaped or reaps them late. Exit 0 clean, 1 findings, 2 usage or
    /// set-up error, 3 the command itself failed.
    Check(CheckArgs),
    /// Run as a daemon: trace the whole system (or one cgroup), log findings
    /// as JSON lines on stdout, and serve Prometheus metrics.
    Serve(ServeArgs),
    /// Check the reaping semantics reaper-trace relies on, on this kernel,
    /// with its own tracing. Exit 1 when a behaviour differs.
    VerifyKernel {
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// Also write JUnit XML here: one case per behaviour.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// (internal) A workload of verify-kernel.
    #[command(name = "__workload", hide = true)]
    Workload { name: String },
    /// (internal) Write the man pages or the shell completions into DIR,
    /// for packaging.
    #[command(name = "__generate", hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
        /// The directory to write into (made if missing).
        dir: PathBuf,
    },
    /// List the zombies on this machine now, from /proc (no tracing):
    /// grouped by cgroup and parent, with their ages, what explains each
    /// parent's (its SIGCHLD action, masks and pending signal, signalfds,
    /// stopped or traced threads, where each thread waits), the cgroup's
    /// pids.max headroom and a fix. Exit 0 none older than the threshold,
    /// 1 some, 2 usage or privilege error.
    Zombies {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// A zombie counts (exit status 1) once it exited longer ago than this.
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ns)]
        threshold: u64,
        /// Only the zombies of this parent (repeatable).
        #[arg(long = "parent", value_name = "PID")]
        parents: Vec<u32>,
    },
    /// Analyse a recording: the same findings as the live run that made it.
    Report {
        /// The recording.
        file: PathBuf,
        /// The report, or the recording drawn as a Perfetto timeline.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Report an exit left unreaped longer than this.
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ns)]
        threshold: u64,
        /// Only this process and its descendants (repeatable).
        #[arg(long = "pid", value_name = "PID")]
        pids: Vec<u32>,
        /// Only processes with this name, and their descendants.
        #[arg(long, value_name = "NAME")]
        comm: Option<String>,
        /// Also write the recording's Prometheus metrics here, atomically.
        #[arg(long, value_name = "FILE")]
        metrics_file: Option<PathBuf>,
    },
}

/// What `__generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Generated {
    /// reaper-trace.1 and one page per subcommand.
    Man,
    /// bash (reaper-trace), zsh (_reaper-trace) and fish (reaper-trace.fish).
    Completions,
}

/// A kind of finding, as `--fail-on` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Unreaped,
    LateReap,
    Orphaned,
    /// Unreaped children and late reaps that lost events may have made up.
    Uncertain,
}

/// `uncertain` is no kind of finding: it widens the others.
impl TryFrom<FailOn> for FindingKind {
    type Error = ();
    fn try_from(kind: FailOn) -> Result<FindingKind, ()> {
        match kind {
            FailOn::Unreaped => Ok(FindingKind::Unreaped),
            FailOn::LateReap => Ok(FindingKind::LateReap),
            FailOn::Orphaned => Ok(FindingKind::Orphaned),
            FailOn::Uncertain => Err(()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// The report, for people.
    Text,
    /// The report as one JSON object.
    Json,
    /// The timeline as a native Perfetto trace (protobuf) for
    /// ui.perfetto.dev: a track per process (running and ZOMBIE slices),
    /// instants (fork, exec, exit, SIGCHLD, SIGCHLD action changes, waits,
    /// reaps), flows from parent to child. Binary: redirect it to a file.
    Perfetto,
    /// The same timeline as Chrome trace-event JSON (Perfetto's legacy
    /// format; chrome://tracing opens it too), without the sigaction
    /// instants and stacks.
    PerfettoJson,
}

/// `1s`, `500ms`, `2.5s`, `100us`, `3m` → nanoseconds.
fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 1s or 500ms"))?;
    let scale = match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" | "" => 1e9,
        "m" => 60e9,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?}: use ns, us, ms, s or m"
            ));
        }
    };
    Ok((value * scale) as u64)
}

fn parse_ringbuf_size(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} must be a power of two of at least 4096"));
    }
    Ok(n)
}

pub fn live_options(
    trace: Trace,
    json: bool,
    display: Display,
    record: Option<PathBuf>,
    record_force: bool,
) -> LiveOptions {
    LiveOptions {
        trace: TraceOptions {
            threshold_ns: trace.threshold,
            pids: trace.pids,
            comm: trace.comm,
            command: trace.command,
            ringbuf_bytes: trace.ringbuf_size,
            duration: trace.duration.map(Duration::from_nanos),
            drain_timeout: Duration::from_nanos(trace.drain_timeout),
            thread_events: trace.threads,
            probe_log: trace.probe_log,
            stacks: stacks_choice(trace.stacks, trace.no_stacks),
            cgroup: trace.scope.cgroup,
            container: trace.scope.container,
            normal_priority: trace.normal_priority,
            syscall_hooks: !trace.no_syscall_hooks,
            ..TraceOptions::default()
        },
        emit: Emit {
            json,
            display,
            record,
            record_force,
            ..Emit::default()
        },
    }
}

/// `--stacks` / `--no-stacks`: `None` leaves the default (on for followed
/// processes, off system-wide).
pub fn stacks_choice(stacks: bool, no_stacks: bool) -> Option<bool> {
    match (stacks, no_stacks) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

pub fn serve_options(args: ServeArgs) -> LiveOptions {
    LiveOptions {
        trace: TraceOptions {
            threshold_ns: args.threshold,
            ringbuf_bytes: args.ringbuf_size,
            probe_log: args.probe_log,
            cgroup: args.scope.cgroup,
            container: args.scope.container,
            syscall_hooks: args.syscall_hooks,
            ..TraceOptions::default()
        },
        emit: Emit {
            json: true,
            display: Display::Findings,
            metrics: true,
            daemon: Some(Daemon {
                gone_cgroup_retention: Duration::from_nanos(args.expire_after),
            }),
            ..Emit::default()
        },
    }
}
