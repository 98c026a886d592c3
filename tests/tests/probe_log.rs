//! Kernel tests of `--probe-log`: a rare path of the programs, provoked,
//! reaches stderr as one `reaper-trace: probe: ` line; without the switch,
//! nothing does.
//!
//! The provoked path: `rt_sigaction(SIGCHLD)` with an unmapped new action,
//! whose read in the sigaction probe fails with EFAULT (so does the call).
//!
//! The loader-level tests run the tracer in a child copy of this test
//! binary (so that its stderr can be read), with `TracerOptions::probe_log`
//! set directly; the CLI test needs the `--probe-log` flag of `live`.

use std::process::Command;

use reaper_trace::kernel::{FollowSpec, Tracer, TracerOptions};
use reaper_trace_tests::*;

/// Set in the child copy: the value of `probe_log` it traces itself with.
const CHILD_ENV: &str = "REAPER_TRACE_PROBE_LOG_CHILD";

const LINE: &str = "reaper-trace: probe: sys_enter_rt_sigaction: warning: \
    reading the new SIGCHLD action from user memory at 0x1000 failed";

/// In the child: traces itself, provokes the failed read, stops tracing
/// (which prints what the programs logged). In the parent: runs the child
/// and returns its stderr.
fn traced_bad_sigaction(test: &str, probe_log: bool) -> Option<String> {
    if let Some(value) = std::env::var_os(CHILD_ENV) {
        let tracer = Tracer::start(&TracerOptions {
            follow: Some(FollowSpec {
                pids: vec![std::process::id()],
                ..FollowSpec::default()
            }),
            ringbuf_bytes: 1 << 20,
            wakeup_bytes: 0,
            thread_events: false,
            probe_log: value == "1",
            stacks: false,
            syscall_hooks: true,
        })
        .expect("starting the tracer");
        assert_eq!(rt_sigaction_unmapped(), (-1, Some(libc::EFAULT)));
        drop(tracer);
        return None;
    }
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, if probe_log { "1" } else { "0" })
        .output()
        .expect("running the child test");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child failed: {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    Some(stderr)
}

fn probe_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("reaper-trace: probe: "))
        .collect()
}

#[test]
fn loader_logs_a_failed_user_read_when_on() {
    kernel_test!();
    let Some(stderr) = traced_bad_sigaction("loader_logs_a_failed_user_read_when_on", true) else {
        return;
    };
    let lines = probe_lines(&stderr);
    assert!(lines.contains(&LINE), "no {LINE:?} in:\n{stderr}");
}

#[test]
fn loader_logs_nothing_when_off() {
    kernel_test!();
    let Some(stderr) = traced_bad_sigaction("loader_logs_nothing_when_off", false) else {
        return;
    };
    let lines = probe_lines(&stderr);
    assert!(lines.is_empty(), "{lines:#?}");
}

#[test]
fn cli_logs_a_failed_user_read() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events", "--probe-log"], &["efault_sigaction"]);
    t.assert_clean();
    let truth = t.truth("act");
    assert_eq!(int(&truth["ret"]), -1);
    assert_eq!(int(&truth["errno"]), i64::from(libc::EFAULT));
    let lines = probe_lines(&t.stderr);
    assert!(lines.contains(&LINE), "no {LINE:?} in:\n{}", t.stderr);
}

#[test]
fn cli_logs_nothing_by_default() {
    kernel_test!();
    let t = trace_scenario_with(&["--no-events"], &["efault_sigaction"]);
    t.assert_clean();
    assert_eq!(int(&t.truth("act")["errno"]), i64::from(libc::EFAULT));
    let lines = probe_lines(&t.stderr);
    assert!(lines.is_empty(), "{lines:#?}");
}
