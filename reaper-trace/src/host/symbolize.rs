//! Naming frames: function, source file and line of a module's file offset,
//! with blazesym (DWARF where the module or its debug file has it, else the
//! ELF symbol tables). The same code serves the live tracer and `report`:
//! both have only the module's path, build id and the offset, so a
//! recording symbolizes as the live run did, on any machine with the files.
//!
//! Go code that blazesym cannot give lines for (a binary built with
//! `-ldflags=-s -w` has neither DWARF nor symbols) is named from Go's own
//! line table ([`super::gopclntab`]).
//!
//! A name is only given when it is certain: a module whose file is missing,
//! or whose build id differs from the one that ran, gets none, and blazesym
//! matches a symbol only inside its size, so a stripped binary yields no
//! function rather than the nearest exported one.

use std::{
    collections::HashMap,
    fs::File,
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::Path,
};

use blazesym::symbolize::{
    Input, Sym, Symbolized,
    source::{Elf, Source},
};

use super::{
    elf::{self, Segment},
    gopclntab::GoTable,
};
use crate::trace::stack::{Frame, Module, Stack, Symbol};

/// Symbolizes frames, caching per module and offset. Not `Send` (blazesym
/// keeps its caches in `Rc`s): one per thread that shows findings.
pub struct Symbolizer {
    blazesym: blazesym::symbolize::Symbolizer,
    /// The PT_LOAD segments of each module's file and the path to read it
    /// at, or `None` when the file is missing, unreadable or not the build
    /// that ran.
    files: HashMap<Module, Option<(Vec<Segment>, String)>>,
    /// Files of modules not at their path here (a container's), opened
    /// through their process while it lived ([`Symbolizer::prepare`]).
    opened: Vec<File>,
    /// The symbols of a frame, innermost inlined function first.
    symbols: HashMap<(Module, u64), Vec<Symbol>>,
    /// Go's line table of each module's file, read when first needed;
    /// `None` for a file without one (not Go, or too old a Go).
    go_tables: HashMap<Module, Option<GoTable>>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    pub fn new() -> Self {
        Self {
            // Its defaults: lines, inlined functions, demangling, and debug
            // files looked up in /usr/lib/debug.
            blazesym: blazesym::symbolize::Symbolizer::new(),
            files: HashMap::new(),
            opened: Vec::new(),
            symbols: HashMap::new(),
            go_tables: HashMap::new(),
        }
    }

    /// Live, while process `tgid` runs: when `module` is not at its path
    /// here, or another file is (a container's root), keeps the process's
    /// own file open (through `/proc/TGID/root`), so that the module can be
    /// named once the process is gone.
    pub fn prepare(&mut self, module: &Module, tgid: u32) {
        if self.files.contains_key(module) {
            return;
        }
        let found = self
            .open_matching(module, &module.path)
            .or_else(|| self.open_matching(module, &format!("/proc/{tgid}/root{}", module.path)));
        self.files.insert(module.clone(), found);
    }

    /// What a frame is: when inlined functions are at its address, the
    /// innermost, whose line is the instruction's own.
    pub fn symbolize(&mut self, frame: &Frame) -> Symbol {
        self.symbolize_inlined(frame)[0].clone()
    }

    /// What a frame is, one symbol per function inlined at its address,
    /// innermost first, ending with the function the code is compiled in
    /// (its line being that of the inlined call). Never empty.
    pub fn symbolize_inlined(&mut self, frame: &Frame) -> &[Symbol] {
        let key = ((*frame.module).clone(), frame.file_offset);
        if !self.symbols.contains_key(&key) {
            let symbols = self.lookup(&frame.module, frame.file_offset);
            self.symbols.insert(key.clone(), symbols);
        }
        &self.symbols[&key]
    }

    /// A whole stack, innermost first, with inlined functions as frames of
    /// their own (as `addr2line -i` shows them).
    pub fn symbolize_stack(&mut self, stack: &Stack) -> Vec<Symbol> {
        stack
            .frames
            .iter()
            .flat_map(|frame| self.symbolize_inlined(frame).to_vec())
            .collect()
    }

    fn lookup(&mut self, module: &Module, file_offset: u64) -> Vec<Symbol> {
        let found = self.segments(module);
        let address = found.and_then(|(s, _)| elf::vaddr_of(s, file_offset));
        let (Some(address), Some((_, path))) = (address, found) else {
            return vec![unknown(module, file_offset)];
        };
        let path = path.clone();
        let source = Source::Elf(Elf::new(&path));
        let found = match self
            .blazesym
            .symbolize_single(&source, Input::FileOffset(file_offset))
        {
            Ok(Symbolized::Sym(sym)) => Some(expand(&module.path, address, &sym)),
            Ok(Symbolized::Unknown(_)) | Err(_) => None,
        };
        // DWARF where there is some; Go's own table where blazesym had no
        // line (no DWARF, maybe no symbol table either).
        if let Some(symbols) = found
            .as_ref()
            .filter(|s| s.iter().any(|s| s.line.is_some()))
        {
            return symbols.clone();
        }
        self.go_lookup(module, &path, address)
            .or(found)
            .unwrap_or_else(|| {
                vec![Symbol {
                    module: module.path.clone(),
                    address,
                    ..Symbol::default()
                }]
            })
    }

    /// The frames Go's line table gives for `address` of `module`, whose
    /// checked file is at `path`.
    fn go_lookup(&mut self, module: &Module, path: &str, address: u64) -> Option<Vec<Symbol>> {
        let table = self
            .go_tables
            .entry(module.clone())
            .or_insert_with(|| open_regular(path).and_then(|file| GoTable::read(file).ok()))
            .as_ref()?;
        let frames = table.lookup(address)?;
        let symbols = frames
            .into_iter()
            .map(|frame| Symbol {
                module: module.path.clone(),
                address,
                function: frame.function,
                file: frame.file,
                line: frame.line,
            })
            .collect();
        Some(symbols)
    }

    /// The segments of a module's file, once it is known to be the one that
    /// ran: same build id, when the module has one.
    fn segments(&mut self, module: &Module) -> Option<&(Vec<Segment>, String)> {
        if !self.files.contains_key(module) {
            let found = self.open_matching(module, &module.path);
            self.files.insert(module.clone(), found);
        }
        self.files[module].as_ref()
    }

    /// The segments of the regular file at `path` when it is `module`'s,
    /// and the path blazesym is to read it by: `/proc/self/fd/N` of the
    /// file checked here, kept open, so that what blazesym reads is that
    /// very file even if the path changes meanwhile.
    fn open_matching(&mut self, module: &Module, path: &str) -> Option<(Vec<Segment>, String)> {
        let file = open_regular(path)?;
        let segments = matching_segments(module, &file)?;
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        self.opened.push(file);
        Some((segments, path))
    }
}

/// The regular file at `path`, opened for reading; `None` for anything
/// else. A recording names any path it likes, and opening is not harmless:
/// a FIFO's writer sees a reader, a device may act on open (a watchdog, a
/// tape, a terminal). So the path is first resolved with `O_PATH`, which
/// opens nothing (symlinks are followed, as `/proc/PID/root` paths need),
/// the object found is checked with `fstat`, and only a regular file is
/// then opened, through `/proc/self/fd` of that handle: the same inode,
/// whatever the path has become meanwhile.
pub fn open_regular(path: &str) -> Option<File> {
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(Path::new(path))
        .ok()?;
    if !handle.metadata().is_ok_and(|m| m.is_file()) {
        return None;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
        .ok()
        .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))
}

/// The segments of `file`, when it is `module`'s.
fn matching_segments(module: &Module, file: &File) -> Option<Vec<Segment>> {
    let facts = elf::read(file.try_clone().ok()?, false).ok()?;
    // The file that ran: the same build id, or without one the same size
    // and modification time; with neither, nothing can say so.
    let same = match (&module.build_id, module.stamp) {
        (Some(id), _) => facts.build_id.as_ref() == Some(id),
        (None, Some(stamp)) => facts.stamp == Some(stamp),
        (None, None) => false,
    };
    same.then_some(facts.segments)
}

/// A frame nothing is known of but its module. Without the file its
/// address cannot be told, so it is the file offset.
fn unknown(module: &Module, file_offset: u64) -> Symbol {
    Symbol {
        module: module.path.clone(),
        address: file_offset,
        ..Symbol::default()
    }
}

/// One symbol per inlined function, innermost first, then the function the
/// code is compiled in. blazesym gives each its own line: the outer one's is
/// the call of the first inlined, and so on down.
fn expand(module: &str, address: u64, sym: &Sym<'_>) -> Vec<Symbol> {
    let symbol = |name: &str, code: Option<&blazesym::symbolize::CodeInfo<'_>>| Symbol {
        module: module.to_owned(),
        address,
        function: Some(name.to_owned()),
        file: code.map(|c| c.to_path().to_string_lossy().into_owned()),
        line: code.and_then(|c| c.line),
    };
    sym.inlined
        .iter()
        .rev()
        .map(|inlined| symbol(&inlined.name, inlined.code_info.as_ref()))
        .chain([symbol(&sym.name, sym.code_info.as_deref())])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::{path::PathBuf, process::Command, sync::Arc};

    /// A C program built with -g, and a stripped copy, in a fresh folder.
    struct Program {
        dir: PathBuf,
        path: PathBuf,
        stripped: PathBuf,
    }

    impl Drop for Program {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const SOURCE: &str = "#include <stdio.h>\n\
        \n\
        int helper(int x)\n\
        {\n\
        \treturn x * 3 + 1;\n\
        }\n\
        \n\
        int main(int argc, char **argv)\n\
        {\n\
        \tprintf(\"%d\\n\", helper(argc));\n\
        \treturn 0;\n\
        }\n";

    fn program(name: &str) -> Program {
        let dir = std::env::temp_dir().join(format!(
            "reaper-trace-symbolize-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("prog.c");
        std::fs::write(&source, SOURCE).unwrap();
        let path = dir.join("prog");
        let stripped = dir.join("prog-stripped");
        run(Command::new("cc")
            .args(["-g", "-O0", "-Wl,--build-id", "-o"])
            .arg(&path)
            .arg(&source));
        run(Command::new("objcopy")
            .arg("--strip-all")
            .arg(&path)
            .arg(&stripped));
        Program {
            dir,
            path,
            stripped,
        }
    }

    fn run(command: &mut Command) {
        let status = command.status().unwrap();
        assert!(status.success(), "{command:?}: {status}");
    }

    /// The virtual address and file offset of a symbol of the unstripped
    /// program.
    fn symbol_of(path: &Path, name: &str) -> (u64, u64) {
        use object::{Object, ObjectSymbol};
        let data = std::fs::read(path).unwrap();
        let elf = object::File::parse(&*data).unwrap();
        let address = elf
            .symbols()
            .find(|s| s.name() == Ok(name))
            .unwrap()
            .address();
        let facts = elf::read(File::open(path).unwrap(), false).unwrap();
        let segment = facts
            .segments
            .iter()
            .find(|s| s.vaddr <= address && address - s.vaddr < s.file_size)
            .unwrap();
        (address, address - segment.vaddr + segment.file_offset)
    }

    fn frame(path: &Path, build_id: Option<Vec<u8>>, file_offset: u64) -> Frame {
        Frame {
            module: Arc::new(Module {
                path: path.to_string_lossy().into_owned(),
                build_id,
                stamp: None,
            }),
            file_offset,
        }
    }

    fn build_id(path: &Path) -> Option<Vec<u8>> {
        elf::read(File::open(path).unwrap(), false)
            .unwrap()
            .build_id
    }

    #[test]
    fn only_regular_files_are_opened() {
        let dir = std::env::temp_dir().join(format!("reaper-trace-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let file = dir.join("file");
        std::fs::write(&file, b"x").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let fifo_link = dir.join("fifo-link");
        std::os::unix::fs::symlink(&fifo, &fifo_link).unwrap();
        let opened = |p: &Path| open_regular(p.to_str().unwrap()).is_some();
        assert!(opened(&file));
        assert!(opened(&link), "a symlink to a regular file is followed");
        assert!(!opened(&fifo));
        assert!(!opened(&fifo_link));
        assert!(!opened(Path::new("/dev/null")));
        assert!(!opened(&dir), "a directory");
        assert!(!opened(&dir.join("missing")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_c_function_with_its_file_and_line() {
        let program = program("lines");
        let (address, offset) = symbol_of(&program.path, "helper");
        let frame = frame(&program.path, build_id(&program.path), offset + 4);
        let mut symbolizer = Symbolizer::new();
        let symbol = symbolizer.symbolize(&frame);
        assert_eq!(symbol.module, program.path.to_string_lossy());
        assert_eq!(symbol.address, address + 4);
        assert_eq!(symbol.function.as_deref(), Some("helper"));
        assert!(
            symbol.file.as_deref().unwrap().ends_with("prog.c"),
            "{symbol:?}"
        );
        // Within helper (lines 3 to 6).
        assert!(
            symbol.line.is_some_and(|l| (3..=6).contains(&l)),
            "{symbol:?}"
        );
        // Cached, and the same.
        assert_eq!(symbolizer.symbolize(&frame), symbol);
        assert_eq!(symbolizer.symbols.len(), 1);
    }

    #[test]
    fn a_stripped_binary_yields_no_made_up_name() {
        let program = program("stripped");
        let id = build_id(&program.stripped);
        assert!(id.is_some(), "strip keeps the build id note");
        let mut symbolizer = Symbolizer::new();
        for function in ["helper", "main"] {
            let (address, offset) = symbol_of(&program.path, function);
            let frame = frame(&program.stripped, id.clone(), offset + 4);
            let symbol = symbolizer.symbolize(&frame);
            assert_eq!(
                symbol,
                Symbol {
                    module: program.stripped.to_string_lossy().into_owned(),
                    address: address + 4,
                    function: None,
                    file: None,
                    line: None,
                }
            );
        }
    }

    #[test]
    fn another_build_gets_no_symbols() {
        let program = program("mismatch");
        let (_, offset) = symbol_of(&program.path, "helper");
        let other_build = vec![0xde, 0xad, 0xbe, 0xef];
        let frame = frame(&program.path, Some(other_build), offset);
        let symbol = Symbolizer::new().symbolize(&frame);
        assert_eq!(symbol.module, program.path.to_string_lossy());
        assert_eq!(symbol.address, offset, "no file of that build: the offset");
        assert_eq!(
            (symbol.function, symbol.file, symbol.line),
            (None, None, None)
        );
    }

    /// A Go program built with `-ldflags=-s -w` has neither DWARF nor a
    /// symbol table: its frames are named from Go's own line table, as
    /// the same program's DWARF names them.
    #[test]
    fn a_stripped_go_program_is_named_from_its_line_table() {
        use crate::host::gopclntab::testprog::go_program;
        let Some(program) = go_program("symbolize") else {
            return;
        };
        let full = program.build("prog", &[]);
        let stripped = program.build("prog-stripped", &["-ldflags=-s -w"]);
        let (address, offset) = symbol_of(&full, "main.startHelper");
        let stamped = |path: &Path, file_offset| Frame {
            module: Arc::new(Module {
                path: path.to_string_lossy().into_owned(),
                build_id: None,
                stamp: Some(crate::trace::stack::stamp_of(
                    &std::fs::metadata(path).unwrap(),
                )),
            }),
            file_offset,
        };
        let mut symbolizer = Symbolizer::new();
        // Both builds put the code at the same addresses; blazesym names
        // nothing in the stripped one.
        for at in 0..16 {
            let named = symbolizer
                .symbolize_inlined(&stamped(&full, offset + at))
                .to_vec();
            let from_table = symbolizer
                .symbolize_inlined(&stamped(&stripped, offset + at))
                .to_vec();
            let strip_module = |symbols: Vec<Symbol>| -> Vec<_> {
                symbols
                    .into_iter()
                    .map(|s| (s.address, s.function, s.file, s.line))
                    .collect()
            };
            assert_eq!(strip_module(from_table), strip_module(named), "at {at}");
        }
        let symbol = symbolizer.symbolize(&stamped(&stripped, offset));
        assert_eq!(symbol.address, address);
        assert_eq!(symbol.function.as_deref(), Some("main.startHelper"));
        assert_eq!(symbol.file.as_deref(), program.source.to_str());
        // A C program has no Go table: still nothing made up.
        let c = super::tests::program("go-fallback");
        let (_, c_offset) = symbol_of(&c.path, "helper");
        let c_frame = frame(&c.stripped, build_id(&c.stripped), c_offset);
        assert_eq!(symbolizer.symbolize(&c_frame).function, None);
    }

    #[test]
    fn a_missing_file_gets_no_symbols() {
        let frame = frame(Path::new("/nonexistent/reaper-trace/prog"), None, 0x1139);
        let symbol = Symbolizer::new().symbolize(&frame);
        assert_eq!(
            symbol,
            Symbol {
                module: "/nonexistent/reaper-trace/prog".into(),
                address: 0x1139,
                ..Symbol::default()
            }
        );
    }

    #[test]
    fn without_a_build_id_the_file_must_be_the_one_read() {
        let program = program("no-build-id");
        let path = program.dir.join("prog-no-id");
        run(Command::new("cc")
            .args(["-g", "-O0", "-Wl,--build-id=none", "-o"])
            .arg(&path)
            .arg(program.dir.join("prog.c")));
        assert_eq!(build_id(&path), None);
        let (_, offset) = symbol_of(&path, "helper");
        let stamp = crate::trace::stack::stamp_of(&std::fs::metadata(&path).unwrap());
        let with = |stamp| Frame {
            module: Arc::new(Module {
                path: path.to_string_lossy().into_owned(),
                build_id: None,
                stamp,
            }),
            file_offset: offset,
        };
        let named = Symbolizer::new().symbolize(&with(Some(stamp)));
        assert_eq!(named.function.as_deref(), Some("helper"));
        // Another file at the path (a rebuild), or nothing to check with:
        // no name rather than a wrong one.
        for other in [Some((stamp.0 + 1, stamp.1)), None] {
            let symbol = Symbolizer::new().symbolize(&with(other));
            assert_eq!((symbol.function, symbol.file), (None, None), "{other:?}");
        }
    }
}
