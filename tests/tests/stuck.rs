//! Kernel tests of where a stuck parent waits: when its child's exit goes
//! overdue, each of its threads is named by the system call it is blocked
//! in and the line of its own code that made it (its user stack, unwound
//! from the call's stack pointer and program counter), in `live`'s pending
//! notice and report, in `check`'s, in `report` of the recording, and in
//! the `zombies` snapshot. The parents are C programs (tests/c/stuck.c)
//! that mean to reap but are stuck elsewhere: asleep in a named function,
//! blocked on a mutex another thread holds, and a signalfd loop in another
//! event's handler.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use reaper_trace_tests::*;
use serde_json::Value;

const STUCK_C: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/c/stuck.c");

/// How long each parent keeps its child unreaped: far past the 200 ms
/// threshold, so that its threads are probed while stuck.
const HOLD_MS: &str = "1500";

/// `stuck.c:N in function` for the line marked `mark`.
fn waits_at(mark: &str, function: &str) -> String {
    format!("stuck.c:{} in {function}", marked_line(STUCK_C, mark))
}

/// stuck.c built with `-g` and `flags` into the scratch directory.
fn build(name: &str, flags: &[&str]) -> PathBuf {
    build_c(STUCK_C, name, flags)
}

/// What one traced run of `bin mode` showed: live's JSON lines, and the
/// report of its recording, as JSON and as text.
struct Run {
    live: Trace,
    parent: i64,
    replayed: Value,
    replayed_text: String,
}

fn traced(bin: &Path, mode: &str) -> Run {
    let recording = temp_path(&format!("stuck-{mode}"));
    let mut cmd = Command::new(tool());
    cmd.args(["live", "--json", "--threshold", "200ms", "--record"])
        .arg(&recording)
        .arg("--")
        .arg(bin)
        .args([mode, HOLD_MS]);
    let live = run_to_end(cmd);
    assert!(live.status.success(), "{}", live.stderr);
    let parent = int(&live.truth("parent")["parent"]);
    let replayed: Value = serde_json::from_str(&report_output(
        &recording,
        &["--format", "json", "--threshold", "200ms"],
    ))
    .expect("report JSON");
    let replayed_text = report_output(&recording, &["--threshold", "200ms"]);
    Run {
        live,
        parent,
        replayed,
        replayed_text,
    }
}

/// The one finding about the leaked child, from a report.
fn the_finding(report: &Value, parent: i64) -> &Value {
    let found: Vec<&Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| int(&f["parent_pid"]) == parent)
        .collect();
    assert_eq!(found.len(), 1, "one finding: {report:#}");
    found[0]
}

/// The thread `tid` of a finding's `threads`.
fn thread(finding: &Value, tid: i64) -> &Value {
    finding["threads"]
        .as_array()
        .unwrap_or_else(|| panic!("threads: {finding:#}"))
        .iter()
        .find(|t| int(&t["tid"]) == tid)
        .unwrap_or_else(|| panic!("no thread {tid}: {finding:#}"))
}

/// The threads of a finding other than the main one.
fn other_threads(finding: &Value, parent: i64) -> Vec<&Value> {
    finding["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .filter(|t| int(&t["tid"]) != parent)
        .collect()
}

/// Asserts that `thread` is blocked in `syscall` at `at`, having called a
/// function whose name holds `called` (the C library's own name for it,
/// `sleep` or `__sleep`, is not the test's to fix).
fn assert_waits(thread: &Value, syscall: &str, called: &str, at: &str) {
    assert_eq!(thread["syscall_name"], syscall, "{thread:#}");
    let place = &thread["user_place"];
    assert_eq!(place["waits_at"], at, "{thread:#}");
    assert!(
        place["called"].as_str().is_some_and(|c| c.contains(called)),
        "{thread:#}"
    );
    let file = format!("stuck.c:{}", at.split([':', ' ']).nth(1).unwrap());
    assert!(
        place["frames"]
            .as_array()
            .is_some_and(|frames| frames.iter().any(|f| f["file"]
                .as_str()
                .is_some_and(|p| p.ends_with("/stuck.c"))
                && format!("stuck.c:{}", f["line"]) == file)),
        "{thread:#}"
    );
}

/// The text line of thread `tid` in `text`.
fn thread_line(text: &str, tid: i64) -> &str {
    let start = format!("thread {tid} (");
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no line for thread {tid} in {text}"))
}

/// Asserts that the pending notice, the live report and the recording's
/// report (JSON and text) all say thread `tid` waits in `syscall` at `at`.
fn assert_everywhere(run: &Run, tid: i64, syscall: &str, called: &str, at: &str) {
    let parent = run.parent;
    let pending = run
        .live
        .notices
        .iter()
        .find(|n| n["type"] == "pending" && int(&n["parent_pid"]) == parent)
        .unwrap_or_else(|| panic!("no pending notice: {:#?}", run.live.notices));
    assert_waits(thread(pending, tid), syscall, called, at);
    let live = the_finding(&run.live.report, parent);
    assert_waits(thread(live, tid), syscall, called, at);
    let replayed = the_finding(&run.replayed, parent);
    assert_eq!(live["threads"], replayed["threads"]);
    let line = thread_line(&run.replayed_text, tid);
    assert!(
        line.starts_with(&format!("thread {tid} (stuck")) && line.ends_with(&format!("← {at}")),
        "{line}"
    );
    assert!(
        line.contains(&format!(" blocked in {syscall} ← ")),
        "{line}"
    );
}

#[test]
fn a_parent_asleep_in_a_named_function_is_named_at_its_sleep_line() {
    kernel_test!();
    let at = waits_at("sleep", "wait_for_jobs");
    for (name, flags) in [
        ("stuck-nofp", &["-O2", "-fomit-frame-pointer"][..]),
        ("stuck-fp", &["-O0", "-fno-omit-frame-pointer"][..]),
    ] {
        let bin = build(name, flags);
        let run = traced(&bin, "sleep");
        assert_everywhere(&run, run.parent, "clock_nanosleep", "sleep", &at);

        // `check`'s text report says it too.
        let out = Command::new(tool())
            .args(["check", "--threshold", "200ms", "--"])
            .arg(&bin)
            .args(["sleep", HOLD_MS])
            .stdin(Stdio::null())
            .output()
            .expect("run check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let parent: i64 = stderr
            .lines()
            .find_map(|l| l.strip_prefix("TRUTH "))
            .map(|j| int(&serde_json::from_str::<Value>(j).unwrap()["parent"]))
            .expect("TRUTH");
        let line = thread_line(&stdout, parent);
        assert!(
            line.starts_with(&format!(
                "thread {parent} ({name}) blocked in clock_nanosleep ← "
            )) && line.ends_with(&format!("← {at}")),
            "{name}: {line}"
        );
    }
}

#[test]
fn a_parent_blocked_on_a_mutex_is_named_at_its_lock_line() {
    kernel_test!();
    let bin = build("stuck-mutex", &["-O2"]);
    let run = traced(&bin, "mutex");
    let at = waits_at("mutex", "reap_under_lock");
    assert_everywhere(&run, run.parent, "futex", "pthread_mutex_lock", &at);
    // And the thread that holds the lock, where it holds it.
    let live = the_finding(&run.live.report, run.parent);
    let holders = other_threads(live, run.parent);
    assert_eq!(holders.len(), 1, "{live:#}");
    let holder = int(&holders[0]["tid"]);
    assert_everywhere(
        &run,
        holder,
        "clock_nanosleep",
        "sleep",
        &waits_at("holder", "hold_lock"),
    );
}

#[test]
fn a_signalfd_loop_stuck_in_another_handler_is_named_at_that_handlers_line() {
    kernel_test!();
    let bin = build("stuck-signalfd", &["-O2"]);
    let run = traced(&bin, "signalfd");
    let at = waits_at("handler", "slow_handler");
    assert_everywhere(&run, run.parent, "read", "read", &at);
    // SIGCHLD waited on the signalfd meanwhile: the finding says so too.
    let live = the_finding(&run.live.report, run.parent);
    assert!(
        codes(live).iter().any(|c| c.contains("signalfd")),
        "{live:#}"
    );
}

#[test]
fn the_zombies_snapshot_names_where_the_parent_sleeps() {
    kernel_test!();
    // The child is orphaned when its parent is killed below: it comes
    // here to be reaped, not to the platform's init.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let bin = build("stuck-snapshot", &["-O2"]);
    let mut parent = Command::new(&bin)
        .args(["sleep", "20000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stuck");
    let mut stderr = BufReader::new(parent.stderr.take().unwrap());
    let mut truth = String::new();
    stderr.read_line(&mut truth).expect("TRUTH");
    let truth: Value = serde_json::from_str(truth.trim().strip_prefix("TRUTH ").unwrap()).unwrap();
    let (pid, child) = (int(&truth["parent"]), int(&truth["child"]));
    // Until its child is a zombie and it sleeps.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = || {
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let call = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        state.contains(") Z ") && call.starts_with(&format!("{} ", libc::SYS_clock_nanosleep))
    };
    while !ready() {
        assert!(Instant::now() < deadline, "the parent never slept");
        std::thread::sleep(Duration::from_millis(5));
    }
    let json = Command::new(tool())
        .args(["zombies", "--json", "--parent", &pid.to_string()])
        .output()
        .expect("run zombies");
    let text = Command::new(tool())
        .args(["zombies", "--parent", &pid.to_string()])
        .output()
        .expect("run zombies");
    let _ = parent.kill();
    let _ = parent.wait();
    // SAFETY: reaping the orphan that came to this subreaper.
    unsafe { libc::waitpid(child as i32, std::ptr::null_mut(), 0) };

    let snap: Value = serde_json::from_slice(&json.stdout).expect("snapshot JSON");
    let p = &snap["groups"][0]["parents"][0];
    assert_eq!(int(&p["pid"]), pid, "{snap:#}");
    let at = waits_at("sleep", "wait_for_jobs");
    assert_waits(thread(p, pid), "clock_nanosleep", "sleep", &at);
    let text = String::from_utf8_lossy(&text.stdout);
    let line = thread_line(&text, pid);
    assert!(
        line.starts_with(&format!(
            "thread {pid} (stuck-snapshot) blocked in clock_nanosleep ← "
        )) && line.ends_with(&format!("← {at}")),
        "{line}"
    );
}
