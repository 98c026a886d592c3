//! The fleet examples in docs/fleet/, checked with the real tools: the alert
//! rules and scrape config with promtool (and the rules' own unit tests), the
//! systemd unit with systemd-analyze, the web config with reaper-trace's own
//! parser. A missing tool is a printed skip.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use reaper_trace_tests::which;

/// The unit's command line, as installed.
const EXEC_START: &str = "ExecStart=/usr/bin/reaper-trace serve --listen 127.0.0.1:9464";

fn fleet(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/fleet")
        .join(file)
}

fn read(file: &str) -> String {
    let path = fleet(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The tool's path, or `None` after printing why the test is skipped.
fn tool(name: &str, test: &str) -> Option<String> {
    let found = which(name);
    if found.is_none() {
        let hint = match name {
            "systemd-analyze" => "it comes with Debian's systemd package",
            _ => "cargo xtask setup installs it",
        };
        eprintln!("SKIP: {name} not installed ({hint}) [fleet_docs::{test}]");
    }
    found
}

/// Runs `cmd` and fails the test with its output unless it succeeds;
/// returns stdout and stderr together.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn alert_rules_pass_promtool_check() {
    let Some(promtool) = tool("promtool", "alert_rules_pass_promtool_check") else {
        return;
    };
    let out = run_ok(
        Command::new(promtool)
            .args(["check", "rules"])
            .arg(fleet("alerts.yml")),
    );
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");
}

#[test]
fn every_alert_fires_in_the_promtool_unit_tests() {
    let Some(promtool) = tool("promtool", "every_alert_fires_in_the_promtool_unit_tests") else {
        return;
    };
    // Each alert of the group has a test case in which it fires.
    let tests = read("alerts.test.yml");
    for alert in [
        "ZombiesAccumulating",
        "ZombieLeak",
        "PidsNearLimit",
        "ReaperTraceLosingEvents",
        "ReaperTraceDown",
    ] {
        assert!(
            read("alerts.yml").contains(&format!("- alert: {alert}\n")),
            "{alert} is not in alerts.yml"
        );
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - "
            )),
            "no test case of alerts.test.yml expects {alert} to fire"
        );
    }
    let out = run_ok(
        Command::new(promtool)
            .args(["test", "rules"])
            .arg(fleet("alerts.test.yml")),
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn scrape_config_passes_promtool_check() {
    let Some(promtool) = tool("promtool", "scrape_config_passes_promtool_check") else {
        return;
    };
    // Also checks the rule files it names.
    let out = run_ok(
        Command::new(promtool)
            .args(["check", "config"])
            .arg(fleet("prometheus.yml")),
    );
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
}

/// A directory of this test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("reaper-trace-fleet-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The unit, copied into `dir` under its own name, with ExecStart pointing
/// at an executable stub there: systemd-analyze checks that the command
/// exists, and /usr/bin/reaper-trace is not installed on a build machine.
/// Everything else is the unit as shipped.
fn unit_with_stub(dir: &TempDir) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;

    let unit = read("reaper-trace.service");
    assert_eq!(
        unit.lines()
            .filter(|l| l.starts_with("ExecStart="))
            .collect::<Vec<_>>(),
        [EXEC_START],
        "the unit's command line changed: update this test and docs/fleet/prometheus.yml"
    );
    let stub = dir.0.join("reaper-trace");
    std::fs::write(&stub, "#!/bin/sh\nexit 0\n").expect("write stub");
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod stub");
    let rewritten = unit.replace(
        "ExecStart=/usr/bin/reaper-trace ",
        &format!("ExecStart={} ", stub.display()),
    );
    let path = dir.0.join("reaper-trace.service");
    std::fs::write(&path, rewritten).expect("write unit");
    path
}

#[test]
fn systemd_unit_passes_verify() {
    let Some(analyze) = tool("systemd-analyze", "systemd_unit_passes_verify") else {
        return;
    };
    let dir = TempDir::new("verify");
    let unit = unit_with_stub(&dir);
    let out = run_ok(Command::new(analyze).arg("verify").arg(&unit));
    // verify exits 0 on unknown keys and bad values, which it only logs
    // ("Unknown key 'X' in section [Service], ignoring."): any line about
    // the unit is a failure too.
    let about_unit: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("reaper-trace.service"))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify complains about the unit:\n{out}"
    );
    if !out.trim().is_empty() {
        eprintln!("systemd-analyze verify, about other units:\n{out}");
    }
}

#[test]
fn systemd_unit_sandbox_stays_tight() {
    let Some(analyze) = tool("systemd-analyze", "systemd_unit_sandbox_stays_tight") else {
        return;
    };
    let dir = TempDir::new("security");
    let unit = unit_with_stub(&dir);
    // Exposure 0 (locked down) to 10 (unsandboxed), times ten. The unit
    // scores 2.7; a root daemon with BPF and ptrace capabilities and
    // network access cannot go much lower. Past 3.0 something was lost.
    let out = Command::new(analyze)
        .args(["security", "--offline=true", "--threshold=30"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("(no overall exposure line)");
    assert!(
        out.status.success(),
        "the unit's exposure is above 3.0: {overall}\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", overall.trim());
}

/// Every name of reaper-trace's metrics `text` mentions, in order.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("reaper_trace_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn docs_use_the_exported_metric_names_job_and_port() {
    let exported = reaper_trace::output::metrics::Metrics::exported_names();
    for file in ["alerts.yml", "alerts.test.yml"] {
        for name in metric_names(&read(file)) {
            assert!(
                exported.contains(&name),
                "{file} uses {name}, which reaper-trace does not export: {exported:?}"
            );
        }
    }
    let prometheus = read("prometheus.yml");
    assert!(prometheus.contains("job_name: reaper-trace\n"));
    assert!(read("alerts.yml").contains(r#"up{job="reaper-trace"} == 0"#));
    // The unit listens on the port the scrape config targets.
    assert!(read("reaper-trace.service").contains(&format!("{EXEC_START}\n")));
    assert!(EXEC_START.ends_with(" --listen 127.0.0.1:9464"));
    assert!(prometheus.contains(r#"targets: ["localhost:9464"]"#));
}

/// The Kubernetes versions the DaemonSet is checked against: the oldest
/// still commonly run and the newest the schemas cover.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

/// `kubernetes-validate`, from the venv `cargo xtask setup` makes (it ships
/// Kubernetes' own JSON schemas, so this runs offline).
fn kubernetes_validate() -> PathBuf {
    let validate = reaper_trace_tests::venv_bin("kubernetes-validate");
    assert!(
        validate.exists(),
        "{} is missing: run `cargo xtask setup` (it installs kubernetes-validate from PyPI)",
        validate.display()
    );
    validate
}

/// Runs kubernetes-validate --strict on `file` for `version`: its success
/// and output.
fn validate(file: &Path, version: &str) -> (bool, String) {
    let out = Command::new(kubernetes_validate())
        .args(["--strict", "-k", version])
        .arg(file)
        .output()
        .expect("run kubernetes-validate");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn daemonset_passes_kubernetes_schemas() {
    let file = fleet("daemonset.yaml");
    for version in KUBERNETES_VERSIONS {
        let (ok, out) = validate(&file, version);
        assert!(ok, "daemonset.yaml against Kubernetes {version}:\n{out}");
        // Both documents were checked, not skipped as unknown kinds.
        for resource in ["namespace/reaper-trace", "daemonset/reaper-trace"] {
            assert!(
                out.contains(&format!("passed for resource {resource} against")),
                "{resource} not checked: {out}"
            );
        }
        assert!(!out.contains("WARN"), "{out}");
    }
    // The validator is strict: a misspelt field fails it, so the pass
    // above means something.
    let dir = TempDir::new("daemonset");
    let misspelt = dir.0.join("misspelt.yaml");
    std::fs::write(
        &misspelt,
        read("daemonset.yaml").replace("hostPID: true", "hostPid: true"),
    )
    .expect("write misspelt copy");
    let (ok, out) = validate(&misspelt, KUBERNETES_VERSIONS[1]);
    assert!(!ok, "a misspelt field passed kubernetes-validate:\n{out}");
}

#[test]
fn daemonset_matches_the_unit_and_the_scrape_annotations() {
    let daemonset = read("daemonset.yaml");
    // The same capabilities as the systemd unit, which its tests show are
    // enough, and no more.
    let unit = read("reaper-trace.service");
    let unit_caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit's CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("\"{}\"", c.trim_start_matches("CAP_")))
        .collect();
    assert!(
        daemonset.contains(&format!("add: [{}]\n", unit_caps.join(", "))),
        "the DaemonSet's capabilities differ from the unit's {unit_caps:?}"
    );
    assert!(daemonset.contains("drop: [\"ALL\"]\n"));
    assert!(daemonset.contains("readOnlyRootFilesystem: true\n"));
    // The port served, the annotated one and the probed one are the same.
    assert!(daemonset.contains("- 0.0.0.0:9464\n"));
    assert!(daemonset.contains("containerPort: 9464\n"));
    assert!(daemonset.contains("prometheus.io/port: \"9464\"\n"));
    assert!(daemonset.contains("path: /metrics\n              port: metrics\n"));
}

/// Every PromQL expression of the Grafana dashboard, with the dashboard's
/// variables replaced by what Grafana would put there.
fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana-dashboard.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut ids = std::collections::BTreeSet::new();
    let mut queries = Vec::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("a panel id")));
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {}: the data source is the dashboard's variable",
            panel["title"]
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            queries.push(
                expr.replace("$__rate_interval", "1m")
                    .replace("$__range", "6h")
                    .replace("$instance", ".*"),
            );
        }
    }
    queries
}

#[test]
fn dashboard_queries_use_exported_metrics_and_parse() {
    let exported = reaper_trace::output::metrics::Metrics::exported_names();
    let queries = dashboard_queries();
    for query in &queries {
        assert!(!query.contains('$'), "a variable left in {query}");
        let names = metric_names(query);
        for name in &names {
            assert!(
                exported.contains(name),
                "the dashboard queries {name}, which reaper-trace does not export: {exported:?}"
            );
        }
        assert!(
            !names.is_empty() || query.contains("up{job=\"reaper-trace\""),
            "a query on no metric of reaper-trace: {query}"
        );
    }
    // Each expression is valid PromQL: promtool parses it as a recording
    // rule's.
    let Some(promtool) = tool(
        "promtool",
        "dashboard_queries_use_exported_metrics_and_parse",
    ) else {
        return;
    };
    let dir = TempDir::new("dashboard");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(query).unwrap()
        ));
    }
    let file = dir.0.join("dashboard-rules.yml");
    std::fs::write(&file, rules).expect("write rules");
    let out = run_ok(Command::new(promtool).args(["check", "rules"]).arg(&file));
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{out}"
    );
}

#[test]
fn web_config_example_is_valid() {
    use reaper_trace::serve::webconfig::{TlsVersion, WebConfig};

    let path = fleet("web-config.yml");
    let config = WebConfig::parse(&read("web-config.yml"), &path)
        .unwrap_or_else(|e| panic!("docs/fleet/web-config.yml: {e}"));
    let tls = config.tls.expect("the example sets up TLS");
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert!(tls.cert_file.is_absolute() && tls.key_file.is_absolute());
    assert_eq!(
        config.basic_auth_users.keys().collect::<Vec<_>>(),
        ["prometheus"]
    );
    assert!(config.notes.is_empty(), "{:?}", config.notes);
    // The scrape config shows the matching job settings.
    let prometheus = read("prometheus.yml");
    assert!(prometheus.contains("#   scheme: https\n"), "{prometheus}");
    assert!(prometheus.contains("#   basic_auth:\n"), "{prometheus}");
}
