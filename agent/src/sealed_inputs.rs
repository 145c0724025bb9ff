//! Sealed inputs: released keys, decryption into the vault, host storage.
//!
//! A sealed input (the algorithm, a dataset or an artifact) is opened only
//! with a key its owner released over attested TLS (`PUT /v1/keys/...`),
//! and only if that key's id is the manifest's `key_id` (the id commits to
//! the key). Its ciphertext then comes either in an upload, streamed
//! through [`SealedUpload`], or, for an artifact with `source: host-path`,
//! from the file or block device the operator configured in
//! `host_artifacts`, read during the key release. Either way the stream must
//! carry exactly the manifest's identity (checked before any chunk), every
//! chunk verifies before its plaintext counts, and the plaintext goes only
//! into the [`vault`](crate::vault); a failure wipes it and keeps nothing.
//!
//! Keys are held (zeroized on drop) from their release until their input is
//! in memory; plaintexts until the computation ends ([`SealedInputs::wipe`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use cvm_protocol::manifest::{ArtifactSource, Pin};
use cvm_protocol::sealed::{Opener, SealError, SealingKey, StreamIdentity, MAX_WORKERS};
use cvm_protocol::{Manifest, PublicKey};

use crate::loading::Loads;
use crate::memory::Room;
use crate::vault::{Filling, Plaintext};

/// One input: the algorithm, a dataset or an artifact (the API's own type).
pub use cvm_protocol::api::InputRef;

/// What the manifest says about a sealed input.
#[derive(Clone, Debug)]
pub struct SealedSpec {
    /// The pinned identity.
    pub identity: StreamIdentity,
    /// The only key that may release its key (and upload it).
    pub owner: PublicKey,
    /// Read from host storage rather than uploaded.
    pub host_path: bool,
    /// A binary algorithm: the plaintext must be executable.
    pub executable: bool,
}

/// Why a sealed input was refused; the computation maps it to a status.
#[derive(Debug, thiserror::Error)]
pub enum SealedInputError {
    /// The manifest names no such input.
    #[error("the manifest names no {0}")]
    Unknown(String),
    /// The input is not sealed in the manifest.
    #[error("{0} is not sealed in the manifest: it has no key to release")]
    NotSealed(String),
    /// The key is not the one the manifest pins.
    #[error(
        "{input}: the key's id is {found} but the manifest expects key_id {expected}; the key was discarded"
    )]
    KeyMismatch {
        /// The input.
        input: String,
        /// The manifest's key id.
        expected: String,
        /// The released key's id.
        found: String,
    },
    /// The ciphertext did not open: nothing of it was kept.
    #[error("{input}: {failure}; nothing of it was kept")]
    Stream {
        /// The input.
        input: String,
        /// What failed.
        failure: StreamFailure,
    },
    /// Host storage could not be read.
    #[error("{input}: host storage {path}: {reason}")]
    HostStorage {
        /// The input.
        input: String,
        /// The configured path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// No locked memory could be had for the plaintext.
    #[error("{input}: {reason}")]
    Memory {
        /// The input.
        input: String,
        /// What failed.
        reason: String,
    },
}

/// Why a sealed stream did not open.
#[derive(Debug, thiserror::Error)]
pub enum StreamFailure {
    /// The stream itself: its header, a chunk's tag, its length or its end.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// More bytes came after the stream's last chunk.
    #[error("bytes after the end of the stream")]
    TrailingBytes,
    /// The decrypting thread stopped (it panicked or was cancelled).
    #[error("decryption stopped: {0}")]
    Stopped(String),
    /// The stream was finished already.
    #[error("already finished")]
    Finished,
}

/// The pinned identity and owner of `input`, from the manifest.
pub fn spec(manifest: &Manifest, input: &InputRef) -> Result<SealedSpec, SealedInputError> {
    use cvm_protocol::manifest::AlgorithmKind;
    let unknown = || {
        SealedInputError::Unknown(match input {
            InputRef::Algorithm => "algorithm".into(),
            InputRef::Dataset(n) => format!("dataset {n:?}"),
            InputRef::Artifact(n) => format!("artifact {n:?}"),
        })
    };
    let not_sealed = || SealedInputError::NotSealed(input.to_string());
    match input {
        InputRef::Algorithm => match manifest.algorithm.pin() {
            Pin::Sealed(identity) => Ok(SealedSpec {
                identity,
                owner: manifest.algorithm.provider_key.clone(),
                host_path: false,
                executable: manifest.algorithm.kind == AlgorithmKind::Binary,
            }),
            Pin::Digest(_) => Err(not_sealed()),
        },
        InputRef::Dataset(n) => {
            let d = manifest.dataset(n).ok_or_else(unknown)?;
            match d.pin() {
                Pin::Sealed(identity) => Ok(SealedSpec {
                    identity,
                    owner: d.provider_key.clone(),
                    host_path: false,
                    executable: false,
                }),
                Pin::Digest(_) => Err(not_sealed()),
            }
        }
        InputRef::Artifact(n) => {
            let a = manifest.artifact(n).ok_or_else(unknown)?;
            Ok(SealedSpec {
                identity: a.sealed,
                owner: a.provider_key.clone(),
                host_path: a.source == ArtifactSource::HostPath,
                executable: false,
            })
        }
    }
}

/// Checks the operator's `host_artifacts` against the manifest: every
/// host-path artifact needs a path, and every path a host-path artifact.
pub fn check_host_artifacts(manifest: &Manifest, paths: &BTreeMap<String, PathBuf>) -> Result<(), String> {
    for a in &manifest.artifacts {
        if a.source == ArtifactSource::HostPath && !paths.contains_key(&a.name) {
            return Err(format!(
                "the manifest's artifact {:?} comes from host storage, but host_artifacts names no path for it",
                a.name
            ));
        }
    }
    for (name, path) in paths {
        if let Err(e) = std::fs::metadata(path) {
            // Not fatal: the operator may attach the disk later; the key
            // release reports host storage it cannot read.
            log::warn!("host_artifacts: {name} at {}: {e}", path.display());
        }
        match manifest.artifact(name) {
            Some(a) if a.source == ArtifactSource::HostPath => {}
            Some(_) => {
                return Err(format!("host_artifacts names {name:?}, which the manifest says is uploaded"))
            }
            None => return Err(format!("host_artifacts names {name:?}, which the manifest does not name")),
        }
    }
    Ok(())
}

/// Released keys and decrypted plaintexts.
#[derive(Default)]
pub struct SealedInputs {
    settings: Mutex<LoadSettings>,
    host_paths: Mutex<BTreeMap<String, PathBuf>>,
    keys: Mutex<BTreeMap<InputRef, SealingKey>>,
    plaintexts: Mutex<BTreeMap<InputRef, Plaintext>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is a single insert or remove; a panic elsewhere leaves the map consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SealedInputs {
    /// Sets where host-path artifacts are read from (checked with [`check_host_artifacts`]).
    pub fn set_host_paths(&self, paths: BTreeMap<String, PathBuf>) {
        *lock(&self.host_paths) = paths;
    }

    /// Sets how many workers open each sealed input.
    pub fn set_workers(&self, workers: usize) {
        lock(&self.settings).workers = workers.clamp(1, MAX_WORKERS);
    }

    /// How inputs are opened now.
    pub fn settings(&self) -> LoadSettings {
        lock(&self.settings).clone()
    }

    /// The configured host path of artifact `name`.
    pub fn host_path(&self, name: &str) -> Option<PathBuf> {
        lock(&self.host_paths).get(name).cloned()
    }

    /// Keeps a released key until its input arrives.
    pub fn keep_key(&self, input: InputRef, key: SealingKey) {
        lock(&self.keys).insert(input, key);
    }

    /// Whether a key or a plaintext is held for `input`.
    pub fn has_key(&self, input: &InputRef) -> bool {
        lock(&self.keys).contains_key(input)
    }

    /// A copy of the released key of `input`.
    pub fn key(&self, input: &InputRef) -> Option<SealingKey> {
        lock(&self.keys).get(input).cloned()
    }

    /// Whether `input` is decrypted in memory.
    pub fn is_loaded(&self, input: &InputRef) -> bool {
        lock(&self.plaintexts).contains_key(input)
    }

    /// Stores a verified plaintext; its key is no longer needed and goes.
    pub fn store(&self, input: InputRef, plaintext: Plaintext) {
        lock(&self.keys).remove(&input);
        lock(&self.plaintexts).insert(input, plaintext);
    }

    /// Runs `f` with the plaintexts (to hand their descriptors to the sandbox).
    pub fn with_plaintexts<T>(&self, f: impl FnOnce(&BTreeMap<InputRef, Plaintext>) -> T) -> T {
        f(&lock(&self.plaintexts))
    }

    /// Drops (and so zeroes) every key and plaintext.
    pub fn wipe(&self) {
        let keys = std::mem::take(&mut *lock(&self.keys));
        let plaintexts = std::mem::take(&mut *lock(&self.plaintexts));
        if !keys.is_empty() || !plaintexts.is_empty() {
            log::info!(
                "wiping {} sealed input(s) from memory and {} unused key(s)",
                plaintexts.len(),
                keys.len()
            );
        }
        drop(keys);
        drop(plaintexts);
    }
}

/// How sealed inputs are opened: on how many workers, and where their
/// progress goes.
#[derive(Clone)]
pub struct LoadSettings {
    /// Decrypting threads per input (config `sealed_workers`).
    pub workers: usize,
    /// The loads in progress, for the status.
    pub loads: Loads,
}

impl Default for LoadSettings {
    fn default() -> LoadSettings {
        LoadSettings { workers: 1, loads: Loads::default() }
    }
}

/// Refuses an input whose plaintext would not fit in locked memory, before
/// anything of it is read (see [`crate::memory`]).
fn check_room(name: &InputRef, size: u64) -> Result<(), SealedInputError> {
    Room::now().check(size).map_err(|reason| SealedInputError::Memory { input: name.to_string(), reason })
}

/// Decrypts the stream read from `input` into locked memory, on
/// `settings.workers` threads (see `cvm_protocol::sealed::Opener::open_parallel_into`).
///
/// `strict_end`: nothing may follow the stream (an upload); otherwise what
/// follows is never read (a block device larger than its stream).
pub fn open_into_vault(
    key: &SealingKey,
    input: impl Read,
    name: &InputRef,
    spec: &SealedSpec,
    strict_end: bool,
    settings: &LoadSettings,
) -> Result<Plaintext, SealedInputError> {
    check_room(name, spec.identity.size)?;
    open_checked(key, input, name, spec, strict_end, settings)
}

fn open_checked(
    key: &SealingKey,
    input: impl Read,
    name: &InputRef,
    spec: &SealedSpec,
    strict_end: bool,
    settings: &LoadSettings,
) -> Result<Plaintext, SealedInputError> {
    let stream_err = |e: SealError| SealedInputError::Stream { input: name.to_string(), failure: e.into() };
    let memory_err =
        |e: std::io::Error| SealedInputError::Memory { input: name.to_string(), reason: e.to_string() };
    let started = std::time::Instant::now();
    // The identity is checked before any chunk is read. The opener's AES key
    // schedule is boxed and zeroed on drop (aes-gcm's `zeroize` feature).
    let mut opener = Opener::expecting(key, input, &spec.identity).map_err(stream_err)?;
    let mut filling = Filling::new(&name.to_string().replace('/', ":"), spec.identity.size, spec.executable)
        .map_err(memory_err)?;
    let size = spec.identity.size;
    let workers = settings.workers.clamp(1, MAX_WORKERS);
    {
        let progress = settings.loads.start(name.to_string(), size);
        opener
            .open_parallel_into(filling.as_mut_slice(), workers, &|n| progress.load().advance(n))
            .map_err(stream_err)?;
    }
    if strict_end {
        opener.finish().map_err(stream_err)?;
    } else {
        opener.finish_at_length().map_err(stream_err)?;
    }
    let plaintext = filling.seal().map_err(memory_err)?;
    let secs = started.elapsed().as_secs_f64();
    let rate = if size >= 1 << 20 {
        format!(" ({:.0} MB/s)", size as f64 / secs.max(1e-9) / 1e6)
    } else {
        String::new()
    };
    log::info!(
        "{name}: {size} bytes verified and decrypted into locked memory in {secs:.2} s{rate} on {workers} worker(s)"
    );
    Ok(plaintext)
}

/// Reads a host-path artifact's ciphertext from `path` into the vault,
/// after checking that its plaintext fits in locked memory.
pub fn open_host_artifact(
    key: &SealingKey,
    path: &Path,
    name: &InputRef,
    spec: &SealedSpec,
    settings: &LoadSettings,
) -> Result<Plaintext, SealedInputError> {
    check_room(name, spec.identity.size)?;
    let file = std::fs::File::open(path).map_err(|e| SealedInputError::HostStorage {
        input: name.to_string(),
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    // No buffer in between: each chunk and its tag are read straight into
    // their place in locked memory, one read per chunk (1 MiB by default).
    // (A buffer would copy every chunk once more: its reads never line up
    // with the chunks after the 64-byte header.)
    open_checked(key, file, name, spec, false, settings)
}

/// A blocking reader over byte chunks sent from an async task (an upload's
/// body), for the decrypting thread.
pub struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    /// Reads what `rx` receives; the end of input is the sender's drop.
    pub fn new(rx: tokio::sync::mpsc::Receiver<Bytes>) -> ChannelReader {
        ChannelReader { rx, current: Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// An upload of a sealed input in progress: bytes go to a decrypting thread.
pub struct SealedUpload {
    name: String,
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
    worker: Option<tokio::task::JoinHandle<Result<Plaintext, SealedInputError>>>,
}

impl SealedUpload {
    /// Starts the decrypting thread for `input` with `key`.
    pub fn start(key: SealingKey, input: InputRef, spec: SealedSpec, settings: LoadSettings) -> SealedUpload {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let name = input.to_string();
        let worker = tokio::task::spawn_blocking(move || {
            open_into_vault(&key, ChannelReader::new(rx), &input, &spec, true, &settings)
        });
        SealedUpload { name, tx: Some(tx), worker: Some(worker) }
    }

    /// Hands on one piece of ciphertext; an error means the stream already failed.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), SealedInputError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(Bytes::copy_from_slice(data)).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped reading: it failed. Its error says why.
        match self.finish().await {
            Ok(_) => Err(SealedInputError::Stream {
                input: self.name.clone(),
                failure: StreamFailure::TrailingBytes,
            }),
            Err(e) => Err(e),
        }
    }

    /// Ends the input and waits for the verified plaintext.
    pub async fn finish(&mut self) -> Result<Plaintext, SealedInputError> {
        drop(self.tx.take());
        let worker = self.worker.take();
        match worker {
            Some(w) => w.await.unwrap_or_else(|e| {
                Err(SealedInputError::Stream {
                    input: self.name.clone(),
                    failure: StreamFailure::Stopped(e.to_string()),
                })
            }),
            None => {
                Err(SealedInputError::Stream { input: self.name.clone(), failure: StreamFailure::Finished })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_refs_parse_and_print() {
        for s in ["algorithm", "datasets/a.csv", "artifacts/weights"] {
            assert_eq!(InputRef::parse(s).unwrap().to_string(), s);
        }
        for s in ["", "datasets/", "models/x", "algorithm/x"] {
            assert!(InputRef::parse(s).is_none(), "{s}");
        }
    }
}
