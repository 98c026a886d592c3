//! Writing a recording to disk while tracing: bounded buffering (one block),
//! flushed when a block fills and at least once a second, created mode 0600
//! because it holds command lines.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{format::*, writer};

/// How often a partly filled block is written anyway.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("cannot create recording {path}: {source}; choose a writable path")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "writing recording {path}: {source}; what was written before stays readable with `reaper-trace report`"
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Recorder {
    path: PathBuf,
    file: File,
    block: writer::BlockBuilder,
    last_flush: Instant,
    records: u64,
    blocks: u64,
}

impl Recorder {
    /// Creates (or truncates) `path` with mode 0600 and writes the header.
    pub fn create(path: &Path, meta: &Meta) -> Result<Recorder, RecorderError> {
        let create = |source| RecorderError::Create {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(create)?;
        // An existing file keeps its mode through open: tighten it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(create)?;
        let mut recorder = Recorder {
            path: path.to_owned(),
            file,
            block: writer::BlockBuilder::default(),
            last_flush: Instant::now(),
            records: 0,
            blocks: 0,
        };
        recorder.write(&writer::header(meta))?;
        Ok(recorder)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), RecorderError> {
        self.file
            .write_all(bytes)
            .map_err(|source| RecorderError::Write {
                path: self.path.clone(),
                source,
            })
    }

    pub fn push(&mut self, record: &[u8]) -> Result<(), RecorderError> {
        self.block.push(record);
        self.records += 1;
        if self.block.is_full() {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Writes the pending block if it is older than `FLUSH_EVERY`.
    pub fn tick(&mut self) -> Result<(), RecorderError> {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()
        } else {
            Ok(())
        }
    }

    pub fn flush(&mut self) -> Result<(), RecorderError> {
        self.last_flush = Instant::now();
        if self.block.is_empty() {
            return Ok(());
        }
        let block = self.block.take_block();
        self.blocks += 1;
        self.write(&block)
    }

    /// Writes the last block and the trailer.
    pub fn finish(mut self, mut trailer: Trailer) -> Result<(), RecorderError> {
        self.flush()?;
        trailer.records = self.records;
        trailer.blocks = self.blocks;
        self.write(&writer::trailer(&trailer))?;
        self.file
            .sync_data()
            .map_err(|source| RecorderError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

/// This machine's identity for the header.
pub fn machine_meta() -> (String, String, String) {
    // SAFETY: uname fills a zeroed struct.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let (release, host) = if unsafe { libc::uname(&mut uts) } == 0 {
        (field(&uts.release), field(&uts.nodename))
    } else {
        Default::default()
    };
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    (release, boot_id, host)
}
