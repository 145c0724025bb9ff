//! Room for a sealed input in locked memory, checked before it loads.
//!
//! A sealed input's plaintext lives in locked memory (see [`crate::vault`]),
//! all of it at once. Model weights of tens of GiB that do not fit would
//! fail half way, after minutes of reading, or push the VM into its
//! out-of-memory killer; so before a load the agent compares the size the
//! manifest pins with what the VM can give, and refuses at once with both
//! numbers:
//!
//! - `MemAvailable` (/proc/meminfo): the memory the kernel can hand out
//!   without swapping (there is no swap in the VM), less [`HEADROOM`] for
//!   the agent itself and the algorithm's start;
//! - `RLIMIT_MEMLOCK`, less what the agent has locked already (`VmLck`),
//!   unless the agent has `CAP_IPC_LOCK` (root in the VM has), which the
//!   kernel lets lock beyond the limit;
//! - the agent's own cgroup v2 `memory.max` less its `memory.current`, where
//!   one is set (the agent's cgroup, not the sandbox's: the plaintext is the
//!   agent's memory until the run starts). Hosts whose memory controller is
//!   on cgroup v1 only are not checked there.

use std::path::Path;

/// Kept free beyond the input: the agent's own memory and the run's start.
pub const HEADROOM: u64 = 64 << 20;

/// What limits locked memory at one moment. `None`: no such limit, or it
/// could not be read (then it is not checked, and the load finds out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Room {
    /// `MemAvailable`, bytes.
    pub available: Option<u64>,
    /// `RLIMIT_MEMLOCK` and what is locked already, when the limit applies.
    pub memlock: Option<Limit>,
    /// The agent's cgroup `memory.max` and `memory.current`, when set.
    pub cgroup: Option<Limit>,
}

/// A limit and how much of it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The limit, bytes.
    pub max: u64,
    /// Used now, bytes.
    pub used: u64,
}

impl Limit {
    fn free(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }
}

impl Room {
    /// Reads the room there is now, from /proc and /sys.
    pub fn now() -> Room {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let memlock = if has_ipc_lock(&status) {
            None
        } else {
            memlock_limit().map(|max| Limit { max, used: kib_field(&status, "VmLck:").unwrap_or(0) })
        };
        Room {
            available: kib_field(&meminfo, "MemAvailable:"),
            memlock,
            cgroup: cgroup_limit(
                &std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
                Path::new("/sys/fs/cgroup"),
            ),
        }
    }

    /// Whether `size` bytes fit locked; the error names every size involved.
    pub fn check(&self, size: u64) -> Result<(), String> {
        let mut short = Vec::new();
        if let Some(available) = self.available {
            if size.saturating_add(HEADROOM) > available {
                short.push(format!(
                    "the VM has {} available (MemAvailable), and the agent keeps {} of it for itself",
                    bytes(available),
                    bytes(HEADROOM)
                ));
            }
        }
        if let Some(l) = self.memlock.filter(|l| size > l.free()) {
            short.push(format!(
                "the memlock limit (RLIMIT_MEMLOCK) is {} with {} locked already, and the agent lacks CAP_IPC_LOCK",
                bytes(l.max),
                bytes(l.used)
            ));
        }
        if let Some(l) = self.cgroup.filter(|l| size.saturating_add(HEADROOM) > l.free()) {
            short.push(format!(
                "the agent's cgroup allows {} (memory.max) and uses {} (memory.current)",
                bytes(l.max),
                bytes(l.used)
            ));
        }
        if short.is_empty() {
            return Ok(());
        }
        Err(format!(
            "needs {} of locked memory for its plaintext, but {}; nothing was read",
            bytes(size),
            short.join("; and ")
        ))
    }
}

/// `N bytes (X GiB)`, exact and readable.
fn bytes(n: u64) -> String {
    format!("{n} bytes ({:.1} GiB)", n as f64 / f64::from(1u32 << 30))
}

/// A `NAME: N kB` field of /proc/meminfo or /proc/self/status, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Whether CapEff in /proc/self/status holds CAP_IPC_LOCK (bit 14).
fn has_ipc_lock(status: &str) -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// The soft RLIMIT_MEMLOCK; `None` when unlimited or unreadable.
fn memlock_limit() -> Option<u64> {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK).ok()?;
    (soft != nix::sys::resource::RLIM_INFINITY).then_some(soft)
}

/// The cgroup v2 limit of the cgroup named by `/proc/self/cgroup`'s `0::`
/// line, under `root`; `None` without cgroup v2, a memory controller or a
/// limit (`max`).
fn cgroup_limit(proc_cgroup: &str, root: &Path) -> Option<Limit> {
    let path = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = root.join(path.trim_start_matches('/'));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok()?.trim().parse::<u64>().ok();
    Some(Limit { max: read("memory.max")?, used: read("memory.current").unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn what_fits_passes() {
        let room = Room {
            available: Some(20 * GIB),
            memlock: Some(Limit { max: 16 * GIB, used: GIB }),
            cgroup: Some(Limit { max: 24 * GIB, used: 2 * GIB }),
        };
        assert_eq!(room.check(8 * GIB), Ok(()));
        assert_eq!(Room::default().check(u64::MAX), Ok(()), "no limit known: nothing to refuse");
    }

    #[test]
    fn each_limit_refuses_with_its_sizes() {
        let need = 8 * GIB;
        let low = Room { available: Some(8 * GIB), ..Room::default() };
        let e = low.check(need).unwrap_err();
        assert!(e.contains("needs 8589934592 bytes (8.0 GiB)") && e.contains("MemAvailable"), "{e}");
        assert!(e.contains("8589934592 bytes (8.0 GiB) available"), "{e}");
        let memlock = Room { memlock: Some(Limit { max: 8 * GIB, used: 1 << 20 }), ..Room::default() };
        let e = memlock.check(need).unwrap_err();
        assert!(
            e.contains("RLIMIT_MEMLOCK") && e.contains("1048576 bytes") && e.contains("CAP_IPC_LOCK"),
            "{e}"
        );
        let cgroup = Room { cgroup: Some(Limit { max: 9 * GIB, used: GIB }), ..Room::default() };
        let e = cgroup.check(need).unwrap_err();
        assert!(e.contains("memory.max") && e.contains("9663676416 bytes"), "{e}");
        // All three at once: each is named.
        let all = Room { available: low.available, memlock: memlock.memlock, cgroup: cgroup.cgroup };
        let e = all.check(need).unwrap_err();
        assert!(
            e.contains("MemAvailable") && e.contains("RLIMIT_MEMLOCK") && e.contains("memory.max"),
            "{e}"
        );
    }

    #[test]
    fn proc_fields_and_capabilities_are_read() {
        let status = "Name:\tx\nVmLck:\t    2048 kB\nCapEff:\t000001ffffffffff\n";
        assert_eq!(kib_field(status, "VmLck:"), Some(2 << 20));
        assert!(has_ipc_lock(status));
        assert!(!has_ipc_lock("CapEff:\t0000000000000000\n"));
        assert!(!has_ipc_lock(""));
        let now = Room::now();
        assert!(now.available.is_some_and(|a| a > 0), "{now:?}");
    }

    #[test]
    fn a_cgroup_v2_limit_is_found() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("agent.slice");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.max"), "4294967296\n").unwrap();
        std::fs::write(dir.join("memory.current"), "1048576\n").unwrap();
        let limit = cgroup_limit("0::/agent.slice\n", root.path());
        assert_eq!(limit, Some(Limit { max: 4 * GIB, used: 1 << 20 }));
        std::fs::write(dir.join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit("0::/agent.slice\n", root.path()), None);
        assert_eq!(cgroup_limit("4:memory:/x\n", root.path()), None, "cgroup v1 only");
    }

    /// The real limit in a child process: without CAP_IPC_LOCK and with a
    /// 4 MiB RLIMIT_MEMLOCK (below the usual 8 MiB hard limit, which an
    /// unprivileged process may lower but not raise), a 16 MiB input is
    /// refused before any memory is locked, naming the limit; and without
    /// the check the load would fail half way, at mlock.
    #[test]
    fn a_small_memlock_limit_refuses_in_a_child_process() {
        if std::env::var_os("CVM_MEMLOCK_CHILD").is_some() {
            let room = Room::now();
            let e = room.check(16 << 20).unwrap_err();
            assert!(e.contains("(RLIMIT_MEMLOCK) is 4194304 bytes"), "{e}");
            assert_eq!(room.check(1 << 20), Ok(()));
            let e = crate::vault::Filling::new("too-large", 16 << 20, false).err().unwrap();
            assert!(e.to_string().contains("locking 16777216 bytes"), "{e}");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        // prlimit sets the limit; setpriv then drops CAP_IPC_LOCK, which
        // root otherwise has and which lets it lock beyond the limit.
        let out = std::process::Command::new("prlimit")
            .args([
                "--memlock=4194304:4194304",
                "setpriv",
                "--inh-caps=-ipc_lock",
                "--bounding-set=-ipc_lock",
            ])
            .arg(exe)
            .args([
                "--exact",
                "memory::tests::a_small_memlock_limit_refuses_in_a_child_process",
                "--nocapture",
            ])
            .env("CVM_MEMLOCK_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
