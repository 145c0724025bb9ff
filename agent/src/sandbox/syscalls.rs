//! The seccomp filter: the system calls a sandbox has no business with.
//!
//! A deny list, so that any interpreter runs unchanged, built with
//! seccompiler (rust-vmm, pure Rust). What it answers:
//!
//! - sockets of every family but AF_UNIX (`socket`, `socketpair`): a new
//!   network namespace has no interface, but AF_VSOCK is not scoped by
//!   network namespaces and reaches the host (CID 2) directly;
//! - other processes' memory and the kernel's attack surface: ptrace,
//!   process_vm_readv/writev, pidfd_getfd, bpf, perf_event_open,
//!   userfaultfd, io_uring, keyrings, kcmp;
//! - the sandbox itself: mount and the new mount API, pivot_root, chroot,
//!   setns, unshare and namespace flags of clone (clone3 answers ENOSYS:
//!   its flags are behind a pointer the filter cannot read, and libc falls
//!   back to clone);
//! - the machine: modules, kexec, reboot, swap, clocks, accounting,
//!   quotas, open_by_handle_at (a way out of any mount namespace);
//! - executable memfds (`memfd_create` with `MFD_EXEC`): a program the
//!   algorithm wrote would run from one (see `privileges::no_executable_memfds`).
//!
//! The filter refuses with EPERM (ENOSYS for clone3), so the algorithm
//! sees an ordinary error. A system call of another architecture (the
//! i386 `int 0x80` entry) or of the x32 ABI (numbers with bit 30 set, which
//! a deny list keyed by x86-64 numbers would miss) kills the process.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// System calls refused whatever their arguments.
const DENIED: &[(i64, &str)] = &[
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_pidfd_getfd, "pidfd_getfd"),
    (libc::SYS_process_madvise, "process_madvise"),
    (libc::SYS_kcmp, "kcmp"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_chroot, "chroot"),
    (libc::SYS_move_mount, "move_mount"),
    (libc::SYS_open_tree, "open_tree"),
    (libc::SYS_fsopen, "fsopen"),
    (libc::SYS_fsconfig, "fsconfig"),
    (libc::SYS_fsmount, "fsmount"),
    (libc::SYS_fspick, "fspick"),
    (libc::SYS_mount_setattr, "mount_setattr"),
    (libc::SYS_setns, "setns"),
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_acct, "acct"),
    (libc::SYS_quotactl, "quotactl"),
    (libc::SYS_quotactl_fd, "quotactl_fd"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    (libc::SYS_syslog, "syslog"),
    (libc::SYS_iopl, "iopl"),
    (libc::SYS_ioperm, "ioperm"),
    (libc::SYS_settimeofday, "settimeofday"),
    (libc::SYS_clock_settime, "clock_settime"),
    (libc::SYS_clock_adjtime, "clock_adjtime"),
    (libc::SYS_adjtimex, "adjtimex"),
    (libc::SYS_sethostname, "sethostname"),
    (libc::SYS_setdomainname, "setdomainname"),
    (libc::SYS_vhangup, "vhangup"),
    (libc::SYS_uselib, "uselib"),
    (libc::SYS_lookup_dcookie, "lookup_dcookie"),
    (libc::SYS_fanotify_init, "fanotify_init"),
];

/// Namespace flags refused in clone(2)'s first argument. CLONE_NEWTIME is
/// not among them: in clone(2) its bit is part of the exit signal.
const CLONE_NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// memfd_create(2)'s flag for an executable memfd (Linux 6.3+).
const MFD_EXEC: u64 = 0x10;

/// The first system call number of the x32 ABI.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The names of the system calls refused outright, for documentation and tests.
pub fn denied_names() -> impl Iterator<Item = &'static str> {
    DENIED.iter().map(|(_, name)| *name)
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(conditions)
}

fn arg(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value)
}

/// Builds the filters' BPF programs, to be installed in this order.
///
/// Two programs, because seccompiler gives a filter one match action:
/// EPERM for the deny list, ENOSYS for clone3. Stacked filters all run and
/// the strictest answer wins.
pub(crate) fn programs() -> Result<[BpfProgram; 2], seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, _) in DENIED {
        rules.insert(*nr, Vec::new());
    }
    // socket(domain, ...) and socketpair(domain, ...): AF_UNIX only.
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        rules.insert(nr, vec![rule(vec![arg(0, SeccompCmpOp::Ne, libc::AF_UNIX as u64)?])?]);
    }
    // memfd_create(name, flags): never MFD_EXEC.
    rules.insert(
        libc::SYS_memfd_create,
        vec![rule(vec![SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(MFD_EXEC),
            MFD_EXEC,
        )?])?],
    );
    rules.insert(
        libc::SYS_clone,
        CLONE_NAMESPACE_FLAGS
            .iter()
            .map(|&flag| {
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
                    .and_then(|c| rule(vec![c]))
            })
            .collect::<Result<_, _>>()?,
    );
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        seccompiler::TargetArch::x86_64,
    )?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        seccompiler::TargetArch::x86_64,
    )?;
    Ok([with_x32_guard(deny.try_into()?), clone3.try_into()?])
}

/// Installs the filters on the calling thread (no_new_privs must be on).
pub(crate) fn install() -> std::io::Result<()> {
    let programs =
        programs().map_err(|e| std::io::Error::other(format!("building the seccomp filter: {e}")))?;
    for p in &programs {
        seccompiler::apply_filter(p)
            .map_err(|e| std::io::Error::other(format!("installing the seccomp filter: {e}")))?;
    }
    Ok(())
}

/// Prepends: load the system call number; if bit 30 (x32) is set, kill.
fn with_x32_guard(program: BpfProgram) -> BpfProgram {
    // BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JSET | BPF_K, BPF_RET | BPF_K
    // (linux/bpf_common.h; BPF_LD, BPF_W and BPF_K are 0).
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_DATA_NR_OFFSET: u32 = 0;
    let mut guarded = vec![
        sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: SECCOMP_DATA_NR_OFFSET },
        sock_filter { code: BPF_JMP_JSET_K, jt: 0, jf: 1, k: X32_SYSCALL_BIT },
        sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_KILL_PROCESS },
    ];
    guarded.extend(program);
    guarded
}
