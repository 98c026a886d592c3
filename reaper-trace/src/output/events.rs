//! Rendering events as readable lines or JSON lines. Pure: returns strings.

use std::fmt::Write as _;

use crate::{
    analysis::reap::{ChildStatus, WaitResult},
    cgroup::Cgroup,
    trace::{
        clock::ClockRef,
        comm::Comm,
        escape::escape,
        event::*,
        names::{cld_code, errno_name, sa_flags, signal_name, wait_options},
    },
};

pub(crate) fn disposition(d: Disposition, handler: u64) -> String {
    match d {
        Disposition::Default => "SIG_DFL".into(),
        Disposition::Ignore => "SIG_IGN".into(),
        Disposition::Handler => format!("handler@{handler:#x}"),
    }
}

fn child_status(status: ChildStatus) -> String {
    match status {
        ChildStatus::Exited(code) => format!("exited {code}"),
        ChildStatus::Killed {
            signal,
            core_dumped,
        } => format!(
            "killed by {}{}",
            signal_name(signal),
            if core_dumped { " (core dumped)" } else { "" }
        ),
        ChildStatus::Stopped(signal) => format!("stopped by {}", signal_name(signal)),
        ChildStatus::Trapped { signal, event } => {
            format!("ptrace stop: {}, event {event}", signal_name(signal))
        }
        ChildStatus::Continued => "continued".into(),
        ChildStatus::Unknown => "status unknown: the wait began before tracing".into(),
    }
}

/// `16132 (ns pid 3)` when the namespace numbers it differently.
fn with_ns_pid(pid: i32, ns_pid: Option<i32>) -> String {
    match ns_pid {
        Some(local) => format!("{pid} (ns pid {local})"),
        None => pid.to_string(),
    }
}

/// What a wait asked for: `pid 12`, or `pidfd 3` (a file descriptor, not a
/// pid) with the process it stands for when the wait reported one:
/// `pidfd 3 (pid 12)`.
fn wait_target(
    upid: i32,
    upid_ns: Option<i32>,
    pidfd: Option<i32>,
    reported: Option<i32>,
) -> String {
    match (pidfd, reported) {
        (Some(fd), Some(pid)) => format!("pidfd {fd} (pid {pid})"),
        (Some(fd), None) => format!("pidfd {fd}"),
        (None, _) => format!("pid {}", with_ns_pid(upid, upid_ns)),
    }
}

/// What a wait returned, in the terms of the reap rules: `reaps 12 (exited
/// 0)` only for an exit collected without `WNOWAIT`; a peek, a stop, a
/// ptrace trap or a continue says what it was.
pub fn wait_outcome(w: &WaitExit) -> String {
    let result = WaitResult::of(w);
    match result {
        WaitResult::Error(ret) => format!("error {}", errno_name(ret.wrapping_neg() as i32)),
        WaitResult::Nothing => "nothing ready".into(),
        WaitResult::Child { pid, status, peek } => {
            let pid = with_ns_pid(pid, w.reaped_ns_pid);
            if result.collected_exit().is_some() {
                format!("reaps {pid} ({})", child_status(status))
            } else if peek && status.is_exit() {
                format!(
                    "reports {pid} ({}), WNOWAIT: not reaped",
                    child_status(status)
                )
            } else {
                format!("{pid} {}: not reaped", child_status(status))
            }
        }
    }
}

/// One readable line for an event (no trailing newline). Text from the
/// traced system is escaped.
pub fn text_line(event: &Event, clock: &ClockRef, cgroup: Option<&Cgroup>) -> String {
    let mut line = String::with_capacity(160);
    write_text_line(&mut line, event, clock, cgroup);
    line
}

/// `text_line` appended to a reused buffer: the live path renders every
/// event, so the common kinds avoid allocating.
pub fn write_text_line(
    line: &mut String,
    event: &Event,
    clock: &ClockRef,
    cgroup: Option<&Cgroup>,
) {
    let _ = clock.write_time_of_day(line, event.time_ns);
    let _ = write!(
        line,
        " {:<15} {:>7}/{:<7} ",
        event.data.kind_name(),
        event.tgid,
        event.tid
    );
    let _ = write_details(line, &event.data);
    // Only a container or unit: the root cgroup, or a path that names
    // neither, would be noise on every line.
    if let Some(brief) = cgroup.and_then(|c| c.container.brief()) {
        let _ = write!(line, " [{}]", escape(&brief));
    }
}

/// What follows the kind and the pid on an event's line.
fn write_details(line: &mut String, data: &EventData) -> std::fmt::Result {
    match data {
        EventData::Fork(f) => write!(
            line,
            "{} -> {} {}/{}",
            f.comm,
            if f.is_thread { "thread" } else { "process" },
            f.child_tgid,
            f.child_tid
        ),
        EventData::Exec(x) => write_exec(line, x),
        EventData::Exit(x) => write_exit(line, x),
        EventData::SignalGenerate(s) => write_signal_generate(line, s),
        EventData::SignalDeliver(d) => write!(
            line,
            "{} {} to {} flags {}",
            signal_name(d.sig),
            cld_code(d.code),
            disposition(d.disposition, d.sa_handler),
            sa_flags(d.sa_flags)
        ),
        EventData::ProcessWait(w) => write!(
            line,
            "waits for {}",
            if w.pid == 0 {
                "any child".into()
            } else {
                w.pid.to_string()
            }
        ),
        EventData::WaitEnter(w) => write!(
            line,
            "{:?} {} options {}",
            w.syscall,
            wait_target(w.upid, w.upid_ns, w.pidfd, None),
            wait_options(w.options)
        ),
        EventData::WaitExit(w) => write_wait_exit(line, w),
        EventData::NsPids(n) => write_ns_pids(line, n),
        EventData::Free(f) => write!(line, "{} reaped (task freed)", f.comm),
        EventData::Sigaction(s) => write_sigaction(line, s),
        EventData::ForkFailed(f) => write!(
            line,
            "fork failed: {} (syscall {})",
            errno_name(f.errno),
            f.syscall_nr
        ),
        EventData::TaskRename(r) => write!(line, "{} renamed to {}", r.old_comm, r.new_comm),
    }
}

fn write_exec(line: &mut String, x: &Exec) -> std::fmt::Result {
    let moved = if x.old_pid != x.pid {
        format!(" (from thread {})", x.old_pid)
    } else {
        String::new()
    };
    write!(line, "{} {}{}", x.comm, escape(&x.filename), moved)
}

fn write_exit(line: &mut String, x: &Exit) -> std::fmt::Result {
    let how = match (x.exit_code, x.signal) {
        (Some(code), _) => format!("code {code}"),
        (_, Some(sig)) => format!(
            "killed by {}{}",
            signal_name(sig),
            if x.core_dumped { " (core dumped)" } else { "" }
        ),
        _ => String::new(),
    };
    let scope = match (x.is_thread, x.group_dead) {
        (true, false) => "thread exit",
        (false, false) => "leader exit, threads live on",
        (_, true) => "process exit",
    };
    write!(
        line,
        "{} {how}, {scope}, parent {}",
        x.comm, x.real_parent_tgid
    )
}

fn write_signal_generate(line: &mut String, s: &SignalGenerate) -> std::fmt::Result {
    write!(
        line,
        "{} -> {}/{} {} {} pid {} status {}: {:?}, target {}{}",
        signal_name(s.sig),
        s.target_tgid,
        s.target_tid,
        if s.group { "group" } else { "thread" },
        cld_code(s.code),
        with_ns_pid(s.si_pid, s.si_ns_pid),
        s.si_status,
        s.result,
        disposition(s.target_disposition, s.target_handler),
        if s.target_blocked { " (blocked)" } else { "" }
    )
}

fn write_wait_exit(line: &mut String, w: &WaitExit) -> std::fmt::Result {
    write!(
        line,
        "{:?} {} options {} -> {}",
        w.syscall,
        wait_target(
            w.upid,
            w.upid_ns,
            w.pidfd,
            (w.reaped_pid > 0).then_some(w.reaped_pid)
        ),
        wait_options(w.options),
        wait_outcome(w)
    )
}

fn write_ns_pids(line: &mut String, n: &NsPids) -> std::fmt::Result {
    let levels: Vec<String> = n
        .levels
        .iter()
        .map(|l| format!("{} in pid:[{}]", l.pid, l.ns))
        .collect();
    write!(line, "process {} is {}", n.child_tgid, levels.join(", "))
}

fn write_sigaction(line: &mut String, s: &Sigaction) -> std::fmt::Result {
    let by = if s.comm == Comm::default() {
        String::new()
    } else {
        format!(" by thread {}", s.comm)
    };
    write!(
        line,
        "{} set to {} flags {}{by}",
        signal_name(s.sig),
        disposition(s.disposition, s.handler),
        sa_flags(s.flags)
    )
}

/// One JSON object for an event (no trailing newline).
pub fn json_line(event: &Event, cgroup: Option<&Cgroup>) -> String {
    /// Serialised straight to text: no intermediate `serde_json::Value`.
    #[derive(serde::Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        line_type: &'static str,
        #[serde(flatten)]
        event: &'a Event,
        #[serde(skip_serializing_if = "Option::is_none")]
        cgroup: Option<&'a Cgroup>,
    }
    serde_json::to_string(&Line {
        line_type: "event",
        event,
        cgroup,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reaper_trace_common::SIGCHLD;

    use crate::trace::comm::Comm;

    fn exit_event(comm: &[u8]) -> Event {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm);
        Event {
            time_ns: 2_000_000_000,
            tgid: 10,
            tid: 10,
            cgroup_id: 0,
            data: EventData::Exit(Exit {
                exit_code: Some(42),
                signal: None,
                core_dumped: false,
                raw_exit_code: 42 << 8,
                exit_signal: SIGCHLD,
                real_parent_tgid: 9,
                group_dead: true,
                is_thread: false,
                process_start_ns: 1,
                parent_disposition: Disposition::Default,
                parent_sa_flags: 0,
                comm: Comm(c),
            }),
        }
    }

    #[test]
    fn text_escapes_hostile_names() {
        let clock = ClockRef {
            monotonic_ns: 0,
            realtime_ns: 0,
        };
        let line = text_line(&exit_event(b"\x1b]0;pwn\x07"), &clock, None);
        assert!(!line.contains('\x1b') && !line.contains('\x07'), "{line}");
        assert!(
            line.contains("\\x1b]0;pwn\\x07 code 42, process exit, parent 9"),
            "{line}"
        );
    }

    #[test]
    fn json_has_stable_names() {
        let v: serde_json::Value =
            serde_json::from_str(&json_line(&exit_event(b"sleep"), None)).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["kind"], "exit");
        assert_eq!(v["exit_code"], 42);
        assert_eq!(v["comm"], "sleep");
        assert_eq!(v["group_dead"], true);
    }

    #[test]
    fn wait_lines_say_what_the_reap_rules_say() {
        let mut w = WaitExit {
            syscall: WaitSyscall::Wait4,
            which: 0,
            upid: 15892,
            options: 0,
            ret: 15892,
            reaped_pid: 15892,
            status: 0x7f,
            si_code: 0,
            enter_time_ns: 0,
            args_known: true,
            upid_ns: None,
            reaped_ns_pid: None,
            pidfd: None,
        };
        // A stopped child (0x7f low byte), once read as "killed by SIG127".
        assert_eq!(wait_outcome(&w), "15892 stopped by SIG0: not reaped");
        w.status = 0x137f;
        assert_eq!(wait_outcome(&w), "15892 stopped by SIGSTOP: not reaped");
        w.status = 0xffff;
        assert_eq!(wait_outcome(&w), "15892 continued: not reaped");
        w.status = 9;
        assert_eq!(wait_outcome(&w), "reaps 15892 (killed by SIGKILL)");
        w.syscall = WaitSyscall::Waitid;
        w.ret = 0;
        w.options = libc::WEXITED | libc::WNOWAIT;
        w.si_code = libc::CLD_EXITED;
        w.status = 3;
        assert_eq!(
            wait_outcome(&w),
            "reports 15892 (exited 3), WNOWAIT: not reaped"
        );
        w.ret = -10;
        assert_eq!(wait_outcome(&w), "error ECHILD");
    }

    #[test]
    fn pidfd_waits_and_renames_read_as_what_they_are() {
        use crate::trace::test_events as b;
        let clock = ClockRef {
            monotonic_ns: 0,
            realtime_ns: 0,
        };
        let line = text_line(&b::pidfd_wait_exit(5, 10, 3, 4321), &clock, None);
        assert!(
            line.ends_with(
                "wait_exit            10/10      Waitid pidfd 3 (pid 4321) options WEXITED -> reaps 4321 (exited 0)"
            ),
            "{line}"
        );
        let line = text_line(&b::pidfd_wait_exit(5, 10, 3, 0), &clock, None);
        assert!(
            line.ends_with("Waitid pidfd 3 options WEXITED -> nothing ready"),
            "{line}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&json_line(&b::pidfd_wait_exit(5, 10, 3, 4321), None)).unwrap();
        assert_eq!(
            (v["pidfd"].as_i64(), v["reaped_pid"].as_i64()),
            (Some(3), Some(4321))
        );
        let plain: serde_json::Value =
            serde_json::from_str(&json_line(&b::wait_exit(5, 10, -1, 0, 7), None)).unwrap();
        assert_eq!(plain.get("pidfd"), None);

        let rename = b::rename(5, 10, 12, "exe", "\x1bsleep");
        let line = text_line(&rename, &clock, None);
        assert!(
            line.ends_with("task_rename          10/12      exe renamed to \\x1bsleep"),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&json_line(&rename, None)).unwrap();
        assert_eq!(
            (
                v["kind"].as_str(),
                v["old_comm"].as_str(),
                v["new_comm"].as_str(),
                v["tid"].as_i64()
            ),
            (
                Some("task_rename"),
                Some("exe"),
                Some("\u{1b}sleep"),
                Some(12)
            )
        );
        let sigaction = b::by_thread(b::sigaction(5, 10, 12, Disposition::Ignore, 1), "webu");
        assert!(
            text_line(&sigaction, &clock, None)
                .ends_with("SIGCHLD set to SIG_IGN flags 0 by thread webu"),
            "{}",
            text_line(&sigaction, &clock, None)
        );
    }
}
