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
    upload_algorithm, upload_artifact, upload_dataset, UploadAlgorithmArgs, UploadArtifactArgs, UploadDatasetArgs,
};

use crate::exit_codes;

/// Connects; on rejected evidence prints why and returns the exit code.
async fn connect(args: &AgentArgs) -> Result<Agent, i32> {
    match args.connect().await {
        Ok(mut agent) => {
            warn_weak_sandbox(&mut agent).await;
            Ok(agent)
        }
        Err(e @ ConnectError::Unpinned { .. }) => {
            eprintln!("cvmctl: error: {e}");
            Err(exit_codes::USAGE)
        }
        Err(ConnectError::Input(e)) => {
            eprintln!("cvmctl: error: {e:#}");
            Err(exit_codes::USAGE)
        }
        Err(ConnectError::Rejected(report)) => {
            let _ = attest::print_checks(&report, "the agent's evidence was REJECTED; nothing was sent:");
            for f in report.failures() {
                eprintln!("cvmctl: rejected: {f}");
            }
            Err(exit_codes::REJECTED)
        }
        Err(ConnectError::Other(e)) => {
            eprintln!("cvmctl: error: {e:#}");
            Err(exit_codes::AGENT_ERROR)
        }
    }
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

fn refused(status: StatusCode, body: &[u8]) -> i32 {
    eprintln!("cvmctl: the agent refused: {}", error_message(status, body));
    exit_codes::AGENT_ERROR
}
