//! How full a tracer's ring buffer gets, watched from outside the tracer:
//! the evidence for where losses come from (a ring that fills while its
//! reader waits for a core) and how much headroom a run that lost nothing
//! had left.
//!
//! A BPF ring buffer exposes its consumer and producer positions in the
//! first two pages of its mapping; any process holding the map's fd may
//! map them read-only. The map is found by its id in the tracer's
//! `/proc/PID/fdinfo`, opened by id (`BPF_MAP_GET_FD_BY_ID`, root), and
//! sampled by a thread until it is stopped.

use std::{
    os::fd::{FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, bail};

/// `BPF_MAP_TYPE_RINGBUF`.
const MAP_TYPE_RINGBUF: u32 = 27;
/// `BPF_MAP_GET_FD_BY_ID`.
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;

/// The ring buffer map of process `pid`: its id and size in bytes. The
/// largest, as the probes' log (aya-log) has a small ring of its own.
fn ring_of(pid: u32) -> anyhow::Result<(u32, u64)> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut best: Option<(u32, u64)> = None;
    for entry in std::fs::read_dir(&dir).with_context(|| dir.clone())? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if field("map_type:") == Some(MAP_TYPE_RINGBUF.into())
            && let (Some(id), Some(size)) = (field("map_id:"), field("max_entries:"))
            && best.is_none_or(|(_, s)| s < size)
        {
            best = Some((id as u32, size));
        }
    }
    best.with_context(|| format!("process {pid} holds no ring buffer map"))
}

fn map_fd_by_id(id: u32) -> anyhow::Result<OwnedFd> {
    // union bpf_attr for BPF_MAP_GET_FD_BY_ID: map_id, next_id, open_flags.
    let attr: [u32; 4] = [id, 0, 0, 0];
    // SAFETY: a read of `attr`, of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_GET_FD_BY_ID,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd < 0 {
        bail!("opening BPF map {id}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a new fd of our own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// One read-only page of the ring's mapping (0: consumer, 1: producer),
/// unmapped on drop.
struct Page(*const u64);

// SAFETY: the page is only read, with atomic loads.
unsafe impl Send for Page {}

impl Page {
    fn map(fd: &OwnedFd, index: i64) -> anyhow::Result<Page> {
        use std::os::fd::AsRawFd;
        let page = page_size();
        // SAFETY: a new shared read-only mapping of the map's fd.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                index * page as i64,
            )
        };
        if addr == libc::MAP_FAILED {
            bail!("mapping the ring: {}", std::io::Error::last_os_error());
        }
        Ok(Page(addr as *const u64))
    }

    fn load(&self) -> u64 {
        // SAFETY: the position is the page's first, 8-aligned word; the
        // kernel and the tracer update it atomically.
        unsafe { (*(self.0 as *const AtomicU64)).load(Ordering::Acquire) }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: our own mapping of one page.
        unsafe { libc::munmap(self.0 as *mut libc::c_void, page_size()) };
    }
}

fn page_size() -> usize {
    // SAFETY: no arguments beyond the name.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Samples a tracer's ring every `EVERY` until stopped.
pub struct RingFill {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
    size: u64,
}

/// Fast enough to see a 4 MiB ring fill (it takes hundreds of
/// milliseconds at the storms' rates), slow enough to cost nothing.
const EVERY: Duration = Duration::from_millis(1);

impl RingFill {
    /// Starts watching the ring buffer of process `pid`.
    pub fn watch(pid: u32) -> anyhow::Result<RingFill> {
        let (id, size) = ring_of(pid)?;
        let fd = map_fd_by_id(id)?;
        let consumer = Page::map(&fd, 0)?;
        let producer = Page::map(&fd, 1)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let _fd = fd;
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                // The consumer first: a producer read after it is never
                // behind it.
                let cons = consumer.load();
                let prod = producer.load();
                peak = peak.max(prod.saturating_sub(cons));
                std::thread::sleep(EVERY);
            }
            peak
        });
        Ok(RingFill { stop, thread, size })
    }

    /// The most bytes seen waiting at once, and the ring's size.
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        (self.thread.join().unwrap_or(0), self.size)
    }
}
