//! What a live run emits, each output a visitor of the one pipeline: the
//! event printer, the findings printer (notices as they come, the report at
//! the end), the event capture for `verify-kernel`, the metrics, `serve`'s
//! cgroup expiry, and the recording. A command picks which it has.

use std::{
    cell::RefCell,
    fmt::Write as _,
    io::{self, BufWriter, Write as _},
    rc::Rc,
};

use serde::Serialize;

use super::{
    Display, Interrupted, metrics::CgroupExpiry, metrics::LiveMetrics, recording::Recording,
};
use crate::{
    analysis::{Analyzer, Notice, Report},
    host::command,
    output::{events, report},
    pipeline::Visitor,
    trace::{clock::ClockRef, event::Event, totals::Totals},
};

/// Stdout, buffered once for every printer: lines leave in the order they
/// were written, whichever printer wrote them (a line longer than a buffer
/// of its own would otherwise pass the lines buffered before it).
#[derive(Clone)]
pub struct Stdout(Rc<RefCell<BufWriter<io::Stdout>>>);

impl Stdout {
    pub fn new() -> Stdout {
        Stdout(Rc::new(RefCell::new(BufWriter::new(io::stdout()))))
    }

    /// A closed stdout (a pager quit) must not stop the trace: errors are
    /// dropped while tracing, and the end's report is written with
    /// [`Stdout::write_checked`].
    fn write(&self, bytes: &[u8]) {
        let _ = self.0.borrow_mut().write_all(bytes);
    }

    fn write_checked(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = self.0.borrow_mut();
        out.write_all(bytes)?;
        out.flush()
    }

    fn flush(&self) {
        let _ = self.0.borrow_mut().flush();
    }
}

/// Every admitted event as a line on stdout (`live` without
/// `--findings-only`).
pub struct EventPrinter {
    json: bool,
    clock: ClockRef,
    out: Stdout,
    /// Reused for every line.
    line: String,
}

impl EventPrinter {
    pub fn new(json: bool, clock: ClockRef, out: Stdout) -> EventPrinter {
        EventPrinter {
            json,
            clock,
            out,
            line: String::with_capacity(256),
        }
    }
}

impl Visitor for EventPrinter {
    fn event(&mut self, event: &Event, analysis: &Analyzer) -> io::Result<()> {
        self.line.clear();
        let cgroup = analysis.cgroup_name(event.cgroup_id);
        if self.json {
            self.line.push_str(&events::json_line(event, cgroup));
        } else {
            events::write_text_line(&mut self.line, event, &self.clock, cgroup);
        }
        self.line.push('\n');
        self.out.write(self.line.as_bytes());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush();
        Ok(())
    }
}

/// Findings on stdout: each notice as it comes (unless only the report is
/// wanted), and the report with the totals at the end.
pub struct FindingsPrinter {
    json: bool,
    /// Notices too, not only the report.
    notices: bool,
    out: Stdout,
}

impl FindingsPrinter {
    pub fn new(json: bool, notices: bool, out: Stdout) -> FindingsPrinter {
        FindingsPrinter { json, notices, out }
    }

    /// The report, the totals, and what became of the command.
    pub fn print_end(
        &mut self,
        report: &Report,
        totals: &Totals,
        command_status: Option<i32>,
        interrupted: Option<&(Interrupted, std::time::Duration)>,
    ) -> anyhow::Result<()> {
        let rendered = if self.json {
            report::json(report)
        } else {
            report::text(report)
        };
        let mut out = String::new();
        writeln!(out, "{}", rendered.trim_end())?;
        if self.json {
            let line = TotalsLine {
                totals,
                kind: "totals",
                command_exit_code: command_status.map(command::exit_code),
                interrupted_by: interrupted.map(|(stop, _)| stop.signal_name()),
                killed_after_drain_timeout: interrupted.map(|(stop, _)| stop.killed),
            };
            // Through a `Value`, whose keys are sorted: the line's order since
            // it was first printed.
            writeln!(out, "{}", serde_json::to_value(&line)?)?;
        } else {
            write!(out, "{}", totals.text())?;
            if let Some(status) = command_status {
                writeln!(out, "command exit code: {}", command::exit_code(status))?;
            }
            if let Some((stop, drain_timeout)) = interrupted {
                writeln!(out, "{}", stop.text(*drain_timeout))?;
            }
        }
        self.out.write_checked(out.as_bytes())?;
        Ok(())
    }
}

impl Visitor for FindingsPrinter {
    fn notice(&mut self, notice: &Notice) -> io::Result<()> {
        if !self.notices {
            return Ok(());
        }
        let mut line = if self.json {
            report::notice_json(notice)
        } else {
            report::notice_text(notice)
        };
        line.push('\n');
        self.out.write(line.as_bytes());
        Ok(())
    }

    fn names_frames(&self) -> bool {
        self.notices
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush();
        Ok(())
    }
}

/// The JSON line that ends a run: the totals, and what became of the
/// command.
#[derive(Serialize)]
struct TotalsLine<'a> {
    #[serde(flatten)]
    totals: &'a Totals,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    killed_after_drain_timeout: Option<usize>,
}

/// Every admitted event, kept for the caller (`verify-kernel`).
#[derive(Default)]
pub struct Capture(pub Vec<Event>);

impl Visitor for Capture {
    fn event(&mut self, event: &Event, _: &Analyzer) -> io::Result<()> {
        self.0.push(event.clone());
        Ok(())
    }
}

/// The outputs of one live run, in the order each hears of a thing.
#[derive(Default)]
pub struct LiveOutputs {
    pub recording: Recording,
    pub capture: Option<Capture>,
    pub events: Option<EventPrinter>,
    pub findings: Option<FindingsPrinter>,
    pub metrics: Option<LiveMetrics>,
    pub expiry: Option<CgroupExpiry>,
}

impl LiveOutputs {
    /// The printers `display` asks for.
    pub fn printers(&mut self, display: Display, json: bool, clock: ClockRef) {
        let out = Stdout::new();
        if display == Display::Everything {
            self.events = Some(EventPrinter::new(json, clock, out.clone()));
        }
        if display != Display::Silent {
            let notices = matches!(display, Display::Everything | Display::Findings);
            self.findings = Some(FindingsPrinter::new(json, notices, out));
        }
    }

    /// Each output, in the order each hears of a thing: what the
    /// pipeline feeds.
    pub fn all(&mut self) -> [&mut dyn Visitor; 6] {
        [
            &mut self.recording,
            &mut self.capture,
            &mut self.events,
            &mut self.findings,
            &mut self.metrics,
            &mut self.expiry,
        ]
    }
}
