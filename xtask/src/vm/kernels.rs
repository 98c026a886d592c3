//! The kernels of the matrix: which Debian cloud kernels the registry
//! offers (the newest of each major.minor), and their vmlinuz, fetched once.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::command_output;

/// A kernel of the matrix, from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// e.g. linux-image-6.1.0-56-cloud-amd64-unsigned
    pub package: String,
    /// Debian version, e.g. 6.1.192-2: the cache key.
    pub version: String,
    /// What `uname -r` prints, e.g. 6.1.0-56-cloud-amd64.
    pub release: String,
    /// Debian's architecture: amd64 or arm64.
    pub arch: &'static str,
}

/// `linux-image-<release>[-unsigned]` → `<release>` when it is a real
/// cloud kernel: `6.12-cloud-amd64` (the meta-package, no x.y.z) and the
/// -dbg packages are not.
fn cloud_release(package: &str, arch: &str) -> Option<String> {
    let rest = package.strip_prefix("linux-image-")?;
    let release = rest.strip_suffix("-unsigned").unwrap_or(rest);
    let abi = release.strip_suffix(&format!("-cloud-{arch}"))?;
    let numeric: String = abi
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let parts: Vec<&str> = numeric.split('.').collect();
    (parts.len() == 3 && parts.iter().all(|p| !p.is_empty())).then(|| release.to_owned())
}

/// The package names of `apt-cache search` lines (`name - description`).
pub fn parse_search(out: &str, arch: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split(" - ").next())
        .map(str::trim)
        .filter(|name| cloud_release(name, arch).is_some())
        .map(str::to_owned)
        .collect()
}

/// (Package, Version) of each record of `apt-cache show`.
pub fn parse_show(out: &str) -> Vec<(String, String)> {
    let mut records = Vec::new();
    let mut package = None;
    for line in out.lines() {
        if let Some(p) = line.strip_prefix("Package: ") {
            package = Some(p.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Version: ")
            && let Some(p) = package.take()
        {
            records.push((p, v.trim().to_owned()));
        }
    }
    records
}

/// The numbers of a Debian version in order (6.12.117-1~deb12u1 →
/// 6, 12, 117, 1, 12, 1): enough to order the kernels of one registry,
/// whose versions differ in their upstream or ABI numbers.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The newest kernel of each major.minor, oldest series first; of a signed
/// and an unsigned package of the same version, the unsigned one (the
/// signed one wraps the same kernel for Secure Boot).
pub fn newest_per_series(candidates: &[(String, String)], arch: &'static str) -> Vec<Kernel> {
    let mut best: BTreeMap<(u64, u64), (Vec<u64>, bool, Kernel)> = BTreeMap::new();
    for (package, version) in candidates {
        let Some(release) = cloud_release(package, arch) else {
            continue;
        };
        let key = version_key(version);
        let [major, minor, ..] = key[..] else {
            continue;
        };
        let unsigned = package.ends_with("-unsigned");
        let kernel = Kernel {
            package: package.clone(),
            version: version.clone(),
            release,
            arch,
        };
        let entry = best
            .entry((major, minor))
            .or_insert((key.clone(), unsigned, kernel.clone()));
        if (&key, unsigned) > (&entry.0, entry.1) {
            *entry = (key, unsigned, kernel);
        }
    }
    best.into_values().map(|(_, _, k)| k).collect()
}

/// The matrix from the local package index.
fn discover(arch: &'static str) -> anyhow::Result<Vec<Kernel>> {
    let search = command_output(Command::new("apt-cache").args([
        "search",
        "--names-only",
        &format!(r"^linux-image-[0-9.]+.*-cloud-{arch}(-unsigned)?$"),
    ]))?;
    let names = parse_search(&search, arch);
    if names.is_empty() {
        bail!(
            "the package index lists no Debian cloud kernel (linux-image-*-cloud-{arch}){}",
            if arch == "amd64" {
                ""
            } else {
                ": dpkg needs the architecture (cargo xtask setup adds it)"
            }
        );
    }
    // An arch-qualified name: arm64 packages on an amd64 machine.
    let names: Vec<String> = names.iter().map(|n| format!("{n}:{arch}")).collect();
    let show = command_output(
        Command::new("apt-cache")
            .args(["show", "--no-all-versions"])
            .args(&names),
    )?;
    Ok(newest_per_series(&parse_show(&show), arch))
}

/// Each kernel's vmlinuz, downloaded and extracted once into `cache`.
/// Tries the local index first, then refreshes it once: a stale index names
/// versions the registry has dropped. Without a registry this is an error,
/// never a skipped kernel.
pub(super) fn fetch_kernels(
    cache: &Path,
    arch: &'static str,
) -> anyhow::Result<Vec<(Kernel, PathBuf)>> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let attempt = || -> anyhow::Result<Vec<(Kernel, PathBuf)>> {
        discover(arch)?
            .into_iter()
            .map(|k| {
                let vmlinuz = fetch_vmlinuz(&k, cache)?;
                Ok((k, vmlinuz))
            })
            .collect()
    };
    attempt().or_else(|first| {
        eprintln!("xtask: {first:#}; refreshing the package index and retrying");
        command_output(Command::new("apt-get").args(["update", "-q"])).with_context(|| {
            "apt-get update failed: the Debian package registry that provides the kernels is unreachable"
        })?;
        attempt()
    })
}

fn fetch_vmlinuz(k: &Kernel, cache: &Path) -> anyhow::Result<PathBuf> {
    let dir = cache.join(format!("{}_{}", k.package, k.version));
    let vmlinuz = dir.join("vmlinuz");
    if vmlinuz.exists() {
        return Ok(vmlinuz);
    }
    // apt-get download's file name: an epoch's colon is escaped.
    let deb = cache.join(format!(
        "{}_{}_{}.deb",
        k.package,
        k.version.replace(':', "%3a"),
        k.arch
    ));
    if !deb.exists() {
        eprintln!("xtask: downloading {} {}", k.package, k.version);
        command_output(
            Command::new("apt-get")
                .current_dir(cache)
                // As root, apt downloads as _apt, which cannot write here.
                .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
                .arg(format!("{}:{}={}", k.package, k.arch, k.version)),
        )
        .with_context(|| {
            format!(
                "downloading {} {} from the Debian registry",
                k.package, k.version
            )
        })?;
    }
    let unpacked = cache.join(format!("{}_{}.unpacked", k.package, k.version));
    let _ = fs::remove_dir_all(&unpacked);
    if let Err(e) = command_output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked)) {
        // Most likely a download cut short: the next run fetches it again.
        let _ = fs::remove_file(&deb);
        return Err(e.context(format!("{} is unreadable and was removed", deb.display())));
    }
    let image = unpacked.join(format!("boot/vmlinuz-{}", k.release));
    fs::create_dir_all(&dir)?;
    // Renamed last, so that an interrupted extraction is redone next time.
    fs::rename(&image, &vmlinuz)
        .with_context(|| format!("no {} in {}", image.display(), deb.display()))?;
    fs::remove_dir_all(&unpacked)?;
    Ok(vmlinuz)
}
#[cfg(test)]
mod tests {
    use super::*;

    const SEARCH: &str = "\
linux-image-6.1.0-47-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud
linux-image-6.1.0-56-cloud-amd64-unsigned - Linux 6.1 for x86-64 cloud
linux-image-6.1.0-56-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.12.117+deb12-cloud-amd64-unsigned - Linux 6.12 for x86-64 cloud
linux-image-6.12-cloud-amd64 - Linux for x86-64 cloud (meta-package)
linux-image-6.12.100+deb12-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
linux-image-6.12.117+deb12-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
";

    #[test]
    fn search_keeps_real_cloud_kernels_only() {
        let names = parse_search(SEARCH, "amd64");
        assert_eq!(names.len(), 6);
        assert!(!names.contains(&"linux-image-6.12-cloud-amd64".to_owned()));
        assert_eq!(
            cloud_release("linux-image-6.1.0-56-cloud-amd64-dbg", "amd64"),
            None
        );
        assert_eq!(
            cloud_release("linux-image-6.12.117+deb12-cloud-amd64-unsigned", "amd64").as_deref(),
            Some("6.12.117+deb12-cloud-amd64")
        );
    }

    #[test]
    fn each_architecture_keeps_its_own_kernels() {
        let search = "\
linux-image-6.1.0-57-cloud-arm64-unsigned - Linux 6.1 for arm64 cloud
linux-image-6.12-cloud-arm64 - Linux for arm64 cloud (meta-package)
linux-image-6.12.118+deb12-cloud-arm64 - Linux 6.12 for arm64 cloud (signed)
linux-image-6.1.0-56-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
";
        assert_eq!(
            parse_search(search, "arm64"),
            [
                "linux-image-6.1.0-57-cloud-arm64-unsigned",
                "linux-image-6.12.118+deb12-cloud-arm64"
            ]
        );
        assert_eq!(
            parse_search(search, "amd64"),
            ["linux-image-6.1.0-56-cloud-amd64"]
        );
    }

    #[test]
    fn newest_of_each_series_prefers_unsigned() {
        let show = "\
Package: linux-image-6.1.0-47-cloud-amd64-unsigned
Version: 6.1.170-1
Description: x

Package: linux-image-6.1.0-56-cloud-amd64
Version: 6.1.192-2

Package: linux-image-6.1.0-56-cloud-amd64-unsigned
Version: 6.1.192-2

Package: linux-image-6.12.100+deb12-cloud-amd64
Version: 6.12.100-1~deb12u1

Package: linux-image-6.12.117+deb12-cloud-amd64
Version: 6.12.117-1~deb12u1
";
        let kernels = newest_per_series(&parse_show(show), "amd64");
        assert_eq!(
            kernels,
            vec![
                Kernel {
                    package: "linux-image-6.1.0-56-cloud-amd64-unsigned".into(),
                    version: "6.1.192-2".into(),
                    release: "6.1.0-56-cloud-amd64".into(),
                    arch: "amd64",
                },
                Kernel {
                    package: "linux-image-6.12.117+deb12-cloud-amd64".into(),
                    version: "6.12.117-1~deb12u1".into(),
                    release: "6.12.117+deb12-cloud-amd64".into(),
                    arch: "amd64",
                },
            ]
        );
    }
}
