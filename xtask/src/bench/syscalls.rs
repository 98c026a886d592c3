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
use crate::measure::{Background, measured, median};

/// getppid calls per loop: about 0.5 s untraced here.
const CALLS: u64 = 3_000_000;
/// Seconds of each `pgbench -S` run.
const PGBENCH_SECONDS: u32 = 5;

/// A tracer held while the workloads run.
enum Tracer {
    Untraced,
    Live,
    Serve,
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
            Tracer::Live => "reaper-trace live --no-events",
            Tracer::Serve => "reaper-trace serve",
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
            Tracer::Live => Background::start(
                on_cpu1(&b.tool)
                    .args(["live", "--no-events"])
                    .stdout(Stdio::null()),
                "tracing",
                None,
            )?,
            Tracer::Serve => Background::start(
                on_cpu1(&b.tool)
                    .args(["serve", "--listen", "127.0.0.1:0"])
                    .stdout(Stdio::null()),
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
            // It prints its header once attached.
            Tracer::Exitsnoop(exitsnoop) => Background::start(
                on_cpu1(exitsnoop).stdout(std::fs::File::create(&out)?),
                "PCOMM",
                Some(&out),
            )?,
        };
        Ok(Some(bg))
    }
}

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
    let mut tracers = vec![Tracer::Untraced, Tracer::Live, Tracer::Serve];
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
    for round in 0..b.rounds {
        eprintln!("xtask bench: syscalls round {}/{}", round + 1, b.rounds);
        let mut base = None;
        for tracer in &tracers {
            let held = tracer.start(b)?;
            let (cost, _) = measured(&mut getppid_loop(&b.scenario))?;
            let rate = cluster.select_tps(PGBENCH_SECONDS)?;
            if let Some(bg) = held {
                bg.stop()?;
            }
            // CPU time, not wall: the same on a quiet machine, and blind to
            // the time other work takes CPU 0 away from the loop on a busy
            // one. The probes run in the loop's own system calls, so their
            // cost is in it.
            let (base_s, base_tps) = *base.get_or_insert((cost.cpu, rate));
            let name = tracer.name();
            loop_s.entry(name).or_default().push(cost.cpu);
            loop_ratio.entry(name).or_default().push(cost.cpu / base_s);
            tps.entry(name).or_default().push(rate);
            tps_ratio.entry(name).or_default().push(rate / base_tps);
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
        "getppid": {"calls": CALLS, "pinned_cpu": 0, "tracers": table(&loop_s, &loop_ratio, "seconds")},
        "pgbench_select": {"seconds": PGBENCH_SECONDS, "clients": 2, "tracers": table(&tps, &tps_ratio, "tps")},
    }))
}

/// The loop of [`CALLS`] getppid calls, on CPU 0.
fn getppid_loop(scenario: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", "0"])
        .arg(scenario)
        .args(["syscalls", &CALLS.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

pub fn print(part: &Value) {
    println!(
        "getppid loop, {} calls pinned to CPU 0 (tracers on CPU 1), {} rounds interleaved, medians:",
        part["getppid"]["calls"], part["rounds"]
    );
    println!("  {:<34} {:>9} {:>8}", "tracer", "CPU time", "ratio");
    for row in part["getppid"]["tracers"].as_array().into_iter().flatten() {
        println!(
            "  {:<34} {:>8.3}s {:>7.3}x",
            row["tracer"].as_str().unwrap_or("?"),
            row["seconds"].as_f64().unwrap_or(f64::NAN),
            row["ratio"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "pgbench -S, {} s, {} clients, same rounds, medians:",
        part["pgbench_select"]["seconds"], part["pgbench_select"]["clients"]
    );
    println!("  {:<34} {:>9} {:>8}", "tracer", "TPS", "ratio");
    for row in part["pgbench_select"]["tracers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "  {:<34} {:>9.0} {:>7.3}x",
            row["tracer"].as_str().unwrap_or("?"),
            row["tps"].as_f64().unwrap_or(f64::NAN),
            row["ratio"].as_f64().unwrap_or(f64::NAN)
        );
    }
}
