//! `report` on crafted recordings (they come from other machines): memory
//! stays within a small multiple of the file, and no path a MODULE record
//! names is opened unless it is a regular file. No kernel tracing: the
//! recordings are written here with the recording writer.

use std::{
    os::unix::{fs::OpenOptionsExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use reaper_trace::{
    recording::{Meta, Trailer, user_record, user_record::RecordedStack, writer},
    trace::{comm::Comm, host_facts::SeedProcess, stack::Module},
};
use reaper_trace_common::{
    ABI_VERSION, COMM_LEN, ExitRecord, ForkRecord, Header, header_flags, kind, stack_owner,
};
use reaper_trace_tests::*;

/// The bytes of an ABI record, as the kernel writes them.
fn bytes_of<T: Copy>(record: &T) -> Vec<u8> {
    // SAFETY: the ABI records are repr(C) with explicit padding and only
    // integer and byte-array fields: every byte is initialised.
    unsafe { std::slice::from_raw_parts((record as *const T).cast::<u8>(), size_of::<T>()) }
        .to_vec()
}

fn comm(name: &str) -> [u8; COMM_LEN] {
    let mut out = [0; COMM_LEN];
    out[..name.len()].copy_from_slice(name.as_bytes());
    out
}

fn header(kind: u32, time_ns: u64, tgid: u32) -> Header {
    Header {
        kind,
        flags: 0,
        ktime_ns: time_ns,
        tgid,
        tid: tgid,
        cgroup_id: 0,
    }
}

fn fork(time_ns: u64, parent: u32, child: u32, has_stack: bool) -> Vec<u8> {
    let mut header = header(kind::FORK, time_ns, parent);
    if has_stack {
        header.flags = header_flags::HAS_STACK;
    }
    bytes_of(&ForkRecord {
        header,
        child_tgid: child,
        child_tid: child,
        child_start_ns: time_ns,
        parent_start_ns: 1,
        is_thread: 0,
        real_parent_tgid: parent,
        comm: comm("crafted"),
    })
}

fn exit(time_ns: u64, pid: u32, parent: u32, start_ns: u64) -> Vec<u8> {
    bytes_of(&ExitRecord {
        header: header(kind::EXIT, time_ns, pid),
        exit_code: 0,
        exit_signal: libc::SIGCHLD,
        real_parent_tgid: parent,
        group_dead: 1,
        process_start_ns: start_ns,
        parent_sigchld_handler: 0,
        parent_sigchld_flags: 0,
        comm: comm("crafted"),
    })
}

fn meta(seed: Vec<SeedProcess>) -> Meta {
    Meta {
        abi_version: ABI_VERSION,
        tool_version: "crafted".into(),
        scope: "the whole system".into(),
        seed,
        ..Meta::default()
    }
}

/// A recording: the header, `records` in blocks, and a trailer at `end_ns`.
fn recording(meta: &Meta, records: impl IntoIterator<Item = Vec<u8>>, end_ns: u64) -> Vec<u8> {
    let mut out = writer::header(meta).to_vec();
    let mut block = writer::BlockBuilder::default();
    let mut count = 0;
    for record in records {
        block.push(&record);
        count += 1;
        if block.is_full() {
            out.extend(block.take_block());
        }
    }
    if !block.is_empty() {
        out.extend(block.take_block());
    }
    out.extend(writer::trailer(&Trailer {
        ended_ns: end_ns,
        records: count,
        ..Trailer::default()
    }));
    out
}

/// `n` zombies found at start, in the header's seed list.
pub fn seeds_recording(n: u32) -> Vec<u8> {
    let seed = (0..n)
        .map(|i| SeedProcess {
            pid: 1000 + i,
            ppid: 1,
            comm: Comm::from_str_lossy("z"),
            zombie: true,
            ..SeedProcess::default()
        })
        .collect();
    recording(&meta(seed), [], 1_000_000)
}

/// `n` forks by one parent, none of whose children ever exits.
pub fn forks_recording(n: u32) -> Vec<u8> {
    let records = (0..n).map(|i| fork(1_000 + u64::from(i), 1, 1000 + i, false));
    recording(&meta(Vec::new()), records, 1_000 + u64::from(n) + 1)
}

/// `n` children forked by one parent that all exit and are never reaped:
/// zombies made during the trace.
pub fn zombies_recording(n: u32) -> Vec<u8> {
    let forks = (0..n).map(|i| fork(1_000 + u64::from(i), 1, 1000 + i, false));
    let exits = (0..n).map(move |i| {
        let start = 1_000 + u64::from(i);
        exit(2_000_000 + u64::from(i), 1000 + i, 1, start)
    });
    recording(&meta(Vec::new()), forks.chain(exits), 10_000_000_000)
}

/// `reaper-trace report FILE`, its exit status, stderr, and its peak
/// resident set size in bytes: its `VmHWM`, read from /proc as it exits.
/// (`wait4`'s `ru_maxrss` will not do: it keeps the high-water mark of the
/// memory the child had before its exec, which is this test's.) The child
/// is traced and stopped at its exit (`PTRACE_O_TRACEEXIT`), when its
/// memory is still there to read.
fn report_with_peak_rss(file: &Path) -> (ExitStatus, String, u64) {
    use std::os::unix::process::CommandExt as _;
    let stderr_path = PathBuf::from(format!("{}.stderr", file.display()));
    let mut command = Command::new(tool());
    command
        .arg("report")
        .arg(file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by the waitpid loop below, which tracing needs"
    )]
    let child = command.spawn().expect("run report");
    let pid = child.id() as i32;
    let mut peak = 0;
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break;
        }
        let stop = libc::WSTOPSIG(status);
        let event = status >> 16;
        let mut deliver = 0;
        if event == libc::PTRACE_EVENT_EXIT {
            let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            peak = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .expect("VmHWM in /proc/PID/status")
                * 1024;
        } else if stop == libc::SIGTRAP && event == 0 && peak == 0 {
            // The stop after exec: from here, stop again at the exit.
            // SAFETY: our tracee, stopped.
            unsafe {
                libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, libc::PTRACE_O_TRACEEXIT);
            }
        } else {
            deliver = stop;
        }
        // SAFETY: our tracee, stopped; resumes it with its own signal.
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, deliver) };
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr_path);
    assert!(peak > 0, "no exit stop seen: {stderr}");
    (ExitStatus::from_raw(status), stderr, peak)
}

/// Peak RSS of `report` on a crafted file stays below `K × size + C`: the
/// state one seed or one open lifecycle costs is bounded, and seeds are
/// not all materialised at once.
fn assert_rss_bounded(name: &str, bytes: &[u8]) {
    // What `report` costs on an empty recording: the binary, its
    // libraries, the 1 MiB read buffer.
    let empty = temp_path(&format!("{name}-empty"));
    std::fs::write(&empty, recording(&meta(Vec::new()), [], 1)).unwrap();
    let (status, stderr, base) = report_with_peak_rss(&empty);
    assert!(status.success(), "{stderr}");
    let file = temp_path(name);
    std::fs::write(&file, bytes).unwrap();
    let started = Instant::now();
    let (status, stderr, peak) = report_with_peak_rss(&file);
    assert!(status.success(), "{name}: {stderr}");
    let size = bytes.len() as u64;
    let bound = base + RSS_PER_FILE_BYTE * size + (8 << 20);
    eprintln!(
        "{name}: file {size} bytes, peak RSS {peak} bytes ({:.1}x the file; empty recording {base}), {:?}",
        peak as f64 / size as f64,
        started.elapsed()
    );
    assert!(
        peak <= bound,
        "{name}: peak RSS {peak} bytes for a {size}-byte recording, more than {RSS_PER_FILE_BYTE}x its size plus {base} + 8 MiB"
    );
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&empty);
}

/// The multiple of the file size `report` may use.
const RSS_PER_FILE_BYTE: u64 = 20;

#[test]
fn many_open_lifecycles_cost_a_bounded_multiple_of_the_file() {
    assert_rss_bounded("forks", &forks_recording(200_000));
}

#[test]
fn many_zombies_cost_a_bounded_multiple_of_the_file() {
    assert_rss_bounded("zombies", &zombies_recording(200_000));
}

#[test]
fn a_long_seed_list_costs_a_bounded_multiple_of_the_file() {
    assert_rss_bounded("seeds", &seeds_recording(200_000));
}

/// A child of pid 100 forked at a stack whose frames are in `modules`, left
/// unreaped past the threshold: its finding's stack is symbolized, so
/// `report` looks at every module's path.
fn finding_with_modules(modules: &[&Path]) -> Vec<u8> {
    let mut records: Vec<Vec<u8>> = modules
        .iter()
        .enumerate()
        .map(|(i, path)| {
            user_record::module(
                900,
                i as u32 + 1,
                &Module {
                    path: path.to_str().unwrap().to_owned(),
                    build_id: Some(vec![0xab; 20]),
                    stamp: None,
                },
            )
            .to_vec()
        })
        .collect();
    records.push(
        user_record::stack(&RecordedStack {
            time_ns: 1_000,
            tgid: 100,
            tid: 100,
            owner: stack_owner::FORK,
            truncated: false,
            frames: (1..=modules.len() as u32).map(|id| (id, 0x1000)).collect(),
        })
        .to_vec(),
    );
    records.push(fork(1_001, 100, 101, true));
    records.push(exit(2_000, 101, 100, 1_001));
    recording(&meta(Vec::new()), records, 5_000_000_000)
}

/// Watches paths for opens (inotify's `IN_OPEN`, which an `O_PATH` handle
/// does not raise).
struct OpenWatch {
    fd: std::os::fd::OwnedFd,
}

impl OpenWatch {
    fn new(paths: &[&Path]) -> OpenWatch {
        use std::os::{fd::FromRawFd as _, unix::ffi::OsStrExt as _};
        // SAFETY: plain syscalls; the fd is owned from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        let watch = OpenWatch {
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        };
        for path in paths {
            let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
            // SAFETY: a valid fd and NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN) };
            assert!(
                wd >= 0,
                "watching {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        watch
    }

    /// How many opens happened since the last call.
    fn opens(&self) -> usize {
        use std::os::fd::AsRawFd as _;
        let mut buf = [0u8; 4096];
        let mut events = 0;
        loop {
            // SAFETY: reads into a buffer of its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return events;
            }
            let mut at = 0;
            while at + size_of::<libc::inotify_event>() <= n as usize {
                // SAFETY: the kernel wrote whole events; read unaligned.
                let event: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
                if event.mask & libc::IN_OPEN != 0 {
                    events += 1;
                }
                at += size_of::<libc::inotify_event>() + event.len as usize;
            }
        }
    }
}

/// `reaper-trace report FILE ARGS`, killed and failed if it has not ended
/// within 30 s (a FIFO opened for reading blocks until a writer comes).
fn report_with_deadline(file: &Path, args: &[&str]) -> (String, String) {
    let mut child = Command::new(tool())
        .arg("report")
        .arg(file)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run report");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("report {args:?} hung on a recording naming a FIFO");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "report {args:?}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn modules_that_are_not_regular_files_are_never_opened() {
    let dir = temp_path("modules");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut modules = vec![fifo.as_path()];
    // A character device of our own (the same as /dev/zero), so that no
    // other process's opens are counted; creating one needs root.
    let device = dir.join("zero");
    let c = std::ffi::CString::new(device.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 5)) } == 0 {
        modules.push(device.as_path());
    } else {
        eprintln!(
            "not checking a device: mknod: {}",
            std::io::Error::last_os_error()
        );
    }
    let watch = OpenWatch::new(&modules);
    // The watch sees an open: a reader that does not block.
    drop(
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap(),
    );
    assert_eq!(watch.opens(), 1, "the watch sees an open of the FIFO");
    let file = temp_path("fifo-module");
    std::fs::write(&file, finding_with_modules(&modules)).unwrap();
    let (json, _) = report_with_deadline(&file, &["--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let frames = &report["findings"][0]["fork_stack"];
    assert_eq!(
        frames[0]["module"].as_str(),
        fifo.to_str(),
        "the finding's stack names the FIFO: {report}"
    );
    assert_eq!(
        watch.opens(),
        0,
        "report opened a module that is not a regular file"
    );
    let perfetto = temp_path("fifo-module-timeline");
    let out = Command::new(tool())
        .arg("report")
        .arg(&file)
        .args(["--format", "perfetto"])
        .stdout(std::fs::File::create(&perfetto).unwrap())
        .status()
        .unwrap();
    assert!(out.success());
    assert_eq!(
        watch.opens(),
        0,
        "the timeline opened a module that is not a regular file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes the large crafted recordings of issue 19 into
/// `$REAPER_TRACE_CRAFTED_DIR`, for measuring by hand:
/// `/usr/bin/time -v reaper-trace report DIR/seeds.rtrace`.
#[test]
#[ignore = "writes large files for a manual measurement"]
fn write_large_crafted_recordings() {
    let dir = PathBuf::from(std::env::var_os("REAPER_TRACE_CRAFTED_DIR").expect("a directory"));
    // About 60 MiB of seed list, within the 64 MiB metadata limit.
    std::fs::write(dir.join("seeds.rtrace"), seeds_recording(1_250_000)).unwrap();
    std::fs::write(dir.join("forks.rtrace"), forks_recording(1_000_000)).unwrap();
    std::fs::write(dir.join("zombies.rtrace"), zombies_recording(1_000_000)).unwrap();
}
