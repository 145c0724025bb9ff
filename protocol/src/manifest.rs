//! The computation manifest: who brings what, who gets the results, and the limits.
//!
//! JSON, parsed strictly (unknown fields are errors), then validated. Its
//! identity is [`Manifest::digest`]: SHA-256 over the RFC 8785 (JCS)
//! canonical form, so whitespace and key order do not change it. The agent
//! binds that digest into its evidence; a client that pins it knows which
//! roles, keys, inputs and limits the agent enforces.
//!
//! # Integers
//!
//! Every integer in a manifest (sizes, limits, a sealed input's `size`) is
//! at most [`MAX_SAFE_INTEGER`], 2^53 - 1; validation refuses a larger one
//! and names its field. RFC 8785 writes numbers as IEEE 754 doubles, which
//! hold every integer up to 2^53 exactly and no longer all of them above:
//! 2^53 + 1 would be written as 2^53, so two manifests would share one
//! digest, and 2^64 - 1 as `18446744073709552000`, which no longer parses as
//! a manifest. With the rule, the canonical form of every manifest that
//! parses parses back to that same manifest, and the digest names exactly
//! one manifest.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::sealed::StreamIdentity;
use crate::{Digest, PublicKey};

/// Most datasets a manifest may name.
pub const MAX_DATASETS: usize = 64;
/// Most artifacts a manifest may name.
pub const MAX_ARTIFACTS: usize = 64;
/// Most runtime paths an algorithm may declare.
pub const MAX_RUNTIME_PATHS: usize = 32;
/// `limits.results_bytes` when the manifest gives none: 64 MiB.
pub const DEFAULT_RESULTS_BYTES: u64 = 64 << 20;
/// `limits.max_processes` when the manifest gives none.
pub const DEFAULT_MAX_PROCESSES: u64 = 64;
/// The largest integer a manifest may hold: 2^53 - 1, the largest that
/// every JSON reader (and RFC 8785's canonical form, which writes numbers
/// as IEEE 754 doubles) represents exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Where no runtime path or interpreter may lie: the kernel's and the
/// agent's own file systems.
const FORBIDDEN_RUNTIME_ROOTS: [&str; 5] = ["/proc", "/sys", "/dev", "/run", "/tmp"];

/// A computation's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// A short identifier: 1-64 of `A-Za-z0-9._-`.
    pub id: String,
    /// A human-readable name.
    pub name: String,
    /// The algorithm and who provides it.
    pub algorithm: Algorithm,
    /// The datasets and who provides each.
    pub datasets: Vec<Dataset>,
    /// Sealed artifacts (e.g. model weights), uploaded or read from host storage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Who may fetch the results.
    pub result_consumers: Vec<ResultConsumer>,
    /// Size, time and memory limits.
    pub limits: Limits,
    /// What happens to the algorithm's output.
    #[serde(default)]
    pub logging: Logging,
}

/// The algorithm to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Algorithm {
    /// SHA-256 of the uploaded algorithm file (a plain algorithm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The sealed stream's identity (a sealed algorithm); exactly one of `digest` and `sealed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<StreamIdentity>,
    /// The only key allowed to upload it.
    pub provider_key: PublicKey,
    /// A binary, or a script for `interpreter`.
    pub kind: AlgorithmKind,
    /// Absolute path of the interpreter in the guest image; required for scripts, absent for binaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// Arguments after the program (or the script's path).
    #[serde(default)]
    pub args: Vec<String>,
    /// Absolute paths of the guest image the algorithm may read and execute
    /// (read-only): what an interpreter or a dynamically linked program
    /// needs, e.g. `["/usr/lib/python3.11", "/usr/lib/x86_64-linux-gnu",
    /// "/lib64"]`. Nothing else of the image is inside the sandbox; the
    /// interpreter itself is always included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime: Vec<String>,
}

/// How the algorithm is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgorithmKind {
    /// A static executable.
    Binary,
    /// A script run by `interpreter`.
    Script,
}

/// A dataset input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// Its name: 1-64 of `A-Za-z0-9._-`, unique; the file name the algorithm sees.
    pub name: String,
    /// SHA-256 of its bytes (a plain dataset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The sealed stream's identity (a sealed dataset); exactly one of `digest` and `sealed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<StreamIdentity>,
    /// The only key allowed to upload it (and, if sealed, to release its key).
    pub provider_key: PublicKey,
}

/// A sealed artifact, such as model weights: always sealed, pinned by its stream identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Its name: 1-64 of `A-Za-z0-9._-`, unique among artifacts; the file name the algorithm sees.
    pub name: String,
    /// The sealed stream's identity.
    pub sealed: StreamIdentity,
    /// Where its ciphertext comes from.
    pub source: ArtifactSource,
    /// The only key allowed to release its key (and to upload it, for `upload`).
    pub provider_key: PublicKey,
}

/// Where an artifact's ciphertext comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactSource {
    /// Uploaded by its provider over attested TLS.
    Upload,
    /// Read by the agent from untrusted host storage (a file or block device
    /// the operator names in the agent's `host_artifacts` configuration).
    HostPath,
}

/// How the manifest pins an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// SHA-256 of the plain bytes.
    Digest(Digest),
    /// The identity of a sealed stream.
    Sealed(StreamIdentity),
}

fn pin(digest: Option<Digest>, sealed: Option<StreamIdentity>) -> Pin {
    match (digest, sealed) {
        (Some(d), _) => Pin::Digest(d),
        (None, Some(s)) => Pin::Sealed(s),
        // Validation rules this out; a digest of zeros matches nothing, so
        // an unvalidated manifest still fails closed.
        (None, None) => Pin::Digest(Digest([0; 32])),
    }
}

impl Algorithm {
    /// How the algorithm is pinned.
    pub fn pin(&self) -> Pin {
        pin(self.digest, self.sealed)
    }
}

impl Dataset {
    /// How the dataset is pinned.
    pub fn pin(&self) -> Pin {
        pin(self.digest, self.sealed)
    }
}

/// A key allowed to fetch the results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultConsumer {
    /// The consumer's key.
    pub key: PublicKey,
    /// Seal the results to this key (not supported by this version: must be false).
    #[serde(default)]
    pub seal_results: bool,
}

/// Resource limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted upload, algorithm or dataset, in bytes.
    pub max_upload_bytes: u64,
    /// Wall-clock limit of the run, in seconds.
    pub run_timeout_s: u64,
    /// Memory of the whole sandbox (every process of the algorithm, its
    /// results and its /tmp), in bytes.
    pub memory_bytes: u64,
    /// Largest size of the results directory and /tmp together, in bytes;
    /// [`DEFAULT_RESULTS_BYTES`] (or `memory_bytes`, if smaller) when
    /// absent. A run that fills it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_bytes: Option<u64>,
    /// Most processes (and threads) the algorithm may have at once;
    /// [`DEFAULT_MAX_PROCESSES`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_processes: Option<u64>,
}

impl Limits {
    /// `results_bytes`, or its default.
    pub fn results_bytes(&self) -> u64 {
        self.results_bytes.unwrap_or(DEFAULT_RESULTS_BYTES.min(self.memory_bytes))
    }

    /// `max_processes`, or its default.
    pub fn max_processes(&self) -> u64 {
        self.max_processes.unwrap_or(DEFAULT_MAX_PROCESSES)
    }
}

/// What happens to the algorithm's stdout and stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// `forward` to the operator's log stream, or `drop` (default).
    #[serde(default)]
    pub algorithm_output: AlgorithmOutput,
}

/// Whether the algorithm's output reaches the operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgorithmOutput {
    /// Forwarded to the host log stream.
    Forward,
    /// Discarded.
    #[default]
    Drop,
}

/// A manifest that cannot be accepted; `field` is its path in the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest field `{field}`: {message}")]
pub struct ManifestError {
    /// Where: e.g. `datasets[1].name`, or `.` for the whole document.
    pub field: String,
    /// What is wrong there.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError { field: field.into(), message: message.into() }
}

fn check_name(field: String, name: &str) -> Result<(), ManifestError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) || name.starts_with('.') {
        return Err(err(field, format!("{name:?} is not 1-64 of A-Za-z0-9._- (not starting with a dot)")));
    }
    Ok(())
}

/// An absolute, normalised path of the image that the sandbox may show:
/// not `/` itself, not in [`FORBIDDEN_RUNTIME_ROOTS`].
fn check_image_path(field: String, path: &str) -> Result<(), ManifestError> {
    let normalised = path.starts_with('/')
        && path.len() > 1
        && path.len() <= 256
        && !path.ends_with('/')
        && !path.contains('\0')
        && path[1..].split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if !normalised {
        return Err(err(
            field,
            format!(
                "{path:?} is not a normalised absolute path below / (no `.`, `..`, `//` or trailing `/`)"
            ),
        ));
    }
    if let Some(root) = FORBIDDEN_RUNTIME_ROOTS
        .iter()
        .find(|r| path == **r || path.strip_prefix(**r).is_some_and(|rest| rest.starts_with('/')))
    {
        return Err(err(field, format!("{path:?} is under {root}, which the sandbox never shows")));
    }
    Ok(())
}

/// Every integer of the manifest, wherever it is, is at most
/// [`MAX_SAFE_INTEGER`]: checked on the serialised form, so a field added
/// later is covered too.
fn check_integers(m: &Manifest) -> Result<(), ManifestError> {
    fn walk(v: &serde_json::Value, path: &mut String) -> Result<(), ManifestError> {
        match v {
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(i) if i <= MAX_SAFE_INTEGER => Ok(()),
                _ => Err(err(
                    path.clone(),
                    format!(
                        "{n} is above {MAX_SAFE_INTEGER} (2^53 - 1), the largest integer the canonical form (RFC 8785) keeps exact"
                    ),
                )),
            },
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            serde_json::Value::Object(fields) => {
                for (name, item) in fields {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(name);
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    // Serialising plain strings, integers, booleans, arrays and objects
    // cannot fail; if it did, the whole document is named.
    let value = serde_json::to_value(m).map_err(|e| err(".", e.to_string()))?;
    walk(&value, &mut String::new())
}

fn check_pin(field: &str, digest: bool, sealed: bool) -> Result<(), ManifestError> {
    match (digest, sealed) {
        (true, false) | (false, true) => Ok(()),
        (true, true) => Err(err(field, "give either `digest` (plain) or `sealed`, not both")),
        (false, false) => Err(err(field, "needs `digest` (plain) or `sealed` (a sealed stream's identity)")),
    }
}

impl Manifest {
    /// Parses and validates a manifest; errors name the offending field.
    pub fn from_json(text: &[u8]) -> Result<Manifest, ManifestError> {
        let de = &mut serde_json::Deserializer::from_slice(text);
        let m: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            err(path, e.into_inner().to_string())
        })?;
        m.validate()?;
        Ok(m)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ManifestError> {
        check_integers(self)?;
        check_name("id".into(), &self.id)?;
        if self.name.trim().is_empty() || self.name.len() > 256 {
            return Err(err("name", "must be 1-256 characters"));
        }
        let a = &self.algorithm;
        match (a.kind, &a.interpreter) {
            (AlgorithmKind::Script, None) => {
                return Err(err("algorithm.interpreter", "required when kind is \"script\""))
            }
            (AlgorithmKind::Binary, Some(_)) => {
                return Err(err("algorithm.interpreter", "not allowed when kind is \"binary\""))
            }
            (AlgorithmKind::Script, Some(i)) => check_image_path("algorithm.interpreter".into(), i)?,
            _ => {}
        }
        if a.runtime.len() > MAX_RUNTIME_PATHS {
            return Err(err(
                "algorithm.runtime",
                format!("at most {MAX_RUNTIME_PATHS} paths, found {}", a.runtime.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, path) in a.runtime.iter().enumerate() {
            check_image_path(format!("algorithm.runtime[{i}]"), path)?;
            if !seen.insert(path.as_str()) {
                return Err(err(format!("algorithm.runtime[{i}]"), format!("{path:?} is named twice")));
            }
        }
        check_pin("algorithm", a.digest.is_some(), a.sealed.is_some())?;
        if let Some(i) = a.args.iter().position(|s| s.contains('\0')) {
            return Err(err(format!("algorithm.args[{i}]"), "contains a NUL byte"));
        }
        if self.datasets.len() > MAX_DATASETS {
            return Err(err(
                "datasets",
                format!("at most {MAX_DATASETS} datasets, found {}", self.datasets.len()),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, d) in self.datasets.iter().enumerate() {
            check_name(format!("datasets[{i}].name"), &d.name)?;
            if !names.insert(d.name.as_str()) {
                return Err(err(format!("datasets[{i}].name"), format!("{:?} is named twice", d.name)));
            }
            check_pin(&format!("datasets[{i}]"), d.digest.is_some(), d.sealed.is_some())?;
        }
        if self.artifacts.len() > MAX_ARTIFACTS {
            return Err(err(
                "artifacts",
                format!("at most {MAX_ARTIFACTS} artifacts, found {}", self.artifacts.len()),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, a) in self.artifacts.iter().enumerate() {
            check_name(format!("artifacts[{i}].name"), &a.name)?;
            if !names.insert(a.name.as_str()) {
                return Err(err(format!("artifacts[{i}].name"), format!("{:?} is named twice", a.name)));
            }
        }
        if self.result_consumers.is_empty() {
            return Err(err("result_consumers", "at least one result consumer is needed"));
        }
        for (i, c) in self.result_consumers.iter().enumerate() {
            if c.seal_results {
                return Err(err(
                    format!("result_consumers[{i}].seal_results"),
                    "sealed results are not supported by this version",
                ));
            }
        }
        let l = &self.limits;
        for (field, v) in [
            ("limits.max_upload_bytes", l.max_upload_bytes),
            ("limits.run_timeout_s", l.run_timeout_s),
            ("limits.memory_bytes", l.memory_bytes),
        ] {
            if v == 0 {
                return Err(err(field, "must be greater than zero"));
            }
        }
        if l.memory_bytes < 16 << 20 {
            return Err(err("limits.memory_bytes", "must be at least 16 MiB"));
        }
        let results = l.results_bytes();
        if results < 64 << 10 || results > l.memory_bytes {
            return Err(err(
                "limits.results_bytes",
                format!(
                    "{results} is not between 64 KiB and memory_bytes ({}): results live in the sandbox's memory",
                    l.memory_bytes
                ),
            ));
        }
        if !(1..=4096).contains(&l.max_processes()) {
            return Err(err(
                "limits.max_processes",
                format!("{} is not between 1 and 4096", l.max_processes()),
            ));
        }
        Ok(())
    }

    /// The RFC 8785 canonical JSON of the manifest.
    pub fn canonical_json(&self) -> Vec<u8> {
        // Serialising plain strings, integers, booleans, arrays and objects
        // cannot fail; an empty result would hash to a digest nobody pins.
        serde_jcs::to_vec(self).unwrap_or_default()
    }

    /// SHA-256 of the canonical JSON: the manifest's identity.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.canonical_json())
    }

    /// The dataset named `name`.
    pub fn dataset(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name == name)
    }

    /// The artifact named `name`.
    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Ed25519 SPKI of an arbitrary 32-byte key.
    const KEY_A: &str = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=";
    const KEY_B: &str = "MCowBQYDK2VwAyEA3eT9q8fEqjpGkGg5r3ZKrJiUAVpQyk1G+AQlK+HoE9c=";

    fn sample() -> String {
        format!(
            r#"{{
  "id": "stats-1",
  "name": "Mean age",
  "algorithm": {{"digest": "sha256:{d}", "provider_key": "{KEY_A}", "kind": "script",
                 "interpreter": "/usr/bin/python3", "args": ["--column", "age"]}},
  "datasets": [{{"name": "hospital-a.csv", "digest": "sha256:{d}", "provider_key": "{KEY_B}"}}],
  "result_consumers": [{{"key": "{KEY_A}"}}],
  "limits": {{"max_upload_bytes": 1048576, "run_timeout_s": 30, "memory_bytes": 268435456}}
}}"#,
            d = "ab".repeat(32)
        )
    }

    #[test]
    fn parses_and_digest_ignores_layout() {
        let m = Manifest::from_json(sample().as_bytes()).unwrap();
        assert_eq!(m.logging.algorithm_output, AlgorithmOutput::Drop);
        let compact: serde_json::Value = serde_json::from_str(&sample()).unwrap();
        let again = Manifest::from_json(compact.to_string().as_bytes()).unwrap();
        assert_eq!(m.digest(), again.digest());
        let canon = String::from_utf8(m.canonical_json()).unwrap();
        assert!(canon.starts_with(r#"{"algorithm":{"args":["--column","age"],"digest":"#), "{canon}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (sample().replace("\"kind\": \"script\"", "\"kind\": \"wasm\""), "algorithm.kind"),
            (sample().replace("hospital-a.csv", "../etc/passwd"), "datasets[0].name"),
            (
                sample().replace(
                    &format!("sha256:{}\", \"provider_key\": \"{KEY_B}", "ab".repeat(32)),
                    &format!("sha256:12\", \"provider_key\": \"{KEY_B}"),
                ),
                "datasets[0].digest",
            ),
            (sample().replace("\"run_timeout_s\": 30", "\"run_timeout_s\": 0"), "limits.run_timeout_s"),
            (sample().replace("\"interpreter\": \"/usr/bin/python3\",", ""), "algorithm.interpreter"),
            (sample().replace("\"id\": \"stats-1\",", "\"id\": \"stats-1\", \"colour\": 1,"), "colour"),
            (sample().replace(KEY_B, "AAAA"), "datasets[0].provider_key"),
        ];
        for (text, field) in cases {
            let e = Manifest::from_json(text.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn sealed_inputs_and_artifacts_parse_and_plain_digests_are_unchanged() {
        let plain = Manifest::from_json(sample().as_bytes()).unwrap();
        let canon = String::from_utf8(plain.canonical_json()).unwrap();
        assert!(!canon.contains("sealed") && !canon.contains("artifacts"), "{canon}");
        let sealed = format!(
            r#"{{"key_id": "{k}", "stream_id": "{s}", "size": 42}}"#,
            k = "11".repeat(16),
            s = "22".repeat(16)
        );
        let text = sample()
            .replace(&format!(r#""digest": "sha256:{}", "provider_key": "{KEY_B}""#, "ab".repeat(32)),
                &format!(r#""sealed": {sealed}, "provider_key": "{KEY_B}""#))
            .replace(
                r#""result_consumers""#,
                &format!(r#""artifacts": [{{"name": "weights.bin", "sealed": {sealed}, "source": "host-path", "provider_key": "{KEY_B}"}}], "result_consumers""#),
            );
        let m = Manifest::from_json(text.as_bytes()).unwrap();
        let Pin::Sealed(id) = m.datasets[0].pin() else { panic!("not sealed") };
        assert_eq!((id.key_id, id.size), ([0x11; 16], 42));
        assert_eq!(m.artifact("weights.bin").unwrap().source, ArtifactSource::HostPath);
        assert!(matches!(m.algorithm.pin(), Pin::Digest(_)));
        let both = text.replacen(
            r#""sealed": {"#,
            &format!(r#""digest": "sha256:{}", "sealed": {{"#, "cd".repeat(32)),
            1,
        );
        assert_eq!(Manifest::from_json(both.as_bytes()).unwrap_err().field, "datasets[0]");
        let neither = text.replacen(&format!(r#""digest": "sha256:{}", "#, "ab".repeat(32)), "", 1);
        assert_eq!(Manifest::from_json(neither.as_bytes()).unwrap_err().field, "algorithm");
        let bad_source = text.replace("host-path", "nfs");
        assert_eq!(Manifest::from_json(bad_source.as_bytes()).unwrap_err().field, "artifacts[0].source");
        let short_id = text.replacen(&"11".repeat(16), "11", 1);
        assert_eq!(Manifest::from_json(short_id.as_bytes()).unwrap_err().field, "datasets[0].sealed.key_id");
    }

    #[test]
    fn runtime_paths_and_sandbox_limits_are_checked() {
        let with = |runtime: &str, limits: &str| {
            sample()
                .replace(
                    "\"args\": [\"--column\", \"age\"]",
                    &format!("\"args\": [], \"runtime\": {runtime}"),
                )
                .replace("\"memory_bytes\": 268435456", &format!("\"memory_bytes\": 268435456{limits}"))
        };
        let m = Manifest::from_json(with(r#"["/usr/lib/python3.11", "/lib64"]"#, "").as_bytes()).unwrap();
        assert_eq!(m.algorithm.runtime, ["/usr/lib/python3.11", "/lib64"]);
        assert_eq!((m.limits.results_bytes(), m.limits.max_processes()), (DEFAULT_RESULTS_BYTES, 64));
        let m =
            Manifest::from_json(with("[]", r#", "results_bytes": 1048576, "max_processes": 8"#).as_bytes())
                .unwrap();
        assert_eq!((m.limits.results_bytes(), m.limits.max_processes()), (1 << 20, 8));
        // Absent fields leave the canonical form (and so every older digest) as it was.
        let canon =
            String::from_utf8(Manifest::from_json(sample().as_bytes()).unwrap().canonical_json()).unwrap();
        assert!(!canon.contains("runtime") && !canon.contains("results_bytes"), "{canon}");
        for (runtime, field) in [
            (r#"["/"]"#, "algorithm.runtime[0]"),
            (r#"["/usr", "usr/lib"]"#, "algorithm.runtime[1]"),
            (r#"["/usr/../proc"]"#, "algorithm.runtime[0]"),
            (r#"["/usr//lib"]"#, "algorithm.runtime[0]"),
            (r#"["/usr/lib/"]"#, "algorithm.runtime[0]"),
            (r#"["/proc"]"#, "algorithm.runtime[0]"),
            (r#"["/sys/firmware"]"#, "algorithm.runtime[0]"),
            (r#"["/dev/tpmrm0"]"#, "algorithm.runtime[0]"),
            (r#"["/run/cvm-agent"]"#, "algorithm.runtime[0]"),
            (r#"["/usr", "/usr"]"#, "algorithm.runtime[1]"),
        ] {
            let e = Manifest::from_json(with(runtime, "").as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{runtime}: {e}");
        }
        // A path that only starts like a forbidden root is fine.
        Manifest::from_json(with(r#"["/devtools", "/procfs-lib"]"#, "").as_bytes()).unwrap();
        let too_many =
            format!("[{}]", (0..33).map(|i| format!("\"/opt/{i}\"")).collect::<Vec<_>>().join(","));
        assert_eq!(
            Manifest::from_json(with(&too_many, "").as_bytes()).unwrap_err().field,
            "algorithm.runtime"
        );
        let interp = sample().replace("/usr/bin/python3", "/proc/self/exe");
        assert_eq!(Manifest::from_json(interp.as_bytes()).unwrap_err().field, "algorithm.interpreter");
        for (limits, field) in [
            (r#", "results_bytes": 1024"#, "limits.results_bytes"),
            (r#", "results_bytes": 268435457"#, "limits.results_bytes"),
            (r#", "max_processes": 0"#, "limits.max_processes"),
            (r#", "max_processes": 5000"#, "limits.max_processes"),
        ] {
            let e = Manifest::from_json(with("[]", limits).as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{limits}: {e}");
        }
        // A small sandbox gets results of at most its memory by default.
        let small = sample().replace("268435456", "16777216");
        assert_eq!(Manifest::from_json(small.as_bytes()).unwrap().limits.results_bytes(), 16 << 20);
    }

    #[test]
    fn integers_above_2_pow_53_minus_1_are_refused_naming_the_field() {
        let sealed = |size: &str| {
            format!(
                r#"{{"key_id": "{}", "stream_id": "{}", "size": {size}}}"#,
                "11".repeat(16),
                "22".repeat(16)
            )
        };
        let base = sample()
            .replace(
                &format!(r#""digest": "sha256:{}", "provider_key": "{KEY_B}""#, "ab".repeat(32)),
                &format!(r#""sealed": {}, "provider_key": "{KEY_B}""#, sealed("DS")),
            )
            .replace(
                r#""result_consumers""#,
                &format!(
                    r#""artifacts": [{{"name": "w", "sealed": {}, "source": "upload", "provider_key": "{KEY_B}"}}], "result_consumers""#,
                    sealed("AS")
                ),
            )
            .replace("\"memory_bytes\": 268435456", "\"memory_bytes\": 268435456, \"results_bytes\": RB, \"max_processes\": MP");
        let fill = |text: &str, name: &str, value: &str| {
            let mut t = text.to_owned();
            for (n, v) in [("DS", "42"), ("AS", "43"), ("RB", "1048576"), ("MP", "8")] {
                t = t.replace(n, if n == name { value } else { v });
            }
            t
        };
        assert!(Manifest::from_json(fill(&base, "", "").as_bytes()).is_ok());
        let fields = [
            ("DS", "datasets[0].sealed.size"),
            ("AS", "artifacts[0].sealed.size"),
            ("RB", "limits.results_bytes"),
            ("MP", "limits.max_processes"),
        ];
        for big in ["9007199254740992", "9007199254740993", "18446744073709551615"] {
            for (name, field) in fields {
                let e = Manifest::from_json(fill(&base, name, big).as_bytes()).unwrap_err();
                assert_eq!(e.field, field, "{big}: {e}");
                assert!(e.message.contains("2^53 - 1"), "{e}");
            }
            for (field, now) in
                [("max_upload_bytes", "1048576"), ("run_timeout_s", "30"), ("memory_bytes", "268435456")]
            {
                let text = fill(&base, "", "").replacen(
                    &format!("\"{field}\": {now}"),
                    &format!("\"{field}\": {big}"),
                    1,
                );
                let e = Manifest::from_json(text.as_bytes()).unwrap_err();
                assert_eq!(e.field, format!("limits.{field}"), "{big}: {e}");
            }
            // The algorithm's sealed size too.
            let alg = fill(&base, "", "").replacen(
                &format!(r#""digest": "sha256:{}", "provider_key": "{KEY_A}""#, "ab".repeat(32)),
                &format!(r#""sealed": {}, "provider_key": "{KEY_A}""#, sealed(big)),
                1,
            );
            assert_eq!(Manifest::from_json(alg.as_bytes()).unwrap_err().field, "algorithm.sealed.size");
        }
        // 2^53 - 1 itself is kept exactly by the canonical form.
        let max = fill(&base, "DS", "9007199254740991");
        let m = Manifest::from_json(max.as_bytes()).unwrap();
        assert_eq!(Manifest::from_json(&m.canonical_json()).unwrap(), m);
    }

    #[test]
    fn duplicate_dataset_names_are_rejected() {
        let text = sample().replace(
            r#""datasets": ["#,
            &format!(r#""datasets": [{{"name": "hospital-a.csv", "digest": "sha256:{}", "provider_key": "{KEY_B}"}}, "#, "cd".repeat(32)),
        );
        let e = Manifest::from_json(text.as_bytes()).unwrap_err();
        assert_eq!(e.field, "datasets[1].name");
    }
}
