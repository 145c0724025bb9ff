//! cvm-agent: `cvm-agent run [--config FILE]`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use cvm_agent::api::AppState;
use cvm_agent::atls::AttestedIdentity;
use cvm_agent::computation::{Computation, RunSettings, WorkDirs};
use cvm_agent::config::{Config, ManifestSource, Sources, TeeChoice};
use cvm_agent::measurements::EventLog;
use cvm_agent::operator::Operator;
use cvm_agent::sandbox::{Mode, Sandbox};
use cvm_agent::{init, logs, server, tee, vtpm};
use cvm_protocol::Manifest;

const USAGE: &str = "usage: cvm-agent run [--config FILE] | cvm-agent init [--system] [--config FILE]\n\
    As PID 1 (the initramfs's /init) it runs init mode whatever its arguments: mounts, file\n\
    protections, modules, network, then the agent as its child, and a poweroff at the end.\n\
    `init` is the same supervisor next to another init (a child subreaper that reaps orphans\n\
    and forwards signals); with --system it also does PID 1's set-up (mounts, file protections,\n\
    modules, network), for busybox's inittab.\n\
    Configuration keys come from the kernel command line (cvm.KEY=VALUE), the file, and CVM_KEY\n\
    environment variables; see docs/configuration.md.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(cvm_agent::sandbox::launcher::SUBCOMMAND) {
        // The agent's own sandbox launcher: never for a person to run.
        cvm_agent::sandbox::launcher::main();
    }
    if std::process::id() == 1 {
        // The kernel passes init unknown command-line words as arguments: ignore them.
        let code = init::run(init::Role::Pid1, None);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let config_file = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["run"] => None,
        ["run", "--config", file] => Some(std::path::PathBuf::from(file)),
        ["init", rest @ ..] => {
            let (system, rest) = match rest {
                ["--system", rest @ ..] => (true, rest),
                _ => (false, rest),
            };
            let file = match rest {
                [] => None,
                ["--config", file] => Some(std::path::Path::new(*file)),
                _ => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            };
            let code = init::run(init::Role::Supervisor { system }, file);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
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
            eprintln!("cvm-agent: {}", cvm_protocol::terminal::escape(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

fn run(config_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = Config::load(&Sources::read(config_file)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (operator, manifest_rx) = Operator::new(config.manifest == ManifestSource::Operator);
    let mut logs =
        logs::init(config.log_level, &config.log_target, config.log_queue).context("cannot start logging")?;
    // Plaintext of sealed inputs and keys live in this process: no core
    // dumps of it, no ptrace or /proc/PID/mem by its uid's other processes.
    cvm_agent::vault::make_undumpable().context("cannot make the agent non-dumpable")?;
    // Said before the link starts, so that the operator reads them first.
    if tee::SIMULATED_BUILT_IN {
        log::warn!(
            "this agent is built with the simulated TEE (feature simulated-tee): for development and tests"
        );
    }
    if matches!(config.tee, TeeChoice::Simulated | TeeChoice::SimulatedAzure) {
        log::warn!("the SIMULATED SNP provider is in use: its evidence proves nothing about this machine");
    }
    if config.manifest == ManifestSource::Operator {
        logs::awaiting_manifest_event();
        log::info!("waiting for the operator's manifest on the log link {}", config.log_target);
    }
    let control: Arc<dyn logs::Control> = operator.clone();
    logs.connect(control, runtime.handle());
    let work_dir = config.work_dir.clone();
    let result = runtime.block_on(serve(config, operator, manifest_rx));
    wipe(&work_dir);
    if let Err(e) = &result {
        logs::fatal(format!("cvm-agent: {e:#}"));
    }
    runtime.block_on(logs.shutdown(std::time::Duration::from_secs(2)));
    result
}

async fn serve(
    config: Config,
    operator: Arc<Operator>,
    manifest_rx: Option<tokio::sync::oneshot::Receiver<Manifest>>,
) -> anyhow::Result<()> {
    let (tx, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        log::info!("signal received");
        let _ = tx.send(true);
    });
    let manifest = match (&config.manifest, manifest_rx) {
        (ManifestSource::File(path), _) => {
            let text = std::fs::read(path)
                .with_context(|| format!("cannot read the manifest {}", path.display()))?;
            Manifest::from_json(&text)
                .with_context(|| format!("refusing to start: invalid manifest {}", path.display()))?
        }
        (ManifestSource::Operator, Some(rx)) => {
            tokio::select! {
                m = rx => m.context("the log link stopped before a manifest arrived")?,
                _ = stop.changed() => anyhow::bail!("stopped while waiting for the operator's manifest"),
            }
        }
        (ManifestSource::Operator, None) => anyhow::bail!("no control channel to receive the manifest on"),
    };
    cvm_agent::sealed_inputs::check_host_artifacts(&manifest, &config.host_artifacts)
        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    operator.set_manifest(&manifest);
    logs::set_computation(&manifest.id);
    let digest = manifest.digest();
    let sandbox = Arc::new(start_sandbox(config.sandbox)?);
    let tee_settings = tee::TeeSettings {
        choice: config.tee,
        simulated_chain: config.simulated_chain.as_deref(),
        simulated_measurement: config.simulated_measurement,
        azure_thim: config.azure_thim.as_ref(),
        azure_deadline: config.azure_deadline,
    };
    let mut vtpm_settings = vtpm::VtpmSettings {
        mode: config.vtpm,
        tcti: &config.tpm_tcti,
        pcr: config.tpm_pcr,
        firmware_log: config.firmware_log.as_deref(),
        ak: vtpm::AkSource::Created,
    };
    let choice = tee::detect(&tee_settings, &vtpm_settings)?;
    if matches!(choice, TeeChoice::Azure | TeeChoice::SimulatedAzure) {
        vtpm_settings.ak = vtpm::AkSource::Persistent(cvm_evidence::azure::AK_HANDLE);
    }
    #[cfg(feature = "simulated-tee")]
    if choice == TeeChoice::SimulatedAzure {
        tee::simulated_azure::provision(&config.tpm_tcti)?;
    }
    let vtpm = vtpm::start(vtpm_settings)?;
    let tee = tee::from_settings(tee_settings, choice, &vtpm)?;
    log::info!("TEE provider: {}", tee.name());
    // On GCP the guest's own reports look like any SNP host's: what says
    // GCP is Google's certified attestation key in the vTPM, which the
    // verifier checks up to Google's EK/AK CA.
    let platform = match (tee.platform(), vtpm.ak_certificate().is_some()) {
        (cvm_evidence::policy::Platform::SevSnp, true) => cvm_evidence::policy::Platform::Gcp,
        (p, _) => p,
    };
    log::info!("flavour: {platform}");
    let identity = AttestedIdentity::create(tee.as_ref(), platform, digest.0, vtpm.ak_public())?;
    let tls = identity.server_config()?;
    let dirs = WorkDirs::create(&config.work_dir)
        .with_context(|| format!("cannot prepare {}", config.work_dir.display()))?;
    let runs = RunSettings { sandbox, uid: config.sandbox_uid, gid: config.sandbox_gid };
    let computation = Computation::with_log(manifest, dirs, runs, EventLog::new(vtpm));
    computation.sealed().set_host_paths(config.host_artifacts.clone());
    computation.sealed().set_workers(config.sealed_workers);
    log::info!("sealed inputs open on {} worker(s) each", config.sealed_workers);
    operator.set_computation(Arc::clone(&computation));
    let admission = cvm_agent::admission::Admission::new(config.client_limits);
    let state = Arc::new(AppState { computation, tee, tls_spki: identity.spki().to_vec(), admission });

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    log::info!("manifest {digest}; serving attested TLS on {addr}");
    if nix::unistd::getppid().as_raw() == 1 {
        if let Some(t) = init::since_boot() {
            log::info!("ready to serve {:.3} s after the kernel started", t.as_secs_f64());
        }
    }
    server::serve(listener, tls, Arc::clone(&state), stop).await;
    state.computation.wipe_sealed();
    log::info!("stopped");
    Ok(())
}

/// Finds the sandbox's layers and says what it found; strict refuses a missing one.
fn start_sandbox(mode: Mode) -> anyhow::Result<Sandbox> {
    let sandbox = Sandbox::new(mode, std::path::PathBuf::from("/proc/self/exe"))?;
    let f = sandbox.features();
    let missing = sandbox.missing();
    if missing.is_empty() {
        log::info!(
            "sandbox: {mode}: namespaces, Landlock ABI {}, seccomp, cgroup2 memory, pids and cpu at {}",
            f.landlock.as_ref().map_or(0, |v| *v),
            f.cgroup.as_ref().map_or_else(|_| "?".into(), |c| c.dir().display().to_string())
        );
    } else {
        for m in &missing {
            log::warn!("sandbox: {mode}: the algorithm runs WITHOUT this layer: {m}");
        }
    }
    // An out-of-memory kill takes the run (its cgroup), never the agent.
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
        log::warn!("cannot protect the agent from the out-of-memory killer: {e}");
    }
    Ok(sandbox)
}

/// Forgets what the computation held: the uploads and results in the work
/// directory (a tmpfs in the VM) are removed when the agent stops.
fn wipe(work_dir: &std::path::Path) {
    // A run cut short by the stop may still have its results tmpfs mounted.
    cvm_agent::sandbox::Scratch::unmount_all_below(work_dir);
    match std::fs::remove_dir_all(work_dir) {
        Ok(()) => log::info!("work directory {} wiped", work_dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::error!("cannot wipe the work directory {}: {e}", work_dir.display()),
    }
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
