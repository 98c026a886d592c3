//! Task names as the kernel stores them: 16 bytes, NUL padded, any bytes.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::trace::escape::{escape_bytes, write_escaped};

/// A task's `comm`: kept as raw bytes (no allocation per event); rendered
/// escaped, because a process can name itself with terminal escapes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Comm(pub [u8; 16]);

impl Comm {
    /// The bytes up to the first NUL.
    pub fn as_bytes(&self) -> &[u8] {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        &self.0[..len]
    }

    pub fn from_str_lossy(s: &str) -> Comm {
        let mut out = [0u8; 16];
        let n = s.len().min(15);
        out[..n].copy_from_slice(&s.as_bytes()[..n]);
        Comm(out)
    }
}

impl fmt::Display for Comm {
    /// Escaped for a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.width().is_some() {
            // Padding needs the final text: build it.
            return f.pad(&escape_bytes(self.as_bytes()));
        }
        write_escaped(f, self.as_bytes())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl Serialize for Comm {
    /// JSON strings carry the name as text; serde_json escapes control
    /// characters itself.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}
