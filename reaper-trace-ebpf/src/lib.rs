//! Present only so that the userspace crate can name this package as a build
//! dependency (cargo requires a library target); the programs are the binary.
#![no_std]
