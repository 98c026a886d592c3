//! User stacks: where a process forked a child, or changed its SIGCHLD
//! action. The kernel copies the registers and the top of the user stack;
//! the live tracer unwinds them while the process is alive (its maps and
//! ELF files are needed) into frames named by module and file offset, which
//! is what recordings keep. Symbols (function, file, line) are looked up
//! from the modules when a finding is shown, live or from a recording.

use std::sync::Arc;

/// A mapped ELF file, as the process had it mapped.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Module {
    /// Its path (`/proc/PID/maps`), escaped only when printed.
    pub path: String,
    /// Its GNU build id (`.note.gnu.build-id`), when it has one: how
    /// `report` checks that the file it reads is the one that ran.
    #[serde(serialize_with = "hex")]
    pub build_id: Option<Vec<u8>>,
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
