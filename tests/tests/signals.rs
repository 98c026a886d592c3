//! Kernel tests of the command under `check`/`live`/`record` and of the
//! signals the tracer receives: the signal state the command starts with,
//! SIGTERM/SIGINT/SIGHUP forwarded to it, SIGHUP ending `record` and
//! `serve` cleanly, a full disk that must not abandon the command, sudo's
//! variables failing closed, and arguments passed as bytes.

use std::{
    ffi::OsStr,
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use reaper_trace_tests::*;
use serde_json::Value;

/// What a child says about its own signal state
/// (Not through a shell: dash clears the mask it inherits.)
const SHOW_SIGNALS: [&str; 3] = ["grep", "-E", "^Sig(Ign|Blk)"];

/// The state the test's parent gives: as a plain shell, under `nohup`
/// (SIGHUP ignored), with a signal blocked, with SIGPIPE ignored.
#[derive(Clone, Copy, Debug)]
enum Setup {
    Plain,
    HupIgnored,
    /// As a non-interactive shell starts a background job (`cmd &`).
    IntIgnored,
    Usr1Blocked,
    PipeIgnored,
}

impl Setup {
    const ALL: [Setup; 5] = [
        Setup::Plain,
        Setup::HupIgnored,
        Setup::IntIgnored,
        Setup::Usr1Blocked,
        Setup::PipeIgnored,
    ];

    /// Applies it in the child before exec (std's spawn has already reset
    /// the mask and SIGPIPE by then).
    fn apply(self, cmd: &mut Command) -> &mut Command {
        // SAFETY: signal and sigprocmask are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                match self {
                    Setup::Plain => {}
                    Setup::HupIgnored => {
                        libc::signal(libc::SIGHUP, libc::SIG_IGN);
                    }
                    Setup::IntIgnored => {
                        libc::signal(libc::SIGINT, libc::SIG_IGN);
                    }
                    Setup::PipeIgnored => {
                        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                    }
                    Setup::Usr1Blocked => {
                        let mut set: libc::sigset_t = std::mem::zeroed();
                        libc::sigemptyset(&mut set);
                        libc::sigaddset(&mut set, libc::SIGUSR1);
                        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                    }
                }
                Ok(())
            })
        }
    }

    /// The bit that shows it in SigIgn or SigBlk, to prove the setup took.
    fn expected(self) -> Option<(&'static str, i32)> {
        match self {
            Setup::Plain => None,
            Setup::HupIgnored => Some(("SigIgn", libc::SIGHUP)),
            Setup::IntIgnored => Some(("SigIgn", libc::SIGINT)),
            Setup::PipeIgnored => Some(("SigIgn", libc::SIGPIPE)),
            Setup::Usr1Blocked => Some(("SigBlk", libc::SIGUSR1)),
        }
    }
}

fn signal_lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with("SigIgn:") || l.starts_with("SigBlk:"))
        .map(str::to_owned)
        .collect()
}

fn mask_of(lines: &[String], field: &str) -> u64 {
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {lines:?}"));
    u64::from_str_radix(line.trim(), 16).expect("a hex mask")
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run")
}

#[test]
fn the_command_starts_with_the_signal_state_of_a_plain_child() {
    kernel_test!();
    for setup in Setup::ALL {
        let plain = output(
            setup.apply(
                Command::new(SHOW_SIGNALS[0])
                    .args(&SHOW_SIGNALS[1..])
                    .arg("/proc/self/status"),
            ),
        );
        let traced = output(
            setup.apply(
                Command::new(tool())
                    .args(["check", "--"])
                    .args(SHOW_SIGNALS)
                    .arg("/proc/self/status")
                    .stderr(Stdio::piped()),
            ),
        );
        let (plain, traced_lines) = (signal_lines(&plain.stdout), signal_lines(&traced.stdout));
        assert_eq!(plain.len(), 2, "{setup:?}: {plain:?}");
        assert_eq!(
            traced_lines,
            plain,
            "{setup:?}: the command's signal state differs from a plain child's\n{}",
            String::from_utf8_lossy(&traced.stderr)
        );
        assert_eq!(traced.status.code(), Some(0), "{setup:?}");
        if let Some((field, signo)) = setup.expected() {
            assert_ne!(
                mask_of(&plain, field) & (1 << (signo - 1)),
                0,
                "{setup:?} shows in {field}"
            );
        }
    }
}

#[test]
fn a_broken_pipe_kills_the_command_as_it_would_under_a_shell() {
    kernel_test!();
    if which("bash").is_none() {
        panic!("bash is needed (cargo xtask setup installs it)");
    }
    let script = "yes | head -1 >/dev/null; echo \"PIPESTATUS=${PIPESTATUS[0]}\"";
    let status_of = |out: &Output| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("PIPESTATUS=").map(str::to_owned))
            .unwrap_or_else(|| panic!("no status: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let plain = output(Command::new("bash").args(["-c", script]));
    let traced = output(
        Command::new(tool())
            .args(["check", "--", "bash", "-c", script])
            .stderr(Stdio::piped()),
    );
    assert_eq!(status_of(&plain), "141", "yes dies of SIGPIPE (128 + 13)");
    assert_eq!(status_of(&traced), status_of(&plain));
}

/// Polls `cond` every 10 ms until it holds, or panics after `limit`.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Running, as /proc says (absent or a zombie is not).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.as_bytes()[0]);
        state != Some(b'Z')
    })
}

/// A process the test inherited (it is a subreaper) and that is dead: reap
/// it, so that nothing is left behind.
fn reap_if_ours(pid: i32) {
    // SAFETY: WNOHANG wait for one pid; fails harmlessly when not ours.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "INT",
        libc::SIGTERM => "TERM",
        libc::SIGHUP => "HUP",
        _ => unreachable!(),
    }
}

/// `reaper-trace <args> -- sh -c SCRIPT`, where the shell starts one child
/// that ignores every stop signal and one that does not, says so, and
/// waits; on SIGTERM, SIGINT or SIGHUP it notes which one it got and exits
/// 0. The tracer is sent `signal` once everything runs. Returns the
/// tracer's output, what the shell noted, those of its children still
/// running once the tracer exited (killed then, so that none is left
/// behind), and how many of them ignored `signal` (sh runs its background
/// jobs with SIGINT ignored, too).
fn interrupt(args: &[&str], signal: i32) -> (Output, String, Vec<i32>, usize) {
    let dir = scratch_dir().join(format!("interrupt-{}-{}", args[0], signal_name(signal)));
    std::fs::create_dir_all(&dir).unwrap();
    let (got, pids, ready) = (dir.join("got"), dir.join("pids"), dir.join("ready"));
    let script = format!(
        "exec >/dev/null 2>&1; for s in TERM INT HUP; do trap \"echo $s > {got}; exit 0\" $s; done; \
         (trap '' TERM INT HUP; exec sleep 300) & echo $! >> {pids}; \
         sleep 300 & echo $! >> {pids}; \
         echo > {ready}; wait",
        got = got.display(),
        pids = pids.display(),
        ready = ready.display(),
    );
    let child = Command::new(tool())
        .args(args)
        .args(["--drain-timeout", "1s", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reaper-trace");
    let tracer = child.id() as i32;
    let mut child = child;
    wait_until(
        "the command to start its children",
        Duration::from_secs(60),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{args:?}: reaper-trace ended early: {status:?}");
            }
            ready.exists()
        },
    );
    let read_pids = || -> Vec<i32> {
        std::fs::read_to_string(&pids)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    };
    // Their dispositions are final once they run sleep.
    for pid in read_pids() {
        wait_until(
            "the children to exec sleep",
            Duration::from_secs(30),
            || {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            },
        );
    }
    let ignoring = read_pids()
        .into_iter()
        .filter(|&pid| ignored(pid) & (1 << (signal - 1)) != 0)
        .count();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(tracer, signal) };
    wait_bounded(&mut child);
    let out = child.wait_with_output().expect("output");
    let noted = std::fs::read_to_string(&got).unwrap_or_default();
    let pids = read_pids();
    assert_eq!(pids.len(), 2);
    let survivors: Vec<i32> = pids.into_iter().filter(|&pid| running(pid)).collect();
    for &pid in &survivors {
        // SAFETY: a process of this test's own scenario.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for pid in read_pids() {
        wait_until("the leftovers to die", Duration::from_secs(10), || {
            reap_if_ours(pid);
            !running(pid)
        });
        reap_if_ours(pid);
    }
    (out, noted.trim().to_owned(), survivors, ignoring)
}

/// SigIgn of a live process.
fn ignored(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("alive");
    let lines: Vec<String> = status.lines().map(str::to_owned).collect();
    mask_of(&lines, "SigIgn")
}

fn assert_interrupted(args: &[&str], signal: i32) -> (String, String) {
    let (out, noted, survivors, ignoring) = interrupt(args, signal);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let name = signal_name(signal);
    assert_eq!(
        noted, name,
        "{args:?}: the command got SIG{name} from the tracer\n{stderr}"
    );
    assert!(
        survivors.is_empty(),
        "{args:?}: {survivors:?} of the command's tree outlived the tracer"
    );
    assert_eq!(
        out.status.code(),
        Some(128 + signal),
        "{args:?}: 128 + SIG{name}\n{stdout}\n{stderr}"
    );
    // The children that ignore the signal outlive the drain timeout; the
    // others end with it, forwarded once the command is gone.
    assert!(ignoring >= 1, "the test's own child ignores SIG{name}");
    assert!(
        stderr.contains("did not end within the drain timeout (1s)")
            && stderr.contains(&format!("killed {ignoring} process(es)")),
        "{args:?}: the {ignoring} child(ren) that ignore SIG{name} were killed, and said so: {stderr}"
    );
    (stdout, stderr)
}

#[test]
fn check_forwards_sigterm_sigint_and_sighup_to_the_command_and_reports() {
    kernel_test!();
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let (stdout, _) = assert_interrupted(&["check"], signal);
        let name = signal_name(signal);
        assert!(
            stdout.contains("== reaper-trace report =="),
            "the report is printed: {stdout}"
        );
        let verdict = stdout.lines().last().unwrap_or_default();
        assert!(
            verdict.contains(&format!(
                "interrupted by SIG{name}: forwarded to the command"
            )) && verdict.ends_with(&format!("(exit {})", 128 + signal)),
            "{verdict}"
        );
    }
}

#[test]
fn record_and_live_forward_the_signal_and_write_a_complete_recording() {
    kernel_test!();
    for (mode, signal) in [("record", libc::SIGTERM), ("live", libc::SIGHUP)] {
        let file = temp_path(mode);
        let file_arg = file.to_str().unwrap();
        let args: Vec<&str> = match mode {
            "record" => vec!["record", "--json", "-o", file_arg],
            _ => vec!["live", "--json", "--no-events", "--record", file_arg],
        };
        let (stdout, _) = assert_interrupted(&args, signal);
        let totals = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["type"] == "totals")
            .unwrap_or_else(|| panic!("{mode}: no totals: {stdout}"));
        assert_eq!(
            totals["interrupted_by"],
            format!("SIG{}", signal_name(signal))
        );
        assert!(totals["killed_after_drain_timeout"].as_u64() >= Some(1));
        let (code, stderr) = report_stderr(&file);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!stderr.contains("truncated"), "{mode}: {stderr}");
    }
}

fn report_stderr(file: &Path) -> (Option<i32>, String) {
    let out = output(
        Command::new(tool())
            .arg("report")
            .arg(file)
            .stdout(Stdio::null()),
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sighup_ends_record_without_a_command_with_its_trailer() {
    kernel_test!();
    let mut target = Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("spawn sleep");
    let file = temp_path("sighup");
    let recorder = Background::start(&[
        "record".into(),
        "--json".into(),
        "-o".into(),
        file.to_str().unwrap().into(),
        "--pid".into(),
        target.id().to_string(),
    ]);
    let trace = recorder.stop_with(libc::SIGHUP);
    let _ = target.kill();
    let _ = target.wait();
    assert!(
        trace.status.success(),
        "a clean stop: {:?}\n{}",
        trace.status,
        trace.stderr
    );
    assert!(!trace.report.is_null(), "the report is printed");
    assert!(!trace.totals.is_null(), "the totals are printed");
    let (code, stderr) = report_stderr(&file);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains("truncated"),
        "a SIGHUP stop has its trailer: {stderr}"
    );
}

#[test]
fn sighup_shuts_serve_down_cleanly() {
    kernel_test!();
    let (serve, _) = start_serve(&[]);
    let trace = serve.stop_with(libc::SIGHUP);
    assert!(
        trace.status.success(),
        "{:?}\n{}",
        trace.status,
        trace.stderr
    );
    assert!(
        trace.stderr.contains(" events, ") && trace.stderr.contains(" lost"),
        "the totals line: {}",
        trace.stderr
    );
}

/// A small tmpfs, unmounted and removed on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(name: &str) -> SmallDisk {
        let dir = std::env::temp_dir().join(format!(
            "reaper-trace-signals-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mounting a small tmpfs");
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_full_disk_does_not_abandon_the_command() {
    kernel_test!();
    let cycles = 3000;
    for mode in ["record", "live"] {
        let disk = SmallDisk::mount(mode);
        let file = disk.0.join("full.rtrace");
        let file_arg = file.to_str().unwrap();
        let mut args: Vec<&str> = match mode {
            "record" => vec!["record", "--json", "-o", file_arg],
            _ => vec!["live", "--json", "--no-events", "--record", file_arg],
        };
        let bin = scenario_bin();
        let count = cycles.to_string();
        args.extend(["--", bin.to_str().unwrap(), "storm", &count]);
        let out = output(Command::new(tool()).args(&args));
        drop(disk);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            stderr.contains("No space left on device")
                && stderr.contains("tracing goes on without the recording"),
            "{mode}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(2), "{mode}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains("No space left on device") && last.contains("full.rtrace"),
            "{mode}: the run ends naming the disk error: {last}"
        );
        // The command ran to its end, traced all along.
        let trace = Trace::parse(&stdout, stderr, out.status);
        assert_eq!(int(&trace.truth("cycles")["reaped"]), cycles, "{mode}");
        assert_eq!(trace.totals["command_exit_code"], 0, "{mode}");
        assert!(
            trace.totals["events"]["exit"].as_i64().unwrap_or(0) > cycles,
            "{mode}: every exit of the storm was traced after the disk filled: {}",
            trace.totals
        );
    }
}

fn check_with_sudo_env(uid: Option<&str>, gid: Option<&str>, marker: &Path) -> Output {
    let mut cmd = Command::new(tool());
    cmd.args(["check", "--", "touch"])
        .arg(marker)
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID");
    if let Some(uid) = uid {
        cmd.env("SUDO_UID", uid);
    }
    if let Some(gid) = gid {
        cmd.env("SUDO_GID", gid);
    }
    output(cmd.stdout(Stdio::null()).stderr(Stdio::piped()))
}

#[test]
fn broken_sudo_variables_fail_closed_without_running_the_command() {
    kernel_test!();
    let cases: &[(Option<&str>, Option<&str>, &str)] = &[
        (Some("1000"), None, "SUDO_GID is not"),
        (None, Some("1000"), "SUDO_UID is not"),
        (Some("abc"), Some("1000"), "SUDO_UID=abc"),
        (Some("4294967295"), Some("1000"), "SUDO_UID=4294967295"),
        (Some("-1"), Some("1000"), "SUDO_UID=-1"),
        (Some("1000"), Some("x1"), "SUDO_GID=x1"),
    ];
    for &(uid, gid, says) in cases {
        let marker = temp_path("sudo-marker");
        let out = check_with_sudo_env(uid, gid, &marker);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{uid:?} {gid:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(says), "{uid:?} {gid:?}: {stderr}");
        assert!(!marker.exists(), "{uid:?} {gid:?}: the command ran");
    }
    // --as-root keeps root, whatever sudo's variables say.
    let marker = temp_path("sudo-as-root");
    let out = output(
        Command::new(tool())
            .args(["check", "--as-root", "--", "touch"])
            .arg(&marker)
            .env("SUDO_UID", "abc")
            .env_remove("SUDO_GID")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists());
}

#[test]
fn arguments_are_bytes_passed_on_unchanged() {
    kernel_test!();
    let arg = OsStr::from_bytes(b"caf\xe9\x1b[2J");
    let out = output(
        Command::new(tool())
            .args(["check", "--", "/bin/echo"])
            .arg(arg)
            .stderr(Stdio::piped()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        out.stdout.starts_with(b"caf\xe9\x1b[2J\n"),
        "echo printed the bytes as given: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Shown escaped where reaper-trace names the command.
    assert!(
        stderr.contains("command /bin/echo caf\\xe9\\x1b[2J (pid"),
        "{stderr}"
    );
}

/// Starts `live --no-events --pid <a sleep>` under `setup`, and returns
/// its SigIgn and SigCgt once it traces, and how it ended after SIGINT.
fn tracer_masks_then_sigint(setup: Setup) -> (u64, u64, std::process::ExitStatus) {
    let mut target = Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("spawn sleep");
    let mut tracer = setup
        .apply(
            Command::new(tool())
                .args(["live", "--no-events", "--pid", &target.id().to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .spawn()
        .expect("spawn reaper-trace");
    let stderr = tracer.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    // Its handlers are in place once it says it traces.
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("tracing")),
        "reaper-trace did not start"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", tracer.id())).unwrap();
    let lines_of: Vec<String> = status.lines().map(str::to_owned).collect();
    let masks = (mask_of(&lines_of, "SigIgn"), mask_of(&lines_of, "SigCgt"));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let stopped = wait_bounded(&mut tracer);
    let _ = target.kill();
    let _ = target.wait();
    (masks.0, masks.1, stopped)
}

#[test]
fn under_nohup_sighup_stays_ignored_by_the_tracer() {
    kernel_test!();
    let (ignored, caught, stopped) = tracer_masks_then_sigint(Setup::HupIgnored);
    let hup = 1 << (libc::SIGHUP - 1);
    assert_ne!(ignored & hup, 0, "SIGHUP is still ignored, as nohup asked");
    assert_eq!(caught & hup, 0, "no handler took SIGHUP over");
    assert!(caught & (1 << (libc::SIGINT - 1)) != 0, "SIGINT is handled");
    assert!(stopped.success(), "{stopped:?}");
}

#[test]
fn started_in_the_background_by_a_script_sigint_still_stops_the_tracer() {
    kernel_test!();
    // `reaper-trace live & ... kill -INT $!` in a script: the shell started
    // it with SIGINT ignored; the user still means to stop it.
    let (_, caught, stopped) = tracer_masks_then_sigint(Setup::IntIgnored);
    assert!(caught & (1 << (libc::SIGINT - 1)) != 0, "SIGINT is handled");
    assert!(stopped.success(), "{stopped:?}");
}
