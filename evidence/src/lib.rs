//! AMD SEV-SNP evidence for cvm-agent.
//!
//! This crate owns what a computation owner needs to decide whether to trust
//! an agent: the SNP attestation report model ([`report`]), AMD's certificate
//! chains with the real roots built in ([`certs`]), a JSON verification
//! [`policy`], and the verifier ([`verify`]) that runs every check of the
//! design's Verification section and records each one, passed, failed or
//! skipped, with the expected and found values.
//!
//! With the `simulator` feature, [`simulator`] makes a software AMD chain
//! (RSA-PSS ARK and ASK, P-384 VCEK or VLEK with AMD's extensions) and reports
//! signed by it. Its ARK is trusted only when a caller adds it explicitly.
//!
//! The crate never prints, reads the environment or the clock: the time at
//! which certificates must be valid is an argument.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod certs;
pub mod error;
mod product;
pub mod report;

pub use error::{CertError, ParseError, PolicyError};
pub use product::Product;
pub use report::AttestationReport;
mod hexbytes;
pub mod policy;
pub mod verify;

pub use hexbytes::HexBytes;
pub use policy::Policy;
pub use verify::{Check, Outcome, Rejected, VerificationReport, Verifier};

/// The DER codec used for certificates (re-exported so callers match versions).
pub use der;
#[cfg(feature = "simulator")]
pub mod simulator;
