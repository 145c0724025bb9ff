//! `cvmctl report simulate`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use cvm_evidence::report::{GuestPolicy, KeyInfo, PlatformInfo, SigningKey, TcbParts, TcbVersion};
use cvm_evidence::simulator::{parse_tcb, ChainParams, SimulatedChain};
use cvm_evidence::Product;
use time::OffsetDateTime;

use crate::args::{parse_hex, parse_time, parse_u64, read_file};
use crate::output::{emit, Message, Simulated};

/// The bundle of private keys and certificates a simulated chain is kept in.
pub const CHAIN_FILE: &str = "simulated-chain.key";

/// Products, as command-line values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProductArg {
    /// 3rd generation EPYC.
    Milan,
    /// 4th generation EPYC.
    Genoa,
    /// 5th generation EPYC.
    Turin,
}

/// Signing keys, as command-line values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KeyArg {
    /// A per-chip VCEK.
    Vcek,
    /// A cloud provider's VLEK.
    Vlek,
}

/// Arguments of `report simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Directory to write `report.bin`, `vcek.der` (or `vlek.der`), `ask.pem`
    /// (or `asvk.pem`), `ark.pem` and the simulated chain's private keys
    /// (`simulated-chain.key`, mode 0600).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Reuse the simulated chain in this file (a `simulated-chain.key` from an
    /// earlier run) instead of generating a new one; keeps the same ARK.
    #[arg(long, value_name = "FILE", help_heading = "Chain")]
    pub chain: Option<PathBuf>,
    /// Product whose chain to simulate.
    #[arg(long, value_enum, default_value = "milan", help_heading = "Chain")]
    pub product: ProductArg,
    /// Which key signs the report.
    #[arg(long, value_enum, default_value = "vcek", help_heading = "Chain")]
    pub signing_key: KeyArg,
    /// TCB of the signing key and the report, as
    /// `bootloader=3,tee=0,snp=8,microcode=115[,fmc=1]`.
    #[arg(long, value_name = "LIST", value_parser = parse_tcb, help_heading = "Chain")]
    pub tcb: Option<TcbParts>,
    /// CHIP_ID and the VCEK's hwID (hex, up to 64 bytes).
    #[arg(long, value_name = "HEX", help_heading = "Chain")]
    pub chip_id: Option<String>,
    /// Start of the VCEK's validity (RFC 3339).
    #[arg(long, value_name = "RFC3339-TIME", value_parser = parse_time, help_heading = "Chain")]
    pub vek_not_before: Option<OffsetDateTime>,
    /// End of the VCEK's validity (RFC 3339).
    #[arg(long, value_name = "RFC3339-TIME", value_parser = parse_time, help_heading = "Chain")]
    pub vek_not_after: Option<OffsetDateTime>,

    /// VERSION of the report (2, 3 or 5).
    #[arg(long, default_value_t = 3, help_heading = "Report fields")]
    pub version: u32,
    /// REPORT_DATA (hex, up to 64 bytes, zero-padded on the right).
    #[arg(long, value_name = "HEX", help_heading = "Report fields")]
    pub report_data: Option<String>,
    /// MEASUREMENT (hex, 48 bytes).
    #[arg(long, value_name = "HEX", help_heading = "Report fields")]
    pub measurement: Option<String>,
    /// HOST_DATA (hex, up to 32 bytes).
    #[arg(long, value_name = "HEX", help_heading = "Report fields")]
    pub host_data: Option<String>,
    /// POLICY bits (e.g. 0x30000; 0xb0000 allows debugging).
    #[arg(long, value_name = "HEX", value_parser = parse_u64, help_heading = "Report fields")]
    pub policy_bits: Option<u64>,
    /// PLATFORM_INFO bits (bit 0: SMT enabled).
    #[arg(long, value_name = "HEX", value_parser = parse_u64, help_heading = "Report fields")]
    pub platform_info: Option<u64>,
    /// VMPL the report was requested from.
    #[arg(long, help_heading = "Report fields")]
    pub vmpl: Option<u32>,
    /// GUEST_SVN.
    #[arg(long, help_heading = "Report fields")]
    pub guest_svn: Option<u32>,
    /// FAMILY_ID (hex, up to 16 bytes).
    #[arg(long, value_name = "HEX", help_heading = "Report fields")]
    pub family_id: Option<String>,
    /// IMAGE_ID (hex, up to 16 bytes).
    #[arg(long, value_name = "HEX", help_heading = "Report fields")]
    pub image_id: Option<String>,
    /// ID_KEY_DIGEST (hex, 48 bytes).
    #[arg(long, value_name = "HEX", help_heading = "Report fields")]
    pub id_key_digest: Option<String>,
    /// AUTHOR_KEY_DIGEST (hex, 48 bytes); sets AUTHOR_KEY_EN.
    #[arg(long, value_name = "HEX", help_heading = "Report fields")]
    pub author_key_digest: Option<String>,
    /// REPORTED_TCB, if it should differ from the chain's TCB (same syntax as --tcb).
    #[arg(long, value_name = "LIST", value_parser = parse_tcb, help_heading = "Report fields")]
    pub reported_tcb: Option<TcbParts>,
    /// Print one JSON line describing what was written.
    #[arg(long)]
    pub json: bool,
}

fn hex_into<const N: usize>(
    field: &str,
    value: &Option<String>,
    exact: bool,
    dst: &mut [u8; N],
) -> anyhow::Result<()> {
    if let Some(s) = value {
        let bytes = parse_hex(s, N).map_err(|e| anyhow::anyhow!("--{field}: {e}"))?;
        if exact && bytes.len() != N {
            anyhow::bail!("--{field}: expected {N} bytes ({} hex digits), found {}", 2 * N, bytes.len());
        }
        *dst = [0; N];
        dst[..bytes.len()].copy_from_slice(&bytes);
    }
    Ok(())
}

impl SimulateArgs {
    fn product(&self) -> Product {
        match self.product {
            ProductArg::Milan => Product::Milan,
            ProductArg::Genoa => Product::Genoa,
            ProductArg::Turin => Product::Turin,
        }
    }

    fn chain_params(&self, now: OffsetDateTime) -> anyhow::Result<ChainParams> {
        let mut params = ChainParams::new(self.product(), now);
        params.signing_key = match self.signing_key {
            KeyArg::Vcek => SigningKey::Vcek,
            KeyArg::Vlek => SigningKey::Vlek,
        };
        if let Some(tcb) = self.tcb {
            params.tcb = tcb;
        }
        hex_into("chip-id", &self.chip_id, false, &mut params.chip_id)?;
        if let Some(t) = self.vek_not_before {
            params.vek_not_before = t;
        }
        if let Some(t) = self.vek_not_after {
            params.vek_not_after = t;
        }
        Ok(params)
    }

    /// Generates or loads the chain, signs a report, writes everything.
    pub fn run(self) -> crate::Result {
        if !cvm_evidence::report::SUPPORTED_VERSIONS.contains(&self.version) {
            return Err(anyhow::anyhow!("--version: expected 2, 3 or 5, found {}", self.version).into());
        }
        let params = self.chain_params(OffsetDateTime::now_utc())?;
        let chain = match &self.chain {
            Some(path) => {
                let text = String::from_utf8(read_file(path)?)
                    .with_context(|| format!("{}: not text", path.display()))?;
                let base = SimulatedChain::from_pem_bundle(&text)
                    .with_context(|| format!("{}: not a simulated chain", path.display()))?;
                let mut p = params;
                p.product = base.params().product;
                base.reissue(p).context("cannot issue a new key from the given chain")?
            }
            None => SimulatedChain::generate(params).context("cannot generate a simulated chain")?,
        };
        let mut body = chain.report_template();
        body.version = self.version;
        if body.version == 2 {
            body.cpuid = None;
        }
        if body.version < 5 {
            body.launch_mit_vector = None;
            body.current_mit_vector = None;
        } else {
            body.launch_mit_vector.get_or_insert(0);
            body.current_mit_vector.get_or_insert(0);
        }
        hex_into("report-data", &self.report_data, false, &mut body.report_data)?;
        hex_into("measurement", &self.measurement, true, &mut body.measurement)?;
        hex_into("host-data", &self.host_data, false, &mut body.host_data)?;
        hex_into("family-id", &self.family_id, false, &mut body.family_id)?;
        hex_into("image-id", &self.image_id, false, &mut body.image_id)?;
        hex_into("id-key-digest", &self.id_key_digest, true, &mut body.id_key_digest)?;
        hex_into("author-key-digest", &self.author_key_digest, true, &mut body.author_key_digest)?;
        if self.author_key_digest.is_some() {
            body.key_info = KeyInfo::new(true, body.key_info.mask_chip_key(), body.key_info.signing_key());
        }
        if let Some(bits) = self.policy_bits {
            body.policy = GuestPolicy(bits);
        }
        if let Some(bits) = self.platform_info {
            body.platform_info = PlatformInfo(bits);
        }
        if let Some(v) = self.vmpl {
            body.vmpl = v;
        }
        if let Some(v) = self.guest_svn {
            body.guest_svn = v;
        }
        if let Some(t) = self.reported_tcb {
            body.reported_tcb = TcbVersion::from_parts(t, chain.params().product);
        }
        let report = chain.sign(&body).context("cannot sign the report")?;
        let written = write_out(&self.out, &chain, report.raw())?;
        if self.json {
            emit(&Message::Simulated(Simulated {
                product: chain.params().product.to_string(),
                signing_key: chain.params().signing_key.to_string(),
                files: written,
            }))?;
        } else {
            eprintln!(
                "wrote a simulated {} report signed by a {} to {}",
                chain.params().product,
                chain.params().signing_key,
                self.out.display()
            );
            eprintln!("its ARK is not AMD's: verify with --trust-ark {}", self.out.join("ark.pem").display());
        }
        Ok(())
    }
}

fn write_out(dir: &Path, chain: &SimulatedChain, report: &[u8]) -> anyhow::Result<Vec<String>> {
    use cvm_evidence::der::{Encode as _, EncodePem as _};
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let vlek = chain.params().signing_key == SigningKey::Vlek;
    let pem = |c: &cvm_evidence::certs::Certificate| c.to_pem(cvm_evidence::der::pem::LineEnding::LF);
    let files: Vec<(String, Vec<u8>)> = vec![
        ("report.bin".into(), report.to_vec()),
        (if vlek { "vlek.der" } else { "vcek.der" }.into(), chain.vek().to_der()?),
        (if vlek { "asvk.pem" } else { "ask.pem" }.into(), pem(chain.ask())?.into_bytes()),
        ("ark.pem".into(), pem(chain.ark())?.into_bytes()),
    ];
    let mut names = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(&name);
        fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        names.push(name);
    }
    let key_path = dir.join(CHAIN_FILE);
    write_private(&key_path, chain.to_pem_bundle()?.as_bytes())?;
    names.push(CHAIN_FILE.into());
    Ok(names)
}

/// Writes a secret file, readable only by its owner.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))
}
