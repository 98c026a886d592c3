//! `--pid` / `--comm` applied to recorded events, the way the kernel
//! applies them live: a followed process's new children are followed too.

use std::collections::{HashMap, HashSet};

use crate::trace::{
    event::{Event, EventData},
    host_facts::SeedProcess,
};

/// What `--pid` and `--comm` select among the processes that exist when
/// tracing starts: the named pids, the processes with that comm, and every
/// descendant of those. Live tracing puts them in the kernel's follow map;
/// replay starts its [`Follow`] with them.
pub fn initial_pids(processes: &[SeedProcess], pids: &[u32], comm: Option<&str>) -> Vec<u32> {
    let mut roots = pids.to_vec();
    if let Some(comm) = comm {
        roots.extend(
            processes
                .iter()
                .filter(|p| p.comm.as_bytes() == comm.as_bytes())
                .map(|p| p.pid),
        );
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in processes {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seen: HashSet<u32> = HashSet::new();
    let mut out = Vec::new();
    while let Some(pid) = roots.pop() {
        if seen.insert(pid) {
            out.push(pid);
            roots.extend(children.get(&pid).into_iter().flatten());
        }
    }
    out
}

pub struct Follow {
    pids: HashSet<u32>,
    comm: Option<String>,
}

impl Follow {
    /// `roots` are followed from the start (with their known descendants).
    pub fn new(roots: impl IntoIterator<Item = u32>, comm: Option<String>) -> Follow {
        Follow {
            pids: roots.into_iter().collect(),
            comm,
        }
    }

    /// Whether process `tgid` is followed now.
    pub fn is_followed(&self, tgid: u32) -> bool {
        self.pids.contains(&tgid)
    }

    /// Whether `event` concerns a followed process; updates the set.
    pub fn admit(&mut self, event: &Event) -> bool {
        match &event.data {
            EventData::Fork(f) if self.pids.contains(&event.tgid) => {
                self.pids.insert(f.child_tgid);
                true
            }
            EventData::Exec(x) => {
                if self
                    .comm
                    .as_deref()
                    .is_some_and(|c| x.comm.as_bytes() == c.as_bytes())
                {
                    self.pids.insert(event.tgid);
                }
                self.pids.contains(&event.tgid)
            }
            // As the kernel does: renamed into the wanted name, followed.
            EventData::TaskRename(r) => {
                if event.tid == event.tgid
                    && self
                        .comm
                        .as_deref()
                        .is_some_and(|c| r.new_comm.as_bytes() == c.as_bytes())
                {
                    self.pids.insert(event.tgid);
                }
                self.pids.contains(&event.tgid)
            }
            EventData::SignalGenerate(s) => {
                self.pids.contains(&event.tgid) || self.pids.contains(&s.target_tgid)
            }
            EventData::WaitExit(w) => {
                self.pids.contains(&event.tgid)
                    || (w.reaped_pid > 0 && self.pids.contains(&(w.reaped_pid as u32)))
            }
            _ => self.pids.contains(&event.tgid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::comm::Comm;

    fn p(pid: u32, ppid: u32, comm: &str) -> SeedProcess {
        SeedProcess {
            pid,
            ppid,
            comm: Comm::from_str_lossy(comm),
            zombie: false,
            started_ns: None,
            ns_pids: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn a_process_renamed_into_the_comm_is_followed_as_live_does() {
        use crate::trace::test_events as b;
        let mut follow = Follow::new([], Some("nginx".into()));
        assert!(!follow.admit(&b::rename(1, 30, 31, "exe", "nginx")));
        assert!(
            !follow.is_followed(30),
            "a thread's name is not the process's"
        );
        assert!(follow.admit(&b::rename(2, 30, 30, "exe", "nginx")));
        assert!(follow.is_followed(30));
    }

    #[test]
    fn selects_roots_and_their_descendants() {
        let procs = [
            p(1, 0, "init"),
            p(10, 1, "sh"),
            p(11, 10, "make"),
            p(12, 11, "cc"),
            p(20, 1, "nginx"),
            p(21, 20, "nginx"),
            p(30, 1, "other"),
        ];
        let mut by_pid = initial_pids(&procs, &[10], None);
        by_pid.sort();
        assert_eq!(by_pid, vec![10, 11, 12]);
        let mut by_comm = initial_pids(&procs, &[], Some("nginx"));
        by_comm.sort();
        assert_eq!(by_comm, vec![20, 21]);
    }
}
