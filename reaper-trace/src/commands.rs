//! What each subcommand does: run the tracer or read a recording, then
//! print through `output` and choose the exit status. Every failure ends as
//! one line on stderr and exit status 2.

use std::{
    collections::BTreeMap,
    io::{IsTerminal as _, Write as _},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use reaper_trace::{
    analysis::{
        FindingKind, Report,
        snapshot::{self, CgroupNow},
    },
    cgroup::{Cgroup, fs::CgroupFs},
    host::{command, new_file, symbolize::Symbolizer},
    live::{self, Display, Emit, LiveOptions, TraceOptions},
    output::{
        check,
        metrics::MetricsVisitor,
        report,
        stacks::{name_live_threads, symbolize_finding},
        timeline::{self, TimelineFormat},
        zombies,
    },
    pipeline::replay::{self, ReplayOptions},
    trace::stack::Stack,
    verify::render,
};

use serde::Serialize;

use crate::{
    cli::{CheckArgs, CheckFormat, Format},
    fail,
};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the runtime: {e}"))
}

pub fn run_live(options: LiveOptions) -> ExitCode {
    let outcome = runtime().and_then(|rt| rt.block_on(live::run(options)));
    let o = match outcome {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    // The report is out; the recording's failure is the run's error.
    if let Some(e) = o.recording_error {
        return fail(&e.into());
    }
    let code = match o.interrupted {
        Some(stop) => stop.exit_code(),
        // Stopping a trace without a command with a signal is its end.
        None => o.command_status.map(command::exit_code).unwrap_or(0),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// The user to run the command as: the one who invoked sudo, unless
/// `--as-root` (or not under sudo). A half or invalid pair of sudo's
/// variables is an error, never a reason to run the command as root.
pub fn sudo_user(as_root: bool) -> anyhow::Result<Option<(u32, u32)>> {
    if as_root {
        return Ok(None);
    }
    Ok(command::run_as_from_sudo(
        std::env::var_os("SUDO_UID").as_deref(),
        std::env::var_os("SUDO_GID").as_deref(),
    )?)
}

pub fn run_check(args: CheckArgs) -> ExitCode {
    let CheckArgs {
        threshold,
        format,
        junit,
        output,
        force,
        drain_timeout,
        as_root,
        ringbuf_size,
        fail_on: fail_on_also,
        metrics_file,
        no_stacks,
        command,
    } = args;
    let mut fail_on = check::FailOn::default();
    for also in fail_on_also {
        match FindingKind::try_from(also) {
            Ok(kind) => fail_on.kinds.push(kind),
            Err(_) => fail_on.uncertain = true,
        }
    }
    let drain_timeout = Duration::from_nanos(drain_timeout);
    let run_as = match sudo_user(as_root) {
        Ok(run_as) => run_as,
        Err(e) => return fail(&e),
    };
    let shown = reaper_trace::trace::escape::escape_bytes(
        command.join(std::ffi::OsStr::new(" ")).as_encoded_bytes(),
    );
    let options = LiveOptions {
        trace: TraceOptions {
            threshold_ns: threshold,
            command,
            ringbuf_bytes: ringbuf_size,
            drain_timeout,
            run_as,
            stacks: no_stacks.then_some(false),
            ..TraceOptions::default()
        },
        emit: Emit {
            json: format == CheckFormat::Json,
            display: Display::Silent,
            record: output,
            record_force: force,
            metrics: metrics_file.is_some(),
            ..Emit::default()
        },
    };
    let outcome = match runtime().and_then(|rt| rt.block_on(live::run(options))) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    if let (Some(path), Some(metrics)) = (&metrics_file, &outcome.metrics)
        && let Err(e) = write_atomically(path, &metrics.render())
    {
        return fail(&e);
    }
    // Stopped by a signal (forwarded to the command): the shell's status
    // for it, whatever was found so far.
    let status = match outcome.interrupted {
        Some(stop) => stop.exit_code().clamp(0, 255) as u8,
        None => check::exit_status(outcome.command_status, &outcome.report, &fail_on),
    };
    if let Some(path) = &junit
        && let Err(e) = std::fs::write(
            path,
            check::junit(
                &shown,
                outcome.command_status,
                &outcome.report,
                &fail_on,
                &std::env::current_dir()
                    .map(|d| d.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
        )
    {
        return fail(&anyhow::anyhow!("writing JUnit to {}: {e}", path.display()));
    }
    print_check(format, &outcome, status, &fail_on, drain_timeout);
    // The report is out; the recording's failure is the run's error.
    if let Some(e) = outcome.recording_error {
        return fail(&e.into());
    }
    ExitCode::from(status)
}

/// `check`'s verdict on stdout: the report and what it decided, as JSON
/// or text.
fn print_check(
    format: CheckFormat,
    outcome: &live::Outcome,
    status: u8,
    fail_on: &check::FailOn,
    drain_timeout: Duration,
) {
    match format {
        CheckFormat::Json => {
            let json = CheckJson {
                report: &outcome.report,
                kind: "report",
                command_exit_code: outcome.command_status.map(command::exit_code),
                exit_status: status,
                interrupted_by: outcome.interrupted.map(|stop| stop.signal_name()),
                killed_after_drain_timeout: outcome.interrupted.map(|stop| stop.killed),
            };
            println!("{}", sorted_json(&json));
        }
        CheckFormat::Text => {
            println!("{}", report::text(&outcome.report).trim_end());
            let verdict = match (status, &outcome.interrupted) {
                (_, Some(stop)) => format!(
                    "{}; {} finding(s) until then",
                    stop.text(drain_timeout),
                    check::failures(&outcome.report, fail_on).len()
                ),
                (check::exit::CLEAN, None) => {
                    "clean: the command succeeded and every child was reaped in time".to_owned()
                }
                (check::exit::FINDINGS, None) => format!(
                    "FAILED: {} finding(s)",
                    check::failures(&outcome.report, fail_on).len()
                ),
                _ => format!(
                    "the command failed (exit code {}); no findings",
                    outcome.command_status.map(command::exit_code).unwrap_or(-1)
                ),
            };
            println!("reaper-trace check: {verdict} (exit {status})");
        }
    }
}

pub fn run_verify(format: CheckFormat, junit: Option<PathBuf>) -> ExitCode {
    let rows = match runtime().and_then(|rt| rt.block_on(reaper_trace::verify::run())) {
        Ok(rows) => rows,
        Err(e) => return fail(&e),
    };
    let ok = rows.iter().all(|r| r.ok);
    if let Some(path) = &junit
        && let Err(e) = std::fs::write(path, render::junit(&rows))
    {
        return fail(&anyhow::anyhow!("writing JUnit to {}: {e}", path.display()));
    }
    match format {
        CheckFormat::Json => println!("{}", render::json(&rows)),
        CheckFormat::Text => print!("{}", render::table(&rows)),
    }
    ExitCode::from(if ok { 0 } else { 1 })
}

pub fn run_serve(
    options: LiveOptions,
    listen: std::net::SocketAddr,
    web_config: Option<PathBuf>,
) -> ExitCode {
    match runtime().and_then(|rt| {
        rt.block_on(reaper_trace::serve::run(
            options,
            listen,
            web_config.as_deref(),
        ))
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Writes `text` to `path` through a temporary file in the same directory
/// and a rename: a reader (node_exporter's textfile collector) sees the old
/// file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    // Readable by others (0644 before the umask): node_exporter often runs
    // as another user.
    let result = new_file::create_beside(path, 0o644).and_then(|(temp, mut file)| {
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| new_file::rename_over(&temp, path))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&temp);
            })
    });
    result.map_err(|e| anyhow::anyhow!("writing metrics to {}: {e}", path.display()))
}

pub fn run_report(
    path: &Path,
    format: Format,
    options: ReplayOptions,
    metrics_file: Option<&Path>,
) -> ExitCode {
    let name = path.display();
    let input = match std::fs::File::open(path) {
        Ok(f) => std::io::BufReader::with_capacity(1 << 20, f),
        Err(e) => return fail(&anyhow::anyhow!("{name}: {e}")),
    };
    let timeline = match format {
        Format::Perfetto => Some(TimelineFormat::Perfetto),
        Format::PerfettoJson => Some(TimelineFormat::PerfettoJson),
        Format::Text | Format::Json => None,
    };
    if let Some(timeline_format) = timeline {
        if metrics_file.is_some() {
            return fail(&anyhow::anyhow!(
                "--metrics-file goes with the text or JSON report, not a Perfetto timeline: run report twice"
            ));
        }
        let stdout = std::io::stdout().lock();
        // Binary on a terminal is garbage at best.
        if timeline_format == TimelineFormat::Perfetto && stdout.is_terminal() {
            return fail(&anyhow::anyhow!(
                "--format perfetto writes a binary trace: redirect it to a file (> trace.pftrace)"
            ));
        }
        let out = std::io::BufWriter::with_capacity(1 << 16, stdout);
        let mut symbolizer = Symbolizer::new();
        let mut names = |stack: &Stack| symbolizer.symbolize_stack(stack);
        return match timeline::export_with_stacks(input, out, &options, timeline_format, &mut names)
        {
            Ok(truncated) => {
                warn_truncated(path, truncated);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&anyhow::anyhow!("{name}: {e}")),
        };
    }
    // Metrics only when asked for: they cost a lookup per exit and reap.
    let mut visitor = metrics_file.map(|_| MetricsVisitor::default());
    let replayed = match &mut visitor {
        Some(visitor) => replay::replay_with(input, &options, visitor),
        None => replay::replay(input, &options),
    };
    let mut replay = match replayed {
        Ok(r) => r,
        Err(e) => return fail(&anyhow::anyhow!("{name}: {e}")),
    };
    // Names for the recorded frames, from the modules on this machine (when
    // their build ids match the recorded ones).
    let mut symbolizer = Symbolizer::new();
    for finding in replay
        .report
        .findings
        .iter_mut()
        .chain(&mut replay.report.uncertain)
    {
        symbolize_finding(&mut symbolizer, finding);
    }
    if let (Some(metrics_file), Some(visitor)) = (metrics_file, &mut visitor) {
        let lost = replay
            .trailer
            .as_ref()
            .map(|t| t.lost_by_kind.clone())
            .unwrap_or_default();
        visitor.finish(&replay.report, &lost);
        if let Err(e) = write_atomically(metrics_file, &visitor.metrics.render()) {
            return fail(&e);
        }
    }
    warn_truncated(path, replay.truncated_at);
    let rendered = match format {
        Format::Json => {
            let json = ReportJson {
                report: &replay.report,
                kind: "report",
                truncated_at: replay.truncated_at,
                records: replay.records,
                kernel_release: &replay.meta.kernel_release,
                hostname: &replay.meta.hostname,
            };
            sorted_json(&json)
        }
        _ => report::text(&replay.report),
    };
    println!("{}", rendered.trim_end());
    ExitCode::SUCCESS
}

/// `zombies`: a snapshot of /proc (of `parents`' zombies only, unless
/// empty), grouped, explained and printed; exit 1 when a zombie is older
/// than `threshold_ns`.
pub fn run_zombies(json: bool, threshold_ns: u64, parents: &[u32]) -> ExitCode {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return fail(&anyhow::anyhow!(
            "zombies needs root: the signal masks, file descriptors and kernel stacks of other users' processes are not readable otherwise; run it with sudo"
        ));
    }
    let mut scan = reaper_trace::host::zombies::scan(parents);
    let mut symbolizer = Symbolizer::new();
    for parent in &mut scan.parents {
        if let Some(probe) = &mut parent.probe {
            name_live_threads(&mut symbolizer, parent.pid, &mut probe.threads);
        }
    }
    let fs = CgroupFs::discover();
    let mut cgroups = BTreeMap::new();
    for z in &scan.zombies {
        let Some(path) = &z.cgroup else { continue };
        if cgroups.contains_key(path) {
            continue;
        }
        let id = fs
            .locate(path)
            .ok()
            .and_then(|(dir, _)| std::fs::metadata(dir).ok())
            .map_or(0, |m| std::os::unix::fs::MetadataExt::ino(&m));
        // A zombie's v1 paths read `/` (the kernel moves an exiting task
        // out of its v1 cgroups, though the pids controller still counts
        // it): then the v2 path, where runtimes and systemd put the same
        // cgroup in the v1 pids hierarchy too.
        let v1 = z
            .pids_cgroup
            .as_deref()
            .filter(|p| *p != "/")
            .unwrap_or(path);
        let pids = fs.pids_now(Some(path), Some(v1));
        cgroups.insert(
            path.clone(),
            CgroupNow {
                cgroup: Cgroup::new(id, path),
                pids,
            },
        );
    }
    let snapshot = snapshot::build(&scan, threshold_ns, &cgroups);
    let rendered = if json {
        zombies::json(&snapshot)
    } else {
        zombies::text(&snapshot)
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{}", rendered.trim_end()).and_then(|()| stdout.flush()) {
        return fail(&anyhow::anyhow!("writing the snapshot: {e}"));
    }
    ExitCode::from(u8::from(snapshot.over_threshold > 0))
}

/// `check --format json`: the report, the command's end and the status
/// chosen.
#[derive(Serialize)]
struct CheckJson<'a> {
    #[serde(flatten)]
    report: &'a Report,
    #[serde(rename = "type")]
    kind: &'static str,
    command_exit_code: Option<i32>,
    exit_status: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    killed_after_drain_timeout: Option<usize>,
}

/// `report --format json`: the report, and where the recording came from.
#[derive(Serialize)]
struct ReportJson<'a> {
    #[serde(flatten)]
    report: &'a Report,
    #[serde(rename = "type")]
    kind: &'static str,
    truncated_at: Option<u64>,
    records: u64,
    kernel_release: &'a str,
    hostname: &'a str,
}

/// One JSON object, through a `Value` whose keys are sorted: the order
/// these objects have always had.
fn sorted_json(shape: &impl Serialize) -> String {
    serde_json::to_value(shape).unwrap_or_default().to_string()
}

pub fn warn_truncated(path: &std::path::Path, at: Option<u64>) {
    if let Some(at) = at {
        eprintln!(
            "reaper-trace: warning: {} is truncated at byte {at} (no trailer: the recorder did not stop cleanly); everything before it was read",
            path.display()
        );
    }
}
