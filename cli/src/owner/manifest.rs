//! `manifest digest`: check a manifest and print its digest.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use cvm_protocol::Manifest;

use crate::args::read_file;

/// `manifest` subcommands.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Check a manifest and print its digest (SHA-256 of its RFC 8785 canonical JSON).
    Digest {
        /// The manifest file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Prints a manifest's digest.
pub fn manifest(cmd: ManifestCommand) -> crate::Result {
    match cmd {
        ManifestCommand::Digest { file } => {
            let m = Manifest::from_json(&read_file(&file)?)
                .with_context(|| format!("invalid manifest {}", file.display()))?;
            writeln!(crate::output::stdout(), "{}", m.digest())?;
            Ok(())
        }
    }
}
