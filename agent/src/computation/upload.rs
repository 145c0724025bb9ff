//! Uploads: the checks before the first byte, and the sinks (a hashed
//! partial file, or the decrypting thread of a sealed input).

use std::path::PathBuf;
use std::sync::Arc;

use cvm_protocol::api::State;
use cvm_protocol::manifest::{ArtifactSource, Pin};
use cvm_protocol::sealed::StreamIdentity;
use cvm_protocol::{Digest, PublicKey};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Computation, Conflict, FlowError, Role};
use crate::sealed_inputs::{self, InputRef, SealedInputError, SealedUpload};

impl Computation {
    /// Checks role, state and declared size, and reserves the target.
    ///
    /// Nothing of the body has been read when this runs, so an upload over
    /// the limit is refused before any byte is accepted.
    pub fn begin_upload(
        self: &Arc<Self>,
        key: Option<&PublicKey>,
        target: InputRef,
        declared_len: Option<u64>,
    ) -> Result<Upload, FlowError> {
        let (role, expected) = match &target {
            InputRef::Algorithm => (Role::Provider(target.clone()), self.manifest.algorithm.pin()),
            InputRef::Dataset(name) => {
                let d = self.manifest.dataset(name).ok_or_else(|| FlowError::UnknownDataset(name.clone()))?;
                (Role::Provider(target.clone()), d.pin())
            }
            InputRef::Artifact(name) => {
                let a = self.manifest.artifact(name).ok_or_else(|| {
                    FlowError::Sealed(SealedInputError::Unknown(format!("artifact {name:?}")))
                })?;
                if a.source == ArtifactSource::HostPath {
                    return Err(Conflict::HostPathUpload { name: name.clone() }.into());
                }
                (Role::Provider(target.clone()), Pin::Sealed(a.sealed))
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
            InputRef::Algorithm => inner.algorithm.is_some(),
            InputRef::Dataset(n) => inner.datasets.contains_key(n),
            InputRef::Artifact(n) => inner.artifacts.contains_key(n),
        };
        if already {
            return Err(Conflict::AlreadyReceived { name }.into());
        }
        match (&target, &inner.state) {
            (InputRef::Algorithm, State::AwaitingAlgorithm)
            | (InputRef::Dataset(_), State::AwaitingData)
            | (InputRef::Artifact(_), State::AwaitingAlgorithm | State::AwaitingData) => {}
            (InputRef::Dataset(_), State::AwaitingAlgorithm) => {
                return Err(Conflict::DatasetBeforeAlgorithm.into())
            }
            (_, state) => return Err(Conflict::UploadInState { name, state: state.clone() }.into()),
        }
        let input = target.clone();
        let sealed = match expected {
            Pin::Digest(_) => None,
            Pin::Sealed(_) => {
                let spec = sealed_inputs::spec(&self.manifest, &input)?;
                let key = self
                    .sealed
                    .key(&input)
                    .ok_or_else(|| FlowError::from(Conflict::KeyNotReleased { input: input.clone() }))?;
                Some((key, spec))
            }
        };
        if !inner.in_progress.insert(input.to_string()) {
            return Err(Conflict::UploadInProgress { name: name.clone() }.into());
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
                    if matches!(target, InputRef::Algorithm) { "algorithm.bin" } else { &name }
                ));
                Sink::Plain { expected: digest, partial, file: None, hasher: Sha256::new() }
            }
        };
        Ok(Upload { computation: Arc::clone(self), target, limit, sink, received: 0, done: false })
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
    target: InputRef,
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
                    let f = tokio::fs::File::create(&*partial).await?;
                    *file = Some(f);
                }
                if let Some(f) = file.as_mut() {
                    f.write_all(chunk).await?;
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
                    None => tokio::fs::File::create(&partial).await?,
                };
                file.sync_all().await?;
                drop(file);
                let dest = match &self.target {
                    InputRef::Algorithm => self.computation.dirs.algorithm.clone(),
                    InputRef::Dataset(n) => self.computation.dirs.datasets.join(n),
                    InputRef::Artifact(n) => return Err(Conflict::MustBeSealed { name: n.clone() }.into()),
                };
                tokio::fs::rename(&partial, &dest).await?;
                self.done = true;
                let kind = match self.target {
                    InputRef::Algorithm => "algorithm",
                    _ => "dataset",
                };
                self.computation.finish_input(self.target.clone(), kind, digest.to_string()).await;
                Ok((Some(digest), None, self.received))
            }
            Sink::Sealed(mut up) => {
                let plaintext = up.finish().await?;
                let input = self.target.clone();
                let identity = sealed_inputs::spec(&self.computation.manifest, &input)?.identity;
                self.done = true;
                self.computation.sealed.store(input.clone(), plaintext);
                self.computation
                    .finish_input(self.target.clone(), input.sealed_event_kind(), identity.measurement())
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
