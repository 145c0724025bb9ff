//! Who may do what: the roles the manifest gives a key.

use cvm_protocol::PublicKey;

use super::{Computation, FlowError};
use crate::sealed_inputs::InputRef;

/// A role a key can have.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Provides the input: uploads it, or releases its sealing key (the
    /// algorithm, a dataset, a sealed artifact).
    Provider(InputRef),
    /// Fetches the results.
    ResultConsumer,
}

/// As `status` lists a key's roles: `algorithm_provider`,
/// `dataset_provider:NAME`, `artifact_provider:NAME`, `result_consumer`.
impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Provider(InputRef::Algorithm) => f.write_str("algorithm_provider"),
            Role::Provider(InputRef::Dataset(n)) => write!(f, "dataset_provider:{n}"),
            Role::Provider(InputRef::Artifact(n)) => write!(f, "artifact_provider:{n}"),
            Role::ResultConsumer => f.write_str("result_consumer"),
        }
    }
}

impl Computation {
    /// The roles `key` has.
    pub fn roles(&self, key: &PublicKey) -> Vec<Role> {
        let m = &self.manifest;
        let mut roles = Vec::new();
        if &m.algorithm.provider_key == key {
            roles.push(Role::Provider(InputRef::Algorithm));
        }
        roles.extend(
            m.datasets
                .iter()
                .filter(|d| &d.provider_key == key)
                .map(|d| Role::Provider(InputRef::Dataset(d.name.clone()))),
        );
        roles.extend(
            m.artifacts
                .iter()
                .filter(|a| &a.provider_key == key)
                .map(|a| Role::Provider(InputRef::Artifact(a.name.clone()))),
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
