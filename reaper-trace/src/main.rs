//! The command line. Every failure ends as one line on stderr and a non-zero
//! exit status; nothing here panics on bad input.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reaper_trace::live::{self, LiveOptions};

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

#[derive(Subcommand, Debug)]
enum Command {
    /// Stream process lifecycle events (fork, exec, exit, SIGCHLD, waits, reaps) as they happen.
    Live {
        /// Print JSON lines instead of readable text.
        #[arg(long)]
        json: bool,
        /// Print only findings and the report, not every event.
        #[arg(long)]
        no_events: bool,
        /// Report an exit left unreaped longer than this (e.g. 1s, 500ms, 2.5s).
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ns)]
        threshold: u64,
        /// Follow this process and all its descendants (repeatable).
        #[arg(long = "pid", value_name = "PID")]
        pids: Vec<u32>,
        /// Follow processes with this name, and their descendants.
        #[arg(long, value_name = "NAME")]
        comm: Option<String>,
        /// Ring buffer size in bytes (a power of two, at least a page).
        #[arg(long, value_name = "BYTES", default_value_t = 8 << 20, value_parser = parse_ringbuf_size)]
        ringbuf_size: u32,
        /// Run this command and trace its tree; ends when the tree is gone.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("starting the runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Live {
                json,
                no_events,
                threshold,
                pids,
                comm,
                ringbuf_size,
                command,
            } => {
                live::run(LiveOptions {
                    json,
                    show_events: !no_events,
                    threshold_ns: threshold,
                    pids,
                    comm,
                    command,
                    ringbuf_bytes: ringbuf_size,
                })
                .await
            }
        }
    });
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => fail(&e),
    }
}

/// One line: the error and its causes, without newlines.
fn fail(error: &anyhow::Error) -> ExitCode {
    let message = format!("{error:#}").replace('\n', " | ");
    eprintln!("reaper-trace: {message}");
    ExitCode::from(2)
}
