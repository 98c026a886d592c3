//! Single-child and single-thread lifecycles (issue "pipeline").

use std::ptr;
use std::sync::mpsc;
use std::thread;

use serde_json::json;

use crate::util::{
    Args, close, errno, fail, fork, fork_exit, fork_paused, getpid, gettid, os_fail, pipe,
    read_pid, reap_ok, set_sigchld, truth, wait_all_gone, wait_sleeping, waitpid_raw, write_pid,
};

pub fn noop(_: &Args) {}

/// `wait4` with a NULL rusage, retried on EINTR.
fn wait4(pid: libc::pid_t) -> (libc::pid_t, i32) {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer; a NULL rusage is allowed.
        let ret = unsafe { libc::wait4(pid, &mut status, 0, ptr::null_mut()) };
        if ret == -1 && errno() == libc::EINTR {
            continue;
        }
        if ret == -1 {
            os_fail("wait4");
        }
        return (ret, status);
    }
}

pub fn exit42(_: &Args) {
    let child = fork_exit(42);
    let (wait_ret, status) = wait4(child);
    truth(json!({
        "parent": getpid(),
        "parent_tid": gettid(),
        "child": child,
        "wait_ret": wait_ret,
        "status": status,
    }));
}

pub fn sigkill(_: &Args) {
    let child = fork_paused();
    // Kill it while it is blocked, not while it is still returning from fork.
    wait_sleeping(child);
    // SAFETY: `child` is our own unreaped child, so the pid cannot be reused.
    if unsafe { libc::kill(child, libc::SIGKILL) } != 0 {
        os_fail("kill");
    }
    let (wait_ret, status) = wait4(child);
    truth(json!({
        "parent": getpid(),
        "parent_tid": gettid(),
        "child": child,
        "wait_ret": wait_ret,
        "status": status,
    }));
}

pub fn sigign(_: &Args) {
    set_sigchld(libc::SIG_IGN, 0);
    let child = fork_exit(0);
    wait_all_gone(&[child]);
    truth(json!({ "parent": getpid(), "child": child }));
}

pub fn waitid(_: &Args) {
    let child = fork_exit(7);
    // SAFETY: an all-zero siginfo_t is a valid out-buffer.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let ret = loop {
        // SAFETY: `info` is a valid out-pointer.
        let ret =
            unsafe { libc::waitid(libc::P_PID, child as libc::id_t, &mut info, libc::WEXITED) };
        if !(ret == -1 && errno() == libc::EINTR) {
            break ret;
        }
    };
    if ret == -1 {
        os_fail("waitid");
    }
    // SAFETY: a successful WEXITED waitid fills in the SIGCHLD fields.
    let (si_pid, si_status) = unsafe { (info.si_pid(), info.si_status()) };
    truth(json!({
        "parent": getpid(),
        "child": child,
        "si_pid": si_pid,
        "si_status": si_status,
        "ret": ret,
    }));
}

pub fn thread_exit(_: &Args) {
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = tx.send(gettid());
    });
    let Ok(thread_tid) = rx.recv() else {
        fail(1, "thread exited without reporting its tid");
    };
    if worker.join().is_err() {
        fail(1, "thread panicked");
    }
    truth(json!({ "pid": getpid(), "thread_tid": thread_tid }));
}

pub fn thread_exec(_: &Args) {
    let execer = thread::spawn(|| {
        truth(json!({ "pid": getpid(), "thread_tid": gettid() }));
        let argv = [c"scenario".as_ptr(), c"noop".as_ptr(), ptr::null()];
        // SAFETY: NUL-terminated path and NULL-terminated argv of C strings.
        unsafe { libc::execv(c"/proc/self/exe".as_ptr(), argv.as_ptr()) };
        os_fail("execv(/proc/self/exe)");
    });
    // A successful exec kills this thread inside the join.
    let _ = execer.join();
    fail(1, "exec thread ended without exec");
}

pub fn tree(_: &Args) {
    truth(json!({ "pid": getpid(), "stage": "ready" }));
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        fail(1, &format!("reading stdin: {e}"));
    }

    let (rd, wr) = pipe();
    let child = fork();
    if child == 0 {
        close(rd);
        // SAFETY: async-signal-safe calls only until `_exit`.
        unsafe {
            let grandchild = libc::fork();
            if grandchild == 0 {
                libc::_exit(0);
            }
            let ok = grandchild > 0
                && write_pid(wr, grandchild)
                && waitpid_raw(grandchild, 0).0 == grandchild;
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    close(wr);
    let grandchild = read_pid(rd);
    close(rd);
    reap_ok(child, "child");
    truth(json!({ "pid": getpid(), "child": child, "grandchild": grandchild }));
}
