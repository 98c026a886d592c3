//! Volume and mixed workloads.

use serde_json::json;

use crate::util::{
    Args, fork_paused, getpid, os_fail, reap, sleep_ms, spawn_child, truth, wait_all_zombies,
    wait_sleeping, wait_zombie, waitpid_raw,
};

pub fn storm(args: &Args) {
    let cycles = args.count(0, "N", 5000);
    let mut reaped = 0;
    for _ in 0..cycles {
        // A failed fork or wait is counted as a missing reap, not fatal.
        // SAFETY: single-threaded; the child only calls _exit.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        if child > 0 && waitpid_raw(child, 0).0 == child {
            reaped += 1;
        }
    }
    truth(json!({ "parent": getpid(), "cycles": cycles, "reaped": reaped }));
}

/// BATCHES batches of CALLS getppid calls, each timed on the thread's CPU
/// clock: the tenth percentile of the batches' ns per call, which leaves
/// out the batches an interrupt or another task's cache traffic slowed
/// (the median of whole runs scattered by ±7 % on the project's VM).
pub fn syscall_batches(args: &Args) {
    let batches = args.count(0, "BATCHES", 200);
    let calls = args.count(1, "CALLS", 10_000).max(1);
    let mut per_call = Vec::with_capacity(batches);
    let mut sum: i64 = 0;
    for _ in 0..batches {
        let start = thread_cpu_ns();
        for _ in 0..calls {
            // SAFETY: as in `syscalls`.
            sum = sum.wrapping_add(unsafe { libc::syscall(libc::SYS_getppid) });
        }
        per_call.push((thread_cpu_ns() - start) as f64 / calls as f64);
    }
    per_call.sort_by(f64::total_cmp);
    let p10 = per_call.get(per_call.len() / 10).copied().unwrap_or(0.0);
    truth(json!({ "batches": batches, "calls": calls, "ns_per_call_p10": p10, "checksum": sum }));
}

fn thread_cpu_ns() -> u64 {
    // SAFETY: a zeroed timespec out-parameter.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to `ts`.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        os_fail("clock_gettime");
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// N cheap system calls (getppid), none of them one a probe records: what
/// the `sys_enter`/`sys_exit` hooks cost every other call on the machine.
pub fn syscalls(args: &Args) {
    let calls = args.count(0, "N", 1_000_000);
    let mut sum: i64 = 0;
    for _ in 0..calls {
        // SAFETY: getppid has no arguments and cannot fail. Called through
        // syscall(2) so that no libc could answer it from a cache.
        sum = sum.wrapping_add(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    truth(json!({ "calls": calls, "checksum": sum }));
}

pub fn demo(_: &Args) {
    const LATE_MS: u64 = 1200;

    let mut reaped: Vec<_> = (0..3)
        .map(|code| {
            let child = spawn_child(|| code);
            reap(child);
            child
        })
        .collect();

    let killed = fork_paused();
    wait_sleeping(killed);
    // SAFETY: `killed` is our own unreaped child, so the pid cannot be reused.
    if unsafe { libc::kill(killed, libc::SIGKILL) } != 0 {
        os_fail("kill");
    }
    reap(killed);
    reaped.push(killed);

    // Never waited for: zombies until this process exits.
    let leaked: Vec<_> = (0..2).map(|_| spawn_child(|| 0)).collect();
    wait_all_zombies(&leaked);

    let late = spawn_child(|| 0);
    wait_zombie(late);
    sleep_ms(LATE_MS);
    reap(late);

    truth(json!({
        "parent": getpid(),
        "reaped": reaped,
        "leaked": leaked,
        "late": [late],
        "killed": [killed],
    }));
}
