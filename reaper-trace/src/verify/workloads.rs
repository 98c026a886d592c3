//! The small programs `verify-kernel` traces, run as
//! `reaper-trace __workload NAME`. Each exercises one behaviour and exits 0;
//! waits for conditions are bounded polls, never blind sleeps. After a fork,
//! children make only async-signal-safe calls.

use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(10);

fn poll(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > BOUND {
            eprintln!("workload: gave up waiting for {what}");
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn gone(pid: i32) -> bool {
    // SAFETY: probing a pid with signal 0.
    unsafe { libc::kill(pid, 0) == -1 && *libc::__errno_location() == libc::ESRCH }
}

fn is_zombie(pid: i32) -> bool {
    crate::host::procfs::is_zombie(pid as u32)
}

/// Forks a child that exits at once; returns its pid.
fn fork_exit() -> i32 {
    // SAFETY: the child only calls _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "fork failed");
    pid
}

fn set_sigchld(handler: libc::sighandler_t, flags: i32) {
    // SAFETY: a zeroed sigaction with a valid handler value.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        act.sa_flags = flags;
        libc::sigaction(libc::SIGCHLD, &act, std::ptr::null_mut());
    }
}

extern "C" fn ignore_signal(_: libc::c_int) {}

pub fn run(name: &str) -> i32 {
    match name {
        "sigign" => {
            set_sigchld(libc::SIG_IGN, 0);
            let child = fork_exit();
            poll("the child to be released", || gone(child));
        }
        "nocldwait" => {
            set_sigchld(libc::SIG_DFL, libc::SA_NOCLDWAIT);
            let child = fork_exit();
            poll("the child to be released", || gone(child));
        }
        "subreaper" => subreaper(),
        "coalesce" => coalesce(),
        "exit_signal0" => exit_signal0(),
        "leader_exit" => leader_exit(),
        other => {
            eprintln!("unknown workload {other}");
            return 2;
        }
    }
    0
}

/// This process is a subreaper; its child forks a grandchild and exits; the
/// grandchild must come to us.
fn subreaper() {
    // SAFETY: plain prctl; the children only call fork, getppid, nanosleep, _exit.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        let child = libc::fork();
        if child == 0 {
            let me = libc::getpid();
            let grandchild = libc::fork();
            if grandchild == 0 {
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 1_000_000,
                };
                for _ in 0..10_000 {
                    if libc::getppid() != me {
                        libc::_exit(0);
                    }
                    libc::nanosleep(&ts, std::ptr::null_mut());
                }
                libc::_exit(3);
            }
            libc::_exit(0);
        }
        libc::waitpid(child, std::ptr::null_mut(), 0);
        // The grandchild is ours now: reap it.
        libc::waitpid(-1, std::ptr::null_mut(), 0);
    }
}

/// Three children exit while SIGCHLD (handled) is blocked: one stays pending.
fn coalesce() {
    set_sigchld(
        ignore_signal as *const () as libc::sighandler_t,
        libc::SA_RESTART,
    );
    // SAFETY: signal mask calls on valid sets.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let children: Vec<i32> = (0..3).map(|_| fork_exit()).collect();
        poll("the children to be zombies", || {
            children.iter().all(|&c| is_zombie(c))
        });
        for c in children {
            libc::waitpid(c, std::ptr::null_mut(), 0);
        }
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A clone3 child with exit_signal 0, reaped with __WALL.
fn exit_signal0() {
    let args = CloneArgs::default();
    // SAFETY: clone3 without CLONE_VM behaves like fork; the child only exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "clone3 failed");
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::__WALL) };
}

/// The main thread exits alone; a worker lives on briefly, then the group dies.
fn leader_exit() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: ends the whole process from the last thread.
        unsafe { libc::exit(0) };
    });
    // SAFETY: ends only the calling (main) thread, as pthread_exit would.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
}
