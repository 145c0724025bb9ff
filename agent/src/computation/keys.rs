//! Sealing keys released by their owners, and the host-path artifacts they open.

use std::sync::Arc;

use cvm_protocol::api::{KeyReleased, State};
use cvm_protocol::sealed::SealingKey;
use cvm_protocol::PublicKey;

use super::{Computation, Conflict, FlowError, Role};
use crate::sealed_inputs::{self, InputRef, SealedInputError};

impl Computation {
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
        self.require(key, &Role::Provider(input.clone()))?;
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
                return Err(Conflict::KeysClosed { state: inner.state.clone() }.into());
            }
            if self.sealed.is_loaded(&input) || self.sealed.has_key(&input) {
                return Err(Conflict::KeyAlreadyReleased { input }.into());
            }
            if !spec.host_path {
                self.sealed.keep_key(input.clone(), sealing_key);
                log::info!("key of {input} released by its owner; waiting for the ciphertext");
                return Ok(KeyReleased { input: input.to_string(), loaded: false, bytes: 0 });
            }
            if !inner.in_progress.insert(input.to_string()) {
                return Err(Conflict::Loading { input }.into());
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
            return Err(Conflict::NotFromHostStorage { input }.into());
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
        self.finish_input(
            InputRef::Artifact(name.clone()),
            input.sealed_event_kind(),
            spec.identity.measurement(),
        )
        .await;
        Ok(KeyReleased { input: input.to_string(), loaded: true, bytes })
    }
}
