//! Helpers shared by the scenarios.
//!
//! Anything a forked child may call before `_exit` (`sleep_ms`, `mono_ns`,
//! `write_pid`, `waitpid_raw`) is async-signal-safe: plain syscalls, no
//! allocation, no locks.

use std::ffi::c_int;
use std::io::Read;
use std::ptr;

use libc::pid_t;
use serde_json::Value;

/// Upper bound on any wait for a condition; past it the scenario gives up.
const POLL_BOUND_MS: u64 = 10_000;
/// Exit code for a condition that never came true within `POLL_BOUND_MS`.
pub const EXIT_TIMEOUT: c_int = 3;
/// Exit code for a bad command line.
pub const EXIT_USAGE: c_int = 2;

/// Positional arguments that follow the scenario name.
pub struct Args {
    scenario: &'static str,
    values: Vec<String>,
}

impl Args {
    pub fn new(scenario: &'static str, values: Vec<String>) -> Self {
        Self { scenario, values }
    }

    /// The numeric argument at `idx`, or `None` when it was not given.
    pub fn opt_num(&self, idx: usize, name: &str) -> Option<u64> {
        let raw = self.values.get(idx)?;
        match raw.parse() {
            Ok(v) => Some(v),
            Err(_) => fail(
                EXIT_USAGE,
                &format!(
                    "{}: {name} must be a non-negative integer, got {raw:?}",
                    self.scenario
                ),
            ),
        }
    }

    pub fn num(&self, idx: usize, name: &str, default: u64) -> u64 {
        self.opt_num(idx, name).unwrap_or(default)
    }

    /// A count argument; used as a length and a loop bound, so it must fit `usize`.
    pub fn count(&self, idx: usize, name: &str, default: usize) -> usize {
        let v = self.num(idx, name, default as u64);
        usize::try_from(v).unwrap_or_else(|_| {
            fail(
                EXIT_USAGE,
                &format!("{}: {name} is too large", self.scenario),
            )
        })
    }
}

/// Writes `TRUTH {json}` to stderr as one `write(2)`, so that lines written
/// by several processes sharing the stderr pipe never interleave.
pub fn truth(fact: Value) {
    write_stderr(format!("TRUTH {fact}\n").as_bytes());
}

fn write_stderr(mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: the pointer and length describe `buf`.
        let n = unsafe { libc::write(libc::STDERR_FILENO, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// Reports `msg` on stderr and ends the whole process with `code`.
pub fn fail(code: c_int, msg: &str) -> ! {
    write_stderr(format!("scenario: {msg}\n").as_bytes());
    std::process::exit(code)
}

/// `fail` for a syscall that returned an error, quoting errno.
pub fn os_fail(what: &str) -> ! {
    let err = std::io::Error::last_os_error();
    fail(1, &format!("{what}: {err}"))
}

pub fn errno() -> c_int {
    // SAFETY: glibc's errno location is always valid for the calling thread.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// Runs `f` with errno preserved, as a signal handler must.
pub fn keep_errno<T>(f: impl FnOnce() -> T) -> T {
    let saved = errno();
    let out = f();
    set_errno(saved);
    out
}

pub fn getpid() -> pid_t {
    // SAFETY: no preconditions.
    unsafe { libc::getpid() }
}

pub fn gettid() -> pid_t {
    // SAFETY: no preconditions.
    unsafe { libc::gettid() }
}

pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps the full `ms` even when signals interrupt `nanosleep`.
pub fn sleep_ms(ms: u64) {
    // Fields set one by one: `time_t` is deprecated on musl (its width
    // changes), and the field's own type is whatever this libc says.
    // SAFETY: timespec is plain integers, for which all zeroes is valid.
    let mut req: libc::timespec = unsafe { std::mem::zeroed() };
    req.tv_sec = (ms / 1000).try_into().unwrap_or(i64::MAX as _);
    req.tv_nsec = ((ms % 1000) * 1_000_000) as _;
    let mut rem = req;
    // SAFETY: both pointers are valid timespecs.
    while unsafe { libc::nanosleep(&req, &mut rem) } == -1 && errno() == libc::EINTR {
        req = rem;
    }
}

/// Polls `cond` every millisecond; exits with `EXIT_TIMEOUT` after the bound.
pub fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = mono_ns() + POLL_BOUND_MS * 1_000_000;
    while !cond() {
        if mono_ns() > deadline {
            fail(
                EXIT_TIMEOUT,
                &format!("gave up after {POLL_BOUND_MS} ms waiting for {what}"),
            );
        }
        sleep_ms(1);
    }
}

/// The state letter of `/proc/<pid>/stat`, `None` once the pid is gone.
pub fn proc_state(pid: pid_t) -> Option<u8> {
    let stat = procfs::process::Process::new(pid).ok()?.stat().ok()?;
    u8::try_from(stat.state).ok()
}

pub fn is_zombie(pid: pid_t) -> bool {
    proc_state(pid) == Some(b'Z')
}

/// True once no process has `pid` any more (reaped, not merely dead).
pub fn is_gone(pid: pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let ret = unsafe { libc::kill(pid, 0) };
    ret == -1 && errno() == libc::ESRCH
}

pub fn wait_zombie(pid: pid_t) {
    poll_until(&format!("pid {pid} to become a zombie"), || is_zombie(pid));
}

pub fn wait_all_zombies(pids: &[pid_t]) {
    poll_until(&format!("all of {pids:?} to become zombies"), || {
        pids.iter().all(|&p| is_zombie(p))
    });
}

pub fn wait_all_gone(pids: &[pid_t]) {
    poll_until(&format!("all of {pids:?} to be gone"), || {
        pids.iter().all(|&p| is_gone(p))
    });
}

/// Waits until `pid` sleeps interruptibly, i.e. is blocked in `pause()`.
pub fn wait_sleeping(pid: pid_t) {
    poll_until(&format!("pid {pid} to block"), || {
        proc_state(pid) == Some(b'S')
    });
}

/// `fork()`, exiting the scenario if it fails; 0 in the child.
pub fn fork() -> pid_t {
    // SAFETY: the scenarios are single-threaded when they fork, and children
    // only run async-signal-safe code before `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        os_fail("fork");
    }
    pid
}

/// Forks a child that runs `body` (async-signal-safe code only) and then
/// `_exit`s with what it returned.
pub fn spawn_child(body: impl FnOnce() -> c_int) -> pid_t {
    let pid = fork();
    if pid == 0 {
        let code = body();
        // SAFETY: ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) }
    }
    pid
}

pub fn fork_exit(code: c_int) -> pid_t {
    spawn_child(|| code)
}

/// Forks a child that blocks in `pause()` until a signal kills it.
pub fn fork_paused() -> pid_t {
    spawn_child(|| {
        loop {
            // SAFETY: no preconditions.
            unsafe { libc::pause() };
        }
    })
}

/// `waitpid`, retried on EINTR. Returns the raw result and the status.
pub fn waitpid_raw(pid: pid_t, flags: c_int) -> (pid_t, c_int) {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let ret = unsafe { libc::waitpid(pid, &mut status, flags) };
        if ret == -1 && errno() == libc::EINTR {
            continue;
        }
        return (ret, status);
    }
}

/// Reaps `pid` and returns its wait status; exits the scenario on error.
pub fn reap(pid: pid_t) -> c_int {
    let (ret, status) = waitpid_raw(pid, 0);
    if ret != pid {
        os_fail(&format!("waitpid({pid})"));
    }
    status
}

/// Reaps a helper child and insists that it reported success.
pub fn reap_ok(pid: pid_t, what: &str) {
    let status = reap(pid);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        fail(
            1,
            &format!("{what} (pid {pid}) failed, wait status {status:#x}"),
        );
    }
}

pub fn set_sigchld(handler: libc::sighandler_t, flags: c_int) {
    // SAFETY: an all-zero sigaction is valid (empty mask, no restorer).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = flags;
    // SAFETY: `sa` is initialised; the old action is not wanted.
    if unsafe { libc::sigaction(libc::SIGCHLD, &sa, ptr::null_mut()) } != 0 {
        os_fail("sigaction(SIGCHLD)");
    }
}

pub fn sigchld_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset uses it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        set
    }
}

/// `how` is `SIG_BLOCK` or `SIG_UNBLOCK`.
pub fn mask_sigchld(how: c_int) {
    let set = sigchld_set();
    // SAFETY: `set` is initialised; the old mask is not wanted.
    if unsafe { libc::sigprocmask(how, &set, ptr::null_mut()) } != 0 {
        os_fail("sigprocmask");
    }
}

/// A close-on-exec pipe, `(read_end, write_end)`.
pub fn pipe() -> (c_int, c_int) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        os_fail("pipe2");
    }
    (fds[0], fds[1])
}

pub fn close(fd: c_int) {
    // SAFETY: the caller owns `fd`.
    unsafe { libc::close(fd) };
}

/// For a forked child: sends `pid` through a pipe in one atomic write.
pub fn write_pid(fd: c_int, pid: pid_t) -> bool {
    let bytes = pid.to_ne_bytes();
    // SAFETY: the pointer and length describe `bytes`.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) == bytes.len() as isize }
}

/// Reads a pid sent by `write_pid`; exits the scenario on EOF.
pub fn read_pid(fd: c_int) -> pid_t {
    let mut bytes = [0u8; size_of::<pid_t>()];
    let mut got = 0;
    while got < bytes.len() {
        // SAFETY: the pointer and length describe the unread tail of `bytes`.
        let n = unsafe { libc::read(fd, bytes[got..].as_mut_ptr().cast(), bytes.len() - got) };
        match n {
            0 => fail(1, "pipe closed before a pid arrived"),
            n if n < 0 && errno() == libc::EINTR => {}
            n if n < 0 => os_fail("read(pipe)"),
            n => got += n as usize,
        }
    }
    pid_t::from_ne_bytes(bytes)
}

/// Blocks until stdin reaches end of file, discarding what it reads.
pub fn drain_stdin() {
    let mut sink = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut sink) {
        fail(1, &format!("reading stdin: {e}"));
    }
}

/// The direct children of this process (zombies included).
pub fn own_children() -> Vec<pid_t> {
    let me = getpid();
    // Only the main thread forks in these scenarios, so its children list is
    // the process's. That file needs CONFIG_PROC_CHILDREN; scan /proc without it.
    if let Ok(list) = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")) {
        return list
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        os_fail("reading /proc");
    };
    let mut kids: Vec<pid_t> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| parent_of(pid) == Some(me))
        .collect();
    kids.sort_unstable();
    kids
}

/// The ppid of `/proc/<pid>/stat`.
fn parent_of(pid: pid_t) -> Option<pid_t> {
    Some(procfs::process::Process::new(pid).ok()?.stat().ok()?.ppid)
}
