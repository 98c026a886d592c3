//! Real container runtimes: Debian's docker.io (dockerd, containerd, runc)
//! and podman (with runc), as `cargo xtask setup` installs them. Each test
//! starts its own daemon (or podman storage) in a scratch directory, runs
//! the scenario program as a container's process in an image built FROM
//! scratch (no registry is reachable: the static musl build of the scenario
//! is imported as a tarball), traces the containers' parent cgroup, and
//! checks what the tool says against the container's own ground truth: the
//! pids the program prints (`TRUTH` in the container's log), `inspect`'s
//! id and init pid, and /proc. Guards remove every container, image,
//! daemon, mount and cgroup they made, on failure too.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use reaper_trace_tests::*;
use serde_json::Value;

/// Debian's binaries, by absolute path: CI machines also have a newer
/// Docker client in /usr/local/bin that speaks an API dockerd 20.10 does not.
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
const PODMAN: &str = "/usr/bin/podman";
const RUNC: &str = "/usr/bin/runc";

/// How long a daemon may take to answer, a container to print its truth.
const DEADLINE: Duration = Duration::from_secs(60);

/// The threshold the traces use: exits unreaped longer are findings.
const THRESHOLD: Duration = Duration::from_millis(300);

/// Children each leaky container's PID 1 forks and never waits for.
const LEAKS: usize = 3;

/// One runtime at a time: each test has its own daemon, and two on 2 cores
/// would only slow each other down.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The scenario program built static (musl), which `cargo xtask test`
/// builds: the only file of the test images.
fn static_scenario() -> PathBuf {
    if let Some(bin) = std::env::var_os("STATIC_SCENARIO_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> → target/x86_64-unknown-linux-musl/debug/scenario
    let bin = exe
        .ancestors()
        .nth(3)
        .expect("target dir")
        .join("x86_64-unknown-linux-musl/debug/scenario");
    assert!(
        bin.exists(),
        "{} is missing: `cargo build -p reaper-trace-tests --bin scenario --target x86_64-unknown-linux-musl` (`cargo xtask test` does)",
        bin.display()
    );
    bin
}

/// A tarball of a root file system holding only `/scenario`.
fn image_tarball(dir: &Path) -> PathBuf {
    let root = dir.join("image-root");
    std::fs::create_dir_all(&root).expect("image root");
    std::fs::copy(static_scenario(), root.join("scenario")).expect("copy the scenario");
    let tarball = dir.join("image.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar failed: {status}");
    tarball
}

/// Runs `program args`, which must succeed: its stdout, trimmed.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (cargo xtask setup installs it)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `program args`, stdout and stderr together, whatever its exit.
fn run_lossy(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default()
}

/// Polls `f` until it gives something, failing after `DEADLINE`.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Unmounts everything mounted at or below `dir` (the daemons' overlay and
/// bind mounts, shm, netns files), deepest first.
fn unmount_below(dir: &Path) {
    let mounts = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map(|m| m.0)
        .unwrap_or_default();
    let mut points: Vec<PathBuf> = mounts
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let c = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()).expect("a path");
        // SAFETY: a NUL-terminated path; MNT_DETACH never blocks.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Every directory below `dir`, deepest first.
fn dirs_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
                found.push(entry.path());
            }
        }
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// Removes the (empty) cgroups at and below `path`, and its parents up to
/// the top, in every hierarchy: runc makes them in each v1 controller too,
/// beside the ones `TestCgroup` made, and podman adds `conmon` beside its
/// containers.
fn remove_cgroup_everywhere(path: &str) {
    let mounts = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map(|m| m.0)
        .unwrap_or_default();
    for m in mounts
        .iter()
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
    {
        let mut dir = m.mount_point.join(path.trim_start_matches('/'));
        for below in dirs_below(&dir) {
            let _ = std::fs::remove_dir(below);
        }
        while dir != m.mount_point && dir.starts_with(&m.mount_point) {
            // Only empty cgroups go: rmdir refuses the rest.
            let _ = std::fs::remove_dir(&dir);
            if !dir.pop() {
                break;
            }
        }
    }
}

/// A fresh scratch directory.
fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = scratch_dir().join(format!("{name}-{n}"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// What a container's PID 1 printed (`TRUTH` on its stderr), and what
/// `inspect` says of it.
struct Started {
    /// The full container id.
    id: String,
    /// The container's init, as the host sees it.
    init_pid: i64,
    truth: Value,
}

/// A container engine: docker (through its daemon) or podman.
trait Engine {
    /// The client command line, up to the subcommand.
    fn client(&self) -> (&str, Vec<String>);
    /// Where its containers' cgroups go: `<parent>/<id>` (docker) or
    /// `<parent>/libpod-<id>` (podman).
    fn cgroup_parent(&self) -> &str;
    fn image(&self) -> &str;
    /// Options of every `run`.
    fn run_options(&self) -> Vec<String> {
        vec![
            "--network".into(),
            "none".into(),
            "--cgroup-parent".into(),
            self.cgroup_parent().into(),
        ]
    }

    fn cli(&self, args: &[&str]) -> String {
        let (program, mut all) = self.client();
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run(program, &all)
    }

    fn cli_lossy(&self, args: &[&str]) -> String {
        let (program, mut all) = self.client();
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_lossy(program, &all)
    }

    /// `run -d [extra] IMAGE /scenario ARGS`; returns once the scenario
    /// printed its truth (its children are zombies by then).
    fn start(&self, extra: &[&str], scenario: &[&str]) -> Started {
        let mut args: Vec<String> = vec!["run".into(), "-d".into()];
        args.extend(self.run_options());
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(self.image().into());
        args.push("/scenario".into());
        args.extend(scenario.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = self.cli(&args);
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a container id: {id:?}"
        );
        let truth = wait_for("the container's TRUTH line", || {
            self.cli_lossy(&["logs", &id])
                .lines()
                .find_map(|l| l.strip_prefix("TRUTH "))
                .map(|j| serde_json::from_str(j).expect("TRUTH json"))
        });
        let init_pid = self.init_pid(&id);
        Started {
            id,
            init_pid,
            truth,
        }
    }

    /// The container's init as the host sees it (0 once it has exited).
    fn init_pid(&self, id: &str) -> i64 {
        self.cli(&["inspect", "-f", "{{.State.Pid}}", id])
            .parse()
            .expect("a pid")
    }
}

/// dockerd with everything of its own (data, exec root, socket, pidfile,
/// the cgroup parent of its containers) in a scratch directory. Dropped:
/// containers and the image removed, the daemon stopped, its mounts and
/// directories removed.
struct Docker {
    daemon: Child,
    dir: PathBuf,
    socket: String,
    cgroup: TestCgroup,
    image: String,
}

impl Docker {
    fn start() -> Docker {
        for binary in [DOCKER, DOCKERD, RUNC] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: run `cargo xtask setup` (it installs Debian's docker.io, podman and runc)"
            );
        }
        let dir = scratch("docker");
        let socket = format!("unix://{}", dir.join("docker.sock").display());
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("dockerd log");
        let daemon = Command::new(DOCKERD)
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--storage-driver=overlay2",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
            ])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["-H", &socket])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        // `docker` under the cgroup parent names its containers as docker's
        // cgroupfs driver does by default (`.../docker/<id>`).
        let cgroup = TestCgroup::create("docker");
        let mut docker = Docker {
            daemon,
            dir,
            socket,
            cgroup,
            image: format!("reaper-trace-test-{}:latest", std::process::id()),
        };
        // A daemon that cannot start here fails the test, with its reason.
        let log = || std::fs::read_to_string(docker.dir.join("dockerd.log")).unwrap_or_default();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = docker.daemon.try_wait() {
                panic!("dockerd exited ({status}) before answering:\n{}", log());
            }
            let answered = Command::new(DOCKER)
                .args(["-H", &docker.socket, "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer in {DEADLINE:?}:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let tarball = image_tarball(&docker.dir);
        docker.cli(&["import", &tarball.to_string_lossy(), &docker.image]);
        docker
    }
}

impl Engine for Docker {
    fn client(&self) -> (&str, Vec<String>) {
        (DOCKER, vec!["-H".into(), self.socket.clone()])
    }
    fn cgroup_parent(&self) -> &str {
        &self.cgroup.path
    }
    fn image(&self) -> &str {
        &self.image
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let ids = self.cli_lossy(&["ps", "-aq", "--no-trunc"]);
        for id in ids.split_whitespace() {
            self.cli_lossy(&["rm", "-f", id]);
        }
        self.cli_lossy(&["rmi", "-f", &self.image]);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.daemon.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                eprintln!("warning: dockerd did not stop in 30 s: killed");
                let _ = self.daemon.kill();
                let _ = self.daemon.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // dockerd stops the containerd it started; if it was killed, this
        // one is ours to end.
        if let Some(pid) = std::fs::read_to_string(self.dir.join("exec/containerd/containerd.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            && std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains(&*self.dir.to_string_lossy()))
        {
            // SAFETY: the containerd of our own daemon (its command line
            // names our scratch directory).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        unmount_below(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        remove_cgroup_everywhere(&self.cgroup.path);
    }
}

/// Rootful podman with its own storage, run root and temp directory, and
/// its containers' cgroups under a test cgroup. Dropped: containers and
/// images removed, mounts and directories too.
struct Podman {
    dir: PathBuf,
    cgroup: TestCgroup,
    image: String,
}

impl Podman {
    fn start() -> Podman {
        for binary in [PODMAN, RUNC] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: run `cargo xtask setup` (it installs Debian's podman and runc)"
            );
        }
        let podman = Podman {
            dir: scratch("podman"),
            cgroup: TestCgroup::create("podman"),
            image: format!("localhost/reaper-trace-test-{}:latest", std::process::id()),
        };
        let tarball = image_tarball(&podman.dir);
        podman.cli(&["import", &tarball.to_string_lossy(), &podman.image]);
        podman
    }
}

impl Engine for Podman {
    fn client(&self) -> (&str, Vec<String>) {
        let d = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        (
            PODMAN,
            vec![
                "--root".into(),
                d("root"),
                "--runroot".into(),
                d("run"),
                "--tmpdir".into(),
                d("tmp"),
                // crun 1.8 refuses hybrid cgroup hosts; systemd is not
                // running here.
                "--cgroup-manager=cgroupfs".into(),
                "--runtime".into(),
                RUNC.into(),
                "--events-backend=file".into(),
                "--storage-driver=overlay".into(),
            ],
        )
    }
    fn cgroup_parent(&self) -> &str {
        &self.cgroup.path
    }
    fn image(&self) -> &str {
        &self.image
    }
    fn run_options(&self) -> Vec<String> {
        let mut options = vec![
            "--network".into(),
            "none".into(),
            "--cgroup-parent".into(),
            self.cgroup_parent().into(),
        ];
        // Root here lacks CAP_SYS_RESOURCE: podman's default limits (its
        // own, above ours) cannot be set.
        for limit in ["nofile=1024:1024", "nproc=1024:1024"] {
            options.extend(["--ulimit".into(), limit.into()]);
        }
        options
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.cli_lossy(&["rm", "-fa", "-t", "0"]);
        self.cli_lossy(&["rmi", "-af"]);
        unmount_below(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        remove_cgroup_everywhere(&self.cgroup.path);
    }
}

/// `reaper-trace live --json --cgroup PATH --threshold T --record FILE`, in
/// the background, once it traces.
fn trace_cgroup(path: &str, recording: &Path) -> Background {
    Background::start(&[
        "live".into(),
        "--json".into(),
        "--cgroup".into(),
        path.into(),
        "--threshold".into(),
        format!("{}ms", THRESHOLD.as_millis()),
        "--record".into(),
        recording.to_string_lossy().into_owned(),
    ])
}

/// Waits until exits the trace saw `since` are older than the threshold,
/// with a margin: a deterministic bound (the exits happened before), not
/// a guess.
fn let_the_threshold_pass(since: Instant) {
    let until = since + THRESHOLD * 2;
    let now = Instant::now();
    if until > now {
        std::thread::sleep(until - now);
    }
}

/// What /proc says of the children of the container's init: (global pid,
/// pid in the container) of each, all zombies.
fn zombie_children(init_pid: i64) -> Vec<(i64, i64)> {
    let text = std::fs::read_to_string(format!("/proc/{init_pid}/task/{init_pid}/children"))
        .unwrap_or_else(|e| panic!("children of {init_pid}: {e}"));
    let mut found: Vec<(i64, i64)> = text
        .split_whitespace()
        .map(|p| {
            let pid: i64 = p.parse().expect("a pid");
            let process = procfs::process::Process::new(pid as i32).expect("the child");
            assert_eq!(
                process.stat().expect("stat").state,
                'Z',
                "{pid} is a zombie"
            );
            let nspid = process.status().expect("status").nspid.expect("NSpid");
            assert_eq!(nspid.len(), 2, "one namespace deep: {nspid:?}");
            assert_eq!(nspid[0] as i64, pid);
            (pid, nspid[1] as i64)
        })
        .collect();
    found.sort();
    found
}

/// The container's children per the program, as (global, namespace) pids
/// from /proc, which must agree with the program.
fn leaked_children(c: &Started) -> Vec<(i64, i64)> {
    let children = zombie_children(c.init_pid);
    let mut local: Vec<i64> = children.iter().map(|&(_, ns)| ns).collect();
    local.sort();
    let mut truth = pids(&c.truth["children"]);
    truth.sort();
    assert_eq!(local, truth, "/proc and the program agree");
    assert_eq!(
        int(&c.truth["parent"]),
        1,
        "the program is the container's init"
    );
    children
}

/// The findings about `children` (global pids), one each, in pid order.
fn findings_about<'a>(t: &'a Trace, children: &[(i64, i64)]) -> Vec<&'a Value> {
    let globals: Vec<i64> = children.iter().map(|&(g, _)| g).collect();
    let mut found = t.findings_for(&globals);
    found.sort_by_key(|f| int(&f["pid"]));
    assert_eq!(
        found.iter().map(|f| int(&f["pid"])).collect::<Vec<_>>(),
        globals,
        "one finding per leaked child: {:#?}",
        t.findings()
    );
    found
}

/// A finding names the container (runtime, full id, its cgroup's path)
/// and the namespace pids of the child and its parent (the container's
/// init, PID 1 there).
fn assert_names_the_container(
    f: &Value,
    runtime: &str,
    cgroup_path: &str,
    c: &Started,
    child: (i64, i64),
) {
    assert_eq!(f["cgroup"]["path"], cgroup_path, "{f}");
    assert_eq!(f["cgroup"]["container"]["runtime"], runtime, "{f}");
    assert_eq!(f["cgroup"]["container"]["id"], c.id.as_str(), "{f}");
    assert_eq!(int(&f["pid"]), child.0);
    assert_eq!(int(&f["ns_pid"]["pid"]), child.1, "{f}");
    assert_eq!(int(&f["parent_pid"]), c.init_pid, "{f}");
    assert_eq!(int(&f["parent_ns_pid"]["pid"]), 1, "{f}");
}

#[test]
fn docker_a_leaky_pid_1_is_named_with_its_container_and_namespace_pids() {
    kernel_test!();
    let _one = one_at_a_time();
    let docker = Docker::start();
    let recording = temp_path("docker-leaky");
    let trace = trace_cgroup(docker.cgroup_parent(), &recording);
    let c = docker.start(&[], &["noreap_hold", &LEAKS.to_string()]);
    let leaked_at = Instant::now();
    let children = leaked_children(&c);
    let_the_threshold_pass(leaked_at);
    let t = trace.stop();
    t.assert_clean();
    let path = format!("{}/{}", docker.cgroup_parent(), c.id);
    for (f, &child) in findings_about(&t, &children).into_iter().zip(&children) {
        assert_names_the_container(f, "docker", &path, &c, child);
        assert_eq!(f["kind"], "unreaped");
        assert_eq!(f["resolution"], "zombie");
        assert_eq!(f["predates_trace"], false);
        assert!(
            f["hint"]
                .as_str()
                .is_some_and(|h| h.contains("PID 1 of its pid namespace")),
            "{f}"
        );
    }
    assert_eq!(t.findings().len(), LEAKS, "{:#?}", t.findings());
    assert_report_agrees(&recording, &t);
}

#[test]
fn docker_init_reaps_what_a_dead_app_leaked() {
    kernel_test!();
    let _one = one_at_a_time();
    let docker = Docker::start();
    let recording = temp_path("docker-init");
    let trace = trace_cgroup(docker.cgroup_parent(), &recording);
    // The app (under docker-init) forks children that exit, never waits,
    // and exits once they are zombies. The kernel reparents them to the
    // namespace's init (exit_notify → forget_original_parent), which reaps
    // them at once: docker-init cleans up, but only because the app died
    // (had it lived on, they would be zombies still, as in the test above:
    // an init reaps orphans only). So each is a child its parent never
    // reaped, adopted and reaped by docker-init within milliseconds; the
    // app itself was reaped by its parent, docker-init.
    let c = docker.start(&["--init"], &["noreap", &LEAKS.to_string()]);
    // Not PID 1: docker-init is (its pid in the container depends on how
    // many threads runc's init had: pids count threads too).
    let app_ns_pid = int(&c.truth["parent"]);
    assert_ne!(app_ns_pid, 1, "the app runs under docker-init");
    let code = docker.cli(&["wait", &c.id]);
    assert_eq!(code, "0", "the container exits with the app's status");
    let t = trace.stop();
    t.assert_clean();
    // The app, as the kernel numbered it in the container.
    let app = t.one("ns_pids", "the app", |e| {
        int(&e["levels"][1]["pid"]) == app_ns_pid
    });
    let (app_pid, init_pid) = (int(&app["child_tgid"]), int(&app["tgid"]));
    let mut local = pids(&c.truth["children"]);
    local.sort();
    let mut children: Vec<(i64, i64)> = t
        .find("ns_pids", |e| int(&e["tgid"]) == app_pid)
        .into_iter()
        .map(|e| (int(&e["child_tgid"]), int(&e["levels"][1]["pid"])))
        .collect();
    children.sort_by_key(|&(_, ns)| ns);
    assert_eq!(
        children.iter().map(|&(_, ns)| ns).collect::<Vec<_>>(),
        local,
        "the app's children, as the program printed them"
    );
    for &(child, ns) in &children {
        // Reaped by docker-init (PID 1), which the kernel gave them.
        let reap = t.one("wait_exit", "docker-init reaping a child", |e| {
            int(&e["reaped_pid"]) == child
        });
        assert_eq!(int(&reap["tgid"]), init_pid, "{reap}");
        assert_eq!(int(&reap["reaped_ns_pid"]), ns, "{reap}");
    }
    let app_reap = t.one("wait_exit", "docker-init reaping the app", |e| {
        int(&e["reaped_pid"]) == app_pid
    });
    assert_eq!(int(&app_reap["tgid"]), init_pid);
    let path = format!("{}/{}", docker.cgroup_parent(), c.id);
    let found = findings_about(&t, &children);
    for (f, &(child, ns)) in found.iter().zip(&children) {
        assert_eq!(f["cgroup"]["path"], path.as_str(), "{f}");
        assert_eq!(f["cgroup"]["container"]["runtime"], "docker", "{f}");
        assert_eq!((int(&f["pid"]), int(&f["ns_pid"]["pid"])), (child, ns));
        assert_eq!(f["kind"], "unreaped", "{f}");
        assert_eq!(f["resolution"], "adopted", "{f}");
        assert_eq!(f["reap_kind"], "adopted", "{f}");
        assert_eq!(int(&f["parent_pid"]), app_pid, "{f}");
        assert_eq!(int(&f["parent_ns_pid"]["pid"]), app_ns_pid, "{f}");
        assert_eq!(int(&f["reaped_by_pid"]), init_pid, "{f}");
        assert_eq!(int(&f["reaped_by_ns_pid"]["pid"]), 1, "{f}");
        assert_eq!(f["parent_end"]["exit_code"], 0, "{f}");
        assert!(codes(f).contains(&"parent_exited".to_owned()), "{f}");
    }
    // And docker-init itself was orphaned as it started: `runc create`
    // forks it and exits, and containerd's shim (a subreaper) adopts it.
    // Information, true of every container.
    let others: Vec<&Value> = t
        .findings()
        .into_iter()
        .filter(|f| !children.iter().any(|&(g, _)| g == int(&f["pid"])))
        .collect();
    assert_eq!(others.len(), 1, "{others:#?}");
    assert_eq!(others[0]["kind"], "orphaned", "{:#}", others[0]);
    assert_eq!(int(&others[0]["pid"]), init_pid);
    assert_eq!(others[0]["comm"], "docker-init");
    assert!(others[0]["adopted_by_pid"].is_u64(), "{:#}", others[0]);
    assert_report_agrees(&recording, &t);
}

/// Starts a leaky container, traces it while `end` stops it, and returns
/// the finding about each leaked child with the sender pids of the kernel's
/// own signal records to the container's init.
fn stop_a_leaky_container(end: &[&str]) -> (Trace, Vec<Value>, Started) {
    let docker = Docker::start();
    let c = docker.start(&[], &["noreap_hold", &LEAKS.to_string()]);
    let children = leaked_children(&c);
    let recording = temp_path("docker-stop");
    let trace = trace_cgroup(docker.cgroup_parent(), &recording);
    let mut command = end.to_vec();
    command.push(&c.id);
    docker.cli(&command);
    let exit = docker.cli(&["wait", &c.id]);
    assert_eq!(exit, "137", "killed by SIGKILL");
    let t = trace.stop();
    t.assert_clean();
    let path = format!("{}/{}", docker.cgroup_parent(), c.id);
    let found: Vec<Value> = findings_about(&t, &children).into_iter().cloned().collect();
    for (f, &child) in found.iter().zip(&children) {
        assert_names_the_container(f, "docker", &path, &c, child);
        // Older than the trace; the dying init reaped them as the
        // namespace ended.
        assert_eq!(f["predates_trace"], true, "{f}");
        assert_eq!(int(&f["reaped_by_pid"]), c.init_pid, "{f}");
    }
    assert_report_agrees(&recording, &t);
    (t, found, c)
}

/// The one signal `sig` the trace saw sent to `target`: its sender.
fn sender_of(t: &Trace, sig: i64, target: i64) -> i64 {
    let sent = t.one("signal_generate", "the signal", |e| {
        int(&e["sig"]) == sig && int(&e["target_tgid"]) == target
    });
    int(&sent["tgid"])
}

#[test]
fn docker_stop_names_who_sent_sigterm_then_sigkill() {
    kernel_test!();
    let _one = one_at_a_time();
    // PID 1 of a namespace ignores SIGTERM at its default action: docker
    // stop sends it, waits 1 s, then SIGKILL.
    let (t, found, c) = stop_a_leaky_container(&["stop", "-t", "1"]);
    let term_from = sender_of(&t, 15, c.init_pid);
    let kill_from = sender_of(&t, 9, c.init_pid);
    for f in &found {
        let end = &f["parent_end"];
        assert_eq!(end["signal"], 9, "{f}");
        // containerd's shim runs `runc kill` for each: gone within 50 µs,
        // and outside the traced cgroup, yet named.
        assert_eq!(end["after_signal"]["sig"], 15, "{f}");
        assert_eq!(int(&end["after_signal"]["from_pid"]), term_from, "{f}");
        assert_eq!(end["after_signal"]["from_comm"], "runc", "{f}");
        assert_eq!(int(&end["signal_from"]["from_pid"]), kill_from, "{f}");
        assert_eq!(end["signal_from"]["from_comm"], "runc", "{f}");
    }
}

#[test]
fn docker_kill_names_who_sent_sigkill() {
    kernel_test!();
    let _one = one_at_a_time();
    let (t, found, c) = stop_a_leaky_container(&["kill"]);
    let kill_from = sender_of(&t, 9, c.init_pid);
    for f in &found {
        let end = &f["parent_end"];
        assert_eq!(end["signal"], 9, "{f}");
        assert_eq!(end["after_signal"], Value::Null, "{f}");
        assert_eq!(int(&end["signal_from"]["from_pid"]), kill_from, "{f}");
        assert_eq!(end["signal_from"]["from_comm"], "runc", "{f}");
    }
}

#[test]
fn docker_zombies_older_than_the_trace_are_named_with_their_container() {
    kernel_test!();
    let _one = one_at_a_time();
    let docker = Docker::start();
    let c = docker.start(&[], &["noreap_hold", &LEAKS.to_string()]);
    // /proc shows the zombies before tracing starts.
    let children = leaked_children(&c);
    let recording = temp_path("docker-older");
    let trace = trace_cgroup(docker.cgroup_parent(), &recording);
    let_the_threshold_pass(Instant::now());
    let t = trace.stop();
    t.assert_clean();
    let path = format!("{}/{}", docker.cgroup_parent(), c.id);
    for (f, &child) in findings_about(&t, &children).into_iter().zip(&children) {
        assert_names_the_container(f, "docker", &path, &c, child);
        assert_eq!(f["predates_trace"], true, "{f}");
        assert_eq!(f["resolution"], "zombie", "{f}");
        // The cgroup's id is the directory's inode, as the kernel numbers it.
        let (v2, _) = cgroup_mounts();
        let dir = v2.expect("cgroup2").join(path.trim_start_matches('/'));
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir).expect("cgroup"));
        assert_eq!(f["cgroup"]["id"].as_u64(), Some(inode), "{f}");
    }
    // `report` names them from the recording alone.
    assert_report_agrees(&recording, &t);
    let text = report_output(&recording, &[]);
    assert_eq!(
        text.matches(&format!("[docker {}]", &c.id[..12])).count(),
        LEAKS,
        "{text}"
    );
}

/// Scrapes until `metric` with `labels` reads `expected`; the last text.
fn scrape_until(
    addr: std::net::SocketAddr,
    metric: &str,
    labels: &[(&str, &str)],
    expected: f64,
) -> String {
    let mut last = String::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok((200, body)) = http_get(addr, "/metrics") {
            if sample(&body, metric, labels) == Some(expected) {
                return body;
            }
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "{metric}{labels:?} never read {expected}:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `serve` exports each container's zombies under its labels: one whose
/// zombies are older than the daemon (named from /proc's cgroup), and one
/// started after.
fn zombies_per_container(engine: &dyn Engine, runtime: &str, cgroup_of: impl Fn(&str) -> String) {
    let before = engine.start(&[], &["noreap_hold", &LEAKS.to_string()]);
    leaked_children(&before);
    let threshold = format!("{}ms", THRESHOLD.as_millis());
    let (serve, addr) = start_serve(&[
        "--cgroup",
        engine.cgroup_parent(),
        "--threshold",
        &threshold,
    ]);
    let after = engine.start(&[], &["noreap_hold", "2"]);
    assert_eq!(leaked_children(&after).len(), 2);
    for (c, n) in [(&before, LEAKS), (&after, 2)] {
        let path = cgroup_of(&c.id);
        let labels = [
            ("cgroup", path.as_str()),
            ("runtime", runtime),
            ("container", &c.id[..12]),
        ];
        scrape_until(addr, "reaper_trace_zombies", &labels, n as f64);
    }
    let (_, body) = http_get(addr, "/metrics").expect("scrape");
    // Nothing under an unnamed cgroup.
    assert_eq!(
        sample(&body, "reaper_trace_zombies", &[("cgroup", "")]),
        None,
        "{body}"
    );
    let t = serve.stop();
    assert!(t.status.success(), "serve failed: {}", t.stderr);
}

#[test]
fn serve_exports_docker_zombies_per_container() {
    kernel_test!();
    let _one = one_at_a_time();
    let docker = Docker::start();
    let parent = docker.cgroup_parent().to_owned();
    zombies_per_container(&docker, "docker", |id| format!("{parent}/{id}"));
}

#[test]
fn podman_a_leaky_pid_1_is_named_with_its_container() {
    kernel_test!();
    let _one = one_at_a_time();
    let podman = Podman::start();
    let recording = temp_path("podman-leaky");
    let trace = trace_cgroup(podman.cgroup_parent(), &recording);
    let c = podman.start(&[], &["noreap_hold", &LEAKS.to_string()]);
    let leaked_at = Instant::now();
    let children = leaked_children(&c);
    let_the_threshold_pass(leaked_at);
    let t = trace.stop();
    t.assert_clean();
    let path = format!("{}/libpod-{}", podman.cgroup_parent(), c.id);
    for (f, &child) in findings_about(&t, &children).into_iter().zip(&children) {
        assert_names_the_container(f, "podman", &path, &c, child);
        assert_eq!(f["kind"], "unreaped");
        assert_eq!(f["resolution"], "zombie");
    }
    assert_eq!(t.findings().len(), LEAKS, "{:#?}", t.findings());
    assert_report_agrees(&recording, &t);
}

#[test]
fn serve_exports_podman_zombies_per_container() {
    kernel_test!();
    let _one = one_at_a_time();
    let podman = Podman::start();
    let parent = podman.cgroup_parent().to_owned();
    zombies_per_container(&podman, "podman", |id| format!("{parent}/libpod-{id}"));
}

/// docs/fleet/daemonset.yaml as JSON documents (through the PyYAML that
/// kubernetes-validate brings into the test venv).
fn daemonset_documents() -> Vec<Value> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/fleet/daemonset.yaml");
    let out = Command::new(venv_bin("python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(&file)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the YAML as JSON")
}

/// The `podman run` options that give a container what the pod spec
/// gives it: the pid namespace, user, capabilities, read-only root,
/// privilege escalation, seccomp, memory limit and host mounts. Secret
/// volumes are bound from `secrets` (a directory per secret name). Fails on
/// anything in the spec it does not know how to give, so the spec cannot
/// grow a setting this test ignores.
fn podman_options_for(pod: &Value, secrets: &Path) -> Vec<String> {
    let known_pod = [
        "hostPID",
        "tolerations",
        "priorityClassName",
        "automountServiceAccountToken",
        "enableServiceLinks",
        "terminationGracePeriodSeconds",
        "containers",
        "volumes",
    ];
    for key in pod.as_object().expect("a pod spec").keys() {
        assert!(
            known_pod.contains(&key.as_str()),
            "pod spec {key}: not run by this test"
        );
    }
    let container = &pod["containers"][0];
    let mut options = Vec::new();
    if pod["hostPID"] == true {
        options.push("--pid=host".to_owned());
    }
    // What the kubelet's runtime gives every container on a cgroup v2 node:
    // a cgroup namespace of its own, so /proc/PID/cgroup inside reads
    // relative paths; the tracer must name cgroups from the host's tree.
    options.push("--cgroupns=private".to_owned());
    let security = &container["securityContext"];
    options.push(format!("--user={}", security["runAsUser"]));
    assert_eq!(security["privileged"], false);
    if security["readOnlyRootFilesystem"] == true {
        options.push("--read-only".to_owned());
    }
    if security["allowPrivilegeEscalation"] == false {
        options.push("--security-opt=no-new-privileges".to_owned());
    }
    assert_eq!(security["seccompProfile"]["type"], "Unconfined");
    options.push("--security-opt=seccomp=unconfined".to_owned());
    let capabilities = &security["capabilities"];
    assert_eq!(capabilities["drop"], serde_json::json!(["ALL"]));
    options.push("--cap-drop=all".to_owned());
    for cap in capabilities["add"].as_array().expect("added capabilities") {
        options.push(format!("--cap-add={}", cap.as_str().expect("a name")));
    }
    let memory = container["resources"]["limits"]["memory"]
        .as_str()
        .expect("a memory limit");
    let mib = memory.strip_suffix("Mi").expect("a limit in Mi");
    options.push(format!("--memory={mib}m"));
    let volumes = pod["volumes"].as_array().expect("volumes");
    for mount in container["volumeMounts"].as_array().expect("mounts") {
        let volume = volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mount's volume");
        let source = if let Some(path) = volume["hostPath"]["path"].as_str() {
            PathBuf::from(path)
        } else if let Some(name) = volume["secret"]["secretName"].as_str() {
            secrets.join(name)
        } else {
            panic!("volume {volume}: not run by this test");
        };
        let mut flags = vec![if mount["readOnly"] == true {
            "ro"
        } else {
            "rw"
        }];
        match mount["mountPropagation"].as_str() {
            None => {}
            Some("HostToContainer") => flags.push("rslave"),
            Some(other) => panic!("mountPropagation {other}: not run by this test"),
        }
        options.push(format!(
            "--volume={}:{}:{}",
            source.display(),
            mount["mountPath"].as_str().expect("a mount path"),
            flags.join(",")
        ));
    }
    options
}

/// A self-signed certificate for 127.0.0.1 and the web config of the
/// DaemonSet's Secret, in `dir/<secret name>`, as `kubectl create secret`
/// would project them.
fn daemonset_secret(dir: &Path, pod: &Value) -> PathBuf {
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v.get("secret").is_some())
        .expect("a secret volume");
    let secret = dir.join(volume["secret"]["secretName"].as_str().expect("a name"));
    std::fs::create_dir_all(&secret).expect("secret dir");
    let s = |name: &str| secret.join(name).to_string_lossy().into_owned();
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=reaper-trace",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            &s("tls.key"),
            "-out",
            &s("tls.crt"),
        ],
    );
    std::fs::write(
        secret.join("web.yml"),
        "tls_server_config:\n  cert_file: /etc/reaper-trace/web/tls.crt\n  key_file: /etc/reaper-trace/web/tls.key\n",
    )
    .expect("web.yml");
    secret
}

/// GET https://127.0.0.1:PORT/metrics from inside the network namespace of
/// `pid`, checking the certificate against `ca`: (status, body).
fn scrape_in_netns(pid: i64, port: u16, ca: &Path) -> Option<(u16, String)> {
    let out = Command::new("nsenter")
        .arg("-t")
        .arg(pid.to_string())
        .args(["-n", "curl", "-sS", "--max-time", "5", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}/metrics"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_owned()))
}

/// The DaemonSet's container, run by podman as the pod spec says (its
/// image from docs/fleet/Containerfile, its arguments, security context,
/// mounts, Secret and memory limit), passes its readiness probe and
/// counts the zombies of a container started beside it, under that
/// container's name.
#[test]
fn daemonset_runs_as_written_and_counts_a_containers_zombies() {
    kernel_test!();
    let _one = one_at_a_time();
    let documents = daemonset_documents();
    let daemonset = documents
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let podman = Podman::start();
    let dist = std::env::current_exe()
        .expect("current exe")
        .ancestors()
        .nth(3)
        .expect("target dir")
        .join("dist");
    let image = format!("localhost/{}", container["image"].as_str().expect("image"));
    let containerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/fleet/Containerfile");
    podman.cli(&[
        "build",
        "--network=none",
        "-t",
        &image,
        "-f",
        &containerfile.to_string_lossy(),
        &dist.to_string_lossy(),
    ]);
    let dir = scratch("daemonset");
    let secret = daemonset_secret(&dir, pod);
    let mut args: Vec<String> = vec!["run".into(), "-d".into()];
    args.extend(podman.run_options());
    args.extend(podman_options_for(pod, &dir));
    args.push(image);
    args.extend(
        container["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("an argument").to_owned()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = podman.cli(&args);
    let tracer_pid = wait_for("the tracer's container to run", || {
        Some(podman.init_pid(&id)).filter(|&p| p > 0)
    });
    // The readiness probe: GET /metrics over HTTPS on the named port.
    let probe = &container["readinessProbe"]["httpGet"];
    assert_eq!(probe["scheme"], "HTTPS");
    let port = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == probe["port"])
        .and_then(|p| p["containerPort"].as_u64())
        .expect("the probe's port") as u16;
    let ca = secret.join("tls.crt");
    wait_for("the readiness probe to pass", || {
        let ready = scrape_in_netns(tracer_pid, port, &ca).filter(|(code, _)| *code == 200);
        if ready.is_none() {
            assert_ne!(
                podman.init_pid(&id),
                0,
                "the tracer's container exited: {}",
                podman.cli_lossy(&["logs", &id])
            );
        }
        ready
    });
    let leaky = podman.start(&[], &["noreap_hold", &LEAKS.to_string()]);
    assert_eq!(leaked_children(&leaky).len(), LEAKS);
    let path = format!("{}/libpod-{}", podman.cgroup_parent(), leaky.id);
    let labels = [
        ("cgroup", path.as_str()),
        ("runtime", "podman"),
        ("container", &leaky.id[..12]),
    ];
    let deadline = Instant::now() + DEADLINE;
    loop {
        let scraped = scrape_in_netns(tracer_pid, port, &ca);
        if let Some((200, body)) = &scraped
            && sample(body, "reaper_trace_zombies", &labels) == Some(LEAKS as f64)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the DaemonSet's tracer never counted {LEAKS} zombies for {labels:?}: {scraped:?}\n{}",
            podman.cli_lossy(&["logs", &id])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Stopped as the kubelet stops it (SIGTERM, then the grace period).
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    podman.cli(&["stop", "-t", &grace.to_string(), &id]);
    let logs = podman.cli_lossy(&["logs", &id]);
    assert!(!logs.contains("panicked"), "{logs}");
    let _ = std::fs::remove_dir_all(&dir);
}
