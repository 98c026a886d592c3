//! tracefs for the peers. bpftrace and libbpf-tools attach classic
//! tracepoints, which they find by the ids tracefs lists; a fresh machine
//! has it unmounted (reaper-trace itself needs none), and bpftrace then fails
//! with `tracepoint not found`. The bench mounts it for the peers when it is
//! absent, and unmounts what it mounted when it ends.

use std::{ffi::CString, path::Path};

/// Where the kernel expects tracefs, and where the peers look first.
const TRACING: &str = "/sys/kernel/tracing";

/// tracefs, for as long as the bench needs it.
pub struct Tracefs {
    /// Whether the bench mounted it (and so unmounts it on drop).
    mounted_here: bool,
}

impl Tracefs {
    /// tracefs as found, or mounted at /sys/kernel/tracing. The error says
    /// why it could not be, for the line that skips the peers.
    pub fn for_peers() -> Result<Tracefs, String> {
        if is_mounted() {
            return Ok(Tracefs {
                mounted_here: false,
            });
        }
        let (source, target) = (c("tracefs"), c(TRACING));
        // SAFETY: NUL-terminated strings that outlive the call; no data.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                source.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "tracefs is not mounted and mounting it at {TRACING} failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        eprintln!("xtask bench: mounted tracefs at {TRACING} for the peers (unmounted at the end)");
        Ok(Tracefs { mounted_here: true })
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if !self.mounted_here {
            return;
        }
        let target = c(TRACING);
        // SAFETY: a NUL-terminated path that outlives the call.
        if unsafe { libc::umount(target.as_ptr()) } != 0 {
            eprintln!(
                "xtask bench: warning: could not unmount the tracefs it mounted at {TRACING}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// Whether tracefs is mounted where the peers look for it (its own mount
/// point, or debugfs's `tracing` directory).
fn is_mounted() -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    mounts.lines().any(|line| {
        // `id parent major:minor root mount-point options ... - fstype ...`
        let mut fields = line.split(' ');
        let point = fields.nth(4).unwrap_or("");
        let fstype = line.split(" - ").nth(1).and_then(|r| r.split(' ').next());
        fstype == Some("tracefs")
            && (point == TRACING || point == "/sys/kernel/debug/tracing")
            && Path::new(point).join("events").is_dir()
    })
}
