//! Exits that wait past the threshold: which parents to look at in /proc
//! now, and the `pending` notices. The caller does the looking (live reads
//! /proc and records the answer; replay finds it in the recording).

use std::collections::HashMap;

use super::{facts::ExitFacts, findings::*, lifecycle::Analyzer};

/// The shortest time between two looks at one overdue zombie in /proc.
pub const ZOMBIE_RECHECK_NS: u64 = 50_000_000;

impl Analyzer {
    /// Exits unreaped past the threshold and not yet announced.
    fn overdue(&self, now_ns: u64) -> impl Iterator<Item = (u32, &ExitFacts)> {
        self.procs
            .iter()
            .filter(|(_, p)| !p.announced)
            .filter_map(move |(&pid, p)| Some((pid, self.overdue_exit(p.exit.as_ref()?, now_ns)?)))
    }

    fn overdue_exit<'a>(&self, exit: &'a ExitFacts, now_ns: u64) -> Option<&'a ExitFacts> {
        self.unreaped_for(exit, now_ns, self.threshold_ns)
    }

    /// `exit`, when it has waited longer than `age_ns` with no reap seen
    /// and /proc has not shown it gone.
    fn unreaped_for<'a>(
        &self,
        exit: &'a ExitFacts,
        now_ns: u64,
        age_ns: u64,
    ) -> Option<&'a ExitFacts> {
        let old = exit
            .time_ns
            .is_none_or(|t| now_ns.saturating_sub(t) > age_ns);
        (exit.reap.is_none() && exit.gone_ns == 0 && old).then_some(exit)
    }

    /// Exits unreaped past the threshold now, announced or not, per cgroup
    /// v2 id (0: unknown): what the `zombies` gauge shows.
    pub fn overdue_by_cgroup(&self, now_ns: u64) -> HashMap<u64, i64> {
        let mut counts = HashMap::new();
        for p in self.procs.values() {
            if p.exit
                .as_ref()
                .and_then(|e| self.overdue_exit(e, now_ns))
                .is_some()
            {
                *counts.entry(p.cgroup_id).or_default() += 1;
            }
        }
        counts
    }

    /// The live parents whose /proc state is worth reading now: those with an
    /// exit about to be announced as overdue. The caller reads /proc (live)
    /// and hands the answers to [`Analyzer::attach_probe`] before
    /// [`Analyzer::announce_overdue`].
    pub fn due_probes(&self, now_ns: u64) -> Vec<u32> {
        let mut parents: Vec<u32> = self
            .overdue(now_ns)
            .map(|(_, exit)| exit.parent)
            .filter(|parent| self.procs.get(parent).is_none_or(|p| p.end().is_none()))
            .collect();
        parents.sort_unstable();
        parents.dedup();
        parents
    }

    /// The overdue exits (of the trace, still unreaped) to look up in /proc
    /// now: live asks whether each is still a zombie, and says so with
    /// [`Analyzer::zombie_seen`] or [`Analyzer::gone`]. Those looks, not
    /// the free (which the kernel may run seconds after the reap), date a
    /// reap that no wait showed: the first proves the zombie outlived the
    /// threshold, the last bounds when it went. Each exit is looked at
    /// again after a tenth of its age (at least [`ZOMBIE_RECHECK_NS`]), so
    /// the bound stays within about 10 % while a zombie that stays costs
    /// a few dozen looks an hour.
    ///
    /// Without wait records every reap is dated this way or by its free, so
    /// the looks begin at half the threshold: a reap found done then was in
    /// time, whenever its free comes (seconds later on a busy machine, with
    /// lazy RCU); one still pending is looked at again until past the
    /// threshold.
    pub fn due_zombie_checks(&self, now_ns: u64) -> Vec<u32> {
        let first_look_ns = if self.waits_traced {
            self.threshold_ns
        } else {
            self.threshold_ns / 2
        };
        let mut pids: Vec<u32> = self
            .procs
            .iter()
            .filter_map(|(&pid, p)| {
                let exit = p.exit.as_ref()?;
                let due = self.unreaped_for(exit, now_ns, first_look_ns).is_some()
                    && now_ns >= exit.next_zombie_check_ns;
                due.then_some(pid)
            })
            .collect();
        pids.sort_unstable();
        pids
    }

    /// /proc showed `pid` still a zombie at `now_ns`.
    pub fn zombie_seen(&mut self, pid: u32, now_ns: u64) {
        if let Some(exit) = self.procs.get_mut(&pid).and_then(|p| p.exit.as_mut())
            && exit.reap.is_none()
        {
            exit.zombie_seen_ns = now_ns;
            let age = exit
                .zombie_since_ns()
                .map_or(0, |t| now_ns.saturating_sub(t));
            exit.next_zombie_check_ns = now_ns + (age / 10).max(ZOMBIE_RECHECK_NS);
        }
    }

    /// Announces exits that have waited past the threshold (`Pending`
    /// notices), each once.
    pub fn announce_overdue(&mut self, now_ns: u64) {
        let due: Vec<u32> = self.overdue(now_ns).map(|(pid, _)| pid).collect();
        for pid in due {
            if let Some(p) = self.procs.get_mut(&pid) {
                p.announced = true;
            }
            let finding = self.finding(pid, FindingKind::Unreaped, None, now_ns);
            self.notices.push(Notice::Pending(finding));
        }
    }
}
