//! Kernel tests of recording and reporting: a recording reported later gives
//! the live run's findings; a recorder stopped by SIGINT, SIGKILL or a full
//! disk leaves a readable file; bad files give one-line errors.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use reaper_trace_tests::*;
use serde_json::{Value, json};

/// A fresh path in a directory of this test's own.
/// `reaper-trace report FILE <args>`: (exit code, stdout, stderr).
fn report(file: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(tool())
        .arg("report")
        .arg(file)
        .args(args)
        .output()
        .expect("run report");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn report_json(file: &Path) -> Value {
    let (code, stdout, stderr) = report(file, &["--format", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Where the first block starts: after the 20-byte fixed header and the
/// metadata whose length it holds at byte 12. `None` while the fixed header
/// is incomplete.
fn first_block_offset(bytes: &[u8]) -> Option<usize> {
    let meta_len = u32::from_le_bytes(bytes.get(12..16)?.try_into().unwrap()) as usize;
    (bytes.len() >= 20).then_some(20 + meta_len)
}

/// `live --no-events --record FILE -- scenario <args>`, into a fresh file.
fn record_scenario(name: &str, scenario: &[&str]) -> (PathBuf, Trace) {
    let file = temp_path(name);
    let t = trace_scenario_recorded(&["--no-events"], scenario, &file);
    (file, t)
}

/// Waits (bounded) until `file` holds more than its header: a block was written.
fn wait_for_a_block(file: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let bytes = std::fs::read(file).unwrap_or_default();
        // A whole block: its 24-byte header, then `compressed_len` bytes
        // (the u32 after the magic). A block half written when the recorder
        // is killed is not one.
        let whole = first_block_offset(&bytes).is_some_and(|block| {
            bytes
                .get(block + 4..block + 8)
                .map(|len| u32::from_le_bytes(len.try_into().unwrap()) as usize)
                .is_some_and(|len| bytes.len() >= block + 24 + len)
        });
        if whole {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no block written to {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn live_then_report_agree(scenario: &[&str]) {
    let (file, t) = record_scenario(scenario[0], scenario);
    assert!(t.status.success(), "{}", t.stderr);
    let replayed = report_json(&file);
    assert_eq!(
        replayed["findings"], t.report["findings"],
        "findings differ between live and report"
    );
    assert_eq!(replayed["summary"], t.report["summary"]);
    assert_eq!(replayed["parents"], t.report["parents"]);
    assert!(replayed["truncated_at"].is_null());
    assert!(
        !t.findings().is_empty(),
        "the scenario should give findings to compare"
    );
}

#[test]
fn report_matches_live_on_the_demo() {
    kernel_test!();
    live_then_report_agree(&["demo"]);
}

#[test]
fn report_matches_live_with_proc_probes() {
    kernel_test!();
    // Findings here are announced while pending, with /proc facts recorded.
    live_then_report_agree(&["signalfd_stall", "3", "1500"]);
}

#[test]
fn report_matches_live_on_coalesced_sigchld() {
    kernel_test!();
    live_then_report_agree(&["handler_once", "5"]);
}

#[test]
fn recording_is_private_and_complete() {
    kernel_test!();
    let file = temp_path("record");
    let mut cmd = Command::new(tool());
    cmd.args(["record", "-o", file.to_str().unwrap(), "--json", "--"])
        .arg(scenario_bin())
        .args(["noreap", "3"]);
    let t = run_to_end(cmd);
    assert!(t.status.success(), "{}", t.stderr);
    assert!(t.events.is_empty(), "record prints no events");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let replayed = report_json(&file);
    assert_eq!(replayed["findings"], t.report["findings"]);
    assert_eq!(replayed["summary"]["unreaped"], 3);
    assert!(
        replayed["kernel_release"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
}

/// `record -o PATH [--force] -- /bin/true`: (exit code, stderr).
fn record_true(path: &Path, force: bool) -> (Option<i32>, String) {
    let out = Command::new(tool())
        .arg("record")
        .args(force.then_some("--force"))
        .arg("-o")
        .arg(path)
        .args(["--", "/bin/true"])
        .stdout(Stdio::null())
        .output()
        .expect("run record");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file of someone else's (mode 0644, its bytes and mode), and a
/// symlink to it: what a recording must never be written through.
fn victim_and_symlink() -> (PathBuf, (Vec<u8>, u32), PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let victim = temp_path("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = contents_and_mode(&victim);
    let symlink = temp_path("symlink");
    std::os::unix::fs::symlink(&victim, &symlink).unwrap();
    (victim, before, symlink)
}

/// A file's bytes and permission bits.
fn contents_and_mode(path: &Path) -> (Vec<u8>, u32) {
    use std::os::unix::fs::PermissionsExt;
    (
        std::fs::read(path).unwrap(),
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777,
    )
}

#[test]
fn an_existing_path_is_refused_and_never_written_through() {
    kernel_test!();
    let (victim, before, symlink) = victim_and_symlink();
    let hardlink = temp_path("hardlink");
    std::fs::hard_link(&victim, &hardlink).unwrap();
    let dangling = temp_path("dangling");
    let nowhere = temp_path("nowhere");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    for (name, path) in [
        ("a symlink", &symlink),
        ("a hard link", &hardlink),
        ("a plain file", &victim),
        ("a dangling symlink", &dangling),
    ] {
        let (code, stderr) = record_true(path, false);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        assert!(
            stderr.contains(&format!("{} already exists", path.display()))
                && stderr.contains("--force"),
            "{name}: {stderr}"
        );
        assert_eq!(contents_and_mode(&victim), before, "{name}: untouched");
    }
    assert!(
        !nowhere.exists(),
        "nothing created through the dangling link"
    );
    assert_eq!(std::fs::read_link(&symlink).unwrap(), victim);
}

#[test]
fn force_replaces_the_link_never_its_target() {
    kernel_test!();
    use std::os::unix::fs::PermissionsExt;
    let (victim, before, symlink) = victim_and_symlink();
    let (code, stderr) = record_true(&symlink, true);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        contents_and_mode(&victim),
        before,
        "the target is untouched"
    );
    let meta = std::fs::symlink_metadata(&symlink).unwrap();
    assert!(meta.file_type().is_file(), "the link became a regular file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(report_json(&symlink)["summary"]["exits"], 1);
    // And a plain file is replaced the same way: a new inode, 0600.
    let plain = temp_path("plain");
    std::fs::write(&plain, b"old").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let hardlink = temp_path("plain-link");
    std::fs::hard_link(&plain, &hardlink).unwrap();
    let (code, stderr) = record_true(&plain, true);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(contents_and_mode(&hardlink), (b"old".to_vec(), 0o644));
    assert_eq!(report_json(&plain)["summary"]["exits"], 1);
    let leftovers: Vec<_> = std::fs::read_dir(scratch_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file left: {leftovers:?}"
    );
}

/// Starts `record --pid` on a storm the test owns, and returns both.
fn record_a_storm(file: &Path) -> (Scenario, std::process::Child) {
    let storm = Scenario::start(&["storm", "400000"]);
    let pid = storm.child.id();
    let mut recorder = Command::new(tool())
        .args([
            "record",
            "-o",
            file.to_str().unwrap(),
            "--pid",
            &pid.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = &mut recorder;
    wait_for_a_block(file);
    (storm, recorder)
}

fn stop_storm(mut storm: Scenario) {
    let _ = storm.child.kill();
    let _ = storm.child.wait();
}

#[test]
fn sigint_leaves_a_complete_file() {
    kernel_test!();
    let file = temp_path("sigint");
    let (storm, mut recorder) = record_a_storm(&file);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(recorder.id() as i32, libc::SIGINT) };
    let status = wait_bounded(&mut recorder);
    stop_storm(storm);
    assert!(status.success());
    let (code, _, stderr) = report(&file, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains("truncated"),
        "a clean stop has its trailer: {stderr}"
    );
    assert!(report_json(&file)["records"].as_u64().unwrap() > 0);
}

#[test]
fn sigkill_leaves_a_readable_truncated_file() {
    kernel_test!();
    let file = temp_path("sigkill");
    let (storm, mut recorder) = record_a_storm(&file);
    recorder.kill().unwrap();
    wait_bounded(&mut recorder);
    stop_storm(storm);
    let len = std::fs::metadata(&file).unwrap().len();
    let (code, _, stderr) = report(&file, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("truncated at byte"), "{stderr}");
    let json = report_json(&file);
    let at = json["truncated_at"].as_u64().expect("truncated_at");
    assert!(at > 0 && at <= len);
    assert!(
        json["records"].as_u64().unwrap() > 0,
        "the complete blocks were read"
    );
}

#[test]
fn full_disk_is_a_clear_error_and_the_file_stays_readable() {
    kernel_test!();
    let dir = std::env::temp_dir().join(format!("reaper-trace-tmpfs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a small tmpfs");
    let file = dir.join("full.rtrace");
    let storm = Scenario::start(&["storm", "400000"]);
    let out = Command::new(tool())
        .args([
            "record",
            "-o",
            file.to_str().unwrap(),
            "--pid",
            &storm.child.id().to_string(),
        ])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    stop_storm(storm);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let copy = temp_path("full-copy");
    std::fs::copy(&file, &copy).unwrap();
    let _ = Command::new("umount").arg(&dir).status();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let error = stderr.lines().last().unwrap_or_default();
    assert!(
        error.contains("No space left on device") && error.contains("full.rtrace"),
        "{stderr}"
    );
    assert_eq!(
        error.matches("No space left on device").count(),
        1,
        "the OS error is said once: {error}"
    );
    let (code, _, report_err) = report(&copy, &[]);
    assert_eq!(code, Some(0), "{report_err}");
    assert!(report_err.contains("truncated at byte"), "{report_err}");
}

#[test]
fn unwritable_path_is_a_clear_error() {
    kernel_test!();
    let out = Command::new(tool())
        .args([
            "record",
            "-o",
            "/proc/no/such/dir/x.rtrace",
            "--",
            "/bin/true",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot create recording /proc/no/such/dir/x.rtrace"),
        "{stderr}"
    );
}

#[test]
fn a_read_only_file_system_is_named_once() {
    kernel_test!();
    let dir = temp_path("read-only");
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,ro", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a read-only tmpfs");
    let (code, stderr) = record_true(&dir.join("x.rtrace"), false);
    let _ = Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot create recording"), "{stderr}");
    assert_eq!(
        stderr.matches("Read-only file system").count(),
        1,
        "the OS error is said once: {stderr}"
    );
}

#[test]
fn bad_files_give_one_line_errors_with_offsets() {
    kernel_test!();
    let (good, t) = record_scenario("good", &["exit42"]);
    assert!(t.status.success());
    let bytes = std::fs::read(&good).unwrap();
    let block = first_block_offset(&bytes).expect("a header");
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "at byte 0"),
        (
            "short-header",
            bytes[..10].to_vec(),
            "truncated header: the file ends at byte 10",
        ),
        (
            "magic",
            [b"NOTATRACE".as_slice(), &bytes[9..]].concat(),
            "bad magic at byte 0",
        ),
    ];
    let mut future = bytes.clone();
    future[8] = 99;
    cases.push(("future", future, "format version 99 at byte 8"));
    let mut flipped = bytes.clone();
    flipped[block + 30] ^= 0x10;
    let flipped_msg = format!("the block at byte {block} fails its checksum");
    let mut absurd = bytes.clone();
    absurd[block + 4..block + 8].copy_from_slice(&0xfff0_0000u32.to_le_bytes());
    let absurd_msg = format!("at byte {} is 4293918720 bytes", block + 4);
    let mut meta_absurd = bytes.clone();
    meta_absurd[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("meta-absurd", meta_absurd, "the metadata length at byte 12"));
    let owned = [
        ("flipped", flipped, flipped_msg),
        ("absurd", absurd, absurd_msg),
    ];
    for (name, content, expected) in cases
        .iter()
        .map(|(n, c, e)| (*n, c.clone(), (*e).to_owned()))
        .chain(owned)
    {
        let path = temp_path(&format!("bad-{name}"));
        std::fs::write(&path, &content).unwrap();
        let (code, stdout, stderr) = report(&path, &[]);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        assert!(
            stderr.contains(path.to_str().unwrap()),
            "{name}: names the file: {stderr}"
        );
        assert!(
            stderr.contains(&expected),
            "{name}: expected {expected:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn perfetto_timeline_has_spans_instants_and_flows() {
    kernel_test!();
    let (file, t) = record_scenario("perfetto", &["demo"]);
    assert!(t.status.success());
    let truth = t.truth("leaked");
    // Checked against Perfetto's own schema on the way.
    let timeline = perfetto_timeline(&file);
    let on = |kind: &str, pid: i64, name: &str| timeline_items(&timeline, kind, pid, name);
    let parent = int(&truth["parent"]);
    let tracks = timeline["tracks"].as_array().expect("tracks");
    let flows = timeline["flows"].as_array().expect("flows");
    for leaked in pids(&truth["leaked"]) {
        let running = on("slices", leaked, "running");
        assert_eq!(running.len(), 1, "fork-to-exit span of {leaked}");
        let zombie = on("slices", leaked, "ZOMBIE");
        let [zombie] = zombie[..] else {
            panic!("one ZOMBIE slice for {leaked}: {zombie:?}")
        };
        assert_eq!(zombie["category"], "zombie");
        assert_eq!(
            int(&zombie["ts"]),
            int(&running[0]["ts"]) + int(&running[0]["dur"]),
            "the zombie span starts at the exit"
        );
        assert!(
            int(&zombie["dur"]) > 1_000_000_000,
            "leaked for over a second: {zombie}"
        );
        assert_eq!(zombie["args"]["reap_kind"], "adopted");
        // Its own process track, named.
        let track: Vec<_> = tracks.iter().filter(|t| int(&t["pid"]) == leaked).collect();
        assert_eq!(track.len(), 1, "{track:?}");
        assert_eq!(track[0]["name"], "scenario");
        assert_eq!(track[0]["uuid"], running[0]["uuid"]);
        // Linked to its parent: a flow from the fork to its running span.
        let flow: Vec<_> = flows.iter().filter(|f| f["to"]["pid"] == leaked).collect();
        let [flow] = flow[..] else {
            panic!("one flow into {leaked}: {flow:?}")
        };
        assert_eq!(int(&flow["from"]["pid"]), parent);
        assert_eq!(flow["from"]["name"], "fork");
        assert_eq!(flow["to"]["name"], "running");
        assert_eq!(flow["from"]["ts"], running[0]["ts"]);
        let fork = on("instants", parent, "fork")
            .into_iter()
            .find(|f| f["args"]["child"] == leaked)
            .expect("the fork instant");
        assert_eq!(fork["flow_out"], json!([flow["id"]]));
        // `record -- CMD` copies stacks: the fork instant says where the
        // scenario forked (outermost frame first, fork() innermost).
        let functions: Vec<&str> = fork["callstack"]
            .as_array()
            .expect("a callstack on the fork")
            .iter()
            .filter_map(|f| f["function"].as_str())
            .collect();
        let demo = functions
            .iter()
            .position(|f| *f == "scenario::workload::demo");
        let fork_fn = functions.iter().position(|f| *f == "scenario::util::fork");
        assert!(demo.is_some() && demo < fork_fn, "{functions:?}");
        assert_eq!(on("instants", leaked, "reaped by").len(), 1);
        assert_eq!(
            on("instants", parent, &format!("sigchld from {leaked}")).len(),
            1
        );
    }
    assert!(!on("instants", parent, "exec").is_empty());
    assert!(!on("instants", parent, "wait4").is_empty());
    assert!(
        flows.iter().all(|f| !f["to"].is_null()),
        "every flow has both ends: {flows:?}"
    );
}

/// `--format perfetto-json`, the Chrome trace-event JSON timeline.
#[test]
fn perfetto_json_timeline_has_spans_instants_and_flows() {
    kernel_test!();
    let (file, t) = record_scenario("perfetto-json", &["demo"]);
    assert!(t.status.success());
    let truth = t.truth("leaked");
    let (code, stdout, stderr) = report(&file, &["--format", "perfetto-json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let trace: Value = serde_json::from_str(&stdout).expect("valid JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let on = |pid: i64, ph: &str, name: &str| {
        events
            .iter()
            .filter(|e| {
                int(&e["pid"]) == pid
                    && e["ph"] == ph
                    && e["name"].as_str().is_some_and(|n| n.starts_with(name))
            })
            .count()
    };
    let parent = int(&truth["parent"]);
    for leaked in pids(&truth["leaked"]) {
        assert_eq!(
            on(leaked, "X", "running"),
            1,
            "fork-to-exit span of {leaked}"
        );
        let zombie = events
            .iter()
            .find(|e| int(&e["pid"]) == leaked && e["ph"] == "X" && e["name"] == "ZOMBIE")
            .expect("zombie span");
        assert_eq!(zombie["cname"], "terrible", "the zombie span stands out");
        assert!(
            zombie["dur"].as_f64().unwrap() > 1_000_000.0,
            "leaked for over a second: {zombie}"
        );
        assert_eq!(on(leaked, "M", "process_name"), 1);
        assert_eq!(on(leaked, "f", "fork"), 1, "linked to its parent");
        assert_eq!(on(leaked, "i", "reaped by"), 1);
        assert!(events.iter().any(|e| {
            int(&e["pid"]) == parent
                && e["ph"] == "i"
                && e["name"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("sigchld from {leaked}"))
        }));
    }
    assert!(on(parent, "i", "exec") >= 1);
    assert!(on(parent, "i", "wait4") >= 1);
    let starts = events.iter().filter(|e| e["ph"] == "s").count();
    let finishes = events.iter().filter(|e| e["ph"] == "f").count();
    assert_eq!(starts, finishes, "every flow has both ends");
}
