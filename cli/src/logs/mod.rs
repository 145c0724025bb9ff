//! `cvmctl logs`: the operator's side of the log link.
//!
//! `listen` is the host end: it waits for the agent to connect (over TCP,
//! vsock, or the Unix socket of a userspace vsock backend), prints its
//! records, acknowledges them, drops the duplicates a reconnect brings, and
//! can deliver the manifest and set the level each time the agent connects.
//! While it runs, `status`, `level` and `manifest` reach the agent through
//! its `--control` socket. The wire format is [`cvm_protocol::logstream`].

mod control;
pub mod host;
mod listen;
mod output;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use cvm_protocol::logstream::Level;

pub use control::{ask, ControlError};
pub use listen::listen;

/// `logs` subcommands.
#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Receive an agent's logs and events (the host end of the log link).
    ///
    /// Records go to stdout as lines for people, or JSON Lines with --json
    /// (`{"type": "record" | "connected" | "disconnected" | "gap" | "reply", "data": {...}}`;
    /// consumers must ignore types and fields they do not know). Runs until
    /// interrupted. One agent at a time: a new connection replaces the old.
    Listen(ListenArgs),
    /// Ask the agent connected to a running `listen` for its status.
    Status(ControlArgs),
    /// Set the level of the agent connected to a running `listen`, at once.
    Level {
        /// error, warn, info, debug or trace.
        #[arg(value_name = "LEVEL", value_parser = parse_level)]
        level: Level,
        /// The listener to go through.
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Deliver the manifest to the agent connected to a running `listen`
    /// (one started with `manifest = operator` waits for it).
    Manifest {
        /// The manifest (JSON).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The listener to go through.
        #[command(flatten)]
        control: ControlArgs,
    },
}

/// Where `listen` waits for the agent.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Transport {
    /// A numeric address:port (port 0 picks one; the address is printed on stderr).
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<std::net::SocketAddr>,
    /// A vsock port, on the host (for an agent with `log_target = vsock:PORT`).
    #[arg(long, value_name = "PORT")]
    pub vsock: Option<u32>,
    /// A Unix socket path: with a userspace vsock backend, the guest's
    /// connection to CID 2 port P arrives on `PREFIX_P` (for instance
    /// `vm.vsock_7100` for `uds-path=vm.vsock`).
    #[arg(long, value_name = "PATH")]
    pub uds: Option<PathBuf>,
}

/// Arguments of `logs listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Where to wait for the agent.
    #[command(flatten)]
    pub transport: Transport,
    /// Print JSON Lines instead of lines for people.
    #[arg(long)]
    pub json: bool,
    /// Set the agent's level each time it connects.
    #[arg(long, value_name = "LEVEL", value_parser = parse_level)]
    pub level: Option<Level>,
    /// Deliver this manifest each time the agent connects (an agent already
    /// running it says so; one running another refuses).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// A Unix socket (created mode 0600) for `cvmctl logs status|level|manifest`.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

/// The control socket of a running `logs listen`.
#[derive(Debug, Args, Clone)]
pub struct ControlArgs {
    /// The `--control` socket of `cvmctl logs listen`.
    #[arg(long, value_name = "PATH")]
    pub control: PathBuf,
    /// Print `{"type": "reply", "data": {...}}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `logs` subcommand.
pub async fn run(cmd: LogsCommand) -> crate::Result {
    control::request(cmd).await
}

fn parse_level(s: &str) -> Result<Level, String> {
    s.parse()
}
