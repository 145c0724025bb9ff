//! `results`: download the results archive from a verified agent.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use cvm_protocol::api;
use http_body_util::BodyExt as _;
use hyper::StatusCode;

use super::upload::progress;
use super::{connect, refused, AgentArgs};
use crate::TransportContext as _;

/// Arguments of `results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Where to write the results archive (tar).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Downloads the results archive.
pub async fn results(a: ResultsArgs) -> crate::Result {
    let mut agent = connect(&a.agent, false).await?;
    let resp = agent.get_stream(api::RESULTS).await.transport()?;
    let status = resp.status();
    if status != StatusCode::OK {
        let body = resp.into_body().collect().await.transport()?.to_bytes();
        return Err(refused(status, &body));
    }
    let len = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bar = progress(len, "results");
    let tmp = a.out.with_extension("partial");
    let mut file =
        tokio::fs::File::create(&tmp).await.with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut body = resp.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the download broke off").transport()?;
        if let Some(data) = frame.data_ref() {
            tokio::io::AsyncWriteExt::write_all(&mut file, data).await?;
            total += data.len() as u64;
            bar.inc(data.len() as u64);
        }
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    drop(file);
    tokio::fs::rename(&tmp, &a.out).await?;
    bar.finish_and_clear();
    eprintln!("wrote {} bytes of results to {}", total, a.out.display());
    Ok(())
}
