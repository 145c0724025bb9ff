//! Fixtures for end-to-end tests: the real `cvm-agent` and `cvmctl`
//! binaries, a simulated SNP platform, owner keys, a manifest, and an agent
//! process on a loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test fixtures panic on setup failures")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod firmware;
pub mod loghost;
pub mod vm;

// The helpers of the leaf crate, under the paths the tests have always used.
pub use cvm_test_support::{
    assert_exit, bin, cvmctl, ok, processes_of, seal, sealing_key, sha256_file, stderr, stdout, vm_hwm, Swtpm,
};

use cvm_evidence::simulator::{ChainParams, SimulatedChain};
use cvm_evidence::Product;
use cvm_test_support::bin_dir;

/// `openssl speed ARGS...` in MB/s: the last column of its last line
/// (the largest block size asked for).
pub fn openssl_speed_mbps(args: &[&str]) -> Result<f64, String> {
    let o = Command::new("openssl")
        .arg("speed")
        .args(args)
        .output()
        .map_err(|e| format!("openssl speed: {e}"))?;
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .last()
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.trim_end_matches('k').parse::<f64>().ok())
        .map(|kbps| kbps / 1000.0)
        .ok_or_else(|| format!("openssl speed {}: no figure in its output: {text}", args.join(" ")))
}

/// A simulated SNP platform: its chain bundle and ARK on disk.
///
/// Generating one costs two RSA-4096 keys (tens of seconds unoptimised), so
/// it is kept in the target directory and shared by every test binary; a
/// `cargo clean` makes a new one.
pub fn platform() -> &'static (PathBuf, PathBuf, PathBuf) {
    static P: OnceLock<(PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    P.get_or_init(|| {
        let dir = bin_dir().join("cvm-test-platform");
        let bundle = dir.join("simulated-chain.key");
        let ark = dir.join("ark.pem");
        let usable = std::fs::read_to_string(&bundle)
            .ok()
            .and_then(|t| SimulatedChain::from_pem_bundle(&t).ok())
            .is_some_and(|c| {
                c.params().vek_not_after > time::OffsetDateTime::now_utc() + time::Duration::days(30)
            });
        if !usable || !ark.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let chain =
                SimulatedChain::generate(ChainParams::new(Product::Milan, time::OffsetDateTime::now_utc()))
                    .unwrap();
            let tmp = dir.join(format!("chain.{}.tmp", std::process::id()));
            std::fs::write(&tmp, chain.to_pem_bundle().unwrap()).unwrap();
            let tmp_ark = dir.join(format!("ark.{}.tmp", std::process::id()));
            std::fs::write(&tmp_ark, der::EncodePem::to_pem(chain.ark(), der::pem::LineEnding::LF).unwrap())
                .unwrap();
            std::fs::rename(&tmp_ark, &ark).unwrap();
            std::fs::rename(&tmp, &bundle).unwrap();
        }
        (dir, bundle, ark)
    })
}

/// An owner's key: the private key file and the public key in manifest form.
pub struct Owner {
    /// PKCS#8 PEM file.
    pub key: PathBuf,
    /// Base64 SPKI.
    pub public: String,
}

/// The measurement the simulated platform reports.
pub const MEASUREMENT: &str =
    "5a6e1d2f8e0c9b7a5a6e1d2f8e0c9b7a5a6e1d2f8e0c9b7a5a6e1d2f8e0c9b7a5a6e1d2f8e0c9b7a5a6e1d2f8e0c9b7a";

/// A policy of `fields` (a JSON object, or null for none) that pins the
/// simulated platform's [`MEASUREMENT`], unless `fields` sets `measurements`
/// itself: cvmctl talks to no agent without a pinned measurement.
pub fn pinned_policy(fields: serde_json::Value) -> serde_json::Value {
    let mut policy = match fields {
        serde_json::Value::Null => serde_json::json!({}),
        other => other,
    };
    if let Some(map) = policy.as_object_mut() {
        map.entry("measurements").or_insert_with(|| serde_json::json!([MEASUREMENT]));
    }
    policy
}

/// Writes [`pinned_policy`] of `fields` to `path`; returns the path as text.
pub fn write_pinned_policy(path: &Path, fields: serde_json::Value) -> String {
    std::fs::write(path, pinned_policy(fields).to_string()).unwrap();
    path.display().to_string()
}

/// Three owners, the statistics example, a manifest, and a running agent.
pub struct Scenario {
    /// The scenario's directory.
    pub dir: tempfile::TempDir,
    /// Algorithm provider.
    pub alg: Owner,
    /// Provider of hospital-a.csv.
    pub a: Owner,
    /// Provider of hospital-b.csv.
    pub b: Owner,
    /// Result consumer.
    pub consumer: Owner,
    /// The manifest's digest.
    pub digest: String,
    /// The agent's address.
    pub addr: SocketAddr,
    /// The agent's work directory.
    pub work: PathBuf,
    /// The sandbox's uid (and gid), this scenario's own.
    pub sandbox_uid: u32,
    agent: Child,
    log: Arc<Mutex<String>>,
    /// The agent's vTPM, when the scenario has one (dropped after the agent).
    pub swtpm: Option<Swtpm>,
    /// The policy every cvmctl command of the scenario uses (pins [`MEASUREMENT`]).
    pub policy: PathBuf,
}

/// What a scenario's `prepare` hook sees: its directory and owners.
pub struct Prepared<'a> {
    /// The scenario's directory.
    pub dir: &'a Path,
    /// Algorithm provider.
    pub alg: &'a Owner,
    /// Provider of hospital-a.csv.
    pub a: &'a Owner,
    /// Provider of hospital-b.csv.
    pub b: &'a Owner,
    /// Result consumer.
    pub consumer: &'a Owner,
}

/// A hook that edits the manifest before the agent starts and returns extra agent environment.
pub type Prepare = Box<dyn FnOnce(&Prepared<'_>, &mut serde_json::Value) -> Vec<(String, String)>>;

/// A hook that plays the firmware's part on the scenario's swtpm.
pub type Firmware = Box<dyn FnOnce(&Path, &str) -> Vec<(String, String)>>;

/// Options of a scenario.
pub struct Options {
    /// The algorithm script's text.
    pub algorithm: String,
    /// A file to upload as the algorithm instead (a binary), if any.
    pub algorithm_file: Option<PathBuf>,
    /// `limits.max_upload_bytes`.
    pub max_upload_bytes: u64,
    /// `limits.run_timeout_s`.
    pub run_timeout_s: u64,
    /// `limits.memory_bytes`.
    pub memory_bytes: u64,
    /// The interpreter of a script; `None` makes the algorithm a binary.
    pub interpreter: Option<String>,
    /// `algorithm.runtime`: the host's paths the algorithm's sandbox shows.
    pub runtime: Vec<String>,
    /// Edits the manifest (e.g. sealed inputs) and adds agent environment.
    pub prepare: Option<Prepare>,
    /// `logging.algorithm_output = forward` instead of the default `drop`.
    pub forward_output: bool,
    /// More environment for the agent (after the defaults, so it wins).
    pub agent_env: Vec<(String, String)>,
    /// Give the agent its own fresh swtpm as a required vTPM.
    pub vtpm: bool,
    /// With `vtpm`: plays the firmware before the agent starts (extends the
    /// swtpm's boot PCRs, writes an event log; see [`firmware`]), given the
    /// scenario's directory and the swtpm's TCTI; returns agent environment.
    pub firmware: Option<Firmware>,
    /// Policy fields for every cvmctl command (JSON object), if any; they
    /// are merged into [`pinned_policy`], so the simulated platform's
    /// [`MEASUREMENT`] is pinned unless they set `measurements` themselves.
    pub policy: Option<serde_json::Value>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            algorithm: std::fs::read_to_string(example("stats.py")).unwrap(),
            algorithm_file: None,
            max_upload_bytes: 1 << 20,
            run_timeout_s: 30,
            memory_bytes: 512 << 20,
            interpreter: Some("/usr/bin/python3".into()),
            runtime: HOST_RUNTIME.iter().map(|p| (*p).to_owned()).collect(),
            prepare: None,
            forward_output: false,
            agent_env: Vec::new(),
            vtpm: false,
            firmware: None,
            policy: None,
        }
    }
}

/// What a script or a dynamically linked program needs of this host
/// (Debian's merged /usr): its sandbox shows these read-only.
pub const HOST_RUNTIME: [&str; 4] = ["/usr", "/bin", "/lib", "/lib64"];

/// A file of the statistics example.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stats").join(name)
}

/// A file's digest as a manifest gives it: `sha256:<hex>`.
fn manifest_digest(path: &Path) -> String {
    format!("sha256:{}", sha256_file(path))
}

/// Creates an owner key with `cvmctl keygen`.
pub fn owner(dir: &Path, name: &str, kind: &str) -> Owner {
    let key = dir.join(format!("{name}.key"));
    let o = cvmctl(&["keygen", "--out", key.to_str().unwrap(), "--type", kind]);
    assert!(o.status.success(), "keygen: {}", String::from_utf8_lossy(&o.stderr));
    Owner { key, public: String::from_utf8(o.stdout).unwrap().trim().to_owned() }
}

/// A sandbox uid no other test of this machine uses at the same time.
fn sandbox_uid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    62000 + (std::process::id() % 500) * 16 + NEXT.fetch_add(1, Ordering::Relaxed) % 16
}

impl Scenario {
    /// Writes everything and starts the agent; waits until it serves.
    pub fn start(opts: Options) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let alg = owner(d, "alg", "p256");
        let a = owner(d, "a", "ed25519");
        let b = owner(d, "b", "p384");
        let consumer = owner(d, "consumer", "p256");
        match &opts.algorithm_file {
            Some(file) => std::fs::copy(file, d.join("stats.py")).map(drop).unwrap(),
            None => std::fs::write(d.join("stats.py"), &opts.algorithm).unwrap(),
        }
        for f in ["hospital-a.csv", "hospital-b.csv"] {
            std::fs::copy(example(f), d.join(f)).unwrap();
        }
        let mut algorithm = match &opts.interpreter {
            Some(i) => serde_json::json!({
                "digest": manifest_digest(&d.join("stats.py")), "provider_key": alg.public, "kind": "script",
                "interpreter": i, "args": ["--column", "age"]
            }),
            None => serde_json::json!({
                "digest": manifest_digest(&d.join("stats.py")), "provider_key": alg.public, "kind": "binary",
                "args": ["--column", "age"]
            }),
        };
        if !opts.runtime.is_empty() {
            algorithm["runtime"] = serde_json::json!(opts.runtime);
        }
        let mut manifest = serde_json::json!({
            "id": "mean-age",
            "name": "Mean age over two hospitals",
            "algorithm": algorithm,
            "datasets": [
                {"name": "hospital-a.csv", "digest": manifest_digest(&d.join("hospital-a.csv")), "provider_key": a.public},
                {"name": "hospital-b.csv", "digest": manifest_digest(&d.join("hospital-b.csv")), "provider_key": b.public}
            ],
            "result_consumers": [{"key": consumer.public}],
            "limits": {"max_upload_bytes": opts.max_upload_bytes, "run_timeout_s": opts.run_timeout_s, "memory_bytes": opts.memory_bytes},
            "logging": {"algorithm_output": if opts.forward_output { "forward" } else { "drop" }}
        });
        let mut env = match opts.prepare {
            Some(prepare) => {
                prepare(&Prepared { dir: d, alg: &alg, a: &a, b: &b, consumer: &consumer }, &mut manifest)
            }
            None => Vec::new(),
        };
        std::fs::write(d.join("manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
        let o = cvmctl(&["manifest", "digest", d.join("manifest.json").to_str().unwrap()]);
        assert!(o.status.success(), "manifest digest: {}", String::from_utf8_lossy(&o.stderr));
        let digest = String::from_utf8(o.stdout).unwrap().trim().to_owned();
        let work = d.join("work");
        let swtpm = opts.vtpm.then(Swtpm::start);
        if let Some(t) = &swtpm {
            env.push(("CVM_VTPM".into(), "required".into()));
            env.push(("CVM_TPM_TCTI".into(), t.tcti()));
            if let Some(firmware) = opts.firmware {
                env.extend(firmware(d, &t.tcti()));
            }
        }
        let sandbox_uid = sandbox_uid();
        env.push(("CVM_SANDBOX_UID".into(), sandbox_uid.to_string()));
        env.push(("CVM_SANDBOX_GID".into(), sandbox_uid.to_string()));
        env.extend(opts.agent_env.iter().cloned());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (agent, log, addr) =
            start_agent_env(d, &d.join("manifest.json"), &work, &env).unwrap_or_else(|e| panic!("{e}"));
        let policy = d.join("policy.json");
        std::fs::write(&policy, pinned_policy(opts.policy.unwrap_or_default()).to_string()).unwrap();
        Scenario { dir, alg, a, b, consumer, digest, addr, work, sandbox_uid, agent, log, swtpm, policy }
    }

    /// The arguments every agent command needs, with `key` if given; the
    /// policy is the scenario's (pinning [`MEASUREMENT`]).
    pub fn agent_args(&self, key: Option<&Owner>) -> Vec<String> {
        self.agent_args_with_policy(key, &self.policy)
    }

    /// [`Scenario::agent_args`] with another policy file.
    pub fn agent_args_with_policy(&self, key: Option<&Owner>, policy: &Path) -> Vec<String> {
        let mut v = vec![
            "--agent".to_owned(),
            self.addr.to_string(),
            "--manifest-digest".to_owned(),
            self.digest.clone(),
            "--trust-ark".to_owned(),
            platform().2.display().to_string(),
            "--policy".to_owned(),
            policy.display().to_string(),
        ];
        if let Some(k) = key {
            v.push("--key".into());
            v.push(k.key.display().to_string());
        }
        v
    }

    /// Runs `cvmctl COMMAND [agent args] EXTRA...`.
    pub fn run(&self, command: &str, key: Option<&Owner>, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec![command.to_owned()];
        args.extend(self.agent_args(key));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cvmctl(&refs)
    }

    /// [`Scenario::run`] with another policy file.
    pub fn run_with_policy(
        &self,
        command: &str,
        key: Option<&Owner>,
        policy: &Path,
        extra: &[&str],
    ) -> Output {
        let mut args: Vec<String> = vec![command.to_owned()];
        args.extend(self.agent_args_with_policy(key, policy));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cvmctl(&refs)
    }

    /// A file in the scenario's directory.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The state reported by `cvmctl status --json`.
    pub fn status(&self) -> serde_json::Value {
        let o = self.run("status", Some(&self.consumer), &["--json"]);
        let line = String::from_utf8_lossy(&o.stdout);
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("{e}: {line} {}", String::from_utf8_lossy(&o.stderr)));
        v["data"].clone()
    }

    /// Uploads the algorithm (`stats.py`) and both datasets, each by its owner.
    pub fn upload_inputs(&self) {
        assert_exit(
            &self.run("upload-algorithm", Some(&self.alg), &[&self.path("stats.py")]),
            cvmctl::exit_codes::OK,
        );
        for (owner, name) in [(&self.a, "hospital-a.csv"), (&self.b, "hospital-b.csv")] {
            assert_exit(
                &self.run("upload-dataset", Some(owner), &[name, &self.path(name)]),
                cvmctl::exit_codes::OK,
            );
        }
    }

    /// Waits until the state is final; returns the status.
    pub fn wait_final(&self, within: Duration) -> serde_json::Value {
        let end = Instant::now() + within;
        loop {
            let s = self.status();
            let state = s["state"].as_str().unwrap_or_default().to_owned();
            if ["results_ready", "consumed", "failed"].contains(&state.as_str()) || Instant::now() > end {
                return s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Files left in the agent's incoming directory.
    pub fn incoming(&self) -> Vec<String> {
        std::fs::read_dir(self.work.join("incoming"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }

    /// The agent's process id.
    pub fn agent_pid(&self) -> u32 {
        self.agent.id()
    }

    /// Whether the agent process is still alive.
    pub fn agent_alive(&mut self) -> bool {
        self.agent.try_wait().ok().flatten().is_none()
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

/// Starts an agent with the simulated platform on a free loopback port.
///
/// Returns the process, its log, and its address, or the log if it exits.
pub fn start_agent(
    dir: &Path,
    manifest: &Path,
    work: &Path,
) -> Result<(Child, Arc<Mutex<String>>, SocketAddr), String> {
    start_agent_env(dir, manifest, work, &[])
}

/// [`start_agent`] with more environment (`CVM_LOG_TARGET`, ...), which wins over the defaults.
pub fn start_agent_env(
    dir: &Path,
    manifest: &Path,
    work: &Path,
    env: &[(&str, &str)],
) -> Result<(Child, Arc<Mutex<String>>, SocketAddr), String> {
    let (child, log) = spawn_agent(dir, manifest.to_str().ok_or("manifest path")?, work, env)?;
    wait_serving(child, log)
}

/// [`start_agent`] with another subcommand (`init`: the agent under its own supervisor).
pub fn start_agent_as(
    subcommand: &str,
    dir: &Path,
    manifest: &Path,
    work: &Path,
) -> Result<(Child, Arc<Mutex<String>>, SocketAddr), String> {
    let (child, log) = spawn_agent_as(subcommand, dir, manifest.to_str().ok_or("manifest path")?, work, &[])?;
    wait_serving(child, log)
}

/// Starts an agent with the simulated platform on a free loopback port,
/// without waiting for it: `manifest` is a path or `operator`.
pub fn spawn_agent(
    dir: &Path,
    manifest: &str,
    work: &Path,
    env: &[(&str, &str)],
) -> Result<(Child, Arc<Mutex<String>>), String> {
    spawn_agent_as("run", dir, manifest, work, env)
}

/// [`spawn_agent`] with another subcommand.
pub fn spawn_agent_as(
    subcommand: &str,
    dir: &Path,
    manifest: &str,
    work: &Path,
    env: &[(&str, &str)],
) -> Result<(Child, Arc<Mutex<String>>), String> {
    let (_, bundle, _) = platform();
    let uid = sandbox_uid().to_string();
    let mut child = Command::new(bin("cvm-agent"))
        .arg(subcommand)
        .current_dir(dir)
        .env("CVM_TEE", "simulated")
        .env("CVM_SIMULATED_CHAIN", bundle)
        .env("CVM_SIMULATED_MEASUREMENT", MEASUREMENT)
        .env("CVM_MANIFEST", manifest)
        .env("CVM_LISTEN", "127.0.0.1:0")
        .env("CVM_WORK_DIR", work)
        .env("CVM_SANDBOX_UID", &uid)
        .env("CVM_SANDBOX_GID", &uid)
        // Development hosts give cgroup v2 no memory controller: the
        // algorithm runs without that layer, and the agent says so.
        .env("CVM_SANDBOX", "best-effort")
        .env("CVM_LOG_LEVEL", "debug")
        // No vTPM unless a test gives one: the host's TPM, if any, is not the tests'.
        .env("CVM_VTPM", "off")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    Ok((child, log))
}

/// Waits until the agent serves; returns it with its log and address, or its log if it exits.
pub fn wait_serving(
    mut child: Child,
    log: Arc<Mutex<String>>,
) -> Result<(Child, Arc<Mutex<String>>, SocketAddr), String> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let text = log.lock().unwrap().clone();
        if let Some(addr) = text.lines().find_map(|l| l.split("serving attested TLS on ").nth(1)) {
            return Ok((child, log, addr.trim().parse().map_err(|e| format!("{e}: {addr}"))?));
        }
        if let Ok(Some(status)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(100));
            return Err(format!("the agent exited ({status}):\n{}", log.lock().unwrap()));
        }
        if Instant::now() > end {
            let _ = child.kill();
            return Err(format!("the agent did not start:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Parses cvmctl's agent arguments (`--agent ... --manifest-digest ...`) into the library type.
pub fn parse_agent_args(args: Vec<String>) -> cvmctl::owner::AgentArgs {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct P {
        #[command(flatten)]
        a: cvmctl::owner::AgentArgs,
    }
    let mut argv = vec!["cvmctl".to_owned()];
    argv.extend(args);
    P::parse_from(argv).a
}

/// A TLS client verifier that accepts any server: for tests and benchmarks
/// that need a certificate off the wire, or a baseline without attestation.
#[derive(Debug)]
pub struct AcceptAnyServer;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
