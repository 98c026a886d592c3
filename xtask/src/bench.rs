//! `cargo xtask bench`: the benchmarks of the README, as interleaved runs on
//! this machine, reported as a table and written as JSON
//! (target/bench/latest.json). Ratios, not absolute times: these 2-core
//! machines are noisy, so every traced run is compared with an untraced run
//! of the same round.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

pub struct Options {
    pub rounds: usize,
    pub storm: u32,
    pub only: Option<String>,
    /// Length of the soak (run only with `--only soak`).
    pub soak_minutes: f64,
}

/// Wall and CPU seconds of one run.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    wall: f64,
    cpu: f64,
}

fn bins() -> (PathBuf, PathBuf, PathBuf) {
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release");
    (
        release.join("reaper-trace"),
        release.join("scenario"),
        release.join("examples/synth_recording"),
    )
}

fn rusage_secs(ru: &libc::rusage) -> f64 {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs a command to its end: its wall time, and the CPU time of it and of
/// every child it reaped (from wait4's rusage). Also the peak RSS (KiB).
fn measured(cmd: &mut Command) -> anyhow::Result<(Cost, i64)> {
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let mut status = 0;
    // SAFETY: zeroed rusage out-parameter, our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    if pid <= 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (status {status:#x})");
    }
    Ok((
        Cost {
            wall: start.elapsed().as_secs_f64(),
            cpu: rusage_secs(&ru),
        },
        ru.ru_maxrss,
    ))
}

/// CPU seconds a live process has used so far (utime + stime).
fn cpu_of(pid: u32) -> f64 {
    let Ok(stat) = procfs::process::Process::new(pid as i32).and_then(|p| p.stat()) else {
        return 0.0;
    };
    (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
}

/// RSS now and at its peak (VmRSS, VmHWM; KiB) of a live process.
pub fn rss_kb(pid: u32) -> (u64, u64) {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.status())
        .map(|s| (s.vmrss.unwrap_or(0), s.vmhwm.unwrap_or(0)))
        .unwrap_or((0, 0))
}

/// A tracer running in the background.
struct Background {
    child: Child,
    stderr: std::sync::mpsc::Receiver<String>,
    cpu_at_start: f64,
}

impl Background {
    /// Starts `cmd` and waits for a line containing `ready` on stderr (or in
    /// `ready_file`, for bpftrace which prints it on stdout).
    fn start(
        cmd: &mut Command,
        ready: &str,
        ready_file: Option<&Path>,
    ) -> anyhow::Result<Background> {
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = Vec::new();
        loop {
            if let Some(file) = ready_file
                && std::fs::read_to_string(file).is_ok_and(|s| s.contains(ready))
            {
                break;
            }
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(20)) {
                let found = line.contains(ready);
                lines.push(line);
                if found && ready_file.is_none() {
                    break;
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("{cmd:?} never became ready: {lines:?}");
            }
        }
        let cpu_at_start = cpu_of(child.id());
        Ok(Background {
            child,
            stderr: rx,
            cpu_at_start,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU used since it became ready, and its peak RSS; then SIGINT and wait.
    fn stop(mut self) -> anyhow::Result<(f64, u64, Vec<String>)> {
        let cpu = cpu_of(self.pid()) - self.cpu_at_start;
        let (_, rss) = rss_kb(self.pid());
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGINT) };
        self.child.wait()?;
        Ok((cpu, rss, self.stderr.try_iter().collect()))
    }
}

/// `reaper-trace: N events, M lost` from the tool's stderr.
pub fn events_and_lost(lines: &[String]) -> (u64, u64) {
    for line in lines {
        if let Some(rest) = line.strip_prefix("reaper-trace: ")
            && let Some((events, lost)) = rest.split_once(" events, ")
            && let (Ok(e), Some(Ok(l))) =
                (events.parse(), lost.strip_suffix(" lost").map(str::parse))
        {
            return (e, l);
        }
    }
    (0, 0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

const BPFTRACE_SCRIPT: &str = r#"
tracepoint:sched:sched_process_fork { printf("fork %d %d\n", args->parent_pid, args->child_pid); }
tracepoint:sched:sched_process_exec { printf("exec %d\n", args->pid); }
tracepoint:sched:sched_process_exit { printf("exit %d\n", args->pid); }
tracepoint:signal:signal_generate /args->sig == 17/ { printf("sigchld %d %d\n", args->pid, args->result); }
tracepoint:syscalls:sys_exit_wait4 { printf("wait4 %d %d\n", pid, args->ret); }
tracepoint:sched:sched_process_free { printf("free %d\n", args->pid); }
"#;

pub fn run(options: Options) -> anyhow::Result<()> {
    let (tool, scenario, synth) = bins();
    let mut results = serde_json::Map::new();
    let want = |name: &str| options.only.as_deref().is_none_or(|o| o == name);
    if options.only.as_deref() == Some("soak") {
        eprintln!(
            "xtask bench: soak, serve for {} minutes under churn",
            options.soak_minutes
        );
        let soak = crate::soak::run_soak(&tool, &scenario, options.soak_minutes)?;
        results.insert("soak".into(), soak);
    }
    let storm = options.storm.to_string();
    // The storm runs on CPU 0 and every tracer's userspace on CPU 1, so that
    // run-to-run noise from the scheduler moving them around stays out of
    // the ratios; the probes themselves run in the storm, on CPU 0. The
    // parallel storm is not pinned: it uses both CPUs.
    let pinned_storm = || {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"])
            .arg(&scenario)
            .args(["storm", &storm])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let storm_cmd = || {
        let mut c = Command::new(&scenario);
        c.args(["storm", &storm])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let on_cpu1 = |program: &Path| {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(program);
        c
    };
    let bpftrace = which("bpftrace");
    let shm = Path::new("/dev/shm");

    if want("overhead") {
        let mut modes: Vec<&str> = vec!["live", "live --record", "serve"];
        if bpftrace.is_some() {
            modes.push("bpftrace");
        }
        let mut wall: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        let mut cpu: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        let mut lost: std::collections::BTreeMap<&str, u64> = Default::default();
        for round in 0..options.rounds {
            eprintln!(
                "xtask bench: overhead round {}/{}",
                round + 1,
                options.rounds
            );
            let (base, _) = measured(&mut pinned_storm())?;
            for mode in &modes {
                let (tracer_cpu, run_cost, run_lost) = match *mode {
                    "bpftrace" => {
                        let out = shm.join("reaper-trace-bench-bpftrace.txt");
                        let file = std::fs::File::create(&out)?;
                        let bg = Background::start(
                            on_cpu1(bpftrace.as_ref().expect("checked"))
                                .args(["-e", BPFTRACE_SCRIPT])
                                .stdout(file),
                            "Attaching",
                            Some(&out),
                        )?;
                        let (cost, _) = measured(&mut pinned_storm())?;
                        let (tcpu, _, lines) = bg.stop()?;
                        let text = std::fs::read_to_string(&out).unwrap_or_default();
                        let lost: u64 = text
                            .lines()
                            .chain(lines.iter().map(String::as_str))
                            .filter_map(|l| l.strip_prefix("Lost "))
                            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                            .sum();
                        let _ = std::fs::remove_file(&out);
                        (tcpu, cost, lost)
                    }
                    "serve" => {
                        let mut cmd = on_cpu1(&tool);
                        cmd.args(["serve", "--listen", "127.0.0.1:0"])
                            .stdout(Stdio::null());
                        let bg = Background::start(&mut cmd, "tracing", None)?;
                        let (cost, _) = measured(&mut pinned_storm())?;
                        let (tcpu, _, lines) = bg.stop()?;
                        (tcpu, cost, events_and_lost(&lines).1)
                    }
                    _ => {
                        let mut cmd = on_cpu1(&tool);
                        cmd.arg("live").stdout(Stdio::null());
                        if *mode == "live --record" {
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
                        let bg = Background::start(&mut cmd, "tracing", None)?;
                        let (cost, _) = measured(&mut pinned_storm())?;
                        let (tcpu, _, lines) = bg.stop()?;
                        (tcpu, cost, events_and_lost(&lines).1)
                    }
                };
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
                json!({"wall_ratio": median(wall[mode].clone()), "cpu_ratio": median(cpu[mode].clone()), "lost": lost[mode], "rounds": options.rounds}),
            );
        }
        results.insert("fork_storm_overhead".into(), Value::Object(table));
        let _ = std::fs::remove_file(shm.join("reaper-trace-bench.rtrace"));
    }

    if want("syscalls") {
        results.insert(
            "syscall_overhead".into(),
            syscall_overhead(&tool, &scenario, bpftrace.as_deref(), options.rounds)?,
        );
    }

    if want("stacks") {
        results.insert(
            "stacks".into(),
            stacks_cost(&tool, &scenario, options.storm.into(), options.rounds)?,
        );
    }

    if want("parallel") {
        eprintln!("xtask bench: parallel storm");
        let bg = Background::start(
            Command::new(&tool).arg("live").stdout(Stdio::null()),
            "tracing",
            None,
        )?;
        let start = Instant::now();
        let mut a = storm_cmd().spawn()?;
        let mut b = storm_cmd().spawn()?;
        a.wait()?;
        b.wait()?;
        let wall = start.elapsed().as_secs_f64();
        let (tcpu, rss, lines) = bg.stop()?;
        let (events, lost) = events_and_lost(&lines);
        results.insert(
            "parallel_storm".into(),
            json!({"processes": 2 * options.storm, "wall_s": wall, "events": events, "events_per_s": events as f64 / wall, "lost": lost,
                   "tool_cpu_s_per_million_events": tcpu / (events as f64 / 1e6), "tool_peak_rss_kb": rss}),
        );
    }

    if want("filtered") {
        let mut ratios = Vec::new();
        for round in 0..options.rounds {
            eprintln!(
                "xtask bench: filtered round {}/{}",
                round + 1,
                options.rounds
            );
            let (base, _) = measured(&mut pinned_storm())?;
            let mut target = Command::new("sleep").arg("600").spawn()?;
            let bg = Background::start(
                on_cpu1(&tool)
                    .args(["live", "--pid", &target.id().to_string()])
                    .stdout(Stdio::null()),
                "tracing",
                None,
            )?;
            let (cost, _) = measured(&mut pinned_storm())?;
            bg.stop()?;
            let _ = target.kill();
            let _ = target.wait();
            ratios.push(cost.wall / base.wall);
        }
        results.insert(
            "filtered_unrelated_storm".into(),
            json!({"wall_ratio": median(ratios), "rounds": options.rounds}),
        );
    }

    if want("recording") {
        eprintln!("xtask bench: recording size and report throughput");
        let file = shm.join("reaper-trace-bench-storm.rtrace");
        let out = Command::new(&tool)
            .args([
                "record",
                "--json",
                "--force",
                "-o",
                file.to_str().expect("utf-8"),
                "--",
            ])
            .arg(&scenario)
            .args(["storm", &storm])
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
        measured(
            Command::new(&synth)
                .arg(&synth_file)
                .arg("10000000")
                .stderr(Stdio::null()),
        )?;
        let mut runs = Vec::new();
        let mut rss = 0;
        for _ in 0..3 {
            let (cost, maxrss) = measured(
                Command::new("taskset")
                    .args(["-c", "1"])
                    .arg(&tool)
                    .args(["report", "--format", "json"])
                    .arg(&synth_file)
                    .stdout(Stdio::null()),
            )?;
            runs.push(cost.wall);
            rss = rss.max(maxrss);
        }
        let _ = std::fs::remove_file(&synth_file);
        let wall = median(runs);
        results.insert(
            "recording".into(),
            json!({"storm_processes": options.storm, "storm_events": events, "file_bytes": bytes, "bytes_per_event": bytes as f64 / events.max(1) as f64,
                   "report_events": 10_000_000, "report_wall_s": wall, "report_events_per_s": 1e7 / wall, "report_peak_rss_kb": rss}),
        );
    }

    if want("startup") {
        eprintln!("xtask bench: start-up and memory, glibc and static builds");
        let static_tool = crate::dist::build_static()?.tool;
        let mut table = serde_json::Map::new();
        for (name, binary) in [("glibc", &tool), ("static (musl)", &static_tool)] {
            results_startup(&mut table, name, binary, options.rounds)?;
        }
        results.insert("startup".into(), Value::Object(table));
    }

    if want("memory") {
        eprintln!("xtask bench: memory after 1 million lifecycles");
        let file = shm.join("reaper-trace-bench-1m.rtrace");
        measured(
            Command::new(&synth)
                .arg(&file)
                .arg("7000000")
                .stderr(Stdio::null()),
        )?;
        let (_, rss) = measured(
            Command::new(&tool)
                .args(["report", "--format", "json"])
                .arg(&file)
                .stdout(Stdio::null()),
        )?;
        let _ = std::fs::remove_file(&file);
        results.insert(
            "memory".into(),
            json!({"lifecycles": 1_000_000, "report_peak_rss_kb": rss}),
        );
    }

    let results = Value::Object(results);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("latest.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    print_table(&results);
    eprintln!("xtask bench: wrote target/bench/latest.json");
    Ok(())
}

/// `check -- /bin/true` wall time (median of `rounds`), and `live`'s RSS
/// after 3 s of an idle system-wide trace and its peak.
/// What copying and unwinding user stacks costs a followed fork storm:
/// `check -- storm N` with stacks (the default) and `--no-stacks`,
/// interleaved with the untraced storm, pinned to CPU 0 (the tracer is not
/// pinned: `check` runs the storm itself); and the recording's bytes per
/// forked process, each way.
fn stacks_cost(tool: &Path, scenario: &Path, storm: u64, rounds: usize) -> anyhow::Result<Value> {
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
    let mut wall: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut bytes: std::collections::BTreeMap<&str, u64> = Default::default();
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

/// What the raw `sys_enter`/`sys_exit` hooks cost a system call the probes
/// do not record (getppid), pinned on CPU 0, interleaved per round: untraced,
/// under `live`, and under bpftrace holding one classic syscall tracepoint
/// (the hooks reaper-trace used before, which also put every system call
/// through the kernel's traced slow path).
fn syscall_overhead(
    tool: &Path,
    scenario: &Path,
    bpftrace: Option<&Path>,
    rounds: usize,
) -> anyhow::Result<Value> {
    const CALLS: u64 = 5_000_000;
    let loop_cmd = || {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"])
            .arg(scenario)
            .args(["syscalls", &CALLS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut ns: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for round in 0..rounds {
        eprintln!("xtask bench: syscall overhead round {}/{rounds}", round + 1);
        let (base, _) = measured(&mut loop_cmd())?;
        ns.entry("untraced")
            .or_default()
            .push(base.wall * 1e9 / CALLS as f64);
        let mut live = Command::new("taskset");
        live.args(["-c", "1"])
            .arg(tool)
            .arg("live")
            .stdout(Stdio::null());
        let bg = Background::start(&mut live, "tracing", None)?;
        let (cost, _) = measured(&mut loop_cmd())?;
        bg.stop()?;
        ns.entry("live")
            .or_default()
            .push(cost.wall * 1e9 / CALLS as f64);
        if let Some(bpftrace) = bpftrace {
            // bpftrace says it is attached on stdout.
            let out = Path::new("/dev/shm").join("reaper-trace-bench-classic.txt");
            let mut classic = Command::new("taskset");
            classic
                .args(["-c", "1"])
                .arg(bpftrace)
                .args(["-e", "tracepoint:syscalls:sys_enter_wait4 { @ = count(); }"])
                .stdout(std::fs::File::create(&out)?);
            let bg = Background::start(&mut classic, "Attaching", Some(&out))?;
            let (cost, _) = measured(&mut loop_cmd())?;
            bg.stop()?;
            let _ = std::fs::remove_file(&out);
            ns.entry("one classic syscall tracepoint (bpftrace)")
                .or_default()
                .push(cost.wall * 1e9 / CALLS as f64);
        }
    }
    let base = median(ns["untraced"].clone());
    let mut table = serde_json::Map::new();
    for (mode, runs) in ns {
        let per_call = median(runs);
        table.insert(
            mode.into(),
            json!({"ns_per_call": per_call, "ratio": per_call / base, "calls": CALLS, "rounds": rounds}),
        );
    }
    Ok(Value::Object(table))
}

fn results_startup(
    table: &mut serde_json::Map<String, Value>,
    name: &str,
    binary: &Path,
    rounds: usize,
) -> anyhow::Result<()> {
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
    table.insert(
        name.into(),
        json!({"check_true_wall_s": median(walls), "rounds": rounds, "live_steady_rss_kb": steady_kb, "live_peak_rss_kb": peak_kb}),
    );
    Ok(())
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn print_table(r: &Value) {
    if let Some(modes) = r["fork_storm_overhead"].as_object() {
        println!(
            "fork storm ({} rounds, interleaved), median ratio to untraced:",
            modes
                .values()
                .next()
                .map(|m| m["rounds"].clone())
                .unwrap_or_default()
        );
        println!(
            "  {:<16} {:>10} {:>10} {:>8}",
            "tracer", "wall", "cpu", "lost"
        );
        for (mode, m) in modes {
            println!(
                "  {:<16} {:>9.3}x {:>9.3}x {:>8}",
                mode,
                m["wall_ratio"].as_f64().unwrap_or(f64::NAN),
                m["cpu_ratio"].as_f64().unwrap_or(f64::NAN),
                m["lost"]
            );
        }
    }
    if let Some(modes) = r["syscall_overhead"].as_object() {
        println!("getppid loop, pinned, interleaved, median per call:");
        for (mode, m) in modes {
            println!(
                "  {:<44} {:>7.1} ns {:>7.3}x",
                mode,
                m["ns_per_call"].as_f64().unwrap_or(f64::NAN),
                m["ratio"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    if let Some(modes) = r["stacks"].as_object() {
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
    if let Some(p) = r.get("parallel_storm") {
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
    if let Some(f) = r.get("filtered_unrelated_storm") {
        println!(
            "filtered (--pid of an idle process), unrelated storm: median wall ratio {:.3}x",
            f["wall_ratio"].as_f64().unwrap_or(f64::NAN)
        );
    }
    if let Some(rec) = r.get("recording") {
        println!(
            "recording: {:.1} bytes/event on a {}-process storm; report: {:.2}M events/s on one core, peak RSS {} KiB",
            rec["bytes_per_event"].as_f64().unwrap_or(0.0),
            rec["storm_processes"],
            rec["report_events_per_s"].as_f64().unwrap_or(0.0) / 1e6,
            rec["report_peak_rss_kb"]
        );
    }
    if let Some(s) = r.get("soak") {
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
    if let Some(modes) = r["startup"].as_object() {
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
    if let Some(m) = r.get("memory") {
        println!(
            "memory: report over 1,000,000 lifecycles peaks at {} KiB RSS",
            m["report_peak_rss_kb"]
        );
    }
}
