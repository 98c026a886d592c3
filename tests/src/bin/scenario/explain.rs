//! What the explanations name: a parent that renames itself, the thread
//! that changed SIGCHLD, a clone child with another exit signal, a pidfd
//! held or waited on, and a parent that exec'd after forking.

use std::ffi::CString;
use std::sync::mpsc;
use std::thread;

use libc::pid_t;
use serde_json::json;

use crate::clone::clone3;
use crate::util::{
    Args, drain_stdin, errno, fail, fork_exit, getpid, gettid, is_zombie, os_fail, reap,
    set_sigchld, sleep_ms, truth, wait_zombie, waitpid_raw,
};

/// `prctl(PR_SET_NAME)`: names the calling thread (the process, when it is
/// the main thread).
fn set_name(name: &str) {
    let name = CString::new(name).expect("no NUL");
    // SAFETY: a NUL-terminated string of at most 15 bytes and the NUL.
    if unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) } != 0 {
        os_fail("prctl(PR_SET_NAME)");
    }
}

/// The calling thread's name, as /proc shows it.
fn own_name() -> String {
    std::fs::read_to_string(format!("/proc/self/task/{}/comm", gettid()))
        .unwrap_or_else(|e| fail(1, &format!("reading comm: {e}")))
        .trim_end()
        .to_owned()
}

/// Renames itself after exec (as busybox applets and daemons do), then
/// reaps a child HOLD_MS after its exit: a late reap by a parent whose
/// name is the new one.
pub fn renamed_parent(args: &Args) {
    let hold_ms = args.num(0, "HOLD_MS", 1200);
    set_name("renamed-parent");
    let child = fork_exit(0);
    wait_zombie(child);
    sleep_ms(hold_ms);
    reap(child);
    truth(json!({ "parent": getpid(), "child": child, "comm": own_name() }));
}

/// The main thread reaps from a SIGCHLD handler; a helper thread, which
/// names itself `webu` (as Motion's HTTP thread is named), resets SIGCHLD
/// to SIG_DFL behind its back. The child forked after that is left.
pub fn thread_sigchld(_: &Args) {
    extern "C" fn reap_all(_: libc::c_int) {
        while waitpid_raw(-1, libc::WNOHANG).0 > 0 {}
    }
    set_sigchld(
        reap_all as *const () as libc::sighandler_t,
        libc::SA_RESTART,
    );
    let (tx, rx) = mpsc::channel();
    let helper = thread::spawn(move || {
        set_name("webu");
        set_sigchld(libc::SIG_DFL, 0);
        let _ = tx.send((gettid(), own_name()));
    });
    let Ok((tid, name)) = rx.recv() else {
        fail(1, "the helper thread ended without reporting");
    };
    if helper.join().is_err() {
        fail(1, "the helper thread panicked");
    }
    let child = fork_exit(0);
    wait_zombie(child);
    truth(json!({ "parent": getpid(), "child": child, "thread": tid, "thread_comm": name }));
}

/// A helper thread names itself `webu`, then waits; once a line comes on
/// stdin (the test starts tracing in between) it resets SIGCHLD to
/// SIG_DFL. The scenario then holds until stdin closes. The thread was
/// named before the trace: only the SIGACTION record can name it.
pub fn thread_named_before(_: &Args) {
    let (named_tx, named_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let helper = thread::spawn(move || {
        set_name("webu");
        let _ = named_tx.send((gettid(), own_name()));
        if go_rx.recv().is_ok() {
            set_sigchld(libc::SIG_DFL, 0);
        }
    });
    let Ok((tid, name)) = named_rx.recv() else {
        fail(1, "the helper thread ended without reporting");
    };
    truth(json!({ "parent": getpid(), "thread": tid, "thread_comm": name }));
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        fail(1, "reading stdin");
    }
    let _ = go_tx.send(());
    if helper.join().is_err() {
        fail(1, "the helper thread panicked");
    }
    truth(json!({ "changed_by": tid }));
    drain_stdin();
}

/// A child cloned with SIGUSR1 as its exit signal: a plain waitpid cannot
/// see it (ECHILD). The parent ignores SIGUSR1 (its default would kill it)
/// and leaves the child to the subreaper. With SIGCHLD_IGN 1 it ignores
/// SIGCHLD too, which autoreaps only children whose exit signal is SIGCHLD:
/// this one is still a zombie.
pub fn clone_sigusr1(args: &Args) {
    let sigchld_ign = args.num(0, "SIGCHLD_IGN", 0) != 0;
    // SAFETY: setting standard dispositions.
    unsafe {
        libc::signal(libc::SIGUSR1, libc::SIG_IGN);
        if sigchld_ign {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        }
    }
    let child = clone3(libc::SIGUSR1, None);
    if child == 0 {
        // SAFETY: ends the clone3 child at once.
        unsafe { libc::_exit(0) };
    }
    if child < 0 {
        os_fail("clone3");
    }
    wait_zombie(child);
    let (ret, _) = waitpid_raw(child, 0);
    let wait_errno = if ret == -1 { errno() } else { 0 };
    if ret != -1 || wait_errno != libc::ECHILD {
        fail(
            1,
            &format!("waitpid({child}, 0) returned {ret} (errno {wait_errno}), not ECHILD"),
        );
    }
    truth(json!({
        "parent": getpid(),
        "child": child,
        "waitpid_errno": wait_errno,
        "zombie": is_zombie(child),
    }));
}

fn pidfd_open(pid: pid_t) -> libc::c_int {
    // SAFETY: pidfd_open(pid, 0) has no memory arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        os_fail("pidfd_open");
    }
    fd as libc::c_int
}

/// `waitid(P_PIDFD, fd, &info, WEXITED)`: the pid it reported.
fn waitid_pidfd(fd: libc::c_int) -> pid_t {
    const P_PIDFD: libc::c_int = 3;
    loop {
        // SAFETY: an all-zero siginfo_t is a valid out-buffer.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer; no rusage is asked for.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_waitid,
                P_PIDFD,
                fd,
                &raw mut info,
                libc::WEXITED,
                std::ptr::null_mut::<libc::rusage>(),
            )
        };
        if ret == -1 && errno() == libc::EINTR {
            continue;
        }
        if ret != 0 {
            os_fail("waitid(P_PIDFD)");
        }
        // SAFETY: waitid filled in a SIGCHLD siginfo.
        return unsafe { info.si_pid() };
    }
}

/// Holds a pidfd for a child that exits, for HOLD_MS; then reaps it with
/// `waitid(P_PIDFD)` when WAIT is 1, or leaves it to the subreaper.
pub fn pidfd_hold(args: &Args) {
    let hold_ms = args.num(0, "HOLD_MS", 1200);
    let wait = args.num(1, "WAIT", 1) != 0;
    let child = fork_exit(0);
    let fd = pidfd_open(child);
    wait_zombie(child);
    sleep_ms(hold_ms);
    let reaped = if wait { waitid_pidfd(fd) } else { 0 };
    truth(json!({ "parent": getpid(), "child": child, "pidfd": fd, "reaped": reaped }));
}

/// `cmd & exec other`: forks a child that exits, then execs /bin/true,
/// which knows nothing of it.
pub fn exec_after_fork(_: &Args) {
    let child = fork_exit(0);
    wait_zombie(child);
    truth(json!({ "parent": getpid(), "child": child, "exec": "/bin/true" }));
    let path = CString::new("/bin/true").expect("no NUL");
    let argv = [CString::new("true").expect("no NUL")];
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: a NUL-terminated argv of valid C strings.
    unsafe { libc::execv(path.as_ptr(), ptrs.as_ptr()) };
    os_fail("execv");
}
