//! `cargo xtask realworld` (also run by `cargo xtask test`): the whole
//! machine traced by `reaper-trace live --json` while real programs run,
//! every finding judged against two ground truths of the harness's own
//! (a /proc sampler and the kernel's view through bpftrace), and scenarios
//! that leak zombies of known pids. Fails on any certain finding that the
//! ground truth does not confirm and on any deliberate leak not found.
//!
//! Everything it makes (cgroups, a temporary directory, a PostgreSQL
//! server, tracefs if it was not mounted) is removed, also on failure; the
//! tool's output, the ground truths and the verdicts are kept in
//! target/realworld/ for a look afterwards.

mod judge;
mod kernel;
mod sampler;
mod workloads;

pub(crate) use workloads::postgres_bin;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use reaper_trace_tests::TestCgroup;
use serde_json::Value;

use judge::{Expected, Finding, Judged, Slack, Verdict};

pub struct Options {
    /// How long the looping workloads run.
    pub seconds: u64,
    /// Also write a recording of the trace (for `reaper-trace report`).
    pub record: bool,
}

/// How long after the looping workloads the others may take (Python's
/// test_subprocess takes about 110 s alone here) before they are killed.
const GRACE_SECS: u64 = 40;
/// How often the sampler reads /proc: each scan reads every process's stat
/// (about 3 ms of CPU here), far finer than the 1 s threshold; a parent
/// that changes within a scan is the kernel view's to see.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// When the deliberate leaks run, from the workloads' start.
const LEAKS_AT: [u64; 4] = [3, 30, 60, 85];
/// How long a deliberate zombie stays its parent's.
const HOLD_MS: &str = "4000";

pub fn run(opts: Options) -> anyhow::Result<()> {
    if !is_root()? {
        return Ok(());
    }
    let release = PathBuf::from(crate::target_dir()).join("release");
    let (tool, scenario) = (release.join("reaper-trace"), release.join("scenario"));
    let out = PathBuf::from(crate::target_dir()).join("realworld");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;

    // Declared in the order they must be undone in reverse.
    let _tracefs = Tracefs::ensure()?;
    let work = TempDir::new()?;
    let root = TestCgroup::create("realworld");
    let pg_bin = workloads::postgres_bin()?;
    let ctx = workloads::Context {
        work: work.0.clone(),
        scenario: scenario.clone(),
        fork_exit: workloads::build_fork_exit(&work.0)?,
        python: workloads::python_with_tests()?,
        pg_bin: pg_bin.clone(),
        seconds: opts.seconds,
    };
    let _postgres = Postgres {
        pg_bin,
        data: work.0.join("pg/data"),
    };

    let started = Instant::now();
    let sampler = sampler::Sampler::start(SAMPLE_EVERY);
    let bpftrace = kernel::Bpftrace::start(&out)?;
    let live = Live::start(&tool, &out, opts.record)?;
    let window = judge::Window {
        trace_started_ns: sampler::monotonic_ns(),
    };
    eprintln!(
        "xtask realworld: tracing; ground truth running (set-up {:.1}s)",
        started.elapsed().as_secs_f64()
    );

    let t0 = Instant::now();
    let (mut running, mut cgroups) = start_workloads(&ctx, &root, &out)?;
    let leaks_cg = TestCgroup::create_at(&format!("{}/leaks", root.path));
    let deadline = t0 + Duration::from_secs(opts.seconds + GRACE_SECS);
    let leaks = Leaks {
        scenario: &scenario,
        cgroup: &leaks_cg,
        out: &out,
        t0,
    };
    let expected = leaks.run_while_reaping(&mut running, deadline)?;
    cgroups.push(leaks_cg);
    let mut failures = end_workloads(&mut running, &cgroups, &out);
    wait_until_gone(&expected, Duration::from_secs(10));

    let traced = Traced {
        output: live.stop()?,
        kernel: bpftrace.stop()?,
        sampler: sampler.stop(),
    };
    failures.extend(traced.judge(&expected, window, &root.path, t0, &out)?);
    if !failures.is_empty() {
        bail!("real-machine test failed: {}", failures.join("; "));
    }
    Ok(())
}

/// Whether the test can run: as root; otherwise a skip said aloud when
/// asked for, and an error when not.
fn is_root() -> anyhow::Result<bool> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(true);
    }
    // As the kernel tests: skipped, and said so, only when asked.
    if std::env::var_os("REAPER_TRACE_SKIP_KERNEL_TESTS").is_some() {
        eprintln!(
            "SKIP realworld: the real-machine test needs root (REAPER_TRACE_SKIP_KERNEL_TESTS is set)"
        );
        return Ok(false);
    }
    bail!(
        "the real-machine test traces the whole machine: run it as root, or set REAPER_TRACE_SKIP_KERNEL_TESTS=1 to skip it"
    );
}

/// Each workload started in a cgroup of its own below `root`, its output
/// in `out`.
fn start_workloads(
    ctx: &workloads::Context,
    root: &TestCgroup,
    out: &Path,
) -> anyhow::Result<(Vec<Running>, Vec<TestCgroup>)> {
    let (mut running, mut cgroups) = (Vec::new(), Vec::new());
    for w in workloads::all(ctx) {
        let cg = TestCgroup::create_at(&format!("{}/{}", root.path, w.name));
        let cmd = cg.wrap(&["bash".into(), "-c".into(), w.script]);
        let log = std::fs::File::create(out.join(format!("{}.log", w.name)))?;
        let child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .current_dir(&ctx.work)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting workload {}", w.name))?;
        running.push(Running {
            name: w.name,
            must_succeed: w.must_succeed,
            child,
            ended: None,
        });
        cgroups.push(cg);
    }
    Ok((running, cgroups))
}

/// The deliberate leaks: scenarios of known pids, run in their cgroup at
/// [`LEAKS_AT`] from `t0`.
struct Leaks<'a> {
    scenario: &'a Path,
    cgroup: &'a TestCgroup,
    out: &'a Path,
    t0: Instant,
}

impl Leaks<'_> {
    /// Runs the leaks in a thread of their own while this one reaps each
    /// workload as soon as it ends (the harness's own late reaps would be
    /// true findings, and noise), until every workload ended or the
    /// deadline. The leaks the trace must find.
    fn run_while_reaping(
        &self,
        running: &mut [Running],
        deadline: Instant,
    ) -> anyhow::Result<Vec<Expected>> {
        std::thread::scope(|scope| {
            let leaks = scope.spawn(|| self.run());
            while running.iter().any(|r| r.ended.is_none()) && Instant::now() < deadline {
                for r in running.iter_mut() {
                    r.poll(self.t0)?;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            leaks
                .join()
                .map_err(|_| anyhow::anyhow!("the leak thread panicked"))?
        })
    }

    fn run(&self) -> anyhow::Result<Vec<Expected>> {
        let mut expected = Vec::new();
        for (i, at) in LEAKS_AT.iter().enumerate() {
            std::thread::sleep(
                (self.t0 + Duration::from_secs(*at)).saturating_duration_since(Instant::now()),
            );
            expected.extend(self.one(&["zombie_hold", HOLD_MS], &format!("leak-hold-{i}.log"))?);
            expected.extend(self.one(&["demo"], &format!("leak-demo-{i}.log"))?);
        }
        Ok(expected)
    }

    fn one(&self, args: &[&str], log: &str) -> anyhow::Result<Vec<Expected>> {
        let mut c = vec![self.scenario.to_string_lossy().into_owned()];
        c.extend(args.iter().map(|a| a.to_string()));
        workloads::leak(self.cgroup.wrap(&c), &self.out.join(log))
    }
}

/// Ends what still runs at the deadline (while still traced, so that its
/// end is judged too) and says how each workload ended; the failures.
fn end_workloads(running: &mut [Running], cgroups: &[TestCgroup], out: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    for (r, cg) in running.iter_mut().zip(cgroups) {
        if r.ended.is_none() {
            kill_cgroup(cg);
            let _ = r.child.wait();
        }
        let what = match r.ended {
            Some((status, secs)) => format!("{status} after {secs:.0}s"),
            None => "killed at the deadline".into(),
        };
        eprintln!("xtask realworld: workload {}: {what}", r.name);
        if r.must_succeed && !r.ended.is_some_and(|(s, _)| s.success()) {
            failures.push(format!(
                "workload {} failed ({what}): see {}",
                r.name,
                out.join(format!("{}.log", r.name)).display()
            ));
        }
    }
    failures
}

/// The deliberate zombies are adopted once their scenario ends: waits
/// (bounded) for their adopter to reap them, so their findings are whole.
fn wait_until_gone(expected: &[Expected], at_most: Duration) {
    let gone_by = Instant::now() + at_most;
    while expected
        .iter()
        .any(|e| Path::new(&format!("/proc/{}", e.pid)).exists())
        && Instant::now() < gone_by
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the trace said, and the two ground truths beside it.
struct Traced {
    output: LiveOutput,
    kernel: kernel::KernelView,
    sampler: sampler::SamplerView,
}

impl Traced {
    /// Every finding judged against the ground truths, the leaks looked
    /// for, the summary printed and kept in `out`; the failures.
    fn judge(
        &self,
        expected: &[Expected],
        window: judge::Window,
        root: &str,
        t0: Instant,
        out: &Path,
    ) -> anyhow::Result<Vec<String>> {
        let slack = Slack {
            boot_offset_ns: sampler::clock_ns(libc::CLOCK_BOOTTIME) as i64
                - sampler::monotonic_ns() as i64,
            // SAFETY: sysconf has no preconditions.
            ns_per_tick: 1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64,
            ..Slack::default()
        };
        let judged: Vec<Judged> = self
            .output
            .findings
            .iter()
            .map(|f| judge::judge(f, &self.sampler, &self.kernel, window, &slack))
            .collect();
        let missed = judge::missed(expected, &self.output.findings);
        let mut text = summary(
            &self.output,
            &self.sampler,
            &self.kernel,
            &judged,
            expected,
            &missed,
            root,
        );
        let _ = writeln!(
            text,
            "\nthe harness (sampler, judge) used {:.1}s of CPU; traced for {:.0}s",
            own_cpu_secs(),
            t0.elapsed().as_secs_f64()
        );
        std::fs::write(out.join("verdicts.txt"), &text)?;
        // Every verdict with its evidence, the true ones too, for a look.
        let all: String = judged
            .iter()
            .map(|j| format!("{:?}: {}\n", j.verdict, j.evidence()))
            .collect();
        std::fs::write(out.join("verdicts-all.txt"), all)?;
        print!("{text}");

        let mut failures = Vec::new();
        let bad = judged
            .iter()
            .filter(|j| j.finding.certain && j.verdict != Verdict::True)
            .count();
        if bad > 0 {
            failures.push(format!(
                "{bad} certain findings the ground truth does not confirm"
            ));
        }
        if !missed.is_empty() {
            failures.push(format!("{} deliberate leaks not found", missed.len()));
        }
        Ok(failures)
    }
}

/// The report: figures, the per-workload table, and every finding that is
/// not confirmed and every missed leak, with the evidence.
fn summary(
    output: &LiveOutput,
    sampler: &sampler::SamplerView,
    kernel: &kernel::KernelView,
    judged: &[Judged],
    expected: &[Expected],
    missed: &[&Expected],
    root: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n== real-machine test ==\ntool: {} events, {} lost; {} findings judged ({} certain, {} uncertain)",
        output.events,
        output.lost,
        judged.len(),
        judged.iter().filter(|j| j.finding.certain).count(),
        judged.iter().filter(|j| !j.finding.certain).count(),
    );
    let _ = writeln!(
        s,
        "sampler: {} scans, longest gap {:.1} ms, {} zombies seen; kernel view: {} records, {} lost",
        sampler.scans,
        sampler.max_gap_ns as f64 / 1e6,
        sampler.zombies.len(),
        kernel.lines,
        kernel.lost
    );
    let prefix = format!("{root}/");
    let rows = judge::tally(judged, |f| {
        f.cgroup
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('/').next())
            .map(|name| workloads_name(name))
            .unwrap_or("other (rest of the machine)")
    });
    let _ = writeln!(
        s,
        "\n{:<28} {:>8} {:>6} {:>6} {:>11} {:>9} {:>21}",
        "workload", "findings", "true", "false", "unconfirmed", "uncertain", "uncertain, not true"
    );
    for (name, t) in &rows {
        let _ = writeln!(
            s,
            "{:<28} {:>8} {:>6} {:>6} {:>11} {:>9} {:>21}",
            name, t.findings, t.true_, t.false_, t.unconfirmed, t.uncertain, t.uncertain_not_true
        );
    }
    let _ = writeln!(
        s,
        "\ndeliberate leaks: {} expected, {} found",
        expected.len(),
        expected.len() - missed.len()
    );
    for m in missed {
        let _ = writeln!(
            s,
            "  MISSED {} {:?} pid {} parent {}",
            m.what, m.kind, m.pid, m.parent_pid
        );
    }
    for (title, certain) in [
        ("certain findings not confirmed (FAIL)", true),
        ("uncertain findings not confirmed", false),
    ] {
        let list: Vec<&Judged> = judged
            .iter()
            .filter(|j| j.finding.certain == certain && j.verdict != Verdict::True)
            .collect();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{title}: {}", list.len());
        for j in list {
            let _ = writeln!(s, "  {:?}: {}", j.verdict, j.evidence());
        }
    }
    s
}

/// A workload's bash, and how it ended (status, seconds after the start).
struct Running {
    name: &'static str,
    must_succeed: bool,
    child: Child,
    ended: Option<(std::process::ExitStatus, f64)>,
}

impl Running {
    fn poll(&mut self, t0: Instant) -> anyhow::Result<()> {
        if self.ended.is_none()
            && let Some(status) = self.child.try_wait()?
        {
            self.ended = Some((status, t0.elapsed().as_secs_f64()));
        }
        Ok(())
    }
}

/// SIGKILL to every process in a workload's cgroup (only the harness's
/// own processes are in it).
fn kill_cgroup(cg: &TestCgroup) {
    let Some(v2) = reaper_trace_tests::cgroup_mounts().0 else {
        return;
    };
    let procs = v2
        .join(cg.path.trim_start_matches('/'))
        .join("cgroup.procs");
    for pid in std::fs::read_to_string(procs)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
    {
        // SAFETY: a process of the harness's own cgroup.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// CPU time (user + system) of this process alone, not its children.
fn own_cpu_secs() -> f64 {
    // SAFETY: a zeroed rusage out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The workload names are static; a cgroup name maps back to one.
fn workloads_name(name: &str) -> &'static str {
    const NAMES: &[&str] = &[
        "git",
        "timeout",
        "fork_exit",
        "make",
        "python",
        "postgres",
        "jobs",
        "xargs",
        "storm",
        "leaks",
    ];
    NAMES
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("other (rest of the machine)")
}

/// What the tool printed: its findings (streamed and in the report,
/// merged) and its totals.
struct LiveOutput {
    findings: Vec<Finding>,
    events: u64,
    lost: u64,
}

fn parse_live(text: &str) -> anyhow::Result<LiveOutput> {
    let (mut streamed, mut reported) = (Vec::new(), Vec::new());
    let (mut events, mut lost, mut ended) = (0, 0, false);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("bad line {line:?}"))?;
        match v["type"].as_str() {
            // A pending notice announces an exit still waiting: the
            // finding follows when it ends.
            Some("pending" | "event") => {}
            // Findings, wherever the report lists them (certain and
            // uncertain ones may be listed apart).
            Some("report") => {
                reported.extend(
                    v.as_object()
                        .into_iter()
                        .flat_map(|o| o.values())
                        .filter_map(Value::as_array)
                        .flatten()
                        .filter_map(Finding::from_json),
                );
            }
            Some("totals") => {
                events = v["events"]
                    .as_object()
                    .map(|m| m.values().filter_map(Value::as_u64).sum())
                    .unwrap_or(0);
                lost = v["lost"].as_u64().unwrap_or(0);
                ended = true;
            }
            _ => streamed.extend(Finding::from_json(&v)),
        }
    }
    if !ended {
        bail!("the tool printed no totals: it did not end cleanly");
    }
    Ok(LiveOutput {
        findings: judge::merge(streamed, reported),
        events,
        lost,
    })
}

/// `reaper-trace live --json --no-events`, system-wide, into files.
struct Live {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Live {
    fn start(tool: &Path, out: &Path, record: bool) -> anyhow::Result<Live> {
        let (stdout, stderr) = (out.join("live.jsonl"), out.join("live.stderr"));
        let mut cmd = Command::new(tool);
        cmd.args(["live", "--json", "--no-events"]);
        if record {
            cmd.arg("--record").arg(out.join("trace.rtrc"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("starting {}", tool.display()))?;
        let mut live = Live {
            child,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let said = std::fs::read_to_string(&live.stderr).unwrap_or_default();
            if said.contains("reaper-trace: tracing") {
                return Ok(live);
            }
            if let Some(status) = live.child.try_wait()? {
                bail!("reaper-trace ended before tracing ({status}): {said}");
            }
            if Instant::now() > deadline {
                bail!("reaper-trace did not start tracing within 60s: {said}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT: it prints its final report and totals, then exits.
    fn stop(mut self) -> anyhow::Result<LiveOutput> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("reaper-trace did not stop within 60s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let said = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        if !status.success() {
            bail!("reaper-trace live failed ({status}): {said}");
        }
        parse_live(&std::fs::read_to_string(&self.stdout)?)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The harness's scratch directory, removed at the end. Readable by the
/// postgres user, who runs the server in it.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let dir =
            std::env::temp_dir().join(format!("reaper-trace-realworld-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stops the PostgreSQL server if the workload left it running (it stops
/// it itself when it ends normally).
struct Postgres {
    pg_bin: PathBuf,
    data: PathBuf,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.pg_bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// tracefs, which bpftrace needs: mounted only if absent, and unmounted
/// only if mounted here.
struct Tracefs(Option<&'static str>);

const TRACEFS: &str = "/sys/kernel/tracing";

impl Tracefs {
    fn ensure() -> anyhow::Result<Tracefs> {
        if Path::new(TRACEFS).join("events").exists() {
            return Ok(Tracefs(None));
        }
        let status = Command::new("mount")
            .args(["-t", "tracefs", "tracefs", TRACEFS])
            .status()?;
        if !status.success() {
            bail!("mounting tracefs at {TRACEFS} failed ({status})");
        }
        Ok(Tracefs(Some(TRACEFS)))
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = Command::new("umount").arg(path).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_output_merges_streamed_and_reported_findings() {
        let text = r#"{"type":"pending","kind":"unreaped","pid":7,"parent_pid":6,"latency_ns":1,"start_ns":3}
{"type":"finding","kind":"late_reap","pid":7,"parent_pid":6,"latency_ns":4,"certain":true,"start_ns":3,"resolution":"reaped"}
{"type":"report","findings":[{"kind":"late_reap","pid":7,"parent_pid":6,"latency_ns":4,"certain":false,"start_ns":3},{"kind":"orphaned","pid":9,"parent_pid":6}],"uncertain":[{"kind":"unreaped","pid":8,"parent_pid":6,"latency_ns":4,"certain":false,"start_ns":3}],"parents":[{"parent_pid":6}]}
{"type":"totals","events":{"exit":5,"fork":6},"lost":2}
"#;
        let out = parse_live(text).unwrap();
        assert_eq!((out.events, out.lost), (11, 2));
        assert_eq!(out.findings.len(), 2);
        assert!(out.findings[0].certain);
        assert!(!out.findings[1].certain);
        assert!(parse_live("{\"type\":\"report\"}").is_err());
    }
}
