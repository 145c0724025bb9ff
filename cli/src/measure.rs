//! `cvmctl measure`: the SNP launch measurement an image will have.
//!
//! An SNP guest launched by QEMU with OVMF's AmdSev build and direct kernel
//! boot is measured by the AMD secure processor over: the OVMF image, the
//! SEV metadata pages it declares, a page of hashes of the kernel, the initrd
//! and the command line (which OVMF checks before it boots them), and one
//! VMSA (initial register state) per vCPU, whose content depends on the vCPU
//! type and the guest features. Owners compute it from the artifacts they
//! built themselves and pin it in their verification policy.
//!
//! The computation is the `sev` crate's `measurement::snp` module, which
//! follows the same algorithm as the `sev-snp-measure` reference tool (a
//! test compares the two on the project's own image).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sev::measurement::snp::{snp_calc_launch_digest, SnpMeasurementArgs};
use sev::measurement::vcpu_types::CpuType;
use sev::measurement::vmsa::{GuestFeatures, VMMType};
use sev::parser::ByteParser as _;

use crate::exit_codes;
use crate::output;

/// Compute the expected SNP launch measurement of a QEMU guest booted by OVMF.
///
/// Prints the 48-byte measurement as 96 hex digits (or a `measurement` JSON
/// line with `--json`), the value a policy's `measurements` list takes.
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// The OVMF firmware (an AmdSev build; its SEV metadata and reset vector are read).
    #[arg(long, value_name = "FILE")]
    pub ovmf: PathBuf,
    /// The kernel (bzImage) booted directly by OVMF.
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    /// The initrd (initramfs).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// The kernel command line, exactly as passed to QEMU's -append.
    #[arg(long, value_name = "STR", default_value = "")]
    pub append: String,
    /// Number of vCPUs (one VMSA page each).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub vcpus: u32,
    /// QEMU vCPU model, as in `-cpu` (EPYC, EPYC-v4, EPYC-Milan, EPYC-Genoa, EPYC-Turin, ...).
    #[arg(long, value_name = "TYPE", value_parser = parse_vcpu_type)]
    pub vcpu_type: CpuTypeArg,
    /// SEV_FEATURES of the guest (hex); 0x1 is SNP active only, what QEMU sets by default.
    #[arg(long, value_name = "HEX", default_value = "0x1", value_parser = crate::args::parse_u64)]
    pub guest_features: u64,
    /// The VMM that launches the guest: qemu or ec2.
    #[arg(long, value_name = "VMM", default_value = "qemu", value_parser = parse_vmm)]
    pub vmm: VmmArg,
    /// Print a JSON line with the inputs and the measurement.
    #[arg(long)]
    pub json: bool,
}

/// A vCPU type argument (the `sev` crate's type has no `Clone` bound clap can use directly).
#[derive(Debug, Clone, Copy)]
pub struct CpuTypeArg(pub CpuType);

/// A VMM type argument.
#[derive(Debug, Clone, Copy)]
pub struct VmmArg(pub VMMType);

fn parse_vcpu_type(s: &str) -> Result<CpuTypeArg, String> {
    CpuType::try_from(s).map(CpuTypeArg).map_err(|_| {
        format!(
            "unknown vCPU type {s:?} (known: EPYC, EPYC-v1, EPYC-v2, EPYC-IBPB, EPYC-v3, EPYC-v4, EPYC-Rome, \
             EPYC-Rome-v1..v3, EPYC-Milan, EPYC-Milan-v1, EPYC-Milan-v2, EPYC-Genoa, EPYC-Genoa-v1, \
             EPYC-Turin, EPYC-Turin-v1, EPYC-Turin-v2)"
        )
    })
}

fn parse_vmm(s: &str) -> Result<VmmArg, String> {
    match s.to_ascii_lowercase().as_str() {
        "qemu" => Ok(VmmArg(VMMType::QEMU)),
        "ec2" => Ok(VmmArg(VMMType::EC2)),
        _ => Err(format!("unknown VMM {s:?} (known: qemu, ec2)")),
    }
}

/// The inputs of a measurement, for [`launch_measurement`].
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// OVMF image.
    pub ovmf: &'a Path,
    /// Kernel.
    pub kernel: &'a Path,
    /// Initrd, if any.
    pub initrd: Option<&'a Path>,
    /// Command line.
    pub append: &'a str,
    /// vCPUs.
    pub vcpus: u32,
    /// vCPU type.
    pub vcpu_type: CpuType,
    /// SEV_FEATURES.
    pub guest_features: u64,
    /// VMM.
    pub vmm: VMMType,
}

/// Computes the launch measurement (48 bytes).
///
/// Every input file is checked for readability first, so that an error
/// names the file rather than the step of the computation that failed.
pub fn launch_measurement(inputs: &Inputs<'_>) -> anyhow::Result<[u8; 48]> {
    for (what, path) in
        [("OVMF", Some(inputs.ovmf)), ("kernel", Some(inputs.kernel)), ("initrd", inputs.initrd)]
    {
        if let Some(path) = path {
            std::fs::File::open(path)
                .with_context(|| format!("cannot read the {what} {}", path.display()))?;
        }
    }
    let args = SnpMeasurementArgs {
        vcpus: inputs.vcpus,
        vcpu_type: inputs.vcpu_type,
        ovmf_file: inputs.ovmf.to_path_buf(),
        guest_features: GuestFeatures::from_bytes(&inputs.guest_features.to_le_bytes())
            .context("guest features")?,
        kernel_file: Some(inputs.kernel.to_path_buf()),
        initrd_file: inputs.initrd.map(Path::to_path_buf),
        append: Some(inputs.append),
        ovmf_hash_str: None,
        vmm_type: Some(inputs.vmm),
    };
    let digest = snp_calc_launch_digest(args).with_context(|| {
        format!(
            "cannot compute the launch measurement (is {} an OVMF AmdSev build with SEV metadata?)",
            inputs.ovmf.display()
        )
    })?;
    let mut out = [0u8; 48];
    hex::decode_to_slice(digest.get_hex_ld(), &mut out).context("the measurement is not 48 bytes")?;
    Ok(out)
}

impl MeasureArgs {
    /// Runs the command; returns the exit code.
    pub fn run(self) -> anyhow::Result<i32> {
        let inputs = Inputs {
            ovmf: &self.ovmf,
            kernel: &self.kernel,
            initrd: self.initrd.as_deref(),
            append: &self.append,
            vcpus: self.vcpus,
            vcpu_type: self.vcpu_type.0,
            guest_features: self.guest_features,
            vmm: self.vmm.0,
        };
        let measurement = hex::encode(launch_measurement(&inputs)?);
        if self.json {
            output::emit(
                "measurement",
                serde_json::json!({
                    "measurement": measurement,
                    "ovmf": self.ovmf, "kernel": self.kernel, "initrd": self.initrd,
                    "append": self.append, "vcpus": self.vcpus,
                    "vcpu_type": self.vcpu_type.0.to_string(),
                    "guest_features": format!("{:#x}", self.guest_features),
                }),
            )?;
        } else {
            use std::io::Write as _;
            writeln!(output::stdout(), "{measurement}")?;
        }
        Ok(exit_codes::OK)
    }
}
