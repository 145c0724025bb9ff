//! `upload-algorithm`, `upload-dataset`, `upload-artifact`: stream a file to a verified agent.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use cvm_protocol::api::{self, Uploaded};
use cvm_protocol::Manifest;
use futures_util::TryStreamExt as _;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper::StatusCode;

use super::{connect, refused, AgentArgs};
use crate::exit_codes;

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
pub async fn upload_algorithm(a: UploadAlgorithmArgs) -> anyhow::Result<i32> {
    upload(&a.agent, api::ALGORITHM, &a.file, "algorithm").await
}

/// Uploads a dataset.
pub async fn upload_dataset(a: UploadDatasetArgs) -> anyhow::Result<i32> {
    let path = format!("{}{}", api::DATASETS, a.name);
    upload(&a.agent, &path, &a.file, &a.name).await
}

/// Uploads a sealed artifact (its key must have been released).
pub async fn upload_artifact(a: UploadArtifactArgs) -> anyhow::Result<i32> {
    let path = format!("{}{}", api::ARTIFACTS, a.name);
    upload(&a.agent, &path, &a.file, &a.name).await
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

async fn upload(
    agent_args: &AgentArgs,
    path: &str,
    file: &std::path::Path,
    what: &str,
) -> anyhow::Result<i32> {
    let f = tokio::fs::File::open(file).await.with_context(|| format!("cannot read {}", file.display()))?;
    let len = f.metadata().await?.len();
    let mut agent = match connect(agent_args).await {
        Ok(agent) => agent,
        Err(code) => return Ok(code),
    };
    // The manifest the agent enforces; its digest was verified in the evidence.
    let (code, body) = agent.send(hyper::Method::GET, api::MANIFEST, None).await?;
    if code != StatusCode::OK {
        return Ok(refused(code, &body));
    }
    let manifest = Manifest::from_json(&body).context("the agent's manifest")?;
    if manifest.digest() != agent_args.manifest_digest {
        anyhow::bail!(
            "the agent serves manifest {} but its evidence names {}",
            manifest.digest(),
            agent_args.manifest_digest
        );
    }
    let limit = manifest.limits.max_upload_bytes;
    if len > limit {
        eprintln!(
            "cvmctl: {} is {len} bytes, over the manifest's max_upload_bytes of {limit}; nothing was sent",
            file.display()
        );
        return Ok(exit_codes::USAGE);
    }
    let bar = progress(len, what);
    let counter = bar.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map_ok(move |chunk| {
        counter.inc(chunk.len() as u64);
        Frame::data(chunk)
    });
    let body = StreamBody::new(stream).boxed();
    let (status, body) = agent.send_body(hyper::Method::PUT, path, body, Some(len)).await?;
    bar.finish_and_clear();
    if status != StatusCode::CREATED {
        return Ok(refused(status, &body));
    }
    let up: Uploaded = serde_json::from_slice(&body).context("malformed upload response")?;
    match (&up.digest, &up.sealed) {
        (Some(d), _) => eprintln!("uploaded {} ({} bytes, {d}); the agent accepted it", up.name, up.bytes),
        (None, Some(id)) => eprintln!(
            "uploaded {} ({} bytes sealed, {id}); the agent verified it and holds the plaintext in memory",
            up.name, up.bytes
        ),
        (None, None) => eprintln!("uploaded {} ({} bytes); the agent accepted it", up.name, up.bytes),
    }
    Ok(exit_codes::OK)
}
