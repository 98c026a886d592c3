//! Counting events per kind, and the losses the kernel reported.

use std::collections::BTreeMap;

use reaper_trace_common::kind;
use serde::Serialize;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Events seen and lost, per kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub events: BTreeMap<&'static str, u64>,
    /// Events lost: any makes the analysis uncertain.
    pub lost: u64,
    pub lost_by_kind: BTreeMap<&'static str, u64>,
    /// User stack copies lost: findings then lack their source lines, but
    /// the lifecycles are whole, so they are counted apart.
    #[serde(skip_serializing_if = "is_zero")]
    pub stacks_lost: u64,
    /// Stack copies that arrived but could not be unwound: their process
    /// had exited or execed before the tracer read its maps.
    #[serde(skip_serializing_if = "is_zero")]
    pub stacks_not_unwound: u64,
    /// Records that arrived but could not be decoded.
    pub undecodable: u64,
    /// Failed forks counted in the kernel, per process and errno.
    pub fork_failures: Vec<ForkFailures>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ForkFailures {
    pub tgid: u32,
    pub errno: u32,
    pub count: u64,
}

impl Totals {
    pub fn count(&mut self, kind_name: &'static str) {
        *self.events.entry(kind_name).or_default() += 1;
    }

    /// Replaces the loss figures with the kernel's counters.
    pub fn set_lost(&mut self, lost: &[u64; kind::COUNT as usize]) {
        let stacks = kind::USTACK as usize;
        self.stacks_lost = lost[stacks];
        self.lost = lost.iter().sum::<u64>() - lost[stacks];
        self.lost_by_kind = kind::NAMES
            .iter()
            .zip(lost)
            .enumerate()
            .filter(|&(k, (_, n))| *n > 0 && k != stacks)
            .map(|(_, (name, n))| (*name, *n))
            .collect();
    }

    /// The totals as readable lines.
    pub fn text(&self) -> String {
        let counts: Vec<String> = self
            .events
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mut out = format!(
            "totals: {}\n",
            if counts.is_empty() {
                "no events".into()
            } else {
                counts.join(", ")
            }
        );
        if self.lost == 0 {
            out.push_str("lost events: 0\n");
        } else {
            let by_kind: Vec<String> = self
                .lost_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            out.push_str(&format!(
                "lost events: {} ({}): the ring buffer was full, so this trace is incomplete; raise --ringbuf-size\n",
                self.lost,
                by_kind.join(", ")
            ));
        }
        if self.stacks_lost > 0 {
            out.push_str(&format!(
                "lost stacks: {}: the ring buffer was full, so some findings lack their source line; raise --ringbuf-size\n",
                self.stacks_lost
            ));
        }
        if self.stacks_not_unwound > 0 {
            out.push_str(&format!(
                "stacks not unwound: {}: their process was gone before its maps were read\n",
                self.stacks_not_unwound
            ));
        }
        for f in &self.fork_failures {
            out.push_str(&format!(
                "fork failures: process {} errno {} x{}\n",
                f.tgid, f.errno, f.count
            ));
        }
        if self.undecodable > 0 {
            out.push_str(&format!("undecodable records: {}\n", self.undecodable));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_always_shows_loss() {
        let mut t = Totals::default();
        t.count("fork");
        t.count("fork");
        t.set_lost(&[0; kind::COUNT as usize]);
        assert_eq!(t.text(), "totals: fork 2\nlost events: 0\n");
        let mut lost = [0; kind::COUNT as usize];
        lost[kind::EXIT as usize] = 3;
        t.set_lost(&lost);
        assert!(t.text().contains("lost events: 3 (exit 3)"));
        lost[kind::USTACK as usize] = 5;
        t.set_lost(&lost);
        assert_eq!((t.lost, t.stacks_lost), (3, 5));
        assert!(t.text().contains("lost events: 3 (exit 3)"));
        assert!(t.text().contains("lost stacks: 5:"));
    }
}
