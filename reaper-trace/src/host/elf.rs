//! What the unwinder and the symbolizer read from a mapped ELF file: its
//! build id, its PT_LOAD segments (to turn file offsets into virtual
//! addresses and back) and, for the unwinder, its unwind sections. Only the
//! parts needed are read (`object::ReadCache`), so a 100 MB library costs
//! its headers and its `.eh_frame`, not 100 MB.

use std::{fs::File, ops::Range, sync::Arc};

use object::{Object, ObjectSection, ObjectSegment, ReadCache, SegmentFlags};

/// Unwind section data, shared between the per-process unwinders that map
/// the same file.
pub type Data = Arc<[u8]>;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file: {0}")]
    Parse(#[from] object::Error),
    /// The stacks unwound are this machine's processes': another
    /// architecture's file holds no code they run.
    #[error("not an ELF file of this machine's architecture ({expected:?})")]
    OtherArchitecture { expected: object::Architecture },
}

/// A PT_LOAD segment: where its bytes are in the file and in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub file_offset: u64,
    pub file_size: u64,
    pub vaddr: u64,
    pub executable: bool,
}

/// The sections framehop reads, as stated in the file (SVMAs).
#[derive(Clone, Debug, Default)]
pub struct UnwindSections {
    pub text: Option<Range<u64>>,
    pub got: Option<Range<u64>>,
    pub eh_frame: Option<(Range<u64>, Data)>,
    pub eh_frame_hdr: Option<(Range<u64>, Data)>,
    /// Where Go's functions are, in a Go binary: code with frame pointers
    /// and no CFI ([`super::gopclntab::text_range`]).
    pub go_text: Option<Range<u64>>,
}

/// What one ELF file tells us.
#[derive(Clone, Debug)]
pub struct ElfFacts {
    pub build_id: Option<Vec<u8>>,
    /// The file's size and modification time ([`crate::trace::stack::stamp_of`]).
    pub stamp: Option<(u64, i64)>,
    pub segments: Vec<Segment>,
    pub unwind: UnwindSections,
}

/// Reads the facts of an x86_64 ELF file; the unwind sections only when
/// asked (the symbolizer needs none).
pub fn read(file: File, unwind: bool) -> Result<ElfFacts, ElfError> {
    let stamp = file
        .metadata()
        .ok()
        .map(|m| crate::trace::stack::stamp_of(&m));
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache)?;
    let expected = if cfg!(target_arch = "aarch64") {
        object::Architecture::Aarch64
    } else {
        object::Architecture::X86_64
    };
    if elf.architecture() != expected {
        return Err(ElfError::OtherArchitecture { expected });
    }
    Ok(ElfFacts {
        // A malformed note section is no reason to lose the unwind info.
        build_id: elf.build_id().ok().flatten().map(<[u8]>::to_vec),
        stamp,
        segments: segments(&elf),
        unwind: if unwind {
            unwind_sections(&elf)
        } else {
            UnwindSections::default()
        },
    })
}

fn segments<'data, R: object::ReadRef<'data>>(elf: &object::File<'data, R>) -> Vec<Segment> {
    elf.segments()
        .filter_map(|segment| {
            let (file_offset, file_size) = segment.file_range();
            let executable = matches!(
                segment.flags(),
                SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0
            );
            (file_size > 0).then_some(Segment {
                file_offset,
                file_size,
                vaddr: segment.address(),
                executable,
            })
        })
        .collect()
}

fn unwind_sections<'data, R: object::ReadRef<'data>>(
    elf: &object::File<'data, R>,
) -> UnwindSections {
    let range = |name| {
        elf.section_by_name(name)
            .map(|s| s.address()..s.address().saturating_add(s.size()))
    };
    let with_data = |name| {
        let section = elf.section_by_name(name)?;
        let data: Data = section.data().ok()?.into();
        let start = section.address();
        Some((start..start.saturating_add(data.len() as u64), data))
    };
    UnwindSections {
        text: range(".text"),
        got: range(".got"),
        eh_frame: with_data(".eh_frame"),
        eh_frame_hdr: with_data(".eh_frame_hdr"),
        go_text: super::gopclntab::text_range(elf),
    }
}

/// The virtual address of a file offset, through the PT_LOAD segment whose
/// file bytes hold it (what `addr2line` and `nm` speak).
pub fn vaddr_of(segments: &[Segment], file_offset: u64) -> Option<u64> {
    segments
        .iter()
        .find(|s| file_offset >= s.file_offset && file_offset - s.file_offset < s.file_size)
        .map(|s| s.vaddr.wrapping_add(file_offset - s.file_offset))
}

/// The load bias (actual address − stated address) of a file from one of
/// its executable mappings, `start` in memory at file offset `offset`, as
/// samply's `compute_vma_bias` does. The mapping begins at the page that
/// holds the segment's first byte, or inside the segment when the loader
/// split it; either way the segment's first byte is at `start + (p_offset −
/// offset)`, and the difference wraps when the mapping starts inside.
pub fn load_bias(segments: &[Segment], start: u64, offset: u64) -> Option<u64> {
    const PAGE: u64 = 4096;
    let segment = segments.iter().find(|s| {
        s.executable
            && s.file_offset & !(PAGE - 1) <= offset
            && offset < s.file_offset.saturating_add(s.file_size)
    })?;
    let segment_start = start.wrapping_add(segment.file_offset).wrapping_sub(offset);
    Some(segment_start.wrapping_sub(segment.vaddr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(file_offset: u64, file_size: u64, vaddr: u64) -> Segment {
        Segment {
            file_offset,
            file_size,
            vaddr,
            executable: true,
        }
    }

    #[test]
    fn vaddr_of_finds_the_segment_holding_the_offset() {
        let segments = [
            Segment {
                executable: false,
                ..text(0, 0x5e0, 0)
            },
            text(0x1000, 0x1a5, 0x1000),
            Segment {
                executable: false,
                ..text(0x2df0, 0x230, 0x3df0)
            },
        ];
        assert_eq!(vaddr_of(&segments, 0x1139), Some(0x1139));
        assert_eq!(vaddr_of(&segments, 0x2e00), Some(0x3e00));
        // Past the file bytes of every segment: no address is made up.
        assert_eq!(vaddr_of(&segments, 0x11a5), None);
        assert_eq!(vaddr_of(&segments, 0x9000), None);
    }

    #[test]
    fn load_bias_of_a_pie_is_where_offset_zero_went() {
        // A PIE whose text segment starts at 0x1000 in the file and memory,
        // mapped at 0x5555_5555_5000 from offset 0x1000.
        let segments = [text(0x1000, 0x1a5, 0x1000)];
        assert_eq!(
            load_bias(&segments, 0x5555_5555_5000, 0x1000),
            Some(0x5555_5555_4000)
        );
    }

    #[test]
    fn load_bias_of_a_fixed_executable_is_zero() {
        let segments = [text(0x1000, 0x2000, 0x401000)];
        assert_eq!(load_bias(&segments, 0x401000, 0x1000), Some(0));
    }

    #[test]
    fn load_bias_when_the_segment_is_not_page_aligned_in_the_file() {
        // lld-style: text at file 0x5e0, memory 0x15e0; the mapping starts
        // at the page holding it.
        let segments = [text(0x5e0, 0x200, 0x15e0)];
        assert_eq!(
            load_bias(&segments, 0x7f00_0000_1000, 0),
            Some(0x7f00_0000_1000 + 0x5e0 - 0x15e0)
        );
    }

    #[test]
    fn load_bias_needs_an_executable_segment_holding_the_offset() {
        let segments = [text(0x1000, 0x1000, 0x1000)];
        assert_eq!(load_bias(&segments, 0x7f00_0000_0000, 0x3000), None);
        let data = [Segment {
            executable: false,
            ..text(0x1000, 0x1000, 0x1000)
        }];
        assert_eq!(load_bias(&data, 0x7f00_0000_1000, 0x1000), None);
    }
}
