//! Project tasks: `cargo xtask setup | demo | test`.
//!
//! Both `demo` and `test` run `setup` first. Set-up installs what a fresh
//! machine lacks and is quick when everything is there already.

mod setup;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain pieces and packages the build and tests need.
    Setup,
    /// Build, then trace the bundled workload that leaks zombies.
    Demo {
        /// Print JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Build, then run every test: unit tests and the kernel tests (root).
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.task {
        Task::Setup => setup::run(),
        Task::Demo { json } => {
            setup::run()?;
            cargo(&[
                "build",
                "-p",
                "reaper-trace",
                "-p",
                "reaper-trace-tests",
                "--bins",
            ])?;
            let target = target_dir();
            let mut cmd = Command::new(format!("{target}/debug/reaper-trace"));
            cmd.arg("live");
            if json {
                cmd.arg("--json");
            }
            cmd.args(["--", &format!("{target}/debug/scenario"), "demo"]);
            eprintln!("xtask: running {cmd:?}");
            let status = cmd.status().context("running reaper-trace")?;
            if !status.success() {
                bail!("reaper-trace exited with {status}");
            }
            Ok(())
        }
        Task::Test { args } => {
            setup::run()?;
            // The kernel tests drive the binaries: build them first.
            cargo(&[
                "build",
                "-p",
                "reaper-trace",
                "-p",
                "reaper-trace-tests",
                "--bins",
            ])?;
            let mut test = vec!["test", "--workspace", "--exclude", "reaper-trace-ebpf"];
            if !args.is_empty() {
                test.push("--");
                test.extend(args.iter().map(String::as_str));
            }
            cargo(&test)
        }
    }
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(args)
        .status()
        .with_context(|| format!("running cargo {args:?}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn target_dir() -> String {
    std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_owned())
}
