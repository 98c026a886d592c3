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

/// This process's effective capability set (`CapEff:` of /proc/self/status).
pub fn effective_capabilities() -> Option<u64> {
    Some(
        procfs::process::Process::myself()
            .ok()?
            .status()
            .ok()?
            .capeff,
    )
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
}
