//! Reading processes from /proc: parsing is pure, `snapshot` does the I/O.

use std::collections::{HashMap, HashSet};

/// The fields of `/proc/<pid>/stat` reaper-trace uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    /// Field 22: start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// Parses one `/proc/<pid>/stat` line. The comm sits in parentheses and may
/// itself hold spaces and parentheses, so the last `)` ends it.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let comm = line.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field n is rest[n - 3].
    Some(ProcStat {
        pid,
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        start_ticks: rest.get(19)?.parse().ok()?,
    })
}

/// Every process now (threads excluded). Processes that vanish while being
/// read are skipped.
pub fn snapshot() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| parse_stat(&s))
        .collect()
}

/// `roots` and every process below them.
pub fn with_descendants(procs: &[ProcStat], roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seen: HashSet<u32> = HashSet::new();
    let mut stack: Vec<u32> = roots.to_vec();
    let mut out = Vec::new();
    while let Some(pid) = stack.pop() {
        if seen.insert(pid) {
            out.push(pid);
            stack.extend(children.get(&pid).into_iter().flatten());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hostile_comm() {
        let line = "42 (a) b (c) Z 7 42 42 0 -1 4194316 0 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!(
            (
                stat.pid,
                stat.comm.as_str(),
                stat.state,
                stat.ppid,
                stat.start_ticks
            ),
            (42, "a) b (c", 'Z', 7, 123456)
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn walks_descendants() {
        let p = |pid, ppid| ProcStat {
            pid,
            comm: String::new(),
            state: 'S',
            ppid,
            start_ticks: 0,
        };
        let procs = [p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(20, 1)];
        let mut d = with_descendants(&procs, &[10]);
        d.sort();
        assert_eq!(d, vec![10, 11, 12]);
    }
}

/// The hexadecimal value of a `Field:` line in /proc text: the signal and
/// capability masks of `status`, the `sigmask:` of a signalfd's `fdinfo`.
pub fn hex_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Whether signal `sig`'s bit is set in the mask of a `Field:` line.
pub fn mask_has(text: &str, field: &str, sig: u32) -> bool {
    hex_field(text, field).is_some_and(|mask| mask & (1u64 << (sig - 1)) != 0)
}

/// What /proc says of a parent now: its threads' states and wait channels,
/// its SIGCHLD masks, and whether it reads SIGCHLD through a signalfd.
pub fn probe_parent(pid: u32) -> Option<crate::analysis::ParentProbe> {
    const SIGCHLD: u32 = 17;
    let base = std::path::PathBuf::from(format!("/proc/{pid}"));
    let status = std::fs::read_to_string(base.join("status")).ok()?;
    let mut probe = crate::analysis::ParentProbe {
        sigchld_blocked: mask_has(&status, "SigBlk:", SIGCHLD),
        sigchld_ignored: mask_has(&status, "SigIgn:", SIGCHLD),
        sigchld_caught: mask_has(&status, "SigCgt:", SIGCHLD),
        ..Default::default()
    };
    if let Ok(tasks) = std::fs::read_dir(base.join("task")) {
        let mut threads: Vec<crate::analysis::ThreadProbe> = tasks
            .filter_map(Result::ok)
            .filter_map(|t| {
                let stat = parse_stat(&std::fs::read_to_string(t.path().join("stat")).ok()?)?;
                let wchan = std::fs::read_to_string(t.path().join("wchan")).unwrap_or_default();
                Some(crate::analysis::ThreadProbe {
                    tid: stat.pid,
                    comm: stat.comm,
                    state: stat.state,
                    wchan: if wchan == "0" { String::new() } else { wchan },
                })
            })
            .collect();
        threads.sort_by_key(|t| t.tid);
        probe.threads = threads;
    }
    if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
        probe.signalfd_sigchld = fds.filter_map(Result::ok).any(|fd| {
            let is_signalfd = std::fs::read_link(fd.path())
                .is_ok_and(|l| l.to_string_lossy().contains("signalfd"));
            is_signalfd
                && std::fs::read_to_string(base.join("fdinfo").join(fd.file_name()))
                    .is_ok_and(|info| mask_has(&info, "sigmask:", SIGCHLD))
        });
    }
    Some(probe)
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    #[test]
    fn reads_signal_masks() {
        let fdinfo =
            "pos:\t0\nflags:\t02004002\nmnt_id:\t15\nino:\t1057\nsigmask:\t0000000000010000\n";
        assert!(mask_has(fdinfo, "sigmask:", 17));
        assert!(!mask_has(fdinfo, "sigmask:", 15));
        let status = "SigBlk:\t0000000000010000\nSigIgn:\t0000000000000000\n";
        assert!(mask_has(status, "SigBlk:", 17));
        assert!(!mask_has(status, "SigIgn:", 17));
    }
}
