//! The command line. Every failure ends as one line on stderr and a non-zero
//! exit status; nothing here panics on bad input.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use reaper_trace::{
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
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20, value_parser = parse_ringbuf_size)]
    ringbuf_size: u32,
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

fn run_live(options: LiveOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("starting the runtime: {e}")),
    };
    match runtime.block_on(live::run(options)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => fail(&e),
    }
}

fn run_report(path: &std::path::Path, format: Format, options: ReplayOptions) -> ExitCode {
    let name = path.display();
    if format_is_perfetto(format) {
        let result = std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))
            .and_then(|f| {
                timeline::export(
                    std::io::BufReader::with_capacity(1 << 20, f),
                    std::io::stdout().lock(),
                )
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))
            });
        return match result {
            Ok(truncated) => {
                warn_truncated(path, truncated);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return fail(&anyhow::anyhow!("{name}: {e}")),
    };
    let replay = match replay::replay(std::io::BufReader::with_capacity(1 << 20, file), &options) {
        Ok(r) => r,
        Err(e) => return fail(&anyhow::anyhow!("{name}: {e}")),
    };
    warn_truncated(path, replay.truncated_at);
    let rendered = match format {
        Format::Json => {
            let mut value: serde_json::Value =
                serde_json::from_str(&report::json(&replay.report)).unwrap_or_default();
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

fn format_is_perfetto(format: Format) -> bool {
    matches!(format, Format::Perfetto)
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
