//! The fleet daemon against a real Prometheus: `serve` traces the whole
//! system while leaky scenarios run in two containers' cgroups; Prometheus
//! (Debian's package) scrapes it, and its query API must give each
//! container's exact count of unreaped children. A direct scrape passes
//! `promtool check metrics`. The endpoint keeps answering scrapes while
//! idle and slowloris clients hold connections, and Prometheus scrapes it
//! over TLS with basic auth from a `--web.config.file`.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
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
    /// `job`: more settings of the scrape job, as YAML lines indented by
    /// four spaces (e.g. `scheme: https`).
    fn start(binary: &str, target: SocketAddr, job: &str) -> Prometheus {
        let dir = temp_path("prometheus");
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: reaper-trace\n{job}    static_configs:\n      - targets: ['{target}']\n"
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
    let prometheus = Prometheus::start(&prometheus, serve_addr, "");
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

/// Polls `serve`'s metrics until `check` holds for the body, or the
/// deadline passes; the last body.
fn metrics_until(addr: SocketAddr, deadline: Duration, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + deadline;
    loop {
        let (_, body) = http_get(addr, "/metrics").expect("scrape");
        if check(&body) || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `serve`'s memory bound: a container's series are exported while its
/// cgroup exists and for `--expire-after` once it is gone, then dropped,
/// with its name; another cgroup's series stay.
#[test]
fn a_gone_containers_series_are_dropped_after_the_retention() {
    kernel_test!();
    let (serve, addr) = start_serve(&["--expire-after", "1s"]);
    let gone = TestCgroup::create(&format!("system.slice/docker-{}.scope", container_id(3)));
    let stays = TestCgroup::create(&format!("system.slice/docker-{}.scope", container_id(4)));
    for cgroup in [&gone, &stays] {
        // A process that exits there.
        let wrapped = cgroup.wrap(&["/bin/true".to_owned()]);
        let status = Command::new(&wrapped[0]).args(&wrapped[1..]).status();
        assert!(status.expect("sh").success());
    }
    let series =
        |cgroup: &TestCgroup| format!("reaper_trace_exits_total{{cgroup=\"{}\"", cgroup.path);
    let both = |body: &str| body.contains(&series(&gone)) && body.contains(&series(&stays));
    let body = metrics_until(addr, Duration::from_secs(30), both);
    assert!(both(&body), "both containers' exits are exported:\n{body}");
    let path = gone.path.clone();
    drop(gone);
    // Checked every 5 s, dropped once gone for 1 s.
    let expired = |body: &str| !body.contains(&path) && body.contains(&series(&stays));
    let body = metrics_until(addr, Duration::from_secs(30), expired);
    assert!(
        expired(&body),
        "the gone cgroup's series are dropped, the other's stay:\n{body}"
    );
    drop(serve);
}

/// Keeps one connection to `addr` open until `stop`, opening a new one
/// whenever the server closes it, as an attacker would. `slow`: it sends a
/// request head that never ends, one byte every `SLOW_EVERY` (slowloris);
/// otherwise it sends nothing. `opened` counts the connections it opened.
fn hold_connection(addr: SocketAddr, slow: bool, stop: &AtomicBool, opened: &AtomicUsize) {
    const SLOW_EVERY: Duration = Duration::from_secs(2);
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let mut sent = 0usize;
        let mut last = Instant::now() - SLOW_EVERY;
        let mut buf = [0u8; 1024];
        while !stop.load(Ordering::Relaxed) {
            if slow && last.elapsed() >= SLOW_EVERY {
                let byte = head.get(sent).copied().unwrap_or(b'a');
                if stream.write_all(&[byte]).is_err() {
                    break;
                }
                sent += 1;
                last = Instant::now();
            }
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }
}

/// Scrapes `serve` every 20 ms for a few seconds while `idle` idle and
/// `slow` slowloris connections are held (each reopened when closed);
/// prints and returns the share of scrapes that succeeded.
fn scrape_under_attack(idle: usize, slow: usize) -> f64 {
    const SCRAPING: Duration = Duration::from_secs(6);
    let (serve, addr) = start_serve(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..idle + slow)
        .map(|i| {
            let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
            std::thread::spawn(move || hold_connection(addr, i >= idle, &stop, &opened))
        })
        .collect();
    // Every attacker holds a connection before the scrapes start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while opened.load(Ordering::Relaxed) < idle + slow {
        assert!(Instant::now() < deadline, "the attackers could not connect");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (mut ok, mut total, mut failures) = (0u32, 0u32, Vec::new());
    let started = Instant::now();
    while started.elapsed() < SCRAPING {
        total += 1;
        match http_get(addr, "/metrics") {
            Ok((200, body)) if body.contains("reaper_trace_") => ok += 1,
            Ok((status, _)) => failures.push(format!("status {status}")),
            Err(e) => failures.push(e.to_string()),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.join().expect("attacker thread");
    }
    let rate = f64::from(ok) / f64::from(total);
    eprintln!(
        "scrapes while {idle} idle and {slow} slowloris connections were held: \
         {ok}/{total} succeeded ({:.1} %), attackers opened {} connections; \
         first failures: {:?}",
        rate * 100.0,
        opened.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
    assert!(total >= 50, "only {total} scrapes in {SCRAPING:?}");
    let t = serve.stop();
    assert!(t.status.success(), "{}", t.stderr);
    rate
}

#[test]
fn scrapes_keep_working_while_idle_and_slow_connections_are_held() {
    kernel_test!();
    let rate = scrape_under_attack(64, 8);
    assert!(rate >= 0.99, "{:.1} % of scrapes succeeded", rate * 100.0);
}

/// Past the daemon's cap of 128 connections, newcomers evict the oldest
/// idle ones: the attackers churn, scrapes still get through.
#[test]
fn scrapes_keep_working_past_the_connection_cap() {
    kernel_test!();
    let rate = scrape_under_attack(256, 8);
    assert!(rate >= 0.95, "{:.1} % of scrapes succeeded", rate * 100.0);
}

/// A CA, a server certificate it signed for localhost and 127.0.0.1, and a
/// client certificate it signed, made with the openssl command in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(openssl: &str, dir: &Path) -> Pki {
    let run = |args: &str| {
        let out = Command::new(openssl)
            .args(args.split(' '))
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run(&format!(
        "req -x509 {ec} -keyout ca.key -out ca.crt -days 2 -subj /CN=reaper-trace-test-CA"
    ));
    for (name, extensions) in [
        (
            "server",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        run(&format!(
            "req {ec} -keyout {name}.key -out {name}.csr -subj /CN={name}"
        ));
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"
            ),
        )
        .expect("write extensions");
        run(&format!(
            "x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
             -extfile {name}.ext -out {name}.crt"
        ));
    }
    Pki {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
    }
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("a file name")
}

/// `curl` over HTTPS trusting `ca`, with more `args`: (status, headers), or
/// curl's error when the exchange failed (e.g. the handshake).
fn try_curl(curl: &str, ca: &Path, url: &str, args: &[&str]) -> Result<(u16, String), String> {
    let out = Command::new(curl)
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(["--dump-header", "-", "--output", "/dev/null", "--cacert"])
        .arg(ca)
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let headers = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, headers))
}

/// `try_curl` with basic auth as `user` (`name:password`), which must
/// complete.
fn curl(curl: &str, ca: &Path, url: &str, user: Option<&str>) -> (u16, String) {
    let args = user.map_or(Vec::new(), |u| vec!["--user", u]);
    try_curl(curl, ca, url, &args).unwrap_or_else(|e| panic!("curl {url}: {e}"))
}

#[test]
fn prometheus_scrapes_serve_over_tls_with_basic_auth() {
    kernel_test!();
    let tools = ["prometheus", "openssl", "curl"].map(which);
    let [Some(prometheus), Some(openssl), Some(curl_bin)] = tools else {
        eprintln!(
            "SKIP {}: prometheus, openssl or curl is not installed (cargo xtask setup installs them)",
            module_path!()
        );
        return;
    };
    let dir = temp_path("tls");
    std::fs::create_dir_all(&dir).expect("tls dir");
    let pki = make_pki(&openssl, &dir);
    // The password is random, its bcrypt hash is made now.
    let password = format!("pw-{}-{:?}", std::process::id(), Instant::now());
    let hash = bcrypt::hash(&password, 6).expect("bcrypt");
    let web_config = dir.join("web.yml");
    // Relative paths: from the file's directory, as in exporter-toolkit.
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n\
             basic_auth_users:\n  prometheus: '{hash}'\n",
            file_name(&pki.cert),
            file_name(&pki.key),
        ),
    )
    .expect("write web config");
    let (serve, addr) = start_serve(&["--web.config.file", web_config.to_str().unwrap()]);
    assert!(
        serve.preamble.iter().any(|l| l.contains("https://")),
        "{:?}",
        serve.preamble
    );

    let prometheus = Prometheus::start(
        &prometheus,
        addr,
        &format!(
            "    scheme: https\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      \
             username: prometheus\n      password: '{password}'\n",
            pki.ca.display()
        ),
    );
    let deadline = Instant::now() + PROMETHEUS_DEADLINE;
    loop {
        let up = prometheus.query("up{job=\"reaper-trace\"}", "job");
        if up == [("reaper-trace".to_owned(), 1.0)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the target never came up: {up:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // It scraped the metrics themselves, not an error page.
    let tracked = prometheus.query("reaper_trace_tracked_processes", "job");
    assert_eq!(tracked.len(), 1, "{tracked:?}");
    drop(prometheus);

    let url = format!("https://{addr}/metrics");
    let (status, _) = curl(
        &curl_bin,
        &pki.ca,
        &url,
        Some(&format!("prometheus:{password}")),
    );
    assert_eq!(status, 200);
    for user in [None, Some("prometheus:wrong"), Some("nobody:wrong")] {
        let (status, headers) = curl(&curl_bin, &pki.ca, &url, user);
        assert_eq!(status, 401, "{user:?}: {headers}");
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("www-authenticate: basic"),
            "{headers}"
        );
    }
    // Plain HTTP to the TLS port gets no metrics.
    match http_get(addr, "/metrics") {
        Ok((status, body)) => {
            assert_ne!(status, 200, "{body}");
            assert!(!body.contains("reaper_trace_"), "{body}");
        }
        Err(e) => eprintln!("plain HTTP to the TLS port: {e}"),
    }
    let t = serve.stop();
    assert!(t.status.success(), "{}", t.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `reaper-trace serve <args>`: its exit code and stderr, for runs that
/// must stop before tracing.
fn serve_fails(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(tool())
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run serve");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_web_configs_and_certificates_are_one_line_and_exit_2() {
    let dir = temp_path("webconfig");
    std::fs::create_dir_all(&dir).expect("dir");
    let missing = dir.join("missing.yml");
    let unknown = dir.join("unknown.yml");
    std::fs::write(&unknown, "tls_server_config:\n  cert_fil: x.crt\n").unwrap();
    let no_cert = dir.join("no-cert.yml");
    std::fs::write(
        &no_cert,
        "tls_server_config:\n  cert_file: none.crt\n  key_file: none.key\n",
    )
    .unwrap();
    let not_pem = dir.join("not-pem.yml");
    std::fs::write(dir.join("bad.crt"), "not a certificate\n").unwrap();
    std::fs::write(
        &not_pem,
        "tls_server_config:\n  cert_file: bad.crt\n  key_file: bad.crt\n",
    )
    .unwrap();
    let plain_password = dir.join("plain.yml");
    std::fs::write(&plain_password, "basic_auth_users:\n  prometheus: secret\n").unwrap();
    for (file, says) in [
        (&missing, "cannot read the web config"),
        (&unknown, "cert_fil"),
        (&no_cert, "none.crt"),
        (&not_pem, "bad.crt"),
        (&plain_password, "not a bcrypt hash"),
    ] {
        let (code, stderr) = serve_fails(&[
            "--listen",
            "127.0.0.1:0",
            "--web.config.file",
            file.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(2), "{}: {stderr}", file.display());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listening_beyond_loopback_without_tls_warns_in_one_line() {
    kernel_test!();
    let mut child = Command::new(tool())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut before = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        let done = line.contains("serving metrics on");
        before.push(line);
        if done {
            break;
        }
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = wait_bounded(&mut child);
    let warnings: Vec<_> = before.iter().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{before:?}");
    assert!(
        warnings[0].contains("plain HTTP") && warnings[0].contains("tls_server_config"),
        "{}",
        warnings[0]
    );
}

#[test]
fn client_certificates_are_required_when_the_web_config_says_so() {
    kernel_test!();
    let tools = ["openssl", "curl"].map(which);
    let [Some(openssl), Some(curl_bin)] = tools else {
        eprintln!(
            "SKIP {}: openssl or curl is not installed (cargo xtask setup installs them)",
            module_path!()
        );
        return;
    };
    let dir = temp_path("mtls");
    std::fs::create_dir_all(&dir).expect("mtls dir");
    let pki = make_pki(&openssl, &dir);
    let web_config = dir.join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n\
             \x20 client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            pki.cert.display(),
            pki.key.display(),
            pki.ca.display()
        ),
    )
    .expect("write web config");
    let (serve, addr) = start_serve(&["--web.config.file", web_config.to_str().unwrap()]);
    let url = format!("https://{addr}/metrics");
    let with_cert = [
        "--cert",
        pki.client_cert.to_str().unwrap(),
        "--key",
        pki.client_key.to_str().unwrap(),
    ];
    let (status, headers) = try_curl(&curl_bin, &pki.ca, &url, &with_cert)
        .unwrap_or_else(|e| panic!("with the client certificate: {e}"));
    assert_eq!(status, 200, "{headers}");
    // The server's own certificate is no client certificate of the CA's.
    let wrong = [
        "--cert",
        pki.cert.to_str().unwrap(),
        "--key",
        pki.key.to_str().unwrap(),
    ];
    for args in [&[][..], &wrong[..]] {
        let outcome = try_curl(&curl_bin, &pki.ca, &url, args);
        assert!(
            !matches!(outcome, Ok((200, _))),
            "{args:?}: served without a valid client certificate: {outcome:?}"
        );
    }
    let t = serve.stop();
    assert!(t.status.success(), "{}", t.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
