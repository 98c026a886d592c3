//! Running the checks: one VM per kernel under qemu, or the host under sh,
//! each read off its console until it ends or times out.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Instant,
};

use anyhow::Context as _;

use super::{TIMEOUT, checks_script, console::marker, kernels::Kernel, table::Row};
use crate::{dist::StaticBins, platform::Platform};

/// What a VM's console (or the host's script) printed, line by line with
/// the seconds since it started, and how it ended.
pub(super) struct Transcript {
    pub(super) lines: Vec<(f64, String)>,
    pub(super) timed_out: bool,
    pub(super) status: Option<ExitStatus>,
    pub(super) seconds: f64,
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

pub(super) fn boot(
    platform: &Platform,
    k: &(Kernel, PathBuf),
    initrd: &Path,
    dir: &Path,
) -> anyhow::Result<Row> {
    let (kernel, vmlinuz) = k;
    let mut qemu = Command::new(platform.qemu);
    // KVM is not usable on these machines (qemu picks it and hangs): TCG.
    qemu.args(platform.machine)
        .args(["-accel", platform.accel])
        .args(["-m", "2G", "-smp", "2", "-kernel"])
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!("console={} panic=-1 quiet", platform.console))
        // A panic (init died) reboots, and -no-reboot makes that an exit.
        .args(["-nographic", "-no-reboot"]);
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
pub(super) fn host(bins: &StaticBins, compat: &Path, dir: &Path) -> anyhow::Result<Row> {
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
        .env("C32", abs(compat)?)
        .env("TMP", &tmp);
    let log = dir.join("host.log");
    eprintln!("xtask: running the checks on the host ({release})");
    let t = run_console(sh, &log, "host")?;
    Ok(Row::new(format!("host {release}"), None, &release, &t, log))
}
