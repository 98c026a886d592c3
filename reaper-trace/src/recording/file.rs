//! Writing a recording to disk while tracing: bounded buffering (one block),
//! flushed when a block fills and at least once a second, created mode 0600
//! because it holds command lines.
//!
//! The file is always a new one of ours: never opened through a symlink or
//! a hard link someone planted, never an existing file truncated or
//! chmodded. An existing path is refused, or with `--force` replaced by a
//! rename, which replaces the link itself and never touches its target.

use std::{
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{format::*, writer};
use crate::host::new_file;

/// How often a partly filled block is written anyway.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The path exists (a file, a link, anything): it is left as it is.
    #[error(
        "{} already exists; choose another path, or pass --force to replace it",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error("cannot create recording {}: {source}; choose a writable path", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "writing recording {}: {source}; what was written before stays readable with `reaper-trace report`",
        path.display()
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
    /// Creates `path` new with mode 0600 and writes the header. With
    /// `replace`, an existing `path` is replaced (the link itself when it
    /// is one); without, it is an error and nothing is touched.
    pub fn create(path: &Path, meta: &Meta, replace: bool) -> Result<Recorder, RecorderError> {
        let created = if replace {
            create_replacing(path)
        } else {
            new_file::create_new(path, 0o600)
        };
        let file = created.map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => RecorderError::Exists {
                path: path.to_owned(),
            },
            _ => RecorderError::Create {
                path: path.to_owned(),
                source,
            },
        })?;
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

/// Refuses an existing `path` (unless `replace`), before tracing starts:
/// the same check as [`Recorder::create`] makes, early, so that nothing is
/// started for a run that cannot record.
pub fn refuse_existing(path: &Path, replace: bool) -> Result<(), RecorderError> {
    if !replace && path.symlink_metadata().is_ok() {
        return Err(RecorderError::Exists {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// A new file renamed over `path`, which replaces whatever `path` was (a
/// link is replaced, its target left alone).
fn create_replacing(path: &Path) -> io::Result<File> {
    let (temp, file) = new_file::create_beside(path, 0o600)?;
    new_file::rename_over(&temp, path)?;
    Ok(file)
}

/// This machine's identity for the header.
pub fn machine_meta() -> (String, String, String) {
    // SAFETY: uname fills a zeroed struct.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c.to_ne_bytes()[0])
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
