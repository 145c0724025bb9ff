//! `release-key`: send a sealing key to a verified agent.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use cvm_protocol::api::{self, InputRef};
use hyper::StatusCode;

use super::{connect, refused, served_manifest, AgentArgs};
use crate::TransportContext as _;

/// Arguments of `release-key`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["artifact", "dataset", "algorithm"])))]
pub struct ReleaseKeyArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// The sealed artifact whose key this is.
    #[arg(long, value_name = "NAME")]
    artifact: Option<String>,
    /// The sealed dataset whose key this is.
    #[arg(long, value_name = "NAME")]
    dataset: Option<String>,
    /// The key is the sealed algorithm's.
    #[arg(long)]
    algorithm: bool,
    /// The sealing key (from `cvmctl keygen --sealing`).
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
}

/// Sends a sealing key to a verified agent, after checking that the
/// verified manifest names this input as sealed with this key.
pub async fn release_key(a: ReleaseKeyArgs) -> crate::Result {
    use cvm_protocol::manifest::Pin;
    let sealing_key = crate::sealed::read_key(&a.key_file)?;
    let (input, what) = match (&a.artifact, &a.dataset) {
        (Some(n), _) => (InputRef::Artifact(n.clone()), format!("artifact {n:?}")),
        (None, Some(n)) => (InputRef::Dataset(n.clone()), format!("dataset {n:?}")),
        (None, None) => (InputRef::Algorithm, "the algorithm".to_owned()),
    };
    let mut agent = connect(&a.agent, false).await?;
    let manifest = served_manifest(&mut agent, &a.agent).await?;
    let pinned = match &input {
        InputRef::Artifact(n) => manifest.artifact(n).map(|x| Pin::Sealed(x.sealed)),
        InputRef::Dataset(n) => manifest.dataset(n).map(|d| d.pin()),
        InputRef::Algorithm => Some(manifest.algorithm.pin()),
    };
    let identity = match pinned {
        Some(Pin::Sealed(id)) => id,
        Some(Pin::Digest(_)) => {
            return Err(anyhow::anyhow!("the manifest does not seal {what}; the key was not sent").into())
        }
        None => return Err(anyhow::anyhow!("the manifest names no {what}; the key was not sent").into()),
    };
    if identity.key_id != sealing_key.id() {
        return Err(anyhow::anyhow!(
            "{} has key id {} but the manifest seals {what} to key id {}; the key was not sent",
            a.key_file.display(),
            hex::encode(sealing_key.id()),
            hex::encode(identity.key_id)
        )
        .into());
    }
    let request = api::KeyRelease { key: sealing_key.to_text().to_string() };
    let body = zeroize::Zeroizing::new(serde_json::to_vec(&request)?);
    drop(request);
    let (status, resp) =
        agent.send(hyper::Method::PUT, &input.key_path(), Some(body.to_vec())).await.transport()?;
    if status != StatusCode::CREATED {
        return Err(refused(status, &resp));
    }
    let released: api::KeyReleased =
        serde_json::from_slice(&resp).context("malformed key-release response").transport()?;
    if released.loaded {
        eprintln!(
            "released the key of {what}; the agent read, verified and decrypted it in memory ({} bytes)",
            released.bytes
        );
    } else {
        eprintln!("released the key of {what}; the agent will decrypt it as it is uploaded");
    }
    Ok(())
}
