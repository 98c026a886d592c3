//! Running a command to trace: spawned held at a gate until the kernel
//! follows its pid, so not one of its events is missed; and reaped, with
//! every orphan of its tree, by this process acting as a child subreaper.

use std::{
    ffi::{CString, OsStr, OsString},
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{
            ffi::{OsStrExt, OsStringExt},
            fs::PermissionsExt,
        },
    },
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
    /// Signals it by process, not by a pid that could be reused once the
    /// reaper thread has reaped it.
    pub pidfd: Option<OwnedFd>,
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
fn resolve(program: &OsStr) -> io::Result<PathBuf> {
    let found = |p: &Path| {
        p.is_file()
            && p.metadata()
                .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    };
    let shown = crate::trace::escape::escape_bytes(program.as_bytes());
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return if found(&path) {
            Ok(path)
        } else {
            Err(io::Error::other(format!(
                "cannot run {shown}: no such executable"
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| found(candidate))
        .ok_or_else(|| io::Error::other(format!("cannot run {shown}: not found in $PATH")))
}

/// Forks `argv`, holding the child before exec until `release`.
///
/// Not `std::process::Command`: its `spawn` waits for the exec to happen,
/// which here only happens after the caller has followed the pid. The
/// arguments are bytes, passed on unchanged; the command starts with the
/// signal dispositions and mask reaper-trace inherited (see `signals`).
pub fn spawn_gated(argv: &[OsString], run_as: Option<(u32, u32)>) -> io::Result<GatedChild> {
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
        crate::trace::escape::escape_bytes(program.as_bytes())
    );
    let signals = super::signals::inherited();
    let drop_failure = "reaper-trace: cannot drop privileges for the command\n";

    let mut fds = [0i32; 2];
    // SAFETY: valid out array; close-on-exec so the command never sees them.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (read_end, write_end) = (fds[0], fds[1]);
    // SAFETY: the child only makes async-signal-safe calls (sigaction,
    // sigprocmask, close, read, execv, write, _exit) on memory prepared
    // before the fork.
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
            // First: a signal sent while it waits at the gate acts on it as
            // on the command, never through a handler of ours.
            signals.restore_in_child();
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
    let gate = unsafe { std::fs::File::from_raw_fd(write_end) };
    // Opened while the child waits at the gate, before anything reaps it:
    // the pidfd refers to this process.
    // SAFETY: plain syscall; a non-negative result is an fd we own.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as i32) });
    Ok(GatedChild {
        pid: pid as u32,
        pidfd,
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

/// Sends `signal` to the command through its pidfd (without one, by pid).
/// An error when it is gone already, which the caller may ignore.
pub fn signal_command(pid: u32, pidfd: Option<&OwnedFd>, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscalls with integer arguments and a null siginfo.
    let rc = match pidfd {
        Some(fd) => unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        },
        None => i64::from(unsafe { libc::kill(pid as i32, signal) }),
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The live (not zombie) processes below this one, as /proc says now: the
/// command's tree, orphans included, since this process is its subreaper.
pub fn descendants() -> Vec<u32> {
    let me = std::process::id();
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let parents: std::collections::HashMap<u32, (u32, bool)> = all
        .filter_map(Result::ok)
        .filter_map(|p| {
            let stat = p.stat().ok()?;
            let zombie = stat
                .state()
                .is_ok_and(|s| s == procfs::process::ProcState::Zombie);
            Some((
                u32::try_from(stat.pid).ok()?,
                (u32::try_from(stat.ppid).ok()?, zombie),
            ))
        })
        .collect();
    parents
        .iter()
        .filter(|(_, (_, zombie))| !zombie)
        .filter(|&(&pid, _)| {
            // Up the parent chain; bounded, in case /proc changed meanwhile
            // into a cycle.
            let mut at = pid;
            for _ in 0..parents.len() {
                match parents.get(&at) {
                    Some(&(ppid, _)) if ppid == me => return true,
                    Some(&(ppid, _)) if ppid > 1 => at = ppid,
                    _ => return false,
                }
            }
            false
        })
        .map(|(&pid, _)| pid)
        .collect()
}

/// Sends `signal` to every process of the tree below this one, again until
/// none is left alive (a process forking meanwhile adds one) or `passes`
/// are done. Returns how many were signalled.
pub fn signal_tree(signal: i32, passes: usize) -> usize {
    let mut signalled = std::collections::HashSet::new();
    for _ in 0..passes {
        let alive = descendants();
        if alive.is_empty() {
            break;
        }
        for pid in alive {
            // SAFETY: plain kill; a process gone meanwhile gives ESRCH.
            unsafe { libc::kill(pid as i32, signal) };
            signalled.insert(pid);
        }
        if signal != libc::SIGKILL {
            break;
        }
        // The kernel delivers SIGKILL asynchronously: give it a moment.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    signalled.len()
}

/// Why the user to run the command as cannot be taken from sudo's
/// variables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RunAsError {
    /// One of SUDO_UID and SUDO_GID without the other.
    #[error(
        "{set} is set but {missing} is not: cannot tell whom to run the command as; set both, or pass --as-root to keep root"
    )]
    Half {
        set: &'static str,
        missing: &'static str,
    },
    /// Not a plain decimal id below 4294967295 ((uid_t)-1, "no change").
    #[error(
        "{name}={value} is not a valid id (a decimal number below 4294967295): cannot tell whom to run the command as; fix it, or pass --as-root to keep root"
    )]
    Invalid { name: &'static str, value: String },
}

/// The (uid, gid) to run the command as, from the values of SUDO_UID and
/// SUDO_GID: `None` when neither is set (not under sudo). Fails closed on
/// anything else than two valid ids, so that a broken environment never
/// runs the command as root unnoticed.
pub fn run_as_from_sudo(
    uid: Option<&OsStr>,
    gid: Option<&OsStr>,
) -> Result<Option<(u32, u32)>, RunAsError> {
    let id = |name: &'static str, value: &OsStr| {
        let bytes = value.as_bytes();
        let invalid = || RunAsError::Invalid {
            name,
            value: crate::trace::escape::escape_bytes(bytes),
        };
        // Digits only: `str::parse` would take a leading `+`.
        if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(invalid());
        }
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|&n| n != u32::MAX)
            .ok_or_else(invalid)
    };
    match (uid, gid) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(RunAsError::Half {
            set: "SUDO_UID",
            missing: "SUDO_GID",
        }),
        (None, Some(_)) => Err(RunAsError::Half {
            set: "SUDO_GID",
            missing: "SUDO_UID",
        }),
        (Some(uid), Some(gid)) => Ok(Some((id("SUDO_UID", uid)?, id("SUDO_GID", gid)?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_as(uid: Option<&str>, gid: Option<&str>) -> Result<Option<(u32, u32)>, RunAsError> {
        run_as_from_sudo(uid.map(OsStr::new), gid.map(OsStr::new))
    }

    #[test]
    fn sudo_ids_are_taken_only_when_both_are_valid() {
        assert_eq!(run_as(None, None), Ok(None));
        assert_eq!(run_as(Some("1000"), Some("100")), Ok(Some((1000, 100))));
        assert_eq!(run_as(Some("0"), Some("0")), Ok(Some((0, 0))));
        assert_eq!(
            run_as(Some("4294967294"), Some("1")),
            Ok(Some((4294967294, 1)))
        );
        assert!(matches!(
            run_as(Some("1000"), None),
            Err(RunAsError::Half {
                missing: "SUDO_GID",
                ..
            })
        ));
        assert!(matches!(
            run_as(None, Some("1000")),
            Err(RunAsError::Half {
                missing: "SUDO_UID",
                ..
            })
        ));
        for bad in [
            "abc",
            "4294967295",
            "4294967296",
            "-1",
            "+5",
            "",
            " 5",
            "5 ",
            "1e3",
        ] {
            assert!(
                matches!(
                    run_as(Some(bad), Some("1")),
                    Err(RunAsError::Invalid {
                        name: "SUDO_UID",
                        ..
                    })
                ),
                "SUDO_UID={bad:?}"
            );
            assert!(
                matches!(
                    run_as(Some("1"), Some(bad)),
                    Err(RunAsError::Invalid {
                        name: "SUDO_GID",
                        ..
                    })
                ),
                "SUDO_GID={bad:?}"
            );
        }
        let invalid = OsStr::from_bytes(b"\xff\x1b[2J");
        let err = run_as_from_sudo(Some(invalid), Some(OsStr::new("1"))).unwrap_err();
        assert!(err.to_string().contains("SUDO_UID=\\xff\\x1b[2J"), "{err}");
    }
}
