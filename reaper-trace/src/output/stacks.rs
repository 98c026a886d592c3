//! A finding's stacks named for showing. Here, not in `host::symbolize`,
//! because the symbolizer is a host tool below the analysis: it names
//! frames and knows nothing of findings.

use crate::{analysis::Finding, host::symbolize::Symbolizer};

/// Fills a finding's `fork_stack` and `sigaction_stack` from its frames,
/// where findings are shown (live, or in `report`).
pub fn symbolize_finding(symbolizer: &mut Symbolizer, finding: &mut Finding) {
    finding.fork_stack = finding
        .fork_frames
        .as_ref()
        .map(|s| symbolizer.symbolize_stack(s));
    finding.sigaction_stack = finding
        .sigaction_frames
        .as_ref()
        .map(|s| symbolizer.symbolize_stack(s));
}
