//! SIGCHLD handling patterns: handlers that under-reap, loop correctly, or
//! reap late from a signalfd event loop (issue "lifecycle").

use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::util::{
    Args, EXIT_TIMEOUT, errno, fail, fork_exit, getpid, is_zombie, keep_errno, mask_sigchld,
    mono_ns, os_fail, poll_until, set_sigchld, sigchld_set, sleep_ms, truth, wait_all_zombies,
};

const DEFAULT_CHILDREN: usize = 5;

/// Children reaped by the SIGCHLD handlers below.
static REAPED: AtomicUsize = AtomicUsize::new(0);

/// The classic bug: one wait per signal, though signals coalesce.
extern "C" fn reap_once(_: libc::c_int) {
    keep_errno(|| {
        // SAFETY: wait is async-signal-safe; the status is not wanted.
        if unsafe { libc::wait(ptr::null_mut()) } > 0 {
            REAPED.fetch_add(1, Ordering::SeqCst);
        }
    });
}

/// The correct pattern: reap until nothing is left.
extern "C" fn reap_all(_: libc::c_int) {
    keep_errno(|| {
        // SAFETY: waitpid is async-signal-safe; the status is not wanted.
        while unsafe { libc::waitpid(-1, ptr::null_mut(), libc::WNOHANG) } > 0 {
            REAPED.fetch_add(1, Ordering::SeqCst);
        }
    });
}

pub fn handler_addr(f: extern "C" fn(libc::c_int)) -> libc::sighandler_t {
    f as *const () as libc::sighandler_t
}

pub fn handler_once(args: &Args) {
    let n = args.count(0, "N", DEFAULT_CHILDREN);
    set_sigchld(handler_addr(reap_once), libc::SA_RESTART);
    // Held back until every child is dead, so their SIGCHLDs merge into one.
    mask_sigchld(libc::SIG_BLOCK);
    let children: Vec<_> = (0..n).map(|_| fork_exit(0)).collect();
    wait_all_zombies(&children);
    mask_sigchld(libc::SIG_UNBLOCK);
    poll_until("the SIGCHLD handler to reap a child", || {
        REAPED.load(Ordering::SeqCst) >= 1
    });
    let reaped_by_handler = REAPED.load(Ordering::SeqCst);
    let zombies_left = children.iter().filter(|&&p| is_zombie(p)).count();
    truth(json!({
        "parent": getpid(),
        "children": children,
        "reaped_by_handler": reaped_by_handler,
        "zombies_left": zombies_left,
    }));
}

pub fn handler_loop(args: &Args) {
    let n = args.count(0, "N", DEFAULT_CHILDREN);
    set_sigchld(handler_addr(reap_all), libc::SA_RESTART);
    let children: Vec<_> = (0..n).map(|_| fork_exit(0)).collect();
    poll_until(&format!("the SIGCHLD handler to reap {n} children"), || {
        REAPED.load(Ordering::SeqCst) == n
    });
    truth(json!({
        "parent": getpid(),
        "children": children,
        "reaped": REAPED.load(Ordering::SeqCst),
    }));
}

pub fn signalfd_stall(args: &Args) {
    const EVENT_BOUND_MS: u64 = 10_000;
    let n = args.count(0, "N", DEFAULT_CHILDREN);
    let stall_ms = args.num(1, "STALL_MS", 2500);

    // SIGCHLD must be blocked for signalfd to receive it.
    mask_sigchld(libc::SIG_BLOCK);
    let mask = sigchld_set();
    // SAFETY: `mask` is an initialised sigset.
    let sfd = unsafe { libc::signalfd(-1, &mask, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    if sfd < 0 {
        os_fail("signalfd");
    }
    // SAFETY: no preconditions.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        os_fail("epoll_create1");
    }
    let mut interest = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: sfd as u64,
    };
    // SAFETY: both descriptors are open and `interest` is initialised.
    if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, sfd, &mut interest) } != 0 {
        os_fail("epoll_ctl");
    }

    let children: Vec<_> = (0..n).map(|_| fork_exit(0)).collect();

    // The slow handler under test: the loop is busy while the children die.
    let stall_start = mono_ns();
    sleep_ms(stall_ms);
    let stalled_ms = (mono_ns() - stall_start) / 1_000_000;

    let deadline = mono_ns() + EVENT_BOUND_MS * 1_000_000;
    let mut reaped = 0;
    while reaped < n {
        let left_ms = deadline.saturating_sub(mono_ns()) / 1_000_000;
        if left_ms == 0 {
            fail(
                EXIT_TIMEOUT,
                &format!("reaped only {reaped} of {n} children"),
            );
        }
        let mut ready = [libc::epoll_event { events: 0, u64: 0 }; 1];
        // SAFETY: `ready` has room for one event.
        let nready = unsafe { libc::epoll_wait(epfd, ready.as_mut_ptr(), 1, left_ms as i32) };
        if nready < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            os_fail("epoll_wait");
        }
        if nready == 0 {
            continue;
        }
        drain_signalfd(sfd);
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer.
            let ret = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if ret <= 0 {
                break;
            }
            reaped += 1;
        }
    }
    truth(json!({
        "parent": getpid(),
        "children": children,
        "reaped": reaped,
        "stall_ms": stalled_ms,
    }));
}

/// Consumes every queued SIGCHLD record; several exits may share one.
fn drain_signalfd(sfd: libc::c_int) {
    // SAFETY: an all-zero signalfd_siginfo is a valid read buffer.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: the buffer is exactly one signalfd_siginfo.
        let n = unsafe {
            libc::read(
                sfd,
                (&raw mut info).cast(),
                size_of::<libc::signalfd_siginfo>(),
            )
        };
        if n > 0 {
            continue;
        }
        if n == 0 {
            return;
        }
        match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => return,
            _ => os_fail("read(signalfd)"),
        }
    }
}

/// `rt_sigaction(SIGCHLD)` with an unmapped new action: the call fails with
/// EFAULT, and so does the sigaction probe's read of the action, a rare path
/// it reports with `--probe-log`.
pub fn efault_sigaction(_: &Args) {
    let (ret, err) = reaper_trace_tests::rt_sigaction_unmapped();
    truth(
        json!({ "pid": getpid(), "ret": ret, "errno": err, "act": reaper_trace_tests::UNMAPPED }),
    );
}
