//! Kernel tests of CI mode: `check`'s exit statuses on the lifecycle
//! scenarios, its JUnit file, its privilege drop, and `verify-kernel`.

use std::process::Command;

use reaper_trace_tests::*;
use serde_json::Value;

fn check(options: &[&str], cmd: &[&str]) -> (Option<i32>, Value, String) {
    check_json(options, cmd)
}

fn check_scenario(args: &[&str]) -> (Option<i32>, Value, String) {
    let bin = scenario_bin();
    let mut cmd = vec![bin.to_str().unwrap()];
    cmd.extend_from_slice(args);
    check(&[], &cmd)
}

#[test]
fn exit_status_follows_the_verdict_on_every_lifecycle_scenario() {
    kernel_test!();
    // Each scenario's own structure says whether it leaves a finding.
    let leaking: &[&[&str]] = &[
        &["noreap", "3"],
        &["handler_once", "4"],
        &["signalfd_stall", "3", "1500"],
        &["popen", "2"],
        &["waitpid_other", "500"],
    ];
    let clean: &[&[&str]] = &[
        &["exit42"],
        &["sigign_many", "3"],
        &["nocldwait", "3"],
        &["handler_loop", "3"],
        &["leader_exit", "300"],
        &["threads", "20"],
        &["exit_signal0"],
        &["storm", "500"],
    ];
    for args in leaking {
        let (code, report, stderr) = check_scenario(args);
        assert_eq!(code, Some(1), "{args:?} leaks: {stderr}");
        assert!(
            !report["findings"].as_array().unwrap().is_empty(),
            "{args:?}"
        );
        assert_eq!(report["exit_status"], 1);
        assert_eq!(report["command_exit_code"], 0);
    }
    for args in clean {
        let (code, report, stderr) = check_scenario(args);
        assert_eq!(code, Some(0), "{args:?} is clean: {report}\n{stderr}");
        assert_eq!(report["findings"], Value::Array(vec![]), "{args:?}");
    }
}

#[test]
fn an_orphan_is_information_unless_fail_on_asks() {
    kernel_test!();
    let bin = scenario_bin();
    let cmd = [bin.to_str().unwrap(), "double_fork"];
    let (code, report, stderr) = check(&[], &cmd);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["kind"], "orphaned");
    let (code, report, stderr) = check(&["--fail-on", "orphaned"], &cmd);
    assert_eq!(code, Some(1), "{report}\n{stderr}");
    assert_eq!(report["exit_status"], 1);
}

#[test]
fn a_failing_command_without_leaks_has_its_own_code() {
    kernel_test!();
    let (code, report, stderr) = check(&[], &["/bin/sh", "-c", "exit 7"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(report["command_exit_code"], 7);
    assert_eq!(report["findings"], Value::Array(vec![]));
}

#[test]
fn junit_file_is_valid_xml_with_one_failing_case_per_finding() {
    kernel_test!();
    let dir = std::env::temp_dir().join(format!("reaper-trace-junit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junit = dir.join("leak.xml");
    let bin = scenario_bin();
    let (code, report, _) = check(
        &["--junit", junit.to_str().unwrap()],
        &[bin.to_str().unwrap(), "noreap", "3"],
    );
    assert_eq!(code, Some(1));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let failing: Vec<_> = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .collect();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 3);
    assert_eq!(failing.len(), 3, "one failing case per finding:\n{xml}");
    for finding in findings {
        let pid = finding["pid"].to_string();
        let case = failing
            .iter()
            .find(|c| {
                c.attribute("name")
                    .unwrap()
                    .contains(&format!("pid {pid} "))
            })
            .expect("a case for each finding");
        let failure = case.children().find(|n| n.has_tag_name("failure")).unwrap();
        assert!(
            failure.text().unwrap().contains("[never_waited]"),
            "the diagnosis is carried"
        );
    }
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("failures"), Some("3"));
    assert_eq!(
        suite.attribute("tests"),
        Some(cases.len().to_string().as_str())
    );

    let clean = dir.join("clean.xml");
    let (code, _, _) = check(
        &["--junit", clean.to_str().unwrap()],
        &[bin.to_str().unwrap(), "exit42"],
    );
    assert_eq!(code, Some(0));
    let xml = std::fs::read_to_string(&clean).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    assert!(
        doc.descendants()
            .filter(|n| n.has_tag_name("failure"))
            .count()
            == 0,
        "{xml}"
    );
}

#[test]
fn under_sudo_the_command_runs_as_the_invoking_user() {
    kernel_test!();
    let run = |extra: &[&str]| {
        let out = Command::new(tool())
            .args(["check"])
            .args(extra)
            .args([
                "--",
                "/bin/sh",
                "-c",
                "echo \"uid=$(id -u) gid=$(id -g) groups=$(id -G)\" >&2",
            ])
            .env("SUDO_UID", "65534")
            .env("SUDO_GID", "65534")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("uid=65534 gid=65534 groups=65534\n"),
        "dropped to the sudo user, supplementary groups gone: {stderr}"
    );
    let (code, stderr) = run(&["--as-root"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("uid=0 gid=0"),
        "--as-root keeps root: {stderr}"
    );
}

#[test]
fn kernel_behaviour_suite_passes_here() {
    kernel_test!();
    let dir = std::env::temp_dir().join(format!("reaper-trace-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junit = dir.join("kernel.xml");
    let out = Command::new(tool())
        .args([
            "verify-kernel",
            "--format",
            "json",
            "--junit",
            junit.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["ok"], true);
    let rows = v["behaviours"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{rows:#?}");
    for row in rows {
        assert_eq!(row["ok"], true, "{row}");
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .count(),
        8
    );
}
