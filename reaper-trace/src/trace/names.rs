//! Names people read: signals, errnos, `si_code`s, wait options, sigaction
//! flags, durations. Pure; shared by the analysis (diagnosis sentences) and
//! every output.

use nix::{errno::Errno, sys::signal::Signal};

/// `SIGCHLD`, `SIGKILL`; `SIG34` for a signal without a name here.
pub fn signal_name(sig: i32) -> String {
    match Signal::try_from(sig) {
        Ok(signal) => signal.as_str().to_owned(),
        Err(_) => format!("SIG{sig}"),
    }
}

/// `EAGAIN`, `ENOMEM`; `errno 4095` for an unknown number.
pub fn errno_name(errno: i32) -> String {
    match Errno::from_raw(errno) {
        Errno::UnknownErrno => format!("errno {errno}"),
        known => format!("{known:?}"),
    }
}

/// SIGCHLD's `si_code` names.
pub fn cld_code(code: i32) -> String {
    match code {
        libc::CLD_EXITED => "CLD_EXITED".into(),
        libc::CLD_KILLED => "CLD_KILLED".into(),
        libc::CLD_DUMPED => "CLD_DUMPED".into(),
        libc::CLD_TRAPPED => "CLD_TRAPPED".into(),
        libc::CLD_STOPPED => "CLD_STOPPED".into(),
        libc::CLD_CONTINUED => "CLD_CONTINUED".into(),
        libc::SI_USER => "SI_USER".into(),
        0x80 => "SI_KERNEL".into(),
        other => format!("code {other}"),
    }
}

/// Wait option bits with their names, in the order they are printed.
const WAIT_OPTIONS: [(i32, &str); 8] = [
    (libc::WNOHANG, "WNOHANG"),
    (libc::WUNTRACED, "WUNTRACED"),
    (libc::WEXITED, "WEXITED"),
    (libc::WCONTINUED, "WCONTINUED"),
    (libc::WNOWAIT, "WNOWAIT"),
    (libc::__WNOTHREAD, "__WNOTHREAD"),
    (libc::__WALL, "__WALL"),
    (libc::__WCLONE, "__WCLONE"),
];

/// `WNOHANG|WEXITED` style names of wait options.
pub fn wait_options(options: i32) -> String {
    let mut out: Vec<String> = WAIT_OPTIONS
        .iter()
        .filter(|(bit, _)| options & bit != 0)
        .map(|(_, n)| (*n).to_owned())
        .collect();
    let known = WAIT_OPTIONS.iter().fold(0, |acc, (bit, _)| acc | bit);
    if options & !known != 0 {
        out.push(format!("{:#x}", options & !known));
    }
    if out.is_empty() {
        "0".into()
    } else {
        out.join("|")
    }
}

/// `SA_NOCLDWAIT|SA_RESTART` style names of the sigaction flags that
/// matter for SIGCHLD.
pub fn sa_flags(flags: u64) -> String {
    let names = [
        (libc::SA_NOCLDSTOP, "SA_NOCLDSTOP"),
        (libc::SA_NOCLDWAIT, "SA_NOCLDWAIT"),
        (libc::SA_SIGINFO, "SA_SIGINFO"),
        (libc::SA_RESTART, "SA_RESTART"),
    ];
    let out: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| flags & *bit as u64 != 0)
        .map(|(_, n)| *n)
        .collect();
    if out.is_empty() {
        "0".into()
    } else {
        out.join("|")
    }
}

/// The system call numbered `nr` on this architecture, for the calls a
/// thread is found blocked in (`/proc/PID/task/TID/syscall`);
/// `syscall 512` for others.
pub fn syscall_name(nr: i64) -> String {
    // `c_long` is i64 on the 64-bit targets the tool is built for.
    let known: &[(i64, &str)] = &[
        (libc::SYS_read, "read"),
        (libc::SYS_write, "write"),
        (libc::SYS_ppoll, "ppoll"),
        (libc::SYS_pselect6, "pselect6"),
        (libc::SYS_epoll_pwait, "epoll_pwait"),
        (libc::SYS_epoll_pwait2, "epoll_pwait2"),
        (libc::SYS_futex, "futex"),
        (libc::SYS_wait4, "wait4"),
        (libc::SYS_waitid, "waitid"),
        (libc::SYS_clock_nanosleep, "clock_nanosleep"),
        (libc::SYS_nanosleep, "nanosleep"),
        (libc::SYS_rt_sigsuspend, "rt_sigsuspend"),
        (libc::SYS_rt_sigtimedwait, "rt_sigtimedwait"),
        (libc::SYS_accept4, "accept4"),
        (libc::SYS_recvfrom, "recvfrom"),
        (libc::SYS_recvmsg, "recvmsg"),
        (libc::SYS_connect, "connect"),
        (libc::SYS_openat, "openat"),
        (libc::SYS_flock, "flock"),
        (libc::SYS_fsync, "fsync"),
        (libc::SYS_io_uring_enter, "io_uring_enter"),
        (libc::SYS_clone, "clone"),
        (libc::SYS_clone3, "clone3"),
        (libc::SYS_execve, "execve"),
        (libc::SYS_exit_group, "exit_group"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_poll, "poll"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_select, "select"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_epoll_wait, "epoll_wait"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_pause, "pause"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_accept, "accept"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_fork, "fork"),
        #[cfg(target_arch = "x86_64")]
        (libc::SYS_vfork, "vfork"),
    ];
    known
        .iter()
        .find(|(n, _)| *n == nr)
        .map_or_else(|| format!("syscall {nr}"), |(_, name)| (*name).to_owned())
}

/// A duration as `1.234s`.
pub fn seconds(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_signals_errnos_and_flags() {
        assert_eq!(signal_name(17), "SIGCHLD");
        assert_eq!(syscall_name(libc::SYS_wait4), "wait4");
        assert_eq!(syscall_name(100_000), "syscall 100000");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(40), "SIG40");
        assert_eq!(errno_name(11), "EAGAIN");
        assert_eq!(errno_name(100_000), "errno 100000");
        assert_eq!(wait_options(libc::WNOHANG | libc::__WALL), "WNOHANG|__WALL");
        assert_eq!(wait_options(0), "0");
        assert_eq!(sa_flags(2 | 0x1000_0000), "SA_NOCLDWAIT|SA_RESTART");
        assert_eq!(cld_code(4), "CLD_TRAPPED");
    }
}
