//! `cargo xtask dist` made real artifacts: a static binary that runs and
//! matches its checksum file, and a .deb whose control fields, file list,
//! man pages and completions are right, which installs into a throwaway
//! root. Reads `target/dist/` (`cargo xtask test` runs `dist` first); when
//! it is missing each test prints SKIP.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use object::{
    LittleEndian, elf,
    elf::FileHeader64,
    read::elf::{Dyn as _, FileHeader as _, ProgramHeader as _},
};

/// Every file the package installs, as `dpkg-deb --contents` lists them.
const PACKAGED: &[&str] = &[
    "./usr/bin/reaper-trace",
    "./usr/share/man/man1/reaper-trace.1.gz",
    "./usr/share/man/man1/reaper-trace-live.1.gz",
    "./usr/share/man/man1/reaper-trace-record.1.gz",
    "./usr/share/man/man1/reaper-trace-check.1.gz",
    "./usr/share/man/man1/reaper-trace-serve.1.gz",
    "./usr/share/man/man1/reaper-trace-verify-kernel.1.gz",
    "./usr/share/man/man1/reaper-trace-report.1.gz",
    "./usr/share/man/man1/reaper-trace-zombies.1.gz",
    "./usr/share/bash-completion/completions/reaper-trace",
    "./usr/share/zsh/vendor-completions/_reaper-trace",
    "./usr/share/fish/vendor_completions.d/reaper-trace.fish",
    "./usr/share/doc/reaper-trace/copyright",
];

const SUBCOMMANDS: &[&str] = &[
    "live",
    "record",
    "check",
    "serve",
    "verify-kernel",
    "report",
    "zombies",
];

struct Dist {
    dir: PathBuf,
    version: String,
    binary: PathBuf,
    deb: PathBuf,
}

/// The artifacts in `target/dist/`, or None (with SKIP printed) when
/// `cargo xtask dist` has not run.
fn dist() -> Option<Dist> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("dist");
    if !dir.is_dir() {
        eprintln!("SKIP {}: run cargo xtask dist first", test_name());
        return None;
    }
    let manifest = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../reaper-trace/Cargo.toml"
    ))
    .expect("reaper-trace/Cargo.toml");
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.split('"').next())
        .expect("a version line")
        .to_owned();
    let binary = dir.join(format!("reaper-trace-{version}-x86_64-linux-musl"));
    let deb = dir.join(format!(
        "reaper-trace_{}_amd64.deb",
        version.replace('-', "~")
    ));
    for file in [&binary, &deb] {
        assert!(
            file.is_file(),
            "{} is missing: target/dist/ is stale, run cargo xtask dist",
            file.display()
        );
    }
    Some(Dist {
        dir,
        version,
        binary,
        deb,
    })
}

/// The running test's name (libtest names its thread after it).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("dist").to_owned()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("UTF-8 output")
}

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reaper-trace-dist-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// What an ELF file asks of the dynamic loader.
#[derive(Debug, PartialEq)]
struct Linking {
    interpreter: bool,
    needed: usize,
}

/// Reads the program headers of a little-endian ELF64 file for `machine`
/// (`EM_X86_64`, `EM_AARCH64`): whether
/// it names an interpreter (PT_INTERP), and how many libraries its dynamic
/// section needs (DT_NEEDED). A static-pie binary has a PT_DYNAMIC for its
/// own relocations, but needs nothing.
fn linking(file: &[u8], machine: u16) -> Linking {
    let header = FileHeader64::<LittleEndian>::parse(file).expect("not an ELF64 file");
    let endian = header.endian().expect("not little-endian ELF64");
    assert_eq!(
        header.e_machine(endian),
        machine,
        "another architecture's ELF"
    );
    let mut linking = Linking {
        interpreter: false,
        needed: 0,
    };
    for ph in header.program_headers(endian, file).unwrap() {
        match ph.p_type(endian) {
            elf::PT_INTERP => linking.interpreter = true,
            elf::PT_DYNAMIC => {
                let entries = ph.dynamic(endian, file).unwrap().unwrap_or_default();
                linking.needed += entries
                    .iter()
                    .map(|d| d.tag(endian))
                    .take_while(|&tag| tag != elf::DT_NULL)
                    .filter(|&tag| tag == elf::DT_NEEDED)
                    .count();
            }
            _ => {}
        }
    }
    linking
}

#[test]
fn the_elf_reader_sees_a_dynamic_binary_as_one() {
    // The reader must be able to fail: the system's shell is dynamic.
    let sh = fs::read(fs::canonicalize("/bin/sh").unwrap()).unwrap();
    let seen = linking(&sh, elf::EM_X86_64);
    assert!(seen.interpreter && seen.needed >= 1, "{seen:?}");
}

#[test]
fn the_binary_is_static_runs_and_matches_its_checksum() {
    let Some(dist) = dist() else {
        return;
    };
    let elf = fs::read(&dist.binary).unwrap();
    assert_eq!(
        linking(&elf, elf::EM_X86_64),
        Linking {
            interpreter: false,
            needed: 0
        },
        "{} is not static",
        dist.binary.display()
    );
    let said = stdout(Command::new(&dist.binary).arg("--version"));
    assert_eq!(said.trim(), format!("reaper-trace {}", dist.version));

    // Each .sha256 is what sha256sum writes, and checks.
    for artifact in [&dist.binary, &dist.deb] {
        let name = artifact.file_name().unwrap().to_str().unwrap();
        let sums = fs::read_to_string(dist.dir.join(format!("{name}.sha256"))).unwrap();
        assert!(sums.ends_with(&format!("  {name}\n")), "{sums:?}");
        let checked = stdout(
            Command::new("sha256sum")
                .args(["--check", "--strict", &format!("{name}.sha256")])
                .current_dir(&dist.dir),
        );
        assert_eq!(checked.trim(), format!("{name}: OK"));
    }
}

/// The aarch64 release: a static aarch64 binary matching its checksum, in
/// an arm64 .deb with the same files as the amd64 one. It does not run
/// here: the arm64 rows of `cargo xtask vm-test` run it.
#[test]
fn the_aarch64_binary_is_static_and_its_deb_holds_it() {
    let Some(dist) = dist() else {
        return;
    };
    let binary = dist
        .dir
        .join(format!("reaper-trace-{}-aarch64-linux-musl", dist.version));
    let deb = dist.dir.join(format!(
        "reaper-trace_{}_arm64.deb",
        dist.version.replace('-', "~")
    ));
    let elf = fs::read(&binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    assert_eq!(
        linking(&elf, elf::EM_AARCH64),
        Linking {
            interpreter: false,
            needed: 0
        },
        "{} is not static",
        binary.display()
    );
    for artifact in [&binary, &deb] {
        let name = artifact.file_name().unwrap().to_str().unwrap();
        let checked = stdout(
            Command::new("sha256sum")
                .args(["--check", "--strict", &format!("{name}.sha256")])
                .current_dir(&dist.dir),
        );
        assert_eq!(checked.trim(), format!("{name}: OK"));
    }
    let arch = stdout(
        Command::new("dpkg-deb")
            .arg("--field")
            .arg(&deb)
            .arg("Architecture"),
    );
    assert_eq!(arch.trim(), "arm64");
    let contents = stdout(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let mut listed: Vec<&str> = contents
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    listed.sort();
    let mut expected = PACKAGED.to_vec();
    expected.sort();
    assert_eq!(listed, expected, "\n{contents}");
    let root = scratch("arm64-deb");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let packaged = fs::read(root.join("usr/bin/reaper-trace")).unwrap();
    assert!(packaged == elf, "the arm64 .deb holds another binary");
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_deb_has_its_control_fields_and_every_file() {
    let Some(dist) = dist() else {
        return;
    };
    let info = stdout(Command::new("dpkg-deb").arg("--info").arg(&dist.deb));
    for field in [
        "Package: reaper-trace".to_owned(),
        format!("Version: {}", dist.version.replace('-', "~")),
        "Architecture: amd64".to_owned(),
        "Maintainer: reaper-trace developers <reaper-trace@example.invalid>".to_owned(),
        "Section: admin".to_owned(),
        "Priority: optional".to_owned(),
        "Description: finds the children that never get reaped".to_owned(),
    ] {
        assert!(
            info.contains(&format!(" {field}")),
            "no {field:?} in\n{info}"
        );
    }
    assert!(
        !info.contains("Depends:"),
        "a static binary depends on nothing\n{info}"
    );
    // The long description has more than one paragraph.
    assert!(info.contains("\n  .\n"), "{info}");
    let installed_kib: u64 = stdout(
        Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&dist.deb)
            .arg("Installed-Size"),
    )
    .trim()
    .parse()
    .expect("Installed-Size is a number");
    let binary_kib = fs::metadata(&dist.binary).unwrap().len().div_ceil(1024);
    assert!(
        (binary_kib..binary_kib + 200).contains(&installed_kib),
        "Installed-Size {installed_kib} KiB for a {binary_kib} KiB binary"
    );

    let contents = stdout(Command::new("dpkg-deb").arg("--contents").arg(&dist.deb));
    // "-rwxr-xr-x root/root  123 2024-01-01 00:00 ./usr/bin/reaper-trace"
    let files: Vec<(&str, &str, &str)> = contents
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields[0], fields[1], *fields.last().unwrap())
        })
        .collect();
    let mut listed: Vec<&str> = files.iter().map(|f| f.2).collect();
    listed.sort();
    let mut expected = PACKAGED.to_vec();
    expected.sort();
    assert_eq!(listed, expected, "\n{contents}");
    for (mode, owner, path) in files {
        assert_eq!(owner, "root/root", "{path}");
        let want = if path == "./usr/bin/reaper-trace" {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(mode, want, "{path}");
    }
}

#[test]
fn the_deb_unpacks_to_the_binary_its_man_pages_and_completions() {
    let Some(dist) = dist() else {
        return;
    };
    let root = scratch("extract");
    run(Command::new("dpkg-deb").arg("-x").arg(&dist.deb).arg(&root));

    assert!(
        fs::read(root.join("usr/bin/reaper-trace")).unwrap() == fs::read(&dist.binary).unwrap(),
        "the packaged binary differs from the dist one"
    );

    let man1 = root.join("usr/share/man/man1");
    let page = render_man(&man1.join("reaper-trace.1.gz"));
    assert!(page.contains("SUBCOMMANDS"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!("reaper-trace-{sub}(1)")),
            "no {sub} in\n{page}"
        );
        let sub_page = render_man(&man1.join(format!("reaper-trace-{sub}.1.gz")));
        assert!(
            sub_page.contains(&format!("reaper-trace-{sub}")),
            "{sub_page}"
        );
    }
    assert!(
        !page.contains("__"),
        "a hidden subcommand is listed\n{page}"
    );
    let check = render_man(&man1.join("reaper-trace-check.1.gz"));
    assert!(
        check.contains("--junit") && check.contains("--fail-on"),
        "{check}"
    );

    // bash accepts the completion, and it completes subcommands (not the
    // hidden ones) and options.
    let bash = root.join("usr/share/bash-completion/completions/reaper-trace");
    let script = format!(
        r#"source '{}' || exit 1
        spec=$(complete -p reaper-trace) || exit 1
        echo "$spec"
        f=${{spec#*-F }}; f=${{f%% *}}
        complete_words() {{
            COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
            "$f" reaper-trace "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
            echo "${{COMPREPLY[*]}}"
        }}
        echo "top: $(complete_words reaper-trace '')"
        echo "ver: $(complete_words reaper-trace ver)"
        echo "hidden: $(complete_words reaper-trace __)"
        echo "option: $(complete_words reaper-trace check --jun)""#,
        bash.display()
    );
    let completed = stdout(Command::new("bash").args(["--norc", "--noprofile", "-c", &script]));
    let line = |key: &str| {
        completed
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in\n{completed}"))
            .to_owned()
    };
    assert!(
        completed.lines().next().unwrap().ends_with(" reaper-trace"),
        "{completed}"
    );
    let top = line("top: ");
    for sub in SUBCOMMANDS {
        assert!(
            top.split(' ').any(|w| w == *sub),
            "{sub} not offered: {top}"
        );
    }
    assert!(!top.contains("__"), "a hidden subcommand is offered: {top}");
    assert_eq!(line("ver: "), "verify-kernel");
    assert_eq!(line("hidden: "), "");
    assert_eq!(line("option: "), "--junit");

    let zsh =
        fs::read_to_string(root.join("usr/share/zsh/vendor-completions/_reaper-trace")).unwrap();
    assert!(zsh.starts_with("#compdef reaper-trace"));
    let fish =
        fs::read_to_string(root.join("usr/share/fish/vendor_completions.d/reaper-trace.fish"))
            .unwrap();
    assert!(fish.contains("complete -c reaper-trace"));
    let copyright = fs::read_to_string(root.join("usr/share/doc/reaper-trace/copyright")).unwrap();
    assert!(
        copyright.contains("License: MIT or Apache-2.0"),
        "{copyright}"
    );

    fs::remove_dir_all(&root).unwrap();
}

/// A gzipped man page as text: `man -l` when man-db is there, else groff,
/// else the source itself (checked for its title line).
fn render_man(page: &Path) -> String {
    let gz = fs::read(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    assert_eq!(&gz[..2], b"\x1f\x8b", "{} is not gzipped", page.display());
    let text = if Path::new("/usr/bin/man").exists() {
        stdout(
            Command::new("man")
                .arg("-l")
                .arg(page)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100")
                .env("LC_ALL", "C"),
        )
    } else {
        let source = stdout(Command::new("gzip").arg("-dc").arg(page));
        assert!(source.contains(".TH reaper-trace"), "{source}");
        source.replace("\\-", "-")
    };
    // Drop overstrike (bold and underline as "X\bX", "_\bX").
    let mut plain = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn the_deb_installs_into_a_throwaway_root_only() {
    let Some(dist) = dist() else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP {}: dpkg --root installs as root only", test_name());
        return;
    }
    // A root of its own with an empty dpkg database: --root points dpkg's
    // installation and administrative directories into it, the log is sent
    // there too, and the package has no maintainer scripts to run. The real
    // database must not change.
    let real_status = fs::read("/var/lib/dpkg/status").ok();
    let real_binary = fs::metadata("/usr/bin/reaper-trace").is_ok();
    let root = scratch("root");
    let admin = root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        fs::create_dir_all(admin.join(dir)).unwrap();
    }
    fs::write(admin.join("status"), "").unwrap();
    fs::write(admin.join("available"), "").unwrap();
    let log = root.join("dpkg.log");
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--admindir={}", admin.display()))
        .arg(format!("--log={}", log.display()))
        .args(["--force-all", "--install"])
        .arg(&dist.deb));

    let status = stdout(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}", admin.display()))
            .args([
                "--show",
                "--showformat=${Status} ${Version}",
                "reaper-trace",
            ]),
    );
    assert_eq!(
        status,
        format!("install ok installed {}", dist.version.replace('-', "~"))
    );
    let listed = stdout(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}", admin.display()))
            .args(["--listfiles", "reaper-trace"]),
    );
    for file in PACKAGED {
        let installed = file.trim_start_matches('.');
        assert!(
            listed.lines().any(|l| l == installed),
            "{installed} not in\n{listed}"
        );
        assert!(root.join(&installed[1..]).is_file(), "{installed}");
    }
    let said = stdout(Command::new(root.join("usr/bin/reaper-trace")).arg("--version"));
    assert_eq!(said.trim(), format!("reaper-trace {}", dist.version));

    assert_eq!(
        fs::read("/var/lib/dpkg/status").ok(),
        real_status,
        "the real dpkg database changed"
    );
    assert_eq!(fs::metadata("/usr/bin/reaper-trace").is_ok(), real_binary);
    fs::remove_dir_all(&root).unwrap();
}
