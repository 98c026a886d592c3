//! reaper-trace's kernel programs: one module per hook under `probes`, all
//! writing to one ring buffer through `emit`.
#![no_std]
#![no_main]

mod config;
mod emit;
mod filter;
mod log;
mod maps;
mod probes;
mod regs;
mod siginfo;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this.
    loop {}
}

// GPL-compatible: bpf_probe_read_kernel and friends are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
