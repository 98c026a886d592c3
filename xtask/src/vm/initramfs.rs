//! The initramfs each VM boots: busybox, the static binaries, /init and
//! the checks, as a newc cpio archive.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::{checks_script, command_output};
use crate::dist::StaticBins;

/// A newc ("070701") cpio archive, the format the kernel unpacks as an
/// initramfs. Written here rather than with cpio(1) so that /dev/console
/// (needed before init can mount devtmpfs) is a device node without
/// mknod or root, and the archive does not depend on file times or owners.
#[derive(Default)]
pub struct Cpio {
    bytes: Vec<u8>,
    next_ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_ino += 1;
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, (0, 0), data);
    }

    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), &[]);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.bytes
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
RT=/bin/reaper-trace SC=/bin/scenario TMP=/tmp
. /checks.sh
# Closing the console's last descriptor waits until the serial port has
# sent everything: powering off at once could cut the tail, RT-DONE.
exec </dev/null >/dev/null 2>&1
poweroff -f
"#;

/// busybox-static's binary: it needs no loader or library in the archive.
const BUSYBOX: &str = "/bin/busybox";

/// target/vm/initrd.gz: busybox, the static tool and scenario programs,
/// /init and the checks. Rebuilt every run (about a second): the binaries
/// may have changed.
pub(super) fn write_initramfs(bins: &StaticBins, dir: &Path) -> anyhow::Result<PathBuf> {
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
        &read(Path::new(BUSYBOX)).context("busybox-static is needed (cargo xtask setup)")?,
    );
    cpio.file("bin/reaper-trace", 0o755, &read(&bins.tool)?);
    cpio.file("bin/scenario", 0o755, &read(&bins.scenario)?);
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.file("checks.sh", 0o644, checks_script().as_bytes());
    let archive = dir.join("initrd.cpio");
    fs::write(&archive, cpio.finish()).with_context(|| format!("writing {}", archive.display()))?;
    // -n: no name or time in the header, so equal inputs give equal bytes.
    command_output(Command::new("gzip").args(["-n", "-f"]).arg(&archive))?;
    Ok(dir.join("initrd.cpio.gz"))
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
    }
}
