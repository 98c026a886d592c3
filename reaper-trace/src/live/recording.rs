//! The recording while tracing, when one is asked for. A write that fails
//! (a full disk) does not stop the trace: the command under it must not be
//! left running untraced, nor be changed by the tracer's own disk. The
//! recording stops there, with one line on stderr, and the run reports the
//! error at its end.

use crate::{
    pipeline::Visitor,
    recording::{
        Trailer,
        file::{Recorder, RecorderError},
    },
};

#[derive(Default)]
pub struct Recording {
    recorder: Option<Recorder>,
    /// The first write that failed; nothing was written after it.
    failed: Option<RecorderError>,
}

impl Recording {
    pub fn new(recorder: Option<Recorder>) -> Recording {
        Recording {
            recorder,
            failed: None,
        }
    }

    /// Whether records are still written.
    pub fn is_active(&self) -> bool {
        self.recorder.is_some()
    }

    /// Whether a write failed.
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    pub fn push(&mut self, record: &[u8]) {
        if let Some(recorder) = &mut self.recorder {
            let result = recorder.push(record);
            self.check(result);
        }
    }

    /// Writes the pending block when it is due.
    pub fn tick(&mut self) {
        if let Some(recorder) = &mut self.recorder {
            let result = recorder.tick();
            self.check(result);
        }
    }

    fn check(&mut self, result: Result<(), RecorderError>) {
        if let Err(e) = result {
            eprintln!("reaper-trace: {e}; tracing goes on without the recording");
            self.recorder = None;
            self.failed = Some(e);
        }
    }

    /// Writes the last block and the trailer. The error is the first
    /// write that failed, during the run or now.
    pub fn finish(self, trailer: Trailer) -> Result<(), RecorderError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.recorder {
            Some(recorder) => recorder.finish(trailer),
            None => Ok(()),
        }
    }
}

/// The recorder is the output that keeps every record as it came.
impl Visitor for Recording {
    fn record(&mut self, record: &[u8]) {
        self.push(record);
    }

    fn keeps_records(&self) -> bool {
        self.is_active()
    }

    /// Writes the pending block when it is due.
    fn tick(
        &mut self,
        _: u64,
        _: &crate::analysis::Analyzer,
        _: &crate::trace::totals::Totals,
        _: &mut crate::pipeline::Forget,
    ) -> std::io::Result<()> {
        Recording::tick(self);
        Ok(())
    }
}
