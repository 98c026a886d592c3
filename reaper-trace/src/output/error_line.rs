//! An error and its causes as one line, each said once.
//!
//! Many errors put their source in their own message ("writing recording
//! x: No space left on device (os error 28); ...") and also return it as
//! their `source()`: printing the chain as anyhow's `{:#}` does would say
//! the OS error twice. A cause whose text the line already holds adds
//! nothing and is left out.

use std::error::Error;

/// The chain (outermost first) joined with `: `, every cause whose text is
/// already in the line dropped, newlines made ` | `.
pub fn one_line<'a>(chain: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut line = String::new();
    for cause in chain {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Says its source in its own message, and returns it too.
    #[derive(Debug, thiserror::Error)]
    #[error("writing recording x.rtrace: {source}; what was written stays readable")]
    struct Write {
        source: std::io::Error,
    }

    fn enospc() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENOSPC)
    }

    #[test]
    fn an_os_error_in_the_message_and_the_source_is_said_once() {
        let error = anyhow::Error::new(Write { source: enospc() });
        assert_eq!(
            format!("{error:#}").matches("os error 28").count(),
            2,
            "what anyhow alone prints"
        );
        let line = one_line(error.chain());
        assert_eq!(line.matches("os error 28").count(), 1, "{line}");
        assert_eq!(
            line,
            format!(
                "writing recording x.rtrace: {}; what was written stays readable",
                enospc()
            )
        );
    }

    #[test]
    fn context_and_sources_not_in_the_message_are_kept() {
        let error = anyhow::Error::new(enospc()).context("saving the report");
        assert_eq!(
            one_line(error.chain()),
            format!("saving the report: {}", enospc())
        );
        let nested = anyhow::Error::new(Write { source: enospc() }).context("record");
        assert_eq!(
            one_line(nested.chain())
                .matches("No space left on device")
                .count(),
            1
        );
    }

    #[test]
    fn newlines_do_not_break_the_line() {
        let error = anyhow::anyhow!("first\nsecond");
        assert_eq!(one_line(error.chain()), "first | second");
    }
}
