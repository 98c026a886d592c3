//! Made-up events for unit tests of the analysis and the kernel suite.

use crate::{trace::comm::Comm, trace::event::*};
use reaper_trace_common::SIGCHLD;

pub fn at(time_ns: u64, tgid: u32, tid: u32, data: EventData) -> Event {
    Event {
        time_ns,
        tgid,
        tid,
        cgroup_id: 0,
        data,
    }
}

pub fn fork(t: u64, parent: u32, child: u32, is_thread: bool) -> Event {
    let child_tgid = if is_thread { parent } else { child };
    at(
        t,
        parent,
        parent,
        EventData::Fork(Fork {
            child_tgid,
            child_tid: child,
            child_start_ns: t,
            parent_start_ns: 1,
            is_thread,
            real_parent_tgid: None,
            comm: Comm::from_str_lossy("p"),
            has_stack: false,
        }),
    )
}

pub fn exit(
    t: u64,
    pid: u32,
    tid: u32,
    parent: u32,
    group_dead: bool,
    start: u64,
    parent_disposition: Disposition,
) -> Event {
    at(
        t,
        pid,
        tid,
        EventData::Exit(Exit {
            exit_code: Some(0),
            signal: None,
            core_dumped: false,
            raw_exit_code: 0,
            exit_signal: SIGCHLD,
            real_parent_tgid: parent,
            group_dead,
            is_thread: pid != tid,
            process_start_ns: start,
            parent_disposition,
            parent_sa_flags: 0,
            comm: Comm::from_str_lossy("c"),
        }),
    )
}

pub fn sigchld(
    t: u64,
    child: u32,
    parent: u32,
    result: SignalResult,
    disposition: Disposition,
    blocked: bool,
) -> Event {
    at(
        t,
        child,
        child,
        EventData::SignalGenerate(SignalGenerate {
            sig: SIGCHLD,
            code: 1,
            result,
            group: true,
            target_tgid: parent,
            target_tid: parent,
            si_pid: child as i32,
            si_status: 0,
            target_disposition: disposition,
            target_handler: if disposition == Disposition::Handler {
                0x1234
            } else {
                0
            },
            target_sa_flags: 0,
            target_blocked: blocked,
            si_ns_pid: None,
        }),
    )
}

/// `from` sends `sig` to `target` (kill), which leaves it at its default.
pub fn kill(t: u64, from: u32, target: u32, sig: i32) -> Event {
    at(
        t,
        from,
        from,
        EventData::SignalGenerate(SignalGenerate {
            sig,
            code: libc::SI_USER,
            result: SignalResult::Delivered,
            group: true,
            target_tgid: target,
            target_tid: target,
            si_pid: from as i32,
            si_status: 0,
            target_disposition: Disposition::Default,
            target_handler: 0,
            target_sa_flags: 0,
            target_blocked: false,
            si_ns_pid: None,
        }),
    )
}

/// Process `pid` killed by `sig`.
pub fn killed(t: u64, pid: u32, parent: u32, start: u64, sig: i32) -> Event {
    let mut event = exit(t, pid, pid, parent, true, start, Disposition::Default);
    if let EventData::Exit(x) = &mut event.data {
        x.exit_code = None;
        x.signal = Some(sig);
        x.raw_exit_code = sig;
    }
    event
}

pub fn wait_enter(t: u64, parent: u32, upid: i32, options: i32) -> Event {
    at(
        t,
        parent,
        parent,
        EventData::WaitEnter(WaitEnter {
            syscall: WaitSyscall::Wait4,
            which: 0,
            upid,
            options,
            upid_ns: None,
            pidfd: None,
        }),
    )
}

pub fn wait_exit(t: u64, parent: u32, upid: i32, options: i32, reaped: i32) -> Event {
    at(
        t,
        parent,
        parent,
        EventData::WaitExit(WaitExit {
            syscall: WaitSyscall::Wait4,
            which: 0,
            upid,
            options,
            ret: reaped as i64,
            reaped_pid: reaped,
            status: 0,
            si_code: 0,
            enter_time_ns: t,
            args_known: true,
            upid_ns: None,
            reaped_ns_pid: None,
            pidfd: None,
        }),
    )
}

/// `parent` waits with `waitid(P_PIDFD, fd, ..., WEXITED)`, which reports
/// `reaped` (0: nothing).
pub fn pidfd_wait_exit(t: u64, parent: u32, fd: i32, reaped: i32) -> Event {
    let mut event = wait_exit(t, parent, fd, libc::WEXITED, reaped);
    if let EventData::WaitExit(w) = &mut event.data {
        w.syscall = WaitSyscall::Waitid;
        w.which = P_PIDFD;
        w.ret = 0;
        w.si_code = if reaped > 0 { libc::CLD_EXITED } else { 0 };
        w.pidfd = Some(fd);
    }
    event
}

/// `parent` enters `waitid(P_PIDFD, fd, ..., WEXITED)`, and the kernel's
/// `sched_process_wait` names the process the fd stands for, `target`.
pub fn pidfd_wait_enter(t: u64, parent: u32, fd: i32, target: i32) -> [Event; 2] {
    let mut enter = wait_enter(t, parent, fd, libc::WEXITED);
    if let EventData::WaitEnter(w) = &mut enter.data {
        w.syscall = WaitSyscall::Waitid;
        w.which = P_PIDFD;
        w.pidfd = Some(fd);
    }
    let resolved = at(
        t,
        parent,
        parent,
        EventData::ProcessWait(ProcessWait { pid: target }),
    );
    [enter, resolved]
}

/// Task `tid` of `pid` renames itself from `old` to `new` (not by exec).
pub fn rename(t: u64, pid: u32, tid: u32, old: &str, new: &str) -> Event {
    at(
        t,
        pid,
        tid,
        EventData::TaskRename(TaskRename {
            process_start_ns: 0,
            old_comm: Comm::from_str_lossy(old),
            new_comm: Comm::from_str_lossy(new),
        }),
    )
}

/// `event` (a sigaction) made by a thread named `comm`.
pub fn by_thread(mut event: Event, comm: &str) -> Event {
    if let EventData::Sigaction(s) = &mut event.data {
        s.comm = Comm::from_str_lossy(comm);
    }
    event
}

pub fn free(t: u64, pid: u32, tid: u32) -> Event {
    at(
        t,
        pid,
        tid,
        EventData::Free(Free {
            process_start_ns: 0,
            start_ns: 0,
            exit_code: 0,
            real_parent_tgid: None,
            comm: Comm::from_str_lossy("c"),
        }),
    )
}

/// The free of the process `pid` that started at `start`.
pub fn free_of(t: u64, pid: u32, start: u64) -> Event {
    let mut event = free(t, pid, pid);
    if let EventData::Free(f) = &mut event.data {
        f.process_start_ns = start;
        f.start_ns = start;
    }
    event
}

/// The free of `pid` (started at `start`), released as a child of `parent`.
pub fn free_under(t: u64, pid: u32, start: u64, parent: u32) -> Event {
    let mut event = free_of(t, pid, start);
    if let EventData::Free(f) = &mut event.data {
        f.real_parent_tgid = Some(parent);
    }
    event
}

/// Thread `tid` of `pid` sets SIGCHLD's action.
pub fn sigaction(t: u64, pid: u32, tid: u32, disposition: Disposition, handler: u64) -> Event {
    at(
        t,
        pid,
        tid,
        EventData::Sigaction(Sigaction {
            sig: SIGCHLD,
            disposition,
            handler,
            flags: 0,
            mask: 0,
            has_stack: false,
            comm: Comm::default(),
        }),
    )
}

/// `pid` execs `filename`, becoming `comm`.
pub fn exec(t: u64, pid: u32, comm: &str, filename: &str) -> Event {
    at(
        t,
        pid,
        pid,
        EventData::Exec(Exec {
            pid,
            old_pid: pid,
            process_start_ns: 0,
            comm: Comm::from_str_lossy(comm),
            filename: filename.into(),
        }),
    )
}

/// `event` (a fork or a sigaction) saying its thread's stack was sent for
/// it (`HAS_STACK`).
pub fn stacked(mut event: Event) -> Event {
    match &mut event.data {
        EventData::Fork(f) => f.has_stack = true,
        EventData::Sigaction(s) => s.has_stack = true,
        _ => {}
    }
    event
}
