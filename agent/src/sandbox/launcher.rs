//! `cvm-agent sandbox-exec`: the process that builds the sandbox and
//! starts the algorithm in it.
//!
//! The agent is multi-threaded; what happens between fork and exec there
//! must not allocate or take locks. So the agent starts its own binary
//! again, a fresh single-threaded process, and hands it a `LaunchSpec` (`spec.rs`)
//! on stdin. Three processes follow:
//!
//! 1. the launcher (in the agent's namespaces): closes every descriptor it
//!    was not given on purpose, joins the run's cgroup, unshares the mount,
//!    PID, network, IPC, UTS and cgroup namespaces, forks, and waits;
//! 2. the sandbox's init (PID 1 of the new PID namespace): builds the file
//!    system (`mounts.rs`), forks the algorithm, drops every
//!    capability, and reaps until the algorithm's main process ends; then it
//!    reports how it ended and exits, and the kernel kills whatever else is
//!    left in the namespace (daemons, forgotten children);
//! 3. the algorithm: no capabilities (bounding and ambient sets empty),
//!    the sandbox's uid and gid with no supplementary groups,
//!    no_new_privs, resource limits, Landlock, the seccomp filter, exec.
//!
//! Errors and the ending go to the agent on a status pipe, one JSON
//! `StatusLine` per line; the descriptor is close-on-exec, so the
//! algorithm never holds it.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::access_rules::{self, Enforced};
use super::privileges as p;
use super::spec::{Ending, LaunchSpec, StatusLine, MAX_SPEC_BYTES};
use super::syscalls;

/// The launcher's subcommand.
pub const SUBCOMMAND: &str = "sandbox-exec";

/// Exit code of the launcher when the sandbox could not be built.
const SETUP_FAILED: i32 = 125;

/// The status channel back to the agent.
struct Status(std::fs::File);

impl Status {
    fn send(&mut self, line: &StatusLine) {
        // One write per line: a pipe keeps writes of up to 4096 bytes whole.
        let mut text = serde_json::to_string(line).unwrap_or_else(|_| "\"error\"".into());
        text.truncate(3000);
        text.push('\n');
        let _ = self.0.write_all(text.as_bytes());
    }

    fn fail(&mut self, what: impl std::fmt::Display) -> ! {
        self.send(&StatusLine::Error(what.to_string()));
        std::process::exit(SETUP_FAILED)
    }
}

/// Runs the launcher; never returns.
pub fn main() -> ! {
    let mut text = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_SPEC_BYTES).read_to_end(&mut text) {
        eprintln!("cvm-agent sandbox-exec: cannot read the spec: {e}");
        std::process::exit(SETUP_FAILED);
    }
    let spec: LaunchSpec = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cvm-agent sandbox-exec: not a spec from this agent: {e}");
            std::process::exit(SETUP_FAILED);
        }
    };
    if spec.status_fd <= 2 {
        eprintln!("cvm-agent sandbox-exec: status descriptor {} is a standard stream", spec.status_fd);
        std::process::exit(SETUP_FAILED);
    }
    // SAFETY: the agent passed this descriptor open for this purpose, and
    // nothing else in this fresh process uses it.
    let mut status = Status(unsafe { std::fs::File::from_raw_fd(spec.status_fd) });
    match launch(&spec, &mut status) {
        Err(e) => status.fail(e),
        Ok(never) => match never {},
    }
}

fn launch(spec: &LaunchSpec, status: &mut Status) -> std::io::Result<std::convert::Infallible> {
    p::set_cloexec(spec.status_fd)?;
    if let Some(fd) = spec.inherit_fds.iter().find(|&&fd| fd <= 2) {
        return Err(std::io::Error::other(format!("descriptor {fd} to inherit is a standard stream")));
    }
    // The spec has been read: stdin becomes /dev/null for the algorithm.
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(&null).map_err(|e| std::io::Error::other(format!("dup2 /dev/null: {e}")))?;
    drop(null);
    // The agent shields itself from the out-of-memory killer (-1000), and
    // children inherit that: undone here, the sandbox is the first to go
    // (and in its cgroup, an out-of-memory kill finds nothing killable
    // otherwise, and the run hangs at its limit).
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "1000") {
        // Some hosts refuse any change; what matters is not to be shielded.
        let now = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
        if now.trim().parse::<i32>().map_or(true, |v| v < 0) {
            return Err(std::io::Error::other(format!("oom_score_adj is {}: {e}", now.trim())));
        }
    }
    let mut keep: Vec<RawFd> = spec.inherit_fds.clone();
    keep.push(spec.status_fd);
    p::close_all_except(&keep)?;
    if let Some(cgroup) = &spec.cgroup {
        std::fs::write(cgroup.join("cgroup.procs"), "0")
            .map_err(|e| std::io::Error::other(format!("joining the cgroup {}: {e}", cgroup.display())))?;
    }
    nix::sched::unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWCGROUP,
    )
    .map_err(|e| std::io::Error::other(format!("unshare: {e}")))?;
    // SAFETY: this process is single-threaded (a fresh exec that started
    // no thread), so the child may run any code.
    match unsafe { nix::unistd::fork() }.map_err(|e| std::io::Error::other(format!("fork: {e}")))? {
        ForkResult::Child => sandbox_init(spec, status),
        ForkResult::Parent { child } => {
            let code = match wait_with_deadline(child, spec.timeout_ms) {
                Some(WaitStatus::Exited(_, code)) => code,
                Some(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
                Some(_) => SETUP_FAILED,
                None => {
                    status.send(&StatusLine::TimedOut);
                    SETUP_FAILED
                }
            };
            std::process::exit(code)
        }
    }
}

/// Waits for the sandbox's init; past `timeout_ms`, kills it (and so its
/// whole PID namespace) and returns `None` once it is reaped. Polling keeps
/// the kill and the reaping on one thread: the init's PID cannot be reused
/// before this process reaps it, so the kill never hits another process.
fn wait_with_deadline(init: Pid, timeout_ms: u64) -> Option<WaitStatus> {
    use nix::sys::wait::WaitPidFlag;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    loop {
        match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {}
            Ok(status) => return Some(status),
            Err(_) => return Some(WaitStatus::StillAlive),
        }
        if std::time::Instant::now() >= deadline {
            let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
            // The init reaps nothing more; its exit waits for every process
            // of its namespace to die, so this returns when all are gone.
            let _ = waitpid(init, None);
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// PID 1 of the sandbox's PID namespace.
fn sandbox_init(spec: &LaunchSpec, status: &mut Status) -> ! {
    // If the launcher dies (the agent killed it), so does the sandbox.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // Before the agent's /proc goes: the setting is of this PID namespace.
    if let Err(e) = p::no_executable_memfds() {
        status.fail(format_args!("building the sandbox: {e}"));
    }
    if let Err(e) = super::mounts::build_root(spec) {
        status.fail(format_args!("building the sandbox: {e}"));
    }
    let _ = nix::unistd::sethostname("sandbox");
    // SAFETY: single-threaded (forked from the single-threaded launcher).
    let algorithm = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let e = confine_and_exec(spec);
            status.fail(e)
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => status.fail(format_args!("fork: {e}")),
    };
    // This process only waits from now on: it keeps no capability, and no
    // process of the sandbox may read its memory.
    let _ = nix::sys::prctl::set_dumpable(false);
    if let Err(e) = p::drop_bounding_and_ambient().and_then(|()| p::clear_capabilities()) {
        let _ = nix::sys::signal::kill(algorithm, Signal::SIGKILL);
        status.fail(format_args!("the sandbox's init: {e}"));
    }
    let ending = reap_until(algorithm);
    status.send(&StatusLine::Ended(ending));
    // Exiting ends the PID namespace: the kernel kills every other process in it.
    std::process::exit(0)
}

/// Reaps every child; returns when `main` has ended.
fn reap_until(main: Pid) -> Ending {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => return Ending::Code(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => return Ending::Signal(sig as i32),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                // ECHILD: nothing left to wait for, which cannot happen
                // before `main` was reaped above.
                return Ending::Signal(if e == nix::errno::Errno::ECHILD {
                    0
                } else {
                    Signal::SIGKILL as i32
                });
            }
        }
    }
}

/// The algorithm's process: every layer, then exec. Returns only on failure.
fn confine_and_exec(spec: &LaunchSpec) -> String {
    match confine(spec) {
        Ok(()) => {}
        Err(e) => return format!("confining the algorithm: {e}"),
    }
    let e = exec(spec);
    let hint = match elf_interpreter(&spec.program) {
        Some(loader) if e.raw_os_error() == Some(libc::ENOENT) && !loader.exists() => format!(
            " (its ELF interpreter {} is not in the sandbox: add it to algorithm.runtime, with the libraries it loads)",
            loader.display()
        ),
        _ if e.raw_os_error() == Some(libc::ENOENT) && spec.program.exists() => {
            " (a script's interpreter, or a program's libraries, belong in algorithm.runtime)".to_owned()
        }
        _ => String::new(),
    };
    format!("cannot execute {}: {e}{hint}", spec.program.display())
}

/// The PT_INTERP path of a 64-bit little-endian ELF program, if it has one.
fn elf_interpreter(program: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut head = Vec::new();
    std::fs::File::open(program).ok()?.take(64 << 10).read_to_end(&mut head).ok()?;
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| head.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (phoff, phentsize, phnum) =
        (usize::try_from(u64_at(0x20)?).ok()?, usize::from(u16_at(0x36)?), u16_at(0x38)?);
    (0..usize::from(phnum)).find_map(|i| {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        const PT_INTERP: u32 = 3;
        if head.get(ph..ph + 4)? != PT_INTERP.to_le_bytes() {
            return None;
        }
        let (off, size) = (usize::try_from(u64_at(ph + 8)?).ok()?, usize::try_from(u64_at(ph + 32)?).ok()?);
        let path = head.get(off..off.checked_add(size)?)?;
        let path = path.split(|&b| b == 0).next()?;
        Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(path)))
    })
}

fn confine(spec: &LaunchSpec) -> std::io::Result<()> {
    let _ = nix::unistd::setsid();
    nix::unistd::chdir(&spec.workdir)
        .map_err(|e| std::io::Error::other(format!("chdir {}: {e}", spec.workdir.display())))?;
    use nix::sys::resource::Resource;
    p::limit(Resource::RLIMIT_CORE, 0)?;
    // No real-time scheduling, no raised priority, whatever the agent's
    // own supervisor allowed it.
    p::limit(Resource::RLIMIT_RTPRIO, 0)?;
    p::limit(Resource::RLIMIT_NICE, 0)?;
    if let Some(n) = spec.rlimits.processes {
        p::limit(Resource::RLIMIT_NPROC, n)?;
    }
    if let Some(n) = spec.rlimits.address_space {
        p::limit(Resource::RLIMIT_AS, n)?;
    }
    p::drop_bounding_and_ambient()?;
    p::become_user(spec.uid, spec.gid)?;
    p::clear_capabilities()?;
    p::no_new_privs()?;
    // The identity change cleared it; the init's death ends the namespace anyway.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    match access_rules::restrict(&spec.writable) {
        Ok(Enforced::Fully | Enforced::Partially) => {}
        Ok(Enforced::Not) if !spec.strict => {}
        Ok(Enforced::Not) => return Err(std::io::Error::other("this kernel does not enforce Landlock")),
        Err(e) if !spec.strict => {
            let _ = e;
        }
        Err(e) => return Err(std::io::Error::other(format!("Landlock: {e}"))),
    }
    syscalls::install()
}

fn exec(spec: &LaunchSpec) -> std::io::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| std::io::Error::other("a NUL byte in an argument"));
    let build = || -> std::io::Result<(CString, Vec<CString>, Vec<CString>)> {
        let program = cstr(spec.program.as_os_str().as_bytes())?;
        let mut argv = vec![program.clone()];
        for a in &spec.args {
            argv.push(cstr(a.as_bytes())?);
        }
        let env =
            spec.env.iter().map(|(k, v)| cstr(format!("{k}={v}").as_bytes())).collect::<Result<_, _>>()?;
        Ok((program, argv, env))
    };
    match build() {
        Ok((program, argv, env)) => match nix::unistd::execve(&program, &argv, &env) {
            Err(e) => std::io::Error::from_raw_os_error(e as i32),
            Ok(never) => match never {},
        },
        Err(e) => e,
    }
}
