//! `--probe-log`: the programs' messages about their rare paths (a failed
//! kernel or user read, a full map), sent with aya-log, printed on stderr as
//! one line each: `reaper-trace: probe: PROGRAM: LEVEL: MESSAGE`.
//!
//! A thread of its own reads them, so that they need nothing from the event
//! loop and keep coming while it is busy. Off (the default), none of this
//! exists and the programs' logging code is removed by the verifier.

use std::{
    io::{PipeWriter, Write as _},
    os::fd::{AsFd as _, AsRawFd as _},
    thread::JoinHandle,
};

use aya::Ebpf;
use aya_log::EbpfLogger;
use log::{Level, Log, Metadata, Record};

use crate::trace::escape::escape;

/// What begins every line.
pub const PREFIX: &str = "reaper-trace: probe: ";

/// The reader of the programs' log buffer. Dropping it prints what is left
/// in the buffer and stops the thread.
pub struct ProbeLog {
    /// Closed on drop: that wakes the thread and tells it to finish.
    stop: Option<PipeWriter>,
    thread: Option<JoinHandle<()>>,
}

impl ProbeLog {
    /// Takes the log buffer (map `AYA_LOGS`) out of `ebpf` and starts
    /// printing what arrives there. Call it before the programs are loaded:
    /// they refer to the map, whose file descriptor this keeps open.
    pub fn start(ebpf: &mut Ebpf) -> Result<ProbeLog, String> {
        let logger = EbpfLogger::init_with_logger(ebpf, StderrLog).map_err(|e| e.to_string())?;
        let (stop_rx, stop_tx) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("probe-log".into())
            .spawn(move || read_until_stopped(logger, stop_rx))
            .map_err(|e| format!("starting its reader thread: {e}"))?;
        Ok(ProbeLog {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for ProbeLog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Prints records as they arrive, until `stop` is closed; then prints
/// whatever is left.
fn read_until_stopped(mut logger: EbpfLogger<StderrLog>, stop: std::io::PipeReader) {
    let mut fds = [
        libc::pollfd {
            fd: logger.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: two valid pollfd entries, both fds open for the loop's life.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if ready < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
        logger.flush();
        if fds[1].revents != 0 {
            break;
        }
    }
    logger.flush();
}

/// A `log::Log` that writes each record to stderr as one line.
struct StderrLog;

impl Log for StderrLog {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        // One write per line, so that lines from other threads never mix in.
        let _ = std::io::stderr().lock().write_all(line(record).as_bytes());
    }

    fn flush(&self) {}
}

/// `PREFIX PROGRAM: LEVEL: MESSAGE\n`, with control characters escaped: a
/// message can hold text the kernel read from a traced process.
fn line(record: &Record) -> String {
    let level = match record.level() {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    };
    format!(
        "{PREFIX}{}: {level}: {}\n",
        escape(record.target()),
        escape(&record.args().to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_escaped_line_per_record() {
        let line = line(
            &Record::builder()
                .level(Level::Warn)
                .target("sys_exit_wait")
                .args(format_args!("reading at 0x10 failed:\nerrno 14\x1b[2J"))
                .build(),
        );
        assert_eq!(
            line,
            "reaper-trace: probe: sys_exit_wait: warning: reading at 0x10 failed:\\x0aerrno 14\\x1b[2J\n"
        );
    }
}
