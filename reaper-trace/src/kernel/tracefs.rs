//! tracefs: making sure it is mounted, and reading the field layout of
//! classic tracepoints from their `format` files, so that no offset from one
//! kernel is hard-coded.

use std::{
    collections::HashMap,
    ffi::CString,
    io,
    path::{Path, PathBuf},
};

/// Where tracefs is mounted on current kernels.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Errors reading tracepoint layouts.
#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    /// tracefs is not mounted and mounting it failed.
    #[error(
        "tracefs is not mounted at {TRACEFS} and mounting it failed ({0}); mount it with `mount -t tracefs tracefs {TRACEFS}` as root"
    )]
    Mount(io::Error),
    /// The kernel has no such tracepoint.
    #[error("tracepoint {0} does not exist on this kernel (no {1})")]
    MissingTracepoint(String, PathBuf),
    /// A field the probe reads is absent from the tracepoint.
    #[error("tracepoint {tracepoint} has no field {field}")]
    MissingField { tracepoint: String, field: String },
}

/// Mounts tracefs at its usual place unless it is already there.
pub fn ensure_mounted() -> Result<(), TracefsError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    let cstr = |s: &str| CString::new(s).expect("no NUL in constant");
    let (source, target, fstype) = (cstr("tracefs"), cstr(TRACEFS), cstr("tracefs"));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(TracefsError::Mount(io::Error::last_os_error()));
    }
    Ok(())
}

/// Field name → (offset, size) of one tracepoint.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Format {
    pub name: String,
    fields: HashMap<String, (u32, u32)>,
}

impl Format {
    /// Parses the text of a tracefs `format` file.
    pub fn parse(name: &str, text: &str) -> Format {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            for part in line.trim().split(';') {
                let part = part.trim();
                if let Some(d) = part.strip_prefix("field:") {
                    decl = Some(d);
                } else if let Some(o) = part.strip_prefix("offset:") {
                    offset = o.parse::<u32>().ok();
                } else if let Some(s) = part.strip_prefix("size:") {
                    size = s.parse::<u32>().ok();
                }
            }
            if let (Some(decl), Some(offset), Some(size)) = (decl, offset, size)
                && let Some(field) = field_name(decl)
            {
                fields.insert(field.to_owned(), (offset, size));
            }
        }
        Format {
            name: name.to_owned(),
            fields,
        }
    }

    /// Reads `events/<category>/<name>/format`.
    pub fn read(category: &str, name: &str) -> Result<Format, TracefsError> {
        let path = Path::new(TRACEFS)
            .join("events")
            .join(category)
            .join(name)
            .join("format");
        let full = format!("{category}/{name}");
        let text = std::fs::read_to_string(&path)
            .map_err(|_| TracefsError::MissingTracepoint(full.clone(), path))?;
        Ok(Format::parse(&full, &text))
    }

    pub fn offset(&self, field: &str) -> Result<u32, TracefsError> {
        self.fields
            .get(field)
            .map(|&(offset, _)| offset)
            .ok_or_else(|| TracefsError::MissingField {
                tracepoint: self.name.clone(),
                field: field.to_owned(),
            })
    }
}

/// The declared name in a C declaration such as `char comm[16]` or
/// `__data_loc char[] filename`: the last identifier outside brackets.
fn field_name(decl: &str) -> Option<&str> {
    let without_array = match decl.rfind('[') {
        Some(open) if decl.trim_end().ends_with(']') => &decl[..open],
        _ => decl,
    };
    without_array
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: &str = "name: sched_process_exec\nID: 313\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\
\tfield:char comm[16];\toffset:20;\tsize:16;\tsigned:0;\n\
\tfield:const struct sigaction * act;\toffset:24;\tsize:8;\tsigned:0;\n\
\nprint fmt: \"filename=%s\", __get_str(filename)\n";

    #[test]
    fn reads_offsets_of_every_field_form() {
        let f = Format::parse("sched/sched_process_exec", EXEC);
        assert_eq!(f.offset("common_type").unwrap(), 0);
        assert_eq!(f.offset("filename").unwrap(), 8);
        assert_eq!(f.offset("pid").unwrap(), 12);
        assert_eq!(f.offset("comm").unwrap(), 20);
        assert_eq!(f.offset("act").unwrap(), 24);
    }

    #[test]
    fn names_a_missing_field() {
        let f = Format::parse("sched/sched_process_exec", EXEC);
        let err = f.offset("old_pid").unwrap_err().to_string();
        assert_eq!(
            err,
            "tracepoint sched/sched_process_exec has no field old_pid"
        );
    }
}
