//! The operator's control channel, on the log link: the manifest at start,
//! the status, the level (see [`crate::logs`]). The operator is the
//! untrusted host: it can give the agent a manifest only while the agent
//! waits for one, and learn nothing it could not learn from the log stream.
//!
//! A manifest the operator delivers is parsed strictly; a malformed one is
//! refused with the reason (which field is wrong), and the agent keeps
//! waiting. Clients check the manifest's digest in the evidence, so a wrong
//! manifest from the operator is caught before any owner sends anything.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cvm_protocol::Manifest;
use tokio::sync::oneshot;

use crate::computation::Computation;
use crate::logs::{ComputationView, Control};

/// See the module documentation.
pub struct Operator {
    /// Set while the agent waits for the operator's manifest.
    waiting: Mutex<Option<oneshot::Sender<Manifest>>>,
    /// Whether the manifest comes from the operator at all.
    from_operator: bool,
    /// The manifest's id and digest, once there is one.
    manifest: OnceLock<(String, String)>,
    computation: OnceLock<Arc<Computation>>,
}

impl Operator {
    /// A control channel; with `wait_for_manifest`, also the receiver on
    /// which the operator's manifest arrives.
    pub fn new(wait_for_manifest: bool) -> (Arc<Operator>, Option<oneshot::Receiver<Manifest>>) {
        let (tx, rx) = if wait_for_manifest {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let op = Operator {
            waiting: Mutex::new(tx),
            from_operator: wait_for_manifest,
            manifest: OnceLock::new(),
            computation: OnceLock::new(),
        };
        (Arc::new(op), rx)
    }

    /// The manifest is known (from a file or the operator).
    pub fn set_manifest(&self, manifest: &Manifest) {
        let _ = self.manifest.set((manifest.id.clone(), manifest.digest().to_string()));
    }

    /// The computation exists.
    pub fn set_computation(&self, computation: Arc<Computation>) {
        let _ = self.computation.set(computation);
    }
}

impl Control for Operator {
    fn manifest(&self, json: &str) -> Result<String, String> {
        if !self.from_operator {
            log::warn!("refused a manifest from the operator: this agent's manifest comes from its image");
            return Err(
                "this agent takes its manifest from its image (manifest = PATH), not from the operator"
                    .into(),
            );
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = waiting.take() else {
            let (_, digest) = self.manifest.get().cloned().unwrap_or_default();
            // Sending the same manifest again (a host that reconnects) is fine.
            return match Manifest::from_json(json.as_bytes()) {
                Ok(m) if m.digest().to_string() == digest => Ok(digest),
                _ => {
                    log::warn!("refused a second manifest from the operator: {digest} is in use");
                    Err(format!(
                        "the agent already runs the manifest {digest}; it takes one manifest per start"
                    ))
                }
            };
        };
        match Manifest::from_json(json.as_bytes()) {
            Ok(manifest) => {
                let digest = manifest.digest().to_string();
                log::info!("manifest {} ({digest}) received from the operator", manifest.id);
                self.set_manifest(&manifest);
                // The receiver lives until the manifest is taken: main waits on it.
                let _ = tx.send(manifest);
                Ok(digest)
            }
            Err(e) => {
                *waiting = Some(tx);
                log::warn!("refused the operator's manifest: {e}; still waiting for a valid one");
                Err(format!("invalid manifest: {e}"))
            }
        }
    }

    fn computation(&self) -> ComputationView {
        let (id, digest) = match self.manifest.get() {
            Some((id, d)) => (Some(id.clone()), Some(d.clone())),
            None => (None, None),
        };
        let (state, reason) = match self.computation.get() {
            Some(c) => {
                let status = c.status(None);
                let (name, reason) = (status.state.name(), status.state.reason());
                (name.to_owned(), reason.map(str::to_owned))
            }
            None if self.manifest.get().is_none() && self.from_operator => {
                ("awaiting_manifest".to_owned(), None)
            }
            None => ("starting".to_owned(), None),
        };
        ComputationView { state, reason, id, manifest_digest: digest }
    }
}
