//! Kernel tests of container attribution: leaky scenarios run in real
//! cgroups named the way Docker and Kubernetes (containerd) name theirs;
//! every finding names its cgroup and container, the kernel-side
//! `--cgroup`/`--container` filters keep to one of them, and
//! `--metrics-file` counts each container's findings exactly.

use std::process::{Command, Stdio};

use reaper_trace_tests::*;
use serde_json::Value;

/// A 64-hex container id unique to this test process and `tag`.
fn container_id(tag: u8) -> String {
    let seed = (u64::from(std::process::id()) << 8) | u64::from(tag);
    (0..4)
        .map(|i| {
            format!(
                "{:016x}",
                seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(i * 13)
            )
        })
        .collect()
}

/// A pod uid in its canonical form, unique to this test process.
fn pod_uid() -> String {
    let h = container_id(0xfe);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn docker_cgroup(id: &str) -> TestCgroup {
    TestCgroup::create(&format!("system.slice/docker-{id}.scope"))
}

fn kubernetes_cgroup(pod: &str, id: &str) -> TestCgroup {
    let pod = pod.replace('-', "_");
    TestCgroup::create(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod}.slice/cri-containerd-{id}.scope"
    ))
}

fn tini() -> Option<String> {
    let found = which("tini");
    if found.is_none() {
        eprintln!("SKIP: tini is not installed (cargo xtask setup installs it)");
    }
    found
}

/// Runs `command` to its end (outside any tracer) and returns its TRUTH.
fn run(command: &[String]) -> Value {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    let t = run_to_end(cmd);
    assert!(t.status.success(), "{command:?}: {}", t.stderr);
    t.truth("children").clone()
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort();
    v
}

fn finding_pids(t: &Trace) -> Vec<i64> {
    sorted(t.findings().iter().map(|f| int(&f["pid"])).collect())
}

#[test]
fn a_container_filter_follows_one_container_and_its_findings_name_it() {
    kernel_test!();
    let Some(tini) = tini() else { return };
    let (a_id, b_id) = (container_id(1), container_id(2));
    let a = docker_cgroup(&a_id);
    let b = kubernetes_cgroup(&pod_uid(), &b_id);
    let tracer = Background::start(&[
        "live".into(),
        "--json".into(),
        "--container".into(),
        a_id[..12].to_owned(),
    ]);
    let in_a = run(&a.scenario_under_tini(&tini, &["noreap", "2"]));
    let in_b = run(&b.scenario_under_tini(&tini, &["noreap", "3"]));
    let t = tracer.stop();
    assert!(t.status.success(), "{}", t.stderr);
    let a_children = sorted(pids(&in_a["children"]));
    assert_eq!(finding_pids(&t), a_children, "{:#?}", t.findings());
    for f in t.findings() {
        assert_eq!(f["kind"], "unreaped");
        let cgroup = &f["cgroup"];
        assert_eq!(cgroup["path"], a.path.as_str());
        assert_eq!(cgroup["container"]["runtime"], "docker");
        assert_eq!(cgroup["container"]["id"], a_id.as_str());
        assert!(cgroup["container"]["pod_uid"].is_null());
    }
    // Nothing of the other container was followed.
    let b_pids: Vec<i64> = pids(&in_b["children"]);
    let leaked: Vec<&Value> = t
        .events
        .iter()
        .filter(|e| b_pids.contains(&int(&e["tgid"])))
        .collect();
    assert!(leaked.is_empty(), "events of container B: {leaked:#?}");
}

#[test]
fn a_cgroup_filter_follows_a_kubernetes_pod_container_and_its_findings_name_the_pod() {
    kernel_test!();
    let Some(tini) = tini() else { return };
    let pod = pod_uid();
    let (a_id, b_id) = (container_id(3), container_id(4));
    let a = docker_cgroup(&a_id);
    let b = kubernetes_cgroup(&pod, &b_id);
    let tracer = Background::start(&[
        "live".into(),
        "--json".into(),
        "--no-events".into(),
        "--cgroup".into(),
        b.path.clone(),
    ]);
    let in_a = run(&a.scenario_under_tini(&tini, &["noreap", "2"]));
    let in_b = run(&b.scenario_under_tini(&tini, &["noreap", "3"]));
    let t = tracer.stop();
    assert!(t.status.success(), "{}", t.stderr);
    assert_eq!(finding_pids(&t), sorted(pids(&in_b["children"])));
    for f in t.findings() {
        let cgroup = &f["cgroup"];
        assert_eq!(cgroup["path"], b.path.as_str());
        assert_eq!(cgroup["container"]["runtime"], "containerd");
        assert_eq!(cgroup["container"]["id"], b_id.as_str());
        assert_eq!(cgroup["container"]["pod_uid"], pod.as_str());
        assert_eq!(cgroup["container"]["qos"], "burstable");
    }
    let a_children = pids(&in_a["children"]);
    assert!(
        t.findings()
            .iter()
            .all(|f| !a_children.contains(&int(&f["pid"])))
    );
}

/// `reaper-trace live ARGS` fails with exit 2 and one line containing `says`.
fn assert_one_line_error(args: &[&str], says: &str) {
    let out = Command::new(tool())
        .arg("live")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run live");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
}

#[test]
fn a_missing_cgroup_or_container_is_one_line_naming_the_fix() {
    kernel_test!();
    assert_one_line_error(
        &["--cgroup", "/no/such/cgroup-here"],
        "no cgroup \"/no/such/cgroup-here\"",
    );
    assert_one_line_error(
        &["--container", "ffffffffffff0000"],
        "no running container's cgroup matches",
    );
}

#[test]
fn metrics_files_count_each_containers_findings_exactly() {
    kernel_test!();
    let Some(tini) = tini() else { return };
    let a_id = container_id(5);
    let a = docker_cgroup(&a_id);
    a.set_pids_max(64);
    let metrics = temp_path("check.prom");
    let recording = temp_path("check-recording");
    let out = Command::new(tool())
        .args(["check", "--as-root", "--format", "json", "--metrics-file"])
        .arg(&metrics)
        .arg("-o")
        .arg(&recording)
        .arg("--")
        .args(a.scenario_under_tini(&tini, &["noreap", "2"]))
        .stdin(Stdio::null())
        .output()
        .expect("run check");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&metrics).expect("metrics file");
    let here = [
        ("cgroup", a.path.as_str()),
        ("runtime", "docker"),
        ("container", &a_id[..12]),
    ];
    assert_eq!(
        sample(&text, "reaper_trace_unreaped_total", &here),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "reaper_trace_unreaped_total",
            &[("parent_comm", "scenario")]
        ),
        Some(2.0)
    );
    // tini, the scenario and its two children.
    assert_eq!(
        sample(&text, "reaper_trace_exits_total", &here),
        Some(4.0),
        "{text}"
    );
    assert_eq!(sample(&text, "reaper_trace_late_reaps_total", &here), None);
    assert_eq!(
        sample(&text, "reaper_trace_pids_max", &here),
        Some(64.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "reaper_trace_pids_current", &here),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "reaper_trace_reap_latency_seconds_count", &here),
        Some(4.0),
        "{text}"
    );
    match which("promtool") {
        Some(promtool) => {
            let check = Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(std::fs::File::open(&metrics).unwrap())
                .output()
                .expect("promtool");
            assert!(
                check.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        None => eprintln!(
            "SKIP promtool check: promtool is not installed (cargo xtask setup installs it)"
        ),
    }
    // The recording gives the same counts, and names the container in text.
    let replayed = temp_path("report.prom");
    let text_report = report_output(&recording, &["--metrics-file", replayed.to_str().unwrap()]);
    let again = std::fs::read_to_string(&replayed).expect("report's metrics file");
    for metric in ["reaper_trace_unreaped_total", "reaper_trace_exits_total"] {
        assert_eq!(
            sample(&again, metric, &here),
            sample(&text, metric, &here),
            "{metric}"
        );
    }
    assert_eq!(
        text_report
            .lines()
            .filter(
                |l| l.starts_with("unreaped ") && l.contains(&format!("[docker {}]", &a_id[..12]))
            )
            .count(),
        2,
        "{text_report}"
    );
    for f in [&metrics, &recording, &replayed] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn a_cgroup_id_resolves_to_its_path_directly_and_by_scanning() {
    kernel_test!();
    use std::os::unix::fs::MetadataExt;
    let c = docker_cgroup(&container_id(6));
    let fs = reaper_trace::cgroup::fs::CgroupFs::discover();
    let (id, level, relative) = fs.id_and_level(&c.path).expect("the test cgroup");
    let (v2, _) = cgroup_mounts();
    let dir = v2.unwrap().join(c.path.trim_start_matches('/'));
    assert_eq!(id, std::fs::metadata(&dir).unwrap().ino());
    assert_eq!((level, relative.as_str()), (3, c.path.as_str()));
    assert_eq!(fs.path_of(id).as_deref(), Some(c.path.as_str()));
    assert_eq!(fs.scan().get(&id), Some(&c.path));
}

#[test]
fn a_cgroup_whose_first_event_is_an_exit_is_named_live_and_in_the_recording() {
    kernel_test!();
    let c = docker_cgroup(&container_id(7));
    let (v2, _) = cgroup_mounts();
    let procs = v2
        .unwrap()
        .join(c.path.trim_start_matches('/'))
        .join("cgroup.procs");
    let metrics = temp_path("exit-only.prom");
    let recording = temp_path("exit-only");
    // The shell moves itself in (echo is a builtin) and exits: its exit is
    // the first event from the cgroup.
    let out = Command::new(tool())
        .args(["check", "--as-root", "--metrics-file"])
        .arg(&metrics)
        .arg("-o")
        .arg(&recording)
        .args(["--", "sh", "-c", r#"echo $$ > "$1" && exit 0"#, "sh"])
        .arg(&procs)
        .stdin(Stdio::null())
        .output()
        .expect("run check");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let here = [("cgroup", c.path.as_str()), ("runtime", "docker")];
    let live = std::fs::read_to_string(&metrics).expect("metrics");
    assert_eq!(
        sample(&live, "reaper_trace_exits_total", &here),
        Some(1.0),
        "{live}"
    );
    let replayed = temp_path("exit-only-report.prom");
    report_output(&recording, &["--metrics-file", replayed.to_str().unwrap()]);
    let again = std::fs::read_to_string(&replayed).expect("report metrics");
    assert_eq!(
        sample(&again, "reaper_trace_exits_total", &here),
        Some(1.0),
        "{again}"
    );
    for f in [&metrics, &recording, &replayed] {
        let _ = std::fs::remove_file(f);
    }
}
