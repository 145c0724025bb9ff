//! `cvmctl report show`.

use std::path::PathBuf;

use std::io::Write as _;

use anyhow::Context as _;
use clap::Args;
use cvm_evidence::AttestationReport;

use crate::args::read_file;
use crate::output::{emit, Message};

/// Arguments of `report show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The raw report (1184 bytes).
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,
    /// Print one JSON line `{"type":"report","data":{field: value, ...}}`.
    #[arg(long)]
    pub json: bool,
}

impl ShowArgs {
    /// Prints the report.
    pub fn run(self) -> crate::Result {
        let bytes = read_file(&self.report)?;
        let report = AttestationReport::from_bytes(&bytes)
            .with_context(|| format!("{} is not an SNP report", self.report.display()))?;
        if self.json {
            emit(&Message::Report(report.to_json()))?;
        } else {
            let mut out = crate::output::stdout();
            let fields = report.fields();
            let width = fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
            for f in fields {
                writeln!(out, "{:width$}  {}", f.name, f.value)?;
            }
        }
        Ok(())
    }
}
