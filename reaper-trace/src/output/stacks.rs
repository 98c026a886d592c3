//! A finding's stacks named for showing. Here, not in `host::symbolize`,
//! because the symbolizer is a host tool below the analysis: it names
//! frames and knows nothing of findings.

use crate::{
    analysis::{Finding, hints},
    host::symbolize::Symbolizer,
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
    finding.fork_stack = finding
        .fork_frames
        .as_ref()
        .map(|s| symbolizer.symbolize_stack(s));
    finding.sigaction_stack = finding
        .sigaction_frames
        .as_ref()
        .map(|s| symbolizer.symbolize_stack(s));
    if finding.fork_stack.is_some() {
        finding.hint = hints::hint(finding);
    }
}
