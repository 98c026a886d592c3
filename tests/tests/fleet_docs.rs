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

#[test]
fn docs_use_the_exported_metric_names_job_and_port() {
    let exported = reaper_trace::output::metrics::Metrics::exported_names();
    for file in ["alerts.yml", "alerts.test.yml"] {
        let text = read(file);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("reaper_trace_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                exported.contains(&name),
                "{file} uses {name}, which reaper-trace does not export: {exported:?}"
            );
            rest = &rest[at + name.len()..];
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
