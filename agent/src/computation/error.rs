//! The computation's refusals; `api` maps them to HTTP statuses.

use cvm_protocol::Digest;

use crate::sealed_inputs::SealedInputError;

/// A refused request; maps to an HTTP status in `api`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// No client certificate where one is needed.
    #[error("this request needs a client certificate over an owner key")]
    Unauthenticated,
    /// The key lacks the role.
    #[error("key {key} is not {role} in the manifest")]
    Forbidden {
        /// The caller's key fingerprint.
        key: String,
        /// The missing role.
        role: String,
    },
    /// The manifest names no such dataset.
    #[error("the manifest names no dataset {0:?}")]
    UnknownDataset(String),
    /// Not now: wrong state, already received, or in progress.
    #[error("{0}")]
    Conflict(String),
    /// Over the manifest's size limit.
    #[error("{what} of {found} bytes is over the manifest's limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its size (so far).
        found: u64,
        /// The limit.
        limit: u64,
    },
    /// The bytes do not have the manifest's digest; they were discarded.
    #[error("{name}: received {found} but the manifest expects {expected}; the upload was discarded")]
    DigestMismatch {
        /// What was uploaded.
        name: String,
        /// The manifest's digest.
        expected: Digest,
        /// The digest of what arrived.
        found: Digest,
    },
    /// The results are not ready.
    #[error("no results: the computation is {0}")]
    NotReady(String),
    /// Storage failed.
    #[error("storage: {0}")]
    Io(String),
    /// A sealed input or its key was refused.
    #[error(transparent)]
    Sealed(#[from] SealedInputError),
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
}
