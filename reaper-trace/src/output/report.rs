//! Rendering findings and the end-of-trace report. Pure: returns strings.

use std::fmt::Write as _;

use crate::{
    analysis::{Finding, FindingKind, Notice, Report, Resolution, diagnosis::now},
    trace::{
        escape::escape,
        event::NsPid,
        names::{seconds, signal_name},
        stack,
    },
};

fn how_it_ended(f: &Finding) -> String {
    match (f.exit_code, f.signal) {
        (Some(code), _) => format!("exited {code}"),
        (_, Some(sig)) => format!(
            "killed by {}{}",
            signal_name(sig),
            if f.core_dumped { " (core dumped)" } else { "" }
        ),
        _ => "was already a zombie when tracing started".into(),
    }
}

/// `16132 (ns pid 3)` for a process in a pid namespace of its own.
fn pid_text(pid: u32, ns_pid: Option<NsPid>) -> String {
    match ns_pid {
        Some(ns) => format!("{pid} (ns pid {})", ns.pid),
        None => pid.to_string(),
    }
}

/// One line for a finding: what, who, the outcome, then the diagnosis and
/// the hint.
/// ` [docker 3f2a9c1e0b7d]`: the container or unit the process ran in,
/// when its cgroup names one.
fn container_text(f: &Finding) -> String {
    f.cgroup
        .as_ref()
        .and_then(|c| c.container.brief())
        .map(|brief| format!(" [{}]", escape(&brief)))
        .unwrap_or_default()
}

/// Where the finding's stacks point, escaped: `forked at leak.c:12 in main
/// ← popen`, `SIGCHLD action set at …`. Shown by the text report and in
/// JUnit messages.
pub fn stack_notes(f: &Finding) -> impl Iterator<Item = String> + '_ {
    [
        ("forked at", &f.fork_stack),
        ("SIGCHLD action set at", &f.sigaction_stack),
    ]
    .into_iter()
    .filter_map(|(what, symbols)| {
        let site = symbols.as_deref().and_then(stack::site)?;
        Some(format!("{what} {}", escape(&site)))
    })
}

/// Where each of the parent's threads was when the exit went overdue,
/// escaped (`thread 4426 (main) blocked in clock_nanosleep ← sleep ←
/// main.c:40 in wait_for_jobs`): once their user stacks are named, so a
/// probe without them (an older recording's) reads as before.
pub fn thread_notes(f: &Finding) -> impl Iterator<Item = String> + '_ {
    let named = f.threads.iter().any(|t| t.probe.user_place.is_some());
    f.threads
        .iter()
        .filter(move |_| named)
        .map(|t| now::thread_line(&t.probe))
}

pub fn finding_line(f: &Finding) -> String {
    let mut line = String::new();
    let kind = f.kind.name();
    if !f.certain {
        line.push_str("uncertain ");
    }
    let _ = write!(
        line,
        "{kind} {} ({}){} {}; parent {} ({})",
        pid_text(f.pid, f.ns_pid),
        f.comm,
        container_text(f),
        how_it_ended(f),
        pid_text(f.parent_pid, f.parent_ns_pid),
        f.parent_comm
    );
    let latency = f.latency_ns.map(seconds).unwrap_or_else(|| "?".into());
    let bound = if f.predates_trace { "more than " } else { "" };
    let _ = match (f.kind, f.resolution) {
        (FindingKind::Orphaned, _) => {
            let how = f
                .parent_end
                .as_ref()
                .map(|e| format!(" ({})", e.describe()))
                .unwrap_or_default();
            let adopter = f
                .adopted_by_pid
                .map(|a| format!("adopted by {}", pid_text(a, f.adopted_by_ns_pid)))
                .unwrap_or_else(|| "still running when the trace ended".into());
            write!(line, ": its parent died{how} while it ran; {adopter}")
        }
        (_, None) => write!(line, ": unreaped for {bound}{latency} so far"),
        (_, Some(Resolution::Zombie)) => write!(line, ": still a zombie after {bound}{latency}"),
        (_, Some(Resolution::Adopted)) => write!(
            line,
            ": its parent never reaped it; adopted and reaped by {} after {bound}{latency}",
            f.reaped_by_pid
                .map(|p| pid_text(p, f.reaped_by_ns_pid))
                .unwrap_or_else(|| "its new parent".into())
        ),
        (_, Some(Resolution::Reaped)) => {
            write!(line, ": reaped by its parent after {bound}{latency}")
        }
    };
    if !f.certain {
        line.push_str(" [uncertain: events were lost]");
    }
    for note in stack_notes(f) {
        let _ = write!(line, "\n    {note}");
    }
    for thread in thread_notes(f) {
        let _ = write!(line, "\n    {thread}");
    }
    for d in &f.diagnosis {
        let _ = write!(line, "\n    [{}] {}", d.code, d.text);
    }
    if let Some(hint) = &f.hint {
        let _ = write!(line, "\n    fix: {hint}");
    }
    line
}

/// A notice as it is printed in live text mode.
pub fn notice_text(notice: &Notice) -> String {
    match notice {
        Notice::Pending(f) => format!("!! pending {}", finding_line(f)),
        Notice::Finding(f) => format!("!! finding {}", finding_line(f)),
        Notice::LeaderExit { pid, comm, .. } => {
            format!(
                "!! note: the main thread of {pid} ({comm}) exited while other threads live on; ps shows it as Z, but the process is not dead"
            )
        }
    }
}

/// A notice as one JSON line.
pub fn notice_json(notice: &Notice) -> String {
    serde_json::to_string(notice).unwrap_or_default()
}

/// The report as readable text: findings, a table per parent, the summary.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== reaper-trace report ==");
    if report.findings.is_empty() && report.uncertain.is_empty() {
        let _ = writeln!(out, "no findings: every exit was reaped in time");
    }
    for f in &report.findings {
        let _ = writeln!(out, "{}", finding_line(f));
    }
    if report.summary.zombies_not_listed > 0 {
        let _ = writeln!(
            out,
            "... and {} more zombies left at the end, counted in the table and the summary but not listed",
            report.summary.zombies_not_listed
        );
    }
    if !report.uncertain.is_empty() {
        let _ = writeln!(
            out,
            "\nuncertain: events were lost around these, so they may be wrong (not counted above; check fails on them only with --fail-on uncertain):"
        );
        for f in &report.uncertain {
            let _ = writeln!(out, "{}", finding_line(f));
        }
    }
    if !report.parents.is_empty() {
        let _ = writeln!(
            out,
            "\n{:>8}  {:<16} {:>6} {:>9} {:>5} {:>14}",
            "parent", "comm", "exits", "unreaped", "late", "worst latency"
        );
        for row in &report.parents {
            let _ = writeln!(
                out,
                "{:>8}  {:<16} {:>6} {:>9} {:>5} {:>14}",
                row.parent_pid,
                row.parent_comm.to_string(),
                row.exits,
                row.unreaped,
                row.late,
                seconds(row.worst_latency_ns)
            );
        }
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "\nexits {}, reaped by parent {}, autoreaped {}, adopted {}, unreaped {}, late reaps {}, uncertain {}, threads reaped {}, lost events {}",
        s.exits,
        s.reaped_by_parent,
        s.autoreaped,
        s.adopted,
        s.unreaped,
        s.late_reaps,
        s.uncertain,
        s.threads_reaped,
        s.lost_events
    );
    if s.lost_events > 0 {
        let _ = writeln!(
            out,
            "warning: {} events were lost; findings built on the time around them are listed as uncertain{}",
            s.lost_events,
            if s.unknown_ends > 0 {
                format!(
                    ", and {} exits whose end went with them are not judged",
                    s.unknown_ends
                )
            } else {
                String::new()
            }
        );
    }
    out
}

/// The report as one JSON line with `"type": "report"`.
pub fn json(report: &Report) -> String {
    json_value(report).to_string()
}

/// The report as a JSON object with `"type": "report"`, for callers that
/// add fields of their own before printing it.
pub fn json_value(report: &Report) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    value["type"] = "report".into();
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{analysis::Summary, trace::comm::Comm};

    fn finding() -> Finding {
        Finding {
            comm: Comm::from_str_lossy("child\x1b"),
            reaped_at_ns: Some(3_000_000_001),
            reaped_by_pid: Some(1),
            reap_kind: Some(crate::analysis::ReapKind::Adopted),
            resolution: Some(Resolution::Adopted),
            latency_ns: Some(3_000_000_000),
            ..crate::analysis::tests_support::finding()
        }
    }

    #[test]
    fn finding_line_is_escaped_and_complete() {
        let line = finding_line(&finding());
        assert!(line.starts_with("unreaped 11 (child\\x1b) exited 0; parent 10 (parent): its parent never reaped it; adopted and reaped by 1 after 3.000s"), "{line}");
        assert!(line.contains("[never_waited] parent 10 made no wait call"));
    }

    #[test]
    fn the_parents_threads_are_shown_once_named() {
        use crate::trace::{
            host_facts::{SyscallProbe, ThreadNow, ThreadProbe},
            stack::{Symbol, UserPlace},
        };
        let mut blocked = ThreadProbe::basic(10, "par\nent", 'S', "futex_do_wait");
        blocked.syscall = Some(SyscallProbe {
            nr: libc::SYS_futex,
            sp: 1,
            pc: 2,
        });
        let mut f = finding();
        f.threads = vec![
            ThreadNow::of(&blocked),
            ThreadNow::of(&ThreadProbe::basic(12, "worker", 'R', "")),
        ];
        // Not named yet (or an older recording's probe): as before.
        assert!(!finding_line(&f).contains("thread 10"));
        f.threads[0].probe.user_place = Some(UserPlace::new(
            vec![
                Symbol {
                    module: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
                    function: Some("pthread_mutex_lock".into()),
                    ..Symbol::default()
                },
                Symbol {
                    module: "/src/app".into(),
                    function: Some("reap_under_lock".into()),
                    file: Some("/src/app.c".into()),
                    line: Some(67),
                    ..Symbol::default()
                },
            ],
            false,
        ));
        let line = finding_line(&f);
        assert!(
            line.contains(
                "\n    thread 10 (par\\x0aent) blocked in futex ← pthread_mutex_lock ← app.c:67 in reap_under_lock\n    thread 12 (worker) running\n    [never_waited]"
            ),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&Report {
            findings: vec![f],
            ..Default::default()
        }))
        .unwrap();
        let t = &v["findings"][0]["threads"][0];
        assert_eq!(t["syscall_name"], "futex");
        assert_eq!(t["user_place"]["waits_at"], "app.c:67 in reap_under_lock");
        assert_eq!(t["user_place"]["frames"][1]["line"], 67);
    }

    #[test]
    fn json_report_keeps_the_schema_names() {
        let report = Report {
            findings: vec![finding()],
            summary: Summary {
                exits: 1,
                unreaped: 1,
                adopted: 1,
                ..Default::default()
            },
            parents: vec![],
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
        let f = &v["findings"][0];
        for key in [
            "kind",
            "pid",
            "comm",
            "exit_code",
            "signal",
            "parent_pid",
            "parent_comm",
            "exited_at_ns",
            "reaped_at_ns",
            "reaped_by_pid",
            "reap_kind",
            "resolution",
            "latency_ns",
            "diagnosis",
        ] {
            assert!(f.get(key).is_some(), "missing {key}");
        }
        assert_eq!(f["diagnosis"][0]["code"], "never_waited");
        for key in [
            "exits",
            "reaped_by_parent",
            "autoreaped",
            "adopted",
            "unreaped",
            "late_reaps",
            "lost_events",
        ] {
            assert!(v["summary"].get(key).is_some(), "missing summary.{key}");
        }
        assert_eq!(v["type"], "report");
    }
}
