//! The results: one row per kernel, printed as a table and written as
//! JSON.

use std::{collections::BTreeMap, path::PathBuf};

use serde_json::{Value, json};

use super::{
    CHECK_NAMES,
    console::{check_seconds, parse_console},
    judge::{Verdict, judge, judge_boot},
    kernels::Kernel,
    qemu::Transcript,
};

/// One kernel's line of the table.
pub(super) struct Row {
    pub(super) kernel: String,
    package: Option<(String, String)>,
    uname: Option<String>,
    seconds: f64,
    log: PathBuf,
    /// boot, then one per check.
    verdicts: Vec<Verdict>,
    check_seconds: BTreeMap<String, f64>,
}

impl Row {
    pub(super) fn new(
        kernel: String,
        package: Option<&Kernel>,
        release: &str,
        t: &Transcript,
        log: PathBuf,
    ) -> Row {
        let console = parse_console(t.lines.iter().map(|(_, l)| l.as_str()));
        let mut verdicts = vec![judge_boot(&console, release, t.timed_out)];
        verdicts.extend(judge(&console));
        if let Some(status) = t.status.filter(|s| !s.success() && !t.timed_out) {
            // qemu (or sh) failing is worth a word even when the checks
            // came through; it cannot make a passing row fail by itself.
            eprintln!("xtask: {kernel}: the runner exited with {status}");
        }
        Row {
            kernel,
            package: package.map(|k| (k.package.clone(), k.version.clone())),
            uname: console.uname,
            seconds: t.seconds,
            log,
            verdicts,
            check_seconds: check_seconds(&t.lines),
        }
    }

    pub(super) fn ok(&self) -> bool {
        self.verdicts.iter().all(|v| v.ok)
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "kernel": self.kernel,
            "package": self.package.as_ref().map(|p| &p.0),
            "version": self.package.as_ref().map(|p| &p.1),
            "uname": self.uname,
            "ok": self.ok(),
            "seconds": round_ms(self.seconds),
            "log": self.log,
            "checks": self.verdicts.iter().map(|v| json!({
                "check": v.check,
                "ok": v.ok,
                "detail": v.detail,
                "seconds": self.check_seconds.get(&v.check).copied().map(round_ms),
            })).collect::<Vec<_>>(),
        })
    }
}

pub(super) fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

pub(super) fn print_table(rows: &[Row]) {
    let label = |r: &Row| match &r.package {
        Some((_, version)) => format!("{} ({version})", r.kernel),
        None => r.kernel.clone(),
    };
    let width = rows
        .iter()
        .map(|r| label(r).len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut header = format!("{:width$}", "kernel");
    let columns: Vec<&str> = std::iter::once("boot")
        .chain(CHECK_NAMES.iter().copied())
        .collect();
    for c in &columns {
        header.push_str(&format!("  {c}"));
    }
    println!("\n{header}  time");
    for r in rows {
        let mut line = format!("{:width$}", label(r));
        for (c, v) in columns.iter().zip(&r.verdicts) {
            let cell = if v.ok { "ok" } else { "FAIL" };
            line.push_str(&format!("  {cell:w$}", w = c.len()));
        }
        println!("{line}  {:.0}s", r.seconds);
    }
    // Checks of one row that failed for the same reason share a line: a
    // VM that hangs would otherwise repeat "did not run" seven times.
    let mut failures = Vec::new();
    for r in rows {
        let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
        for v in r.verdicts.iter().filter(|v| !v.ok) {
            match reasons.iter_mut().find(|(d, _)| *d == v.detail) {
                Some((_, checks)) => checks.push(&v.check),
                None => reasons.push((&v.detail, vec![&v.check])),
            }
        }
        for (detail, checks) in reasons {
            failures.push(format!("  {} {}: {detail}", r.kernel, checks.join(", ")));
        }
    }
    if !failures.is_empty() {
        println!("\nfailures:\n{}", failures.join("\n"));
    }
    println!();
}
