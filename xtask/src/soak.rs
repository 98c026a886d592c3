//! `cargo xtask bench --only soak`: `reaper-trace serve` for a long time
//! under continuous churn, the way a node runs it. Each cycle makes a
//! container cgroup (Docker's naming, with a pids limit), runs a leak, a
//! pid reuse and a fork storm in it, checks the daemon's counters for that
//! container against what the scenarios did, and removes the cgroup. The
//! result says whether memory stays flat once gone cgroups start expiring,
//! whether any event was lost, and whether every count was exact.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use reaper_trace_tests::{TestCgroup, http_get, sample};
use serde_json::{Value, json};

/// Gone cgroups keep their series this long in the soak (5 minutes by
/// default): memory should be flat from a little after it.
const EXPIRE_AFTER: &str = "60s";
const WARM_UP: Duration = Duration::from_secs(120);
/// Per cycle: a leak of 3 (tini, the scenario and 3 children exit), a pid
/// reuse whose second child is left (tini, the scenario, 2 children) and a
/// storm of 1000 (the scenario and 1000 children).
const LEAKED: u32 = 3;
const STORM: u32 = 1000;
const UNREAPED_PER_CYCLE: f64 = LEAKED as f64 + 1.0;
const EXITS_PER_CYCLE: f64 = (2 + LEAKED) as f64 + 4.0 + (1 + STORM) as f64;
/// How long a cycle's counts may take to show in a scrape.
const SETTLE: Duration = Duration::from_secs(10);

fn run(command: &[String]) -> anyhow::Result<()> {
    let status = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

fn container_id(cycle: u64) -> String {
    format!(
        "{:016x}",
        cycle.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(std::process::id())
    )
    .repeat(4)
}

/// `serve` with a short expiry, once it traces: the child, where it
/// listens, and its later stderr lines.
fn start_serve(tool: &Path) -> anyhow::Result<(Child, SocketAddr, Receiver<String>)> {
    let mut serve = Command::new(tool)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--expire-after",
            EXPIRE_AFTER,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting serve")?;
    let mut stderr = BufReader::new(serve.stderr.take().expect("piped")).lines();
    let mut addr: Option<SocketAddr> = None;
    for line in stderr.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("reaper-trace: serving metrics on http://") {
            addr = rest.trim_end_matches("/metrics").parse().ok();
        }
        if line.contains("tracing") {
            break;
        }
    }
    let addr = addr.context("serve did not say where it listens")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Ok((serve, addr, rx))
}

/// What every cycle of the soak uses.
struct Cycle {
    tini: String,
    scenario: String,
    restarted_path: String,
    addr: SocketAddr,
}

/// One cycle in a new container cgroup (removed at its end): a leak, a pid
/// reuse and a storm, each under tini, and a storm in a restarted unit; then
/// the daemon's counts of unreaped children and exits for the container,
/// once they settle, said when they are off.
fn cycle(soak: &Cycle, number: u64) -> anyhow::Result<(f64, f64)> {
    let Cycle {
        tini,
        scenario,
        restarted_path,
        addr,
    } = soak;
    let cgroup = TestCgroup::create(&format!(
        "system.slice/docker-{}.scope",
        container_id(number)
    ));
    cgroup.set_pids_max(4 * STORM);
    let under_tini = |args: &[&str]| {
        let mut c = vec![tini.clone(), "-s".into(), "--".into(), scenario.clone()];
        c.extend(args.iter().map(|a| a.to_string()));
        cgroup.wrap(&c)
    };
    run(&under_tini(&["noreap", &LEAKED.to_string()]))?;
    run(&under_tini(&["pid_reuse", "20"]))?;
    run(&cgroup.wrap(&[scenario.clone(), "storm".into(), STORM.to_string()]))?;
    // A unit restarted every cycle: a new cgroup (a new id) at the same
    // path, whose old ids must expire all the same.
    let restarted = TestCgroup::create_at(restarted_path);
    run(&restarted.wrap(&[scenario.clone(), "storm".into(), "20".into()]))?;
    drop(restarted);
    let here = [("cgroup", cgroup.path.as_str())];
    let settle = Instant::now() + SETTLE;
    let (unreaped, exits) = loop {
        let text = http_get(*addr, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let unreaped = sample(&text, "reaper_trace_unreaped_total", &here).unwrap_or(0.0);
        let exits = sample(&text, "reaper_trace_exits_total", &here).unwrap_or(0.0);
        if (unreaped, exits) == (UNREAPED_PER_CYCLE, EXITS_PER_CYCLE) || Instant::now() > settle {
            break (unreaped, exits);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if (unreaped, exits) != (UNREAPED_PER_CYCLE, EXITS_PER_CYCLE) {
        eprintln!(
            "xtask soak: cycle {number}: unreaped {unreaped} (want {UNREAPED_PER_CYCLE}), exits {exits} (want {EXITS_PER_CYCLE})"
        );
    }
    Ok((unreaped, exits))
}

pub fn run_soak(tool: &Path, scenario: &Path, minutes: f64) -> anyhow::Result<Value> {
    let tini = which("tini").context("the soak needs tini (cargo xtask setup installs it)")?;
    let (mut serve, addr, rx) = start_serve(tool)?;
    let restarted_path = format!(
        "/reaper-trace-soak-{}/system.slice/restarted.service",
        std::process::id()
    );
    let soak = Cycle {
        tini,
        scenario: scenario.to_string_lossy().into_owned(),
        restarted_path: restarted_path.clone(),
        addr,
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(minutes * 60.0);
    let (mut cycles, mut mismatched) = (0u64, 0u64);
    let (mut unreaped_seen, mut exits_seen) = (0.0, 0.0);
    let mut rss_after_warm_up = None;
    let mut rss_max_after_warm_up = 0;
    let mut samples = Vec::new();
    let mut next_sample = started;
    while Instant::now() < deadline {
        let (unreaped, exits) = cycle(&soak, cycles)?;
        if (unreaped, exits) != (UNREAPED_PER_CYCLE, EXITS_PER_CYCLE) {
            mismatched += 1;
        }
        unreaped_seen += unreaped;
        exits_seen += exits;
        cycles += 1;
        if Instant::now() >= next_sample {
            let elapsed = started.elapsed();
            let (rss, _) = crate::measure::rss_kb(serve.id());
            samples.push(json!({"s": elapsed.as_secs(), "rss_kb": rss}));
            eprintln!(
                "xtask soak: {:>4}s {cycles} cycles, serve RSS {rss} KiB",
                elapsed.as_secs()
            );
            if elapsed >= WARM_UP {
                rss_after_warm_up.get_or_insert(rss);
                rss_max_after_warm_up = rss_max_after_warm_up.max(rss);
            }
            next_sample += Duration::from_secs(15);
        }
    }
    let last = http_get(addr, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let lost_scraped = sample(&last, "reaper_trace_events_lost_total", &[]).unwrap_or(0.0);
    let series_cgroups = last
        .lines()
        .filter(|l| l.starts_with("reaper_trace_exits_total{"))
        .count();
    let restarted_series = last
        .lines()
        .filter(|l| l.starts_with("reaper_trace_exits_total{") && l.contains(&restarted_path))
        .count();
    let (rss_end, _) = crate::measure::rss_kb(serve.id());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(serve.id() as i32, libc::SIGINT) };
    serve.wait()?;
    let lines: Vec<String> = rx.try_iter().collect();
    let lost_reported = crate::measure::events_and_lost(&lines).1;
    Ok(json!({
        "minutes": minutes,
        "cycles": cycles,
        "processes": cycles as f64 * EXITS_PER_CYCLE,
        "rss_kb_after_warm_up": rss_after_warm_up.unwrap_or(0),
        "rss_kb_max_after_warm_up": rss_max_after_warm_up,
        "rss_kb_end": rss_end,
        "lost": lost_reported,
        "lost_scraped": lost_scraped,
        "restarted_unit_series_at_end": restarted_series,
        "unreaped_truth": cycles as f64 * UNREAPED_PER_CYCLE,
        "unreaped_seen": unreaped_seen,
        "exits_truth": cycles as f64 * EXITS_PER_CYCLE,
        "exits_seen": exits_seen,
        "mismatched_cycles": mismatched,
        "cgroups_with_series_at_end": series_cgroups,
        "rss_samples": samples,
    }))
}

fn which(name: &str) -> Option<String> {
    crate::measure::which(name).map(|p| p.to_string_lossy().into_owned())
}
