//! `upload-algorithm`, `upload-dataset`, `upload-artifact`: stream a file to a verified agent.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use cvm_protocol::api::{InputRef, Uploaded};
use futures_util::TryStreamExt as _;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper::StatusCode;

use super::{connect, refused, served_manifest, AgentArgs};
use crate::TransportContext as _;

/// Arguments of `upload-algorithm`.
#[derive(Debug, Args)]
pub struct UploadAlgorithmArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// The algorithm file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Arguments of `upload-dataset`.
#[derive(Debug, Args)]
pub struct UploadDatasetArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// The dataset's name in the manifest.
    #[arg(value_name = "NAME")]
    name: String,
    /// The dataset file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Arguments of `upload-artifact`.
#[derive(Debug, Args)]
pub struct UploadArtifactArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// The artifact's name in the manifest.
    #[arg(value_name = "NAME")]
    name: String,
    /// The sealed artifact file (from `cvmctl seal`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Uploads the algorithm.
pub async fn upload_algorithm(a: UploadAlgorithmArgs) -> crate::Result {
    upload(&a.agent, &InputRef::Algorithm, &a.file).await
}

/// Uploads a dataset.
pub async fn upload_dataset(a: UploadDatasetArgs) -> crate::Result {
    upload(&a.agent, &InputRef::Dataset(a.name), &a.file).await
}

/// Uploads a sealed artifact (its key must have been released).
pub async fn upload_artifact(a: UploadArtifactArgs) -> crate::Result {
    upload(&a.agent, &InputRef::Artifact(a.name), &a.file).await
}

/// A progress bar on stderr, only when a person watches (stdout and stderr are terminals).
pub(super) fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

async fn upload(agent_args: &AgentArgs, input: &InputRef, file: &std::path::Path) -> crate::Result {
    let f = tokio::fs::File::open(file).await.with_context(|| format!("cannot read {}", file.display()))?;
    let len = f.metadata().await?.len();
    let mut agent = connect(agent_args, false).await?;
    // The manifest the agent enforces; its digest was verified in the evidence.
    let manifest = served_manifest(&mut agent, agent_args).await?;
    let limit = manifest.limits.max_upload_bytes;
    if len > limit {
        return Err(anyhow::anyhow!(
            "{} is {len} bytes, over the manifest's max_upload_bytes of {limit}; nothing was sent",
            file.display()
        )
        .into());
    }
    let bar = progress(len, input.name());
    let counter = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map_ok(move |chunk| {
        counter.inc(chunk.len() as u64);
        Frame::data(chunk)
    });
    let body = StreamBody::new(stream).boxed();
    let (status, body) =
        agent.send_body(hyper::Method::PUT, &input.upload_path(), body, Some(len)).await.transport()?;
    bar.finish_and_clear();
    if status != StatusCode::CREATED {
        return Err(refused(status, &body));
    }
    let up: Uploaded = serde_json::from_slice(&body).context("malformed upload response").transport()?;
    match (&up.digest, &up.sealed) {
        (Some(d), _) => eprintln!("uploaded {} ({} bytes, {d}); the agent accepted it", up.name, up.bytes),
        (None, Some(id)) => eprintln!(
            "uploaded {} ({} bytes sealed, {id}); the agent verified it and holds the plaintext in memory",
            up.name, up.bytes
        ),
        (None, None) => eprintln!("uploaded {} ({} bytes); the agent accepted it", up.name, up.bytes),
    }
    Ok(())
}
