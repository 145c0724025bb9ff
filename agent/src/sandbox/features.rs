//! What this kernel offers the sandbox, found at start, and what the
//! `sandbox` setting makes of a missing layer.

use std::fmt;
use std::path::Path;

use super::cgroup::CgroupParent;

/// What to do when a layer is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Refuse to start rather than run the algorithm in a weaker sandbox
    /// (the default, and always in the VM).
    Strict,
    /// Run with what there is, and say so at start, in the status and in
    /// every owner's `cvmctl status` and `attest`. For development hosts.
    BestEffort,
}

impl Mode {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Strict => "strict",
            Mode::BestEffort => "best-effort",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "strict" => Ok(Mode::Strict),
            "best-effort" => Ok(Mode::BestEffort),
            other => Err(format!("{other:?} is not strict or best-effort")),
        }
    }
}

/// The layers found.
#[derive(Clone, Debug)]
pub struct Features {
    /// cgroup v2 with memory, pids and cpu, or why not.
    pub cgroup: Result<CgroupParent, String>,
    /// The Landlock ABI version, or why there is none.
    pub landlock: Result<i32, String>,
    /// seccomp filters, or why not.
    pub seccomp: Result<(), String>,
    /// The namespaces the launcher unshares, or which are missing.
    pub namespaces: Result<(), String>,
}

impl Features {
    /// Looks at this kernel; prepares the cgroup parent when there is one.
    pub fn detect() -> Features {
        let landlock = match super::access_rules::kernel_abi() {
            0 => Err("this kernel has no Landlock (CONFIG_SECURITY_LANDLOCK, lsm=landlock)".to_owned()),
            v => Ok(v),
        };
        let missing_ns: Vec<&str> = ["mnt", "pid", "net", "ipc", "uts", "cgroup"]
            .into_iter()
            .filter(|ns| !Path::new("/proc/self/ns").join(ns).exists())
            .collect();
        let namespaces = if missing_ns.is_empty() {
            Ok(())
        } else {
            Err(format!("this kernel lacks the {} namespaces", missing_ns.join(", ")))
        };
        Features { cgroup: CgroupParent::prepare(), landlock, seccomp: seccomp_filters(), namespaces }
    }

    /// What is missing, one line each.
    pub fn missing(&self) -> Vec<String> {
        [
            self.cgroup.as_ref().err(),
            self.landlock.as_ref().err(),
            self.seccomp.as_ref().err(),
            self.namespaces.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }
}

/// Whether the kernel takes seccomp filters (SECCOMP_GET_ACTION_AVAIL).
fn seccomp_filters() -> Result<(), String> {
    const SECCOMP_GET_ACTION_AVAIL: libc::c_uint = 2;
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: seccomp(GET_ACTION_AVAIL) reads one u32 that lives for the call.
    let rc =
        unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0u32, &action as *const u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("this kernel takes no seccomp filters: {}", std::io::Error::last_os_error()))
    }
}
