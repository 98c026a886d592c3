//! Harness for the kernel integration tests: runs `reaper-trace` on the
//! scenario programs, collects its JSON events and the scenarios' ground
//! truth (`TRUTH {json}` lines on stderr), and gives small query helpers.
//!
//! The test process makes itself a child subreaper, so orphans of the
//! scenarios come to it and never depend on PID 1 reaping them.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::Once,
    time::{Duration, Instant},
};

use serde_json::Value;

/// Upper bound for any one traced run.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The `reaper-trace` binary: `$REAPER_TRACE_BIN`, or the one cargo built
/// next to this test's own executable.
pub fn tool() -> PathBuf {
    built_binary("REAPER_TRACE_BIN", "reaper-trace")
}

/// The scenario programs.
pub fn scenario_bin() -> PathBuf {
    built_binary("SCENARIO_BIN", "scenario")
}

/// The project's tasks, the binary `cargo xtask` runs.
pub fn xtask_bin() -> PathBuf {
    built_binary("XTASK_BIN", "xtask")
}

fn built_binary(override_var: &str, name: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(override_var) {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo xtask test` does)",
        bin.display()
    );
    bin
}

/// Whether kernel tests can run. Without root they fail, unless the caller
/// opted out with REAPER_TRACE_SKIP_KERNEL_TESTS=1, in which case the skip
/// is printed.
pub fn kernel_tests_enabled(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        become_subreaper();
        return true;
    }
    if std::env::var_os("REAPER_TRACE_SKIP_KERNEL_TESTS").is_some() {
        eprintln!("SKIP {test}: kernel tests need root (REAPER_TRACE_SKIP_KERNEL_TESTS is set)");
        return false;
    }
    panic!(
        "{test}: kernel tests need root; run `sudo cargo xtask test`, or set REAPER_TRACE_SKIP_KERNEL_TESTS=1 to skip them"
    );
}

fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: plain prctl.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER failed");
    });
}

/// Returns early from a test when kernel tests cannot run (see
/// [`kernel_tests_enabled`]).
#[macro_export]
macro_rules! kernel_test {
    () => {
        if !$crate::kernel_tests_enabled(module_path!()) {
            return;
        }
    };
}

/// The outcome of one traced run.
#[derive(Debug)]
pub struct Trace {
    pub events: Vec<Value>,
    /// Pending findings, findings and notes, in the order printed.
    pub notices: Vec<Value>,
    pub report: Value,
    pub totals: Value,
    pub truths: Vec<Value>,
    pub stderr: String,
    pub status: ExitStatus,
}

impl Trace {
    /// Parses the tool's stdout (JSON lines) and stderr (with TRUTH lines).
    pub fn parse(stdout: &str, stderr: String, status: ExitStatus) -> Trace {
        let mut events = Vec::new();
        let mut notices = Vec::new();
        let mut report = Value::Null;
        let mut totals = Value::Null;
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
            match value["type"].as_str() {
                Some("event") => events.push(value),
                Some("totals") => totals = value,
                Some("report") => report = value,
                Some("pending" | "finding" | "leader_exit") => notices.push(value),
                other => panic!("unexpected line type {other:?}: {line}"),
            }
        }
        let truths = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("TRUTH "))
            .map(|j| serde_json::from_str(j).unwrap_or_else(|e| panic!("bad TRUTH {j:?}: {e}")))
            .collect();
        Trace {
            events,
            notices,
            report,
            totals,
            truths,
            stderr,
            status,
        }
    }

    /// The first TRUTH line that has `field`.
    pub fn truth(&self, field: &str) -> &Value {
        self.truths
            .iter()
            .find(|t| !t[field].is_null())
            .unwrap_or_else(|| panic!("no TRUTH with {field}; stderr:\n{}", self.stderr))
    }

    /// Events of one kind that satisfy `pred`.
    pub fn find<'a>(&'a self, kind: &str, pred: impl Fn(&Value) -> bool) -> Vec<&'a Value> {
        self.events
            .iter()
            .filter(|e| e["kind"] == kind && pred(e))
            .collect()
    }

    /// Exactly one event of `kind` matching `pred`.
    pub fn one(&self, kind: &str, what: &str, pred: impl Fn(&Value) -> bool) -> &Value {
        let found = self.find(kind, pred);
        assert_eq!(
            found.len(),
            1,
            "expected exactly one {kind} event for {what}, got {found:#?}\nall events: {:#?}",
            self.events
        );
        found[0]
    }

    /// Findings of the final report about one of `pids`.
    pub fn findings_for(&self, pids: &[i64]) -> Vec<&Value> {
        self.findings()
            .into_iter()
            .filter(|f| pids.contains(&int(&f["pid"])))
            .collect()
    }

    /// Every finding of the final report.
    pub fn findings(&self) -> Vec<&Value> {
        self.report["findings"]
            .as_array()
            .unwrap_or_else(|| panic!("no report: {}", self.stderr))
            .iter()
            .collect()
    }

    /// The findings the final report lists apart as uncertain.
    pub fn uncertain_findings(&self) -> Vec<&Value> {
        self.report["uncertain_findings"]
            .as_array()
            .unwrap_or_else(|| panic!("no report: {}", self.stderr))
            .iter()
            .collect()
    }

    /// A summary counter of the final report.
    pub fn summary(&self, field: &str) -> i64 {
        int(&self.report["summary"][field])
    }

    /// The tool succeeded and lost nothing.
    pub fn assert_clean(&self) {
        assert!(
            self.status.success(),
            "reaper-trace failed: {:?}\n{}",
            self.status,
            self.stderr
        );
        assert_eq!(self.lost(), 0, "events lost: {}", self.totals);
    }

    pub fn lost(&self) -> u64 {
        self.totals["lost"]
            .as_u64()
            .unwrap_or_else(|| panic!("no totals: {:?}", self.totals))
    }
}

/// `reaper-trace live --json -- scenario <args>`.
pub fn trace_scenario(args: &[&str]) -> Trace {
    trace_scenario_with(&[], args)
}

/// `reaper-trace live --json <options> -- scenario <args>`. The run is also
/// recorded, and the recording's timeline is checked against its report
/// ([`assert_timeline_agrees`]), so every scenario the kernel tests run
/// proves the two outputs draw the same reaps.
pub fn trace_scenario_with(options: &[&str], args: &[&str]) -> Trace {
    let recording = temp_path(&format!("scenario-{}", args.join("-")));
    let trace = trace_scenario_recorded(options, args, &recording);
    let _ = std::fs::remove_file(&recording);
    trace
}

/// [`trace_scenario_with`], keeping the recording at `recording`.
pub fn trace_scenario_recorded(
    options: &[&str],
    args: &[&str],
    recording: &std::path::Path,
) -> Trace {
    let mut command = vec![scenario_bin().to_string_lossy().into_owned()];
    command.extend(args.iter().map(|a| a.to_string()));
    trace_command_recorded(options, &command, recording)
}

/// `reaper-trace live --json <options> -- <command>` (a tracer, a shell,
/// `unshare` around a scenario), recorded and checked like a scenario.
pub fn trace_command(options: &[&str], command: &[String]) -> Trace {
    let recording = temp_path(&format!("command-{}", command.len()));
    let trace = trace_command_recorded(options, command, &recording);
    let _ = std::fs::remove_file(&recording);
    trace
}

fn trace_command_recorded(
    options: &[&str],
    command: &[String],
    recording: &std::path::Path,
) -> Trace {
    let mut cmd = Command::new(tool());
    cmd.args(["live", "--json"])
        .args(options)
        .arg("--record")
        .arg(recording)
        .arg("--")
        .args(command);
    let trace = run_to_end(cmd);
    if trace.status.success() {
        assert_timeline_agrees(recording);
        assert_report_agrees(recording, &trace);
    }
    trace
}

/// `report` on the recording reaches the findings the live run printed.
/// The frames of where each parent's thread waits are compared by module
/// and address: live names them from the process's own files (through
/// /proc/PID/root for a container's), `report` only from files at those
/// paths where it runs, as docs/stacks.md says.
pub fn assert_report_agrees(recording: &std::path::Path, live: &Trace) {
    let replayed: Value =
        serde_json::from_str(&report_output(recording, &["--format", "json"])).expect("JSON");
    for part in ["findings", "summary", "parents"] {
        assert_eq!(
            unnamed_thread_frames(&replayed[part]),
            unnamed_thread_frames(&live.report[part]),
            "{part} differ between live and report"
        );
    }
}

/// `findings` with each thread's `user_place` reduced to its frames'
/// modules and addresses.
fn unnamed_thread_frames(findings: &Value) -> Value {
    let mut findings = findings.clone();
    let threads = findings
        .as_array_mut()
        .into_iter()
        .flatten()
        .filter_map(|f| f["threads"].as_array_mut())
        .flatten();
    for thread in threads {
        // Live names inlined calls as frames of their own, at one address.
        let mut frames: Vec<Value> = thread["user_place"]["frames"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| serde_json::json!([f["module"], f["address"]]))
            .collect();
        frames.dedup();
        if !thread["user_place"].is_null() {
            thread["user_place"] = Value::Array(frames);
        }
    }
    findings
}

/// The line (from 1) of the C source `source` carrying `MARK: <mark>`:
/// how the stack tests know the line to expect without writing it down.
pub fn marked_line(source: &str, mark: &str) -> u64 {
    let text = std::fs::read_to_string(source).unwrap_or_else(|e| panic!("{source}: {e}"));
    let needle = format!("MARK: {mark} ");
    text.lines()
        .position(|l| l.contains(&needle))
        .map(|i| i as u64 + 1)
        .unwrap_or_else(|| panic!("no {needle:?} in {source}"))
}

/// The C source `source` built with `-g -pthread` and `flags` into
/// `name` in the scratch directory.
pub fn build_c(source: &str, name: &str, flags: &[&str]) -> PathBuf {
    let out = scratch_dir().join(name);
    let status = Command::new("cc")
        .args(["-g", "-pthread"])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(source)
        .status()
        .expect("run cc (set-up installs gcc)");
    assert!(status.success(), "cc {flags:?} {source} failed");
    out
}

/// This test process's scratch directory, removed when the process exits
/// (whatever its tests left there: recordings, metrics files, Prometheus'
/// data).
pub fn scratch_dir() -> &'static PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    extern "C" fn remove_scratch_dir() {
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("reaper-trace-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        // SAFETY: registers a function without arguments, run once at exit.
        unsafe { libc::atexit(remove_scratch_dir) };
        dir
    })
}

/// A fresh path in this test process's scratch directory.
pub fn temp_path(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    scratch_dir().join(format!("{n}-{safe}.rtrace"))
}

/// `reaper-trace check --format json <options> -- <cmd>`: (exit code, the
/// report, stderr). The report is `Null` when none was printed.
pub fn check_json(options: &[&str], cmd: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(tool())
        .args(["check", "--format", "json"])
        .args(options)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .next_back()
        .unwrap_or(Value::Null);
    (out.status.code(), report, stderr)
}

/// The one unreaped finding of a report.
pub fn the_unreaped(report: &Value) -> &Value {
    let findings: Vec<&Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == "unreaped")
        .collect();
    assert_eq!(findings.len(), 1, "one unreaped child: {report:#}");
    findings[0]
}

/// The JUnit `xml` of `check` blames the leaked child's fork on `file`'s
/// `line` in `function`: the failing case's message says so, and it
/// carries the file and line for CI to annotate.
pub fn assert_junit_blames(xml: &str, file: &str, line: u64, function: &str) {
    assert!(
        xml.contains(&format!("forked at {file}:{line} in {function}")),
        "{file}:{line} in {function}: {xml}"
    );
    assert!(
        xml.contains(&format!("{file}\" line=\"{line}\"")),
        "{file}:{line}: {xml}"
    );
}

/// `reaper-trace report FILE <args>`: stdout, with a successful exit.
pub fn report_output(file: &std::path::Path, args: &[&str]) -> String {
    String::from_utf8(report_bytes(file, args)).expect("UTF-8 report")
}

/// `reaper-trace report FILE <args>`: stdout as bytes (a binary timeline),
/// with a successful exit.
pub fn report_bytes(file: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool())
        .arg("report")
        .arg(file)
        .args(args)
        .output()
        .expect("run reaper-trace report");
    assert!(
        out.status.success(),
        "report {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The Python with Perfetto's bindings: `$REAPER_TRACE_PERFETTO_PYTHON`,
/// or the venv `cargo xtask setup` makes in the target directory
/// (`perfetto-venv`, found above this test's executable). Missing, the
/// test fails: the timeline must not go unchecked.
pub fn perfetto_python() -> PathBuf {
    if let Some(python) = std::env::var_os("REAPER_TRACE_PERFETTO_PYTHON") {
        return python.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .map(|dir| dir.join("perfetto-venv/bin/python"))
        .find(|python| python.exists())
        .unwrap_or_else(|| {
            panic!(
                "no perfetto-venv/bin/python above {}: run `cargo xtask setup` (it installs \
                 Perfetto's Python bindings, which the timeline tests check the trace with), \
                 or set REAPER_TRACE_PERFETTO_PYTHON",
                exe.display()
            )
        })
}

/// A program of the same venv as [`perfetto_python`] (the test tools
/// `cargo xtask setup` installs from PyPI, e.g. `kubernetes-validate`).
pub fn venv_bin(name: &str) -> PathBuf {
    perfetto_python().with_file_name(name)
}

/// Checks a native Perfetto trace with Perfetto's own schema and rules
/// (`tests/perfetto_check.py`: no unknown field, iids and tracks defined
/// before use, slices paired, flows whole) and returns its summary:
/// `tracks`, `slices`, `instants` and `flows`, times in ns.
pub fn perfetto_check(trace: &std::path::Path) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/perfetto_check.py");
    let out = Command::new(perfetto_python())
        .arg(script)
        .arg(trace)
        .output()
        .expect("run perfetto_check.py");
    assert!(
        out.status.success(),
        "{} fails Perfetto's checks ({}):\n{}",
        trace.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the checker's JSON summary")
}

/// `report --format perfetto` on a recording, checked ([`perfetto_check`]):
/// its summary.
pub fn perfetto_timeline(recording: &std::path::Path) -> Value {
    let trace = recording.with_extension("pftrace");
    std::fs::write(&trace, report_bytes(recording, &["--format", "perfetto"]))
        .expect("write the trace");
    let summary = perfetto_check(&trace);
    let _ = std::fs::remove_file(&trace);
    summary
}

/// The slices or instants of a timeline summary on `pid`'s tracks whose
/// name starts with `name`.
pub fn timeline_items<'a>(summary: &'a Value, kind: &str, pid: i64, name: &str) -> Vec<&'a Value> {
    summary[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} in {summary}"))
        .iter()
        .filter(|e| {
            int(&e["pid"]) == pid && e["name"].as_str().is_some_and(|n| n.starts_with(name))
        })
        .collect()
}

/// The timeline (`report --format perfetto`) draws exactly the reaps the
/// report states: every finding about an exit seen in the trace has a
/// ZOMBIE slice on its process's track, starting at the exit and lasting
/// its latency, to the nanosecond; and every ZOMBIE slice longer than the
/// threshold (1 s) is a finding. Returns the timeline's summary
/// ([`perfetto_check`]).
pub fn assert_timeline_agrees(recording: &std::path::Path) -> Value {
    let report: Value =
        serde_json::from_str(&report_output(recording, &["--format", "json"])).expect("JSON");
    let timeline = perfetto_timeline(recording);
    let zombies: Vec<(i64, i64, i64)> = timeline["slices"]
        .as_array()
        .expect("slices")
        .iter()
        .filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with("ZOMBIE")))
        .map(|s| (int(&s["pid"]), int(&s["ts"]), int(&s["dur"])))
        .collect();
    // The uncertain findings are drawn like the others.
    let findings: Vec<Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .chain(
            report["uncertain_findings"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .cloned()
        .collect();
    // Orphans are not about reaping: their zombie time belongs to their
    // adopter's lifecycle, drawn like any other.
    let about_reaps = |f: &&Value| f["kind"] != "orphaned";
    for f in findings
        .iter()
        .filter(about_reaps)
        .filter(|f| !f["exited_at_ns"].is_null())
    {
        let (pid, exited, latency) = (
            int(&f["pid"]),
            int(&f["exited_at_ns"]),
            int(&f["latency_ns"]),
        );
        let slice = zombies.iter().find(|(p, ts, _)| *p == pid && *ts == exited);
        let Some((_, _, dur)) = slice else {
            panic!("finding {f} has no ZOMBIE slice; slices: {zombies:?}")
        };
        assert_eq!(
            *dur, latency,
            "finding for {pid}: the report says {latency} ns, the timeline {dur} ns"
        );
    }
    for (pid, ts, dur) in zombies.iter().filter(|(_, _, dur)| *dur > 1_000_000_000) {
        assert!(
            findings.iter().any(|f| int(&f["pid"]) == *pid
                && !f["exited_at_ns"].is_null()
                && int(&f["exited_at_ns"]) == *ts),
            "a {dur} ns ZOMBIE slice of {pid} at {ts} that the report does not list: {findings:#?}"
        );
    }
    timeline
}

/// A list of pids from a TRUTH field.
/// `handler_once`'s zombies (one wait per SIGCHLD while SIGCHLDs
/// coalesce): exactly the ones it left are unreaped findings, each with
/// `sigchld_coalesced`.
pub fn assert_coalesced_zombies_found(t: &Trace) {
    let truth = t.truth("zombies_left");
    let left = int(&truth["zombies_left"]);
    assert!(left > 0, "the scenario must leave zombies: {truth}");
    let findings = t.findings_for(&pids(&truth["children"]));
    assert_eq!(findings.len() as i64, left, "{findings:#?}");
    assert_eq!(t.summary("unreaped"), left);
    for f in findings {
        assert!(
            codes(f).contains(&"sigchld_coalesced".into()),
            "{:?}",
            f["diagnosis"]
        );
    }
}

pub fn pids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(int)
        .collect()
}

/// The diagnosis codes of a finding.
pub fn codes(finding: &Value) -> Vec<String> {
    finding["diagnosis"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|i| i["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a command with piped output to its end, within `RUN_TIMEOUT`.
pub fn run_to_end(mut cmd: Command) -> Trace {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn reaper-trace");
    let (stdout, stderr) = collect_output(&mut child);
    let status = wait_bounded(&mut child);
    Trace::parse(
        &stdout.join().expect("stdout"),
        stderr.join().expect("stderr"),
        status,
    )
}

type Reader = std::thread::JoinHandle<String>;

fn collect_output(child: &mut Child) -> (Reader, Reader) {
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    (stdout, stderr)
}

/// Waits for `child`, killing it past `RUN_TIMEOUT`.
pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("run exceeded {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A tool run that traces while the test does other things: started, then
/// waited for until it says it is tracing, then stopped with SIGINT (or
/// killed when dropped unstopped: a failed assertion must not leave a
/// system-wide tracer running).
pub struct Background {
    child: Child,
    stdout: Option<Reader>,
    stderr_lines: std::sync::mpsc::Receiver<String>,
    /// What it said on stderr before it said it traces (`serve`: where it
    /// listens).
    pub preamble: Vec<String>,
}

impl Background {
    /// Starts `reaper-trace <args>` and returns once it reports tracing.
    pub fn start(args: &[String]) -> Background {
        let mut child = Command::new(tool())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn reaper-trace");
        let mut out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut bg = Background {
            child,
            stdout: Some(stdout),
            stderr_lines: rx,
            preamble: Vec::new(),
        };
        loop {
            let line = bg
                .stderr_lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("reaper-trace did not start: {:?}", bg.preamble));
            if line.contains("tracing") {
                return bg;
            }
            // Only information (where `serve` listens) may come first.
            assert!(
                !line.contains("error") && !line.contains("warning"),
                "reaper-trace did not start cleanly: {line}"
            );
            bg.preamble.push(line);
        }
    }

    /// Stops it with SIGINT and collects everything.
    pub fn stop(self) -> Trace {
        self.stop_with(libc::SIGINT)
    }

    /// Stops it with `signal` and collects everything.
    pub fn stop_with(mut self, signal: i32) -> Trace {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let status = wait_bounded(&mut self.child);
        let stderr: Vec<String> = self.stderr_lines.try_iter().collect();
        let stdout = self.stdout.take().expect("stopped once");
        Trace::parse(&stdout.join().expect("stdout"), stderr.join("\n"), status)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `reaper-trace serve --listen 127.0.0.1:0 <args>` once it traces, and
/// the address it serves on (the port the kernel picked, which it prints,
/// over http or https).
pub fn start_serve(args: &[&str]) -> (Background, std::net::SocketAddr) {
    let mut all: Vec<String> = ["serve", "--listen", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    all.extend(args.iter().map(|s| s.to_string()));
    let serve = Background::start(&all);
    let addr = serve
        .preamble
        .iter()
        .find_map(|line| {
            let rest = line.strip_prefix("reaper-trace: serving metrics on ")?;
            rest.strip_prefix("http://")
                .or_else(|| rest.strip_prefix("https://"))
        })
        .and_then(|rest| rest.trim_end_matches("/metrics").parse().ok())
        .unwrap_or_else(|| panic!("serve printed no address: {:?}", serve.preamble));
    (serve, addr)
}

/// A scenario started directly by the test, with piped stdin and stderr.
pub struct Scenario {
    pub child: Child,
    truths: std::sync::mpsc::Receiver<Value>,
}

impl Scenario {
    pub fn start(args: &[&str]) -> Scenario {
        let mut child = Command::new(scenario_bin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn scenario");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(json) = line.strip_prefix("TRUTH ") {
                    let _ = tx.send(serde_json::from_str(json).expect("TRUTH json"));
                }
            }
        });
        Scenario { child, truths: rx }
    }

    /// The next TRUTH line.
    pub fn truth(&self) -> Value {
        self.truths
            .recv_timeout(Duration::from_secs(30))
            .expect("scenario reported nothing")
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write to scenario");
    }
}

/// Runs a command as an unprivileged user (nobody) and returns its result.
pub fn run_as_nobody(args: &[&str]) -> (ExitStatus, String) {
    let mut cmd = Command::new(tool());
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: setgroups/setgid/setuid are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run as nobody");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Below `vm.mmap_min_addr`: nothing can be mapped there.
pub const UNMAPPED: usize = 0x1000;

/// `rt_sigaction(SIGCHLD)` with an unmapped new action: the call fails with
/// EFAULT, and so does the sigaction probe's read of the action (a rare path
/// it reports with `--probe-log`). Returns the call's result and errno.
pub fn rt_sigaction_unmapped() -> (i64, Option<i32>) {
    // SAFETY: the kernel checks the pointer; nothing is installed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            libc::SIGCHLD,
            UNMAPPED,
            0usize,
            8usize,
        )
    };
    (ret, std::io::Error::last_os_error().raw_os_error())
}

/// The full path of `program` on PATH, if it is installed.
pub fn which(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

/// A JSON number as i64.
pub fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// A cgroup made for one test: the same path in the cgroup v2 hierarchy
/// and, on a hybrid host, in the v1 pids hierarchy (as runtimes and
/// systemd make them), under a root unique to this test process. Removed
/// on drop, after killing whatever of ours is still inside.
pub struct TestCgroup {
    /// Below the v2 root, starting with `/`: what /proc/PID/cgroup prints.
    pub path: String,
    v2: PathBuf,
    pids: Option<PathBuf>,
    /// Every directory made, outermost first.
    made: Vec<PathBuf>,
}

impl TestCgroup {
    /// `/reaper-trace-test-<pid>-<n>/<below>` in each hierarchy.
    pub fn create(below: &str) -> TestCgroup {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self::create_at(&format!(
            "/reaper-trace-test-{}-{n}/{below}",
            std::process::id()
        ))
    }

    /// `path` in each hierarchy, as given: the caller makes it its own (the
    /// soak benchmark makes one path again and again, as a restarted unit).
    pub fn create_at(path: &str) -> TestCgroup {
        let path = path.to_owned();
        let (v2_root, pids_root) = cgroup_mounts();
        let v2_root = v2_root.expect("a cgroup2 mount in /proc/self/mountinfo");
        let mut made = Vec::new();
        for root in std::iter::once(&v2_root).chain(pids_root.as_ref()) {
            let mut dir = root.clone();
            for part in path.split('/').filter(|p| !p.is_empty()) {
                dir.push(part);
                if !dir.exists() {
                    std::fs::create_dir(&dir)
                        .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                    made.push(dir.clone());
                }
            }
        }
        let relative = path.trim_start_matches('/');
        TestCgroup {
            v2: v2_root.join(relative),
            pids: pids_root.map(|r| r.join(relative)),
            path,
            made,
        }
    }

    /// The directory where `pids.max` lives (v2 if the controller is on
    /// there, else v1).
    fn pids_dir(&self) -> &std::path::Path {
        if self.v2.join("pids.max").exists() {
            &self.v2
        } else {
            self.pids.as_deref().expect("a pids controller")
        }
    }

    pub fn set_pids_max(&self, max: u32) {
        let file = self.pids_dir().join("pids.max");
        std::fs::write(&file, max.to_string())
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }

    /// `command`, run in this cgroup: a shell moves itself in, then execs.
    pub fn wrap(&self, command: &[String]) -> Vec<String> {
        let mut wrapped = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            r#"echo $$ > "$1" && { [ "$2" = - ] || echo $$ > "$2"; } && shift 2 && exec "$@""#
                .to_owned(),
            "sh".to_owned(),
            self.v2.join("cgroup.procs").to_string_lossy().into_owned(),
            self.pids
                .as_ref()
                .filter(|_| !self.v2.join("pids.max").exists())
                .map(|p| p.join("cgroup.procs").to_string_lossy().into_owned())
                .unwrap_or_else(|| "-".to_owned()),
        ];
        wrapped.extend(command.iter().cloned());
        wrapped
    }

    /// The scenario `args`, run in this cgroup under `tini -s`, which
    /// reaps the scenario's orphans at once (a subreaper inside the
    /// cgroup, as in a container).
    pub fn scenario_under_tini(&self, tini: &str, args: &[&str]) -> Vec<String> {
        let mut command = vec![
            tini.to_owned(),
            "-s".to_owned(),
            "--".to_owned(),
            scenario_bin().to_string_lossy().into_owned(),
        ];
        command.extend(args.iter().map(|a| a.to_string()));
        self.wrap(&command)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::fs::remove_dir(dir).is_err() && dir.exists() {
                // Only this test's processes can be in its cgroups.
                if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        // SAFETY: killing a process of this test's own cgroup.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
                if Instant::now() > deadline {
                    eprintln!("warning: could not remove {}", dir.display());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The cgroup2 mount point and a v1 mount with the pids controller, from
/// /proc/self/mountinfo.
pub fn cgroup_mounts() -> (Option<PathBuf>, Option<PathBuf>) {
    let mounts = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map(|m| m.0)
        .unwrap_or_default();
    let v2 = mounts
        .iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point.clone());
    let pids = mounts
        .iter()
        .find(|m| m.fs_type == "cgroup" && m.super_options.contains_key("pids"))
        .map(|m| m.mount_point.clone());
    (v2, pids)
}

/// A GET over plain HTTP/1.1: (status, body).
pub fn http_get(
    addr: std::net::SocketAddr,
    path_and_query: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The sum of the samples of `metric` whose labels include `labels`, in
/// Prometheus text: `None` when there is none.
pub fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}
