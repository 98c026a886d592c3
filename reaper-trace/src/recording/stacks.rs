//! User stacks in a recording: each module is written once (a `MODULE`
//! record with an id), and stacks name modules by id (`STACK`), so a stack
//! costs a dozen bytes per frame.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;

use super::user_record::{self, RecordedStack};
use crate::trace::stack::{Frame, Module, Stack};

/// The writer's side: ids for the modules already written.
#[derive(Debug, Default)]
pub struct ModuleIds {
    ids: HashMap<Arc<Module>, u32>,
}

impl ModuleIds {
    /// The records for `stack`, taken at `time_ns` in `tgid`/`tid`: a
    /// `MODULE` record for each module not written before, then the `STACK`.
    pub fn records(
        &mut self,
        time_ns: u64,
        (tgid, tid, owner): (u32, u32, u32),
        stack: &Stack,
    ) -> Vec<Bytes> {
        let (mut out, recorded) = self.recorded(time_ns, (tgid, tid, owner), stack);
        out.push(user_record::stack(&recorded));
        out
    }

    /// The records for the user stack of thread `tid` of probed parent
    /// `tgid`: `MODULE` records as for [`ModuleIds::records`], then the
    /// `THREAD_STACK`, to precede the `PROBE` record.
    pub fn thread_records(
        &mut self,
        time_ns: u64,
        (tgid, tid): (u32, u32),
        stack: &Stack,
    ) -> Vec<Bytes> {
        let (mut out, recorded) = self.recorded(time_ns, (tgid, tid, 0), stack);
        out.push(user_record::thread_stack(&recorded));
        out
    }

    /// The `MODULE` records of the modules of `stack` not written before,
    /// and the stack with modules named by id.
    fn recorded(
        &mut self,
        time_ns: u64,
        (tgid, tid, owner): (u32, u32, u32),
        stack: &Stack,
    ) -> (Vec<Bytes>, RecordedStack) {
        let mut out = Vec::new();
        let mut frames = Vec::with_capacity(stack.frames.len());
        for frame in &stack.frames {
            let next = self.ids.len() as u32;
            let id = *self.ids.entry(frame.module.clone()).or_insert_with(|| {
                out.push(user_record::module(time_ns, next, &frame.module));
                next
            });
            frames.push((id, frame.file_offset));
        }
        let recorded = RecordedStack {
            time_ns,
            tgid,
            tid,
            owner,
            truncated: stack.truncated,
            frames,
        };
        (out, recorded)
    }
}

/// The most bytes of module paths and build ids a replay keeps: far more
/// than any trace's modules, and a bound on what a crafted file that
/// names a new module in every record can make `report` hold.
pub const MAX_MODULE_BYTES: usize = 16 << 20;

/// The reader's side: the modules read so far, by id.
#[derive(Debug, Default)]
pub struct ModuleTable {
    modules: HashMap<u32, Arc<Module>>,
    /// Path and build id bytes held, up to [`MAX_MODULE_BYTES`].
    bytes: usize,
}

impl ModuleTable {
    /// Keeps `module` as `id`, unless the table holds its fill already: a
    /// frame in a module not kept ends its stack (as a damaged file's).
    pub fn insert(&mut self, id: u32, module: Module) {
        let size = module.path.len() + module.build_id.as_ref().map_or(0, Vec::len);
        if self.bytes + size > MAX_MODULE_BYTES {
            return;
        }
        self.bytes += size;
        if let Some(old) = self.modules.insert(id, Arc::new(module)) {
            self.bytes -= old.path.len() + old.build_id.as_ref().map_or(0, Vec::len);
        }
    }

    /// The stack a `STACK` record describes. A frame naming a module no
    /// `MODULE` record gave (a damaged file) ends the stack there.
    pub fn stack(&self, recorded: &RecordedStack) -> Stack {
        let mut stack = Stack {
            frames: Vec::with_capacity(recorded.frames.len()),
            truncated: recorded.truncated,
        };
        for &(id, file_offset) in &recorded.frames {
            let Some(module) = self.modules.get(&id) else {
                stack.truncated = true;
                break;
            };
            stack.frames.push(Frame {
                module: module.clone(),
                file_offset,
            });
        }
        stack
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::user_record::{UserRecord, parse};

    fn module(path: &str) -> Arc<Module> {
        Arc::new(Module {
            path: path.into(),
            build_id: Some(path.as_bytes().to_vec()),
            stamp: None,
        })
    }

    /// A stack of (module, file offset) frames.
    fn stack_of(frames: &[(&Arc<Module>, u64)], truncated: bool) -> Stack {
        Stack {
            frames: frames
                .iter()
                .map(|(m, o)| Frame {
                    module: (*m).clone(),
                    file_offset: *o,
                })
                .collect(),
            truncated,
        }
    }

    #[test]
    fn modules_are_written_once_and_stacks_read_back_the_same() {
        let (app, libc) = (module("/app"), module("/libc.so.6"));
        let stack = |frames: &[(&Arc<Module>, u64)]| stack_of(frames, false);
        let first = stack(&[(&libc, 0x10), (&app, 0x20)]);
        let second = stack(&[(&libc, 0x30), (&app, 0x40), (&app, 0x50)]);
        let mut ids = ModuleIds::default();
        let mut written = ids.records(1, (10, 11, 1), &first);
        assert_eq!(written.len(), 3, "two modules, then the stack");
        let again = ids.records(2, (10, 12, 2), &second);
        assert_eq!(again.len(), 1, "both modules already written");
        written.extend(again);

        let mut table = ModuleTable::default();
        let mut read = Vec::new();
        for record in &written {
            match parse(record) {
                Some(UserRecord::Module { id, module }) => table.insert(id, module),
                Some(UserRecord::Stack(s)) => read.push((s.tid, s.owner, table.stack(&s))),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(read, vec![(11, 1, first), (12, 2, second)]);
    }

    #[test]
    fn a_probed_threads_stack_reads_back_as_its_own_kind() {
        let (app, libc) = (module("/app"), module("/libc.so.6"));
        let forked = stack_of(&[(&libc, 0x10)], false);
        let blocked = stack_of(&[(&libc, 0x30), (&app, 0x40)], true);
        let mut ids = ModuleIds::default();
        let mut written = ids.records(1, (10, 11, 1), &forked);
        let thread = ids.thread_records(2, (10, 12), &blocked);
        assert_eq!(thread.len(), 2, "only /app is new, then the stack");
        written.extend(thread);
        let mut table = ModuleTable::default();
        let mut read = Vec::new();
        for record in &written {
            match parse(record) {
                Some(UserRecord::Module { id, module }) => table.insert(id, module),
                Some(UserRecord::Stack(_)) => {}
                Some(UserRecord::ThreadStack(s)) => read.push((s.tgid, s.tid, table.stack(&s))),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(read, vec![(10, 12, blocked)]);
    }

    #[test]
    fn a_frame_of_an_unknown_module_truncates_the_stack() {
        let mut table = ModuleTable::default();
        table.insert(0, (*module("/app")).clone());
        let stack = table.stack(&RecordedStack {
            frames: vec![(0, 1), (7, 2), (0, 3)],
            ..Default::default()
        });
        assert_eq!(stack.frames.len(), 1);
        assert!(stack.truncated);
    }

    #[test]
    fn the_table_holds_a_bounded_number_of_bytes() {
        let mut table = ModuleTable::default();
        let path = "/m".repeat(2048);
        let n = MAX_MODULE_BYTES / path.len();
        for id in 0..n as u32 + 10 {
            table.insert(
                id,
                Module {
                    path: path.clone(),
                    build_id: None,
                    stamp: None,
                },
            );
        }
        assert_eq!(table.modules.len(), n);
        assert!(table.bytes <= MAX_MODULE_BYTES);
        // Replacing an id frees its bytes.
        table.insert(
            0,
            Module {
                path: String::new(),
                build_id: None,
                stamp: None,
            },
        );
        assert_eq!(table.bytes, (n - 1) * path.len());
    }
}
