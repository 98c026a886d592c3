//! Kernel tests of what findings name and explain (issue 18, items 3 and
//! 4): a parent that renames itself, the thread that changed SIGCHLD, a
//! clone child with another exit signal, pidfds held or waited on, and a
//! parent that exec'd after forking. Each scenario reports its own truth
//! (pids, fds, the names /proc shows); the tool's findings must say exactly
//! that.

use reaper_trace_tests::*;
use serde_json::Value;

fn clean(t: &Trace) {
    t.assert_clean();
    assert_eq!(t.summary("lost_events"), 0);
}

/// The one finding about `pid`.
fn finding_for(t: &Trace, pid: i64) -> &Value {
    let findings = t.findings_for(&[pid]);
    assert_eq!(findings.len(), 1, "{:#?}", t.report);
    findings[0]
}

/// The text of diagnosis item `code` of a finding.
fn diag<'a>(f: &'a Value, code: &str) -> &'a str {
    f["diagnosis"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["code"] == code)
        .and_then(|d| d["text"].as_str())
        .unwrap_or_else(|| panic!("no {code} in {:#}", f["diagnosis"]))
}

fn seconds(ns: i64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

#[test]
fn a_parent_renamed_after_exec_is_named_as_ps_names_it() {
    kernel_test!();
    let t = trace_scenario_with(&["--threshold", "300ms"], &["renamed_parent", "1200"]);
    clean(&t);
    let truth = t.truth("comm");
    let (parent, child) = (int(&truth["parent"]), int(&truth["child"]));
    assert_eq!(truth["comm"], "renamed-parent", "what /proc says");
    let f = finding_for(&t, child);
    assert_eq!(f["kind"], "late_reap");
    assert_eq!(int(&f["parent_pid"]), parent);
    assert_eq!(f["parent_comm"], truth["comm"]);
    // One rename: prctl's. The exec that started the scenario renamed it
    // too, and that one is the exec record's to tell.
    let renames = t.find("task_rename", |e| int(&e["tgid"]) == parent);
    assert_eq!(renames.len(), 1, "{renames:#?}");
    assert_eq!(
        (
            &renames[0]["tid"],
            &renames[0]["old_comm"],
            &renames[0]["new_comm"]
        ),
        (&truth["parent"], &Value::from("scenario"), &truth["comm"])
    );
    let row = t.report["parents"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| int(&r["parent_pid"]) == parent))
        .expect("the parent's row");
    assert_eq!(row["parent_comm"], truth["comm"]);
}

#[test]
fn the_thread_that_reset_sigchld_is_named() {
    kernel_test!();
    let t = trace_scenario(&["thread_sigchld"]);
    clean(&t);
    let truth = t.truth("thread");
    let (parent, child, thread) = (
        int(&truth["parent"]),
        int(&truth["child"]),
        int(&truth["thread"]),
    );
    assert_eq!(truth["thread_comm"], "webu");
    let change = t.one("sigaction", "the thread's SIGCHLD change", |e| {
        int(&e["tid"]) == thread
    });
    assert_eq!(
        (&change["comm"], &change["disposition"]),
        (&truth["thread_comm"], &Value::from("default"))
    );
    let f = finding_for(&t, child);
    assert_eq!(
        (&f["kind"], &f["resolution"]),
        (&Value::from("unreaped"), &Value::from("adopted"))
    );
    let changes: Vec<&str> = f["diagnosis"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["code"] == "sigchld_disposition_change")
        .filter_map(|d| d["text"].as_str())
        .collect();
    // Since the exec: the main thread's handler, then the helper's reset.
    assert_eq!(changes.len(), 2, "{changes:?}");
    let by_main = format!(
        "thread {parent} (scenario) of {parent} set SIGCHLD to a handler at 0x{:x} with flags SA_RESTART ",
        int(
            &t.one("sigaction", "the main thread's handler", |e| int(&e["tid"])
                == parent)["handler"]
        )
    );
    let by_webu =
        format!("thread {thread} (webu) of {parent} set SIGCHLD to SIG_DFL with flags 0 ");
    assert!(changes[0].starts_with(&by_main), "{changes:?}");
    assert!(changes[1].starts_with(&by_webu), "{changes:?}");
    let hint = f["hint"].as_str().unwrap_or_default();
    assert!(
        hint.starts_with(&format!(
            "SIGCHLD was changed by another thread of {parent} — "
        )) && hint.contains(&by_webu),
        "{hint}"
    );
}

#[test]
fn a_thread_named_before_the_trace_is_named_by_its_sigchld_change() {
    kernel_test!();
    let mut scenario = Scenario::start(&["thread_named_before"]);
    let truth = scenario.truth();
    let (parent, thread) = (int(&truth["parent"]), int(&truth["thread"]));
    assert_eq!(truth["thread_comm"], "webu");
    let tracer = Background::start(&[
        "live".into(),
        "--json".into(),
        "--pid".into(),
        parent.to_string(),
    ]);
    scenario.send_line("go");
    let changed = scenario.truth();
    assert_eq!(int(&changed["changed_by"]), thread);
    drop(scenario.child.stdin.take());
    assert!(wait_bounded(&mut scenario.child).success());
    let t = tracer.stop();
    assert!(t.status.success(), "{}", t.stderr);
    assert_eq!(t.lost(), 0);
    let change = t.one("sigaction", "the helper's change", |e| {
        int(&e["tid"]) == thread
    });
    assert_eq!(
        (int(&change["tgid"]), &change["comm"]),
        (parent, &truth["thread_comm"])
    );
    // Named before the trace: no rename says it.
    assert!(
        t.find("task_rename", |e| int(&e["tgid"]) == parent)
            .is_empty()
    );
}

#[test]
fn a_clone_child_with_sigusr1_as_exit_signal_is_explained() {
    kernel_test!();
    for sigchld_ign in ["0", "1"] {
        clone_sigusr1(sigchld_ign);
    }
}

/// `clone_sigusr1 SIGCHLD_IGN`: with SIGCHLD ignored or not, the child is a
/// zombie the parent's plain waitpid cannot see.
fn clone_sigusr1(sigchld_ign: &str) {
    let t = trace_scenario(&["clone_sigusr1", sigchld_ign]);
    clean(&t);
    let truth = t.truth("waitpid_errno");
    let (parent, child) = (int(&truth["parent"]), int(&truth["child"]));
    assert_eq!(int(&truth["waitpid_errno"]), libc::ECHILD as i64);
    assert_eq!(
        truth["zombie"], true,
        "SIG_IGN autoreaps only SIGCHLD children"
    );
    assert_eq!(t.summary("autoreaped"), 0);
    let exit = t.one("exit", "the clone child", |e| int(&e["tgid"]) == child);
    assert_eq!(int(&exit["exit_signal"]), libc::SIGUSR1 as i64);
    let f = finding_for(&t, child);
    assert_eq!(
        (&f["kind"], &f["resolution"]),
        (&Value::from("unreaped"), &Value::from("adopted"))
    );
    assert_eq!(
        diag(f, "exit_signal_not_sigchld"),
        format!(
            "{child} was created by clone with exit signal SIGUSR1 instead of SIGCHLD: parent {parent} was sent SIGUSR1 at the exit, and wait(), waitpid() and waitid() without __WALL or __WCLONE do not see such a child (ECHILD); 1 wait call by parent {parent} after the exit had neither, so could not see it"
        )
    );
    assert_eq!(
        f["hint"],
        "this child was cloned with exit signal SIGUSR1, which plain wait() never sees: reap it with waitpid(pid, &status, __WALL) (or __WCLONE), or clone it with SIGCHLD as its exit signal"
    );
    let c = codes(f);
    assert!(!c.contains(&"sigchld_not_seen".into()), "{c:?}");
    if sigchld_ign == "1" {
        assert_eq!(
            diag(f, "sigchld_ignored"),
            format!(
                "parent {parent} ignores SIGCHLD (SIG_IGN), but the kernel reaps at exit only children whose exit signal is SIGCHLD: not {child}"
            )
        );
    } else {
        assert!(c.contains(&"sigchld_default".into()), "{c:?}");
    }
}

#[test]
fn a_pidfd_wait_is_a_pidfd_wait_and_a_held_pidfd_is_named() {
    kernel_test!();
    let t = trace_scenario_with(&["--threshold", "300ms"], &["pidfd_hold", "1200", "1"]);
    clean(&t);
    let truth = t.truth("pidfd");
    let (parent, child, fd) = (
        int(&truth["parent"]),
        int(&truth["child"]),
        int(&truth["pidfd"]),
    );
    assert_eq!(int(&truth["reaped"]), child);
    let wait = t.one("wait_exit", "the pidfd wait", |e| {
        int(&e["tgid"]) == parent && !e["pidfd"].is_null()
    });
    assert_eq!((int(&wait["pidfd"]), int(&wait["reaped_pid"])), (fd, child));
    let enter = t.one("wait_enter", "the pidfd wait", |e| {
        int(&e["tgid"]) == parent && !e["pidfd"].is_null()
    });
    assert_eq!(int(&enter["pidfd"]), fd);
    // The kernel's own view of the wait: the fd stands for the child.
    let resolved = t.find("process_wait", |e| {
        int(&e["tgid"]) == parent && int(&e["pid"]) == child
    });
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    let f = finding_for(&t, child);
    assert_eq!(
        (&f["kind"], int(&f["reaped_by_pid"])),
        (&Value::from("late_reap"), parent)
    );
    assert!(
        diag(f, "first_wait_after").ends_with(&format!(
            "later (pidfd {fd} (pid {child}), options WEXITED)"
        )),
        "{}",
        diag(f, "first_wait_after")
    );
    let after = int(&wait["time_ns"]) - int(&f["exited_at_ns"]);
    assert_eq!(
        diag(f, "pidfd_held"),
        format!(
            "parent {parent} held pidfd {fd} for {child} and waited on it only {} after the exit",
            seconds(after)
        )
    );
}

#[test]
fn a_pidfd_held_but_never_waited_on_is_said() {
    kernel_test!();
    let t = trace_scenario_with(&["--threshold", "300ms"], &["pidfd_hold", "1200", "0"]);
    clean(&t);
    let truth = t.truth("pidfd");
    let (parent, child, fd) = (
        int(&truth["parent"]),
        int(&truth["child"]),
        int(&truth["pidfd"]),
    );
    assert_eq!(int(&truth["reaped"]), 0);
    let f = finding_for(&t, child);
    assert_eq!(
        (&f["kind"], &f["resolution"]),
        (&Value::from("unreaped"), &Value::from("adopted"))
    );
    assert_eq!(
        diag(f, "pidfd_not_waited"),
        format!(
            "parent {parent} holds pidfd {fd} for {child} and has not waited on it since the exit: a pidfd reports the exit (it polls readable) but does not reap; waitid(P_PIDFD, {fd}, ..., WEXITED) does"
        )
    );
    assert_eq!(
        f["hint"],
        "the parent holds a pidfd for this child but never waits on it: when the pidfd polls readable, call waitid(P_PIDFD, fd, &info, WEXITED) (closing the pidfd does not reap)"
    );
}

#[test]
fn a_parent_that_execed_after_forking_names_both_programs() {
    kernel_test!();
    let t = trace_scenario(&["exec_after_fork"]);
    clean(&t);
    let truth = t.truth("exec");
    let (parent, child) = (int(&truth["parent"]), int(&truth["child"]));
    let execs = t.find("exec", |e| int(&e["tgid"]) == parent);
    assert_eq!(execs.len(), 2, "the scenario's and /bin/true's: {execs:#?}");
    let (before, after) = (execs[0], execs[1]);
    assert_eq!(
        (&after["filename"], &after["comm"]),
        (&truth["exec"], &Value::from("true"))
    );
    let fork = t.one("fork", "the child's fork", |e| {
        int(&e["child_tgid"]) == child
    });
    let f = finding_for(&t, child);
    assert_eq!(f["kind"], "unreaped");
    assert_eq!(
        diag(f, "parent_execed"),
        format!(
            "parent {parent} exec'd /bin/true (true) {} after forking {child}: the program that forked it, scenario ({}), is gone, and the new image does not know about the children it inherited, so nothing in it waits for this one",
            seconds(int(&after["time_ns"]) - int(&fork["child_start_ns"])),
            before["filename"].as_str().expect("a filename")
        )
    );
    assert_eq!(
        f["hint"],
        "the parent exec'd another program after forking this child: reap children before exec, or have the new program reap what it inherits (waitpid(-1, WNOHANG) at start and on SIGCHLD)"
    );
}

#[test]
fn an_orphan_in_a_pid_namespace_names_parent_and_adopter_with_their_namespace_pids() {
    kernel_test!();
    let (Some(unshare), Some(tini)) = (which("unshare"), which("tini")) else {
        eprintln!(
            "SKIP {}: unshare (util-linux) or tini is not installed (cargo xtask setup installs tini)",
            module_path!()
        );
        return;
    };
    // tini is PID 1 of the namespace, the scenario 2, its child 3 and the
    // grandchild 4, which tini adopts when the child exits.
    let command = vec![
        unshare,
        "-fp".into(),
        "--mount-proc".into(),
        tini,
        "--".into(),
        scenario_bin().to_string_lossy().into_owned(),
        "double_fork".into(),
    ];
    let t = trace_command(&[], &command);
    clean(&t);
    let truth = t.truth("grandchild");
    let (child_ns, grandchild_ns) = (int(&truth["child"]), int(&truth["grandchild"]));
    let global = |ns: i64| {
        int(&t.one("ns_pids", "a namespace pid", |e| {
            int(&e["levels"][1]["pid"]) == ns
        })["child_tgid"])
    };
    let (tini_pid, child, grandchild) = (global(1), global(child_ns), global(grandchild_ns));
    let f = finding_for(&t, grandchild);
    assert_eq!(f["kind"], "orphaned");
    assert_eq!(
        (
            int(&f["parent_pid"]),
            int(&f["adopted_by_pid"]),
            int(&f["ns_pid"]["pid"]),
            int(&f["parent_ns_pid"]["pid"]),
            int(&f["adopted_by_ns_pid"]["pid"])
        ),
        (child, tini_pid, grandchild_ns, child_ns, 1)
    );
    let text = diag(f, "orphaned");
    let expected = format!(
        "parent {child} (ns pid {child_ns}) died (exited 0) while {grandchild} (ns pid {grandchild_ns}) was still running; adopted by {tini_pid} (ns pid 1), it exited "
    );
    assert!(text.starts_with(&expected), "{text}");
}
