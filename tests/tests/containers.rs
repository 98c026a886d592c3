//! Kernel tests in pid namespaces (`unshare -fp --mount-proc`, as container
//! runtimes make them): every pid is reported globally, with the
//! namespace's own number beside it, and the namespace's init is judged
//! like any parent, and like any reaper.

use reaper_trace_tests::*;
use serde_json::Value;

/// `unshare -fp --mount-proc [init] scenario ARGS`: the scenario (or the
/// init in front of it) is PID 1 of a new pid namespace.
fn in_new_pid_namespace(init: &[&str], scenario: &[&str]) -> Option<Trace> {
    let Some(unshare) = which("unshare") else {
        eprintln!("SKIP: unshare (util-linux) is not installed");
        return None;
    };
    let mut command = vec![unshare, "-fp".into(), "--mount-proc".into()];
    command.extend(init.iter().map(|s| s.to_string()));
    command.push(scenario_bin().to_string_lossy().into_owned());
    command.extend(scenario.iter().map(|s| s.to_string()));
    Some(trace_command(&[], &command))
}

fn ns_pid(v: &Value) -> i64 {
    int(&v["pid"])
}

#[test]
fn an_init_that_reaps_in_a_namespace_is_an_adopter_named_with_both_pids() {
    kernel_test!();
    let Some(tini) = which("tini") else {
        eprintln!(
            "SKIP {}: tini is not installed (cargo xtask setup installs it)",
            module_path!()
        );
        return;
    };
    let Some(t) = in_new_pid_namespace(&[&tini, "--"], &["popen", "2"]) else {
        return;
    };
    t.assert_clean();
    // The app sees namespace pids: it is 2 (tini is 1), its children 3, 4.
    let truth = t.truth("children");
    assert_eq!(int(&truth["parent"]), 2);
    let mut local_children = pids(&truth["children"]);
    local_children.sort();
    // The fork events name the app and its children globally.
    let app = t.one("ns_pids", "the app", |e| e["levels"][1]["pid"] == 2);
    let app_global = int(&app["child_tgid"]);
    assert_ne!(app_global, 2, "global and namespace pids differ");
    let tini_global = int(&app["tgid"]);
    // tini reaped the app itself: its wait returned 2, reported as global.
    let reap = t.one("wait_exit", "tini reaping the app", |e| {
        int(&e["tgid"]) == tini_global && int(&e["reaped_pid"]) == app_global
    });
    assert_eq!(int(&reap["reaped_ns_pid"]), 2);
    assert!(
        t.findings_for(&[app_global]).is_empty(),
        "{:#?}",
        t.findings()
    );
    // The two popen children: never reaped by the app, adopted and reaped
    // by tini, named with both pids.
    let findings: Vec<&Value> = t
        .findings()
        .into_iter()
        .filter(|f| f["kind"] == "unreaped")
        .collect();
    assert_eq!(findings.len(), 2, "{:#?}", t.findings());
    let mut seen_local: Vec<i64> = findings.iter().map(|f| ns_pid(&f["ns_pid"])).collect();
    seen_local.sort();
    assert_eq!(seen_local, local_children);
    for f in findings {
        assert_ne!(int(&f["pid"]), ns_pid(&f["ns_pid"]));
        assert_eq!(f["resolution"], "adopted");
        assert_eq!(int(&f["parent_pid"]), app_global);
        assert_eq!(ns_pid(&f["parent_ns_pid"]), 2);
        assert_eq!(int(&f["reaped_by_pid"]), tini_global);
        assert_eq!(ns_pid(&f["reaped_by_ns_pid"]), 1);
        assert!(f["hint"].as_str().unwrap().contains("pclose"), "{f}");
    }
}

#[test]
fn an_init_that_never_reaps_is_named_as_the_containers_pid_1() {
    kernel_test!();
    let Some(t) = in_new_pid_namespace(&[], &["noreap", "3"]) else {
        return;
    };
    t.assert_clean();
    let truth = t.truth("children");
    assert_eq!(
        int(&truth["parent"]),
        1,
        "the scenario is the namespace's init"
    );
    assert_eq!(int(&truth["zombies"]), 3);
    let mut local_children = pids(&truth["children"]);
    local_children.sort();
    let findings = t.findings();
    assert_eq!(findings.len(), 3, "{findings:#?}");
    let mut seen_local: Vec<i64> = findings.iter().map(|f| ns_pid(&f["ns_pid"])).collect();
    seen_local.sort();
    assert_eq!(seen_local, local_children);
    let init = t.one("ns_pids", "the init", |e| e["levels"][1]["pid"] == 1);
    let init_global = int(&init["child_tgid"]);
    for f in findings {
        assert_eq!(f["kind"], "unreaped");
        assert_eq!(int(&f["parent_pid"]), init_global);
        assert_eq!(ns_pid(&f["parent_ns_pid"]), 1);
        // The dying init reaped them when the namespace ended.
        assert_eq!(int(&f["reaped_by_pid"]), init_global);
        let c = codes(f);
        assert!(c.contains(&"namespace_ended".to_owned()), "{c:?}");
        assert!(
            f["hint"]
                .as_str()
                .unwrap()
                .contains("PID 1 of its pid namespace"),
            "{f}"
        );
    }
}

#[test]
fn check_fails_on_a_containers_leak_and_says_how_to_fix_it() {
    kernel_test!();
    let (Some(unshare), Some(tini)) = (which("unshare"), which("tini")) else {
        eprintln!("SKIP {}: unshare or tini is not installed", module_path!());
        return;
    };
    let junit = temp_path("container-junit");
    let out = std::process::Command::new(tool())
        .args(["check", "--format", "json", "--junit"])
        .arg(&junit)
        .args(["--", &unshare, "-fp", "--mount-proc", &tini, "--"])
        .arg(scenario_bin())
        .args(["popen", "2"])
        .output()
        .expect("run check");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{findings:#?}");
    for f in findings {
        assert_eq!(ns_pid(&f["reaped_by_ns_pid"]), 1, "{f}");
        assert_eq!(ns_pid(&f["parent_ns_pid"]), 2, "{f}");
    }
    let xml = std::fs::read_to_string(&junit).expect("JUnit written");
    let _ = std::fs::remove_file(&junit);
    assert_eq!(xml.matches("<failure message=").count(), 2, "{xml}");
    // The fix names the scenario's popen() line where the fork stack was
    // named; the parent exits at once, so its stack is sometimes gone
    // before it is unwound, and the fix is then the general one.
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/bin/scenario/reaping.rs"
    ))
    .expect("reaping.rs");
    let line = source
        .lines()
        .position(|l| l.contains("libc::popen("))
        .expect("the popen call")
        + 1;
    for f in findings {
        let hint = if f["fork_stack"].is_null() {
            "a shell child never waited for: pclose() every popen(), and waitpid() every child of system()-like calls".to_owned()
        } else {
            format!(
                "pclose() the stream opened at reaping.rs:{line}: popen()'s child is reaped by pclose() alone"
            )
        };
        assert_eq!(f["hint"], Value::from(hint.as_str()), "{f}");
        let in_xml = hint.replace('\'', "&apos;");
        assert!(xml.contains(&format!("fix: {in_xml}")), "{xml}");
    }
}
