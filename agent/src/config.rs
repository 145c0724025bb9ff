//! The agent's configuration: kernel command line, an optional file, environment.
//!
//! Keys (kernel command line `cvm.KEY=VALUE`, file lines `KEY = VALUE`,
//! environment `CVM_KEY=VALUE` with KEY upper-cased); later sources win:
//! command line, then file, then environment. An unknown key in any source
//! is an error that names the source and the key.
//!
//! The keys, what they mean and their defaults are [`KEYS`], the one
//! table; `docs/configuration.md` shows it (a test keeps the two equal).
//!
//! `simulated_measurement` may also be the absolute path of a file holding
//! the 96 hex digits: that is how a simulated platform (the VM launcher,
//! through QEMU's fw_cfg) hands the guest the measurement it computed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use crate::tee::TeeChoice;

pub use crate::vtpm::VtpmMode;

/// The agent's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where attested TLS listens.
    pub listen: SocketAddr,
    /// The TEE provider.
    pub tee: TeeChoice,
    /// Where the manifest comes from.
    pub manifest: ManifestSource,
    /// Uploads and results.
    pub work_dir: PathBuf,
    /// Simulated provider: the chain bundle.
    pub simulated_chain: Option<PathBuf>,
    /// Simulated provider: the measurement to report.
    pub simulated_measurement: [u8; 48],
    /// The sandbox user.
    pub sandbox_uid: u32,
    /// The sandbox group.
    pub sandbox_gid: u32,
    /// What to do where the kernel lacks a layer of the sandbox.
    pub sandbox: crate::sandbox::Mode,
    /// The log level.
    pub log_level: log::LevelFilter,
    /// Host storage (file or block device) of each `host-path` artifact, by name.
    pub host_artifacts: BTreeMap<String, PathBuf>,
    /// Threads that decrypt one sealed input.
    pub sealed_workers: usize,
    /// Where log records go besides stderr.
    pub log_target: crate::logs::Target,
    /// Capacity of the queue of records for the host.
    pub log_queue: usize,
    /// Whether a vTPM is needed.
    pub vtpm: VtpmMode,
    /// The vTPM's TCTI.
    pub tpm_tcti: String,
    /// The PCR the event log is extended into.
    pub tpm_pcr: u8,
    /// Where the firmware's event log is read from, if anywhere.
    pub firmware_log: Option<PathBuf>,
    /// Azure: THIM's URL, or none.
    pub azure_thim: Option<crate::tee::thim::ThimUrl>,
    /// Azure: how long to wait for a refreshed HCL report.
    pub azure_deadline: std::time::Duration,
    /// Init mode: the list of kernel modules to load.
    pub modules: Option<PathBuf>,
    /// Init mode: the address of a network interface.
    pub net: Option<NetConfig>,
    /// How clients are held to time and to their share of the connections.
    pub client_limits: crate::admission::ClientLimits,
}

/// An IPv4 address for a network interface (init mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The interface, e.g. `eth0`.
    pub interface: String,
    /// Its address.
    pub address: std::net::Ipv4Addr,
    /// The prefix length of its subnet.
    pub prefix: u8,
}

impl std::str::FromStr for NetConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<NetConfig, String> {
        let bad = || format!("{s:?} is not IFACE=ADDRESS/PREFIX (like eth0=10.0.2.15/24)");
        let (interface, cidr) = s.split_once('=').ok_or_else(bad)?;
        let (address, prefix) = cidr.split_once('/').ok_or_else(bad)?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if interface.is_empty() || interface.len() > 15 || prefix > 32 {
            return Err(bad());
        }
        Ok(NetConfig {
            interface: interface.to_owned(),
            address: address.parse().map_err(|_| bad())?,
            prefix,
        })
    }
}

/// Where the manifest comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestSource {
    /// A file (in the image).
    File(PathBuf),
    /// The operator, over the log link's control channel: the agent waits for it at start.
    Operator,
}

/// A configuration that cannot be used; names the source and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration {source_name} key `{key}`: {message}")]
pub struct ConfigError {
    /// `kernel command line`, the file's path, or `environment`.
    pub source_name: String,
    /// The key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// One configuration key: its name, what it means, its default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The key (`cvm.KEY`, `KEY = `, `CVM_KEY`).
    pub name: &'static str,
    /// What it sets (Markdown).
    pub meaning: &'static str,
    /// Its default (Markdown; empty: none).
    pub default: &'static str,
}

/// Every key the agent reads: the one table. `docs/configuration.md` is
/// this table rendered ([`keys_markdown`]; a test keeps it so).
pub const KEYS: &[Key] = &[
    Key {
        name: "listen",
        meaning: "numeric `address:port` of attested TLS",
        default: "`0.0.0.0:7002`",
    },
    Key {
        name: "tee",
        meaning: "`auto`, `sev-guest`, `configfs-tsm`, `azure`, `simulated` or `simulated-azure` (the last two only in an agent built with the `simulated-tee` feature)",
        default: "`auto`",
    },
    Key {
        name: "manifest",
        meaning: "the manifest file, or `operator`: wait for it on the log link",
        default: "required",
    },
    Key {
        name: "work_dir",
        meaning: "uploads and results (a tmpfs in the VM)",
        default: "`/run/cvm-agent`",
    },
    Key {
        name: "azure_thim",
        meaning: "for `azure`: where the VCEK and chain come from at start, `http://ADDRESS[:PORT]/PATH` (numeric), or `none` (the owners pass them to cvmctl with `--certs`)",
        default: "`http://169.254.169.254/metadata/THIM/amd/certification`",
    },
    Key {
        name: "azure_deadline_ms",
        meaning: "for `azure`: how long to wait for the paravisor's refreshed report (100 to 60000)",
        default: "`10000`",
    },
    Key {
        name: "simulated_chain",
        meaning: "for `simulated` and `simulated-azure`: the chain bundle (`simulated-chain.key` from `cvmctl report simulate`)",
        default: "",
    },
    Key {
        name: "simulated_measurement",
        meaning: "for `simulated`: the launch measurement to report (96 hex digits, or the absolute path of a file holding them)",
        default: "zeros",
    },
    Key {
        name: "sandbox_uid",
        meaning: "the algorithm's identity; must be dedicated to it (non-zero)",
        default: "`61000`",
    },
    Key {
        name: "sandbox_gid",
        meaning: "the algorithm's identity; must be dedicated to it (non-zero)",
        default: "`61000`",
    },
    Key {
        name: "sandbox",
        meaning: "`strict`: refuse to start where the kernel lacks a layer of the sandbox; `best-effort`: run with what there is and tell every owner (development hosts; init mode refuses it); see [`docs/sandbox.md`](sandbox.md)",
        default: "`strict`",
    },
    Key {
        name: "log_level",
        meaning: "`error` ... `trace`",
        default: "`info`",
    },
    Key {
        name: "host_artifacts",
        meaning: "`NAME=PATH[,NAME=PATH...]`: the file or block device holding each `host-path` artifact's ciphertext, e.g. `cvm.host_artifacts=weights.bin=/dev/vdb`",
        default: "none",
    },
    Key {
        name: "sealed_workers",
        meaning: "threads that decrypt one sealed input (1 to 1024); one more thread reads it in order",
        default: "the CPUs the agent may run on (`sched_getaffinity`)",
    },
    Key {
        name: "log_target",
        meaning: "where logs go besides stderr: `vsock:PORT` (host CID 2), `vsock:CID:PORT`, `tcp:ADDR:PORT`, `unix:PATH`, `none`",
        default: "`none`",
    },
    Key {
        name: "log_queue",
        meaning: "records kept for the host while it is slow or away (16 to 1000000)",
        default: "`4096`",
    },
    Key {
        name: "vtpm",
        meaning: "`required` (no usable vTPM: refuse to start), `optional` (go on without one; the evidence says why), `off`",
        default: "`optional`",
    },
    Key {
        name: "tpm_tcti",
        meaning: "how to reach the vTPM: `device:PATH`, `swtpm:host=H,port=P`, `mssim:host=H,port=P`",
        default: "`device:/dev/tpmrm0`",
    },
    Key {
        name: "tpm_pcr",
        meaning: "the PCR the event log is extended into, 0 to 15",
        default: "`15`",
    },
    Key {
        name: "firmware_log",
        meaning: "the firmware's TCG event log, sent with the quote of the boot PCRs: a path, or `none`",
        default: "`/sys/kernel/security/tpmN/binary_bios_measurements` for `device:/dev/tpmrmN`; `none` for a TPM over a socket",
    },
    Key {
        name: "modules",
        meaning: "init mode: a file listing kernel modules to load, in order (one path a line, parameters after it)",
        default: "none",
    },
    Key {
        name: "net",
        meaning: "init mode: `IFACE=ADDRESS/PREFIX`, an IPv4 address for an interface (e.g. `eth0=10.0.2.15/24`)",
        default: "only `lo`",
    },
    Key {
        name: "idle_timeout_s",
        meaning: "seconds without a byte either way (while the agent is not working on one of its requests) that close a connection; an upload in progress is discarded and can be retried at once (1 to 3600)",
        default: "`30`",
    },
    Key {
        name: "body_min_rate",
        meaning: "bytes per second a request body must keep up on average, after 10 s of grace, or it is cut off with 408 (1024 or more)",
        default: "`65536`",
    },
    Key {
        name: "anonymous_connections",
        meaning: "connection slots, of the 64, for clients without an owner key (1 to 48); the others are the owners'",
        default: "`16`",
    },
];

/// [`KEYS`] as the Markdown table of `docs/configuration.md`.
pub fn keys_markdown() -> String {
    let mut out = String::from("| key | meaning | default |\n|---|---|---|\n");
    for k in KEYS {
        out.push_str(&format!("| `{}` | {} | {} |\n", k.name, k.meaning, k.default));
    }
    out
}

/// The raw inputs, so that loading is testable without a real /proc/cmdline.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// The kernel command line.
    pub cmdline: String,
    /// The config file's name and text, if one was given.
    pub file: Option<(String, String)>,
    /// The environment.
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// Reads /proc/cmdline, the file if given, and the environment.
    pub fn read(file: Option<&std::path::Path>) -> Result<Sources, ConfigError> {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let file = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    source_name: path.display().to_string(),
                    key: String::new(),
                    message: format!("cannot read: {e}"),
                })?;
                Some((path.display().to_string(), text))
            }
            None => None,
        };
        Ok(Sources { cmdline, file, env: std::env::vars().collect() })
    }
}

impl Config {
    /// Merges the sources (environment over file over command line) and checks every value.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let values = merge(sources)?;
        let get = |key: &str| values.get(key).map(|(s, v)| (s.as_str(), v.as_str()));
        let bad = |key: &str, message: String| {
            let source_name = values.get(key).map(|(s, _)| s.clone()).unwrap_or_else(|| "defaults".into());
            ConfigError { source_name, key: key.to_owned(), message }
        };
        let listen = match get("listen") {
            Some((_, v)) => {
                v.parse().map_err(|e| bad("listen", format!("{v:?} is not a numeric address:port: {e}")))?
            }
            None => SocketAddr::from(([0, 0, 0, 0], 7002)),
        };
        let tee = match get("tee").map(|(_, v)| v).unwrap_or("auto") {
            "auto" => TeeChoice::Auto,
            "sev-guest" => TeeChoice::SevGuest,
            "configfs-tsm" => TeeChoice::ConfigfsTsm,
            "azure" => TeeChoice::Azure,
            "simulated" => TeeChoice::Simulated,
            "simulated-azure" => TeeChoice::SimulatedAzure,
            other => {
                return Err(bad(
                    "tee",
                    format!(
                        "{other:?} is not auto, sev-guest, configfs-tsm, azure, simulated or simulated-azure"
                    ),
                ))
            }
        };
        let manifest = match get("manifest") {
            Some((_, "operator")) => ManifestSource::Operator,
            Some((_, v)) => ManifestSource::File(PathBuf::from(v)),
            None => {
                return Err(bad(
                    "manifest",
                    "required: the path of the computation manifest, or `operator`".into(),
                ))
            }
        };
        let work_dir =
            get("work_dir").map_or_else(|| PathBuf::from("/run/cvm-agent"), |(_, v)| PathBuf::from(v));
        let simulated_chain = get("simulated_chain").map(|(_, v)| PathBuf::from(v));
        if matches!(tee, TeeChoice::Simulated | TeeChoice::SimulatedAzure) && simulated_chain.is_none() {
            return Err(bad("simulated_chain", "required when tee = simulated or simulated-azure".into()));
        }
        let mut simulated_measurement = [0u8; 48];
        if let Some((_, v)) = get("simulated_measurement") {
            let text = if v.starts_with('/') {
                std::fs::read_to_string(v)
                    .map_err(|e| bad("simulated_measurement", format!("cannot read {v}: {e}")))?
            } else {
                v.to_owned()
            };
            hex::decode_to_slice(text.trim(), &mut simulated_measurement)
                .map_err(|e| bad("simulated_measurement", format!("expected 96 hex digits: {e}")))?;
        }
        let id = |key: &str| -> Result<u32, ConfigError> {
            match get(key) {
                Some((_, v)) => match v.parse::<u32>() {
                    Ok(0) => Err(bad(key, "must not be 0 (root)".into())),
                    Ok(n) => Ok(n),
                    Err(e) => Err(bad(key, format!("{v:?}: {e}"))),
                },
                None => Ok(61000),
            }
        };
        let sandbox_uid = id("sandbox_uid")?;
        let sandbox_gid = id("sandbox_gid")?;
        let sandbox = match get("sandbox") {
            Some((_, v)) => v.parse().map_err(|e| bad("sandbox", e))?,
            None => crate::sandbox::Mode::Strict,
        };
        let log_level = match get("log_level") {
            Some((_, v)) => v
                .parse()
                .map_err(|_| bad("log_level", format!("{v:?} is not error, warn, info, debug or trace")))?,
            None => log::LevelFilter::Info,
        };
        let host_artifacts = match get("host_artifacts") {
            Some((_, v)) => parse_host_artifacts(v).map_err(|m| bad("host_artifacts", m))?,
            None => BTreeMap::new(),
        };
        let log_target: crate::logs::Target = match get("log_target") {
            Some((_, v)) => v.parse().map_err(|e| bad("log_target", e))?,
            None => crate::logs::Target::None,
        };
        if manifest == ManifestSource::Operator && log_target == crate::logs::Target::None {
            return Err(bad(
                "manifest",
                "`operator` needs a log_target: the manifest arrives on the log link".into(),
            ));
        }
        let log_queue = match get("log_queue") {
            Some((_, v)) => match v.parse::<usize>() {
                Ok(n) if (16..=1_000_000).contains(&n) => n,
                _ => {
                    return Err(bad(
                        "log_queue",
                        format!("{v:?} is not a number of records in 16 ..= 1000000"),
                    ))
                }
            },
            None => 4096,
        };
        let vtpm = match get("vtpm").map(|(_, v)| v).unwrap_or("optional") {
            "required" => VtpmMode::Required,
            "optional" => VtpmMode::Optional,
            "off" => VtpmMode::Off,
            other => return Err(bad("vtpm", format!("{other:?} is not required, optional or off"))),
        };
        let tpm_tcti =
            get("tpm_tcti").map_or_else(|| crate::vtpm::DEFAULT_TCTI.to_owned(), |(_, v)| v.to_owned());
        let tpm_pcr = match get("tpm_pcr") {
            Some((_, v)) => match v.parse::<u8>() {
                Ok(n) if n <= 15 => n,
                _ => {
                    return Err(bad(
                        "tpm_pcr",
                        format!("{v:?}: expected a PCR from 0 to 15 (16-23 can be reset by software)"),
                    ))
                }
            },
            None => crate::vtpm::DEFAULT_PCR,
        };
        let firmware_log = match get("firmware_log") {
            Some((_, "none")) => None,
            Some((_, v)) if v.starts_with('/') => Some(PathBuf::from(v)),
            Some((_, v)) => {
                return Err(bad("firmware_log", format!("{v:?} is neither an absolute path nor none")))
            }
            None => crate::vtpm::default_firmware_log(&tpm_tcti),
        };
        let modules = get("modules").map(|(_, v)| PathBuf::from(v));
        let net = match get("net") {
            Some((_, v)) => Some(v.parse().map_err(|e| bad("net", e))?),
            None => None,
        };
        let number = |key: &str, range: std::ops::RangeInclusive<u64>, default: u64| match get(key) {
            Some((_, v)) => v
                .parse::<u64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| bad(key, format!("{v:?} is not a number in {range:?}"))),
            None => Ok(default),
        };
        let sealed_workers = number("sealed_workers", 1..=1024, usable_cpus() as u64)? as usize;
        if matches!(tee, TeeChoice::Azure | TeeChoice::SimulatedAzure) && vtpm == VtpmMode::Off {
            return Err(bad("vtpm", "off, but tee = azure works through the vTPM".into()));
        }
        let azure_thim = match get("azure_thim").map(|(_, v)| v) {
            Some("none") => None,
            Some(v) => Some(v.parse().map_err(|e| bad("azure_thim", format!("{v:?}: {e}")))?),
            None => Some(
                crate::tee::thim::DEFAULT_URL
                    .parse()
                    .map_err(|e: String| bad("azure_thim", format!("the default: {e}")))?,
            ),
        };
        let azure_deadline =
            std::time::Duration::from_millis(number("azure_deadline_ms", 100..=60_000, 10_000)?);
        let client_limits = crate::admission::ClientLimits {
            idle_timeout: std::time::Duration::from_secs(number("idle_timeout_s", 1..=3600, 30)?),
            body_min_rate: number("body_min_rate", 1024..=u64::MAX, 64 << 10)?,
            anonymous_connections: number("anonymous_connections", 1..=48, 16)? as usize,
        };
        Ok(Config {
            client_limits,
            host_artifacts,
            sealed_workers,
            modules,
            net,
            listen,
            tee,
            manifest,
            work_dir,
            simulated_chain,
            simulated_measurement,
            sandbox_uid,
            sandbox_gid,
            sandbox,
            log_level,
            log_target,
            log_queue,
            vtpm,
            tpm_tcti,
            tpm_pcr,
            firmware_log,
            azure_thim,
            azure_deadline,
        })
    }
}

/// The CPUs this process may run on (its affinity mask), at least 1.
pub fn usable_cpus() -> usize {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => {
            (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).count().max(1)
        }
        Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Parses `NAME=PATH[,NAME=PATH...]` (absolute paths, each name once).
fn parse_host_artifacts(v: &str) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut map = BTreeMap::new();
    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, path) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not NAME=PATH (e.g. weights=/dev/vdb)"))?;
        if !path.starts_with('/') {
            return Err(format!("{item:?}: the path must be absolute"));
        }
        if map.insert(name.to_owned(), PathBuf::from(path)).is_some() {
            return Err(format!("{name:?} is named twice"));
        }
    }
    Ok(map)
}

/// The value of each key and the source it came from, later sources winning;
/// an unknown key or a malformed line is an error.
fn merge(sources: &Sources) -> Result<BTreeMap<&'static str, (String, String)>, ConfigError> {
    let mut values: BTreeMap<&'static str, (String, String)> = BTreeMap::new();
    let mut set = |source: &str, key: &str, value: &str| -> Result<(), ConfigError> {
        let known = KEYS.iter().find(|k| k.name == key).ok_or_else(|| ConfigError {
            source_name: source.to_owned(),
            key: key.to_owned(),
            message: format!(
                "unknown key (known: {})",
                KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
            ),
        })?;
        values.insert(known.name, (source.to_owned(), value.to_owned()));
        Ok(())
    };
    for token in sources.cmdline.split_whitespace() {
        if let Some(kv) = token.strip_prefix("cvm.") {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            set("kernel command line", k, v)?;
        }
    }
    if let Some((name, text)) = &sources.file {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| ConfigError {
                source_name: format!("{name} line {}", n + 1),
                key: line.to_owned(),
                message: "expected KEY = VALUE".into(),
            })?;
            set(&format!("{name} line {}", n + 1), k.trim(), v.trim())?;
        }
    }
    for (k, v) in &sources.env {
        if let Some(key) = k.strip_prefix("CVM_") {
            set("environment", &key.to_ascii_lowercase(), v)?;
        }
    }

    Ok(values)
}

/// The keys PID 1 needs before the agent starts (read before the modules
/// that other keys' files may depend on, such as fw_cfg, are loaded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitConfig {
    /// The list of kernel modules to load.
    pub modules: Option<PathBuf>,
    /// The address of a network interface.
    pub net: Option<NetConfig>,
    /// The log level.
    pub log_level: log::LevelFilter,
}

impl InitConfig {
    /// Reads `modules`, `net` and `log_level`; the other keys are only
    /// checked to be known (the agent checks their values when it starts).
    pub fn load(sources: &Sources) -> Result<InitConfig, ConfigError> {
        let values = merge(sources)?;
        let bad = |key: &str, message: String| {
            let source_name = values.get(key).map(|(s, _)| s.clone()).unwrap_or_else(|| "defaults".into());
            ConfigError { source_name, key: key.to_owned(), message }
        };
        let net = match values.get("net") {
            Some((_, v)) => Some(v.parse().map_err(|e| bad("net", e))?),
            None => None,
        };
        let log_level = match values.get("log_level") {
            Some((_, v)) => v
                .parse()
                .map_err(|_| bad("log_level", format!("{v:?} is not error, warn, info, debug or trace")))?,
            None => log::LevelFilter::Info,
        };
        // In the VM the algorithm never runs in a weaker sandbox.
        if let Some((_, v)) = values.get("sandbox") {
            if v != "strict" {
                return Err(bad(
                    "sandbox",
                    format!("{v:?}: init mode (the VM) runs the algorithm only in the strict sandbox"),
                ));
            }
        }
        Ok(InitConfig { modules: values.get("modules").map(|(_, v)| PathBuf::from(v)), net, log_level })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(cmdline: &str, file: Option<&str>, env: &[(&str, &str)]) -> Sources {
        Sources {
            cmdline: cmdline.into(),
            file: file.map(|t| ("agent.conf".to_owned(), t.to_owned())),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn environment_wins_over_file_over_cmdline() {
        let s = sources(
            "quiet cvm.manifest=/a cvm.listen=127.0.0.1:1",
            Some("# comment\nlisten = 127.0.0.1:2\n"),
            &[("CVM_LISTEN", "127.0.0.1:3"), ("PATH", "/bin")],
        );
        let c = Config::load(&s).unwrap();
        assert_eq!(c.listen.port(), 3);
        assert_eq!(c.manifest, ManifestSource::File(PathBuf::from("/a")));
        assert_eq!((c.log_target, c.log_queue), (crate::logs::Target::None, 4096));
        assert_eq!(c.tee, TeeChoice::Auto);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::load(&sources("cvm.manifest=/a cvm.colour=red", None, &[])).unwrap_err();
        assert_eq!((e.source_name.as_str(), e.key.as_str()), ("kernel command line", "colour"));
        let e = Config::load(&sources("", Some("manifest = /a\ntee = sgx"), &[])).unwrap_err();
        assert_eq!((e.source_name.as_str(), e.key.as_str()), ("agent.conf line 2", "tee"));
        let e = Config::load(&sources("", None, &[("CVM_MANIFEST", "/a"), ("CVM_SANDBOX_UID", "0")]))
            .unwrap_err();
        assert_eq!(e.key, "sandbox_uid");
        let e = Config::load(&sources("", None, &[])).unwrap_err();
        assert_eq!(e.key, "manifest");
        let e = Config::load(&sources("cvm.manifest=/a cvm.tee=simulated", None, &[])).unwrap_err();
        assert_eq!(e.key, "simulated_chain");
        let e =
            Config::load(&sources("cvm.manifest=/a cvm.host_artifacts=w=dev/vdb", None, &[])).unwrap_err();
        assert_eq!(e.key, "host_artifacts");
        let e = Config::load(&sources("cvm.manifest=/a cvm.tpm_pcr=16", None, &[])).unwrap_err();
        assert!(e.key == "tpm_pcr" && e.message.contains("reset by software"), "{e}");
        let e = Config::load(&sources("cvm.manifest=/a cvm.vtpm=maybe", None, &[])).unwrap_err();
        assert_eq!(e.key, "vtpm");
    }

    #[test]
    fn azure_keys() {
        let c = Config::load(&sources("cvm.manifest=/a cvm.tee=azure", None, &[])).unwrap();
        assert_eq!(c.tee, TeeChoice::Azure);
        assert_eq!(
            c.azure_thim.unwrap().to_string(),
            "http://169.254.169.254:80/metadata/THIM/amd/certification"
        );
        assert_eq!(c.azure_deadline, std::time::Duration::from_secs(10));
        let c = Config::load(&sources(
            "cvm.manifest=/a cvm.tee=azure cvm.azure_thim=none cvm.azure_deadline_ms=500",
            None,
            &[],
        ))
        .unwrap();
        assert_eq!((c.azure_thim, c.azure_deadline), (None, std::time::Duration::from_millis(500)));
        for (line, key) in [
            ("cvm.manifest=/a cvm.tee=azure cvm.vtpm=off", "vtpm"),
            ("cvm.manifest=/a cvm.azure_thim=http://metadata/x", "azure_thim"),
            ("cvm.manifest=/a cvm.azure_deadline_ms=10", "azure_deadline_ms"),
            ("cvm.manifest=/a cvm.tee=simulated-azure", "simulated_chain"),
        ] {
            assert_eq!(Config::load(&sources(line, None, &[])).unwrap_err().key, key, "{line}");
        }
    }

    #[test]
    fn vtpm_defaults() {
        let c = Config::load(&sources("cvm.manifest=/a", None, &[])).unwrap();
        assert_eq!((c.vtpm, c.tpm_tcti.as_str(), c.tpm_pcr), (VtpmMode::Optional, "device:/dev/tpmrm0", 15));
        let log = PathBuf::from("/sys/kernel/security/tpm0/binary_bios_measurements");
        assert_eq!(c.firmware_log.as_ref(), Some(&log));
        let c =
            Config::load(&sources("cvm.manifest=/a cvm.vtpm=required cvm.tpm_pcr=14", None, &[])).unwrap();
        assert_eq!((c.vtpm, c.tpm_pcr), (VtpmMode::Required, 14));
        // A TPM over a socket is not the machine's: its firmware log is not in securityfs.
        let c =
            Config::load(&sources("cvm.manifest=/a cvm.tpm_tcti=swtpm:host=127.0.0.1,port=2321", None, &[]))
                .unwrap();
        assert_eq!(c.firmware_log, None);
        let c = Config::load(&sources("cvm.manifest=/a cvm.tpm_tcti=device:/dev/tpmrm1", None, &[])).unwrap();
        assert_eq!(c.firmware_log, Some(PathBuf::from("/sys/kernel/security/tpm1/binary_bios_measurements")));
        let c = Config::load(&sources("cvm.manifest=/a cvm.firmware_log=none", None, &[])).unwrap();
        assert_eq!(c.firmware_log, None);
        let e = Config::load(&sources("cvm.manifest=/a cvm.firmware_log=log.bin", None, &[])).unwrap_err();
        assert_eq!(e.key, "firmware_log");
    }

    #[test]
    fn client_limits_default_and_are_checked() {
        let c = Config::load(&sources("cvm.manifest=/a", None, &[])).unwrap();
        assert_eq!(c.client_limits, crate::admission::ClientLimits::default());
        assert_eq!(c.client_limits.idle_timeout.as_secs(), 30);
        let s = sources(
            "cvm.manifest=/a cvm.idle_timeout_s=2 cvm.body_min_rate=4096 cvm.anonymous_connections=4",
            None,
            &[],
        );
        let l = Config::load(&s).unwrap().client_limits;
        assert_eq!((l.idle_timeout.as_secs(), l.body_min_rate, l.anonymous_connections), (2, 4096, 4));
        for bad in
            ["idle_timeout_s=0", "body_min_rate=10", "anonymous_connections=49", "anonymous_connections=x"]
        {
            let e = Config::load(&sources(&format!("cvm.manifest=/a cvm.{bad}"), None, &[])).unwrap_err();
            assert_eq!(Some(e.key.as_str()), bad.split('=').next(), "{bad}");
        }
    }

    #[test]
    fn sealed_workers_default_to_the_usable_cpus_and_are_checked() {
        let c = Config::load(&sources("cvm.manifest=/a", None, &[])).unwrap();
        assert_eq!(c.sealed_workers, usable_cpus());
        assert!(c.sealed_workers >= 1);
        let c = Config::load(&sources("cvm.manifest=/a cvm.sealed_workers=3", None, &[])).unwrap();
        assert_eq!(c.sealed_workers, 3);
        for bad in ["0", "1025", "all"] {
            let e = Config::load(&sources(&format!("cvm.manifest=/a cvm.sealed_workers={bad}"), None, &[]))
                .unwrap_err();
            assert_eq!(e.key, "sealed_workers", "{bad}");
        }
    }

    #[test]
    fn host_artifacts_come_from_the_command_line() {
        let c = Config::load(&sources(
            "cvm.manifest=/a cvm.host_artifacts=weights=/dev/vdb,lora=/dev/vdc",
            None,
            &[],
        ))
        .unwrap();
        assert_eq!(c.host_artifacts.get("weights"), Some(&PathBuf::from("/dev/vdb")));
        assert_eq!(c.host_artifacts.len(), 2);
    }

    #[test]
    fn log_target_queue_and_operator_manifest() {
        let c = Config::load(&sources(
            "cvm.manifest=operator cvm.log_target=vsock:7100 cvm.log_queue=64",
            None,
            &[],
        ))
        .unwrap();
        assert_eq!(c.manifest, ManifestSource::Operator);
        assert_eq!(c.log_target, crate::logs::Target::Vsock { cid: 2, port: 7100 });
        assert_eq!(c.log_queue, 64);
        let e = Config::load(&sources("cvm.manifest=operator", None, &[])).unwrap_err();
        assert!(e.key == "manifest" && e.message.contains("needs a log_target"), "{e}");
        let e =
            Config::load(&sources("cvm.manifest=/a cvm.log_target=udp:1.2.3.4:5", None, &[])).unwrap_err();
        assert!(e.key == "log_target" && e.message.contains("udp"), "{e}");
        let e = Config::load(&sources("cvm.manifest=/a cvm.log_queue=3", None, &[])).unwrap_err();
        assert_eq!(e.key, "log_queue");
        let c = Config::load(&sources("cvm.manifest=./operator", None, &[])).unwrap();
        assert_eq!(c.manifest, ManifestSource::File(PathBuf::from("./operator")));
    }

    #[test]
    fn init_keys_are_parsed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("measurement");
        std::fs::write(&m, format!("{}\n", "ab".repeat(48))).unwrap();
        let s = sources(
            &format!("cvm.manifest=/a cvm.net=eth0=10.0.2.15/24 cvm.simulated_measurement={}", m.display()),
            Some("modules = /lib/modules/load.list\n"),
            &[],
        );
        let c = Config::load(&s).unwrap();
        assert_eq!(c.simulated_measurement, [0xab; 48]);
        assert_eq!(c.modules, Some(PathBuf::from("/lib/modules/load.list")));
        let net = c.net.unwrap();
        assert_eq!(
            (net.interface.as_str(), net.address.to_string(), net.prefix),
            ("eth0", "10.0.2.15".into(), 24)
        );
        // PID 1 reads only its keys: a measurement file that is not there yet is not its concern.
        let s = sources(
            "cvm.manifest=/a cvm.simulated_measurement=/not/yet cvm.net=eth0=10.0.2.15/24 cvm.log_level=debug",
            None,
            &[],
        );
        let init = InitConfig::load(&s).unwrap();
        assert_eq!(init.log_level, log::LevelFilter::Debug);
        assert!(Config::load(&s).unwrap_err().message.contains("cannot read /not/yet"));
        for bad in ["eth0", "eth0=10.0.2.15", "eth0=10.0.2.15/33", "=10.0.2.15/24", "eth0=10.0.2/24"] {
            let e = InitConfig::load(&sources(&format!("cvm.net={bad}"), None, &[])).unwrap_err();
            assert_eq!(e.key, "net", "{bad}");
        }
        let e = InitConfig::load(&sources("cvm.colour=red", None, &[])).unwrap_err();
        assert_eq!(e.key, "colour");
    }

    #[test]
    fn docs_configuration_md_shows_the_keys_table() {
        // `CVM_UPDATE_DOCS=1 cargo test -p cvm-agent --lib docs_configuration` rewrites it.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let table = keys_markdown();
        let start = doc.find("| key | meaning | default |").unwrap();
        let end = doc[start..].find("\n\n").map_or(doc.len(), |e| start + e + 1);
        if std::env::var_os("CVM_UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap();
            return;
        }
        assert_eq!(
            &doc[start..end],
            table,
            "docs/configuration.md is not KEYS: rerun with CVM_UPDATE_DOCS=1"
        );
    }
}
