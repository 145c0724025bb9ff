//! The algorithm's sandbox.
//!
//! The threat it answers (DESIGN.md): the algorithm is another owner's
//! code and hostile. Its only way out of the VM is the results the
//! manifest names, to the consumers it names. It must reach no socket of
//! any family (AF_VSOCK reaches the host directly, whatever the network
//! namespace), no file outside its results, no process, device, descriptor
//! or key of the agent's (the vTPM's descriptor above all: one PCR extend
//! and no consumer could verify the agent again), and no memory beyond its
//! limit counted over all its processes; and whatever it does, the agent and
//! the VM stay healthy.
//!
//! The layers, each in its own module, set up by the launcher
//! ([`launcher`], the agent's own binary started afresh):
//!
//! - namespaces: mount, PID, network, IPC, UTS and cgroup; the whole PID
//!   namespace dies when the run ends, for any reason;
//! - a root of its own (`mounts.rs`): a tmpfs with the program, the runtime
//!   paths the manifest declares, the datasets and artifacts read-only,
//!   results and /tmp on a size-limited tmpfs (`scratch.rs`), a minimal
//!   /dev and its own /proc; no /sys, nothing of the agent's;
//! - every descriptor closed but the sealed inputs' (`privileges.rs`);
//!   no capabilities, the dedicated uid and gid, no supplementary groups,
//!   no_new_privs;
//! - Landlock as a second layer on the file system (`access_rules.rs`);
//! - a seccomp filter: sockets of every family but AF_UNIX, and the system
//!   calls a sandbox has no business with ([`syscalls`]);
//! - cgroup v2 for the whole run (`cgroup.rs`): memory (swap off), processes,
//!   and an out-of-memory kill that takes the whole run and never the agent.
//!
//! Where the kernel lacks a layer, [`Mode`] decides: `strict` refuses to
//! start, `best-effort` runs with what there is and says so everywhere.

#[expect(unsafe_code, reason = "the Landlock ABI version query has no safe wrapper")]
mod access_rules;
mod cgroup;
#[expect(unsafe_code, reason = "the seccomp availability query has no safe wrapper")]
mod features;
#[expect(
    unsafe_code,
    reason = "fork in a single-threaded process, and the status pipe handed over by number"
)]
pub mod launcher;
mod mounts;
#[expect(unsafe_code, reason = "close_range, capset and prctl(CAPBSET_DROP) have no safe wrapper")]
mod privileges;
mod scratch;
mod spec;
pub mod syscalls;

use std::os::fd::AsRawFd;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use cgroup::CgroupParent;
pub use features::{Features, Mode};
pub use scratch::Scratch;

use spec::{Bind, Ending, LaunchSpec, Rlimits, StatusLine};

/// The datasets, inside the sandbox.
pub const DATASETS: &str = "/datasets";
/// The sealed artifacts, inside the sandbox.
pub const ARTIFACTS: &str = "/artifacts";
/// The results directory, inside the sandbox (also the working directory).
pub const RESULTS: &str = "/results";
/// The private /tmp, counted with the results.
pub const TMP: &str = "/tmp";
/// The uploaded algorithm, inside the sandbox.
pub const ALGORITHM: &str = "/algorithm";

/// Most bytes of status the launcher may send.
const MAX_STATUS_BYTES: u64 = 64 << 10;

/// The sandbox this agent runs algorithms in: its mode and the layers found.
#[derive(Debug)]
pub struct Sandbox {
    mode: Mode,
    launcher: PathBuf,
    features: Features,
    runs: AtomicU64,
}

/// The kernel lacks a layer and the mode is strict.
#[derive(Debug, thiserror::Error)]
#[error(
    "the sandbox cannot be built with every layer here: {}; refusing to start (sandbox = strict). \
     On a development host, `sandbox = best-effort` runs the algorithm with what there is and tells every owner",
    missing.join("; ")
)]
pub struct MissingLayers {
    /// What is missing, one line each.
    pub missing: Vec<String>,
}

impl Sandbox {
    /// Finds the kernel's layers; `launcher` is the agent's own binary.
    pub fn new(mode: Mode, launcher: PathBuf) -> Result<Sandbox, MissingLayers> {
        let features = Features::detect();
        let missing = features.missing();
        if mode == Mode::Strict && !missing.is_empty() {
            return Err(MissingLayers { missing });
        }
        Ok(Sandbox { mode, launcher, features, runs: AtomicU64::new(0) })
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The layers this kernel lacks (empty in strict mode).
    pub fn missing(&self) -> Vec<String> {
        self.features.missing()
    }

    /// The layers found.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// What the API's status says about the sandbox.
    pub fn status(&self) -> cvm_protocol::api::SandboxStatus {
        cvm_protocol::api::SandboxStatus { mode: self.mode.as_str().to_owned(), missing: self.missing() }
    }

    /// Runs the algorithm of `spec`, its results and /tmp on `scratch`, and
    /// waits for it, its timeout, and the clean-up.
    pub async fn run(&self, spec: &RunSpec, scratch: &Scratch) -> RunOutcome {
        let start = Instant::now();
        match self.run_inner(spec, scratch).await {
            Ok(mut outcome) => {
                outcome.set_elapsed(start.elapsed());
                outcome
            }
            Err(e) => failed(FailReason::SpawnFailed(e)),
        }
    }

    async fn run_inner(&self, spec: &RunSpec, scratch: &Scratch) -> Result<RunOutcome, String> {
        if spec.uid == 0 || spec.gid == 0 {
            return Err("the sandbox uid and gid must not be 0".into());
        }
        lock_down(&spec.datasets).map_err(|e| format!("preparing the datasets: {e}"))?;
        lock_down(&spec.artifacts).map_err(|e| format!("preparing the artifacts: {e}"))?;
        std::fs::create_dir_all(&spec.root).map_err(|e| format!("{}: {e}", spec.root.display()))?;
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let processes = spec.max_processes;
        let cgroup = match &self.features.cgroup {
            // The launcher and the sandbox's init are in the group too.
            Ok(parent) => Some(
                parent
                    .create(&format!("run-{n}"), spec.memory_bytes, processes + 2)
                    .map_err(|e| format!("the run's cgroup: {e}"))?,
            ),
            Err(_) => None,
        };
        let (status_r, status_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("status pipe: {e}"))?;
        let launch = self.launch_spec(spec, scratch, cgroup.as_ref(), status_w.as_raw_fd());
        let json = serde_json::to_vec(&launch).map_err(|e| format!("the launch spec: {e}"))?;

        let mut cmd = tokio::process::Command::new(&self.launcher);
        cmd.arg(launcher::SUBCOMMAND)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut inherited = spec.inherit_fds.clone();
        inherited.push(status_w.as_raw_fd());
        exec_fds::inherit(&mut cmd, inherited);
        let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", self.launcher.display()))?;
        drop(status_w);
        let status_task = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(
                &mut std::io::Read::take(std::fs::File::from(status_r), MAX_STATUS_BYTES),
                &mut text,
            );
            text
        });
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&json).await.map_err(|e| format!("handing the launcher its spec: {e}"))?;
        }
        let limit = spec.output_limit;
        let out_task = tokio::spawn(read_capped(child.stdout.take(), limit));
        let err_task = tokio::spawn(read_capped(child.stderr.take(), limit));

        // The launcher enforces the timeout; this one is the backstop
        // should the launcher itself hang.
        let backstop = spec.timeout + Duration::from_secs(10);
        let waited = tokio::time::timeout(backstop, child.wait()).await;
        let mut timed_out = waited.is_err();
        if timed_out {
            if let Some(cg) = &cgroup {
                cg.kill();
            }
            // The sandbox's init dies with the launcher (parent-death signal),
            // and the whole PID namespace with its init.
            let _ = child.start_kill();
        }
        let launcher_status = match waited {
            Ok(r) => r.ok(),
            Err(_) => child.wait().await.ok(),
        };
        let events = cgroup.as_ref().map(|c| c.events()).unwrap_or_default();
        let status_text = tokio::time::timeout(Duration::from_secs(10), status_task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let stdout = out_task.await.unwrap_or_default();
        let stderr = err_task.await.unwrap_or_default();
        if let Some(cg) = cgroup {
            // What the cgroup counted (memory peak, forks refused) is not
            // logged: the algorithm chooses those numbers, and the log goes
            // to the host's operator. The reason below says which limit was hit.
            let _ = tokio::task::spawn_blocking(move || drop(cg)).await;
        }
        let lines: Vec<StatusLine> =
            status_text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let error = lines.iter().find_map(|l| match l {
            StatusLine::Error(e) => Some(e.clone()),
            _ => None,
        });
        let ended = lines.iter().find_map(|l| match l {
            StatusLine::Ended(e) => Some(*e),
            _ => None,
        });
        timed_out |= lines.contains(&StatusLine::TimedOut);
        let reason = if let Some(e) = error {
            Some(FailReason::SpawnFailed(e))
        } else if timed_out {
            Some(FailReason::Timeout(spec.timeout))
        } else if events.oom_kills > 0 {
            Some(FailReason::OutOfMemory { limit: spec.memory_bytes })
        } else if scratch.is_full() {
            Some(FailReason::ResultsOverLimit { limit: scratch.limit() })
        } else if events.pids_max > 0 {
            Some(FailReason::ProcessLimit { limit: processes })
        } else {
            match ended {
                Some(Ending::Code(0)) => None,
                Some(Ending::Code(c)) => Some(FailReason::ExitCode(c)),
                Some(Ending::Signal(s)) => Some(FailReason::Signal(s)),
                None => Some(FailReason::SpawnFailed(format!(
                    "the sandbox ended without a status (launcher: {})",
                    launcher_status.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
                ))),
            }
        };
        Ok(match reason {
            None => RunOutcome::Succeeded { stdout, stderr, elapsed: Duration::ZERO },
            Some(reason) => RunOutcome::Failed { reason, stdout, stderr, elapsed: Duration::ZERO },
        })
    }

    fn launch_spec(
        &self,
        spec: &RunSpec,
        scratch: &Scratch,
        cgroup: Option<&cgroup::RunCgroup>,
        status_fd: i32,
    ) -> LaunchSpec {
        let ro = |source: &Path, target: &str, exec: bool| Bind {
            source: source.to_path_buf(),
            target: PathBuf::from(target),
            writable: false,
            exec,
        };
        let rw = |source: PathBuf, target: &str| Bind {
            source,
            target: PathBuf::from(target),
            writable: true,
            exec: false,
        };
        let mut binds = vec![
            ro(&spec.datasets, DATASETS, false),
            ro(&spec.artifacts, ARTIFACTS, false),
            rw(scratch.results(), RESULTS),
            rw(scratch.tmp(), TMP),
        ];
        let algorithm = match &spec.program {
            Program::File { path, executable } => {
                binds.push(ro(path, ALGORITHM, *executable));
                PathBuf::from(ALGORITHM)
            }
            Program::Fd(fd) => PathBuf::from(format!("/proc/self/fd/{fd}")),
        };
        let mut runtime = spec.runtime.clone();
        let (program, mut args) = match &spec.interpreter {
            Some(interpreter) => {
                runtime.push(interpreter.clone());
                (interpreter.clone(), vec![algorithm.display().to_string()])
            }
            None => (algorithm, Vec::new()),
        };
        args.extend(spec.args.iter().cloned());
        let mut env: Vec<(String, String)> = [
            ("CVM_DATASETS", DATASETS),
            ("CVM_ARTIFACTS", ARTIFACTS),
            ("CVM_RESULTS", RESULTS),
            ("TMPDIR", TMP),
            ("HOME", TMP),
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("LANG", "C.UTF-8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(spec.env.iter().cloned());
        LaunchSpec {
            program,
            args,
            env,
            uid: spec.uid,
            gid: spec.gid,
            root: spec.root.clone(),
            binds,
            runtime,
            hidden: spec.hidden.clone(),
            workdir: PathBuf::from(RESULTS),
            writable: vec![PathBuf::from(RESULTS), PathBuf::from(TMP)],
            cgroup: cgroup.map(|c| c.dir().to_path_buf()),
            inherit_fds: spec.inherit_fds.clone(),
            status_fd,
            rlimits: Rlimits {
                // Without a cgroup, limits per process (memory) and per uid
                // (processes) are all there is; with one, pids.max counts
                // the sandbox's processes and its events say when it was hit.
                address_space: cgroup.is_none().then_some(spec.memory_bytes),
                processes: cgroup.is_none().then_some(spec.max_processes),
            },
            strict: self.mode == Mode::Strict,
            timeout_ms: u64::try_from(spec.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The program to run.
#[derive(Clone, Debug)]
pub enum Program {
    /// An uploaded file of the agent's, shown at [`ALGORITHM`].
    File {
        /// The agent's path.
        path: PathBuf,
        /// Executed itself (a binary), or read by an interpreter (a script).
        executable: bool,
    },
    /// A sealed algorithm in memory: a descriptor the sandbox inherits.
    Fd(i32),
}

/// What to run and under which limits.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The algorithm.
    pub program: Program,
    /// For a script: the interpreter (a path of the image, shown read-only).
    pub interpreter: Option<PathBuf>,
    /// Arguments after the program (or the script).
    pub args: Vec<String>,
    /// Paths of the image shown read-only (the manifest's `algorithm.runtime`).
    pub runtime: Vec<PathBuf>,
    /// The datasets (the agent's directory), shown read-only at [`DATASETS`].
    pub datasets: PathBuf,
    /// The sealed artifacts' links (the agent's directory), shown read-only at [`ARTIFACTS`].
    pub artifacts: PathBuf,
    /// An empty directory of the agent's where the sandbox's root is mounted.
    pub root: PathBuf,
    /// Paths no runtime path may lead to (the agent's work directory).
    pub hidden: Vec<PathBuf>,
    /// More environment for the algorithm.
    pub env: Vec<(String, String)>,
    /// The sandbox user (dedicated, not root).
    pub uid: u32,
    /// The sandbox group.
    pub gid: u32,
    /// Memory of the whole sandbox.
    pub memory_bytes: u64,
    /// Most processes and threads at once.
    pub max_processes: u64,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Bytes of stdout and of stderr kept; the rest is dropped.
    pub output_limit: usize,
    /// Descriptors the algorithm inherits at their numbers (read-only
    /// memfds of sealed inputs); every other descriptor is closed.
    pub inherit_fds: Vec<i32>,
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// Exited with a non-zero code.
    ExitCode(i32),
    /// Killed by a signal.
    Signal(i32),
    /// Ran past the timeout and was killed.
    Timeout(Duration),
    /// The sandbox's memory ran out; the kernel killed the whole run.
    OutOfMemory {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A fork or thread was refused at the process limit.
    ProcessLimit {
        /// The limit.
        limit: u64,
    },
    /// The results and /tmp filled their space (or their file count).
    ResultsOverLimit {
        /// The limit, in bytes.
        limit: u64,
    },
    /// Could not be started (or the sandbox could not be built).
    SpawnFailed(String),
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailReason::ExitCode(c) => write!(f, "exited with code {c}"),
            FailReason::Signal(s) => write!(f, "was killed by signal {s}"),
            FailReason::Timeout(d) => write!(f, "timed out after {}s", d.as_secs()),
            FailReason::OutOfMemory { limit } => {
                write!(f, "ran out of memory (limit {limit} bytes over all its processes) and was killed")
            }
            FailReason::ProcessLimit { limit } => {
                write!(f, "hit the process limit ({limit} processes and threads)")
            }
            FailReason::ResultsOverLimit { limit } => {
                write!(f, "filled its results limit ({limit} bytes or 16384 files, with /tmp)")
            }
            FailReason::SpawnFailed(e) => write!(f, "could not be started: {e}"),
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub enum RunOutcome {
    /// Exit code 0 within every limit.
    Succeeded {
        /// Captured stdout (up to the limit).
        stdout: Vec<u8>,
        /// Captured stderr (up to the limit).
        stderr: Vec<u8>,
        /// Wall-clock time.
        elapsed: Duration,
    },
    /// Anything else.
    Failed {
        /// Why.
        reason: FailReason,
        /// Captured stdout.
        stdout: Vec<u8>,
        /// Captured stderr.
        stderr: Vec<u8>,
        /// Wall-clock time.
        elapsed: Duration,
    },
}

impl RunOutcome {
    fn set_elapsed(&mut self, d: Duration) {
        match self {
            RunOutcome::Succeeded { elapsed, .. } | RunOutcome::Failed { elapsed, .. } => *elapsed = d,
        }
    }
}

fn failed(reason: FailReason) -> RunOutcome {
    RunOutcome::Failed { reason, stdout: Vec::new(), stderr: Vec::new(), elapsed: Duration::ZERO }
}

/// Makes a tree root-owned and read-only for everyone else.
fn lock_down(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        // A sealed input's link to /proc/self/fd/N: following it here would
        // reach the agent's own descriptor N. Links have no mode of their own.
        return std::os::unix::fs::lchown(path, Some(0), Some(0));
    }
    chown(path, Some(0), Some(0))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            lock_down(&entry?.path())?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o555))
    } else {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
    }
}

async fn read_capped(r: Option<impl tokio::io::AsyncRead + Unpin>, limit: usize) -> Vec<u8> {
    let Some(mut r) = r else { return Vec::new() };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

#[expect(unsafe_code, reason = "pre_exec: clearing close-on-exec between fork and exec")]
mod exec_fds {
    //! The one thing the multi-threaded agent does between fork and exec.

    /// Keeps `fds` open across the exec of the launcher (clears their close-on-exec flag).
    pub(super) fn inherit(cmd: &mut tokio::process::Command, fds: Vec<i32>) {
        // SAFETY: the closure runs in the forked child before exec and only
        // calls fcntl (async-signal-safe) on descriptors the parent keeps
        // open for the whole spawn; it allocates nothing (the Vec is moved in).
        unsafe {
            cmd.pre_exec(move || {
                for fd in &fds {
                    if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}
