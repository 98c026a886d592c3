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
