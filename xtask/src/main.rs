//! Project tasks: `cargo xtask setup | demo | test | vm-test`.
//!
//! Both `demo` and `test` run `setup` first. Set-up installs what a fresh
//! machine lacks and is quick when everything is there already.

mod bench;
mod deb;
mod dist;
mod measure;
mod realworld;
mod setup;
mod soak;
mod vm;

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
    /// Benchmarks (release build, root): overhead against untraced runs and
    /// bpftrace, loss, memory, recording size and report throughput.
    Bench {
        /// Interleaved rounds per comparison.
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// Processes per fork storm.
        #[arg(long, default_value_t = 20_000)]
        storm: u32,
        /// Only one part: overhead, syscalls, stacks, parallel, burst, filtered, recording, memory, startup,
        /// or soak (run only when asked for: it takes `--soak-minutes`).
        #[arg(long)]
        only: Option<String>,
        /// How long the soak runs `serve` under churn.
        #[arg(long, default_value_t = 10.0)]
        soak_minutes: f64,
    },
    /// Build the static release binary (musl, eBPF embedded) and package it
    /// in target/dist/: the binary, its .sha256, and a .deb with its man
    /// pages and shell completions; print each one's sha256 and size.
    Dist,
    /// Fuzz the recording reader for a bounded time (cargo-fuzz, nightly).
    Fuzz {
        #[arg(long, default_value_t = 120)]
        seconds: u64,
    },
    /// Boot the static binary on the newest Debian cloud kernel of each
    /// series in qemu, and run the same checks on the host (root).
    VmTest,
    /// Trace the whole machine while real programs run (git, timeout,
    /// make, Python's test_subprocess, PostgreSQL with pgbench, bash job
    /// control, xargs, a fork storm) and deliberate leaks; judge every
    /// finding against a /proc sampler and bpftrace (root, about 3 minutes).
    Realworld {
        /// How long the looping workloads run (seconds).
        #[arg(long, default_value_t = 90)]
        seconds: u64,
        /// Also record the trace to target/realworld/trace.rtrc.
        #[arg(long)]
        record: bool,
    },
    /// Build, then run every test: unit tests, the kernel tests, the
    /// real-machine test of `realworld` and the kernel matrix of `vm-test`
    /// (root).
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
        Task::Demo { json } => demo(json),
        Task::Bench {
            rounds,
            storm,
            only,
            soak_minutes,
        } => {
            setup::run()?;
            build_release_bins(&["--examples"])?;
            bench::run(bench::Options {
                rounds,
                storm,
                only,
                soak_minutes,
            })
        }
        Task::Dist => {
            setup::run()?;
            dist::run()
        }
        Task::Fuzz { seconds } => fuzz(seconds),
        Task::Test { args } => test(&args),
        Task::Realworld { seconds, record } => {
            setup::run()?;
            build_release_bins(&[])?;
            realworld::run(realworld::Options { seconds, record })
        }
        Task::VmTest => {
            setup::run()?;
            vm::run()
        }
    }
}

/// `cargo xtask demo`: the bundled workload that leaks zombies, traced.
fn demo(json: bool) -> anyhow::Result<()> {
    setup::run()?;
    build_debug_bins()?;
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

/// `cargo xtask fuzz`: the recording reader's fuzzer for `seconds`.
fn fuzz(seconds: u64) -> anyhow::Result<()> {
    setup::run()?;
    setup::cargo_fuzz()?;
    let fuzz_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");
    let status = Command::new("cargo")
        .current_dir(fuzz_dir)
        .args([
            "+nightly",
            "fuzz",
            "run",
            "read_recording",
            "corpus/read_recording",
            "--",
        ])
        .arg(format!("-max_total_time={seconds}"))
        .args(["-rss_limit_mb=2048", "-print_final_stats=1"])
        .status()
        .context("running cargo fuzz")?;
    if !status.success() {
        bail!(
            "the fuzzer found a crash: see fuzz/artifacts/read_recording/ and add it as a regression test"
        );
    }
    Ok(())
}

/// `cargo xtask test`: every build, test and check, then the real-machine
/// test and the kernel matrix.
fn test(args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    // The kernel tests drive the binaries: build them first.
    build_debug_bins()?;
    // The runtime tests put the scenario in images built FROM
    // scratch: it must be static.
    cargo(&[
        "build",
        "-p",
        "reaper-trace-tests",
        "--bin",
        "scenario",
        "--target",
        setup::STATIC_TARGET,
    ])?;
    // The pure core alone (what the fuzz target builds): nothing in
    // it may need the kernel feature's crates.
    cargo(&[
        "check",
        "-p",
        "reaper-trace",
        "--lib",
        "--no-default-features",
    ])?;
    dist::run()?;
    let mut test = vec!["test", "--workspace", "--exclude", "reaper-trace-ebpf"];
    if !args.is_empty() {
        test.push("--");
        test.extend(args.iter().map(String::as_str));
    }
    cargo(&test)?;
    build_release_bins(&[])?;
    // The kernel matrix runs whatever the real-machine test says;
    // its failure is reported after.
    let real_machine = realworld::run(realworld::Options {
        seconds: 90,
        record: false,
    });
    vm::run()?;
    real_machine
}

/// The release tool and scenario programs (the real-machine test, the
/// benchmarks), and `extra` targets.
fn build_release_bins(extra: &[&str]) -> anyhow::Result<()> {
    let mut args = vec![
        "build",
        "--release",
        "-p",
        "reaper-trace",
        "-p",
        "reaper-trace-tests",
        "--bins",
    ];
    args.extend_from_slice(extra);
    cargo(&args)
}

/// The tool and the scenario programs the demo and the kernel tests run.
fn build_debug_bins() -> anyhow::Result<()> {
    cargo(&[
        "build",
        "-p",
        "reaper-trace",
        "-p",
        "reaper-trace-tests",
        "--bins",
    ])
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

pub(crate) fn target_dir() -> String {
    std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_owned())
}
