//! The agent's HTTP API: paths, bodies and errors.
//!
//! All bodies are JSON except uploads and the results download, which are
//! raw bytes streamed in both directions. Errors are
//! `{"error": {"code": "...", "message": "..."}}` with a standard status.

use serde::{Deserialize, Serialize};

use crate::Digest;

/// `GET` the agent's state.
pub const STATUS: &str = "/v1/status";
/// `GET` the manifest, as canonical JSON.
pub const MANIFEST: &str = "/v1/manifest";
/// `POST` an [`EvidenceRequest`], get [`SessionEvidence`].
pub const EVIDENCE: &str = "/v1/evidence";
/// `PUT` the algorithm (raw bytes).
pub const ALGORITHM: &str = "/v1/algorithm";
/// `PUT` a dataset at `/v1/datasets/{name}` (raw bytes).
pub const DATASETS: &str = "/v1/datasets/";
/// `GET` the results as a tar archive.
pub const RESULTS: &str = "/v1/results";

/// The computation's state (DESIGN.md, "Computation lifecycle").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum State {
    /// Waiting for the algorithm.
    AwaitingAlgorithm,
    /// The algorithm is in; waiting for datasets.
    AwaitingData,
    /// The algorithm runs.
    Running,
    /// Results can be fetched.
    ResultsReady,
    /// Every consumer fetched the results.
    Consumed,
    /// The computation failed, with the reason.
    Failed(String),
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The state.
    #[serde(flatten)]
    pub state: State,
    /// Whether the algorithm was received.
    pub algorithm_received: bool,
    /// Names of the datasets received so far.
    pub datasets_received: Vec<String>,
    /// Names of the datasets still missing.
    pub datasets_missing: Vec<String>,
    /// The roles the calling key has.
    pub your_roles: Vec<String>,
}

/// `POST /v1/evidence` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRequest {
    /// 32 fresh random bytes, hex.
    pub nonce: String,
}

/// Fresh evidence bound to this TLS session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvidence {
    /// The raw SNP report, base64.
    pub report: String,
    /// The digest of the measurement event log the report covers.
    pub event_log_digest: Digest,
}

/// Response to an upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    /// What was stored: `algorithm` or the dataset's name.
    pub name: String,
    /// SHA-256 of the bytes received.
    pub digest: Digest,
    /// How many bytes.
    pub bytes: u64,
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's machine code and human message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code, e.g. `forbidden`, `digest_mismatch`, `too_large`, `conflict`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}
