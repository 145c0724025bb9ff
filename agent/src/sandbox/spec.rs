//! What the agent hands the launcher: one JSON document on its stdin.
//!
//! The launcher is the agent's own binary (`cvm-agent sandbox-exec`), so
//! both ends are the same build; the format is private to it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Largest spec the launcher reads.
pub(crate) const MAX_SPEC_BYTES: u64 = 1 << 20;

/// Everything the launcher needs to build the sandbox and start the algorithm.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LaunchSpec {
    /// The program to execute, as a path inside the sandbox.
    pub program: PathBuf,
    /// `argv[1..]`.
    pub args: Vec<String>,
    /// The algorithm's whole environment.
    pub env: Vec<(String, String)>,
    /// The sandbox user and group.
    pub uid: u32,
    /// The sandbox group.
    pub gid: u32,
    /// An empty directory of the agent's where the sandbox's root tmpfs is mounted.
    pub root: PathBuf,
    /// Directories and files of the agent's that appear inside.
    pub binds: Vec<Bind>,
    /// Paths of the image shown read-only at the same place, with the
    /// symbolic links that lead to them.
    pub runtime: Vec<PathBuf>,
    /// Paths that must never be shown (the agent's work directory, ...).
    pub hidden: Vec<PathBuf>,
    /// The working directory inside.
    pub workdir: PathBuf,
    /// Paths inside that the algorithm may write below (Landlock).
    pub writable: Vec<PathBuf>,
    /// The run's cgroup v2 directory, joined before anything starts.
    pub cgroup: Option<PathBuf>,
    /// Descriptors the algorithm inherits at their numbers.
    pub inherit_fds: Vec<i32>,
    /// Where the launcher reports errors and the end of the run (close-on-exec).
    pub status_fd: i32,
    /// Resource limits set with setrlimit.
    pub rlimits: Rlimits,
    /// Refuse to start rather than run with a layer the kernel lacks.
    pub strict: bool,
    /// Wall-clock limit, enforced by the launcher on the sandbox's init.
    pub timeout_ms: u64,
}

/// A directory or file of the agent's shown inside the sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Bind {
    /// The agent's path.
    pub source: PathBuf,
    /// The path inside.
    pub target: PathBuf,
    /// Writable (results, /tmp) or read-only.
    pub writable: bool,
    /// Programs may be executed from it.
    pub exec: bool,
}

/// setrlimit values; `None` leaves the inherited limit.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Rlimits {
    /// RLIMIT_AS: only where no cgroup counts the whole sandbox's memory.
    pub address_space: Option<u64>,
    /// RLIMIT_NPROC.
    pub processes: Option<u64>,
}

/// One line of the status channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StatusLine {
    /// The sandbox could not be built or the program not started.
    Error(String),
    /// The algorithm's main process ended.
    Ended(Ending),
    /// The timeout passed: the launcher killed the sandbox.
    TimedOut,
}

/// How the algorithm's main process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Ending {
    /// exit(code).
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}
