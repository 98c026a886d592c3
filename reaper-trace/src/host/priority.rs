//! The ring buffer's reader must get a core when the ring fills.
//!
//! It needs little CPU (about 2 µs per record), but needs it at once: on a
//! busy machine a fork storm fills the ring while the reader, an ordinary
//! task among dozens of runnable ones, waits tens of milliseconds for each
//! slice, and the kernel then drops records (`cargo xtask bench --only
//! burst`: the 4 MiB ring full, events lost, the reader having waited on a
//! run queue for most of the storm). So the reading thread asks for the
//! lowest real-time priority, round-robin: any CFS task yields to it when
//! the probes wake it, and it yields to every other real-time task. Where
//! real time is refused (no CAP_SYS_NICE, or a cgroup with no real-time
//! budget) it asks for nice -10 instead, which gives it about nine times the
//! weight of a default task.
//!
//! Both are set with `SCHED_RESET_ON_FORK`: a thread or process it starts
//! afterwards begins with the default policy and nice 0. The traced command
//! is forked before the change, and keeps the scheduling it inherited.

/// How the calling thread runs after [`raise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// `SCHED_RR` at priority [`RT_PRIORITY`].
    RealTime,
    /// The default policy at nice [`NICE`]: real time was refused.
    Nice,
    /// As it was: both were refused (the error of the nice attempt).
    Unchanged(std::io::ErrorKind),
}

/// The lowest real-time priority: above every CFS task, below every
/// real-time task that asked for more.
pub const RT_PRIORITY: i32 = 1;

/// The fallback: a weight of 9,548 against 1,024 at nice 0.
pub const NICE: i32 = -10;

/// Raises the calling thread (not the process: Linux schedules threads)
/// as far as it is allowed to, real time first.
pub fn raise() -> Priority {
    if set_policy(libc::SCHED_RR, RT_PRIORITY).is_ok() {
        return Priority::RealTime;
    }
    // The thread's own nice, with the flag that keeps it from its children.
    match set_nice(NICE).and_then(|()| set_policy(libc::SCHED_OTHER, 0)) {
        Ok(()) => Priority::Nice,
        Err(e) => Priority::Unchanged(e.kind()),
    }
}

/// `sched_setscheduler(2)` on the calling thread, with
/// `SCHED_RESET_ON_FORK`. The raw system call: musl's wrapper refuses
/// (ENOSYS), as POSIX means it for a whole process; and the kernel's
/// `struct sched_param` is the priority alone (musl's has more fields).
fn set_policy(policy: i32, priority: i32) -> std::io::Result<()> {
    let param: libc::c_int = priority;
    // SAFETY: `param` outlives the call; tid 0 is the calling thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            policy | libc::SCHED_RESET_ON_FORK,
            &param as *const libc::c_int,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's nice (`setpriority(PRIO_PROCESS, 0)` names the
/// calling thread on Linux).
fn set_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: no pointers.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Priority {
    /// A line for stderr when the reader could not be raised.
    pub fn warning(&self) -> Option<String> {
        match self {
            Priority::Unchanged(kind) => Some(format!(
                "reaper-trace: note: the ring buffer's reader runs at normal priority (real time and nice {NICE} refused: {kind}); on a busy machine a burst may then lose events"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread's policy (with the reset-on-fork flag) and nice.
    fn current() -> (i32, i32) {
        // SAFETY: tid 0 is the calling thread; no pointers.
        let policy = unsafe { libc::syscall(libc::SYS_sched_getscheduler, 0) } as i32;
        // SAFETY: no pointers.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        (policy, nice)
    }

    /// On its own thread, which ends with the change. As root the change
    /// is real time; otherwise it is whatever the limits allow, and a
    /// thread it starts afterwards is back at the default either way.
    #[test]
    fn raises_the_thread_and_not_what_it_starts() {
        std::thread::spawn(|| {
            let priority = raise();
            let (policy, nice) = current();
            match priority {
                Priority::RealTime => {
                    assert_eq!(policy & !libc::SCHED_RESET_ON_FORK, libc::SCHED_RR);
                    assert_ne!(policy & libc::SCHED_RESET_ON_FORK, 0);
                }
                Priority::Nice => assert_eq!(nice, NICE),
                Priority::Unchanged(_) => assert!(priority.warning().is_some()),
            }
            let (policy, nice) = std::thread::spawn(current).join().unwrap();
            assert_eq!(policy, libc::SCHED_OTHER, "the flag resets children");
            assert!(nice >= 0, "no child keeps a raised nice: {nice}");
        })
        .join()
        .unwrap();
    }
}
