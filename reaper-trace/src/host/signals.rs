//! The signal state the command is started with: the one reaper-trace
//! itself inherited, as a shell would pass it on.
//!
//! Rust's runtime sets SIGPIPE to ignored before `main`, and the tracer
//! installs handlers and may block signals. Handlers go back to the default
//! at exec, but an ignored signal stays ignored and the mask is inherited,
//! so a command forked as is would not die of a broken pipe (`yes | head -1`
//! would exit 1 instead of 141). POSIX shells pass on the signals ignored
//! when they started (`nohup`'s SIGHUP) and the mask; so does the command
//! here: the state is captured before Rust's runtime changes it (the binary
//! calls [`capture_at_start`] from `.init_array`) and restored in the forked
//! child before exec.

use std::sync::OnceLock;

/// The highest signal number on Linux (SIGRTMAX).
const MAX_SIGNAL: i32 = 64;

/// What reaper-trace inherited: the ignored signals and the mask.
#[derive(Clone, Copy)]
pub struct Inherited {
    /// Bit `n - 1` set when signal `n` was ignored.
    ignored: u64,
    mask: libc::sigset_t,
}

static AT_START: OnceLock<Inherited> = OnceLock::new();

/// Reads the signal state as it is now. Called from `.init_array`, before
/// Rust's runtime ignores SIGPIPE and while only one thread exists.
pub fn capture_at_start() {
    AT_START.get_or_init(|| read_now(true));
}

/// The state captured at start; without a capture (the library used
/// from elsewhere), the state now, SIGPIPE taken as not ignored (Rust's
/// runtime ignored it, not the parent).
pub fn inherited() -> Inherited {
    *AT_START.get_or_init(|| read_now(false))
}

fn read_now(keep_sigpipe: bool) -> Inherited {
    let mut ignored = 0u64;
    for signo in 1..=MAX_SIGNAL {
        // SAFETY: a query only (no new action); `old` is a valid out pointer.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        let queried = unsafe { libc::sigaction(signo, std::ptr::null(), &mut old) } == 0;
        if queried && old.sa_sigaction == libc::SIG_IGN && (keep_sigpipe || signo != libc::SIGPIPE)
        {
            ignored |= 1 << (signo - 1);
        }
    }
    // SAFETY: a query only; `mask` is a valid out pointer.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) };
    Inherited { ignored, mask }
}

impl Inherited {
    /// Whether `signo` was ignored at start.
    pub fn ignored(&self, signo: i32) -> bool {
        (1..=MAX_SIGNAL).contains(&signo) && self.ignored & (1 << (signo - 1)) != 0
    }

    /// In a forked child before exec: every signal back to the default
    /// action, but those ignored at start, and the mask as it was at start.
    /// Only the actions that differ are set: the child is already followed
    /// by the probes, which would record a SIGCHLD action set to what it was
    /// as a change made by reaper-trace.
    ///
    /// # Safety
    /// Only async-signal-safe calls (sigaction, sigprocmask) on memory of
    /// this struct: fit for the child of a fork in a threaded process.
    pub unsafe fn restore_in_child(&self) {
        for signo in 1..=MAX_SIGNAL {
            if signo == libc::SIGKILL || signo == libc::SIGSTOP {
                continue;
            }
            let wanted = if self.ignored(signo) {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            };
            // SAFETY: a zeroed sigaction is valid (empty sa_mask, no flags);
            // a query (no new action) changes nothing.
            let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
            let queried = unsafe { libc::sigaction(signo, std::ptr::null(), &mut current) } == 0;
            if !queried || current.sa_sigaction == wanted {
                continue;
            }
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = wanted;
            // The C library's own signals (glibc's 32 and 33) refuse with
            // EINVAL; they are no one else's business anyway.
            unsafe { libc::sigaction(signo, &action, std::ptr::null_mut()) };
        }
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_is_ignored_now_but_not_the_runtimes_sigpipe() {
        // The test harness, like any Rust program, runs with SIGPIPE ignored.
        assert!(read_now(true).ignored(libc::SIGPIPE));
        assert!(!read_now(false).ignored(libc::SIGPIPE));
        assert!(!read_now(true).ignored(libc::SIGTERM));
        assert!(!read_now(true).ignored(0));
        assert!(!read_now(true).ignored(65));
    }
}
