//! One module per hook. Every program has the same shape: a thin entry point
//! that calls a `try_` function and ignores its error, because a tracing
//! program has nothing useful to return to the kernel.

mod exec;
mod exit;
mod fork;
mod fork_failed;
mod free;
mod process_wait;
mod sigaction;
mod signal_deliver;
mod signal_generate;
mod syscalls;
mod task_rename;
mod user_stack;
mod wait_syscalls;
