//! What cvm-agent and its clients say to each other.
//!
//! - [`manifest`]: the computation manifest, parsed strictly and hashed in
//!   its RFC 8785 canonical form; the digest is what clients pin.
//! - [`api`]: the HTTP API's paths, request and response bodies, and errors.
//! - [`sealed`]: the sealed stream format (chunked AES-256-GCM, STREAM
//!   construction) of encrypted algorithms, datasets and artifacts.
//! - [`logstream`]: log records, state events and operator requests between
//!   the agent and the host, framed and versioned.
//! - [`terminal`]: the one escaping of log text for people's terminals (the
//!   agent's console, `cvmctl logs listen`), so that forwarded output cannot
//!   forge a record or drive the terminal.
//!
//! The crate never prints, reads the environment or exits.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
mod digest;
#[doc(hidden)]
pub mod fuzzing;
mod key;
pub mod logstream;
pub mod manifest;
pub mod sealed;
pub mod terminal;

pub use digest::{Digest, DigestError};
pub use key::{KeyAlgorithm, KeyError, PublicKey};
pub use manifest::{Manifest, ManifestError};
