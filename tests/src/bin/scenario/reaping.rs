//! Children that are reaped late, by someone else, or never (issue "lifecycle").

use libc::pid_t;
use serde_json::json;

use crate::util::{
    Args, close, drain_stdin, fork, fork_exit, getpid, is_zombie, mono_ns, os_fail, own_children,
    pipe, poll_until, read_pid, reap_ok, set_sigchld, sleep_ms, spawn_child, truth, wait_all_gone,
    wait_zombie, waitpid_raw, write_pid,
};

const DEFAULT_CHILDREN: usize = 5;

fn fork_exiting(n: usize) -> Vec<pid_t> {
    (0..n).map(|_| fork_exit(0)).collect()
}

pub fn noreap(args: &Args) {
    let n = args.count(0, "N", DEFAULT_CHILDREN);
    let children = fork_exiting(n);
    let mut zombies = 0;
    poll_until(&format!("all of {children:?} to become zombies"), || {
        zombies = children.iter().filter(|&&p| is_zombie(p)).count();
        zombies == n
    });
    truth(json!({ "parent": getpid(), "children": children, "zombies": zombies }));
}

/// `noreap`, then lives on for HOLD_MS (10 minutes by default) with its
/// zombies, as a leaky container's PID 1 does until it is stopped. With
/// the default SIGTERM action, as PID 1 of a pid namespace it ignores
/// SIGTERM: only SIGKILL ends it.
pub fn noreap_hold(args: &Args) {
    noreap(args);
    sleep_ms(args.num(1, "HOLD_MS", 600_000));
}

/// Forks N children under an auto-reaping SIGCHLD disposition and waits for
/// the kernel to reap them all; the scenario itself never calls wait.
fn autoreap(args: &Args, handler: libc::sighandler_t, flags: i32) {
    let n = args.count(0, "N", DEFAULT_CHILDREN);
    set_sigchld(handler, flags);
    let children = fork_exiting(n);
    wait_all_gone(&children);
    truth(json!({ "parent": getpid(), "children": children }));
}

pub fn sigign_many(args: &Args) {
    autoreap(args, libc::SIG_IGN, 0);
}

pub fn nocldwait(args: &Args) {
    autoreap(args, libc::SIG_DFL, libc::SA_NOCLDWAIT);
}

pub fn waitpid_other(args: &Args) {
    let hold_ms = args.num(0, "HOLD_MS", 1000);
    let a = fork_exit(0);
    let b = spawn_child(|| {
        sleep_ms(hold_ms);
        0
    });
    wait_zombie(a);
    // A blocking wait for B alone must leave the zombie A untouched.
    if waitpid_raw(b, 0).0 != b {
        os_fail(&format!("waitpid({b})"));
    }
    let a_zombie_after = is_zombie(a);
    truth(json!({ "parent": getpid(), "a": a, "b": b, "a_zombie_after": a_zombie_after }));
}

pub fn zombie_hold(args: &Args) {
    let hold_ms = args.opt_num(0, "HOLD_MS");
    let zombie = fork_exit(0);
    wait_zombie(zombie);
    truth(json!({ "parent": getpid(), "zombie": zombie }));
    match hold_ms {
        Some(ms) => sleep_ms(ms),
        None => drain_stdin(),
    }
}

pub fn double_fork(_: &Args) {
    const REPARENT_BOUND_NS: u64 = 10_000_000_000;
    let (rd, wr) = pipe();
    let child = fork();
    if child == 0 {
        close(rd);
        // SAFETY: async-signal-safe calls only until `_exit`.
        unsafe {
            // Taken before forking: once this child has exited the grandchild
            // could no longer learn it from getppid().
            let me = libc::getpid();
            let grandchild = libc::fork();
            if grandchild == 0 {
                let deadline = mono_ns() + REPARENT_BOUND_NS;
                while libc::getppid() == me {
                    if mono_ns() > deadline {
                        libc::_exit(crate::util::EXIT_TIMEOUT);
                    }
                    sleep_ms(1);
                }
                libc::_exit(0);
            }
            let ok = grandchild > 0 && write_pid(wr, grandchild);
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    close(wr);
    let grandchild = read_pid(rd);
    close(rd);
    reap_ok(child, "child");
    // Stay until the adopter has reaped the grandchild (kill(0) succeeds on
    // a zombie): under an init that exits with this process (tini in a pid
    // namespace), ending first would race the grandchild's exit against the
    // init's, and an init that exits before reaping leaves a true finding.
    let deadline = mono_ns() + REPARENT_BOUND_NS;
    // SAFETY: signal 0 only checks that the pid exists.
    while unsafe { libc::kill(grandchild, 0) } == 0 && mono_ns() < deadline {
        sleep_ms(1);
    }
    truth(json!({ "parent": getpid(), "child": child, "grandchild": grandchild }));
}

pub fn popen(args: &Args) {
    let k = args.count(0, "K", 3);
    for _ in 0..k {
        // SAFETY: both arguments are NUL-terminated strings.
        let stream = unsafe { libc::popen(c"true".as_ptr(), c"r".as_ptr()) };
        if stream.is_null() {
            os_fail("popen");
        }
        // Leaked on purpose: pclose() would reap the child.
    }
    let mut children = Vec::new();
    poll_until(&format!("{k} popen children to become zombies"), || {
        children = own_children();
        children.len() == k && children.iter().all(|&p| is_zombie(p))
    });
    truth(json!({ "parent": getpid(), "children": children }));
}

/// The classic Rust leak: a spawned `Child` dropped without `wait()`. The
/// truth gives the line of the `spawn()` call, which the finding's fork
/// stack must name. Holds the zombie HOLD_MS, then exits.
pub fn spawn_drop(args: &Args) {
    let hold_ms = args.num(0, "HOLD_MS", 600);
    #[rustfmt::skip]
    let (child, spawn_line) = (std::process::Command::new("true").spawn(), line!());
    let pid = match child {
        Ok(child) => child.id() as pid_t,
        Err(_) => os_fail("spawn"),
    };
    wait_zombie(pid);
    truth(json!({ "parent": getpid(), "child": pid, "spawn_line": spawn_line, "file": file!() }));
    sleep_ms(hold_ms);
}

/// Peeks at a child's exit with `waitid(P_PID, WEXITED | WNOWAIT)`, which
/// leaves it a zombie, holds it for HOLD_MS, then exits without reaping it:
/// the tracer (the subreaper) adopts and reaps it.
pub fn peek(args: &Args) {
    let hold_ms = args.num(0, "HOLD_MS", 1500);
    let child = fork_exit(3);
    // SAFETY: a zeroed siginfo for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with a valid siginfo pointer.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            child as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        os_fail("waitid(WNOWAIT)");
    }
    // SAFETY: waitid filled the siginfo of a child.
    let (peeked, status) = unsafe { (info.si_pid(), info.si_status()) };
    let still_zombie = is_zombie(child);
    sleep_ms(hold_ms);
    truth(json!({
        "parent": getpid(), "child": child, "peeked": peeked, "status": status,
        "zombie_after_peek": still_zombie,
    }));
}

/// A child that stops itself with SIGSTOP: the parent's `wait4(WUNTRACED)`
/// collects the stop (no reap); it resumes the child with SIGCONT and its
/// `wait4(WCONTINUED)` collects the continue (no reap either; the child
/// waits on a pipe meanwhile, so that is what the wait sees); then the child
/// exits 0 and the parent reaps it after LATE_MS.
pub fn stopped(args: &Args) {
    let late_ms = args.num(0, "LATE_MS", 0);
    let (rd, wr) = pipe();
    let child = spawn_child(|| {
        close(wr);
        // SAFETY: stopping ourselves, then blocking until the parent closes
        // its end of the pipe.
        unsafe {
            libc::raise(libc::SIGSTOP);
            let mut byte = 0u8;
            libc::read(rd, (&raw mut byte).cast(), 1);
        }
        0
    });
    close(rd);
    let (pid, stop_status) = waitpid_raw(child, libc::WUNTRACED);
    if pid != child || !libc::WIFSTOPPED(stop_status) {
        os_fail(&format!(
            "waitpid({child}, WUNTRACED) -> {pid} status {stop_status:#x}"
        ));
    }
    // SAFETY: resuming our own child.
    unsafe { libc::kill(child, libc::SIGCONT) };
    let (pid, cont_status) = waitpid_raw(child, libc::WCONTINUED);
    if pid != child || !libc::WIFCONTINUED(cont_status) {
        os_fail(&format!(
            "waitpid({child}, WCONTINUED) -> {pid} status {cont_status:#x}"
        ));
    }
    close(wr);
    wait_zombie(child);
    sleep_ms(late_ms);
    let (reaped, status) = waitpid_raw(child, 0);
    truth(json!({
        "parent": getpid(), "child": child, "stop_status": stop_status,
        "cont_status": cont_status, "reaped": reaped, "status": status,
    }));
}
