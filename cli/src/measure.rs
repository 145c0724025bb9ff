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
//!
//! A UEFI disk boot (the clouds, and `scripts/launch-vm --disk-image`) is
//! measured in two places: the SNP measurement covers only the firmware
//! (`--firmware-only`: OVMF and the vCPUs, no kernel hashes), and the image
//! is covered by measured boot into the vTPM, which `--uki FILE` predicts
//! from the unified kernel image (`cvm_evidence::uki`): the boot
//! applications in PCR 4, PCR 9 and PCR 11, and the policy rules that pin them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sev::measurement::snp::{snp_calc_launch_digest, SnpMeasurementArgs};
use sev::measurement::vcpu_types::CpuType;
use sev::measurement::vmsa::{GuestFeatures, VMMType};
use sev::parser::ByteParser as _;

use cvm_evidence::tcglog::EventType;
use cvm_evidence::uki::{measure_uki, UkiMeasurements};

use crate::output;

/// Compute the expected SNP launch measurement of a QEMU guest booted by OVMF,
/// or what booting a unified kernel image measures into the vTPM.
///
/// With --ovmf and --kernel: prints the 48-byte measurement as 96 hex digits
/// (or a `measurement` JSON line with --json), the value a policy's
/// `measurements` list takes. With --ovmf --firmware-only: the measurement
/// of the firmware alone, as an SNP guest that boots from a disk has it (the
/// image is then pinned through the vTPM: see --uki). With --uki FILE: the
/// UKI's PCR 4 boot applications and its PCR 9 and PCR 11 values, and the
/// policy rules (`tpm_pcrs`, `tpm_events`) that pin them (a `uki` JSON line
/// with --json).
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// A unified kernel image (EFI/BOOT/BOOTX64.EFI of the disk image): predict its vTPM measurements.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ovmf", "kernel", "initrd", "firmware_only"])]
    pub uki: Option<PathBuf>,
    /// The OVMF firmware (an AmdSev build; its SEV metadata and reset vector are read).
    #[arg(long, value_name = "FILE", required_unless_present = "uki")]
    pub ovmf: Option<PathBuf>,
    /// The kernel (bzImage) booted directly by OVMF.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["uki", "firmware_only"])]
    pub kernel: Option<PathBuf>,
    /// The initrd (initramfs).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Measure the firmware alone: a guest booting from a disk, whose
    /// kernel is not in the SNP measurement (pin the image with --uki's rules).
    #[arg(long, conflicts_with_all = ["kernel", "initrd", "append"])]
    pub firmware_only: bool,
    /// The kernel command line, exactly as passed to QEMU's -append.
    #[arg(long, value_name = "STR")]
    pub append: Option<String>,
    /// Number of vCPUs (one VMSA page each).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub vcpus: u32,
    /// QEMU vCPU model, as in `-cpu` (EPYC, EPYC-v4, EPYC-Milan, EPYC-Genoa, EPYC-Turin, ...).
    #[arg(long, value_name = "TYPE", value_parser = parse_vcpu_type, required_unless_present = "uki")]
    pub vcpu_type: Option<CpuTypeArg>,
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
    /// Kernel (none: a UEFI disk boot, the firmware alone is measured).
    pub kernel: Option<&'a Path>,
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
    for (what, path) in [("OVMF", Some(inputs.ovmf)), ("kernel", inputs.kernel), ("initrd", inputs.initrd)] {
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
        kernel_file: inputs.kernel.map(Path::to_path_buf),
        initrd_file: inputs.initrd.map(Path::to_path_buf),
        append: inputs.kernel.map(|_| inputs.append),
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
    pub fn run(self) -> crate::Result {
        if let Some(uki) = &self.uki {
            return print_uki(uki, self.json);
        }
        let (Some(ovmf), Some(vcpu_type)) = (&self.ovmf, self.vcpu_type) else {
            return Err(anyhow::anyhow!("--ovmf and --vcpu-type are required without --uki").into());
        };
        let append = self.append.clone().unwrap_or_default();
        let inputs = Inputs {
            ovmf,
            kernel: self.kernel.as_deref(),
            initrd: self.initrd.as_deref(),
            append: &append,
            vcpus: self.vcpus,
            vcpu_type: vcpu_type.0,
            guest_features: self.guest_features,
            vmm: self.vmm.0,
        };
        let measurement = hex::encode(launch_measurement(&inputs)?);
        if self.json {
            output::emit(&output::Message::Measurement(output::Measurement {
                measurement,
                ovmf: ovmf.clone(),
                kernel: self.kernel.clone(),
                initrd: self.initrd.clone(),
                append: self.kernel.as_ref().map(|_| append),
                firmware_only: self.firmware_only,
                vcpus: self.vcpus,
                vcpu_type: vcpu_type.0.to_string(),
                guest_features: format!("{:#x}", self.guest_features),
            }))?;
        } else {
            use std::io::Write as _;
            writeln!(output::stdout(), "{measurement}")?;
        }
        Ok(())
    }
}

/// The policy rules that pin a UKI: its boot applications in PCR 4, its
/// PCR 9 and PCR 11 values, and PCRs 12 and 13 at zero (no command line from
/// the boot entry, no credentials or system extensions from the disk).
pub fn uki_policy(m: &UkiMeasurements) -> serde_json::Value {
    let zero = hex::encode([0u8; 32]);
    serde_json::json!({
        "tpm_pcrs": {
            "9": [hex::encode(m.pcr9_sha256)],
            "11": [hex::encode(m.pcr11_sha256)],
            "12": [zero],
            "13": [zero],
        },
        "tpm_events": [{
            "pcr": 4,
            "type": EventType::EFI_BOOT_SERVICES_APPLICATION,
            "sha256": [hex::encode(m.authenticode_sha256), hex::encode(m.kernel_authenticode_sha256)],
        }],
    })
}

fn print_uki(path: &Path, json: bool) -> crate::Result {
    let bytes = crate::args::read_file(path)?;
    let m = match measure_uki(&bytes) {
        Ok(m) => m,
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display()).into()),
    };
    let policy = uki_policy(&m);
    if json {
        output::emit(&output::Message::Uki(output::Uki {
            uki: path.to_path_buf(),
            bytes: bytes.len(),
            authenticode_sha256: hex::encode(m.authenticode_sha256),
            kernel_authenticode_sha256: hex::encode(m.kernel_authenticode_sha256),
            pcr9_sha256: hex::encode(m.pcr9_sha256),
            pcr11_sha256: hex::encode(m.pcr11_sha256),
            cmdline: m.cmdline.clone(),
            sections: m
                .sections
                .iter()
                .map(|s| output::UkiSection {
                    name: s.name.to_owned(),
                    bytes: s.size,
                    sha256: hex::encode(s.sha256),
                })
                .collect(),
            policy: policy.clone(),
        }))?;
        return Ok(());
    }
    use std::io::Write as _;
    let mut out = output::stdout();
    writeln!(out, "UKI {} ({} bytes)", path.display(), bytes.len())?;
    writeln!(
        out,
        "  PCR 4   boot applications (EV_EFI_BOOT_SERVICES_APPLICATION, PE/Authenticode SHA-256):"
    )?;
    writeln!(out, "            {}  the UKI (the firmware starts it)", hex::encode(m.authenticode_sha256))?;
    writeln!(
        out,
        "            {}  the kernel in .linux (the stub starts it)",
        hex::encode(m.kernel_authenticode_sha256)
    )?;
    writeln!(
        out,
        "  PCR 9   {}  (the kernel's EFI stub: the command line, then the initrd)",
        hex::encode(m.pcr9_sha256)
    )?;
    writeln!(
        out,
        "  PCR 11  {}  (systemd-stub's sections; what `systemd-measure calculate --phase=` prints)",
        hex::encode(m.pcr11_sha256)
    )?;
    writeln!(
        out,
        "  PCR 12, PCR 13: zero (no command line from the boot entry, no credentials or extensions)"
    )?;
    for s in &m.sections {
        writeln!(out, "  section {:9} {:>10} bytes  sha256 {}", s.name, s.size, hex::encode(s.sha256))?;
    }
    if let Some(c) = &m.cmdline {
        writeln!(out, "  command line: {}", cvm_protocol::terminal::escape(c))?;
    }
    writeln!(
        out,
        "policy rules that pin this image (add them to your policy, which must also pin the firmware's SNP \
         measurement: `cvmctl measure --ovmf FILE --firmware-only`):"
    )?;
    writeln!(out, "{}", serde_json::to_string_pretty(&policy)?)?;
    Ok(())
}
