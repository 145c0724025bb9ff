//! cvmctl: verify cvm-agent evidence and simulate SNP reports.

use clap::{Parser, Subcommand};
use cvmctl::owner;
use cvmctl::report::ReportCommand;

/// Command line of cvm-agent's computation owners and operators.
///
/// Exit codes: 0 success (evidence accepted), 1 evidence rejected or an
/// identity refused, 2 bad usage or unreadable input (also: a policy that
/// pins no launch measurement, for a command that talks to an agent), 3 the
/// agent refused, the connection failed after it was made, or the
/// computation failed. The table: docs/cvmctl.md, "Exit codes".
#[derive(Debug, Parser)]
#[command(name = "cvmctl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show, verify and simulate SNP attestation reports.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Create an owner key pair; prints the public key for the manifest.
    Keygen(owner::KeygenArgs),
    /// Check manifests and compute their digests.
    #[command(subcommand)]
    Manifest(owner::ManifestCommand),
    /// Verify an agent's evidence and print the verified claims.
    Attest(owner::AttestArgs),
    /// Upload the algorithm to an agent (after verifying it).
    UploadAlgorithm(owner::UploadAlgorithmArgs),
    /// Upload a dataset to an agent (after verifying it).
    UploadDataset(owner::UploadDatasetArgs),
    /// Show the computation's state (after verifying the agent).
    Status(owner::StatusArgs),
    /// Download the results (after verifying the agent).
    Results(owner::ResultsArgs),
    /// Encrypt a file into a sealed stream; prints its identity for the manifest.
    Seal(cvmctl::sealed::SealArgs),
    /// Decrypt a sealed stream; the plaintext appears only if all of it verified.
    Unseal(cvmctl::sealed::UnsealArgs),
    /// Release a sealing key to an agent (after verifying it), for an input you own.
    ReleaseKey(owner::ReleaseKeyArgs),
    /// Upload a sealed artifact to an agent (after verifying it).
    UploadArtifact(owner::UploadArtifactArgs),
    /// The operator's side of the log link: receive logs, set the level, deliver the manifest.
    #[command(subcommand)]
    Logs(cvmctl::logs::LogsCommand),
    /// Compute the SNP launch measurement of an image, or a UKI's vTPM measurements (--uki).
    ///
    /// With --ovmf and --kernel: the launch measurement of a direct boot (OVMF, kernel, initrd,
    /// command line, vCPUs). With --ovmf --firmware-only: of the firmware alone, as a guest that
    /// boots from a disk has it. With --uki FILE: what booting that unified kernel image
    /// measures into the vTPM (PCR 4, 9, 11) and the policy rules that pin it.
    Measure(cvmctl::measure::MeasureArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(cmd) => cmd.run(),
        Command::Keygen(a) => owner::keygen(a),
        Command::Manifest(cmd) => owner::manifest(cmd),
        Command::Attest(a) => block_on(owner::attest(a)),
        Command::UploadAlgorithm(a) => block_on(owner::upload_algorithm(a)),
        Command::UploadDataset(a) => block_on(owner::upload_dataset(a)),
        Command::Status(a) => block_on(owner::status(a)),
        Command::Results(a) => block_on(owner::results(a)),
        Command::Seal(a) => cvmctl::sealed::seal_file(a),
        Command::Unseal(a) => cvmctl::sealed::unseal_file(a),
        Command::ReleaseKey(a) => block_on(owner::release_key(a)),
        Command::UploadArtifact(a) => block_on(owner::upload_artifact(a)),
        Command::Logs(cmd) => block_on(cvmctl::logs::run(cmd)),
        Command::Measure(a) => a.run(),
    };
    let code = match result {
        Ok(()) => cvmctl::exit_codes::OK,
        Err(err) => {
            if !err.is_broken_pipe() {
                eprintln!("cvmctl: {err}");
            }
            err.exit_code()
        }
    };
    std::process::exit(code);
}

fn block_on(f: impl std::future::Future<Output = cvmctl::Result>) -> cvmctl::Result {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}
