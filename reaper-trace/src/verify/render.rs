//! `verify-kernel`'s outputs: the behaviour table, JSON and JUnit. They live
//! with the command, not in `output/`, so that `output` never depends on a
//! command: `verify` uses `output::junit`, not the other way round.

use std::fmt::Write as _;

use super::suite::Row;
use crate::output::junit;

/// The behaviour / expected / seen table, one line per behaviour.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!("{:<48} {:<44} {:<44} ok\n", "behaviour", "expected", "seen");
    for r in rows {
        let _ = writeln!(
            out,
            "{:<48} {:<44} {:<44} {}",
            r.behaviour,
            r.expected,
            r.seen,
            if r.ok { "yes" } else { "NO" }
        );
    }
    out
}

/// `{"ok": .., "behaviours": [..]}`.
pub fn json(rows: &[Row]) -> serde_json::Value {
    serde_json::json!({"ok": rows.iter().all(|r| r.ok), "behaviours": rows})
}

/// JUnit: one case per behaviour, failing where the kernel differs.
pub fn junit(rows: &[Row]) -> String {
    let cases: Vec<junit::Case> = rows
        .iter()
        .map(|r| junit::Case {
            name: r.behaviour.clone(),
            classname: "reaper-trace.kernel".into(),
            failure: (!r.ok).then(|| {
                (
                    format!("expected {}, saw {}", r.expected, r.seen),
                    format!("expected: {}\nseen: {}", r.expected, r.seen),
                )
            }),
            location: None,
        })
        .collect();
    junit::document("reaper-trace verify-kernel", &cases)
}
