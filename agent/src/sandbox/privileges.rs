//! Descriptors, capabilities, identity and resource limits of a process
//! about to become (or wait for) the algorithm.
//!
//! These run in the launcher, a single-threaded process, so the plain
//! system calls below affect the whole process.

use std::io;
use std::os::fd::RawFd;

use nix::unistd::{Gid, Uid};

fn cvt(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(())
    }
}

/// Closes every descriptor from 3 up except `keep`, whatever flags the
/// code that opened them used (tpm2-tss opens its device without
/// O_CLOEXEC, for one).
pub(crate) fn close_all_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> =
        keep.iter().filter_map(|&fd| u32::try_from(fd).ok()).filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 3u32;
    for fd in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if fd > from {
            let last = fd - 1;
            // SAFETY: close_range takes plain integers; closing descriptors
            // this single-threaded process does not use is its purpose.
            let rc = unsafe { libc::syscall(libc::SYS_close_range, from, last, 0u32) };
            if rc < 0 {
                return Err(io::Error::other(format!(
                    "close_range({from}, {last}): {}",
                    io::Error::last_os_error()
                )));
            }
        }
        from = fd.saturating_add(1);
        if from == u32::MAX {
            break;
        }
    }
    Ok(())
}

/// Marks `fd` close-on-exec.
pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer descriptor with an integer argument.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }, "fcntl(FD_CLOEXEC)")
}

/// Empties the capability bounding and ambient sets: nothing this process
/// or its children execute can ever gain a capability back. Needs
/// CAP_SETPCAP, so it runs before the identity changes.
pub(crate) fn drop_bounding_and_ambient() -> io::Result<()> {
    for cap in 0..=last_cap() {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        cvt(rc, &format!("dropping capability {cap} from the bounding set"))?;
    }
    // SAFETY: as above.
    let rc = unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0)
    };
    cvt(rc, "clearing the ambient capabilities")
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        // /proc may not be mounted where this runs: 40 is CAP_CHECKPOINT_RESTORE,
        // the last one of Linux 5.9 to 6.18; a higher number is refused with
        // EINVAL, which the loop reports.
        .unwrap_or(40)
}

/// Clears the permitted, effective and inheritable capability sets.
pub(crate) fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capset reads a version-3 header and two data structs, both
    // alive and laid out as the kernel's (repr(C)) for the whole call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    cvt(if rc < 0 { -1 } else { 0 }, "clearing the capability sets")
}

/// Becomes `uid`/`gid` with no supplementary groups, for good: fails
/// closed when root could be regained.
pub(crate) fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    let map = |what: &'static str| move |e: nix::Error| io::Error::other(format!("{what}: {e}"));
    nix::unistd::setgroups(&[]).map_err(map("setgroups"))?;
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    nix::unistd::setresgid(gid, gid, gid).map_err(map("setresgid"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(map("setresuid"))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() || nix::unistd::setgid(Gid::from_raw(0)).is_ok() {
        return Err(io::Error::other("root could be regained after dropping privileges"));
    }
    Ok(())
}

/// Sets one resource limit (soft and hard).
pub(crate) fn limit(resource: nix::sys::resource::Resource, value: u64) -> io::Result<()> {
    nix::sys::resource::setrlimit(resource, value, value)
        .map_err(|e| io::Error::other(format!("setrlimit({resource:?}, {value}): {e}")))
}

/// Turns on no_new_privs: execve never grants privileges again.
pub(crate) fn no_new_privs() -> io::Result<()> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| io::Error::other(format!("no_new_privs: {e}")))
}

/// Where the kernel keeps `vm.memfd_noexec` of the caller's PID namespace (Linux 6.3+).
const MEMFD_NOEXEC: &str = "/proc/sys/vm/memfd_noexec";

/// Makes memfds of the caller's PID namespace (the sandbox's, when called
/// by its init) unexecutable unless they ask for it: with
/// `vm.memfd_noexec = 1` there, a memfd made without `MFD_EXEC` is sealed
/// non-executable for good, and the seccomp filter refuses `MFD_EXEC`
/// ([`super::syscalls`]). Without both, a program the algorithm writes into
/// a memfd runs (`execveat`), whatever the `noexec` of its results and
/// /tmp. The memfd of a sealed algorithm was made by the agent, outside,
/// and stays executable.
///
/// Not 2, which refuses `MFD_EXEC` itself: the kernel then logs an error
/// naming the process on the console, which the host reads, and the
/// algorithm chooses that name (a channel out of the VM).
///
/// A kernel older than 6.3 has no such setting: nothing to do there.
pub(crate) fn no_executable_memfds() -> io::Result<()> {
    match std::fs::write(MEMFD_NOEXEC, "1") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{MEMFD_NOEXEC} = 1: {e}"))),
    }
}
