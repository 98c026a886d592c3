//! Runs the kernel-behaviour suite: each workload traced by reaper-trace
//! itself, judged by `kernel_suite`.

use crate::{
    kernel::btf::Btf,
    live::{self, Display, Emit, LiveOptions, TraceOptions},
    recording::file::machine_meta,
    verify::suite::{self, Behaviour, Row},
};

/// Every row, in order: availability, then each behaviour.
pub async fn run() -> anyhow::Result<Vec<Row>> {
    // Without privileges no row can be judged: that is the user's to fix,
    // not a verdict on the kernel.
    crate::kernel::loader::require_capabilities()?;
    let exe = std::env::current_exe()?.into_os_string();
    let mut rows = Vec::new();
    let (release, _, _) = machine_meta();
    let btf = std::fs::read("/sys/kernel/btf/vmlinux")
        .ok()
        .and_then(|b| Btf::parse(b).ok());
    let has_group_dead = btf
        .as_ref()
        .and_then(|b| b.tracepoint_arg_count("sched_process_exit").ok())
        .is_some_and(|n| n >= 2);
    rows.push(suite::judge_group_dead(
        suite::kernel_version(&release),
        has_group_dead,
    ));
    for behaviour in Behaviour::ALL {
        let options = LiveOptions {
            trace: TraceOptions {
                command: vec![
                    exe.clone(),
                    "__workload".into(),
                    behaviour.workload().into(),
                ],
                ringbuf_bytes: 1 << 20,
                ..TraceOptions::default()
            },
            emit: Emit {
                display: Display::Silent,
                capture: true,
                ..Emit::default()
            },
        };
        let outcome = live::run(options).await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                // Tracing itself does not work: that is the first row's verdict.
                rows.insert(
                    0,
                    Row {
                        behaviour: "raw tracepoints and a ring buffer".into(),
                        expected: "available".into(),
                        seen: crate::output::error_line::one_line(e.chain()),
                        ok: false,
                    },
                );
                return Ok(rows);
            }
        };
        if rows
            .first()
            .is_none_or(|r| !r.behaviour.starts_with("raw tracepoints"))
        {
            rows.insert(
                0,
                Row {
                    behaviour: "raw tracepoints and a ring buffer".into(),
                    expected: "available".into(),
                    seen: "available".into(),
                    ok: true,
                },
            );
        }
        let root = outcome.command_pid.unwrap_or(0);
        let mut row = suite::judge(behaviour, root, &outcome.events);
        if outcome.totals.lost > 0 {
            row.ok = false;
            row.seen.push_str(&format!(
                " ({} events lost: inconclusive)",
                outcome.totals.lost
            ));
        }
        rows.push(row);
    }
    Ok(rows)
}
