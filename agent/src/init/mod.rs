//! Init mode: the agent as PID 1 of a RAM-only initramfs, or as a supervisor
//! next to another init.
//!
//! As PID 1 (`/init` of the initramfs), the process does the little an init
//! must ([`system`]: mounts, the kernel's file protections, kernel modules
//! from a list, the network), then
//! starts the agent proper as its child (`/proc/self/exe run`) and stays a
//! small supervisor that only waits for signals:
//!
//! - every orphan of the system is re-parented to PID 1 and reaped here, so
//!   the agent's own waits on its children (the sandboxed algorithm) are
//!   never disturbed by a `waitpid(-1)`;
//! - SIGTERM or SIGINT (also Ctrl-Alt-Del, which the kernel turns into
//!   SIGINT for PID 1) asks for a clean poweroff: the agent gets SIGTERM,
//!   stops serving, drops its state and wipes its work directory; then every
//!   remaining process is stopped and the machine powers off;
//! - when the agent ends for any reason (a clean stop, an error, a panic),
//!   the reason is logged and the machine powers off. PID 1 itself never
//!   exits (that would panic the kernel): even its own panic powers off.
//!
//! Keeping the agent out of PID 1 costs one small process and buys a PID 1
//! that runs no network code, and a kernel-level wipe of everything the
//! agent held: its memory is freed when it exits (the launcher boots with
//! `init_on_free=1`, so freed pages are zeroed).
//!
//! Next to another init (busybox, for debugging), `cvm-agent init` runs the
//! same supervisor without the poweroff (and, unless `--system` is given,
//! without the system set-up): it becomes a child subreaper, so the orphans of the agent's sandbox are
//! re-parented to it and reaped here, forwards SIGTERM/SIGINT to the agent,
//! and exits with the agent's exit code.

mod console;
pub mod net;
pub mod system;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::config::{InitConfig, Sources};

/// The configuration file that init mode reads when it exists.
pub const DEFAULT_CONFIG: &str = "/etc/cvm-agent.conf";

/// How long the agent has to stop cleanly after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// How the supervisor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// PID 1: set the system up first, power off at the end.
    Pid1,
    /// Next to another init: a child subreaper that exits with the agent.
    Supervisor {
        /// Also do PID 1's set-up (mounts, file protections, modules, network) first: for an
        /// init such as busybox's that leaves the system to its services.
        system: bool,
    },
}

/// Seconds since the kernel started (CLOCK_BOOTTIME), for the boot figures.
pub fn since_boot() -> Option<Duration> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some(Duration::new(u64::try_from(t.tv_sec()).ok()?, u32::try_from(t.tv_nsec()).ok()?))
}

/// Runs init mode. As PID 1 this never returns; as a supervisor it returns
/// the exit code to exit with.
pub fn run(role: Role, config_file: Option<&Path>) -> i32 {
    if role == Role::Pid1 {
        // Nothing below may end PID 1: a panic powers off instead.
        std::panic::set_hook(Box::new(|info| {
            log::error!("init: panic: {info}");
            power_off();
        }));
        console::init(log::LevelFilter::Info);
        match since_boot() {
            Some(t) => log::info!("init: started as PID 1, {:.3} s after the kernel", t.as_secs_f64()),
            None => log::info!("init: started as PID 1"),
        }
    } else {
        console::init(log::LevelFilter::Info);
    }
    let config_file: Option<PathBuf> = match config_file {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_CONFIG))
            .filter(|p| role != Role::Supervisor { system: false } && p.exists()),
    };
    let code = match supervise(role, config_file.as_deref()) {
        Ok(code) => code,
        Err(e) => {
            log::error!("init: {e:#}");
            1
        }
    };
    if role == Role::Pid1 {
        power_off();
    }
    code
}

fn supervise(role: Role, config_file: Option<&Path>) -> anyhow::Result<i32> {
    match role {
        Role::Pid1 => {
            system::mount_early()?;
            let config = InitConfig::load(&Sources::read(config_file)?)?;
            console::init(config.log_level);
            system::set_up(&config)?;
            // Ctrl-Alt-Del becomes SIGINT for PID 1 instead of an immediate reboot.
            if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
                log::warn!("init: cannot route Ctrl-Alt-Del to init: {e}");
            }
        }
        Role::Supervisor { system } => {
            nix::sys::prctl::set_child_subreaper(true)?;
            if system {
                system::mount_early()?;
                let config = InitConfig::load(&Sources::read(config_file)?)?;
                console::init(config.log_level);
                system::set_up(&config)?;
            }
        }
    }

    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("run");
    if let Some(file) = config_file {
        cmd.arg("--config").arg(file);
    }
    let agent = cmd.spawn().map_err(|e| anyhow::anyhow!("cannot start the agent: {e}"))?;
    let agent = Pid::from_raw(i32::try_from(agent.id())?);
    log::info!("init: agent started (pid {agent})");

    // Signals are taken synchronously (sigwait) by this single thread. They
    // are blocked only now: a child inherits the signal mask, and the agent
    // must receive its SIGTERM. What happened before the mask was set is
    // caught up with below: a SIGCHLD then is found by the first reap, and
    // a stop request then ended a supervisor (PID 1 ignores it: no handler).
    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGALRM] {
        signals.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None)?;
    if let Some(code) = reap(agent) {
        return Ok(code);
    }

    let mut stopping = false;
    loop {
        match signals.wait()? {
            Signal::SIGCHLD => {
                if let Some(code) = reap(agent) {
                    return Ok(code);
                }
            }
            Signal::SIGTERM | Signal::SIGINT if !stopping => {
                log::info!("init: stop requested: stopping the agent");
                stopping = true;
                let _ = kill(agent, Signal::SIGTERM);
                nix::unistd::alarm::set(u32::try_from(STOP_DEADLINE.as_secs()).unwrap_or(20));
            }
            Signal::SIGALRM if stopping => {
                log::warn!("init: the agent did not stop within {} s: killing it", STOP_DEADLINE.as_secs());
                let _ = kill(agent, Signal::SIGKILL);
            }
            _ => {}
        }
    }
}

/// Reaps every child that has ended; returns the exit code when the agent is one of them.
fn reap(agent: Pid) -> Option<i32> {
    let mut agent_code = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == agent => {
                if code == 0 {
                    log::info!("init: the agent stopped");
                } else {
                    log::error!("init: the agent exited with code {code}");
                }
                agent_code = Some(code);
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == agent => {
                log::error!("init: the agent was killed by {sig}");
                agent_code = Some(128 + sig as i32);
            }
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => {
                log::info!("init: reaped orphan {pid}");
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return agent_code,
            Ok(_) => {}
        }
    }
}

/// Stops every process, then powers the machine off. Never returns.
fn power_off() -> ! {
    // As PID 1, kill(-1) reaches every other process.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            Ok(_) => {}
            Err(_) => break, // no children left
        }
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)).is_ok_and(|s| s != WaitStatus::StillAlive) {}
    nix::unistd::sync();
    log::info!("init: powering off");
    let err = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached if the kernel refused; PID 1 must still not exit.
    log::error!("init: poweroff failed: {err:?}; halting here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
