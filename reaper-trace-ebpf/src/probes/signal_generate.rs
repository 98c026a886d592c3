//! `signal_generate` (raw): a signal was queued, or refused. Kept for SIGCHLD
//! (how a parent hears of a child's exit) and for signals whose default action
//! terminates, handled or not (how a parent ended, and who asked it to).

use aya_ebpf::{
    helpers::bpf_get_current_comm, macros::raw_tracepoint, programs::RawTracePointContext,
};
use reaper_trace_common::{SIGCHLD, SenderKey, SignalGenerateRecord, kind};

use crate::{
    config::conf,
    emit, filter,
    log::OrLog,
    maps::SENDERS,
    siginfo::{self, SEND_SIG_PRIV, SI_QUEUE, SI_TKILL, SI_USER},
    task,
};

const PROBE: &str = "signal_generate";

/// Signals 1..=31 whose default action terminates the process: all but
/// SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG and SIGWINCH.
const DEFAULT_KILLS: u32 = !((1 << 17)
    | (1 << 18)
    | (1 << 19)
    | (1 << 20)
    | (1 << 21)
    | (1 << 22)
    | (1 << 23)
    | (1 << 28))
    & !1;

const SIG_DFL: u64 = 0;

#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn signal_generate(ctx: RawTracePointContext) -> u32 {
    let _ = try_signal_generate(&ctx);
    0
}

fn try_signal_generate(ctx: &RawTracePointContext) -> Result<(), i64> {
    // TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct *task,
    //          int type, enum sig_generate_result result)
    let sig = ctx.arg::<u64>(0) as i32;
    if !(1..=31).contains(&sig) {
        return Ok(());
    }
    // Cheapest tests first: most signals are not ours, most processes unfollowed.
    if sig != SIGCHLD && DEFAULT_KILLS & (1 << sig) == 0 {
        return Ok(());
    }
    let target: task::Task = ctx.arg(2);
    let target_tgid = task::tgid(target)?;
    if !filter::is_traced(target_tgid) && !filter::current_is_traced(PROBE, emit::current_tgid()) {
        return Ok(());
    }
    let (handler, sa_flags) = task::sigaction(target, sig)
        .or_log(PROBE, "reading the target's action")
        .unwrap_or((0, 0));
    let info = ctx.arg::<u64>(1);
    let code = siginfo::code(info);
    let (si_pid, si_status) = if info > SEND_SIG_PRIV {
        let info = info as *const u8;
        (
            task::read::<i32>(info, conf!(siginfo_pid)).unwrap_or(0),
            task::read::<i32>(info, conf!(siginfo_status)).unwrap_or(0),
        )
    } else {
        (0, 0)
    };
    // A signal whose default is to terminate is kept when it will kill, and
    // also, though handled, when a process sent it (kill, tkill, sigqueue):
    // a SIGTERM caught by a daemon that then crashes says how it ended and
    // who asked. The kernel's own handled signals (timers, profilers) are not.
    let kills = handler == SIG_DFL;
    let sent = matches!(code, SI_USER | SI_QUEUE | SI_TKILL);
    if sig != SIGCHLD && !kills && !sent {
        return Ok(());
    }
    let Some(mut entry) = emit::reserve::<SignalGenerateRecord>(kind::SIGNAL_GENERATE) else {
        return Ok(());
    };
    let header = emit::current_header(kind::SIGNAL_GENERATE);
    if sent && sig != SIGCHLD && !filter::is_traced(header.tgid) {
        // Userspace never saw this sender start: keep its name for it.
        if let Ok(comm) = bpf_get_current_comm() {
            let key = SenderKey {
                tgid: header.tgid,
                _pad: 0,
                time_ns: header.ktime_ns,
            };
            let _ = SENDERS
                .insert(key, comm, 0)
                .map_err(i64::from)
                .or_log(PROBE, "keeping the sender's name");
        }
    }
    entry.write(SignalGenerateRecord {
        header,
        sig,
        code,
        result: ctx.arg::<u64>(4) as i32,
        group: ctx.arg::<u64>(3) as i32,
        target_tgid,
        target_tid: task::pid(target).unwrap_or(0),
        si_pid,
        si_status,
        target_handler: handler,
        target_sa_flags: sa_flags,
        target_blocked: task::read::<u64>(target, conf!(task_blocked)).unwrap_or(0),
    });
    entry.submit(emit::wakeup_flags());
    Ok(())
}
