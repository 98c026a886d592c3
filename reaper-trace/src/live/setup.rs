//! Before the loop: what to follow, attaching the programs, the /proc seed,
//! the command held at its gate, and the recording's header.

use std::{os::unix::ffi::OsStrExt as _, path::Path};

use anyhow::Context as _;

use super::TraceOptions;
use crate::{
    cgroup::fs::{CgroupFs, CgroupResolver, container_cgroup},
    host::{
        command::{self, GatedChild},
        procfs,
    },
    kernel::{CgroupTarget, FollowSpec, SetupError, Tracer, TracerOptions},
    recording::{
        Meta,
        file::{self, Recorder, machine_meta},
    },
    trace::{
        clock::ClockRef,
        escape::{escape, escape_bytes},
        follow::initial_pids,
        host_facts::SeedProcess,
    },
};

/// Everything the loop starts with.
pub struct Started {
    pub tracer: Tracer,
    pub clock: ClockRef,
    /// The processes (and zombies) that exist now: all, or the followed ones.
    pub seed: Vec<SeedProcess>,
    /// What is traced, for people: "the whole system", "command ... (pid N)".
    pub scope: String,
    pub recorder: Option<Recorder>,
    /// The command, attached and followed but not yet running.
    pub command: Option<GatedChild>,
    /// Names the cgroup ids the kernel reports.
    pub cgroups: CgroupResolver,
}

/// Attaches the programs and prepares the rest; the command, if any, is
/// spawned but held until [`GatedChild::release`].
pub fn start(
    options: &TraceOptions,
    record: Option<&Path>,
    record_force: bool,
) -> anyhow::Result<Started> {
    // Before anything starts: an existing path is refused with nothing done.
    if let Some(path) = record {
        file::refuse_existing(path, record_force)?;
    }
    let cgroup_fs = CgroupFs::discover();
    let follow = follow_spec(options, &cgroup_fs)?;
    let has_command = !options.command.is_empty();
    if has_command {
        command::become_subreaper().context("becoming a child subreaper")?;
    }
    let mut tracer = Tracer::start(&TracerOptions {
        follow: follow.clone(),
        ringbuf_bytes: options.ringbuf_bytes,
        // A sixteenth of the buffer: woken well before it fills, rarely
        // otherwise; the loop's tick reads whatever is there meanwhile.
        wakeup_bytes: options.ringbuf_bytes / 16,
        thread_events: options.thread_events,
        probe_log: options.probe_log,
        // The stacks are copied at the fork's and rt_sigaction's entry.
        stacks: options.syscall_hooks
            && options
                .stacks
                .unwrap_or(!options.pids.is_empty() || options.comm.is_some() || has_command),
        syscall_hooks: options.syscall_hooks,
    })?;
    let clock = ClockRef::now();
    // Read /proc again now that the probes run (follow_spec read it before,
    // to know what to follow): a zombie reaped in between must not be
    // seeded, and one that appears from here on is traced anyway.
    let seed: Vec<SeedProcess> = match &follow {
        // Only a command, not started yet: nothing exists to seed.
        Some(f) if f.pids.is_empty() => Vec::new(),
        _ => {
            let mut seed: Vec<SeedProcess> = procfs::snapshot()
                .into_iter()
                .filter(|p| follow.as_ref().is_none_or(|f| f.pids.contains(&p.pid)))
                .collect();
            // Zombies older than the trace are named after their container.
            cgroup_fs.name_seed(&mut seed);
            seed
        }
    };
    let mut gated = None;
    if has_command {
        let child = command::spawn_gated(&options.command, options.run_as)?;
        tracer.follow(child.pid)?;
        gated = Some(child);
    }
    let scope = match (&follow, &gated) {
        (None, _) => "the whole system".to_owned(),
        (Some(_), Some(child)) => format!(
            "command {} (pid {}) and its descendants",
            escape_bytes(options.command.join(std::ffi::OsStr::new(" ")).as_bytes()),
            child.pid
        ),
        (Some(f), None) => describe_follow(f),
    };
    let recorder = match record {
        Some(path) => {
            let (kernel_release, boot_id, hostname) = machine_meta();
            let meta = Meta {
                abi_version: reaper_trace_common::ABI_VERSION,
                tool_version: env!("CARGO_PKG_VERSION").into(),
                kernel_release,
                boot_id,
                hostname,
                clock,
                hooks: tracer.hooks.clone(),
                scope: scope.clone(),
                seed: seed.clone(),
            };
            Some(Recorder::create(path, &meta, record_force)?)
        }
        None => None,
    };
    let mut cgroups = CgroupResolver::new(cgroup_fs);
    for p in &seed {
        if let Some(path) = &p.cgroup {
            cgroups.learn(p.cgroup_id, path);
        }
    }
    Ok(Started {
        tracer,
        clock,
        seed,
        scope,
        recorder,
        command: gated,
        cgroups,
    })
}

/// The processes to follow: the named pids and comm, with the descendants
/// they already have.
fn follow_spec(options: &TraceOptions, fs: &CgroupFs) -> anyhow::Result<Option<FollowSpec>> {
    if options.pids.is_empty()
        && options.comm.is_none()
        && options.command.is_empty()
        && options.cgroup.is_none()
        && options.container.is_none()
    {
        return Ok(None);
    }
    if options.pids.is_empty()
        && options.comm.is_none()
        && options.cgroup.is_none()
        && options.container.is_none()
    {
        // Only the command, which the caller follows once spawned: /proc
        // has nothing to say (reading it costs tens of milliseconds).
        return Ok(Some(FollowSpec::default()));
    }
    let processes = procfs::snapshot();
    if let Some(&missing) = options
        .pids
        .iter()
        .find(|&&pid| !processes.iter().any(|p| p.pid == pid))
    {
        return Err(SetupError::NoSuchPid(missing).into());
    }
    let mut pids = initial_pids(&processes, &options.pids, options.comm.as_deref());
    let cgroup = match (&options.cgroup, &options.container) {
        (Some(path), _) => Some(fs.id_and_level(path)?),
        (None, Some(prefix)) => {
            fs.v2_root()?;
            let path = container_cgroup(fs.scan().into_values(), prefix)?;
            Some(fs.id_and_level(&path)?)
        }
        (None, None) => None,
    };
    let cgroup = cgroup.map(|(id, level, relative)| {
        // The processes there now; the kernel follows the ones that come.
        pids.extend(fs.procs_under(&relative));
        // Zombies are no longer in cgroup.procs, but still in their cgroup.
        let below = format!("{}/", relative.trim_end_matches('/'));
        pids.extend(processes.iter().filter(|p| p.zombie).filter_map(|p| {
            let path = CgroupFs::cgroup_of_pid(p.pid)?;
            (path == relative || path.starts_with(&below)).then_some(p.pid)
        }));
        (CgroupTarget { id, level }, relative)
    });
    pids.sort_unstable();
    pids.dedup();
    Ok(Some(FollowSpec {
        pids,
        comm: options.comm.clone(),
        cgroup: cgroup.as_ref().map(|(target, _)| *target),
        cgroup_path: cgroup.map(|(_, path)| path),
    }))
}

fn describe_follow(f: &FollowSpec) -> String {
    let mut parts = Vec::new();
    if !f.pids.is_empty() {
        parts.push(format!(
            "{} process(es) and their descendants",
            f.pids.len()
        ));
    }
    if let Some(comm) = &f.comm {
        parts.push(format!("processes named {}", escape(comm)));
    }
    if let Some(path) = &f.cgroup_path {
        parts.push(format!("processes in cgroup {} and below", escape(path)));
    }
    parts.join(" and ")
}
