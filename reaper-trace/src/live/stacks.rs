//! User stacks while tracing: each copy the kernel sends is unwound at
//! once, while its process (its maps, its files) is still there, then kept
//! as module + offset frames: in the recording and for the analysis. Frames
//! get names only when a finding is shown.

use reaper_trace_common::UserStackRecord;

use crate::{
    analysis::Finding,
    host::{
        symbolize::Symbolizer,
        thread_stacks,
        unwind::{Unwinder, UserRegs},
    },
    output::stacks::symbolize_finding,
    pipeline::Visitor,
    recording::stacks::ModuleIds,
    trace::{host_facts::ParentProbe, stack::Stack},
};

#[derive(Default)]
pub struct LiveStacks {
    unwinder: Unwinder,
    symbolizer: Symbolizer,
    modules: ModuleIds,
}

/// Whose stack it is: the thread and the owner (`stack_owner`), and the stack.
pub type Unwound = (u32, u32, Stack);

impl LiveStacks {
    /// Unwinds a copy from the kernel; hands its records (the stack and the
    /// modules new to the trace) to the outputs that keep records. `None`
    /// when nothing could be said (its process was already gone).
    pub fn unwind(&mut self, raw: &UserStackRecord, outputs: &mut dyn Visitor) -> Option<Unwound> {
        let header = raw.header;
        let len = (raw.len as usize).min(raw.bytes.len());
        let regs = UserRegs {
            ip: raw.ip,
            sp: raw.sp,
            bp: raw.bp,
            lr: raw.lr,
        };
        let stack = match self
            .unwinder
            .unwind(header.tgid, regs, raw.base, &raw.bytes[..len])
        {
            Ok(stack) => stack,
            Err(_) => return None,
        };
        // While the process lives: a container's files are reachable
        // through it, and will not be at their paths here.
        for frame in &stack.frames {
            self.symbolizer.prepare(&frame.module, header.tgid);
        }
        if outputs.keeps_records() {
            let who = (header.tgid, header.tid, raw.owner);
            for record in self.modules.records(header.ktime_ns, who, &stack) {
                outputs.record(&record);
            }
        }
        Some((header.tid, raw.owner, stack))
    }

    /// Where the threads of parent `tgid`, probed at `time_ns`, are in
    /// their code: each one's user stack, unwound while it is blocked, and
    /// its records (modules new to the trace, `THREAD_STACK`) handed to
    /// the outputs that keep records, before the probe's own.
    pub fn unwind_threads(
        &mut self,
        tgid: u32,
        time_ns: u64,
        probe: &mut ParentProbe,
        outputs: &mut dyn Visitor,
    ) {
        thread_stacks::unwind_threads(&mut self.unwinder, tgid, &mut probe.threads);
        for thread in &probe.threads {
            let Some(stack) = &thread.user_stack else {
                continue;
            };
            for frame in &stack.frames {
                self.symbolizer.prepare(&frame.module, tgid);
            }
            if outputs.keeps_records() {
                for record in self
                    .modules
                    .thread_records(time_ns, (tgid, thread.tid), stack)
                {
                    outputs.record(&record);
                }
            }
        }
    }

    /// A process execed or exited: its address space is not the one cached.
    pub fn forget(&mut self, tgid: u32) {
        self.unwinder.forget(tgid);
    }

    /// Names the frames of a finding's stacks, for showing it.
    pub fn symbolize(&mut self, finding: &mut Finding) {
        symbolize_finding(&mut self.symbolizer, finding);
    }
}
