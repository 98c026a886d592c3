//! The load-time constants (`CONFIG`), read one field at a time.

use aya_ebpf::Global;
use reaper_trace_common::Config;

/// Filled in by the loader with `EbpfLoader::override_global("CONFIG", ..)`.
#[unsafe(no_mangle)]
static CONFIG: Global<Config> = Global::new(unsafe { core::mem::zeroed() });

/// A pointer to the global; `Global` is `repr(transparent)` over the value.
#[inline(always)]
pub fn config_ptr() -> *const Config {
    (&raw const CONFIG).cast()
}

/// Reads one field of `CONFIG` with a volatile load, so that the compiler
/// cannot fold the zeroed initial value into the code, and without copying
/// the whole struct onto the 512-byte stack.
macro_rules! conf {
    ($field:ident) => {{
        #[allow(unused_unsafe)]
        let value = unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!((*$crate::config::config_ptr()).$field))
        };
        value
    }};
}
pub(crate) use conf;
