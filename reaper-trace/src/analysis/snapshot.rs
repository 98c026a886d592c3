//! `reaper-trace zombies`: the zombies a snapshot of /proc found, grouped
//! by cgroup (where the kernel charges them against `pids.max`) and by
//! parent, each parent with what explains its zombies now
//! (`diagnosis::now`) and a fix (`hints`). Pure: the caller reads /proc
//! and the cgroup filesystem.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    diagnosis::{Diag, now},
    findings::FindingKind,
    hints::{self, HintInput},
};
use crate::{
    cgroup::{Cgroup, fs::PidsNow},
    trace::{
        comm::Comm,
        host_facts::{ParentNow, ThreadNow, ThreadProbe, ZombieProcess, ZombieScan},
    },
};

/// A cgroup as the snapshot shows it: its name and its pids standing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupNow {
    pub cgroup: Cgroup,
    pub pids: Option<PidsNow>,
}

/// The whole snapshot (`--json` prints it as one object).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// CLOCK_MONOTONIC ns.
    pub taken_at_ns: u64,
    pub threshold_ns: u64,
    pub zombies: usize,
    /// Zombies whose age passes the threshold: what the exit status says.
    pub over_threshold: usize,
    pub parents: usize,
    /// By cgroup (the zombies' own; `cgroup` null where it is unknown),
    /// the most zombies first.
    pub groups: Vec<Group>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    pub cgroup: Option<CgroupNow>,
    pub parents: Vec<ParentGroup>,
}

/// One parent and its zombies in one cgroup.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParentGroup {
    pub pid: u32,
    pub comm: Comm,
    /// Its pid in its own pid namespace (1: a container's init).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
    /// False when it could not be read (it exited meanwhile, and its
    /// zombies went to an adopter).
    pub read: bool,
    /// Oldest first.
    pub zombies: Vec<ZombieNow>,
    pub sigchld: Option<SigchldNow>,
    pub threads: Vec<ThreadNow>,
    /// What explains its zombies now (`{code, text}` as in findings).
    pub explanation: Vec<Diag>,
    pub hint: Option<String>,
}

/// The parent's SIGCHLD state, for scripts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SigchldNow {
    /// `default`, `ignored` or `handler` (SigIgn, SigCgt).
    pub action: &'static str,
    /// Pending for the process (ShdPnd) or for one of its threads (SigPnd).
    pub pending: bool,
    /// Blocked (SigBlk) in every thread read.
    pub blocked_in_every_thread: bool,
    /// Signalfds whose mask holds SIGCHLD.
    pub signalfds: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZombieNow {
    pub pid: u32,
    pub comm: Comm,
    /// Time since its exit, at least (from when it last ran): `None` when
    /// the kernel does not say.
    pub exited_ago_ns: Option<u64>,
    /// Time since it started: more than its age as a zombie.
    pub started_ago_ns: Option<u64>,
    /// Its age passes the threshold: `exited_ago_ns` when known, else
    /// `started_ago_ns` (an upper bound: said so in the text).
    pub over_threshold: bool,
}

impl ZombieNow {
    /// The age judged against the threshold, and whether it is the exit's.
    pub fn age_ns(&self) -> (Option<u64>, bool) {
        match self.exited_ago_ns {
            Some(age) => (Some(age), true),
            None => (self.started_ago_ns, false),
        }
    }
}

/// The snapshot of `scan`, zombies older than `threshold_ns` counted
/// apart; `cgroups` names the cgroups by v2 path (those missing show by
/// path alone).
pub fn build(
    scan: &ZombieScan,
    threshold_ns: u64,
    cgroups: &BTreeMap<String, CgroupNow>,
) -> Snapshot {
    let parents: BTreeMap<u32, &ParentNow> = scan.parents.iter().map(|p| (p.pid, p)).collect();
    // (cgroup path, parent) → zombies.
    let mut by: BTreeMap<(Option<&str>, u32), Vec<ZombieNow>> = BTreeMap::new();
    for z in &scan.zombies {
        by.entry((z.cgroup.as_deref(), z.ppid))
            .or_default()
            .push(zombie_now(z, scan.now_ns, threshold_ns));
    }
    let mut explained: BTreeMap<u32, Explained> = BTreeMap::new();
    let mut groups: BTreeMap<Option<&str>, Vec<ParentGroup>> = BTreeMap::new();
    for ((path, ppid), mut zombies) in by {
        zombies.sort_by_key(|z| (std::cmp::Reverse(z.age_ns().0), z.pid));
        let parent = parents.get(&ppid).copied();
        let e = explained
            .entry(ppid)
            .or_insert_with(|| explain(ppid, parent, &zombies));
        groups.entry(path).or_default().push(ParentGroup {
            pid: ppid,
            comm: parent.map(|p| p.comm).unwrap_or_default(),
            ns_pid: parent.and_then(|p| p.ns_pid),
            read: e.read,
            zombies,
            sigchld: e.sigchld.clone(),
            threads: e.threads.clone(),
            explanation: e.explanation.clone(),
            hint: e.hint.clone(),
        });
    }
    let mut groups: Vec<Group> = groups
        .into_iter()
        .map(|(path, mut parents)| {
            parents.sort_by_key(|p| (std::cmp::Reverse(p.zombies.len()), p.pid));
            Group {
                cgroup: path.map(|path| {
                    cgroups.get(path).cloned().unwrap_or_else(|| CgroupNow {
                        cgroup: Cgroup::new(0, path),
                        pids: None,
                    })
                }),
                parents,
            }
        })
        .collect();
    let count = |g: &Group| g.parents.iter().map(|p| p.zombies.len()).sum::<usize>();
    groups.sort_by_key(|g| std::cmp::Reverse(count(g)));
    let all = || {
        groups
            .iter()
            .flat_map(|g| &g.parents)
            .flat_map(|p| &p.zombies)
    };
    Snapshot {
        kind: "zombies",
        taken_at_ns: scan.now_ns,
        threshold_ns,
        zombies: all().count(),
        over_threshold: all().filter(|z| z.over_threshold).count(),
        parents: explained.len(),
        groups,
    }
}

fn zombie_now(z: &ZombieProcess, now_ns: u64, threshold_ns: u64) -> ZombieNow {
    let exited_ago_ns = z.exited_by_ns.map(|t| now_ns.saturating_sub(t));
    let started_ago_ns = z.started_ns.map(|t| now_ns.saturating_sub(t));
    let mut zombie = ZombieNow {
        pid: z.pid,
        comm: z.comm,
        exited_ago_ns,
        started_ago_ns,
        over_threshold: false,
    };
    zombie.over_threshold = zombie.age_ns().0.is_some_and(|age| age > threshold_ns);
    zombie
}

/// What is said of one parent, once, whichever cgroups its zombies are in.
struct Explained {
    read: bool,
    sigchld: Option<SigchldNow>,
    threads: Vec<ThreadNow>,
    explanation: Vec<Diag>,
    hint: Option<String>,
}

fn explain(ppid: u32, parent: Option<&ParentNow>, zombies: &[ZombieNow]) -> Explained {
    let Some((parent, probe)) = parent.and_then(|p| Some((p, p.probe.as_ref()?))) else {
        return Explained {
            read: false,
            sigchld: None,
            threads: Vec::new(),
            explanation: Vec::new(),
            hint: None,
        };
    };
    let explanation = now::explain(ppid, probe);
    // A shell child is popen()'s only if every zombie here is one.
    let comm = zombies
        .first()
        .map(|z| z.comm)
        .filter(|c| zombies.iter().all(|z| z.comm == *c))
        .unwrap_or_default();
    let hint = hints::hint_for(&HintInput {
        kind: FindingKind::Unreaped,
        comm,
        parent_pid: ppid,
        parent_ns_init: parent.ns_pid == Some(1),
        parent_killed: false,
        diagnosis: &explanation,
        unwaited: true,
        forked_at: None,
    });
    let known: Vec<&ThreadProbe> = probe
        .threads
        .iter()
        .filter(|t| t.sigchld_blocked.is_some())
        .collect();
    let sigchld = SigchldNow {
        action: if probe.sigchld_ignored {
            "ignored"
        } else if probe.sigchld_caught {
            "handler"
        } else {
            "default"
        },
        pending: probe.sigchld_shared_pending == Some(true)
            || probe
                .threads
                .iter()
                .any(|t| t.sigchld_pending == Some(true)),
        blocked_in_every_thread: !known.is_empty()
            && known.iter().all(|t| t.sigchld_blocked == Some(true)),
        signalfds: probe.signalfds.clone(),
    };
    Explained {
        read: true,
        sigchld: Some(sigchld),
        threads: probe.threads.iter().map(ThreadNow::of).collect(),
        explanation,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        analysis::codes::DiagCode,
        cgroup::fs::PidsLimit,
        trace::host_facts::{ParentProbe, SyscallProbe},
    };

    const S: u64 = 1_000_000_000;

    fn zombie(pid: u32, ppid: u32, cgroup: &str, exited_ago: Option<u64>) -> ZombieProcess {
        ZombieProcess {
            pid,
            ppid,
            comm: Comm::from_str_lossy("sh"),
            started_ns: Some(10 * S),
            exited_by_ns: exited_ago.map(|ago| 100 * S - ago),
            cgroup: Some(cgroup.into()),
            pids_cgroup: None,
        }
    }

    fn blocked_parent(pid: u32) -> ParentNow {
        let mut main = ThreadProbe::basic(pid, "app", 'S', "do_sys_poll");
        main.sigchld_blocked = Some(true);
        main.sigchld_pending = Some(false);
        main.syscall = Some(SyscallProbe {
            nr: libc::SYS_ppoll,
            sp: 0,
            pc: 0,
        });
        ParentNow {
            pid,
            comm: Comm::from_str_lossy("app"),
            ns_pid: None,
            probe: Some(ParentProbe {
                threads: vec![main],
                sigchld_caught: true,
                sigchld_shared_pending: Some(true),
                thread_count: Some(1),
                ..Default::default()
            }),
        }
    }

    fn scan() -> ZombieScan {
        ZombieScan {
            now_ns: 100 * S,
            zombies: vec![
                zombie(21, 20, "/docker/abc", Some(5 * S)),
                zombie(22, 20, "/docker/abc", Some(S / 2)),
                zombie(31, 30, "/other", None),
            ],
            parents: vec![
                blocked_parent(20),
                ParentNow {
                    pid: 30,
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn groups_by_cgroup_and_parent_and_counts_the_old_ones() {
        let mut names = BTreeMap::new();
        names.insert(
            "/docker/abc".to_owned(),
            CgroupNow {
                cgroup: Cgroup::new(7, "/docker/abc"),
                pids: Some(PidsNow {
                    current: 3,
                    limit: Some(PidsLimit {
                        cgroup: "/docker/abc".into(),
                        current: 3,
                        max: 5,
                        headroom: 2,
                    }),
                }),
            },
        );
        let snap = build(&scan(), S, &names);
        assert_eq!((snap.zombies, snap.parents), (3, 2));
        // 21 (5 s since its exit) and 31 (no exit time: 90 s since its
        // start) pass 1 s; 22 does not.
        assert_eq!(snap.over_threshold, 2);
        assert_eq!(snap.groups.len(), 2);
        let docker = &snap.groups[0];
        assert_eq!(docker.cgroup.as_ref().unwrap().cgroup.id, 7);
        let app = &docker.parents[0];
        assert_eq!(app.pid, 20);
        let ages: Vec<(u32, Option<u64>, bool)> = app
            .zombies
            .iter()
            .map(|z| (z.pid, z.exited_ago_ns, z.over_threshold))
            .collect();
        assert_eq!(ages, [(21, Some(5 * S), true), (22, Some(S / 2), false)]);
        let codes: Vec<DiagCode> = app.explanation.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            [
                DiagCode::SigchldHandler,
                DiagCode::SigchldPendingBlocked,
                DiagCode::ParentThreadAt
            ]
        );
        assert!(
            app.hint
                .as_deref()
                .unwrap()
                .starts_with("SIGCHLD is blocked in every thread")
        );
        let sigchld = app.sigchld.as_ref().unwrap();
        assert_eq!(
            (
                sigchld.action,
                sigchld.pending,
                sigchld.blocked_in_every_thread
            ),
            ("handler", true, true)
        );
        assert_eq!(app.threads[0].syscall_name.as_deref(), Some("ppoll"));
        // A parent that could not be read is said so, with no explanation.
        let other = &snap.groups[1].parents[0];
        assert_eq!((other.pid, other.read), (30, false));
        assert!(other.explanation.is_empty() && other.hint.is_none());
        assert_eq!(other.zombies[0].started_ago_ns, Some(90 * S));
    }

    #[test]
    fn json_has_the_documented_shape() {
        let snap = build(&scan(), S, &BTreeMap::new());
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["type"], "zombies");
        assert_eq!(json["over_threshold"], 2);
        let parent = &json["groups"][0]["parents"][0];
        assert_eq!(parent["sigchld"]["action"], "handler");
        assert_eq!(parent["threads"][0]["tid"], 20);
        assert_eq!(parent["threads"][0]["sigchld_blocked"], true);
        assert_eq!(parent["threads"][0]["syscall_name"], "ppoll");
        assert_eq!(parent["explanation"][1]["code"], "sigchld_pending_blocked");
        assert_eq!(parent["zombies"][0]["exited_ago_ns"], 5 * S);
        assert_eq!(json["groups"][0]["cgroup"]["cgroup"]["path"], "/docker/abc");
    }
}
