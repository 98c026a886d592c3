//! Logs of the rare paths (a failed kernel or user read, a full map) through
//! aya-log, only when the loader set `Config::probe_log` (`--probe-log`).
//!
//! `CONFIG` is a read-only global, frozen before the programs load, so the
//! verifier knows the switch's value: when it is off, the logging code is
//! dead and the verifier removes it. The logging itself is in functions that
//! are never inlined (BPF-to-BPF calls), reached through cold paths: a call
//! is all a probe holds on an error path, so the probes' hot paths keep
//! their code and their small stack frames.
//!
//! What is logged: a kernel read through a pointer that was itself read from
//! kernel memory (a wrong offset shows up there first, as a failed read), a
//! read of user memory, and a failed map insert. Not logged: reads of the
//! tracepoint's record, of `current` and of the tasks a tracepoint hands
//! over, at offsets inside the object: those cannot fail, and each logged
//! site costs the code around it a few instructions.

use crate::config::conf;

/// Whether the rare paths are logged.
#[inline(always)]
fn enabled() -> bool {
    conf!(probe_log) != 0
}

/// `WHAT failed: errno N`, from program `probe` (the log's target). `errno`
/// is the helper's negative return value.
#[inline(always)]
pub fn failed(probe: &'static str, what: &'static str, errno: i64) {
    core::hint::cold_path();
    log_failed(probe, what, errno);
}

/// `WHAT at 0xADDR failed`, for a read of user memory (always EFAULT).
#[inline(always)]
pub fn failed_at(probe: &'static str, what: &'static str, addr: u64) {
    core::hint::cold_path();
    log_failed_at(probe, what, addr);
}

// Not `#[cold]`: that puts them in `.text.unlikely.`, where aya 0.14 does not
// find the targets of calls (it resolves them in `.text`).
#[inline(never)]
fn log_failed(probe: &'static str, what: &'static str, errno: i64) {
    if enabled() {
        aya_log_ebpf::warn!(&(), target: probe, "{} failed: errno {}", what, -errno);
    }
}

#[inline(never)]
fn log_failed_at(probe: &'static str, what: &'static str, addr: u64) {
    if enabled() {
        aya_log_ebpf::warn!(&(), target: probe, "{} at 0x{:x} failed", what, addr);
    }
}

/// Logs the error of a helper call before the caller swallows or returns it.
pub trait OrLog: Sized {
    /// `what` says what was attempted, e.g. "reading task->signal".
    fn or_log(self, probe: &'static str, what: &'static str) -> Self;
}

impl<T> OrLog for Result<T, i64> {
    #[inline(always)]
    fn or_log(self, probe: &'static str, what: &'static str) -> Self {
        if let Err(errno) = &self {
            failed(probe, what, *errno);
        }
        self
    }
}
