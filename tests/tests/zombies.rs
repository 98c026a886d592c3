//! Kernel tests of `reaper-trace zombies`, the snapshot of the zombies on
//! the machine now: real zombies whose parent blocks SIGCHLD in every
//! thread with the signal pending, a parent stopped by SIGSTOP, zombies in
//! a cgroup with `pids.max`, the exit status against `--threshold`, the
//! JSON shape, and the same explanation in `live`'s findings about zombies
//! older than the trace. Each holder's zombies come to this test (the
//! subreaper) when it ends, and are reaped here.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reaper_trace_tests::*;
use serde_json::Value;

/// `reaper-trace zombies --json --parent PARENT <extra>`: exit code and JSON.
fn snapshot(parent: i64, extra: &[&str]) -> (Option<i32>, Value) {
    let out = Command::new(tool())
        .args(["zombies", "--json", "--parent", &parent.to_string()])
        .args(extra)
        .output()
        .expect("run reaper-trace zombies");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

/// The one parent group of a snapshot filtered to one parent.
fn the_parent(snap: &Value) -> &Value {
    let groups = snap["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "one cgroup: {snap:#}");
    let parents = groups[0]["parents"].as_array().expect("parents");
    assert_eq!(parents.len(), 1, "one parent: {snap:#}");
    &parents[0]
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

fn zombie_pids(parent: &Value) -> Vec<i64> {
    sorted(
        parent["zombies"]
            .as_array()
            .expect("zombies")
            .iter()
            .map(|z| int(&z["pid"]))
            .collect(),
    )
}

/// The (code, text) items of a parent's explanation.
fn items(parent: &Value) -> Vec<(String, String)> {
    parent["explanation"]
        .as_array()
        .expect("explanation")
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or_default().to_owned(),
                d["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn item(parent: &Value, code: &str) -> String {
    items(parent)
        .into_iter()
        .find(|(c, _)| c == code)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no {code} in {parent:#}"))
}

/// A scenario holding zombies, ended when dropped (a failed assertion
/// included): killed, stopped or not, and its zombies, which come to this
/// test (the subreaper), reaped.
struct Held {
    child: Child,
    children: Vec<i64>,
}

impl Held {
    /// Ends it by closing its stdin (`blocked_pending` returns then) and
    /// checks it exited cleanly.
    fn finish(mut self) {
        drop(self.child.stdin.take());
        assert!(wait_bounded(&mut self.child).success());
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for &child in &self.children {
            // SAFETY: reaping zombies reparented to this subreaper.
            unsafe { libc::waitpid(child as i32, std::ptr::null_mut(), 0) };
        }
    }
}

/// Starts scenario `args` and takes its truth: its zombies are `children`.
fn hold(args: &[&str]) -> (Held, Value) {
    let scenario = Scenario::start(args);
    let truth = scenario.truth();
    let children = sorted(pids(&truth["children"]));
    (
        Held {
            child: scenario.child,
            children,
        },
        truth,
    )
}

fn state(pid: i64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn mono_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

const BLOCKED_HINT: &str = "SIGCHLD is blocked in every thread, so the handler never runs: unblock it (sigprocmask, pthread_sigmask) in a thread that lives, or read it with sigwaitinfo or a signalfd and loop waitpid(-1, WNOHANG) then";

fn pending_blocked_text(parent: i64, threads: usize) -> String {
    format!(
        "SIGCHLD is pending and blocked in every thread ({threads} of {threads}) of parent {parent}, so its handler never runs; nothing reads it (no signalfd; sigwaitinfo would)"
    )
}

#[test]
fn sigchld_pending_and_blocked_in_every_thread_is_named_with_each_thread() {
    kernel_test!();
    let (holder, truth) = hold(&["blocked_pending", "3", "2"]);
    let parent = int(&truth["parent"]);
    let children = holder.children.clone();
    let threads = sorted(pids(&truth["threads"]));
    let (code, snap) = snapshot(parent, &["--threshold", "60m"]);
    holder.finish();

    assert_eq!(code, Some(0), "none older than an hour: {snap:#}");
    assert_eq!(
        (int(&snap["zombies"]), int(&snap["over_threshold"])),
        (3, 0)
    );
    let p = the_parent(&snap);
    assert_eq!(int(&p["pid"]), parent);
    assert_eq!(p["comm"], "scenario");
    assert_eq!(zombie_pids(p), children);
    assert_eq!(
        p["sigchld"],
        serde_json::json!({
            "action": "handler",
            "pending": true,
            "blocked_in_every_thread": true,
            "signalfds": [],
        })
    );
    let seen: Vec<i64> = p["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| {
            assert_eq!(t["sigchld_blocked"], true, "{t}");
            int(&t["tid"])
        })
        .collect();
    assert_eq!(seen, threads);
    let codes: Vec<String> = items(p).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        codes,
        [
            "sigchld_handler",
            "sigchld_pending_blocked",
            "parent_thread_at",
            "parent_thread_at",
            "parent_thread_at"
        ]
    );
    assert_eq!(
        item(p, "sigchld_handler"),
        format!("parent {parent} has a SIGCHLD handler installed (SigCgt)")
    );
    assert_eq!(
        item(p, "sigchld_pending_blocked"),
        pending_blocked_text(parent, 3)
    );
    // The main thread waits in read() on its stdin pipe; the others sleep.
    assert!(
        item(p, "parent_thread_at").starts_with(&format!(
            "thread {parent} of {parent}: (scenario) S in read ("
        )),
        "{p:#}"
    );
    assert_eq!(p["hint"], BLOCKED_HINT);
    // Each age is time since the exit, at least: never more than since
    // the fork, and not much less than since the scenario saw them dead
    // (the scheduler's task clock leaves out interrupt and steal time).
    let taken = int(&snap["taken_at_ns"]);
    let (forked, dead) = (int(&truth["forked_ns"]), int(&truth["zombies_ns"]));
    for z in p["zombies"].as_array().unwrap() {
        let age = int(&z["exited_ago_ns"]);
        let most = taken - forked;
        let least = taken - dead;
        assert!(
            age <= most + most / 1000 && age >= least - least / 50 - 20_000_000,
            "age {age} not within [{least}, {most}]: {z}"
        );
        assert!(int(&z["started_ago_ns"]) >= age - 10_000_000, "{z}");
    }
}

#[test]
fn live_says_the_same_of_zombies_older_than_the_trace() {
    kernel_test!();
    let (holder, truth) = hold(&["blocked_pending", "2", "1"]);
    let parent = int(&truth["parent"]);
    let children = holder.children.clone();
    let (_, snap) = snapshot(parent, &[]);
    let recording = temp_path("zombies-predates");
    let mut cmd = Command::new(tool());
    cmd.args([
        "live",
        "--json",
        "--no-events",
        "--duration",
        "2s",
        "--record",
    ])
    .arg(&recording)
    .arg("--pid")
    .arg(parent.to_string());
    let t = run_to_end(cmd);
    holder.finish();
    // The probe is recorded: `report` says the same.
    assert_report_agrees(&recording, &t);

    assert!(t.status.success(), "{}", t.stderr);
    let snapped = the_parent(&snap);
    let findings = t.findings_for(&children);
    assert_eq!(findings.len(), 2, "{:#?}", t.report);
    for f in findings {
        assert_eq!(f["predates_trace"], true);
        let c = codes(f);
        // What findings always said is still there, in front.
        assert_eq!(c[0], "predates_trace", "{c:?}");
        assert!(c.contains(&"never_waited".to_owned()), "{c:?}");
        assert!(c.contains(&"parent_threads".to_owned()), "{c:?}");
        let text = |code: &str| {
            f["diagnosis"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["code"] == code)
                .and_then(|d| d["text"].as_str())
                .unwrap_or_else(|| panic!("no {code}: {f:#}"))
                .to_owned()
        };
        // The snapshot's words, from the probe live made as the trace began.
        assert_eq!(
            text("sigchld_pending_blocked"),
            pending_blocked_text(parent, 2)
        );
        assert_eq!(
            text("sigchld_pending_blocked"),
            item(snapped, "sigchld_pending_blocked")
        );
        assert_eq!(text("sigchld_handler"), item(snapped, "sigchld_handler"));
        assert_eq!(f["hint"], BLOCKED_HINT);
    }
}

#[test]
fn a_stopped_parent_is_named_and_told_to_continue() {
    kernel_test!();
    let (holder, truth) = hold(&["noreap_hold", "2", "600000"]);
    let parent = int(&truth["parent"]);
    let children = holder.children.clone();
    // SAFETY: stopping the scenario we started.
    unsafe { libc::kill(parent as i32, libc::SIGSTOP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(parent) != Some('T') {
        assert!(Instant::now() < deadline, "{parent} never stopped");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (_, snap) = snapshot(parent, &[]);
    drop(holder);

    let p = the_parent(&snap);
    assert_eq!(zombie_pids(p), children);
    assert_eq!(
        item(p, "parent_stopped"),
        format!(
            "parent {parent} is stopped (state T: SIGSTOP, SIGTSTP or job control) in every thread (1 of 1): it runs no code, so it reaps nothing until it gets SIGCONT"
        )
    );
    let thread = &p["threads"][0];
    assert_eq!(
        (int(&thread["tid"]), &thread["state"]),
        (parent, &Value::from("T"))
    );
    // Root reads the kernel stack: a stopped task sleeps in do_signal_stop.
    assert_eq!(thread["kernel_stack"][0], "do_signal_stop", "{thread}");
    assert_eq!(
        p["hint"],
        format!(
            "the parent is stopped: it reaps nothing until it gets SIGCONT (kill -CONT {parent}); find what stopped it (a job-control stop, a SIGSTOP from a supervisor)"
        )
    );
}

#[test]
fn zombies_in_a_cgroup_show_its_pids_max_headroom() {
    kernel_test!();
    const MAX: i64 = 10;
    let cg = TestCgroup::create("zombies");
    cg.set_pids_max(MAX as u32);
    let command = cg.wrap(&[
        scenario_bin().to_string_lossy().into_owned(),
        "noreap_hold".into(),
        "3".into(),
        "600000".into(),
    ]);
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the holder");
    let stderr = child.stderr.take().expect("stderr");
    let mut holder = Held {
        child,
        children: Vec::new(),
    };
    let truth: Value = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("TRUTH ")
                .map(|j| serde_json::from_str(j).expect("json"))
        })
        .expect("a TRUTH line");
    let parent = int(&truth["parent"]);
    let children = sorted(pids(&truth["children"]));
    holder.children = children.clone();
    let (_, snap) = snapshot(parent, &[]);
    drop(holder);
    let path = cg.path.clone();
    drop(cg);

    let group = &snap["groups"][0];
    assert_eq!(group["cgroup"]["cgroup"]["path"], Value::from(path));
    // The holder (the shell exec'd into it) and its three zombies.
    let current = 1 + children.len() as i64;
    assert_eq!(
        int(&group["cgroup"]["pids"]["current"]),
        current,
        "{group:#}"
    );
    let limit = &group["cgroup"]["pids"]["limit"];
    assert_eq!(
        (
            int(&limit["current"]),
            int(&limit["max"]),
            int(&limit["headroom"])
        ),
        (current, MAX, MAX - current),
        "{group:#}"
    );
    assert_eq!(limit["cgroup"], group["cgroup"]["cgroup"]["path"]);
    assert_eq!(zombie_pids(the_parent(&snap)), children);
}

#[test]
fn exit_status_says_whether_a_zombie_is_older_than_the_threshold() {
    kernel_test!();
    let (holder, truth) = hold(&["noreap_hold", "2", "600000"]);
    let dead_by = mono_ns();
    let parent = int(&truth["parent"]);
    let (under, under_snap) = snapshot(parent, &["--threshold", "60m"]);
    // Let them be zombies for a second, then judge against half of it.
    while mono_ns() < dead_by + 1_000_000_000 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (over, over_snap) = snapshot(parent, &["--threshold", "500ms"]);
    let text = Command::new(tool())
        .args(["zombies", "--threshold", "500ms", "--parent"])
        .arg(parent.to_string())
        .output()
        .expect("zombies as text");
    drop(holder);

    assert_eq!(under, Some(0), "{under_snap:#}");
    assert_eq!(int(&under_snap["over_threshold"]), 0);
    assert_eq!(over, Some(1), "{over_snap:#}");
    assert_eq!(int(&over_snap["over_threshold"]), 2);
    assert_eq!(text.status.code(), Some(1));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("2 zombies under 1 parent; 2 exited more than 0.500s ago\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\n  parent {parent} (scenario): 2 zombies, the oldest exited at least "
        )),
        "{text}"
    );
}

#[test]
fn the_json_has_its_documented_shape_and_no_root_is_refused() {
    kernel_test!();
    let (holder, truth) = hold(&["noreap_hold", "1", "600000"]);
    let parent = int(&truth["parent"]);
    let (_, snap) = snapshot(parent, &[]);
    drop(holder);

    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&snap),
        [
            "groups",
            "over_threshold",
            "parents",
            "taken_at_ns",
            "threshold_ns",
            "type",
            "zombies"
        ]
    );
    assert_eq!(snap["type"], "zombies");
    assert_eq!(int(&snap["threshold_ns"]), 1_000_000_000);
    assert_eq!(keys(&snap["groups"][0]), ["cgroup", "parents"]);
    let p = the_parent(&snap);
    assert_eq!(
        keys(p),
        [
            "comm",
            "explanation",
            "hint",
            "pid",
            "read",
            "sigchld",
            "threads",
            "zombies"
        ]
    );
    assert_eq!(
        keys(&p["zombies"][0]),
        [
            "comm",
            "exited_ago_ns",
            "over_threshold",
            "pid",
            "started_ago_ns"
        ]
    );
    assert_eq!(p["sigchld"]["action"], "default");
    assert_eq!(p["read"], true);
    // A parent that keeps SIGCHLD at SIG_DFL and never waits.
    assert_eq!(
        p["hint"],
        "call waitpid() for every child (or set SIGCHLD to SIG_IGN if their exit statuses are not needed)"
    );

    let (status, stderr) = run_as_nobody(&["zombies"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("zombies needs root"), "{stderr}");
}

/// CPU time (user + system) of this process's waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[test]
fn a_thousand_zombies_are_listed_in_well_under_half_a_second() {
    kernel_test!();
    let (holder, truth) = hold(&["noreap_hold", "1000", "600000"]);
    let parent = int(&truth["parent"]);
    let cpu_before = children_cpu();
    let started = Instant::now();
    let out = Command::new(tool())
        .args(["zombies", "--parent", &parent.to_string()])
        .output()
        .expect("run reaper-trace zombies");
    let wall = started.elapsed();
    let cpu = children_cpu() - cpu_before;
    let (_, snap) = snapshot(parent, &[]);
    let children = holder.children.clone();
    drop(holder);

    // Just made: under the default threshold of 1 s unless the machine
    // stalled, so only the text is checked, not the status.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("1000 zombies under 1 parent; "), "{text}");
    assert_eq!(zombie_pids(the_parent(&snap)), children);
    // The CPU it used, not the wall time, which a loaded machine
    // stretches: the debug build takes about 0.06 s of CPU here.
    eprintln!("reaper-trace zombies, 1000 zombies: wall {wall:?}, cpu {cpu:?}");
    assert!(
        cpu < Duration::from_millis(500),
        "cpu {cpu:?}, wall {wall:?}"
    );
}
