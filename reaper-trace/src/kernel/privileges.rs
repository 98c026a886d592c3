//! Checking, before touching the kernel, that we may load tracing programs.

/// Capability numbers from `linux/capability.h`.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The capabilities missing from an effective set to load and attach
/// tracing programs: CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN which
/// implies both on older kernels.
pub fn missing_capabilities(effective: u64) -> Vec<&'static str> {
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_BPF) && has(CAP_PERFMON) {
        return Vec::new();
    }
    if has(CAP_SYS_ADMIN) && !has(CAP_BPF) && !has(CAP_PERFMON) {
        // A kernel older than 5.8 knows neither: CAP_SYS_ADMIN covers it.
        return Vec::new();
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// The effective capability set from `/proc/self/status` text.
pub fn parse_effective(status: &str) -> Option<u64> {
    crate::host::procfs::hex_field(status, "CapEff:")
}

/// Reads this process's effective capabilities.
pub fn effective_capabilities() -> Option<u64> {
    parse_effective(&std::fs::read_to_string("/proc/self/status").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_plain_users() {
        assert!(missing_capabilities(0x1ff_ffff_ffff).is_empty());
        assert_eq!(missing_capabilities(0), vec!["CAP_BPF", "CAP_PERFMON"]);
        assert_eq!(missing_capabilities(1 << CAP_BPF), vec!["CAP_PERFMON"]);
    }

    #[test]
    fn parses_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_effective(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_effective("Name: x\n"), None);
    }
}
