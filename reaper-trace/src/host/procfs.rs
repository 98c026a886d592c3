//! Reading /proc, through the `procfs` crate (the one /proc parser of the
//! tool, its workloads, the test scenarios and xtask): the processes that
//! exist when tracing starts, and what a parent is doing when one of its
//! exits becomes overdue. Everything read comes out as `trace::host_facts`.

use procfs::process::{ProcState, Process, Status};

use std::collections::HashMap;

use crate::trace::{
    clock,
    event::NsPid,
    host_facts::{
        MAX_KERNEL_FRAMES, ParentProbe, PidfdProbe, SeedProcess, SyscallProbe, ThreadProbe,
    },
};

/// Threads of a parent kept in a probe.
const MAX_PROBED_THREADS: usize = 64;
/// Threads whose kernel stack a probe keeps: with `MAX_KERNEL_FRAMES`
/// names of at most `MAX_KERNEL_NAME` bytes each, a probe stays well
/// inside one record (64 KiB; `probe_fits_one_record`).
const MAX_STACKED_THREADS: usize = 16;
/// The longest kernel function name kept (the kernel allows 512).
const MAX_KERNEL_NAME: usize = 64;

const SIGCHLD_BIT: u64 = 1 << (reaper_trace_common::SIGCHLD - 1);

/// Gives each process its cgroup: the path /proc says (`path_of`, which a
/// zombie still has) and that directory's id (`id_of`, looked up once per
/// path). A process whose cgroup cannot be read keeps none.
pub fn attach_cgroups(
    processes: &mut [SeedProcess],
    mut path_of: impl FnMut(u32) -> Option<String>,
    mut id_of: impl FnMut(&str) -> Option<u64>,
) {
    let mut ids: HashMap<String, Option<u64>> = HashMap::new();
    for p in processes.iter_mut() {
        let Some(path) = path_of(p.pid) else {
            continue;
        };
        let id = *ids.entry(path.clone()).or_insert_with(|| id_of(&path));
        if let Some(id) = id.filter(|&id| id != 0) {
            p.cgroup_id = id;
            p.cgroup = Some(path);
        }
    }
}

/// Every process now (threads excluded), with its pids per namespace level
/// when it lives outside the initial pid namespace. Processes that vanish
/// while being read are skipped. Their cgroups are added by
/// `CgroupFs::name_seed`, which knows where the hierarchy is.
pub fn snapshot() -> Vec<SeedProcess> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let ticks = procfs::ticks_per_second().max(1);
    // /proc counts start times on the boot clock; the trace, on the
    // monotonic one. They differ by the time spent suspended.
    let suspended = clock::boottime_ns().saturating_sub(clock::monotonic_ns());
    let root_ns = pid_ns_inode("self");
    let mut innermost: HashMap<u32, u32> = HashMap::new();
    let mut processes: Vec<SeedProcess> = all
        .filter_map(Result::ok)
        .filter_map(|process| {
            let stat = process.stat().ok()?;
            let pid = u32::try_from(stat.pid).ok()?;
            let ns = pid_ns_inode(&pid.to_string());
            let mut ns_pids = Vec::new();
            if let Some(ns) = ns.filter(|&ns| Some(ns) != root_ns) {
                innermost.insert(pid, ns);
                // NSpid: the pid at each level, outermost first.
                let nspid = process
                    .status()
                    .ok()
                    .and_then(|s| s.nspid)
                    .unwrap_or_default();
                ns_pids = nspid
                    .iter()
                    .map(|&nr| NsPid {
                        pid: nr as u32,
                        ns: 0,
                    })
                    .collect();
                if let Some(last) = ns_pids.last_mut() {
                    last.ns = ns;
                }
                if let (Some(first), Some(root)) = (ns_pids.first_mut(), root_ns) {
                    first.ns = root;
                }
            }
            Some(SeedProcess {
                pid,
                ppid: u32::try_from(stat.ppid).unwrap_or(0),
                comm: crate::trace::comm::Comm::from_str_lossy(&stat.comm),
                zombie: stat.state().is_ok_and(|s| s == ProcState::Zombie),
                started_ns: u64::try_from(
                    u128::from(stat.starttime) * 1_000_000_000 / u128::from(ticks),
                )
                .ok()
                .and_then(|ns| ns.checked_sub(suspended)),
                ns_pids,
                ..Default::default()
            })
        })
        .collect();
    fill_middle_levels(&mut processes, &innermost);
    processes
}

/// The namespaces between the outermost and the innermost of a nested
/// process are its ancestors' innermost ones: walk up until the depth fits.
fn fill_middle_levels(processes: &mut [SeedProcess], innermost: &HashMap<u32, u32>) {
    let parent: HashMap<u32, (u32, usize)> = processes
        .iter()
        .map(|p| (p.pid, (p.ppid, p.ns_pids.len())))
        .collect();
    for p in processes.iter_mut().filter(|p| p.ns_pids.len() > 2) {
        let depth = p.ns_pids.len();
        for level in 1..depth - 1 {
            let mut at = p.ppid;
            for _ in 0..64 {
                match parent.get(&at) {
                    Some(&(_, len)) if len == level + 1 => {
                        p.ns_pids[level].ns = innermost.get(&at).copied().unwrap_or(0);
                        break;
                    }
                    Some(&(up, _)) => at = up,
                    None => break,
                }
            }
        }
    }
}

/// The inode number of `/proc/<pid>/ns/pid` (`pid:[4026531836]`).
fn pid_ns_inode(pid: &str) -> Option<u32> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    let text = link.to_str()?;
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// Whether `pid` is a zombie now (`false` once it is gone).
pub fn is_zombie(pid: u32) -> bool {
    Process::new(pid as i32)
        .and_then(|p| p.stat())
        .is_ok_and(|s| s.state == 'Z')
}

/// The hexadecimal value of a `Field:` line in /proc text; here, the
/// `sigmask:` of a signalfd's fdinfo, which `procfs` does not parse.
pub fn hex_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// What /proc says of a parent now: its threads' states, wait channels,
/// SIGCHLD masks, system calls and kernel stacks, its SIGCHLD action and
/// pending set, and whether it reads SIGCHLD through a signalfd.
pub fn probe_parent(pid: u32) -> Option<ParentProbe> {
    let process = Process::new(pid as i32).ok()?;
    let status = process.status().ok()?;
    Some(probe_of(&process, &status))
}

/// The probe of `process`, whose status was just read: a caller that needs
/// the status too reads it once (the main thread's is the process's).
pub fn probe_of(process: &Process, status: &Status) -> ParentProbe {
    let pid = process.pid as u32;
    let mut probe = ParentProbe {
        sigchld_blocked: status.sigblk & SIGCHLD_BIT != 0,
        sigchld_ignored: status.sigign & SIGCHLD_BIT != 0,
        sigchld_caught: status.sigcgt & SIGCHLD_BIT != 0,
        sigchld_shared_pending: Some(status.shdpnd & SIGCHLD_BIT != 0),
        thread_count: u32::try_from(status.threads).ok(),
        ..Default::default()
    };
    if let Ok(tasks) = process.tasks() {
        let mut threads: Vec<ThreadProbe> = tasks
            .filter_map(Result::ok)
            .take(MAX_PROBED_THREADS)
            .enumerate()
            .filter_map(|(i, task)| {
                let main_status = (task.tid == process.pid).then_some(status);
                probe_thread(pid, &task, main_status, i < MAX_STACKED_THREADS)
            })
            .collect();
        threads.sort_by_key(|t| t.tid);
        probe.threads = threads;
    }
    if let Ok(fds) = process.fd() {
        let fdinfo = |fd: i32| std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok();
        for fd in fds.filter_map(Result::ok) {
            let procfs::process::FDTarget::AnonInode(name) = &fd.target else {
                continue;
            };
            if name.contains("signalfd") {
                let reads_sigchld = fdinfo(fd.fd)
                    .and_then(|info| hex_field(&info, "sigmask:"))
                    .is_some_and(|mask| mask & SIGCHLD_BIT != 0);
                if reads_sigchld && probe.signalfds.len() < MAX_PROBED_PIDFDS {
                    probe.signalfd_sigchld = true;
                    probe.signalfds.push(fd.fd);
                }
            } else if name.contains("pidfd")
                && probe.pidfds.len() < MAX_PROBED_PIDFDS
                && let Some(pid) = fdinfo(fd.fd).and_then(|info| pidfd_pid(&info))
            {
                probe.pidfds.push(PidfdProbe { fd: fd.fd, pid });
            }
        }
        probe.pidfds.sort_by_key(|p| p.fd);
        probe.signalfds.sort_unstable();
    }
    probe
}

/// One thread of process `pid`: its state and where it sleeps (wait
/// channel, system call, kernel stack), its SIGCHLD mask and pending bit,
/// and its tracer. What cannot be read (the stack without root) stays
/// empty. The diagnosis names a few threads; a probe keeps at most
/// `MAX_PROBED_THREADS`, so that it fits one record (64 KiB).
fn probe_thread(
    pid: u32,
    task: &procfs::process::Task,
    main_status: Option<&Status>,
    with_stack: bool,
) -> Option<ThreadProbe> {
    let stat = task.stat().ok()?;
    let dir = format!("/proc/{pid}/task/{}", task.tid);
    let wchan = std::fs::read_to_string(format!("{dir}/wchan")).unwrap_or_default();
    let status = main_status.cloned().or_else(|| task.status().ok());
    let has_sigchld = |set: u64| set & SIGCHLD_BIT != 0;
    Some(ThreadProbe {
        tid: u32::try_from(task.tid).ok()?,
        comm: stat.comm,
        state: stat.state,
        wchan: if wchan == "0" { String::new() } else { wchan },
        sigchld_blocked: status.as_ref().map(|s| has_sigchld(s.sigblk)),
        sigchld_pending: status.as_ref().map(|s| has_sigchld(s.sigpnd)),
        tracer_pid: status
            .as_ref()
            .and_then(|s| u32::try_from(s.tracerpid).ok())
            .filter(|&t| t != 0),
        syscall: std::fs::read_to_string(format!("{dir}/syscall"))
            .ok()
            .and_then(|text| parse_syscall(&text)),
        kernel_stack: if with_stack {
            std::fs::read_to_string(format!("{dir}/stack"))
                .map(|text| parse_kernel_stack(&text))
                .unwrap_or_default()
        } else {
            Vec::new()
        },
        user_stack: None,
        user_place: None,
    })
}

/// `/proc/PID/task/TID/syscall`: `NR ARG1 … ARG6 SP PC` (hexadecimal with
/// `0x`, NR decimal), `-1 SP PC` outside a system call, `running` while it
/// runs (nothing to say then).
pub fn parse_syscall(text: &str) -> Option<SyscallProbe> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let nr: i64 = fields.first()?.parse().ok()?;
    let hex = |s: &&str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let (sp, pc) = match fields.len() {
        3 | 9 => (
            hex(&fields[fields.len() - 2])?,
            hex(&fields[fields.len() - 1])?,
        ),
        _ => return None,
    };
    Some(SyscallProbe { nr, sp, pc })
}

/// `/proc/PID/task/TID/stack` (`[<0>] do_wait+0x5d/0x110` a line) as
/// function names, innermost first, at most `MAX_KERNEL_FRAMES`.
pub fn parse_kernel_stack(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let name = line.split_once("] ").map_or(line, |(_, rest)| rest);
            let name = name.split('+').next()?.trim();
            let cut = (0..=name.len().min(MAX_KERNEL_NAME))
                .rev()
                .find(|&i| name.is_char_boundary(i))
                .unwrap_or(0);
            (!name.is_empty()).then(|| name[..cut].to_owned())
        })
        .take(MAX_KERNEL_FRAMES)
        .collect()
}

/// How many pidfds a probe keeps: enough for any parent that holds one per
/// child it has yet to wait for, small enough for one record.
const MAX_PROBED_PIDFDS: usize = 256;

/// The process a pidfd refers to: the `Pid:` line of its fdinfo (Linux 5.4+).
fn pidfd_pid(fdinfo: &str) -> Option<i32> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pidfds_pid() {
        let fdinfo =
            "pos:\t0\nflags:\t02000002\nmnt_id:\t4\nino:\t20518\nPid:\t20517\nNSpid:\t20517\n";
        assert_eq!(pidfd_pid(fdinfo), Some(20517));
        assert_eq!(pidfd_pid("Pid:\t-1\n"), Some(-1));
        assert_eq!(pidfd_pid("pos:\t0\n"), None);
    }

    #[test]
    fn reads_a_blocked_threads_syscall_and_kernel_stack() {
        let blocked = "61 0xffffffff 0x7ffc8a1c 0x0 0x0 0x0 0x0 0x7ffc8a00 0x7f12ab34\n";
        assert_eq!(
            parse_syscall(blocked),
            Some(SyscallProbe {
                nr: 61,
                sp: 0x7ffc8a00,
                pc: 0x7f12ab34
            })
        );
        assert_eq!(
            parse_syscall("-1 0x7ffc8a00 0x55aa\n"),
            Some(SyscallProbe {
                nr: -1,
                sp: 0x7ffc8a00,
                pc: 0x55aa
            })
        );
        assert_eq!(parse_syscall("running\n"), None);
        let stack = "[<0>] do_signal_stop+0x10b/0x230\n[<0>] get_signal+0x2f1/0x8c0\n[<0>] arch_do_signal_or_restart+0x3d/0x250\n";
        assert_eq!(
            parse_kernel_stack(stack),
            ["do_signal_stop", "get_signal", "arch_do_signal_or_restart"]
        );
        let deep: String = (0..40).map(|i| format!("[<0>] f{i}+0x1/0x2\n")).collect();
        assert_eq!(parse_kernel_stack(&deep).len(), MAX_KERNEL_FRAMES);
    }

    #[test]
    fn probe_fits_one_record() {
        let long = "k".repeat(600);
        let stack: String = (0..40).map(|_| format!("[<0>] {long}+0x1/0x2\n")).collect();
        let thread = |tid: u32, stacked: bool| ThreadProbe {
            sigchld_blocked: Some(true),
            sigchld_pending: Some(true),
            tracer_pid: Some(u32::MAX),
            syscall: Some(SyscallProbe {
                nr: i64::MAX,
                sp: u64::MAX,
                pc: u64::MAX,
            }),
            kernel_stack: if stacked {
                parse_kernel_stack(&stack)
            } else {
                Vec::new()
            },
            ..ThreadProbe::basic(tid, &"\u{1}".repeat(16), 'D', &"w".repeat(64))
        };
        let probe = ParentProbe {
            threads: (0..MAX_PROBED_THREADS as u32)
                .map(|i| thread(u32::MAX - i, (i as usize) < MAX_STACKED_THREADS))
                .collect(),
            pidfds: (0..MAX_PROBED_PIDFDS as i32)
                .map(|fd| PidfdProbe {
                    fd: i32::MAX - fd,
                    pid: i32::MAX,
                })
                .collect(),
            signalfds: (0..MAX_PROBED_PIDFDS as i32)
                .map(|fd| i32::MAX - fd)
                .collect(),
            sigchld_shared_pending: Some(true),
            thread_count: Some(u32::MAX),
            ..Default::default()
        };
        assert_eq!(probe.threads[0].kernel_stack[0].len(), MAX_KERNEL_NAME);
        let len = serde_json::to_vec(&probe).unwrap().len();
        assert!(len < 60_000, "{len} bytes");
    }

    #[test]
    fn reads_a_signalfd_mask() {
        let fdinfo =
            "pos:\t0\nflags:\t02004002\nmnt_id:\t15\nino:\t1057\nsigmask:\t0000000000010000\n";
        assert_eq!(hex_field(fdinfo, "sigmask:"), Some(SIGCHLD_BIT));
        assert_eq!(hex_field(fdinfo, "missing:"), None);
    }

    #[test]
    fn seeded_processes_get_their_cgroup_id_and_path() {
        let mut processes: Vec<SeedProcess> = [10, 11, 12, 13]
            .into_iter()
            .map(|pid| SeedProcess {
                pid,
                ..Default::default()
            })
            .collect();
        let mut looked_up = Vec::new();
        attach_cgroups(
            &mut processes,
            |pid| match pid {
                10 | 11 => Some("/docker/abc".to_owned()),
                12 => Some("/gone".to_owned()),
                _ => None,
            },
            |path| {
                looked_up.push(path.to_owned());
                (path == "/docker/abc").then_some(777)
            },
        );
        let got: Vec<(u32, u64, Option<&str>)> = processes
            .iter()
            .map(|p| (p.pid, p.cgroup_id, p.cgroup.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (10, 777, Some("/docker/abc")),
                (11, 777, Some("/docker/abc")),
                // Removed between reading /proc and the directory.
                (12, 0, None),
                (13, 0, None),
            ]
        );
        // One lookup per path.
        assert_eq!(looked_up, ["/docker/abc", "/gone"]);
    }

    #[test]
    fn probes_this_process() {
        let me = std::process::id();
        let probe = probe_parent(me).expect("this process is in /proc");
        // Other tests may block signals in their threads: only that the
        // masks were read is certain.
        let main = probe.threads.iter().find(|t| t.tid == me).expect("main");
        assert!(main.sigchld_blocked.is_some() && main.sigchld_pending.is_some());
        assert_eq!(main.tracer_pid, None);
        assert!(probe.thread_count.is_some_and(|n| n >= 1));
        let seeded = snapshot();
        let mine = seeded.iter().find(|p| p.pid == me).expect("this process");
        assert!(!mine.zombie);
        let started = mine.started_ns.expect("a start time");
        let now = crate::trace::clock::monotonic_ns();
        assert!(
            started <= now && now - started < 3_600_000_000_000,
            "{started} {now}"
        );
        assert!(!is_zombie(me));
    }
}
