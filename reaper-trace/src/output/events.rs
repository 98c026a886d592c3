//! Rendering events as readable lines or JSON lines. Pure: returns strings.

use std::fmt::Write as _;

use crate::{
    trace::clock::ClockRef,
    trace::escape::escape,
    trace::event::{flags::*, *},
};

/// A duration as `1.234s`.
pub fn seconds(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// A signal's name, for the ones reaper-trace reports.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        16 => "SIGSTKFLT",
        17 => "SIGCHLD",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        26 => "SIGVTALRM",
        27 => "SIGPROF",
        29 => "SIGIO",
        30 => "SIGPWR",
        31 => "SIGSYS",
        _ => return format!("SIG{sig}"),
    };
    name.to_owned()
}

/// SIGCHLD's `si_code` names.
fn cld_code(code: i32) -> String {
    match code {
        1 => "CLD_EXITED".into(),
        2 => "CLD_KILLED".into(),
        3 => "CLD_DUMPED".into(),
        4 => "CLD_TRAPPED".into(),
        5 => "CLD_STOPPED".into(),
        6 => "CLD_CONTINUED".into(),
        0 => "SI_USER".into(),
        0x80 => "SI_KERNEL".into(),
        other => format!("code {other}"),
    }
}

/// `WNOHANG|WEXITED` style names of wait options.
pub fn wait_options(options: i32) -> String {
    let names = [
        (WNOHANG, "WNOHANG"),
        (WUNTRACED, "WUNTRACED"),
        (WEXITED, "WEXITED"),
        (WCONTINUED, "WCONTINUED"),
        (WNOWAIT, "WNOWAIT"),
        (WNOTHREAD, "__WNOTHREAD"),
        (WALL, "__WALL"),
        (WCLONE, "__WCLONE"),
    ];
    let mut out: Vec<String> = names
        .iter()
        .filter(|(bit, _)| options & bit != 0)
        .map(|(_, n)| (*n).to_owned())
        .collect();
    let known = names.iter().fold(0, |acc, (bit, _)| acc | bit);
    if options & !known != 0 {
        out.push(format!("{:#x}", options & !known));
    }
    if out.is_empty() {
        "0".into()
    } else {
        out.join("|")
    }
}

/// `SA_NOCLDWAIT|SA_RESTART` style names of sigaction flags.
pub fn sa_flags(flags: u64) -> String {
    let names = [
        (SA_NOCLDSTOP, "SA_NOCLDSTOP"),
        (SA_NOCLDWAIT, "SA_NOCLDWAIT"),
        (SA_SIGINFO, "SA_SIGINFO"),
        (SA_RESTART, "SA_RESTART"),
    ];
    let out: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if out.is_empty() {
        "0".into()
    } else {
        out.join("|")
    }
}

fn disposition(d: Disposition, handler: u64) -> String {
    match d {
        Disposition::Default => "SIG_DFL".into(),
        Disposition::Ignore => "SIG_IGN".into(),
        Disposition::Handler => format!("handler@{handler:#x}"),
    }
}

fn wait_status(status: i32) -> String {
    let (code, signal, core) = crate::trace::decode::split_exit_code(status);
    match (code, signal) {
        (Some(code), _) => format!("exited {code}"),
        (_, Some(sig)) => format!(
            "killed by {}{}",
            signal_name(sig),
            if core { " (core dumped)" } else { "" }
        ),
        _ => format!("status {status:#x}"),
    }
}

/// One readable line for an event (no trailing newline). Text from the
/// traced system is escaped.
pub fn text_line(event: &Event, clock: &ClockRef) -> String {
    let mut line = String::with_capacity(160);
    write_text_line(&mut line, event, clock);
    line
}

/// `text_line` appended to a reused buffer: the live path renders every
/// event, so the common kinds avoid allocating.
pub fn write_text_line(line: &mut String, event: &Event, clock: &ClockRef) {
    let _ = clock.write_time_of_day(line, event.time_ns);
    let _ = write!(
        line,
        " {:<15} {:>7}/{:<7} ",
        event.data.kind_name(),
        event.tgid,
        event.tid
    );
    let _ = match &event.data {
        EventData::Fork(f) => write!(
            line,
            "{} -> {} {}/{}",
            f.comm,
            if f.is_thread { "thread" } else { "process" },
            f.child_tgid,
            f.child_tid
        ),
        EventData::Exec(x) => {
            let moved = if x.old_pid != x.pid {
                format!(" (from thread {})", x.old_pid)
            } else {
                String::new()
            };
            write!(line, "{} {}{}", x.comm, escape(&x.filename), moved)
        }
        EventData::Exit(x) => {
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
        EventData::SignalGenerate(s) => write!(
            line,
            "{} -> {}/{} {} {} pid {} status {}: {:?}, target {}{}",
            signal_name(s.sig),
            s.target_tgid,
            s.target_tid,
            if s.group { "group" } else { "thread" },
            cld_code(s.code),
            s.si_pid,
            s.si_status,
            s.result,
            disposition(s.target_disposition, s.target_handler),
            if s.target_blocked { " (blocked)" } else { "" }
        ),
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
            "{:?} pid {} options {}",
            w.syscall,
            w.upid,
            wait_options(w.options)
        ),
        EventData::WaitExit(w) => {
            let outcome = if w.ret < 0 {
                format!("error {}", -w.ret)
            } else if w.reaped_pid == 0 {
                "nothing ready".into()
            } else {
                let reaps = if w.options & WNOWAIT != 0 {
                    "reports"
                } else {
                    "reaps"
                };
                format!(
                    "{reaps} {} ({})",
                    w.reaped_pid,
                    wait_status(if w.syscall == WaitSyscall::Wait4 {
                        w.status
                    } else {
                        w.status << 8
                    })
                )
            };
            write!(
                line,
                "{:?} pid {} options {} -> {outcome}",
                w.syscall,
                w.upid,
                wait_options(w.options)
            )
        }
        EventData::Free(f) => write!(line, "{} reaped (task freed)", f.comm),
        EventData::Sigaction(s) => write!(
            line,
            "{} set to {} flags {}",
            signal_name(s.sig),
            disposition(s.disposition, s.handler),
            sa_flags(s.flags)
        ),
        EventData::ForkFailed(f) => write!(
            line,
            "fork failed: errno {} (syscall {})",
            f.errno, f.syscall_nr
        ),
    };
}

/// One JSON object for an event (no trailing newline).
pub fn json_line(event: &Event) -> String {
    /// Serialised straight to text: no intermediate `serde_json::Value`.
    #[derive(serde::Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        line_type: &'static str,
        #[serde(flatten)]
        event: &'a Event,
    }
    serde_json::to_string(&Line {
        line_type: "event",
        event,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::comm::Comm;

    fn exit_event(comm: &[u8]) -> Event {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm);
        Event {
            time_ns: 2_000_000_000,
            tgid: 10,
            tid: 10,
            data: EventData::Exit(Exit {
                exit_code: Some(42),
                signal: None,
                core_dumped: false,
                raw_exit_code: 42 << 8,
                exit_signal: 17,
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
        let line = text_line(&exit_event(b"\x1b]0;pwn\x07"), &clock);
        assert!(!line.contains('\x1b') && !line.contains('\x07'), "{line}");
        assert!(
            line.contains("\\x1b]0;pwn\\x07 code 42, process exit, parent 9"),
            "{line}"
        );
    }

    #[test]
    fn json_has_stable_names() {
        let v: serde_json::Value = serde_json::from_str(&json_line(&exit_event(b"sleep"))).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["kind"], "exit");
        assert_eq!(v["exit_code"], 42);
        assert_eq!(v["comm"], "sleep");
        assert_eq!(v["group_dead"], true);
    }

    #[test]
    fn names_wait_options() {
        assert_eq!(wait_options(WNOHANG | WALL), "WNOHANG|__WALL");
        assert_eq!(wait_options(0), "0");
    }
}
