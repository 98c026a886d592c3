//! The cgroup filesystems of this machine: where they are mounted (read
//! from /proc/self/mountinfo, never assumed: a hybrid host has v2 at
//! /sys/fs/cgroup/unified and the pids controller on v1), which path a
//! cgroup v2 id has, which processes run below a cgroup, and how close a
//! cgroup is to its `pids.max`.

use std::{
    collections::{BTreeSet, HashMap},
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::container::Container;
use crate::{
    host::procfs as host_procfs,
    trace::{escape::escape, host_facts::SeedProcess},
};

/// Directories visited by one scan of the v2 tree, at most: a bound on the
/// work a scan does on a machine with very many cgroups.
const MAX_SCANNED: usize = 200_000;

/// How often the tree may be rescanned for ids it did not know: a burst of
/// events from a cgroup that came and went costs one scan, not one each.
const RESCAN_EVERY: Duration = Duration::from_millis(200);

/// An id found nowhere is looked up again after this long, and at most this
/// many are remembered.
const MISSING_RETRY: Duration = Duration::from_secs(1);
const MAX_MISSING: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no cgroup v2 filesystem is mounted (see /proc/self/mountinfo); mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`"
    )]
    NoV2,
    #[error(
        "no cgroup {path:?} under the cgroup v2 root {root}: give a path as `cat /proc/PID/cgroup` prints it (the `0::` line)"
    )]
    NoSuchCgroup { path: String, root: String },
    #[error(
        "the cgroup v2 mount {root} shows only part of the hierarchy (a cgroup namespace or a bind mount), so the kernel cannot filter by cgroup; run reaper-trace in the host's cgroup namespace (e.g. `nsenter -t 1 -C`)"
    )]
    SubtreeMount { root: String },
    #[error(
        "no running container's cgroup matches {prefix:?}; list them with `docker ps`, `crictl ps` or `podman ps`"
    )]
    NoSuchContainer { prefix: String },
    #[error("{prefix:?} matches {count} container cgroups ({examples}); give more of the id")]
    AmbiguousContainer {
        prefix: String,
        count: usize,
        examples: String,
    },
}

/// A cgroup's process count and limit, from the pids controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PidsUsage {
    pub current: u64,
    /// `None`: no limit (`max`).
    pub max: Option<u64>,
}

/// Where the hierarchies are mounted.
#[derive(Clone, Debug, Default)]
pub struct CgroupFs {
    /// The cgroup2 mount point.
    pub v2: Option<PathBuf>,
    /// The v2 mount shows a subtree of the hierarchy (a cgroup namespace,
    /// a bind mount), not its root: paths and depths are relative to it.
    pub v2_is_subtree: bool,
    /// A cgroup v1 mount with the pids controller, on hybrid hosts.
    pub pids_v1: Option<PathBuf>,
}

impl CgroupFs {
    pub fn discover() -> CgroupFs {
        let mut fs = CgroupFs::default();
        let Ok(mounts) = procfs::process::Process::myself().and_then(|p| p.mountinfo()) else {
            return fs;
        };
        for m in mounts {
            match m.fs_type.as_str() {
                "cgroup2" if fs.v2.is_none() => {
                    fs.v2_is_subtree = m.root != "/";
                    fs.v2 = Some(m.mount_point);
                }
                "cgroup" if fs.pids_v1.is_none() && m.super_options.contains_key("pids") => {
                    fs.pids_v1 = Some(m.mount_point)
                }
                _ => {}
            }
        }
        fs
    }

    pub fn has_v2(&self) -> bool {
        self.v2.is_some()
    }

    pub fn v2_root(&self) -> Result<&Path, CgroupError> {
        self.v2.as_deref().ok_or(CgroupError::NoV2)
    }

    /// The v2 directory of `path` (as /proc/PID/cgroup prints it, or
    /// already under the mount point), with its path below the root.
    pub fn locate(&self, path: &str) -> Result<(PathBuf, String), CgroupError> {
        let root = self.v2_root()?;
        let relative = Path::new(path)
            .strip_prefix(root)
            .map(|p| format!("/{}", p.display()))
            .unwrap_or_else(|_| format!("/{}", path.trim_start_matches('/')));
        let relative = normalise(&relative);
        let dir = root.join(relative.trim_start_matches('/'));
        if relative.split('/').any(|c| c == "..") || !dir.is_dir() {
            return Err(CgroupError::NoSuchCgroup {
                path: path.to_owned(),
                root: root.display().to_string(),
            });
        }
        Ok((dir, relative))
    }

    /// The cgroup's v2 id (its directory's inode number) and its depth.
    pub fn id_and_level(&self, path: &str) -> Result<(u64, u32, String), CgroupError> {
        if self.v2_is_subtree {
            return Err(CgroupError::SubtreeMount {
                root: self.v2_root()?.display().to_string(),
            });
        }
        let (dir, relative) = self.locate(path)?;
        let id = std::fs::metadata(&dir)
            .map_err(|_| CgroupError::NoSuchCgroup {
                path: path.to_owned(),
                root: self
                    .v2
                    .as_ref()
                    .map(|r| r.display().to_string())
                    .unwrap_or_default(),
            })?
            .ino();
        Ok((id, level(&relative), relative))
    }

    /// The path of cgroup `id`, found directly: the kernel opens a cgroup
    /// v2 directory by its id as a file handle (kernfs exports its nodes
    /// that way), and /proc/self/fd names what was opened. Needs
    /// CAP_DAC_READ_SEARCH; without it, or on kernels without export
    /// support, `None` (and the caller scans the tree).
    pub fn path_of(&self, id: u64) -> Option<String> {
        let root = self.v2.as_ref()?;
        let mount = std::fs::File::open(root).ok()?;
        /// `struct file_handle` with the 8 bytes of a kernfs handle.
        #[repr(C)]
        struct KernfsHandle {
            handle_bytes: u32,
            handle_type: i32,
            id: u64,
        }
        /// `FILEID_KERNFS` in include/linux/exportfs.h.
        const FILEID_KERNFS: i32 = 0xfe;
        let mut handle = KernfsHandle {
            handle_bytes: 8,
            handle_type: FILEID_KERNFS,
            id,
        };
        // SAFETY: `handle` is a file_handle header followed by its
        // `handle_bytes` bytes of handle, as the syscall reads it.
        let fd = unsafe {
            libc::open_by_handle_at(
                mount.as_raw_fd(),
                (&raw mut handle).cast::<libc::file_handle>(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: a new descriptor we own from here on.
        let dir = unsafe { std::fs::File::from_raw_fd(fd) };
        let target = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok()?;
        if target.to_string_lossy().ends_with(" (deleted)") {
            // Removed between the open and the readlink.
            return None;
        }
        let relative = target.strip_prefix(root).ok()?;
        Some(normalise(&format!("/{}", relative.display())))
    }

    /// Calls `visit` with the directory and path of the cgroup at
    /// `relative` and of every cgroup below it, at most `MAX_SCANNED`.
    fn walk(&self, relative: &str, mut visit: impl FnMut(&Path, &str)) {
        let Some(root) = &self.v2 else {
            return;
        };
        let start = normalise(relative);
        let mut stack = vec![(root.join(start.trim_start_matches('/')), start)];
        let mut visited = 0;
        while let Some((dir, relative)) = stack.pop() {
            visited += 1;
            if visited > MAX_SCANNED {
                break;
            }
            visit(&dir, &relative);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let child = if relative == "/" {
                        format!("/{name}")
                    } else {
                        format!("{relative}/{name}")
                    };
                    stack.push((entry.path(), child));
                }
            }
        }
    }

    /// Every cgroup v2 now, by id.
    pub fn scan(&self) -> HashMap<u64, String> {
        let mut found = HashMap::new();
        self.walk("/", |dir, relative| {
            if let Ok(meta) = std::fs::metadata(dir) {
                found.insert(meta.ino(), relative.to_owned());
            }
        });
        found
    }

    /// The cgroup v2 path of process `pid` (the `0::` line of
    /// /proc/PID/cgroup), which a zombie still has though `cgroup.procs` no
    /// longer lists it.
    pub fn cgroup_of_pid(pid: u32) -> Option<String> {
        procfs::process::Process::new(pid as i32)
            .and_then(|p| p.cgroups())
            .ok()?
            .into_iter()
            .find(|c| c.hierarchy == 0)
            .map(|c| c.pathname)
    }

    /// Gives the processes of a /proc snapshot their cgroup v2: the path
    /// /proc/PID/cgroup says and that directory's inode, the id the kernel
    /// reports (`bpf_get_current_cgroup_id`). Nothing without a v2 mount.
    pub fn name_seed(&self, processes: &mut [SeedProcess]) {
        if !self.has_v2() {
            return;
        }
        host_procfs::attach_cgroups(processes, CgroupFs::cgroup_of_pid, |path| {
            let (dir, _) = self.locate(path).ok()?;
            std::fs::metadata(dir).ok().map(|m| m.ino())
        });
    }

    /// The processes in the cgroup at `relative` and below it.
    pub fn procs_under(&self, relative: &str) -> Vec<u32> {
        let mut pids = Vec::new();
        self.walk(relative, |dir, _| {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        });
        pids
    }

    /// Whether cgroup `id` still exists at `relative`: a cgroup made again
    /// at the same path (a restarted unit) is another cgroup, with another id.
    pub fn is_alive(&self, id: u64, relative: &str) -> bool {
        self.v2.as_ref().is_some_and(|root| {
            std::fs::metadata(root.join(relative.trim_start_matches('/')))
                .is_ok_and(|m| m.is_dir() && m.ino() == id)
        })
    }

    /// The pids controller's count and limit for the cgroup at `relative`:
    /// from v2 when the controller is enabled there, else from the v1 pids
    /// hierarchy at the same path (where runtimes and systemd put the same
    /// cgroup on hybrid hosts).
    pub fn pids(&self, relative: &str) -> Option<PidsUsage> {
        let relative = relative.trim_start_matches('/');
        [&self.v2, &self.pids_v1]
            .into_iter()
            .flatten()
            .find_map(|root| read_pids(&root.join(relative)))
    }
}

/// A process's standing against the pids controller: its own cgroup's
/// count, and the limit closest to being reached on the way up to the
/// root (a limit on a parent cgroup counts every process below it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PidsNow {
    /// `pids.current` of its own cgroup.
    pub current: u64,
    /// `None`: no `pids.max` on the way up.
    pub limit: Option<PidsLimit>,
}

/// One `pids.max` and how far its cgroup is from it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PidsLimit {
    /// The cgroup that has the limit.
    pub cgroup: String,
    pub current: u64,
    pub max: u64,
    /// `max - current`: how many more processes (zombies included) fit.
    pub headroom: u64,
}

impl CgroupFs {
    /// Where a process stands against `pids.max`, from its v2 path and,
    /// on a hybrid host, its path in the v1 pids hierarchy (each level
    /// read where the controller is: v2 first, then v1).
    pub fn pids_now(&self, v2: Option<&str>, v1: Option<&str>) -> Option<PidsNow> {
        let levels = |root: &Option<PathBuf>, path: Option<&str>| -> Vec<(String, PidsUsage)> {
            let (Some(root), Some(path)) = (root, path) else {
                return Vec::new();
            };
            ancestors(&normalise(path))
                .into_iter()
                .filter_map(|at| {
                    let usage = read_pids(&root.join(at.trim_start_matches('/')))?;
                    Some((at, usage))
                })
                .collect()
        };
        let from_v2 = levels(&self.v2, v2);
        let chain = if from_v2.is_empty() {
            levels(&self.pids_v1, v1)
        } else {
            from_v2
        };
        tightest(&chain)
    }
}

/// `/a/b` → `/a/b`, `/a`, `/` (innermost first).
fn ancestors(path: &str) -> Vec<String> {
    let mut out = vec![path.to_owned()];
    let mut at = path;
    while let Some((up, _)) = at.rsplit_once('/') {
        let up = if up.is_empty() { "/" } else { up };
        if up == at {
            break;
        }
        out.push(up.to_owned());
        at = up;
    }
    out
}

/// The innermost level's count and the limit with the least headroom
/// among `levels` (innermost first).
fn tightest(levels: &[(String, PidsUsage)]) -> Option<PidsNow> {
    let (_, own) = levels.first()?;
    let limit = levels
        .iter()
        .filter_map(|(path, usage)| {
            let max = usage.max?;
            Some(PidsLimit {
                cgroup: path.clone(),
                current: usage.current,
                max,
                headroom: max.saturating_sub(usage.current),
            })
        })
        .min_by_key(|l| l.headroom);
    Some(PidsNow {
        current: own.current,
        limit,
    })
}

fn read_pids(dir: &Path) -> Option<PidsUsage> {
    let current = std::fs::read_to_string(dir.join("pids.current")).ok()?;
    let max = std::fs::read_to_string(dir.join("pids.max")).ok()?;
    Some(PidsUsage {
        current: current.trim().parse().ok()?,
        max: max.trim().parse().ok(),
    })
}

/// Among cgroup `paths`, the one of the container or pod whose id starts
/// with `prefix`: the outermost that names it (a pod's slice holds its
/// containers; a container's scope may hold an `init` sub-cgroup). More
/// than one unrelated match is ambiguous.
pub fn container_cgroup(
    paths: impl IntoIterator<Item = String>,
    prefix: &str,
) -> Result<String, CgroupError> {
    let mut matches: Vec<String> = paths
        .into_iter()
        .filter(|path| Container::parse(path).matches(prefix))
        .collect();
    matches.sort_by_key(|p| (p.matches('/').count(), p.clone()));
    // The outermost cgroups that match: those below no other match.
    let mut roots: Vec<String> = Vec::new();
    for path in matches {
        if !roots.iter().any(|r| path.starts_with(&format!("{r}/"))) {
            roots.push(path);
        }
    }
    // CRI-O and Podman put each container's monitor (conmon) in a cgroup
    // of its own named after the container: one container, two cgroups.
    let ids: BTreeSet<Option<String>> = roots.iter().map(|p| Container::parse(p).id).collect();
    if roots.len() > 1 && ids.len() == 1 {
        roots.sort_by_key(|p| p.rsplit('/').next().is_some_and(|c| c.contains("conmon")));
        roots.truncate(1);
    }
    match roots.len() {
        0 => Err(CgroupError::NoSuchContainer {
            prefix: prefix.to_owned(),
        }),
        1 => Ok(roots.remove(0)),
        count => Err(CgroupError::AmbiguousContainer {
            prefix: prefix.to_owned(),
            count,
            examples: roots
                .iter()
                .take(3)
                .map(|p| escape(p))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// `/a//b/` → `/a/b`; the root stays `/`.
fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The depth of a normalised path below the root (`/` is 0).
fn level(relative: &str) -> u32 {
    relative.split('/').filter(|c| !c.is_empty()).count() as u32
}

/// Cgroup ids to paths, scanning the tree again (at most every
/// `RESCAN_EVERY`) when an id is new.
#[derive(Debug, Default)]
pub struct CgroupResolver {
    fs: CgroupFs,
    known: HashMap<u64, String>,
    last_scan: Option<Instant>,
    /// Ids found nowhere, with when: not looked up again for a while (a
    /// burst of events from a cgroup that is gone costs one lookup).
    missing: HashMap<u64, Instant>,
}

impl CgroupResolver {
    pub fn new(fs: CgroupFs) -> CgroupResolver {
        CgroupResolver {
            fs,
            known: HashMap::new(),
            last_scan: None,
            missing: HashMap::new(),
        }
    }

    pub fn fs(&self) -> &CgroupFs {
        &self.fs
    }

    /// The path of cgroup `id`, if it exists (or existed at the last scan).
    pub fn resolve(&mut self, id: u64) -> Option<&str> {
        if !self.known.contains_key(&id) {
            if self
                .missing
                .get(&id)
                .is_some_and(|t| t.elapsed() < MISSING_RETRY)
            {
                return None;
            }
            if let Some(path) = self.fs.path_of(id) {
                self.known.insert(id, path);
            } else if self.last_scan.is_none_or(|t| t.elapsed() >= RESCAN_EVERY) {
                // Merged: the names of cgroups gone since stay until the
                // caller forgets them (after their last findings and scrapes).
                self.known.extend(self.fs.scan());
                self.last_scan = Some(Instant::now());
            }
            if !self.known.contains_key(&id) {
                if self.missing.len() >= MAX_MISSING {
                    self.missing.clear();
                }
                self.missing.insert(id, Instant::now());
            }
        }
        self.known.get(&id).map(String::as_str)
    }

    /// A name found another way: the cgroups /proc gave the processes
    /// that existed when tracing started.
    pub fn learn(&mut self, id: u64, path: &str) {
        if id != 0 {
            self.known.insert(id, path.to_owned());
        }
    }

    /// Forgets the paths of cgroups that are gone.
    pub fn forget(&mut self, ids: &[u64]) {
        for id in ids {
            self.known.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_pids_limit_on_the_way_up_wins() {
        assert_eq!(ancestors("/a/b"), ["/a/b", "/a", "/"]);
        assert_eq!(ancestors("/"), ["/"]);
        let usage = |current, max| PidsUsage { current, max };
        let levels = vec![
            ("/a/b".to_owned(), usage(8, Some(100))),
            ("/a".to_owned(), usage(20, Some(24))),
            ("/".to_owned(), usage(300, None)),
        ];
        let now = tightest(&levels).unwrap();
        assert_eq!(now.current, 8);
        assert_eq!(
            now.limit,
            Some(PidsLimit {
                cgroup: "/a".into(),
                current: 20,
                max: 24,
                headroom: 4
            })
        );
        let free = tightest(&[("/x".to_owned(), usage(3, None))]).unwrap();
        assert_eq!((free.current, free.limit), (3, None));
        assert_eq!(tightest(&[]), None);
    }

    const A: &str = "3f2a9c1e0b7d5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a5e8a";
    const B: &str = "3f2a00000000000000000000000000000000000000000000000000000000beef";

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_container_prefix_picks_its_outermost_cgroup_or_says_why_not() {
        let scope = format!("/system.slice/docker-{A}.scope");
        let all = paths(&[
            "/",
            "/system.slice",
            &format!("{scope}/init"),
            &scope,
            &format!("/system.slice/docker-{B}.scope"),
        ]);
        assert_eq!(container_cgroup(all.clone(), "3f2a9c").unwrap(), scope);
        assert!(matches!(
            container_cgroup(all.clone(), "3f2a"),
            Err(CgroupError::AmbiguousContainer { count: 2, .. })
        ));
        assert!(matches!(
            container_cgroup(all, "ffff"),
            Err(CgroupError::NoSuchContainer { .. })
        ));
        // A pod uid picks the pod's slice, which holds its containers.
        let pod = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b2c3d_4e5f_4a6b_8c7d_9e0f1a2b3c4d.slice";
        let containers = paths(&[pod, &format!("{pod}/cri-containerd-{A}.scope")]);
        assert_eq!(container_cgroup(containers, "0a1b2c3d-4e5f").unwrap(), pod);
        // Podman's monitor has a cgroup named after the container too.
        let podman = paths(&[
            &format!("/machine.slice/libpod-conmon-{A}.scope"),
            &format!("/machine.slice/libpod-{A}.scope"),
        ]);
        assert_eq!(
            container_cgroup(podman, A).unwrap(),
            format!("/machine.slice/libpod-{A}.scope")
        );
    }

    #[test]
    fn seeds_this_process_with_its_cgroup() {
        let fs = CgroupFs::discover();
        let me = std::process::id();
        let mut seeded = host_procfs::snapshot();
        fs.name_seed(&mut seeded);
        let mine = seeded.iter().find(|p| p.pid == me).expect("this process");
        match &fs.v2 {
            Some(root) => {
                // Its cgroup, as /proc says, with that directory's inode.
                let path = CgroupFs::cgroup_of_pid(me).expect("a v2 cgroup");
                assert_eq!(mine.cgroup.as_deref(), Some(path.as_str()));
                let dir = root.join(path.trim_start_matches('/'));
                assert_eq!(mine.cgroup_id, std::fs::metadata(dir).unwrap().ino());
            }
            None => assert_eq!((mine.cgroup_id, mine.cgroup.as_deref()), (0, None)),
        }
    }

    #[test]
    fn normalises_and_counts_levels() {
        assert_eq!(normalise("//a/./b/"), "/a/b");
        assert_eq!(normalise("/"), "/");
        assert_eq!(level("/"), 0);
        assert_eq!(level("/kubepods.slice/kubepods-burstable.slice"), 2);
    }
}
