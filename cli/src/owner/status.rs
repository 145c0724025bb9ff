//! `status`: the computation's state, once or until it ends.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Args;
use cvm_protocol::api::{self, Status};
use hyper::StatusCode;

use super::{connect, refused, AgentArgs};
use crate::output::{emit, Message};
use crate::{Error, TransportContext as _};

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Print `{"type":"status","data":{...}}`.
    #[arg(long)]
    json: bool,
    /// Poll until the computation reaches results_ready, consumed or failed (at most this many seconds).
    #[arg(long, value_name = "SECONDS")]
    wait: Option<u64>,
}

/// Prints the computation's state.
pub async fn status(a: StatusArgs) -> crate::Result {
    let mut agent = connect(&a.agent, a.json).await?;
    let deadline = a.wait.map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    loop {
        let (code, body) = agent.send(hyper::Method::GET, api::STATUS, None).await.transport()?;
        if code != StatusCode::OK {
            return Err(refused(code, &body));
        }
        let status: Status = serde_json::from_slice(&body).context("malformed status").transport()?;
        let done = status.state.is_final();
        let waiting = deadline.is_some_and(|d| std::time::Instant::now() < d);
        if done || !waiting {
            if a.json {
                emit(&Message::Status(status.clone()))?;
            } else {
                let mut out = crate::output::stdout();
                let state = match status.state.reason() {
                    Some(reason) => format!("failed: {reason}"),
                    None => status.state.name().to_owned(),
                };
                writeln!(out, "state:              {state}")?;
                writeln!(out, "manifest:           {}", status.manifest_digest)?;
                writeln!(out, "algorithm received: {}", status.algorithm_received)?;
                writeln!(out, "datasets received:  {}", status.datasets_received.join(", "))?;
                writeln!(out, "datasets missing:   {}", status.datasets_missing.join(", "))?;
                if !status.artifacts_received.is_empty() || !status.artifacts_missing.is_empty() {
                    writeln!(out, "artifacts received: {}", status.artifacts_received.join(", "))?;
                    writeln!(out, "artifacts missing:  {}", status.artifacts_missing.join(", "))?;
                }
                for l in &status.loading {
                    writeln!(
                        out,
                        "loading:            {} {} of {} bytes ({:.0} MB/s, {} left)",
                        l.input,
                        l.bytes,
                        l.total,
                        l.bytes_per_s as f64 / 1e6,
                        l.seconds_left.map_or_else(|| "time unknown".to_owned(), |s| format!("{s} s"))
                    )?;
                }
                writeln!(out, "your roles:         {}", status.your_roles.join(", "))?;
                let sandbox = &status.sandbox;
                match sandbox.missing.as_slice() {
                    [] => writeln!(out, "sandbox:            {}", sandbox.mode)?,
                    missing => writeln!(
                        out,
                        "sandbox:            {} (without: {})",
                        sandbox.mode,
                        missing.join("; ")
                    )?,
                }
            }
            return match status.state {
                api::State::Failed(reason) => Err(Error::Failed(reason)),
                _ => Ok(()),
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
