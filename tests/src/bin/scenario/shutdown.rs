//! Parents that go away in ways that leave their children behind or that a
//! wrapper hides: a daemon that crashes while shutting down, and a wrapper
//! that fiddles with SIGCHLD before it execs the real program.

use std::ffi::CString;

use libc::pid_t;
use serde_json::json;

use crate::util::{
    Args, close, fork, getpid, is_gone, os_fail, pipe, poll_until, read_pid, reap, set_sigchld,
    sleep_ms, truth, write_pid,
};

/// The daemon's SIGTERM handler: a crash in the shutdown path.
extern "C" fn crash_on_term(_: libc::c_int) {
    // SAFETY: resetting SIGSEGV and raising it are async-signal-safe.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
}

/// A supervisor (this process) runs a daemon that has two workers. It sends
/// the daemon SIGTERM; the daemon's handler crashes with SIGSEGV while the
/// workers still run. The workers notice their new parent, run on for
/// LINGER_MS, and exit 0: orphans, adopted by the subreaper above.
pub fn crash_shutdown(args: &Args) {
    let linger_ms = args.num(0, "LINGER_MS", 200);
    let (rd, wr) = pipe();
    let daemon = fork();
    if daemon == 0 {
        close(rd);
        // SAFETY: async-signal-safe calls only, until _exit or the crash.
        unsafe {
            // No core file for the crash: it is the point, not a bug here.
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = crash_on_term as *const () as libc::sighandler_t;
            libc::sigaction(libc::SIGTERM, &act, std::ptr::null_mut());
            let me = libc::getpid();
            for _ in 0..2 {
                let worker = libc::fork();
                if worker == 0 {
                    while libc::getppid() == me {
                        sleep_ms(1);
                    }
                    sleep_ms(linger_ms);
                    libc::_exit(0);
                }
                if worker < 0 || !write_pid(wr, worker) {
                    libc::_exit(1);
                }
            }
            close(wr);
            loop {
                libc::pause();
            }
        }
    }
    close(wr);
    let workers: Vec<pid_t> = (0..2).map(|_| read_pid(rd)).collect();
    close(rd);
    // SAFETY: signalling our own child.
    if unsafe { libc::kill(daemon, libc::SIGTERM) } != 0 {
        os_fail("kill(SIGTERM)");
    }
    let status = reap(daemon);
    poll_until("the workers to finish", || {
        workers.iter().all(|&w| is_gone(w))
    });
    truth(json!({
        "supervisor": getpid(), "daemon": daemon, "workers": workers,
        "daemon_signal": if libc::WIFSIGNALED(status) { libc::WTERMSIG(status) } else { 0 },
    }));
}

/// A wrapper (a shell, a version-manager shim) sets SIGCHLD N times, then
/// execs `scenario noreap 1`: the program that leaks is the one after exec.
pub fn exec_after_sigchld(args: &Args) {
    let n = args.count(0, "N", 15);
    extern "C" fn wrapper_handler(_: libc::c_int) {}
    for _ in 0..n {
        set_sigchld(
            wrapper_handler as *const () as libc::sighandler_t,
            libc::SA_RESTART,
        );
    }
    truth(json!({ "wrapper": getpid(), "changes": n }));
    let exe = CString::new("/proc/self/exe").expect("no NUL");
    let argv = [
        CString::new("scenario").expect("no NUL"),
        CString::new("noreap").expect("no NUL"),
        CString::new("1").expect("no NUL"),
    ];
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: a NUL-terminated argv of valid C strings.
    unsafe { libc::execv(exe.as_ptr(), ptrs.as_ptr()) };
    os_fail("execv");
}
