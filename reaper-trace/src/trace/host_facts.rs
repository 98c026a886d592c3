//! What /proc tells the tracer, as plain data: the processes that exist when
//! tracing starts (the seed) and what a parent's threads were doing when one
//! of its exits became overdue (a probe). `host::procfs` reads them live, a
//! recording stores them, and the analysis consumes them either way.

use serde::{Deserialize, Deserializer, Serialize};

use crate::trace::{comm::Comm, event::NsPid};

/// A process found in /proc when tracing started. Stored as is in the
/// recording's header (docs/recording.md: `seed`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedProcess {
    pub pid: u32,
    pub ppid: u32,
    #[serde(deserialize_with = "comm_from_text")]
    pub comm: Comm,
    /// Already a zombie (state Z) when tracing started.
    pub zombie: bool,
    /// When it started (CLOCK_MONOTONIC ns, to /proc's clock-tick
    /// precision); absent in recordings made before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ns: Option<u64>,
    /// Outside the initial pid namespace: its pid at each level, outermost
    /// (global) first, from /proc's `NSpid`; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ns_pids: Vec<NsPid>,
    /// Its cgroup v2 id (the directory's inode number, as the kernel's
    /// `bpf_get_current_cgroup_id` gives it); 0 when unknown (no v2
    /// hierarchy, or a recording made before it was kept).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cgroup_id: u64,
    /// That cgroup's path below the v2 root (`0::` of /proc/PID/cgroup), so
    /// that a zombie older than the trace is named after its container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn comm_from_text<'de, D: Deserializer<'de>>(d: D) -> Result<Comm, D::Error> {
    let text = String::deserialize(d)?;
    Ok(Comm::from_str_lossy(&text))
}

/// One thread of a parent, as /proc showed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadProbe {
    pub tid: u32,
    pub comm: String,
    pub state: char,
    pub wchan: String,
}

/// /proc facts about a parent, read when one of its exits passes the
/// threshold (live), or replayed from the recording.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentProbe {
    pub threads: Vec<ThreadProbe>,
    /// A signalfd whose mask holds SIGCHLD.
    pub signalfd_sigchld: bool,
    /// SIGCHLD in the process's blocked/ignored/caught sets.
    pub sigchld_blocked: bool,
    pub sigchld_ignored: bool,
    pub sigchld_caught: bool,
    /// The pidfds the process holds (`pidfd_open`, `CLONE_PIDFD`): a parent
    /// may hold one for a child it never waits on. Absent in recordings
    /// made before it was read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pidfds: Vec<PidfdProbe>,
}

/// One pidfd a process holds: its descriptor and the process it refers to
/// (`/proc/PID/fdinfo/FD`'s `Pid:`, in the tracer's pid namespace; -1 once
/// that process has been reaped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidfdProbe {
    pub fd: i32,
    pub pid: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_reads_the_recorded_json() {
        let seed: SeedProcess =
            serde_json::from_str(r#"{"pid":7,"ppid":1,"comm":"sleep","zombie":true}"#).unwrap();
        assert_eq!(seed.comm, Comm::from_str_lossy("sleep"));
        assert_eq!(seed.started_ns, None);
        assert_eq!((seed.cgroup_id, seed.cgroup.as_deref()), (0, None));
        let back = serde_json::to_string(&seed).unwrap();
        assert_eq!(back, r#"{"pid":7,"ppid":1,"comm":"sleep","zombie":true}"#);
    }

    #[test]
    fn probes_recorded_before_pidfds_were_read_still_parse() {
        let old = r#"{"threads":[],"signalfd_sigchld":false,"sigchld_blocked":false,"sigchld_ignored":false,"sigchld_caught":false}"#;
        let probe: ParentProbe = serde_json::from_str(old).unwrap();
        assert!(probe.pidfds.is_empty());
        assert_eq!(serde_json::to_string(&probe).unwrap(), old);
        let new = ParentProbe {
            pidfds: vec![PidfdProbe { fd: 3, pid: 77 }],
            ..probe
        };
        let back: ParentProbe =
            serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }

    #[test]
    fn a_seeds_cgroup_is_kept_in_the_recording() {
        let text = r#"{"pid":7,"ppid":1,"comm":"app","zombie":true,"cgroup_id":4242,"cgroup":"/docker/abc"}"#;
        let seed: SeedProcess = serde_json::from_str(text).unwrap();
        assert_eq!(seed.cgroup_id, 4242);
        assert_eq!(seed.cgroup.as_deref(), Some("/docker/abc"));
        assert_eq!(serde_json::to_string(&seed).unwrap(), text);
    }
}
