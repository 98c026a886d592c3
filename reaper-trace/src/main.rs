//! The command line. `cli` says what can be asked, `commands` does it;
//! nothing here panics on bad input.

mod cli;
mod commands;
mod generate;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, live_options, serve_options};
use live::Display;
use reaper_trace::{live, output::error_line, pipeline::replay::ReplayOptions};

/// Runs before Rust's runtime sets SIGPIPE to ignored (and before any
/// thread exists): the signal state this process inherited is what the
/// command it runs gets (see `host::signals`).
#[used]
#[unsafe(link_section = ".init_array")]
static CAPTURE_SIGNALS: extern "C" fn() = capture_signals;

extern "C" fn capture_signals() {
    reaper_trace::host::signals::capture_at_start();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Live {
            json,
            no_events,
            record,
            force,
            trace,
        } => {
            let display = if no_events {
                Display::Findings
            } else {
                Display::Everything
            };
            commands::run_live(live_options(trace, json, display, record, force))
        }
        Command::Record {
            output,
            force,
            json,
            trace,
        } => commands::run_live(live_options(
            trace,
            json,
            Display::ReportOnly,
            Some(output),
            force,
        )),
        Command::Check(args) => commands::run_check(args),
        Command::Serve(args) => {
            let (listen, web_config) = (args.listen, args.web_config_file.clone());
            commands::run_serve(serve_options(args), listen, web_config)
        }
        Command::VerifyKernel { format, junit } => commands::run_verify(format, junit),
        Command::Zombies {
            json,
            threshold,
            parents,
        } => commands::run_zombies(json, threshold, &parents),
        Command::Workload { name } => {
            ExitCode::from(reaper_trace::verify::workloads::run(&name).clamp(0, 255) as u8)
        }
        Command::Generate { what, dir } => generate::run(what, &dir),
        Command::Report {
            file,
            format,
            threshold,
            pids,
            comm,
            metrics_file,
        } => commands::run_report(
            &file,
            format,
            ReplayOptions {
                threshold_ns: threshold,
                pids,
                comm,
            },
            metrics_file.as_deref(),
        ),
    }
}

/// One line: the error and its causes, each said once, without newlines;
/// every command fails this way, with exit status 2.
fn fail(error: &anyhow::Error) -> ExitCode {
    let message = error_line::one_line(error.chain());
    eprintln!("reaper-trace: {message}");
    ExitCode::from(2)
}
