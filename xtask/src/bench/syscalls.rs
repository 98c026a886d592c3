//! The `syscalls` part: what tracing costs the system calls of programs it
//! does not record, against its peers. Two workloads, each run under every
//! tracer in the same interleaved rounds:
//! - a loop of `getppid()` calls pinned to CPU 0 (the tracers' userspace on
//!   CPU 1), which no tracer records: the pure tax of the syscall hooks;
//! - `pgbench -S` against a throwaway PostgreSQL: a real server whose
//!   transactions are a few cheap system calls each.
//!
//! Each traced run is divided by the untraced run of its own round; the
//! table gives the medians.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{Value, json};

use super::{Bench, SHM, on_cpu1, pgbench::Cluster};
use crate::measure::{Background, median};

/// The getppid loop: this many batches of [`BATCH_CALLS`] calls (about 0.4 s
/// untraced here), of which the tenth percentile of ns per call counts.
const BATCHES: u32 = 200;
const BATCH_CALLS: u32 = 10_000;
/// Seconds of each `pgbench -S` run.
const PGBENCH_SECONDS: u32 = 5;

/// A tracer held while the workloads run.
enum Tracer {
    Untraced,
    /// reaper-trace with these arguments (its name in the table, then its
    /// command line).
    ReaperTrace(&'static str, &'static [&'static str]),
    /// bpftrace on the raw_syscalls tracepoints, filtered in the kernel on
    /// the numbers reaper-trace's syscall probes look at.
    Bpftrace(PathBuf),
    /// bpftrace on the per-syscall tracepoints of those calls
    /// (`syscalls:sys_enter_wait4` ...): what the kernel's own filter costs
    /// the other calls.
    BpftracePerSyscall(PathBuf),
    /// libbpf-tools' exitsnoop: a sched_process_exit probe, no syscall hook.
    Exitsnoop(PathBuf),
}

impl Tracer {
    fn name(&self) -> &'static str {
        match self {
            Tracer::Untraced => "untraced",
            Tracer::ReaperTrace(name, _) => name,
            Tracer::Bpftrace(_) => "bpftrace, raw_syscalls filtered",
            Tracer::BpftracePerSyscall(_) => "bpftrace, per-syscall tracepoints",
            Tracer::Exitsnoop(_) => "exitsnoop (libbpf-tools)",
        }
    }

    /// Starts it on CPU 1 and waits until it is attached.
    fn start(&self, b: &Bench) -> anyhow::Result<Option<Background>> {
        let out = Path::new(SHM).join("reaper-trace-bench-syscalls-peer.txt");
        let bg = match self {
            Tracer::Untraced => return Ok(None),
            Tracer::ReaperTrace(_, args) => Background::start(
                on_cpu1(&b.tool).args(*args).stdout(Stdio::null()),
                "tracing",
                None,
            )?,
            Tracer::Bpftrace(bpftrace) => Background::start(
                super::bpftrace_attached(&mut on_cpu1(bpftrace))
                    .args(["-e", &bpftrace_filter()])
                    .stdout(Stdio::null()),
                super::BPFTRACE_ATTACHED,
                None,
            )?,
            Tracer::BpftracePerSyscall(bpftrace) => Background::start(
                super::bpftrace_attached(&mut on_cpu1(bpftrace))
                    .args(["-e", BPFTRACE_PER_SYSCALL])
                    .stdout(Stdio::null()),
                super::BPFTRACE_ATTACHED,
                None,
            )?,
            // It prints its header once attached; line-buffered, or the
            // header waits in stdio's buffer for enough exits to fill it
            // (on a quiet machine, never).
            Tracer::Exitsnoop(exitsnoop) => Background::start(
                on_cpu1(Path::new("stdbuf"))
                    .arg("-oL")
                    .arg(exitsnoop)
                    .stdout(std::fs::File::create(&out)?),
                "PCOMM",
                Some(&out),
            )?,
        };
        Ok(Some(bg))
    }
}

/// reaper-trace as it runs by default (`serve` hooks no system call,
/// `live` does) and the other way round.
const REAPER_TRACE: [(&str, &[&str]); 4] = [
    ("reaper-trace live --no-events", &["live", "--no-events"]),
    (
        "reaper-trace live --no-events --no-syscall-hooks",
        &["live", "--no-events", "--no-syscall-hooks"],
    ),
    ("reaper-trace serve", &["serve", "--listen", "127.0.0.1:0"]),
    (
        "reaper-trace serve --syscall-hooks",
        &["serve", "--listen", "127.0.0.1:0", "--syscall-hooks"],
    ),
];

/// The same calls' own tracepoints (the fork family's exits, where a failure
/// shows).
const BPFTRACE_PER_SYSCALL: &str = "\
tracepoint:syscalls:sys_enter_wait4, tracepoint:syscalls:sys_enter_waitid, \
tracepoint:syscalls:sys_enter_rt_sigaction, tracepoint:syscalls:sys_exit_wait4, \
tracepoint:syscalls:sys_exit_waitid, tracepoint:syscalls:sys_exit_clone, \
tracepoint:syscalls:sys_exit_clone3, tracepoint:syscalls:sys_exit_fork, \
tracepoint:syscalls:sys_exit_vfork { @[probe] = count(); }";

/// The syscall numbers reaper-trace's `sys_enter`/`sys_exit` probes act on
/// (wait4, waitid, rt_sigaction and the fork family), as bpftrace's
/// in-kernel filter on the same two hooks.
fn bpftrace_filter() -> String {
    let numbers = [
        libc::SYS_wait4,
        libc::SYS_waitid,
        libc::SYS_rt_sigaction,
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_fork,
        libc::SYS_vfork,
    ];
    let test = numbers
        .iter()
        .map(|n| format!("args->id == {n}"))
        .collect::<Vec<_>>()
        .join(" || ");
    format!(
        "tracepoint:raw_syscalls:sys_enter /{test}/ {{ @enter[args->id] = count(); }}\n\
         tracepoint:raw_syscalls:sys_exit /{test}/ {{ @exit[args->id] = count(); }}"
    )
}

/// Each tracer's runs of one measure, by tracer name.
type Medians = BTreeMap<&'static str, Vec<f64>>;

pub fn run(b: &Bench) -> anyhow::Result<Value> {
    let mut tracers = vec![Tracer::Untraced];
    tracers.extend(REAPER_TRACE.iter().map(|(n, a)| Tracer::ReaperTrace(n, a)));
    match &b.bpftrace {
        Some(path) => tracers.extend([
            Tracer::Bpftrace(path.clone()),
            Tracer::BpftracePerSyscall(path.clone()),
        ]),
        None => eprintln!("xtask bench: syscalls: no bpftrace peer (not installed, or no tracefs)"),
    }
    match &b.exitsnoop {
        Some(path) => tracers.push(Tracer::Exitsnoop(path.clone())),
        None => eprintln!(
            "xtask bench: syscalls: no exitsnoop peer (libbpf-tools not installed, or no tracefs)"
        ),
    }
    eprintln!("xtask bench: syscalls: starting a throwaway PostgreSQL");
    let cluster = Cluster::start()?;
    let mut loop_s = Medians::new();
    let mut loop_ratio = Medians::new();
    let mut tps = Medians::new();
    let mut tps_ratio = Medians::new();
    // Each traced run is paired with an untraced run just before it: the
    // machine drifts within a round (pgbench by several percent), and one
    // untraced run at the start of a round made every later tracer look
    // slower, a peer that hooks no system call included.
    for round in 0..b.rounds {
        eprintln!("xtask bench: syscalls round {}/{}", round + 1, b.rounds);
        for tracer in tracers.iter().skip(1) {
            let (base_s, base_tps) = sample(b, &cluster, &Tracer::Untraced)?;
            let (cpu, rate) = sample(b, &cluster, tracer)?;
            for (name, cpu, rate) in [("untraced", base_s, base_tps), (tracer.name(), cpu, rate)] {
                loop_s.entry(name).or_default().push(cpu);
                loop_ratio.entry(name).or_default().push(cpu / base_s);
                tps.entry(name).or_default().push(rate);
                tps_ratio.entry(name).or_default().push(rate / base_tps);
            }
        }
    }
    drop(cluster);
    let _ = std::fs::remove_file(Path::new(SHM).join("reaper-trace-bench-syscalls-peer.txt"));
    let table = |values: &Medians, ratios: &Medians, unit: &str| -> Vec<Value> {
        tracers
            .iter()
            .map(|t| {
                json!({"tracer": t.name(), unit: median(values[t.name()].clone()),
                       "ratio": median(ratios[t.name()].clone())})
            })
            .collect()
    };
    Ok(json!({
        "rounds": b.rounds,
        "getppid": {"batches": BATCHES, "calls_per_batch": BATCH_CALLS, "pinned_cpu": 0, "tracers": table(&loop_s, &loop_ratio, "ns_per_call")},
        "pgbench_select": {"seconds": PGBENCH_SECONDS, "clients": 2, "tracers": table(&tps, &tps_ratio, "tps")},
    }))
}

/// Under `tracer`: the getppid loop's ns per call, then `pgbench -S`'s TPS.
fn sample(b: &Bench, cluster: &Cluster, tracer: &Tracer) -> anyhow::Result<(f64, f64)> {
    let held = tracer.start(b)?;
    let per_call = getppid_ns_per_call(&b.scenario)?;
    let rate = cluster.select_tps(PGBENCH_SECONDS)?;
    if let Some(bg) = held {
        bg.stop()?;
    }
    Ok((per_call, rate))
}

/// The getppid loop on CPU 0: the tenth percentile of its batches' ns per
/// call, on the thread's CPU clock (blind to the time other work takes CPU
/// 0 away from it; the probes run in its own system calls, so their cost
/// is in it).
fn getppid_ns_per_call(scenario: &Path) -> anyhow::Result<f64> {
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(scenario)
        .args([
            "syscall_batches",
            &BATCHES.to_string(),
            &BATCH_CALLS.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        anyhow::bail!("the getppid loop failed ({}): {stderr}", out.status);
    }
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("TRUTH "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["ns_per_call_p10"].as_f64())
        .ok_or_else(|| anyhow::anyhow!("the getppid loop printed no ns_per_call_p10: {stderr}"))
}

pub fn print(part: &Value) {
    println!(
        "getppid loop, {} batches of {} calls pinned to CPU 0 (tracers on CPU 1), the 10th percentile of ns per call; {} rounds, each traced run paired with an untraced one just before it, medians:",
        part["getppid"]["batches"], part["getppid"]["calls_per_batch"], part["rounds"]
    );
    println!("  {:<50} {:>9} {:>8}", "tracer", "ns/call", "ratio");
    for row in part["getppid"]["tracers"].as_array().into_iter().flatten() {
        println!(
            "  {:<50} {:>9.1} {:>7.3}x",
            row["tracer"].as_str().unwrap_or("?"),
            row["ns_per_call"].as_f64().unwrap_or(f64::NAN),
            row["ratio"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "pgbench -S, {} s, {} clients, same rounds, medians:",
        part["pgbench_select"]["seconds"], part["pgbench_select"]["clients"]
    );
    println!("  {:<50} {:>9} {:>8}", "tracer", "TPS", "ratio");
    for row in part["pgbench_select"]["tracers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "  {:<50} {:>9.0} {:>7.3}x",
            row["tracer"].as_str().unwrap_or("?"),
            row["tps"].as_f64().unwrap_or(f64::NAN),
            row["ratio"].as_f64().unwrap_or(f64::NAN)
        );
    }
}
