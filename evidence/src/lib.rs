//! AMD SEV-SNP evidence for cvm-agent.
//!
//! This crate owns what a computation owner needs to decide whether to trust
//! an agent: the SNP attestation report model ([`report`]), AMD's certificate
//! chains with the real roots built in ([`certs`]), a JSON verification
//! [`policy`], and the verifier ([`verify`]) that runs every check of the
//! design's Verification section and records each one, passed, failed or
//! skipped, with the expected and found values.
//!
//! The measurement side lives here too: the event record encoding and its
//! replay ([`eventlog`]), TPM 2.0 quotes, signatures and attestation keys in
//! pure Rust ([`tpm`]), and the checks that tie a vTPM quote and the event
//! log to the SNP evidence ([`vtpm`]). For a VM booted from a disk image
//! (the clouds): the firmware's TCG event log ([`tcglog`]), PE/Authenticode
//! digests ([`pe`]), what a unified kernel image's boot measures ([`uki`]),
//! and the checks of the boot quote and the policy's PCR and event rules
//! ([`measured_boot`]). Azure's flavour, where Microsoft's paravisor makes
//! the report and binds its vTPM's key into it, is [`azure`]; on GCP, the vTPM's attestation-key certificate up to Google's
//! pinned EK/AK CA and Google's signed launch endorsement of its firmware
//! are [`gcp`]; which flavour
//! a policy accepts, and what each leaves outside the SNP boundary, is
//! [`policy::platform`].
//!
//! With the `simulator` feature, [`simulator`] makes a software AMD chain
//! (RSA-PSS ARK and ASK, P-384 VCEK or VLEK with AMD's extensions) and reports
//! signed by it. Its ARK is trusted only when a caller adds it explicitly.
//!
//! The crate never prints or reads the environment, and verification never
//! reads the clock: the time at which certificates must be valid is an
//! argument. (The `simulator` module, a development tool, reads it to date the
//! certificates it makes.)
//!
//! # Example
//!
//! Verify a real report from an AMD Milan chip against AMD's built-in roots:
//!
//! ```
//! use cvm_evidence::certs::{parse_certificate, CertChain, TrustAnchors};
//! use cvm_evidence::{AttestationReport, Policy, Verifier};
//! use time::macros::datetime;
//!
//! let report = AttestationReport::from_bytes(include_bytes!("../testdata/amd/milan-virtee/report.bin"))?;
//! let vcek = parse_certificate(include_bytes!("../testdata/amd/milan-virtee/vcek.der"), "vcek.der")?;
//! // No ARK or ASK given: the built-in, pinned ones for the report's product are used.
//! let chain = CertChain { ark: None, intermediate: None, vek: vcek };
//! let policy = Policy::from_json(r#"{"vmpl": 0, "min_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}}"#)?;
//! let anchors = TrustAnchors::amd();
//! let verified = Verifier::new(&anchors, &policy, datetime!(2026-01-01 00:00 UTC)).verify(&report, &chain)?;
//! assert_eq!(verified.product, Some(cvm_evidence::Product::Milan));
//!
//! // One changed byte, and the signature no longer verifies.
//! let mut raw = report.raw().to_vec();
//! raw[0x90] ^= 1;
//! let tampered = AttestationReport::from_bytes(&raw)?;
//! let rejected = Verifier::new(&anchors, &policy, datetime!(2026-01-01 00:00 UTC))
//!     .verify(&tampered, &chain)
//!     .unwrap_err();
//! assert_eq!(rejected.failures[0].name, "report_signature");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod azure;
pub mod binding;
pub mod certs;
pub mod error;
pub mod eventlog;
#[cfg(feature = "simulator")]
#[doc(hidden)]
pub mod fuzzing;
pub mod gcp;
mod product;
pub mod report;

pub use error::{CertError, ParseError, PolicyError};
pub use product::Product;
pub use report::AttestationReport;
mod hexbytes;
pub mod measured_boot;
pub mod pe;
pub mod policy;
pub mod tcglog;
pub mod tpm;
pub mod uki;
pub mod verify;
pub mod vtpm;

pub use hexbytes::HexBytes;
pub use policy::Policy;
pub use verify::{Check, Outcome, Rejected, VerificationReport, Verifier};

/// The DER codec used for certificates (re-exported so callers match versions).
pub use der;
#[cfg(feature = "simulator")]
pub mod simulator;
