//! `release-key`: send a sealing key to a verified agent.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use cvm_protocol::api;
use cvm_protocol::Manifest;
use hyper::StatusCode;

use super::{connect, refused, AgentArgs};
use crate::exit_codes;

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
pub async fn release_key(a: ReleaseKeyArgs) -> anyhow::Result<i32> {
    use cvm_protocol::manifest::Pin;
    let sealing_key = crate::sealed::read_key(&a.key_file)?;
    let (path, what) = match (&a.artifact, &a.dataset) {
        (Some(n), _) => (format!("artifacts/{n}"), format!("artifact {n:?}")),
        (None, Some(n)) => (format!("datasets/{n}"), format!("dataset {n:?}")),
        (None, None) => ("algorithm".to_owned(), "the algorithm".to_owned()),
    };
    let mut agent = match connect(&a.agent).await {
        Ok(agent) => agent,
        Err(code) => return Ok(code),
    };
    let (code, body) = agent.send(hyper::Method::GET, api::MANIFEST, None).await?;
    if code != StatusCode::OK {
        return Ok(refused(code, &body));
    }
    let manifest = Manifest::from_json(&body).context("the agent's manifest")?;
    if manifest.digest() != a.agent.manifest_digest {
        anyhow::bail!(
            "the agent serves manifest {} but its evidence names {}",
            manifest.digest(),
            a.agent.manifest_digest
        );
    }
    let pinned = match (&a.artifact, &a.dataset) {
        (Some(n), _) => manifest.artifact(n).map(|x| Pin::Sealed(x.sealed)),
        (None, Some(n)) => manifest.dataset(n).map(|d| d.pin()),
        (None, None) => Some(manifest.algorithm.pin()),
    };
    let identity = match pinned {
        Some(Pin::Sealed(id)) => id,
        Some(Pin::Digest(_)) => {
            eprintln!("cvmctl: the manifest does not seal {what}; the key was not sent");
            return Ok(exit_codes::USAGE);
        }
        None => {
            eprintln!("cvmctl: the manifest names no {what}; the key was not sent");
            return Ok(exit_codes::USAGE);
        }
    };
    if identity.key_id != sealing_key.id() {
        eprintln!(
            "cvmctl: {} has key id {} but the manifest seals {what} to key id {}; the key was not sent",
            a.key_file.display(),
            hex::encode(sealing_key.id()),
            hex::encode(identity.key_id)
        );
        return Ok(exit_codes::USAGE);
    }
    let request = api::KeyRelease { key: sealing_key.to_text().to_string() };
    let body = zeroize::Zeroizing::new(serde_json::to_vec(&request)?);
    drop(request);
    let (status, resp) =
        agent.send(hyper::Method::PUT, &format!("{}{path}", api::KEYS), Some(body.to_vec())).await?;
    if status != StatusCode::CREATED {
        return Ok(refused(status, &resp));
    }
    let released: api::KeyReleased =
        serde_json::from_slice(&resp).context("malformed key-release response")?;
    if released.loaded {
        eprintln!(
            "released the key of {what}; the agent read, verified and decrypted it in memory ({} bytes)",
            released.bytes
        );
    } else {
        eprintln!("released the key of {what}; the agent will decrypt it as it is uploaded");
    }
    Ok(exit_codes::OK)
}
