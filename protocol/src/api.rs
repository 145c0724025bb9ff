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
/// `PUT` a sealed artifact's ciphertext at `/v1/artifacts/{name}` (raw bytes).
pub const ARTIFACTS: &str = "/v1/artifacts/";
/// `PUT` a [`KeyRelease`] at `/v1/keys/algorithm`, `/v1/keys/datasets/{name}`
/// or `/v1/keys/artifacts/{name}`: the sealing key of that sealed input.
pub const KEYS: &str = "/v1/keys/";

/// Body of a key release. The key travels only inside attested TLS.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRelease {
    /// The key file's text (`cvm-sealing-key v1 <id> <key>`).
    pub key: String,
}

impl std::fmt::Debug for KeyRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRelease { key: <redacted> }")
    }
}

impl Drop for KeyRelease {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// Response to a key release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReleased {
    /// The input: `algorithm`, `datasets/NAME` or `artifacts/NAME`.
    pub input: String,
    /// Whether the input is now decrypted in the agent's memory (a host-path
    /// artifact is read and verified during the release); `false` means the
    /// key waits for the ciphertext's upload.
    pub loaded: bool,
    /// Plaintext bytes now in memory (0 when not loaded).
    pub bytes: u64,
}

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
    /// Names of the artifacts decrypted in memory so far.
    #[serde(default)]
    pub artifacts_received: Vec<String>,
    /// Names of the artifacts still missing.
    #[serde(default)]
    pub artifacts_missing: Vec<String>,
    /// The roles the calling key has.
    pub your_roles: Vec<String>,
    /// How strong the algorithm's sandbox is on this machine.
    #[serde(default)]
    pub sandbox: SandboxStatus,
    /// Sealed inputs being decrypted into memory right now (a large
    /// host-path artifact takes a while); empty from older agents.
    #[serde(default)]
    pub loading: Vec<Loading>,
}

/// A sealed input being decrypted into memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loading {
    /// The input, as in key-release paths (`artifacts/weights.bin`).
    pub input: String,
    /// Plaintext bytes verified and decrypted so far.
    pub bytes: u64,
    /// The input's plaintext length.
    pub total: u64,
    /// The average rate since the load started, bytes per second.
    pub bytes_per_s: u64,
    /// At that rate, the seconds left; unknown before the first chunk.
    pub seconds_left: Option<u64>,
}

/// The algorithm's sandbox, as the agent found it at start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStatus {
    /// `strict` (every layer present) or `best-effort` (a development host:
    /// `missing` lists what the algorithm is not confined by). Empty from
    /// agents older than this field.
    pub mode: String,
    /// The layers this kernel lacks, one sentence each.
    #[serde(default)]
    pub missing: Vec<String>,
}

impl SandboxStatus {
    /// Whether the algorithm runs with every layer.
    pub fn is_strict(&self) -> bool {
        self.mode == "strict" && self.missing.is_empty()
    }
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
    /// The measurement event log, oldest first; its digest is `event_log_digest`.
    #[serde(default)]
    pub events: Vec<MeasuredEvent>,
    /// The vTPM's quote over the same nonce, or why there is none.
    pub vtpm: VtpmEvidence,
    /// Measured boot: a quote of the boot PCRs over the same nonce and the
    /// firmware's event log. Absent from agents older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_boot: Option<MeasuredBootEvidence>,
}

/// The measured-boot part of session evidence: what the firmware, the UKI's
/// stub and the kernel's EFI stub measured into the vTPM before the agent
/// ran, quoted with the agent's own PCR (`cvm_evidence::measured_boot`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum MeasuredBootEvidence {
    /// A quote of the boot PCRs and the agent's own, SHA-256 bank.
    Quoted {
        /// The PCRs quoted, ascending, with the values the agent read
        /// (which the quote's PCR digest must cover).
        pcrs: Vec<PcrValue>,
        /// Marshalled TPMS_ATTEST, base64.
        quote: String,
        /// Marshalled TPMT_SIGNATURE, base64.
        signature: String,
        /// The firmware's TCG event log (`binary_bios_measurements`), base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_log: Option<String>,
        /// Why there is no event log, when there is none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_log_unavailable: Option<String>,
    },
    /// No boot quote; why.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// One PCR's SHA-256 value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcrValue {
    /// The PCR index.
    pub pcr: u32,
    /// Its SHA-256 value, hex.
    pub sha256: String,
}

/// One event of the measurement log (see `cvm_evidence::eventlog` for the
/// byte encoding that is measured).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasuredEvent {
    /// `manifest`, `algorithm`, `dataset`, `sealed_artifact`, `results`, ...
    pub kind: String,
    /// The artifact's name.
    pub name: String,
    /// The artifact's identity: `sha256:<hex>`, or a sealed stream's identity.
    pub identity: String,
}

/// The vTPM's part of session evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum VtpmEvidence {
    /// A quote over the client's nonce of the PCR the events were extended into.
    Quoted {
        /// Which vTPM this is, as far as the agent can tell.
        kind: VtpmKind,
        /// How the agent reached it (TCTI and kernel driver), for people.
        detail: String,
        /// The PCR index.
        pcr: u32,
        /// The banks extended and quoted, in quote order (`sha256`, `sha384`).
        banks: Vec<String>,
        /// Marshalled TPMS_ATTEST, base64.
        quote: String,
        /// Marshalled TPMT_SIGNATURE, base64.
        signature: String,
        /// The attestation key's certificate (DER, base64) as the vTPM's
        /// provider provisioned it in NV storage (GCP: issued by Google's
        /// EK/AK CA); absent when there is none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ak_certificate: Option<String>,
    },
    /// The agent runs without a vTPM by configuration (`vtpm = off`).
    Off,
    /// `vtpm = optional` and no usable vTPM, or the vTPM failed; the reason says which.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// Where the vTPM lives. Only a vTPM inside the TEE is trusted by the threat model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VtpmKind {
    /// Reached through the kernel's `tpm-svsm` driver: a vTPM in the SVSM at
    /// VMPL0, inside the TEE (check that the report's VMPL is above 0).
    Svsm,
    /// Anything else: as far as the agent can tell, the host provides it
    /// (e.g. QEMU + swtpm); not trusted by the threat model.
    Unverified,
}

impl std::fmt::Display for VtpmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VtpmKind::Svsm => "svsm (inside the TEE)",
            VtpmKind::Unverified => {
                "unverified (host-emulated as far as the agent can tell; not trusted by the threat model)"
            }
        })
    }
}

/// Response to an upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    /// What was stored: `algorithm`, or the dataset's or artifact's name.
    pub name: String,
    /// SHA-256 of the bytes received (a plain input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The verified stream identity (a sealed input, decrypted in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<crate::sealed::StreamIdentity>,
    /// How many bytes were received.
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
