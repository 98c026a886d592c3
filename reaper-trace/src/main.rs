//! The command line. Every failure ends as one line on stderr and a non-zero
//! exit status; nothing here panics on bad input.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use reaper_trace::{
    check, command,
    live::{self, Display, LiveOptions},
    replay::{self, ReplayOptions},
    report, timeline,
};

#[derive(Parser, Debug)]
#[command(
    name = "reaper-trace",
    version,
    about = "Finds the children that never get reaped, and says why"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `reaper-trace check`.
#[derive(Args, Debug)]
struct CheckArgs {
    /// Report an exit left unreaped longer than this.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ns)]
    threshold: u64,
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    format: CheckFormat,
    /// Also write JUnit XML here: one failing case per finding.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write a recording here.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Once the command exits, wait this long for the rest of its tree.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_ns)]
    drain_timeout: u64,
    /// Under sudo, keep root for the command (default: run it as the invoking user).
    #[arg(long)]
    as_root: bool,
    /// Ring buffer size in bytes (a power of two, at least a page).
    #[arg(long, value_name = "BYTES", default_value_t = live::DEFAULT_RINGBUF_BYTES, value_parser = parse_ringbuf_size)]
    ringbuf_size: u32,
    /// The command to run.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// What to trace, shared by `live` and `record`.
#[derive(Args, Debug)]
struct Trace {
    /// Follow this process and all its descendants (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Follow processes with this name, and their descendants.
    #[arg(long, value_name = "NAME")]
    comm: Option<String>,
    /// Report an exit left unreaped longer than this (e.g. 1s, 500ms, 2.5s).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ns)]
    threshold: u64,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ns)]
    duration: Option<u64>,
    /// Ring buffer size in bytes (a power of two, at least a page).
    #[arg(long, value_name = "BYTES", default_value_t = live::DEFAULT_RINGBUF_BYTES, value_parser = parse_ringbuf_size)]
    ringbuf_size: u32,
    /// Also trace per-thread events: thread creation, exits of threads that
    /// leave their process alive, and thread frees (dropped in the kernel by
    /// default: the analysis does not need them).
    #[arg(long)]
    threads: bool,
    /// Run this command and trace its tree; ends when the tree is gone.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stream process lifecycle events and findings as they happen.
    Live {
        /// Print JSON lines instead of readable text.
        #[arg(long)]
        json: bool,
        /// Print only findings and the report, not every event.
        #[arg(long)]
        no_events: bool,
        /// Also write a recording to this file.
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
        #[command(flatten)]
        trace: Trace,
    },
    /// Record to a file for `report` later; prints the report at the end.
    Record {
        /// The recording to write (mode 0600).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
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
    /// Analyse a recording: the same findings as the live run that made it.
    Report {
        /// The recording.
        file: PathBuf,
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
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
    /// Chrome trace-event JSON for ui.perfetto.dev.
    Perfetto,
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

fn live_options(
    trace: Trace,
    json: bool,
    display: Display,
    record: Option<PathBuf>,
) -> LiveOptions {
    LiveOptions {
        json,
        display,
        threshold_ns: trace.threshold,
        pids: trace.pids,
        comm: trace.comm,
        command: trace.command,
        ringbuf_bytes: trace.ringbuf_size,
        record,
        duration: trace.duration.map(Duration::from_nanos),
        thread_events: trace.threads,
        ..LiveOptions::default()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Live {
            json,
            no_events,
            record,
            trace,
        } => {
            let display = if no_events {
                Display::Findings
            } else {
                Display::Everything
            };
            run_live(live_options(trace, json, display, record))
        }
        Command::Record {
            output,
            json,
            trace,
        } => run_live(live_options(trace, json, Display::ReportOnly, Some(output))),
        Command::Check(args) => run_check(args),
        Command::VerifyKernel { format, junit } => run_verify(format, junit),
        Command::Workload { name } => {
            ExitCode::from(reaper_trace::workloads::run(&name).clamp(0, 255) as u8)
        }
        Command::Report {
            file,
            format,
            threshold,
            pids,
            comm,
        } => run_report(
            &file,
            format,
            ReplayOptions {
                threshold_ns: threshold,
                pids,
                comm,
            },
        ),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the runtime: {e}"))
}

fn run_live(options: LiveOptions) -> ExitCode {
    let outcome = runtime().and_then(|rt| rt.block_on(live::run(options)));
    match outcome {
        Ok(o) => ExitCode::from(
            o.command_status
                .map(command::exit_code)
                .unwrap_or(0)
                .clamp(0, 255) as u8,
        ),
        Err(e) => fail(&e),
    }
}

/// The user to run the command as: the one who invoked sudo, unless
/// `--as-root` (or not under sudo).
fn sudo_user(as_root: bool) -> Option<(u32, u32)> {
    if as_root {
        return None;
    }
    let uid = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    let gid = std::env::var("SUDO_GID").ok()?.parse().ok()?;
    Some((uid, gid))
}

fn run_check(args: CheckArgs) -> ExitCode {
    let CheckArgs {
        threshold,
        format,
        junit,
        output,
        drain_timeout,
        as_root,
        ringbuf_size,
        command,
    } = args;
    let shown = reaper_trace::escape::escape(&command.join(" "));
    let options = LiveOptions {
        json: format == CheckFormat::Json,
        display: Display::Silent,
        threshold_ns: threshold,
        command,
        ringbuf_bytes: ringbuf_size,
        record: output,
        drain_timeout: Duration::from_nanos(drain_timeout),
        run_as: sudo_user(as_root),
        ..LiveOptions::default()
    };
    let outcome = match runtime().and_then(|rt| rt.block_on(live::run(options))) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let status = check::exit_status(outcome.command_status, &outcome.report);
    if let Some(path) = &junit
        && let Err(e) = std::fs::write(
            path,
            check::junit(&shown, outcome.command_status, &outcome.report),
        )
    {
        return fail(&anyhow::anyhow!("writing JUnit to {}: {e}", path.display()));
    }
    match format {
        CheckFormat::Json => {
            let mut value = report::json_value(&outcome.report);
            value["command_exit_code"] = outcome.command_status.map(command::exit_code).into();
            value["exit_status"] = status.into();
            println!("{value}");
        }
        CheckFormat::Text => {
            println!("{}", report::text(&outcome.report).trim_end());
            let verdict = match status {
                check::exit::CLEAN => {
                    "clean: the command succeeded and every child was reaped in time".to_owned()
                }
                check::exit::FINDINGS => {
                    format!("FAILED: {} finding(s)", outcome.report.findings.len())
                }
                _ => format!(
                    "the command failed (exit code {}); no findings",
                    outcome.command_status.map(command::exit_code).unwrap_or(-1)
                ),
            };
            println!("reaper-trace check: {verdict} (exit {status})");
        }
    }
    ExitCode::from(status)
}

fn run_verify(format: CheckFormat, junit: Option<PathBuf>) -> ExitCode {
    let rows = match runtime().and_then(|rt| rt.block_on(reaper_trace::verify::run())) {
        Ok(rows) => rows,
        Err(e) => return fail(&e),
    };
    let ok = rows.iter().all(|r| r.ok);
    if let Some(path) = &junit {
        let cases: Vec<reaper_trace::junit::Case> = rows
            .iter()
            .map(|r| reaper_trace::junit::Case {
                name: r.behaviour.clone(),
                classname: "reaper-trace.kernel".into(),
                failure: (!r.ok).then(|| {
                    (
                        format!("expected {}, saw {}", r.expected, r.seen),
                        format!("expected: {}\nseen: {}", r.expected, r.seen),
                    )
                }),
            })
            .collect();
        if let Err(e) = std::fs::write(
            path,
            reaper_trace::junit::document("reaper-trace verify-kernel", &cases),
        ) {
            return fail(&anyhow::anyhow!("writing JUnit to {}: {e}", path.display()));
        }
    }
    match format {
        CheckFormat::Json => println!("{}", serde_json::json!({"ok": ok, "behaviours": rows})),
        CheckFormat::Text => {
            println!("{:<48} {:<44} {:<44} ok", "behaviour", "expected", "seen");
            for r in &rows {
                println!(
                    "{:<48} {:<44} {:<44} {}",
                    r.behaviour,
                    r.expected,
                    r.seen,
                    if r.ok { "yes" } else { "NO" }
                );
            }
        }
    }
    ExitCode::from(if ok { 0 } else { 1 })
}

fn run_report(path: &std::path::Path, format: Format, options: ReplayOptions) -> ExitCode {
    let name = path.display();
    let input = match std::fs::File::open(path) {
        Ok(f) => std::io::BufReader::with_capacity(1 << 20, f),
        Err(e) => return fail(&anyhow::anyhow!("{name}: {e}")),
    };
    if matches!(format, Format::Perfetto) {
        return match timeline::export(input, std::io::stdout().lock()) {
            Ok(truncated) => {
                warn_truncated(path, truncated);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&anyhow::anyhow!("{name}: {e}")),
        };
    }
    let replay = match replay::replay(input, &options) {
        Ok(r) => r,
        Err(e) => return fail(&anyhow::anyhow!("{name}: {e}")),
    };
    warn_truncated(path, replay.truncated_at);
    let rendered = match format {
        Format::Json => {
            let mut value = report::json_value(&replay.report);
            value["truncated_at"] = replay.truncated_at.into();
            value["records"] = replay.records.into();
            value["kernel_release"] = replay.meta.kernel_release.clone().into();
            value["hostname"] = replay.meta.hostname.clone().into();
            value.to_string()
        }
        _ => report::text(&replay.report),
    };
    println!("{}", rendered.trim_end());
    ExitCode::SUCCESS
}

fn warn_truncated(path: &std::path::Path, at: Option<u64>) {
    if let Some(at) = at {
        eprintln!(
            "reaper-trace: warning: {} is truncated at byte {at} (no trailer: the recorder did not stop cleanly); everything before it was read",
            path.display()
        );
    }
}

/// One line: the error and its causes, without newlines.
fn fail(error: &anyhow::Error) -> ExitCode {
    let message = format!("{error:#}").replace('\n', " | ");
    eprintln!("reaper-trace: {message}");
    ExitCode::from(2)
}
