//! Any bytes through the recording reader, the replay and the timeline
//! export: they must return an error or a result, never panic, hang or
//! allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reaper_trace::{
    output::timeline::{self, TimelineFormat},
    pipeline::replay::{ReplayOptions, replay},
};

fuzz_target!(|data: &[u8]| {
    let options = ReplayOptions { threshold_ns: 1_000_000_000, pids: Vec::new(), comm: None };
    let _ = replay(data, &options);
    let _ = timeline::export(data, std::io::sink(), &options, TimelineFormat::Perfetto);
    let _ = timeline::export(data, std::io::sink(), &options, TimelineFormat::PerfettoJson);
});
