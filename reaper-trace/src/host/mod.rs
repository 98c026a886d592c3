//! The host around the tracer: /proc, the command it runs, and the mapped
//! files that user stacks are unwound and symbolized with.

#[cfg(feature = "kernel")]
#[cfg(feature = "kernel")]
pub mod command;
mod elf;
pub mod gopclntab;
pub mod new_file;
#[cfg(feature = "kernel")]
pub mod priority;
pub mod procfs;
pub mod signals;
pub mod symbolize;
pub mod thread_stacks;
pub mod unwind;
pub mod zombies;
