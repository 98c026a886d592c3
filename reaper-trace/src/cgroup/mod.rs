//! Cgroups as the tool names them: the kernel gives a cgroup v2 id (the
//! directory's inode number); userspace resolves it to a path once (live,
//! from the cgroup filesystem; replay, from the recording's `CGROUP`
//! records), and the path says which container or unit it is.
//!
//! The one home of cgroup naming: [`container`] reads a path as a container
//! or unit (pure text), [`fs`] reads this machine's cgroup filesystems
//! (mounts, id → path, `pids.max`), and this file keeps the id → name map
//! every later stage shares.

pub mod container;
pub mod fs;

use std::{collections::HashMap, sync::Arc};

use serde::Serialize;

use self::container::Container;

/// A resolved cgroup: its id, its path below the v2 root, and what the
/// path says about the container or unit running there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Cgroup {
    pub id: u64,
    /// Below the cgroup v2 root, starting with `/`.
    pub path: String,
    pub container: Container,
}

impl Cgroup {
    pub fn new(id: u64, path: &str) -> Cgroup {
        Cgroup {
            id,
            path: path.to_owned(),
            container: Container::parse(path),
        }
    }

    /// A cgroup whose path was not found (it was gone before it could be
    /// resolved): only its id is known.
    pub fn unnamed(id: u64) -> Cgroup {
        Cgroup {
            id,
            path: String::new(),
            container: Container::default(),
        }
    }

    /// What text output shows: the container or unit, else the path.
    pub fn brief(&self) -> String {
        match self.container.brief() {
            Some(brief) => crate::trace::escape::escape(&brief),
            None if self.path.is_empty() => format!("cgroup {}", self.id),
            None => crate::trace::escape::escape(&self.path),
        }
    }
}

/// The names known so far, by id. Ids the kernel reuses are not a concern:
/// cgroup v2 ids are 64-bit and never reused while the system runs.
#[derive(Clone, Debug, Default)]
pub struct CgroupNames {
    by_id: HashMap<u64, Arc<Cgroup>>,
}

impl CgroupNames {
    pub fn insert(&mut self, id: u64, path: &str) -> Arc<Cgroup> {
        let cgroup = Arc::new(Cgroup::new(id, path));
        self.by_id.insert(id, Arc::clone(&cgroup));
        cgroup
    }

    pub fn get(&self, id: u64) -> Option<&Arc<Cgroup>> {
        self.by_id.get(&id)
    }

    /// Cgroup `id`, named when its path is known; `None` for id 0 (no
    /// cgroup: a free, or a recording made before ABI version 2).
    pub fn cgroup(&self, id: u64) -> Option<Cgroup> {
        if id == 0 {
            return None;
        }
        Some(
            self.get(id)
                .map_or_else(|| Cgroup::unnamed(id), |named| (**named).clone()),
        )
    }

    pub fn contains(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Every named cgroup.
    pub fn iter(&self) -> impl Iterator<Item = &Cgroup> {
        self.by_id.values().map(|c| &**c)
    }

    /// Forgets a cgroup that is gone (the daemon's memory stays bounded).
    pub fn remove(&mut self, id: u64) {
        self.by_id.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
