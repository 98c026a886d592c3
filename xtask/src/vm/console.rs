//! Reading a console: the markers the checks print, parsed into each
//! command's run.

use std::collections::BTreeMap;

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
pub(super) fn marker<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
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
pub(super) fn check_seconds(lines: &[(f64, String)]) -> BTreeMap<String, f64> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_behind_kernel_noise() {
        let c = parse_console(
            "[   3.1] random: crng initRT-START 6.1.0\nRT-RESULT x 0\nRT-DONE\n".lines(),
        );
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
