//! Kernel tests of tracing without syscall hooks (`serve`'s default,
//! `live --no-syscall-hooks`): the same verdicts as with them, from the
//! kernel's `sched_process_wait`, the frees and /proc, and no record that
//! only a syscall hook makes.

use reaper_trace_tests::*;

const NO_HOOKS: &str = "--no-syscall-hooks";

/// The run saw no record only the `sys_enter`/`sys_exit` programs make,
/// and the kernel's own reports of the waits came: the scenario's wait
/// calls ran past no hook.
fn assert_no_syscall_records(t: &Trace) {
    for kind in ["wait_enter", "wait_exit", "sigaction", "fork_failed"] {
        let seen = t.find(kind, |_| true);
        assert!(
            seen.is_empty(),
            "{kind} records without syscall hooks: {seen:#?}"
        );
    }
    assert!(
        !t.find("process_wait", |_| true).is_empty(),
        "no process_wait record"
    );
}

#[test]
fn a_never_waiting_parents_zombies_are_found_certain() {
    kernel_test!();
    let t = trace_scenario_with(&[NO_HOOKS], &["noreap", "5"]);
    t.assert_clean();
    assert_no_syscall_records(&t);
    let truth = t.truth("children");
    assert_eq!(int(&truth["zombies"]), 5, "the scenario saw its 5 zombies");
    let findings = t.findings_for(&pids(&truth["children"]));
    assert_eq!(findings.len(), 5, "{findings:#?}");
    for f in &findings {
        assert_eq!(
            (&f["kind"], &f["resolution"]),
            (&"unreaped".into(), &"adopted".into())
        );
        assert_eq!(f["certain"], true, "{f:#?}");
        let c = codes(f);
        assert!(c.contains(&"never_waited".into()), "{c:?}");
        assert!(c.contains(&"parent_exited".into()), "{c:?}");
    }
    assert!(t.uncertain_findings().is_empty());
}

/// Every child reaped at once by a parent that exits right after its last
/// wait: the frees trail the reaps, and the last ones come after the
/// parent's exit. Each is still the parent's reap, never an adoption.
#[test]
fn a_prompt_reaper_that_exits_at_once_has_no_finding() {
    kernel_test!();
    let t = trace_scenario_with(&[NO_HOOKS, "--no-events"], &["storm", "300"]);
    t.assert_clean();
    assert_eq!(int(&t.truth("reaped")["reaped"]), 300);
    let findings = t.findings();
    assert!(findings.is_empty(), "{findings:#?}");
    assert!(t.uncertain_findings().is_empty());
    assert_eq!(
        t.summary("reaped_by_parent"),
        301,
        "300 children and the scenario"
    );
}

/// A parent blocked in a wait for another child: the kernel's report of
/// that wait, not "never waited".
#[test]
fn a_parent_blocked_waiting_for_another_child_is_told_from_the_kernel() {
    kernel_test!();
    let t = trace_scenario_with(&[NO_HOOKS], &["waitpid_other", "1500"]);
    t.assert_clean();
    assert_no_syscall_records(&t);
    let truth = t.truth("a");
    assert_eq!(truth["a_zombie_after"], true);
    let a = int(&truth["a"]);
    let b = int(&truth["b"]);
    let findings = t.findings_for(&[a]);
    assert_eq!(findings.len(), 1, "{:#?}", t.findings());
    let f = findings[0];
    let c = codes(f);
    assert!(!c.contains(&"never_waited".into()), "{c:?}");
    let told = f["diagnosis"]
        .as_array()
        .expect("diagnosis")
        .iter()
        .find(|d| d["code"] == "waits_untraced")
        .unwrap_or_else(|| panic!("no waits_untraced: {c:?}"));
    let text = told["text"].as_str().expect("text");
    assert!(
        text.contains(&format!("for pid or process group {b}")),
        "{text}"
    );
}

/// SIGCHLDs coalesced while a handler reaps one child per signal: the
/// zombies left are found, each with its cause, from the signal records.
#[test]
fn coalesced_sigchlds_leave_the_same_findings() {
    kernel_test!();
    let t = trace_scenario_with(&[NO_HOOKS, "--no-events"], &["handler_once", "5"]);
    t.assert_clean();
    assert_coalesced_zombies_found(&t);
}

/// SIG_IGN: no SIGCHLD, released at exit; the exit record's parent action
/// tells the autoreap without the rt_sigaction hook.
#[test]
fn sig_ign_children_are_autoreaped() {
    kernel_test!();
    let t = trace_scenario_with(&[NO_HOOKS, "--no-events"], &["sigign_many", "5"]);
    t.assert_clean();
    assert!(t.findings().is_empty(), "{:#?}", t.findings());
    assert_eq!(t.summary("autoreaped"), 5);
}
