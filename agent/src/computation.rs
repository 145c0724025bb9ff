//! The computation: roles, the state machine, uploads and the run.
//!
//! States: AwaitingAlgorithm → AwaitingData → Running → ResultsReady →
//! Consumed, and Failed(reason) from any of them. An upload is written to a
//! `.partial` file while it is hashed; only a complete upload whose digest
//! matches the manifest is renamed into place and changes the state, so a
//! broken or wrong upload loses nothing and can be retried. Sealed inputs
//! never touch a file: see [`crate::sealed_inputs`] and [`crate::vault`].
//!
//! Two locks: the state (`inner`), taken briefly and never across a TPM
//! command, and the event log with its vTPM (`log`), under which an event is
//! recorded and extended, and a quote taken, so that the events sent with a
//! quote are exactly the ones it covers. Both are taken only in blocking
//! code (a TPM command blocks) and never one inside the other. An input's
//! event is recorded before the state says it was received, so a client that
//! sees the state finds the event in the log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cvm_protocol::api::{KeyReleased, State, Status};
use cvm_protocol::manifest::{AlgorithmKind, ArtifactSource, Pin};
use cvm_protocol::sealed::{SealingKey, StreamIdentity};
use cvm_protocol::{Digest, Manifest, PublicKey};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::measurements::{Event, EventLog, Snapshot};
use crate::sandbox::{Program, RunOutcome, RunSpec, Sandbox, Scratch};
use crate::sealed_inputs::{self, InputRef, SealedInputError, SealedInputs, SealedUpload};

/// A role a key can have.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Uploads the algorithm.
    AlgorithmProvider,
    /// Uploads the named dataset.
    DatasetProvider(String),
    /// Provides the named sealed artifact (uploads it or releases its key).
    ArtifactProvider(String),
    /// Fetches the results.
    ResultConsumer,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::AlgorithmProvider => f.write_str("algorithm_provider"),
            Role::DatasetProvider(n) => write!(f, "dataset_provider:{n}"),
            Role::ArtifactProvider(n) => write!(f, "artifact_provider:{n}"),
            Role::ResultConsumer => f.write_str("result_consumer"),
        }
    }
}

/// What an upload is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The algorithm.
    Algorithm,
    /// The named dataset.
    Dataset(String),
    /// The named (sealed) artifact.
    Artifact(String),
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Target::Algorithm => "algorithm",
            Target::Dataset(n) | Target::Artifact(n) => n,
        }
    }

    fn input(&self) -> InputRef {
        match self {
            Target::Algorithm => InputRef::Algorithm,
            Target::Dataset(n) => InputRef::Dataset(n.clone()),
            Target::Artifact(n) => InputRef::Artifact(n.clone()),
        }
    }
}

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

struct Inner {
    state: State,
    /// What was measured for each input received (digest or stream identity).
    algorithm: Option<String>,
    datasets: BTreeMap<String, String>,
    artifacts: BTreeMap<String, String>,
    in_progress: BTreeSet<String>,
    fetched_by: BTreeSet<Vec<u8>>,
}

impl Inner {
    /// Moves to `state` and tells the log stream.
    fn enter(&mut self, state: State) {
        crate::logs::state_event(&state);
        self.state = state;
    }
}

/// Where the computation keeps its files.
#[derive(Clone, Debug)]
pub struct WorkDirs {
    /// Incoming partial uploads (root only).
    pub incoming: PathBuf,
    /// The algorithm file.
    pub algorithm: PathBuf,
    /// The datasets, read-only for the algorithm.
    pub datasets: PathBuf,
    /// Links to the sealed artifacts in memory (`/proc/self/fd/N`).
    pub artifacts: PathBuf,
    /// Where the run's results and /tmp tmpfs is mounted.
    pub scratch: PathBuf,
    /// Where the sandbox's root is mounted (in the sandbox's namespace only).
    pub sandbox_root: PathBuf,
    /// The packaged results.
    pub results_tar: PathBuf,
}

impl WorkDirs {
    /// Lays out and creates the directories under `root` (mode 0700 where root-only).
    ///
    /// `root` must be absent or empty: files left by an earlier computation
    /// would otherwise be taken for this one's inputs or results.
    pub fn create(root: &Path) -> std::io::Result<WorkDirs> {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(mut entries) = std::fs::read_dir(root) {
            if entries.next().is_some() {
                return Err(std::io::Error::other(format!(
                    "{} is not empty: the work directory must start empty (a fresh tmpfs in the VM)",
                    root.display()
                )));
            }
        }
        let d = WorkDirs {
            incoming: root.join("incoming"),
            algorithm: root.join("algorithm").join("algorithm"),
            datasets: root.join("datasets"),
            artifacts: root.join("artifacts"),
            scratch: root.join("scratch"),
            sandbox_root: root.join("sandbox-root"),
            results_tar: root.join("results.tar"),
        };
        for dir in [
            root,
            &d.incoming,
            d.algorithm.parent().unwrap_or(root),
            &d.datasets,
            &d.artifacts,
            &d.scratch,
            &d.sandbox_root,
        ] {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))?;
        for private in [&d.incoming, &d.scratch, &d.sandbox_root] {
            std::fs::set_permissions(private, std::fs::Permissions::from_mode(0o700))?;
        }
        if let Some(p) = d.algorithm.parent() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(d)
    }
}

/// The one computation this agent runs.
pub struct Computation {
    manifest: Manifest,
    digest: Digest,
    dirs: WorkDirs,
    runs: RunSettings,
    inner: Mutex<Inner>,
    log: Mutex<EventLog>,
    sealed: SealedInputs,
}

/// Where and as whom the algorithm runs.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// The sandbox.
    pub sandbox: Arc<Sandbox>,
    /// The sandbox's dedicated uid.
    pub uid: u32,
    /// The sandbox's dedicated gid.
    pub gid: u32,
}

impl Computation {
    /// A computation for `manifest` whose events go into `log` (and its vTPM);
    /// the manifest is the first event.
    pub fn with_log(
        manifest: Manifest,
        dirs: WorkDirs,
        runs: RunSettings,
        mut log: EventLog,
    ) -> Arc<Computation> {
        let digest = manifest.digest();
        log.record(Event { kind: "manifest", name: manifest.id.clone(), digest: digest.to_string() });
        crate::logs::state_event(&State::AwaitingAlgorithm);
        Arc::new(Computation {
            manifest,
            digest,
            dirs,
            runs,
            inner: Mutex::new(Inner {
                state: State::AwaitingAlgorithm,
                algorithm: None,
                datasets: BTreeMap::new(),
                artifacts: BTreeMap::new(),
                in_progress: BTreeSet::new(),
                fetched_by: BTreeSet::new(),
            }),
            log: Mutex::new(log),
            sealed: SealedInputs::default(),
        })
    }

    /// The sealed inputs' keys and plaintexts.
    pub fn sealed(&self) -> &SealedInputs {
        &self.sealed
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug; the state it protects is
        // still consistent (every update is a single assignment), so go on.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest's digest.
    pub fn manifest_digest(&self) -> Digest {
        self.digest
    }

    fn log(&self) -> MutexGuard<'_, EventLog> {
        // As for `inner`: a record is appended in one step.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The event log's running digest. Waits for a quote in progress.
    pub fn event_log_digest(&self) -> [u8; 32] {
        self.log().digest()
    }

    /// The event log. Waits for a quote in progress.
    pub fn events(&self) -> Vec<Event> {
        self.log().events().to_vec()
    }

    /// The event log with a vTPM quote over `nonce`, consistent with each
    /// other (no event is recorded in between). Blocks on the TPM, holding
    /// the log's lock but not the state's: call it from a blocking context.
    pub fn measurements(&self, nonce: &[u8; 32]) -> Snapshot {
        self.log().snapshot(nonce)
    }

    /// Appends `event` to the log and extends the vTPM. Blocks on the TPM.
    fn record(&self, event: Event) {
        self.log().record(event);
    }

    /// The roles `key` has.
    pub fn roles(&self, key: &PublicKey) -> Vec<Role> {
        let m = &self.manifest;
        let mut roles = Vec::new();
        if &m.algorithm.provider_key == key {
            roles.push(Role::AlgorithmProvider);
        }
        roles.extend(
            m.datasets
                .iter()
                .filter(|d| &d.provider_key == key)
                .map(|d| Role::DatasetProvider(d.name.clone())),
        );
        roles.extend(
            m.artifacts
                .iter()
                .filter(|a| &a.provider_key == key)
                .map(|a| Role::ArtifactProvider(a.name.clone())),
        );
        if m.result_consumers.iter().any(|c| &c.key == key) {
            roles.push(Role::ResultConsumer);
        }
        roles
    }

    /// The state as the API reports it.
    pub fn status(&self, key: Option<&PublicKey>) -> Status {
        let inner = self.lock();
        let received: Vec<String> = inner.datasets.keys().cloned().collect();
        let missing = self
            .manifest
            .datasets
            .iter()
            .filter(|d| !inner.datasets.contains_key(&d.name))
            .map(|d| d.name.clone())
            .collect();
        Status {
            manifest_digest: self.digest,
            state: inner.state.clone(),
            algorithm_received: inner.algorithm.is_some(),
            datasets_received: received,
            datasets_missing: missing,
            artifacts_received: inner.artifacts.keys().cloned().collect(),
            artifacts_missing: self
                .manifest
                .artifacts
                .iter()
                .filter(|a| !inner.artifacts.contains_key(&a.name))
                .map(|a| a.name.clone())
                .collect(),
            your_roles: key
                .map(|k| self.roles(k).iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            sandbox: self.runs.sandbox.status(),
            loading: self.sealed.settings().loads.snapshot(),
        }
    }

    fn require(&self, key: Option<&PublicKey>, role: &Role) -> Result<(), FlowError> {
        let key = key.ok_or(FlowError::Unauthenticated)?;
        if self.roles(key).contains(role) {
            Ok(())
        } else {
            Err(FlowError::Forbidden { key: key.fingerprint(), role: role.to_string() })
        }
    }

    /// Checks role, state and declared size, and reserves the target.
    ///
    /// Nothing of the body has been read when this runs, so an upload over
    /// the limit is refused before any byte is accepted.
    pub fn begin_upload(
        self: &Arc<Self>,
        key: Option<&PublicKey>,
        target: Target,
        declared_len: Option<u64>,
    ) -> Result<Upload, FlowError> {
        let (role, expected) = match &target {
            Target::Algorithm => (Role::AlgorithmProvider, self.manifest.algorithm.pin()),
            Target::Dataset(name) => {
                let d = self.manifest.dataset(name).ok_or_else(|| FlowError::UnknownDataset(name.clone()))?;
                (Role::DatasetProvider(name.clone()), d.pin())
            }
            Target::Artifact(name) => {
                let a = self.manifest.artifact(name).ok_or_else(|| {
                    FlowError::Sealed(SealedInputError::Unknown(format!("artifact {name:?}")))
                })?;
                if a.source == ArtifactSource::HostPath {
                    return Err(FlowError::Conflict(format!(
                        "artifact {name} is read from host storage, not uploaded: release its key instead"
                    )));
                }
                (Role::ArtifactProvider(name.clone()), Pin::Sealed(a.sealed))
            }
        };
        self.require(key, &role)?;
        let limit = self.manifest.limits.max_upload_bytes;
        if let Some(len) = declared_len.filter(|l| *l > limit) {
            return Err(FlowError::TooLarge {
                what: format!("{} (declared length)", target.name()),
                found: len,
                limit,
            });
        }
        let mut inner = self.lock();
        let name = target.name().to_owned();
        let already = match &target {
            Target::Algorithm => inner.algorithm.is_some(),
            Target::Dataset(n) => inner.datasets.contains_key(n),
            Target::Artifact(n) => inner.artifacts.contains_key(n),
        };
        if already {
            return Err(FlowError::Conflict(format!("{name} was already received")));
        }
        match (&target, &inner.state) {
            (Target::Algorithm, State::AwaitingAlgorithm)
            | (Target::Dataset(_), State::AwaitingData)
            | (Target::Artifact(_), State::AwaitingAlgorithm | State::AwaitingData) => {}
            (Target::Dataset(_), State::AwaitingAlgorithm) => {
                return Err(FlowError::Conflict("datasets are accepted only after the algorithm".into()))
            }
            (_, state) => {
                return Err(FlowError::Conflict(format!(
                    "{name} cannot be uploaded in state {}",
                    state_name(state)
                )))
            }
        }
        let input = target.input();
        let sealed = match expected {
            Pin::Digest(_) => None,
            Pin::Sealed(_) => {
                let spec = sealed_inputs::spec(&self.manifest, &input)?;
                let key = self.sealed.key(&input).ok_or_else(|| {
                    FlowError::Conflict(format!(
                        "{input} is sealed and its key has not been released: run `cvmctl release-key` first"
                    ))
                })?;
                Some((key, spec))
            }
        };
        if !inner.in_progress.insert(input.to_string()) {
            return Err(FlowError::Conflict(format!("an upload of {name} is already in progress")));
        }
        drop(inner);
        let sink = match sealed {
            Some((key, spec)) => Sink::Sealed(SealedUpload::start(key, input, spec, self.sealed.settings())),
            None => {
                // A sealed pin always has its key and spec here; a digest of
                // zeros, which matches nothing, keeps this fail-closed anyway.
                let digest = match expected {
                    Pin::Digest(d) => d,
                    Pin::Sealed(_) => Digest([0; 32]),
                };
                let partial = self.dirs.incoming.join(format!(
                    "{}.partial",
                    if matches!(target, Target::Algorithm) { "algorithm.bin" } else { &name }
                ));
                Sink::Plain { expected: digest, partial, file: None, hasher: Sha256::new() }
            }
        };
        Ok(Upload { computation: Arc::clone(self), target, limit, sink, received: 0, done: false })
    }

    /// Takes a sealed input's key, released by its owner over attested TLS.
    ///
    /// The key must be the one the manifest's `key_id` names. A host-path
    /// artifact is read and decrypted now, and the answer says whether it
    /// verified; other inputs keep the key until their ciphertext arrives.
    pub async fn release_key(
        self: &Arc<Self>,
        key: Option<&PublicKey>,
        input: InputRef,
        sealing_key: SealingKey,
    ) -> Result<KeyReleased, FlowError> {
        let spec = sealed_inputs::spec(&self.manifest, &input)?;
        let role = match &input {
            InputRef::Algorithm => Role::AlgorithmProvider,
            InputRef::Dataset(n) => Role::DatasetProvider(n.clone()),
            InputRef::Artifact(n) => Role::ArtifactProvider(n.clone()),
        };
        self.require(key, &role)?;
        if sealing_key.id() != spec.identity.key_id {
            return Err(SealedInputError::KeyMismatch {
                input: input.to_string(),
                expected: hex::encode(spec.identity.key_id),
                found: hex::encode(sealing_key.id()),
            }
            .into());
        }
        {
            let mut inner = self.lock();
            if !matches!(inner.state, State::AwaitingAlgorithm | State::AwaitingData) {
                return Err(FlowError::Conflict(format!(
                    "keys are accepted only before the run; the computation is {}",
                    state_name(&inner.state)
                )));
            }
            if self.sealed.is_loaded(&input) || self.sealed.has_key(&input) {
                return Err(FlowError::Conflict(format!("the key of {input} was already released")));
            }
            if !spec.host_path {
                self.sealed.keep_key(input.clone(), sealing_key);
                log::info!("key of {input} released by its owner; waiting for the ciphertext");
                return Ok(KeyReleased { input: input.to_string(), loaded: false, bytes: 0 });
            }
            if !inner.in_progress.insert(input.to_string()) {
                return Err(FlowError::Conflict(format!("{input} is being loaded already")));
            }
        }
        // The load runs to its end (and frees the target) even when the
        // owner's connection goes away meanwhile: the key was released.
        let this = Arc::clone(self);
        let key = input.clone();
        tokio::spawn(async move { this.load_host_artifact(input, spec, sealing_key).await })
            .await
            .unwrap_or_else(|e| {
                self.lock().in_progress.remove(&key.to_string());
                Err(FlowError::Sealed(SealedInputError::Memory {
                    input: key.to_string(),
                    reason: e.to_string(),
                }))
            })
    }

    /// Reads and decrypts a host-path artifact, then records it; frees its
    /// target in any case.
    async fn load_host_artifact(
        self: Arc<Self>,
        input: InputRef,
        spec: sealed_inputs::SealedSpec,
        sealing_key: SealingKey,
    ) -> Result<KeyReleased, FlowError> {
        let InputRef::Artifact(name) = &input else {
            self.lock().in_progress.remove(&input.to_string());
            return Err(FlowError::Conflict(format!("{input} cannot come from host storage")));
        };
        let loaded = match self.sealed.host_path(name) {
            Some(path) => {
                log::info!("key of {input} released by its owner; reading {}", path.display());
                let (i, s, settings) = (input.clone(), spec.clone(), self.sealed.settings());
                tokio::task::spawn_blocking(move || {
                    sealed_inputs::open_host_artifact(&sealing_key, &path, &i, &s, &settings)
                })
                .await
                .unwrap_or_else(|e| {
                    Err(SealedInputError::Memory { input: input.to_string(), reason: e.to_string() })
                })
            }
            None => Err(SealedInputError::HostStorage {
                input: input.to_string(),
                path: String::new(),
                reason: "not configured (host_artifacts)".into(),
            }),
        };
        let plaintext = match loaded {
            Ok(p) => p,
            Err(e) => {
                self.lock().in_progress.remove(&input.to_string());
                log::warn!("{e}");
                return Err(e.into());
            }
        };
        let bytes = plaintext.len();
        self.sealed.store(input.clone(), plaintext);
        self.finish_input(Target::Artifact(name.clone()), input.event_kind(), spec.identity.measurement())
            .await;
        Ok(KeyReleased { input: input.to_string(), loaded: true, bytes })
    }

    /// Records an input that is in (measured as `value`, an event of `kind`)
    /// and starts the run when it was the last one.
    ///
    /// # Cancel safety
    /// The work runs to its end on a blocking thread even if the caller
    /// stops waiting: the input is never left half recorded.
    async fn finish_input(self: &Arc<Self>, target: Target, kind: &'static str, value: String) {
        let this = Arc::clone(self);
        let runtime = tokio::runtime::Handle::current();
        let done =
            tokio::task::spawn_blocking(move || this.finish_input_blocking(&target, kind, value, &runtime));
        if let Err(e) = done.await {
            log::error!("recording an input failed: {e}");
        }
    }

    fn finish_input_blocking(
        self: &Arc<Self>,
        target: &Target,
        kind: &'static str,
        value: String,
        runtime: &tokio::runtime::Handle,
    ) {
        // The event first (under the log's lock alone: this may wait for a
        // quote), then the state.
        self.record(Event { kind, name: target.name().to_owned(), digest: value.clone() });
        let start = {
            let mut inner = self.lock();
            inner.in_progress.remove(&target.input().to_string());
            match target {
                Target::Algorithm => {
                    inner.algorithm = Some(value.clone());
                    inner.enter(State::AwaitingData);
                }
                Target::Dataset(n) => {
                    inner.datasets.insert(n.clone(), value.clone());
                }
                Target::Artifact(n) => {
                    inner.artifacts.insert(n.clone(), value.clone());
                }
            }
            let all_in = inner.algorithm.is_some()
                && inner.datasets.len() == self.manifest.datasets.len()
                && inner.artifacts.len() == self.manifest.artifacts.len();
            if all_in {
                inner.enter(State::Running);
            }
            all_in
        };
        log::info!("received {} ({value})", target.name());
        if start {
            let this = Arc::clone(self);
            runtime.spawn(async move { this.run().await });
        }
    }

    fn abandon_upload(&self, target: &Target) {
        self.lock().in_progress.remove(&target.input().to_string());
    }

    async fn run(self: Arc<Self>) {
        log::info!("all inputs received: running the algorithm");
        let limits = &self.manifest.limits;
        let next =
            match Scratch::mount(&self.dirs.scratch, limits.results_bytes(), self.runs.uid, self.runs.gid) {
                Ok(scratch) => {
                    let outcome = self.run_sandboxed(&scratch).await;
                    // The run is over, for better or worse: no plaintext of a sealed input outlives it.
                    self.sealed.wipe();
                    match outcome {
                        Ok(()) => self.package(scratch).await,
                        Err(reason) => State::Failed(reason),
                    }
                }
                Err(e) => {
                    self.sealed.wipe();
                    State::Failed(format!("the algorithm could not be started: {e}"))
                }
            };
        match &next {
            State::Failed(reason) => log::warn!("computation failed: {reason}"),
            _ => log::info!("results ready"),
        }
        self.lock().enter(next);
    }

    /// Packs the results, records them, and lets the scratch space go.
    async fn package(self: &Arc<Self>, scratch: Scratch) -> State {
        let this = Arc::clone(self);
        // Packed and recorded (a vTPM extend) on a blocking thread.
        let packed = tokio::task::spawn_blocking(move || {
            let r = this.package_results(&scratch.results(), scratch.limit());
            drop(scratch);
            let digest = r?;
            this.record(Event { kind: "results", name: "results.tar".into(), digest: digest.to_string() });
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match packed {
            Ok(()) => State::ResultsReady,
            Err(e) => State::Failed(format!("packaging the results failed: {e}")),
        }
    }

    async fn run_sandboxed(&self, scratch: &Scratch) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let a = &self.manifest.algorithm;
        // Sealed inputs reach the sandbox as inherited read-only descriptors
        // of their memfds, named by links to /proc/self/fd/N (see docs/sealed-inputs.md).
        let (fds, sealed_algorithm) = self.link_sealed_inputs().map_err(|e| format!("sealed inputs: {e}"))?;
        let program = match sealed_algorithm {
            Some(fd) => Program::Fd(fd),
            None => {
                let path = self.dirs.algorithm.clone();
                let executable = a.kind == AlgorithmKind::Binary;
                let mode = if executable { 0o555 } else { 0o444 };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| e.to_string())?;
                Program::File { path, executable }
            }
        };
        let interpreter = match a.kind {
            AlgorithmKind::Script => a.interpreter.as_ref().map(PathBuf::from),
            AlgorithmKind::Binary => None,
        };
        let limits = &self.manifest.limits;
        let spec = RunSpec {
            program,
            interpreter,
            args: a.args.clone(),
            runtime: a.runtime.iter().map(PathBuf::from).collect(),
            datasets: self.dirs.datasets.clone(),
            artifacts: self.dirs.artifacts.clone(),
            root: self.dirs.sandbox_root.clone(),
            hidden: vec![self.dirs.results_tar.parent().map(Path::to_path_buf).unwrap_or_default()],
            env: Vec::new(),
            uid: self.runs.uid,
            gid: self.runs.gid,
            memory_bytes: limits.memory_bytes,
            max_processes: limits.max_processes(),
            timeout: Duration::from_secs(limits.run_timeout_s),
            output_limit: 64 << 10,
            inherit_fds: fds,
        };
        let forward =
            self.manifest.logging.algorithm_output == cvm_protocol::manifest::AlgorithmOutput::Forward;
        match self.runs.sandbox.run(&spec, scratch).await {
            RunOutcome::Succeeded { stdout, stderr, elapsed } => {
                if forward {
                    forward_output(&stdout, &stderr);
                }
                log::info!("algorithm succeeded in {:.1}s", elapsed.as_secs_f64());
                Ok(())
            }
            RunOutcome::Failed { reason, stdout, stderr, .. } => {
                if forward {
                    forward_output(&stdout, &stderr);
                }
                Err(format!("the algorithm {reason}"))
            }
        }
    }

    /// Links each sealed dataset and artifact to `/proc/self/fd/N` in the
    /// datasets or artifacts directory; returns the descriptors the sandbox
    /// inherits and, for a sealed algorithm, its descriptor.
    fn link_sealed_inputs(&self) -> std::io::Result<(Vec<i32>, Option<i32>)> {
        self.sealed.with_plaintexts(|plaintexts| {
            let mut fds = Vec::new();
            let mut algorithm = None;
            for (input, plaintext) in plaintexts {
                let fd = plaintext.fd();
                let target = PathBuf::from(format!("/proc/self/fd/{fd}"));
                match input {
                    InputRef::Algorithm => algorithm = Some(fd),
                    InputRef::Dataset(n) => std::os::unix::fs::symlink(&target, self.dirs.datasets.join(n))?,
                    InputRef::Artifact(n) => {
                        std::os::unix::fs::symlink(&target, self.dirs.artifacts.join(n))?
                    }
                }
                fds.push(fd);
            }
            Ok((fds, algorithm))
        })
    }

    /// Wipes every sealed input's plaintext and key (at shutdown).
    pub fn wipe_sealed(&self) {
        self.sealed.wipe();
    }

    /// Packs the results directory into a tar file; returns its digest.
    ///
    /// The files' apparent sizes must fit in `limit` too: a sparse file
    /// takes no space on the tmpfs but would take its whole length in the tar.
    /// And so must the package itself, names and headers included: empty
    /// files with the longest paths take no space on the tmpfs but some 5 kB
    /// each in the tar (80 MB for the 16384 files the tmpfs allows), in the
    /// agent's memory and on the consumers' wire.
    fn package_results(&self, results: &Path, limit: u64) -> std::io::Result<Digest> {
        let apparent = apparent_size(results)?;
        if apparent > limit {
            return Err(std::io::Error::other(format!(
                "the results add up to {apparent} bytes (sparse files counted whole), over their limit of {limit} bytes"
            )));
        }
        let file = std::fs::File::create(&self.dirs.results_tar)?;
        let mut builder = tar::Builder::new(Capped { inner: file, written: 0, limit });
        builder.mode(tar::HeaderMode::Deterministic);
        builder.follow_symlinks(false);
        let packed = builder.append_dir_all("results", results).and_then(|()| builder.into_inner());
        let file = match packed {
            Ok(capped) => capped.inner,
            Err(e) => {
                let _ = std::fs::remove_file(&self.dirs.results_tar);
                return Err(e);
            }
        };
        file.sync_all()?;
        let mut file = std::fs::File::open(&self.dirs.results_tar)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(Digest(hasher.finalize().into()))
    }

    /// Checks that `key` may fetch the results now, and returns the package's path.
    pub fn results(&self, key: Option<&PublicKey>) -> Result<PathBuf, FlowError> {
        self.require(key, &Role::ResultConsumer)?;
        let inner = self.lock();
        match &inner.state {
            State::ResultsReady | State::Consumed => Ok(self.dirs.results_tar.clone()),
            other => Err(FlowError::NotReady(state_name(other))),
        }
    }

    /// Records that `key` fetched the results; the last consumer moves the state to Consumed.
    pub fn results_fetched(&self, key: &PublicKey) {
        let mut inner = self.lock();
        inner.fetched_by.insert(key.spki_der().to_vec());
        let all = self.manifest.result_consumers.iter().all(|c| inner.fetched_by.contains(c.key.spki_der()));
        if all && inner.state == State::ResultsReady {
            inner.enter(State::Consumed);
            log::info!("every result consumer fetched the results");
        }
    }
}

/// A writer that refuses to grow past `limit` bytes: the results package.
struct Capped<W> {
    inner: W,
    written: u64,
    limit: u64,
}

impl<W: std::io::Write> std::io::Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let len = buf.len() as u64;
        if self.written.saturating_add(len) > self.limit {
            return Err(std::io::Error::other(format!(
                "the results package (names and headers included) would be over the results limit of {} bytes",
                self.limit
            )));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The sum of the lengths of the regular files below `dir` (links not
/// followed; a stack, not recursion: the algorithm chooses the depth).
fn apparent_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}

fn forward_output(stdout: &[u8], stderr: &[u8]) {
    for line in String::from_utf8_lossy(stdout).lines() {
        log::info!(target: "algorithm", "stdout: {line}");
    }
    for line in String::from_utf8_lossy(stderr).lines() {
        log::info!(target: "algorithm", "stderr: {line}");
    }
}

fn state_name(s: &State) -> String {
    match s {
        State::AwaitingAlgorithm => "awaiting_algorithm".into(),
        State::AwaitingData => "awaiting_data".into(),
        State::Running => "running".into(),
        State::ResultsReady => "results_ready".into(),
        State::Consumed => "consumed".into(),
        State::Failed(r) => format!("failed ({r})"),
    }
}

/// An upload in progress: plain bytes go to a partial file and into the
/// hash; sealed bytes go to the decrypting thread and from there, verified,
/// into locked memory.
///
/// Dropped without [`Upload::finish`] (a client that went away, an error),
/// it deletes the partial file (or wipes the partial plaintext) and frees
/// the target for a retry.
pub struct Upload {
    computation: Arc<Computation>,
    target: Target,
    limit: u64,
    sink: Sink,
    received: u64,
    done: bool,
}

#[expect(clippy::large_enum_variant, reason = "one sink per upload in progress; boxing would buy nothing")]
enum Sink {
    Plain { expected: Digest, partial: PathBuf, file: Option<tokio::fs::File>, hasher: Sha256 },
    Sealed(SealedUpload),
}

impl Upload {
    /// Hashes and stores (or decrypts) one chunk; refuses to go over the limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), FlowError> {
        self.received += chunk.len() as u64;
        if self.received > self.limit {
            return Err(FlowError::TooLarge {
                what: self.target.name().to_owned(),
                found: self.received,
                limit: self.limit,
            });
        }
        match &mut self.sink {
            Sink::Plain { partial, file, hasher, .. } => {
                hasher.update(chunk);
                if file.is_none() {
                    let f =
                        tokio::fs::File::create(&*partial).await.map_err(|e| FlowError::Io(e.to_string()))?;
                    *file = Some(f);
                }
                if let Some(f) = file.as_mut() {
                    f.write_all(chunk).await.map_err(|e| FlowError::Io(e.to_string()))?;
                }
            }
            Sink::Sealed(up) => up.write(chunk).await?,
        }
        Ok(())
    }

    /// Checks the digest (or the sealed stream) and moves the artifact into place.
    pub async fn finish(mut self) -> Result<(Option<Digest>, Option<StreamIdentity>, u64), FlowError> {
        let sink = std::mem::replace(
            &mut self.sink,
            Sink::Plain {
                expected: Digest([0; 32]),
                partial: PathBuf::new(),
                file: None,
                hasher: Sha256::new(),
            },
        );
        match sink {
            Sink::Plain { expected, partial, file, hasher } => {
                // Put the partial path back so that a failure below still deletes it.
                self.sink =
                    Sink::Plain { expected, partial: partial.clone(), file: None, hasher: Sha256::new() };
                let digest = Digest(hasher.finalize().into());
                if digest != expected {
                    return Err(FlowError::DigestMismatch {
                        name: self.target.name().to_owned(),
                        expected,
                        found: digest,
                    });
                }
                let file = match file {
                    Some(f) => f,
                    None => {
                        tokio::fs::File::create(&partial).await.map_err(|e| FlowError::Io(e.to_string()))?
                    }
                };
                file.sync_all().await.map_err(|e| FlowError::Io(e.to_string()))?;
                drop(file);
                let dest = match &self.target {
                    Target::Algorithm => self.computation.dirs.algorithm.clone(),
                    Target::Dataset(n) => self.computation.dirs.datasets.join(n),
                    Target::Artifact(n) => {
                        return Err(FlowError::Conflict(format!("artifact {n} must be sealed")))
                    }
                };
                tokio::fs::rename(&partial, &dest).await.map_err(|e| FlowError::Io(e.to_string()))?;
                self.done = true;
                let kind = match self.target {
                    Target::Algorithm => "algorithm",
                    _ => "dataset",
                };
                self.computation.finish_input(self.target.clone(), kind, digest.to_string()).await;
                Ok((Some(digest), None, self.received))
            }
            Sink::Sealed(mut up) => {
                let plaintext = up.finish().await?;
                let input = self.target.input();
                let identity = sealed_inputs::spec(&self.computation.manifest, &input)?.identity;
                self.done = true;
                self.computation.sealed.store(input.clone(), plaintext);
                self.computation
                    .finish_input(self.target.clone(), input.event_kind(), identity.measurement())
                    .await;
                Ok((None, Some(identity), self.received))
            }
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            if let Sink::Plain { partial, .. } = &self.sink {
                let _ = std::fs::remove_file(partial);
            }
            self.computation.abandon_upload(&self.target);
            log::warn!(
                "upload of {} abandoned after {} bytes; nothing was kept",
                self.target.name(),
                self.received
            );
        }
    }
}
