//! Pid namespaces: turning the pids a process sees into global ones.
//!
//! The tracepoints name tasks by global pid, but what a wait returns (and
//! the pid it asks for) is in the waiter's pid namespace, and SIGCHLD's
//! `si_pid` is in the parent's: under `unshare -fp` or in a container, the
//! init's waits return 2, 3, 4... This stage learns each process's pid at
//! every namespace level (from the fork probe's `ns_pids` records, and from
//! /proc's `NSpid` for processes older than the trace) and rewrites those
//! fields to global pids, keeping the namespace's number beside them. Live
//! tracing and replay run every event through it before the analysis, so
//! everything after it sees global pids only.

use std::collections::HashMap;

use reaper_trace_common::SIGCHLD;

use crate::trace::{
    event::{Event, EventData, NsPid, WaitSyscall},
    host_facts::SeedProcess,
    starts::Starts,
};

/// `waitid`'s `P_PID`: the only `which` whose `upid` is a pid.
const P_PID: i32 = 1;

/// Whether a wait's `upid` names a process (wait4's always may; waitid's
/// only with `P_PID`).
fn asks_for_a_pid(syscall: WaitSyscall, which: i32) -> bool {
    syscall == WaitSyscall::Wait4 || which == P_PID
}

#[derive(Default)]
pub struct PidNamespaces {
    /// Processes outside the initial namespace: their pid per level,
    /// outermost (global) first, innermost last.
    levels: HashMap<u32, Vec<NsPid>>,
    /// (namespace inode, pid in it) → global pid.
    global: HashMap<(u32, u32), u32>,
    /// So that a late free of a pid that was reused forgets the old
    /// process only.
    starts: Starts,
}

impl PidNamespaces {
    /// Processes that exist when tracing starts.
    pub fn seed(&mut self, processes: &[SeedProcess]) {
        for p in processes.iter().filter(|p| p.ns_pids.len() > 1) {
            self.learn(p.pid, p.ns_pids.clone());
        }
    }

    fn learn(&mut self, global: u32, levels: Vec<NsPid>) {
        for level in &levels {
            self.global.insert((level.ns, level.pid), global);
        }
        self.levels.insert(global, levels);
    }

    fn forget(&mut self, global: u32) {
        if let Some(levels) = self.levels.remove(&global) {
            for level in levels {
                // A newer process may have the number in that namespace now.
                if self.global.get(&(level.ns, level.pid)) == Some(&global) {
                    self.global.remove(&(level.ns, level.pid));
                }
            }
        }
    }

    /// The innermost namespace's pid of `global`, when it is not in the
    /// initial namespace: `(pid, namespace inode)`.
    pub fn innermost(&self, global: u32) -> Option<NsPid> {
        self.levels.get(&global).and_then(|l| l.last().copied())
    }

    /// The global pid for `local` as `observer` (a global tgid) numbers it,
    /// when the two differ.
    fn to_global(&self, observer: u32, local: i32) -> Option<u32> {
        let ns = self.innermost(observer)?.ns;
        let local = u32::try_from(local).ok().filter(|&p| p > 0)?;
        let global = *self.global.get(&(ns, local))?;
        (global != local).then_some(global)
    }

    /// Rewrites `pid`, as `observer` numbers it, to the global pid, keeping
    /// the namespace's number in `ns_pid`. Returns whether it did.
    fn translate(&self, observer: u32, pid: &mut i32, ns_pid: &mut Option<i32>) -> bool {
        let Some(global) = self.to_global(observer, *pid) else {
            return false;
        };
        *ns_pid = Some(*pid);
        *pid = global as i32;
        true
    }

    /// Learns from `event` and rewrites its namespace-relative pids.
    pub fn apply(&mut self, event: &mut Event) {
        let observer = event.tgid;
        match &mut event.data {
            EventData::NsPids(n) if n.levels.len() > 1 => {
                self.learn(n.child_tgid, n.levels.clone())
            }
            // A new process with this pid: whatever we knew of the old one is
            // stale (its free may still come, late).
            EventData::Fork(f) if !f.is_thread => {
                self.forget(f.child_tgid);
                self.starts.forked(f.child_tgid, f.child_start_ns);
            }
            // Only the free of the pid's current process, not a late one.
            EventData::Free(f)
                if event.tid == event.tgid && self.starts.freed(event.tgid, f.process_start_ns) =>
            {
                self.forget(event.tgid)
            }
            EventData::WaitEnter(w) if asks_for_a_pid(w.syscall, w.which) => {
                self.translate(observer, &mut w.upid, &mut w.upid_ns);
            }
            EventData::WaitExit(w) => {
                if asks_for_a_pid(w.syscall, w.which) {
                    self.translate(observer, &mut w.upid, &mut w.upid_ns);
                }
                if self.translate(observer, &mut w.reaped_pid, &mut w.reaped_ns_pid)
                    && w.syscall == WaitSyscall::Wait4
                    && w.ret > 0
                {
                    w.ret = w.reaped_pid as i64;
                }
            }
            EventData::SignalGenerate(s) if s.sig == SIGCHLD => {
                self.translate(s.target_tgid, &mut s.si_pid, &mut s.si_ns_pid);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{event::NsPids, test_events as b};

    const ROOT: u32 = 4026531836;
    const CONTAINER: u32 = 4026532900;

    fn ns_pids(parent: u32, child: u32, local: u32) -> Event {
        b::at(
            1,
            parent,
            parent,
            EventData::NsPids(NsPids {
                child_tgid: child,
                levels: vec![
                    NsPid {
                        pid: child,
                        ns: ROOT,
                    },
                    NsPid {
                        pid: local,
                        ns: CONTAINER,
                    },
                ],
            }),
        )
    }

    #[test]
    fn an_init_in_a_namespace_reaps_by_its_own_numbers() {
        let mut ns = PidNamespaces::default();
        // unshare (100) forks tini: global 101, pid 1 inside; tini forks the
        // app: global 102, pid 2 inside.
        for mut e in [ns_pids(100, 101, 1), ns_pids(101, 102, 2)] {
            ns.apply(&mut e);
        }
        let mut wait = b::wait_exit(5, 101, -1, 0, 2);
        ns.apply(&mut wait);
        let EventData::WaitExit(w) = &wait.data else {
            unreachable!()
        };
        assert_eq!((w.reaped_pid, w.reaped_ns_pid, w.ret), (102, Some(2), 102));
        assert_eq!((w.upid, w.upid_ns), (-1, None));
        let mut sigchld = b::sigchld(
            4,
            102,
            101,
            crate::trace::event::SignalResult::Ignored,
            crate::trace::event::Disposition::Default,
            false,
        );
        if let EventData::SignalGenerate(s) = &mut sigchld.data {
            s.si_pid = 2;
        }
        ns.apply(&mut sigchld);
        let EventData::SignalGenerate(s) = &sigchld.data else {
            unreachable!()
        };
        assert_eq!((s.si_pid, s.si_ns_pid), (102, Some(2)));
        assert_eq!(
            ns.innermost(102),
            Some(NsPid {
                pid: 2,
                ns: CONTAINER
            })
        );
    }

    #[test]
    fn the_initial_namespace_is_left_alone_and_freed_pids_are_forgotten() {
        let mut ns = PidNamespaces::default();
        ns.apply(&mut ns_pids(100, 101, 1));
        // A waiter in the initial namespace: its numbers are global already.
        let mut wait = b::wait_exit(5, 100, 101, 0, 101);
        ns.apply(&mut wait);
        assert_eq!(wait, b::wait_exit(5, 100, 101, 0, 101));
        ns.apply(&mut b::free(9, 101, 101));
        assert_eq!(ns.innermost(101), None);
        let mut late = b::wait_exit(10, 101, -1, 0, 1);
        ns.apply(&mut late);
        assert_eq!(late, b::wait_exit(10, 101, -1, 0, 1));
    }

    #[test]
    fn a_late_free_of_a_reused_pid_keeps_the_new_process() {
        let mut ns = PidNamespaces::default();
        let mut first = b::fork(1, 100, 101, false);
        if let EventData::Fork(f) = &mut first.data {
            f.child_start_ns = 1;
        }
        ns.apply(&mut first);
        ns.apply(&mut ns_pids(100, 101, 1));
        // The pid comes back before the first process's free.
        let mut second = b::fork(5, 100, 101, false);
        if let EventData::Fork(f) = &mut second.data {
            f.child_start_ns = 5;
        }
        ns.apply(&mut second);
        assert_eq!(ns.innermost(101), None, "the old numbers are forgotten");
        ns.apply(&mut ns_pids(100, 101, 7));
        ns.apply(&mut b::free_of(20, 101, 1));
        assert_eq!(
            ns.innermost(101),
            Some(NsPid {
                pid: 7,
                ns: CONTAINER
            })
        );
        ns.apply(&mut b::free_of(30, 101, 5));
        assert_eq!(ns.innermost(101), None);
    }
}
