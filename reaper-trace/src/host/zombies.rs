//! The zombies on this machine now, from /proc, for `reaper-trace zombies`:
//! each with its start time and a bound on when it exited, its cgroups,
//! and a probe of each parent (`procfs::probe_parent`, the one the live
//! trace records).
//!
//! When a zombie exited: /proc keeps no exit time, but the scheduler keeps
//! when each task last ran (`se.exec_start` in /proc/PID/sched), and a
//! zombie last ran as it died: its final switch-out comes just after it
//! became a zombie. That time is on the task clock of the CPU it last ran
//! on (stat's `processor`), which differs between CPUs and from
//! CLOCK_MONOTONIC: it is mapped by reading the same clock of a thread of
//! ours pinned to that CPU. The task clock leaves out interrupt and steal
//! time, and our own reading may be a tick old, so the exit time found is
//! never earlier than the real one: the age it gives is a lower bound.

use std::collections::{BTreeMap, BTreeSet};

use procfs::{
    FromRead as _,
    process::{Process, Stat},
};

use super::{procfs::probe_of, thread_stacks, unwind::Unwinder};
use crate::trace::{
    clock,
    comm::Comm,
    host_facts::{ParentNow, ZombieProcess, ZombieScan},
};

/// What stat says of a zombie before the rest is read.
struct Found {
    pid: u32,
    ppid: u32,
    comm: Comm,
    starttime: u64,
    cpu: Option<usize>,
}

/// Reads every zombie (of `parents` only, unless empty) and its parent. A
/// process whose main thread exited while other threads live (stat says
/// Z, `Threads:` more than one) is not a zombie: its parent gets no
/// SIGCHLD until the rest end.
pub fn scan(parents: &[u32]) -> ZombieScan {
    let mut found = find_zombies();
    if !parents.is_empty() {
        found.retain(|z| parents.contains(&z.ppid));
    }
    let cpus: BTreeSet<usize> = found.iter().filter_map(|z| z.cpu).collect();
    let offsets = task_clock_offsets(&cpus);
    let ticks = procfs::ticks_per_second().max(1);
    // Start times are on the boot clock; the monotonic one leaves out time
    // spent suspended.
    let suspended = clock::boottime_ns().saturating_sub(clock::monotonic_ns());
    let zombies: Vec<ZombieProcess> = found
        .iter()
        .map(|z| {
            let (cgroup, pids_cgroup) = cgroups_of(z.pid);
            ZombieProcess {
                pid: z.pid,
                ppid: z.ppid,
                comm: z.comm,
                started_ns: u64::try_from(
                    u128::from(z.starttime) * 1_000_000_000 / u128::from(ticks),
                )
                .ok()
                .and_then(|ns| ns.checked_sub(suspended)),
                exited_by_ns: z
                    .cpu
                    .and_then(|cpu| offsets.get(&cpu))
                    .zip(last_ran_ns(&z.pid.to_string()))
                    .and_then(|(&offset, ran)| {
                        u64::try_from(i64::try_from(ran).ok()?.checked_add(offset)?).ok()
                    }),
                cgroup,
                pids_cgroup,
            }
        })
        .collect();
    let now_ns = clock::monotonic_ns();
    let parent_pids: Vec<u32> = zombies
        .iter()
        .map(|z| z.ppid)
        .collect::<BTreeSet<u32>>()
        .into_iter()
        .collect();
    let parents = read_parents(&parent_pids);
    ZombieScan {
        now_ns,
        zombies,
        parents,
    }
}

/// Every process's stat, read directly (one open and read each: a
/// machine with many processes is the case this must be quick for).
fn find_zombies() -> Vec<Found> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = Stat::from_file(format!("/proc/{pid}/stat")).ok()?;
            (stat.state == 'Z' && stat.num_threads <= 1).then_some(())?;
            Some(Found {
                pid: u32::try_from(stat.pid).ok()?,
                ppid: u32::try_from(stat.ppid).ok()?,
                comm: Comm::from_str_lossy(&stat.comm),
                starttime: stat.starttime,
                cpu: stat.processor.and_then(|c| usize::try_from(c).ok()),
            })
        })
        .collect()
}

/// The parents, read on as many threads as there are CPUs (at most
/// `MAX_READERS`): each costs a dozen small /proc reads, and a machine
/// with a thousand leaking parents should still answer at once. The first
/// parents by pid get their threads unwound; each reader keeps one unwinder, whose cache of unwind tables the parents
/// that map the same files share.
fn read_parents(pids: &[u32]) -> Vec<ParentNow> {
    const MAX_READERS: usize = 8;
    let readers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_READERS);
    let read = |part: &[(usize, u32)]| {
        let mut unwinder = Unwinder::new();
        part.iter()
            .map(|&(i, pid)| {
                let unwind = i < thread_stacks::MAX_UNWOUND_PARENTS;
                parent_now(pid, unwind.then_some(&mut unwinder))
            })
            .collect::<Vec<_>>()
    };
    let pids: Vec<(usize, u32)> = pids.iter().copied().enumerate().collect();
    if readers == 1 || pids.len() < 2 * readers {
        return read(&pids);
    }
    let chunk = pids.len().div_ceil(readers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = pids
            .chunks(chunk)
            .map(|part| scope.spawn(move || read(part)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The parent's name, its pid in its own namespace, and its probe, with
/// its threads' user stacks when given an unwinder; the name alone (or
/// nothing) when it is gone or unreadable.
fn parent_now(pid: u32, unwinder: Option<&mut Unwinder>) -> ParentNow {
    let process = Process::new(pid as i32).ok();
    let comm = process
        .as_ref()
        .and_then(|p| p.stat().ok())
        .map(|s| Comm::from_str_lossy(&s.comm))
        .unwrap_or_default();
    let status = process.as_ref().and_then(|p| p.status().ok());
    let ns_pid = status
        .as_ref()
        .and_then(|s| s.nspid.as_ref())
        .filter(|levels| levels.len() > 1)
        .and_then(|levels| levels.last().copied())
        .and_then(|nr| u32::try_from(nr).ok());
    let mut probe = process.zip(status).map(|(p, s)| probe_of(&p, &s));
    if let (Some(probe), Some(unwinder)) = (probe.as_mut(), unwinder) {
        thread_stacks::unwind_threads(unwinder, pid, &mut probe.threads);
    }
    ParentNow {
        pid,
        comm,
        ns_pid,
        probe,
    }
}

/// The v2 path (`0::`) and the v1 pids path of /proc/PID/cgroup.
fn cgroups_of(pid: u32) -> (Option<String>, Option<String>) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    parse_cgroups(&text)
}

fn parse_cgroups(text: &str) -> (Option<String>, Option<String>) {
    let mut v2 = None;
    let mut pids = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            v2 = Some(path.to_owned());
        } else if controllers.split(',').any(|c| c == "pids") {
            pids = Some(path.to_owned());
        }
    }
    (v2, pids)
}

/// `se.exec_start` of /proc/`pid`/sched: when the task last ran, on its
/// CPU's task clock (ns).
fn last_ran_ns(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/sched")).ok()?;
    exec_start_ns(&text)
}

/// `se.exec_start  :  24335434.364016` (milliseconds with six decimals) in ns.
pub fn exec_start_ns(text: &str) -> Option<u64> {
    let value = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("se.exec_start"))?
        .trim_start()
        .strip_prefix(':')?
        .trim();
    let (ms, frac) = value.split_once('.').unwrap_or((value, "0"));
    let frac = format!("{frac:0<6}");
    let ns_in_ms: u64 = frac.get(..6)?.parse().ok()?;
    ms.parse::<u64>()
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(ns_in_ms)
}

/// For each CPU, CLOCK_MONOTONIC minus its task clock (ns), read by a thread
/// of ours moved there: where it just started to run, so its own
/// `se.exec_start` is fresh (a stale one only makes exits look later).
/// A CPU this process may not run on (a cpuset) gets none.
fn task_clock_offsets(cpus: &BTreeSet<usize>) -> BTreeMap<usize, i64> {
    if cpus.is_empty() {
        return BTreeMap::new();
    }
    let cpus: Vec<usize> = cpus.iter().copied().collect();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                cpus.into_iter()
                    .filter_map(|cpu| Some((cpu, offset_on(cpu)?)))
                    .collect()
            })
            .join()
            .unwrap_or_default()
    })
}

/// Runs the calling thread on `cpu` alone, then reads both clocks. Signed:
/// the task clock may run ahead of CLOCK_MONOTONIC as well as behind it.
fn offset_on(cpu: usize) -> Option<i64> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return None;
    }
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET stays in
    // bounds (checked above); sched_setaffinity reads the set we own.
    let pinned = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
    };
    if !pinned {
        return None;
    }
    let ran = i64::try_from(last_ran_ns("thread-self")?).ok()?;
    // Read after: an offset too large makes exits look later, never earlier.
    i64::try_from(clock::monotonic_ns()).ok()?.checked_sub(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exec_start_in_nanoseconds() {
        let sched = "sleep (3292, #threads: 1)\n---\nse.exec_start                                :      24335434.364016\nse.vruntime   :  5984.810957\n";
        assert_eq!(exec_start_ns(sched), Some(24_335_434_364_016));
        assert_eq!(exec_start_ns("se.exec_start : 12.5\n"), Some(12_500_000));
        assert_eq!(exec_start_ns("se.vruntime : 1.0\n"), None);
    }

    #[test]
    fn reads_the_v2_and_v1_pids_cgroups() {
        let hybrid = "9:name=systemd:/\n8:pids:/test/a\n4:memory:/x\n0::/test/a\n";
        assert_eq!(
            parse_cgroups(hybrid),
            (Some("/test/a".to_owned()), Some("/test/a".to_owned()))
        );
        assert_eq!(parse_cgroups("0::/system.slice/x.service\n").1, None);
        assert_eq!(
            parse_cgroups("3:cpu,pids:/kubepods/p1\n").1.as_deref(),
            Some("/kubepods/p1")
        );
    }

    #[test]
    fn a_zombie_of_ours_has_an_exit_time_after_its_start() {
        // SAFETY: the child only calls _exit.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) };
        }
        let forked = clock::monotonic_ns();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !super::super::procfs::is_zombie(child as u32) {
            assert!(std::time::Instant::now() < deadline, "no zombie");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let scan = scan(&[]);
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
        let z = scan
            .zombies
            .iter()
            .find(|z| z.pid == child as u32)
            .expect("our zombie");
        assert_eq!(z.ppid, std::process::id());
        let exited = z.exited_by_ns.expect("an exit bound");
        // Forked just before `forked` was read: the exit cannot be more
        // than a scheduler tick before it, and is before the scan ended.
        assert!(exited + 10_000_000 >= forked, "{exited} {forked}");
        assert!(exited <= scan.now_ns, "{exited} {}", scan.now_ns);
        assert!(scan.parents.iter().any(|p| p.pid == std::process::id()));
    }
}
