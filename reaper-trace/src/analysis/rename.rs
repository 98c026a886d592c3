//! A process that renames itself after exec (`prctl(PR_SET_NAME)`, busybox
//! applets, daemons naming their role) is shown under the name `ps` shows,
//! not its exec name.

use super::lifecycle::Analyzer;
use crate::trace::event::{Event, TaskRename};

impl Analyzer {
    /// `event`'s task was renamed. A process's name is its leader's (what
    /// `ps` shows); a thread's own name is carried by the events that need
    /// it (a SIGCHLD change names the thread that made it).
    pub(super) fn renamed(&mut self, event: &Event, r: &TaskRename) {
        if event.tid != event.tgid {
            return;
        }
        let proc = self.procs.entry(event.tgid).or_default();
        // Another process with this pid (a late record of a reused pid):
        // its name is not this one's.
        if proc.start_ns != 0 && r.process_start_ns != 0 && proc.start_ns != r.process_start_ns {
            return;
        }
        proc.comm = r.new_comm;
    }
}
