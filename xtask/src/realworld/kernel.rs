//! The kernel's view, the second ground truth: a bpftrace script on the
//! exit, SIGCHLD, wait and free tracepoints, independent of the tool's own
//! probes. What it says about a lifecycle:
//! - `X`: the leader's exit (`sched_process_exit`), with its start time
//!   (`task->start_time`, CLOCK_MONOTONIC, the tool's `start_ns`);
//! - `N`: a SIGCHLD for an exit (`signal_generate`, codes CLD_EXITED,
//!   CLD_KILLED, CLD_DUMPED) sent by the exiting task, with its real parent
//!   at that moment: the kernel sends it under the tasklist lock, after any
//!   reparenting, so this is who the zombie belonged to. A dying parent
//!   that hands a zombie to its adopter sends one too, before its own: the
//!   last `N` of a (pid, start time) is its own exit's;
//! - `W`/`I`: a wait4/waitid that returned a pid, who called it, its
//!   options and the status (wait4) or `si_code` (waitid), so that a stop,
//!   a continue or a `WNOWAIT` peek is not taken for a reap; only callers
//!   in the initial pid namespace (a wait returns the pid as the caller's
//!   namespace numbers it, and every other pid here is global);
//! - `F`: the task's free (`sched_process_free`), an RCU grace period after
//!   whoever released it.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

pub const SCRIPT: &str = r#"
BEGIN { printf("READY\n"); }
tracepoint:sched:sched_process_exit /pid == tid/ {
  printf("X %llu %d %d %llu %s\n", nsecs, pid, curtask->real_parent->tgid, curtask->start_time, comm);
}
tracepoint:signal:signal_generate /args->sig == 17 && args->code >= 1 && args->code <= 3/ {
  printf("N %llu %d %d %llu %d %d\n", nsecs, pid, curtask->real_parent->tgid, curtask->start_time, args->pid, args->result);
}
tracepoint:syscalls:sys_enter_wait4 /curtask->thread_pid->level == 0/ {
  @w4on[tid] = 1; @w4opt[tid] = args->options; @w4st[tid] = (uint64)args->stat_addr;
}
tracepoint:syscalls:sys_exit_wait4 /@w4on[tid]/ {
  if (args->ret > 0) {
    $st = (int64)-1;
    if (@w4st[tid] != 0) { $st = (int64)*uptr((int32*)@w4st[tid]); }
    printf("W %llu %d %d %d %lld\n", nsecs, pid, args->ret, @w4opt[tid], $st);
  }
  delete(@w4on[tid]); delete(@w4opt[tid]); delete(@w4st[tid]);
}
tracepoint:syscalls:sys_enter_waitid /curtask->thread_pid->level == 0/ {
  @wion[tid] = 1; @wiopt[tid] = args->options; @wiinf[tid] = (uint64)args->infop;
}
tracepoint:syscalls:sys_exit_waitid /@wion[tid]/ {
  if (args->ret == 0 && @wiinf[tid] != 0) {
    printf("I %llu %d %d %d %d\n", nsecs, pid, *uptr((int32*)(@wiinf[tid] + 16)), @wiopt[tid],
      *uptr((int32*)(@wiinf[tid] + 8)));
  }
  delete(@wion[tid]); delete(@wiopt[tid]); delete(@wiinf[tid]);
}
tracepoint:sched:sched_process_free { printf("F %llu %d\n", nsecs, args->pid); }
"#;

/// One process's exit as the kernel reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct Exit {
    pub pid: u32,
    pub start_ns: u64,
    pub exit_ns: u64,
    /// The real parent when its exit's SIGCHLD was sent.
    pub notified_parent: Option<u32>,
    /// The next exit of a process with the same pid (a reuse): records
    /// after it are not about this one.
    pub until_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub ns: u64,
    pub waiter: u32,
}

#[derive(Debug, Default)]
pub struct KernelView {
    exits: HashMap<(u32, u64), Exit>,
    /// When processes with each pid exited, in order.
    exit_times: HashMap<u32, Vec<u64>>,
    /// Collecting waits and frees, by the pid they name, in time order.
    waits: HashMap<u32, Vec<Wait>>,
    frees: HashMap<u32, Vec<u64>>,
    pub lines: u64,
    /// Events bpftrace itself reported lost.
    pub lost: u64,
    /// When it lost them: from the record before each `Lost` line to the
    /// record after it, widened by [`LOSS_MARGIN_NS`].
    loss_windows: Vec<(u64, u64)>,
}

/// How far a loss may lie from the records printed around its `Lost` line:
/// bpftrace prints each CPU's buffer in turn, so neighbouring lines may come
/// from another CPU, at another time.
const LOSS_MARGIN_NS: u64 = 2_000_000_000;

impl KernelView {
    /// Whether bpftrace lost records at some time between `from` and `to`:
    /// what it did not see then is no evidence against anything.
    pub fn lost_between(&self, from: u64, to: u64) -> bool {
        self.loss_windows
            .iter()
            .any(|&(start, end)| start <= to && from <= end)
    }

    pub fn parse(text: &str) -> KernelView {
        let mut view = KernelView::default();
        let mut exit_times: HashMap<u32, Vec<u64>> = HashMap::new();
        // The sender's real parent at the last SIGCHLD sent by each (pid,
        // start time).
        let mut notified: HashMap<(u32, u64), u32> = HashMap::new();
        // The time of the last record, and whether a loss waits for the
        // next record to close its window.
        let (mut last_ns, mut loss_open) = (0u64, false);
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("Lost ") {
                view.lost += n
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                if !loss_open {
                    view.loss_windows
                        .push((last_ns.saturating_sub(LOSS_MARGIN_NS), u64::MAX));
                    loss_open = true;
                }
                continue;
            }
            let f: Vec<&str> = line.splitn(6, ' ').collect();
            let num = |i: usize| f.get(i).and_then(|s| s.trim().parse::<u64>().ok());
            if let Some(ns) = num(1) {
                last_ns = ns;
                if loss_open && let Some(window) = view.loss_windows.last_mut() {
                    window.1 = ns.saturating_add(LOSS_MARGIN_NS);
                    loss_open = false;
                }
            }
            match (f.first().copied(), num(1), num(2)) {
                (Some("X"), Some(ns), Some(pid)) => {
                    if let (Some(_parent), Some(start)) = (num(3), num(4)) {
                        let pid = pid as u32;
                        view.exits.insert(
                            (pid, start),
                            Exit {
                                pid,
                                start_ns: start,
                                exit_ns: ns,
                                notified_parent: None,
                                until_ns: u64::MAX,
                            },
                        );
                        exit_times.entry(pid).or_default().push(ns);
                    }
                }
                (Some("N"), Some(_), Some(pid)) => {
                    if let (Some(parent), Some(start)) = (num(3), num(4)) {
                        notified.insert((pid as u32, start), parent as u32);
                    }
                }
                (Some(kind @ ("W" | "I")), Some(ns), Some(waiter)) => {
                    let int = |i: usize| f.get(i).and_then(|s| s.trim().parse::<i64>().ok());
                    let (options, status) = (int(4).unwrap_or(0), int(5));
                    let reaped = if kind == "W" {
                        wait4_reaped(options, status)
                    } else {
                        waitid_reaped(options, status)
                    };
                    if let Some(pid) = num(3).filter(|&p| p > 0 && reaped) {
                        view.waits.entry(pid as u32).or_default().push(Wait {
                            ns,
                            waiter: waiter as u32,
                        });
                    }
                }
                (Some("F"), Some(ns), Some(pid)) => {
                    view.frees.entry(pid as u32).or_default().push(ns);
                }
                _ => continue,
            }
            view.lines += 1;
        }
        for list in exit_times.values_mut() {
            list.sort_unstable();
        }
        for list in view.waits.values_mut() {
            list.sort_unstable_by_key(|w| w.ns);
        }
        for list in view.frees.values_mut() {
            list.sort_unstable();
        }
        for exit in view.exits.values_mut() {
            exit.notified_parent = notified.get(&(exit.pid, exit.start_ns)).copied();
            exit.until_ns = exit_times[&exit.pid]
                .iter()
                .copied()
                .find(|&t| t > exit.exit_ns)
                .unwrap_or(u64::MAX);
        }
        view.exit_times = exit_times;
        view
    }

    /// When a process with this pid exited within `from..=to`.
    pub fn pid_exited_within(&self, pid: u32, from: u64, to: u64) -> Option<u64> {
        self.exit_times
            .get(&pid)?
            .iter()
            .copied()
            .find(|&t| t >= from && t <= to)
    }

    pub fn exit(&self, pid: u32, start_ns: u64) -> Option<&Exit> {
        self.exits.get(&(pid, start_ns))
    }

    /// The first wait that collected this exit's pid after it.
    pub fn reaping_wait(&self, exit: &Exit) -> Option<Wait> {
        self.waits
            .get(&exit.pid)?
            .iter()
            .copied()
            .find(|w| w.ns >= exit.exit_ns && w.ns < exit.until_ns)
    }

    /// When the exited task was freed.
    pub fn free_after(&self, exit: &Exit) -> Option<u64> {
        self.frees
            .get(&exit.pid)?
            .iter()
            .copied()
            .find(|&t| t >= exit.exit_ns && t < exit.until_ns)
    }
}

const WUNTRACED: i64 = 2;
const WCONTINUED: i64 = 8;
const WNOWAIT: i64 = 0x0100_0000;

/// Whether a wait4 that returned a pid released it: it reported an exit
/// (not a stop, `0x7f` in the low byte, nor a continue, `0xffff`). Without
/// a status (a NULL pointer), only when it could not have reported either.
fn wait4_reaped(options: i64, status: Option<i64>) -> bool {
    match status {
        Some(-1) | None => options & (WUNTRACED | WCONTINUED) == 0,
        Some(st) => st & 0x7f != 0x7f && st != 0xffff,
    }
}

/// Whether a waitid released the child: an exit (`si_code` CLD_EXITED,
/// CLD_KILLED or CLD_DUMPED) without `WNOWAIT`.
fn waitid_reaped(options: i64, code: Option<i64>) -> bool {
    options & WNOWAIT == 0 && code.is_none_or(|c| (1..=3).contains(&c))
}

/// bpftrace running the script, its output going to a file.
pub struct Bpftrace {
    child: Child,
    pub out: std::path::PathBuf,
}

impl Bpftrace {
    /// Starts bpftrace and returns once its probes are attached.
    pub fn start(dir: &Path) -> anyhow::Result<Bpftrace> {
        let script = dir.join("kernel-view.bt");
        std::fs::write(&script, SCRIPT)?;
        let out = dir.join("kernel-view.txt");
        // Its standard output into the file, line-buffered: with `-o FILE`
        // bpftrace buffers whole blocks, and READY would show only once a
        // busy machine filled one.
        let child = Command::new("bpftrace")
            .args(["-B", "line"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(dir.join("kernel-view.stderr"))?)
            .spawn()
            .context("starting bpftrace (cargo xtask setup installs it)")?;
        // Owned at once, so that it is stopped on every way out of here.
        let mut bpftrace = Bpftrace { child, out };
        // Compiling its probes takes bpftrace 0.17 a minute or more on two
        // busy cores.
        const ATTACH_WITHIN: Duration = Duration::from_secs(180);
        let deadline = Instant::now() + ATTACH_WITHIN;
        loop {
            if let Ok(f) = std::fs::File::open(&bpftrace.out)
                && BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .any(|l| l == "READY")
            {
                return Ok(bpftrace);
            }
            if let Some(status) = bpftrace.child.try_wait()? {
                bail!(
                    "bpftrace ended before attaching ({status}): {}",
                    std::fs::read_to_string(dir.join("kernel-view.stderr")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("bpftrace did not attach within {ATTACH_WITHIN:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it (SIGINT) and reads what it saw.
    pub fn stop(mut self) -> anyhow::Result<KernelView> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("bpftrace did not stop within 30s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read(&self.out)?;
        Ok(KernelView::parse(&String::from_utf8_lossy(&text)))
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exits_notifications_waits_and_frees() {
        let view = KernelView::parse(
            "Attaching 7 probes...\nREADY\n\
             X 100 7 6 50 my comm\n\
             N 101 7 1 50 1 0\n\
             N 102 7 6 50 6 0\n\
             W 90 6 7\n\
             W 200 6 7\n\
             F 215 7\n\
             X 300 7 6 250 again\n\
             F 320 7\n\
             I 400 5 9\n\
             Lost 12 events\n",
        );
        assert_eq!(view.lost, 12);
        let exit = view.exit(7, 50).unwrap();
        // The last SIGCHLD sent by the process is its own exit's.
        assert_eq!(exit.notified_parent, Some(6));
        assert_eq!(exit.until_ns, 300);
        assert_eq!(view.reaping_wait(exit), Some(Wait { ns: 200, waiter: 6 }));
        assert_eq!(view.free_after(exit), Some(215));
        let again = view.exit(7, 250).unwrap();
        assert_eq!(view.reaping_wait(again), None);
        assert_eq!(view.free_after(again), Some(320));
        assert!(view.exit(7, 51).is_none());
        assert_eq!(view.pid_exited_within(7, 150, 300), Some(300));
        assert_eq!(view.pid_exited_within(7, 101, 299), None);
    }

    #[test]
    fn stops_continues_and_peeks_are_not_reaps() {
        let view = KernelView::parse(
            "X 100 7 6 50 c\n\
             W 110 6 7 2 4991\n\
             W 120 6 7 8 65535\n\
             I 130 6 7 16777220 1\n\
             W 140 6 7 2 -1\n\
             I 150 6 7 4 5\n\
             W 160 6 7 0 9\n",
        );
        let exit = view.exit(7, 50).unwrap();
        assert_eq!(view.reaping_wait(exit), Some(Wait { ns: 160, waiter: 6 }));
        assert!(wait4_reaped(0, Some(256)));
        assert!(wait4_reaped(0, None));
        assert!(waitid_reaped(4, Some(2)));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let view = KernelView::parse("X\nN 1\nW x y z\n\u{0}\nF 5 6 7\n");
        assert_eq!(view.lines, 1);
    }
}
