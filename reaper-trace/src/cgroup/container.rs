//! Naming what a cgroup v2 path belongs to: a container (with its runtime,
//! its Kubernetes pod and QoS class), or else a systemd unit.
//!
//! Pure text work, no I/O: the path (relative to the cgroup2 mount, e.g.
//! `/system.slice/docker-<id>.scope`, as in `/proc/<pid>/cgroup`) is read
//! one component at a time, outermost first. Each runtime names its cgroups
//! in a documented way (sources beside each rule below); anything else
//! yields no container, never a guess.
//!
//! Nesting is resolved innermost-wins, because a process belongs to the
//! deepest thing that encloses it: in a kind node (a docker container running
//! kubelet and containerd) the pod's container is the answer, not the node.
//! Entering a kubelet tree forgets a container met above it for the same
//! reason; `unit` and `slice` are simply the innermost of each in the path.
//!
//! Paths the kernel never produces (`.` or `..` components) yield nothing.
//! Everything else is linear in the path's length and cannot panic, whatever
//! bytes it holds.

use serde::Serialize;

/// The container runtime that created a container's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Containerd,
    Crio,
    Podman,
}

impl Runtime {
    /// The runtime's usual lowercase name, as in the serialized form.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
            Runtime::Podman => "podman",
        }
    }
}

/// A Kubernetes pod's QoS class, as kubelet files its cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// What a cgroup path says about the processes in it. Every field is
/// optional: a systemd service has a unit and a slice but no container, a
/// pod-level cgroup has a pod but no container, the root has nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Container {
    /// The container runtime, when the path names a container and says
    /// which runtime made it (a bare id under a kubelet pod does not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// The full container id (lowercase hex as in the path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Kubernetes pod uid in its canonical dashed form (systemd paths
    /// escape '-' as '_': undone here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The pod's QoS class, or the QoS tier's for a tier-level cgroup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<Qos>,
    /// The innermost systemd unit (`nginx.service`, `session-3.scope`,
    /// `docker-<id>.scope`), when the path has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The innermost slice (`system.slice`, `kubepods-burstable-pod..slice`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
}

/// Every runtime here names a container by a sha256-sized id: 64 hex digits.
const ID_LEN: usize = 64;
/// `docker ps` shows the first 12 digits; people recognise those.
const SHORT_ID_LEN: usize = 12;
/// Enough of a pod uid (its first dash-free group) to pick the pod out.
const SHORT_UID_LEN: usize = 8;
/// systemd's `UNIT_NAME_MAX` is 256 including the terminating NUL.
const UNIT_NAME_MAX: usize = 255;

/// Container cgroups named `<prefix><64 hex>`, with `.scope` under a systemd
/// cgroup driver and without under cgroupfs. The systemd forms all come from
/// runc's (and crun's) systemd driver, which expands an OCI `cgroupsPath` of
/// `<slice>:<prefix>:<id>` into `<expanded slice>/<prefix>-<id>.scope`
/// (opencontainers/cgroups `systemd.ExpandSlice` and the scope naming).
const PREFIXES: &[(&str, Runtime)] = &[
    // dockerd with the systemd driver passes `system.slice:docker:<id>`
    // (`/system.slice/docker-<id>.scope`); under kubelet via dockershim or
    // cri-dockerd the slice is the pod's.
    ("docker-", Runtime::Docker),
    // containerd's CRI plugin with `SystemdCgroup = true` passes
    // `<pod slice>:cri-containerd:<id>`.
    ("cri-containerd-", Runtime::Containerd),
    // nerdctl (a containerd client) passes `system.slice:nerdctl:<id>`
    // (`user.slice` when rootless); the runtime is still containerd.
    ("nerdctl-", Runtime::Containerd),
    // CRI-O (internal/config/cgmgr): containers in `crio-<id>.scope` under
    // systemd and `<parent>/crio-<id>` under cgroupfs; the pod sandbox's
    // cgroup is a plain `crio-<id>` directory even under systemd. Its conmon
    // monitor goes to `crio-conmon-<id>.scope` (cgroupfs:
    // `<parent>/crio-conmon-<id>`): conmon is not the container, but it
    // exists only for that container and reaps its processes, so it is
    // attributed to it.
    ("crio-conmon-", Runtime::Crio),
    ("crio-", Runtime::Crio),
    // Podman (libpod): `libpod-<id>.scope` under `machine.slice` (rootful)
    // or the user manager's `user.slice` (rootless), cgroupfs
    // `/libpod_parent/libpod-<id>`; conmon in `libpod-conmon-<id>.scope`,
    // attributed to its container as for CRI-O. (Podman's cgroupfs conmon
    // shares `/libpod_parent/conmon`, which names no container.)
    ("libpod-conmon-", Runtime::Podman),
    ("libpod-", Runtime::Podman),
];

/// Unit types whose processes live in their own cgroup (systemd.unit(5));
/// slices hold units, never processes, and are kept apart.
const UNIT_SUFFIXES: &[&str] = &[".service", ".scope", ".socket", ".mount", ".swap"];
const SLICE_SUFFIX: &str = ".slice";

/// What one path component means on its own (given the one before it).
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    /// kubelet's `kubepods` root (under whatever `--cgroup-root` it has).
    KubeRoot,
    /// A QoS tier under it: `burstable` or `besteffort` (Guaranteed pods
    /// have no tier: they sit directly under the root).
    KubeTier(Qos),
    /// A pod's cgroup, `pod<uid>`.
    Pod {
        qos: Qos,
        uid: String,
    },
    /// A container's cgroup.
    Container {
        runtime: Option<Runtime>,
        id: String,
    },
    Other,
}

impl Container {
    /// Reads a cgroup v2 path (see the module comment for what is known).
    pub fn parse(path: &str) -> Container {
        let mut found = Container::default();
        if path.split('/').any(|name| name == "." || name == "..") {
            return found;
        }
        let mut prev = Piece::Other;
        let mut prev_name = None;
        // Empty components (the leading '/', a doubled one) mean nothing.
        for name in path.split('/').filter(|name| !name.is_empty()) {
            found.note_unit_or_slice(name);
            let piece = classify(name, prev_name, &prev);
            found.apply(&piece);
            prev = piece;
            prev_name = Some(name);
        }
        // containerd without kubelet puts a container in `/<namespace>/<id>`
        // (nerdctl and ctr under cgroupfs: `/default/<id>`). The namespace
        // can be anything, so the id alone is taken, from the last component
        // only, and only when nothing above named a container: the runtime is
        // unknown (dockerd with a custom `--cgroup-parent` does the same).
        if found.id.is_none() {
            found.id = prev_name
                .filter(|name| is_container_id(name))
                .map(str::to_owned);
        }
        found
    }

    /// The short id users recognise: the first 12 characters of `id`
    /// (docker ps convention).
    pub fn short_id(&self) -> Option<&str> {
        self.id.as_deref().map(|id| head(id, SHORT_ID_LEN))
    }

    /// A brief label for text output, without brackets: `docker
    /// 3f2a9c1e0b7d`, `crio 0123456789ab pod 5d4c3b2a` (the uid's first 8),
    /// `container 0123456789ab pod 5d4c3b2a` when the runtime is unknown,
    /// `pod 5d4c3b2a` for a pod-level cgroup, the unit (`nginx.service`) for
    /// anything else in a unit, None for the root or anything unrecognised.
    pub fn brief(&self) -> Option<String> {
        let container = self.short_id().map(|short| {
            let runtime = self.runtime.map_or("container", Runtime::name);
            format!("{runtime} {short}")
        });
        let pod = self
            .pod_uid
            .as_deref()
            .map(|uid| format!("pod {}", head(uid, SHORT_UID_LEN)));
        match (container, pod) {
            (Some(container), Some(pod)) => Some(format!("{container} {pod}")),
            (Some(one), None) | (None, Some(one)) => Some(one),
            (None, None) => self.unit.clone(),
        }
    }

    /// Whether `prefix` (case-insensitive, at least 1 char) is a prefix of
    /// the container id or of the pod uid (dashed or not).
    pub fn matches(&self, prefix: &str) -> bool {
        if prefix.is_empty() {
            return false;
        }
        let id = self
            .id
            .as_deref()
            .is_some_and(|id| starts_with_ignore_case(id, prefix));
        let uid = self.pod_uid.as_deref().is_some_and(|uid| {
            starts_with_ignore_case(uid, prefix)
                || starts_with_ignore_case(&uid.replace('-', ""), prefix)
        });
        id || uid
    }

    /// Keeps the innermost unit and slice.
    fn note_unit_or_slice(&mut self, name: &str) {
        if !is_unit_name(name) {
            return;
        }
        if name.ends_with(SLICE_SUFFIX) {
            self.slice = Some(name.to_owned());
        } else if UNIT_SUFFIXES.iter().any(|suffix| name.ends_with(suffix)) {
            self.unit = Some(name.to_owned());
        }
    }

    fn apply(&mut self, piece: &Piece) {
        match piece {
            // A kubelet level describes everything below it: what was found
            // above (a kind node's own container, an outer pod) is not ours.
            Piece::KubeRoot => self.enter_kubelet(None, None),
            Piece::KubeTier(qos) => self.enter_kubelet(Some(*qos), None),
            Piece::Pod { qos, uid } => self.enter_kubelet(Some(*qos), Some(uid.clone())),
            // A container inside a pod is still in that pod.
            Piece::Container { runtime, id } => {
                self.runtime = *runtime;
                self.id = Some(id.clone());
            }
            // Anything else leaves what encloses it in place: a scope's
            // `init` or `container` child (a delegated subtree: cgroup v2
            // keeps processes out of inner nodes, so the payload's own
            // systemd, or crun, moves them one level down) is still the
            // container, a service's sub-cgroup still the service.
            Piece::Other => {}
        }
    }

    fn enter_kubelet(&mut self, qos: Option<Qos>, pod_uid: Option<String>) {
        self.runtime = None;
        self.id = None;
        self.qos = qos;
        self.pod_uid = pod_uid;
    }
}

/// What `name` is, given the component above it (`prev_name`, already
/// classified as `prev`).
fn classify(name: &str, prev_name: Option<&str>, prev: &Piece) -> Piece {
    if let Some(piece) = kubelet_slice(name) {
        return piece;
    }
    if let Some(piece) = kubelet_dir(name, prev) {
        return piece;
    }
    if let Some((runtime, id)) = prefixed_container(name) {
        return container(Some(runtime), id);
    }
    if is_container_id(name) {
        // dockerd's cgroupfs driver: `/docker/<id>` (its default cgroup
        // parent is `/docker`).
        if prev_name == Some("docker") {
            return container(Some(Runtime::Docker), name);
        }
        // kubelet's cgroupfs driver: the runtime makes `<pod cgroup>/<id>`.
        // containerd's CRI plugin and cri-dockerd (dockershim) both do, so
        // the runtime is not known from the path. (CRI-O says `crio-<id>`.)
        if matches!(prev, Piece::Pod { .. }) {
            return container(None, name);
        }
    }
    Piece::Other
}

fn container(runtime: Option<Runtime>, id: &str) -> Piece {
    Piece::Container {
        runtime,
        id: id.to_owned(),
    }
}

/// kubelet's systemd driver (pkg/kubelet/cm/cgroup_manager_linux.go,
/// `CgroupName.ToSystemd`): the cgroupfs-style levels (`kubepods`,
/// `burstable`, `pod<uid>`) each have '-' escaped to '_', are joined with
/// '-' and suffixed `.slice`, and systemd nests a slice in every prefix of
/// that name. So the path reads `kubepods.slice/kubepods-burstable.slice/
/// kubepods-burstable-pod<uid_with_underscores>.slice`, Guaranteed pods
/// `kubepods.slice/kubepods-pod<uid>.slice`. A `--cgroup-root` adds words in
/// front (kind: `kubelet-kubepods-...`), hence the search for `kubepods`.
fn kubelet_slice(name: &str) -> Option<Piece> {
    let stem = name.strip_suffix(SLICE_SUFFIX)?;
    let mut words = stem.split('-');
    words.find(|word| *word == "kubepods")?;
    match (words.next(), words.next(), words.next()) {
        (None, _, _) => Some(Piece::KubeRoot),
        (Some(word), None, _) => qos_tier(word)
            .map(Piece::KubeTier)
            .or_else(|| pod(Qos::Guaranteed, word, true)),
        (Some(tier), Some(word), None) => pod(qos_tier(tier)?, word, true),
        _ => None,
    }
}

/// kubelet's cgroupfs driver uses those levels as plain directories:
/// `/kubepods/burstable/pod<uid>`, `/kubepods/besteffort/pod<uid>`,
/// Guaranteed `/kubepods/pod<uid>` (qos_container_manager_linux.go makes the
/// tiers, pod_container_manager_linux.go the `pod` + uid directories).
fn kubelet_dir(name: &str, prev: &Piece) -> Option<Piece> {
    if name == "kubepods" {
        return Some(Piece::KubeRoot);
    }
    match prev {
        Piece::KubeRoot => qos_tier(name)
            .map(Piece::KubeTier)
            .or_else(|| pod(Qos::Guaranteed, name, false)),
        Piece::KubeTier(qos) => pod(*qos, name, false),
        _ => None,
    }
}

/// The QoS tiers kubelet makes cgroups for.
fn qos_tier(word: &str) -> Option<Qos> {
    match word {
        "burstable" => Some(Qos::Burstable),
        "besteffort" => Some(Qos::BestEffort),
        _ => None,
    }
}

/// `pod<uid>`, with the uid's dashes written as '_' when `systemd_escaped`.
fn pod(qos: Qos, word: &str, systemd_escaped: bool) -> Option<Piece> {
    let uid = word.strip_prefix("pod")?;
    let uid = if systemd_escaped {
        uid.replace('_', "-")
    } else {
        uid.to_owned()
    };
    is_pod_uid(&uid).then_some(Piece::Pod { qos, uid })
}

/// A pod uid as kubelet sees them: the API server's UUIDs (8-4-4-4-12 hex),
/// or a static pod's, which kubelet derives as 32 hex digits of a hash of
/// the manifest (pkg/kubelet/config/common.go). A static pod whose manifest
/// sets some other uid is not recognised.
fn is_pod_uid(uid: &str) -> bool {
    let bytes = uid.as_bytes();
    match bytes.len() {
        32 => bytes.iter().all(u8::is_ascii_hexdigit),
        36 => bytes.iter().enumerate().all(|(at, byte)| match at {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

/// `<prefix><id>` or `<prefix><id>.scope` for a prefix in [`PREFIXES`].
fn prefixed_container(name: &str) -> Option<(Runtime, &str)> {
    let base = name.strip_suffix(".scope").unwrap_or(name);
    PREFIXES.iter().find_map(|(prefix, runtime)| {
        let id = base.strip_prefix(prefix)?;
        is_container_id(id).then_some((*runtime, id))
    })
}

/// Exactly 64 lowercase hex digits, as every runtime here writes ids.
fn is_container_id(text: &str) -> bool {
    text.len() == ID_LEN
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// A systemd unit or slice name: a non-empty name and a type suffix, in
/// systemd's unit-name alphabet (unit_name_is_valid: ASCII letters and
/// digits, `:-_.\` and `@` for instances; escapes are `\x2d` and the like).
fn is_unit_name(name: &str) -> bool {
    let Some((stem, _suffix)) = name.rsplit_once('.') else {
        return false;
    };
    !stem.is_empty()
        && name.len() <= UNIT_NAME_MAX
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b":-_.\\@".contains(&byte))
}

/// The first `len` bytes of `text`, or all of it when shorter (or when
/// `len` would split a character: only hand-made values can hold one).
fn head(text: &str, len: usize) -> &str {
    text.get(..len).unwrap_or(text)
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1e0b7d4a5f8e6c2b1d0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a";
    /// `UID` as kubelet's systemd driver escapes it.
    const UID_ESCAPED: &str = "5d4c3b2a_1f0e_4d9c_8b7a_6f5e4d3c2b1a";

    fn parse(path: &str) -> Container {
        Container::parse(path)
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn the_test_ids_are_well_formed() {
        assert!(is_container_id(ID) && is_container_id(ID2));
        assert!(is_pod_uid(UID));
    }

    // Docker.

    #[test]
    fn docker_systemd_driver() {
        let found = parse(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(
            found,
            Container {
                runtime: Some(Runtime::Docker),
                id: some(ID),
                unit: Some(format!("docker-{ID}.scope")),
                slice: some("system.slice"),
                ..Container::default()
            }
        );
        assert_eq!(found.brief().as_deref(), Some("docker 3f2a9c1e0b7d"));
    }

    #[test]
    fn a_scope_sub_cgroup_is_still_the_container() {
        for sub in ["init", "container", "init/deeper"] {
            let found = parse(&format!("/system.slice/docker-{ID}.scope/{sub}"));
            assert_eq!(found.runtime, Some(Runtime::Docker), "{sub}");
            assert_eq!(found.id.as_deref(), Some(ID), "{sub}");
            assert_eq!(found.unit, Some(format!("docker-{ID}.scope")), "{sub}");
        }
    }

    #[test]
    fn docker_cgroupfs_driver() {
        let found = parse(&format!("/docker/{ID}"));
        assert_eq!(found.runtime, Some(Runtime::Docker));
        assert_eq!(found.id.as_deref(), Some(ID));
        assert_eq!((found.unit, found.slice), (None, None));
        // Docker in docker, cgroupfs inside: the inner one.
        let found = parse(&format!("/docker/{ID}/docker/{ID2}"));
        assert_eq!(found.id.as_deref(), Some(ID2));
    }

    #[test]
    fn docker_under_kubelet_dockershim() {
        let found = parse(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_ESCAPED}.slice/docker-{ID}.scope"
        ));
        assert_eq!(found.runtime, Some(Runtime::Docker));
        assert_eq!(found.id.as_deref(), Some(ID));
        assert_eq!(found.pod_uid.as_deref(), Some(UID));
        assert_eq!(found.qos, Some(Qos::Burstable));
        assert_eq!(
            found.brief().as_deref(),
            Some("docker 3f2a9c1e0b7d pod 5d4c3b2a")
        );
    }

    // containerd.

    #[test]
    fn containerd_cri_systemd_burstable() {
        let found = parse(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_ESCAPED}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(
            found,
            Container {
                runtime: Some(Runtime::Containerd),
                id: some(ID),
                pod_uid: some(UID),
                qos: Some(Qos::Burstable),
                unit: Some(format!("cri-containerd-{ID}.scope")),
                slice: Some(format!("kubepods-burstable-pod{UID_ESCAPED}.slice")),
            }
        );
        assert_eq!(
            found.brief().as_deref(),
            Some("containerd 3f2a9c1e0b7d pod 5d4c3b2a")
        );
    }

    #[test]
    fn containerd_cri_systemd_guaranteed() {
        let found = parse(&format!(
            "/kubepods.slice/kubepods-pod{UID_ESCAPED}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(found.runtime, Some(Runtime::Containerd));
        assert_eq!(found.id.as_deref(), Some(ID));
        assert_eq!(found.pod_uid.as_deref(), Some(UID));
        assert_eq!(found.qos, Some(Qos::Guaranteed));
    }

    #[test]
    fn containerd_cri_systemd_besteffort() {
        let found = parse(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_ESCAPED}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(found.runtime, Some(Runtime::Containerd));
        assert_eq!(found.pod_uid.as_deref(), Some(UID));
        assert_eq!(found.qos, Some(Qos::BestEffort));
    }

    #[test]
    fn kubelet_cgroupfs_driver_names_no_runtime() {
        for (path, qos) in [
            (format!("/kubepods/burstable/pod{UID}/{ID}"), Qos::Burstable),
            (
                format!("/kubepods/besteffort/pod{UID}/{ID}"),
                Qos::BestEffort,
            ),
            (format!("/kubepods/pod{UID}/{ID}"), Qos::Guaranteed),
        ] {
            let found = parse(&path);
            assert_eq!(found.runtime, None, "{path}");
            assert_eq!(found.id.as_deref(), Some(ID), "{path}");
            assert_eq!(found.pod_uid.as_deref(), Some(UID), "{path}");
            assert_eq!(found.qos, Some(qos), "{path}");
            assert_eq!(
                found.brief().as_deref(),
                Some("container 3f2a9c1e0b7d pod 5d4c3b2a")
            );
        }
    }

    #[test]
    fn nerdctl_is_containerd() {
        let found = parse(&format!("/system.slice/nerdctl-{ID}.scope"));
        assert_eq!(found.runtime, Some(Runtime::Containerd));
        assert_eq!(found.id.as_deref(), Some(ID));
    }

    #[test]
    fn containerd_namespace_path_gives_an_id_but_no_runtime() {
        let found = parse(&format!("/default/{ID}"));
        assert_eq!((found.runtime, found.id.as_deref()), (None, Some(ID)));
        assert_eq!(found.brief().as_deref(), Some("container 3f2a9c1e0b7d"));
        // Only as the last component: anything below it is unknown ground.
        assert_eq!(parse(&format!("/default/{ID}/sub")).id, None);
        // And not when a container was already named above.
        let found = parse(&format!("/system.slice/docker-{ID}.scope/{ID2}"));
        assert_eq!(
            (found.runtime, found.id.as_deref()),
            (Some(Runtime::Docker), Some(ID))
        );
    }

    // CRI-O.

    #[test]
    fn crio_systemd_under_kubelet() {
        let found = parse(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_ESCAPED}.slice/crio-{ID2}.scope"
        ));
        assert_eq!(found.runtime, Some(Runtime::Crio));
        assert_eq!(found.id.as_deref(), Some(ID2));
        assert_eq!(found.pod_uid.as_deref(), Some(UID));
        assert_eq!(
            found.brief().as_deref(),
            Some("crio 0123456789ab pod 5d4c3b2a")
        );
    }

    #[test]
    fn crio_conmon_is_attributed_to_its_container() {
        let found = parse(&format!(
            "/kubepods.slice/kubepods-pod{UID_ESCAPED}.slice/crio-conmon-{ID2}.scope"
        ));
        assert_eq!(found.runtime, Some(Runtime::Crio));
        assert_eq!(found.id.as_deref(), Some(ID2));
        assert_eq!(found.unit, Some(format!("crio-conmon-{ID2}.scope")));
        let found = parse(&format!("/system.slice/crio-conmon-{ID2}.scope"));
        assert_eq!(found.id.as_deref(), Some(ID2));
    }

    #[test]
    fn crio_cgroupfs_and_sandbox_forms() {
        for path in [
            format!("/kubepods/burstable/pod{UID}/crio-{ID2}"),
            format!("/kubepods/burstable/pod{UID}/crio-conmon-{ID2}"),
            format!("/crio/crio-{ID2}"),
            // The sandbox cgroup CRI-O makes under a systemd pod slice.
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_ESCAPED}.slice/crio-{ID2}"
            ),
            // crun configures a `container` child of the scope.
            format!("/kubepods.slice/kubepods-pod{UID_ESCAPED}.slice/crio-{ID2}.scope/container"),
        ] {
            let found = parse(&path);
            assert_eq!(found.runtime, Some(Runtime::Crio), "{path}");
            assert_eq!(found.id.as_deref(), Some(ID2), "{path}");
        }
    }

    // Podman.

    #[test]
    fn podman_rootful_and_conmon() {
        for path in [
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/machine.slice/machine-libpod_pod_{ID2}.slice/libpod-{ID}.scope"),
        ] {
            let found = parse(&path);
            assert_eq!(found.runtime, Some(Runtime::Podman), "{path}");
            assert_eq!(found.id.as_deref(), Some(ID), "{path}");
            assert_eq!(found.pod_uid, None, "{path}");
        }
    }

    #[test]
    fn podman_rootless() {
        let found = parse(&format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
        ));
        assert_eq!(found.runtime, Some(Runtime::Podman));
        assert_eq!(found.id.as_deref(), Some(ID));
        assert_eq!(found.slice.as_deref(), Some("user.slice"));
        assert_eq!(found.brief().as_deref(), Some("podman 3f2a9c1e0b7d"));
    }

    #[test]
    fn podman_cgroupfs() {
        let found = parse(&format!("/libpod_parent/libpod-{ID}"));
        assert_eq!(
            (found.runtime, found.id.as_deref()),
            (Some(Runtime::Podman), Some(ID))
        );
        // The shared conmon cgroup names no container.
        assert_eq!(parse("/libpod_parent/conmon"), Container::default());
    }

    // kubelet levels without a container.

    #[test]
    fn pod_level_cgroup() {
        for path in [
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_ESCAPED}.slice"
            ),
            format!("/kubepods/burstable/pod{UID}"),
        ] {
            let found = parse(&path);
            assert_eq!((found.runtime, found.id.as_ref()), (None, None), "{path}");
            assert_eq!(found.pod_uid.as_deref(), Some(UID), "{path}");
            assert_eq!(found.qos, Some(Qos::Burstable), "{path}");
            assert_eq!(found.brief().as_deref(), Some("pod 5d4c3b2a"), "{path}");
        }
    }

    #[test]
    fn qos_tiers_and_root() {
        let found = parse("/kubepods.slice/kubepods-besteffort.slice");
        assert_eq!(
            (found.qos, found.pod_uid.as_ref()),
            (Some(Qos::BestEffort), None)
        );
        assert_eq!(found.slice.as_deref(), Some("kubepods-besteffort.slice"));
        assert_eq!(found.brief(), None);
        assert_eq!(parse("/kubepods/burstable").qos, Some(Qos::Burstable));
        assert_eq!(parse("/kubepods.slice").qos, None);
        assert_eq!(parse("/kubepods").qos, None);
        // A directory called `burstable` elsewhere is nothing.
        assert_eq!(parse("/burstable").qos, None);
    }

    #[test]
    fn static_pod_uid_is_32_hex() {
        let uid = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
        let found = parse(&format!(
            "/kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(found.pod_uid.as_deref(), Some(uid));
        let found = parse(&format!("/kubepods/pod{uid}/{ID}"));
        assert_eq!(found.pod_uid.as_deref(), Some(uid));
    }

    #[test]
    fn kubelet_under_a_cgroup_root_kind() {
        // kind: the node is a docker container; kubelet runs with
        // `--cgroup-root=/kubelet` and containerd inside it.
        let found = parse(&format!(
            "/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
             kubelet-kubepods-besteffort-pod{UID_ESCAPED}.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(found.runtime, Some(Runtime::Containerd));
        assert_eq!(found.id.as_deref(), Some(ID));
        assert_eq!(found.pod_uid.as_deref(), Some(UID));
        assert_eq!(found.qos, Some(Qos::BestEffort));
    }

    #[test]
    fn a_pod_inside_a_container_is_not_that_container() {
        let found = parse(&format!(
            "/system.slice/docker-{ID2}.scope/kubepods/besteffort/pod{UID}"
        ));
        assert_eq!((found.runtime, found.id.as_ref()), (None, None));
        assert_eq!(found.pod_uid.as_deref(), Some(UID));
        assert_eq!(found.brief().as_deref(), Some("pod 5d4c3b2a"));
    }

    #[test]
    fn malformed_pod_uids_are_not_pods() {
        for path in [
            "/kubepods/burstable/pod5d4c3b2a".to_owned(),
            format!("/kubepods/burstable/pod{UID_ESCAPED}"),
            format!(
                "/kubepods.slice/kubepods-pod{}.slice",
                UID.replace('-', "_").replace('a', "g")
            ),
            format!("/kubepods.slice/kubepods-burstable-extra-pod{UID_ESCAPED}.slice"),
            format!("/kubepods.slice/kubepods-unknown-pod{UID_ESCAPED}.slice"),
        ] {
            assert_eq!(parse(&path).pod_uid, None, "{path}");
        }
    }

    // systemd units.

    #[test]
    fn plain_systemd_units() {
        let found = parse("/system.slice/nginx.service");
        assert_eq!(
            found,
            Container {
                unit: some("nginx.service"),
                slice: some("system.slice"),
                ..Container::default()
            }
        );
        assert_eq!(found.brief().as_deref(), Some("nginx.service"));
        assert_eq!(found.short_id(), None);

        let found = parse("/user.slice/user-1000.slice/session-3.scope");
        assert_eq!(found.unit.as_deref(), Some("session-3.scope"));
        assert_eq!(found.slice.as_deref(), Some("user-1000.slice"));

        let found = parse("/system.slice/system-getty.slice/getty@tty1.service");
        assert_eq!(found.unit.as_deref(), Some("getty@tty1.service"));
        assert_eq!(found.slice.as_deref(), Some("system-getty.slice"));

        let found =
            parse(r"/system.slice/system-systemd\x2dfsck.slice/systemd-fsck@dev-sda1.service");
        assert_eq!(
            found.slice.as_deref(),
            Some(r"system-systemd\x2dfsck.slice")
        );
        assert_eq!(parse("/init.scope").brief().as_deref(), Some("init.scope"));
        assert_eq!(
            parse("/system.slice/dev-hugepages.mount").unit.as_deref(),
            Some("dev-hugepages.mount")
        );
    }

    #[test]
    fn units_keep_their_sub_cgroups_and_the_innermost_wins() {
        let found = parse("/system.slice/nginx.service/workers/1");
        assert_eq!(found.unit.as_deref(), Some("nginx.service"));
        let found = parse("/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service");
        assert_eq!(found.unit.as_deref(), Some("dbus.service"));
        assert_eq!(found.slice.as_deref(), Some("app.slice"));
        // systemd inside a container: the container still names it.
        let found = parse(&format!(
            "/system.slice/docker-{ID}.scope/system.slice/cron.service"
        ));
        assert_eq!(found.unit.as_deref(), Some("cron.service"));
        assert_eq!(found.brief().as_deref(), Some("docker 3f2a9c1e0b7d"));
    }

    // What is not a container.

    #[test]
    fn root_and_empty_yield_nothing() {
        for path in ["", "/", "//", "///"] {
            let found = parse(path);
            assert_eq!(found, Container::default(), "{path:?}");
            assert_eq!(found.brief(), None);
        }
    }

    #[test]
    fn ids_must_be_64_lowercase_hex() {
        let short = &ID[..63];
        let upper = ID.to_ascii_uppercase();
        let not_hex = format!("{}g", &ID[..63]);
        for bad in [
            short.to_owned(),
            format!("{ID}0"),
            upper,
            not_hex,
            format!("{}\u{e9}", &ID[..62]),
        ] {
            for path in [
                format!("/system.slice/docker-{bad}.scope"),
                format!("/docker/{bad}"),
                format!("/kubepods/pod{UID}/{bad}"),
                format!("/default/{bad}"),
                format!("/machine.slice/libpod-{bad}.scope"),
            ] {
                assert_eq!(parse(&path).id, None, "{path}");
            }
        }
        assert_eq!(parse("/system.slice/docker-.scope").id, None);
        // Only scopes (or cgroupfs directories) hold containers.
        assert_eq!(
            parse(&format!("/system.slice/docker-{ID}.service")).id,
            None
        );
    }

    #[test]
    fn garbage_never_panics_nor_names_a_container() {
        let long_junk = format!("/{}", "a/".repeat(50_000));
        let long_component = format!("/system.slice/{}.service", "x".repeat(100_000));
        for path in [
            long_junk.as_str(),
            long_component.as_str(),
            "/système.slice/ñginx.service",
            "/\u{1b}[2J.service",
            "\u{0}\u{0}",
            "/.service",
            "/.slice",
            "docker",
            "/docker",
            "/kubepods/",
        ] {
            let found = parse(path);
            assert_eq!((found.id.as_ref(), found.runtime), (None, None), "{path:?}");
            assert_eq!(
                (found.unit.as_ref(), found.pod_uid.as_ref()),
                (None, None),
                "{path:?}"
            );
        }
    }

    #[test]
    fn dot_components_are_refused_whole() {
        for path in [
            format!("/system.slice/../docker-{ID}.scope"),
            format!("/system.slice/docker-{ID}.scope/.."),
            format!("/./docker/{ID}"),
        ] {
            assert_eq!(parse(&path), Container::default(), "{path}");
        }
    }

    #[test]
    fn a_path_without_leading_slash_reads_the_same() {
        assert_eq!(
            parse(&format!("system.slice/docker-{ID}.scope")),
            parse(&format!("/system.slice/docker-{ID}.scope"))
        );
    }

    // The accessors.

    #[test]
    fn short_id_and_brief_on_hand_made_values() {
        let odd = Container {
            id: some("abc"),
            pod_uid: some("\u{20ac}\u{20ac}\u{20ac}\u{20ac}\u{20ac}"),
            ..Container::default()
        };
        assert_eq!(odd.short_id(), Some("abc"));
        // The 8th byte splits a character: the whole uid is shown, no panic.
        assert_eq!(
            odd.brief().as_deref(),
            Some("container abc pod \u{20ac}\u{20ac}\u{20ac}\u{20ac}\u{20ac}")
        );
    }

    #[test]
    fn matches_id_and_pod_uid_prefixes() {
        let found = parse(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_ESCAPED}.slice/crio-{ID2}.scope"
        ));
        assert!(found.matches("0"));
        assert!(found.matches("0123456789AB"));
        assert!(found.matches(ID2));
        assert!(found.matches("5d4c3b2a-1f0e"));
        assert!(found.matches("5D4C3B2A1F0E"));
        assert!(found.matches(UID));
        assert!(found.matches(&UID.replace('-', "")));
        assert!(!found.matches(""));
        assert!(!found.matches("-"));
        assert!(!found.matches("1"));
        assert!(!found.matches(&format!("{ID2}0")));
        assert!(!found.matches("\u{e9}"));
        assert!(!parse("/system.slice/nginx.service").matches("nginx"));
        assert!(!Container::default().matches("0"));
    }

    #[test]
    fn serializes_only_what_is_known() {
        let found = parse(&format!("/kubepods/besteffort/pod{UID}/crio-{ID2}"));
        let json = serde_json::to_value(&found).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "runtime": "crio",
                "id": ID2,
                "pod_uid": UID,
                "qos": "besteffort",
            })
        );
        assert_eq!(serde_json::to_string(&Container::default()).unwrap(), "{}");
        assert_eq!(serde_json::to_value(Qos::Guaranteed).unwrap(), "guaranteed");
        for runtime in [
            Runtime::Docker,
            Runtime::Containerd,
            Runtime::Crio,
            Runtime::Podman,
        ] {
            assert_eq!(serde_json::to_value(runtime).unwrap(), runtime.name());
        }
    }
}
