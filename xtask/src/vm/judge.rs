//! The verdicts: pure functions from a parsed console to one cell per
//! check, which the unit tests feed real console excerpts.

use serde_json::Value;

use super::{
    CHECK_NAMES, STORM, TIMEOUT,
    console::{Console, Run},
};

/// One cell of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub check: String,
    pub ok: bool,
    /// What held (ok) or why not (FAIL), in one line.
    pub detail: String,
}

type Judged = Result<String, String>;

impl Run {
    fn expect_code(&self, want: i32) -> Result<(), String> {
        match self.code {
            Some(code) if code == want => Ok(()),
            code => {
                // The tool's own one-line error, when it printed one.
                let last = self
                    .err
                    .iter()
                    .rev()
                    .find(|l| !l.starts_with("TRUTH "))
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default();
                Err(format!("exit {code:?}, expected {want}{last}"))
            }
        }
    }

    fn json(&self) -> impl Iterator<Item = Value> + '_ {
        self.out
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
    }

    /// The last JSON line of `type` on stdout.
    fn typed(&self, kind: &str) -> Result<Value, String> {
        self.json()
            .filter(|v| v["type"] == kind)
            .last()
            .ok_or_else(|| format!("no JSON {kind} line on stdout"))
    }

    /// The scenario's TRUTH line that holds `key`.
    fn truth(&self, key: &str) -> Result<Value, String> {
        self.err
            .iter()
            .filter_map(|l| l.strip_prefix("TRUTH "))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get(key).is_some())
            .ok_or_else(|| format!("no TRUTH line with {key:?} from the scenario"))
    }
}

fn pids(v: &Value) -> Vec<i64> {
    let mut p: Vec<i64> = v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    p.sort_unstable();
    p
}

fn findings(report: &Value) -> Result<&Vec<Value>, String> {
    report["findings"]
        .as_array()
        .ok_or_else(|| "the report has no findings array".to_owned())
}

fn codes(finding: &Value) -> Vec<&str> {
    finding["diagnosis"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["code"].as_str()).collect())
        .unwrap_or_default()
}

fn no_loss(report: &Value) -> Result<(), String> {
    match report["summary"]["lost_events"].as_i64() {
        Some(0) => Ok(()),
        Some(n) => Err(format!("{n} events lost")),
        None => Err("the report has no summary.lost_events".into()),
    }
}

/// The findings are exactly one unreaped finding per child, each with
/// diagnosis `code`.
fn unreaped_children(report: &Value, children: &[i64], code: &str) -> Result<(), String> {
    let findings = findings(report)?;
    let mut found: Vec<i64> = findings.iter().filter_map(|f| f["pid"].as_i64()).collect();
    found.sort_unstable();
    if found != children {
        return Err(format!(
            "findings for pids {found:?}, the scenario's children are {children:?}"
        ));
    }
    for f in findings {
        if f["kind"] != "unreaped" || !codes(f).contains(&code) {
            return Err(format!(
                "pid {}: kind {}, diagnosis {:?}; expected unreaped with {code}",
                f["pid"],
                f["kind"],
                codes(f)
            ));
        }
    }
    Ok(())
}

fn get<'a>(c: &'a Console, name: &str) -> Result<&'a Run, String> {
    c.runs
        .get(name)
        .filter(|r| r.code.is_some())
        .ok_or_else(|| "did not run (no RT-RESULT)".to_owned())
}

fn verify_kernel(c: &Console) -> Judged {
    let run = get(c, "verify-kernel")?;
    let v = run.json().last().unwrap_or(Value::Null);
    let behaviours = v["behaviours"].as_array();
    // A verify-kernel that exits 1 still prints every behaviour: name the
    // ones that differ rather than only the exit code.
    let differing: Vec<String> = behaviours
        .into_iter()
        .flatten()
        .filter(|b| b["ok"] != true)
        .map(|b| {
            format!(
                "{}: expected {}, seen {}",
                b["behaviour"].as_str().unwrap_or("?"),
                b["expected"].as_str().unwrap_or("?"),
                b["seen"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let differ = || format!(": {}", differing.join("; "));
    run.expect_code(0).map_err(|e| {
        if differing.is_empty() {
            e
        } else {
            e + &differ()
        }
    })?;
    let behaviours = behaviours.ok_or("no behaviours in the JSON on stdout")?;
    if v["ok"] != true || !differing.is_empty() {
        return Err(format!("exit 0 but not ok{}", differ()));
    }
    Ok(format!("all {} behaviours hold", behaviours.len()))
}

fn check_noreap(c: &Console) -> Judged {
    never_waiting_parent(c, "check-noreap", 1)
}

/// Run `name` of `noreap 2` exited with `code` and found exactly the
/// scenario's children unreaped, each `never_waited`, nothing lost.
fn never_waiting_parent(c: &Console, name: &str, code: i32) -> Judged {
    let run = get(c, name)?;
    run.expect_code(code)?;
    let children = pids(&run.truth("children")?["children"]);
    let report = run.typed("report")?;
    unreaped_children(&report, &children, "never_waited")?;
    no_loss(&report)?;
    Ok(format!(
        "{} unreaped findings = the scenario's children",
        children.len()
    ))
}

/// `check` on `noreap_raw 2` (a fork from the scenario's own leaf function,
/// by the syscall instruction) found the two children, and each one's fork
/// stack, unwound and named on the kernel's own machine, has a frame at
/// the line of the scenario's source where it forked (its `fork_site`
/// TRUTH): the registers the programs copy (on aarch64 the link register
/// too), the unwinder and the symbolizer all hold on that architecture.
fn fork_stack(c: &Console) -> Judged {
    let run = get(c, "fork-stack")?;
    run.expect_code(1)?;
    let children = pids(&run.truth("children")?["children"]);
    let site = run.truth("fork_site")?["fork_site"].clone();
    let (Some(file), Some(line)) = (site["file"].as_str(), site["line"].as_u64()) else {
        return Err(format!(
            "the scenario's fork_site is not a file and line: {site}"
        ));
    };
    let name = file.rsplit('/').next().unwrap_or(file);
    let report = run.typed("report")?;
    unreaped_children(&report, &children, "never_waited")?;
    let findings = findings(&report)?;
    for f in findings {
        let frames = f["fork_stack"]
            .as_array()
            .ok_or_else(|| format!("pid {}: no fork_stack (stacks unwound: none)", f["pid"]))?;
        let at_site = frames.iter().any(|s| {
            s["file"].as_str().is_some_and(|f| f.ends_with(name))
                && s["line"].as_u64() == Some(line)
        });
        if !at_site {
            let named: Vec<String> = frames
                .iter()
                .map(|s| format!("{}:{}", s["file"].as_str().unwrap_or("?"), s["line"]))
                .collect();
            return Err(format!(
                "pid {}: no frame at {name}:{line} among {} frames ({})",
                f["pid"],
                frames.len(),
                named.join(" ← ")
            ));
        }
    }
    Ok(format!("{} fork stacks name {name}:{line}", findings.len()))
}

fn check_sigign(c: &Console) -> Judged {
    let run = get(c, "check-sigign")?;
    run.expect_code(0)?;
    let children = pids(&run.truth("children")?["children"]);
    let report = run.typed("report")?;
    let findings = findings(&report)?;
    if !findings.is_empty() {
        return Err(format!("{} findings, expected none", findings.len()));
    }
    let autoreaped = &report["summary"]["autoreaped"];
    if autoreaped.as_i64() != Some(children.len() as i64) {
        return Err(format!(
            "autoreaped {autoreaped}, the scenario forked {}",
            children.len()
        ));
    }
    no_loss(&report)?;
    Ok(format!("{autoreaped} autoreaped, no finding"))
}

fn check_handler_once(c: &Console) -> Judged {
    let run = get(c, "check-handler-once")?;
    run.expect_code(1)?;
    let truth = run.truth("zombies_left")?;
    let left = truth["zombies_left"].as_i64().unwrap_or(0);
    if left < 1 {
        return Err(format!("the scenario left no zombie: {truth}"));
    }
    let children = pids(&truth["children"]);
    let report = run.typed("report")?;
    let findings = findings(&report)?;
    for f in findings {
        let pid = f["pid"].as_i64().unwrap_or(-1);
        if !children.contains(&pid)
            || f["kind"] != "unreaped"
            || !codes(f).contains(&"sigchld_coalesced")
        {
            return Err(format!(
                "pid {pid}: kind {}, diagnosis {:?}; expected an unreaped child with sigchld_coalesced",
                f["kind"],
                codes(f)
            ));
        }
    }
    if findings.len() as i64 != left {
        return Err(format!(
            "{} findings, the scenario left {left} zombies",
            findings.len()
        ));
    }
    no_loss(&report)?;
    Ok(format!("{left} coalesced-SIGCHLD zombies found"))
}

fn record(c: &Console) -> Judged {
    let run = get(c, "record")?;
    run.expect_code(0)?;
    let children = pids(&run.truth("children")?["children"]);
    Ok(format!("recorded {} unreaped children", children.len()))
}

/// The report of the recording names the children the recorded scenario
/// left, on the kernel that recorded it.
fn report(c: &Console) -> Judged {
    let run = get(c, "report")?;
    run.expect_code(0)?;
    let recorded = get(c, "record")?;
    let children = pids(&recorded.truth("children")?["children"]);
    let report = run.typed("report")?;
    unreaped_children(&report, &children, "never_waited")?;
    no_loss(&report)?;
    if let Some(uname) = &c.uname
        && report["kernel_release"] != uname.as_str()
    {
        return Err(format!(
            "recorded on kernel {}, but this is {uname}",
            report["kernel_release"]
        ));
    }
    Ok(format!(
        "{} unreaped findings = the recorded children",
        children.len()
    ))
}

fn live(c: &Console) -> Judged {
    let run = get(c, "live")?;
    run.expect_code(0)?;
    let report = run.typed("report")?;
    no_loss(&report)?;
    let totals = run.typed("totals")?;
    if totals["lost"] != 0 {
        return Err(format!("totals: lost {}", totals["lost"]));
    }
    let storm = run.truth("reaped")?;
    let forked = storm["reaped"].as_i64().unwrap_or(0);
    let exits = report["summary"]["exits"].as_i64().unwrap_or(0);
    if forked < i64::from(STORM) || exits < forked {
        return Err(format!(
            "the storm forked and reaped {forked}, the system-wide trace saw {exits} exits"
        ));
    }
    Ok(format!(
        "system-wide: {exits} exits (a storm of {forked}), 0 lost"
    ))
}

/// Without syscall hooks (as `serve` runs by default), a never-waiting
/// parent's children are still found, from the kernel's frees and /proc.
fn no_syscall_hooks(c: &Console) -> Judged {
    never_waiting_parent(c, "no-syscall-hooks", 0)
}

/// `check` on the 32-bit compat program (i386 on x86_64, AArch32 on
/// arm64): its child is found unreaped, and the parent's waits are known
/// only from the kernel (`waits_untraced`), because the hooks skip 32-bit
/// calls. Read by the 64-bit table, its last call (chroot, or
/// timer_getoverrun, numbered as the 64-bit wait4) would be a failed wait4
/// and the diagnosis `first_wait_after` instead.
fn compat_caller(c: &Console) -> Judged {
    let run = get(c, "compat-caller")?;
    run.expect_code(1)?;
    let report = run.typed("report")?;
    let findings = findings(&report)?;
    let [f] = findings.as_slice() else {
        return Err(format!(
            "{} findings, expected the one child",
            findings.len()
        ));
    };
    let codes = codes(f);
    if f["kind"] != "unreaped" || !codes.contains(&"waits_untraced") {
        return Err(format!(
            "pid {}: kind {}, diagnosis {codes:?}; expected unreaped with waits_untraced (the 32-bit waits are the kernel's only)",
            f["pid"], f["kind"]
        ));
    }
    no_loss(&report)?;
    Ok("32-bit waits told apart: waits_untraced".into())
}

/// Every check's verdict, in [`CHECK_NAMES`] order.
pub fn judge(c: &Console) -> Vec<Verdict> {
    let judges: [fn(&Console) -> Judged; 10] = [
        verify_kernel,
        check_noreap,
        fork_stack,
        check_sigign,
        check_handler_once,
        record,
        report,
        live,
        no_syscall_hooks,
        compat_caller,
    ];
    CHECK_NAMES
        .iter()
        .zip(judges)
        .map(|(name, judge)| {
            let (ok, detail) = match judge(c) {
                Ok(d) => (true, d),
                Err(d) => (false, d),
            };
            Verdict {
                check: (*name).to_owned(),
                ok,
                detail,
            }
        })
        .collect()
}

/// The "boot" cell: the expected kernel ran the script to its end in time.
pub fn judge_boot(c: &Console, release: &str, timed_out: bool) -> Verdict {
    let detail = if timed_out {
        Err(format!(
            "killed after {}s without finishing",
            TIMEOUT.as_secs()
        ))
    } else if c.uname.is_none() {
        Err("the checks never started (no RT-START: see the log for a panic)".to_owned())
    } else if c.uname.as_deref() != Some(release) {
        Err(format!("booted {:?}, expected {release}", c.uname))
    } else if !c.done {
        Err("ended before the last check (no RT-DONE)".to_owned())
    } else {
        Ok(format!("ran every check on {release}"))
    };
    let (ok, detail) = match detail {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Verdict {
        check: "boot".into(),
        ok,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::console::parse_console;

    /// A real console: target/vm/6.1.0-57-cloud-amd64.log.
    const LOG_6_1: &str = include_str!("../../fixtures/vm-6.1.0-57-cloud-amd64.log");
    /// The arm64 kernel's, from RT-START on: target/vm/6.1.0-57-cloud-arm64.log.
    const LOG_6_1_ARM64: &str = include_str!("../../fixtures/vm-6.1.0-57-cloud-arm64.log");

    fn console(text: &str) -> Console {
        parse_console(text.lines())
    }

    /// The console of kernel `release`: booted, and every check passed.
    fn assert_passes_every_check(log: &str, release: &str) -> Console {
        let c = console(log);
        assert_eq!(c.uname.as_deref(), Some(release));
        assert!(judge_boot(&c, release, false).ok);
        let verdicts = judge(&c);
        assert_eq!(verdicts.len(), CHECK_NAMES.len());
        for v in &verdicts {
            assert!(v.ok, "{v:?}");
        }
        c
    }

    #[test]
    fn a_real_console_passes_every_check() {
        assert_passes_every_check(LOG_6_1, "6.1.0-57-cloud-amd64");
    }

    #[test]
    fn a_real_arm64_console_passes_every_check() {
        let c = assert_passes_every_check(LOG_6_1_ARM64, "6.1.0-57-cloud-arm64");
        let stacks = verdict(&c, "fork-stack");
        assert_eq!(stacks.detail, "2 fork stacks name clone.rs:145");
    }

    /// What an unwinder that stops at the forking function (as one blind
    /// to aarch64's link register does) shows: no frame at the line.
    #[test]
    fn a_fork_stack_without_the_forking_line_fails() {
        let c = edited("fork-stack", |l| {
            l.replace("\"line\":145}", "\"line\":9145}")
        });
        let v = verdict(&c, "fork-stack");
        assert!(
            !v.ok && v.detail.contains("no frame at clone.rs:9145 among"),
            "{v:?}"
        );
    }

    #[test]
    fn a_cut_console_fails_the_missing_checks_and_the_boot() {
        let text: String = LOG_6_1
            .lines()
            .take_while(|l| !l.contains("RT-RESULT record"))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = console(&text);
        let boot = judge_boot(&c, "6.1.0-57-cloud-amd64", false);
        assert!(!boot.ok && boot.detail.contains("RT-DONE"), "{boot:?}");
        let failed: Vec<String> = judge(&c)
            .into_iter()
            .filter(|v| !v.ok)
            .map(|v| v.check)
            .collect();
        assert_eq!(
            failed,
            [
                "record",
                "report",
                "live",
                "no-syscall-hooks",
                "compat-caller"
            ]
        );
        assert!(!judge_boot(&c, "6.12.117+deb12-cloud-amd64", true).ok);
        assert!(!judge_boot(&c, "6.1.0-41-cloud-amd64", false).ok);
    }

    /// The lines of the real log, with `edit` applied to one check's.
    fn edited(name: &str, edit: impl Fn(&str) -> String) -> Console {
        edited_log(LOG_6_1, name, edit)
    }

    /// The lines of `log`, with `edit` applied to check `name`'s.
    fn edited_log(log: &str, name: &str, edit: impl Fn(&str) -> String) -> Console {
        let prefix = format!(" {name} ");
        let text: String = log
            .lines()
            .map(|l| {
                if l.contains(&prefix) {
                    edit(l)
                } else {
                    l.to_owned()
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        console(&text)
    }

    fn verdict(c: &Console, check: &str) -> Verdict {
        judge(c).into_iter().find(|v| v.check == check).unwrap()
    }

    #[test]
    fn a_finding_for_another_pid_fails_noreap() {
        let c = edited("check-noreap", |l| {
            l.replacen("\"children\":[", "\"children\":[1,", 1)
        });
        let v = verdict(&c, "check-noreap");
        assert!(!v.ok && v.detail.contains("children are [1,"), "{v:?}");
    }

    /// What a tracer that read a 32-bit caller's calls by the 64-bit table
    /// shows: a wait4 of its own where the 32-bit program called chroot
    /// (timer_getoverrun on arm64).
    #[test]
    fn a_32_bit_call_read_as_wait4_fails_compat_caller() {
        for log in [LOG_6_1, LOG_6_1_ARM64] {
            let c = console(log);
            assert!(verdict(&c, "compat-caller").ok);
            let c = edited_log(log, "compat-caller", |l| {
                l.replace("waits_untraced", "first_wait_after")
            });
            let v = verdict(&c, "compat-caller");
            assert!(
                !v.ok && v.detail.contains("expected unreaped with waits_untraced"),
                "{v:?}"
            );
        }
    }

    #[test]
    fn a_wrong_exit_code_names_it() {
        let c = edited("check-sigign", |l| {
            l.replace("RT-RESULT check-sigign 0", "RT-RESULT check-sigign 1")
        });
        let v = verdict(&c, "check-sigign");
        assert!(
            !v.ok && v.detail.starts_with("exit Some(1), expected 0"),
            "{v:?}"
        );
    }

    #[test]
    fn lost_events_fail_live() {
        let c = edited("live", |l| {
            l.replace("\"lost_events\":0", "\"lost_events\":3")
        });
        let v = verdict(&c, "live");
        assert!(!v.ok && v.detail == "3 events lost", "{v:?}");
    }

    #[test]
    fn a_behaviour_that_differs_is_named() {
        let c = edited("verify-kernel", |l| {
            l.replacen("\"ok\":true", "\"ok\":false", 1)
                .replace("RT-RESULT verify-kernel 0", "RT-RESULT verify-kernel 1")
        });
        let v = verdict(&c, "verify-kernel");
        assert!(!v.ok, "{v:?}");
        assert!(
            v.detail.starts_with("exit Some(1), expected 0")
                && v.detail.contains(
                    ": raw tracepoints and a ring buffer: expected available, seen available"
                ),
            "{v:?}"
        );
    }
}
