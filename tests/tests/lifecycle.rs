//! Kernel tests of the lifecycle analysis: each scenario runs under
//! `reaper-trace live --json` on the real kernel, and the verdicts are
//! compared with what the scenario itself observed (its TRUTH lines: pids
//! from fork, counts it kept, /proc checks it made).

use reaper_trace_tests::*;
use serde_json::Value;

/// A clean run whose report also counts no loss.
fn assert_clean(t: &Trace) {
    t.assert_clean();
    assert_eq!(t.summary("lost_events"), 0);
}

fn no_findings(t: &Trace) {
    let findings = t.findings();
    assert!(findings.is_empty(), "unexpected findings: {findings:#?}");
}

#[test]
fn never_waiting_parent_leaves_adopted_zombies() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events"], &["noreap", "5"]);
    assert_clean(&t);
    let truth = t.truth("children");
    let children = pids(&truth["children"]);
    assert_eq!(int(&truth["zombies"]), 5, "the scenario saw its 5 zombies");
    let findings = t.findings_for(&children);
    assert_eq!(findings.len(), 5, "{findings:#?}");
    for f in &findings {
        assert_eq!(f["kind"], "unreaped");
        assert_eq!(f["resolution"], "adopted");
        assert_eq!(f["reap_kind"], "adopted");
        assert_eq!(f["parent_pid"], truth["parent"]);
        let c = codes(f);
        assert!(
            c.contains(&"never_waited".into()) && c.contains(&"parent_exited".into()),
            "{c:?}"
        );
    }
    assert_eq!(t.summary("unreaped"), 5);
    assert_eq!(t.summary("adopted"), 5);
}

#[test]
fn sig_ign_autoreaps_without_sigchld() {
    kernel_test!();
    let t = trace_scenario(&["sigign_many", "5"]);
    assert_clean(&t);
    let children = pids(&t.truth("children")["children"]);
    assert_eq!(children.len(), 5);
    no_findings(&t);
    assert_eq!(t.summary("autoreaped"), 5);
    let sigchld = t.find("signal_generate", |e| {
        e["sig"] == libc::SIGCHLD && children.contains(&int(&e["si_pid"]))
    });
    assert!(
        sigchld.is_empty(),
        "SIG_IGN generates no SIGCHLD: {sigchld:#?}"
    );
}

#[test]
fn sa_nocldwait_autoreaps_with_sigchld() {
    kernel_test!();
    let t = trace_scenario(&["nocldwait", "5"]);
    assert_clean(&t);
    let children = pids(&t.truth("children")["children"]);
    no_findings(&t);
    assert_eq!(t.summary("autoreaped"), 5);
    for child in &children {
        let s = t.one("signal_generate", "the child's SIGCHLD", |e| {
            e["sig"] == libc::SIGCHLD && int(&e["si_pid"]) == *child
        });
        assert_eq!(s["result"], "ignored");
    }
}

#[test]
fn one_wait_per_signal_handler_leaves_coalesced_zombies() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events"], &["handler_once", "5"]);
    assert_clean(&t);
    assert_coalesced_zombies_found(&t);
}

#[test]
fn looping_waitpid_handler_leaves_nothing() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events"], &["handler_loop", "5"]);
    assert_clean(&t);
    assert_eq!(int(&t.truth("reaped")["reaped"]), 5);
    no_findings(&t);
    assert_eq!(
        t.summary("reaped_by_parent"),
        6,
        "5 children and the scenario itself"
    );
}

#[test]
fn stalled_signalfd_loop_reaps_late() {
    kernel_test!();
    let t = trace_scenario_with(
        &["--no-events", "--threshold", "1s"],
        &["signalfd_stall", "5", "2500"],
    );
    assert_clean(&t);
    let truth = t.truth("stall_ms");
    assert!(int(&truth["stall_ms"]) >= 2500);
    let children = pids(&truth["children"]);
    let findings = t.findings_for(&children);
    assert_eq!(findings.len(), 5, "{findings:#?}");
    for f in &findings {
        assert_eq!(f["kind"], "late_reap");
        assert_eq!(f["resolution"], "reaped");
        assert!(int(&f["latency_ns"]) >= 2_000_000_000, "{f}");
        assert!(
            codes(f).contains(&"sigchld_signalfd".into()),
            "{:?}",
            f["diagnosis"]
        );
        assert!(f["diagnosis"].to_string().contains("signalfd"));
    }
    assert_eq!(t.summary("late_reaps"), 5);
    let pending = t
        .notices
        .iter()
        .filter(|n| n["type"] == "pending" && children.contains(&int(&n["pid"])))
        .count();
    assert_eq!(
        pending, 5,
        "each late exit is announced once, before its reap"
    );
}

#[test]
fn early_leader_exit_is_noted_not_flagged() {
    kernel_test!();
    let t = trace_scenario(&["leader_exit", "2000"]);
    assert_clean(&t);
    let pid = int(&t.truth("worker_tid")["pid"]);
    no_findings(&t);
    assert_eq!(t.summary("leader_exits"), 1);
    let note = t
        .notices
        .iter()
        .find(|n| n["type"] == "leader_exit")
        .expect("a leader_exit note");
    assert_eq!(int(&note["pid"]), pid);
    let leader = t.one("exit", "the leader", |e| int(&e["tid"]) == pid);
    assert_eq!(leader["group_dead"], false);
}

#[test]
fn popen_without_pclose_is_one_finding_per_popen() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events"], &["popen", "3"]);
    assert_clean(&t);
    let children = pids(&t.truth("children")["children"]);
    assert_eq!(children.len(), 3);
    let findings = t.findings_for(&children);
    assert_eq!(findings.len(), 3, "{findings:#?}");
    assert!(findings.iter().all(|f| f["kind"] == "unreaped"));
    assert_eq!(t.summary("unreaped"), 3);
}

#[test]
fn waiting_for_another_child_is_named() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events"], &["waitpid_other", "1000"]);
    assert_clean(&t);
    let truth = t.truth("a_zombie_after");
    assert_eq!(truth["a_zombie_after"], true);
    let (a, b) = (int(&truth["a"]), int(&truth["b"]));
    let findings = t.findings_for(&[a]);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["kind"], "unreaped");
    let waited = findings[0]["diagnosis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "waited_for_other")
        .expect("waited_for_other");
    assert!(
        waited["text"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {b}")),
        "{waited}"
    );
    assert!(t.findings_for(&[b]).is_empty(), "B was reaped promptly");
}

#[test]
fn reused_pid_is_two_lifecycles() {
    kernel_test!();
    // The second child holds the pid for 200 ms: well past the first one's
    // free, which must not end the second lifecycle.
    let t = trace_scenario(&["pid_reuse", "200"]);
    assert_clean(&t);
    if let Some(skip) = t.truths.iter().find_map(|v| v["skip"].as_str()) {
        eprintln!("SKIP reused_pid_is_two_lifecycles: {skip}");
        return;
    }
    let truth = t.truth("second_pid");
    let pid = int(&truth["pid"]);
    assert_eq!(int(&truth["second_pid"]), pid);
    let exits = t.find("exit", |e| int(&e["tgid"]) == pid);
    assert_eq!(exits.len(), 2, "two processes had pid {pid}");
    let second_start = exits[1]["process_start_ns"].clone();
    assert_ne!(exits[0]["process_start_ns"], second_start);
    let findings = t.findings_for(&[pid]);
    assert_eq!(
        findings.len(),
        1,
        "only the second is flagged: {findings:#?}"
    );
    assert_eq!(findings[0]["start_ns"], second_start);
    assert_eq!(findings[0]["resolution"], "adopted", "{:#?}", findings[0]);
    assert!(int(&findings[0]["latency_ns"]) >= 200_000_000);
}

#[test]
fn thread_exits_are_not_findings() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events", "--threads"], &["threads", "100"]);
    assert_clean(&t);
    assert_eq!(int(&t.truth("threads")["threads"]), 100);
    no_findings(&t);
    assert_eq!(t.summary("threads_reaped"), 100);
}

#[test]
fn exit_signal_zero_child_is_reaped_without_sigchld() {
    kernel_test!();
    let t = trace_scenario(&["exit_signal0"]);
    assert_clean(&t);
    let truth = t.truth("wait_ret");
    let child = int(&truth["child"]);
    assert_eq!(int(&truth["wait_ret"]), child);
    no_findings(&t);
    assert!(
        t.find("signal_generate", |e| int(&e["si_pid"]) == child)
            .is_empty()
    );
    assert_eq!(
        t.one("exit", "the child", |e| int(&e["tgid"]) == child)["exit_signal"],
        0
    );
    assert_eq!(
        t.summary("reaped_by_parent"),
        2,
        "the child and the scenario"
    );
}

#[test]
fn fork_storm_is_fully_reaped_and_nothing_lost() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events"], &["storm", "5000"]);
    assert_clean(&t);
    assert_eq!(int(&t.truth("reaped")["reaped"]), 5000);
    no_findings(&t);
    assert_eq!(t.summary("exits"), 5001);
    assert_eq!(t.summary("reaped_by_parent"), 5001);
}

#[test]
fn double_fork_orphan_is_information_not_a_leak() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events"], &["double_fork"]);
    assert_clean(&t);
    let truth = t.truth("grandchild");
    let (child, grandchild) = (int(&truth["child"]), int(&truth["grandchild"]));
    let findings = t.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = findings[0];
    assert_eq!(f["kind"], "orphaned");
    assert_eq!((int(&f["pid"]), int(&f["parent_pid"])), (grandchild, child));
    // Adopted by the tracer itself: the subreaper of the traced command.
    assert_ne!(f["adopted_by_pid"], Value::Null);
    assert_eq!(f["parent_end"]["exit_code"], 0);
    assert_eq!(
        f["hint"],
        Value::Null,
        "a deliberate double fork needs no fix"
    );
    assert_eq!(t.summary("adopted_while_running"), 1);
    assert_eq!(t.summary("unreaped"), 0);
}

#[test]
fn zombie_older_than_the_trace_is_reported() {
    kernel_test!();
    let mut holder = Scenario::start(&["zombie_hold"]);
    let truth = holder.truth();
    let (parent, zombie) = (int(&truth["parent"]), int(&truth["zombie"]));
    let tracer = Background::start(&[
        "live".into(),
        "--json".into(),
        "--no-events".into(),
        "--pid".into(),
        parent.to_string(),
    ]);
    let t = tracer.stop();
    // Let the holder go; its zombie comes to us (the subreaper): reap both.
    drop(holder.child.stdin.take());
    assert!(wait_bounded(&mut holder.child).success());
    // SAFETY: reaping our adopted orphan.
    let reaped = unsafe { libc::waitpid(zombie as i32, std::ptr::null_mut(), 0) };
    assert_eq!(reaped as i64, zombie);

    assert!(t.status.success(), "{}", t.stderr);
    let findings = t.findings_for(&[zombie]);
    assert_eq!(findings.len(), 1, "{:#?}", t.report);
    assert_eq!(findings[0]["predates_trace"], true);
    assert_eq!(findings[0]["resolution"], "zombie");
    assert_eq!(int(&findings[0]["parent_pid"]), parent);
    // The summary and the parent's row agree: one exit (before the trace),
    // unreaped.
    assert_eq!((t.summary("exits"), t.summary("unreaped")), (1, 1));
    let rows: Vec<(i64, i64, i64)> = t.report["parents"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (int(&r["parent_pid"]), int(&r["exits"]), int(&r["unreaped"])))
        .collect();
    assert_eq!(rows, [(parent, 1, 1)]);
}

#[test]
fn wnowait_peek_is_not_a_reap_in_the_report_nor_the_timeline() {
    kernel_test!();
    let file = temp_path("peek");
    let t = trace_scenario_recorded(&[], &["peek", "1500"], &file);
    assert_clean(&t);
    let truth = t.truth("child");
    let child = int(&truth["child"]);
    assert_eq!(int(&truth["peeked"]), child);
    assert_eq!(truth["zombie_after_peek"], true, "WNOWAIT left the zombie");
    let peek = t.one("wait_exit", "the WNOWAIT peek", |e| {
        int(&e["reaped_pid"]) == child && int(&e["options"]) & i64::from(libc::WNOWAIT) != 0
    });
    assert_eq!(peek["syscall"], "waitid");
    let findings = t.findings_for(&[child]);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = findings[0];
    assert_eq!(
        (&f["kind"], &f["resolution"]),
        (&"unreaped".into(), &"adopted".into())
    );
    assert!(int(&f["latency_ns"]) >= 1_500_000_000, "{f}");
    assert_ne!(f["reaped_by_pid"], truth["parent"]);

    // The timeline agrees with the report (checked by the harness), and
    // draws the peek as a peek, never as a reap by the parent.
    let timeline = assert_timeline_agrees(&file);
    let _ = std::fs::remove_file(&file);
    let parent = int(&truth["parent"]);
    let names: Vec<&str> = timeline_items(&timeline, "instants", parent, "")
        .into_iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("waitid(") && n.contains("WNOWAIT: not reaped")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains(&format!("reaps {child}"))),
        "{names:?}"
    );
    let zombie = timeline_items(&timeline, "slices", child, "ZOMBIE");
    let [zombie] = zombie[..] else {
        panic!("one ZOMBIE slice for the peeked child: {zombie:?}")
    };
    assert!(int(&zombie["dur"]) >= 1_500_000_000, "{zombie}");
    assert_eq!(zombie["args"]["reap_kind"], "adopted");
}

#[test]
fn a_stopped_childs_wait_is_not_a_reap() {
    kernel_test!();
    let out = std::process::Command::new(tool())
        .args(["live", "--"])
        .arg(scenario_bin())
        .args(["stopped", "1200"])
        .output()
        .expect("run reaper-trace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let truth: serde_json::Value = stderr
        .lines()
        .find_map(|l| l.strip_prefix("TRUTH "))
        .map(|j| serde_json::from_str(j).unwrap())
        .expect("TRUTH");
    let child = int(&truth["child"]);
    assert_eq!(int(&truth["reaped"]), child);
    let stop =
        format!("Wait4 pid {child} options WUNTRACED -> {child} stopped by SIGSTOP: not reaped");
    let reap = format!("Wait4 pid {child} options 0 -> reaps {child} (exited 0)");
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(&stop)).count(),
        1,
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(&reap)).count(),
        1,
        "{stdout}"
    );
    // Reaped 1.2 s after its exit: late, by its parent.
    assert!(
        stdout.contains(&format!("!! finding late_reap {child} (scenario) exited 0")),
        "{stdout}"
    );
}

#[test]
fn a_wrappers_sigchld_changes_do_not_follow_the_program_it_execs() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events"], &["exec_after_sigchld", "15"]);
    assert_clean(&t);
    let wrapper = t.truth("wrapper");
    assert_eq!(int(&wrapper["changes"]), 15);
    let leaked = t.truth("children");
    // exec keeps the pid: the wrapper became the leaking program.
    assert_eq!(leaked["parent"], wrapper["wrapper"]);
    let children = pids(&leaked["children"]);
    let findings = t.findings_for(&children);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let c = codes(findings[0]);
    assert!(
        !c.contains(&"sigchld_disposition_change".to_owned()),
        "the wrapper's changes leaked into the program's finding: {c:?}"
    );
    assert!(c.contains(&"sigchld_default".to_owned()), "{c:?}");
}

#[test]
fn a_tracers_waits_are_not_reaps() {
    kernel_test!();
    let Some(strace) = which("strace") else {
        eprintln!(
            "SKIP a_tracers_waits_are_not_reaps: strace is not installed (cargo xtask setup installs it)"
        );
        return;
    };
    // strace -f collects every exit of the tree first; the real parents
    // still reap their own children, promptly.
    let command: Vec<String> = [&strace, "-f", "-qq", "-o", "/dev/null"]
        .into_iter()
        .map(str::to_owned)
        .chain([scenario_bin().to_string_lossy().into_owned()])
        .chain(["handler_loop".to_owned(), "3".to_owned()])
        .collect();
    let t = trace_command(&["--no-events"], &command);
    assert_clean(&t);
    let findings = t.findings();
    assert!(
        findings.is_empty(),
        "a tracer's wait was taken for a reap: {findings:#?}"
    );
    assert!(t.summary("reaped_by_parent") >= 3, "{}", t.report);
}

#[test]
fn a_daemon_that_crashes_in_shutdown_leaves_named_orphans() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events"], &["crash_shutdown", "200"]);
    assert_clean(&t);
    let truth = t.truth("workers");
    let (supervisor, daemon) = (int(&truth["supervisor"]), int(&truth["daemon"]));
    assert_eq!(int(&truth["daemon_signal"]), i64::from(libc::SIGSEGV));
    let workers = pids(&truth["workers"]);
    let findings = t.findings_for(&workers);
    assert_eq!(findings.len(), 2, "{:#?}", t.findings());
    for f in findings {
        assert_eq!(f["kind"], "orphaned");
        assert_eq!(int(&f["parent_pid"]), daemon);
        let end = &f["parent_end"];
        assert_eq!(int(&end["signal"]), i64::from(libc::SIGSEGV));
        assert_eq!(int(&end["after_signal"]["sig"]), i64::from(libc::SIGTERM));
        assert_eq!(int(&end["after_signal"]["from_pid"]), supervisor);
        assert_eq!(f["exit_code"], 0, "each worker's own fate");
        assert_ne!(f["adopted_by_pid"], Value::Null);
        let text = &f["diagnosis"][0]["text"];
        assert!(
            text.as_str().unwrap().contains("killed by SIGSEGV")
                && text.as_str().unwrap().contains("after SIGTERM from"),
            "{text}"
        );
        assert!(f["hint"].as_str().unwrap().contains("on SIGTERM"), "{f}");
    }
    // The daemon itself was reaped by its supervisor at once: no finding.
    assert!(t.findings_for(&[daemon]).is_empty());
}
