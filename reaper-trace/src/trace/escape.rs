//! Escaping text that comes from the traced system (comm, filenames, argv)
//! before it reaches a terminal: a process can name itself with escape
//! sequences that would rewrite the operator's screen.

/// Writes `bytes` as text with every control character, invalid UTF-8 byte
/// and backslash escaped (`\x1b`, `\xff`, `\\`), without allocating.
pub fn write_escaped(out: &mut impl std::fmt::Write, bytes: &[u8]) -> std::fmt::Result {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        // Runs of plain text go out whole; only what needs escaping is split.
        let mut plain_from = 0;
        for (at, c) in valid.char_indices() {
            if c == '\\' || c.is_control() {
                out.write_str(&valid[plain_from..at])?;
                plain_from = at + c.len_utf8();
                match c {
                    '\\' => out.write_str("\\\\")?,
                    c if (c as u32) <= 0xff => write!(out, "\\x{:02x}", c as u32)?,
                    c => write!(out, "\\u{{{:x}}}", c as u32)?,
                }
            }
        }
        out.write_str(&valid[plain_from..])?;
        for b in chunk.invalid() {
            write!(out, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

/// Returns `bytes` as escaped text (see [`write_escaped`]).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let _ = write_escaped(&mut out, bytes);
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
