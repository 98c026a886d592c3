//! Children that exit while their parent is exiting (issue 18): the kernel
//! hands them to the nearest subreaper, which this scenario is. It reaps
//! its direct children at once and the orphans late, as an init that reaps
//! lazily does, so a tool that credits the reap to the dead parent reports
//! a late reap by a process that never waited.

use std::ffi::CString;

use libc::pid_t;
use serde_json::json;

use crate::util::{Args, fork, getpid, os_fail, reap, sleep_ms, truth, waitpid_raw};

/// Becomes a child subreaper: orphans of the rounds come here.
fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        os_fail("prctl(PR_SET_CHILD_SUBREAPER)");
    }
}

/// Runs `rounds` rounds of `round` (which forks one direct child and
/// returns its pid, reaped here at once), then reaps the orphans only
/// `LAZY_MS` after the last round: every orphan waits longer than the
/// tool's threshold, so each one is judged, whoever it is blamed on.
fn rounds(args: &Args, default_rounds: usize, round: impl Fn() -> pid_t) {
    let n = args.count(0, "ROUNDS", default_rounds);
    let lazy_ms = args.num(1, "LAZY_MS", 1500);
    become_subreaper();
    let direct: Vec<pid_t> = (0..n)
        .map(|_| {
            let child = round();
            reap(child);
            child
        })
        .collect();
    sleep_ms(lazy_ms);
    // Orphans still running (a `sleep` whose shell died) end soon; reap
    // until none is left.
    let mut orphans = Vec::new();
    loop {
        let (pid, _) = waitpid_raw(-1, 0);
        if pid <= 0 {
            break;
        }
        orphans.push(pid);
    }
    truth(json!({ "reaper": getpid(), "parents": direct, "orphans": orphans }));
}

/// `timeout -s KILL 0.02 sh -c 'sleep 3; echo no'`: timeout kills the
/// child, then its own process group, itself included.
pub fn timeout_kill(args: &Args) {
    let argv: Vec<CString> = [
        "timeout",
        "-s",
        "KILL",
        "0.02",
        "sh",
        "-c",
        "sleep 3; echo no",
    ]
    .iter()
    .map(|a| CString::new(*a).expect("no NUL"))
    .collect();
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    rounds(args, 100, || {
        let pid = fork();
        if pid == 0 {
            // SAFETY: argv is NUL-terminated and outlives the call.
            unsafe {
                libc::execvp(ptrs[0], ptrs.as_ptr());
                libc::_exit(127)
            }
        }
        pid
    });
}

/// A process whose whole body is `fork(); _exit(0);`.
pub fn fork_exit_race(args: &Args) {
    rounds(args, 300, || {
        let pid = fork();
        if pid == 0 {
            // SAFETY: fork and _exit are async-signal-safe.
            unsafe {
                libc::fork();
                libc::_exit(0)
            }
        }
        pid
    });
}
