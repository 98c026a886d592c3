//! Unwinding a user stack the kernel copied (registers and the top of the
//! stack) into frames named by module and file offset, with `.eh_frame`
//! through framehop: Debian's glibc has no frame pointers, so a frame-pointer
//! walk from inside `fork()` would lose the callers users need.
//!
//! It needs the process alive: its maps say which file holds each address,
//! and the files hold the unwind tables. Both are cached: the module list
//! per process (until [`Unwinder::forget`], at its exec or exit), and what
//! each ELF file gives per device and inode (shared by every process that
//! maps it).
//!
//! Go code has no CFI (Go's linker writes no `.eh_frame`) but keeps frame
//! pointers, so where a module has no unwind tables, or none for an
//! address, the caller is found through the frame pointer (framehop's
//! fallback rule, `bp + 16` above the frame, checked to move up the
//! stack, read only from the copy). For the first frame, framehop's rule
//! at an address without CFI in a module with some (a Go program linked
//! with C code, cgo) takes the word at the stack pointer as the return
//! address, as for a C leaf function; Go's system call stubs do not leave
//! it there (`syscall.rawVforkSyscall` pops it before `vfork`), so a first
//! frame in Go's code takes the frame pointer too.
//!
//! A frame must lie in an executable mapping of a file. The unwind stops,
//! truncated, at the first that does not: code in `[vdso]` or in anonymous
//! memory (JIT) has no file to name it by, so it could be neither recorded
//! nor symbolized, and the frames beyond it would come from guessed frame
//! pointers. A return address in a non-executable mapping is garbage.

use std::{
    collections::HashMap,
    fs::File,
    ops::Range,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use framehop::{ExplicitModuleSectionInfo, FrameAddress, Unwinder as _};
use procfs::process::{MMPermissions, MMapPath, MemoryMap};

use self::native::{ArchUnwinder, Cache, Regs};
use super::elf::{self, Data, ElfFacts, UnwindSections};
use crate::trace::stack::{Frame, Module, Stack};

/// framehop's unwinder and registers for this machine's architecture: the
/// stacks copied are this machine's processes'.
#[cfg(not(target_arch = "aarch64"))]
mod native {
    pub use framehop::x86_64::{
        CacheX86_64 as Cache, UnwindRegsX86_64 as Regs, UnwinderX86_64 as ArchUnwinder,
    };

    use super::UserRegs;

    /// Kernel addresses start at 0xffff8000_00000000 on x86_64.
    pub const KERNEL_START: u64 = 0xffff_8000_0000_0000;

    pub fn start(regs: UserRegs) -> Regs {
        Regs::new(regs.ip, regs.sp, regs.bp)
    }

    pub fn frame_pointer(regs: &Regs) -> u64 {
        regs.bp()
    }

    /// The caller's registers after a frame-pointer step.
    pub fn set_caller(regs: &mut Regs, return_address: u64, sp: u64, fp: u64) {
        regs.set_ip(return_address);
        regs.set_sp(sp);
        regs.set_bp(fp);
    }

    pub fn strip_ptr_auth(address: u64) -> u64 {
        address
    }
}

/// aarch64: the frame pointer is x29, and a function that calls no other
/// (the C libraries' system call wrappers, often) keeps its return address
/// in the link register, x30, which the programs copy with the stack
/// (`UserStackRecord::lr`). Return addresses saved on the stack may carry
/// a pointer authentication code in their top bits (Debian builds with
/// `-mbranch-protection=standard`): user addresses fit 48 bits, the rest
/// is stripped.
#[cfg(target_arch = "aarch64")]
mod native {
    use framehop::aarch64::PtrAuthMask;
    pub use framehop::aarch64::{
        CacheAarch64 as Cache, UnwindRegsAarch64 as Regs, UnwinderAarch64 as ArchUnwinder,
    };

    use super::UserRegs;

    /// User addresses on arm64 stay below 2^52 (the largest VA size);
    /// kernel addresses start at 0xfff0000000000000 or above.
    pub const KERNEL_START: u64 = 1 << 52;

    const USER_ADDRESS_BITS: u64 = (1 << 48) - 1;

    fn mask() -> PtrAuthMask {
        PtrAuthMask::from_max_known_address(USER_ADDRESS_BITS)
    }

    pub fn start(regs: UserRegs) -> Regs {
        Regs::new_with_ptr_auth_mask(mask(), regs.lr, regs.sp, regs.bp)
    }

    pub fn frame_pointer(regs: &Regs) -> u64 {
        regs.fp()
    }

    /// The caller's registers after a frame-pointer step (its link
    /// register is the return address just read).
    pub fn set_caller(regs: &mut Regs, return_address: u64, sp: u64, fp: u64) {
        regs.set_lr(return_address);
        regs.set_sp(sp);
        regs.set_fp(fp);
    }

    pub fn strip_ptr_auth(address: u64) -> u64 {
        mask().strip_ptr_auth(address)
    }
}

/// Frames kept at most; a deeper stack is marked truncated. The line users
/// need is near the top: the fork is a few frames under it.
pub const MAX_FRAMES: usize = 64;

/// The user registers the unwind starts from (saved at syscall entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRegs {
    /// The program counter.
    pub ip: u64,
    pub sp: u64,
    /// The frame pointer (rbp, x29).
    pub bp: u64,
    /// aarch64's link register (x30), 0 where unknown; x86_64 has none.
    pub lr: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnwindError {
    /// The registers are not those of user code (a kernel thread).
    #[error("no user context (ip {ip:#x})")]
    NoUserContext { ip: u64 },
    /// The process is gone (or never was): nothing names its addresses.
    #[error("cannot read the memory maps of process {tgid}: {source}")]
    Maps {
        tgid: u32,
        #[source]
        source: procfs::ProcError,
    },
    /// Not even the program counter is in code the maps name: the maps are
    /// empty when a process has let go of its memory on its way out, and
    /// an empty stack would pass for a frame-less one.
    #[error("the program counter {ip:#x} of process {tgid} is in no mapped code")]
    NoFrames { tgid: u32, ip: u64 },
}

/// Unwinds the stacks of many processes, caching what it read about each.
/// One per tracer.
pub struct Unwinder {
    processes: HashMap<u32, ProcessModules>,
    /// Per mapped file. Files that could not be opened are not cached:
    /// another process may manage.
    files: HashMap<FileKey, CachedFile>,
}

impl Default for Unwinder {
    fn default() -> Self {
        Self::new()
    }
}

impl Unwinder {
    pub fn new() -> Self {
        Self {
            processes: HashMap::new(),
            files: HashMap::new(),
        }
    }

    /// Drops what is known of a process's mappings: call it when the
    /// process execs (a new address space) or exits (its pid will be reused).
    pub fn forget(&mut self, tgid: u32) {
        self.processes.remove(&tgid);
    }

    /// Unwinds the stack of a thread of process `tgid`, stopped at `regs`,
    /// from `stack`: a copy of its memory starting at `stack_base` (at or
    /// below `regs.sp`). The frames found before any failure are kept, with
    /// `truncated` set. An error only when nothing can be said at all.
    pub fn unwind(
        &mut self,
        tgid: u32,
        regs: UserRegs,
        stack_base: u64,
        stack: &[u8],
    ) -> Result<Stack, UnwindError> {
        if regs.ip == 0 || regs.ip >= native::KERNEL_START {
            return Err(UnwindError::NoUserContext { ip: regs.ip });
        }
        let fresh = !self.processes.contains_key(&tgid);
        if fresh {
            self.load(tgid)?;
        }
        let mut walk = self.walk(tgid, regs, stack_base, stack);
        // An address in no mapping at all: maybe a library loaded since the
        // maps were read. Read them once more, if the process is still there.
        if walk.unmapped && !fresh && self.load(tgid).is_ok() {
            walk = self.walk(tgid, regs, stack_base, stack);
        }
        if walk.stack.frames.is_empty() {
            return Err(UnwindError::NoFrames { tgid, ip: regs.ip });
        }
        Ok(walk.stack)
    }

    fn walk(&mut self, tgid: u32, regs: UserRegs, base: u64, bytes: &[u8]) -> Walk {
        match self.processes.get_mut(&tgid) {
            Some(process) => walk(process, regs, base, bytes),
            None => Walk {
                stack: Stack {
                    frames: Vec::new(),
                    truncated: true,
                },
                unmapped: false,
            },
        }
    }

    /// (Re)reads the maps of a process; on failure the old list stays.
    fn load(&mut self, tgid: u32) -> Result<(), UnwindError> {
        let maps = read_maps(tgid)?;
        let modules = self.process_modules(tgid, &maps);
        self.processes.insert(tgid, modules);
        Ok(())
    }

    fn process_modules(&mut self, tgid: u32, maps: &[MemoryMap]) -> ProcessModules {
        let mut unwinder = ArchUnwinder::new();
        let mut modules: Vec<Option<Arc<Module>>> = vec![None; maps.len()];
        let mut go_text = Vec::new();
        for load in loads(maps) {
            let (module, unwind, go) = self.load_module(tgid, maps, &load);
            if let Some(unwind) = unwind {
                unwinder.add_module(unwind);
            }
            go_text.extend(go);
            for &i in &load {
                modules[i] = Some(module.clone());
            }
        }
        let mappings = maps
            .iter()
            .zip(modules)
            .map(|(map, module)| Mapping {
                range: map.address.0..map.address.1,
                offset: map.offset,
                executable: map.perms.contains(MMPermissions::EXECUTE),
                module,
            })
            .collect();
        ProcessModules {
            mappings,
            unwinder,
            cache: Cache::new(),
            go_text,
        }
    }

    /// The module of one load of a file (the mappings `load` of `maps`),
    /// what framehop needs to unwind through it, when its file was read,
    /// and where Go's functions are in memory, in a Go program.
    fn load_module(
        &mut self,
        tgid: u32,
        maps: &[MemoryMap],
        load: &[usize],
    ) -> (
        Arc<Module>,
        Option<framehop::Module<Data>>,
        Option<Range<u64>>,
    ) {
        let first = &maps[load[0]];
        let path = module_path(&first.pathname);
        let executable = load
            .iter()
            .map(|&i| &maps[i])
            .filter(|m| m.perms.contains(MMPermissions::EXECUTE));
        // Only files with code are read: frames cannot be in the others
        // (data files, locale archives), which need no build id then.
        let facts = executable
            .clone()
            .next()
            .and_then(|map| self.facts(tgid, map, Path::new(&path)));
        let Some(facts) = facts else {
            return (
                Arc::new(Module {
                    path,
                    build_id: None,
                    stamp: None,
                }),
                None,
                None,
            );
        };
        let bias = executable
            .clone()
            .find_map(|m| elf::load_bias(&facts.segments, m.address.0, m.offset));
        let last = &maps[load[load.len() - 1]];
        let unwind = bias.map(|bias| {
            framehop_module(&path, first.address.0..last.address.1, bias, &facts.unwind)
        });
        let go_text = bias
            .zip(facts.unwind.go_text.clone())
            .map(|(bias, text)| text.start.wrapping_add(bias)..text.end.wrapping_add(bias));
        let module = Module {
            path,
            build_id: facts.build_id.clone(),
            // Only where there is no build id to check against.
            stamp: facts.stamp.filter(|_| facts.build_id.is_none()),
        };
        (Arc::new(module), unwind, go_text)
    }

    /// What the file behind `map` gives, read once per file. The file is
    /// opened every time all the same: an inode number freed by a deleted
    /// file is soon reused (a rebuilt binary), and only its change time
    /// tells the new file from the old.
    fn facts(&mut self, tgid: u32, map: &MemoryMap, path: &Path) -> Option<Arc<ElfFacts>> {
        let key = FileKey {
            dev: map.dev,
            inode: map.inode,
        };
        let known = self.files.get(&key);
        let Some(file) = open_mapped(tgid, map, path) else {
            // Unverifiable, but what was read from that inode is likelier
            // right than nothing.
            return known.and_then(|k| k.facts.clone());
        };
        let changed = changed(&file);
        if let Some(known) = known.filter(|k| k.changed == changed) {
            return known.facts.clone();
        }
        let facts = elf::read(file, true).ok().map(Arc::new);
        let cached = CachedFile {
            changed,
            facts: facts.clone(),
        };
        self.files.insert(key, cached);
        facts
    }
}

/// A file, as the kernel names it in the maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileKey {
    dev: (i32, i32),
    inode: u64,
}

struct CachedFile {
    /// The file's change time (seconds, nanoseconds) when it was read.
    changed: Option<(i64, i64)>,
    /// `None` for a file that is no ELF of this machine's architecture.
    facts: Option<Arc<ElfFacts>>,
}

fn changed(file: &File) -> Option<(i64, i64)> {
    file.metadata()
        .ok()
        .map(|meta| (meta.ctime(), meta.ctime_nsec()))
}

/// What one process has mapped, as read from its maps.
struct ProcessModules {
    /// Every mapping, in address order.
    mappings: Vec<Mapping>,
    unwinder: ArchUnwinder<Data>,
    /// framehop's rule cache, one per process: its entries are tagged with
    /// a 16-bit module generation that wraps after some thousands of
    /// processes, so a cache shared by all could hand one process
    /// another's rules.
    cache: Cache,
    /// Where Go's functions are mapped (of each Go program or library).
    go_text: Vec<Range<u64>>,
}

struct Mapping {
    range: Range<u64>,
    offset: u64,
    executable: bool,
    /// The file mapped, if any.
    module: Option<Arc<Module>>,
}

/// Where an address lies in a process.
enum Place {
    /// In code from a file: a frame.
    Code(Frame),
    /// In a mapping that holds no code from a file.
    NotCode,
    /// In no mapping.
    Unmapped,
}

/// Where an address lies among a process's mappings, in address order.
fn place(mappings: &[Mapping], address: u64) -> Place {
    let after = mappings.partition_point(|m| m.range.start <= address);
    let Some(mapping) = after.checked_sub(1).map(|i| &mappings[i]) else {
        return Place::Unmapped;
    };
    if address >= mapping.range.end {
        return Place::Unmapped;
    }
    match &mapping.module {
        Some(module) if mapping.executable => Place::Code(Frame {
            module: module.clone(),
            file_offset: address - mapping.range.start + mapping.offset,
        }),
        _ => Place::NotCode,
    }
}

/// An unwind, and whether it stopped at an address in no mapping.
struct Walk {
    stack: Stack,
    unmapped: bool,
}

fn walk(process: &mut ProcessModules, regs: UserRegs, base: u64, bytes: &[u8]) -> Walk {
    let ProcessModules {
        mappings,
        unwinder,
        cache,
        go_text,
    } = process;
    let mut read_stack = |address| read_word(base, bytes, address);
    let mut registers = native::start(regs);
    let mut address = FrameAddress::from_instruction_pointer(regs.ip);
    let mut stack = Stack::default();
    let stop = |mut stack: Stack, truncated, unmapped| {
        stack.truncated = truncated;
        Walk { stack, unmapped }
    };
    loop {
        if stack.frames.len() == MAX_FRAMES {
            return stop(stack, true, false);
        }
        // The return address minus one: inside the call, on its line.
        match place(mappings, address.address_for_lookup()) {
            Place::Code(frame) => stack.frames.push(frame),
            Place::NotCode => return stop(stack, true, false),
            Place::Unmapped => return stop(stack, true, true),
        }
        let first_in_go =
            !address.is_return_address() && go_text.iter().any(|text| text.contains(&regs.ip));
        let caller = if first_in_go {
            frame_pointer_step(&mut registers, &mut read_stack)
        } else {
            unwinder
                .unwind_frame(address, &mut registers, cache, &mut read_stack)
                .map_err(|_| ())
        };
        // framehop often ends in Err where the copied bytes end; the frames
        // found until then are good.
        address = match caller {
            Ok(Some(return_address)) => match FrameAddress::from_return_address(return_address) {
                Some(address) => address,
                None => return stop(stack, true, false),
            },
            Ok(None) => return stop(stack, false, false),
            Err(()) => return stop(stack, true, false),
        };
    }
}

/// One step up a frame-pointer chain: the caller's frame pointer at `bp`,
/// its return address above it, its stack pointer above that. The new
/// stack pointer must lie above the old one (a chain that goes down or
/// stays is garbage), and the words are read from the copy only. `None`
/// at the end of the chain (a zero frame pointer or return address).
fn frame_pointer_step(
    registers: &mut Regs,
    read_stack: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> Result<Option<u64>, ()> {
    let (sp, bp) = (registers.sp(), native::frame_pointer(registers));
    if bp == 0 {
        return Ok(None);
    }
    let new_sp = bp.checked_add(16).ok_or(())?;
    if new_sp <= sp {
        return Err(());
    }
    let caller_bp = read_stack(bp)?;
    let return_address = native::strip_ptr_auth(read_stack(bp + 8)?);
    if return_address == 0 {
        return Ok(None);
    }
    native::set_caller(registers, return_address, new_sp, caller_bp);
    Ok(Some(return_address))
}

/// A stack word from the copy; an error past its ends.
fn read_word(base: u64, bytes: &[u8], address: u64) -> Result<u64, ()> {
    let start = usize::try_from(address.checked_sub(base).ok_or(())?).map_err(|_| ())?;
    let word = bytes
        .get(start..start.checked_add(8).ok_or(())?)
        .ok_or(())?;
    Ok(u64::from_le_bytes(word.try_into().map_err(|_| ())?))
}

fn read_maps(tgid: u32) -> Result<Vec<MemoryMap>, UnwindError> {
    let maps = i32::try_from(tgid)
        .map_err(|_| procfs::ProcError::NotFound(None))
        .and_then(procfs::process::Process::new)
        .and_then(|process| process.maps());
    let mut maps = maps.map_err(|source| UnwindError::Maps { tgid, source })?.0;
    maps.sort_by_key(|m| m.address.0);
    Ok(maps)
}

/// Groups the file mappings (indices into `maps`, in address order) by load:
/// the pieces of one file the loader mapped together. A load ends where
/// another file's mapping comes, or where the same file starts over at a
/// lower offset (loaded twice). Anonymous mappings between pieces (.bss)
/// don't end it.
fn loads(maps: &[MemoryMap]) -> Vec<Vec<usize>> {
    let mut loads: Vec<Vec<usize>> = Vec::new();
    for (i, map) in maps.iter().enumerate() {
        if !is_file(map) {
            continue;
        }
        let continues = loads.last().is_some_and(|load| {
            let last = &maps[load[load.len() - 1]];
            (last.dev, last.inode) == (map.dev, map.inode) && map.offset >= last.offset
        });
        match loads.last_mut() {
            Some(load) if continues => load.push(i),
            _ => loads.push(vec![i]),
        }
    }
    loads
}

fn is_file(map: &MemoryMap) -> bool {
    matches!(map.pathname, MMapPath::Path(_)) && map.inode != 0
}

/// The path a module is known by: as the process's maps say, less the
/// " (deleted)" the kernel appends to a file removed since, so that a
/// report finds the file put back there (the build id says if it is the
/// same).
fn module_path(pathname: &MMapPath) -> String {
    let MMapPath::Path(path) = pathname else {
        return String::new();
    };
    let path = path.to_string_lossy();
    path.strip_suffix(" (deleted)").unwrap_or(&path).to_owned()
}

/// Opens the file behind a mapping: through `/proc/PID/map_files`, which
/// reaches it even if deleted, replaced, or in another mount namespace (it
/// needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE); else by its path, if
/// that is still the same file (device and inode).
fn open_mapped(tgid: u32, map: &MemoryMap, path: &Path) -> Option<File> {
    let (start, end) = map.address;
    let by_map = PathBuf::from(format!("/proc/{tgid}/map_files/{start:x}-{end:x}"));
    File::open(by_map)
        .ok()
        .or_else(|| File::open(path).ok().filter(|file| same_file(file, map)))
}

fn same_file(file: &File, map: &MemoryMap) -> bool {
    file.metadata().is_ok_and(|meta| {
        let dev = meta.dev();
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        meta.ino() == map.inode
            && i64::from(major) == i64::from(map.dev.0)
            && i64::from(minor) == i64::from(map.dev.1)
    })
}

/// A framehop module for one load of an ELF file. For ELF, framehop's
/// stated base is 0, so its actual base is the load bias: an address minus
/// it is the address the unwind tables speak.
fn framehop_module(
    path: &str,
    avma: Range<u64>,
    bias: u64,
    sections: &UnwindSections,
) -> framehop::Module<Data> {
    let (eh_frame_svma, eh_frame) = sections.eh_frame.clone().unzip();
    let (eh_frame_hdr_svma, eh_frame_hdr) = sections.eh_frame_hdr.clone().unzip();
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: sections.text.clone(),
        got_svma: sections.got.clone(),
        eh_frame_svma,
        eh_frame,
        eh_frame_hdr_svma,
        eh_frame_hdr,
        ..Default::default()
    };
    framehop::Module::new(path.to_owned(), avma, bias, info)
}

/// The tests unwind this machine's own x86_64 programs and libraries.
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use framehop::x86_64::UnwindRegsX86_64;

    use super::*;

    use crate::host::symbolize::Symbolizer;
    use crate::trace::stack::Symbol;

    #[test]
    fn read_word_stays_inside_the_copy() {
        let bytes: Vec<u8> = (0..24).collect();
        let base = 0x7fff_0000;
        assert_eq!(
            read_word(base, &bytes, base + 8),
            Ok(u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]))
        );
        assert_eq!(read_word(base, &bytes, base + 16).map(|_| ()), Ok(()));
        assert_eq!(read_word(base, &bytes, base + 17), Err(()));
        assert_eq!(read_word(base, &bytes, base - 8), Err(()));
        assert_eq!(read_word(base, &bytes, u64::MAX), Err(()));
    }

    #[test]
    fn a_frame_pointer_step_goes_up_the_copy_only() {
        let base = 0x7fff_0000;
        // Words: [0] the caller's frame pointer, [1] the return address.
        let words: [u64; 10] = [base + 0x40, 0x40_1234, 0, 0, 0, 0, 0, 0, 0, 0];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut read = |address| read_word(base, &bytes, address);
        let mut registers = UnwindRegsX86_64::new(0x40_1000, base - 8, base);
        assert_eq!(
            frame_pointer_step(&mut registers, &mut read),
            Ok(Some(0x40_1234))
        );
        assert_eq!(
            (registers.ip(), registers.sp(), registers.bp()),
            (0x40_1234, base + 16, base + 0x40)
        );
        // The frame at base + 0x40 holds zeros: the end of the chain.
        assert_eq!(frame_pointer_step(&mut registers, &mut read), Ok(None));
        // A frame pointer below the stack pointer (going down), outside
        // the copy, or zero.
        for (sp, bp) in [(base + 0x20, base), (base - 8, base + 0x1000)] {
            let mut registers = UnwindRegsX86_64::new(0x40_1000, sp, bp);
            assert_eq!(frame_pointer_step(&mut registers, &mut read), Err(()));
        }
        let mut registers = UnwindRegsX86_64::new(0x40_1000, base, 0);
        assert_eq!(frame_pointer_step(&mut registers, &mut read), Ok(None));
    }

    fn map(line: &str) -> MemoryMap {
        let maps: procfs::process::MemoryMaps =
            procfs::FromBufRead::from_buf_read(line.as_bytes()).unwrap();
        maps.0.into_iter().next().unwrap()
    }

    #[test]
    fn loads_group_the_mappings_of_one_file() {
        let maps = [
            map("555555554000-555555555000 r--p 00000000 fe:01 100 /usr/bin/prog\n"),
            map("555555555000-555555556000 r-xp 00001000 fe:01 100 /usr/bin/prog\n"),
            map("555555556000-555555557000 rw-p 00000000 00:00 0 \n"),
            map("555555557000-555555558000 rw-p 00002000 fe:01 100 /usr/bin/prog\n"),
            map("7ffff7dd0000-7ffff7df6000 r--p 00000000 fe:01 200 /usr/lib/libc.so.6\n"),
            map("7ffff7df6000-7ffff7f4b000 r-xp 00026000 fe:01 200 /usr/lib/libc.so.6\n"),
            // The same file loaded again (a second namespace).
            map("7ffff7f50000-7ffff7f60000 r--p 00000000 fe:01 200 /usr/lib/libc.so.6\n"),
            map("7ffff7fc1000-7ffff7fc3000 r-xp 00000000 00:00 0 [vdso]\n"),
        ];
        assert_eq!(loads(&maps), vec![vec![0, 1, 3], vec![4, 5], vec![6]]);
    }

    #[test]
    fn module_paths_lose_the_deleted_mark() {
        let deleted = map("1000-2000 r-xp 00000000 fe:01 7 /tmp/prog (deleted)\n");
        assert_eq!(module_path(&deleted.pathname), "/tmp/prog");
        let vdso = map("1000-2000 r-xp 00000000 00:00 0 [vdso]\n");
        assert_eq!(module_path(&vdso.pathname), "");
    }

    #[test]
    fn places_name_only_code_from_files() {
        let module = Arc::new(Module {
            path: "/usr/bin/prog".into(),
            build_id: None,
            stamp: None,
        });
        let mapping =
            |range: Range<u64>, offset, executable, module: Option<&Arc<Module>>| Mapping {
                range,
                offset,
                executable,
                module: module.cloned(),
            };
        let process = ProcessModules {
            mappings: vec![
                mapping(0x1000..0x2000, 0, false, Some(&module)),
                mapping(0x2000..0x4000, 0x1000, true, Some(&module)),
                mapping(0x8000..0x9000, 0, true, None),
            ],
            unwinder: ArchUnwinder::new(),
            cache: Cache::new(),
            go_text: Vec::new(),
        };
        assert!(matches!(
            place(&process.mappings, 0x3456),
            Place::Code(Frame {
                file_offset: 0x2456,
                ..
            })
        ));
        assert!(matches!(place(&process.mappings, 0x1800), Place::NotCode));
        assert!(matches!(place(&process.mappings, 0x8800), Place::NotCode));
        assert!(matches!(place(&process.mappings, 0x4000), Place::Unmapped));
        assert!(matches!(place(&process.mappings, 0x10), Place::Unmapped));
    }

    #[test]
    fn no_user_context_is_an_error() {
        let regs = UserRegs {
            ip: 0,
            sp: 0x7fff_0000,
            bp: 0,
            lr: 0,
        };
        let result = Unwinder::new().unwind(std::process::id(), regs, 0x7fff_0000, &[]);
        assert!(matches!(result, Err(UnwindError::NoUserContext { ip: 0 })));
    }

    #[test]
    fn a_vanished_process_is_an_error() {
        // Above the kernel's largest pid_max (2^22): no such process.
        let tgid = 1 << 30;
        let regs = UserRegs {
            ip: 0x40_1000,
            sp: 0x7fff_0000,
            bp: 0,
            lr: 0,
        };
        let result = Unwinder::new().unwind(tgid, regs, 0x7fff_0000, &[0; 64]);
        assert!(matches!(result, Err(UnwindError::Maps { tgid: t, .. }) if t == tgid));
    }

    /// What the kernel would hand over for this thread, now.
    struct Captured {
        regs: UserRegs,
        base: u64,
        bytes: Vec<u8>,
        /// The lines of `capture_here`.
        lines: Range<u32>,
    }

    /// Reads its own registers, then copies the stack from the page of its
    /// stack pointer up (16 KiB at most, less where the stack mapping ends),
    /// like the kernel side does. Through /proc/self/mem, as the bytes
    /// below the stack pointer are the copying calls' own frames.
    #[inline(never)]
    fn capture_here() -> Captured {
        let first = line!();
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: only reads registers into outputs; no memory, no stack.
        unsafe {
            core::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
                options(nomem, nostack, preserves_flags),
            );
        }
        let (base, bytes) = copy_stack(sp);
        Captured {
            regs: UserRegs { ip, sp, bp, lr: 0 },
            base,
            bytes,
            lines: first..line!(),
        }
    }

    fn copy_stack(sp: u64) -> (u64, Vec<u8>) {
        use std::os::unix::fs::FileExt;
        let base = sp & !0xfff;
        let maps = procfs::process::Process::myself().unwrap().maps().unwrap();
        let stack = maps
            .iter()
            .find(|m| m.address.0 <= sp && sp < m.address.1)
            .expect("the stack pointer is in a mapping");
        let len = (stack.address.1 - base).min(16 << 10);
        let mut bytes = vec![0; len as usize];
        let mem = File::open("/proc/self/mem").unwrap();
        mem.read_exact_at(&mut bytes, base).unwrap();
        (base, bytes)
    }

    #[inline(never)]
    fn middle_known() -> (Captured, u32) {
        let (captured, line) = (capture_here(), line!());
        std::hint::black_box((captured, line))
    }

    #[inline(never)]
    fn outer_known() -> (Captured, u32, u32) {
        let ((captured, middle_line), line) = (middle_known(), line!());
        std::hint::black_box((captured, middle_line, line))
    }

    fn position(symbols: &[Symbol], function: &str) -> usize {
        symbols
            .iter()
            .position(|s| s.function.as_deref().is_some_and(|f| f.ends_with(function)))
            .unwrap_or_else(|| panic!("no {function} in {symbols:#?}"))
    }

    #[test]
    fn unwinds_and_symbolizes_its_own_stack() {
        let (captured, middle_line, outer_line) = outer_known();
        let mut unwinder = Unwinder::new();
        let stack = unwinder
            .unwind(
                std::process::id(),
                captured.regs,
                captured.base,
                &captured.bytes,
            )
            .unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(stack.frames[0].module.path, exe.to_string_lossy());
        assert!(stack.frames[0].module.build_id.is_some());

        let symbols = Symbolizer::new().symbolize_stack(&stack);
        let capture = position(&symbols, "unwind::tests::capture_here");
        let middle = position(&symbols, "unwind::tests::middle_known");
        let outer = position(&symbols, "unwind::tests::outer_known");
        let test = position(
            &symbols,
            "unwind::tests::unwinds_and_symbolizes_its_own_stack",
        );
        assert_eq!((capture, middle, outer, test), (0, 1, 2, 3), "{symbols:#?}");
        for symbol in &symbols[..4] {
            let file = symbol.file.as_deref().unwrap_or_default();
            assert!(
                Path::new(file).ends_with("src/host/unwind.rs"),
                "{symbol:?}"
            );
        }
        let line = symbols[capture].line.unwrap();
        assert!(
            captured.lines.contains(&line),
            "{line} {:?}",
            captured.lines
        );
        // Each caller's line is that of its call.
        assert_eq!(symbols[middle].line, Some(middle_line));
        assert_eq!(symbols[outer].line, Some(outer_line));
    }

    #[test]
    fn stale_maps_are_read_again_once() {
        let (captured, _, _) = outer_known();
        let pid = std::process::id();
        let mut unwinder = Unwinder::new();
        let unwind = |unwinder: &mut Unwinder| {
            unwinder
                .unwind(pid, captured.regs, captured.base, &captured.bytes)
                .unwrap()
        };
        let full = unwind(&mut unwinder);
        // Maps read before anything was loaded: the ip is in none of them.
        let stale = ProcessModules {
            mappings: Vec::new(),
            unwinder: ArchUnwinder::new(),
            cache: Cache::new(),
            go_text: Vec::new(),
        };
        unwinder.processes.insert(pid, stale);
        assert_eq!(unwind(&mut unwinder), full);
        assert!(!unwinder.processes[&pid].mappings.is_empty());
    }

    #[test]
    fn a_file_is_opened_by_path_only_if_it_is_the_mapped_one() {
        let maps = read_maps(std::process::id()).unwrap();
        let exe = std::env::current_exe().unwrap();
        let map = maps
            .iter()
            .find(|m| m.pathname == MMapPath::Path(exe.clone()))
            .unwrap();
        // No such process: no map_files, so by path.
        let nobody = 1 << 30;
        assert!(open_mapped(nobody, map, &exe).is_some());
        let mut other = map.clone();
        other.inode += 1;
        assert!(open_mapped(nobody, &other, &exe).is_none());
    }

    #[test]
    fn garbage_stack_bytes_give_a_short_stack_not_a_panic() {
        let (captured, _, _) = outer_known();
        let mut unwinder = Unwinder::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let garbage: Vec<u8> = (0..captured.bytes.len())
            .map(|_| {
                // xorshift: deterministic junk.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let stack = unwinder
            .unwind(std::process::id(), captured.regs, captured.base, &garbage)
            .unwrap();
        // The first frame comes from the registers alone.
        assert!(!stack.frames.is_empty());
        assert!(stack.frames.len() <= MAX_FRAMES);
        let stack = unwinder
            .unwind(std::process::id(), captured.regs, captured.base, &[])
            .unwrap();
        assert_eq!(stack.frames.len(), 1);
        assert!(stack.truncated);
    }

    #[test]
    fn an_ip_in_no_code_is_an_error_not_an_empty_stack() {
        let mut unwinder = Unwinder::new();
        let data = [0u64; 4];
        let pid = std::process::id();
        for ip in [data.as_ptr() as u64, 0x10] {
            let regs = UserRegs {
                ip,
                sp: 0x7fff_0000,
                bp: 0,
                lr: 0,
            };
            let result = unwinder.unwind(pid, regs, 0x7fff_0000, &[]);
            assert!(
                matches!(result, Err(UnwindError::NoFrames { tgid, ip: i }) if tgid == pid && i == ip),
                "{result:?}"
            );
        }
        unwinder.forget(std::process::id());
        assert!(unwinder.processes.is_empty());
    }
}
