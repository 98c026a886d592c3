//! The `burst` part of `cargo xtask bench` (issue 21): a 15,000-process
//! fork storm beside CPU-bound work on every core, traced system-wide with
//! the default settings by `live --no-events`, `live` (events to
//! /dev/null) and `serve`, as the static release build. What it reports:
//! the events each saw and lost, how full its ring buffer got (sampled
//! from outside, [`RingFill`]), its CPU time, and its RSS at the peak and
//! once the burst is over.
//!
//! The CPU-bound work is what made the tracer lose events on a busy
//! machine: its reader needs little CPU, but needs it while the storm is
//! filling the ring, and the busy loops and the storm's own processes
//! are then all competing for the same two cores.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::ringfill::RingFill;
use crate::measure::{Background, events_and_lost, median, rss_kb};

/// The storm of the issue: this many processes, each forked, exited and
/// reaped at once by its parent.
const PROCESSES: u32 = 15_000;

/// The storm is run by this many forkers at once, as a build or a test
/// suite starts its processes from many parents.
const FORKERS: u32 = 64;

/// Busy loops per core beside the storm: with the forkers, about 80
/// runnable tasks on two cores, where an ordinary task waits tens of
/// milliseconds for each slice.
const HOGS_PER_CPU: u32 = 8;

/// How long the tracer idles after the burst before its steady RSS is
/// read: the allocator has given back what the burst took.
const SETTLE: Duration = Duration::from_secs(2);

/// The tracers, each as the command line's defaults leave it, and one
/// with its reader left at normal priority: what the default buys.
const MODES: &[(&str, &[&str])] = &[
    ("live --no-events", &["live", "--no-events"]),
    ("live (events to /dev/null)", &["live"]),
    ("serve", &["serve", "--listen", "127.0.0.1:0"]),
    (
        "serve --syscall-hooks",
        &["serve", "--listen", "127.0.0.1:0", "--syscall-hooks"],
    ),
    (
        "live --no-events --normal-priority",
        &["live", "--no-events", "--normal-priority"],
    ),
];

/// Runs the part: `rounds` rounds, each mode once per round.
pub fn run(tool: &Path, scenario: &Path, rounds: usize) -> anyhow::Result<Value> {
    let mut runs: Vec<Vec<Value>> = vec![Vec::new(); MODES.len()];
    for round in 0..rounds {
        eprintln!("xtask bench: burst round {}/{rounds}", round + 1);
        for (i, (name, args)) in MODES.iter().enumerate() {
            let run = one_run(tool, scenario, args)?;
            eprintln!("xtask bench: burst {name}: {run}");
            runs[i].push(run);
        }
    }
    let mut table = serde_json::Map::new();
    for (i, (name, _)) in MODES.iter().enumerate() {
        table.insert((*name).into(), summary(&runs[i]));
    }
    Ok(json!({
        "processes": PROCESSES,
        "forkers": FORKERS,
        "busy_loops": HOGS_PER_CPU * cpus(),
        "rounds": rounds,
        "tracers": table,
    }))
}

/// The rounds of one mode: losses summed (any loss is a failure of the
/// target), the rest as medians, the ring's fill at its worst.
fn summary(runs: &[Value]) -> Value {
    let f = |key: &str| median(runs.iter().filter_map(|r| r[key].as_f64()).collect());
    let max = |key: &str| runs.iter().filter_map(|r| r[key].as_u64()).max();
    let sum = |key: &str| runs.iter().filter_map(|r| r[key].as_u64()).sum::<u64>();
    json!({
        "events": sum("events"),
        "lost": sum("lost"),
        "runs_with_loss": runs.iter().filter(|r| r["lost"].as_u64() > Some(0)).count(),
        "ring_peak_fill": runs.iter().filter_map(|r| r["ring_peak_fill"].as_f64()).fold(0.0, f64::max),
        "ring_bytes": max("ring_bytes"),
        "storm_wall_s": f("storm_wall_s"),
        "tracer_cpu_s": f("tracer_cpu_s"),
        "run_queue_wait_s": f("run_queue_wait_s"),
        "run_queue_wait_ms_per_slice": median(runs.iter().filter_map(|r| Some(r["run_queue_wait_s"].as_f64()? * 1e3 / r["run_queue_waits"].as_f64()?.max(1.0))).collect()),
        "peak_rss_kb": max("peak_rss_kb"),
        "steady_rss_kb": max("steady_rss_kb"),
    })
}

/// One tracer through one burst.
fn one_run(tool: &Path, scenario: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let hogs = Hogs::start(HOGS_PER_CPU * cpus())?;
    let mut cmd = Command::new(tool);
    cmd.args(args).stdout(Stdio::null());
    let tracer = Background::start(&mut cmd, "tracing", None)?;
    let fill = RingFill::watch(tracer.pid())?;
    let waited_before = run_queue_wait(tracer.pid());
    let start = Instant::now();
    let storm = storm(scenario);
    let storm_wall = start.elapsed().as_secs_f64();
    let waited = run_queue_wait(tracer.pid());
    drop(hogs);
    storm?;
    std::thread::sleep(SETTLE);
    let (steady_kb, _) = rss_kb(tracer.pid());
    let (peak_fill, ring_bytes) = fill.stop();
    let (cpu, peak_kb, lines) = tracer.stop()?;
    let (events, lost) = events_and_lost(&lines);
    // No totals line would read as nothing lost.
    anyhow::ensure!(events > 0, "{args:?} printed no totals: {lines:?}");
    Ok(json!({
        "events": events,
        "lost": lost,
        "ring_peak_fill": peak_fill as f64 / ring_bytes as f64,
        "ring_bytes": ring_bytes,
        "storm_wall_s": storm_wall,
        "tracer_cpu_s": cpu,
        "run_queue_wait_s": (waited.0 - waited_before.0) as f64 / 1e9,
        "run_queue_waits": waited.1 - waited_before.1,
        "peak_rss_kb": peak_kb,
        "steady_rss_kb": steady_kb,
    }))
}

/// The storm: `PROCESSES` fork+exit+wait cycles shared among the forkers.
fn storm(scenario: &Path) -> anyhow::Result<()> {
    let n = FORKERS;
    let mut children = Vec::new();
    for i in 0..n {
        let share = PROCESSES / n + u32::from(i < PROCESSES % n);
        children.push(
            Command::new(scenario)
                .args(["storm", &share.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
    }
    let mut failed = 0;
    for mut child in children {
        if !child.wait()?.success() {
            failed += 1;
        }
    }
    anyhow::ensure!(failed == 0, "{failed} storm forkers failed");
    Ok(())
}

/// How long the tracer's threads have waited on a run queue for a core
/// (ns), and how many times they were given one: `/proc/PID/task/*/schedstat`.
fn run_queue_wait(pid: u32) -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    let mut total = (0, 0);
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let v: Vec<u64> = text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if let [_, delay, slices] = v[..] {
            total.0 += delay;
            total.1 += slices;
        }
    }
    total
}

fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
}

/// Busy loops, not pinned, killed and reaped on drop.
struct Hogs(Vec<Child>);

impl Hogs {
    fn start(n: u32) -> anyhow::Result<Hogs> {
        let mut hogs = Hogs(Vec::new());
        for _ in 0..n {
            // A shell loop: all user time, no system call a probe sees.
            hogs.0.push(
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()?,
            );
        }
        Ok(hogs)
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn print(part: &Value) {
    println!(
        "burst: {} processes from {} forkers beside {} busy loops, {} round(s), static build, default settings unless named (rounds summed: events, lost; worst: ring peak, RSS; median: times):",
        part["processes"], part["forkers"], part["busy_loops"], part["rounds"]
    );
    println!(
        "  {:<36} {:>9} {:>7} {:>9} {:>9} {:>10} {:>24} {:>13} {:>14}",
        "tracer",
        "events",
        "lost",
        "ring peak",
        "storm",
        "tracer CPU",
        "waited for a core",
        "peak RSS",
        "steady RSS"
    );
    let Some(tracers) = part["tracers"].as_object() else {
        return;
    };
    for (name, t) in tracers {
        println!(
            "  {:<36} {:>9} {:>7} {:>8.0}% {:>8.2}s {:>9.3}s {:>6.2}s, {:>5.1} ms/slice {:>9} KiB {:>10} KiB",
            name,
            t["events"].as_u64().unwrap_or(0),
            t["lost"].as_u64().unwrap_or(0),
            t["ring_peak_fill"].as_f64().unwrap_or(f64::NAN) * 100.0,
            t["storm_wall_s"].as_f64().unwrap_or(f64::NAN),
            t["tracer_cpu_s"].as_f64().unwrap_or(f64::NAN),
            t["run_queue_wait_s"].as_f64().unwrap_or(f64::NAN),
            t["run_queue_wait_ms_per_slice"]
                .as_f64()
                .unwrap_or(f64::NAN),
            t["peak_rss_kb"].as_u64().unwrap_or(0),
            t["steady_rss_kb"].as_u64().unwrap_or(0)
        );
    }
}
