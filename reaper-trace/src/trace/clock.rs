//! Mapping kernel monotonic timestamps to wall-clock time.

/// A pair of readings of CLOCK_MONOTONIC and CLOCK_REALTIME taken together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockRef {
    pub monotonic_ns: u64,
    pub realtime_ns: u64,
}

impl ClockRef {
    /// Reads both clocks now.
    pub fn now() -> ClockRef {
        ClockRef {
            monotonic_ns: read(libc::CLOCK_MONOTONIC),
            realtime_ns: read(libc::CLOCK_REALTIME),
        }
    }

    /// Wall-clock nanoseconds since the epoch for a monotonic timestamp.
    pub fn wall_ns(&self, monotonic_ns: u64) -> u64 {
        (self.realtime_ns as i128 + monotonic_ns as i128 - self.monotonic_ns as i128).max(0) as u64
    }

    /// `HH:MM:SS.uuuuuu` (UTC) of a monotonic timestamp.
    pub fn format_time_of_day(&self, monotonic_ns: u64) -> String {
        let mut out = String::with_capacity(15);
        let _ = self.write_time_of_day(&mut out, monotonic_ns);
        out
    }

    /// `format_time_of_day` into a writer, without allocating.
    pub fn write_time_of_day(
        &self,
        out: &mut impl std::fmt::Write,
        monotonic_ns: u64,
    ) -> std::fmt::Result {
        let wall = self.wall_ns(monotonic_ns);
        let secs = wall / 1_000_000_000;
        let micros = (wall % 1_000_000_000) / 1_000;
        let day = secs % 86_400;
        write!(
            out,
            "{:02}:{:02}:{:02}.{:06}",
            day / 3600,
            day % 3600 / 60,
            day % 60,
            micros
        )
    }
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC now, in ns: the clock of event timestamps.
pub fn monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// CLOCK_BOOTTIME now, in nanoseconds: the monotonic clock plus the time
/// spent suspended (the clock of /proc's start times).
pub fn boottime_ns() -> u64 {
    read(libc::CLOCK_BOOTTIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_time_of_day() {
        // 2026-11-25 16:05:07.25 UTC at monotonic 1s.
        let clock = ClockRef {
            monotonic_ns: 1_000_000_000,
            realtime_ns: 1_795_709_107_250_000_000,
        };
        assert_eq!(clock.format_time_of_day(2_000_000_000), "16:05:08.250000");
    }
}
