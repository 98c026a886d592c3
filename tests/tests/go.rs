//! Kernel tests of Go programs' stacks: a Go program that starts a child
//! with os/exec and never waits for it is blamed on its own line
//! (`main.go:N in main.startHelper`), past Go's runtime, `syscall`, `os`
//! and `os/exec`, whether built with DWARF or stripped with
//! `-ldflags=-s -w` (named from Go's own line table then). Go binaries have
//! no `.eh_frame`: their frames are walked by frame pointers.
//!
//! The program (`tests/go/leak`) is built at test time with Debian's Go
//! toolchain, which `cargo xtask setup` installs (`golang-go`); with
//! `-tags leak_cgo` it calls into C and is linked by the C linker (cgo).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use reaper_trace_tests::*;

const LEAK_GO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/go/leak");

/// The line of `main.go` carrying `MARK: <mark>`.
fn marked_line(mark: &str) -> u64 {
    let source = std::fs::read_to_string(format!("{LEAK_GO_DIR}/main.go")).expect("main.go");
    let needle = format!("MARK: {mark}");
    source
        .lines()
        .position(|l| l.contains(&needle))
        .map(|i| i as u64 + 1)
        .unwrap_or_else(|| panic!("no {needle:?} in main.go"))
}

/// `tests/go/leak` built with `flags` into the scratch directory (its
/// source copied there, with a build cache of its own and no network), or
/// `None`, with the reason printed, when there is no `go`.
fn build_leak(test: &str, name: &str, flags: &[&str]) -> Option<PathBuf> {
    let Some(go) = which("go") else {
        println!("SKIP {test}: no go on PATH (cargo xtask setup installs golang-go)");
        return None;
    };
    let dir = scratch_dir().join(format!("{name}-src"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for file in ["main.go", "cgo.go", "go.mod"] {
        std::fs::copy(format!("{LEAK_GO_DIR}/{file}"), dir.join(file)).expect("copy the source");
    }
    let out = scratch_dir().join(name);
    let status = Command::new(go)
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(".")
        .current_dir(&dir)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "1")
        .status()
        .expect("run go build");
    assert!(status.success(), "go build {flags:?} failed");
    Some(out)
}

/// The kind of ELF file `bin` is and the names of its sections.
fn elf_sections(bin: &Path) -> (object::ObjectKind, Vec<String>) {
    use object::{Object, ObjectSection};
    let data = std::fs::read(bin).expect("the binary");
    let elf = object::File::parse(&*data).expect("an ELF file");
    let names = elf
        .sections()
        .filter_map(|s| s.name().ok().map(String::from))
        .collect();
    (elf.kind(), names)
}

/// `check --format json --junit FILE -- bin`: the unreaped finding, its
/// fork stack's frames as (function, file name, line), and the JUnit.
fn check_leak(name: &str, bin: &Path) -> (Vec<(String, String, u64)>, String) {
    let junit = scratch_dir().join(format!("{name}.xml"));
    let (code, report, stderr) = check_json(
        &["--threshold", "200ms", "--junit", junit.to_str().unwrap()],
        &[bin.to_str().unwrap()],
    );
    assert_eq!(
        code,
        Some(1),
        "{name}: the child leaks: {report:#} {stderr}"
    );
    let finding = the_unreaped(&report);
    let frames = finding["fork_stack"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: a fork stack: {finding:#}"))
        .iter()
        .map(|f| {
            let file = f["file"].as_str().unwrap_or_default();
            (
                f["function"].as_str().unwrap_or("?").to_owned(),
                file.rsplit('/').next().unwrap_or(file).to_owned(),
                f["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let xml = std::fs::read_to_string(&junit).expect("JUnit written");
    (frames, xml)
}

/// The stack runs from the fork in `syscall` through `os/exec` to
/// `main.startHelper` on its marked line, then `main.main` and the
/// runtime: every frame named, none lost to the missing `.eh_frame`; and
/// the blame, in the JUnit's message and location, is the program's line.
fn assert_blamed_on_start_helper(name: &str, frames: &[(String, String, u64)], xml: &str) {
    let line = marked_line("start");
    let at = frames
        .iter()
        .position(|(function, _, _)| function == "main.startHelper")
        .unwrap_or_else(|| panic!("{name}: no main.startHelper frame: {frames:#?}"));
    assert_eq!(
        frames[at],
        ("main.startHelper".to_owned(), "main.go".to_owned(), line),
        "{name}: {frames:#?}"
    );
    let functions: Vec<&str> = frames.iter().map(|(f, _, _)| f.as_str()).collect();
    assert!(
        functions[..at].contains(&"os/exec.(*Cmd).Start")
            && functions[..at].iter().any(|f| f.starts_with("syscall.")),
        "{name}: the fork's own frames, named: {functions:#?}"
    );
    assert_eq!(
        functions.get(at + 1),
        Some(&"main.main"),
        "{name}: {functions:#?}"
    );
    assert_junit_blames(xml, "main.go", line, "main.startHelper");
}

#[test]
fn a_go_child_never_waited_for_is_blamed_on_its_start_line() {
    kernel_test!();
    let test = "a_go_child_never_waited_for_is_blamed_on_its_start_line";
    let Some(bin) = build_leak(test, "leak-go", &[]) else {
        return;
    };
    let (frames, xml) = check_leak("leak-go", &bin);
    assert_blamed_on_start_helper("leak-go", &frames, &xml);
}

#[test]
fn a_stripped_go_program_is_named_from_its_own_line_table() {
    kernel_test!();
    let test = "a_stripped_go_program_is_named_from_its_own_line_table";
    let Some(bin) = build_leak(test, "leak-go-stripped", &["-ldflags=-s -w"]) else {
        return;
    };
    // Neither a symbol table nor DWARF: only .gopclntab names the code.
    let (_, sections) = elf_sections(&bin);
    assert!(
        sections.contains(&".gopclntab".into())
            && !sections
                .iter()
                .any(|s| s == ".symtab" || s.contains("debug_info")),
        "-s -w strips both: {sections:?}"
    );
    let (frames, xml) = check_leak("leak-go-stripped", &bin);
    assert_blamed_on_start_helper("leak-go-stripped", &frames, &xml);
}

#[test]
fn a_go_program_linked_with_c_is_unwound_from_its_go_code() {
    kernel_test!();
    let test = "a_go_program_linked_with_c_is_unwound_from_its_go_code";
    let Some(bin) = build_leak(test, "leak-go-cgo", &["-tags", "leak_cgo"]) else {
        return;
    };
    // Unwind tables for its C code, none for its Go code: the fork, in
    // Go's code, is walked by frame pointers from its first frame on.
    let (_, sections) = elf_sections(&bin);
    assert!(
        sections.contains(&".eh_frame".into()) && sections.contains(&".gopclntab".into()),
        "a cgo build: {sections:?}"
    );
    let (frames, xml) = check_leak("leak-go-cgo", &bin);
    assert_blamed_on_start_helper("leak-go-cgo", &frames, &xml);
}

#[test]
fn a_stripped_position_independent_cgo_build_is_named_too() {
    kernel_test!();
    let test = "a_stripped_position_independent_cgo_build_is_named_too";
    let flags = ["-buildmode=pie", "-tags", "leak_cgo", "-ldflags=-s -w"];
    let Some(bin) = build_leak(test, "leak-go-pie", &flags) else {
        return;
    };
    // Linked by the C linker into a position-independent executable, the
    // line table has no section of its own: it is found in .data.rel.ro.
    let (kind, sections) = elf_sections(&bin);
    assert_eq!(kind, object::ObjectKind::Dynamic, "a PIE");
    assert!(
        !sections
            .iter()
            .any(|s| s.contains("gopclntab") || s == ".symtab"),
        "{sections:?}"
    );
    let (frames, xml) = check_leak("leak-go-pie", &bin);
    assert_blamed_on_start_helper("leak-go-pie", &frames, &xml);
}
