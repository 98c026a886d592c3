//! One record layout per hook. See `docs/abi.md` for the meaning of each field.

use crate::{COMM_LEN, FILENAME_LEN};

/// Record kinds. Explicit numbers, never reused.
pub mod kind {
    pub const FORK: u32 = 1;
    pub const EXEC: u32 = 2;
    pub const EXIT: u32 = 3;
    pub const SIGNAL_GENERATE: u32 = 4;
    pub const SIGNAL_DELIVER: u32 = 5;
    pub const PROCESS_WAIT: u32 = 6;
    pub const WAIT_ENTER: u32 = 7;
    pub const WAIT_EXIT: u32 = 8;
    pub const FREE: u32 = 9;
    pub const SIGACTION: u32 = 10;
    pub const FORK_FAILED: u32 = 11;
    pub const NS_PIDS: u32 = 12;
    /// Registers and the top of the user stack ([`super::UserStackRecord`]):
    /// consumed by the live tracer, which unwinds them; never recorded.
    pub const USTACK: u32 = 13;
    /// A task's name changed (`prctl(PR_SET_NAME)`, `pthread_setname_np`, a
    /// write to `/proc/PID/comm`): [`super::TaskRenameRecord`].
    pub const TASK_RENAME: u32 = 14;
    /// One past the largest kind: the size of the per-kind loss counters.
    pub const COUNT: u32 = 15;

    /// Each kind's stable name (index = kind number), as JSON, totals and
    /// loss counts print it.
    pub const NAMES: [&str; COUNT as usize] = [
        "unknown",
        "fork",
        "exec",
        "exit",
        "signal_generate",
        "signal_deliver",
        "process_wait",
        "wait_enter",
        "wait_exit",
        "free",
        "sigaction",
        "fork_failed",
        "ns_pids",
        "ustack",
        "task_rename",
    ];
}

/// Bits of [`Header::flags`].
pub mod header_flags {
    /// On a `FORK` or `SIGACTION` record: the thread's user stack for this
    /// very call was sent just before it (a `USTACK` record). Without it, a
    /// pending stack of that thread is stale (its own record was lost) and
    /// is dropped rather than given to the wrong call.
    pub const HAS_STACK: u32 = 1;
}

/// Starts every record.
///
/// `tgid`/`tid` name the task the event happened in: the current task for
/// every hook but `sched_process_free`, which runs in softirq context and
/// names the freed task instead.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub kind: u32,
    /// [`header_flags`]; other bits reserved, zero.
    pub flags: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, the clock of `task->start_time`.
    pub ktime_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    /// The cgroup v2 id (the cgroup directory's inode number) of the task
    /// the event ran in: `bpf_get_current_cgroup_id()`. 0 for `free`, which
    /// runs in no task of its own, and in recordings of ABI version 1.
    pub cgroup_id: u64,
}

/// `sched_process_fork`: a new task. The header names the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkRecord {
    pub header: Header,
    pub child_tgid: u32,
    pub child_tid: u32,
    pub child_start_ns: u64,
    /// Start time of the parent's thread-group leader: with `header.tgid` it
    /// identifies the parent process.
    pub parent_start_ns: u64,
    /// 1 when the child is a thread of the parent's process.
    pub is_thread: u32,
    /// The child's real parent: the forker, except with `CLONE_PARENT`
    /// (and threads), where it is the forker's own parent. 0 when unknown
    /// (recordings made before it was filled in: this was padding).
    pub real_parent_tgid: u32,
    pub comm: [u8; COMM_LEN],
}

/// `sched_process_exec`: a successful exec. The header names the task after
/// exec (a non-leader thread that execs takes the leader's pid).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecRecord {
    pub header: Header,
    pub pid: u32,
    pub old_pid: u32,
    pub process_start_ns: u64,
    pub comm: [u8; COMM_LEN],
    /// NUL-terminated, truncated to `FILENAME_LEN - 1` bytes.
    pub filename: [u8; FILENAME_LEN],
}

/// `sched_process_exit`: a thread finished `do_exit`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitRecord {
    pub header: Header,
    /// `task->exit_code`: `status << 8` for exit(status), or the signal
    /// number (| 0x80 with a core dump).
    pub exit_code: i32,
    /// `task->exit_signal`: what the parent will be sent (0: nothing).
    pub exit_signal: i32,
    pub real_parent_tgid: u32,
    /// 1 when this was the last live thread of its process.
    pub group_dead: u32,
    /// Start time of the thread-group leader.
    pub process_start_ns: u64,
    /// The real parent's SIGCHLD handler and flags at this exit: with SIG_IGN
    /// or SA_NOCLDWAIT the kernel reaps the child itself in `exit_notify`.
    pub parent_sigchld_handler: u64,
    pub parent_sigchld_flags: u64,
    pub comm: [u8; COMM_LEN],
}

/// `signal_generate` for SIGCHLD and fatal signals. The header names the
/// sender (the current task).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalGenerateRecord {
    pub header: Header,
    pub sig: i32,
    /// `si_code` (CLD_EXITED, CLD_KILLED, ... for SIGCHLD).
    pub code: i32,
    /// 0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 lose info.
    pub result: i32,
    /// 1 for a process-wide signal.
    pub group: i32,
    pub target_tgid: u32,
    pub target_tid: u32,
    /// `si_pid`/`si_status`: for SIGCHLD, the child and its status.
    pub si_pid: i32,
    pub si_status: i32,
    /// The target's disposition for `sig` when it was generated.
    pub target_handler: u64,
    pub target_sa_flags: u64,
    /// The target thread's blocked mask (bit n-1 for signal n).
    pub target_blocked: u64,
}

/// `signal_deliver`: the target dequeued a signal in `get_signal`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalDeliverRecord {
    pub header: Header,
    pub sig: i32,
    pub code: i32,
    pub sa_handler: u64,
    pub sa_flags: u64,
}

/// `sched_process_wait`: the start of `do_wait`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessWaitRecord {
    pub header: Header,
    /// The pid waited for (0 for any).
    pub pid: i32,
    pub _pad: u32,
}

/// `sys_enter_wait4` / `sys_enter_waitid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitEnterRecord {
    pub header: Header,
    /// One of [`crate::wait_syscall`].
    pub syscall: u32,
    /// waitid's `which` (P_ALL 0, P_PID 1, P_PGID 2, P_PIDFD 3); 0 for wait4.
    pub which: i32,
    pub upid: i32,
    pub options: i32,
}

/// `sys_exit_wait4` / `sys_exit_waitid`, with the arguments of the matching
/// enter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitExitRecord {
    pub header: Header,
    pub syscall: u32,
    pub which: i32,
    pub upid: i32,
    pub options: i32,
    /// The syscall's return value.
    pub ret: i64,
    /// The reaped (or reported) pid: wait4's return, waitid's `infop->si_pid`.
    /// 0 when nothing was ready.
    pub reaped_pid: i32,
    /// wait4: the status word; waitid: `infop->si_status`.
    pub status: i32,
    /// waitid: `infop->si_code`; 0 for wait4.
    pub si_code: i32,
    pub _pad: u32,
    pub enter_ktime_ns: u64,
}

/// `sched_process_free`: the task struct is freed, after its reap. The header
/// names the freed task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreeRecord {
    pub header: Header,
    pub process_start_ns: u64,
    pub start_ns: u64,
    pub exit_code: i32,
    /// The tgid of the freed task's real parent as it was released: the
    /// parent it exited under, or the subreaper or init it was reparented
    /// to when that parent died first. 0 when unknown (recordings made
    /// before it was filled in: this was padding).
    pub real_parent_tgid: u32,
    pub comm: [u8; COMM_LEN],
}

/// `sys_enter_rt_sigaction` for SIGCHLD with a new action.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigactionRecord {
    pub header: Header,
    pub sig: i32,
    pub _pad: u32,
    pub handler: u64,
    pub flags: u64,
    pub mask: u64,
    /// The calling thread's name (`current->comm`) at the call: which
    /// thread of a program changed SIGCHLD (`webu`, a library's worker),
    /// whether it was named before tracing or during it. ABI version 3;
    /// records of older versions are [`SIGACTION_V2_LEN`] bytes without it.
    pub comm: [u8; COMM_LEN],
}

/// The size of a [`SigactionRecord`] before ABI version 3 added `comm`
/// (with the version 2 header).
pub const SIGACTION_V2_LEN: usize = core::mem::size_of::<SigactionRecord>() - COMM_LEN;

/// `task_rename`: a task's name changed. The header names the renamed task
/// (not always the current one: a write to `/proc/PID/task/TID/comm`, as
/// `pthread_setname_np` does for another thread, renames another task).
/// Renames made by `exec` itself are not sent: the `EXEC` record names the
/// new image. A thread other than the leader is sent only with `--threads`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskRenameRecord {
    pub header: Header,
    /// Start time of the renamed task's thread-group leader: with
    /// `header.tgid`, the process.
    pub process_start_ns: u64,
    pub old_comm: [u8; COMM_LEN],
    /// NUL-padded, as the kernel keeps it (15 bytes at most).
    pub new_comm: [u8; COMM_LEN],
}

/// `sys_exit_{clone,clone3,fork,vfork}` with a negative return.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkFailedRecord {
    pub header: Header,
    pub syscall_nr: i32,
    /// Positive errno.
    pub errno: i32,
}

/// How many pid-namespace levels an [`NsPidsRecord`] carries.
pub const NS_LEVELS: usize = 4;

/// After `sched_process_fork`, for a child outside the initial pid
/// namespace (containers): its pid as each namespace sees it. Wait results
/// and SIGCHLD's `si_pid` are in the waiter's namespace; these let userspace
/// map them back to global pids. The header names the parent, as for fork.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsPidsRecord {
    pub header: Header,
    pub child_tgid: u32,
    /// Depth of the child's pid namespace: 0 is the initial one.
    pub level: u32,
    /// Its pid in the namespaces at levels `0..=level`, outermost first
    /// (`nr[0]` is the global pid); deeper than `NS_LEVELS`, the innermost
    /// `NS_LEVELS` levels, so that the last one is always its own.
    pub nr: [u32; NS_LEVELS],
    /// `ns[i]`: that namespace's inode number (as `/proc/PID/ns/pid` shows).
    pub ns: [u32; NS_LEVELS],
}

/// How many bytes of user stack a [`UserStackRecord`] holds: four pages
/// from the one holding the stack pointer. perf's `--call-graph dwarf`
/// copies 8 KiB by default; a fork from a deep stack needs more.
pub const USTACK_PAGES: usize = 4;
pub const USTACK_BYTES: usize = USTACK_PAGES * 4096;

/// Where a user stack was taken ([`UserStackRecord::owner`]).
pub mod stack_owner {
    /// Entering clone/clone3/fork/vfork for a new process: the stack
    /// belongs to the next `FORK` of the same thread.
    pub const FORK: u32 = 1;
    /// rt_sigaction changing SIGCHLD: the stack belongs to the next
    /// `SIGACTION` record from the same thread.
    pub const SIGACTION: u32 = 2;
}

/// The user registers an unwinder needs and a copy of the user stack, taken
/// at `sys_enter` of a fork-family call or of rt_sigaction(SIGCHLD), for
/// followed processes or with `--stacks`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserStackRecord {
    pub header: Header,
    /// One of [`stack_owner`].
    pub owner: u32,
    /// Bytes of `bytes` copied: whole pages, stopping at the first page
    /// that could not be read (the top of the stack, or one not resident).
    pub len: u32,
    pub ip: u64,
    pub sp: u64,
    /// The frame pointer: rbp on x86_64, x29 on aarch64.
    pub bp: u64,
    /// aarch64's link register (x30): a leaf function's return address,
    /// which is on no stack. 0 on x86_64.
    pub lr: u64,
    /// The user address of `bytes[0]`: `sp` rounded down to its page.
    pub base: u64,
    pub bytes: [u8; USTACK_BYTES],
}

/// The size of each kind's record, or `None` for an unknown kind.
pub const fn record_size(kind: u32) -> Option<usize> {
    use core::mem::size_of;
    Some(match kind {
        kind::FORK => size_of::<ForkRecord>(),
        kind::EXEC => size_of::<ExecRecord>(),
        kind::EXIT => size_of::<ExitRecord>(),
        kind::SIGNAL_GENERATE => size_of::<SignalGenerateRecord>(),
        kind::SIGNAL_DELIVER => size_of::<SignalDeliverRecord>(),
        kind::PROCESS_WAIT => size_of::<ProcessWaitRecord>(),
        kind::WAIT_ENTER => size_of::<WaitEnterRecord>(),
        kind::WAIT_EXIT => size_of::<WaitExitRecord>(),
        kind::FREE => size_of::<FreeRecord>(),
        kind::SIGACTION => size_of::<SigactionRecord>(),
        kind::FORK_FAILED => size_of::<ForkFailedRecord>(),
        kind::NS_PIDS => size_of::<NsPidsRecord>(),
        kind::USTACK => size_of::<UserStackRecord>(),
        kind::TASK_RENAME => size_of::<TaskRenameRecord>(),
        _ => return None,
    })
}

// Every record is a multiple of 8 bytes, so records packed back to back stay
// aligned and the compiler adds no trailing padding we did not write.
const _: () = {
    let mut k = 1;
    while k < kind::COUNT {
        match record_size(k) {
            Some(n) => assert!(n % 8 == 0),
            None => panic!("every kind below COUNT has a layout"),
        }
        k += 1;
    }
};
