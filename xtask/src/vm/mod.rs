//! `cargo xtask vm-test`: the static binary against every Debian cloud
//! kernel the package registry offers (the newest of each major.minor), for
//! x86_64 and for arm64 (each with its own static binary, booted in
//! qemu-system-x86_64 or qemu-system-aarch64 under TCG), and against the
//! host's own kernel: one table for both architectures.
//!
//! One shell script ([`CHECKS`]) runs the same commands everywhere: as the
//! tail of the initramfs's `/init` in a VM, under `sh` on the host. It
//! prints each command's output as marked lines (`RT-OUT`, `RT-ERR`, then
//! `RT-RESULT <name> <exit code>`), so the console is all a VM has to
//! return; the verdicts are made here, by pure functions over that text
//! ([`console::parse_console`], [`judge::judge`]), which the unit tests
//! feed real console excerpts.
//!
//! One module per job: [`kernels`] (which kernels, and their vmlinuz),
//! [`initramfs`] (what each VM boots), [`qemu`] (running a VM or the host
//! and reading its console), [`console`] (the markers), [`judge`] (the
//! verdicts) and [`table`] (the results).

mod busybox;
mod compat;
mod console;
mod initramfs;
mod judge;
mod kernels;
mod qemu;
mod table;

use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::json;

use self::{
    busybox::busybox,
    compat::compat_program,
    initramfs::write_initramfs,
    kernels::fetch_kernels,
    qemu::{boot, host},
    table::{Row, print_table, round_ms},
};
use crate::{dist, platform, target_dir};

/// A VM (or the host's run) that has not finished by then is killed and
/// fails. A whole run takes about 30 s under TCG, so this only catches a
/// hang, never a slow but healthy kernel.
const TIMEOUT: Duration = Duration::from_secs(240);

/// The checks, in the order the script runs them: the table's columns.
pub const CHECK_NAMES: &[&str] = &[
    "verify-kernel",
    "check-noreap",
    "fork-stack",
    "check-sigign",
    "check-handler-once",
    "record",
    "report",
    "live",
    "no-syscall-hooks",
    "compat-caller",
];

/// Fork-storm size of the `live` check: big enough that a system-wide
/// trace that drops or misses events shows it, small enough for TCG.
const STORM: u32 = 200;

/// The commands each kernel runs, with RT (the tool), SC (the scenario
/// programs), C32 (the 32-bit compat program) and TMP (a scratch
/// directory) set. POSIX sh: busybox's in a VM, dash on the host.
const CHECKS: &str = r#"
# Prints a file's lines behind a tag; `read` also takes a last line that
# lacks its newline, which sed would glue to the next marker.
tagged() { # TAG NAME FILE
	while IFS= read -r line || [ -n "$line" ]; do
		printf '%s %s %s\n' "$1" "$2" "$line"
	done <"$3"
}
emit() { # NAME EXIT-CODE STDOUT-FILE STDERR-FILE...
	name=$1 code=$2 out=$3
	shift 3
	tagged RT-OUT "$name" "$out"
	for err in "$@"; do tagged RT-ERR "$name" "$err"; done
	echo "RT-RESULT $name $code"
}
step() { # NAME COMMAND...
	name=$1
	shift
	"$@" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err"
	emit "$name" $? "$TMP/$name.out" "$TMP/$name.err"
}
echo "RT-START $(uname -r)"
step verify-kernel "$RT" verify-kernel --format json
step check-noreap "$RT" check --format json -- "$SC" noreap 2
step fork-stack "$RT" check --format json -- "$SC" noreap_raw 2
step check-sigign "$RT" check --format json -- "$SC" sigign_many 3
step check-handler-once "$RT" check --format json -- "$SC" handler_once 3
step record "$RT" record -o "$TMP/recording" -- "$SC" noreap 2
step report "$RT" report "$TMP/recording" --format json
# System-wide: once live says its hooks are attached, a fork storm runs and
# Ctrl-C ends the trace, so the storm is inside it whatever the machine's
# speed. --duration only bounds a live that would hang.
"$RT" live --json --no-events --duration 60s </dev/null >"$TMP/live.out" 2>"$TMP/live.err" &
live=$!
until grep -q 'hooks attached' "$TMP/live.err" || ! kill -0 $live 2>/dev/null; do
	sleep 0.1
done
"$SC" storm @STORM@ </dev/null 2>"$TMP/storm.err"
kill -INT $live 2>/dev/null
wait $live
emit live $? "$TMP/live.out" "$TMP/live.err" "$TMP/storm.err"
# As serve runs by default: no syscall hook, reaps from the frees and /proc.
step no-syscall-hooks "$RT" live --json --no-events --no-syscall-hooks -- "$SC" noreap 2
# A 32-bit parent: its calls are told apart, not read by the 64-bit table.
step compat-caller "$RT" check --format json -- "$C32"
echo RT-DONE
"#;

fn checks_script() -> String {
    CHECKS.replace("@STORM@", &STORM.to_string())
}

/// `cargo xtask vm-test` (set-up done by the caller): builds, fetches the
/// kernels, runs every row and fails when any check fails anywhere.
pub fn run() -> anyhow::Result<()> {
    // The host row traces this machine's kernel; as for the kernel tests,
    // only REAPER_TRACE_SKIP_KERNEL_TESTS lets a non-root run pass.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var_os("REAPER_TRACE_SKIP_KERNEL_TESTS").is_some() {
            eprintln!("SKIP vm-test: it needs root (REAPER_TRACE_SKIP_KERNEL_TESTS is set)");
            return Ok(());
        }
        bail!(
            "vm-test needs root (its host row traces this kernel); run it with sudo, or set REAPER_TRACE_SKIP_KERNEL_TESTS=1 to skip it"
        );
    }
    let started = Instant::now();
    let dir = PathBuf::from(target_dir()).join("vm");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let cache = dir.join("kernels");

    // Every platform's kernels, each booted with that platform's static
    // binaries; the host's own kernel last.
    let mut rows = Vec::new();
    let mut host_bins = None;
    for platform in platform::ALL {
        let bins = dist::build_static_for(platform)?;
        let compat = compat_program(platform, &dir)?;
        let kernels = fetch_kernels(&cache, platform.deb_arch)?;
        let busybox = busybox(platform, &cache)?;
        let name = format!("initrd-{}", platform.deb_arch);
        let initrd = write_initramfs(&bins, &compat, &busybox, &dir, &name)?;
        for kernel in &kernels {
            rows.push(boot(platform, kernel, &initrd, &dir)?);
        }
        if platform.is_host() {
            host_bins = Some((bins, compat));
        }
    }
    let (host_bins, host_compat) = host_bins.context("no platform is the host's")?;
    rows.push(host(&host_bins, &host_compat, &dir)?);

    print_table(&rows);
    let results = dir.join("results.json");
    let doc = json!({
        "ok": rows.iter().all(Row::ok),
        "seconds": round_ms(started.elapsed().as_secs_f64()),
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    });
    fs::write(&results, format!("{doc:#}\n"))
        .with_context(|| format!("writing {}", results.display()))?;
    eprintln!(
        "xtask: vm-test took {:.0}s; results in {}",
        started.elapsed().as_secs_f64(),
        results.display()
    );
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.kernel.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "vm-test failed on {} (see the table above and {}/<kernel>.log)",
            failed.join(", "),
            dir.display()
        );
    }
    Ok(())
}

/// A command's stdout; on failure a one-line error with its last line of
/// stderr (apt's `E: ...` names the unreachable host).
fn command_output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        bail!(
            "{} {} failed ({}){}",
            cmd.get_program().to_string_lossy(),
            cmd.get_args()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            last.map(|l| format!(": {}", l.trim())).unwrap_or_default()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
