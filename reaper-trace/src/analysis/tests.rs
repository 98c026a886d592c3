//! Made-up event sequences through the analyzer.

use super::*;
use crate::trace::{
    comm::Comm,
    event::*,
    host_facts::{ParentProbe, SeedProcess},
    test_events as b,
};
use reaper_trace_common::SIGCHLD;

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;

/// Builds events at given times.
struct Seq(Vec<Event>, Disposition);

impl Seq {
    fn new() -> Seq {
        Seq(Vec::new(), Disposition::Default)
    }
    fn push(&mut self, t: u64, tgid: u32, tid: u32, data: EventData) -> &mut Self {
        self.0
            .push(crate::trace::test_events::at(t, tgid, tid, data));
        self
    }
    fn add(&mut self, event: Event) -> &mut Self {
        self.0.push(event);
        self
    }
    fn fork(&mut self, t: u64, parent: u32, child: u32) -> &mut Self {
        self.add(b::fork(t, parent, child, false))
    }
    fn thread(&mut self, t: u64, pid: u32, tid: u32) -> &mut Self {
        self.add(b::fork(t, pid, tid, true))
    }
    fn exit(
        &mut self,
        t: u64,
        pid: u32,
        tid: u32,
        parent: u32,
        group_dead: bool,
        start: u64,
    ) -> &mut Self {
        let disposition = self.1;
        self.add(b::exit(t, pid, tid, parent, group_dead, start, disposition))
    }
    fn sigchld(
        &mut self,
        t: u64,
        child: u32,
        parent: u32,
        result: SignalResult,
        disposition: Disposition,
        blocked: bool,
    ) -> &mut Self {
        self.add(b::sigchld(t, child, parent, result, disposition, blocked))
    }
    fn wait(&mut self, t: u64, parent: u32, upid: i32, options: i32, reaped: i32) -> &mut Self {
        self.add(b::wait_enter(t, parent, upid, options));
        self.add(b::wait_exit(t, parent, upid, options, reaped))
    }
    fn free(&mut self, t: u64, pid: u32, tid: u32) -> &mut Self {
        self.add(b::free(t, pid, tid))
    }
    fn run(&self, threshold: u64, end: u64) -> Report {
        let mut a = Analyzer::new(threshold);
        for e in &self.0 {
            a.on_event(e);
        }
        a.finish(end)
    }
}

fn codes(f: &Finding) -> Vec<DiagCode> {
    f.diagnosis.iter().map(|d| d.code).collect()
}

#[test]
fn prompt_wait_is_no_finding() {
    let r = Seq::new()
        .fork(0, 10, 11)
        .exit(MS, 11, 11, 10, true, 0)
        .sigchld(
            MS,
            11,
            10,
            SignalResult::Ignored,
            Disposition::Default,
            false,
        )
        .wait(2 * MS, 10, 11, 0, 11)
        .free(20 * MS, 11, 11)
        .run(S, 5 * S);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(
        (
            r.summary.exits,
            r.summary.reaped_by_parent,
            r.summary.unreaped
        ),
        (1, 1, 0)
    );
}

#[test]
fn never_waited_then_parent_exits_is_unreaped_adopted() {
    let mut s = Seq::new();
    s.fork(0, 10, 11).exit(MS, 11, 11, 10, true, 0).sigchld(
        MS,
        11,
        10,
        SignalResult::Ignored,
        Disposition::Default,
        false,
    );
    // The parent exits; its zombie goes to subreaper 5, which reaps it.
    s.exit(2 * MS, 10, 10, 1, true, 1)
        .sigchld(
            2 * MS,
            11,
            5,
            SignalResult::Ignored,
            Disposition::Default,
            false,
        )
        .wait(3 * MS, 5, -1, 0, 11)
        .free(20 * MS, 11, 11);
    s.wait(4 * MS, 1, -1, 0, 10).free(21 * MS, 10, 10);
    let r = s.run(S, 5 * S);
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(
        (f.kind, f.resolution, f.reap_kind, f.reaped_by_pid),
        (
            FindingKind::Unreaped,
            Some(Resolution::Adopted),
            Some(ReapKind::Adopted),
            Some(5)
        )
    );
    let c = codes(f);
    assert!(
        c.contains(&DiagCode::SigchldDefault)
            && c.contains(&DiagCode::NeverWaited)
            && c.contains(&DiagCode::ParentExited),
        "{c:?}"
    );
    assert_eq!((r.summary.unreaped, r.summary.adopted), (1, 1));
    assert_eq!(r.parents[0].parent_pid, 10);
}

#[test]
fn autoreap_under_sig_ign_has_no_sigchld_and_no_finding() {
    let mut s = Seq::new();
    s.1 = Disposition::Ignore;
    // The parent exits before the RCU-delayed free arrives: still an autoreap.
    let r = s
        .fork(0, 10, 11)
        .exit(MS, 11, 11, 10, true, 0)
        .exit(2 * MS, 10, 10, 1, true, 0)
        .free(15 * MS, 11, 11)
        .wait(16 * MS, 1, -1, 0, 10)
        .run(S, 5 * S);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.summary.autoreaped, 1);
}

#[test]
fn late_reap_over_threshold() {
    let r = Seq::new()
        .fork(0, 10, 11)
        .exit(MS, 11, 11, 10, true, 0)
        .sigchld(
            MS,
            11,
            10,
            SignalResult::Delivered,
            Disposition::Default,
            true,
        )
        .wait(2500 * MS, 10, -1, WNOHANG_, 11)
        .free(2520 * MS, 11, 11)
        .run(S, 5 * S);
    assert_eq!(r.findings.len(), 1);
    let f = &r.findings[0];
    assert_eq!(
        (f.kind, f.resolution),
        (FindingKind::LateReap, Some(Resolution::Reaped))
    );
    assert_eq!(f.latency_ns, Some(2499 * MS));
    assert!(
        codes(f).contains(&DiagCode::SigchldSignalfd),
        "{:?}",
        f.diagnosis
    );
    assert_eq!(r.summary.late_reaps, 1);
}
const WNOHANG_: i32 = 1;

#[test]
fn coalesced_sigchld_is_named() {
    let mut s = Seq::new();
    for c in 11..14 {
        s.fork(0, 10, c);
    }
    s.exit(MS, 11, 11, 10, true, 0).sigchld(
        MS,
        11,
        10,
        SignalResult::Delivered,
        Disposition::Handler,
        true,
    );
    s.exit(MS, 12, 12, 10, true, 0).sigchld(
        MS,
        12,
        10,
        SignalResult::AlreadyPending,
        Disposition::Handler,
        true,
    );
    s.exit(MS, 13, 13, 10, true, 0).sigchld(
        MS,
        13,
        10,
        SignalResult::AlreadyPending,
        Disposition::Handler,
        true,
    );
    s.push(
        2 * MS,
        10,
        10,
        EventData::SignalDeliver(SignalDeliver {
            sig: SIGCHLD,
            code: 1,
            disposition: Disposition::Handler,
            sa_handler: 0x1234,
            sa_flags: 0,
        }),
    );
    s.wait(2 * MS, 10, -1, 0, 11).free(20 * MS, 11, 11);
    let r = s.run(S, 5 * S);
    assert_eq!(r.findings.len(), 2);
    for f in &r.findings {
        assert_eq!(f.resolution, Some(Resolution::Zombie));
        assert!(
            codes(f).contains(&DiagCode::SigchldCoalesced),
            "{:?}",
            f.diagnosis
        );
    }
}

#[test]
fn waiting_for_another_child_is_named() {
    let mut s = Seq::new();
    s.fork(0, 10, 11)
        .fork(0, 10, 12)
        .exit(MS, 11, 11, 10, true, 0);
    s.push(
        2 * MS,
        10,
        10,
        EventData::WaitEnter(WaitEnter {
            syscall: WaitSyscall::Wait4,
            which: 0,
            upid: 12,
            options: 0,
            upid_ns: None,
            pidfd: None,
        }),
    );
    let r = s.run(S, 5 * S);
    let f = &r.findings[0];
    assert_eq!(f.pid, 11);
    assert!(
        codes(f).contains(&DiagCode::WaitedForOther) && codes(f).contains(&DiagCode::BlockedInWait),
        "{:?}",
        f.diagnosis
    );
    assert!(f.diagnosis.iter().any(|d| d.text.contains("pid 12")));
}

#[test]
fn threads_and_early_leader_exit_are_not_findings() {
    let mut s = Seq::new();
    s.fork(0, 10, 11).thread(MS, 11, 12);
    s.exit(2 * MS, 11, 11, 10, false, 0); // the leader goes first
    s.exit(3 * MS, 11, 12, 10, true, 0)
        .free(4 * MS, 11, 12)
        .wait(5 * MS, 10, 11, 0, 11)
        .free(20 * MS, 11, 11);
    let r = s.run(S, 5 * S);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(
        (
            r.summary.leader_exits,
            r.summary.threads_reaped,
            r.summary.reaped_by_parent
        ),
        (1, 1, 1)
    );
}

#[test]
fn reused_pid_gives_two_lifecycles() {
    let mut s = Seq::new();
    s.fork(0, 10, 11)
        .exit(MS, 11, 11, 10, true, 0)
        .wait(2 * MS, 10, 11, 0, 11)
        .free(20 * MS, 11, 11);
    s.fork(30 * MS, 10, 11)
        .exit(31 * MS, 11, 11, 10, true, 30 * MS);
    let r = s.run(S, 5 * S);
    assert_eq!(r.findings.len(), 1);
    assert_eq!((r.findings[0].pid, r.findings[0].start_ns), (11, 30 * MS));
    assert_eq!(r.summary.reaped_by_parent, 1);
}

#[test]
fn double_fork_orphan_is_information_not_a_leak() {
    let mut s = Seq::new();
    // (b::fork gives every parent start time 1.)
    s.fork(0, 10, 11)
        .fork(MS, 11, 12)
        .exit(2 * MS, 11, 11, 10, true, 1)
        .wait(3 * MS, 10, 11, 0, 11)
        .free(20 * MS, 11, 11);
    // 12 now belongs to subreaper 5, which reaps it promptly.
    s.exit(30 * MS, 12, 12, 5, true, MS)
        .wait(31 * MS, 5, -1, 0, 12)
        .free(50 * MS, 12, 12);
    let r = s.run(S, 5 * S);
    // Not a leak: one orphan, adopted and reaped, as information.
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(f.kind, FindingKind::Orphaned);
    assert_eq!((f.pid, f.parent_pid, f.adopted_by_pid), (12, 11, Some(5)));
    assert_eq!(f.parent_end.as_ref().map(|e| e.exit_code), Some(Some(0)));
    assert_eq!(
        f.diagnosis[0].text,
        "parent 11 died (exited 0) while 12 was still running; adopted by 5, it exited 0.028s later"
    );
    assert_eq!(r.summary.adopted_while_running, 1);
    assert_eq!(r.summary.unreaped, 0);
}

#[test]
fn predating_zombie_is_reported_and_pending_fires_once() {
    let mut a = Analyzer::new(S);
    a.seed(
        &[
            SeedProcess {
                pid: 20,
                ppid: 10,
                comm: Comm::from_str_lossy("z"),
                zombie: true,
                started_ns: Some(S / 2),
                ns_pids: Vec::new(),
                cgroup_id: 4242,
                cgroup: Some(
                    "/docker/3f2a9c1e0b7d5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a"
                        .into(),
                ),
            },
            SeedProcess {
                pid: 10,
                ppid: 1,
                comm: Comm::from_str_lossy("p"),
                zombie: false,
                started_ns: None,
                ns_pids: Vec::new(),
                ..Default::default()
            },
        ],
        41 * S,
    );
    assert_eq!(a.due_probes(42 * S), vec![10]);
    a.attach_probe(10, ParentProbe::default());
    a.announce_overdue(42 * S);
    // Announced once: nothing is due any more.
    assert!(a.due_probes(43 * S).is_empty());
    a.announce_overdue(43 * S);
    let probes = 1;
    let pending: Vec<_> = a
        .drain_notices()
        .into_iter()
        .filter(|n| matches!(n, Notice::Pending(_)))
        .collect();
    assert_eq!((pending.len(), probes), (1, 1));
    // `serve`'s zombies gauge counts it in its cgroup.
    assert_eq!(a_cgroup_overdue(&a, 44 * S), vec![(4242, 1)]);
    let r = a.finish(44 * S);
    assert_eq!(r.findings.len(), 1);
    let f = &r.findings[0];
    assert!(f.predates_trace);
    assert_eq!(f.resolution, Some(Resolution::Zombie));
    // A lower bound, never unknown: a zombie at least since the trace began.
    assert_eq!(f.latency_ns, Some(3 * S));
    assert_eq!(r.parents[0].worst_latency_ns, 3 * S);
    // Named after the cgroup /proc gave it, container and all.
    let cgroup = f.cgroup.as_ref().expect("the seed's cgroup");
    assert_eq!(cgroup.id, 4242);
    assert_eq!(
        cgroup.path,
        "/docker/3f2a9c1e0b7d5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a"
    );
    assert_eq!(
        cgroup.container.brief().as_deref(),
        Some("docker 3f2a9c1e0b7d")
    );
    let predates = f
        .diagnosis
        .iter()
        .find(|d| d.code == DiagCode::PredatesTrace)
        .unwrap();
    assert_eq!(
        predates.text,
        "it was already a zombie when tracing started, 40.500s after the process started"
    );
}

/// What `overdue_by_cgroup` counts, sorted.
fn a_cgroup_overdue(a: &Analyzer, now_ns: u64) -> Vec<(u64, i64)> {
    let mut v: Vec<_> = a.overdue_by_cgroup(now_ns).into_iter().collect();
    v.sort();
    v
}

#[test]
fn lost_events_make_findings_uncertain() {
    let mut a = Analyzer::new(S);
    for e in &Seq::new().fork(0, 10, 11).exit(MS, 11, 11, 10, true, 0).0 {
        a.on_event(e);
    }
    a.losses_read(3, 2 * MS);
    let r = a.finish(5 * S);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert!(!r.uncertain[0].certain);
    assert!(codes(&r.uncertain[0]).contains(&DiagCode::EventsLost));
    assert_eq!(r.summary.lost_events, 3);
    // Listed, but counted apart.
    assert_eq!((r.summary.unreaped, r.summary.uncertain), (0, 1));
    assert!(r.parents.is_empty(), "{:#?}", r.parents);
}

#[test]
fn a_loss_taints_only_the_findings_whose_time_it_meets() {
    let mut a = Analyzer::new(S);
    // 11 is reaped 3 s late, entirely before the loss; 12's verdict comes
    // after it.
    let mut s = Seq::new();
    s.fork(0, 10, 11)
        .exit(MS, 11, 11, 10, true, 0)
        .wait(3 * S, 10, 11, 0, 11);
    for e in &s.0 {
        a.on_event(e);
    }
    a.losses_read(0, 3 * S + 10 * MS);
    let notices = a.drain_notices();
    assert!(
        matches!(&notices[..], [Notice::Finding(f)] if f.certain && f.pid == 11),
        "{notices:#?}"
    );
    a.losses_read(7, 8 * S);
    let mut s = Seq::new();
    s.fork(7 * S, 10, 12)
        .exit(7 * S + MS, 12, 12, 10, true, 7 * S)
        .wait(9 * S, 10, 12, 0, 12);
    for e in &s.0 {
        a.on_event(e);
    }
    let r = a.finish(10 * S);
    let certain: Vec<(u32, bool)> = r
        .findings
        .iter()
        .chain(&r.uncertain)
        .map(|f| (f.pid, f.certain))
        .collect();
    assert_eq!(certain, [(11, true), (12, false)]);
    assert_eq!((r.summary.late_reaps, r.summary.uncertain), (1, 1));
    assert_eq!(r.parents[0].late, 1);
}

#[test]
fn no_finding_is_shown_certain_before_the_losses_after_it_are_read() {
    let mut a = Analyzer::new(S);
    let mut s = Seq::new();
    s.fork(0, 10, 11)
        .exit(MS, 11, 11, 10, true, 0)
        .wait(2 * S, 10, 11, 0, 11);
    for e in &s.0 {
        a.on_event(e);
    }
    // The counters, read after the wait's record, say events were lost
    // since the last read: the wait's finding may rest on them.
    a.losses_read(0, 10 * MS);
    a.losses_read(1, 2 * S + MS);
    let notices = a.drain_notices();
    let Some(Notice::Finding(f)) = notices.first() else {
        panic!("{notices:#?}")
    };
    assert!(!f.certain);
    assert!(codes(f).contains(&DiagCode::EventsLost));
}

#[test]
fn a_lifecycle_whose_end_was_lost_is_closed_as_unknown_when_its_pid_returns() {
    let mut a = Analyzer::new(S);
    // 11 exits; its wait and free are lost; 100 s later a new process gets
    // pid 11.
    for e in [
        b::fork(5, 10, 11, false),
        b::exit(MS, 11, 11, 10, true, 5, Disposition::Default),
    ] {
        a.on_event(&e);
    }
    a.losses_read(40, 2 * MS);
    for e in [
        b::fork(100 * S, 10, 11, false),
        b::exit(
            100 * S + MS,
            11,
            11,
            10,
            true,
            100 * S,
            Disposition::Default,
        ),
        b::wait_exit(100 * S + 2 * MS, 10, -1, 0, 11),
        b::free_under(100 * S + 20 * MS, 11, 100 * S, 10),
    ] {
        a.on_event(&e);
    }
    let r = a.finish(101 * S);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!((r.summary.unknown_ends, r.summary.reaped_by_parent), (1, 1));
    assert_eq!(a_tracked_after(&r), 0);
}

fn a_tracked_after(r: &Report) -> u64 {
    r.summary.zombies_at_end
}

/// A parent that had begun to exit when its child did: the child exits
/// naming the dying parent, then is reparented to subreaper 5. `order`
/// arranges the records as the ring buffer may deliver them.
fn exiting_parent(order: &[usize], adopter_waits: bool) -> Report {
    let mut events = vec![
        b::exit(MS, 10, 10, 1, true, 1, Disposition::Default),
        b::exit(MS + 50_000, 11, 11, 10, true, 5, Disposition::Default),
        b::sigchld(
            MS + 60_000,
            11,
            5,
            SignalResult::Ignored,
            Disposition::Default,
            false,
        ),
    ];
    if adopter_waits {
        events.push(b::wait_exit(2 * MS, 5, -1, 0, 11));
        events.push(b::free_under(20 * MS, 11, 5, 5));
    } else {
        // An init that reaps lazily, with no wait system call.
        events.push(b::free_under(1_500 * MS, 11, 5, 5));
    }
    let mut a = Analyzer::new(S);
    a.on_event(&b::fork(5, 10, 11, false));
    for &i in order {
        a.on_event(&events[i]);
    }
    for e in &events[order.len()..] {
        a.on_event(e);
    }
    // The parent itself is reaped by its own parent.
    a.on_event(&b::wait_exit(3 * MS, 1, -1, 0, 10));
    a.finish(5 * S)
}

#[test]
fn a_child_of_an_exiting_parent_is_judged_by_its_adopter() {
    for order in [&[0, 1, 2][..], &[1, 0, 2][..]] {
        let r = exiting_parent(order, true);
        let failures: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.kind != FindingKind::Orphaned)
            .collect();
        assert!(failures.is_empty(), "order {order:?}: {failures:#?}");
        assert_eq!(
            (
                r.summary.reaped_by_parent,
                r.summary.adopted,
                r.summary.unreaped
            ),
            (2, 0, 0),
            "order {order:?}"
        );
        let orphan = &r.findings[0];
        assert_eq!(
            (
                orphan.kind,
                orphan.pid,
                orphan.parent_pid,
                orphan.adopted_by_pid
            ),
            (FindingKind::Orphaned, 11, 10, Some(5))
        );
    }
}

/// timeout -s KILL: timeout (10) kills sh (11) and then its own group;
/// sh's exit record names timeout, but by the time sh became a zombie the
/// kernel had announced it to `notified` (timeout, or init (1) when timeout
/// had already handed its children over). Init reaps it 1.5 s later, with
/// no wait system call seen.
fn timeout_kill(notified: u32) -> Report {
    let mut a = Analyzer::new(S);
    let mut events = vec![
        b::fork(5, 10, 11, false),
        b::kill(MS, 10, 11, libc::SIGKILL),
        b::killed(MS + 500, 11, 10, 5, libc::SIGKILL),
        b::killed(MS + 1_000, 10, 1, 1, libc::SIGKILL),
        b::sigchld(
            MS + 3_000,
            11,
            notified,
            SignalResult::Ignored,
            Disposition::Default,
            false,
        ),
    ];
    if notified == 10 {
        // timeout's exit_notify hands the zombie to init and announces it.
        events.push(b::sigchld(
            MS + 9_000,
            11,
            1,
            SignalResult::Delivered,
            Disposition::Handler,
            false,
        ));
    }
    events.push(b::free_under(1_500 * MS, 11, 5, 1));
    for e in &events {
        a.on_event(e);
    }
    a.finish(5 * S)
}

#[test]
fn whose_zombie_it_was_is_where_its_exit_was_announced() {
    // Announced to init: init's from the start, and late (as far as its
    // free says: uncertain).
    let r = timeout_kill(1);
    let late: Vec<_> = r
        .findings
        .iter()
        .chain(&r.uncertain)
        .filter(|f| f.pid == 11 && f.kind != FindingKind::Orphaned)
        .collect();
    assert_eq!(late.len(), 1, "{:#?}", r.findings);
    assert_eq!(
        (late[0].kind, late[0].parent_pid, late[0].reaped_by_pid),
        (FindingKind::LateReap, 1, Some(1)),
        "{:#?}",
        late[0]
    );
    assert!(codes(late[0]).contains(&DiagCode::ParentWasExiting));
    // Announced to the dying timeout: its zombie, left unreaped, adopted.
    let r = timeout_kill(10);
    let f = r
        .findings
        .iter()
        .chain(&r.uncertain)
        .find(|f| f.pid == 11)
        .expect("a finding");
    assert_eq!(
        (f.kind, f.resolution, f.parent_pid, f.reaped_by_pid),
        (
            FindingKind::Unreaped,
            Some(Resolution::Adopted),
            10,
            Some(1)
        )
    );
}

#[test]
fn a_clone_child_announced_only_by_its_reparenting_stays_its_parents_leak() {
    // Exit signal SIGUSR1: no SIGCHLD at its exit; the kernel sends one
    // only when it reparents the zombie, after the parent died.
    let mut exit = b::exit(MS, 11, 11, 10, true, 5, Disposition::Default);
    if let EventData::Exit(x) = &mut exit.data {
        x.exit_signal = libc::SIGUSR1;
    }
    let mut a = Analyzer::new(S);
    for e in [
        b::fork(5, 10, 11, false),
        exit,
        b::exit(500 * MS, 10, 10, 1, true, 1, Disposition::Default),
        b::sigchld(
            500 * MS + 10,
            11,
            5,
            SignalResult::Ignored,
            Disposition::Default,
            false,
        ),
        b::free_under(520 * MS, 11, 5, 5),
    ] {
        a.on_event(&e);
    }
    let r = a.finish(5 * S);
    let f = r.findings.iter().find(|f| f.pid == 11).expect("a finding");
    assert_eq!(
        (f.kind, f.resolution, f.parent_pid),
        (FindingKind::Unreaped, Some(Resolution::Adopted), 10)
    );
}

#[test]
fn a_zombie_seen_in_proc_past_the_threshold_makes_a_free_dated_reap_certain() {
    let run = |seen_at: Option<u64>| {
        let mut a = Analyzer::new(S);
        for e in [
            b::fork(5, 1, 11, false),
            b::exit(MS, 11, 11, 1, true, 5, Disposition::Default),
        ] {
            a.on_event(&e);
        }
        if let Some(t) = seen_at {
            let due: &[u32] = if t > S { &[11] } else { &[] };
            assert_eq!(a.due_zombie_checks(t), due);
            a.zombie_seen(11, t);
        }
        // Init reaps with no wait seen; the free dates it.
        a.on_event(&b::free_of(1_500 * MS, 11, 5));
        a.finish(5 * S)
    };
    let r = run(Some(1_050 * MS));
    let [f] = &r.findings[..] else {
        panic!("{r:#?}")
    };
    assert_eq!((f.kind, f.certain), (FindingKind::LateReap, true));
    assert!(!codes(f).contains(&DiagCode::ReapUnseen), "{:?}", codes(f));
    // Without the look, or with one before the threshold, it may have been
    // reaped in time.
    for seen in [None, Some(900 * MS)] {
        let r = run(seen);
        assert!(r.findings.is_empty(), "{r:#?}");
        assert_eq!(r.uncertain.len(), 1, "{r:#?}");
    }
}

#[test]
fn an_exit_gone_from_proc_without_its_free_is_no_zombie_at_the_end() {
    // Init reaps 11 with no wait seen, and its free has not come when the
    // trace ends: /proc shows it gone.
    let mut a = Analyzer::new(S);
    for e in [
        b::fork(5, 1, 11, false),
        b::exit(MS, 11, 11, 1, true, 5, Disposition::Default),
    ] {
        a.on_event(&e);
    }
    a.gone(11, 30 * S);
    let r = a.finish(30 * S);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.summary.zombies_at_end, 0);
    let [f] = &r.uncertain[..] else {
        panic!("{r:#?}")
    };
    assert_eq!(
        (f.kind, f.pid, f.certain),
        (FindingKind::LateReap, 11, false)
    );
    assert!(codes(f).contains(&DiagCode::ReapUnseen), "{:?}", codes(f));
}

#[test]
fn a_lazy_adopter_is_blamed_not_the_dead_parent() {
    let r = exiting_parent(&[0, 1, 2], false);
    // Its reap is dated only by its free, 1.5 s after the exit: late, but
    // not certainly (the free may trail the reap by seconds).
    let late: Vec<_> = r
        .uncertain
        .iter()
        .filter(|f| f.kind == FindingKind::LateReap)
        .collect();
    assert_eq!(late.len(), 1, "{:#?}", r);
    let f = late[0];
    assert_eq!(
        (f.pid, f.parent_pid, f.reaped_by_pid, f.reap_kind),
        (11, 5, Some(5), Some(ReapKind::Wait))
    );
    let c = codes(f);
    assert!(
        c.contains(&DiagCode::ParentWasExiting) && c.contains(&DiagCode::ReapUnseen),
        "{c:?}"
    );
    assert!(
        f.diagnosis
            .iter()
            .all(|d| !d.text.contains("parent 10 made") && d.code != DiagCode::ParentExited),
        "{:#?}",
        f.diagnosis
    );
    assert!(
        r.parents.iter().all(|p| p.parent_pid != 10),
        "{:#?}",
        r.parents
    );
}

#[test]
fn the_free_names_the_adopter_when_its_sigchld_was_not_seen() {
    let mut a = Analyzer::new(S);
    for e in [
        b::fork(5, 10, 11, false),
        b::exit(MS, 10, 10, 1, true, 1, Disposition::Default),
        b::exit(MS + 50_000, 11, 11, 10, true, 5, Disposition::Default),
        b::free_under(30 * MS, 11, 5, 7),
        b::wait_exit(40 * MS, 1, -1, 0, 10),
    ] {
        a.on_event(&e);
    }
    let r = a.finish(5 * S);
    assert!(
        r.findings.iter().all(|f| f.kind == FindingKind::Orphaned),
        "{:#?}",
        r.findings
    );
    // 11 by its adopter, 10 by its own parent.
    assert_eq!(r.summary.reaped_by_parent, 2);
}

#[test]
fn a_child_that_exited_first_is_still_its_dead_parents_leak() {
    // The child exits while its parent lives; the parent then dies without
    // waiting, and the free names the adopter: unreaped, adopted.
    let mut a = Analyzer::new(S);
    for e in [
        b::fork(5, 10, 11, false),
        b::exit(MS, 11, 11, 10, true, 5, Disposition::Default),
        b::exit(2 * MS, 10, 10, 1, true, 1, Disposition::Default),
        b::free_under(30 * MS, 11, 5, 7),
        b::wait_exit(40 * MS, 1, -1, 0, 10),
    ] {
        a.on_event(&e);
    }
    let r = a.finish(5 * S);
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(
        (f.kind, f.resolution, f.parent_pid, f.reaped_by_pid),
        (
            FindingKind::Unreaped,
            Some(Resolution::Adopted),
            10,
            Some(7)
        )
    );
}

#[test]
fn state_is_released_once_verdicts_are_in() {
    let mut a = Analyzer::new(S);
    let mut s = Seq::new();
    for i in 0..1000u32 {
        let c = 100 + i;
        let t = i as u64 * MS;
        s.fork(t, 10, c)
            .exit(t + 1, c, c, 10, true, t)
            .wait(t + 2, 10, c as i32, 0, c as i32)
            .free(t + 3, c, c);
    }
    for e in &s.0 {
        a.on_event(e);
    }
    assert_eq!(a.tracked(), 1, "only the parent stays");
}

#[test]
fn a_late_free_does_not_close_the_lifecycle_of_a_reused_pid() {
    let mut a = Analyzer::new(S);
    let events = [
        b::fork(5, 10, 11, false),
        b::exit(6, 11, 11, 10, true, 5, Disposition::Default),
        b::wait_exit(7, 10, -1, 0, 11),
        // The pid comes back before the first process's free (RCU delay).
        b::fork(8, 10, 11, false),
        b::exit(9, 11, 11, 10, true, 8, Disposition::Default),
        b::free_of(20, 11, 5),
    ];
    for e in &events {
        a.on_event(e);
    }
    let r = a.finish(5 * S);
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let f = &r.findings[0];
    assert_eq!((f.pid, f.start_ns), (11, 8));
    assert_eq!(f.resolution, Some(Resolution::Zombie));
    assert_eq!(r.summary.reaped_by_parent, 1);
}

#[test]
fn exec_scopes_the_disposition_history_and_repeats_collapse() {
    let mut a = Analyzer::new(S);
    let mut events = Vec::new();
    // A shell sets SIGCHLD fifteen times, then execs the real program.
    for i in 0..15 {
        events.push(b::sigaction(i, 10, 10, Disposition::Handler, 0x4000));
    }
    events.push(b::exec(20, 10, "python3", "/usr/bin/python3"));
    // The program sets its own handler seven times, then leaks a child.
    for i in 0..7 {
        events.push(b::sigaction(30 + i, 10, 12, Disposition::Handler, 0x5000));
    }
    events.push(b::fork(40, 10, 11, false));
    events.push(b::exit(MS, 11, 11, 10, true, 40, Disposition::Handler));
    for e in &events {
        a.on_event(e);
    }
    let r = a.finish(5 * S);
    let changes: Vec<&str> = r.findings[0]
        .diagnosis
        .iter()
        .filter(|d| d.code == DiagCode::SigchldDispositionChange)
        .map(|d| d.text.as_str())
        .collect();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert!(
        changes[0].starts_with(
            "thread 12 of 10 set SIGCHLD to a handler at 0x5000 with flags 0 ×7 between"
        ),
        "{}",
        changes[0]
    );
}

#[test]
fn a_pid_reused_before_the_free_settles_the_old_lifecycle() {
    // The parent ignores SIGCHLD: A is autoreaped at its exit. A's free is
    // late; B forks with A's pid first. A's lifecycle must still close.
    let mut a = Analyzer::new(S);
    for e in [
        b::fork(5, 10, 11, false),
        b::exit(6, 11, 11, 10, true, 5, Disposition::Ignore),
        b::fork(8, 10, 11, false),
        b::free_of(20, 11, 5),
    ] {
        a.on_event(&e);
    }
    let r = a.finish(S);
    assert_eq!((r.summary.exits, r.summary.autoreaped), (1, 1));
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

#[test]
fn a_repeated_group_exit_counts_once() {
    // Before 6.16 two threads of an exit_group may both look like the last.
    let mut a = Analyzer::new(S);
    for e in [
        b::fork(5, 10, 11, false),
        b::exit(6, 11, 11, 10, true, 5, Disposition::Default),
        b::exit(7, 11, 12, 10, true, 5, Disposition::Default),
        b::wait_exit(8, 10, -1, 0, 11),
    ] {
        a.on_event(&e);
    }
    let r = a.finish(S);
    assert_eq!((r.summary.exits, r.summary.reaped_by_parent), (1, 1));
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

#[test]
fn clone_parent_children_are_not_orphans_of_their_forker() {
    // 11 forks 12 with CLONE_PARENT: 12's parent is 10, and 11's death
    // orphans nothing.
    let mut a = Analyzer::new(S);
    let mut fork = b::fork(5, 11, 12, false);
    if let EventData::Fork(f) = &mut fork.data {
        f.real_parent_tgid = Some(10);
    }
    for e in [
        b::fork(1, 10, 11, false),
        fork,
        b::exit(6, 11, 11, 10, true, 1, Disposition::Default),
        b::wait_exit(7, 10, 11, 0, 11),
        b::exit(9, 12, 12, 10, true, 5, Disposition::Default),
        b::wait_exit(10, 10, 12, 0, 12),
    ] {
        a.on_event(&e);
    }
    let r = a.finish(S);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.summary.adopted_while_running, 0);
}

/// Sets the cgroup of the last event added.
fn in_cgroup(s: &mut Seq, id: u64) {
    s.0.last_mut().expect("an event").cgroup_id = id;
}

#[test]
fn a_finding_names_the_cgroup_its_process_exited_in() {
    const DOCKER: &str = "/system.slice/docker-3f2a9c1e0b7d8a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f.scope";
    let mut s = Seq::new();
    s.fork(0, 10, 11);
    in_cgroup(&mut s, 7);
    // It moved to cgroup 8 before exiting: the zombie is charged there.
    s.exit(MS, 11, 11, 10, true, 0);
    in_cgroup(&mut s, 8);
    s.fork(0, 10, 12);
    in_cgroup(&mut s, 7);
    s.exit(MS, 12, 12, 10, true, 0);
    let mut a = Analyzer::new(S).with_verdicts();
    a.name_cgroup(8, DOCKER);
    for e in &s.0 {
        a.on_event(e);
    }
    assert_eq!(
        a.overdue_by_cgroup(2 * S),
        [(8, 1), (7, 1)].into_iter().collect()
    );
    let r = a.finish(2 * S);
    let by_pid = |pid| r.findings.iter().find(|f| f.pid == pid).expect("finding");
    let named = by_pid(11).cgroup.clone().expect("a cgroup");
    assert_eq!((named.id, named.path.as_str()), (8, DOCKER));
    assert_eq!(
        named.container.brief().as_deref(),
        Some("docker 3f2a9c1e0b7d")
    );
    // Cgroup 7 was never named (gone before it could be read): its id only.
    let unnamed = by_pid(12).cgroup.clone().expect("a cgroup");
    assert_eq!((unnamed.id, unnamed.path.as_str()), (7, ""));
    assert_eq!(unnamed.brief(), "cgroup 7");
}

#[test]
fn a_verdict_carries_the_cgroup_and_a_daemon_forgets_its_history() {
    let mut s = Seq::new();
    s.fork(0, 10, 11).exit(MS, 11, 11, 10, true, 0);
    in_cgroup(&mut s, 9);
    s.wait(3 * S, 10, -1, 0, 11);
    let mut a = Analyzer::new(S).with_verdicts();
    a.name_cgroup(9, "/system.slice/nginx.service");
    for e in &s.0 {
        a.on_event(e);
    }
    let verdicts = a.drain_verdicts();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].cgroup_id, 9);
    let notices = a.drain_notices();
    assert!(
        notices.iter().any(|n| matches!(n, Notice::Finding(f)
            if f.kind == FindingKind::LateReap && f.cgroup.as_ref().is_some_and(|c| c.id == 9))),
        "{notices:#?}"
    );
    a.forget_history(&[9]);
    assert!(a.cgroup_name(9).is_none());
    let r = a.finish(4 * S);
    assert!(r.findings.is_empty() && r.parents.is_empty(), "{r:#?}");
}

#[test]
fn a_reused_pid_keeps_its_own_cgroup() {
    // Pid 11 exits in cgroup 7 and its reap is never seen; the pid is reused
    // by a process (another start time) that exits in cgroup 8.
    let mut s = Seq::new();
    s.fork(0, 10, 11);
    s.exit(MS, 11, 11, 10, true, 0);
    in_cgroup(&mut s, 7);
    s.exit(2 * MS, 11, 11, 10, true, 5 * MS);
    in_cgroup(&mut s, 8);
    let mut a = Analyzer::new(S);
    for e in &s.0 {
        a.on_event(e);
    }
    assert_eq!(a.overdue_by_cgroup(3 * S), [(8, 1)].into_iter().collect());
}

/// A made-up stack of one frame at `offset` in `/app`.
fn stack_at(offset: u64) -> crate::trace::stack::Stack {
    crate::trace::stack::Stack {
        frames: vec![crate::trace::stack::Frame {
            module: std::sync::Arc::new(crate::trace::stack::Module {
                path: "/app".into(),
                build_id: None,
                stamp: None,
            }),
            file_offset: offset,
        }],
        truncated: false,
    }
}

#[test]
fn stacks_go_to_the_forks_and_sigactions_that_say_they_have_one() {
    use reaper_trace_common::stack_owner::{FORK, SIGACTION};
    let mut a = Analyzer::new(S);
    // A failed fork's stack is dropped with its failure.
    a.attach_stack(10, FORK, stack_at(1));
    a.on_event(&b::at(
        1,
        10,
        10,
        EventData::ForkFailed(ForkFailed {
            syscall_nr: 56,
            errno: libc::EAGAIN,
        }),
    ));
    // A stack whose fork record was lost stays pending, and the next fork,
    // which says it has no stack, does not take it.
    a.attach_stack(10, FORK, stack_at(2));
    a.on_event(&b::fork(2, 10, 11, false));
    // The next fork with its own stack gets that one.
    a.attach_stack(10, FORK, stack_at(3));
    a.on_event(&b::stacked(b::fork(3, 10, 12, false)));
    // The parent sets SIG_IGN from thread 13, with a stack, after a handler
    // set without one: the finding shows the change in force.
    a.on_event(&b::sigaction(4, 10, 10, Disposition::Handler, 0x4000));
    a.attach_stack(13, SIGACTION, stack_at(4));
    a.on_event(&b::stacked(b::sigaction(5, 10, 13, Disposition::Ignore, 1)));
    // (Their start times are their fork times.)
    for (child, start) in [(11, 2), (12, 3)] {
        a.on_event(&b::exit(
            6,
            child,
            child,
            10,
            true,
            start,
            Disposition::Default,
        ));
    }
    let r = a.finish(10 * S);
    let by_pid = |pid| r.findings.iter().find(|f| f.pid == pid).expect("a finding");
    assert_eq!(by_pid(11).fork_frames, None);
    assert_eq!(by_pid(12).fork_frames, Some(stack_at(3)));
    assert_eq!(by_pid(12).sigaction_frames, Some(stack_at(4)));
}

#[test]
fn the_sigaction_stack_is_the_one_of_the_change_in_force() {
    use reaper_trace_common::stack_owner::SIGACTION;
    let mut a = Analyzer::new(S);
    a.on_event(&b::fork(1, 10, 11, false));
    a.attach_stack(10, SIGACTION, stack_at(1));
    a.on_event(&b::stacked(b::sigaction(
        2,
        10,
        10,
        Disposition::Handler,
        0x4000,
    )));
    // A later change whose stack was lost: no stack, rather than the
    // handler's line for a SIG_IGN.
    a.on_event(&b::sigaction(3, 10, 10, Disposition::Ignore, 1));
    a.on_event(&b::exit(4, 11, 11, 10, true, 1, Disposition::Ignore));
    let r = a.finish(10 * S);
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    assert_eq!(r.findings[0].sigaction_frames, None);
}

/// Issue 18, items 3 and 4: names kept current, and explanations that say
/// what an expert would.
mod explain {
    use super::*;
    use crate::trace::host_facts::PidfdProbe;

    fn diag(f: &Finding, code: DiagCode) -> &str {
        f.diagnosis
            .iter()
            .find(|d| d.code == code)
            .map(|d| d.text.as_str())
            .unwrap_or_else(|| panic!("no {code} in {:#?}", f.diagnosis))
    }

    #[test]
    fn a_parent_that_renames_itself_is_shown_under_its_new_name() {
        let mut s = Seq::new();
        s.add(b::exec(0, 10, "exe", "/bin/busybox"))
            // A thread's name is not the process's; nor is a record of
            // another process that had this pid (another start time).
            .add(b::rename(MS / 2, 10, 12, "exe", "worker-thread"))
            .add({
                let mut late = b::rename(MS / 2, 10, 10, "exe", "stale");
                if let EventData::TaskRename(r) = &mut late.data {
                    r.process_start_ns = 99;
                }
                late
            })
            .fork(MS / 2, 10, 11)
            .add(b::rename(MS, 10, 10, "exe", "sleep"))
            .exit(2 * MS, 11, 11, 10, true, MS / 2);
        let r = s.run(S, 5 * S);
        assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
        assert_eq!(r.findings[0].parent_comm, Comm::from_str_lossy("sleep"));
        assert_eq!(r.parents[0].parent_comm, Comm::from_str_lossy("sleep"));
    }

    #[test]
    fn the_thread_that_changed_sigchld_is_named() {
        let mut s = Seq::new();
        s.fork(MS, 10, 11)
            .add(b::sigaction(MS, 10, 10, Disposition::Handler, 0x4000))
            .add(b::by_thread(
                b::sigaction(2 * MS, 10, 812, Disposition::Default, 0),
                "webu",
            ))
            .exit(3 * MS, 11, 11, 10, true, MS);
        let r = s.run(S, 5 * S);
        let f = &r.findings[0];
        let changes: Vec<&str> = f
            .diagnosis
            .iter()
            .filter(|d| d.code == DiagCode::SigchldDispositionChange)
            .map(|d| d.text.as_str())
            .collect();
        assert_eq!(
            changes,
            [
                "thread 10 of 10 set SIGCHLD to a handler at 0x4000 with flags 0 0.002s before the exit",
                "thread 812 (webu) of 10 set SIGCHLD to SIG_DFL with flags 0 0.001s before the exit",
            ]
        );
        // The helper's change is the cause, not the main thread's earlier one.
        assert_eq!(
            f.hint.as_deref(),
            Some(
                "SIGCHLD was changed by another thread of 10 — a library changed it behind the main loop: thread 812 (webu) of 10 set SIGCHLD to SIG_DFL with flags 0 0.001s before the exit"
            )
        );
    }

    #[test]
    fn a_clone_child_with_another_exit_signal_is_explained() {
        let mut s = Seq::new();
        s.fork(MS, 10, 11);
        let mut exit = b::exit(2 * MS, 11, 11, 10, true, MS, Disposition::Default);
        if let EventData::Exit(x) = &mut exit.data {
            x.exit_signal = libc::SIGUSR1;
        }
        s.add(exit);
        // A plain waitpid(11, 0) cannot see it: ECHILD.
        s.add(b::wait_enter(3 * MS, 10, 11, 0));
        let mut failed = b::wait_exit(3 * MS, 10, 11, 0, 0);
        if let EventData::WaitExit(w) = &mut failed.data {
            w.ret = -(libc::ECHILD as i64);
        }
        s.add(failed);
        let r = s.run(S, 5 * S);
        let f = &r.findings[0];
        assert_eq!(f.kind, FindingKind::Unreaped);
        assert_eq!(
            diag(f, DiagCode::ExitSignalNotSigchld),
            "11 was created by clone with exit signal SIGUSR1 instead of SIGCHLD: parent 10 was sent SIGUSR1 at the exit, and wait(), waitpid() and waitid() without __WALL or __WCLONE do not see such a child (ECHILD); 1 wait call by parent 10 after the exit had neither, so could not see it"
        );
        assert!(
            !codes(f).contains(&DiagCode::SigchldNotSeen),
            "{:?}",
            codes(f)
        );
        assert_eq!(
            f.hint.as_deref(),
            Some(
                "this child was cloned with exit signal SIGUSR1, which plain wait() never sees: reap it with waitpid(pid, &status, __WALL) (or __WCLONE), or clone it with SIGCHLD as its exit signal"
            )
        );
    }

    #[test]
    fn a_clone_child_with_another_exit_signal_is_not_autoreaped_by_sig_ign() {
        let mut s = Seq::new();
        s.fork(MS, 10, 11);
        let mut exit = b::exit(2 * MS, 11, 11, 10, true, MS, Disposition::Ignore);
        if let EventData::Exit(x) = &mut exit.data {
            x.exit_signal = libc::SIGUSR1;
        }
        s.add(exit);
        // The parent exits; the zombie's free comes with no wait seen.
        s.exit(400 * MS, 10, 10, 1, true, 1).free(420 * MS, 11, 11);
        let r = s.run(S, 5 * S);
        assert_eq!(r.summary.autoreaped, 0, "{:#?}", r.findings);
        let f = r.findings.iter().find(|f| f.pid == 11).expect("a finding");
        assert_eq!(
            (f.kind, f.resolution, f.reap_kind),
            (
                FindingKind::Unreaped,
                Some(Resolution::Adopted),
                Some(ReapKind::Adopted)
            )
        );
        assert_eq!(
            diag(f, DiagCode::SigchldIgnored),
            "parent 10 ignores SIGCHLD (SIG_IGN), but the kernel reaps at exit only children whose exit signal is SIGCHLD: not 11"
        );
    }

    #[test]
    fn a_held_pidfd_never_waited_on_is_said() {
        let mut a = Analyzer::new(S);
        a.on_event(&b::fork(MS, 10, 11, false));
        a.on_event(&b::exit(2 * MS, 11, 11, 10, true, MS, Disposition::Default));
        assert_eq!(a.due_probes(2 * S), vec![10]);
        a.attach_probe(
            10,
            ParentProbe {
                pidfds: vec![PidfdProbe { fd: 3, pid: 11 }, PidfdProbe { fd: 4, pid: 99 }],
                ..Default::default()
            },
        );
        let r = a.finish(5 * S);
        let f = &r.findings[0];
        assert_eq!(
            diag(f, DiagCode::PidfdNotWaited),
            "parent 10 holds pidfd 3 for 11 and has not waited on it since the exit: a pidfd reports the exit (it polls readable) but does not reap; waitid(P_PIDFD, 3, ..., WEXITED) does"
        );
        assert_eq!(
            f.hint.as_deref(),
            Some(
                "the parent holds a pidfd for this child but never waits on it: when the pidfd polls readable, call waitid(P_PIDFD, fd, &info, WEXITED) (closing the pidfd does not reap)"
            )
        );
    }

    #[test]
    fn a_late_pidfd_wait_names_the_descriptor_and_the_pid() {
        let mut a = Analyzer::new(S);
        a.on_event(&b::fork(MS, 10, 11, false));
        a.on_event(&b::exit(2 * MS, 11, 11, 10, true, MS, Disposition::Default));
        a.attach_probe(
            10,
            ParentProbe {
                pidfds: vec![PidfdProbe { fd: 3, pid: 11 }],
                ..Default::default()
            },
        );
        a.on_event(&b::pidfd_wait_exit(2 * S + 2 * MS, 10, 3, 11));
        let r = a.finish(5 * S);
        let f = &r.findings[0];
        assert_eq!(
            (f.kind, f.reap_kind, f.reaped_by_pid),
            (FindingKind::LateReap, Some(ReapKind::Wait), Some(10))
        );
        assert_eq!(
            diag(f, DiagCode::FirstWaitAfter),
            "parent 10's first wait call after the exit came 2.000s later (pidfd 3 (pid 11), options WEXITED)"
        );
        assert_eq!(
            diag(f, DiagCode::PidfdHeld),
            "parent 10 held pidfd 3 for 11 and waited on it only 2.000s after the exit"
        );
        // Waiting on another child's pidfd is waiting for another child.
        let mut s = Seq::new();
        s.fork(MS, 10, 11)
            .fork(MS, 10, 12)
            .exit(2 * MS, 11, 11, 10, true, MS)
            .exit(2 * MS, 12, 12, 10, true, MS)
            .add(b::pidfd_wait_exit(3 * MS, 10, 4, 12));
        let r = s.run(S, 5 * S);
        assert_eq!(
            diag(&r.findings[0], DiagCode::WaitedForOther),
            "parent 10 waited for pid 12 instead of 11"
        );
        // Blocked on another child's pidfd, resolved by the kernel's
        // process_wait: named by fd and pid.
        let mut s = Seq::new();
        s.fork(MS, 10, 11)
            .fork(MS, 10, 12)
            .exit(2 * MS, 11, 11, 10, true, MS);
        for e in b::pidfd_wait_enter(3 * MS, 10, 4, 12) {
            s.add(e);
        }
        let r = s.run(S, 5 * S);
        let f = &r.findings[0];
        assert_eq!(
            diag(f, DiagCode::BlockedInWait),
            "thread 10 of 10 is blocked in a wait for pidfd 4 (pid 12) (options WEXITED) since 0.001s after the exit"
        );
        assert_eq!(
            diag(f, DiagCode::WaitedForOther),
            "parent 10 waited for pid 12 instead of 11"
        );
    }

    #[test]
    fn a_parent_that_execed_after_forking_names_both_programs() {
        let mut s = Seq::new();
        s.add(b::exec(0, 10, "bash", "/bin/bash"))
            .fork(MS, 10, 11)
            .add(b::exec(3 * MS, 10, "server", "/usr/sbin/server"))
            .exit(4 * MS, 11, 11, 10, true, MS);
        let r = s.run(S, 5 * S);
        let f = &r.findings[0];
        assert_eq!(
            diag(f, DiagCode::ParentExeced),
            "parent 10 exec'd /usr/sbin/server (server) 0.002s after forking 11: the program that forked it, bash (/bin/bash), is gone, and the new image does not know about the children it inherited, so nothing in it waits for this one"
        );
        assert_eq!(
            f.hint.as_deref(),
            Some(
                "the parent exec'd another program after forking this child: reap children before exec, or have the new program reap what it inherits (waitpid(-1, WNOHANG) at start and on SIGCHLD)"
            )
        );
        // An exec before the fork says nothing of it.
        let mut s = Seq::new();
        s.add(b::exec(0, 10, "bash", "/bin/bash"))
            .fork(MS, 10, 11)
            .exit(4 * MS, 11, 11, 10, true, MS);
        let r = s.run(S, 5 * S);
        assert!(!codes(&r.findings[0]).contains(&DiagCode::ParentExeced));
    }

    fn ns_pids(t: u64, parent: u32, child: u32, ns_pid: u32) -> Event {
        b::at(
            t,
            parent,
            parent,
            EventData::NsPids(NsPids {
                child_tgid: child,
                levels: vec![
                    NsPid { pid: child, ns: 1 },
                    NsPid {
                        pid: ns_pid,
                        ns: 4026532000,
                    },
                ],
            }),
        )
    }

    #[test]
    fn orphans_name_parent_and_adopter_with_their_namespace_pids() {
        let mut s = Seq::new();
        // 5 is the namespace's init (ns pid 1), 11 its child, 12 the orphan.
        s.fork(0, 1, 5)
            .add(ns_pids(0, 1, 5, 1))
            .fork(0, 5, 11)
            .add(ns_pids(0, 5, 11, 2))
            .fork(MS, 11, 12)
            .add(ns_pids(MS, 11, 12, 3))
            .exit(2 * MS, 11, 11, 5, true, 0)
            .wait(3 * MS, 5, 11, 0, 11)
            .free(20 * MS, 11, 11);
        s.exit(30 * MS, 12, 12, 5, true, MS)
            .wait(31 * MS, 5, -1, 0, 12)
            .free(50 * MS, 12, 12);
        let r = s.run(S, 5 * S);
        let f = r
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::Orphaned)
            .expect("an orphan");
        assert_eq!(
            (
                f.ns_pid.map(|n| n.pid),
                f.parent_ns_pid.map(|n| n.pid),
                f.adopted_by_ns_pid.map(|n| n.pid)
            ),
            (Some(3), Some(2), Some(1))
        );
        assert_eq!(
            f.diagnosis[0].text,
            "parent 11 (ns pid 2) died (exited 0) while 12 (ns pid 3) was still running; adopted by 5 (ns pid 1), it exited 0.028s later"
        );
        let line = crate::output::report::finding_line(f);
        assert!(
            line.starts_with("orphaned 12 (ns pid 3) (c) exited 0; parent 11 (ns pid 2) (c): its parent died (exited 0) while it ran; adopted by 5 (ns pid 1)"),
            "{line}"
        );
    }

    #[test]
    fn zombies_older_than_the_trace_are_exits_in_the_summary_and_the_table() {
        let mut a = Analyzer::new(S);
        let zombie = |pid| SeedProcess {
            pid,
            ppid: 10,
            comm: Comm::from_str_lossy("z"),
            zombie: true,
            started_ns: None,
            ns_pids: Vec::new(),
            cgroup_id: 0,
            cgroup: None,
        };
        a.seed(&[zombie(20), zombie(21)], S);
        let r = a.finish(3 * S);
        assert_eq!(
            (
                r.summary.exits,
                r.summary.unreaped,
                r.summary.zombies_at_end
            ),
            (2, 2, 2)
        );
        assert_eq!((r.parents[0].exits, r.parents[0].unreaped), (2, 2));
    }

    #[test]
    fn zombies_past_the_listed_ones_are_counted_not_listed() {
        let max = super::verdicts::MAX_LISTED_ZOMBIES as u32;
        let mut a = Analyzer::new(S);
        let seeds: Vec<SeedProcess> = (0..max + 5)
            .map(|i| SeedProcess {
                pid: 100 + i,
                ppid: 10,
                comm: Comm::from_str_lossy("z"),
                zombie: true,
                ..Default::default()
            })
            .collect();
        a.seed(&seeds, S);
        let r = a.finish(3 * S);
        assert_eq!(r.findings.len() as u32, max);
        assert_eq!(r.summary.zombies_not_listed, 5);
        assert_eq!(r.summary.unreaped as u32, max + 5);
        assert_eq!(r.parents[0].unreaped as u32, max + 5);
        let text = crate::output::report::text(&r);
        assert!(
            text.contains("... and 5 more zombies left at the end"),
            "{}",
            &text[text.len() - 400..]
        );
    }
}

/// Traces without syscall hooks (`serve`'s default): no wait records, only
/// the kernel's `sched_process_wait` and the free.
mod without_syscall_hooks {
    use super::*;

    fn kernel_wait(t: u64, parent: u32, pid: i32) -> Event {
        b::at(
            t,
            parent,
            parent,
            EventData::ProcessWait(ProcessWait { pid }),
        )
    }

    /// Parent 10 forks 11 (started at 5), which exits at 1 ms; 10 waits for
    /// `waited_for` at `wait_at` and exits at 2 ms; the free of 11, naming
    /// `freed_under` as its real parent, comes at 15 ms.
    fn parent_exits_before_the_free(wait_at: u64, waited_for: i32, freed_under: u32) -> Report {
        let mut s = Seq::new();
        s.add(b::fork(0, 10, 11, false))
            .exit(MS, 11, 11, 10, true, 5)
            .sigchld(
                MS,
                11,
                10,
                SignalResult::Ignored,
                Disposition::Default,
                false,
            )
            .add(kernel_wait(wait_at, 10, waited_for))
            .exit(2 * MS, 10, 10, 1, true, 1)
            .add(b::free_under(15 * MS, 11, 5, freed_under))
            .add(b::free_under(16 * MS, 10, 1, 1));
        // The fork's start time is the child's (as the kernel gives it).
        if let EventData::Fork(f) = &mut s.0[0].data {
            f.child_start_ns = 5;
        }
        s.run(S, 5 * S)
    }

    /// The free trails the reap by an RCU grace period, and the parent may
    /// exit in between: still naming the parent, it says the parent
    /// released the child while alive. Without the wait records, taking the
    /// parent's death for a hand-over made every child of a shell that
    /// exits right after its last wait an unreaped finding.
    #[test]
    fn a_free_that_still_names_the_dead_parent_is_the_parents_reap() {
        let r = parent_exits_before_the_free(MS + 10, 11, 10);
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
        assert_eq!((r.summary.reaped_by_parent, r.summary.unreaped), (2, 0));
    }

    /// Naming another process (the adopter), the free says the parent died
    /// first: unreaped, adopted.
    #[test]
    fn a_free_naming_the_adopter_is_still_unreaped() {
        let r = parent_exits_before_the_free(MS + 10, 12, 5);
        assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
        let f = &r.findings[0];
        assert_eq!(f.resolution, Some(Resolution::Adopted));
        let c = codes(f);
        // The parent waited (for 12) after the exit: not "never waited",
        // and what it waited for is said, without options or result.
        assert!(!c.contains(&DiagCode::NeverWaited), "{c:?}");
        assert!(c.contains(&DiagCode::WaitsUntraced), "{c:?}");
        let text = &f.diagnosis[c
            .iter()
            .position(|c| *c == DiagCode::WaitsUntraced)
            .unwrap()];
        assert!(
            text.text
                .contains("made 1 wait call after the child exited, the first 0.000s after it (for pid or process group 12)"),
            "{}",
            text.text
        );
    }

    /// A wait that began before the exit may still be going on (its end is
    /// not traced): never "never waited", and the wait is told.
    #[test]
    fn a_wait_begun_before_the_exit_may_still_be_blocked() {
        let r = parent_exits_before_the_free(MS - 10, 12, 5);
        let f = &r.findings[0];
        let c = codes(f);
        assert!(!c.contains(&DiagCode::NeverWaited), "{c:?}");
        let text = &f.diagnosis[c
            .iter()
            .position(|c| *c == DiagCode::WaitsUntraced)
            .unwrap()];
        assert!(
            text.text.contains("last wait call (thread 10, for pid or process group 12) began 0.000s before the exit")
                && text.text.contains("it may have been blocked in it since"),
            "{}",
            text.text
        );
    }

    /// Parent 10 forks 11 (started at 5), which exits at 1 ms with a
    /// SIGCHLD to 10, with no wait records; what else happens is up to
    /// `rest`.
    fn hookless(rest: impl FnOnce(&mut Analyzer)) -> Report {
        let mut a = Analyzer::new(S).without_wait_records();
        for e in [
            b::fork(5, 10, 11, false),
            b::exit(MS, 11, 11, 10, true, 5, Disposition::Default),
            b::sigchld(
                MS,
                11,
                10,
                SignalResult::Ignored,
                Disposition::Default,
                false,
            ),
        ] {
            a.on_event(&e);
        }
        rest(&mut a);
        a.finish(10 * S)
    }

    /// The looks in /proc begin at half the threshold: a reap found done
    /// then was in time, however late its free comes.
    #[test]
    fn a_reap_found_done_before_the_threshold_is_in_time() {
        let r = hookless(|a| {
            assert!(a.due_zombie_checks(400 * MS).is_empty());
            assert_eq!(a.due_zombie_checks(600 * MS), [11]);
            a.gone(11, 600 * MS);
            a.on_event(&b::free_under(3 * S, 11, 5, 10));
        });
        assert!(r.findings.is_empty() && r.uncertain.is_empty(), "{r:#?}");
        assert_eq!(r.summary.reaped_by_parent, 1);
    }

    /// With wait records, the looks wait for the threshold, as before.
    #[test]
    fn with_wait_records_the_looks_begin_at_the_threshold() {
        let mut a = Analyzer::new(S);
        for e in [
            b::fork(5, 10, 11, false),
            b::exit(MS, 11, 11, 10, true, 5, Disposition::Default),
        ] {
            a.on_event(&e);
        }
        assert!(a.due_zombie_checks(600 * MS).is_empty());
        assert_eq!(a.due_zombie_checks(1_100 * MS), [11]);
    }

    /// Found gone after its parent died: the parent may have released it
    /// before dying, or the adopter after. The free, naming the real
    /// parent, decides when it names the parent, or an adopter the kernel's
    /// SIGCHLD announced the child to; a free naming a stranger may have
    /// read a dead parent's reused task, and is not believed.
    #[test]
    fn gone_after_the_parent_died_waits_for_the_free() {
        let parent_dies = |a: &mut Analyzer| {
            a.on_event(&b::exit(300 * MS, 10, 10, 1, true, 1, Disposition::Default));
            a.gone(11, 600 * MS);
            assert!(a.open_exits().iter().all(|&p| p != 11), "not a zombie now");
            assert!(a.due_zombie_checks(2 * S).iter().all(|&p| p != 11));
        };
        let eleven = |r: &Report| r.findings.iter().chain(&r.uncertain).any(|f| f.pid == 11);
        // The free names the dead parent: its reap, in time.
        let r = hookless(|a| {
            parent_dies(a);
            a.on_event(&b::free_under(4 * S, 11, 5, 10));
        });
        assert!(!eleven(&r), "{r:#?}");
        assert_eq!(r.summary.unknown_ends, 0);
        // The free names 7, which nothing announced the child to.
        let r = hookless(|a| {
            parent_dies(a);
            a.on_event(&b::free_under(4 * S, 11, 5, 7));
        });
        assert!(!eleven(&r), "{r:#?}");
        assert_eq!(r.summary.unknown_ends, 1);
        // No free before the end: released, by whom unknown.
        let r = hookless(parent_dies);
        assert!(!eleven(&r), "{r:#?}");
        assert_eq!(r.summary.unknown_ends, 1);
        // Reparented as a zombie, announced to 7 with a SIGCHLD: unreaped.
        let r = hookless(|a| {
            a.on_event(&b::exit(300 * MS, 10, 10, 1, true, 1, Disposition::Default));
            a.on_event(&b::sigchld(
                300 * MS,
                11,
                7,
                SignalResult::Ignored,
                Disposition::Default,
                false,
            ));
            a.gone(11, 600 * MS);
        });
        let f = r
            .findings
            .iter()
            .find(|f| f.pid == 11)
            .expect("a finding for 11");
        assert_eq!(
            (f.kind, f.resolution, f.reaped_by_pid),
            (FindingKind::Unreaped, Some(Resolution::Adopted), Some(7))
        );
    }

    /// With wait records, the kernel's report of the same waits changes
    /// nothing: the syscall items stay, and `waits_untraced` never shows.
    #[test]
    fn with_wait_records_the_kernels_waits_add_nothing() {
        let mut s = Seq::new();
        s.fork(0, 10, 11)
            .exit(MS, 11, 11, 10, true, 0)
            .add(b::wait_enter(2 * MS, 10, 12, 0))
            .add(kernel_wait(2 * MS, 10, 12))
            .add(b::wait_exit(3 * MS, 10, 12, 0, -libc::ECHILD));
        let r = s.run(S, 5 * S);
        let c = codes(&r.findings[0]);
        assert!(c.contains(&DiagCode::WaitedForOther), "{c:?}");
        assert!(!c.contains(&DiagCode::WaitsUntraced), "{c:?}");
    }
}
