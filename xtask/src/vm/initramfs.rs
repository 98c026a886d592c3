//! The initramfs each VM boots: busybox, the static binaries, /init and
//! the checks, as a newc cpio archive.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;
use cpio::newc;

use super::{checks_script, command_output};
use crate::dist::StaticBins;

/// A newc ("070701") cpio archive, the format the kernel unpacks as an
/// initramfs, written with the `cpio` crate rather than cpio(1) so that
/// /dev/console (needed before init can mount devtmpfs) is a device node
/// without mknod or root, and the archive does not depend on file times or
/// owners (every entry is root's, at time 0).
#[derive(Default)]
pub struct Cpio {
    bytes: Vec<u8>,
    next_ino: u32,
}

impl Cpio {
    fn entry(&mut self, entry: newc::Builder, data: &[u8]) {
        self.next_ino += 1;
        let mut writer = entry
            .ino(self.next_ino)
            .write(&mut self.bytes, data.len() as u32);
        // Writing into memory cannot fail.
        writer.write_all(data).expect("an in-memory cpio entry");
        writer.finish().expect("an in-memory cpio entry");
    }

    pub fn dir(&mut self, name: &str) {
        // A directory's own "." and its entry in the parent.
        self.entry(newc::Builder::new(name).mode(0o040755).nlink(2), &[]);
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(newc::Builder::new(name).mode(0o100000 | mode), data);
    }

    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        let node = newc::Builder::new(name)
            .mode(0o020600)
            .rdev_major(major)
            .rdev_minor(minor);
        self.entry(node, &[]);
    }

    pub fn finish(self) -> Vec<u8> {
        newc::trailer(self.bytes).expect("an in-memory cpio trailer")
    }
}

/// PID 1 of the initramfs. The tool needs no more than proc, sysfs and
/// devtmpfs (it reads nothing from tracefs). cgroup2 only serves --cgroup and
/// --container, which the checks do not use; it is mounted anyway because
/// every real host has it, and without it the findings' cgroup attribution
/// takes a fallback path (an empty cgroup path) no host takes.
const INIT: &str = r#"#!/bin/busybox sh
# busybox --install resolves its own path through /proc/self/exe.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
RT=/bin/reaper-trace SC=/bin/scenario C32=/bin/compat32 TMP=/tmp
. /checks.sh
# Closing the console's last descriptor waits until the serial port has
# sent everything: powering off at once could cut the tail, RT-DONE.
exec </dev/null >/dev/null 2>&1
poweroff -f
"#;

/// busybox-static's binary: it needs no loader or library in the archive.
/// target/vm/initrd.gz: busybox, the static tool and scenario programs, the
/// 32-bit compat program, /init and the checks. Rebuilt every run (about a
/// second): the binaries may have changed.
pub(super) fn write_initramfs(
    bins: &StaticBins,
    compat: &Path,
    busybox: &Path,
    dir: &Path,
    name: &str,
) -> anyhow::Result<PathBuf> {
    let read = |p: &Path| fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut cpio = Cpio::default();
    // Parents first: the kernel's unpacker does not create them.
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp",
    ] {
        cpio.dir(d);
    }
    cpio.char_dev("dev/console", 5, 1);
    cpio.file(
        "bin/busybox",
        0o755,
        &read(busybox).context("busybox-static is needed (cargo xtask setup)")?,
    );
    cpio.file("bin/reaper-trace", 0o755, &read(&bins.tool)?);
    cpio.file("bin/scenario", 0o755, &read(&bins.scenario)?);
    cpio.file("bin/compat32", 0o755, &read(compat)?);
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.file("checks.sh", 0o644, checks_script().as_bytes());
    let archive = dir.join(format!("{name}.cpio"));
    fs::write(&archive, cpio.finish()).with_context(|| format!("writing {}", archive.display()))?;
    // -n: no name or time in the header, so equal inputs give equal bytes.
    command_output(Command::new("gzip").args(["-n", "-f"]).arg(&archive))?;
    Ok(dir.join(format!("{name}.cpio.gz")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let mut c = Cpio::default();
        c.dir("dev");
        c.char_dev("dev/console", 5, 1);
        c.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = c.finish();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"07070100000001000041ed"));
        let text = String::from_utf8_lossy(&bytes);
        // rdev 5:1 of the console node.
        assert!(text.contains("0000000500000001"));
        assert!(text.contains("init\0"));
        assert!(text.contains("#!/bin/sh\n"));
        assert!(text.contains("TRAILER!!!\0"));
        assert_eq!(text.matches("070701").count(), 4);

        // What a reader of the format sees: each entry's name, type and node.
        let mut rest = &bytes[..];
        let mut seen = Vec::new();
        loop {
            let entry = newc::Reader::new(rest).unwrap();
            if entry.entry().is_trailer() {
                break;
            }
            let e = entry.entry();
            seen.push((
                e.name().to_owned(),
                e.ino(),
                e.mode(),
                e.rdev_major(),
                e.rdev_minor(),
            ));
            rest = entry.finish().unwrap();
        }
        assert_eq!(
            seen,
            [
                ("dev".to_owned(), 1, 0o040755, 0, 0),
                ("dev/console".to_owned(), 2, 0o020600, 5, 1),
                ("init".to_owned(), 3, 0o100755, 0, 0),
            ]
        );
    }
}
