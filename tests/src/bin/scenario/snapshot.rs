//! Parents of zombies for `reaper-trace zombies` (tests/tests/zombies.rs).

use std::ffi::c_int;

use serde_json::json;

use crate::handlers::handler_addr;

use crate::util::{
    Args, drain_stdin, fork_exit, getpid, gettid, keep_errno, mask_sigchld, mono_ns, set_sigchld,
    sleep_ms, truth, wait_all_zombies, waitpid_raw,
};

/// Would reap every child, if it ever ran.
extern "C" fn reap_all(_: c_int) {
    keep_errno(|| while waitpid_raw(-1, libc::WNOHANG).0 > 0 {});
}

/// A parent with a SIGCHLD handler that blocks SIGCHLD in every thread
/// (the main one and THREADS others, which inherit the mask), then forks
/// N children that exit: their SIGCHLD stays pending, the handler never
/// runs, and the children stay zombies until stdin closes. The truth
/// gives every thread and when the children were forked and seen dead.
pub fn blocked_pending(args: &Args) {
    let n = args.count(0, "N", 3);
    let threads = args.count(1, "THREADS", 2);
    set_sigchld(handler_addr(reap_all), libc::SA_RESTART);
    mask_sigchld(libc::SIG_BLOCK);
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..threads {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(gettid());
            loop {
                sleep_ms(60_000);
            }
        });
    }
    let mut tids = vec![getpid()];
    tids.extend(rx.iter().take(threads));
    tids.sort_unstable();
    let forked_ns = mono_ns();
    let children: Vec<libc::pid_t> = (0..n).map(|_| fork_exit(0)).collect();
    wait_all_zombies(&children);
    truth(json!({
        "parent": getpid(),
        "children": children,
        "threads": tids,
        "forked_ns": forked_ns,
        "zombies_ns": mono_ns(),
    }));
    drain_stdin();
}
