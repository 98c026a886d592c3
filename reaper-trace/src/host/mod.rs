//! The host around the tracer: /proc, the command it runs, and the mapped
//! files that user stacks are unwound and symbolized with.

#[cfg(feature = "kernel")]
#[cfg(feature = "kernel")]
pub mod command;
mod elf;
pub mod gopclntab;
pub mod new_file;
pub mod procfs;
pub mod signals;
pub mod symbolize;
pub mod unwind;
