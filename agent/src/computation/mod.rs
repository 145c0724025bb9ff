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

mod dirs;
mod error;
mod keys;
mod results;
mod roles;
mod run;
mod upload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use cvm_protocol::api::{State, Status};
use cvm_protocol::{Digest, Manifest, PublicKey};

pub use dirs::WorkDirs;
pub use error::{BadKeyRelease, Conflict, FlowError};
pub use roles::Role;
pub use upload::Upload;

use crate::measurements::{Event, EventLog, Snapshot};
use crate::sandbox::Sandbox;
use crate::sealed_inputs::{InputRef, SealedInputs};

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

    /// Records an input that is in (measured as `value`, an event of `kind`)
    /// and starts the run when it was the last one.
    ///
    /// # Cancel safety
    /// The work runs to its end on a blocking thread even if the caller
    /// stops waiting: the input is never left half recorded.
    async fn finish_input(self: &Arc<Self>, target: InputRef, kind: &'static str, value: String) {
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
        target: &InputRef,
        kind: &'static str,
        value: String,
        runtime: &tokio::runtime::Handle,
    ) {
        // The event first (under the log's lock alone: this may wait for a
        // quote), then the state.
        self.record(Event { kind, name: target.name().to_owned(), digest: value.clone() });
        let start = {
            let mut inner = self.lock();
            inner.in_progress.remove(&target.to_string());
            match target {
                InputRef::Algorithm => {
                    inner.algorithm = Some(value.clone());
                    inner.enter(State::AwaitingData);
                }
                InputRef::Dataset(n) => {
                    inner.datasets.insert(n.clone(), value.clone());
                }
                InputRef::Artifact(n) => {
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

    fn abandon_upload(&self, target: &InputRef) {
        self.lock().in_progress.remove(&target.to_string());
    }

    /// Wipes every sealed input's plaintext and key (at shutdown).
    pub fn wipe_sealed(&self) {
        self.sealed.wipe();
    }
}
