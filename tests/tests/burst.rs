//! Kernel test of issue 21: a burst on a busy machine loses nothing with
//! the default settings. A 15,000-process fork storm from 64 forkers runs
//! beside eight busy loops per core, all in a test cgroup; a system-wide
//! `live --no-events` with its default 4 MiB ring must see it all. With the
//! reader at normal priority (`--normal-priority`, as every build before
//! issue 21 ran) this loses thousands of events on the project's 2-core
//! machines: the reader waits tens of milliseconds for each slice while
//! the storm fills the ring (`cargo xtask bench --only burst`).

use reaper_trace_tests::*;

const PROCESSES: u32 = 15_000;
const FORKERS: u32 = 64;
const HOGS_PER_CPU: usize = 8;

#[test]
fn a_storm_beside_busy_loops_loses_nothing() {
    kernel_test!();
    let cgroup = TestCgroup::create("burst");
    let tracer = Background::start(&["live", "--json", "--no-events"].map(String::from));
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let storm = scenario_bin().to_string_lossy().into_owned();
    // One shell in the cgroup: the busy loops, then the forkers; it kills
    // its loops once every forker is done, and fails if any forker did.
    let script = format!(
        r#"hogs=""
for i in $(seq {hogs}); do (while :; do :; done) & hogs="$hogs $!"; done
forkers=""
for i in $(seq {FORKERS}); do "$0" storm {share} > /dev/null 2>&1 & forkers="$forkers $!"; done
failed=0
for p in $forkers; do wait $p || failed=1; done
kill $hogs; wait
exit $failed"#,
        hogs = HOGS_PER_CPU * cpus,
        share = PROCESSES / FORKERS,
    );
    let command = cgroup.wrap(&["sh".into(), "-c".into(), script, storm]);
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .expect("run the burst");
    let trace = tracer.stop();
    assert!(status.success(), "the burst failed: {status}");
    trace.assert_clean();
    // Every lifecycle of the storm was seen: at least a fork, an exit and
    // a free each.
    let events: u64 = trace.totals["events"]
        .as_object()
        .map(|kinds| kinds.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    assert!(
        events >= 3 * u64::from(PROCESSES / FORKERS * FORKERS),
        "{events} events: {}",
        trace.totals
    );
}
