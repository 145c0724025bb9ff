//! Reading the certificates that came with a report from a directory.

use std::path::{Path, PathBuf};

use cvm_evidence::certs::Certificate;
use cvm_evidence::certs::{parse_certificate, CertChain};
use cvm_evidence::report::SigningKey;
use cvm_evidence::CertError;

/// A certificate problem: part of the evidence, so a rejection.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory lacks a file it needs (user input).
    #[error("{dir}: no {wanted} found (looked for {candidates})")]
    Missing {
        /// The directory.
        dir: PathBuf,
        /// What was looked for.
        wanted: &'static str,
        /// The file names tried.
        candidates: String,
    },
    /// A file could not be read (user input).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not a valid certificate (evidence).
    #[error(transparent)]
    Cert(#[from] CertError),
}

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    ["der", "pem", "crt", "cer"].iter().map(|ext| dir.join(format!("{stem}.{ext}"))).find(|p| p.is_file())
}

fn load(path: &Path) -> Result<Certificate, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    let name =
        path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok(parse_certificate(&bytes, &name)?)
}

/// Loads `vcek.*` or `vlek.*` (whichever `key` names), and `ask.*` or
/// `asvk.*` and `ark.*` if present, from `dir`.
pub fn load_chain(dir: &Path, key: SigningKey) -> Result<CertChain, LoadError> {
    let (vek_stem, mid_stem) = match key {
        SigningKey::Vlek => ("vlek", "asvk"),
        _ => ("vcek", "ask"),
    };
    let vek_path = find(dir, vek_stem).ok_or_else(|| LoadError::Missing {
        dir: dir.to_owned(),
        wanted: if vek_stem == "vlek" { "VLEK certificate" } else { "VCEK certificate" },
        candidates: format!("{vek_stem}.der, {vek_stem}.pem"),
    })?;
    let vek = load(&vek_path)?;
    let intermediate = find(dir, mid_stem).map(|p| load(&p)).transpose()?;
    let ark = find(dir, "ark").map(|p| load(&p)).transpose()?;
    Ok(CertChain { ark, intermediate, vek })
}
