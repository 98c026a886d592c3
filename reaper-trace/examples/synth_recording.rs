//! Writes a synthetic recording for benchmarks: `synth_recording FILE
//! EVENTS [PARENTS]`. Each lifecycle is a fork, exit, SIGCHLD, wait enter,
//! sched wait, wait exit and free (7 events) from one of PARENTS parents,
//! the way a busy fork-exec-wait server produces them.

use std::io::Write;

use reaper_trace::{
    recording::{Meta, Trailer, writer},
    trace::{comm::Comm, decode::record_bytes},
};
use reaper_trace_common::{self as abi, Header, kind, wait_syscall};

fn header(kind: u32, t: u64, tgid: u32, tid: u32) -> Header {
    Header {
        kind,
        flags: 0,
        ktime_ns: t,
        tgid,
        tid,
        cgroup_id: 0,
    }
}

/// One lifecycle of `child`, forked by `parent` at `t`: its 7 records,
/// each to `push`.
fn lifecycle(
    t: u64,
    (parent, child): (u32, u32),
    comm: [u8; abi::COMM_LEN],
    mut push: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let fork = abi::ForkRecord {
        header: header(kind::FORK, t, parent, parent),
        child_tgid: child,
        child_tid: child,
        child_start_ns: t,
        parent_start_ns: 1,
        is_thread: 0,
        real_parent_tgid: 0,
        comm,
    };
    let exit = abi::ExitRecord {
        header: header(kind::EXIT, t + 10_000, child, child),
        exit_code: 0,
        exit_signal: 17,
        real_parent_tgid: parent,
        group_dead: 1,
        process_start_ns: t,
        parent_sigchld_handler: 0,
        parent_sigchld_flags: 0,
        comm,
    };
    let sig = abi::SignalGenerateRecord {
        header: header(kind::SIGNAL_GENERATE, t + 11_000, child, child),
        sig: 17,
        code: 1,
        result: 1,
        group: 1,
        target_tgid: parent,
        target_tid: parent,
        si_pid: child as i32,
        ..Default::default()
    };
    let enter = abi::WaitEnterRecord {
        header: header(kind::WAIT_ENTER, t + 12_000, parent, parent),
        syscall: wait_syscall::WAIT4,
        which: 0,
        upid: child as i32,
        options: 0,
    };
    let wait = abi::ProcessWaitRecord {
        header: header(kind::PROCESS_WAIT, t + 12_100, parent, parent),
        pid: child as i32,
        _pad: 0,
    };
    let exit_wait = abi::WaitExitRecord {
        header: header(kind::WAIT_EXIT, t + 13_000, parent, parent),
        syscall: wait_syscall::WAIT4,
        upid: child as i32,
        ret: child as i64,
        reaped_pid: child as i32,
        enter_ktime_ns: t + 12_000,
        ..Default::default()
    };
    let free = abi::FreeRecord {
        header: header(kind::FREE, t + 30_000, child, child),
        process_start_ns: t,
        start_ns: t,
        exit_code: 0,
        real_parent_tgid: 0,
        comm,
    };
    for record in [
        record_bytes(&fork),
        record_bytes(&exit),
        record_bytes(&sig),
        record_bytes(&enter),
        record_bytes(&wait),
        record_bytes(&exit_wait),
        record_bytes(&free),
    ] {
        push(record)?;
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(events)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: synth_recording FILE EVENTS [PARENTS]");
        std::process::exit(2);
    };
    let parents: u32 = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(8);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(&writer::header(&Meta {
        abi_version: abi::ABI_VERSION,
        kernel_release: "synthetic".into(),
        ..Default::default()
    }))?;
    let mut block = writer::BlockBuilder::default();
    let comm = Comm::from_str_lossy("worker").0;
    let mut t = 1_000_000_000u64;
    let mut written = 0u64;
    let mut n = 0u32;
    while written < events {
        let parent = 1000 + n % parents;
        let child = 10_000 + (n % 4_000_000);
        n += 1;
        t += 50_000;
        lifecycle(t, (parent, child), comm, |record| {
            block.push(record);
            if block.is_full() {
                out.write_all(&block.take_block())?;
            }
            Ok(())
        })?;
        written += 7;
    }
    if !block.is_empty() {
        out.write_all(&block.take_block())?;
    }
    out.write_all(&writer::trailer(&Trailer {
        ended_ns: t + 1_000_000,
        records: written,
        ..Default::default()
    }))?;
    out.flush()?;
    eprintln!("wrote {written} events ({n} lifecycles) to {path}");
    Ok(())
}
