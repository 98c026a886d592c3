//! Children made with raw clone3: a recycled pid and a child that sends no
//! exit signal.

use libc::pid_t;
use serde_json::json;

use crate::util::{
    Args, errno, fail, fork_exit, getpid, os_fail, sleep_ms, truth, wait_zombie, waitpid_raw,
};

/// Tries in a row before giving up on getting the freed pid back.
const PID_REUSE_ATTEMPTS: u32 = 5;

/// clone3 with fork-like semantics (no CLONE_VM, no new stack): the child
/// returns here on a copy of the caller's stack and must only `_exit`.
/// Returns the child's pid, 0 in the child, or -1 with errno set.
pub fn clone3(exit_signal: libc::c_int, set_tid: Option<&[pid_t]>) -> pid_t {
    // SAFETY: all-zero clone_args is "no flags, no optional pointers".
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.exit_signal = exit_signal as u64;
    if let Some(tids) = set_tid {
        args.set_tid = tids.as_ptr() as u64;
        args.set_tid_size = tids.len() as u64;
    }
    // SAFETY: `args` and the set_tid array outlive the call; the kernel reads
    // exactly size_of::<clone_args>() bytes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw mut args,
            size_of::<libc::clone_args>(),
        )
    };
    ret as pid_t
}

/// Reaps a child, then gives its pid at once (inside the RCU window before
/// the first one's `sched_process_free`) to a new child that stays a zombie
/// for HOLD_MS, longer than that window.
pub fn pid_reuse(args: &Args) {
    let hold_ms = args.num(0, "HOLD_MS", 200);
    for _ in 0..PID_REUSE_ATTEMPTS {
        let pid = fork_exit(0);
        let first_reaped = waitpid_raw(pid, 0).0 == pid;
        if !first_reaped {
            os_fail(&format!("waitpid({pid})"));
        }
        let second = clone3(libc::SIGCHLD, Some(&[pid]));
        if second == 0 {
            // SAFETY: ends the clone3 child at once.
            unsafe { libc::_exit(0) };
        }
        if second > 0 {
            wait_zombie(second);
            sleep_ms(hold_ms);
            truth(json!({
                "parent": getpid(),
                "pid": pid,
                "first_reaped": first_reaped,
                "second_pid": second,
            }));
            return;
        }
        match errno() {
            // Someone else took the pid in between: start over with a fresh one.
            libc::EEXIST => continue,
            libc::EPERM => return skip("clone3 set_tid needs CAP_SYS_ADMIN (EPERM)"),
            libc::ENOSYS => return skip("clone3 is not available (ENOSYS)"),
            _ => os_fail("clone3(set_tid)"),
        }
    }
    skip(&format!(
        "the reaped pid was taken by another process {PID_REUSE_ATTEMPTS} times (EEXIST)"
    ));
}

fn skip(reason: &str) {
    truth(json!({ "skip": reason }));
}

pub fn exit_signal0(_: &Args) {
    let child = clone3(0, None);
    if child == 0 {
        // SAFETY: ends the clone3 child at once.
        unsafe { libc::_exit(0) };
    }
    if child < 0 {
        os_fail("clone3");
    }
    // Without an exit signal the child counts as a "clone" child, which only
    // __WALL (or __WCLONE) waits for.
    let (wait_ret, _) = waitpid_raw(child, libc::__WALL);
    if wait_ret != child {
        os_fail(&format!("waitpid({child}, __WALL)"));
    }
    truth(json!({ "parent": getpid(), "child": child, "wait_ret": wait_ret }));
}

/// A fork made by the `syscall` or `svc` instruction in this program's own
/// code, a leaf function with unwind tables: nothing of the C library is on
/// the stack the kernel copies (a static musl build's fork has no unwind
/// tables to leave it by). On aarch64 its return address is in the link
/// register only, which the programs copy. Returns as fork does.
#[inline(never)]
fn raw_fork() -> i64 {
    let ret: i64;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: fork takes no argument; the child returns here on a copy of
    // the parent's memory and only `_exit`s.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_fork => ret,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: clone(SIGCHLD, no new stack, no tids, no tls) is fork; the
    // child returns here on a copy of the parent's memory and only `_exit`s.
    unsafe {
        std::arch::asm!(
            "svc #0",
            in("x8") libc::SYS_clone,
            inlateout("x0") i64::from(libc::SIGCHLD) => ret,
            in("x1") 0u64,
            in("x2") 0u64,
            in("x3") 0u64,
            in("x4") 0u64,
            options(nostack),
        );
    }
    ret
}

/// `noreap` with its N children forked by [`raw_fork`]: the kernel matrix
/// checks that each fork stack names the line of this file where it
/// forked (`fork_site` in the TRUTH), on every architecture.
pub fn noreap_raw(args: &Args) {
    let n = args.count(0, "N", 2);
    let mut children = Vec::new();
    let mut site = 0;
    for _ in 0..n {
        let (pid, line) = (raw_fork(), line!());
        site = line;
        match pid {
            0 => {
                // SAFETY: the child only exits.
                unsafe { libc::_exit(0) }
            }
            err @ -4095..0 => fail(1, &format!("fork: errno {}", -err)),
            pid => children.push(pid as pid_t),
        }
    }
    for &child in &children {
        wait_zombie(child);
    }
    let fork_site = json!({ "file": file!(), "line": site });
    truth(json!({ "parent": getpid(), "children": children, "fork_site": fork_site }));
}
