//! Every map the programs share.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use reaper_trace_common::{COMM_LEN, ForkFailKey, SenderKey, kind};

/// All records go here. The loader may resize it (`--ringbuf-size`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Records that could not be reserved in `EVENTS`, per kind.
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(kind::COUNT, 0);

/// tgids of the processes being followed (filter mode FOLLOW).
#[map]
pub static FOLLOWED: HashMap<u32, u32> = HashMap::with_max_entries(131_072, 0);

/// Arguments of a wait4/waitid in progress, keyed by tid, so that the exit
/// record can say what was asked for.
#[map]
pub static WAIT_ARGS: HashMap<u32, WaitArgs> = HashMap::with_max_entries(16_384, 0);

/// Threads whose user stack was sent as they entered a fork: the fork
/// probe takes the entry and marks its record `HAS_STACK`.
#[map]
pub static STACKED: HashMap<u32, u32> = HashMap::with_max_entries(16_384, 0);

/// The comm of a process that sent a signal to a followed one while not
/// followed itself (`docker stop`'s `runc kill`, gone 50 µs later): the
/// signal record's layout has no room for it, and nothing else tells
/// userspace its name. Keyed by the record's header; userspace takes the
/// entry when it reads the record, and the oldest go first if it does not.
#[map]
pub static SENDERS: LruHashMap<SenderKey, [u8; COMM_LEN]> = LruHashMap::with_max_entries(1_024, 0);

/// Failed fork/clone calls per (tgid, errno).
#[map]
pub static FORK_FAILS: HashMap<ForkFailKey, u64> = HashMap::with_max_entries(4_096, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct WaitArgs {
    pub syscall: u32,
    pub which: i32,
    pub upid: i32,
    pub options: i32,
    /// wait4's `stat_addr` or waitid's `infop` (user pointers).
    pub user_ptr: u64,
    pub enter_ktime_ns: u64,
}
