//! cvm-agent: `cvm-agent run [--config FILE]`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use cvm_agent::api::AppState;
use cvm_agent::atls::AttestedIdentity;
use cvm_agent::computation::{Computation, WorkDirs};
use cvm_agent::config::{Config, Sources, TeeChoice};
use cvm_agent::{logger, server, tee};
use cvm_protocol::Manifest;

const USAGE: &str = "usage: cvm-agent run [--config FILE]\n\
    Configuration keys come from the kernel command line (cvm.KEY=VALUE), the file, and CVM_KEY\n\
    environment variables; see the README.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config_file = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["run"] => None,
        ["run", "--config", file] => Some(std::path::PathBuf::from(file)),
        ["--help" | "-h"] | ["help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(config_file.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cvm-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(config_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = Config::load(&Sources::read(config_file)?)?;
    logger::init(config.log_level);
    // Plaintext of sealed inputs and keys live in this process: no core
    // dumps of it, no ptrace or /proc/PID/mem by its uid's other processes.
    cvm_agent::vault::make_undumpable().context("cannot make the agent non-dumpable")?;
    if config.tee == TeeChoice::Simulated {
        log::warn!("the SIMULATED SNP provider is in use: its evidence proves nothing about this machine");
    }
    let text = std::fs::read(&config.manifest)
        .with_context(|| format!("cannot read the manifest {}", config.manifest.display()))?;
    let manifest = Manifest::from_json(&text)
        .with_context(|| format!("refusing to start: invalid manifest {}", config.manifest.display()))?;
    cvm_agent::sealed_inputs::check_host_artifacts(&manifest, &config.host_artifacts)
        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let digest = manifest.digest();
    let tee = tee::from_config(&config)?;
    log::info!("TEE provider: {}", tee.name());
    let identity = AttestedIdentity::create(tee.as_ref(), digest.0)?;
    let tls = identity.server_config()?;
    let dirs = WorkDirs::create(&config.work_dir)
        .with_context(|| format!("cannot prepare {}", config.work_dir.display()))?;
    let computation = Computation::new(manifest, dirs, config.sandbox_uid, config.sandbox_gid);
    computation.sealed().set_host_paths(config.host_artifacts.clone());
    let state = Arc::new(AppState { computation, tee, tls_spki: identity.spki().to_vec() });

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            log::info!("signal received");
            let _ = tx.send(true);
        });
        log::info!("manifest {digest}; serving attested TLS on {addr}");
        server::serve(listener, tls, Arc::clone(&state), rx).await;
        state.computation.wipe_sealed();
        log::info!("stopped");
        anyhow::Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => std::future::pending().await,
    }
}
