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

impl State {
    /// The state's name, as the API, the log stream and cvmctl write it
    /// (`awaiting_algorithm`, ..., `failed`).
    pub fn name(&self) -> &'static str {
        match self {
            State::AwaitingAlgorithm => "awaiting_algorithm",
            State::AwaitingData => "awaiting_data",
            State::Running => "running",
            State::ResultsReady => "results_ready",
            State::Consumed => "consumed",
            State::Failed(_) => "failed",
        }
    }

    /// Why the computation failed, for `failed`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            State::Failed(r) => Some(r),
            _ => None,
        }
    }

    /// Whether the computation is over: results ready, consumed or failed.
    pub fn is_final(&self) -> bool {
        matches!(self, State::ResultsReady | State::Consumed | State::Failed(_))
    }
}

/// The name, and for `failed` the reason in parentheses.
impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason() {
            Some(r) => write!(f, "{} ({r})", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// One input of the computation: the algorithm, a dataset or an artifact,
/// named as in the API's paths (`algorithm`, `datasets/NAME`, `artifacts/NAME`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InputRef {
    /// The algorithm.
    Algorithm,
    /// The named dataset.
    Dataset(String),
    /// The named artifact.
    Artifact(String),
}

impl std::fmt::Display for InputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputRef::Algorithm => f.write_str("algorithm"),
            InputRef::Dataset(n) => write!(f, "datasets/{n}"),
            InputRef::Artifact(n) => write!(f, "artifacts/{n}"),
        }
    }
}

impl InputRef {
    /// Parses `algorithm`, `datasets/NAME` or `artifacts/NAME`.
    pub fn parse(s: &str) -> Option<InputRef> {
        match s.split_once('/') {
            None if s == "algorithm" => Some(InputRef::Algorithm),
            Some(("datasets", n)) if !n.is_empty() => Some(InputRef::Dataset(n.to_owned())),
            Some(("artifacts", n)) if !n.is_empty() => Some(InputRef::Artifact(n.to_owned())),
            _ => None,
        }
    }

    /// Its name: `algorithm`, or the dataset's or artifact's name.
    pub fn name(&self) -> &str {
        match self {
            InputRef::Algorithm => "algorithm",
            InputRef::Dataset(n) | InputRef::Artifact(n) => n,
        }
    }

    /// The path its bytes are uploaded to ([`ALGORITHM`], [`DATASETS`]`NAME`, [`ARTIFACTS`]`NAME`).
    pub fn upload_path(&self) -> String {
        match self {
            InputRef::Algorithm => ALGORITHM.to_owned(),
            InputRef::Dataset(n) => format!("{DATASETS}{n}"),
            InputRef::Artifact(n) => format!("{ARTIFACTS}{n}"),
        }
    }

    /// The path its sealing key is released to ([`KEYS`] followed by the input).
    pub fn key_path(&self) -> String {
        format!("{KEYS}{self}")
    }

    /// The measurement event's kind for this input when sealed.
    pub fn sealed_event_kind(&self) -> &'static str {
        match self {
            InputRef::Algorithm => "sealed_algorithm",
            InputRef::Dataset(_) => "sealed_dataset",
            InputRef::Artifact(_) => "sealed_artifact",
        }
    }
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
    /// Stable code; see [`ErrorCode`].
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

/// The stable codes of error responses, written in snake case on the wire
/// (`"forbidden"`, `"digest_mismatch"`, ...).
///
/// The agent chooses one for every refusal in one place (its `ApiError`);
/// cvmctl reads it back. A code this side does not know (a newer agent)
/// reads as [`ErrorCode::Unknown`]: the set may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request needs a client certificate over an owner key (401).
    Unauthenticated,
    /// The key lacks the role the request needs (403).
    Forbidden,
    /// No such endpoint, or no such key path (404).
    NotFound,
    /// The method is not allowed on that path (405).
    MethodNotAllowed,
    /// The manifest names no such dataset (404).
    UnknownDataset,
    /// The manifest names no such sealed input (404).
    UnknownInput,
    /// Not now: wrong state, already received, or in progress (409).
    Conflict,
    /// The results are not ready (409).
    NotReady,
    /// The input is not sealed in the manifest (409).
    NotSealed,
    /// Over the manifest's size limit (413).
    TooLarge,
    /// The bytes do not have the manifest's digest (422).
    DigestMismatch,
    /// The sealing key is not the one the manifest names (422).
    KeyMismatch,
    /// The sealed stream did not verify (422).
    SealedStreamInvalid,
    /// A malformed request (400).
    BadRequest,
    /// The request body broke off before its end (400).
    Incomplete,
    /// The request body arrived below the agent's floor rate (408).
    TooSlow,
    /// Turned away for now; retry after `Retry-After` seconds (429, 503).
    Busy,
    /// The agent's storage failed (500).
    Storage,
    /// The TLS exporter failed (500).
    Exporter,
    /// Measuring or quoting failed (500).
    Measurements,
    /// Host storage of a host-path artifact failed (502).
    HostStorage,
    /// The TEE gave no report (503).
    Tee,
    /// Not enough memory for a sealed input (507).
    Memory,
    /// A code this side does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UnknownDataset => "unknown_dataset",
            ErrorCode::UnknownInput => "unknown_input",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::NotSealed => "not_sealed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::DigestMismatch => "digest_mismatch",
            ErrorCode::KeyMismatch => "key_mismatch",
            ErrorCode::SealedStreamInvalid => "sealed_stream_invalid",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Incomplete => "incomplete",
            ErrorCode::TooSlow => "too_slow",
            ErrorCode::Busy => "busy",
            ErrorCode::Storage => "storage",
            ErrorCode::Exporter => "exporter",
            ErrorCode::Measurements => "measurements",
            ErrorCode::HostStorage => "host_storage",
            ErrorCode::Tee => "tee",
            ErrorCode::Memory => "memory",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODES: [ErrorCode; 24] = [
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnknownDataset,
        ErrorCode::UnknownInput,
        ErrorCode::Conflict,
        ErrorCode::NotReady,
        ErrorCode::NotSealed,
        ErrorCode::TooLarge,
        ErrorCode::DigestMismatch,
        ErrorCode::KeyMismatch,
        ErrorCode::SealedStreamInvalid,
        ErrorCode::BadRequest,
        ErrorCode::Incomplete,
        ErrorCode::TooSlow,
        ErrorCode::Busy,
        ErrorCode::Storage,
        ErrorCode::Exporter,
        ErrorCode::Measurements,
        ErrorCode::HostStorage,
        ErrorCode::Tee,
        ErrorCode::Memory,
        ErrorCode::Unknown,
    ];

    #[test]
    fn error_codes_are_their_wire_names_both_ways() {
        for code in CODES {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn an_error_code_of_a_newer_agent_reads_as_unknown() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error": {"code": "quota_exceeded", "message": "m"}}"#).unwrap();
        assert_eq!(body.error.code, ErrorCode::Unknown);
    }

    #[test]
    fn input_refs_are_their_paths_both_ways() {
        for (text, input) in [
            ("algorithm", InputRef::Algorithm),
            ("datasets/a.csv", InputRef::Dataset("a.csv".into())),
            ("artifacts/w.bin", InputRef::Artifact("w.bin".into())),
        ] {
            assert_eq!(input.to_string(), text);
            assert_eq!(InputRef::parse(text), Some(input.clone()));
            assert_eq!(input.key_path(), format!("{KEYS}{text}"));
        }
        assert_eq!(InputRef::Dataset("a.csv".into()).upload_path(), format!("{DATASETS}a.csv"));
        for bad in ["", "datasets/", "datasets", "keys/algorithm", "algorithm/x"] {
            assert_eq!(InputRef::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_state_is_named_as_its_json_says() {
        for state in [State::AwaitingAlgorithm, State::Running, State::Failed("oom".into())] {
            let json = serde_json::to_value(&state).unwrap();
            assert_eq!(json["state"], state.name());
        }
        assert_eq!(State::Failed("oom".into()).to_string(), "failed (oom)");
        assert!(State::Consumed.is_final() && !State::Running.is_final());
    }
}
