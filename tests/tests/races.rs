//! Kernel tests of children that exit while their parent is exiting (issue
//! 18): the kernel reparents them in the parent's `exit_notify`, so the
//! child's exit record can name a parent that is already dying, and the
//! real reaper is the adopter. A dead process never reaps: no finding may
//! credit a reap to it, and a late reap is the adopter's.

use reaper_trace_tests::*;

/// Runs a race scenario under `live`, its subreaper reaping the orphans
/// 1.5 s after the last round (so every one is judged), and checks every finding about its processes against the
/// scenario's own truth: who reaped each orphan.
fn judge(scenario: &str, rounds: &str) {
    let t = trace_scenario_with(&["--no-events"], &[scenario, rounds, "1500"]);
    t.assert_clean();
    assert_eq!(t.lost(), 0, "the run must lose nothing to be judged");
    let truth = t.truth("reaper");
    let reaper = int(&truth["reaper"]);
    let parents = pids(&truth["parents"]);
    let orphans = pids(&truth["orphans"]);
    assert!(!orphans.is_empty(), "the rounds left orphans: {truth}");
    let (mut handed_over, mut left_by_parent) = (0, 0);
    for f in t.findings() {
        let pid = int(&f["pid"]);
        if f["kind"] == "orphaned" {
            continue;
        }
        assert_eq!(f["certain"], true, "{f:#}");
        assert!(
            orphans.contains(&pid),
            "only orphans were reaped late or by another: {f:#}\norphans: {orphans:?}\nparents: {parents:?}"
        );
        // The subreaper reaped every orphan: whoever the finding blames,
        // the reap is the subreaper's.
        assert_eq!(int(&f["reaped_by_pid"]), reaper, "{f:#}");
        match (f["kind"].as_str(), f["reap_kind"].as_str()) {
            // The subreaper's own zombie, reaped late: an orphan that was
            // still running when its parent died, or one whose parent had
            // begun to exit when it became a zombie (handed over at once).
            (Some("late_reap"), Some("wait")) => {
                assert_eq!(int(&f["parent_pid"]), reaper, "{f:#}");
                if codes(f).contains(&"parent_was_exiting".to_owned()) {
                    handed_over += 1;
                }
            }
            // A zombie of a live parent that then died without waiting.
            (Some("unreaped"), Some("adopted")) => {
                let parent = int(&f["parent_pid"]);
                assert_ne!(parent, reaper, "{f:#}");
                assert!(
                    parents.contains(&parent) || orphans.contains(&parent),
                    "{f:#}"
                );
                left_by_parent += 1;
            }
            _ => panic!("a dead process never reaps: {f:#}"),
        }
    }
    eprintln!(
        "{scenario}: {} rounds, {} orphans, {handed_over} late reaps by the adopter of a child whose parent was already exiting, {left_by_parent} zombies left by a parent that then died",
        parents.len(),
        orphans.len()
    );
    assert_eq!(t.summary("uncertain"), 0);
}

#[test]
fn timeout_kill_never_blames_the_dead_timeout() {
    kernel_test!();
    if which("timeout").is_none() {
        eprintln!("skipped: no timeout(1) on this machine");
        return;
    }
    judge("timeout_kill", "100");
}

#[test]
fn fork_then_exit_never_blames_the_dead_parent() {
    kernel_test!();
    judge("fork_exit_race", "300");
}
