//! Workloads for the reaper-trace integration tests.
//!
//! `scenario <name> [args...]` runs one process-lifecycle workload under the
//! tracer. The tracer owns stdout, so a scenario never writes there: it
//! reports what it observed as `TRUTH {json}` lines on stderr, which the
//! tests compare with the tracer's events. Exit codes: 0 success, 1 a
//! syscall failed, 2 bad command line, 3 a polled condition never came true.

// A binary's crate root resolves `mod` next to itself (src/bin/), so the
// per-family modules under src/bin/scenario/ need explicit paths.

#[path = "scenario/basic.rs"]
mod basic;
#[path = "scenario/clone.rs"]
mod clone;
#[path = "scenario/explain.rs"]
mod explain;
#[path = "scenario/handlers.rs"]
mod handlers;
#[path = "scenario/race.rs"]
mod race;
#[path = "scenario/reaping.rs"]
mod reaping;
#[path = "scenario/shutdown.rs"]
mod shutdown;
#[path = "scenario/snapshot.rs"]
mod snapshot;
#[path = "scenario/threads.rs"]
mod threads;
#[path = "scenario/util.rs"]
mod util;
#[path = "scenario/workload.rs"]
mod workload;

use util::{Args, EXIT_USAGE, fail};

struct Scenario {
    name: &'static str,
    /// Optional positional arguments, in order.
    params: &'static [&'static str],
    run: fn(&Args),
}

const fn scenario(name: &'static str, params: &'static [&'static str], run: fn(&Args)) -> Scenario {
    Scenario { name, params, run }
}

const SCENARIOS: &[Scenario] = &[
    scenario("noop", &[], basic::noop),
    scenario("exit42", &[], basic::exit42),
    scenario("sigkill", &[], basic::sigkill),
    scenario("sigign", &[], basic::sigign),
    scenario("waitid", &[], basic::waitid),
    scenario("thread_exit", &[], basic::thread_exit),
    scenario("thread_exec", &[], basic::thread_exec),
    scenario("tree", &[], basic::tree),
    scenario("noreap", &["N"], reaping::noreap),
    scenario("noreap_hold", &["N", "HOLD_MS"], reaping::noreap_hold),
    scenario("noreap_raw", &["N"], clone::noreap_raw),
    scenario("sigign_many", &["N"], reaping::sigign_many),
    scenario("nocldwait", &["N"], reaping::nocldwait),
    scenario("handler_once", &["N"], handlers::handler_once),
    scenario("handler_loop", &["N"], handlers::handler_loop),
    scenario("efault_sigaction", &[], handlers::efault_sigaction),
    scenario(
        "signalfd_stall",
        &["N", "STALL_MS"],
        handlers::signalfd_stall,
    ),
    scenario("leader_exit", &["WORKER_MS"], threads::leader_exit),
    scenario("popen", &["K"], reaping::popen),
    scenario("spawn_drop", &["HOLD_MS"], reaping::spawn_drop),
    scenario("waitpid_other", &["HOLD_MS"], reaping::waitpid_other),
    scenario("pid_reuse", &["HOLD_MS"], clone::pid_reuse),
    scenario("threads", &["N"], threads::threads),
    scenario("exit_signal0", &[], clone::exit_signal0),
    scenario("storm", &["N"], workload::storm),
    scenario("syscalls", &["N"], workload::syscalls),
    scenario(
        "syscall_batches",
        &["BATCHES", "CALLS"],
        workload::syscall_batches,
    ),
    scenario("double_fork", &[], reaping::double_fork),
    scenario("zombie_hold", &["HOLD_MS"], reaping::zombie_hold),
    scenario("demo", &[], workload::demo),
    scenario("peek", &["HOLD_MS"], reaping::peek),
    scenario("stopped", &["LATE_MS"], reaping::stopped),
    scenario("crash_shutdown", &["LINGER_MS"], shutdown::crash_shutdown),
    scenario("exec_after_sigchld", &["N"], shutdown::exec_after_sigchld),
    scenario("timeout_kill", &["ROUNDS", "LAZY_MS"], race::timeout_kill),
    scenario(
        "fork_exit_race",
        &["ROUNDS", "LAZY_MS"],
        race::fork_exit_race,
    ),
    scenario("renamed_parent", &["HOLD_MS"], explain::renamed_parent),
    scenario("thread_sigchld", &[], explain::thread_sigchld),
    scenario("thread_named_before", &[], explain::thread_named_before),
    scenario("clone_sigusr1", &["SIGCHLD_IGN"], explain::clone_sigusr1),
    scenario("pidfd_hold", &["HOLD_MS", "WAIT"], explain::pidfd_hold),
    scenario("exec_after_fork", &[], explain::exec_after_fork),
    scenario(
        "blocked_pending",
        &["N", "THREADS"],
        snapshot::blocked_pending,
    ),
];

fn usage() -> String {
    let mut text = String::from("usage: scenario <name> [args...]\nscenarios:\n");
    for s in SCENARIOS {
        text.push_str("  ");
        text.push_str(s.name);
        for p in s.params {
            text.push_str(&format!(" [{p}]"));
        }
        text.push('\n');
    }
    text
}

fn main() {
    let mut argv = std::env::args().skip(1);
    let Some(name) = argv.next() else {
        fail(EXIT_USAGE, &usage());
    };
    let Some(scenario) = SCENARIOS.iter().find(|s| s.name == name) else {
        fail(
            EXIT_USAGE,
            &format!("unknown scenario {name:?}\n{}", usage()),
        );
    };
    let values: Vec<String> = argv.collect();
    if values.len() > scenario.params.len() {
        fail(
            EXIT_USAGE,
            &format!("{name}: too many arguments: {values:?}"),
        );
    }
    (scenario.run)(&Args::new(scenario.name, values));
}
