//! `cargo xtask bench`: the benchmarks of the README, as interleaved runs on
//! this machine, reported as a table and written as JSON
//! (target/bench/latest.json). Ratios, not absolute times: these 2-core
//! machines are noisy, so every traced run is compared with an untraced run
//! of the same round.
//!
//! The benchmark is a table of named parts ([`PARTS`]); `--only NAME` runs
//! one of them.

mod burst;
mod pgbench;
mod ringfill;
mod syscalls;
mod tracefs;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::measure::{
    Background, Cost, events_and_lost, measured, median, no_zombie_children, rss_kb, which,
};

pub struct Options {
    pub rounds: usize,
    pub storm: u32,
    pub only: Option<String>,
    /// Length of the soak (run only with `--only soak`).
    pub soak_minutes: f64,
}

/// One named part of the benchmark.
struct Part {
    /// What `--only` selects it by.
    name: &'static str,
    /// Its key in latest.json.
    key: &'static str,
    /// Whether a run without `--only` includes it: the soak is left out,
    /// it takes `--soak-minutes`.
    by_default: bool,
    run: fn(&Bench) -> anyhow::Result<Value>,
    /// Its lines of the table, from its value in latest.json.
    print: fn(&Value),
}

/// The parts, in the order they run and print.
const PARTS: &[Part] = &[
    Part {
        name: "soak",
        key: "soak",
        by_default: false,
        run: soak,
        print: print_soak,
    },
    Part {
        name: "overhead",
        key: "fork_storm_overhead",
        by_default: true,
        run: overhead,
        print: print_overhead,
    },
    Part {
        name: "syscalls",
        key: "syscall_overhead",
        by_default: true,
        run: syscalls::run,
        print: syscalls::print,
    },
    Part {
        name: "stacks",
        key: "stacks",
        by_default: true,
        run: stacks_cost,
        print: print_stacks,
    },
    Part {
        name: "parallel",
        key: "parallel_storm",
        by_default: true,
        run: parallel,
        print: print_parallel,
    },
    Part {
        name: "burst",
        key: "burst",
        by_default: true,
        run: burst,
        print: burst::print,
    },
    Part {
        name: "filtered",
        key: "filtered_unrelated_storm",
        by_default: true,
        run: filtered,
        print: print_filtered,
    },
    Part {
        name: "recording",
        key: "recording",
        by_default: true,
        run: recording,
        print: print_recording,
    },
    Part {
        name: "startup",
        key: "startup",
        by_default: true,
        run: startup,
        print: print_startup,
    },
    Part {
        name: "memory",
        key: "memory",
        by_default: true,
        run: memory,
        print: print_memory,
    },
];

/// What every part runs and how much: the release binaries and the sizes
/// asked for on the command line.
struct Bench {
    tool: PathBuf,
    scenario: PathBuf,
    synth: PathBuf,
    storm: u32,
    rounds: usize,
    soak_minutes: f64,
    bpftrace: Option<PathBuf>,
    exitsnoop: Option<PathBuf>,
}

impl Bench {
    fn new(options: &Options) -> Bench {
        let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release");
        Bench {
            tool: release.join("reaper-trace"),
            scenario: release.join("scenario"),
            synth: release.join("examples/synth_recording"),
            storm: options.storm,
            rounds: options.rounds,
            soak_minutes: options.soak_minutes,
            bpftrace: which("bpftrace"),
            exitsnoop: which("exitsnoop"),
        }
    }

    /// The fork storm, on CPU 0. Every tracer's userspace runs on CPU 1
    /// ([`on_cpu1`]), so that run-to-run noise from the scheduler moving
    /// them around stays out of the ratios; the probes themselves run in the
    /// storm, on CPU 0.
    fn pinned_storm(&self) -> Command {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"])
            .arg(&self.scenario)
            .args(["storm", &self.storm.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// A made-up recording of `events` events at `file`, by the
    /// synth_recording example.
    fn synthesize(&self, file: &Path, events: u64) -> anyhow::Result<()> {
        measured(
            Command::new(&self.synth)
                .arg(file)
                .arg(events.to_string())
                .stderr(Stdio::null()),
        )?;
        Ok(())
    }

    /// The fork storm, not pinned: the parallel storm uses both CPUs.
    fn storm(&self) -> Command {
        let mut c = Command::new(&self.scenario);
        c.args(["storm", &self.storm.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }
}

fn on_cpu1(program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", "1"]).arg(program);
    c
}

/// Where the parts put their scratch files: memory, not the disk.
const SHM: &str = "/dev/shm";

const BPFTRACE_SCRIPT: &str = r#"
tracepoint:sched:sched_process_fork { printf("fork %d %d\n", args->parent_pid, args->child_pid); }
tracepoint:sched:sched_process_exec { printf("exec %d\n", args->pid); }
tracepoint:sched:sched_process_exit { printf("exit %d\n", args->pid); }
tracepoint:signal:signal_generate /args->sig == 17/ { printf("sigchld %d %d\n", args->pid, args->result); }
tracepoint:syscalls:sys_exit_wait4 { printf("wait4 %d %d\n", pid, args->ret); }
tracepoint:sched:sched_process_free { printf("free %d\n", args->pid); }
"#;

/// The parts that run the peers (bpftrace, exitsnoop), which need tracefs.
const PEER_PARTS: &[&str] = &["overhead", "syscalls"];

/// bpftrace says on stderr, with this variable set, once every probe is
/// attached ("Attaching N probes" comes before that).
const BPFTRACE_ATTACHED: &str = "__BPFTRACE_NOTIFY_PROBES_ATTACHED";

fn bpftrace_attached(cmd: &mut Command) -> &mut Command {
    cmd.env(BPFTRACE_ATTACHED, "1")
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let mut bench = Bench::new(&options);
    let wanted: Vec<&Part> = PARTS
        .iter()
        .filter(|part| match options.only.as_deref() {
            Some(only) => only == part.name,
            None => part.by_default,
        })
        .collect();
    // Held to the end: unmounts what it mounted.
    let mut _tracefs = None;
    if wanted.iter().any(|p| PEER_PARTS.contains(&p.name))
        && (bench.bpftrace.is_some() || bench.exitsnoop.is_some())
    {
        match tracefs::Tracefs::for_peers() {
            Ok(guard) => _tracefs = Some(guard),
            Err(why) => {
                eprintln!("xtask bench: skipping the bpftrace and exitsnoop peers: {why}");
                (bench.bpftrace, bench.exitsnoop) = (None, None);
            }
        }
    }
    let mut results = serde_json::Map::new();
    let outcome = wanted.iter().try_for_each(|part| {
        results.insert(part.key.into(), (part.run)(&bench)?);
        anyhow::Ok(())
    });
    // Every child the bench started must have been waited for, whether the
    // parts succeeded or not.
    let zombies = no_zombie_children();
    outcome?;
    zombies?;
    let results = Value::Object(results);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("latest.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    // Each part's lines of the table, in the parts' order.
    for part in PARTS {
        if let Some(value) = results.get(part.key) {
            (part.print)(value);
        }
    }
    eprintln!("xtask bench: wrote target/bench/latest.json");
    Ok(())
}

/// `serve` for a long time under churn (see soak.rs).
fn soak(b: &Bench) -> anyhow::Result<Value> {
    eprintln!(
        "xtask bench: soak, serve for {} minutes under churn",
        b.soak_minutes
    );
    crate::soak::run_soak(&b.tool, &b.scenario, b.soak_minutes)
}

/// The fork storm under each tracer, interleaved per round with the
/// untraced storm: wall and CPU (the storm's and the tracer's) ratios, and
/// the events each tracer lost.
fn overhead(b: &Bench) -> anyhow::Result<Value> {
    let mut modes: Vec<&str> = vec!["live", "live --record", "serve", "serve --syscall-hooks"];
    if b.bpftrace.is_some() {
        modes.push("bpftrace");
    }
    let mut wall: BTreeMap<&str, Vec<f64>> = Default::default();
    let mut cpu: BTreeMap<&str, Vec<f64>> = Default::default();
    let mut lost: BTreeMap<&str, u64> = Default::default();
    // Each traced storm is paired with an untraced storm just before it:
    // one untraced storm per round, at its start, let the machine's drift
    // within a round land on the tracers.
    for round in 0..b.rounds {
        eprintln!("xtask bench: overhead round {}/{}", round + 1, b.rounds);
        for mode in &modes {
            let (base, _) = measured(&mut b.pinned_storm())?;
            let (tracer_cpu, run_cost, run_lost) = traced_storm(b, mode)?;
            wall.entry(mode)
                .or_default()
                .push(run_cost.wall / base.wall);
            cpu.entry(mode)
                .or_default()
                .push((run_cost.cpu + tracer_cpu) / base.cpu);
            *lost.entry(mode).or_default() += run_lost;
        }
    }
    let mut table = serde_json::Map::new();
    for mode in &modes {
        table.insert(
            (*mode).into(),
            json!({"wall_ratio": median(wall[mode].clone()), "cpu_ratio": median(cpu[mode].clone()), "lost": lost[mode], "rounds": b.rounds}),
        );
    }
    let _ = std::fs::remove_file(Path::new(SHM).join("reaper-trace-bench.rtrace"));
    Ok(Value::Object(table))
}

/// One pinned storm under the tracer `mode`: the tracer's CPU seconds, the
/// storm's cost and the events the tracer lost.
fn traced_storm(b: &Bench, mode: &str) -> anyhow::Result<(f64, Cost, u64)> {
    let shm = Path::new(SHM);
    if mode == "bpftrace" {
        return bpftrace_storm(b);
    }
    let mut cmd = on_cpu1(&b.tool);
    if let Some(options) = mode.strip_prefix("serve") {
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(options.split_whitespace())
            .stdout(Stdio::null());
    } else {
        cmd.arg("live").stdout(Stdio::null());
        if mode == "live --record" {
            // The same file each round: replaced, as
            // `record` refuses an existing path otherwise.
            cmd.args([
                "--force",
                "--record",
                shm.join("reaper-trace-bench.rtrace")
                    .to_str()
                    .expect("utf-8"),
            ]);
        }
    }
    let bg = Background::start(&mut cmd, "tracing", None)?;
    let (cost, _) = measured(&mut b.pinned_storm())?;
    let (tcpu, _, lines) = bg.stop()?;
    Ok((tcpu, cost, events_and_lost(&lines).1))
}

/// [`traced_storm`] under bpftrace, which prints its events (and says it is
/// attached) on stdout, and its losses as `Lost N events`.
fn bpftrace_storm(b: &Bench) -> anyhow::Result<(f64, Cost, u64)> {
    let out = Path::new(SHM).join("reaper-trace-bench-bpftrace.txt");
    let file = std::fs::File::create(&out)?;
    let bg = Background::start(
        bpftrace_attached(&mut on_cpu1(b.bpftrace.as_ref().expect("checked")))
            .args(["-e", BPFTRACE_SCRIPT])
            .stdout(file),
        BPFTRACE_ATTACHED,
        None,
    )?;
    let (cost, _) = measured(&mut b.pinned_storm())?;
    let (tcpu, _, lines) = bg.stop()?;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let lost: u64 = text
        .lines()
        .chain(lines.iter().map(String::as_str))
        .filter_map(|l| l.strip_prefix("Lost "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    let _ = std::fs::remove_file(&out);
    Ok((tcpu, cost, lost))
}

/// Two storms at once under a system-wide `live`: events per second, loss,
/// and the tool's CPU per million events and peak RSS.
fn parallel(b: &Bench) -> anyhow::Result<Value> {
    eprintln!("xtask bench: parallel storm");
    let bg = Background::start(
        Command::new(&b.tool).arg("live").stdout(Stdio::null()),
        "tracing",
        None,
    )?;
    let start = Instant::now();
    let mut first = b.storm().spawn()?;
    let mut second = b.storm().spawn()?;
    first.wait()?;
    second.wait()?;
    let wall = start.elapsed().as_secs_f64();
    let (tcpu, rss, lines) = bg.stop()?;
    let (events, lost) = events_and_lost(&lines);
    Ok(
        json!({"processes": 2 * b.storm, "wall_s": wall, "events": events, "events_per_s": events as f64 / wall, "lost": lost,
               "tool_cpu_s_per_million_events": tcpu / (events as f64 / 1e6), "tool_peak_rss_kb": rss}),
    )
}

/// A fork storm beside busy loops on every core, under each tracer with
/// the default settings, as the static release build runs (burst.rs).
fn burst(b: &Bench) -> anyhow::Result<Value> {
    let built = crate::dist::build_static()?;
    burst::run(&built.tool, &built.scenario, b.rounds)
}

/// A storm unrelated to what `live --pid` follows (an idle sleep): what the
/// filter leaves of the overhead.
fn filtered(b: &Bench) -> anyhow::Result<Value> {
    let mut ratios = Vec::new();
    for round in 0..b.rounds {
        eprintln!("xtask bench: filtered round {}/{}", round + 1, b.rounds);
        let (base, _) = measured(&mut b.pinned_storm())?;
        let mut target = Command::new("sleep").arg("600").spawn()?;
        let bg = Background::start(
            on_cpu1(&b.tool)
                .args(["live", "--pid", &target.id().to_string()])
                .stdout(Stdio::null()),
            "tracing",
            None,
        )?;
        let (cost, _) = measured(&mut b.pinned_storm())?;
        bg.stop()?;
        let _ = target.kill();
        let _ = target.wait();
        ratios.push(cost.wall / base.wall);
    }
    Ok(json!({"wall_ratio": median(ratios), "rounds": b.rounds}))
}

/// The recording's size per event on a recorded storm, and `report`'s
/// throughput and peak RSS over a synthetic 10-million-event recording.
fn recording(b: &Bench) -> anyhow::Result<Value> {
    eprintln!("xtask bench: recording size and report throughput");
    let shm = Path::new(SHM);
    let file = shm.join("reaper-trace-bench-storm.rtrace");
    let out = Command::new(&b.tool)
        .args([
            "record",
            "--json",
            "--force",
            "-o",
            file.to_str().expect("utf-8"),
            "--",
        ])
        .arg(&b.scenario)
        .args(["storm", &b.storm.to_string()])
        .stderr(Stdio::null())
        .output()?;
    let totals: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &Value| v["type"] == "totals")
        .unwrap_or_default();
    let events: u64 = totals["events"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let bytes = std::fs::metadata(&file)?.len();
    let _ = std::fs::remove_file(&file);
    let synth_file = shm.join("reaper-trace-bench-10m.rtrace");
    b.synthesize(&synth_file, 10_000_000)?;
    let mut runs = Vec::new();
    let mut rss = 0;
    for _ in 0..3 {
        let (cost, maxrss) = measured(
            on_cpu1(&b.tool)
                .args(["report", "--format", "json"])
                .arg(&synth_file)
                .stdout(Stdio::null()),
        )?;
        runs.push(cost.wall);
        rss = rss.max(maxrss);
    }
    let _ = std::fs::remove_file(&synth_file);
    let wall = median(runs);
    Ok(
        json!({"storm_processes": b.storm, "storm_events": events, "file_bytes": bytes, "bytes_per_event": bytes as f64 / events.max(1) as f64,
               "report_events": 10_000_000, "report_wall_s": wall, "report_events_per_s": 1e7 / wall, "report_peak_rss_kb": rss}),
    )
}

/// Start-up and memory of the glibc and the static (musl) build.
fn startup(b: &Bench) -> anyhow::Result<Value> {
    eprintln!("xtask bench: start-up and memory, glibc and static builds");
    let static_tool = crate::dist::build_static()?.tool;
    let mut table = serde_json::Map::new();
    for (name, binary) in [("glibc", &b.tool), ("static (musl)", &static_tool)] {
        table.insert(name.into(), startup_of(binary, b.rounds)?);
    }
    Ok(Value::Object(table))
}

/// `report`'s peak RSS over a synthetic recording of a million lifecycles.
fn memory(b: &Bench) -> anyhow::Result<Value> {
    eprintln!("xtask bench: memory after 1 million lifecycles");
    let file = Path::new(SHM).join("reaper-trace-bench-1m.rtrace");
    b.synthesize(&file, 7_000_000)?;
    let (_, rss) = measured(
        Command::new(&b.tool)
            .args(["report", "--format", "json"])
            .arg(&file)
            .stdout(Stdio::null()),
    )?;
    let _ = std::fs::remove_file(&file);
    Ok(json!({"lifecycles": 1_000_000, "report_peak_rss_kb": rss}))
}

/// What copying and unwinding user stacks costs a followed fork storm:
/// `check -- storm N` with stacks (the default) and `--no-stacks`,
/// interleaved with the untraced storm, pinned to CPU 0 (the tracer is not
/// pinned: `check` runs the storm itself); and the recording's bytes per
/// forked process, each way.
fn stacks_cost(b: &Bench) -> anyhow::Result<Value> {
    let (tool, scenario, storm, rounds) = (&b.tool, &b.scenario, u64::from(b.storm), b.rounds);
    let n = storm.to_string();
    let recording = Path::new("/dev/shm").join("reaper-trace-bench-stacks.rtrace");
    let run = |stacks: Option<bool>| -> anyhow::Result<(Cost, u64)> {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]);
        match stacks {
            None => {
                c.arg(scenario);
            }
            Some(on) => {
                c.arg(tool)
                    .args(["check", "--threshold", "10s", "--force", "-o"]);
                c.arg(&recording);
                if !on {
                    c.arg("--no-stacks");
                }
                c.arg("--").arg(scenario);
            }
        }
        c.args(["storm", &n])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (cost, _) = measured(&mut c)?;
        let bytes = std::fs::metadata(&recording).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&recording);
        Ok((cost, bytes))
    };
    let mut wall: BTreeMap<&str, Vec<f64>> = Default::default();
    let mut bytes: BTreeMap<&str, u64> = Default::default();
    for round in 0..rounds {
        eprintln!("xtask bench: stacks round {}/{rounds}", round + 1);
        let (base, _) = run(None)?;
        for (mode, on) in [("check --no-stacks", false), ("check (stacks)", true)] {
            let (cost, size) = run(Some(on))?;
            wall.entry(mode).or_default().push(cost.wall / base.wall);
            bytes.insert(mode, size);
        }
    }
    let mut table = serde_json::Map::new();
    for (mode, ratios) in wall {
        table.insert(
            mode.into(),
            json!({"wall_ratio": median(ratios), "recording_bytes_per_process": bytes[mode] as f64 / storm as f64, "processes": storm, "rounds": rounds}),
        );
    }
    Ok(Value::Object(table))
}

/// `check -- /bin/true` wall time (median of `rounds`), and `live`'s RSS
/// after 3 s of an idle system-wide trace and its peak.
fn startup_of(binary: &Path, rounds: usize) -> anyhow::Result<Value> {
    let mut walls = Vec::new();
    for _ in 0..rounds {
        let (cost, _) = measured(
            Command::new(binary)
                .args(["check", "--", "/bin/true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        walls.push(cost.wall);
    }
    let mut live = Command::new(binary);
    live.arg("live").stdout(Stdio::null());
    let bg = Background::start(&mut live, "tracing", None)?;
    std::thread::sleep(Duration::from_secs(3));
    let (steady_kb, _) = rss_kb(bg.pid());
    let (_, peak_kb, _) = bg.stop()?;
    Ok(
        json!({"check_true_wall_s": median(walls), "rounds": rounds, "live_steady_rss_kb": steady_kb, "live_peak_rss_kb": peak_kb}),
    )
}

fn print_soak(s: &Value) {
    println!(
        "soak: serve for {} min, {} cycles ({} processes, cgroups made and removed): RSS {} KiB after warm-up, max {} KiB, {} KiB at the end; lost {}; unreaped {}/{} and exits {}/{} (seen/truth), {} cycle(s) off",
        s["minutes"],
        s["cycles"],
        s["processes"],
        s["rss_kb_after_warm_up"],
        s["rss_kb_max_after_warm_up"],
        s["rss_kb_end"],
        s["lost"],
        s["unreaped_seen"],
        s["unreaped_truth"],
        s["exits_seen"],
        s["exits_truth"],
        s["mismatched_cycles"]
    );
}

fn print_overhead(part: &Value) {
    let Some(modes) = part.as_object() else {
        return;
    };
    println!(
        "fork storm ({} rounds, each traced storm paired with an untraced one just before it), median ratio to untraced:",
        modes
            .values()
            .next()
            .map(|m| m["rounds"].clone())
            .unwrap_or_default()
    );
    println!(
        "  {:<22} {:>10} {:>10} {:>8}",
        "tracer", "wall", "cpu", "lost"
    );
    for (mode, m) in modes {
        println!(
            "  {:<22} {:>9.3}x {:>9.3}x {:>8}",
            mode,
            m["wall_ratio"].as_f64().unwrap_or(f64::NAN),
            m["cpu_ratio"].as_f64().unwrap_or(f64::NAN),
            m["lost"]
        );
    }
}

fn print_stacks(part: &Value) {
    let Some(modes) = part.as_object() else {
        return;
    };
    println!("followed fork storm, median wall ratio to untraced, recording size:");
    for (mode, m) in modes {
        println!(
            "  {:<20} {:>7.3}x {:>8.1} bytes per process",
            mode,
            m["wall_ratio"].as_f64().unwrap_or(f64::NAN),
            m["recording_bytes_per_process"]
                .as_f64()
                .unwrap_or(f64::NAN)
        );
    }
}

fn print_parallel(p: &Value) {
    println!(
        "parallel storm: {} events in {:.2}s = {:.0} events/s, lost {}, tool CPU {:.3}s per million events, tool peak RSS {} KiB",
        p["events"],
        p["wall_s"].as_f64().unwrap_or(0.0),
        p["events_per_s"].as_f64().unwrap_or(0.0),
        p["lost"],
        p["tool_cpu_s_per_million_events"].as_f64().unwrap_or(0.0),
        p["tool_peak_rss_kb"]
    );
}

fn print_filtered(f: &Value) {
    println!(
        "filtered (--pid of an idle process), unrelated storm: median wall ratio {:.3}x",
        f["wall_ratio"].as_f64().unwrap_or(f64::NAN)
    );
}

fn print_recording(rec: &Value) {
    println!(
        "recording: {:.1} bytes/event on a {}-process storm; report: {:.2}M events/s on one core, peak RSS {} KiB",
        rec["bytes_per_event"].as_f64().unwrap_or(0.0),
        rec["storm_processes"],
        rec["report_events_per_s"].as_f64().unwrap_or(0.0) / 1e6,
        rec["report_peak_rss_kb"]
    );
}

fn print_startup(part: &Value) {
    let Some(modes) = part.as_object() else {
        return;
    };
    println!("start-up and memory:");
    println!(
        "  {:<16} {:>22} {:>18} {:>16}",
        "build", "check -- /bin/true", "live steady RSS", "live peak RSS"
    );
    for (build, m) in modes {
        println!(
            "  {:<16} {:>21.3}s {:>14} KiB {:>12} KiB",
            build,
            m["check_true_wall_s"].as_f64().unwrap_or(f64::NAN),
            m["live_steady_rss_kb"],
            m["live_peak_rss_kb"]
        );
    }
}

fn print_memory(m: &Value) {
    println!(
        "memory: report over 1,000,000 lifecycles peaks at {} KiB RSS",
        m["report_peak_rss_kb"]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_have_distinct_names_and_keys() {
        let mut names: Vec<&str> = PARTS.iter().map(|p| p.name).collect();
        let mut keys: Vec<&str> = PARTS.iter().map(|p| p.key).collect();
        names.sort_unstable();
        names.dedup();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!((names.len(), keys.len()), (PARTS.len(), PARTS.len()));
    }
}
