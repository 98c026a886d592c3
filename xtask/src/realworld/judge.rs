//! Judging the tool's findings against the two ground truths: the /proc
//! sampler's zombies and the kernel's view (bpftrace). Pure: no I/O, so
//! the rules are unit-tested with made-up findings and samples.
//!
//! A finding is true when one ground truth confirms it and neither
//! contradicts it. A contradiction is positive evidence against it (the
//! zombie had another parent, lived for a different time, was reaped by
//! someone else, or was never a zombie while the sampler was looking); an
//! unknown is missing evidence (a record bpftrace lost, a parent that died
//! within one sampling interval).

use std::collections::HashMap;

use serde_json::Value;

use super::kernel::KernelView;
use super::sampler::{SamplerView, ZombieSeen};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unreaped,
    LateReap,
}

/// The fields of a finding that the judge checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub pid: u32,
    pub start_ns: u64,
    pub comm: String,
    pub parent_pid: u32,
    pub exited_at_ns: Option<u64>,
    pub reaped_at_ns: Option<u64>,
    pub reaped_by_pid: Option<u32>,
    /// `zombie`, `adopted` or `reaped`.
    pub resolution: String,
    pub latency_ns: u64,
    pub certain: bool,
    pub predates_trace: bool,
    /// The cgroup v2 path it exited in (names the workload).
    pub cgroup: String,
}

impl Finding {
    /// An `unreaped` or `late_reap` finding from its JSON; `None` for other
    /// kinds (orphans are information) and malformed lines.
    pub fn from_json(v: &Value) -> Option<Finding> {
        let kind = match v["kind"].as_str()? {
            "unreaped" => Kind::Unreaped,
            "late_reap" => Kind::LateReap,
            _ => return None,
        };
        let u32_of = |k: &str| v[k].as_u64().map(|n| n as u32);
        Some(Finding {
            kind,
            pid: u32_of("pid")?,
            start_ns: v["start_ns"].as_u64().unwrap_or(0),
            comm: v["comm"].as_str().unwrap_or("").to_owned(),
            parent_pid: u32_of("parent_pid")?,
            exited_at_ns: v["exited_at_ns"].as_u64(),
            reaped_at_ns: v["reaped_at_ns"].as_u64(),
            reaped_by_pid: u32_of("reaped_by_pid"),
            resolution: v["resolution"].as_str().unwrap_or("").to_owned(),
            latency_ns: v["latency_ns"].as_u64()?,
            certain: v["certain"].as_bool().unwrap_or(true),
            predates_trace: v["predates_trace"].as_bool().unwrap_or(false),
            cgroup: v["cgroup"]["path"].as_str().unwrap_or("").to_owned(),
        })
    }

    /// The lifecycle and the claim: one finding per (kind, pid, start).
    pub fn key(&self) -> (Kind, u32, u64) {
        (self.kind, self.pid, self.start_ns)
    }

    pub fn describe(&self) -> String {
        let kind = match self.kind {
            Kind::Unreaped => "unreaped",
            Kind::LateReap => "late_reap",
        };
        format!(
            "{kind} {} ({}) start {} parent {} {} after {:.3}s{}{}",
            self.pid,
            self.comm,
            self.start_ns,
            self.parent_pid,
            self.resolution,
            self.latency_ns as f64 / 1e9,
            self.reaped_by_pid
                .map(|p| format!(" by {p}"))
                .unwrap_or_default(),
            if self.certain { "" } else { " [uncertain]" },
        )
    }
}

/// Tolerances of the comparisons.
#[derive(Clone, Copy, Debug)]
pub struct Slack {
    /// The tool may measure a zombie this much shorter than the sampler's
    /// lower bound (its exit is the exit tracepoint, a little before Z).
    pub below_ns: u64,
    /// ... and this much longer than the sampler's upper bound: a reap
    /// seen only through the task's free trails it by an RCU grace period.
    pub above_ns: u64,
    /// Between the tool's times and bpftrace's (the same tracepoints).
    pub kernel_ns: u64,
    /// `/proc/PID/stat` start times are in clock ticks of boot time: the
    /// offset of CLOCK_BOOTTIME from CLOCK_MONOTONIC, and ns per tick.
    pub boot_offset_ns: i64,
    pub ns_per_tick: u64,
}

impl Default for Slack {
    fn default() -> Slack {
        Slack {
            below_ns: 50_000_000,
            above_ns: 400_000_000,
            kernel_ns: 50_000_000,
            boot_offset_ns: 0,
            ns_per_tick: 10_000_000,
        }
    }
}

/// The three things a finding claims, each checked on its own: whose
/// zombie it was, how long it was one, and who ended it (`late_reap`: the
/// parent; `unreaped` adopted: someone else; `unreaped` zombie: nobody
/// before the trace ended).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    Parent,
    Life,
    Reaper,
}

const CLAIMS: [Claim; 3] = [Claim::Parent, Claim::Life, Claim::Reaper];

/// What one ground truth says about each claim: `Some(true)` confirms,
/// `Some(false)` contradicts, `None` cannot tell; and what it saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    pub parent: Option<bool>,
    pub life: Option<bool>,
    pub reaper: Option<bool>,
    pub seen: String,
}

impl Evidence {
    fn none(seen: impl Into<String>) -> Evidence {
        Evidence {
            parent: None,
            life: None,
            reaper: None,
            seen: seen.into(),
        }
    }

    /// Its contradictions made unknowns, saying why.
    fn unknown_where_false(mut self, why: &str) -> Evidence {
        let unknown = |v: Option<bool>| v.filter(|&v| v);
        if [self.parent, self.life, self.reaper].contains(&Some(false)) {
            self.seen
                .push_str(&format!(" ({why}: no evidence against)"));
        }
        self.parent = unknown(self.parent);
        self.life = unknown(self.life);
        self.reaper = unknown(self.reaper);
        self
    }

    fn get(&self, claim: Claim) -> Option<bool> {
        match claim {
            Claim::Parent => self.parent,
            Claim::Life => self.life,
            Claim::Reaper => self.reaper,
        }
    }

    fn text(&self) -> String {
        let mark = |v: Option<bool>| match v {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "?",
        };
        format!(
            "parent {} life {} reaper {}: {}",
            mark(self.parent),
            mark(self.life),
            mark(self.reaper),
            self.seen
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    True,
    /// A ground truth contradicts it.
    False,
    /// Some claim neither ground truth could confirm.
    Unconfirmed,
}

#[derive(Clone, Debug)]
pub struct Judged {
    pub finding: Finding,
    pub verdict: Verdict,
    pub sampler: Evidence,
    pub kernel: Evidence,
}

impl Judged {
    pub fn evidence(&self) -> String {
        format!(
            "{}\n      sampler: {}\n      kernel:  {}",
            self.finding.describe(),
            self.sampler.text(),
            self.kernel.text()
        )
    }
}

/// The harness's window: when the tool said it was tracing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub trace_started_ns: u64,
}

pub fn judge(
    f: &Finding,
    sampler: &SamplerView,
    kernel: &KernelView,
    window: Window,
    slack: &Slack,
) -> Judged {
    let s = by_sampler(f, sampler, window, slack);
    let k = by_kernel(f, kernel, slack);
    let verdict = if CLAIMS
        .iter()
        .any(|&c| s.get(c) == Some(false) || k.get(c) == Some(false))
    {
        Verdict::False
    } else if CLAIMS
        .iter()
        .all(|&c| s.get(c) == Some(true) || k.get(c) == Some(true))
    {
        Verdict::True
    } else {
        Verdict::Unconfirmed
    };
    Judged {
        finding: f.clone(),
        verdict,
        sampler: s,
        kernel: k,
    }
}

fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// The sampler's record of this finding's process, matched by pid and
/// start time (clock ticks of boot time). A zombie older than the trace
/// may come without a start time: then it is the pid's zombie that the
/// sampler saw before tracing began.
fn sampled<'a>(
    f: &Finding,
    sampler: &'a SamplerView,
    window: Window,
    slack: &Slack,
) -> Option<&'a ZombieSeen> {
    let mut same_pid = sampler.zombies.iter().filter(|z| z.pid == f.pid);
    if f.start_ns == 0 && f.predates_trace {
        return same_pid.find(|z| z.first_ns <= window.trace_started_ns);
    }
    let boot_ns = (f.start_ns as i64 + slack.boot_offset_ns).max(0) as u64;
    let ticks = boot_ns / slack.ns_per_tick;
    same_pid.find(|z| z.start_ticks.abs_diff(ticks) <= 1)
}

fn by_sampler(f: &Finding, sampler: &SamplerView, window: Window, slack: &Slack) -> Evidence {
    let Some(z) = sampled(f, sampler, window, slack) else {
        // Its zombie time, as the tool claims it, and whether the sampler
        // looked often enough through it to have seen it.
        let (from, to) = match f.exited_at_ns {
            Some(e) => (e, e + f.latency_ns),
            None => (window.trace_started_ns, window.trace_started_ns + 1),
        };
        let looked = match f.exited_at_ns {
            // Already a zombie when tracing began: the sampler, started
            // first, saw the machine then.
            None => sampler.started_ns <= from && from <= sampler.ended_ns,
            // A whole scan within the time the tool says it was a zombie
            // (less the slack at both ends) would have seen it.
            Some(_) => {
                sampler.looked_within(from + slack.below_ns, to.saturating_sub(slack.above_ns))
            }
        };
        let mut e = Evidence::none(format!(
            "never saw pid {} (start {}) as a zombie{}",
            f.pid,
            f.start_ns,
            if looked {
                ", though it looked in that time"
            } else {
                ""
            }
        ));
        if looked {
            e.life = Some(false);
        }
        return e;
    };
    let ppids: Vec<String> = z
        .ppids
        .iter()
        .map(|p| {
            format!(
                "ppid {} {}..{}",
                p.ppid,
                secs(p.first_ns.saturating_sub(z.first_ns)),
                secs(p.last_ns.saturating_sub(z.first_ns))
            )
        })
        .collect();
    let lo = z.last_ns - z.first_ns;
    let hi = match (z.before_ns, z.gone_by_ns) {
        (Some(b), Some(g)) => Some(g - b),
        _ => None,
    };
    let seen = format!(
        "zombie {} ({}) for {}..{} [{}]",
        z.pid,
        z.comm,
        secs(lo),
        hi.map(secs).unwrap_or_else(|| "open".into()),
        ppids.join(", ")
    );
    // Still a zombie at the end, or one older than the trace: the tool's
    // latency is a lower bound, so only the upper bound can contradict.
    let open_ended = f.resolution == "zombie" || f.predates_trace;
    let too_long = hi.is_some_and(|hi| f.latency_ns > hi + slack.above_ns);
    let too_short = !open_ended && f.latency_ns + slack.below_ns < lo;
    let under_parent = z.ppids.iter().any(|p| p.ppid == f.parent_pid);
    let only_under_parent = z.ppids.iter().all(|p| p.ppid == f.parent_pid);
    let last_ppid = z.ppids.last().map(|p| p.ppid);
    Evidence {
        // A parent that died within one poll of the exit is never seen.
        parent: under_parent.then_some(true),
        life: Some(!too_long && !too_short),
        reaper: match (f.kind, f.resolution.as_str()) {
            // Reaped by its parent: the parent held it all along.
            (Kind::LateReap, _) => Some(only_under_parent),
            // Still a zombie when the trace ended.
            (_, "zombie") => Some(z.gone_by_ns.is_none_or(|g| {
                f.exited_at_ns
                    .is_none_or(|e| g + slack.below_ns >= e + f.latency_ns)
            })),
            // Adopted: seen under someone else last (an adopter that reaps
            // within a poll is not seen).
            _ => (last_ppid != Some(f.parent_pid)).then_some(true),
        },
        seen,
    }
}

fn by_kernel(f: &Finding, kernel: &KernelView, slack: &Slack) -> Evidence {
    if f.predates_trace {
        return Evidence::none("it predates the kernel view");
    }
    let Some(exit) = kernel.exit(f.pid, f.start_ns) else {
        return Evidence::none(format!("no exit of {} start {} seen", f.pid, f.start_ns));
    };
    let mut seen = format!("exit at {}", exit.exit_ns);
    if let Some(p) = exit.notified_parent {
        seen.push_str(&format!(", SIGCHLD to its parent then, {p}"));
    }
    let wait = kernel.reaping_wait(exit);
    let free = kernel.free_after(exit);
    if let Some(w) = wait {
        seen.push_str(&format!(
            ", collected by {}'s wait after {}",
            w.waiter,
            secs(w.ns - exit.exit_ns)
        ));
    }
    if let Some(fr) = free {
        seen.push_str(&format!(", freed after {}", secs(fr - exit.exit_ns)));
    }
    let claimed_end = exit.exit_ns + f.latency_ns;
    let zombie_at_end = f.resolution == "zombie";
    let parent_exit = kernel.pid_exited_within(
        f.parent_pid,
        exit.exit_ns,
        wait.map_or(claimed_end, |w| w.ns),
    );
    if let Some(t) = parent_exit {
        seen.push_str(&format!(", parent exited after {}", secs(t - exit.exit_ns)));
    }
    // The end of its life: a wait is exact; a free trails the release by
    // an RCU grace period. No task can take the pid while the zombie
    // holds it, so a wait or free for it before the claimed end is
    // evidence against; but bpftrace may miss a free (perf output from
    // the softirq it runs in fails silently when nested), and a later one
    // may be a thread's with the same number, so a late free says nothing.
    let life = match (wait, free) {
        (Some(w), _) if zombie_at_end => (w.ns + slack.kernel_ns < claimed_end).then_some(false),
        // The tool may time the reap by the free that trails the wait.
        (Some(w), _) => Some(
            f.latency_ns + slack.kernel_ns >= w.ns - exit.exit_ns
                && f.latency_ns <= w.ns - exit.exit_ns + slack.above_ns,
        ),
        (None, Some(fr)) if fr + slack.kernel_ns < claimed_end => Some(false),
        (None, Some(fr)) if !zombie_at_end && fr <= claimed_end + slack.above_ns => Some(true),
        (None, _) => None,
    };
    let evidence = Evidence {
        parent: exit.notified_parent.map(|p| p == f.parent_pid),
        life,
        reaper: match (f.kind, wait) {
            (_, Some(_)) if zombie_at_end => None,
            (Kind::LateReap, Some(w)) => Some(w.waiter == f.parent_pid),
            (Kind::Unreaped, Some(w)) => Some(w.waiter != f.parent_pid),
            // The parent's own exit came before the release: it never
            // reaped it with a wait (a dying namespace init reaps its
            // children inside the kernel, with no wait call to see).
            (Kind::Unreaped, None) => parent_exit.map(|_| true),
            (Kind::LateReap, None) => None,
        },
        seen,
    };
    // The wait or free it matched may be another process's when bpftrace
    // lost the real ones (a reused pid): a lossy view confirms, but does
    // not contradict.
    let end = [Some(claimed_end), wait.map(|w| w.ns), free]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(claimed_end);
    if kernel.lost_between(exit.exit_ns, end) {
        return evidence.unknown_where_false("bpftrace lost records meanwhile");
    }
    evidence
}

/// A zombie left on purpose by a scenario: it must be found.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    pub what: &'static str,
    pub kind: Kind,
    pub pid: u32,
    pub parent_pid: u32,
}

/// The expected leaks with no finding of their kind, pid and parent.
pub fn missed<'a>(expected: &'a [Expected], findings: &[Finding]) -> Vec<&'a Expected> {
    expected
        .iter()
        .filter(|e| {
            !findings
                .iter()
                .any(|f| f.kind == e.kind && f.pid == e.pid && f.parent_pid == e.parent_pid)
        })
        .collect()
}

/// Counts per workload (named by a suffix of the cgroup path, "other"
/// for the rest of the machine).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub findings: u64,
    pub true_: u64,
    pub false_: u64,
    pub unconfirmed: u64,
    /// Of the above, the findings marked `certain: false`.
    pub uncertain: u64,
    pub uncertain_not_true: u64,
}

pub fn tally<'a>(
    judged: &[Judged],
    workload_of: impl Fn(&Finding) -> &'a str,
) -> Vec<(&'a str, Tally)> {
    let mut by: HashMap<&str, Tally> = HashMap::new();
    for j in judged {
        let t = by.entry(workload_of(&j.finding)).or_default();
        t.findings += 1;
        match j.verdict {
            Verdict::True => t.true_ += 1,
            Verdict::False => t.false_ += 1,
            Verdict::Unconfirmed => t.unconfirmed += 1,
        }
        if !j.finding.certain {
            t.uncertain += 1;
            if j.verdict != Verdict::True {
                t.uncertain_not_true += 1;
            }
        }
    }
    let mut rows: Vec<_> = by.into_iter().collect();
    rows.sort_by_key(|(name, _)| *name);
    rows
}

/// Merges the streamed findings and the report's: one per (kind, pid,
/// start), certain if any line called it certain (a finding streamed as
/// certain was claimed as certain, whatever the report said later).
pub fn merge(streamed: Vec<Finding>, reported: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for f in streamed.into_iter().chain(reported) {
        match out.iter_mut().find(|o| o.key() == f.key()) {
            Some(o) => o.certain |= f.certain,
            None => out.push(f),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realworld::kernel::KernelView;
    use crate::realworld::sampler::{PpidSpan, SamplerView, ZombieSeen};

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    /// The tool's start time for a process whose /proc start is `ticks`.
    fn start(ticks: u64) -> u64 {
        ticks * 10 * MS + 3 * MS
    }

    fn finding(kind: Kind, pid: u32, parent: u32, exit: u64, latency: u64) -> Finding {
        Finding {
            kind,
            pid,
            start_ns: start(500),
            comm: "sh".into(),
            parent_pid: parent,
            exited_at_ns: Some(exit),
            reaped_at_ns: Some(exit + latency),
            reaped_by_pid: Some(parent),
            resolution: if kind == Kind::LateReap {
                "reaped"
            } else {
                "adopted"
            }
            .into(),
            latency_ns: latency,
            certain: true,
            predates_trace: false,
            cgroup: "/reaper-trace-test-1-0/realworld/timeout".into(),
        }
    }

    /// A zombie sampled every 5 ms from `first` to `last`, under `ppids`.
    fn zombie(pid: u32, first: u64, last: u64, ppids: &[(u32, u64, u64)]) -> ZombieSeen {
        ZombieSeen {
            pid,
            start_ticks: 500,
            comm: "sh".into(),
            first_ns: first,
            last_ns: last,
            before_ns: Some(first - 5 * MS),
            gone_by_ns: Some(last + 5 * MS),
            ppids: ppids
                .iter()
                .map(|&(ppid, first_ns, last_ns)| PpidSpan {
                    ppid,
                    first_ns,
                    last_ns,
                })
                .collect(),
        }
    }

    fn sampler(zombies: Vec<ZombieSeen>) -> SamplerView {
        SamplerView {
            zombies,
            started_ns: S,
            ended_ns: 200 * S,
            max_gap_ns: 8 * MS,
            scans: 1000,
            // A scan every 5 ms, taking 3.
            scan_times: (S / (5 * MS)..200 * S / (5 * MS))
                .map(|i| (i * 5 * MS, i * 5 * MS + 3 * MS))
                .collect(),
        }
    }

    /// A sampler that was not running: no evidence either way.
    fn no_sampler() -> SamplerView {
        SamplerView::default()
    }

    fn kernel(lines: &str) -> KernelView {
        KernelView::parse(lines)
    }

    fn no_kernel() -> KernelView {
        KernelView::parse("")
    }

    /// [`judge`] for a trace that began at 1 s, with the default slack.
    fn judged(f: &Finding, s: &SamplerView, k: &KernelView) -> Judged {
        judge(
            f,
            s,
            k,
            Window {
                trace_started_ns: S,
            },
            &Slack::default(),
        )
    }

    #[test]
    fn a_late_reap_the_sampler_saw_under_its_parent_is_true() {
        let f = finding(Kind::LateReap, 100, 50, 10 * S, 1200 * MS);
        let s = sampler(vec![zombie(
            100,
            10 * S + 2 * MS,
            11 * S + 195 * MS,
            &[(50, 10 * S, 11 * S)],
        )]);
        let j = judged(&f, &s, &no_kernel());
        assert_eq!(j.verdict, Verdict::True, "{}", j.evidence());
    }

    #[test]
    fn a_late_reap_of_a_zombie_pid_1_held_is_false() {
        // The race of issue 18: timeout died, sh was reparented and PID 1
        // reaped it; the tool credited timeout.
        let f = finding(Kind::LateReap, 100, 50, 10 * S, 1200 * MS);
        let s = sampler(vec![zombie(
            100,
            10 * S + 2 * MS,
            11 * S + 195 * MS,
            &[(1, 10 * S, 11 * S)],
        )]);
        let j = judged(&f, &s, &no_kernel());
        assert_eq!(j.verdict, Verdict::False);
        assert!(j.evidence().contains("reaper NO"), "{}", j.evidence());
    }

    #[test]
    fn the_kernel_view_catches_the_race_too() {
        let f = finding(Kind::LateReap, 100, 50, 10 * S, 1200 * MS);
        let st = f.start_ns;
        let k = kernel(&format!(
            "X {} 100 50 {st} sh\nN {} 100 1 {st} 1 0\nF {} 100\n",
            10 * S,
            10 * S + MS,
            11 * S + 215 * MS
        ));
        let j = judged(&f, &no_sampler(), &k);
        assert_eq!(j.verdict, Verdict::False, "{}", j.evidence());
        assert!(
            j.evidence().contains("kernel:  parent NO"),
            "{}",
            j.evidence()
        );
        assert!(j.evidence().contains("SIGCHLD to its parent then, 1"));
    }

    #[test]
    fn a_latency_far_from_the_zombie_s_life_is_false() {
        // A lifecycle closed by a later process with the same pid.
        let f = finding(Kind::LateReap, 100, 50, 10 * S, 102 * S);
        let s = sampler(vec![zombie(
            100,
            10 * S,
            10 * S + 5 * MS,
            &[(50, 10 * S, 10 * S + 5 * MS)],
        )]);
        let j = judged(&f, &s, &no_kernel());
        assert_eq!(j.verdict, Verdict::False);
        assert!(
            j.evidence().contains("sampler: parent yes life NO"),
            "{}",
            j.evidence()
        );
    }

    #[test]
    fn a_zombie_the_sampler_never_saw_is_false() {
        let f = finding(Kind::Unreaped, 100, 50, 10 * S, 3 * S);
        let j = judged(&f, &sampler(vec![]), &no_kernel());
        assert_eq!(j.verdict, Verdict::False);
        assert!(
            j.evidence().contains("life NO reaper ?: never saw pid 100"),
            "{}",
            j.evidence()
        );
    }

    #[test]
    fn another_start_time_is_another_process() {
        let f = finding(Kind::Unreaped, 100, 50, 10 * S, 3 * S);
        let mut z = zombie(100, 10 * S, 13 * S, &[(50, 10 * S, 13 * S)]);
        z.start_ticks = 900;
        let j = judged(&f, &sampler(vec![z]), &no_kernel());
        assert_eq!(j.verdict, Verdict::False);
    }

    #[test]
    fn an_adopted_zombie_whose_parent_died_unseen_needs_the_kernel() {
        // The parent died within a poll of the child's exit: the sampler saw
        // only the adopter, so the kernel's SIGCHLD decides.
        let f = finding(Kind::Unreaped, 100, 50, 10 * S, 1500 * MS);
        let s = sampler(vec![zombie(
            100,
            10 * S + 3 * MS,
            11 * S + 495 * MS,
            &[(1, 10 * S, 11 * S)],
        )]);
        let j = judged(&f, &s, &no_kernel());
        assert_eq!(j.verdict, Verdict::Unconfirmed, "{}", j.evidence());
        let st = f.start_ns;
        let k = kernel(&format!(
            "X {} 100 50 {st} sh\nN {} 100 50 {st} 50 0\nF {} 100\n",
            10 * S,
            10 * S + MS,
            11 * S + 515 * MS
        ));
        let j = judged(&f, &s, &k);
        assert_eq!(j.verdict, Verdict::True, "{}", j.evidence());
    }

    #[test]
    fn each_claim_may_be_confirmed_by_either_truth() {
        // The kernel saw whose zombie it was (the parent died within a
        // poll, and bpftrace missed the free); the sampler saw how long it
        // lived and that the adopter held it.
        let f = finding(Kind::Unreaped, 100, 50, 10 * S, 1500 * MS);
        let s = sampler(vec![zombie(
            100,
            10 * S + 3 * MS,
            11 * S + 495 * MS,
            &[(1, 10 * S, 11 * S)],
        )]);
        let st = f.start_ns;
        let k = kernel(&format!(
            "X {} 100 50 {st} sh\nN {} 100 50 {st} 50 0\n",
            10 * S,
            10 * S + MS
        ));
        let j = judged(&f, &s, &k);
        assert_eq!(j.verdict, Verdict::True, "{}", j.evidence());
    }

    #[test]
    fn a_zombie_older_than_the_trace_is_matched_by_pid() {
        let mut f = finding(Kind::Unreaped, 100, 50, 0, 160 * S);
        (f.start_ns, f.exited_at_ns, f.predates_trace) = (0, None, true);
        f.resolution = "zombie".into();
        let mut z = zombie(100, S, 199 * S, &[(50, S, 199 * S)]);
        (z.before_ns, z.gone_by_ns) = (None, None);
        let window = Window {
            trace_started_ns: 2 * S,
        };
        let j = judge(
            &f,
            &sampler(vec![z.clone()]),
            &no_kernel(),
            window,
            &Slack::default(),
        );
        assert_eq!(j.verdict, Verdict::True, "{}", j.evidence());
        // One first seen after tracing began is another process.
        z.first_ns = 3 * S;
        let j = judge(
            &f,
            &sampler(vec![z]),
            &no_kernel(),
            window,
            &Slack::default(),
        );
        assert_eq!(j.verdict, Verdict::False, "{}", j.evidence());
    }

    #[test]
    fn a_parent_that_exited_before_the_release_never_reaped() {
        // A namespace's dying init reaps its children inside the kernel:
        // no wait call, but its exit came first.
        let mut f = finding(Kind::Unreaped, 100, 50, 10 * S, 17 * MS);
        f.reaped_by_pid = Some(50);
        let st = f.start_ns;
        let k = kernel(&format!(
            "X {} 100 50 {st} sh\nN {} 100 50 {st} 50 0\nX {} 50 1 7 init\nF {} 100\n",
            10 * S,
            10 * S + MS,
            10 * S + 5 * MS,
            10 * S + 30 * MS
        ));
        let j = judged(&f, &no_sampler(), &k);
        assert_eq!(j.verdict, Verdict::True, "{}", j.evidence());
        assert!(j.evidence().contains("parent exited after 0.005s"));
    }

    #[test]
    fn a_free_long_after_the_claimed_reap_says_nothing() {
        // bpftrace missed the free; a later thread with the same tid was
        // freed a minute later.
        let f = finding(Kind::LateReap, 100, 1, 10 * S, 1500 * MS);
        let st = f.start_ns;
        let k = kernel(&format!(
            "X {} 100 1 {st} sh\nN {} 100 1 {st} 1 0\nF {} 100\n",
            10 * S,
            10 * S + MS,
            80 * S
        ));
        let j = judged(&f, &no_sampler(), &k);
        assert_eq!(j.verdict, Verdict::Unconfirmed, "{}", j.evidence());
    }

    #[test]
    fn an_unreaped_finding_the_parent_reaped_is_false() {
        let f = finding(Kind::Unreaped, 100, 50, 10 * S, 1500 * MS);
        let st = f.start_ns;
        let k = kernel(&format!(
            "X {} 100 50 {st} sh\nN {} 100 50 {st} 50 0\nW {} 50 100\n",
            10 * S,
            10 * S + MS,
            11 * S + 500 * MS
        ));
        let j = judged(&f, &no_sampler(), &k);
        assert_eq!(j.verdict, Verdict::False, "{}", j.evidence());
    }

    #[test]
    fn a_lossy_kernel_view_confirms_but_does_not_contradict() {
        // The parent's reap at 11.2 s was lost; a wait by 60 that collected
        // the pid's next process at 40 s looks like another reaper.
        let f = finding(Kind::LateReap, 100, 50, 10 * S, 1200 * MS);
        let st = f.start_ns;
        let records = format!(
            "X {} 100 50 {st} sh\nN {} 100 50 {st} 50 0\n{{lost}}W {} 60 100\n",
            10 * S,
            10 * S + MS,
            40 * S
        );
        let sampled = sampler(vec![zombie(
            100,
            10 * S + 2 * MS,
            11 * S + 195 * MS,
            &[(50, 10 * S, 11 * S)],
        )]);
        let clean = kernel(&records.replace("{lost}", ""));
        let j = judged(&f, &sampled, &clean);
        assert_eq!(j.verdict, Verdict::False, "{}", j.evidence());
        let lossy = kernel(&records.replace("{lost}", "Lost 3 events\n"));
        let j = judged(&f, &sampled, &lossy);
        assert_eq!(j.verdict, Verdict::True, "{}", j.evidence());
        assert!(j.evidence().contains("bpftrace lost records meanwhile"));
        // Losses long before or after say nothing of it.
        let elsewhere = kernel(&format!(
            "X {} 7 1 1 a\nLost 3 events\nX {} 8 1 1 b\n{}X {} 9 1 1 c\nLost 1 events\nX {} 10 1 1 d\n",
            S,
            2 * S,
            records.replace("{lost}", ""),
            90 * S,
            91 * S
        ));
        let j = judged(&f, &sampled, &elsewhere);
        assert_eq!(j.verdict, Verdict::False, "{}", j.evidence());
    }

    #[test]
    fn a_late_reap_the_kernel_saw_the_parent_make_is_true() {
        let f = finding(Kind::LateReap, 100, 50, 10 * S, 1200 * MS);
        let st = f.start_ns;
        // A wait for an earlier process with the same pid does not count.
        let k = kernel(&format!(
            "W {} 50 100\nX {} 100 50 {st} sh\nN {} 100 50 {st} 50 0\nW {} 50 100\n",
            5 * S,
            10 * S,
            10 * S + MS,
            11 * S + 200 * MS
        ));
        let j = judged(&f, &no_sampler(), &k);
        assert_eq!(j.verdict, Verdict::True, "{}", j.evidence());
        // Timed by a free that trailed the wait by 150 ms: still the reap.
        let mut g = f.clone();
        g.latency_ns += 150 * MS;
        let j = judged(&g, &no_sampler(), &k);
        assert_eq!(j.verdict, Verdict::True, "{}", j.evidence());
        // Not half a second before the wait, though.
        g.latency_ns = 700 * MS;
        let j = judged(&g, &no_sampler(), &k);
        assert_eq!(j.verdict, Verdict::False, "{}", j.evidence());
    }

    #[test]
    fn a_zombie_at_the_end_that_was_reaped_before_is_false() {
        let mut f = finding(Kind::Unreaped, 100, 50, 10 * S, 30 * S);
        f.resolution = "zombie".into();
        let st = f.start_ns;
        let k = kernel(&format!(
            "X {} 100 50 {st} sh\nN {} 100 50 {st} 50 0\nF {} 100\n",
            10 * S,
            10 * S + MS,
            12 * S
        ));
        let j = judged(&f, &no_sampler(), &k);
        assert_eq!(j.verdict, Verdict::False, "{}", j.evidence());
        // Still there when the sampler stopped: its life is open-ended.
        let mut z = zombie(100, 10 * S, 40 * S, &[(50, 10 * S, 40 * S)]);
        z.gone_by_ns = None;
        let j = judged(&f, &sampler(vec![z]), &no_kernel());
        assert_eq!(j.verdict, Verdict::True, "{}", j.evidence());
    }

    #[test]
    fn leaks_are_found_by_kind_pid_and_parent() {
        let expected = [
            Expected {
                what: "zombie_hold",
                kind: Kind::Unreaped,
                pid: 100,
                parent_pid: 50,
            },
            Expected {
                what: "demo late",
                kind: Kind::LateReap,
                pid: 101,
                parent_pid: 50,
            },
        ];
        let found = [
            finding(Kind::Unreaped, 100, 50, S, 4 * S),
            finding(Kind::Unreaped, 101, 50, S, 2 * S),
        ];
        let missed = missed(&expected, &found);
        assert_eq!(missed.len(), 1);
        assert_eq!(missed[0].pid, 101);
    }

    #[test]
    fn a_finding_streamed_certain_stays_certain() {
        let a = finding(Kind::Unreaped, 100, 50, S, 4 * S);
        let mut b = a.clone();
        b.certain = false;
        let merged = merge(vec![a], vec![b, finding(Kind::LateReap, 100, 50, S, 4 * S)]);
        assert_eq!(merged.len(), 2);
        assert!(merged[0].certain);
    }

    #[test]
    fn tallies_count_verdicts_and_uncertain_findings() {
        let f = finding(Kind::LateReap, 100, 50, 10 * S, 1200 * MS);
        let mut g = f.clone();
        g.certain = false;
        g.cgroup = "/elsewhere".into();
        let judged = [
            judged(&f, &sampler(vec![]), &no_kernel()),
            judged(&g, &no_sampler(), &no_kernel()),
        ];
        let rows = tally(&judged, |f| {
            if f.cgroup.ends_with("timeout") {
                "timeout"
            } else {
                "other"
            }
        });
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "other");
        assert_eq!(rows[0].1.uncertain, 1);
        assert_eq!(rows[0].1.uncertain_not_true, 1);
        assert_eq!(rows[0].1.unconfirmed, 1);
        assert_eq!(rows[1].1.false_, 1);
    }

    #[test]
    fn findings_parse_from_the_tool_s_json() {
        let v: Value = serde_json::from_str(
            r#"{"type":"finding","kind":"late_reap","pid":7,"comm":"sh","parent_pid":6,"exited_at_ns":5,"reaped_at_ns":9,"reaped_by_pid":6,"reap_kind":"wait","resolution":"reaped","latency_ns":4,"certain":false,"predates_trace":false,"start_ns":3,"cgroup":{"id":1,"path":"/a/b"}}"#,
        )
        .unwrap();
        let f = Finding::from_json(&v).unwrap();
        assert_eq!(
            (f.kind, f.pid, f.parent_pid, f.latency_ns, f.certain),
            (Kind::LateReap, 7, 6, 4, false)
        );
        assert_eq!(f.cgroup, "/a/b");
        let orphan: Value = serde_json::from_str(r#"{"kind":"orphaned","pid":7}"#).unwrap();
        assert!(Finding::from_json(&orphan).is_none());
    }
}
