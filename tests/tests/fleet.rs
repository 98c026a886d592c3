//! The fleet daemon against a real Prometheus: `serve` traces the whole
//! system while leaky scenarios run in two containers' cgroups; Prometheus
//! (Debian's package) scrapes it, and its query API must give each
//! container's exact count of unreaped children. A direct scrape passes
//! `promtool check metrics`.

use std::{
    io::Write,
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reaper_trace_tests::*;
use serde_json::Value;

/// How long Prometheus may take to start and to show a scraped value.
const PROMETHEUS_DEADLINE: Duration = Duration::from_secs(90);

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A loopback port free now (for Prometheus, which cannot report the one
/// it bound).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A real Prometheus scraping `target` every second, in a temp directory.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(binary: &str, target: SocketAddr) -> Prometheus {
        let dir = temp_path("prometheus");
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: reaper-trace\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write config");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        let mut p = Prometheus { child, addr, dir };
        let deadline = Instant::now() + PROMETHEUS_DEADLINE;
        while !matches!(http_get(p.addr, "/-/ready"), Ok((200, _))) {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited: {status}");
            }
            assert!(Instant::now() < deadline, "prometheus never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// `query`'s instant vector as (label value of `by`, value).
    fn query(&self, query: &str, by: &str) -> Vec<(String, f64)> {
        let (status, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", percent_encode(query)),
        )
        .expect("query prometheus");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("query JSON");
        v["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|s| {
                (
                    s["metric"][by].as_str().unwrap_or_default().to_owned(),
                    s["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = wait_bounded(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn container_id(tag: u8) -> String {
    format!("{:08x}{tag:02x}", std::process::id()).repeat(7)[..64].to_owned()
}

#[test]
fn prometheus_scrapes_each_containers_unreaped_children_from_serve() {
    kernel_test!();
    let (Some(prometheus), Some(tini)) = (which("prometheus"), which("tini")) else {
        eprintln!(
            "SKIP {}: prometheus or tini is not installed (cargo xtask setup installs both)",
            module_path!()
        );
        return;
    };
    let (serve, serve_addr) = start_serve(&[]);
    let prometheus = Prometheus::start(&prometheus, serve_addr);
    let (a_id, b_id) = (container_id(1), container_id(2));
    let a = TestCgroup::create(&format!("system.slice/docker-{a_id}.scope"));
    let b = TestCgroup::create(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{b_id}.scope",
        "0a1b2c3d_4e5f_4a6b_8c7d_9e0f1a2b3c4d"
    ));
    let mut truth = Vec::new();
    for (cgroup, n) in [(&a, 2), (&b, 3)] {
        let mut cmd = Command::new("sh");
        cmd.args(&cgroup.scenario_under_tini(&tini, &["noreap", &n.to_string()])[1..]);
        let t = run_to_end(cmd);
        assert!(t.status.success(), "{}", t.stderr);
        truth.push((cgroup.path.clone(), pids(&t.truth("children")["children"])));
    }
    // Prometheus shows each container's count once it has scraped it.
    let query = format!(
        "sum by (cgroup) (reaper_trace_unreaped_total{{cgroup=~\"/reaper-trace-test-{}-.*\"}})",
        std::process::id()
    );
    let expected: Vec<(String, f64)> = {
        let mut e: Vec<(String, f64)> = truth
            .iter()
            .map(|(path, children)| (path.clone(), children.len() as f64))
            .collect();
        e.sort_by(|x, y| x.0.cmp(&y.0));
        e
    };
    let deadline = Instant::now() + PROMETHEUS_DEADLINE;
    let mut seen;
    loop {
        seen = prometheus.query(&query, "cgroup");
        seen.sort_by(|x, y| x.0.cmp(&y.0));
        if seen == expected || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(seen, expected, "Prometheus' unreaped counts per container");
    let by_container = prometheus.query(
        &format!("sum by (container) (reaper_trace_unreaped_total{{runtime=\"containerd\",container=\"{}\"}})", &b_id[..12]),
        "container",
    );
    assert_eq!(by_container, [(b_id[..12].to_owned(), 3.0)]);
    assert_eq!(
        prometheus.query("up{job=\"reaper-trace\"}", "job"),
        [("reaper-trace".to_owned(), 1.0)]
    );

    // A direct scrape is valid exposition text; other paths are 404.
    let (status, body) = http_get(serve_addr, "/metrics").expect("scrape");
    assert_eq!(status, 200);
    match which("promtool") {
        Some(promtool) => {
            let mut check = Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("promtool");
            check
                .stdin
                .take()
                .unwrap()
                .write_all(body.as_bytes())
                .unwrap();
            let out = check.wait_with_output().expect("promtool output");
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => eprintln!("SKIP promtool check: promtool is not installed"),
    }
    assert_eq!(http_get(serve_addr, "/").expect("GET /").0, 404);

    // The daemon logged each finding as a JSON line naming its container.
    drop(prometheus);
    let t = serve.stop();
    for (path, children) in &truth {
        for child in children {
            let logged = t
                .notices
                .iter()
                .filter(|n| n["type"] == "finding" && int(&n["pid"]) == *child)
                .collect::<Vec<_>>();
            assert_eq!(logged.len(), 1, "finding for {child}: {:#?}", t.notices);
            assert_eq!(logged[0]["cgroup"]["path"], path.as_str());
        }
    }
    assert!(t.report.is_null(), "serve prints no final report");
}
