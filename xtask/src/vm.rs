//! `cargo xtask vm-test`: the static binary against every Debian cloud
//! kernel the package registry offers (the newest of each major.minor),
//! each booted in qemu, and against the host's own kernel.
//!
//! One shell script ([`CHECKS`]) runs the same commands everywhere: as the
//! tail of the initramfs's `/init` in a VM, under `sh` on the host. It
//! prints each command's output as marked lines (`RT-OUT`, `RT-ERR`, then
//! `RT-RESULT <name> <exit code>`), so the console is all a VM has to
//! return; the verdicts are made here, by pure functions over that text
//! ([`parse_console`], [`judge`]), which the unit tests feed real console
//! excerpts.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader, Read, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{
    dist::{self, StaticBins},
    target_dir,
};

/// A VM (or the host's run) that has not finished by then is killed and
/// fails. A whole run takes about 30 s under TCG, so this only catches a
/// hang, never a slow but healthy kernel.
const TIMEOUT: Duration = Duration::from_secs(240);

/// The checks, in the order the script runs them: the table's columns.
pub const CHECK_NAMES: &[&str] = &[
    "verify-kernel",
    "check-noreap",
    "check-sigign",
    "check-handler-once",
    "record",
    "report",
    "live",
];

/// Fork-storm size of the `live` check: big enough that a system-wide
/// trace that drops or misses events shows it, small enough for TCG.
const STORM: u32 = 200;

/// The commands each kernel runs, with RT (the tool), SC (the scenario
/// programs) and TMP (a scratch directory) set. POSIX sh: busybox's in a
/// VM, dash on the host.
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
echo RT-DONE
"#;

/// PID 1 of the initramfs. The tool needs no more than proc, sysfs and
/// devtmpfs (it reads nothing from tracefs). cgroup2 only serves --cgroup and
/// --container, which the checks do not use; it is mounted anyway because
/// every real host has it, and without it the findings' cgroup attribution
/// takes a fallback path (an empty cgroup path) no host takes.
const INIT: &str = r#"#!/bin/busybox sh
# busybox --install resolves its own path through /proc/self/exe.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
RT=/bin/reaper-trace SC=/bin/scenario TMP=/tmp
. /checks.sh
# Closing the console's last descriptor waits until the serial port has
# sent everything: powering off at once could cut the tail, RT-DONE.
exec </dev/null >/dev/null 2>&1
poweroff -f
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
    let bins = dist::build_static()?;
    let dir = PathBuf::from(target_dir()).join("vm");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let kernels = fetch_kernels(&dir.join("kernels"))?;
    let initrd = write_initramfs(&bins, &dir)?;

    let mut rows = Vec::new();
    for kernel in &kernels {
        rows.push(boot(kernel, &initrd, &dir)?);
    }
    rows.push(host(&bins, &dir)?);

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

// ---------------------------------------------------------------- kernels

/// A kernel of the matrix, from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// e.g. linux-image-6.1.0-56-cloud-amd64-unsigned
    pub package: String,
    /// Debian version, e.g. 6.1.192-2: the cache key.
    pub version: String,
    /// What `uname -r` prints, e.g. 6.1.0-56-cloud-amd64.
    pub release: String,
}

/// `linux-image-<release>[-unsigned]` → `<release>` when it is a real
/// cloud kernel: `6.12-cloud-amd64` (the meta-package, no x.y.z) and the
/// -dbg packages are not.
fn cloud_release(package: &str) -> Option<String> {
    let rest = package.strip_prefix("linux-image-")?;
    let release = rest.strip_suffix("-unsigned").unwrap_or(rest);
    let abi = release.strip_suffix("-cloud-amd64")?;
    let numeric: String = abi
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let parts: Vec<&str> = numeric.split('.').collect();
    (parts.len() == 3 && parts.iter().all(|p| !p.is_empty())).then(|| release.to_owned())
}

/// The package names of `apt-cache search` lines (`name - description`).
pub fn parse_search(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split(" - ").next())
        .map(str::trim)
        .filter(|name| cloud_release(name).is_some())
        .map(str::to_owned)
        .collect()
}

/// (Package, Version) of each record of `apt-cache show`.
pub fn parse_show(out: &str) -> Vec<(String, String)> {
    let mut records = Vec::new();
    let mut package = None;
    for line in out.lines() {
        if let Some(p) = line.strip_prefix("Package: ") {
            package = Some(p.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Version: ")
            && let Some(p) = package.take()
        {
            records.push((p, v.trim().to_owned()));
        }
    }
    records
}

/// The numbers of a Debian version in order (6.12.117-1~deb12u1 →
/// 6, 12, 117, 1, 12, 1): enough to order the kernels of one registry,
/// whose versions differ in their upstream or ABI numbers.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The newest kernel of each major.minor, oldest series first; of a signed
/// and an unsigned package of the same version, the unsigned one (the
/// signed one wraps the same kernel for Secure Boot).
pub fn newest_per_series(candidates: &[(String, String)]) -> Vec<Kernel> {
    let mut best: BTreeMap<(u64, u64), (Vec<u64>, bool, Kernel)> = BTreeMap::new();
    for (package, version) in candidates {
        let Some(release) = cloud_release(package) else {
            continue;
        };
        let key = version_key(version);
        let [major, minor, ..] = key[..] else {
            continue;
        };
        let unsigned = package.ends_with("-unsigned");
        let kernel = Kernel {
            package: package.clone(),
            version: version.clone(),
            release,
        };
        let entry = best
            .entry((major, minor))
            .or_insert((key.clone(), unsigned, kernel.clone()));
        if (&key, unsigned) > (&entry.0, entry.1) {
            *entry = (key, unsigned, kernel);
        }
    }
    best.into_values().map(|(_, _, k)| k).collect()
}

/// The matrix from the local package index.
fn discover() -> anyhow::Result<Vec<Kernel>> {
    let search = command_output(Command::new("apt-cache").args([
        "search",
        "--names-only",
        r"^linux-image-[0-9.]+.*-cloud-amd64(-unsigned)?$",
    ]))?;
    let names = parse_search(&search);
    if names.is_empty() {
        bail!("the package index lists no Debian cloud kernel (linux-image-*-cloud-amd64)");
    }
    let show = command_output(
        Command::new("apt-cache")
            .args(["show", "--no-all-versions"])
            .args(&names),
    )?;
    Ok(newest_per_series(&parse_show(&show)))
}

/// Each kernel's vmlinuz, downloaded and extracted once into `cache`.
/// Tries the local index first, then refreshes it once: a stale index names
/// versions the registry has dropped. Without a registry this is an error,
/// never a skipped kernel.
fn fetch_kernels(cache: &Path) -> anyhow::Result<Vec<(Kernel, PathBuf)>> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let attempt = || -> anyhow::Result<Vec<(Kernel, PathBuf)>> {
        discover()?
            .into_iter()
            .map(|k| {
                let vmlinuz = fetch_vmlinuz(&k, cache)?;
                Ok((k, vmlinuz))
            })
            .collect()
    };
    attempt().or_else(|first| {
        eprintln!("xtask: {first:#}; refreshing the package index and retrying");
        command_output(Command::new("apt-get").args(["update", "-q"])).with_context(|| {
            "apt-get update failed: the Debian package registry that provides the kernels is unreachable"
        })?;
        attempt()
    })
}

fn fetch_vmlinuz(k: &Kernel, cache: &Path) -> anyhow::Result<PathBuf> {
    let dir = cache.join(format!("{}_{}", k.package, k.version));
    let vmlinuz = dir.join("vmlinuz");
    if vmlinuz.exists() {
        return Ok(vmlinuz);
    }
    // apt-get download's file name: an epoch's colon is escaped.
    let deb = cache.join(format!(
        "{}_{}_amd64.deb",
        k.package,
        k.version.replace(':', "%3a")
    ));
    if !deb.exists() {
        eprintln!("xtask: downloading {} {}", k.package, k.version);
        command_output(
            Command::new("apt-get")
                .current_dir(cache)
                // As root, apt downloads as _apt, which cannot write here.
                .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
                .arg(format!("{}={}", k.package, k.version)),
        )
        .with_context(|| {
            format!(
                "downloading {} {} from the Debian registry",
                k.package, k.version
            )
        })?;
    }
    let unpacked = cache.join(format!("{}_{}.unpacked", k.package, k.version));
    let _ = fs::remove_dir_all(&unpacked);
    if let Err(e) = command_output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked)) {
        // Most likely a download cut short: the next run fetches it again.
        let _ = fs::remove_file(&deb);
        return Err(e.context(format!("{} is unreadable and was removed", deb.display())));
    }
    let image = unpacked.join(format!("boot/vmlinuz-{}", k.release));
    fs::create_dir_all(&dir)?;
    // Renamed last, so that an interrupted extraction is redone next time.
    fs::rename(&image, &vmlinuz)
        .with_context(|| format!("no {} in {}", image.display(), deb.display()))?;
    fs::remove_dir_all(&unpacked)?;
    Ok(vmlinuz)
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

// -------------------------------------------------------------- initramfs

/// A newc ("070701") cpio archive, the format the kernel unpacks as an
/// initramfs. Written here rather than with cpio(1) so that /dev/console
/// (needed before init can mount devtmpfs) is a device node without
/// mknod or root, and the archive does not depend on file times or owners.
#[derive(Default)]
pub struct Cpio {
    bytes: Vec<u8>,
    next_ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_ino += 1;
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100000 | mode, (0, 0), data);
    }

    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), &[]);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.bytes
    }
}

/// busybox-static's binary: it needs no loader or library in the archive.
const BUSYBOX: &str = "/bin/busybox";

/// target/vm/initrd.gz: busybox, the static tool and scenario programs,
/// /init and the checks. Rebuilt every run (about a second): the binaries
/// may have changed.
fn write_initramfs(bins: &StaticBins, dir: &Path) -> anyhow::Result<PathBuf> {
    let read = |p: &Path| fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut cpio = Cpio::default();
    // Parents first: the kernel's unpacker does not create them.
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp",
    ] {
        cpio.dir(d);
    }
    cpio.char_dev("dev/console", 5, 1);
    cpio.file(
        "bin/busybox",
        0o755,
        &read(Path::new(BUSYBOX)).context("busybox-static is needed (cargo xtask setup)")?,
    );
    cpio.file("bin/reaper-trace", 0o755, &read(&bins.tool)?);
    cpio.file("bin/scenario", 0o755, &read(&bins.scenario)?);
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.file("checks.sh", 0o644, checks_script().as_bytes());
    let archive = dir.join("initrd.cpio");
    fs::write(&archive, cpio.finish()).with_context(|| format!("writing {}", archive.display()))?;
    // -n: no name or time in the header, so equal inputs give equal bytes.
    command_output(Command::new("gzip").args(["-n", "-f"]).arg(&archive))?;
    Ok(dir.join("initrd.cpio.gz"))
}

// ------------------------------------------------------------ running one

/// What a VM's console (or the host's script) printed, line by line with
/// the seconds since it started, and how it ended.
struct Transcript {
    lines: Vec<(f64, String)>,
    timed_out: bool,
    status: Option<ExitStatus>,
    seconds: f64,
}

/// Runs `cmd` in its own process group, copying its stdout and stderr
/// (stderr lines marked) into `log` as they come, until both close or
/// [`TIMEOUT`]; on timeout the whole group is killed.
fn run_console(mut cmd: Command, log: &Path, label: &str) -> anyhow::Result<Transcript> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let (tx, rx) = mpsc::channel::<String>();
    fn pump(pipe: impl Read + Send + 'static, tag: &'static str, tx: mpsc::Sender<String>) {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf);
                // The serial console ends lines with \r\n.
                let line = line.trim_end_matches(['\n', '\r']);
                if tx.send(format!("{tag}{line}")).is_err() {
                    break;
                }
                buf.clear();
            }
        });
    }
    pump(child.stdout.take().expect("piped"), "", tx.clone());
    pump(child.stderr.take().expect("piped"), "[stderr] ", tx);

    let mut file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let deadline = started + TIMEOUT;
    let mut lines = Vec::new();
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let at = started.elapsed().as_secs_f64();
                writeln!(file, "{line}")?;
                progress(label, at, &line);
                lines.push((at, line));
            }
            // Both pipes closed: the VM (or script) has ended.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                // SAFETY: signals the process group this function started.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                writeln!(file, "[xtask] killed after {}s", TIMEOUT.as_secs())?;
                break;
            }
        }
    }
    let status = child.wait().ok();
    Ok(Transcript {
        lines,
        timed_out,
        status,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One line of progress per finished check, so a slow kernel shows where.
fn progress(label: &str, at: f64, line: &str) {
    if let Some(rest) = marker(line, "RT-RESULT") {
        eprintln!("xtask: {label} [{at:5.1}s] {rest}");
    } else if let Some(uname) = marker(line, "RT-START") {
        eprintln!("xtask: {label} [{at:5.1}s] running the checks on {uname}");
    }
}

fn boot(k: &(Kernel, PathBuf), initrd: &Path, dir: &Path) -> anyhow::Result<Row> {
    let (kernel, vmlinuz) = k;
    let mut qemu = Command::new("qemu-system-x86_64");
    // KVM is not usable on these machines (qemu picks it and hangs): TCG.
    qemu.args(["-accel", "tcg", "-m", "2G", "-smp", "2", "-kernel"])
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 quiet",
            "-nographic",
            // A panic (init died) reboots, and -no-reboot makes that an exit.
            "-no-reboot",
        ]);
    let log = dir.join(format!("{}.log", kernel.release));
    eprintln!(
        "xtask: booting {} ({} {})",
        kernel.release, kernel.package, kernel.version
    );
    let t = run_console(qemu, &log, &kernel.release)?;
    Ok(Row::new(
        kernel.release.clone(),
        Some(kernel),
        &kernel.release,
        &t,
        log,
    ))
}

/// The host row: the same script under sh, judged the same way.
fn host(bins: &StaticBins, dir: &Path) -> anyhow::Result<Row> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading /proc/sys/kernel/osrelease")?
        .trim()
        .to_owned();
    let tmp = dir.join("host-tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let abs = |p: &Path| p.canonicalize().with_context(|| format!("{}", p.display()));
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(checks_script())
        .env("RT", abs(&bins.tool)?)
        .env("SC", abs(&bins.scenario)?)
        .env("TMP", &tmp);
    let log = dir.join("host.log");
    eprintln!("xtask: running the checks on the host ({release})");
    let t = run_console(sh, &log, "host")?;
    Ok(Row::new(format!("host {release}"), None, &release, &t, log))
}

// ---------------------------------------------------------------- parsing

/// One command's run, from its markers.
#[derive(Debug, Default)]
pub struct Run {
    pub code: Option<i32>,
    pub out: Vec<String>,
    pub err: Vec<String>,
}

/// What the checks printed on one kernel.
#[derive(Debug, Default)]
pub struct Console {
    /// `uname -r`, from RT-START.
    pub uname: Option<String>,
    pub runs: BTreeMap<String, Run>,
    /// RT-DONE: the script ran to its end.
    pub done: bool,
}

/// The text after `tag ` when the line holds the marker. Anywhere in the
/// line: a kernel message without its newline can precede it on a console.
fn marker<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    let at = line.find(tag)?;
    let rest = &line[at + tag.len()..];
    if rest.is_empty() {
        return Some(rest);
    }
    rest.strip_prefix(' ')
}

pub fn parse_console<'a>(lines: impl IntoIterator<Item = &'a str>) -> Console {
    let mut c = Console::default();
    for line in lines {
        if let Some(rest) = marker(line, "RT-OUT") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            c.runs.entry(name.into()).or_default().out.push(text.into());
        } else if let Some(rest) = marker(line, "RT-ERR") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            c.runs.entry(name.into()).or_default().err.push(text.into());
        } else if let Some(rest) = marker(line, "RT-RESULT") {
            if let Some((name, code)) = rest.split_once(' ') {
                c.runs.entry(name.into()).or_default().code = code.trim().parse().ok();
            }
        } else if let Some(uname) = marker(line, "RT-START") {
            c.uname = Some(uname.trim().into());
        } else if marker(line, "RT-DONE").is_some() {
            c.done = true;
        }
    }
    c
}

/// Seconds each check took: from the marker before its RT-RESULT to it
/// (the script prints a command's output only once it has ended); "boot"
/// is the time until the checks started.
fn check_seconds(lines: &[(f64, String)]) -> BTreeMap<String, f64> {
    let mut seconds = BTreeMap::new();
    let mut since = None;
    for (at, line) in lines {
        if marker(line, "RT-START").is_some() {
            seconds.insert("boot".to_owned(), *at);
            since = Some(*at);
        } else if let Some(rest) = marker(line, "RT-RESULT") {
            let name = rest.split(' ').next().unwrap_or_default();
            if let Some(s) = since {
                seconds.insert(name.to_owned(), at - s);
            }
            since = Some(*at);
        }
    }
    seconds
}

// ---------------------------------------------------------------- judging

/// One cell of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub check: String,
    pub ok: bool,
    /// What held (ok) or why not (FAIL), in one line.
    pub detail: String,
}

type Judged = Result<String, String>;

impl Run {
    fn expect_code(&self, want: i32) -> Result<(), String> {
        match self.code {
            Some(code) if code == want => Ok(()),
            code => {
                // The tool's own one-line error, when it printed one.
                let last = self
                    .err
                    .iter()
                    .rev()
                    .find(|l| !l.starts_with("TRUTH "))
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default();
                Err(format!("exit {code:?}, expected {want}{last}"))
            }
        }
    }

    fn json(&self) -> impl Iterator<Item = Value> + '_ {
        self.out
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
    }

    /// The last JSON line of `type` on stdout.
    fn typed(&self, kind: &str) -> Result<Value, String> {
        self.json()
            .filter(|v| v["type"] == kind)
            .last()
            .ok_or_else(|| format!("no JSON {kind} line on stdout"))
    }

    /// The scenario's TRUTH line that holds `key`.
    fn truth(&self, key: &str) -> Result<Value, String> {
        self.err
            .iter()
            .filter_map(|l| l.strip_prefix("TRUTH "))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get(key).is_some())
            .ok_or_else(|| format!("no TRUTH line with {key:?} from the scenario"))
    }
}

fn pids(v: &Value) -> Vec<i64> {
    let mut p: Vec<i64> = v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    p.sort_unstable();
    p
}

fn findings(report: &Value) -> Result<&Vec<Value>, String> {
    report["findings"]
        .as_array()
        .ok_or_else(|| "the report has no findings array".to_owned())
}

fn codes(finding: &Value) -> Vec<&str> {
    finding["diagnosis"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["code"].as_str()).collect())
        .unwrap_or_default()
}

fn no_loss(report: &Value) -> Result<(), String> {
    match report["summary"]["lost_events"].as_i64() {
        Some(0) => Ok(()),
        Some(n) => Err(format!("{n} events lost")),
        None => Err("the report has no summary.lost_events".into()),
    }
}

/// The findings are exactly one unreaped finding per child, each with
/// diagnosis `code`.
fn unreaped_children(report: &Value, children: &[i64], code: &str) -> Result<(), String> {
    let findings = findings(report)?;
    let mut found: Vec<i64> = findings.iter().filter_map(|f| f["pid"].as_i64()).collect();
    found.sort_unstable();
    if found != children {
        return Err(format!(
            "findings for pids {found:?}, the scenario's children are {children:?}"
        ));
    }
    for f in findings {
        if f["kind"] != "unreaped" || !codes(f).contains(&code) {
            return Err(format!(
                "pid {}: kind {}, diagnosis {:?}; expected unreaped with {code}",
                f["pid"],
                f["kind"],
                codes(f)
            ));
        }
    }
    Ok(())
}

fn get<'a>(c: &'a Console, name: &str) -> Result<&'a Run, String> {
    c.runs
        .get(name)
        .filter(|r| r.code.is_some())
        .ok_or_else(|| "did not run (no RT-RESULT)".to_owned())
}

fn verify_kernel(c: &Console) -> Judged {
    let run = get(c, "verify-kernel")?;
    let v = run.json().last().unwrap_or(Value::Null);
    let behaviours = v["behaviours"].as_array();
    // A verify-kernel that exits 1 still prints every behaviour: name the
    // ones that differ rather than only the exit code.
    let differing: Vec<String> = behaviours
        .into_iter()
        .flatten()
        .filter(|b| b["ok"] != true)
        .map(|b| {
            format!(
                "{}: expected {}, seen {}",
                b["behaviour"].as_str().unwrap_or("?"),
                b["expected"].as_str().unwrap_or("?"),
                b["seen"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let differ = || format!(": {}", differing.join("; "));
    run.expect_code(0).map_err(|e| {
        if differing.is_empty() {
            e
        } else {
            e + &differ()
        }
    })?;
    let behaviours = behaviours.ok_or("no behaviours in the JSON on stdout")?;
    if v["ok"] != true || !differing.is_empty() {
        return Err(format!("exit 0 but not ok{}", differ()));
    }
    Ok(format!("all {} behaviours hold", behaviours.len()))
}

fn check_noreap(c: &Console) -> Judged {
    let run = get(c, "check-noreap")?;
    run.expect_code(1)?;
    let children = pids(&run.truth("children")?["children"]);
    let report = run.typed("report")?;
    unreaped_children(&report, &children, "never_waited")?;
    no_loss(&report)?;
    Ok(format!(
        "{} unreaped findings = the scenario's children",
        children.len()
    ))
}

fn check_sigign(c: &Console) -> Judged {
    let run = get(c, "check-sigign")?;
    run.expect_code(0)?;
    let children = pids(&run.truth("children")?["children"]);
    let report = run.typed("report")?;
    let findings = findings(&report)?;
    if !findings.is_empty() {
        return Err(format!("{} findings, expected none", findings.len()));
    }
    let autoreaped = &report["summary"]["autoreaped"];
    if autoreaped.as_i64() != Some(children.len() as i64) {
        return Err(format!(
            "autoreaped {autoreaped}, the scenario forked {}",
            children.len()
        ));
    }
    no_loss(&report)?;
    Ok(format!("{autoreaped} autoreaped, no finding"))
}

fn check_handler_once(c: &Console) -> Judged {
    let run = get(c, "check-handler-once")?;
    run.expect_code(1)?;
    let truth = run.truth("zombies_left")?;
    let left = truth["zombies_left"].as_i64().unwrap_or(0);
    if left < 1 {
        return Err(format!("the scenario left no zombie: {truth}"));
    }
    let children = pids(&truth["children"]);
    let report = run.typed("report")?;
    let findings = findings(&report)?;
    for f in findings {
        let pid = f["pid"].as_i64().unwrap_or(-1);
        if !children.contains(&pid)
            || f["kind"] != "unreaped"
            || !codes(f).contains(&"sigchld_coalesced")
        {
            return Err(format!(
                "pid {pid}: kind {}, diagnosis {:?}; expected an unreaped child with sigchld_coalesced",
                f["kind"],
                codes(f)
            ));
        }
    }
    if findings.len() as i64 != left {
        return Err(format!(
            "{} findings, the scenario left {left} zombies",
            findings.len()
        ));
    }
    no_loss(&report)?;
    Ok(format!("{left} coalesced-SIGCHLD zombies found"))
}

fn record(c: &Console) -> Judged {
    let run = get(c, "record")?;
    run.expect_code(0)?;
    let children = pids(&run.truth("children")?["children"]);
    Ok(format!("recorded {} unreaped children", children.len()))
}

/// The report of the recording names the children the recorded scenario
/// left, on the kernel that recorded it.
fn report(c: &Console) -> Judged {
    let run = get(c, "report")?;
    run.expect_code(0)?;
    let recorded = get(c, "record")?;
    let children = pids(&recorded.truth("children")?["children"]);
    let report = run.typed("report")?;
    unreaped_children(&report, &children, "never_waited")?;
    no_loss(&report)?;
    if let Some(uname) = &c.uname
        && report["kernel_release"] != uname.as_str()
    {
        return Err(format!(
            "recorded on kernel {}, but this is {uname}",
            report["kernel_release"]
        ));
    }
    Ok(format!(
        "{} unreaped findings = the recorded children",
        children.len()
    ))
}

fn live(c: &Console) -> Judged {
    let run = get(c, "live")?;
    run.expect_code(0)?;
    let report = run.typed("report")?;
    no_loss(&report)?;
    let totals = run.typed("totals")?;
    if totals["lost"] != 0 {
        return Err(format!("totals: lost {}", totals["lost"]));
    }
    let storm = run.truth("reaped")?;
    let forked = storm["reaped"].as_i64().unwrap_or(0);
    let exits = report["summary"]["exits"].as_i64().unwrap_or(0);
    if forked < i64::from(STORM) || exits < forked {
        return Err(format!(
            "the storm forked and reaped {forked}, the system-wide trace saw {exits} exits"
        ));
    }
    Ok(format!(
        "system-wide: {exits} exits (a storm of {forked}), 0 lost"
    ))
}

/// Every check's verdict, in [`CHECK_NAMES`] order.
pub fn judge(c: &Console) -> Vec<Verdict> {
    let judges: [fn(&Console) -> Judged; 7] = [
        verify_kernel,
        check_noreap,
        check_sigign,
        check_handler_once,
        record,
        report,
        live,
    ];
    CHECK_NAMES
        .iter()
        .zip(judges)
        .map(|(name, judge)| {
            let (ok, detail) = match judge(c) {
                Ok(d) => (true, d),
                Err(d) => (false, d),
            };
            Verdict {
                check: (*name).to_owned(),
                ok,
                detail,
            }
        })
        .collect()
}

/// The "boot" cell: the expected kernel ran the script to its end in time.
pub fn judge_boot(c: &Console, release: &str, timed_out: bool) -> Verdict {
    let detail = if timed_out {
        Err(format!(
            "killed after {}s without finishing",
            TIMEOUT.as_secs()
        ))
    } else if c.uname.is_none() {
        Err("the checks never started (no RT-START: see the log for a panic)".to_owned())
    } else if c.uname.as_deref() != Some(release) {
        Err(format!("booted {:?}, expected {release}", c.uname))
    } else if !c.done {
        Err("ended before the last check (no RT-DONE)".to_owned())
    } else {
        Ok(format!("ran every check on {release}"))
    };
    let (ok, detail) = match detail {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Verdict {
        check: "boot".into(),
        ok,
        detail,
    }
}

// ---------------------------------------------------------------- results

/// One kernel's line of the table.
struct Row {
    kernel: String,
    package: Option<(String, String)>,
    uname: Option<String>,
    seconds: f64,
    log: PathBuf,
    /// boot, then one per check.
    verdicts: Vec<Verdict>,
    check_seconds: BTreeMap<String, f64>,
}

impl Row {
    fn new(
        kernel: String,
        package: Option<&Kernel>,
        release: &str,
        t: &Transcript,
        log: PathBuf,
    ) -> Row {
        let console = parse_console(t.lines.iter().map(|(_, l)| l.as_str()));
        let mut verdicts = vec![judge_boot(&console, release, t.timed_out)];
        verdicts.extend(judge(&console));
        if let Some(status) = t.status.filter(|s| !s.success() && !t.timed_out) {
            // qemu (or sh) failing is worth a word even when the checks
            // came through; it cannot make a passing row fail by itself.
            eprintln!("xtask: {kernel}: the runner exited with {status}");
        }
        Row {
            kernel,
            package: package.map(|k| (k.package.clone(), k.version.clone())),
            uname: console.uname,
            seconds: t.seconds,
            log,
            verdicts,
            check_seconds: check_seconds(&t.lines),
        }
    }

    fn ok(&self) -> bool {
        self.verdicts.iter().all(|v| v.ok)
    }

    fn to_json(&self) -> Value {
        json!({
            "kernel": self.kernel,
            "package": self.package.as_ref().map(|p| &p.0),
            "version": self.package.as_ref().map(|p| &p.1),
            "uname": self.uname,
            "ok": self.ok(),
            "seconds": round_ms(self.seconds),
            "log": self.log,
            "checks": self.verdicts.iter().map(|v| json!({
                "check": v.check,
                "ok": v.ok,
                "detail": v.detail,
                "seconds": self.check_seconds.get(&v.check).copied().map(round_ms),
            })).collect::<Vec<_>>(),
        })
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn print_table(rows: &[Row]) {
    let label = |r: &Row| match &r.package {
        Some((_, version)) => format!("{} ({version})", r.kernel),
        None => r.kernel.clone(),
    };
    let width = rows
        .iter()
        .map(|r| label(r).len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut header = format!("{:width$}", "kernel");
    let columns: Vec<&str> = std::iter::once("boot")
        .chain(CHECK_NAMES.iter().copied())
        .collect();
    for c in &columns {
        header.push_str(&format!("  {c}"));
    }
    println!("\n{header}  time");
    for r in rows {
        let mut line = format!("{:width$}", label(r));
        for (c, v) in columns.iter().zip(&r.verdicts) {
            let cell = if v.ok { "ok" } else { "FAIL" };
            line.push_str(&format!("  {cell:w$}", w = c.len()));
        }
        println!("{line}  {:.0}s", r.seconds);
    }
    // Checks of one row that failed for the same reason share a line: a
    // VM that hangs would otherwise repeat "did not run" seven times.
    let mut failures = Vec::new();
    for r in rows {
        let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
        for v in r.verdicts.iter().filter(|v| !v.ok) {
            match reasons.iter_mut().find(|(d, _)| *d == v.detail) {
                Some((_, checks)) => checks.push(&v.check),
                None => reasons.push((&v.detail, vec![&v.check])),
            }
        }
        for (detail, checks) in reasons {
            failures.push(format!("  {} {}: {detail}", r.kernel, checks.join(", ")));
        }
    }
    if !failures.is_empty() {
        println!("\nfailures:\n{}", failures.join("\n"));
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEARCH: &str = "\
linux-image-6.1.0-47-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud
linux-image-6.1.0-56-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud
linux-image-6.1.0-56-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.12.117+deb12-cloud-amd64-unsigned - Linux 6.12 for x86-64 cloud
linux-image-6.12-cloud-amd64 - Linux for x86-64 cloud (meta-package)
linux-image-6.12.100+deb12-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
linux-image-6.12.117+deb12-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
";

    #[test]
    fn search_keeps_real_cloud_kernels_only() {
        let names = parse_search(SEARCH);
        assert_eq!(names.len(), 6);
        assert!(!names.contains(&"linux-image-6.12-cloud-amd64".to_owned()));
        assert_eq!(cloud_release("linux-image-6.1.0-56-cloud-amd64-dbg"), None);
        assert_eq!(
            cloud_release("linux-image-6.12.117+deb12-cloud-amd64-unsigned").as_deref(),
            Some("6.12.117+deb12-cloud-amd64")
        );
    }

    #[test]
    fn newest_of_each_series_prefers_unsigned() {
        let show = "\
Package: linux-image-6.1.0-47-cloud-amd64-unsigned
Version: 6.1.170-1
Description: x

Package: linux-image-6.1.0-56-cloud-amd64
Version: 6.1.192-2

Package: linux-image-6.1.0-56-cloud-amd64-unsigned
Version: 6.1.192-2

Package: linux-image-6.12.100+deb12-cloud-amd64
Version: 6.12.100-1~deb12u1

Package: linux-image-6.12.117+deb12-cloud-amd64
Version: 6.12.117-1~deb12u1
";
        let kernels = newest_per_series(&parse_show(show));
        assert_eq!(
            kernels,
            vec![
                Kernel {
                    package: "linux-image-6.1.0-56-cloud-amd64-unsigned".into(),
                    version: "6.1.192-2".into(),
                    release: "6.1.0-56-cloud-amd64".into(),
                },
                Kernel {
                    package: "linux-image-6.12.117+deb12-cloud-amd64".into(),
                    version: "6.12.117-1~deb12u1".into(),
                    release: "6.12.117+deb12-cloud-amd64".into(),
                },
            ]
        );
    }

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let mut c = Cpio::default();
        c.dir("dev");
        c.char_dev("dev/console", 5, 1);
        c.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = c.finish();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"07070100000001000041ed"));
        let text = String::from_utf8_lossy(&bytes);
        // rdev 5:1 of the console node.
        assert!(text.contains("0000000500000001"));
        assert!(text.contains("init\0"));
        assert!(text.contains("#!/bin/sh\n"));
        assert!(text.contains("TRAILER!!!\0"));
        assert_eq!(text.matches("070701").count(), 4);
    }

    /// An excerpt of a real console: target/vm/6.1.0-56-cloud-amd64.log.
    const LOG_6_1: &str = include_str!("../fixtures/vm-6.1.0-56-cloud-amd64.log");

    fn console(text: &str) -> Console {
        parse_console(text.lines())
    }

    #[test]
    fn a_real_console_passes_every_check() {
        let c = console(LOG_6_1);
        assert_eq!(c.uname.as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert!(judge_boot(&c, "6.1.0-56-cloud-amd64", false).ok);
        let verdicts = judge(&c);
        assert_eq!(verdicts.len(), CHECK_NAMES.len());
        for v in &verdicts {
            assert!(v.ok, "{v:?}");
        }
    }

    #[test]
    fn a_cut_console_fails_the_missing_checks_and_the_boot() {
        let text: String = LOG_6_1
            .lines()
            .take_while(|l| !l.contains("RT-RESULT record"))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = console(&text);
        let boot = judge_boot(&c, "6.1.0-56-cloud-amd64", false);
        assert!(!boot.ok && boot.detail.contains("RT-DONE"), "{boot:?}");
        let failed: Vec<String> = judge(&c)
            .into_iter()
            .filter(|v| !v.ok)
            .map(|v| v.check)
            .collect();
        assert_eq!(failed, ["record", "report", "live"]);
        assert!(!judge_boot(&c, "6.12.117+deb12-cloud-amd64", true).ok);
        assert!(!judge_boot(&c, "6.1.0-41-cloud-amd64", false).ok);
    }

    /// The lines of the real log, with `edit` applied to one check's.
    fn edited(name: &str, edit: impl Fn(&str) -> String) -> Console {
        let prefix = format!(" {name} ");
        let text: String = LOG_6_1
            .lines()
            .map(|l| {
                if l.contains(&prefix) {
                    edit(l)
                } else {
                    l.to_owned()
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        console(&text)
    }

    fn verdict(c: &Console, check: &str) -> Verdict {
        judge(c).into_iter().find(|v| v.check == check).unwrap()
    }

    #[test]
    fn a_finding_for_another_pid_fails_noreap() {
        let c = edited("check-noreap", |l| {
            l.replacen("\"children\":[", "\"children\":[1,", 1)
        });
        let v = verdict(&c, "check-noreap");
        assert!(!v.ok && v.detail.contains("children are [1,"), "{v:?}");
    }

    #[test]
    fn a_wrong_exit_code_names_it() {
        let c = edited("check-sigign", |l| {
            l.replace("RT-RESULT check-sigign 0", "RT-RESULT check-sigign 1")
        });
        let v = verdict(&c, "check-sigign");
        assert!(
            !v.ok && v.detail.starts_with("exit Some(1), expected 0"),
            "{v:?}"
        );
    }

    #[test]
    fn lost_events_fail_live() {
        let c = edited("live", |l| {
            l.replace("\"lost_events\":0", "\"lost_events\":3")
        });
        let v = verdict(&c, "live");
        assert!(!v.ok && v.detail == "3 events lost", "{v:?}");
    }

    #[test]
    fn a_behaviour_that_differs_is_named() {
        let c = edited("verify-kernel", |l| {
            l.replacen("\"ok\":true", "\"ok\":false", 1)
                .replace("RT-RESULT verify-kernel 0", "RT-RESULT verify-kernel 1")
        });
        let v = verdict(&c, "verify-kernel");
        assert!(!v.ok, "{v:?}");
        assert!(
            v.detail.starts_with("exit Some(1), expected 0")
                && v.detail.contains(
                    ": raw tracepoints and a ring buffer: expected available, seen available"
                ),
            "{v:?}"
        );
    }

    #[test]
    fn markers_are_found_behind_kernel_noise() {
        let c = console("[   3.1] random: crng initRT-START 6.1.0\nRT-RESULT x 0\nRT-DONE\n");
        assert_eq!(c.uname.as_deref(), Some("6.1.0"));
        assert_eq!(c.runs["x"].code, Some(0));
        assert!(c.done);
    }

    #[test]
    fn check_times_run_from_marker_to_marker() {
        let lines = [
            (3.0, "RT-START 6.1.0".to_owned()),
            (16.5, "RT-OUT a {}".to_owned()),
            (16.5, "RT-RESULT a 0".to_owned()),
            (19.0, "RT-RESULT b 1".to_owned()),
        ];
        let s = check_seconds(&lines);
        assert_eq!(s["boot"], 3.0);
        assert_eq!(s["a"], 13.5);
        assert_eq!(s["b"], 2.5);
    }
}
