//! The computation's refusals; `api` maps them to HTTP statuses.

use cvm_protocol::api::{InputRef, State};
use cvm_protocol::sealed::SealError;
use cvm_protocol::Digest;

use crate::sealed_inputs::SealedInputError;

/// A refused request; maps to an HTTP status in `api`.
#[derive(Debug, thiserror::Error)]
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
    #[error(transparent)]
    Conflict(#[from] Conflict),
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
    NotReady(State),
    /// Storage failed.
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    /// A sealed input or its key was refused.
    #[error(transparent)]
    Sealed(#[from] SealedInputError),
    /// A key release whose body is not a sealing key.
    #[error("key release: {0}")]
    BadKeyRelease(BadKeyRelease),
}

/// Why a request cannot be served now (`409`); the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The input was received already.
    #[error("{name} was already received")]
    AlreadyReceived {
        /// The input's name.
        name: String,
    },
    /// An upload of the input is in progress.
    #[error("an upload of {name} is already in progress")]
    UploadInProgress {
        /// The input's name.
        name: String,
    },
    /// Datasets come after the algorithm.
    #[error("datasets are accepted only after the algorithm")]
    DatasetBeforeAlgorithm,
    /// The state takes no uploads of this input.
    #[error("{name} cannot be uploaded in state {state}")]
    UploadInState {
        /// The input's name.
        name: String,
        /// The state.
        state: State,
    },
    /// A host-path artifact is loaded when its key is released, never uploaded.
    #[error("artifact {name} is read from host storage, not uploaded: release its key instead")]
    HostPathUpload {
        /// The artifact.
        name: String,
    },
    /// An input that the manifest seals came as plain bytes.
    #[error("artifact {name} must be sealed")]
    MustBeSealed {
        /// The artifact.
        name: String,
    },
    /// The ciphertext came before its key.
    #[error("{input} is sealed and its key has not been released: run `cvmctl release-key` first")]
    KeyNotReleased {
        /// The input.
        input: InputRef,
    },
    /// Keys are released only before the run.
    #[error("keys are accepted only before the run; the computation is {state}")]
    KeysClosed {
        /// The state.
        state: State,
    },
    /// The input's key was released already.
    #[error("the key of {input} was already released")]
    KeyAlreadyReleased {
        /// The input.
        input: InputRef,
    },
    /// The host-path artifact is being loaded.
    #[error("{input} is being loaded already")]
    Loading {
        /// The input.
        input: InputRef,
    },
    /// Only artifacts come from host storage.
    #[error("{input} cannot come from host storage")]
    NotFromHostStorage {
        /// The input.
        input: InputRef,
    },
}

/// A key release's body is not `{"key": "cvm-sealing-key v1 ..."}`.
#[derive(Debug, thiserror::Error)]
pub enum BadKeyRelease {
    /// Not that JSON object.
    #[error("expected {{\"key\": \"cvm-sealing-key v1 ...\"}}")]
    NotJson,
    /// The key's text is not a sealing key.
    #[error("{0}")]
    Key(SealError),
}
