//! Naming Go code from Go's own line table, `.gopclntab`: the table the Go
//! runtime reads for its panics' tracebacks, so it is in every Go binary,
//! also when built with `-ldflags=-s -w` (no symbol table, no DWARF), where
//! it is all there is to name a frame by. blazesym does not read it.
//!
//! The layout is Go's (`runtime/symtab.go`: `pcHeader`, `_func`,
//! `functab`; `runtime/symtabinl.go`: `inlinedCall`; `debug/gosym`), in the
//! two forms Go 1.18 and later write: magic `0xfffffff0` (Go 1.18, 1.19)
//! and `0xfffffff1` (Go 1.20 on, whose `_func` has one more field and whose
//! inline tree entries are shorter). Older tables, and anything that does
//! not hold together, name nothing: every read is bounds-checked and a
//! failure is `None`, never a guess.
//!
//! Inlined code: a call the compiler inlined has the callee's file and line
//! but the caller's `_func`. The inline tree (a `funcdata` table, found
//! through the runtime's `moduledata`) tells the callee's name and where
//! the call was, as `runtime.Frames` reads it. Without it (`moduledata`
//! not found), an inlined address is given its line without a function,
//! then the function it is compiled in without a line.
//!
//! Where the table is: `.gopclntab`; `.data.rel.ro.gopclntab` in a
//! position-independent binary; and, when the C linker made that binary
//! (cgo), somewhere in `.data.rel.ro`, found by its header.

use std::{fs::File, sync::Arc};

use object::{Object, ObjectSection, ReadCache};

/// The magic of Go 1.18 and 1.19 tables.
const GO118_MAGIC: u32 = 0xffff_fff0;
/// The magic of Go 1.20 and later tables.
const GO120_MAGIC: u32 = 0xffff_fff1;
/// `_PCDATA_InlTreeIndex`: the pc-value table giving the inline tree index.
const PCDATA_INL_TREE_INDEX: u32 = 2;
/// `_FUNCDATA_InlTree`: the function's inline tree.
const FUNCDATA_INL_TREE: u32 = 3;
/// Inlined calls followed at most for one address.
const MAX_INLINE_DEPTH: usize = 64;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GoTableError {
    /// No `.gopclntab` section: not a Go binary (or not an ELF one).
    #[error("no .gopclntab section")]
    NoTable,
    /// A table of a Go older than 1.18, or not a Go table at all.
    #[error("unsupported .gopclntab magic {0:#x} (Go 1.18 and later are read)")]
    Magic(u32),
    /// The header or the function table point outside the section.
    #[error("malformed .gopclntab: {0}")]
    Malformed(&'static str),
}

/// The two layouts Go 1.18 on writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Go118,
    Go120,
}

impl Version {
    /// The size of `_func` before its `pcdata` array: nine 4-byte fields
    /// (Go 1.20 added `startLine`, a tenth) and 4 bytes of `funcID`,
    /// `flag`, pad and `nfuncdata`.
    fn func_size(self) -> usize {
        match self {
            Version::Go118 => 40,
            Version::Go120 => 44,
        }
    }

    /// An `inlinedCall`'s size, and where its name offset and parent pc
    /// are in it. Go 1.18: `parent int16, funcID u8, _ u8, file int32,
    /// line int32, func_ int32, parentPc int32`; Go 1.20: `funcID u8,
    /// _ [3]u8, nameOff int32, parentPc int32, startLine int32`.
    fn inlined_call(self) -> (usize, usize, usize) {
        match self {
            Version::Go118 => (20, 12, 16),
            Version::Go120 => (16, 4, 8),
        }
    }

    /// The word of `runtime.moduledata` holding `gofunc`, the base of the
    /// `funcdata` offsets. Go 1.20 added `covctrs, ecovctrs` before it.
    fn gofunc_word(self) -> usize {
        match self {
            Version::Go118 => 38,
            Version::Go120 => 40,
        }
    }
}

/// One frame Go's table gives for an address: a function (absent for
/// inlined code whose callee could not be told), its file and line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoFrame {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// A parsed `.gopclntab`, with the inline trees when they could be found.
pub struct GoTable {
    version: Version,
    quantum: u32,
    /// `runtime.text`: function entries are offsets from it.
    text_start: u64,
    nfunc: usize,
    /// The whole section; the tables below are offsets into it.
    data: Arc<[u8]>,
    funcnametab: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    /// `functab` (pairs of entry offset and `_func` offset), then the
    /// `_func`s themselves, which the second of each pair is relative to.
    funcdata: usize,
    /// What `gofunc` points at, to the end of its section.
    gofunc: Option<Arc<[u8]>>,
}

impl GoTable {
    /// Reads the table of the ELF file `file`, when it has one Go 1.18 or
    /// later wrote.
    pub fn read(file: File) -> Result<GoTable, GoTableError> {
        let cache = ReadCache::new(file);
        let elf = object::File::parse(&cache).map_err(|_| GoTableError::NoTable)?;
        let (address, data) = find_table(&elf).ok_or(GoTableError::NoTable)?;
        let mut table = GoTable::parse(data.into())?;
        table.gofunc = find_gofunc(&elf, address, &table);
        Ok(table)
    }

    /// Parses a table.
    pub fn parse(data: Arc<[u8]>) -> Result<GoTable, GoTableError> {
        let bytes = &data[..];
        let magic = u32_at(bytes, 0).ok_or(GoTableError::Malformed("short header"))?;
        let version = match magic {
            GO118_MAGIC => Version::Go118,
            GO120_MAGIC => Version::Go120,
            other => return Err(GoTableError::Magic(other)),
        };
        let (pad, quantum, ptr_size) = (
            bytes.get(4..6),
            bytes.get(6).copied(),
            bytes.get(7).copied(),
        );
        if pad != Some(&[0, 0][..]) || !matches!(quantum, Some(1 | 2 | 4)) || ptr_size != Some(8) {
            return Err(GoTableError::Malformed("header"));
        }
        let word =
            |i: usize| u64_at(bytes, 8 + 8 * i).ok_or(GoTableError::Malformed("short header"));
        let offset = |i: usize| -> Result<usize, GoTableError> {
            usize::try_from(word(i)?)
                .ok()
                .filter(|&o| o < bytes.len())
                .ok_or(GoTableError::Malformed("table offset past the section"))
        };
        let nfunc = usize::try_from(word(0)?).map_err(|_| GoTableError::Malformed("nfunc"))?;
        // `runtime.text`. In a position-independent binary the loader
        // writes it; Go's linker and GNU ld write it in the file too. A
        // linker that leaves it to the relocation alone (lld) leaves 0
        // here, and `.text` may start with C code, so nothing is named.
        let text_start = word(2)?;
        if text_start == 0 {
            return Err(GoTableError::Malformed("no text start"));
        }
        let table = GoTable {
            version,
            quantum: u32::from(quantum.unwrap_or(1)),
            text_start,
            nfunc,
            funcnametab: offset(3)?,
            cutab: offset(4)?,
            filetab: offset(5)?,
            pctab: offset(6)?,
            funcdata: offset(7)?,
            data,
            gofunc: None,
        };
        // The function table: nfunc pairs and the end entry.
        let functab_end = nfunc
            .checked_mul(8)
            .and_then(|n| n.checked_add(4 + table.funcdata))
            .ok_or(GoTableError::Malformed("nfunc"))?;
        if nfunc == 0 || functab_end > table.data.len() {
            return Err(GoTableError::Malformed("function table past the section"));
        }
        Ok(table)
    }

    /// The frames at `pc` (an address as the ELF file states it),
    /// innermost inlined call first, ending with the function the code is
    /// compiled in; `None` outside the Go functions.
    pub fn lookup(&self, pc: u64) -> Option<Vec<GoFrame>> {
        let func = self.find_func(pc)?;
        let mut frames = Vec::new();
        let mut pc = pc;
        loop {
            let file = self.file(&func, pc);
            let line = self.pcvalue(func.pcln, func.entry, pc).and_then(positive);
            let index = func
                .pcdata(self, PCDATA_INL_TREE_INDEX)
                .and_then(|table| self.pcvalue(table, func.entry, pc))
                .filter(|&i| i >= 0);
            let Some(index) = index else {
                frames.push(GoFrame {
                    function: self.name(func.nameoff),
                    file,
                    line,
                });
                return Some(frames);
            };
            match self.inlined_call(&func, index) {
                Some((nameoff, parent_pc)) if frames.len() < MAX_INLINE_DEPTH => {
                    frames.push(GoFrame {
                        function: self.name(nameoff),
                        file,
                        line,
                    });
                    pc = func.entry.checked_add(parent_pc)?;
                }
                _ => {
                    // Inlined, but into what cannot be told: the line
                    // without a name, then the function without a line.
                    frames.push(GoFrame {
                        function: None,
                        file,
                        line,
                    });
                    frames.push(GoFrame {
                        function: self.name(func.nameoff),
                        file: None,
                        line: None,
                    });
                    return Some(frames);
                }
            }
        }
    }

    /// The `_func` whose code holds `pc`, by binary search of `functab`.
    fn find_func(&self, pc: u64) -> Option<Func> {
        let offset = u32::try_from(pc.checked_sub(self.text_start)?).ok()?;
        let entry_off = |i: usize| u32_at(&self.data, self.funcdata.saturating_add(8 * i));
        // The entry after the last function is the end of the text.
        if offset < entry_off(0)? || offset >= entry_off(self.nfunc)? {
            return None;
        }
        let (mut low, mut high) = (0, self.nfunc);
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if entry_off(mid)? <= offset {
                low = mid;
            } else {
                high = mid;
            }
        }
        let func_off = u32_at(&self.data, self.funcdata.saturating_add(8 * low + 4))?;
        let at = self.funcdata.checked_add(usize::try_from(func_off).ok()?)?;
        let field = |n: usize| u32_at(&self.data, at.saturating_add(4 * n));
        let size = self.version.func_size();
        let func = Func {
            at,
            entry: self.text_start.checked_add(u64::from(field(0)?))?,
            nameoff: field(1)?,
            pcfile: field(5)?,
            pcln: field(6)?,
            npcdata: field(7)?,
            cu_offset: field(8)?,
            nfuncdata: *self.data.get(at.saturating_add(size - 1))?,
            size,
        };
        // The entry found must be the table's: a corrupt offset that lands
        // elsewhere names nothing.
        (func.entry == self.text_start.checked_add(u64::from(entry_off(low)?))?).then_some(func)
    }

    /// The value of the pc-value table at `table` (an offset in `pctab`)
    /// for `target`, in the function entered at `entry`, as Go's
    /// `pcvalue` reads it: (value delta, pc delta) pairs of varints, the
    /// value zig-zag coded, from -1 at the entry.
    fn pcvalue(&self, table: u32, entry: u64, target: u64) -> Option<i32> {
        if table == 0 {
            return None;
        }
        let start = self.pctab.checked_add(usize::try_from(table).ok()?)?;
        let mut bytes = self.data.get(start..)?;
        let (mut pc, mut value) = (entry, -1i32);
        loop {
            let first = pc == entry;
            let delta = varint(&mut bytes)?;
            if delta == 0 && !first {
                return None;
            }
            let delta = if delta & 1 != 0 {
                !(delta >> 1)
            } else {
                delta >> 1
            };
            value = value.wrapping_add(delta as i32);
            pc = pc.checked_add(u64::from(varint(&mut bytes)?.checked_mul(self.quantum)?))?;
            if target < pc {
                return Some(value);
            }
        }
    }

    /// The source file of `pc`: the pc-value table gives an index into the
    /// function's compilation unit's files (`cutab`), which give offsets
    /// of names in `filetab`.
    fn file(&self, func: &Func, pc: u64) -> Option<String> {
        let index = u32::try_from(self.pcvalue(func.pcfile, func.entry, pc)?).ok()?;
        let slot = func.cu_offset.checked_add(index)?;
        let at = self
            .cutab
            .checked_add(usize::try_from(slot).ok()?.checked_mul(4)?)?;
        let name = u32_at(&self.data, at).filter(|&o| o != u32::MAX)?;
        self.string(self.filetab, name)
    }

    fn name(&self, nameoff: u32) -> Option<String> {
        self.string(self.funcnametab, nameoff)
    }

    /// The NUL-terminated string at `offset` of the table at `table`. It
    /// must start a string (the byte before is a NUL), so that a wrong
    /// offset gives nothing rather than the tail of another name.
    fn string(&self, table: usize, offset: u32) -> Option<String> {
        let at = table.checked_add(usize::try_from(offset).ok()?)?;
        if offset > 0 && self.data.get(at - 1) != Some(&0) {
            return None;
        }
        let bytes = self.data.get(at..)?;
        let end = bytes.iter().position(|&b| b == 0)?;
        (end > 0).then(|| String::from_utf8_lossy(&bytes[..end]).into_owned())
    }

    /// Entry `index` of the function's inline tree: its callee's name
    /// offset and the offset from the entry of an instruction at the call.
    fn inlined_call(&self, func: &Func, index: i32) -> Option<(u32, u64)> {
        let gofunc = self.gofunc.as_deref()?;
        let tree = func.funcdata(self, FUNCDATA_INL_TREE)?;
        let (size, name_at, parent_at) = self.version.inlined_call();
        let entry = usize::try_from(tree)
            .ok()?
            .checked_add(usize::try_from(index).ok()?.checked_mul(size)?)?;
        let nameoff = u32_at(gofunc, entry.checked_add(name_at)?)?;
        let parent_pc = u32::try_from(i32::from_le_bytes(
            gofunc
                .get(entry.checked_add(parent_at)?..entry.checked_add(parent_at + 4)?)?
                .try_into()
                .ok()?,
        ))
        .ok()?;
        Some((nameoff, u64::from(parent_pc)))
    }
}

/// The fields of one `_func` that naming needs.
struct Func {
    /// Where it is in the section.
    at: usize,
    entry: u64,
    nameoff: u32,
    pcfile: u32,
    pcln: u32,
    npcdata: u32,
    cu_offset: u32,
    nfuncdata: u8,
    size: usize,
}

impl Func {
    /// The offset in `pctab` of its pc-value table `n`, if it has one.
    fn pcdata(&self, table: &GoTable, n: u32) -> Option<u32> {
        (n < self.npcdata)
            .then(|| {
                u32_at(
                    &table.data,
                    self.at.saturating_add(self.size + 4 * n as usize),
                )
            })
            .flatten()
            .filter(|&o| o != 0)
    }

    /// Its `funcdata` `n`, an offset from `gofunc`, if it has one.
    fn funcdata(&self, table: &GoTable, n: u32) -> Option<u32> {
        let at = self
            .at
            .saturating_add(self.size)
            .saturating_add(4usize.saturating_mul(self.npcdata as usize + n as usize));
        (n < u32::from(self.nfuncdata))
            .then(|| u32_at(&table.data, at))
            .flatten()
            .filter(|&o| o != u32::MAX)
    }
}

/// Where Go's functions are (addresses as the file states them), from the
/// header of the table and the first and last entries of its function
/// table: what the unwinder needs to know that an address is Go code,
/// which has frame pointers and no CFI.
pub fn text_range<'data, R: object::ReadRef<'data>>(
    elf: &object::File<'data, R>,
) -> Option<std::ops::Range<u64>> {
    let (_, data) = find_table(elf)?;
    let table = GoTable::parse(data.into()).ok()?;
    let entry = |i: usize| u32_at(&table.data, table.funcdata.checked_add(i.checked_mul(8)?)?);
    let (first, end) = (entry(0)?, entry(table.nfunc)?);
    (first < end).then(|| table.text_start + u64::from(first)..table.text_start + u64::from(end))
}

/// Where the table is, and its bytes to the end of the section holding it.
/// The Go linker names its section `.gopclntab`, or `.data.rel.ro.gopclntab`
/// in a position-independent binary; linked by the C linker (cgo) into a
/// position-independent binary, it is somewhere in `.data.rel.ro`, found
/// by its header (magic, two zero bytes, x86's instruction quantum 1,
/// 8-byte pointers) at an aligned place; searched only in a Go binary
/// (one with Go's `.go.buildinfo`), not in every C library mapped.
fn find_table<'data, R: object::ReadRef<'data>>(
    elf: &object::File<'data, R>,
) -> Option<(u64, &'data [u8])> {
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some(section) = elf.section_by_name(name) {
            return Some((section.address(), section.data().ok()?));
        }
    }
    elf.section_by_name(".go.buildinfo")?;
    let section = elf.section_by_name(".data.rel.ro")?;
    let data = section.data().ok()?;
    (0..data.len().saturating_sub(64))
        .step_by(8)
        .find_map(|at| {
            let header = &data[at..];
            let magic = u32_at(header, 0)?;
            (matches!(magic, GO118_MAGIC | GO120_MAGIC) && header[4..8] == [0, 0, 1, 8])
                .then(|| (section.address() + at as u64, header))
        })
}

/// `gofunc`, read from `runtime.moduledata`, which the linker puts in
/// `.noptrdata` and which starts with the address of the table and a slice
/// of its function names; the next slices (files, pc-values, functions)
/// are checked too before it is believed. (In a position-independent
/// binary the loader writes these words; Go's linker and GNU ld write them
/// in the file too.)
fn find_gofunc<'data, R: object::ReadRef<'data>>(
    elf: &object::File<'data, R>,
    pclntab: u64,
    table: &GoTable,
) -> Option<Arc<[u8]>> {
    let data = elf.section_by_name(".noptrdata")?.data().ok()?;
    let word = |offset: usize| u64_at(data, offset);
    let at = |offset: usize| pclntab + offset as u64;
    // pcHeader, then the slices funcnametab, cutab, filetab, pctab,
    // pclntable: pointer, length, capacity each.
    let expected = [
        (0, pclntab),
        (1, at(table.funcnametab)),
        (4, at(table.cutab)),
        (7, at(table.filetab)),
        (10, at(table.pctab)),
        (13, at(table.funcdata)),
    ];
    let gofunc_word = table.version.gofunc_word();
    let moduledata = (0..data.len().saturating_sub(8 * (gofunc_word + 1)))
        .step_by(8)
        .find(|&start| {
            expected
                .iter()
                .all(|&(i, value)| word(start + 8 * i) == Some(value))
        })?;
    let gofunc = word(moduledata + 8 * gofunc_word)?;
    elf.sections().find_map(|section| {
        let offset = gofunc.checked_sub(section.address())?;
        let data = section.data().ok()?;
        (offset < data.len() as u64).then(|| data[offset as usize..].into())
    })
}

/// A line of Go source: 1 or more (0 is code of no line).
fn positive(value: i32) -> Option<u32> {
    u32::try_from(value).ok().filter(|&l| l > 0)
}

/// An unsigned LEB128 varint of at most 32 bits, as Go writes pc-value
/// tables; `None` past the end or for a longer one.
fn varint(bytes: &mut &[u8]) -> Option<u32> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    Some(u32::from_le_bytes(bytes.get(at..end)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    Some(u64::from_le_bytes(bytes.get(at..end)?.try_into().ok()?))
}

/// Building small Go programs with the Go toolchain (`golang-go`, which
/// `cargo xtask setup` installs), for the tests here and the symbolizer's.
#[cfg(test)]
pub(crate) mod testprog {
    use std::{
        path::{Path, PathBuf},
        process::Command,
    };

    /// A Go program in a fresh folder, removed on drop.
    pub struct GoProgram {
        pub dir: PathBuf,
        pub source: PathBuf,
    }

    impl Drop for GoProgram {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    pub const SOURCE: &str = r#"package main

import (
	"fmt"
	"os"
	"os/exec"
)

func startHelper() *exec.Cmd {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil { // MARK: start
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return cmd
}

func main() {
	cmd := startHelper()
	fmt.Println(cmd.Process.Pid)
}
"#;

    /// `SOURCE` written to a fresh folder, or `None` (with the reason
    /// printed) when there is no `go` to build it with.
    pub fn go_program(name: &str) -> Option<GoProgram> {
        if Command::new("go").arg("version").output().is_err() {
            println!("SKIP {name}: no go (cargo xtask setup installs golang-go)");
            return None;
        }
        let dir =
            std::env::temp_dir().join(format!("reaper-trace-go-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("main.go");
        std::fs::write(&source, SOURCE).unwrap();
        std::fs::write(dir.join("go.mod"), "module helper\n\ngo 1.18\n").unwrap();
        Some(GoProgram { dir, source })
    }

    impl GoProgram {
        /// Builds it into `name` with `flags` (e.g. `-ldflags=-s -w`), with
        /// a build cache of its own and no network.
        pub fn build(&self, name: &str, flags: &[&str]) -> PathBuf {
            let out = self.dir.join(name);
            let status = Command::new("go")
                .arg("build")
                .args(flags)
                .arg("-o")
                .arg(&out)
                .arg(".")
                .current_dir(&self.dir)
                .env("GOCACHE", self.dir.join("gocache"))
                .env("GOPATH", self.dir.join("gopath"))
                .env("GOFLAGS", "-mod=mod")
                .env("GOPROXY", "off")
                .env("GOTOOLCHAIN", "local")
                .status()
                .unwrap();
            assert!(status.success(), "go build {flags:?}: {status}");
            out
        }

        /// The line of the source carrying `MARK: <mark>`.
        pub fn marked_line(&self, mark: &str) -> u32 {
            let needle = format!("MARK: {mark}");
            SOURCE
                .lines()
                .position(|l| l.contains(&needle))
                .map(|i| i as u32 + 1)
                .unwrap_or_else(|| panic!("no {needle:?} in {}", Path::display(&self.source)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{testprog::go_program, *};

    use object::{Object, ObjectSection, ObjectSymbol};

    fn table(path: &std::path::Path) -> GoTable {
        GoTable::read(File::open(path).unwrap()).unwrap()
    }

    /// The address and size of each Go function the symbol table names.
    fn functions(path: &std::path::Path) -> Vec<(String, u64, u64)> {
        let data = std::fs::read(path).unwrap();
        let elf = object::File::parse(&*data).unwrap();
        elf.symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
            .map(|s| {
                // Assembler functions of Go's internal ABI0 carry the ABI
                // in the symbol's name only.
                let name = s.name().unwrap();
                let name = name.strip_suffix(".abi0").unwrap_or(name);
                (name.to_owned(), s.address(), s.size())
            })
            .collect()
    }

    /// Go's table writes the type arguments in some generated names as
    /// `[...]` (`type..eq.[...]internal/cpu.option` for the symbol
    /// `type..eq.[5]internal/cpu.option`).
    fn same_name(table: &str, symbol: &str) -> bool {
        let mut rest = symbol;
        let mut parts = table.split("[...]");
        let first = parts.next().unwrap_or_default();
        let Some(after) = rest.strip_prefix(first) else {
            return false;
        };
        rest = after;
        for part in parts {
            // `[`, whatever the brackets held, `]`, then the part.
            let Some(close) = rest
                .strip_prefix('[')
                .and_then(|r| r.find(']').map(|i| &r[i + 1..]))
            else {
                return false;
            };
            let Some(after) = close.strip_prefix(part) else {
                return false;
            };
            rest = after;
        }
        rest.is_empty()
    }

    /// What Go's own `go tool addr2line` (debug/gosym, reading the same
    /// table) says of each address: the function compiled there, and the
    /// file and line of the innermost inlined code.
    fn go_addr2line(path: &std::path::Path, pcs: &[u64]) -> Vec<(String, String, u32)> {
        use std::{io::Write, process::Stdio};
        let mut child = std::process::Command::new("go")
            .args(["tool", "addr2line"])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input: String = pcs.iter().map(|pc| format!("{pc:#x}\n")).collect();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .map(|pair| {
                let (file, line) = pair[1].rsplit_once(':').unwrap();
                (pair[0].to_owned(), file.to_owned(), line.parse().unwrap())
            })
            .collect()
    }

    /// What blazesym says of a Go program's addresses from its DWARF.
    struct Dwarf {
        symbolizer: crate::host::symbolize::Symbolizer,
        module: std::sync::Arc<crate::trace::stack::Module>,
        /// The executable segment, to turn addresses into file offsets.
        text: crate::host::elf::Segment,
    }

    impl Dwarf {
        fn of(path: &std::path::Path) -> Dwarf {
            use crate::trace::stack::{Module, stamp_of};
            let segments = crate::host::elf::read(File::open(path).unwrap(), false)
                .unwrap()
                .segments;
            Dwarf {
                symbolizer: crate::host::symbolize::Symbolizer::new(),
                module: std::sync::Arc::new(Module {
                    path: path.to_string_lossy().into_owned(),
                    build_id: None,
                    stamp: Some(stamp_of(&std::fs::metadata(path).unwrap())),
                }),
                text: *segments.iter().find(|s| s.executable).unwrap(),
            }
        }

        /// The frames at `pc`, innermost inlined call first.
        fn at(&mut self, pc: u64) -> Vec<crate::trace::stack::Symbol> {
            let frame = crate::trace::stack::Frame {
                module: self.module.clone(),
                file_offset: pc - self.text.vaddr + self.text.file_offset,
            };
            self.symbolizer.symbolize_inlined(&frame).to_vec()
        }
    }

    /// Go's table read here says what Go's own reader of it says, at
    /// every 7th byte of every function (runtime and standard library
    /// included); and its inlined calls are DWARF's (through blazesym).
    #[test]
    fn agrees_with_go_addr2line_and_with_dwarf_on_inlined_calls() {
        let Some(program) = go_program("addr2line") else {
            return;
        };
        let path = program.build("prog", &[]);
        let table = table(&path);
        let pcs: Vec<u64> = functions(&path)
            .into_iter()
            .flat_map(|(_, address, size)| (address..address + size).step_by(7))
            .collect();
        let reference = go_addr2line(&path, &pcs);
        assert_eq!(reference.len(), pcs.len());
        // The same code built without symbols and DWARF: the same table.
        let stripped = program.build("prog-stripped", &["-ldflags=-s -w"]);
        assert!(functions(&stripped).is_empty(), "no symbol table");
        let stripped = self::table(&stripped);
        assert!(stripped.gofunc.is_some(), "the inline trees are found");

        let mut dwarf = Dwarf::of(&path);
        let main_line = program.marked_line("start");
        let (mut inlined, mut seen_main) = (0, false);
        for (&pc, (function, file, line)) in pcs.iter().zip(&reference) {
            let frames = table.lookup(pc).unwrap_or_else(|| panic!("{pc:#x}"));
            assert_eq!(stripped.lookup(pc), Some(frames.clone()), "{pc:#x}");
            let (inner, outer) = (&frames[0], &frames[frames.len() - 1]);
            assert!(
                same_name(outer.function.as_deref().unwrap(), function)
                    && inner.file.as_ref() == Some(file)
                    && inner.line == Some(*line),
                "{pc:#x}: go tool addr2line says {function} {file}:{line}, read {frames:?}"
            );
            seen_main |= outer.function.as_deref() == Some("main.startHelper")
                && inner.line == Some(main_line);
            // Go's DWARF leaves out what was inlined into the wrappers
            // the compiler generates (`<autogenerated>`); its table has it.
            if frames.len() == 1
                || frames
                    .iter()
                    .any(|f| f.file.as_deref() == Some("<autogenerated>"))
            {
                continue;
            }
            inlined += 1;
            let dwarf: Vec<Option<String>> =
                dwarf.at(pc).iter().map(|s| s.function.clone()).collect();
            let names: Vec<Option<String>> = frames.iter().map(|f| f.function.clone()).collect();
            assert_eq!(names, dwarf, "{pc:#x}: {frames:?}");
        }
        assert!(
            pcs.len() > 10_000 && inlined > 1_000,
            "{} {inlined}",
            pcs.len()
        );
        assert!(seen_main, "the marked line of main.startHelper");
    }

    /// Position-independent and linked by the C linker (as with cgo): the
    /// table is in `.data.rel.ro`, with no section of its own, and the
    /// addresses it and `runtime.moduledata` hold are the loader's to
    /// relocate (GNU ld writes them in the file too). `go tool addr2line`
    /// (Go 1.19) reads nothing there, so DWARF is the reference: the
    /// functions and inlined calls the same, and the lines but for a few
    /// in a thousand (the test above shows Go's own reader siding with the
    /// table where the two differ).
    #[test]
    fn a_position_independent_cgo_build_agrees_with_its_dwarf() {
        let Some(program) = go_program("pie") else {
            return;
        };
        let path = program.build("prog", &["-buildmode=pie", "-ldflags=-linkmode=external"]);
        let stripped = program.build(
            "prog-stripped",
            &["-buildmode=pie", "-ldflags=-linkmode=external -s -w"],
        );
        let data = std::fs::read(&path).unwrap();
        let elf = object::File::parse(&*data).unwrap();
        assert!(
            elf.section_by_name(".gopclntab").is_none()
                && elf.section_by_name(".data.rel.ro.gopclntab").is_none(),
            "no section of its own"
        );
        let (table, stripped) = (table(&path), table(&stripped));
        assert!(table.gofunc.is_some() && stripped.gofunc.is_some());
        let functions = functions(&path);
        let runtime_text = elf
            .symbols()
            .find(|s| s.name() == Ok("runtime.text"))
            .map(|s| s.address());
        assert_eq!(Some(table.text_start), runtime_text);
        let go_text = text_range(&elf).unwrap();

        let mut dwarf = Dwarf::of(&path);
        let (mut compared, mut lines_differ) = (0, 0);
        for (name, address, size) in &functions {
            for pc in (*address..address + size)
                .step_by(7)
                .filter(|pc| go_text.contains(pc))
            {
                let frames = table.lookup(pc).unwrap_or_else(|| panic!("{name} {pc:#x}"));
                assert_eq!(stripped.lookup(pc), Some(frames.clone()), "{pc:#x}");
                let outer = frames.last().unwrap().function.as_deref().unwrap();
                assert!(same_name(outer, name), "{name} at {pc:#x}: {frames:?}");
                let dwarf = dwarf.at(pc);
                if dwarf[0].line.is_none()
                    || frames
                        .iter()
                        .any(|f| f.file.as_deref() == Some("<autogenerated>"))
                {
                    continue;
                }
                compared += 1;
                let names: Vec<Option<&str>> =
                    frames.iter().map(|f| f.function.as_deref()).collect();
                let dwarf_names: Vec<Option<&str>> =
                    dwarf.iter().map(|s| s.function.as_deref()).collect();
                assert_eq!(names, dwarf_names, "{pc:#x}");
                lines_differ += usize::from(frames[0].line != dwarf[0].line);
            }
        }
        assert!(compared > 10_000, "{compared}");
        assert!(
            lines_differ * 1000 < compared,
            "{lines_differ} of {compared}"
        );
    }

    #[test]
    fn inlined_code_without_its_tree_keeps_its_line_but_not_a_guessed_name() {
        let Some(program) = go_program("no-tree") else {
            return;
        };
        let path = program.build("prog", &[]);
        let mut table = table(&path);
        let (pc, frames) = functions(&path)
            .into_iter()
            .flat_map(|(_, address, size)| address..address + size)
            .find_map(|pc| Some(pc).zip(table.lookup(pc).filter(|f| f.len() > 1)))
            .expect("some inlined code");
        table.gofunc = None;
        assert_eq!(
            table.lookup(pc),
            Some(vec![
                GoFrame {
                    function: None,
                    ..frames[0].clone()
                },
                GoFrame {
                    function: frames.last().unwrap().function.clone(),
                    file: None,
                    line: None,
                },
            ])
        );
    }

    #[test]
    fn other_tables_and_broken_ones_name_nothing() {
        let Some(program) = go_program("broken") else {
            return;
        };
        let path = program.build("prog", &[]);
        let data = std::fs::read(&path).unwrap();
        let elf = object::File::parse(&*data).unwrap();
        let section = elf
            .section_by_name(".gopclntab")
            .unwrap()
            .data()
            .unwrap()
            .to_vec();
        let good = GoTable::parse(section.clone().into()).unwrap();
        let (address, size) = functions(&path)
            .into_iter()
            .find(|(name, _, _)| name == "main.startHelper")
            .map(|(_, a, s)| (a, s))
            .unwrap();
        assert!(good.lookup(address + size / 2).is_some());

        // No runtime.text (a linker that left it to the relocation).
        let mut no_text = section.clone();
        no_text[8 + 16..8 + 24].fill(0);
        assert!(GoTable::parse(no_text.into()).is_err());
        // Go 1.16's magic, and no Go table at all.
        let mut old = section.clone();
        old[..4].copy_from_slice(&0xffff_fffau32.to_le_bytes());
        assert_eq!(
            GoTable::parse(old.into()).err(),
            Some(GoTableError::Magic(0xffff_fffa))
        );
        let c_program = GoTable::read(File::open("/proc/self/exe").unwrap());
        assert_eq!(c_program.err(), Some(GoTableError::NoTable));

        // Cut short anywhere, or with bytes flipped anywhere: a table that
        // is refused or that names what it can, never a panic.
        let pcs: Vec<u64> = (address..address + size).step_by(3).collect();
        for len in (0..section.len()).step_by(section.len() / 97) {
            if let Ok(table) = GoTable::parse(section[..len].to_vec().into()) {
                for &pc in &pcs {
                    let _ = table.lookup(pc);
                }
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..200 {
            let mut broken = section.clone();
            for _ in 0..64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % broken.len() as u64) as usize;
                broken[at] = (seed >> 32) as u8;
            }
            if let Ok(table) = GoTable::parse(broken.into()) {
                for &pc in &pcs {
                    let _ = table.lookup(pc);
                }
            }
        }
    }

    #[test]
    fn the_text_range_spans_the_go_functions() {
        let Some(program) = go_program("text-range") else {
            return;
        };
        let path = program.build("prog", &[]);
        let data = std::fs::read(&path).unwrap();
        let elf = object::File::parse(&*data).unwrap();
        let range = text_range(&elf).unwrap();
        let functions = functions(&path);
        let low = functions.iter().map(|(_, a, _)| *a).min().unwrap();
        let high = functions.iter().map(|(_, a, s)| a + s).max().unwrap();
        assert_eq!(range.start, low);
        // The table's end is that of the last function, padding included.
        assert!(
            range.end >= high && range.end - high < 64,
            "{range:x?} {high:#x}"
        );
        let c = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(text_range(&object::File::parse(&*c).unwrap()), None);
    }

    #[test]
    fn varints_are_leb128_of_32_bits() {
        let read = |bytes: &[u8]| {
            let mut rest = bytes;
            varint(&mut rest).map(|v| (v, rest.len()))
        };
        assert_eq!(read(&[0x05, 0xff]), Some((5, 1)));
        assert_eq!(read(&[0xe5, 0x8e, 0x26]), Some((624_485, 0)));
        assert_eq!(read(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Some((u32::MAX, 0)));
        assert_eq!(read(&[0x80]), None, "cut short");
        assert_eq!(read(&[0x80; 6]), None, "longer than 32 bits");
        assert_eq!(read(&[]), None);
    }

    #[test]
    fn names_every_function_as_its_symbol_table_does() {
        let Some(program) = go_program("functions") else {
            return;
        };
        let path = program.build("prog", &[]);
        let table = table(&path);
        assert!(table.gofunc.is_some(), "the inline trees are found");
        let functions = functions(&path);
        assert!(functions.len() > 500, "{}", functions.len());
        for (name, address, size) in &functions {
            for pc in [*address, address + size / 2, address + size - 1] {
                let frames = table
                    .lookup(pc)
                    .unwrap_or_else(|| panic!("{name} at {pc:#x}"));
                // The function compiled there is the outermost frame.
                let found = frames.last().unwrap().function.as_deref().unwrap();
                assert!(same_name(found, name), "{name} at {pc:#x}: {frames:?}");
            }
        }
        // Before the first function and past the last: nothing.
        let text_end = functions.iter().map(|(_, a, s)| a + s).max().unwrap();
        assert_eq!(table.lookup(0x1000), None);
        assert_eq!(table.lookup(text_end + 0x10_0000), None);
    }
}
