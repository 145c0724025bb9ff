//! Runs the algorithm in a sandbox.
//!
//! The algorithm runs as a dedicated unprivileged uid/gid, with no
//! supplementary groups and `no_new_privs`, in new network, IPC and UTS
//! namespaces (a new network namespace has only a down loopback: no network
//! at all), with an empty environment except what the spec gives, resource
//! limits (address space, processes, file size, no core dumps), and a
//! wall-clock timeout. Datasets are root-owned and read-only; the results
//! directory is the only place it can write. When it ends, for any reason,
//! every process of the sandbox uid is killed, so forked or detached
//! children do not outlive the run: the uid must be dedicated to the sandbox.

use std::fmt;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// What to run and under which limits.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The algorithm binary, or the interpreter of a script.
    pub program: PathBuf,
    /// Its arguments (for a script: the script's path first).
    pub args: Vec<String>,
    /// Read-only inputs.
    pub datasets_dir: PathBuf,
    /// The only writable directory; also the working directory.
    pub results_dir: PathBuf,
    /// The whole environment the algorithm gets.
    pub env: Vec<(String, String)>,
    /// The sandbox user (dedicated, not root).
    pub uid: u32,
    /// The sandbox group.
    pub gid: u32,
    /// Address-space limit in bytes.
    pub memory_bytes: u64,
    /// Most processes the sandbox uid may have.
    pub max_processes: u64,
    /// Largest file it may write.
    pub max_file_bytes: u64,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Bytes of stdout and of stderr kept; the rest is dropped.
    pub output_limit: usize,
    /// Descriptors the algorithm inherits at their numbers (read-only
    /// memfds of sealed inputs); every other descriptor is closed on exec.
    pub inherit_fds: Vec<i32>,
}

impl RunSpec {
    /// A spec with the defaults: uid/gid 61000, 512 MiB, 64 processes, 1 GiB files, 60 s, 64 KiB of output.
    pub fn new(program: PathBuf, datasets_dir: PathBuf, results_dir: PathBuf) -> RunSpec {
        RunSpec {
            program,
            args: Vec::new(),
            datasets_dir,
            results_dir,
            env: Vec::new(),
            uid: 61000,
            gid: 61000,
            memory_bytes: 512 << 20,
            max_processes: 64,
            max_file_bytes: 1 << 30,
            timeout: Duration::from_secs(60),
            output_limit: 64 << 10,
            inherit_fds: Vec::new(),
        }
    }
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
    /// Could not be started (or the sandbox could not be set up).
    SpawnFailed(String),
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::ExitCode(c) => write!(f, "exited with code {c}"),
            FailReason::Signal(s) => write!(f, "was killed by signal {s}"),
            FailReason::Timeout(d) => write!(f, "timed out after {}s", d.as_secs()),
            FailReason::SpawnFailed(e) => write!(f, "could not be started: {e}"),
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug)]
pub enum RunOutcome {
    /// Exit code 0 within the limits.
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

fn failed(reason: FailReason) -> RunOutcome {
    RunOutcome::Failed { reason, stdout: Vec::new(), stderr: Vec::new(), elapsed: Duration::ZERO }
}

/// Makes datasets read-only for everyone but root, and the results directory the sandbox's.
fn prepare(spec: &RunSpec) -> std::io::Result<()> {
    lock_down(&spec.datasets_dir)?;
    std::fs::create_dir_all(&spec.results_dir)?;
    chown(&spec.results_dir, Some(spec.uid), Some(spec.gid))?;
    std::fs::set_permissions(&spec.results_dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

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

async fn read_capped(mut r: impl tokio::io::AsyncRead + Unpin, limit: usize) -> Vec<u8> {
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

/// Runs the algorithm and waits for it, its timeout, and the clean-up.
pub async fn run(spec: &RunSpec) -> RunOutcome {
    if spec.uid == 0 || spec.gid == 0 {
        return failed(FailReason::SpawnFailed("the sandbox uid and gid must not be 0".into()));
    }
    if let Err(e) = prepare(spec) {
        return failed(FailReason::SpawnFailed(format!("preparing the directories: {e}")));
    }
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.results_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let limits = Limits {
        uid: spec.uid,
        gid: spec.gid,
        memory: spec.memory_bytes,
        processes: spec.max_processes,
        file: spec.max_file_bytes,
    };
    sandbox::inherit(&mut cmd, spec.inherit_fds.clone());
    sandbox::apply_on_exec(&mut cmd, limits);
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(FailReason::SpawnFailed(format!("{}: {e}", spec.program.display()))),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let limit = spec.output_limit;
    let out_task = tokio::spawn(async move {
        match stdout {
            Some(s) => read_capped(s, limit).await,
            None => Vec::new(),
        }
    });
    let err_task = tokio::spawn(async move {
        match stderr {
            Some(s) => read_capped(s, limit).await,
            None => Vec::new(),
        }
    });
    let waited = tokio::time::timeout(spec.timeout, child.wait()).await;
    // Whatever happened, no process of the sandbox may outlive the run.
    kill_all(spec.uid).await;
    let _ = child.kill().await;
    let status = match waited {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(FailReason::SpawnFailed(format!("waiting: {e}"))),
        Err(_) => Err(FailReason::Timeout(spec.timeout)),
    };
    let stdout = out_task.await.unwrap_or_default();
    let stderr = err_task.await.unwrap_or_default();
    let elapsed = start.elapsed();
    let reason = match status {
        Ok(s) if s.success() => return RunOutcome::Succeeded { stdout, stderr, elapsed },
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => FailReason::ExitCode(code),
            (None, Some(sig)) => FailReason::Signal(sig),
            (None, None) => FailReason::SpawnFailed("ended without code or signal".into()),
        },
        Err(r) => r,
    };
    RunOutcome::Failed { reason, stdout, stderr, elapsed }
}

/// Kills every process of `uid`: a helper that becomes `uid` and calls `kill(-1, SIGKILL)`.
async fn kill_all(uid: u32) {
    for _ in 0..3 {
        let mut cmd = tokio::process::Command::new("/proc/self/exe");
        sandbox::kill_everything_as(&mut cmd, uid);
        match cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().await {
            Ok(_) => {}
            Err(e) => log::warn!("could not sweep the sandbox's processes: {e}"),
        }
        if !sandbox::uid_has_processes(uid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Clone, Copy)]
struct Limits {
    uid: u32,
    gid: u32,
    memory: u64,
    processes: u64,
    file: u64,
}

#[expect(unsafe_code, reason = "pre_exec closures and the libc calls they make have no safe wrapper")]
mod sandbox {
    //! The direct runner's unsafe code: what runs between fork and exec.
    //! (The sandbox, the vault and init have their own, each block with its
    //! SAFETY comment.)

    use super::*;

    fn check(rc: libc::c_int) -> std::io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
        let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
        // SAFETY: setrlimit reads a valid rlimit struct; async-signal-safe.
        check(unsafe { libc::setrlimit(resource, &lim) })
    }

    /// Drops to `uid`/`gid` with limits and new namespaces in the child.
    pub(super) fn apply_on_exec(cmd: &mut tokio::process::Command, l: Limits) {
        // SAFETY: the closure runs in the forked child before exec and only
        // calls async-signal-safe libc functions (setsid, unshare, setrlimit,
        // prctl, setgroups, setgid, setuid); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                check(if libc::setsid() < 0 { -1 } else { 0 })?;
                check(libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS))?;
                set_limit(libc::RLIMIT_AS, l.memory)?;
                set_limit(libc::RLIMIT_NPROC, l.processes)?;
                set_limit(libc::RLIMIT_FSIZE, l.file)?;
                set_limit(libc::RLIMIT_CORE, 0)?;
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(l.gid))?;
                check(libc::setuid(l.uid))?;
                // Fail closed if root could be regained. The error is a
                // bare errno: building a message would allocate, and the
                // child of a multithreaded parent must not.
                if libc::setuid(0) == 0 {
                    return Err(std::io::Error::from_raw_os_error(libc::EPERM));
                }
                Ok(())
            });
        }
    }

    /// Keeps `fds` open across exec in the child (clears their close-on-exec flag).
    pub(super) fn inherit(cmd: &mut tokio::process::Command, fds: Vec<i32>) {
        if fds.is_empty() {
            return;
        }
        // SAFETY: the closure runs in the forked child before exec and only
        // calls fcntl (async-signal-safe) on descriptors the parent keeps
        // open for the whole spawn; it allocates nothing (the Vec is moved in).
        unsafe {
            cmd.pre_exec(move || {
                for fd in &fds {
                    check(libc::fcntl(*fd, libc::F_SETFD, 0))?;
                }
                Ok(())
            });
        }
    }

    /// Makes `cmd` a process that becomes `uid` and kills every process of it.
    pub(super) fn kill_everything_as(cmd: &mut tokio::process::Command, uid: u32) {
        // SAFETY: async-signal-safe calls only; the child never returns to
        // Rust code: it exits right after kill.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setuid(uid) != 0 {
                    libc::_exit(1);
                }
                libc::kill(-1, libc::SIGKILL);
                libc::_exit(0);
            });
        }
    }

    /// Whether any live (not zombie) process of `uid` remains (reads /proc).
    ///
    /// Killed orphans are zombies until their new parent reaps them; they
    /// run nothing and hold no memory, so they do not count.
    pub(super) fn uid_has_processes(uid: u32) -> bool {
        let Ok(dir) = std::fs::read_dir("/proc") else { return false };
        dir.flatten().any(|e| {
            let name = e.file_name();
            let is_pid = name.to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
            is_pid
                && std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                    let field = |name: &str| {
                        s.lines()
                            .find(|l| l.starts_with(name))
                            .and_then(|l| l.split_whitespace().nth(1))
                            .map(str::to_owned)
                    };
                    field("Uid:").and_then(|u| u.parse::<u32>().ok()) == Some(uid)
                        && field("State:").as_deref() != Some("Z")
                })
        })
    }
}
