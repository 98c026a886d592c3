//! Resolves every offset the programs need, from this kernel's BTF and
//! tracefs formats, into the `Config` they are loaded with.

use reaper_trace_common::Config;

use super::{
    btf::{Btf, BtfError},
    tracefs::{Format, TracefsError},
};

/// Errors resolving offsets.
#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    /// A BTF tracepoint's prototype is not the one the probe was written for.
    #[error("BTF tracepoint {tracepoint} passes {found} arguments, the probe needs {needed}")]
    Prototype {
        tracepoint: &'static str,
        found: usize,
        needed: usize,
    },
}

/// The BTF tracepoints used, with the arguments their probes read.
pub const BTF_TRACEPOINTS: [(&str, usize); 4] = [
    ("sched_process_fork", 2),
    ("sched_process_exit", 1),
    ("signal_generate", 5),
    ("sched_process_free", 1),
];

/// The struct offsets, from BTF.
pub fn kernel_struct_offsets(btf: &Btf, config: &mut Config) -> Result<(), OffsetError> {
    let task = |m| btf.member_offset("task_struct", m);
    config.task_pid = task("pid")?;
    config.task_tgid = task("tgid")?;
    config.task_real_parent = task("real_parent")?;
    config.task_group_leader = task("group_leader")?;
    config.task_exit_code = task("exit_code")?;
    config.task_exit_signal = task("exit_signal")?;
    config.task_start_time = task("start_time")?;
    config.task_signal = task("signal")?;
    config.task_sighand = task("sighand")?;
    config.task_blocked = task("blocked")?;
    config.task_comm = task("comm")?;
    config.task_thread_pid = task("thread_pid")?;
    config.pid_level = btf.member_offset("pid", "level")?;
    config.pid_numbers = btf.member_offset("pid", "numbers")?;
    config.upid_size = btf.struct_size("upid")?;
    config.upid_nr = btf.member_offset("upid", "nr")?;
    config.upid_ns = btf.member_offset("upid", "ns")?;
    config.pid_ns_inum = btf.member_offset("pid_namespace", "ns.inum")?;
    config.signal_live = btf.member_offset("signal_struct", "live")?;
    config.sighand_action = btf.member_offset("sighand_struct", "action")?;
    config.k_sigaction_size = btf.struct_size("k_sigaction")?;
    config.sigaction_handler = btf.member_offset("k_sigaction", "sa.sa_handler")?;
    config.sigaction_flags = btf.member_offset("k_sigaction", "sa.sa_flags")?;
    config.siginfo_code = btf.member_offset("kernel_siginfo", "si_code")?;
    config.siginfo_pid = btf.member_offset("kernel_siginfo", "_sifields._sigchld._pid")?;
    config.siginfo_status = btf.member_offset("kernel_siginfo", "_sifields._sigchld._status")?;
    for (tracepoint, needed) in BTF_TRACEPOINTS {
        let found = btf.tracepoint_arg_count(tracepoint)?;
        if found < needed {
            return Err(OffsetError::Prototype {
                tracepoint,
                found,
                needed,
            });
        }
    }
    // 6.16 added `bool group_dead` to sched_process_exit.
    config.exit_has_group_dead = (btf.tracepoint_arg_count("sched_process_exit")? >= 2) as u32;
    Ok(())
}

/// The tracepoint field offsets, given a way to read formats (tracefs in
/// production, fixed text in tests).
pub fn tracepoint_offsets(
    config: &mut Config,
    read: impl Fn(&str, &str) -> Result<Format, TracefsError>,
) -> Result<(), OffsetError> {
    let exec = read("sched", "sched_process_exec")?;
    config.exec_filename = exec.offset("filename")?;
    config.exec_pid = exec.offset("pid")?;
    config.exec_old_pid = exec.offset("old_pid")?;
    config.wait_pid = read("sched", "sched_process_wait")?.offset("pid")?;
    let deliver = read("signal", "signal_deliver")?;
    config.deliver_sig = deliver.offset("sig")?;
    config.deliver_code = deliver.offset("code")?;
    config.deliver_handler = deliver.offset("sa_handler")?;
    config.deliver_flags = deliver.offset("sa_flags")?;
    let wait4 = read("syscalls", "sys_enter_wait4")?;
    config.wait4_upid = wait4.offset("upid")?;
    config.wait4_stat_addr = wait4.offset("stat_addr")?;
    config.wait4_options = wait4.offset("options")?;
    config.sys_nr = wait4.offset("__syscall_nr")?;
    let waitid = read("syscalls", "sys_enter_waitid")?;
    config.waitid_which = waitid.offset("which")?;
    config.waitid_upid = waitid.offset("upid")?;
    config.waitid_infop = waitid.offset("infop")?;
    config.waitid_options = waitid.offset("options")?;
    let sigaction = read("syscalls", "sys_enter_rt_sigaction")?;
    config.sigaction_sig = sigaction.offset("sig")?;
    config.sigaction_act = sigaction.offset("act")?;
    // One program serves every sys_exit_* hook: their `ret` must agree.
    let ret = read("syscalls", "sys_exit_wait4")?.offset("ret")?;
    for name in [
        "sys_exit_waitid",
        "sys_exit_clone",
        "sys_exit_clone3",
        "sys_exit_fork",
        "sys_exit_vfork",
    ] {
        let format = read("syscalls", name)?;
        if format.offset("ret")? != ret || format.offset("__syscall_nr")? != config.sys_nr {
            return Err(TracefsError::MissingField {
                tracepoint: format.name.clone(),
                field: "ret at the offset shared by every sys_exit tracepoint".into(),
            }
            .into());
        }
    }
    config.sys_exit_ret = ret;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF, when it has one.
    #[test]
    fn resolves_every_offset_on_this_kernel() {
        let Ok(bytes) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("SKIP resolves_every_offset_on_this_kernel: no /sys/kernel/btf/vmlinux");
            return;
        };
        let btf = Btf::parse(bytes).expect("vmlinux BTF parses");
        let mut config = Config::default();
        kernel_struct_offsets(&btf, &mut config).expect("offsets resolve");
        // The user-space ABI fixes these: the kernel copies siginfo as is.
        assert_eq!(
            (
                config.siginfo_code,
                config.siginfo_pid,
                config.siginfo_status
            ),
            (8, 16, 24)
        );
        assert_ne!(config.task_tgid, config.task_pid);
        assert!(config.k_sigaction_size >= 24);
    }

    #[test]
    fn tracepoint_fields_come_from_formats() {
        let format = |category: &str, name: &str| -> Result<Format, TracefsError> {
            let text = match name {
                "sched_process_exec" => {
                    "field:__data_loc char[] filename;\toffset:8;\tsize:4;\nfield:pid_t pid;\toffset:12;\tsize:4;\nfield:pid_t old_pid;\toffset:16;\tsize:4;"
                }
                "sched_process_wait" => "field:pid_t pid;\toffset:12;\tsize:4;",
                "signal_deliver" => {
                    "field:int sig;\toffset:8;\tsize:4;\nfield:int code;\toffset:16;\tsize:4;\nfield:unsigned long sa_handler;\toffset:24;\tsize:8;\nfield:unsigned long sa_flags;\toffset:32;\tsize:8;"
                }
                "sys_enter_wait4" => {
                    "field:int __syscall_nr;\toffset:8;\tsize:4;\nfield:pid_t upid;\toffset:16;\tsize:8;\nfield:int * stat_addr;\toffset:24;\tsize:8;\nfield:int options;\toffset:32;\tsize:8;"
                }
                "sys_enter_waitid" => {
                    "field:int which;\toffset:16;\tsize:8;\nfield:pid_t upid;\toffset:24;\tsize:8;\nfield:struct siginfo * infop;\toffset:32;\tsize:8;\nfield:int options;\toffset:40;\tsize:8;"
                }
                "sys_enter_rt_sigaction" => {
                    "field:int sig;\toffset:16;\tsize:8;\nfield:const struct sigaction * act;\toffset:24;\tsize:8;"
                }
                _ => {
                    "field:int __syscall_nr;\toffset:8;\tsize:4;\nfield:long ret;\toffset:16;\tsize:8;"
                }
            };
            Ok(Format::parse(&format!("{category}/{name}"), text))
        };
        let mut config = Config::default();
        tracepoint_offsets(&mut config, format).unwrap();
        assert_eq!(
            (config.exec_filename, config.exec_pid, config.exec_old_pid),
            (8, 12, 16)
        );
        assert_eq!(
            (config.waitid_infop, config.sys_exit_ret, config.sys_nr),
            (32, 16, 8)
        );

        let missing = |c: &str, n: &str| {
            if n == "signal_deliver" {
                Ok(Format::parse("signal/signal_deliver", ""))
            } else {
                format(c, n)
            }
        };
        let err = tracepoint_offsets(&mut Config::default(), missing)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "tracepoint signal/signal_deliver has no field sig");
    }
}
