//! Who asked a parent to end: signals from processes the trace never saw
//! start (`docker stop`'s `runc kill`, outside the traced cgroup), named
//! from what the kernel kept.

use super::*;
use crate::trace::{comm::Comm, event::*, test_events as b};

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;

/// Parent 10 forks 11, which exits at once and is never reaped; 10 is
/// then told to stop by 900 (SIGTERM, at 1 s) and killed by 901 (SIGKILL,
/// at 2 s). `name` runs before each signal, as live and replay call
/// `name_sender`.
fn stopped_parent(mut name: impl FnMut(&mut Analyzer, &Event)) -> Report {
    let mut a = Analyzer::new(S);
    let mut killed = b::exit(2 * S + MS, 10, 10, 1, true, 1, Disposition::Default);
    if let EventData::Exit(x) = &mut killed.data {
        (x.exit_code, x.signal) = (None, Some(libc::SIGKILL));
    }
    let events = [
        b::fork(MS, 10, 11, false),
        b::exit(2 * MS, 11, 11, 10, true, MS, Disposition::Default),
        b::kill(S, 900, 10, libc::SIGTERM),
        b::kill(2 * S, 901, 10, libc::SIGKILL),
        killed,
    ];
    for event in &events {
        name(&mut a, event);
        a.on_event(event);
    }
    a.finish(3 * S)
}

/// How the parent ended, as the finding about its unreaped child 11 says.
fn child_finding(r: &Report) -> &super::facts::ProcessEnd {
    r.findings
        .iter()
        .find(|f| f.pid == 11)
        .and_then(|f| f.parent_end.as_ref())
        .unwrap_or_else(|| panic!("no parent end for 11: {:#?}", r.findings))
}

#[test]
fn senders_the_trace_never_saw_are_named_as_the_kernel_kept_them() {
    let r = stopped_parent(|a, e| {
        if let EventData::SignalGenerate(_) = e.data {
            a.name_sender(e.tgid, e.time_ns, Comm::from_str_lossy("runc"));
        }
    });
    let end = child_finding(&r);
    let term = end.after_signal.as_ref().expect("the SIGTERM before");
    assert_eq!(
        (term.from_pid, term.from_comm),
        (900, Comm::from_str_lossy("runc"))
    );
    let kill = end.signal_from.as_ref().expect("the SIGKILL's sender");
    assert_eq!(
        (kill.from_pid, kill.from_comm),
        (901, Comm::from_str_lossy("runc"))
    );
    assert_eq!(
        end.describe(),
        "killed by SIGKILL from 901 (runc) 1.001s after SIGTERM from 900 (runc)"
    );
}

#[test]
fn a_name_is_given_only_to_the_signal_it_was_kept_for() {
    // Named for another time (a stale entry), or for another process: the
    // senders stay unnamed, never misnamed.
    let r = stopped_parent(|a, e| {
        if let EventData::SignalGenerate(_) = e.data {
            a.name_sender(e.tgid, e.time_ns + 1, Comm::from_str_lossy("stale"));
            a.name_sender(e.tgid + 1, e.time_ns, Comm::from_str_lossy("other"));
        }
    });
    let end = child_finding(&r);
    assert_eq!(
        end.describe(),
        "killed by SIGKILL from 901 1.001s after SIGTERM from 900"
    );
}

#[test]
fn a_sender_the_trace_knows_keeps_its_own_name() {
    let r = stopped_parent(|a, e| {
        if e.time_ns == MS {
            // 900 was seen exec'ing before it sent anything.
            a.on_event(&b::exec(0, 900, "kill", "/bin/kill"));
        }
        if let EventData::SignalGenerate(_) = e.data {
            a.name_sender(e.tgid, e.time_ns, Comm::from_str_lossy("runc"));
        }
    });
    let end = child_finding(&r);
    assert_eq!(
        end.after_signal.as_ref().map(|s| s.from_comm),
        Some(Comm::from_str_lossy("kill"))
    );
}
