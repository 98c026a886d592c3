//! Running a command to trace: spawned held at a gate until the kernel
//! follows its pid, so not one of its events is missed; and reaped, with
//! every orphan of its tree, by this process acting as a child subreaper.

use std::{
    ffi::CString,
    io,
    os::unix::{ffi::OsStringExt, fs::PermissionsExt},
    path::{Path, PathBuf},
};

use tokio::sync::mpsc;

/// A reaped child of ours.
#[derive(Clone, Copy, Debug)]
pub struct Reaped {
    pub pid: u32,
    pub status: i32,
}

/// What the reaper thread reports.
#[derive(Clone, Copy, Debug)]
pub enum ReaperEvent {
    Reaped(Reaped),
    /// No children left: the command and every orphan it left are gone.
    Drained,
}

/// Makes this process the reaper of orphans in its subtree, so that the
/// traced tree never reaches PID 1 (which reaps lazily).
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A spawned command waiting at its gate.
pub struct GatedChild {
    pub pid: u32,
    gate: Option<std::fs::File>,
}

impl GatedChild {
    /// Lets the command exec.
    pub fn release(&mut self) -> io::Result<()> {
        use std::io::Write as _;
        if let Some(mut gate) = self.gate.take() {
            gate.write_all(b"g")?;
        }
        Ok(())
    }
}

/// Finds `program` the way a shell would: as given when it has a slash,
/// else in `$PATH`.
fn resolve(program: &str) -> io::Result<PathBuf> {
    let found = |p: &Path| {
        p.is_file()
            && p.metadata()
                .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if found(&path) {
            Ok(path)
        } else {
            Err(io::Error::other(format!(
                "cannot run {program}: no such executable"
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| found(candidate))
        .ok_or_else(|| io::Error::other(format!("cannot run {program}: not found in $PATH")))
}

/// Forks `argv`, holding the child before exec until `release`.
///
/// Not `std::process::Command`: its `spawn` waits for the exec to happen,
/// which here only happens after the caller has followed the pid.
pub fn spawn_gated(argv: &[String], run_as: Option<(u32, u32)>) -> io::Result<GatedChild> {
    let (program, _) = argv
        .split_first()
        .ok_or_else(|| io::Error::other("empty command"))?;
    let path = CString::new(resolve(program)?.into_os_string().into_vec())?;
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let failure = format!(
        "reaper-trace: cannot exec {}\n",
        crate::trace::escape::escape(program)
    );
    let drop_failure = "reaper-trace: cannot drop privileges for the command\n";

    let mut fds = [0i32; 2];
    // SAFETY: valid out array; close-on-exec so the command never sees them.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (read_end, write_end) = (fds[0], fds[1]);
    // SAFETY: the child only makes async-signal-safe calls (close, read,
    // execv, write, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let err = io::Error::last_os_error();
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(read_end);
            libc::close(write_end);
        }
        return Err(err);
    }
    if pid == 0 {
        unsafe {
            libc::close(write_end);
            let mut byte = 0u8;
            loop {
                let n = libc::read(read_end, (&raw mut byte).cast(), 1);
                // EOF: the tracer went away before following us; do not run untraced.
                if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                    libc::_exit(126);
                }
                if n == 1 {
                    break;
                }
            }
            if let Some((uid, gid)) = run_as
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                libc::write(2, drop_failure.as_ptr().cast(), drop_failure.len());
                libc::_exit(126);
            }
            libc::execv(path.as_ptr(), arg_ptrs.as_ptr());
            libc::write(2, failure.as_ptr().cast(), failure.len());
            libc::_exit(127);
        }
    }
    // SAFETY: our copy of the read end is no longer needed; write_end is a
    // valid fd we own from here on.
    unsafe { libc::close(read_end) };
    let gate = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(write_end) };
    Ok(GatedChild {
        pid: pid as u32,
        gate: Some(gate),
    })
}

/// Reaps every child of this process, blocking, on a thread of its own, and
/// reports each one; ends with `Drained` when none is left.
pub fn spawn_reaper() -> mpsc::UnboundedReceiver<ReaperEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        loop {
            let mut status = 0;
            // SAFETY: valid out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
            if pid > 0 {
                let _ = tx.send(ReaperEvent::Reaped(Reaped {
                    pid: pid as u32,
                    status,
                }));
                continue;
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            let _ = tx.send(ReaperEvent::Drained);
            return;
        }
    });
    rx
}

/// The shell-style exit code for a wait status.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}
