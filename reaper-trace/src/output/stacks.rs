//! A finding's stacks named for showing. Here, not in `host::symbolize`,
//! because the symbolizer is a host tool below the analysis: it names
//! frames and knows nothing of findings.

use crate::{
    analysis::{Finding, hints},
    host::symbolize::Symbolizer,
    trace::{
        host_facts::ThreadProbe,
        stack::{Stack, UserPlace},
    },
};

/// Fills a finding's `fork_stack` and `sigaction_stack` from its frames,
/// where findings are shown (live, or in `report`), and derives its hint
/// again, now that the line that forked the child has a name. The verdict
/// step cannot: it has only module offsets, and naming frames reads the
/// modules' DWARF, which only a finding that is shown pays for. Deriving
/// the hint again (rather than rendering it with the line at output time)
/// keeps one `hint` string that the text, JSON and JUnit outputs all show
/// alike.
pub fn symbolize_finding(symbolizer: &mut Symbolizer, finding: &mut Finding) {
    // A stack of no frames says nothing; recordings made before the
    // unwinder refused them may hold some.
    let named = |symbolizer: &mut Symbolizer, frames: &Option<Stack>| {
        frames
            .as_ref()
            .filter(|s| !s.frames.is_empty())
            .map(|s| symbolizer.symbolize_stack(s))
    };
    finding.fork_stack = named(symbolizer, &finding.fork_frames);
    finding.sigaction_stack = named(symbolizer, &finding.sigaction_frames);
    if finding.fork_stack.is_some() {
        finding.hint = hints::hint(finding);
    }
    for thread in &mut finding.threads {
        name_thread(symbolizer, &mut thread.probe);
    }
}

/// Names a probed thread's user stack (`user_place` from `user_stack`).
pub fn name_thread(symbolizer: &mut Symbolizer, thread: &mut ThreadProbe) {
    thread.user_place = thread
        .user_stack
        .as_ref()
        .map(|stack| UserPlace::new(symbolizer.symbolize_stack(stack), stack.truncated));
}

/// Names the user stacks of the threads of `tgid`, a process alive now
/// (the `zombies` snapshot): a container's files are reached through it.
pub fn name_live_threads(symbolizer: &mut Symbolizer, tgid: u32, threads: &mut [ThreadProbe]) {
    for thread in threads {
        for frame in thread.user_stack.iter().flat_map(|s| &s.frames) {
            symbolizer.prepare(&frame.module, tgid);
        }
        name_thread(symbolizer, thread);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_of_no_frames_names_nothing_and_keeps_the_hint() {
        let mut finding = crate::analysis::tests_support::finding();
        finding.fork_frames = Some(Stack {
            frames: Vec::new(),
            truncated: true,
        });
        finding.sigaction_frames = finding.fork_frames.clone();
        let hint = finding.hint.clone();
        symbolize_finding(&mut Symbolizer::new(), &mut finding);
        assert_eq!(finding.fork_stack, None);
        assert_eq!(finding.sigaction_stack, None);
        assert_eq!(finding.hint, hint);
    }
}
