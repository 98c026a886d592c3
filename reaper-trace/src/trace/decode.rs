//! Ring-buffer records → [`Event`]s. Checks the length before reading
//! anything, reads unaligned, and never panics on bad input.

use reaper_trace_common::{self as abi, Header, kind, record_size, wait_syscall};

use crate::{trace::comm::Comm, trace::event::*};

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the common header.
    #[error("record of {len} bytes is shorter than the {need}-byte header")]
    Short { len: usize, need: usize },
    /// A kind this build does not know (a newer program, or garbage).
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    /// A record that is not an event (a user stack, see [`user_stack`]).
    #[error("record kind {0} is not an event")]
    NotAnEvent(u32),
    /// Records are whole multiples of 8 bytes; this one is not.
    #[error("record of {len} bytes is not a multiple of 8: framing is off")]
    Misaligned { len: usize },
    /// The length does not match the kind's layout.
    #[error("record of kind {kind} has {len} bytes, its layout has {expected}")]
    WrongSize {
        kind: u32,
        len: usize,
        expected: usize,
    },
}

/// A fixed-layout record of the ABI.
pub trait Record: Copy + 'static {
    const KIND: u32;
}

macro_rules! records {
    ($($ty:ident = $kind:ident),* $(,)?) => {
        $(impl Record for abi::$ty { const KIND: u32 = kind::$kind; })*
    };
}
records!(
    ForkRecord = FORK,
    ExecRecord = EXEC,
    ExitRecord = EXIT,
    SignalGenerateRecord = SIGNAL_GENERATE,
    SignalDeliverRecord = SIGNAL_DELIVER,
    ProcessWaitRecord = PROCESS_WAIT,
    WaitEnterRecord = WAIT_ENTER,
    WaitExitRecord = WAIT_EXIT,
    FreeRecord = FREE,
    SigactionRecord = SIGACTION,
    ForkFailedRecord = FORK_FAILED,
    NsPidsRecord = NS_PIDS,
    UserStackRecord = USTACK,
    TaskRenameRecord = TASK_RENAME,
);

/// A user stack record, when `bytes` is one: the live tracer unwinds it
/// rather than decoding it into an event.
pub fn user_stack(bytes: &[u8]) -> Option<abi::UserStackRecord> {
    (peek_kind(bytes).ok()? == kind::USTACK).then(|| read(bytes))
}

/// The bytes of a record, as the kernel writes them.
pub fn record_bytes<T: Record>(record: &T) -> &[u8] {
    // SAFETY: ABI records are repr(C) with explicit padding and only integer
    // and byte-array fields, so every byte is initialised.
    unsafe { std::slice::from_raw_parts((record as *const T).cast::<u8>(), size_of::<T>()) }
}

/// Reads a `T` from the front of `bytes`, which the caller has checked is
/// long enough.
fn read<T: Record>(bytes: &[u8]) -> T {
    assert!(bytes.len() >= size_of::<T>());
    // SAFETY: length checked above; unaligned read of a plain-old-data type.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

/// The kind of a record, after checking its framing.
pub fn peek_kind(bytes: &[u8]) -> Result<u32, DecodeError> {
    let need = size_of::<Header>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
        });
    }
    if !bytes.len().is_multiple_of(8) {
        return Err(DecodeError::Misaligned { len: bytes.len() });
    }
    let kind = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let expected = record_size(kind).ok_or(DecodeError::UnknownKind(kind))?;
    if bytes.len() != expected {
        return Err(DecodeError::WrongSize {
            kind,
            len: bytes.len(),
            expected,
        });
    }
    Ok(kind)
}

/// Decodes one record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let kind = peek_kind(bytes)?;
    let data = match kind {
        kind::FORK => fork(read(bytes)),
        kind::EXEC => exec(&read(bytes)),
        kind::EXIT => exit(read(bytes)),
        kind::SIGNAL_GENERATE => signal_generate(read(bytes)),
        kind::SIGNAL_DELIVER => {
            let r: abi::SignalDeliverRecord = read(bytes);
            EventData::SignalDeliver(SignalDeliver {
                sig: r.sig,
                code: r.code,
                disposition: Disposition::from_handler(r.sa_handler),
                sa_handler: r.sa_handler,
                sa_flags: r.sa_flags,
            })
        }
        kind::PROCESS_WAIT => {
            let r: abi::ProcessWaitRecord = read(bytes);
            EventData::ProcessWait(ProcessWait { pid: r.pid })
        }
        kind::WAIT_ENTER => {
            let r: abi::WaitEnterRecord = read(bytes);
            let syscall = wait_kind(r.syscall);
            EventData::WaitEnter(WaitEnter {
                syscall,
                which: r.which,
                upid: r.upid,
                options: r.options,
                upid_ns: None,
                pidfd: wait_pidfd(syscall, r.which, r.upid),
            })
        }
        kind::WAIT_EXIT => wait_exit(read(bytes)),
        kind::FREE => {
            let r: abi::FreeRecord = read(bytes);
            EventData::Free(Free {
                process_start_ns: r.process_start_ns,
                start_ns: r.start_ns,
                exit_code: r.exit_code,
                real_parent_tgid: (r.real_parent_tgid != 0).then_some(r.real_parent_tgid),
                comm: Comm(r.comm),
            })
        }
        kind::SIGACTION => {
            let r: abi::SigactionRecord = read(bytes);
            EventData::Sigaction(Sigaction {
                sig: r.sig,
                disposition: Disposition::from_handler(r.handler),
                handler: r.handler,
                flags: r.flags,
                mask: r.mask,
                has_stack: r.header.flags & abi::header_flags::HAS_STACK != 0,
                comm: Comm(r.comm),
            })
        }
        kind::FORK_FAILED => {
            let r: abi::ForkFailedRecord = read(bytes);
            EventData::ForkFailed(ForkFailed {
                syscall_nr: r.syscall_nr,
                errno: r.errno,
            })
        }
        kind::NS_PIDS => {
            let r: abi::NsPidsRecord = read(bytes);
            // Deeper than NS_LEVELS, the record holds the innermost levels.
            let known = (r.level as usize + 1).min(abi::NS_LEVELS);
            EventData::NsPids(NsPids {
                child_tgid: r.child_tgid,
                levels: (0..known)
                    .map(|i| NsPid {
                        pid: r.nr[i],
                        ns: r.ns[i],
                    })
                    .collect(),
            })
        }
        kind::TASK_RENAME => {
            let r: abi::TaskRenameRecord = read(bytes);
            EventData::TaskRename(TaskRename {
                process_start_ns: r.process_start_ns,
                old_comm: Comm(r.old_comm),
                new_comm: Comm(r.new_comm),
            })
        }
        kind::USTACK => return Err(DecodeError::NotAnEvent(kind)),
        other => return Err(DecodeError::UnknownKind(other)),
    };
    let header: Header = {
        // SAFETY: peek_kind checked the record holds at least a header.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Header>()) }
    };
    Ok(Event {
        time_ns: header.ktime_ns,
        tgid: header.tgid,
        tid: header.tid,
        cgroup_id: header.cgroup_id,
        data,
    })
}

/// Decodes a record written under `abi_version`: recordings keep the ABI
/// they were made with. Version 1 headers had no `cgroup_id`; before
/// version 3 a `SIGACTION` record had no `comm` (decoded as empty).
pub fn decode_abi(bytes: &[u8], abi_version: u32) -> Result<Event, DecodeError> {
    if abi_version >= 3 {
        return decode(bytes);
    }
    let mut widened = if abi_version == 1 {
        if bytes.len() < abi::V1_HEADER_LEN {
            return Err(DecodeError::Short {
                len: bytes.len(),
                need: abi::V1_HEADER_LEN,
            });
        }
        let mut widened = Vec::with_capacity(bytes.len() + 8 + abi::COMM_LEN);
        widened.extend_from_slice(&bytes[..abi::V1_HEADER_LEN]);
        widened.extend_from_slice(&0u64.to_le_bytes());
        widened.extend_from_slice(&bytes[abi::V1_HEADER_LEN..]);
        widened
    } else {
        bytes.to_vec()
    };
    // Only a record of the old size is widened: any other length stays
    // as it is, for `decode` to reject.
    if peek_raw_kind(&widened) == Some(kind::SIGACTION) && widened.len() == abi::SIGACTION_V2_LEN {
        widened.extend_from_slice(&[0; abi::COMM_LEN]);
    }
    decode(&widened)
}

/// The kind field of a record at least a header long, unchecked.
fn peek_raw_kind(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= size_of::<Header>())
        .then(|| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn fork(r: abi::ForkRecord) -> EventData {
    EventData::Fork(Fork {
        child_tgid: r.child_tgid,
        child_tid: r.child_tid,
        child_start_ns: r.child_start_ns,
        parent_start_ns: r.parent_start_ns,
        is_thread: r.is_thread != 0,
        real_parent_tgid: (r.real_parent_tgid != 0 && r.real_parent_tgid != r.header.tgid)
            .then_some(r.real_parent_tgid),
        comm: Comm(r.comm),
        has_stack: r.header.flags & abi::header_flags::HAS_STACK != 0,
    })
}

fn exec(r: &abi::ExecRecord) -> EventData {
    let len = r
        .filename
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(r.filename.len());
    EventData::Exec(Exec {
        pid: r.pid,
        old_pid: r.old_pid,
        process_start_ns: r.process_start_ns,
        comm: Comm(r.comm),
        filename: String::from_utf8_lossy(&r.filename[..len]).into_owned(),
    })
}

/// Splits `task->exit_code` the way `wait` reports it: `status << 8` for an
/// exit, the signal number (with 0x80 for a core dump) for a kill.
pub fn split_exit_code(raw: i32) -> (Option<i32>, Option<i32>, bool) {
    let signal = raw & 0x7f;
    if signal == 0 {
        (Some((raw >> 8) & 0xff), None, false)
    } else {
        (None, Some(signal), raw & 0x80 != 0)
    }
}

fn exit(r: abi::ExitRecord) -> EventData {
    let (exit_code, signal, core_dumped) = split_exit_code(r.exit_code);
    EventData::Exit(Exit {
        exit_code,
        signal,
        core_dumped,
        raw_exit_code: r.exit_code,
        exit_signal: r.exit_signal,
        real_parent_tgid: r.real_parent_tgid,
        group_dead: r.group_dead != 0,
        is_thread: r.header.tid != r.header.tgid,
        process_start_ns: r.process_start_ns,
        parent_disposition: Disposition::from_handler(r.parent_sigchld_handler),
        parent_sa_flags: r.parent_sigchld_flags,
        comm: Comm(r.comm),
    })
}

fn signal_generate(r: abi::SignalGenerateRecord) -> EventData {
    let blocked = (1..=64).contains(&r.sig) && r.target_blocked & (1u64 << (r.sig - 1)) != 0;
    EventData::SignalGenerate(SignalGenerate {
        sig: r.sig,
        code: r.code,
        result: SignalResult::from_raw(r.result),
        group: r.group != 0,
        target_tgid: r.target_tgid,
        target_tid: r.target_tid,
        si_pid: r.si_pid,
        si_status: r.si_status,
        target_disposition: Disposition::from_handler(r.target_handler),
        target_handler: r.target_handler,
        target_sa_flags: r.target_sa_flags,
        target_blocked: blocked,
        si_ns_pid: None,
    })
}

fn wait_kind(raw: u32) -> WaitSyscall {
    if raw & wait_syscall::UNKNOWN_ARGS != 0 {
        return if raw & !wait_syscall::UNKNOWN_ARGS == wait_syscall::WAITID {
            WaitSyscall::Waitid
        } else {
            WaitSyscall::Wait4
        };
    }
    if raw == wait_syscall::WAITID {
        WaitSyscall::Waitid
    } else {
        WaitSyscall::Wait4
    }
}

fn wait_exit(r: abi::WaitExitRecord) -> EventData {
    let syscall = wait_kind(r.syscall);
    let args_known = r.syscall & wait_syscall::UNKNOWN_ARGS == 0;
    // A wait begun before tracing: wait4's return is the reaped pid.
    let reaped_pid = if !args_known && syscall == WaitSyscall::Wait4 && r.ret > 0 {
        r.ret as i32
    } else {
        r.reaped_pid
    };
    EventData::WaitExit(WaitExit {
        syscall,
        which: r.which,
        upid: r.upid,
        options: r.options,
        ret: r.ret,
        reaped_pid,
        status: r.status,
        si_code: r.si_code,
        enter_time_ns: r.enter_ktime_ns,
        args_known,
        upid_ns: None,
        reaped_ns_pid: None,
        pidfd: if args_known {
            wait_pidfd(syscall, r.which, r.upid)
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use reaper_trace_common::{COMM_LEN, FILENAME_LEN, SIGCHLD};

    use super::*;

    fn header(kind: u32) -> Header {
        Header {
            kind,
            flags: 0,
            ktime_ns: 1_000 + kind as u64,
            tgid: 100,
            tid: 101,
            cgroup_id: 7,
        }
    }

    fn comm(s: &str) -> [u8; COMM_LEN] {
        Comm::from_str_lossy(s).0
    }

    fn roundtrip<T: Record>(record: T) -> Event {
        let bytes = record_bytes(&record).to_vec();
        let event = decode(&bytes).expect("decodes");
        assert_eq!(event.time_ns, 1_000 + T::KIND as u64);
        assert_eq!((event.tgid, event.tid, event.cgroup_id), (100, 101, 7));
        // One table of kind names: the ABI number, the name, and the JSON tag agree.
        assert_eq!(event.data.kind(), T::KIND);
        let json = serde_json::to_value(&event).expect("serialises");
        assert_eq!(json["kind"], event.data.kind_name());
        event
    }

    #[test]
    fn version_1_records_have_no_cgroup_and_still_decode() {
        let record = abi::ExitRecord {
            header: header(kind::EXIT),
            exit_code: 3 << 8,
            exit_signal: SIGCHLD,
            group_dead: 1,
            ..Default::default()
        };
        let now = record_bytes(&record).to_vec();
        // A version 1 writer had no cgroup_id after tid.
        let mut old = now[..abi::V1_HEADER_LEN].to_vec();
        old.extend_from_slice(&now[abi::V1_HEADER_LEN + 8..]);
        let event = decode_abi(&old, 1).expect("a version 1 record decodes");
        assert_eq!((event.tgid, event.tid, event.cgroup_id), (100, 101, 0));
        assert!(matches!(event.data, EventData::Exit(ref x) if x.exit_code == Some(3)));
        assert_eq!(decode_abi(&now, 2).expect("current").cgroup_id, 7);
        assert!(matches!(
            decode_abi(&old[..16], 1),
            Err(DecodeError::Short { .. })
        ));
        // The same bytes read as the current ABI are framed wrong.
        assert!(decode_abi(&old, 2).is_err());
    }

    #[test]
    fn sigaction_records_before_version_3_have_no_comm_and_still_decode() {
        let record = abi::SigactionRecord {
            header: header(kind::SIGACTION),
            sig: SIGCHLD,
            handler: 1,
            comm: comm("webu"),
            ..Default::default()
        };
        let now = record_bytes(&record).to_vec();
        let v2 = now[..abi::SIGACTION_V2_LEN].to_vec();
        let e = decode_abi(&v2, 2).expect("a version 2 sigaction decodes");
        let EventData::Sigaction(s) = e.data else {
            panic!("{e:?}")
        };
        assert_eq!((s.handler, s.comm), (1, Comm::default()));
        assert_eq!(e.cgroup_id, 7);
        // Version 1: no cgroup_id in the header, no comm at the end.
        let mut v1 = v2[..abi::V1_HEADER_LEN].to_vec();
        v1.extend_from_slice(&v2[abi::V1_HEADER_LEN + 8..]);
        let e = decode_abi(&v1, 1).expect("a version 1 sigaction decodes");
        assert!(matches!(e.data, EventData::Sigaction(ref s) if s.handler == 1));
        assert_eq!(e.cgroup_id, 0);
        // The current size under version 3, and nothing but the two sizes.
        let EventData::Sigaction(s) = decode_abi(&now, 3).expect("current").data else {
            panic!()
        };
        assert_eq!(s.comm, Comm::from_str_lossy("webu"));
        assert!(decode_abi(&v2, 3).is_err());
        assert!(decode_abi(&now[..abi::SIGACTION_V2_LEN - 8], 2).is_err());
        // Other kinds are the same in versions 2 and 3.
        let exit = abi::ExitRecord {
            header: header(kind::EXIT),
            ..Default::default()
        };
        assert!(decode_abi(record_bytes(&exit), 2).is_ok());
    }

    #[test]
    fn pidfd_waits_say_their_argument_is_a_descriptor() {
        let record = abi::WaitExitRecord {
            header: header(kind::WAIT_EXIT),
            syscall: wait_syscall::WAITID,
            which: P_PIDFD,
            upid: 3,
            options: libc::WEXITED,
            reaped_pid: 4321,
            ..Default::default()
        };
        let EventData::WaitExit(w) = roundtrip(record).data else {
            panic!()
        };
        assert_eq!((w.pidfd, w.upid, w.reaped_pid), (Some(3), 3, 4321));
        let EventData::WaitExit(w) = roundtrip(abi::WaitExitRecord { which: 1, ..record }).data
        else {
            panic!()
        };
        assert_eq!(w.pidfd, None);
        let EventData::WaitEnter(w) = roundtrip(abi::WaitEnterRecord {
            header: header(kind::WAIT_ENTER),
            syscall: wait_syscall::WAITID,
            which: P_PIDFD,
            upid: 5,
            options: libc::WEXITED,
        })
        .data
        else {
            panic!()
        };
        assert_eq!(w.pidfd, Some(5));
    }

    #[test]
    fn fork_roundtrips() {
        let e = roundtrip(abi::ForkRecord {
            header: header(kind::FORK),
            child_tgid: 200,
            child_tid: 200,
            child_start_ns: 5,
            parent_start_ns: 4,
            is_thread: 0,
            real_parent_tgid: 0,
            comm: comm("bash"),
        });
        assert_eq!(
            e.data,
            EventData::Fork(Fork {
                child_tgid: 200,
                child_tid: 200,
                child_start_ns: 5,
                parent_start_ns: 4,
                is_thread: false,
                real_parent_tgid: None,
                comm: Comm::from_str_lossy("bash"),
                has_stack: false,
            })
        );
    }

    #[test]
    fn exec_roundtrips() {
        let mut filename = [0u8; FILENAME_LEN];
        filename[..9].copy_from_slice(b"/bin/true");
        let e = roundtrip(abi::ExecRecord {
            header: header(kind::EXEC),
            pid: 100,
            old_pid: 101,
            process_start_ns: 7,
            comm: comm("true"),
            filename,
        });
        let EventData::Exec(exec) = e.data else {
            panic!("{e:?}")
        };
        assert_eq!(
            (exec.pid, exec.old_pid, exec.filename.as_str()),
            (100, 101, "/bin/true")
        );
    }

    #[test]
    fn exit_roundtrips_and_splits_the_code() {
        let base = abi::ExitRecord {
            header: header(kind::EXIT),
            exit_code: 42 << 8,
            exit_signal: SIGCHLD,
            real_parent_tgid: 99,
            group_dead: 1,
            process_start_ns: 3,
            parent_sigchld_handler: 1,
            parent_sigchld_flags: 2,
            comm: comm("child"),
        };
        let EventData::Exit(x) = roundtrip(base).data else {
            panic!()
        };
        assert_eq!(
            (x.parent_disposition, x.parent_sa_flags),
            (Disposition::Ignore, 2)
        );
        let EventData::Exit(x) = roundtrip(base).data else {
            panic!()
        };
        assert_eq!(
            (
                x.exit_code,
                x.signal,
                x.core_dumped,
                x.group_dead,
                x.is_thread
            ),
            (Some(42), None, false, true, true)
        );
        let EventData::Exit(x) = roundtrip(abi::ExitRecord {
            exit_code: 9,
            ..base
        })
        .data
        else {
            panic!()
        };
        assert_eq!(
            (x.exit_code, x.signal, x.core_dumped),
            (None, Some(9), false)
        );
        let EventData::Exit(x) = roundtrip(abi::ExitRecord {
            exit_code: 0x80 | 11,
            ..base
        })
        .data
        else {
            panic!()
        };
        assert_eq!((x.signal, x.core_dumped), (Some(11), true));
    }

    #[test]
    fn signal_generate_roundtrips() {
        let e = roundtrip(abi::SignalGenerateRecord {
            header: header(kind::SIGNAL_GENERATE),
            sig: SIGCHLD,
            code: 1,
            result: 2,
            group: 1,
            target_tgid: 50,
            target_tid: 51,
            si_pid: 100,
            si_status: 42,
            target_handler: 0x4000,
            target_sa_flags: 0,
            target_blocked: 1 << 16,
        });
        let EventData::SignalGenerate(s) = e.data else {
            panic!()
        };
        assert_eq!(s.result, SignalResult::AlreadyPending);
        assert_eq!(s.target_disposition, Disposition::Handler);
        assert!(s.target_blocked && s.group);
        assert_eq!(
            (s.target_tgid, s.target_tid, s.si_pid, s.si_status),
            (50, 51, 100, 42)
        );
    }

    #[test]
    fn the_other_kinds_roundtrip() {
        let e = roundtrip(abi::SignalDeliverRecord {
            header: header(kind::SIGNAL_DELIVER),
            sig: SIGCHLD,
            code: 1,
            sa_handler: 1,
            sa_flags: 2,
        });
        assert!(matches!(
            e.data,
            EventData::SignalDeliver(SignalDeliver {
                sig: SIGCHLD,
                disposition: Disposition::Ignore,
                sa_flags: 2,
                ..
            })
        ));
        let e = roundtrip(abi::ProcessWaitRecord {
            header: header(kind::PROCESS_WAIT),
            pid: 7,
            _pad: 0,
        });
        assert_eq!(e.data, EventData::ProcessWait(ProcessWait { pid: 7 }));
        let e = roundtrip(abi::WaitEnterRecord {
            header: header(kind::WAIT_ENTER),
            syscall: wait_syscall::WAITID,
            which: 1,
            upid: 7,
            options: 4,
        });
        assert_eq!(
            e.data,
            EventData::WaitEnter(WaitEnter {
                syscall: WaitSyscall::Waitid,
                which: 1,
                upid: 7,
                options: 4,
                upid_ns: None,
                pidfd: None,
            })
        );
        let e = roundtrip(abi::WaitExitRecord {
            header: header(kind::WAIT_EXIT),
            syscall: wait_syscall::WAIT4,
            which: 0,
            upid: -1,
            options: 1,
            ret: 7,
            reaped_pid: 7,
            status: 42 << 8,
            si_code: 0,
            _pad: 0,
            enter_ktime_ns: 9,
        });
        assert!(matches!(
            e.data,
            EventData::WaitExit(WaitExit {
                syscall: WaitSyscall::Wait4,
                upid: -1,
                ret: 7,
                reaped_pid: 7,
                enter_time_ns: 9,
                ..
            })
        ));
        let e = roundtrip(abi::FreeRecord {
            header: header(kind::FREE),
            process_start_ns: 1,
            start_ns: 2,
            exit_code: 0,
            real_parent_tgid: 1,
            comm: comm("x"),
        });
        assert!(matches!(
            e.data,
            EventData::Free(Free {
                process_start_ns: 1,
                start_ns: 2,
                real_parent_tgid: Some(1),
                ..
            })
        ));
        let e = roundtrip(abi::SigactionRecord {
            header: Header {
                flags: abi::header_flags::HAS_STACK,
                ..header(kind::SIGACTION)
            },
            sig: SIGCHLD,
            _pad: 0,
            handler: 1,
            flags: 2,
            mask: 0,
            comm: comm("webu"),
        });
        assert!(matches!(
            e.data,
            EventData::Sigaction(Sigaction {
                disposition: Disposition::Ignore,
                flags: 2,
                has_stack: true,
                ..
            })
        ));
        let EventData::Sigaction(s) = e.data else {
            panic!()
        };
        assert_eq!(s.comm, Comm::from_str_lossy("webu"));
        let e = roundtrip(abi::TaskRenameRecord {
            header: header(kind::TASK_RENAME),
            process_start_ns: 5,
            old_comm: comm("exe"),
            new_comm: comm("sleep"),
        });
        assert_eq!(
            e.data,
            EventData::TaskRename(TaskRename {
                process_start_ns: 5,
                old_comm: Comm::from_str_lossy("exe"),
                new_comm: Comm::from_str_lossy("sleep"),
            })
        );
        let e = roundtrip(abi::ForkFailedRecord {
            header: header(kind::FORK_FAILED),
            syscall_nr: 56,
            errno: 12,
        });
        assert_eq!(
            e.data,
            EventData::ForkFailed(ForkFailed {
                syscall_nr: 56,
                errno: 12
            })
        );
    }

    #[test]
    fn rejects_short_unknown_and_misframed_records() {
        assert_eq!(
            decode(&[0; 8]),
            Err(DecodeError::Short { len: 8, need: 32 })
        );
        let mut unknown = record_bytes(&abi::ProcessWaitRecord {
            header: header(kind::PROCESS_WAIT),
            pid: 1,
            _pad: 0,
        })
        .to_vec();
        unknown[0] = 200;
        assert_eq!(decode(&unknown), Err(DecodeError::UnknownKind(200)));
        let fork = abi::ForkRecord {
            header: header(kind::FORK),
            ..Default::default()
        };
        let bytes = record_bytes(&fork);
        assert_eq!(
            decode(&bytes[..bytes.len() - 3]),
            Err(DecodeError::Misaligned {
                len: bytes.len() - 3
            })
        );
        assert_eq!(
            decode(&bytes[..bytes.len() - 8]),
            Err(DecodeError::WrongSize {
                kind: kind::FORK,
                len: bytes.len() - 8,
                expected: bytes.len()
            })
        );
        let mut long = bytes.to_vec();
        long.extend_from_slice(&[0; 8]);
        assert!(matches!(decode(&long), Err(DecodeError::WrongSize { .. })));
    }

    #[test]
    fn a_wait_begun_before_tracing_reaps_its_return() {
        let record = abi::WaitExitRecord {
            header: header(kind::WAIT_EXIT),
            syscall: wait_syscall::UNKNOWN_ARGS | wait_syscall::WAIT4,
            ret: 77,
            ..Default::default()
        };
        let EventData::WaitExit(w) = roundtrip(record).data else {
            panic!()
        };
        assert_eq!(
            (w.syscall, w.reaped_pid, w.args_known),
            (WaitSyscall::Wait4, 77, false)
        );
        let record = abi::WaitExitRecord {
            syscall: wait_syscall::UNKNOWN_ARGS | wait_syscall::WAITID,
            ret: 0,
            ..record
        };
        let EventData::WaitExit(w) = roundtrip(record).data else {
            panic!()
        };
        assert_eq!((w.syscall, w.reaped_pid), (WaitSyscall::Waitid, 0));
    }

    #[test]
    fn decodes_from_an_unaligned_buffer() {
        let fork = abi::ForkRecord {
            header: header(kind::FORK),
            child_tgid: 9,
            ..Default::default()
        };
        let mut buf = vec![0u8; 1];
        buf.extend_from_slice(record_bytes(&fork));
        let e = decode(&buf[1..]).unwrap();
        assert!(matches!(
            e.data,
            EventData::Fork(Fork { child_tgid: 9, .. })
        ));
    }
}
