//! `cvmctl report`: show, verify and simulate SNP attestation reports.

mod certs_dir;
mod show;
mod simulate;
mod verify;

use clap::Subcommand;

pub use certs_dir::load_chain;
pub use show::ShowArgs;
pub use simulate::{write_private, SimulateArgs, CHAIN_FILE};
pub use verify::VerifyArgs;

/// Work with SNP attestation reports.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Print every field of a report.
    Show(ShowArgs),
    /// Verify a report against AMD's roots and a policy.
    ///
    /// Runs every check: report format, product, the certificate chain up to
    /// a pinned AMD root (ARK → ASK or ASVK → VCEK or VLEK, with validity
    /// dates), hwID and TCB extensions, the signature over the raw bytes, and
    /// the policy's rules. Exit code 0 when accepted, 1 when rejected, 2 on
    /// bad usage or unreadable input.
    Verify(VerifyArgs),
    /// Write a report signed by a simulated AMD chain, with that chain.
    ///
    /// The simulated ARK is not trusted by `report verify` unless it is passed
    /// with `--trust-ark`.
    Simulate(Box<SimulateArgs>),
}

impl ReportCommand {
    /// Runs the command.
    pub fn run(self) -> crate::Result {
        match self {
            ReportCommand::Show(a) => a.run(),
            ReportCommand::Verify(a) => a.run(),
            ReportCommand::Simulate(a) => a.run(),
        }
    }
}
