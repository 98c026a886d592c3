//! When events were lost, as far as the loss counters tell: each read of
//! the kernel's counters that found more losses than the previous read
//! bounds them to the time between the two reads. A finding is certain only
//! when no such window overlaps the stretch of time it was built from.

/// How long before a child's exit an event about it can still matter: its
/// parent's own exit (a parent that began exiting just before the child
/// did cannot reap it), or a SIGCHLD action change that reached the kernel
/// on another CPU. Generous on purpose: a loss this close to an exit makes
/// its finding uncertain.
pub const BEFORE_EXIT_NS: u64 = 1_000_000_000;

/// At most this many windows are kept; beyond it the oldest two merge, so
/// that a daemon that loses events now and then stays bounded (a merged
/// window only makes more findings uncertain, never fewer).
const MAX_WINDOWS: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// The total the counters showed at the last read.
    total: u64,
    /// `(after, until)`: losses happened in `after < t <= until`.
    windows: Vec<(u64, u64)>,
}

impl Losses {
    /// Events lost so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The counters said `total` at `now_ns`, and `since_ns` was the
    /// previous read. Returns the new window when the total grew.
    pub fn read(&mut self, total: u64, since_ns: u64, now_ns: u64) -> Option<(u64, u64)> {
        if total <= self.total {
            return None;
        }
        self.total = total;
        let window = (since_ns.min(now_ns), now_ns);
        self.windows.push(window);
        if self.windows.len() > MAX_WINDOWS {
            let merged = (self.windows[0].0, self.windows[1].1);
            self.windows.splice(0..2, [merged]);
        }
        Some(window)
    }

    /// Whether no loss can have happened in `[from_ns, to_ns]`.
    pub fn clear(&self, from_ns: u64, to_ns: u64) -> bool {
        !self
            .windows
            .iter()
            .any(|&window| overlaps(window, from_ns, to_ns))
    }
}

/// Whether the loss window `(after, until]` meets `[from_ns, to_ns]`.
pub fn overlaps((after, until): (u64, u64), from_ns: u64, to_ns: u64) -> bool {
    after < to_ns && until >= from_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_only_taints_what_its_window_meets() {
        let mut losses = Losses::default();
        assert_eq!(losses.read(0, 0, 100), None);
        assert_eq!(losses.read(5, 100, 200), Some((100, 200)));
        assert_eq!(losses.total(), 5);
        // No new losses: no window.
        assert_eq!(losses.read(5, 200, 300), None);
        assert!(losses.clear(0, 100), "over before the window opened");
        assert!(losses.clear(201, 400), "begun after it closed");
        assert!(!losses.clear(150, 160));
        assert!(!losses.clear(50, 101));
        assert!(
            !losses.clear(200, 250),
            "a loss at the read's own instant counts"
        );
    }

    #[test]
    fn windows_stay_bounded_and_merge_conservatively() {
        let mut losses = Losses::default();
        for i in 0..(MAX_WINDOWS as u64 + 10) {
            losses.read(i + 1, i * 10, i * 10 + 1);
        }
        assert_eq!(losses.windows.len(), MAX_WINDOWS);
        // The gap between the first two windows is now covered.
        assert!(!losses.clear(5, 6));
        assert!(losses.clear(MAX_WINDOWS as u64 * 10 + 95, MAX_WINDOWS as u64 * 10 + 99));
    }
}
