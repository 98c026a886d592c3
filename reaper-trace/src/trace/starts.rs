//! A process is (pid, start time). The `free` that marks a release trails
//! it by an RCU grace period, when the pid may already belong to a newer
//! process; the start times seen at fork tell whose free it is.

use std::collections::HashMap;

/// The start time of the process that holds each pid forked while tracing.
#[derive(Default)]
pub struct Starts(HashMap<u32, u64>);

impl Starts {
    /// `pid` now names the process that started at `start_ns`.
    pub fn forked(&mut self, pid: u32, start_ns: u64) {
        self.0.insert(pid, start_ns);
    }

    /// Whether the free of the process (`pid`, `start_ns`) is that of the
    /// pid's current holder (or of one forked before tracing); if so, the
    /// pid is forgotten.
    pub fn freed(&mut self, pid: u32, start_ns: u64) -> bool {
        let current = self.0.get(&pid).is_none_or(|&start| start == start_ns);
        if current {
            self.0.remove(&pid);
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_free_of_an_older_process_is_not_the_current_ones() {
        let mut starts = Starts::default();
        assert!(starts.freed(7, 1), "forked before tracing");
        starts.forked(7, 1);
        starts.forked(7, 5);
        assert!(!starts.freed(7, 1));
        assert!(starts.freed(7, 5));
        assert!(starts.freed(7, 1), "forgotten once freed");
    }
}
