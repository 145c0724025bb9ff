//! cvmctl: verify cvm-agent evidence and simulate SNP reports.

use clap::{Parser, Subcommand};
use cvmctl::exit_codes;
use cvmctl::report::ReportCommand;

/// Command line of cvm-agent's computation owners and operators.
///
/// Exit codes: 0 success (evidence accepted), 1 evidence rejected, 2 bad
/// usage or unreadable input.
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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(cmd) => cmd.run(),
    };
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                exit_codes::OK
            } else {
                eprintln!("cvmctl: error: {err:#}");
                exit_codes::USAGE
            }
        }
    };
    std::process::exit(code);
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
