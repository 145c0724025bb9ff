//! Who may do what: the roles the manifest gives a key, and the targets of uploads.

use cvm_protocol::PublicKey;

use super::{Computation, FlowError};
use crate::sealed_inputs::InputRef;

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
    pub(super) fn name(&self) -> &str {
        match self {
            Target::Algorithm => "algorithm",
            Target::Dataset(n) | Target::Artifact(n) => n,
        }
    }

    pub(super) fn input(&self) -> InputRef {
        match self {
            Target::Algorithm => InputRef::Algorithm,
            Target::Dataset(n) => InputRef::Dataset(n.clone()),
            Target::Artifact(n) => InputRef::Artifact(n.clone()),
        }
    }
}

impl Computation {
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


    pub(super) fn require(&self, key: Option<&PublicKey>, role: &Role) -> Result<(), FlowError> {
        let key = key.ok_or(FlowError::Unauthenticated)?;
        if self.roles(key).contains(role) {
            Ok(())
        } else {
            Err(FlowError::Forbidden { key: key.fingerprint(), role: role.to_string() })
        }
    }
}
