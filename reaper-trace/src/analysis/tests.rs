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

fn codes(f: &Finding) -> Vec<&'static str> {
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
        c.contains(&"sigchld_default")
            && c.contains(&"never_waited")
            && c.contains(&"parent_exited"),
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
    assert!(codes(f).contains(&"sigchld_signalfd"), "{:?}", f.diagnosis);
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
        assert!(codes(f).contains(&"sigchld_coalesced"), "{:?}", f.diagnosis);
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
        }),
    );
    let r = s.run(S, 5 * S);
    let f = &r.findings[0];
    assert_eq!(f.pid, 11);
    assert!(
        codes(f).contains(&"waited_for_other") && codes(f).contains(&"blocked_in_wait"),
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
        .find(|d| d.code == "predates_trace")
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
    a.set_lost(3);
    let r = a.finish(5 * S);
    assert!(!r.findings[0].certain);
    assert!(codes(&r.findings[0]).contains(&"events_lost"));
    assert_eq!(r.summary.lost_events, 3);
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
        .filter(|d| d.code == "sigchld_disposition_change")
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
