//! Kernel tests of user stacks: a finding names the source line that forked
//! the leaked child, and the line that changed SIGCHLD, from C (with and
//! without frame pointers, and stripped) and from Rust; a recording's
//! report names the same lines as the live run.

use std::{path::PathBuf, process::Command};

use reaper_trace_tests::*;
use serde_json::Value;

const LEAK_C: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/c/leak.c");

/// The line of `leak.c` carrying `MARK: <mark>`.
fn marked_line(mark: &str) -> u64 {
    reaper_trace_tests::marked_line(LEAK_C, mark)
}

/// leak.c built with `flags` (and -g) into the scratch directory.
fn build_leak(name: &str, flags: &[&str]) -> PathBuf {
    build_c(LEAK_C, name, flags)
}

/// `check --format json --threshold 200ms <extra> -- cmd`: its exit code,
/// the report, and the stderr lines (the command's TRUTH among them).
fn check(extra: &[&str], cmd: &[&str]) -> (Option<i32>, Value, Vec<String>) {
    let options: Vec<&str> = ["--threshold", "200ms"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let (code, report, stderr) = check_json(&options, cmd);
    assert!(!report.is_null(), "no report: {stderr}");
    (code, report, stderr.lines().map(String::from).collect())
}

/// The frames of `stack` in `module` (by file name) with debug info.
fn frames_in<'a>(stack: &'a Value, file_suffix: &str) -> Vec<&'a Value> {
    stack
        .as_array()
        .unwrap_or_else(|| panic!("a stack: {stack}"))
        .iter()
        .filter(|f| f["file"].as_str().is_some_and(|p| p.ends_with(file_suffix)))
        .collect()
}

/// (function, line) of the frames of `stack` in `leak.c`.
fn leak_c_sites(stack: &Value) -> Vec<(String, u64)> {
    frames_in(stack, "/leak.c")
        .into_iter()
        .map(|f| {
            (
                f["function"].as_str().unwrap_or("?").to_owned(),
                int(&f["line"]) as u64,
            )
        })
        .collect()
}

#[test]
fn a_leaked_popen_names_its_line_with_and_without_frame_pointers() {
    kernel_test!();
    let line = marked_line("popen");
    for (name, flags) in [
        ("leak-nofp", &["-O2", "-fomit-frame-pointer"][..]),
        ("leak-fp", &["-O0", "-fno-omit-frame-pointer"][..]),
    ] {
        let bin = build_leak(name, flags);
        let junit = scratch_dir().join(format!("{name}.xml"));
        let (code, report, _) = check(
            &["--junit", junit.to_str().unwrap()],
            &[bin.to_str().unwrap(), "popen"],
        );
        assert_eq!(code, Some(1), "{name}: the popen child leaks: {report:#}");
        let finding = the_unreaped(&report);
        let sites = leak_c_sites(&finding["fork_stack"]);
        assert_eq!(
            sites.first(),
            Some(&("leak_popen".to_owned(), line)),
            "{name}: the innermost leak.c frame is the popen call: {:#}",
            finding["fork_stack"]
        );
        assert_eq!(
            sites.get(1).map(|(f, _)| f.as_str()),
            Some("main"),
            "{name}: unwound through libc into main: {:#}",
            finding["fork_stack"]
        );
        // CI annotates the line: the failing case carries file and line.
        let xml = std::fs::read_to_string(&junit).expect("JUnit written");
        assert_junit_blames(&xml, "leak.c", line, "leak_popen");
    }
}

#[test]
fn a_leaked_popens_fix_names_the_line_that_opened_it() {
    kernel_test!();
    let line = marked_line("popen");
    let bin = build_leak("leak-hint", &["-O2"]);
    let junit = scratch_dir().join("leak-hint.xml");
    let recording = scratch_dir().join("leak-hint.rtrace");
    let _ = std::fs::remove_file(&recording);
    let (code, report, _) = check(
        &[
            "--junit",
            junit.to_str().unwrap(),
            "-o",
            recording.to_str().unwrap(),
        ],
        &[bin.to_str().unwrap(), "popen"],
    );
    assert_eq!(code, Some(1), "the popen child leaks: {report:#}");
    let hint = format!(
        "pclose() the stream opened at leak.c:{line}: popen()'s child is reaped by pclose() alone"
    );
    assert_eq!(the_unreaped(&report)["hint"], Value::from(hint.as_str()));
    let xml = std::fs::read_to_string(&junit).expect("JUnit written");
    let in_xml = hint.replace('\'', "&apos;");
    assert!(xml.contains(&format!("fix: {in_xml}")), "{xml}");
    // `report` names the frames at its end, and the fix with them.
    let text = report_output(&recording, &[]);
    assert!(text.contains(&format!("\n    fix: {hint}")), "{text}");
    let _ = std::fs::remove_file(&recording);
}

#[test]
fn a_sigign_set_in_a_helper_thread_names_the_threads_line() {
    kernel_test!();
    let bin = build_leak("leak-sigign", &["-O2"]);
    let (code, report, _) = check(&[], &[bin.to_str().unwrap(), "sigign_thread"]);
    assert_eq!(code, Some(1), "the child stays a zombie: {report:#}");
    let finding = the_unreaped(&report);
    assert_eq!(
        leak_c_sites(&finding["sigaction_stack"]).first(),
        Some(&("ignore_sigchld".to_owned(), marked_line("sigign"))),
        "{:#}",
        finding["sigaction_stack"]
    );
    // The fork was a plain fork() in sigign_thread.
    assert_eq!(
        leak_c_sites(&finding["fork_stack"])
            .first()
            .map(|(f, _)| f.as_str()),
        Some("sigign_thread")
    );
}

#[test]
fn a_dropped_rust_child_names_the_spawn_line() {
    kernel_test!();
    let scenario = scenario_bin();
    let (code, report, stderr) = check(&[], &[scenario.to_str().unwrap(), "spawn_drop", "600"]);
    assert_eq!(code, Some(1), "the dropped child leaks: {report:#}");
    let truth: Value = stderr
        .iter()
        .find_map(|l| l.strip_prefix("TRUTH "))
        .map(|t| serde_json::from_str(t).expect("truth JSON"))
        .expect("the scenario's truth");
    let finding = the_unreaped(&report);
    assert_eq!(finding["pid"], truth["child"]);
    let file = truth["file"].as_str().expect("file");
    let user_frames = frames_in(&finding["fork_stack"], file);
    let innermost = user_frames
        .first()
        .expect("a frame in the scenario's source");
    assert_eq!(
        innermost["line"], truth["spawn_line"],
        "{:#}",
        finding["fork_stack"]
    );
    assert!(
        innermost["function"]
            .as_str()
            .is_some_and(|f| f.ends_with("spawn_drop")),
        "{innermost}"
    );
}

#[test]
fn a_stripped_binary_gives_module_and_offset_and_no_made_up_names() {
    kernel_test!();
    let bin = build_leak("leak-stripped", &["-O2"]);
    let status = Command::new("strip").arg(&bin).status().expect("strip");
    assert!(status.success());
    let (code, report, _) = check(&[], &[bin.to_str().unwrap(), "popen"]);
    assert_eq!(code, Some(1));
    let finding = the_unreaped(&report);
    let stack = finding["fork_stack"].as_array().expect("a fork stack");
    let ours: Vec<&Value> = stack
        .iter()
        .filter(|f| f["module"].as_str() == bin.to_str())
        .collect();
    assert!(
        !ours.is_empty(),
        "frames in the stripped binary: {stack:#?}"
    );
    for frame in ours {
        assert_eq!(
            frame["function"],
            Value::Null,
            "no symbols to name: {frame}"
        );
        assert_eq!(frame["file"], Value::Null, "{frame}");
        assert!(int(&frame["address"]) > 0, "{frame}");
    }
    // The text names it by module and offset.
    let out = Command::new(tool())
        .args(["check", "--threshold", "200ms", "--"])
        .arg(&bin)
        .arg("popen")
        .output()
        .expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("forked at leak-stripped+0x")),
        "{text}"
    );
}

#[test]
fn a_recording_reports_the_same_stacks_as_the_live_run() {
    kernel_test!();
    let bin = build_leak("leak-recorded", &["-O2"]);
    let file = temp_path("stacks");
    let (code, live, _) = check(
        &["-o", file.to_str().unwrap()],
        &[bin.to_str().unwrap(), "popen"],
    );
    assert_eq!(code, Some(1));
    let replayed: Value = serde_json::from_str(&report_output(
        &file,
        &["--format", "json", "--threshold", "200ms"],
    ))
    .expect("report JSON");
    let (live, replayed) = (the_unreaped(&live), the_unreaped(&replayed));
    assert!(!live["fork_stack"].as_array().expect("stack").is_empty());
    assert_eq!(live["fork_stack"], replayed["fork_stack"]);
    assert_eq!(live["sigaction_stack"], replayed["sigaction_stack"]);

    // The helper thread's SIG_IGN too, and with `report --pid` (the follow
    // filter of replay) as without.
    let sigign = temp_path("stacks-sigign");
    let (code, live_sigign, _) = check(
        &["-o", sigign.to_str().unwrap()],
        &[bin.to_str().unwrap(), "sigign_thread"],
    );
    assert_eq!(code, Some(1));
    let live_sigign = the_unreaped(&live_sigign);
    assert!(
        !live_sigign["sigaction_stack"]
            .as_array()
            .expect("stack")
            .is_empty()
    );
    let parent = live_sigign["parent_pid"].to_string();
    for extra in [&[][..], &["--pid", parent.as_str()][..]] {
        let mut args = vec!["--format", "json", "--threshold", "200ms"];
        args.extend_from_slice(extra);
        let replayed: Value =
            serde_json::from_str(&report_output(&sigign, &args)).expect("report JSON");
        let replayed = the_unreaped(&replayed);
        assert_eq!(
            live_sigign["sigaction_stack"], replayed["sigaction_stack"],
            "{extra:?}"
        );
        assert_eq!(
            live_sigign["fork_stack"], replayed["fork_stack"],
            "{extra:?}"
        );
    }

    // The native Perfetto timeline carries the same stack on the fork
    // instant of the leaked child, outermost frame first.
    let timeline = perfetto_timeline(&file);
    let leaked = int(&live["pid"]);
    let forks: Vec<&Value> = timeline["instants"]
        .as_array()
        .expect("instants")
        .iter()
        .filter(|i| i["name"] == "fork" && i["args"]["child"].as_i64() == Some(leaked))
        .collect();
    assert_eq!(
        forks.len(),
        1,
        "one fork instant for {leaked}: {timeline:#}"
    );
    let frames = forks[0]["callstack"].as_array().expect("a callstack");
    let names: Vec<&str> = frames
        .iter()
        .rev()
        .filter_map(|f| f["function"].as_str())
        .collect();
    let live_names: Vec<&str> = live["fork_stack"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["function"].as_str())
        .collect();
    assert_eq!(names, live_names, "{frames:#?}");
    let popen = frames
        .iter()
        .find(|f| f["function"] == "leak_popen")
        .expect("leak_popen's frame");
    assert_eq!(popen["line"].as_u64(), Some(marked_line("popen")));
    assert!(
        popen["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("/leak.c"))
    );
}

#[test]
fn a_program_seen_only_inside_its_mount_namespace_is_named() {
    kernel_test!();
    let Some(unshare) = which("unshare") else {
        println!("SKIP a_program_seen_only_inside_its_mount_namespace_is_named: no unshare");
        return;
    };
    let bin = build_leak("leak-ns", &["-O2"]);
    // An empty directory here; inside the command's own mount namespace a
    // tmpfs over it holds the program, as a container's root holds its
    // files: its path names nothing on the host.
    let root = scratch_dir().join("ns-root");
    std::fs::create_dir_all(&root).expect("mkdir");
    let inside = root.join("leak");
    let script = format!(
        "mount -t tmpfs none {root} && cp {bin} {inside} && exec {inside} popen",
        root = root.display(),
        bin = bin.display(),
        inside = inside.display()
    );
    let (code, report, _) = check(
        &[],
        &[
            &unshare,
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(code, Some(1), "{report:#}");
    assert!(!inside.exists(), "the program is not at its path here");
    let finding = the_unreaped(&report);
    let ours = frames_in(&finding["fork_stack"], "/leak.c");
    assert_eq!(
        ours.first()
            .map(|f| (&f["module"], &f["function"], int(&f["line"]) as u64)),
        Some((
            &Value::from(inside.to_str().unwrap()),
            &Value::from("leak_popen"),
            marked_line("popen")
        )),
        "{:#}",
        finding["fork_stack"]
    );
}
