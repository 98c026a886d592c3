//! Escaping text that comes from the traced system (comm, filenames, argv)
//! before it reaches a terminal: a process can name itself with escape
//! sequences that would rewrite the operator's screen.

/// Returns `bytes` as text with every control character, invalid UTF-8 byte
/// and backslash escaped (`\x1b`, `\xff`, `\\`).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let code = c as u32;
                    if code <= 0xff {
                        out.push_str(&format!("\\x{code:02x}"));
                    } else {
                        out.push_str(&format!("\\u{{{code:x}}}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `escape_bytes` for text that is already a `str`.
pub fn escape(text: &str) -> String {
    escape_bytes(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_sequences_and_bad_bytes() {
        assert_eq!(escape_bytes(b"\x1b[2Jevil"), "\\x1b[2Jevil");
        assert_eq!(escape_bytes(b"a\nb\tc"), "a\\x0ab\\x09c");
        assert_eq!(escape_bytes(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape_bytes(b"\xff\xfeok"), "\\xff\\xfeok");
        // C1 controls are escaped too: some terminals act on them.
        assert_eq!(escape("\u{9b}31m"), "\\x9b31m");
        assert_eq!(escape("caf\u{e9}"), "caf\u{e9}");
    }
}
