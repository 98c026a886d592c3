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
                pids,
                comm,
                ringbuf_size,
                command,
            } => {
                live::run(LiveOptions {
                    json,
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
