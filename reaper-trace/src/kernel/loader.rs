//! Loading the eBPF object with this kernel's offsets, attaching every
//! program, and giving access to its maps.

use std::os::fd::AsRawFd;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, RawTracePoint},
};
use reaper_trace_common::{COMM_LEN, Config, ForkFailKey, SenderKey, filter, kind};

use super::{
    btf::{Btf, BtfError},
    offsets::{self, OffsetError},
    privileges,
    probe_log::ProbeLog,
    support,
};

/// The programs, built by build.rs.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reaper-trace"));

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// Why tracing could not start. Each message names the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Not root, or root without the capabilities.
    #[error("missing capabilit{plural} {list}: loading eBPF tracing programs needs CAP_BPF and CAP_PERFMON; run as root, e.g. `sudo reaper-trace ...`", plural = if .0.len() == 1 { "y" } else { "ies" }, list = .0.join(", "))]
    MissingCapabilities(Vec<&'static str>),
    /// The kernel lacks a feature the programs need.
    #[error(transparent)]
    Unsupported(#[from] support::Unsupported),
    /// The kernel has no BTF.
    #[error(
        "no kernel BTF at {BTF_PATH} ({0}); reaper-trace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf(String),
    /// The kernel's BTF could not be read.
    #[error("reading {BTF_PATH}: {0}")]
    Btf(#[from] BtfError),
    /// An offset or a tracepoint is missing.
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    /// The verifier refused a program.
    #[error("the kernel's verifier rejected program {program}: {log_tail}")]
    Verifier { program: String, log_tail: String },
    /// The kernel refused to load a program without saying why.
    #[error(
        "the kernel refused to load program {program} ({error}); run as root with CAP_BPF and CAP_PERFMON, e.g. with sudo"
    )]
    LoadRefused { program: String, error: String },
    /// A program could not be attached.
    #[error("attaching {program} to {target}: {source}")]
    Attach {
        program: String,
        target: String,
        source: Box<ProgramError>,
    },
    /// The object itself could not be loaded.
    #[error("loading the eBPF object: {0}")]
    Object(Box<aya::EbpfError>),
    /// A map is missing from the object or has the wrong type.
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, String),
    /// `--pid` names no process.
    #[error("no process with pid {0}; check the pid with `ps -p {0}`")]
    NoSuchPid(u32),
    /// `--comm` longer than the kernel keeps.
    #[error(
        "--comm {0:?} is longer than the 15 bytes the kernel keeps of a process name; give its first 15 bytes"
    )]
    CommTooLong(String),
    /// The programs' log could not be read (`--probe-log`).
    #[error("--probe-log: {0}")]
    ProbeLog(String),
}

/// Which processes to follow, when not the whole system.
#[derive(Clone, Debug, Default)]
pub struct FollowSpec {
    /// These tgids (and, seeded by the caller, their descendants).
    pub pids: Vec<u32>,
    /// Processes with this comm, now and after any exec.
    pub comm: Option<String>,
    /// Processes running in this cgroup v2 or below it.
    pub cgroup: Option<CgroupTarget>,
    /// That cgroup's path, for people.
    pub cgroup_path: Option<String>,
}

/// A cgroup v2 the kernel filters on, by id and depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupTarget {
    pub id: u64,
    /// Depth below the v2 root (the root is 0).
    pub level: u32,
}

#[derive(Clone, Debug)]
pub struct TracerOptions {
    /// `None`: the whole system.
    pub follow: Option<FollowSpec>,
    pub ringbuf_bytes: u32,
    /// See `Config::wakeup_bytes`.
    pub wakeup_bytes: u32,
    /// Send per-thread events too (`--threads`).
    pub thread_events: bool,
    /// Print the programs' messages about their rare paths (a failed read,
    /// a full map) on stderr (`--probe-log`). Off, their logging code is
    /// removed at load and costs nothing.
    pub probe_log: bool,
    /// Copy the user stack at each fork of a process and each SIGCHLD
    /// action change of a traced process (`UserStackRecord`).
    pub stacks: bool,
    /// Attach the raw `sys_enter`/`sys_exit` programs (wait calls and their
    /// results, SIGCHLD action changes, failed forks, fork stacks). Any
    /// syscall hook sends every system call of every task through the
    /// kernel's slow path, which costs a `getppid` about 1.9x; without them
    /// tracing costs other system calls nothing, and reaps are dated by
    /// the kernel's free and /proc instead.
    pub syscall_hooks: bool,
}

/// Loaded and attached programs.
pub struct Tracer {
    ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    followed: BpfHashMap<MapData, u32, u32>,
    /// Names of signal senders not followed (a field of its own, so that
    /// they can be looked up while a record borrows `events`).
    pub senders: SenderNames,
    /// `category/name` of every hook attached.
    pub hooks: Vec<String>,
    /// Declared after `ebpf`, so dropped after the programs are: its last
    /// read finds everything they logged.
    _probe_log: Option<ProbeLog>,
}

/// Refuses a kernel without BTF or a ring buffer, naming what it lacks;
/// warns on one older than any tested.
fn check_kernel() -> Result<(), SetupError> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let offers = support::Offers {
        btf: std::path::Path::new(BTF_PATH).exists(),
        // An error probing (a seccomp filter, say) is not proof of absence:
        // loading then says what is wrong.
        ring_buffer: aya::sys::is_map_supported(aya::maps::MapType::RingBuf).unwrap_or(true),
    };
    if let Some(warning) = support::judge(&release, offers)? {
        eprintln!("reaper-trace: warning: {warning}");
    }
    Ok(())
}

/// Loads and attaches every program (each named after its tracepoint),
/// the syscall ones only with `syscall_hooks`; returns the hooks' names.
fn attach_all(ebpf: &mut Ebpf, syscall_hooks: bool) -> Result<Vec<String>, SetupError> {
    let mut hooks = Vec::new();
    for (name, _) in offsets::RAW_TRACEPOINTS {
        if !syscall_hooks && offsets::SYSCALL_TRACEPOINTS.contains(&name) {
            continue;
        }
        let program: &mut RawTracePoint = program(ebpf, name)?;
        program.load().map_err(|e| load_error(name, e))?;
        program.attach(name).map_err(|source| SetupError::Attach {
            program: name.into(),
            target: format!("raw tracepoint {name}"),
            source: Box::new(source),
        })?;
        hooks.push(format!("raw_tp/{name}"));
    }
    Ok(hooks)
}

/// Program `name` of the object, as its type.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, SetupError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or_else(|| {
        SetupError::Map("program", format!("{name} missing from the eBPF object"))
    })?;
    program
        .try_into()
        .map_err(|e: ProgramError| SetupError::Map("program", format!("{name}: {e}")))
}

/// Fails with the missing-capability line when this process may not load
/// tracing programs. Checked before anything else, so that every command
/// run without privileges says the same thing (and not what the kernel
/// lacks, which it cannot tell without them).
pub fn require_capabilities() -> Result<(), SetupError> {
    if let Some(effective) = privileges::effective_capabilities() {
        let missing = privileges::missing_capabilities(effective);
        if !missing.is_empty() {
            return Err(SetupError::MissingCapabilities(missing));
        }
    }
    Ok(())
}

impl Tracer {
    /// Checks privileges, resolves offsets, loads and attaches everything.
    pub fn start(options: &TracerOptions) -> Result<Tracer, SetupError> {
        require_capabilities()?;
        check_kernel()?;
        let mut config = Config::default();
        {
            // Dropped before the programs load: nothing else needs it (no
            // program is BTF-typed, so aya parses no BTF at all).
            let btf_bytes =
                std::fs::read(BTF_PATH).map_err(|e| SetupError::NoBtf(e.to_string()))?;
            let btf = Btf::parse(btf_bytes)?;
            offsets::kernel_struct_offsets(&btf, &mut config)?;
        }
        config.self_tgid = std::process::id();
        config.wakeup_bytes = options.wakeup_bytes;
        config.thread_events = options.thread_events as u32;
        config.probe_log = options.probe_log as u32;
        config.stacks = options.stacks as u32;
        config.ringbuf_bytes = options.ringbuf_bytes;
        if let Some(follow) = &options.follow {
            config.filter_mode = filter::FOLLOW;
            if let Some(comm) = &follow.comm {
                if comm.len() >= COMM_LEN {
                    return Err(SetupError::CommTooLong(comm.clone()));
                }
                config.comm[..comm.len()].copy_from_slice(comm.as_bytes());
                config.comm_len = comm.len() as u32;
            }
            if let Some(cgroup) = follow.cgroup {
                config.cgroup_id_lo = cgroup.id as u32;
                config.cgroup_id_hi = (cgroup.id >> 32) as u32;
                config.cgroup_level = cgroup.level;
            }
        }

        let mut loader = EbpfLoader::new();
        loader
            .btf(None)
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", options.ringbuf_bytes);
        if !options.probe_log {
            // Nothing writes to the log buffer: its smallest size will do.
            loader.map_max_entries("AYA_LOGS", page_size());
        }
        let mut ebpf = loader
            .load(PROGRAMS)
            .map_err(|e| SetupError::Object(Box::new(e)))?;

        let mut followed = take_map(&mut ebpf, "FOLLOWED", BpfHashMap::try_from)?;
        // Before the programs attach: nothing a followed process does is missed.
        if let Some(follow) = &options.follow {
            for &pid in &follow.pids {
                followed
                    .insert(pid, 1, 0)
                    .map_err(|e| SetupError::Map("FOLLOWED", e.to_string()))?;
            }
        }
        // Before the programs load: they refer to the log buffer.
        let probe_log = if options.probe_log {
            Some(ProbeLog::start(&mut ebpf).map_err(SetupError::ProbeLog)?)
        } else {
            None
        };
        let hooks = attach_all(&mut ebpf, options.syscall_hooks)?;
        let events = take_map(&mut ebpf, "EVENTS", RingBuf::try_from)?;
        let senders = SenderNames(take_map(&mut ebpf, "SENDERS", BpfHashMap::try_from)?);
        Ok(Tracer {
            ebpf,
            events,
            followed,
            senders,
            hooks,
            _probe_log: probe_log,
        })
    }

    /// Follows one more process (FOLLOW mode).
    pub fn follow(&mut self, tgid: u32) -> Result<(), SetupError> {
        self.followed
            .insert(tgid, 1, 0)
            .map_err(|e| SetupError::Map("FOLLOWED", e.to_string()))
    }

    /// Stops following a process that is gone.
    pub fn unfollow(&mut self, tgid: u32) {
        let _ = self.followed.remove(&tgid);
    }

    /// Records the kernel could not queue, per kind.
    pub fn lost(&self) -> [u64; kind::COUNT as usize] {
        let mut lost = [0u64; kind::COUNT as usize];
        if let Some(map) = self.ebpf.map("LOST")
            && let Ok(array) = PerCpuArray::<_, u64>::try_from(map)
        {
            for (k, slot) in lost.iter_mut().enumerate() {
                if let Ok(values) = array.get(&(k as u32), 0) {
                    *slot = values.iter().sum();
                }
            }
        }
        lost
    }

    /// Failed forks per (tgid, errno) counted in the kernel.
    pub fn fork_failures(&self) -> Vec<(ForkFailKey, u64)> {
        let Some(map) = self.ebpf.map("FORK_FAILS") else {
            return Vec::new();
        };
        let Ok(map) = BpfHashMap::<_, ForkFailKey, u64>::try_from(map) else {
            return Vec::new();
        };
        map.iter().filter_map(Result::ok).collect()
    }

    /// The ring buffer's file descriptor, for readiness polling.
    pub fn events_fd(&self) -> i32 {
        self.events.as_raw_fd()
    }
}

/// The names the kernel kept of processes that signalled a followed one
/// without being followed themselves (the `SENDERS` map).
pub struct SenderNames(BpfHashMap<MapData, SenderKey, [u8; COMM_LEN]>);

impl SenderNames {
    /// Takes the name kept for the signal that `tgid` sent at `time_ns`
    /// (its record's header), if the kernel kept one.
    pub fn take(&mut self, tgid: u32, time_ns: u64) -> Option<[u8; COMM_LEN]> {
        let key = SenderKey {
            tgid,
            _pad: 0,
            time_ns,
        };
        let comm = self.0.get(&key, 0).ok()?;
        let _ = self.0.remove(&key);
        Some(comm)
    }
}

/// The page size: the smallest size of a ring buffer.
fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).unwrap_or(4096)
}

fn take_map<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
) -> Result<T, SetupError> {
    let map = ebpf
        .take_map(name)
        .ok_or(SetupError::Map(name, "missing from the eBPF object".into()))?;
    convert(map).map_err(|e| SetupError::Map(name, e.to_string()))
}

/// Turns a program load failure into the verifier's last words, or a
/// permission hint when the kernel said nothing.
fn load_error(program: &str, error: ProgramError) -> SetupError {
    match error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail = verifier_log_tail(&log);
            if tail.is_empty() {
                SetupError::LoadRefused {
                    program: program.into(),
                    error: io_error.to_string(),
                }
            } else {
                SetupError::Verifier {
                    program: program.into(),
                    log_tail: tail,
                }
            }
        }
        other => SetupError::LoadRefused {
            program: program.into(),
            error: other.to_string(),
        },
    }
}

/// The last few meaningful lines of a verifier log, on one line.
pub fn verifier_log_tail(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_tail_is_one_line() {
        let log =
            "0: (b7) r0 = 0\n\n1: (95) exit\nR1 invalid mem access 'scalar'\nprocessed 2 insns\n";
        assert_eq!(
            verifier_log_tail(log),
            "1: (95) exit | R1 invalid mem access 'scalar' | processed 2 insns"
        );
        assert_eq!(verifier_log_tail(""), "");
    }

    #[test]
    fn capability_message_names_the_fix() {
        let msg = SetupError::MissingCapabilities(vec!["CAP_BPF", "CAP_PERFMON"]).to_string();
        assert!(
            msg.starts_with("missing capabilities CAP_BPF, CAP_PERFMON:"),
            "{msg}"
        );
        assert!(msg.contains("sudo"));
    }
}
