//! Multi-threaded processes: thread exits must not look like process exits.

use std::sync::mpsc;
use std::thread;

use serde_json::json;

use crate::util::{Args, fail, getpid, gettid, sleep_ms, truth};

pub fn leader_exit(args: &Args) {
    let worker_ms = args.num(0, "WORKER_MS", 2000);
    let (tx, rx) = mpsc::channel();
    // Detached: nobody joins it, the process ends when it returns.
    let _worker = thread::spawn(move || {
        let _ = tx.send(gettid());
        sleep_ms(worker_ms);
    });
    let Ok(worker_tid) = rx.recv() else {
        fail(1, "worker exited without reporting its tid");
    };
    truth(json!({ "pid": getpid(), "worker_tid": worker_tid }));
    // Only this thread ends; the leader stays a zombie thread until the worker
    // returns. Not pthread_exit(): its forced unwind aborts when it reaches
    // the catch_unwind that std wraps around main().
    // SAFETY: the raw exit syscall ends the calling thread only; this thread
    // holds no locks and its stack is never freed.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    unreachable!("SYS_exit returned");
}

pub fn threads(args: &Args) {
    let n = args.count(0, "N", 100);
    let handles: Vec<_> = (0..n).map(|_| thread::spawn(|| {})).collect();
    let joined = handles.into_iter().filter_map(|h| h.join().ok()).count();
    truth(json!({ "pid": getpid(), "threads": joined }));
}
