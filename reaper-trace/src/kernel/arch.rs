//! What differs between the architectures the tool runs on (x86_64 and
//! aarch64): the syscall numbers the programs dispatch on, the `pt_regs`
//! members that hold a syscall's number and arguments, and how a 32-bit
//! (compat) caller is marked. The eBPF object is the same `bpfel` object on
//! both: the loader writes these into `Config` at load time, with the
//! offsets resolved from the running kernel's BTF.

use reaper_trace_common::{Config, NO_OFFSET, SyscallTable, syscall_nr};

use super::btf::{Btf, BtfError};

/// An architecture the programs can be loaded on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("reaper-trace knows the syscall ABI of x86_64 and aarch64 only");

/// A register as a `pt_regs` member path in BTF, plus a byte offset into it
/// (aarch64's general registers are one array, `regs[31]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reg(&'static str, u32);

/// x86's `TS_COMPAT` in `thread_info.status`: the syscall came through the
/// 32-bit entry (int 0x80 or sysenter).
const TS_COMPAT: u32 = 0x0002;
/// arm64's `PSR_MODE32_BIT` in `pstate` (an architectural bit of SPSR): the
/// caller runs in AArch32 state, so its syscalls are compat ones.
const PSR_MODE32_BIT: u32 = 0x0010;

/// Where a compat syscall is marked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compat {
    /// A `task_struct` member, and'ed with the mask.
    Task(&'static str, u32),
    /// A `pt_regs` member, and'ed with the mask.
    Regs(&'static str, u32),
}

/// The registers of one architecture's syscall ABI.
struct Registers {
    nr: Reg,
    /// The first four arguments.
    args: [Reg; 4],
    ip: Reg,
    sp: Reg,
    fp: Reg,
    lr: Option<Reg>,
    compat: Compat,
}

impl Arch {
    /// The architecture this binary was built for: the one it loads on.
    pub const fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    pub fn syscalls(self) -> SyscallTable {
        match self {
            Arch::X86_64 => syscall_nr::X86_64,
            Arch::Aarch64 => syscall_nr::AARCH64,
        }
    }

    fn registers(self) -> Registers {
        match self {
            // arch/x86/include/asm/ptrace.h; the syscall ABI passes rdi, rsi,
            // rdx, r10 (not rcx, which syscall clobbers).
            Arch::X86_64 => Registers {
                nr: Reg("orig_ax", 0),
                args: [Reg("di", 0), Reg("si", 0), Reg("dx", 0), Reg("r10", 0)],
                ip: Reg("ip", 0),
                sp: Reg("sp", 0),
                fp: Reg("bp", 0),
                lr: None,
                compat: Compat::Task("thread_info.status", TS_COMPAT),
            },
            // arch/arm64/include/asm/ptrace.h: x0..x7 carry the arguments,
            // but x0 is overwritten by the return value, so the entry code
            // keeps the first argument in orig_x0; the number is syscallno.
            // x29 is the frame pointer, x30 the link register.
            Arch::Aarch64 => Registers {
                nr: Reg("syscallno", 0),
                args: [
                    Reg("orig_x0", 0),
                    Reg("regs", 8),
                    Reg("regs", 16),
                    Reg("regs", 24),
                ],
                ip: Reg("pc", 0),
                sp: Reg("sp", 0),
                fp: Reg("regs", 29 * 8),
                lr: Some(Reg("regs", 30 * 8)),
                compat: Compat::Regs("pstate", PSR_MODE32_BIT),
            },
        }
    }

    /// Writes this architecture's syscall numbers, register offsets (from
    /// BTF) and compat marker into `config`.
    pub fn configure(self, btf: &Btf, config: &mut Config) -> Result<(), BtfError> {
        let table = self.syscalls();
        config.nr_wait4 = table.wait4;
        config.nr_waitid = table.waitid;
        config.nr_rt_sigaction = table.rt_sigaction;
        config.nr_clone = table.clone;
        config.nr_clone3 = table.clone3;
        config.nr_fork = table.fork;
        config.nr_vfork = table.vfork;

        let r = self.registers();
        let reg = |Reg(member, plus): Reg| btf.member_offset("pt_regs", member).map(|o| o + plus);
        config.regs_nr = reg(r.nr)?;
        config.regs_arg0 = reg(r.args[0])?;
        config.regs_arg1 = reg(r.args[1])?;
        config.regs_arg2 = reg(r.args[2])?;
        config.regs_arg3 = reg(r.args[3])?;
        config.regs_ip = reg(r.ip)?;
        config.regs_sp = reg(r.sp)?;
        config.regs_fp = reg(r.fp)?;
        config.regs_lr = r.lr.map(reg).transpose()?.unwrap_or(NO_OFFSET);
        (
            config.compat_offset,
            config.compat_in_regs,
            config.compat_mask,
        ) = match r.compat {
            Compat::Task(member, mask) => (btf.member_offset("task_struct", member)?, 0, mask),
            Compat::Regs(member, mask) => (btf.member_offset("pt_regs", member)?, 1, mask),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// `#define __NR_<name> <number>` lines of a kernel UAPI header.
    fn header_numbers(path: &str) -> Option<BTreeMap<String, u32>> {
        let text = std::fs::read_to_string(path).ok()?;
        Some(
            text.lines()
                .filter_map(|l| l.strip_prefix("#define __NR_"))
                .filter_map(|l| {
                    let mut words = l.split_whitespace();
                    Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
                })
                .collect(),
        )
    }

    /// Each table against the kernel's own UAPI header (linux-libc-dev, which
    /// every C toolchain here has): aarch64 uses the generic table, which
    /// has no fork or vfork.
    #[test]
    fn syscall_tables_match_the_kernel_headers() {
        for (arch, header) in [
            (
                Arch::X86_64,
                "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
            ),
            (Arch::Aarch64, "/usr/include/asm-generic/unistd.h"),
        ] {
            let numbers = header_numbers(header)
                .unwrap_or_else(|| panic!("{header} is unreadable: install linux-libc-dev"));
            let nr = |name: &str| numbers.get(name).copied().unwrap_or(syscall_nr::NONE);
            let from_header = SyscallTable {
                rt_sigaction: nr("rt_sigaction"),
                clone: nr("clone"),
                clone3: nr("clone3"),
                fork: nr("fork"),
                vfork: nr("vfork"),
                wait4: nr("wait4"),
                waitid: nr("waitid"),
            };
            assert_eq!(arch.syscalls(), from_header, "{}", arch.name());
        }
        assert_eq!(syscall_nr::AARCH64.wait4, 260);
        assert_eq!(syscall_nr::AARCH64.fork, syscall_nr::NONE);
    }

    /// The running kernel's BTF: this machine's architecture gets its own
    /// ABI's offsets, fixed by the kernel's entry code.
    #[test]
    fn host_registers_resolve_to_the_abi_offsets() {
        let Ok(bytes) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("SKIP host_registers_resolve_to_the_abi_offsets: no /sys/kernel/btf/vmlinux");
            return;
        };
        let btf = Btf::parse(bytes).expect("vmlinux BTF parses");
        let mut config = Config::default();
        Arch::host()
            .configure(&btf, &mut config)
            .expect("registers resolve");
        let regs = [
            config.regs_nr,
            config.regs_arg0,
            config.regs_arg1,
            config.regs_arg2,
            config.regs_arg3,
            config.regs_ip,
            config.regs_sp,
            config.regs_fp,
            config.regs_lr,
        ];
        match Arch::host() {
            // struct pt_regs: r15 @0 ... bp @32 ... r10 @56 ... dx @96,
            // si @104, di @112, orig_ax @120, ip @128, cs, flags, sp @152.
            Arch::X86_64 => {
                assert_eq!(regs, [120, 112, 104, 96, 56, 128, 152, 32, NO_OFFSET]);
                assert_eq!((config.compat_in_regs, config.compat_mask), (0, TS_COMPAT));
            }
            // user_pt_regs: regs[31] @0, sp @248, pc @256, pstate @264; then
            // orig_x0 @272, syscallno @280.
            Arch::Aarch64 => {
                assert_eq!(regs, [280, 272, 8, 16, 24, 256, 248, 232, 240]);
                assert_eq!(
                    (
                        config.compat_offset,
                        config.compat_in_regs,
                        config.compat_mask
                    ),
                    (264, 1, PSR_MODE32_BIT)
                );
            }
        }
        assert_eq!(config.nr_wait4, Arch::host().syscalls().wait4);
    }
}
