//! xtask's measuring helpers, shared by the benchmarks and the soak: a
//! run's wall and CPU time, a live process's CPU and RSS, a tracer held in
//! the background while a workload runs, the tool's event and loss counts,
//! and the median of interleaved rounds.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// Wall and CPU seconds of one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    pub wall: f64,
    pub cpu: f64,
}

fn rusage_secs(ru: &libc::rusage) -> f64 {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs a command to its end: its wall time, and the CPU time of it and of
/// every child it reaped (from wait4's rusage). Also the peak RSS (KiB).
pub fn measured(cmd: &mut Command) -> anyhow::Result<(Cost, i64)> {
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let mut status = 0;
    // SAFETY: zeroed rusage out-parameter, our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    if pid <= 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (status {status:#x})");
    }
    Ok((
        Cost {
            wall: start.elapsed().as_secs_f64(),
            cpu: rusage_secs(&ru),
        },
        ru.ru_maxrss,
    ))
}

/// CPU seconds a live process has used so far (utime + stime).
fn cpu_of(pid: u32) -> f64 {
    let Ok(stat) = procfs::process::Process::new(pid as i32).and_then(|p| p.stat()) else {
        return 0.0;
    };
    (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
}

/// RSS now and at its peak (VmRSS, VmHWM; KiB) of a live process.
pub fn rss_kb(pid: u32) -> (u64, u64) {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.status())
        .map(|s| (s.vmrss.unwrap_or(0), s.vmhwm.unwrap_or(0)))
        .unwrap_or((0, 0))
}

/// A tracer running in the background.
pub struct Background {
    child: Child,
    stderr: std::sync::mpsc::Receiver<String>,
    cpu_at_start: f64,
}

impl Background {
    /// Starts `cmd` and waits for a line containing `ready` on stderr (or in
    /// `ready_file`, for tools that say it on stdout). A tracer that exits
    /// first, or is not ready within a minute, is reaped and its lines
    /// returned in the error: the bench leaves no zombie behind.
    pub fn start(
        cmd: &mut Command,
        ready: &str,
        ready_file: Option<&Path>,
    ) -> anyhow::Result<Background> {
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = Vec::new();
        loop {
            if let Some(file) = ready_file
                && std::fs::read_to_string(file).is_ok_and(|s| s.contains(ready))
            {
                break;
            }
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(20)) {
                let found = line.contains(ready);
                lines.push(line);
                if found && ready_file.is_none() {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Its last lines may still be on their way.
                lines.extend(rx.recv_timeout(Duration::from_millis(200)));
                lines.extend(rx.try_iter());
                bail!("{cmd:?} exited ({status}) before it was ready: {lines:?}");
            }
            if Instant::now() > deadline {
                let _ = end(&mut child);
                bail!("{cmd:?} never became ready: {lines:?}");
            }
        }
        let cpu_at_start = cpu_of(child.id());
        Ok(Background {
            child,
            stderr: rx,
            cpu_at_start,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU used since it became ready, and its peak RSS; then SIGINT and wait.
    pub fn stop(mut self) -> anyhow::Result<(f64, u64, Vec<String>)> {
        let cpu = cpu_of(self.pid()) - self.cpu_at_start;
        let (_, rss) = rss_kb(self.pid());
        if !end(&mut self.child) {
            bail!("{} did not stop on SIGINT and was killed", self.pid());
        }
        Ok((cpu, rss, self.stderr.try_iter().collect()))
    }
}

/// A tracer left running when a part fails half-way (an `?` between
/// `start` and `stop`) is stopped and reaped, not left behind.
impl Drop for Background {
    fn drop(&mut self) {
        let _ = end(&mut self.child);
    }
}

/// Stops a child that may still run and reaps it: SIGINT, sent again each
/// second (bpftrace 0.17 was seen to miss one and sleep on), then SIGKILL
/// after 10 s. False when it had to be killed. Nothing to do for one
/// already reaped.
fn end(child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut next_signal = Instant::now();
    while matches!(child.try_wait(), Ok(None)) {
        let now = Instant::now();
        if now > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        if now >= next_signal {
            // SAFETY: signalling our own child, not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            next_signal = now + Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
    true
}

/// Fails, naming them, when this process has children that exited and were
/// never reaped: every child the bench starts must be waited for.
pub fn no_zombie_children() -> anyhow::Result<()> {
    let me = std::process::id() as i32;
    let zombies: Vec<String> = procfs::process::all_processes()?
        .filter_map(Result::ok)
        .filter_map(|p| p.stat().ok())
        .filter(|s| s.ppid == me && s.state == 'Z')
        .map(|s| format!("{} ({})", s.pid, s.comm))
        .collect();
    if !zombies.is_empty() {
        bail!(
            "the bench left zombie children behind (a child it started and never waited for): {}",
            zombies.join(", ")
        );
    }
    Ok(())
}

/// `reaper-trace: N events, M lost` from the tool's stderr.
pub fn events_and_lost(lines: &[String]) -> (u64, u64) {
    for line in lines {
        if let Some(rest) = line.strip_prefix("reaper-trace: ")
            && let Some((events, lost)) = rest.split_once(" events, ")
            && let (Ok(e), Some(Ok(l))) =
                (events.parse(), lost.strip_suffix(" lost").map(str::parse))
        {
            return (e, l);
        }
    }
    (0, 0)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pid's state, while it is a child of this process.
    fn state_of_child(pid: u32) -> Option<char> {
        let stat = procfs::process::Process::new(pid as i32)
            .ok()?
            .stat()
            .ok()?;
        (stat.ppid == std::process::id() as i32).then_some(stat.state)
    }

    #[test]
    fn a_zombie_child_is_named_and_a_reaped_one_is_not() {
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while state_of_child(pid) != Some('Z') {
            assert!(Instant::now() < deadline, "true never exited");
            std::thread::sleep(Duration::from_millis(5));
        }
        let error = no_zombie_children()
            .expect_err("a zombie child")
            .to_string();
        assert!(error.contains(&format!("{pid} (true)")), "{error}");
        child.wait().expect("reap");
        assert_eq!(state_of_child(pid), None);
    }

    #[test]
    fn a_tracer_that_exits_before_ready_fails_at_once_and_is_reaped() {
        let start = Instant::now();
        let error = Background::start(
            Command::new("sh").args(["-c", "echo 'ERROR: tracepoint not found' >&2; exit 3"]),
            "Attaching",
            None,
        )
        .err()
        .expect("not ready")
        .to_string();
        assert!(error.contains("exited"), "{error}");
        assert!(error.contains("tracepoint not found"), "{error}");
        // Not the minute's deadline.
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn dropping_a_running_tracer_stops_and_reaps_it() {
        let bg = Background::start(
            Command::new("sh").args(["-c", "echo ready >&2; exec sleep 600"]),
            "ready",
            None,
        )
        .expect("start");
        let pid = bg.pid();
        drop(bg);
        assert_eq!(state_of_child(pid), None);
    }
}
