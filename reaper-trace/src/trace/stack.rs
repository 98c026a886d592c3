//! User stacks: where a process forked a child, or changed its SIGCHLD
//! action. The kernel copies the registers and the top of the user stack;
//! the live tracer unwinds them while the process is alive (its maps and
//! ELF files are needed) into frames named by module and file offset, which
//! is what recordings keep. Symbols (function, file, line) are looked up
//! from the modules when a finding is shown, live or from a recording.

use std::{collections::HashMap, sync::Arc};

use reaper_trace_common::stack_owner;

/// A mapped ELF file, as the process had it mapped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Module {
    /// Its path (`/proc/PID/maps`), escaped only when printed.
    pub path: String,
    /// Its GNU build id (`.note.gnu.build-id`), when it has one: how
    /// `report` checks that the file it reads is the one that ran.
    #[serde(serialize_with = "hex")]
    pub build_id: Option<Vec<u8>>,
    /// Without a build id, the file's size and modification time (seconds)
    /// when it was read: how a later look at the path tells whether the
    /// file there is still the one that ran. A build id is proof; this is
    /// the best there is without one.
    #[serde(skip)]
    pub stamp: Option<(u64, i64)>,
}

/// A file's [`Module::stamp`]: its size and modification time.
pub fn stamp_of(meta: &std::fs::Metadata) -> (u64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.size(), meta.mtime())
}

fn hex<S: serde::Serializer>(id: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(bytes) => {
            s.serialize_str(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
        }
        None => s.serialize_none(),
    }
}

/// One frame: an instruction in a module. For every frame but the first,
/// the offset is the return address minus one, so that it lies inside the
/// call instruction (the line users need), not after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub module: Arc<Module>,
    /// Offset in the module's file (not a virtual address): what is stable
    /// across runs and machines for one build id.
    pub file_offset: u64,
}

/// A user stack, innermost frame first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stack {
    pub frames: Vec<Frame>,
    /// The unwind stopped early: the copied bytes ended, or a frame had no
    /// unwind information and no frame pointer led on.
    pub truncated: bool,
}

/// Stacks waiting for the event they belong to. The kernel sends a thread's
/// stack just before that thread's FORK or SIGACTION record (its `owner`),
/// and that record says whether it has one (`HAS_STACK`): one pairing rule
/// for the analysis and the timeline alike.
#[derive(Debug, Default)]
pub struct PendingStacks(HashMap<(u32, u32), Stack>);

impl PendingStacks {
    /// Thread `tid`'s stack for its next event of kind `owner`.
    pub fn insert(&mut self, tid: u32, owner: u32, stack: Stack) {
        self.0.insert((tid, owner), stack);
    }

    /// The stack of thread `tid`'s event of kind `owner`, when the event
    /// says it has one. A pending stack the event does not claim is a lost
    /// event's: it is dropped, never given to the wrong call.
    pub fn take(&mut self, tid: u32, owner: u32, has_stack: bool) -> Option<Stack> {
        self.0.remove(&(tid, owner)).filter(|_| has_stack)
    }

    /// Thread `tid`'s fork failed: its stack belongs to no fork.
    pub fn fork_failed(&mut self, tid: u32) {
        self.0.remove(&(tid, stack_owner::FORK));
    }

    /// Thread `tid` exited: nothing of its will come.
    pub fn exited(&mut self, tid: u32) {
        self.fork_failed(tid);
        self.0.remove(&(tid, stack_owner::SIGACTION));
    }
}

/// What a frame is, for people: from debug info where the module has it,
/// else from its symbol table, else only the module and offset.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Symbol {
    /// The module's path.
    pub module: String,
    /// The frame's address as the module's ELF virtual address (what
    /// `addr2line -e MODULE ADDR` takes).
    pub address: u64,
    /// The function (demangled), when known.
    pub function: Option<String>,
    /// Source file and line, when the module has DWARF line info.
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// The frame to blame, in symbols innermost first: the innermost of the
/// user's own code, that is neither in a system library nor from Rust's
/// standard library or a crate dependency, nor Go's runtime and the
/// packages a Go program forks through; else the innermost that is not
/// in a system library (the main executable, as far as can be told).
///
/// A program installed under `/usr/lib` (postgres, systemd) is all
/// "system library": then the innermost frame outside the C runtime.
pub fn blame(symbols: &[Symbol]) -> Option<usize> {
    symbols
        .iter()
        .position(|s| !in_system_library(s) && !from_dependency(s) && !from_go_runtime(s))
        .or_else(|| symbols.iter().position(|s| !in_system_library(s)))
        .or_else(|| symbols.iter().position(|s| !in_c_runtime(s)))
}

/// glibc's or musl's libc, its loader, and the libraries folded into libc.
fn in_c_runtime(symbol: &Symbol) -> bool {
    const RUNTIME: [&str; 6] = [
        "libc.so",
        "libc.musl",
        "ld-linux",
        "ld-musl",
        "libpthread.so",
        "libdl.so",
    ];
    let name = base_name(&symbol.module);
    RUNTIME.iter().any(|r| name.starts_with(r))
}

fn in_system_library(symbol: &Symbol) -> bool {
    const SYSTEM: [&str; 6] = [
        "/lib/",
        "/lib32/",
        "/lib64/",
        "/usr/lib/",
        "/usr/lib32/",
        "/usr/lib64/",
    ];
    SYSTEM.iter().any(|dir| symbol.module.starts_with(dir))
}

/// Code of Rust's standard library or of a crate from a registry or git,
/// by its source path or, without line info, by its function's path.
fn from_dependency(symbol: &Symbol) -> bool {
    const FILES: [&str; 6] = [
        "/rustc/",
        "/library/std/",
        "/library/core/",
        "/library/alloc/",
        "/.cargo/registry/",
        "/.cargo/git/",
    ];
    const FUNCTIONS: [&str; 6] = [
        "std::", "core::", "alloc::", "<std::", "<core::", "<alloc::",
    ];
    // A leading slash so that relative paths (`library/std/src/…`) match,
    // and `/home/u/mylibrary/std/` does not.
    let file = format!("/{}", symbol.file.as_deref().unwrap_or_default());
    let function = symbol.function.as_deref().unwrap_or_default();
    FILES.iter().any(|dir| file.contains(dir)) || FUNCTIONS.iter().any(|f| function.starts_with(f))
}

/// Go code of the runtime and of the standard packages between a Go
/// program's own call and the fork or sigaction (`os/exec.(*Cmd).Start`,
/// `os.StartProcess`, `syscall.forkExec`, `internal/poll`...), by the
/// package path that starts the function's name. Go's standard packages
/// are linked into every binary, so unlike C's libc they are no system
/// library. Only for frames of Go source (`.go`, or the runtime's `.s`),
/// so that a C clone such as `os.part.0` is not taken for Go's `os`.
fn from_go_runtime(symbol: &Symbol) -> bool {
    const PACKAGES: [&str; 5] = ["runtime", "syscall", "os", "os/exec", "internal/"];
    let file = symbol.file.as_deref().unwrap_or_default();
    let function = symbol.function.as_deref().unwrap_or_default();
    if !(file.ends_with(".go") || file.ends_with(".s")) {
        return false;
    }
    PACKAGES.iter().any(|package| {
        // `internal/...` is a prefix of package paths; the others are whole
        // packages, their functions named `package.Name` or
        // `package.(*Type).Method`.
        match package.strip_suffix('/') {
            Some(_) => function.starts_with(package),
            None => function
                .strip_prefix(package)
                .is_some_and(|rest| rest.starts_with('.')),
        }
    })
}

/// The last path component: what people recognise in a one-line summary.
fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The blamed frame's source line (`leak.c:41`) and the function it called
/// (`_IO_new_popen`), when the module has line info: what a fix names.
/// Unescaped: callers escape.
pub fn blamed_line(symbols: &[Symbol]) -> Option<(String, Option<&str>)> {
    let at = blame(symbols)?;
    let frame = &symbols[at];
    let line = format!("{}:{}", base_name(frame.file.as_deref()?), frame.line?);
    let callee = at
        .checked_sub(1)
        .and_then(|inner| symbols[inner].function.as_deref());
    Some((line, callee))
}

/// Where a stack points, in one line: `leak.c:12 in main ← popen` (the
/// blamed frame's line and function, and the function it called), or
/// `app+0x1139` when the module has no symbols. Unescaped: callers escape.
pub fn site(symbols: &[Symbol]) -> Option<String> {
    let (mut out, callee) = blamed_site(symbols)?;
    if let Some(callee) = callee {
        out.push_str(" ← ");
        out.push_str(callee);
    }
    Some(out)
}

/// The blamed frame's place (`leak.c:12 in main`, or `app+0x1139` without
/// symbols) and the function it called there, when named.
fn blamed_site(symbols: &[Symbol]) -> Option<(String, Option<&str>)> {
    let at = blame(symbols)?;
    let frame = &symbols[at];
    let mut place = match (&frame.file, frame.line) {
        (Some(file), Some(line)) => format!("{}:{line}", base_name(file)),
        _ => format!("{}+{:#x}", base_name(&frame.module), frame.address),
    };
    if let Some(function) = &frame.function {
        place.push_str(" in ");
        place.push_str(function);
    }
    let callee = at
        .checked_sub(1)
        .and_then(|inner| symbols[inner].function.as_deref());
    Some((place, callee))
}

/// Where a blocked thread is in its own code: its user stack, unwound from
/// the system call's stack pointer and program counter and named, with the
/// frame [`blame`] picks (the same rule as a fork's) and the function it
/// called there. Unescaped: callers escape.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UserPlace {
    /// Innermost first, inlined functions as frames of their own.
    pub frames: Vec<Symbol>,
    /// The unwind stopped early (see [`Stack::truncated`]).
    pub truncated: bool,
    /// The blamed frame: `main.c:40 in wait_for_jobs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits_at: Option<String>,
    /// The function it called there: `sleep`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub called: Option<String>,
}

impl UserPlace {
    pub fn new(frames: Vec<Symbol>, truncated: bool) -> UserPlace {
        let (waits_at, called) = match blamed_site(&frames) {
            Some((place, callee)) => (Some(place), callee.map(str::to_owned)),
            None => (None, None),
        };
        UserPlace {
            frames,
            truncated,
            waits_at,
            called,
        }
    }

    /// ` ← sleep ← main.c:40 in wait_for_jobs`: what follows the system
    /// call's name, outward. Empty when no frame is blamed (only libc).
    pub fn outward(&self) -> String {
        let mut out = String::new();
        for part in [&self.called, &self.waits_at].into_iter().flatten() {
            out.push_str(" ← ");
            out.push_str(part);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(module: &str, function: Option<&str>, file: Option<&str>, line: Option<u32>) -> Symbol {
        Symbol {
            module: module.into(),
            address: 0x1139,
            function: function.map(Into::into),
            file: file.map(Into::into),
            line,
        }
    }

    /// A frame with line 12 when it has a file.
    fn at(module: &str, function: Option<&str>, file: Option<&str>) -> Symbol {
        sym(module, function, file, file.map(|_| 12))
    }

    #[test]
    fn blame_skips_libc_and_std_for_the_users_line() {
        let exe = "/home/u/app/target/debug/app";
        let symbols = [
            at("/usr/lib/x86_64-linux-gnu/libc.so.6", None, None),
            at(
                "/lib/x86_64-linux-gnu/libc.so.6",
                Some("posix_spawnp"),
                None,
            ),
            at(
                exe,
                Some(
                    "std::sys::process::unix::unix::<impl std::sys::process::unix::common::Command>::spawn",
                ),
                Some("/rustc/abc/library/std/src/sys/process/unix/unix.rs"),
            ),
            at(
                exe,
                Some("tokio::process::Command::spawn"),
                Some(
                    "/home/u/.cargo/registry/src/index.crates.io-x/tokio-1.0.0/src/process/mod.rs",
                ),
            ),
            at(exe, Some("app::main"), Some("/home/u/app/src/main.rs")),
            at(exe, Some("core::ops::function::FnOnce::call_once"), None),
        ];
        assert_eq!(blame(&symbols), Some(4));
    }

    #[test]
    fn blame_skips_std_by_name_without_line_info() {
        let exe = "/opt/app";
        let symbols = [
            at(
                exe,
                Some("<std::process::Child as core::ops::Drop>::drop"),
                None,
            ),
            at(exe, Some("<app::Pool as core::ops::Drop>::drop"), None),
        ];
        assert_eq!(blame(&symbols), Some(1));
    }

    #[test]
    fn blame_falls_back_to_the_innermost_frame_outside_system_libraries() {
        let symbols = [
            at("/lib64/libc.so.6", Some("fork"), None),
            at(
                "/opt/app",
                Some("std::process::Command::spawn"),
                Some("library/std/src/process.rs"),
            ),
            at(
                "/opt/app",
                Some("std::rt::lang_start"),
                Some("library/std/src/rt.rs"),
            ),
        ];
        assert_eq!(blame(&symbols), Some(1));
        assert_eq!(blame(&symbols[..1]), None, "only libc: nothing to blame");
        let mine = at(
            "/opt/app",
            Some("app::std::run"),
            Some("/home/u/mylibrary/std/run.rs"),
        );
        assert_eq!(blame(std::slice::from_ref(&mine)), Some(0));
        assert_eq!(blame(&[]), None);
    }

    #[test]
    fn blame_takes_an_unnamed_frame_of_the_program() {
        // The innermost frame of a stripped program: unnamed, whoever
        // the nearest exported symbol is.
        let symbols = [at("/usr/bin/prog", None, None)];
        assert_eq!(blame(&symbols), Some(0));
    }

    #[test]
    fn a_program_under_usr_lib_is_blamed_past_libc() {
        let symbols = [
            at(
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                Some("__libc_fork"),
                None,
            ),
            at(
                "/usr/lib/postgresql/15/bin/postgres",
                Some("fork_process"),
                Some("fork_process.c"),
            ),
        ];
        assert_eq!(blame(&symbols), Some(1));
    }

    #[test]
    fn blames_the_users_line_and_names_what_it_called() {
        let stack = [
            sym(
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                Some("__clone3"),
                None,
                None,
            ),
            sym(
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                Some("popen"),
                None,
                None,
            ),
            sym("/src/leak", Some("main"), Some("/src/leak.c"), Some(12)),
            sym(
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                Some("__libc_start_main"),
                None,
                None,
            ),
        ];
        assert_eq!(blame(&stack), Some(2));
        assert_eq!(site(&stack).as_deref(), Some("leak.c:12 in main ← popen"));
        assert_eq!(
            blamed_line(&stack),
            Some(("leak.c:12".to_owned(), Some("popen")))
        );
        // Without line info there is no line to name.
        let mut no_lines = stack.clone();
        no_lines[2].line = None;
        assert_eq!(blamed_line(&no_lines), None);
    }

    #[test]
    fn rust_std_frames_are_not_the_users() {
        let app = "/build/target/debug/app";
        let stack = [
            sym(
                app,
                Some("std::sys::process::spawn"),
                Some("/rustc/abc/library/std/src/sys/process.rs"),
                Some(90),
            ),
            sym(
                app,
                Some("std::process::Command::spawn"),
                Some("/rustc/abc/library/std/src/process.rs"),
                Some(1000),
            ),
            sym(app, Some("app::main"), Some("/build/src/main.rs"), Some(7)),
        ];
        assert_eq!(
            site(&stack).as_deref(),
            Some("main.rs:7 in app::main ← std::process::Command::spawn")
        );
    }

    /// A Go program's `exec.Command("true").Start()` in `main.startHelper`,
    /// as Go 1.19 names the frames (DWARF or its own line table).
    #[test]
    fn go_runtime_and_exec_frames_are_not_the_users() {
        let prog = "/tmp/prog/prog";
        let goroot = "/usr/lib/go-1.19/src";
        let go = |function: &str, file: &str, line| {
            sym(
                prog,
                Some(function),
                Some(&format!("{goroot}/{file}")),
                Some(line),
            )
        };
        let stack = [
            go("syscall.rawVforkSyscall", "syscall/asm_linux_amd64.s", 25),
            go("syscall.forkAndExecInChild", "syscall/exec_linux.go", 89),
            go("syscall.forkExec", "syscall/exec_unix.go", 209),
            go("syscall.StartProcess", "syscall/exec_unix.go", 255),
            go("os.startProcess", "os/exec_posix.go", 54),
            go("os.StartProcess", "os/exec.go", 109),
            go("os/exec.(*Cmd).Start", "os/exec/exec.go", 524),
            sym(
                prog,
                Some("main.startHelper"),
                Some("/src/helper/main.go"),
                Some(12),
            ),
            sym(
                prog,
                Some("main.main"),
                Some("/src/helper/main.go"),
                Some(20),
            ),
            go("runtime.main", "runtime/proc.go", 250),
            go("runtime.goexit", "runtime/asm_amd64.s", 1594),
        ];
        assert_eq!(
            site(&stack).as_deref(),
            Some("main.go:12 in main.startHelper ← os/exec.(*Cmd).Start")
        );
        // The internal packages os/exec goes through, and a method of a
        // runtime type.
        let poll = go("internal/poll.(*FD).Read", "internal/poll/fd_unix.go", 163);
        let method = go("runtime.(*mheap).alloc", "runtime/mheap.go", 900);
        assert!(from_go_runtime(&poll) && from_go_runtime(&method));
    }

    #[test]
    fn go_rule_spares_lookalike_packages_and_c() {
        let prog = "/tmp/prog/prog";
        let mine = [
            // A package of the user's own named like a standard one.
            sym(
                prog,
                Some("osutil.Run"),
                Some("/src/osutil/run.go"),
                Some(3),
            ),
            sym(
                prog,
                Some("example.com/app/os.Start"),
                Some("/src/os/start.go"),
                Some(3),
            ),
            sym(
                prog,
                Some("runtimeinfo.Get"),
                Some("/src/r/get.go"),
                Some(3),
            ),
            // A C function GCC cloned, with the name of a Go package.
            sym(prog, Some("os.part.0"), Some("/src/os.c"), Some(3)),
            sym(prog, Some("runtime.cold"), None, None),
        ];
        for symbol in &mine {
            assert!(!from_go_runtime(symbol), "{symbol:?}");
            assert_eq!(blame(std::slice::from_ref(symbol)), Some(0));
        }
    }

    #[test]
    fn a_go_stack_of_the_runtime_alone_blames_its_innermost_frame() {
        // The runtime installing its own SIGCHLD handler at start-up: no
        // frame of the program's own, so the innermost, as before.
        let prog = "/tmp/prog/prog";
        let stack = [
            sym(
                prog,
                Some("runtime.rt_sigaction"),
                Some("/g/runtime/sys_linux_amd64.s"),
                Some(312),
            ),
            sym(
                prog,
                Some("runtime.sysSigaction"),
                Some("/g/runtime/os_linux.go"),
                Some(500),
            ),
            sym(
                prog,
                Some("runtime.mstart"),
                Some("/g/runtime/asm_amd64.s"),
                Some(394),
            ),
        ];
        assert_eq!(blame(&stack), Some(0));
    }

    #[test]
    fn a_blocked_threads_place_reads_outward_from_the_system_call() {
        let stack = vec![
            sym(
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                Some("clock_nanosleep"),
                None,
                None,
            ),
            sym(
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                Some("sleep"),
                None,
                None,
            ),
            sym(
                "/src/app",
                Some("wait_for_jobs"),
                Some("/src/main.c"),
                Some(40),
            ),
            sym("/src/app", Some("main"), Some("/src/main.c"), Some(60)),
        ];
        let place = UserPlace::new(stack.clone(), false);
        assert_eq!(
            place.waits_at.as_deref(),
            Some("main.c:40 in wait_for_jobs")
        );
        assert_eq!(place.called.as_deref(), Some("sleep"));
        assert_eq!(place.outward(), " ← sleep ← main.c:40 in wait_for_jobs");
        // Only libc: nothing blamed, nothing said.
        let libc_only = UserPlace::new(stack[..2].to_vec(), true);
        assert_eq!(
            (libc_only.outward(), libc_only.waits_at),
            (String::new(), None)
        );
        // Blocked in the program's own code: no callee.
        let own = UserPlace::new(stack[2..].to_vec(), false);
        assert_eq!(own.outward(), " ← main.c:40 in wait_for_jobs");
    }

    #[test]
    fn without_symbols_it_is_module_and_address() {
        let stack = [sym("/opt/stripped", None, None, None)];
        assert_eq!(site(&stack).as_deref(), Some("stripped+0x1139"));
        assert_eq!(site(&[]), None);
    }
}
