//! Installs, idempotently, what building and testing need on a fresh
//! machine: rust-src for nightly, bpf-linker built against nightly's own
//! LLVM, the Debian packages the tests and benchmarks use, and the Python
//! venv with Perfetto's schema the timeline tests check against.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

/// bpf-linker release known to build against LLVM 22 here.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages: strace and tini for real-client scenarios, bpftrace and
/// libbpf-tools (exitsnoop) as the peers the benchmark compares against, bpftool to inspect programs,
/// prometheus for the real scrape test (its promtool checks the fleet
/// examples), qemu, busybox-static and cpio to boot other kernels with
/// the static binary (`vm-test`), python3-venv for the Perfetto venv,
/// gcc and binutils (strip, objcopy) for the C programs of the stack tests,
/// the real programs the real-machine test runs (`realworld`): git, make
/// and PostgreSQL (with pgbench), Debian's docker.io and podman for the
/// real runtime tests, openssl (certificates) and curl (an HTTPS client
/// with basic auth) for the TLS test of `serve`, musl-tools for the
/// static release binary, and golang-go for the Go programs of the stack
/// tests (tests/tests/go.rs builds them at test time).
const PACKAGES: &[&str] = &[
    "strace",
    "tini",
    "bpftrace",
    "libbpf-tools",
    "bpftool",
    "prometheus",
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "python3-venv",
    "gcc",
    "binutils",
    "git",
    "make",
    "postgresql",
    // Real container runtimes for tests/tests/runtimes.rs (containerd comes
    // with docker.io; podman runs containers with runc, since crun 1.8
    // refuses hybrid cgroup hosts).
    "docker.io",
    "podman",
    "runc",
    // A CA and a server certificate made at test time, and a client that
    // shows a 401's headers (tests/tests/fleet.rs); the DaemonSet test
    // scrapes its container over HTTPS inside its network namespace.
    "openssl",
    "curl",
    // musl-gcc: cc-rs compiles ring's C and assembly (the TLS of `serve`)
    // with it for the static x86_64-unknown-linux-musl release.
    "musl-tools",
    // The aarch64 release: Debian's cross gcc links it (with rustup's
    // self-contained musl) and compiles ring for it; qemu-system-aarch64
    // boots the arm64 kernels of the matrix.
    "gcc-aarch64-linux-gnu",
    // Its C headers (ring includes a few, which musl and glibc agree on).
    "libc6-dev-arm64-cross",
    "qemu-system-arm",
    // The AArch32 assembler and linker: the matrix's compat-caller check
    // runs a 32-bit program in the arm64 VMs (xtask/vm/compat-aarch32.S).
    "binutils-arm-linux-gnueabihf",
    // The kernel's UAPI headers: the unit test that checks the syscall
    // tables of both architectures reads them.
    "linux-libc-dev",
    // Debian's Go toolchain (1.19 on Debian 12): Go binaries have no
    // .eh_frame, so their stacks are walked by frame pointers and named from
    // .gopclntab (tests/tests/go.rs).
    "golang-go",
];

/// Debian's architecture whose kernels and busybox-static the matrix
/// downloads (never installs), so dpkg must know it.
const FOREIGN_ARCH: &str = "arm64";

/// What the venv holds: Perfetto's Python package, whose official
/// bindings (`perfetto_trace_pb2`) `tests/perfetto_check.py` parses the
/// timeline with, and the protobuf runtime they were checked with (the
/// package leaves it unpinned; Debian's python3-protobuf is too old).
/// Neither has a Debian package. Beside them, kubernetes-validate, which
/// ships Kubernetes' own JSON schemas: the fleet tests check
/// docs/fleet/daemonset.yaml with it, offline.
const PERFETTO_PIP: &[(&str, &str)] = &[
    ("perfetto", "0.59.1"),
    ("protobuf", "7.36.2"),
    ("kubernetes-validate", "1.37.0"),
];

/// Where the venv lives, under the target directory: the tests look for
/// `perfetto-venv/bin/python` above their own executable.
fn perfetto_venv() -> PathBuf {
    PathBuf::from(crate::target_dir()).join("perfetto-venv")
}

/// The target of the static release binary (`dist`, `vm-test`).
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-musl";

/// The static aarch64 release's target (`xtask/src/platform.rs`).
const AARCH64_TARGET: &str = "aarch64-unknown-linux-musl";

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    nightly_rust_src()?;
    musl_target()?;
    bpf_linker()?;
    foreign_arch()?;
    packages()?;
    python_testsuite()?;
    perfetto_python()?;
    eprintln!(
        "xtask: set-up complete in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn status(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn nightly_rust_src() -> anyhow::Result<()> {
    if Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        eprintln!("xtask: installing the nightly toolchain");
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: adding rust-src to nightly (needed for -Z build-std=core)");
        status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// The stable toolchain's musl standard library: the static binary is
/// linked against it (rustup ships musl's C library inside it).
fn musl_target() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    for target in [STATIC_TARGET, AARCH64_TARGET] {
        if !installed.lines().any(|l| l.trim() == target) {
            eprintln!("xtask: adding the {target} target (a static release binary)");
            status(Command::new("rustup").args(["target", "add", target]))?;
        }
    }
    Ok(())
}

/// Adds [`FOREIGN_ARCH`] to dpkg and refreshes the package index once, so
/// that `apt-get download` finds its packages.
fn foreign_arch() -> anyhow::Result<()> {
    let Ok(foreign) = output(Command::new("dpkg").arg("--print-foreign-architectures")) else {
        eprintln!("xtask: no dpkg; the arm64 rows of vm-test need Debian's registry");
        return Ok(());
    };
    if foreign.lines().any(|l| l.trim() == FOREIGN_ARCH) {
        return Ok(());
    }
    eprintln!(
        "xtask: adding the {FOREIGN_ARCH} architecture to dpkg (the arm64 kernels of vm-test)"
    );
    status(Command::new("dpkg").args(["--add-architecture", FOREIGN_ARCH]))?;
    status(Command::new("apt-get").args(["update", "-q"]))
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

fn bpf_linker_works() -> bool {
    let candidates = [
        cargo_home().join("bin/bpf-linker"),
        PathBuf::from("bpf-linker"),
    ];
    candidates.iter().any(|bin| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Builds bpf-linker from crates.io against the nightly toolchain's LLVM:
/// its prebuilt releases are not reachable from these machines.
fn bpf_linker() -> anyhow::Result<()> {
    if bpf_linker_works() {
        return Ok(());
    }
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.<version> in {}", lib.display()))?;
    let major = llvm_major(&llvm).with_context(|| format!("no LLVM major version in {llvm}"))?;
    // A prefix whose lib/ looks like an LLVM install; bpf-linker keeps it as
    // its runpath, so it lives outside the repository, in the user's cache.
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    let prefix = cache.join("reaper-trace/llvm-prefix");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    for link in [llvm.as_str(), "libLLVM.so"] {
        let path = prefix_lib.join(link);
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(lib.join(&llvm), &path)
            .with_context(|| format!("linking {}", path.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM {major} (a few minutes, once)"
    );
    status(
        Command::new("cargo")
            .args([
                "+nightly",
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major}"))
            .env("LLVM_PREFIX", &prefix),
    )?;
    if !bpf_linker_works() {
        bail!("bpf-linker was installed but does not run");
    }
    Ok(())
}

/// cargo-fuzz, for `cargo xtask fuzz` only.
pub fn cargo_fuzz() -> anyhow::Result<()> {
    if Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz");
    status(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

/// `libLLVM.so.22.1-rust-1.97.0-nightly` → 22.
fn llvm_major(file_name: &str) -> Option<u32> {
    file_name
        .strip_prefix("libLLVM.so.")?
        .split(['.', '-'])
        .next()?
        .parse()
        .ok()
}

fn packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        eprintln!(
            "xtask: no apt-get; install {} by hand for the tests that use them",
            missing.join(" ")
        );
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages {}", missing.join(" "));
    let install = |update: bool| -> anyhow::Result<()> {
        if update {
            status(Command::new("apt-get").args(["update", "-q"]))?;
        }
        status(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    // A stale package index fails the install: refresh it and retry once.
    install(false).or_else(|_| install(true))
}

/// Python's own test package (the real-machine test runs its
/// `test_subprocess`): Debian ships it apart, as libpython3.X-testsuite for
/// its python3 3.X. Nothing to do when a python3 on PATH has it already.
fn python_testsuite() -> anyhow::Result<()> {
    let has_tests = |python: &str| {
        Command::new(python)
            .args(["-c", "import test.test_subprocess"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_tests("python3") || has_tests("/usr/bin/python3") {
        return Ok(());
    }
    let version = output(Command::new("/usr/bin/python3").args([
        "-c",
        "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
    ]))?;
    let package = format!("libpython{}-testsuite", version.trim());
    eprintln!("xtask: installing {package} (Python's test_subprocess)");
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", &package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The venv's packages at the pinned versions, as `name==version` lines
/// sorted, or `None` when its Python does not run.
fn venv_versions(python: &Path) -> Option<String> {
    let names: Vec<String> = PERFETTO_PIP.iter().map(|(n, _)| format!("{n:?}")).collect();
    let script = format!(
        "import importlib.metadata as m\nfor n in sorted([{}]):\n    try: print(f'{{n}}=={{m.version(n)}}')\n    except m.PackageNotFoundError: pass",
        names.join(", ")
    );
    let out = Command::new(python)
        .args(["-c", &script])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wanted_versions() -> String {
    let mut lines: Vec<String> = PERFETTO_PIP
        .iter()
        .map(|(n, v)| format!("{n}=={v}\n"))
        .collect();
    lines.sort();
    lines.concat()
}

/// The venv with Perfetto's bindings; quick when it is there (one Python
/// start to read the installed versions).
fn perfetto_python() -> anyhow::Result<()> {
    let venv = perfetto_venv();
    let python = venv.join("bin/python");
    let installed = venv_versions(&python);
    if installed.as_deref() == Some(wanted_versions().as_str()) {
        return Ok(());
    }
    if installed.is_none() && venv.exists() {
        // A venv whose Python is gone (the system Python was upgraded,
        // or a copy made elsewhere): start again.
        std::fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    if !python.exists() {
        eprintln!("xtask: making the Python venv {}", venv.display());
        status(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    let pins: Vec<String> = PERFETTO_PIP
        .iter()
        .map(|(n, v)| format!("{n}=={v}"))
        .collect();
    eprintln!("xtask: installing {} into it (PyPI)", pins.join(" "));
    status(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&pins),
    )?;
    match venv_versions(&python) {
        Some(v) if v == wanted_versions() => Ok(()),
        other => bail!(
            "the venv {} holds {other:?} after pip install, not {pins:?}",
            venv.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_llvm_major_from_the_library_name() {
        assert_eq!(llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"), Some(22));
        assert_eq!(llvm_major("libLLVM.so.19-rust-1.85.0-nightly"), Some(19));
        assert_eq!(llvm_major("libLLVM-22-rust.so"), None);
    }
}
