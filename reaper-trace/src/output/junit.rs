//! JUnit XML that CI systems display. Hand-written: the format needs a
//! dozen lines and proper escaping, not a dependency.

use std::fmt::Write as _;

/// One test case: `failure` holds (message, details) when it failed.
#[derive(Default)]
pub struct Case {
    pub name: String,
    pub classname: String,
    pub failure: Option<(String, String)>,
    /// The source file and line to blame, as `file` and `line` attributes,
    /// which CI reporters (GitHub's JUnit annotators, GitLab) turn into an
    /// annotation on that line.
    pub location: Option<(String, u32)>,
}

/// Escapes text for XML attributes and content. Control characters, which
/// XML 1.0 cannot carry at all, are written as visible `\xNN` escapes.
pub fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' => out.push(c),
            // Not characters XML 1.0 can carry either.
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A `<testsuites>` document with one suite.
pub fn document(suite: &str, cases: &[Case]) -> String {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"{0}\" tests=\"{1}\" failures=\"{2}\">",
        escape_xml(suite),
        cases.len(),
        failures
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{0}\" tests=\"{1}\" failures=\"{2}\" errors=\"0\" skipped=\"0\">",
        escape_xml(suite),
        cases.len(),
        failures
    );
    for case in cases {
        let _ = write!(
            xml,
            "    <testcase name=\"{}\" classname=\"{}\"",
            escape_xml(&case.name),
            escape_xml(&case.classname)
        );
        if let Some((file, line)) = &case.location {
            let _ = write!(xml, " file=\"{}\" line=\"{line}\"", escape_xml(file));
        }
        match &case.failure {
            None => xml.push_str("/>\n"),
            Some((message, details)) => {
                let _ = writeln!(
                    xml,
                    ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                    escape_xml(message),
                    escape_xml(&case.classname),
                    escape_xml(details)
                );
            }
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_counts() {
        let xml = document(
            "s",
            &[
                Case {
                    name: "ok".into(),
                    classname: "c".into(),
                    failure: None,
                    location: None,
                },
                Case {
                    name: "bad <1>".into(),
                    classname: "c".into(),
                    failure: Some(("m & \"q\"".into(), "line\x1b[0m".into())),
                    location: Some(("/src/a&b.c".into(), 12)),
                },
            ],
        );
        assert!(xml.contains("tests=\"2\" failures=\"1\""));
        assert!(xml.contains("name=\"bad &lt;1&gt;\""));
        assert!(xml.contains("message=\"m &amp; &quot;q&quot;\""));
        assert!(xml.contains("line\\x1b[0m") && !xml.contains('\x1b'));
        assert_eq!(escape_xml("a\u{fffe}b"), "a\\xfffeb");
        assert!(xml.contains("classname=\"c\" file=\"/src/a&amp;b.c\" line=\"12\">"));
    }
}
