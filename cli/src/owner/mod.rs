//! The computation owners' commands: keys, manifests, and talking to an agent.

mod attest;
mod connect;
mod keygen;
mod manifest;
mod measured;
mod release;
mod results;
mod status;
mod upload;

use cvm_protocol::api::{self, Status};
use cvm_protocol::Manifest;
use hyper::StatusCode;

pub use attest::{attest, AttestArgs};
pub use connect::{error_message, Agent, AgentArgs, Body, ConnectError};
pub use keygen::{keygen, KeyType, KeygenArgs};
pub use manifest::{manifest, ManifestCommand};
pub use measured::Measured;
pub use release::{release_key, ReleaseKeyArgs};
pub use results::{results, ResultsArgs};
pub use status::{status, StatusArgs};
pub use upload::{
    upload_algorithm, upload_artifact, upload_dataset, UploadAlgorithmArgs, UploadArtifactArgs,
    UploadDatasetArgs,
};

use crate::output::{emit, Message, Verdict};
use crate::{Error, Refusal, TransportContext as _};

/// Connects and verifies. Rejected evidence is printed (every check, or
/// with `json` the `check` lines and a `verdict`) and returned as
/// [`Error::Rejected`].
async fn connect(args: &AgentArgs, json: bool) -> crate::Result<Agent> {
    match args.connect().await {
        Ok(mut agent) => {
            warn_weak_sandbox(&mut agent).await;
            Ok(agent)
        }
        Err(e @ ConnectError::Unpinned { .. }) => Err(Error::Usage(anyhow::anyhow!("{e}"))),
        Err(ConnectError::Input(e)) => Err(Error::Usage(e)),
        Err(ConnectError::Rejected(report)) => {
            if json {
                for c in &report.checks {
                    emit(&Message::Check(c.into()))?;
                }
                let mut verdict = Verdict::of(report.product, &report.checks);
                verdict.manifest_digest = Some(args.manifest_digest);
                emit(&Message::Verdict(verdict))?;
            } else {
                attest::print_checks(&report, "the agent's evidence was REJECTED; nothing was sent:")?;
            }
            for f in report.failures() {
                eprintln!("cvmctl: rejected: {f}");
            }
            Err(Error::Rejected("the agent's evidence was rejected; nothing was sent".into()))
        }
        Err(ConnectError::Other(e)) => Err(Error::Transport(e)),
    }
}

/// The manifest the agent serves, checked against the digest its evidence
/// names (which the owner pinned): another manifest is a rejection.
async fn served_manifest(agent: &mut Agent, args: &AgentArgs) -> crate::Result<Manifest> {
    let (code, body) = agent.send(hyper::Method::GET, api::MANIFEST, None).await.transport()?;
    if code != StatusCode::OK {
        return Err(refused(code, &body));
    }
    let manifest = Manifest::from_json(&body)
        .map_err(|e| Error::Rejected(format!("the agent's manifest does not parse: {e}")))?;
    if manifest.digest() != args.manifest_digest {
        return Err(Error::Rejected(format!(
            "the agent serves manifest {} but its evidence names {}",
            manifest.digest(),
            args.manifest_digest
        )));
    }
    Ok(manifest)
}

/// Asks for the agent's sandbox and tells the owner, before anything is
/// sent, when it runs the algorithm without every layer (`sandbox =
/// best-effort`, a development host); the VM always runs it strict.
async fn warn_weak_sandbox(agent: &mut Agent) {
    let Ok((StatusCode::OK, body)) = agent.send(hyper::Method::GET, api::STATUS, None).await else { return };
    let Ok(status) = serde_json::from_slice::<Status>(&body) else { return };
    let s = &status.sandbox;
    agent.sandbox = Some(s.clone());
    if !s.is_strict() {
        let mode = if s.mode.is_empty() { "unknown (an older agent)" } else { s.mode.as_str() };
        eprintln!("cvmctl: WARNING: this agent's sandbox is {mode}: the algorithm runs without:");
        for m in &s.missing {
            eprintln!("cvmctl: WARNING:   {m}");
        }
    }
}

/// The agent's error response as the command's error.
fn refused(status: StatusCode, body: &[u8]) -> Error {
    Error::Refused(Refusal::from_response(status, body))
}
