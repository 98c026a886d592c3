//! The Prometheus metrics of `serve` and of `check`/`report --metrics-file`:
//! one set of families fed by events, verdicts and findings, rendered in
//! the text exposition format. No I/O here: callers serve or write the text.
//!
//! Labels stay bounded: a cgroup (path, runtime, container, pod) and, on
//! findings, the parent's comm; never a pid. A cgroup's series are removed
//! with [`Metrics::expire`] once it is gone, so a daemon on a node whose
//! containers come and go holds only the series of cgroups that exist.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{
    analysis::{Analyzer, Finding, FindingKind, Report, Resolution, Verdict},
    cgroup::{Cgroup, CgroupNames},
    pipeline::Visitor,
    trace::{event::Event, totals::Totals},
};

/// Reap latency buckets, seconds: a prompt reap takes microseconds, a
/// late one (the default threshold is 1 s) seconds to minutes.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_1, 0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Where a series is: the cgroup, and what the path says about it.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct CgroupLabels {
    /// The cgroup v2 path; "" when the kernel gave none (old recordings),
    /// "unknown" when the cgroup was gone before its path could be read.
    pub cgroup: String,
    pub runtime: String,
    /// The short container id.
    pub container: String,
    pub pod: String,
}

impl CgroupLabels {
    pub fn of(cgroup: Option<&Cgroup>) -> CgroupLabels {
        let Some(cgroup) = cgroup else {
            return CgroupLabels::default();
        };
        CgroupLabels {
            cgroup: if cgroup.path.is_empty() {
                "unknown".into()
            } else {
                cgroup.path.clone()
            },
            runtime: cgroup
                .container
                .runtime
                .map(|r| r.name().to_owned())
                .unwrap_or_default(),
            container: cgroup.container.short_id().unwrap_or_default().to_owned(),
            pod: cgroup.container.pod_uid.clone().unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct FindingLabels {
    cgroup: String,
    runtime: String,
    container: String,
    pod: String,
    parent_comm: String,
}

impl FindingLabels {
    fn new(cgroup: &CgroupLabels, parent_comm: String) -> FindingLabels {
        FindingLabels {
            cgroup: cgroup.cgroup.clone(),
            runtime: cgroup.runtime.clone(),
            container: cgroup.container.clone(),
            pod: cgroup.pod.clone(),
            parent_comm,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A cgroup id's labels and the series every exit and reap updates.
struct IdSeries {
    labels: CgroupLabels,
    exits: Counter,
    latency: Histogram,
}

/// One cgroup label set's series, and the cgroup ids that use it: a
/// systemd unit restarted has a new cgroup (a new id) at the same path, and
/// shares the old one's series until the old one expires.
#[derive(Default)]
struct CgroupSeries {
    ids: BTreeSet<u64>,
    findings: BTreeSet<FindingLabels>,
    has_pids_max: bool,
}

pub struct Metrics {
    /// Shared with the HTTP server, which renders it while the trace goes:
    /// the families inside are internally synchronised.
    registry: Arc<Registry>,
    zombies: Family<CgroupLabels, Gauge>,
    exits: Family<CgroupLabels, Counter>,
    unreaped: Family<FindingLabels, Counter>,
    late_reaps: Family<FindingLabels, Counter>,
    /// The same, for findings that lost events may have made up.
    uncertain_unreaped: Family<FindingLabels, Counter>,
    uncertain_late_reaps: Family<FindingLabels, Counter>,
    orphaned: Family<FindingLabels, Counter>,
    latency: Family<CgroupLabels, Histogram, fn() -> Histogram>,
    pids_current: Family<CgroupLabels, Gauge>,
    pids_max: Family<CgroupLabels, Gauge>,
    events: Family<KindLabels, Counter>,
    events_lost: Family<KindLabels, Counter>,
    tracked: Gauge,
    /// Each cgroup id's labels (id 0: none known), with the handles of its
    /// per-exit series: an exit costs one lookup by id, not one by labels.
    labels_of: HashMap<u64, IdSeries>,
    series: HashMap<CgroupLabels, CgroupSeries>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("reaper_trace");
        let m = Metrics {
            zombies: Family::default(),
            exits: Family::default(),
            unreaped: Family::default(),
            late_reaps: Family::default(),
            uncertain_unreaped: Family::default(),
            uncertain_late_reaps: Family::default(),
            orphaned: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            pids_current: Family::default(),
            pids_max: Family::default(),
            events: Family::default(),
            events_lost: Family::default(),
            tracked: Gauge::default(),
            labels_of: HashMap::new(),
            series: HashMap::new(),
            registry: Arc::new(Registry::default()),
        };
        registry.register(
            "zombies",
            "Exits unreaped for longer than the threshold, now",
            m.zombies.clone(),
        );
        registry.register("exits", "Processes that exited", m.exits.clone());
        registry.register(
            "unreaped",
            "Exits their parent never reaped (adopted and reaped by another process, or still zombies when a trace ended)",
            m.unreaped.clone(),
        );
        registry.register(
            "late_reaps",
            "Exits their parent reaped later than the threshold",
            m.late_reaps.clone(),
        );
        registry.register(
            "uncertain_unreaped",
            "Exits seemingly never reaped, but with events lost around them: may be wrong, not in unreaped",
            m.uncertain_unreaped.clone(),
        );
        registry.register(
            "uncertain_late_reaps",
            "Exits seemingly reaped late, but with events lost around them: may be wrong, not in late_reaps",
            m.uncertain_late_reaps.clone(),
        );
        registry.register(
            "orphaned",
            "Processes still running when their parent died",
            m.orphaned.clone(),
        );
        registry.register(
            "reap_latency_seconds",
            "Time from exit to reap",
            m.latency.clone(),
        );
        registry.register(
            "pids_current",
            "Processes (zombies included) charged to the cgroup, from its pids controller",
            m.pids_current.clone(),
        );
        registry.register(
            "pids_max",
            "The cgroup's pids.max (absent when unlimited): at pids_current = pids_max, fork fails with EAGAIN",
            m.pids_max.clone(),
        );
        registry.register(
            "events",
            "Events received from the kernel",
            m.events.clone(),
        );
        registry.register(
            "events_lost",
            "Events the kernel could not queue (ring buffer full): findings since may be wrong",
            m.events_lost.clone(),
        );
        registry.register(
            "tracked_processes",
            "Processes the analysis holds state for",
            m.tracked.clone(),
        );
        // Every kind's loss counter from the start: "0 lost" is a fact worth
        // a series, and rate() needs one to start from.
        for kind in reaper_trace_common::kind::NAMES.iter().skip(1) {
            drop(m.events_lost.get_or_create(&KindLabels {
                kind: (*kind).to_owned(),
            }));
        }
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register("build_info", "reaper-trace's version", build_info);
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// Cgroup `id`'s series, registered on first use with the labels of
    /// `name()` (the cgroup as the caller knows it).
    fn id_series(&mut self, id: u64, name: impl FnOnce() -> Option<Cgroup>) -> &IdSeries {
        if !self.labels_of.contains_key(&id) {
            let labels = CgroupLabels::of(name().as_ref());
            self.series
                .entry(labels.clone())
                .or_default()
                .ids
                .insert(id);
            let series = IdSeries {
                exits: self.exits.get_or_create(&labels).clone(),
                latency: self.latency.get_or_create(&labels).clone(),
                labels,
            };
            self.labels_of.insert(id, series);
        }
        &self.labels_of[&id]
    }

    /// The labels of `cgroup`'s series, registering it.
    fn labels(&mut self, cgroup: Option<&Cgroup>) -> CgroupLabels {
        let id = cgroup.map_or(0, |c| c.id);
        self.id_series(id, || cgroup.cloned()).labels.clone()
    }

    /// A process exited in cgroup `id` (counted once per process); `name`
    /// is called the first time the cgroup is seen.
    pub fn exit(&mut self, id: u64, name: impl FnOnce() -> Option<Cgroup>) {
        self.id_series(id, name).exits.inc();
    }

    /// A lifecycle ended: its exit-to-reap time.
    pub fn verdict(&mut self, verdict: &Verdict, name: impl FnOnce() -> Option<Cgroup>) {
        let Some(exited) = verdict.exited_at_ns else {
            return;
        };
        let seconds = verdict.reap.time_ns.saturating_sub(exited) as f64 / 1e9;
        self.id_series(verdict.cgroup_id, name)
            .latency
            .observe(seconds);
    }

    /// A finding, once (when it is resolved, or when the trace ends).
    pub fn finding(&mut self, finding: &Finding) {
        let cgroup = self.labels(finding.cgroup.as_ref());
        let labels = FindingLabels::new(&cgroup, finding.parent_comm.to_string());
        if let Some(series) = self.series.get_mut(&cgroup) {
            series.findings.insert(labels.clone());
        }
        let family = match (finding.kind, finding.certain) {
            (FindingKind::Unreaped, true) => &self.unreaped,
            (FindingKind::LateReap, true) => &self.late_reaps,
            (FindingKind::Unreaped, false) => &self.uncertain_unreaped,
            (FindingKind::LateReap, false) => &self.uncertain_late_reaps,
            (FindingKind::Orphaned, _) => &self.orphaned,
        };
        family.get_or_create(&labels).inc();
    }

    /// Every finding of a finished trace, and its zombies as the gauge.
    pub fn report(&mut self, report: &Report) {
        let mut zombies = Vec::new();
        for finding in report.findings.iter().chain(&report.uncertain) {
            self.finding(finding);
            if finding.resolution == Some(Resolution::Zombie) {
                zombies.push((finding.cgroup.clone(), 1));
            }
        }
        self.set_zombies(&zombies);
    }

    /// Exits overdue now, per cgroup (summed over the cgroups that share
    /// labels); every other series' gauge goes to 0.
    pub fn set_zombies(&mut self, by_cgroup: &[(Option<Cgroup>, i64)]) {
        let mut sums: HashMap<CgroupLabels, i64> = HashMap::new();
        for (cgroup, n) in by_cgroup {
            *sums.entry(self.labels(cgroup.as_ref())).or_default() += n;
        }
        for labels in self.series.keys() {
            let value = sums.get(labels).copied().unwrap_or(0);
            self.zombies.get_or_create(labels).set(value);
        }
    }

    /// The pids controller's reading for cgroup `id` (`max` None: no limit).
    pub fn set_pids(&mut self, id: u64, current: u64, max: Option<u64>) {
        let Some(IdSeries { labels, .. }) = self.labels_of.get(&id) else {
            return;
        };
        let Some(series) = self.series.get_mut(labels) else {
            return;
        };
        self.pids_current.get_or_create(labels).set(current as i64);
        match max {
            Some(max) => {
                self.pids_max.get_or_create(labels).set(max as i64);
                series.has_pids_max = true;
            }
            None if series.has_pids_max => {
                self.pids_max.remove(labels);
                series.has_pids_max = false;
            }
            None => {}
        }
    }

    /// The cgroups that have series, with their paths.
    pub fn cgroups(&self) -> impl Iterator<Item = (u64, &str)> {
        self.labels_of
            .iter()
            .filter(|(id, _)| **id != 0)
            .map(|(id, series)| (*id, series.labels.cgroup.as_str()))
    }

    /// Forgets a cgroup that is gone; its series go with the last cgroup
    /// that shares their labels.
    pub fn expire(&mut self, id: u64) {
        let Some(IdSeries { labels, .. }) = self.labels_of.remove(&id) else {
            return;
        };
        let Some(series) = self.series.get_mut(&labels) else {
            return;
        };
        series.ids.remove(&id);
        if !series.ids.is_empty() {
            return;
        }
        let series = self.series.remove(&labels).unwrap_or_default();
        self.zombies.remove(&labels);
        self.exits.remove(&labels);
        self.latency.remove(&labels);
        self.pids_current.remove(&labels);
        self.pids_max.remove(&labels);
        for f in &series.findings {
            self.unreaped.remove(f);
            self.late_reaps.remove(f);
            self.orphaned.remove(f);
        }
    }

    /// The tracer's own counts: events per kind and losses, raised to the
    /// totals' values (counters only go up).
    pub fn totals(&mut self, totals: &Totals, tracked: usize) {
        for (kind, &n) in &totals.events {
            raise(&self.events, kind, n);
        }
        for (kind, &n) in &totals.lost_by_kind {
            self.lost(kind, n);
        }
        self.lost("ustack", totals.stacks_lost);
        self.tracked.set(tracked as i64);
    }

    /// Events of `kind` the kernel could not queue, `total` so far.
    pub fn lost(&mut self, kind: &str, total: u64) {
        raise(&self.events_lost, kind, total);
    }

    /// Every sample name this build exports (each family given a sample):
    /// what documentation and alert rules may use.
    pub fn exported_names() -> BTreeSet<String> {
        let m = Metrics::new();
        let cgroup = CgroupLabels::default();
        let finding = FindingLabels::new(&cgroup, String::new());
        let kind = KindLabels {
            kind: "exit".into(),
        };
        for family in [&m.zombies, &m.pids_current, &m.pids_max] {
            family.get_or_create(&cgroup).set(1);
        }
        m.exits.get_or_create(&cgroup).inc();
        m.latency.get_or_create(&cgroup).observe(1.0);
        for family in [
            &m.unreaped,
            &m.late_reaps,
            &m.uncertain_unreaped,
            &m.uncertain_late_reaps,
            &m.orphaned,
        ] {
            family.get_or_create(&finding).inc();
        }
        m.events.get_or_create(&kind).inc();
        m.render()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_owned)
            .collect()
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        render(&self.registry)
    }

    /// Renders the metrics from another task (the HTTP server's).
    pub fn renderer(&self) -> Arc<dyn Fn() -> String + Send + Sync> {
        let registry = Arc::clone(&self.registry);
        Arc::new(move || render(&registry))
    }
}

fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = encode(&mut out, registry);
    classic_text(&out)
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition, which
/// is what `prometheus-client` writes. Every scraper reads 0.0.4, and
/// node_exporter's textfile collector and `promtool check metrics` read
/// only it. The two differ, for what this crate writes, in that OpenMetrics
/// names a counter family without its `_total` suffix in `# HELP`/`# TYPE`,
/// and ends with `# EOF`.
pub fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let is_counter = lines
                .peek()
                .is_some_and(|next| *next == format!("# TYPE {name} counter"));
            let name = if is_counter {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            out.push_str(&format!("# HELP {name} {help}\n"));
            if is_counter {
                lines.next();
                out.push_str(&format!("# TYPE {name} counter\n"));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn raise(family: &Family<KindLabels, Counter>, kind: &str, to: u64) {
    let counter = family.get_or_create(&KindLabels { kind: kind.into() });
    let now = counter.get();
    if to > now {
        counter.inc_by(to - now);
    }
}

/// `report --metrics-file`: the metrics of a recording, fed by its replay
/// as `live` fed them while recording.
#[derive(Default)]
pub struct MetricsVisitor {
    pub metrics: Metrics,
    names: CgroupNames,
    pub totals: Totals,
}

impl MetricsVisitor {
    /// Adds the finished replay's findings and losses.
    pub fn finish(
        &mut self,
        report: &Report,
        lost_by_kind: &std::collections::BTreeMap<String, u64>,
    ) {
        self.metrics.totals(&self.totals, 0);
        for (kind, &n) in lost_by_kind {
            self.metrics.lost(kind, n);
        }
        self.metrics.report(report);
    }
}

impl Visitor for MetricsVisitor {
    fn event(&mut self, event: &Event, _: &Analyzer) -> std::io::Result<()> {
        self.totals.count(event.data.kind_name());
        Ok(())
    }

    fn exit(&mut self, event: &Event, _: &Analyzer) -> std::io::Result<()> {
        let cgroup = self.names.cgroup(event.cgroup_id);
        self.metrics.exit(event.cgroup_id, || cgroup);
        Ok(())
    }

    fn verdict(&mut self, verdict: &Verdict, _: &Analyzer) -> std::io::Result<()> {
        let cgroup = self.names.cgroup(verdict.cgroup_id);
        self.metrics.verdict(verdict, || cgroup);
        Ok(())
    }

    fn cgroup(&mut self, id: u64, path: &str) -> std::io::Result<()> {
        self.names.insert(id, path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{analysis::tests_support::finding, trace::comm::Comm};

    const POD: &str = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5d4c3b2a_1f0e_4d9c_8b7a_6f5e4d3c2b1a.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope";

    fn lines<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(metric) && !l.starts_with('#'))
            .collect()
    }

    #[test]
    fn findings_count_per_container_and_parent_and_gone_cgroups_expire() {
        let mut m = Metrics::new();
        let cgroup = Cgroup::new(42, POD);
        let mut f = finding();
        f.cgroup = Some(cgroup.clone());
        f.parent_comm = Comm::from_str_lossy("nginx\"x");
        m.exit(cgroup.id, || Some(cgroup.clone()));
        m.finding(&f);
        m.finding(&f);
        m.set_pids(42, 17, Some(100));
        m.set_zombies(&[(Some(cgroup.clone()), 3)]);
        let text = m.render();
        let labels = "cgroup=\"".to_owned()
            + POD
            + "\",runtime=\"containerd\",container=\"0123456789ab\",pod=\"5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a\"";
        assert_eq!(
            lines(&text, "reaper_trace_unreaped_total"),
            [format!(
                "reaper_trace_unreaped_total{{{labels},parent_comm=\"nginx\\\"x\"}} 2"
            )]
        );
        assert_eq!(
            lines(&text, "reaper_trace_exits_total"),
            [format!("reaper_trace_exits_total{{{labels}}} 1")]
        );
        assert_eq!(
            lines(&text, "reaper_trace_zombies"),
            [format!("reaper_trace_zombies{{{labels}}} 3")]
        );
        assert_eq!(
            lines(&text, "reaper_trace_pids_max"),
            [format!("reaper_trace_pids_max{{{labels}}} 100")]
        );
        assert!(
            text.contains("# HELP reaper_trace_exits_total Processes that exited.\n# TYPE reaper_trace_exits_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE reaper_trace_zombies gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE reaper_trace_exits_total counter\n"),
            "{text}"
        );
        // No limit any more: the series goes, the count stays.
        m.set_pids(42, 18, None);
        let text = m.render();
        assert!(lines(&text, "reaper_trace_pids_max").is_empty(), "{text}");
        assert_eq!(lines(&text, "reaper_trace_pids_current").len(), 1);
        assert_eq!(m.cgroups().collect::<Vec<_>>(), [(42, POD)]);
        m.expire(42);
        let text = m.render();
        assert!(!text.contains("cgroup=\""), "{text}");
        assert!(m.cgroups().next().is_none());
        assert!(text.contains("reaper_trace_build_info{version="), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn a_report_counts_its_zombies_and_totals_only_go_up() {
        let mut m = Metrics::new();
        let report = Report {
            findings: vec![finding()],
            ..Default::default()
        };
        m.report(&report);
        let text = m.render();
        let none = "cgroup=\"\",runtime=\"\",container=\"\",pod=\"\"";
        assert_eq!(
            lines(&text, "reaper_trace_zombies"),
            [format!("reaper_trace_zombies{{{none}}} 1")]
        );
        let mut totals = Totals::default();
        totals.count("exit");
        totals.lost_by_kind.insert("fork", 5);
        m.totals(&totals, 3);
        m.lost("fork", 4);
        let text = m.render();
        assert!(
            text.contains("reaper_trace_events_lost_total{kind=\"fork\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("reaper_trace_events_total{kind=\"exit\"} 1"),
            "{text}"
        );
        assert!(text.contains("reaper_trace_tracked_processes 3"), "{text}");
    }

    #[test]
    fn cgroups_sharing_a_path_share_series_until_the_last_one_goes() {
        let unit = "/system.slice/nginx.service";
        let (old, new) = (Cgroup::new(7, unit), Cgroup::new(9, unit));
        let mut m = Metrics::new();
        m.exit(old.id, || Some(old.clone()));
        m.exit(new.id, || Some(new.clone()));
        m.set_zombies(&[(Some(old.clone()), 1), (Some(new.clone()), 2)]);
        let text = m.render();
        assert!(text.contains(&format!("reaper_trace_exits_total{{cgroup=\"{unit}\",runtime=\"\",container=\"\",pod=\"\"}} 2")), "{text}");
        assert!(
            text.contains(&format!(
                "reaper_trace_zombies{{cgroup=\"{unit}\",runtime=\"\",container=\"\",pod=\"\"}} 3"
            )),
            "{text}"
        );
        m.expire(7);
        assert!(
            m.render()
                .contains("reaper_trace_exits_total{cgroup=\"/system.slice/nginx.service\"")
        );
        m.expire(9);
        assert!(!m.render().contains("nginx.service"));
    }

    #[test]
    fn the_metrics_document_lists_every_family() {
        let doc = include_str!("../../../docs/metrics.md");
        let names = Metrics::exported_names();
        assert!(names.len() >= 14, "{names:?}");
        for name in names {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                doc.contains(&format!("`{family}")),
                "docs/metrics.md lacks {family}"
            );
        }
    }
}
