//! The metrics while tracing (`serve`, `--metrics-file`), and `serve`'s
//! memory bound: cgroups gone long enough are forgotten, with their series.
//! Both are visitors of the pipeline; both look at the cgroup filesystem
//! every few seconds.

use std::{
    collections::{HashMap, HashSet},
    io,
};

use crate::{
    analysis::{Analyzer, Notice, Report, Verdict},
    cgroup::fs::CgroupFs,
    output::metrics::Metrics,
    pipeline::{Forget, Visitor},
    trace::{event::Event, totals::Totals},
};

/// How often the metrics' cgroups are checked: their pids controller read,
/// and the ones that are gone noticed.
const CGROUP_POLL_NS: u64 = 5_000_000_000;

/// How long a gone cgroup's series stay exported by default: long enough
/// for the last scrapes to see their final values.
pub const GONE_CGROUP_RETENTION_NS: u64 = 300_000_000_000;

/// Whether a poll every [`CGROUP_POLL_NS`] is due at `now`; notes it.
fn poll_due(polled_ns: &mut u64, now: u64) -> bool {
    if now.saturating_sub(*polled_ns) < CGROUP_POLL_NS {
        return false;
    }
    *polled_ns = now;
    true
}

/// Prometheus metrics fed as the trace goes.
pub struct LiveMetrics {
    pub metrics: Metrics,
    fs: CgroupFs,
    /// When the cgroups' pids controllers were last read.
    polled_ns: u64,
    /// `serve`: each finding counts as it resolves; there is no report.
    findings_as_they_resolve: bool,
}

impl LiveMetrics {
    pub fn new(metrics: Metrics, fs: CgroupFs, findings_as_they_resolve: bool) -> LiveMetrics {
        LiveMetrics {
            metrics,
            fs,
            polled_ns: 0,
            findings_as_they_resolve,
        }
    }

    /// The tracer's own counts and the zombies now; every few seconds (or
    /// when `now` says so), the cgroups' pids controllers.
    fn update(&mut self, now: u64, analysis: &Analyzer, totals: &Totals, read_pids_now: bool) {
        self.metrics.totals(totals, analysis.tracked());
        let zombies: Vec<_> = analysis
            .overdue_by_cgroup(now)
            .into_iter()
            .map(|(id, n)| (analysis.cgroup(id), n))
            .collect();
        self.metrics.set_zombies(&zombies);
        if poll_due(&mut self.polled_ns, now) || read_pids_now {
            self.read_pids();
        }
    }

    /// Each metered cgroup's pids controller.
    fn read_pids(&mut self) {
        let metered: Vec<(u64, String)> = self
            .metrics
            .cgroups()
            .map(|(id, path)| (id, path.to_owned()))
            .collect();
        for (id, path) in metered {
            if let Some(pids) = self.fs.pids(&path) {
                self.metrics.set_pids(id, pids.current, pids.max);
            }
        }
    }

    /// As the trace ends, its lifecycles made into `report` (`analysis`
    /// tracks none any more): the counts, the pids controllers now, and
    /// unless they counted as they resolved, the report's findings.
    pub fn finish(
        mut self,
        end_ns: u64,
        analysis: &Analyzer,
        totals: &Totals,
        report: &Report,
    ) -> Metrics {
        self.update(end_ns, analysis, totals, true);
        if !self.findings_as_they_resolve {
            self.metrics.report(report);
        }
        self.metrics
    }
}

impl Visitor for LiveMetrics {
    fn exit(&mut self, event: &Event, analysis: &Analyzer) -> io::Result<()> {
        let id = event.cgroup_id;
        self.metrics.exit(id, || analysis.cgroup(id));
        Ok(())
    }

    /// A lifecycle's end: the reap-latency histogram.
    fn verdict(&mut self, verdict: &Verdict, analysis: &Analyzer) -> io::Result<()> {
        let id = verdict.cgroup_id;
        self.metrics.verdict(verdict, || analysis.cgroup(id));
        Ok(())
    }

    fn notice(&mut self, notice: &Notice) -> io::Result<()> {
        if self.findings_as_they_resolve
            && let Notice::Finding(finding) = notice
        {
            self.metrics.finding(finding);
        }
        Ok(())
    }

    fn tick(
        &mut self,
        now: u64,
        analysis: &Analyzer,
        totals: &Totals,
        _: &mut Forget,
    ) -> io::Result<()> {
        self.update(now, analysis, totals, false);
        Ok(())
    }

    fn forget_cgroups(&mut self, ids: &[u64]) {
        for id in ids {
            self.metrics.expire(*id);
        }
    }
}

/// `serve`'s memory bound: nothing is kept for a final report, and the
/// cgroups gone for the retention time are forgotten with their series
/// and names, so a daemon on a node whose containers come and go holds
/// only what exists.
pub struct CgroupExpiry {
    /// How long a gone cgroup keeps its series and name.
    retention_ns: u64,
    fs: CgroupFs,
    /// Cgroups with exits that were never named (gone before they could
    /// be). The named ones are the analysis's.
    unnamed: HashSet<u64>,
    /// Cgroups found gone, with when.
    gone_since: HashMap<u64, u64>,
    polled_ns: u64,
}

impl CgroupExpiry {
    pub fn new(retention_ns: u64, fs: CgroupFs) -> CgroupExpiry {
        CgroupExpiry {
            retention_ns,
            fs,
            unnamed: HashSet::new(),
            gone_since: HashMap::new(),
            polled_ns: 0,
        }
    }

    /// The cgroups gone for the retention time, now.
    fn expired(&mut self, now: u64, analysis: &Analyzer) -> Vec<u64> {
        let named = analysis.named_cgroups().map(|c| (c.id, c.path.as_str()));
        let unnamed = self
            .unnamed
            .iter()
            .filter(|id| !analysis.knows_cgroup(**id))
            .map(|id| (*id, ""));
        let mut expired = Vec::new();
        for (id, path) in named.chain(unnamed) {
            if !path.is_empty() && self.fs.is_alive(id, path) {
                self.gone_since.remove(&id);
                continue;
            }
            let since = *self.gone_since.entry(id).or_insert(now);
            if now.saturating_sub(since) >= self.retention_ns {
                expired.push(id);
            }
        }
        expired
    }
}

impl Visitor for CgroupExpiry {
    fn exit(&mut self, event: &Event, analysis: &Analyzer) -> io::Result<()> {
        let id = event.cgroup_id;
        if id != 0 && !analysis.knows_cgroup(id) {
            self.unnamed.insert(id);
        }
        Ok(())
    }

    fn tick(
        &mut self,
        now: u64,
        analysis: &Analyzer,
        _: &Totals,
        forget: &mut Forget,
    ) -> io::Result<()> {
        forget.history = true;
        if poll_due(&mut self.polled_ns, now) {
            forget.cgroups.extend(self.expired(now, analysis));
        }
        Ok(())
    }

    fn forget_cgroups(&mut self, ids: &[u64]) {
        for id in ids {
            self.unnamed.remove(id);
            self.gone_since.remove(id);
        }
    }
}
