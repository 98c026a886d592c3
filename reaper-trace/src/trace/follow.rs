//! `--pid` / `--comm` applied to recorded events, the way the kernel
//! applies them live: a followed process's new children are followed too.

use std::collections::HashSet;

use crate::trace::event::{Event, EventData};

pub struct Follow {
    pids: HashSet<u32>,
    comm: Option<String>,
}

impl Follow {
    /// `roots` are followed from the start (with their known descendants).
    pub fn new(roots: impl IntoIterator<Item = u32>, comm: Option<String>) -> Follow {
        Follow {
            pids: roots.into_iter().collect(),
            comm,
        }
    }

    /// Whether `event` concerns a followed process; updates the set.
    pub fn admit(&mut self, event: &Event) -> bool {
        match &event.data {
            EventData::Fork(f) if self.pids.contains(&event.tgid) => {
                self.pids.insert(f.child_tgid);
                true
            }
            EventData::Exec(x) => {
                if self
                    .comm
                    .as_deref()
                    .is_some_and(|c| x.comm.as_bytes() == c.as_bytes())
                {
                    self.pids.insert(event.tgid);
                }
                self.pids.contains(&event.tgid)
            }
            EventData::SignalGenerate(s) => {
                self.pids.contains(&event.tgid) || self.pids.contains(&s.target_tgid)
            }
            EventData::WaitExit(w) => {
                self.pids.contains(&event.tgid)
                    || (w.reaped_pid > 0 && self.pids.contains(&(w.reaped_pid as u32)))
            }
            _ => self.pids.contains(&event.tgid),
        }
    }
}
