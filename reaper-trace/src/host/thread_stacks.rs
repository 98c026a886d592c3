//! Where a blocked thread is in its own code: its user stack, read from its
//! memory and unwound from the stack pointer and program counter that
//! /proc/PID/task/TID/syscall gives. A thread blocked in a system call is
//! in a C library wrapper, which has unwind tables (`.eh_frame`), so the
//! walk starts from those two registers.
//!
//! The frame pointer (rbp) is not in that file, and the wrapper leaves it
//! as its caller set it: code built with frame pointers (`-O0`, Rust debug
//! builds) says in its unwind tables that its frame is at rbp, so without
//! it the walk stops at the first such caller. So the walk is also tried
//! from the first few frame records found on the stack above the stack
//! pointer (a 16-byte aligned word pointing higher up the stack, followed
//! by an address in user space: `push rbp; mov rbp, rsp`), and the
//! deepest stack found wins: a wrong guess soon leads outside code and
//! stops, a frame whose caller saved rbp gets the saved value from the
//! unwind tables, and without any record the walk from no rbp remains.
//!
//! The thread may wake and move on while its memory is read: the system
//! call file is read again afterwards, and a stack whose registers changed
//! meanwhile is dropped rather than unwound into a mix of two moments.

use std::io::IoSliceMut;

use super::{
    procfs::parse_syscall,
    unwind::{Unwinder, UserRegs},
};
use crate::trace::{
    host_facts::{SyscallProbe, ThreadProbe},
    stack::Stack,
};

/// How many bytes of stack are read above the stack pointer. The frames
/// from a system call wrapper up to `main` of the programs seen take a few
/// KiB; 32 KiB leaves room for callers with large local buffers, while a
/// probe of [`MAX_UNWOUND_THREADS`] threads reads at most half a MiB.
/// Beyond it the unwind stops, marked truncated: the frames that matter
/// (the wrapper, the function that called it, its caller) are the first.
pub const STACK_BYTES: usize = 32 << 10;

/// How many threads of a process are unwound: those whose kernel stacks a
/// probe keeps (`procfs`'s `MAX_STACKED_THREADS`).
pub const MAX_UNWOUND_THREADS: usize = 16;

/// How many parents get their threads unwound at once (a `zombies`
/// snapshot, a tick of the live trace): each costs its memory maps and up
/// to [`MAX_UNWOUND_THREADS`] stack reads, where the rest of its probe is a
/// dozen small /proc reads. A machine with a thousand leaking parents
/// still answers at once; past these, threads show their system calls
/// alone.
pub const MAX_UNWOUND_PARENTS: usize = 64;

const PAGE: u64 = 4096;

/// Unwinds the user stacks of the first threads of process `tgid` that
/// /proc showed in (or stopped outside) a system call, into their
/// `user_stack`. A running thread has no registers to start from, and
/// gets none; so does one whose memory cannot be read (it exited) or
/// that moved on while it was read.
pub fn unwind_threads(unwinder: &mut Unwinder, tgid: u32, threads: &mut [ThreadProbe]) {
    for thread in threads.iter_mut().take(MAX_UNWOUND_THREADS) {
        let Some(call) = thread.syscall else {
            continue;
        };
        let Some(bytes) = read_stack(tgid, call.sp) else {
            continue;
        };
        if syscall_now(tgid, thread.tid) != Some(call) {
            continue;
        }
        let mut best = None;
        for bp in std::iter::once(0).chain(frame_records(call.sp, &bytes)) {
            // /proc gives no link register: on aarch64 a thread blocked
            // in a wrapper that keeps its return address in x30 ends
            // at its first frame.
            let regs = UserRegs {
                ip: call.pc,
                sp: call.sp,
                bp,
                lr: 0,
            };
            let Ok(stack) = unwinder.unwind(tgid, regs, call.sp, &bytes) else {
                break;
            };
            if best
                .as_ref()
                .is_none_or(|b: &Stack| stack.frames.len() > b.frames.len())
            {
                best = Some(stack);
            }
        }
        thread.user_stack = best;
    }
}

/// How many frame records are tried as the frame pointer.
const MAX_GUESSES: usize = 4;

/// The addresses of the first [`MAX_GUESSES`] words of `bytes` (a copy of
/// the stack from `sp`) that look like frame records: 16-byte aligned,
/// holding the address of a word higher in the copy (the caller's record)
/// or 0 (the outermost), followed by a user-space address (the return
/// address).
fn frame_records(sp: u64, bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let end = sp + bytes.len() as u64;
    let word = move |at: u64| {
        let i = usize::try_from(at - sp).ok()?;
        Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?))
    };
    let first = sp.next_multiple_of(16);
    (first..end.saturating_sub(16))
        .step_by(16)
        .filter(move |&at| {
            let (Some(saved), Some(ret)) = (word(at), word(at + 8)) else {
                return false;
            };
            let chains = saved == 0 || (saved > at && saved < end && saved % 16 == 0);
            chains && (0x1000..0x0000_8000_0000_0000).contains(&ret)
        })
        .take(MAX_GUESSES)
}

fn syscall_now(tgid: u32, tid: u32) -> Option<SyscallProbe> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/syscall")).ok()?;
    parse_syscall(&text)
}

/// Up to [`STACK_BYTES`] of process `tgid`'s memory from `sp` up, through
/// `process_vm_readv`. One piece per page, since the kernel transfers partially
/// only at piece boundaries: where the stack mapping ends (a main thread's
/// top, a small thread stack), what lies below that is still read.
/// `None` when not a byte could be read.
fn read_stack(tgid: u32, sp: u64) -> Option<Vec<u8>> {
    let end = sp.checked_add(STACK_BYTES as u64)?;
    let mut remote = Vec::new();
    let mut at = sp;
    while at < end {
        let next = ((at / PAGE) + 1) * PAGE;
        let len = next.min(end) - at;
        remote.push(libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: len as usize,
        });
        at += len;
    }
    let mut bytes = vec![0u8; STACK_BYTES];
    let mut local = [IoSliceMut::new(&mut bytes)];
    // SAFETY: the local iovec is one slice we own (IoSliceMut is
    // ABI-compatible with iovec); the remote ones are only addresses in the
    // other process, which the kernel checks; their lengths sum to the
    // local buffer's.
    let read = unsafe {
        libc::process_vm_readv(
            tgid as libc::pid_t,
            local.as_mut_ptr().cast(),
            1,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    let read = usize::try_from(read).ok().filter(|&n| n > 0)?;
    bytes.truncate(read);
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use std::{
        io::{PipeReader, Read},
        sync::mpsc,
        time::Duration,
    };

    use super::*;
    use crate::{host::symbolize::Symbolizer, trace::stack::UserPlace};

    #[test]
    fn reads_up_to_the_end_of_the_mapping_and_no_further() {
        let pages = 2 * PAGE as usize;
        // SAFETY: a fresh anonymous mapping of three pages, the last made
        // inaccessible, so that a read stops there.
        let base = unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                pages + PAGE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            assert_eq!(
                libc::mprotect(base.add(pages), PAGE as usize, libc::PROT_NONE),
                0
            );
            std::ptr::write_bytes(base.cast::<u8>(), 0xab, pages);
            base
        };
        let me = std::process::id();
        let bytes = read_stack(me, base as u64 + 100).expect("readable");
        assert_eq!(bytes.len(), pages - 100);
        assert!(bytes.iter().all(|&b| b == 0xab));
        assert_eq!(read_stack(me, base as u64 + pages as u64), None);
        // SAFETY: our own mapping, no longer used.
        unsafe { libc::munmap(base, pages + PAGE as usize) };
    }

    /// Blocks in read() on `pipe` until it closes; says its line first.
    #[inline(never)]
    fn blocked_reading(mut pipe: PipeReader, line: mpsc::Sender<u32>) {
        let mut byte = [0u8; 1];
        line.send(line!() + 1).unwrap();
        let _ = std::hint::black_box(pipe.read(&mut byte));
    }

    #[test]
    fn a_thread_blocked_in_read_is_unwound_to_the_function_that_reads() {
        let (theirs, ours) = std::io::pipe().unwrap();
        let (send, lines) = mpsc::channel();
        let (tids, tid) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tids.send(unsafe { libc::gettid() } as u32).unwrap();
            blocked_reading(theirs, send);
        });
        let (tid, line) = (tid.recv().unwrap(), lines.recv().unwrap());
        let me = std::process::id();
        // Until /proc shows it in read (it may not have got there yet).
        let mut probe = ThreadProbe::basic(tid, "reader", 'S', "");
        for _ in 0..5000 {
            probe.syscall = syscall_now(me, tid);
            if probe.syscall.is_some_and(|c| c.nr == libc::SYS_read) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(probe.syscall.map(|c| c.nr), Some(libc::SYS_read));
        let mut threads = [probe];
        unwind_threads(&mut Unwinder::new(), me, &mut threads);
        drop(ours);
        reader.join().unwrap();
        let stack = threads[0].user_stack.as_ref().expect("unwound");
        let symbols = Symbolizer::new().symbolize_stack(stack);
        let place = UserPlace::new(symbols.clone(), stack.truncated);
        let at = symbols
            .iter()
            .find(|s| {
                s.function
                    .as_deref()
                    .is_some_and(|f| f.ends_with("thread_stacks::tests::blocked_reading"))
            })
            .unwrap_or_else(|| panic!("no blocked_reading in {symbols:#?}"));
        assert_eq!(at.line, Some(line), "{symbols:#?}");
        assert!(
            place
                .waits_at
                .as_deref()
                .is_some_and(|w| w.ends_with("blocked_reading")),
            "{place:#?}"
        );
    }

    #[test]
    fn frame_records_chain_upwards_to_user_code() {
        // Word i of the copy is at sp + 8 i; sp + 8 is 16-byte aligned.
        let sp = 0x7fff_0000_0008_u64;
        let mut words = [1u64; 16];
        // At sp + 8: a record pointing to sp + 0x28, then a return address.
        words[1] = sp + 0x28;
        words[2] = 0x5555_0000_1234;
        // At sp + 0x28: the outermost record.
        words[5] = 0;
        words[6] = 0x5555_0000_5678;
        // At sp + 0x48: points down the stack: not a record.
        words[9] = sp + 8;
        words[10] = 0x5555_0000_9abc;
        // At sp + 0x58: a kernel address after it: not a record.
        words[11] = 0;
        words[12] = 0xffff_ffff_8100_0000;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let found: Vec<u64> = frame_records(sp, &bytes).collect();
        assert_eq!(found, [sp + 8, sp + 0x28]);
        assert_eq!(frame_records(sp, &[]).count(), 0);
    }

    #[test]
    fn a_running_thread_gets_no_stack() {
        let mut threads = [ThreadProbe::basic(1, "x", 'R', "")];
        unwind_threads(&mut Unwinder::new(), std::process::id(), &mut threads);
        assert_eq!(threads[0].user_stack, None);
    }
}
