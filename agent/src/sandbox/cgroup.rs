//! cgroup v2 for a whole run: memory (swap off), processes, one
//! out-of-memory kill for the whole group, never for the agent, and one
//! scheduling entity for all its threads.
//!
//! The cpu controller matters even on an idle machine: without it the run's
//! threads share the root's run queue with the agent's, each as heavy as
//! one of the agent's threads, and with the kernel's autogroups each session
//! the algorithm makes (setsid) is an entity of its own. Sixty spinning
//! processes, each in a session of its own, gave the agent a 61st of the
//! CPU: a status took 3.5 s instead of 44 ms. In a cgroup of its own the whole
//! run weighs [`CPU_WEIGHT`], whatever it does (autogroups apply only to the
//! root group).
//!
//! The agent keeps its own cgroup and makes one child per run below a
//! parent that has the memory, pids and cpu controllers. In the VM (init mode)
//! the agent mounts cgroup2 itself and is in the root cgroup, which may
//! hand controllers down while it holds processes. Elsewhere the agent
//! moves itself into a leaf (`cvm-agent`) of its own cgroup first, since a
//! cgroup with processes cannot hand controllers to children.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Controllers a run's cgroup needs.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// The run's `cpu.weight`: half the default (100) of a cgroup, and so of
/// one busy thread of the agent in the root group. The agent comes first
/// when it has work; the algorithm still gets a third of a CPU should a
/// flood of clients keep one of the agent's threads busy for its whole run.
const CPU_WEIGHT: u32 = 50;

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// Where runs' cgroups are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupParent {
    dir: PathBuf,
}

impl CgroupParent {
    /// Finds cgroup2 with the memory, pids and cpu controllers and makes them
    /// available to children of the agent's cgroup; says what is missing otherwise.
    pub fn prepare() -> Result<CgroupParent, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let (mount_root, mount_point) = mountinfo
            .lines()
            .find_map(|l| {
                // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPER"
                let (left, right) = l.split_once(" - ")?;
                let fstype = right.split_whitespace().next()?;
                let f: Vec<&str> = left.split_whitespace().collect();
                (fstype == "cgroup2")
                    .then(|| (f.get(3).map(|s| s.to_string()), f.get(4).map(|s| s.to_string())))
            })
            .and_then(|(r, m)| Some((r?, m?)))
            .ok_or("no cgroup2 file system is mounted")?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("/proc/self/cgroup: {e}"))?
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
            .ok_or("this process is in no cgroup2 group")?;
        let relative = Path::new(&own).strip_prefix(&mount_root).unwrap_or(Path::new(&own));
        let relative = relative.strip_prefix("/").unwrap_or(relative);
        let dir = if relative.as_os_str().is_empty() {
            PathBuf::from(&mount_point)
        } else {
            Path::new(&mount_point).join(relative)
        };
        let available = std::fs::read_to_string(dir.join("cgroup.controllers"))
            .map_err(|e| format!("{}: {e}", dir.join("cgroup.controllers").display()))?;
        let missing: Vec<&str> =
            CONTROLLERS.iter().copied().filter(|c| !available.split_whitespace().any(|a| a == *c)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "cgroup2 at {} lacks the {} controller{} (the kernel gives {} to cgroup v1 here)",
                dir.display(),
                match missing.split_last() {
                    Some((last, first)) if !first.is_empty() => format!("{} and {last}", first.join(", ")),
                    _ => missing.join(""),
                },
                if missing.len() > 1 { "s" } else { "" },
                if missing.len() > 1 { "them" } else { "it" },
            ));
        }
        let is_root = own == "/" || own.is_empty();
        if !is_root {
            // A cgroup that holds processes cannot give controllers to children.
            let leaf = dir.join("cvm-agent");
            std::fs::create_dir_all(&leaf).map_err(|e| format!("{}: {e}", leaf.display()))?;
            std::fs::write(leaf.join("cgroup.procs"), "0")
                .map_err(|e| format!("moving the agent into {}: {e}", leaf.display()))?;
        }
        let enable = CONTROLLERS.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
        std::fs::write(dir.join("cgroup.subtree_control"), &enable).map_err(|e| {
            format!(
                "enabling {enable} in {}: {e} (another process shares the agent's cgroup?)",
                dir.display()
            )
        })?;
        Ok(CgroupParent { dir })
    }

    /// The directory runs' cgroups are made in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes a run's cgroup with its limits.
    pub(crate) fn create(&self, name: &str, memory: u64, processes: u64) -> io::Result<RunCgroup> {
        let dir = self.dir.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Left by a run whose clean-up failed: empty it first.
                RunCgroup { dir: dir.clone() }.remove();
                std::fs::create_dir(&dir).map_err(|e| err(dir.display(), e))?;
            }
            Err(e) => return Err(err(dir.display(), e)),
        }
        let cg = RunCgroup { dir };
        cg.set("memory.max", &memory.to_string())?;
        // No swap: sealed plaintext must never reach a disk (there is none in the VM).
        if cg.dir.join("memory.swap.max").exists() {
            cg.set("memory.swap.max", "0")?;
        }
        cg.set("memory.oom.group", "1")?;
        cg.set("pids.max", &processes.to_string())?;
        cg.set("cpu.weight", &CPU_WEIGHT.to_string())?;
        Ok(cg)
    }
}

/// One run's cgroup; removed when dropped.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    dir: PathBuf,
}

/// What the kernel counted during a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Events {
    /// Out-of-memory kills in the group.
    pub oom_kills: u64,
    /// Forks refused by pids.max.
    pub pids_max: u64,
}

impl RunCgroup {
    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn set(&self, file: &str, value: &str) -> io::Result<()> {
        std::fs::write(self.dir.join(file), value)
            .map_err(|e| err(format_args!("{} = {value}", self.dir.join(file).display()), e))
    }

    fn counter(&self, file: &str, key: &str) -> u64 {
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok()).flatten()
                })
            })
            .unwrap_or(0)
    }

    /// The counters of the run so far.
    pub(crate) fn events(&self) -> Events {
        Events {
            oom_kills: self
                .counter("memory.events", "oom_kill")
                .max(self.counter("memory.events", "oom_group_kill")),
            pids_max: self.counter("pids.events", "max"),
        }
    }

    /// Kills every process of the group (cgroup.kill, Linux 5.14+).
    pub(crate) fn kill(&self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
    }

    /// Whether any process is left in the group.
    pub(crate) fn populated(&self) -> bool {
        self.counter("cgroup.events", "populated") != 0
    }

    /// Kills what is left, waits for it to go, and removes the group.
    pub(crate) fn remove(&self) {
        for _ in 0..100 {
            if !self.populated() {
                break;
            }
            self.kill();
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            log::warn!("cannot remove the run's cgroup {}: {e}", self.dir.display());
        }
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}
