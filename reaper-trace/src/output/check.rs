//! `reaper-trace check`: the verdict for CI. Pure: exit codes and JUnit
//! test cases from a report.

use crate::{
    analysis::{Finding, FindingKind, Report},
    output::junit::{self, Case},
    output::report::{finding_line, stack_notes},
    trace::{
        escape::escape,
        stack::{self, Symbol},
    },
};

/// Exit statuses of `check` (documented in the README).
pub mod exit {
    /// The command succeeded and no child was left unreaped or reaped late.
    pub const CLEAN: u8 = 0;
    /// Findings (whatever the command's own status).
    pub const FINDINGS: u8 = 1;
    /// Usage or set-up error (not root, no BTF, bad arguments...).
    pub const SETUP: u8 = 2;
    /// The command failed (non-zero exit or killed), with no findings.
    pub const COMMAND_FAILED: u8 = 3;
}

/// What `check` fails on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailOn {
    /// Certain findings of these kinds.
    pub kinds: Vec<FindingKind>,
    /// Also the uncertain ones (`--fail-on uncertain`): events were lost
    /// around them, so they may be wrong.
    pub uncertain: bool,
}

impl Default for FailOn {
    /// Children left unreaped or reaped late, when certain.
    fn default() -> FailOn {
        FailOn {
            kinds: FindingKind::FAIL_BY_DEFAULT.to_vec(),
            uncertain: false,
        }
    }
}

impl FailOn {
    /// Whether `finding` fails the check; `uncertain` says which list it
    /// is on.
    pub fn fails(&self, finding: &Finding, uncertain: bool) -> bool {
        self.kinds.contains(&finding.kind) && (!uncertain || self.uncertain)
    }
}

/// Every finding of the report with whether it is uncertain: the certain
/// ones first.
fn all(report: &Report) -> impl Iterator<Item = (&Finding, bool)> {
    let certain = report.findings.iter().map(|f| (f, false));
    certain.chain(report.uncertain.iter().map(|f| (f, true)))
}

/// The findings `check` fails on.
pub fn failures<'a>(report: &'a Report, fail_on: &FailOn) -> Vec<&'a Finding> {
    all(report)
        .filter(|&(f, uncertain)| fail_on.fails(f, uncertain))
        .map(|(f, _)| f)
        .collect()
}

/// The exit status for a command's wait status and a report.
pub fn exit_status(command_status: Option<i32>, report: &Report, fail_on: &FailOn) -> u8 {
    if !failures(report, fail_on).is_empty() {
        return exit::FINDINGS;
    }
    match command_status {
        Some(status) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => exit::CLEAN,
        _ => exit::COMMAND_FAILED,
    }
}

fn case_name(f: &Finding) -> String {
    format!(
        "{} pid {} ({}) of parent {} ({})",
        f.kind.name(),
        f.pid,
        f.comm,
        f.parent_pid,
        f.parent_comm
    )
}

/// The file and line of the frame a stack blames, when it has debug info;
/// the file relative to `root` when it lies below it (CI annotators match
/// files by their path in the checkout, where `check` runs).
fn source_line(symbols: &[Symbol], root: &str) -> Option<(String, u32)> {
    let frame = &symbols[stack::blame(symbols)?];
    let file = frame.file.as_deref()?;
    let relative = file
        .strip_prefix(root)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|_| !root.is_empty())
        .unwrap_or(file);
    Some((escape(relative), frame.line?))
}

/// JUnit: one case per finding, failing for the kinds in `fail_on` (its
/// message the first diagnosis and the fix), passing for the others (an
/// orphan is information); a passing case when there is no failure; and the
/// command's own result. A failing case's `file` and `line` name the line
/// that forked the child, relative to `root` (the working directory).
pub fn junit(
    command: &str,
    command_status: Option<i32>,
    report: &Report,
    fail_on: &FailOn,
    root: &str,
) -> String {
    let mut cases: Vec<Case> = all(report)
        .map(|(f, uncertain)| Case {
            name: case_name(f),
            classname: format!(
                "reaper-trace.{}{}",
                if uncertain { "uncertain." } else { "" },
                f.kind.name()
            ),
            failure: fail_on.fails(f, uncertain).then(|| {
                let mut message = f
                    .diagnosis
                    .first()
                    .map(|d| d.text.clone())
                    .unwrap_or_else(|| "unreaped child".into());
                if let Some(hint) = &f.hint {
                    message.push_str("; fix: ");
                    message.push_str(hint);
                }
                for note in stack_notes(f) {
                    message.push_str("; ");
                    message.push_str(&note);
                }
                (message, finding_line(f))
            }),
            location: f
                .fork_stack
                .as_deref()
                .and_then(|stack| source_line(stack, root)),
        })
        .collect();
    if failures(report, fail_on).is_empty() {
        cases.push(Case {
            name: "every child was reaped in time".into(),
            classname: "reaper-trace.findings".into(),
            failure: None,
            location: None,
        });
    }
    let command_ok =
        command_status.is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0);
    cases.push(Case {
        name: format!("command: {command}"),
        classname: "reaper-trace.command".into(),
        failure: (!command_ok).then(|| {
            (
                "the command failed".into(),
                format!("wait status {:?}", command_status),
            )
        }),
        location: None,
    });
    junit::document("reaper-trace check", &cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_tell_findings_from_command_failures() {
        let clean = Report::default();
        let default = FailOn::default();
        assert_eq!(exit_status(Some(0), &clean, &default), exit::CLEAN);
        assert_eq!(
            exit_status(Some(3 << 8), &clean, &default),
            exit::COMMAND_FAILED
        );
        assert_eq!(
            exit_status(Some(9), &clean, &default),
            exit::COMMAND_FAILED,
            "killed by a signal"
        );
        assert_eq!(exit_status(None, &clean, &default), exit::COMMAND_FAILED);
        let mut leaking = Report::default();
        leaking
            .findings
            .push(crate::analysis::tests_support::finding());
        let fail_on = FailOn::default();
        assert_eq!(exit_status(Some(0), &leaking, &fail_on), exit::FINDINGS);
        assert_eq!(
            exit_status(Some(1 << 8), &leaking, &fail_on),
            exit::FINDINGS
        );
        let xml = junit("make test", Some(0), &leaking, &fail_on, "/src");
        assert!(xml.contains("<failure message=") && xml.contains("unreaped pid 11"));
        assert!(!xml.contains(" file="), "no stack, no location");
        // With a fork stack: the user's line, relative to the checkout.
        let frame = |module: &str, function: &str, file: &str, line| Symbol {
            module: module.into(),
            address: 0x1139,
            function: Some(function.into()),
            file: Some(file.into()),
            line: Some(line),
        };
        leaking.findings[0].fork_stack = Some(vec![
            frame(
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "popen",
                "./libio/iopopen.c",
                240,
            ),
            frame("/src/build/leak", "main", "/src/tests/leak.c", 12),
        ]);
        let xml = junit("make test", Some(0), &leaking, &fail_on, "/src");
        assert!(
            xml.contains("file=\"tests/leak.c\" line=\"12\"")
                && xml.contains("; forked at leak.c:12 in main ← popen\""),
            "{xml}"
        );
        let xml = junit("make test", Some(0), &leaking, &fail_on, "/elsewhere");
        assert!(xml.contains("file=\"/src/tests/leak.c\""), "{xml}");
    }

    #[test]
    fn orphans_fail_only_when_asked() {
        let mut orphaned = crate::analysis::tests_support::finding();
        orphaned.kind = FindingKind::Orphaned;
        let report = Report {
            findings: vec![orphaned],
            ..Default::default()
        };
        let default = FailOn::default();
        assert_eq!(exit_status(Some(0), &report, &default), exit::CLEAN);
        assert!(!junit("x", Some(0), &report, &default, "").contains("<failure"));
        let strict = FailOn {
            kinds: vec![FindingKind::Orphaned],
            uncertain: false,
        };
        assert_eq!(exit_status(Some(0), &report, &strict), exit::FINDINGS);
        assert!(junit("x", Some(0), &report, &strict, "").contains("<failure"));
    }

    #[test]
    fn uncertain_findings_fail_only_when_asked() {
        let mut uncertain = crate::analysis::tests_support::finding();
        uncertain.certain = false;
        let report = Report {
            uncertain: vec![uncertain],
            ..Default::default()
        };
        let default = FailOn::default();
        assert_eq!(exit_status(Some(0), &report, &default), exit::CLEAN);
        let xml = junit("x", Some(0), &report, &default, "");
        assert!(
            !xml.contains("<failure") && xml.contains("reaper-trace.uncertain.unreaped"),
            "{xml}"
        );
        let strict = FailOn {
            uncertain: true,
            ..FailOn::default()
        };
        assert_eq!(exit_status(Some(0), &report, &strict), exit::FINDINGS);
        assert!(junit("x", Some(0), &report, &strict, "").contains("<failure"));
    }
}
