//! Kernel integration tests for the event pipeline: each runs a scenario
//! program under `reaper-trace live --json` on the real kernel and checks
//! exact values against the scenario's own ground truth.

use reaper_trace_tests::*;

fn assert_clean(trace: &Trace) {
    trace.assert_clean();
}

#[test]
fn exit_code_sigchld_wait_and_free() {
    kernel_test!();
    let t = trace_scenario(&["exit42"]);
    assert_clean(&t);
    let truth = t.truth("child");
    let (parent, parent_tid, child) = (
        int(&truth["parent"]),
        int(&truth["parent_tid"]),
        int(&truth["child"]),
    );
    assert_eq!(int(&truth["wait_ret"]), child);

    let exit = t.one("exit", "the child", |e| int(&e["tgid"]) == child);
    assert_eq!(exit["exit_code"], 42);
    assert!(exit["signal"].is_null());
    assert_eq!(exit["group_dead"], true);
    assert_eq!(int(&exit["real_parent_tgid"]), parent);

    let sigchld = t.one("signal_generate", "the child's SIGCHLD", |e| {
        e["sig"] == libc::SIGCHLD && int(&e["si_pid"]) == child
    });
    assert_eq!(int(&sigchld["target_tgid"]), parent);
    assert_eq!(int(&sigchld["target_tid"]), parent_tid);
    assert_eq!(sigchld["si_status"], 42);
    assert_eq!(sigchld["code"], 1, "CLD_EXITED");
    // The scenario leaves SIGCHLD at SIG_DFL, which the kernel reports as ignored.
    assert_eq!(sigchld["target_disposition"], "default");
    assert_eq!(sigchld["result"], "ignored");

    let wait = t.one("wait_exit", "the parent's reap", |e| {
        int(&e["reaped_pid"]) == child
    });
    assert_eq!(int(&wait["tgid"]), parent);
    assert_eq!(wait["syscall"], "wait4");
    assert_eq!(int(&wait["upid"]), child);
    assert_eq!(int(&wait["ret"]), child);
    assert_eq!(wait["status"], truth["status"]);

    let free = t.one("free", "the child", |e| int(&e["tid"]) == child);
    assert_eq!(int(&free["tgid"]), child);
    assert!(
        free["time_ns"].as_u64() > exit["time_ns"].as_u64(),
        "free follows exit"
    );
    assert!(
        free["time_ns"].as_u64() >= wait["time_ns"].as_u64(),
        "free follows the reap"
    );
}

#[test]
fn sigkill_is_told_apart_from_an_exit() {
    kernel_test!();
    let t = trace_scenario(&["sigkill"]);
    assert_clean(&t);
    let truth = t.truth("child");
    let (parent, child) = (int(&truth["parent"]), int(&truth["child"]));

    let kill = t.one("signal_generate", "the SIGKILL", |e| {
        e["sig"] == 9 && int(&e["target_tgid"]) == child
    });
    assert_eq!(int(&kill["tgid"]), parent, "sent by the parent");
    let exit = t.one("exit", "the child", |e| int(&e["tgid"]) == child);
    assert_eq!(exit["signal"], 9);
    assert!(exit["exit_code"].is_null());
    assert_eq!(exit["core_dumped"], false);
    let sigchld = t.one("signal_generate", "the child's SIGCHLD", |e| {
        e["sig"] == libc::SIGCHLD && int(&e["si_pid"]) == child
    });
    assert_eq!(sigchld["code"], 2, "CLD_KILLED");
    assert_eq!(sigchld["si_status"], 9);
    let wait = t.one("wait_exit", "the reap", |e| int(&e["reaped_pid"]) == child);
    assert_eq!(wait["status"], truth["status"]);
}

#[test]
fn sig_ign_parent_gets_no_sigchld_and_child_is_freed_without_wait() {
    kernel_test!();
    let t = trace_scenario(&["sigign"]);
    assert_clean(&t);
    let truth = t.truth("child");
    let (parent, child) = (int(&truth["parent"]), int(&truth["child"]));

    let sigaction = t.one("sigaction", "SIG_IGN", |e| int(&e["tgid"]) == parent);
    assert_eq!(sigaction["disposition"], "ignore");
    assert!(
        t.find("signal_generate", |e| e["sig"] == libc::SIGCHLD
            && int(&e["si_pid"]) == child)
            .is_empty(),
        "no SIGCHLD under SIG_IGN"
    );
    assert!(
        t.find("wait_exit", |e| int(&e["tgid"]) == parent)
            .is_empty(),
        "the parent never waits"
    );
    t.one("exit", "the child", |e| int(&e["tgid"]) == child);
    t.one("free", "the child", |e| int(&e["tid"]) == child);
}

#[test]
fn waitid_reaped_pid_comes_from_infop() {
    kernel_test!();
    let t = trace_scenario(&["waitid"]);
    assert_clean(&t);
    let truth = t.truth("si_pid");
    let child = int(&truth["child"]);
    assert_eq!(int(&truth["si_pid"]), child);
    let wait = t.one("wait_exit", "the waitid", |e| {
        e["syscall"] == "waitid" && int(&e["tgid"]) == int(&truth["parent"])
    });
    assert_eq!(int(&wait["reaped_pid"]), child);
    assert_eq!(wait["ret"], 0);
    assert_eq!(wait["which"], 1, "P_PID");
    assert_eq!(int(&wait["upid"]), child);
    assert_eq!(wait["status"], truth["si_status"]);
    assert_eq!(wait["si_code"], 1, "CLD_EXITED");
}

#[test]
fn thread_exit_is_not_a_process_exit() {
    kernel_test!();
    let t = trace_scenario_with(&["--threads"], &["thread_exit"]);
    assert_clean(&t);
    let truth = t.truth("thread_tid");
    let (pid, tid) = (int(&truth["pid"]), int(&truth["thread_tid"]));
    assert_ne!(pid, tid);

    let fork = t.one("fork", "the thread", |e| int(&e["child_tid"]) == tid);
    assert_eq!(fork["is_thread"], true);
    assert_eq!(int(&fork["child_tgid"]), pid);
    let thread_exit = t.one("exit", "the thread", |e| int(&e["tid"]) == tid);
    assert_eq!(int(&thread_exit["tgid"]), pid);
    assert_eq!(thread_exit["is_thread"], true);
    assert_eq!(thread_exit["group_dead"], false);
    let process_exit = t.one("exit", "the process", |e| int(&e["tid"]) == pid);
    assert_eq!(process_exit["is_thread"], false);
    assert_eq!(process_exit["group_dead"], true);
    assert!(
        t.find("signal_generate", |e| int(&e["si_pid"]) == tid)
            .is_empty(),
        "a thread's exit sends no SIGCHLD"
    );
}

#[test]
fn exec_from_a_non_leader_thread_reports_the_old_pid() {
    kernel_test!();
    let t = trace_scenario_with(&["--threads"], &["thread_exec"]);
    assert_clean(&t);
    let truth = t.truth("thread_tid");
    let (pid, tid) = (int(&truth["pid"]), int(&truth["thread_tid"]));
    let exec = t.one("exec", "the thread's exec", |e| int(&e["old_pid"]) == tid);
    assert_eq!(int(&exec["pid"]), pid);
    assert_ne!(exec["pid"], exec["old_pid"]);
    assert_eq!(int(&exec["tgid"]), pid);
}

#[test]
fn thread_events_are_dropped_in_the_kernel_unless_asked_for() {
    kernel_test!();
    let t = trace_scenario(&["thread_exit"]);
    assert_clean(&t);
    let truth = t.truth("thread_tid");
    let (pid, tid) = (int(&truth["pid"]), int(&truth["thread_tid"]));
    assert!(
        t.find("fork", |e| int(&e["child_tid"]) == tid).is_empty(),
        "no thread fork"
    );
    assert!(
        t.find("exit", |e| int(&e["tid"]) == tid).is_empty(),
        "no thread exit"
    );
    assert!(
        t.find("free", |e| int(&e["tid"]) == tid).is_empty(),
        "no thread free"
    );
    t.one("exit", "the process", |e| {
        int(&e["tid"]) == pid && e["group_dead"] == true
    });
}

#[test]
fn pid_filter_follows_new_descendants_and_nothing_else() {
    kernel_test!();
    let mut tree = Scenario::start(&["tree"]);
    let pid = int(&tree.truth()["pid"]);
    let tracer = Background::start(&[
        "live".into(),
        "--json".into(),
        "--pid".into(),
        pid.to_string(),
    ]);
    // Forked only now, after tracing started.
    tree.send_line("go");
    let truth = tree.truth();
    let (child, grandchild) = (int(&truth["child"]), int(&truth["grandchild"]));
    assert!(wait_bounded(&mut tree.child).success());
    let unrelated = Scenario::start(&["exit42"]);
    let other = unrelated.truth();
    let mut unrelated = unrelated;
    assert!(wait_bounded(&mut unrelated.child).success());
    let t = tracer.stop();
    assert!(t.status.success(), "{}", t.stderr);
    assert_eq!(t.lost(), 0);

    let fork = t.one("fork", "the grandchild", |e| {
        int(&e["child_tgid"]) == grandchild
    });
    assert_eq!(int(&fork["tgid"]), child);
    t.one("exit", "the grandchild", |e| int(&e["tgid"]) == grandchild);
    t.one("fork", "the child", |e| {
        int(&e["child_tgid"]) == child && int(&e["tgid"]) == pid
    });
    let strangers = [int(&other["parent"]), int(&other["child"])];
    let leaked: Vec<_> = t
        .events
        .iter()
        .filter(|e| {
            strangers.contains(&int(&e["tgid"]))
                || e.get("target_tgid")
                    .is_some_and(|t| strangers.contains(&int(t)))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "events of an unrelated process: {leaked:#?}"
    );
}

#[test]
fn non_root_gets_a_clear_error() {
    kernel_test!();
    // Every command that loads programs, `verify-kernel` included: without
    // privileges it cannot judge the kernel, so it must not blame it.
    let commands: [&[&str]; 5] = [
        &["live", "--", "/bin/true"],
        &["record", "-o", "/nonexistent/x.rtrace", "--", "/bin/true"],
        &["check", "--", "/bin/true"],
        &["serve", "--listen", "127.0.0.1:0"],
        &["verify-kernel"],
    ];
    for args in commands {
        let (status, stderr) = run_as_nobody(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(
            stderr.contains("CAP_BPF") && stderr.contains("sudo"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn comm_filter_follows_a_process_from_its_exec() {
    kernel_test!();
    // A copy of the scenario program under a name nothing else has.
    let dir = std::env::temp_dir().join(format!("reaper-trace-comm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("rtc{}", std::process::id() % 100_000);
    let renamed = dir.join(&name);
    std::fs::copy(scenario_bin(), &renamed).unwrap();
    let tracer = Background::start(&[
        "live".into(),
        "--json".into(),
        "--comm".into(),
        name.clone(),
    ]);
    let named = std::process::Command::new(&renamed)
        .arg("exit42")
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(named.status.success());
    let truth: serde_json::Value = String::from_utf8_lossy(&named.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("TRUTH "))
        .map(|j| serde_json::from_str(j).unwrap())
        .expect("truth");
    let other = Scenario::start(&["exit42"]);
    let other_truth = other.truth();
    let mut other = other;
    assert!(wait_bounded(&mut other.child).success());
    let t = tracer.stop();
    assert!(t.status.success(), "{}", t.stderr);
    let (parent, child) = (int(&truth["parent"]), int(&truth["child"]));
    let exec = t.one("exec", "the renamed program's exec", |e| {
        int(&e["tgid"]) == parent
    });
    assert_eq!(exec["comm"], name.as_str());
    t.one("fork", "its child, followed from the exec on", |e| {
        int(&e["child_tgid"]) == child
    });
    t.one("exit", "its child", |e| {
        int(&e["tgid"]) == child && e["exit_code"] == 42
    });
    let strangers = [int(&other_truth["parent"]), int(&other_truth["child"])];
    assert!(
        t.events
            .iter()
            .all(|e| !strangers.contains(&int(&e["tgid"]))),
        "an unrelated process leaked in"
    );
}
