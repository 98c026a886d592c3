//! The first ground truth: a thread that reads every `/proc/PID/stat` every
//! few milliseconds and records each zombie (state Z) by (pid, start time in
//! clock ticks, field 22), with its parent over time, when it was first and
//! last seen, and the scans around those sightings, which bound its life:
//! it became a zombie after the start of the scan before the first
//! sighting, and was reaped before the end of the first scan that did not
//! see it.

use std::{
    collections::HashMap,
    os::unix::fs::FileExt as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// A parent the zombie had, and when it was seen with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PpidSpan {
    pub ppid: u32,
    pub first_ns: u64,
    pub last_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZombieSeen {
    pub pid: u32,
    pub start_ticks: u64,
    pub comm: String,
    /// When /proc first and last showed it as Z (CLOCK_MONOTONIC).
    pub first_ns: u64,
    pub last_ns: u64,
    /// The start of the scan before the first sighting (`None`: it was a
    /// zombie at the sampler's first scan).
    pub before_ns: Option<u64>,
    /// The end of the first scan that no longer saw it (`None`: still a
    /// zombie when the sampler stopped).
    pub gone_by_ns: Option<u64>,
    pub ppids: Vec<PpidSpan>,
}

#[derive(Clone, Debug, Default)]
pub struct SamplerView {
    pub zombies: Vec<ZombieSeen>,
    pub started_ns: u64,
    pub ended_ns: u64,
    /// The longest stretch between the start of one scan and the end of
    /// the next: a zombie at least this long was certainly seen.
    pub max_gap_ns: u64,
    pub scans: u64,
    /// Each scan's start and end, in order.
    pub scan_times: Vec<(u64, u64)>,
}

impl SamplerView {
    /// Whether a whole scan fell within `from..to`: a process that was a
    /// zombie all that time was certainly seen as one.
    pub fn looked_within(&self, from: u64, to: u64) -> bool {
        let i = self.scan_times.partition_point(|&(start, _)| start < from);
        self.scan_times.get(i).is_some_and(|&(_, end)| end <= to)
    }
}

/// The fields of one `/proc/PID/stat` line the sampler keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub state: u8,
    pub ppid: u32,
    pub start_ticks: u64,
}

/// Parses `/proc/PID/stat`. The comm is in parentheses and may itself hold
/// spaces and parentheses: the fields resume after the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    // Fields from 3 (state) on.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    Some(Stat {
        pid,
        comm,
        state: *rest.first()?.as_bytes().first()?,
        ppid: rest.get(1)?.parse().ok()?,
        // Field 22 is the 20th after the comm.
        start_ticks: rest.get(19)?.parse().ok()?,
    })
}

/// Turns scans into zombie records; pure, fed by the thread.
#[derive(Default)]
pub struct Tracker {
    open: HashMap<(u32, u64), ZombieSeen>,
    seen_this_scan: Vec<(u32, u64)>,
    done: Vec<ZombieSeen>,
    prev_start: Option<u64>,
    this_start: u64,
    first_start: Option<u64>,
    last_end: u64,
    max_gap: u64,
    scan_times: Vec<(u64, u64)>,
}

impl Tracker {
    pub fn begin_scan(&mut self, now: u64) {
        self.first_start.get_or_insert(now);
        self.this_start = now;
        self.seen_this_scan.clear();
    }

    /// One process as read at `now` in the current scan.
    pub fn observe(&mut self, stat: &Stat, now: u64) {
        if stat.state != b'Z' {
            return;
        }
        let key = (stat.pid, stat.start_ticks);
        self.seen_this_scan.push(key);
        let before = self.prev_start;
        let z = self.open.entry(key).or_insert_with(|| ZombieSeen {
            pid: stat.pid,
            start_ticks: stat.start_ticks,
            comm: stat.comm.clone(),
            first_ns: now,
            last_ns: now,
            before_ns: before,
            gone_by_ns: None,
            ppids: Vec::new(),
        });
        z.last_ns = now;
        match z.ppids.last_mut() {
            Some(span) if span.ppid == stat.ppid => span.last_ns = now,
            _ => z.ppids.push(PpidSpan {
                ppid: stat.ppid,
                first_ns: now,
                last_ns: now,
            }),
        }
    }

    pub fn end_scan(&mut self, now: u64) {
        let seen: std::collections::HashSet<_> = self.seen_this_scan.iter().collect();
        let gone: Vec<_> = self
            .open
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for key in gone {
            let mut z = self.open.remove(&key).expect("listed");
            z.gone_by_ns = Some(now);
            self.done.push(z);
        }
        if let Some(prev) = self.prev_start {
            self.max_gap = self.max_gap.max(now - prev);
        }
        self.prev_start = Some(self.this_start);
        self.last_end = now;
        self.scan_times.push((self.this_start, now));
    }

    pub fn finish(mut self) -> SamplerView {
        self.done.extend(self.open.into_values());
        self.done.sort_by_key(|z| z.first_ns);
        SamplerView {
            zombies: self.done,
            started_ns: self.first_start.unwrap_or(0),
            ended_ns: self.last_end,
            max_gap_ns: self.max_gap,
            scans: self.scan_times.len() as u64,
            scan_times: self.scan_times,
        }
    }
}

pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    // SAFETY: a valid clock id and an out-pointer to a timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The sampling thread.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<SamplerView>,
}

impl Sampler {
    /// Starts polling, and returns after the first whole scan.
    pub fn start(interval: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            // Keep the cadence on a loaded machine: the truth must not
            // starve behind the workloads (root may raise its priority).
            // SAFETY: setpriority on this thread's own tid.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, -10);
            }
            let mut tracker = Tracker::default();
            let mut buf = [0u8; 2048];
            // Each process's stat file stays open and is read again from
            // the start (pread): a scan then costs a directory listing and
            // one read per process, not a path walk and an open each. A
            // file whose process is gone fails with ESRCH, and a reused
            // pid is a new entry in the listing, opened anew.
            let mut files: HashMap<u32, std::fs::File> = HashMap::new();
            let mut listed: Vec<u32> = Vec::new();
            let mut ready = Some(ready_tx);
            while !flag.load(Ordering::Relaxed) {
                let start = monotonic_ns();
                tracker.begin_scan(start);
                listed.clear();
                if let Ok(dir) = std::fs::read_dir("/proc") {
                    listed.extend(dir.flatten().filter_map(|e| {
                        e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                    }));
                }
                for &pid in &listed {
                    let cached = files.get(&pid).and_then(|f| f.read_at(&mut buf, 0).ok());
                    // Not open yet, or open on a process that is gone (the
                    // pid may be another's now): open it anew.
                    let read = cached.or_else(|| {
                        files.remove(&pid);
                        let f = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
                        let n = f.read_at(&mut buf, 0).ok()?;
                        files.insert(pid, f);
                        Some(n)
                    });
                    let Some(n) = read else { continue };
                    let now = monotonic_ns();
                    if let Some(stat) = parse_stat(&String::from_utf8_lossy(&buf[..n])) {
                        tracker.observe(&stat, now);
                    }
                }
                if files.len() > listed.len() {
                    let here: std::collections::HashSet<u32> = listed.iter().copied().collect();
                    files.retain(|pid, _| here.contains(pid));
                }
                tracker.end_scan(monotonic_ns());
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
                let next = start + interval.as_nanos() as u64;
                let now = monotonic_ns();
                if next > now {
                    std::thread::sleep(Duration::from_nanos(next - now));
                }
            }
            tracker.finish()
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(10));
        Sampler { stop, handle }
    }

    pub fn stop(self) -> SamplerView {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_comms_parse() {
        let line = "4242 (a (b) c) Z 17 4242 4242 0 -1 4227916 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        let stat = parse_stat(line).unwrap();
        assert_eq!(
            stat,
            Stat {
                pid: 4242,
                comm: "a (b) c".into(),
                state: b'Z',
                ppid: 17,
                start_ticks: 987654,
            }
        );
        assert!(parse_stat("12 (x) R").is_none());
        assert!(parse_stat("").is_none());
    }

    fn z(pid: u32, ppid: u32) -> Stat {
        Stat {
            pid,
            comm: "sh".into(),
            state: b'Z',
            ppid,
            start_ticks: 5,
        }
    }

    #[test]
    fn a_zombie_s_life_is_bounded_by_the_scans_around_it() {
        let mut t = Tracker::default();
        // Scan 1 (0..2): not a zombie yet.
        t.begin_scan(0);
        t.observe(
            &Stat {
                state: b'S',
                ..z(9, 3)
            },
            1,
        );
        t.end_scan(2);
        // Scans 2 and 3: a zombie of 3, then of 1 (reparented).
        t.begin_scan(10);
        t.observe(&z(9, 3), 11);
        t.end_scan(12);
        t.begin_scan(20);
        t.observe(&z(9, 1), 21);
        t.end_scan(23);
        // Scan 4: gone.
        t.begin_scan(30);
        t.end_scan(31);
        let view = t.finish();
        assert_eq!(view.scans, 4);
        assert_eq!(view.max_gap_ns, 13);
        assert!(view.looked_within(10, 12));
        assert!(view.looked_within(5, 25));
        assert!(!view.looked_within(11, 22));
        assert!(!view.looked_within(25, 30));
        assert!(!view.looked_within(32, 90));
        assert_eq!(
            view.zombies,
            vec![ZombieSeen {
                pid: 9,
                start_ticks: 5,
                comm: "sh".into(),
                first_ns: 11,
                last_ns: 21,
                before_ns: Some(0),
                gone_by_ns: Some(31),
                ppids: vec![
                    PpidSpan {
                        ppid: 3,
                        first_ns: 11,
                        last_ns: 11
                    },
                    PpidSpan {
                        ppid: 1,
                        first_ns: 21,
                        last_ns: 21
                    },
                ],
            }]
        );
    }

    #[test]
    fn zombies_at_the_edges_are_open_ended() {
        let mut t = Tracker::default();
        t.begin_scan(0);
        t.observe(&z(9, 3), 1);
        t.end_scan(2);
        let view = t.finish();
        assert_eq!(view.zombies[0].before_ns, None);
        assert_eq!(view.zombies[0].gone_by_ns, None);
    }
}
