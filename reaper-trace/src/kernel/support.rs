//! What the kernel must offer, checked before anything is loaded, so that
//! an old kernel gets one line naming what it lacks rather than a verifier
//! log. The oldest kernel the tests have passed on (`cargo xtask vm-test`)
//! is the documented minimum; an older kernel that has every feature is
//! tried, with a warning.

/// The oldest kernel `cargo xtask vm-test` has passed on (Debian's 6.1
/// cloud kernel, 2026-11-26).
pub const OLDEST_TESTED: (u32, u32) = (6, 1);

/// What the kernel offers, as probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offers {
    /// /sys/kernel/btf/vmlinux exists (CONFIG_DEBUG_INFO_BTF).
    pub btf: bool,
    /// BPF_MAP_TYPE_RINGBUF (Linux 5.8).
    pub ring_buffer: bool,
}

/// Why the kernel cannot run the tracer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "kernel {release} has no {missing}; reaper-trace needs it (it is tested on Linux {}.{} and later)",
    OLDEST_TESTED.0,
    OLDEST_TESTED.1
)]
pub struct Unsupported {
    pub release: String,
    pub missing: &'static str,
}

/// The verdict on a kernel: an error naming the first missing feature, or
/// a warning when it is older than any tested one.
pub fn judge(release: &str, offers: Offers) -> Result<Option<String>, Unsupported> {
    let missing = if !offers.btf {
        Some(
            "BTF (/sys/kernel/btf/vmlinux: a kernel built with CONFIG_DEBUG_INFO_BTF=y, Linux 5.5+)",
        )
    } else if !offers.ring_buffer {
        Some("BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8+)")
    } else {
        None
    };
    if let Some(missing) = missing {
        return Err(Unsupported {
            release: release.to_owned(),
            missing,
        });
    }
    Ok(version(release)
        .filter(|&v| v < OLDEST_TESTED)
        .map(|_| {
            format!(
                "kernel {release} is older than any reaper-trace is tested on (Linux {}.{}); trying anyway",
                OLDEST_TESTED.0, OLDEST_TESTED.1
            )
        }))
}

/// `6.1.0-27-cloud-amd64` → (6, 1).
fn version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Offers = Offers {
        btf: true,
        ring_buffer: true,
    };

    #[test]
    fn names_what_an_old_kernel_lacks() {
        let no_ring = judge(
            "5.4.0-150-generic",
            Offers {
                ring_buffer: false,
                ..ALL
            },
        )
        .unwrap_err();
        assert_eq!(
            no_ring.to_string(),
            "kernel 5.4.0-150-generic has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8+); reaper-trace needs it (it is tested on Linux 6.1 and later)"
        );
        let no_btf = judge("4.19.0", Offers { btf: false, ..ALL }).unwrap_err();
        assert!(no_btf.missing.starts_with("BTF"), "{no_btf}");
    }

    #[test]
    fn warns_below_the_oldest_tested_and_not_from_it() {
        assert!(judge("5.15.0-91-generic", ALL).unwrap().is_some());
        assert_eq!(judge("6.1.0-27-cloud-amd64", ALL), Ok(None));
        assert_eq!(judge("6.18.44-fc-v782", ALL), Ok(None));
        assert_eq!(judge("garbage", ALL), Ok(None));
    }
}
